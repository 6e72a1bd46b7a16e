//! Redis as a shared cache that is never trusted.
//!
//! - **Integrity:** every value is stored as `check ‖ payload`, where `check` is the first 16 bytes of
//!   `blake3(key ‖ 0x00 ‖ payload)`. A value that fails the check (truncated, flipped, written under another
//!   key, or garbage) is a miss, counted as `corrupt`, and is overwritten by the next write of that key.
//! - **Time:** every command is bounded by `DUKASYNC_REDIS_TIMEOUT_MS`. A failure opens a circuit breaker:
//!   Redis is bypassed (a "fallback": the caller reads PostgreSQL) for a backoff that doubles from 200 ms up to
//!   5 s, after which the next call tries again on a fresh connection. So a hung Redis costs at most one
//!   timeout per backoff period, and a Redis that comes back is used again without a restart.
//! - **Memory:** writes happen in the background, at most [`MAX_WRITES_IN_FLIGHT`] at once (more are dropped),
//!   values above [`MAX_VALUE_BYTES`] are not stored, and every key expires after [`TTL`], so entries of an old
//!   format or a dead history leave even a Redis configured without eviction.

use super::{
    stats::{CacheKind, Stats},
    Redis,
};
use bytes::Bytes;
use std::{
    sync::{atomic::Ordering::Relaxed, Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::sync::Semaphore;

/// Writes to Redis in flight at once; beyond this they are dropped (a cache write is never worth queueing).
pub const MAX_WRITES_IN_FLIGHT: usize = 64;
/// Largest value stored in Redis.
pub const MAX_VALUE_BYTES: usize = 8 * 1024 * 1024;
/// Expiry of every key.
pub const TTL: Duration = Duration::from_secs(7 * 24 * 3600);

const CHECK_LEN: usize = 16;
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

struct Breaker {
    open_until: Option<Instant>,
    backoff: Duration,
}

pub struct SharedCache {
    redis: Arc<Redis>,
    stats: Arc<Stats>,
    breaker: Mutex<Breaker>,
    writes: Arc<Semaphore>,
}

/// `check ‖ payload`.
pub fn seal(key: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(CHECK_LEN + payload.len());
    out.extend_from_slice(&check(key, payload));
    out.extend_from_slice(payload);
    out
}

/// The payload, if `value` passes its check for `key`.
pub fn open(key: &str, value: &[u8]) -> Option<Bytes> {
    if value.len() < CHECK_LEN {
        return None;
    }
    let (stored, payload) = value.split_at(CHECK_LEN);
    (stored == check(key, payload)).then(|| Bytes::copy_from_slice(payload))
}

fn check(key: &str, payload: &[u8]) -> [u8; CHECK_LEN] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(key.as_bytes());
    hasher.update(&[0]);
    hasher.update(payload);
    let mut out = [0u8; CHECK_LEN];
    out.copy_from_slice(&hasher.finalize().as_bytes()[..CHECK_LEN]);
    out
}

impl SharedCache {
    pub fn new(redis: Arc<Redis>, stats: Arc<Stats>) -> Self {
        stats.redis_up.store(1, Relaxed);
        SharedCache {
            redis,
            stats,
            breaker: Mutex::new(Breaker {
                open_until: None,
                backoff: BACKOFF_MIN,
            }),
            writes: Arc::new(Semaphore::new(MAX_WRITES_IN_FLIGHT)),
        }
    }

    /// Looks up `keys` with one `MGET`. Each answer is the verified payload, or `None` for a miss, a corrupt
    /// value, or when Redis could not be asked (counted as fallbacks).
    pub async fn get_many(&self, kind: CacheKind, keys: &[String]) -> Vec<Option<Bytes>> {
        let n = keys.len();
        if n == 0 {
            return Vec::new();
        }
        if !self.allowed() {
            self.stats.fallback(kind, n as u64);
            return vec![None; n];
        }
        let answer = match self.redis.connection().await {
            None => None,
            Some(mut conn) => {
                let mut cmd = redis::cmd("MGET");
                cmd.arg(keys);
                tokio::time::timeout(self.redis.timeout(), cmd.query_async::<Vec<Option<Vec<u8>>>>(&mut conn))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .filter(|values| values.len() == n)
            }
        };
        let Some(values) = answer else {
            self.failed().await;
            self.stats.fallback(kind, n as u64);
            return vec![None; n];
        };
        self.succeeded();
        keys.iter()
            .zip(values)
            .map(|(key, value)| {
                let payload = value.and_then(|raw| {
                    let opened = open(key, &raw);
                    if opened.is_none() {
                        self.stats.corrupt(kind);
                    }
                    opened
                });
                self.stats.redis_lookup(kind, payload.is_some());
                payload
            })
            .collect()
    }

    /// Stores `payload` under `key` in the background; dropped when Redis is bypassed, too many writes are in
    /// flight, or the value is too large.
    pub fn put(self: &Arc<Self>, kind: CacheKind, key: String, payload: &[u8]) {
        if payload.len() > MAX_VALUE_BYTES || !self.allowed() {
            self.stats.redis_write_dropped(kind);
            return;
        }
        let Ok(permit) = self.writes.clone().try_acquire_owned() else {
            self.stats.redis_write_dropped(kind);
            return;
        };
        let value = seal(&key, payload);
        let this = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            this.set(kind, &key, &value).await;
        });
    }

    /// Stores `payload` under `key` and waits for Redis to confirm (for `dukasync cache warm`).
    pub async fn put_and_wait(&self, kind: CacheKind, key: &str, payload: &[u8]) -> bool {
        if payload.len() > MAX_VALUE_BYTES {
            self.stats.redis_write_dropped(kind);
            return false;
        }
        self.set(kind, key, &seal(key, payload)).await
    }

    async fn set(&self, kind: CacheKind, key: &str, sealed: &[u8]) -> bool {
        let Some(mut conn) = self.redis.connection().await else {
            self.failed().await;
            self.stats.redis_write_dropped(kind);
            return false;
        };
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(sealed).arg("EX").arg(TTL.as_secs());
        let done = tokio::time::timeout(self.redis.timeout(), cmd.query_async::<()>(&mut conn)).await;
        if matches!(done, Ok(Ok(()))) {
            self.succeeded();
            self.stats.redis_written(kind, sealed.len());
            true
        } else {
            self.failed().await;
            self.stats.redis_write_dropped(kind);
            false
        }
    }

    fn allowed(&self) -> bool {
        let breaker = self.lock();
        breaker.open_until.is_none_or(|until| Instant::now() >= until)
    }

    fn succeeded(&self) {
        let mut breaker = self.lock();
        breaker.open_until = None;
        breaker.backoff = BACKOFF_MIN;
        self.stats.redis_up.store(1, Relaxed);
    }

    async fn failed(&self) {
        {
            let mut breaker = self.lock();
            let backoff = breaker.backoff;
            breaker.open_until = Some(Instant::now() + backoff);
            breaker.backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        self.stats.redis_errors.fetch_add(1, Relaxed);
        self.stats.redis_up.store(0, Relaxed);
        // The next call reconnects: a connection to a restarted Redis would otherwise stay broken.
        self.redis.reset().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_under_their_key_and_unchanged() {
        let sealed = seal("k1", b"payload");
        assert_eq!(open("k1", &sealed).as_deref(), Some(&b"payload"[..]));
        assert_eq!(open("k2", &sealed), None, "a value moved to another key is refused");
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(open("k1", &flipped), None);
        assert_eq!(open("k1", &sealed[..10]), None);
        assert_eq!(open("k1", b""), None);
    }
}
