//! Fresh scope heads for many concurrent requests at the cost of few queries.
//!
//! A read served from memory (cached feed windows, a reference ETag already known) is only right if nothing
//! it depends on changed before the request arrived. [`Heads::read`] answers the scope's head, floor and head
//! tag from a PostgreSQL snapshot taken *after* the call began, like a read of its own would, but concurrent
//! callers of one scope share the query: while one query runs, new callers queue, and the next query (started
//! once the running one has answered, so after every queued caller arrived) answers all of them. Under load a
//! query answers a whole batch of requests; alone, a caller pays one small query. This is the "read index"
//! of consensus systems: batching the freshness check, never skipping it.
//!
//! A failed query is answered as `None` to its batch; callers then take their plain path, whose own error
//! maps to the right status.

use crate::{
    domain::ScopeId,
    store::{self, changes::Head},
};
use sqlx::PgPool;
use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
};
use tokio::sync::oneshot;

type Reply = oneshot::Sender<Option<Option<Head>>>;

#[derive(Default)]
pub struct Heads {
    scopes: Mutex<HashMap<ScopeId, Arc<Queue>>>,
}

#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    /// A task is answering this queue; it takes `waiting` whole before each query.
    running: bool,
    waiting: Vec<Reply>,
}

impl Heads {
    /// The scope's head as of a snapshot taken after this call began. `Some(None)`: the scope does not
    /// exist. `None`: PostgreSQL did not answer (the caller reads plainly and reports that error).
    pub async fn read(&self, db: &PgPool, scope: &ScopeId) -> Option<Option<Head>> {
        let (db, owned) = (db.clone(), scope.clone());
        self.read_with(scope, move || {
            let (db, scope) = (db.clone(), owned.clone());
            async move { store::changes::head(&db, &scope).await }
        })
        .await
    }

    /// [`Heads::read`] with the query given: `query` must read the head in one statement that starts when it
    /// is called. (Tests pass a slow one to widen the races this module is about.)
    pub async fn read_with<Q, F>(&self, scope: &ScopeId, query: Q) -> Option<Option<Head>>
    where
        Q: Fn() -> F + Send + 'static,
        F: Future<Output = Result<Option<Head>, sqlx::Error>> + Send + 'static,
    {
        let queue = self.queue(scope);
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut state = lock(&queue.state);
            state.waiting.push(reply);
            !std::mem::replace(&mut state.running, true)
        };
        if start {
            // Its own task, so a caller that goes away (client disconnected) never strands the others.
            tokio::spawn(answer_queue(queue, scope.clone(), query));
        }
        answer.await.ok().flatten()
    }

    fn queue(&self, scope: &ScopeId) -> Arc<Queue> {
        // Bounded by the scopes that exist: callers come through scope authorisation.
        let mut scopes = lock(&self.scopes);
        if let Some(queue) = scopes.get(scope) {
            return queue.clone();
        }
        scopes.entry(scope.clone()).or_default().clone()
    }
}

async fn answer_queue<Q, F>(queue: Arc<Queue>, scope: ScopeId, query: Q)
where
    Q: Fn() -> F,
    F: Future<Output = Result<Option<Head>, sqlx::Error>>,
{
    let mut unexpected_end = Stopped(Some(queue.clone()));
    loop {
        let batch = {
            let mut state = lock(&queue.state);
            if state.waiting.is_empty() {
                state.running = false;
                unexpected_end.0 = None;
                return;
            }
            std::mem::take(&mut state.waiting)
        };
        let head = match query().await {
            Ok(head) => Some(head),
            Err(err) => {
                tracing::debug!(%scope, error = %err, "head read failed; callers read plainly");
                None
            }
        };
        for reply in batch {
            let _ = reply.send(head);
        }
    }
}

/// Marks the queue as unanswered when its task ends other than by running out of callers (a panic, the
/// runtime shutting down): callers still waiting get no answer (so they read plainly) and the next caller
/// starts a new task.
struct Stopped(Option<Arc<Queue>>);

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Some(queue) = &self.0 {
            let mut state = lock(&queue.state);
            state.running = false;
            state.waiting.clear();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section here is a push, a take or a flag: a panic cannot leave them half done.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
