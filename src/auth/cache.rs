//! The token cache: a checked token is trusted for `ttl` without asking PostgreSQL again.
//!
//! Revocation reaches every instance by NOTIFY on `dukasync_auth` (the listener calls [`TokenCache::clear`]),
//! and in any case within `ttl` (default 5 s), which bounds how long a revoked token can still be used if a
//! notification is lost. The cache is bounded: at most `MAX_ENTRIES` tokens, unknown tokens included.

use super::{hash_token, Principal, TokenHash};
use crate::{error::Result, store};
use sqlx::PgPool;
use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

const MAX_ENTRIES: usize = 10_000;

struct Entry {
    principal: Option<Principal>,
    checked_at: Instant,
}

pub struct TokenCache {
    ttl: Duration,
    entries: Mutex<HashMap<TokenHash, Entry>>,
}

impl TokenCache {
    pub fn new(ttl: Duration) -> Self {
        TokenCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The principal of a well-formed token, or `None` when the token is unknown, revoked or expired.
    pub async fn authenticate(&self, db: &PgPool, token: &str) -> Result<Option<Principal>> {
        let hash = hash_token(token);
        if let Some(hit) = self.fresh(&hash) {
            return Ok(hit);
        }
        let principal = store::tokens::principal_for(db, &hash).await?;
        self.insert(hash, principal.clone());
        Ok(principal)
    }

    /// Forgets every cached token, so the next request of each is checked against PostgreSQL.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn fresh(&self, hash: &TokenHash) -> Option<Option<Principal>> {
        let entries = self.lock();
        let entry = entries.get(hash)?;
        (entry.checked_at.elapsed() < self.ttl).then(|| entry.principal.clone())
    }

    fn insert(&self, hash: TokenHash, principal: Option<Principal>) {
        let mut entries = self.lock();
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
            },
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenHash, Entry>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts and removals).
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
