//! Concurrent identical reads share one execution.
//!
//! The caller makes the key say everything the answer depends on, including what makes a shared answer
//! fresh enough for every caller that joins it (the feed puts the head each caller saw in its key, so a read
//! is only shared by callers that all saw that head before it started). An entry lives while its read runs
//! and is removed by the first caller done with it: callers that come later start a new read.
//!
//! A failed read is not shared: the next waiting caller runs its own, so each caller sees its own error.
//! A caller that goes away mid-read hands the read over to the next waiting caller.

use std::{
    collections::HashMap,
    future::Future,
    hash::Hash,
    sync::{Arc, Mutex},
};
use tokio::sync::OnceCell;

pub struct SingleFlight<K, V> {
    running: Mutex<HashMap<K, Arc<OnceCell<Arc<V>>>>>,
}

impl<K, V> Default for SingleFlight<K, V> {
    fn default() -> Self {
        SingleFlight {
            running: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone, V> SingleFlight<K, V> {
    /// The answer of `read` for `key`, run once for all concurrent callers with the same key.
    pub async fn run<E, F, Fut>(&self, key: K, read: F) -> Result<Arc<V>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let cell = self.lock().entry(key.clone()).or_default().clone();
        let result = cell
            .get_or_try_init(|| async { read().await.map(Arc::new) })
            .await
            .cloned();
        let mut running = self.lock();
        if running.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            running.remove(&key);
        }
        result
    }

    /// Reads in flight, for tests and metrics.
    pub fn in_flight(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Arc<OnceCell<Arc<V>>>>> {
        // Only inserts and removals happen under this lock: a panic cannot leave the map half changed.
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        pin::Pin,
        sync::atomic::{AtomicUsize, Ordering::SeqCst},
    };
    use tokio::sync::Notify;

    #[tokio::test]
    async fn concurrent_callers_share_one_read_and_later_ones_start_another() {
        let flight = SingleFlight::<&str, usize>::default();
        let (runs, release) = (AtomicUsize::new(0), Notify::new());
        let callers = (0..10).map(|_| {
            flight.run("k", || async {
                release.notified().await;
                Ok::<_, ()>(runs.fetch_add(1, SeqCst) + 1)
            })
        });
        // join_all polls every caller once, in order, before the read can finish: the first starts the read
        // (which waits for `release`), the nine others find it running. The last future lets it go.
        type Caller<'a> = Pin<Box<dyn Future<Output = Option<Result<Arc<usize>, ()>>> + 'a>>;
        let callers: Vec<Caller> = callers
            .map(|c| Box::pin(async { Some(c.await) }) as Pin<Box<dyn Future<Output = _>>>)
            .chain(std::iter::once(Box::pin(async {
                release.notify_one();
                None
            }) as Pin<Box<dyn Future<Output = _>>>))
            .collect();
        let answers: Vec<usize> = futures_util::future::join_all(callers)
            .await
            .into_iter()
            .flatten()
            .map(|r| *r.unwrap())
            .collect();
        assert_eq!(answers, vec![1; 10], "one read answered all ten");
        assert_eq!(runs.load(SeqCst), 1);
        assert_eq!(flight.in_flight(), 0);
        let again = flight.run("k", || async { Ok::<_, ()>(7) }).await.unwrap();
        assert_eq!(*again, 7, "a caller after the read ended reads anew");
    }

    #[tokio::test]
    async fn a_failed_read_is_not_shared() {
        let flight = SingleFlight::<&str, u32>::default();
        assert_eq!(
            flight.run("k", || async { Err::<u32, _>("down") }).await.unwrap_err(),
            "down"
        );
        assert_eq!(*flight.run("k", || async { Ok::<_, &str>(1) }).await.unwrap(), 1);
    }
}
