//! Wakes long-polling pulls when their scope changes.
//!
//! One `watch` channel per scope holds the last head version announced by PostgreSQL NOTIFY. A waiting pull
//! holds only a receiver: no thread, no database connection, no polling. To never miss a wake-up, a pull
//! subscribes *before* it reads the feed, and waits for any announcement after that read (see `feed::Feed::pull`).

use crate::domain::ScopeId;
use crate::feed::page::Slice;
use crate::{concurrency::single_flight::SingleFlight, feed::heads::Heads};
use std::{collections::HashMap, sync::Mutex};
use tokio::sync::watch;

#[derive(Default)]
pub struct FeedHub {
    scopes: Mutex<HashMap<ScopeId, watch::Sender<i64>>>,
    /// Fresh heads, one query per batch of concurrent callers (see `heads`).
    pub heads: Heads,
    /// Feed reads shared by concurrent pulls asking the same after seeing the same head (see `feed::read`).
    pub shared_reads: SingleFlight<SharedRead, Slice>,
}

/// What a feed read's answer depends on. `seen_head` is the head each caller sharing the read was told by
/// `heads` after it arrived, so every change it must see is at or below `seen_head`; the read began after one
/// of them was told that head, so it sees at least `seen_head` and is fresh enough for all of them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SharedRead {
    pub scope: ScopeId,
    pub since: i64,
    pub limit: i64,
    pub collections: Option<Vec<String>>,
    pub seen_head: i64,
}

impl FeedHub {
    pub fn subscribe(&self, scope: &ScopeId) -> watch::Receiver<i64> {
        let mut scopes = self.lock();
        match scopes.get(scope) {
            Some(sender) => sender.subscribe(),
            None => {
                let (sender, receiver) = watch::channel(0);
                scopes.insert(scope.clone(), sender);
                receiver
            }
        }
    }

    /// Announces a committed head. NOTIFY delivers in commit order, so the value simply replaces the old one.
    pub fn publish(&self, scope: &ScopeId, head: i64) {
        if let Some(sender) = self.lock().get(scope) {
            sender.send_replace(head);
        }
    }

    /// Wakes every waiter (after the listener reconnected and may have missed announcements); each re-reads
    /// the feed. Scopes nobody waits on are forgotten here, which bounds the map by the scopes in use.
    pub fn wake_all(&self) {
        let mut scopes = self.lock();
        scopes.retain(|_, sender| sender.receiver_count() > 0);
        for sender in scopes.values() {
            sender.send_modify(|_| {});
        }
    }

    /// Pulls currently subscribed (waiting or about to), for metrics.
    pub fn waiters(&self) -> usize {
        self.lock().values().map(|s| s.receiver_count()).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ScopeId, watch::Sender<i64>>> {
        self.scopes.lock().unwrap_or_else(|p| p.into_inner())
    }
}
