//! Both cache layers behind one interface: the in-process cache first, then Redis, then the caller computes
//! from PostgreSQL and stores the result in both.
//!
//! Without Redis the in-process cache serves alone; with `DUKASYNC_CACHE_MEMORY_BYTES=0` and no Redis nothing is
//! cached at all. Values found in Redis are decoded and verified by the caller's `decode` before they are used
//! or promoted into memory; anything that fails is a miss.

use super::{
    memory::{MemoryCache, Value},
    shared::SharedCache,
    stats::{CacheKind, Stats},
    Redis,
};
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::OnceCell;

pub struct Cache {
    pub stats: Arc<Stats>,
    memory: MemoryCache,
    shared: Option<Arc<SharedCache>>,
    namespace: OnceCell<String>,
}

impl Cache {
    pub fn new(memory_budget: usize, redis: Option<Arc<Redis>>) -> Self {
        let stats = Arc::new(Stats::default());
        Cache {
            memory: MemoryCache::new(memory_budget, stats.clone()),
            shared: redis.map(|r| Arc::new(SharedCache::new(r, stats.clone()))),
            namespace: OnceCell::new(),
            stats,
        }
    }

    /// No cache at all: every read goes to PostgreSQL.
    pub fn disabled() -> Self {
        Self::new(0, None)
    }

    pub fn enabled(&self) -> bool {
        self.memory.enabled() || self.shared.is_some()
    }

    pub fn redis_configured(&self) -> bool {
        self.shared.is_some()
    }

    pub fn memory_budget(&self) -> usize {
        self.memory.budget()
    }

    /// The key namespace (what tells this database's entries from another's), asked of `ask` once (the
    /// caller passes `store::cache_namespace`). `None` (it failed: PostgreSQL unreachable) means "do not cache
    /// this request"; the request itself then fails or succeeds on PostgreSQL alone.
    pub async fn namespace<F, E>(&self, ask: impl FnOnce() -> F) -> Option<&str>
    where
        F: std::future::Future<Output = Result<String, E>>,
    {
        if !self.enabled() {
            return None;
        }
        self.namespace.get_or_try_init(ask).await.ok().map(String::as_str)
    }

    /// The namespace if it was already asked (never waits on PostgreSQL).
    pub fn namespace_known(&self) -> Option<&str> {
        self.namespace.get().map(String::as_str)
    }

    /// Looks `keys` up in memory, then the rest in Redis with one round trip. A Redis value counts only if
    /// `decode` accepts it (else it is counted as corrupt); accepted values are promoted into memory.
    pub async fn get_many(
        &self,
        kind: CacheKind,
        keys: &[String],
        decode: impl Fn(&str, &Bytes) -> Option<Value>,
    ) -> Vec<Option<Value>> {
        let mut found: Vec<Option<Value>> = keys
            .iter()
            .map(|key| {
                let hit = self.memory.get(key);
                if self.memory.enabled() {
                    self.stats.memory_lookup(kind, hit.is_some());
                }
                hit
            })
            .collect();
        let Some(shared) = &self.shared else {
            return found;
        };
        let missing: Vec<usize> = (0..keys.len()).filter(|&i| found[i].is_none()).collect();
        if missing.is_empty() {
            return found;
        }
        let asked: Vec<String> = missing.iter().map(|&i| keys[i].clone()).collect();
        let answers = shared.get_many(kind, &asked).await;
        for (i, answer) in missing.into_iter().zip(answers) {
            let Some(payload) = answer else { continue };
            match decode(&keys[i], &payload) {
                Some(value) => {
                    self.memory.put(&keys[i], kind, value.clone(), payload.len());
                    found[i] = Some(value);
                }
                None => self.stats.corrupt(kind),
            }
        }
        found
    }

    /// One key; see [`Cache::get_many`].
    pub async fn get(
        &self,
        kind: CacheKind,
        key: &str,
        decode: impl Fn(&str, &Bytes) -> Option<Value>,
    ) -> Option<Value> {
        self.get_many(kind, &[key.to_string()], decode).await.pop().flatten()
    }

    /// Stores a value in memory and (in the background) in Redis; `encoded` is what Redis holds.
    pub fn put(&self, kind: CacheKind, key: &str, value: Value, encoded: &[u8]) {
        self.memory.put(key, kind, value, encoded.len());
        if let Some(shared) = &self.shared {
            shared.put(kind, key.to_string(), encoded);
        }
    }

    /// Stores in memory and in Redis, waiting for Redis to confirm (for `dukasync cache warm`). False when
    /// Redis is not configured or the write failed.
    pub async fn put_and_wait(&self, kind: CacheKind, key: &str, value: Value, encoded: &[u8]) -> bool {
        self.memory.put(key, kind, value, encoded.len());
        match &self.shared {
            Some(shared) => shared.put_and_wait(kind, key, encoded).await,
            None => false,
        }
    }

    /// Stores in memory only (derived values that are cheap to recompute, such as compressed bodies).
    pub fn put_local(&self, kind: CacheKind, key: &str, value: Value, size: usize) {
        self.memory.put(key, kind, value, size);
    }

    /// Looks up memory only, without counting the lookup (for a caller that counts what it used with
    /// [`Cache::count_local_hits`], and otherwise falls back to a lookup that counts).
    pub fn peek_local(&self, key: &str) -> Option<Value> {
        self.memory.get(key)
    }

    /// Counts `hits` memory hits of `kind`.
    pub fn count_local_hits(&self, kind: CacheKind, hits: usize) {
        for _ in 0..hits {
            self.stats.memory_lookup(kind, true);
        }
    }

    /// Looks up memory only.
    pub fn get_local(&self, kind: CacheKind, key: &str) -> Option<Value> {
        let hit = self.memory.get(key);
        if self.memory.enabled() {
            self.stats.memory_lookup(kind, hit.is_some());
        }
        hit
    }

    /// Whether anything is kept in this process's memory (`DUKASYNC_CACHE_MEMORY_BYTES` above 0).
    pub fn memory_enabled(&self) -> bool {
        self.memory.enabled()
    }

    /// Renders the `dukasync_cache_*` metric families.
    pub fn render_metrics(&self, out: &mut String) {
        self.stats.render(out, self.memory.budget(), self.shared.is_some());
    }
}
