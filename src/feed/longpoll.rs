//! Admission of long-polls: their own bounded pools, apart from the ordinary requests' `DUKASYNC_MAX_IN_FLIGHT`.
//!
//! A parked long-poll costs no database connection and almost no CPU, but before this module it held one of the
//! in-flight permits every request needs, so one token could park thousands and starve everyone (issue 18,
//! item 4). Now a pull that found nothing and is about to wait asks [`LongPolls::park`]:
//! - per device and scope (`DUKASYNC_MAX_LONGPOLLS_PER_DEVICE`): a device needs one long-poll per scope; past
//!   the bound the device's *oldest* long-poll of that scope ends at once (it answers its current page), so a
//!   device whose old connections died unnoticed (a phone changing networks) still gets through;
//! - per scope (`DUKASYNC_MAX_LONGPOLLS_PER_SCOPE`) and in total (`DUKASYNC_MAX_LONGPOLLS`): past either bound
//!   the new pull does not wait, it answers its (empty) page at once.
//!
//! Both early answers are correct pages (protocol §7.5): a long-poll may always answer before a change, so a
//! long-poll is never refused with 503 for being one of many parked ones. Invariant: the counts equal the live
//! [`Parked`] guards; each guard removes itself on drop, whether the pull answered, was ended or was cancelled.
//!
//! Before it parks (authentication, the first read), a long-poll request holds a permit of [`LongPolls::entry`]
//! (`DUKASYNC_MAX_LONGPOLLS` of them), never one of the ordinary requests', and gives it back when it parks:
//! a burst of long-polls cannot take the places of other requests even for the moment before they park.

use crate::domain::ScopeId;
use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The bounds, from `config::Limits`.
#[derive(Debug, Clone, Copy)]
pub struct LongPollLimits {
    pub total: usize,
    pub per_scope: usize,
    pub per_device: usize,
}

/// Why a pull answered without waiting its full `wait`, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Early {
    /// A newer long-poll of the same device and scope took its place.
    Replaced,
    /// The scope's or the server's long-poll bound was reached when it arrived.
    Full,
}

/// How a pull that parked (waited for a change) ended, for metrics (`dukasync_longpoll_duration_seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// A change committed in the scope and the pull answered it.
    Change,
    /// The wait ran out with nothing new.
    Timeout,
    /// Ended before either: replaced by a newer long-poll of its device, or shutdown.
    Ended,
    /// An error answered it after it had waited (PostgreSQL unreachable, a reset after a wake-up).
    Failed,
}

impl Waited {
    pub fn as_str(self) -> &'static str {
        match self {
            Waited::Change => "change",
            Waited::Timeout => "timeout",
            Waited::Ended => "ended",
            Waited::Failed => "error",
        }
    }
}

/// Where a pull records how its wait ended; left empty by a pull that never parked. The HTTP layer gives one to
/// each request that asked to wait, and reads it once the answer is ready.
#[derive(Debug, Clone, Default)]
pub struct WaitSlot(Arc<std::sync::OnceLock<Waited>>);

impl WaitSlot {
    pub fn set(&self, waited: Waited) {
        let _ = self.0.set(waited);
    }

    pub fn get(&self) -> Option<Waited> {
        self.0.get().copied()
    }
}

#[derive(Default)]
struct State {
    total: usize,
    per_scope: HashMap<ScopeId, usize>,
    /// Each device's parked long-polls per scope, oldest first: (id, its end signal).
    per_device: HashMap<(Uuid, ScopeId), VecDeque<(u64, CancellationToken)>>,
    next_id: u64,
}

pub struct LongPolls {
    /// Admission of long-poll requests until they park (`http::observe`); more at once answer 503 `overloaded`.
    pub entry: Arc<tokio::sync::Semaphore>,
    limits: LongPollLimits,
    state: Mutex<State>,
    replaced: AtomicU64,
    full: AtomicU64,
}

/// One parked long-poll. `ended` fires when a newer long-poll of its device and scope replaced it; dropping
/// the guard frees its place.
pub struct Parked {
    polls: Arc<LongPolls>,
    key: (Uuid, ScopeId),
    id: u64,
    pub ended: CancellationToken,
}

impl LongPolls {
    pub fn new(limits: LongPollLimits) -> Self {
        LongPolls {
            entry: Arc::new(tokio::sync::Semaphore::new(limits.total)),
            limits,
            state: Mutex::new(State::default()),
            replaced: AtomicU64::new(0),
            full: AtomicU64::new(0),
        }
    }

