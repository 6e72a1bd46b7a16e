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
//!
//! The query runs on a connection of its own when it can (`Dedicated` below): a pooled one costs a second round
//! trip, sqlx's ping on its way back to the pool.

use crate::concurrency::scope_queue::{ScopeQueues, Serving};
use crate::{
    domain::ScopeId,
    error::{Error, Result},
    store::{self, changes::Head},
};
use sqlx::{PgConnection, PgPool};
use std::{
    future::Future,
    sync::{Arc, Mutex},
};
use tokio::sync::oneshot;

/// `Err`: PostgreSQL was unreachable (the cause, for the log).
type Reply = oneshot::Sender<Result<Option<Option<Head>>, String>>;

#[derive(Default)]
pub struct Heads {
    queues: ScopeQueues<Reply>,
    dedicated: Arc<Dedicated>,
}

impl Heads {
    /// The scope's head as of a snapshot taken after this call began. `Some(None)`: the scope does not
    /// exist. `None`: the query failed (the caller reads plainly and reports that error). `Err`: `unavailable`,
    /// PostgreSQL could not be reached.
    pub async fn read(&self, db: &PgPool, scope: &ScopeId) -> Result<Option<Option<Head>>> {
        let (db, owned, dedicated) = (db.clone(), scope.clone(), self.dedicated.clone());
        self.read_with(scope, move || {
            let (db, scope, dedicated) = (db.clone(), owned.clone(), dedicated.clone());
            async move { dedicated.head(&db, &scope).await }
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

/// The connection head reads use, taken out of the pool once (`PoolConnection::detach`), so the server holds one
/// more connection than `DUKASYNC_DB_MAX_CONNECTIONS` (protocol §5). sqlx pings every pooled connection
/// on its way back to the pool: for a head read that is a second round trip to PostgreSQL. Without it, serving
/// a cached page costs PostgreSQL about a third less CPU (issue 24, `benches/README.md`).
///
/// One read at a time uses it. A read that finds it lent, or whose query fails on it (PostgreSQL restarted, the
/// backend was terminated) or takes longer than the pool's acquire timeout, reads through the pool as before,
/// so failures are reported as a pooled read's; the failed connection is dropped and the next read opens
/// another. A read that cannot get a connection to detach fails with the pool's error, without waiting a
/// second time.
#[derive(Default)]
struct Dedicated(Mutex<Slot>);

#[derive(Default)]
struct Slot {
    idle: Option<PgConnection>,
    /// A read holds the connection (or is opening it).
    lent: bool,
}

/// A read's hold on the dedicated connection: ends when dropped, also when the read is cancelled mid-query
/// (then the connection, in an unknown state, is dropped with it).
struct Loan<'a> {
    dedicated: &'a Dedicated,
    conn: Option<PgConnection>,
    /// Set once the query succeeded: only then does the connection go back for the next read.
    healthy: bool,
}

impl Drop for Loan<'_> {
    fn drop(&mut self) {
        let mut slot = self.dedicated.0.lock().unwrap_or_else(|p| p.into_inner());
        slot.idle = if self.healthy { self.conn.take() } else { None };
        slot.lent = false;
    }
}

impl Dedicated {
    async fn head(&self, db: &PgPool, scope: &ScopeId) -> Result<Option<Head>, sqlx::Error> {
        if let Some(mut loan) = self.lend() {
            let conn = match loan.conn.as_mut() {
                Some(conn) => conn,
                None => loan.conn.insert(db.acquire().await?.detach()),
            };
            // A connection whose peer vanished without a reset (host down) would hang until TCP gives up; the pool
            // bounds the same case by its acquire timeout (its ping of an idle connection), so this does too.
            match tokio::time::timeout(store::ACQUIRE_TIMEOUT, store::changes::head(&mut *conn, scope)).await {
                Ok(Ok(head)) => {
                    loan.healthy = true;
                    return Ok(head);
                }
                Ok(Err(err)) => {
                    tracing::debug!(%scope, error = %err, "head read on its own connection failed; reading through the pool");
                }
                Err(_) => {
                    tracing::warn!(%scope, "head read on its own connection took over {:?}; reading through the pool", store::ACQUIRE_TIMEOUT);
                }
            }
        }
        store::changes::head(db, scope).await
    }

    /// The connection (`conn` is `None` when there is none yet), or `None` when another read holds it.
    fn lend(&self) -> Option<Loan<'_>> {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.lent {
            return None;
        }
        slot.lent = true;
        Some(Loan {
            dedicated: self,
            conn: slot.idle.take(),
            healthy: false,
        })
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
