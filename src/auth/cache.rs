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
//!
//! JWTs (`authenticate_jwt`) share the cache, keyed by the blake3 hash of the whole token like device tokens,
//! and an entry is never kept past the token's own `exp`. Only accepted JWTs are kept: a refused one may become
//! valid (its `kid` appears in the JWKS, its `sub` gets a user), and refusing one costs no database query.

use super::{hash_token, jwt::JwtVerifier, Principal, TokenHash};
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
    /// `ttl` after the check, or earlier when the token itself expires earlier (JWTs; a device token's expiry,
    /// including a rotated token's grace period, which may be shorter than `ttl`).
    valid_until: Instant,
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
                let keep = checked
                    .as_ref()
                    .and_then(|(_, left)| *left)
                    .map_or(self.ttl, |left| self.ttl.min(left));
                let principal = checked.map(|(principal, _)| principal);
                self.insert(generation, hash, principal.clone(), keep);
                Ok::<_, sqlx::Error>(principal)
            })
            .await?;
        Ok(principal.as_ref().clone())
    }

    /// The principal of a JWT signed by the ERP's backend, or `None` when it is refused (by `verifier`, or
    /// because no user has its `sub`) or JWTs are not configured.
    pub async fn authenticate_jwt(
        &self,
        db: &PgPool,
        verifier: Option<&JwtVerifier>,
        token: &str,
    ) -> Result<Option<Principal>> {
        let Some(verifier) = verifier else {
            return Ok(None);
        };
        let hash = hash_token(token);
        if let Some(hit) = self.fresh(&hash) {
            return Ok(hit);
        }
        let verified = match verifier.verify(token).await {
            Ok(verified) => verified,
            Err(refusal) => {
                // The reason helps whoever configures the backend; the token itself is never logged.
                tracing::debug!(reason = refusal.as_str(), "auth.jwt_refused");
                return Ok(None);
            }
        };
        let lookup = || store::backend_users::principal_for(db, &verified.subject, &verified.device, &hash);
        let left = verified.expires_at.saturating_sub(chrono::Utc::now().timestamp());
        let keep = self.ttl.min(Duration::from_secs(u64::try_from(left).unwrap_or(0)));
        if keep.is_zero() {
            return Ok(lookup().await?);
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let principal = self
            .checks
            .run((generation, hash), || async {
                let principal = lookup().await?;
                if principal.is_some() {
                    self.insert(generation, hash, principal.clone(), keep);
                }
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
        (Instant::now() < entry.valid_until).then(|| entry.principal.clone())
    }

    /// Keeps a check's answer, unless the cache was cleared since the check began (`generation`): the answer
    /// may predate a revocation.
    fn insert(&self, generation: u64, hash: TokenHash, principal: Option<Principal>, keep: Duration) {
        let mut entries = self.lock();
        // Read under the lock `clear` bumps it under: a clear either happened before (and is seen here) or
        // happens after this insert (and removes it).
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            let now = Instant::now();
            entries.retain(|_, e| now < e.valid_until);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(
            hash,
            Entry {
                principal,
                valid_until: Instant::now() + keep,
            },
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenHash, Entry>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts and removals).
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