    /// A place to wait for `device` in `scope`, or `None`: the pull answers at once instead of waiting.
    pub fn park(self: &Arc<Self>, device: Uuid, scope: &ScopeId) -> Option<Parked> {
        let mut state = self.lock();
        let key = (device, scope.clone());
        // Replacing one of the device's own long-polls frees the place the new one takes: the scope's and the
        // server's counts do not change, so it is allowed even when those are full.
        let mine = state.per_device.get(&key).map_or(0, VecDeque::len);
        if mine >= self.limits.per_device {
            let queue = state.per_device.get_mut(&key).expect("counted above");
            if let Some((_, oldest)) = queue.pop_front() {
                oldest.cancel();
                self.replaced.fetch_add(1, Ordering::Relaxed);
            }
            // The replaced one's guard no longer finds itself in the queue, so it does not count itself out:
            // its place passes to the new one here.
        } else {
            let in_scope = state.per_scope.get(scope).copied().unwrap_or(0);
            if in_scope >= self.limits.per_scope || state.total >= self.limits.total {
                self.full.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            state.total += 1;
            *state.per_scope.entry(scope.clone()).or_default() += 1;
        }
        let id = state.next_id;
        state.next_id += 1;
        let ended = CancellationToken::new();
        state
            .per_device
            .entry(key.clone())
            .or_default()
            .push_back((id, ended.clone()));
        Some(Parked {
            polls: self.clone(),
            key,
            id,
            ended,
        })
    }

    /// Long-polls parked now.
    pub fn parked(&self) -> usize {
        self.lock().total
    }

    /// Pulls that answered before their wait ran out because of these bounds, by reason.
    pub fn early(&self, reason: Early) -> u64 {
        match reason {
            Early::Replaced => self.replaced.load(Ordering::Relaxed),
            Early::Full => self.full.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        let mut state = self.polls.lock();
        let state = &mut *state;
        let Some(queue) = state.per_device.get_mut(&self.key) else {
            return;
        };
        let Some(at) = queue.iter().position(|(id, _)| *id == self.id) else {
            // Replaced: its place went to the long-poll that replaced it.
            return;
        };
        queue.remove(at);
        if queue.is_empty() {
            state.per_device.remove(&self.key);
        }
        state.total -= 1;
        if let Some(count) = state.per_scope.get_mut(&self.key.1) {
            *count -= 1;
            if *count == 0 {
                state.per_scope.remove(&self.key.1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn polls(total: usize, per_scope: usize, per_device: usize) -> Arc<LongPolls> {
        Arc::new(LongPolls::new(LongPollLimits {
            total,
            per_scope,
            per_device,
        }))
    }

    fn scope(id: &str) -> ScopeId {
        ScopeId::parse(id).unwrap()
    }

    #[test]
    fn a_newer_long_poll_of_the_device_ends_the_oldest_and_takes_its_place() {
        let polls = polls(10, 10, 2);
        let device = Uuid::new_v4();
        let first = polls.park(device, &scope("water")).unwrap();
        let second = polls.park(device, &scope("water")).unwrap();
        let third = polls.park(device, &scope("water")).unwrap();
        assert!(first.ended.is_cancelled() && !second.ended.is_cancelled() && !third.ended.is_cancelled());
        assert_eq!(polls.parked(), 2);
        drop(first);
        assert_eq!(polls.parked(), 2, "the replaced one's place went to the third");
        drop((second, third));
        assert_eq!(polls.parked(), 0);
        assert!(polls.lock().per_device.is_empty() && polls.lock().per_scope.is_empty());
        assert_eq!(polls.early(Early::Replaced), 1);
    }

    #[test]
    fn past_the_scope_or_total_bound_a_pull_does_not_wait() {
        let polls = polls(3, 2, 5);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let _one = polls.park(a, &scope("water")).unwrap();
        let _two = polls.park(b, &scope("water")).unwrap();
        assert!(polls.park(a, &scope("water")).is_none(), "scope full");
        let three = polls.park(a, &scope("retail")).unwrap();
        assert!(polls.park(b, &scope("laundry")).is_none(), "total full");
        drop(three);
        assert!(polls.park(b, &scope("laundry")).is_some());
        assert_eq!(polls.early(Early::Full), 2);
    }

    #[test]
    fn devices_and_scopes_are_counted_apart() {
        let polls = polls(10, 10, 1);
        let device = Uuid::new_v4();
        let water = polls.park(device, &scope("water")).unwrap();
        let retail = polls.park(device, &scope("retail")).unwrap();
        let other = polls.park(Uuid::new_v4(), &scope("water")).unwrap();
        assert!(!water.ended.is_cancelled() && !retail.ended.is_cancelled() && !other.ended.is_cancelled());
        assert_eq!(polls.parked(), 3);
    }
}
