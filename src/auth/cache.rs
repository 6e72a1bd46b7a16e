//! The token cache: a checked token is trusted for `ttl` without asking PostgreSQL again.
//!
//! Revocation reaches every instance by NOTIFY on `dukasync_auth` (the listener calls [`TokenCache::clear`]),
//! and in any case within `ttl` (default 5 s), which bounds how long a revoked token can still be used if a
//! notification is lost. The cache is bounded: at most `MAX_ENTRIES` tokens, unknown tokens included.
//!
//! Concurrent requests of one token that miss share one check (tests/db/token_cache.rs). Why: the check also
//! records when the token was last seen (an UPDATE of its row), so concurrent checks of one token would queue
//! on that row, each behind the previous one's commit, every time the entry expires.
//!
//! A check that was running when the cache was cleared answers the requests that were already waiting for it
//! (they arrived before the revocation was heard) but is not kept: later requests check again.

use super::{hash_token, Principal, TokenHash};
use crate::{concurrency::single_flight::SingleFlight, error::Result, store};
use sqlx::PgPool;
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

const MAX_ENTRIES: usize = 10_000;

struct Entry {
    principal: Option<Principal>,
    checked_at: Instant,
    /// When the token expires, if it does: the entry is not trusted past it, however long `ttl` is (a rotated
    /// token's grace period may be shorter than `ttl`).
    expires: Option<Instant>,
}

pub struct TokenCache {
    ttl: Duration,
    entries: Mutex<HashMap<TokenHash, Entry>>,
    /// Bumped by every [`TokenCache::clear`]; a check keeps its answer only if no clear happened since it began.
    generation: AtomicU64,
    /// Checks running, by the generation they began in and the token.
    checks: SingleFlight<(u64, TokenHash), Option<Principal>>,
}

impl TokenCache {
    pub fn new(ttl: Duration) -> Self {
        TokenCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            checks: SingleFlight::default(),
        }
    }

    /// The principal of a well-formed token, or `None` when the token is unknown, revoked or expired.
    pub async fn authenticate(&self, db: &PgPool, token: &str) -> Result<Option<Principal>> {
        let hash = hash_token(token);
        if let Some(hit) = self.fresh(&hash) {
            return Ok(hit);
        }
        if self.ttl.is_zero() {
            // The cache is off: every request checks for itself (a shared check may have begun before it).
            return Ok(store::tokens::principal_for(db, &hash).await?);
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let principal = self
            .checks
            .run((generation, hash), || async {
                let checked = store::tokens::check(db, &hash).await?;
                let expires = checked
                    .as_ref()
                    .and_then(|(_, left)| *left)
                    .map(|left| Instant::now() + left);
                let principal = checked.map(|(principal, _)| principal);
                self.insert(generation, hash, principal.clone(), expires);
                Ok::<_, sqlx::Error>(principal)
            })
            .await?;
        Ok(principal.as_ref().clone())
    }

    /// Forgets every cached token, so the next request of each is checked against PostgreSQL (checks running
    /// now are not joined by later requests, and their answers are not kept).
    pub fn clear(&self) {
        let mut entries = self.lock();
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.clear();
    }

    fn fresh(&self, hash: &TokenHash) -> Option<Option<Principal>> {
        let entries = self.lock();
        let entry = entries.get(hash)?;
        let expired = entry.expires.is_some_and(|at| Instant::now() >= at);
        (entry.checked_at.elapsed() < self.ttl && !expired).then(|| entry.principal.clone())
    }

    /// Keeps a check's answer, unless the cache was cleared since the check began (`generation`): the answer
    /// may predate a revocation.
    fn insert(&self, generation: u64, hash: TokenHash, principal: Option<Principal>, expires: Option<Instant>) {
        let mut entries = self.lock();
        // Read under the lock `clear` bumps it under: a clear either happened before (and is seen here) or
        // happens after this insert (and removes it).
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            let ttl = self.ttl;
            entries.retain(|_, e| e.checked_at.elapsed() < ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(
            hash,
            Entry {
                principal,
                checked_at: Instant::now(),
                expires,
            },
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenHash, Entry>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts and removals).
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
