//! Device tokens with a lifetime, rotation, and what a scope's administrators may see and revoke
//! (protocol §3.3). Revocation itself is `tokens::revoke`.

use super::tokens::AUTH_CHANNEL;
use crate::domain::{principal::TokenHash, ScopeId};
use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use std::time::Duration;
use uuid::Uuid;

/// Stores a token for `device_id` that expires after `lifetime`; returns its id and expiry.
pub async fn insert_expiring(
    db: impl PgExecutor<'_>,
    device_id: Uuid,
    hash: &TokenHash,
    label: &str,
    lifetime: Duration,
) -> Result<(Uuid, DateTime<Utc>), sqlx::Error> {
    let id = Uuid::new_v4();
    let expires_at = sqlx::query_scalar(
        r#"INSERT INTO device_tokens (id, device_id, token_hash, label, expires_at)
           VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5)) RETURNING expires_at"#,
    )
    .bind(id)
    .bind(device_id)
    .bind(&hash[..])
    .bind(label)
    .bind(lifetime.as_secs_f64())
    .fetch_one(db)
    .await?;
    Ok((id, expires_at))
}

/// Replaces the live token `old` by `new` (same device and label, expiring after `lifetime`); `old` keeps
/// working for `grace` (never longer than it would have anyway). Every instance is told, so none keeps the old
/// token cached past its new expiry. `None` when `old` is no longer live.
pub async fn rotate(
    db: &PgPool,
    old: Uuid,
    new: &TokenHash,
    lifetime: Duration,
    grace: Duration,
) -> Result<Option<(Uuid, Uuid, DateTime<Utc>)>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let current: Option<(Uuid, String)> = sqlx::query_as(
        r#"UPDATE device_tokens
           SET expires_at = LEAST(coalesce(expires_at, 'infinity'), now() + make_interval(secs => $2))
           WHERE id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
           RETURNING device_id, label"#,
    )
    .bind(old)
    .bind(grace.as_secs_f64())
    .fetch_optional(&mut *tx)
    .await?;
    let Some((device_id, label)) = current else {
        return Ok(None);
    };
    let (id, expires_at) = insert_expiring(&mut *tx, device_id, new, &label, lifetime).await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(AUTH_CHANNEL)
        .bind(old.to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some((id, device_id, expires_at)))
}

/// A token of one of a scope's members, as the scope's administrators see it (never the token itself).
#[derive(Debug, sqlx::FromRow)]
pub struct ScopeToken {
    pub id: Uuid,
    pub device_id: Uuid,
    pub device_name: String,
    pub user_email: String,
    pub role: String,
    pub label: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

const SCOPE_TOKENS: &str = r#"
    SELECT t.id, d.id AS device_id, d.name AS device_name, u.email AS user_email, m.role, t.label, t.created_at,
           t.last_seen_at, t.expires_at, t.revoked_at
    FROM memberships m JOIN users u ON u.id = m.user_id JOIN devices d ON d.user_id = u.id
    JOIN device_tokens t ON t.device_id = d.id
    WHERE m.scope_id = $1"#;

/// Every token of the scope's members, by user email, device name and creation.
pub async fn list_in_scope(db: &PgPool, scope: &ScopeId) -> Result<Vec<ScopeToken>, sqlx::Error> {
    sqlx::query_as(&format!("{SCOPE_TOKENS} ORDER BY u.email, d.name, t.created_at"))
        .bind(scope.as_str())
        .fetch_all(db)
        .await
}

/// The token `id` if its user is a member of `scope`; `None` otherwise (another scope's token included).
pub async fn find_in_scope(db: &PgPool, scope: &ScopeId, id: Uuid) -> Result<Option<ScopeToken>, sqlx::Error> {
    sqlx::query_as(&format!("{SCOPE_TOKENS} AND t.id = $2"))
        .bind(scope.as_str())
        .bind(id)
        .fetch_optional(db)
        .await
}
