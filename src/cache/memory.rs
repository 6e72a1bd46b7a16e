//! The bounded in-process cache: least recently used entries go first once the byte budget is spent.
//!
//! A hit only stamps the entry with the time of its use; the index of uses by time is brought up to date when
//! something must be evicted (see `Inner::evict_one`). A hit is the hot path (every cached pull looks up its
//! windows and members here), so it takes no allocation and no index update under the lock; eviction stays
//! exactly least recently used.
//!
//! It serves alone when no Redis is configured, and as the hot layer in front of Redis otherwise. Everything
//! it holds is immutable (content-addressed snapshots, closed feed windows), so instances never need to agree
//! on anything and nothing is ever invalidated: an entry is either correct forever or never looked up again.
//!
//! The budget counts each entry's payload (for a decoded window, its estimated heap) plus a fixed overhead for
//! its key and bookkeeping, so many tiny entries cannot exceed it either. An entry larger than an eighth of the budget is not kept at all: one huge
//! snapshot must not flush everything else.

use super::stats::{CacheKind, Stats};
use bytes::Bytes;
use std::{
    any::Any,
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

/// Bytes charged per entry on top of its payload (key, map slots, LRU index).
const ENTRY_OVERHEAD: usize = 160;

/// A decoded value the cache keeps as it is (a feed window): the cache knows only its size, and the caller
/// that put it there downcasts it back ([`Value::into_decoded`]).
pub trait Decoded: Any + Send + Sync {
    /// An estimate of the heap it occupies, which the budget charges.
    fn resident_bytes(&self) -> usize;
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// A value held in memory: raw bytes, or an already decoded value.
#[derive(Clone)]
pub enum Value {
    Bytes(Bytes),
    Decoded(Arc<dyn Decoded>),
}

impl Value {
    pub fn into_bytes(self) -> Option<Bytes> {
        match self {
            Value::Bytes(b) => Some(b),
            Value::Decoded(_) => None,
        }
    }

    /// The decoded value, if it is one of type `T`.
    pub fn into_decoded<T: Decoded>(self) -> Option<Arc<T>> {
        match self {
            Value::Decoded(d) => d.into_any().downcast().ok(),
            Value::Bytes(_) => None,
        }
    }
}

struct Entry {
    value: Value,
    kind: CacheKind,
    size: usize,
    /// Its last use.
    tick: u64,
    /// Where `order` files it: its last use when it was put or last met by eviction, at most `tick`.
    filed: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Arc<str>, Entry, foldhash::fast::RandomState>,
    /// Each entry once, under its `filed` time: never later than its own `tick`, which a hit moves on alone.
    order: BTreeMap<u64, Arc<str>>,
    tick: u64,
    bytes: usize,
}

impl Inner {
    /// Removes the least recently used entry, if any. The first in `order` whose tick is still its entry's
    /// own is that entry: every other entry's own tick is at least the one it is filed under, which is later.
    /// One filed too early (used since) is filed again under its own tick on the way.
    fn evict_one(&mut self) -> Option<Entry> {
        while let Some((filed, key)) = self.order.pop_first() {
            let Some(entry) = self.entries.get_mut(&key) else {
                continue; // not expected: a record leaves with its entry
            };
            if entry.tick == filed {
                return self.entries.remove(&key);
            }
            entry.filed = entry.tick;
            self.order.insert(entry.tick, key);
        }
        None
    }
}

pub struct MemoryCache {
    budget: usize,
    inner: Mutex<Inner>,
    stats: Arc<Stats>,
}

impl MemoryCache {
    /// A cache holding at most `budget` bytes; 0 disables it (every lookup misses, nothing is kept).
    pub fn new(budget: usize, stats: Arc<Stats>) -> Self {
        MemoryCache {
            budget,
            inner: Mutex::new(Inner::default()),
            stats,
        }
    }

    pub fn enabled(&self) -> bool {
        self.budget > 0
    }

    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Largest single entry kept.
    pub fn max_entry(&self) -> usize {
        self.budget / 8
    }

    pub fn get(&self, key: &str) -> Option<Value> {
        if !self.enabled() {
            return None;
        }
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let entry = inner.entries.get_mut(key)?;
        entry.tick = tick;
        Some(entry.value.clone())
    }

    /// Keeps `value` (whose payload is `size` bytes), evicting the least recently used entries as needed.
    /// A decoded value (a feed window) is charged at least its estimated heap, which is several times its encoded size.
    pub fn put(&self, key: &str, kind: CacheKind, value: Value, size: usize) {
        let payload = match &value {
            Value::Decoded(decoded) => size.max(decoded.resident_bytes()),
            Value::Bytes(_) => size,
        };
        let size = payload + ENTRY_OVERHEAD + key.len();
        if !self.enabled() || size > self.max_entry() {
            return;
        }
        let mut inner = self.lock();
        if let Some(old) = inner.entries.remove(key) {
            inner.order.remove(&old.filed);
            inner.bytes -= old.size;
            self.stats.memory_removed(old.kind, old.size);
        }
        while inner.bytes + size > self.budget {
            let Some(old) = inner.evict_one() else {
                break;
            };
            inner.bytes -= old.size;
            self.stats.memory_removed(old.kind, old.size);
            self.stats.evicted(old.kind);
        }
        inner.tick += 1;
        let tick = inner.tick;
        let key: Arc<str> = Arc::from(key);
        inner.order.insert(tick, key.clone());
        inner.entries.insert(
            key,
            Entry {
                value,
                kind,
                size,
                tick,
                filed: tick,
            },
        );
        inner.bytes += size;
        self.stats.memory_added(kind, size);
    }

    /// Bytes currently charged against the budget.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize) -> Value {
        Value::Bytes(Bytes::from(vec![0u8; n]))
    }

    #[test]
    fn stays_within_its_budget_and_evicts_the_least_recently_used() {
        let stats = Arc::new(Stats::default());
        let cache = MemoryCache::new(8 * 1000, stats.clone());
        for i in 0..100 {
            cache.put(&format!("k{i}"), CacheKind::SnapshotBlob, bytes(500), 500);
            assert!(cache.bytes() <= cache.budget());
            // k0 is used all the time, so it is never the least recently used.
            assert!(cache.get("k0").is_some(), "k0 evicted at {i}");
        }
        assert!(cache.get("k1").is_none(), "old entries go first");
        assert!(cache.get("k99").is_some());
        assert!(stats.snapshot().iter().any(|s| s.evictions > 0));
    }

    #[test]
    fn eviction_follows_the_last_use_also_of_entries_found_or_replaced_since_they_were_put() {
        // Room for eight entries (an entry may take an eighth of the budget at most).
        let each = 1000 + ENTRY_OVERHEAD + 2;
        let cache = MemoryCache::new(8 * each + each / 2, Arc::new(Stats::default()));
        let first: Vec<String> = (0..8).map(|i| format!("a{i}")).collect();
        for key in &first {
            cache.put(key, CacheKind::SnapshotBlob, bytes(1000), 1000);
        }
        // Uses since they were put, in this order: a0 found, a1 replaced, a2 found twice, a0 found again.
        // Least recently used first, the order is now a3..a7, a1, a2, a0.
        assert!(cache.get("a0").is_some());
        cache.put("a1", CacheKind::SnapshotBlob, bytes(1000), 1000);
        assert!(cache.get("a2").is_some());
        assert!(cache.get("a2").is_some());
        assert!(cache.get("a0").is_some());
        let mut evicted: Vec<String> = Vec::new();
        for i in 0..8 {
            cache.put(&format!("b{i}"), CacheKind::SnapshotBlob, bytes(1000), 1000);
            assert_eq!(cache.bytes(), 8 * each);
            let inner = cache.lock();
            let gone: Vec<&String> = first
                .iter()
                .filter(|k| !inner.entries.contains_key(k.as_str()) && !evicted.contains(k))
                .collect();
            assert_eq!(gone.len(), 1, "one entry goes for each new one");
            evicted.push(gone[0].clone());
        }
        assert_eq!(evicted, ["a3", "a4", "a5", "a6", "a7", "a1", "a2", "a0"]);
    }

    #[test]
    fn oversized_entries_and_a_zero_budget_keep_nothing() {
        let cache = MemoryCache::new(8 * 1000, Arc::new(Stats::default()));
        cache.put("big", CacheKind::SnapshotBlob, bytes(2000), 2000);
        assert!(cache.get("big").is_none());
        let off = MemoryCache::new(0, Arc::new(Stats::default()));
        off.put("k", CacheKind::SnapshotBlob, bytes(1), 1);
        assert!(off.get("k").is_none());
        assert_eq!(off.bytes(), 0);
    }

    #[test]
    fn replacing_an_entry_does_not_leak_budget() {
        let cache = MemoryCache::new(8 * 1000, Arc::new(Stats::default()));
        for _ in 0..10 {
            cache.put("same", CacheKind::Window, bytes(100), 100);
            assert!(cache.get("same").is_some());
        }
        assert_eq!(cache.bytes(), 100 + ENTRY_OVERHEAD + "same".len());
        assert_eq!(cache.lock().order.len(), 1, "nor records in the eviction index");
    }
}
