//! Per-scope queues served by one task each: callers queue an item, the first one to find no task serving the
//! queue spawns one, and that task takes what waits in rounds until nothing does. Shared head reads
//! (`feed::heads`) and group commit (`replay::group_commit`) are both built on it.
//!
//! The serving task holds a [`Serving`] guard: it ends the service under the queue's lock when no item waits
//! (so an item queued just after finds no task and starts one), and, if the task ends any other way (a panic,
//! the runtime shutting down), it marks the queue unserved and drops what waits, whose callers then see their
//! reply channel closed.

use crate::domain::ScopeId;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};
use tokio::sync::Notify;

pub struct ScopeQueues<T> {
    scopes: Mutex<HashMap<ScopeId, Arc<Queue<T>>>>,
}

impl<T> Default for ScopeQueues<T> {
    fn default() -> Self {
        ScopeQueues {
            scopes: Mutex::default(),
        }
    }
}

impl<T> ScopeQueues<T> {
    pub fn queue(&self, scope: &ScopeId) -> Arc<Queue<T>> {
        // Bounded by the scopes that exist: callers come through scope authorisation.
        let mut scopes = lock(&self.scopes);
        if let Some(queue) = scopes.get(scope) {
            return queue.clone();
        }
        scopes.entry(scope.clone()).or_default().clone()
    }

    /// Items waiting in all queues.
    pub fn waiting(&self) -> usize {
        let queues: Vec<Arc<Queue<T>>> = lock(&self.scopes).values().cloned().collect();
        queues.iter().map(|q| q.len()).sum()
    }
}

pub struct Queue<T> {
    state: Mutex<State<T>>,
    /// Signalled on every item queued.
    arrived: Notify,
}

struct State<T> {
    /// A task is serving this queue.
    running: bool,
    /// In arrival order.
    waiting: Vec<T>,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            state: Mutex::new(State {
                running: false,
                waiting: Vec::new(),
            }),
            arrived: Notify::new(),
        }
    }
}

impl<T> Queue<T> {
    /// Queues `item`. `Some` when no task serves the queue: the caller must spawn one, giving it the guard.
    pub fn push(self: &Arc<Self>, item: T) -> Option<Serving<T>> {
        let start = {
            let mut state = lock(&self.state);
            state.waiting.push(item);
            !std::mem::replace(&mut state.running, true)
        };
        self.arrived.notify_one();
        start.then(|| Serving(Some(self.clone())))
    }

    pub fn len(&self) -> usize {
        lock(&self.state).waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Completes when an item was queued since the last call (or now, if one was queued and nobody waited).
    pub async fn arrived(&self) {
        self.arrived.notified().await
    }
}

/// Held by the task serving a queue (see the module's comment).
pub struct Serving<T>(Option<Arc<Queue<T>>>);

impl<T> Serving<T> {
    pub fn queue(&self) -> &Queue<T> {
        self.0.as_ref().expect("a queue while serving")
    }

    /// The next round: what `take` removes from the waiting items (in arrival order, never empty). `None` when
    /// nothing waits: the service has ended.
    pub fn next(&mut self, take: impl FnOnce(&mut Vec<T>) -> Vec<T>) -> Option<Vec<T>> {
        let queue = self.0.as_ref()?;
        let mut state = lock(&queue.state);
        if state.waiting.is_empty() {
            state.running = false;
            drop(state);
            self.0 = None;
            return None;
        }
        Some(take(&mut state.waiting))
    }
}

impl<T> Drop for Serving<T> {
    fn drop(&mut self) {
        if let Some(queue) = &self.0 {
            let mut state = lock(&queue.state);
            state.running = false;
            state.waiting.clear();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is a push, a take or a flag: a panic cannot leave them half done.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
