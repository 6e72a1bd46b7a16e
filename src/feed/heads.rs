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
//! A query that could not reach PostgreSQL answers its batch `unavailable` at once, and so the callers that
//! queued while it ran: a new query would make them wait out a second pool timeout, and a plain read after it a
//! third (issue 18, item 7c: a pull took 9 s to answer 503). Any other failed query is answered as `None` to its
//! batch; callers then take their plain path, whose own error maps to the right status.

use crate::concurrency::scope_queue::{ScopeQueues, Serving};
use crate::{
    domain::ScopeId,
    error::{Error, Result},
    store::{self, changes::Head},
};
use sqlx::PgPool;
use std::future::Future;
use tokio::sync::oneshot;

/// `Err`: PostgreSQL was unreachable (the cause, for the log).
type Reply = oneshot::Sender<Result<Option<Option<Head>>, String>>;

#[derive(Default)]
pub struct Heads {
    queues: ScopeQueues<Reply>,
}

impl Heads {
    /// The scope's head as of a snapshot taken after this call began. `Some(None)`: the scope does not
    /// exist. `None`: the query failed (the caller reads plainly and reports that error). `Err`: `unavailable`,
    /// PostgreSQL could not be reached.
    pub async fn read(&self, db: &PgPool, scope: &ScopeId) -> Result<Option<Option<Head>>> {
        let (db, owned) = (db.clone(), scope.clone());
        self.read_with(scope, move || {
            let (db, scope) = (db.clone(), owned.clone());
            async move { store::changes::head(&db, &scope).await }
        })
        .await
    }

    /// [`Heads::read`] with the query given: `query` must read the head in one statement that starts when it
    /// is called. (Tests pass a slow one to widen the races this module is about.)
    pub async fn read_with<Q, F>(&self, scope: &ScopeId, query: Q) -> Result<Option<Option<Head>>>
    where
        Q: Fn() -> F + Send + 'static,
        F: Future<Output = Result<Option<Head>, sqlx::Error>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        if let Some(serving) = self.queues.queue(scope).push(reply) {
            // Its own task, so a caller that goes away (client disconnected) never strands the others.
            tokio::spawn(answer_queue(serving, scope.clone(), query));
        }
        match answer.await {
            Ok(Ok(head)) => Ok(head),
            Ok(Err(cause)) => Err(Error::Unavailable(cause)),
            Err(_) => Ok(None),
        }
    }
}

/// Answers the queue until no caller waits. Callers still waiting when the task ends otherwise (a panic, the
/// runtime shutting down) get no answer, so they read plainly.
async fn answer_queue<Q, F>(mut serving: Serving<Reply>, scope: ScopeId, query: Q)
where
    Q: Fn() -> F,
    F: Future<Output = Result<Option<Head>, sqlx::Error>>,
{
    let mut unreachable: Option<String> = None;
    while let Some(batch) = serving.next(std::mem::take) {
        let head = match unreachable.take() {
            // This batch queued while the last query failed to reach PostgreSQL: it was unreachable meanwhile.
            Some(cause) => Err(cause),
            None => match query().await {
                Ok(head) => Ok(Some(head)),
                Err(err) => match Error::from(err) {
                    Error::Unavailable(cause) => {
                        unreachable = Some(cause.clone());
                        Err(cause)
                    }
                    other => {
                        tracing::debug!(%scope, error = %other, "head read failed; callers read plainly");
                        Ok(None)
                    }
                },
            },
        };
        for reply in batch {
            let _ = reply.send(head.clone());
        }
    }
}
