//! Device tokens: lookup by hash, issue, revoke.

use crate::{
    domain::principal::{Principal, TokenHash},
    domain::{Role, ScopeId},
};
use sqlx::{PgPool, Row};
use std::{collections::HashMap, sync::Arc, time::Duration};
use uuid::Uuid;

/// Channel on which revocations are announced, so every instance drops its cached tokens at once.
pub const AUTH_CHANNEL: &str = "dukasync_auth";

/// The principal of a live token, recording that the token and its device were seen now.
/// `None` when the token is unknown, revoked or expired.
///
/// The statement commits without waiting for the WAL flush (`synchronous_commit` off for its own transaction
/// only; it runs on its own, on the pool): what it writes is when a token was last seen, which a crash may lose
/// at no cost, and every request of the token waits for this check. Waiting for the flush put the disk's latency
/// in front of those requests every time the token's cache entry expired (tests/token_check_flush.rs).
pub async fn principal_for(db: &PgPool, hash: &TokenHash) -> Result<Option<Principal>, sqlx::Error> {
    Ok(check(db, hash).await?.map(|(principal, _)| principal))
}

/// As [`principal_for`], with how long the token has left to live (`None`: it does not expire), measured by
/// PostgreSQL's clock, which set the expiry, so a cache can stop trusting the token exactly then.
pub async fn check(db: &PgPool, hash: &TokenHash) -> Result<Option<(Principal, Option<Duration>)>, sqlx::Error> {
    let rows = sqlx::query(
        r#"
        WITH t AS (
            UPDATE device_tokens SET last_seen_at = now()
            WHERE token_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
            RETURNING id, device_id, EXTRACT(EPOCH FROM (expires_at - now()))::float8 AS expires_in
        ), d AS (
            UPDATE devices SET last_seen_at = now() FROM t WHERE devices.id = t.device_id
            RETURNING devices.id, devices.user_id
        )
        SELECT t.id AS token_id, t.expires_in, d.id AS device_id, d.user_id, m.scope_id, m.role,
               set_config('synchronous_commit', 'off', true) AS commit_without_flush
        FROM t JOIN d ON d.id = t.device_id
        LEFT JOIN memberships m ON m.user_id = d.user_id
        "#,
    )
    .bind(&hash[..])
    .fetch_all(db)
    .await?;

    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let roles = roles_in(&rows)?;
    let expires_in: Option<f64> = first.try_get("expires_in")?;
    let principal = Principal {
        token_id: first.try_get("token_id")?,
        device_id: first.try_get("device_id")?,
        user_id: first.try_get("user_id")?,
        roles: Arc::new(roles),
    };
    Ok(Some((
        principal,
        expires_in.map(|secs| Duration::try_from_secs_f64(secs).unwrap_or(Duration::ZERO)),
    )))
}

/// Stores a new token for `device_id`; returns its id.
pub async fn insert(db: &PgPool, device_id: Uuid, hash: &TokenHash, label: &str) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::new_v4();
    sqlx::query("INSERT INTO device_tokens (id, device_id, token_hash, label) VALUES ($1, $2, $3, $4)")
        .bind(id)
        .bind(device_id)
        .bind(&hash[..])
        .bind(label)
        .execute(db)
        .await?;
    Ok(id)
}

/// Revokes a token by id and tells every instance; returns whether a live token was revoked.
pub async fn revoke(db: &PgPool, token_id: Uuid) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let revoked = sqlx::query("UPDATE device_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
        .bind(token_id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        == 1;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(AUTH_CHANNEL)
        .bind(token_id.to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(revoked)
}

/// A token as listed by the CLI (never the token itself).
#[derive(Debug, sqlx::FromRow)]
pub struct TokenInfo {
    pub id: Uuid,
    pub device_name: String,
    pub email: String,
    pub label: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub last_seen_at: Option<chrono::DateTime<chrono::Utc>>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

pub async fn list(db: &PgPool) -> Result<Vec<TokenInfo>, sqlx::Error> {
    sqlx::query_as(
        r#"SELECT t.id, d.name AS device_name, u.email, t.label, t.created_at, t.last_seen_at, t.revoked_at
           FROM device_tokens t JOIN devices d ON d.id = t.device_id JOIN users u ON u.id = d.user_id
           ORDER BY t.created_at"#,
    )
    .fetch_all(db)
    .await
}

/// The roles per scope in rows of a principal lookup (columns `scope_id` and `role`, NULL for a user without
/// memberships, as a LEFT JOIN gives them).
pub(super) fn roles_in(rows: &[sqlx::postgres::PgRow]) -> Result<HashMap<ScopeId, Role>, sqlx::Error> {
    let mut roles = HashMap::new();
    for row in rows {
        let scope: Option<String> = row.try_get("scope_id")?;
        let role: Option<String> = row.try_get("role")?;
        if let (Some(scope), Some(role)) = (
            scope.as_deref().and_then(ScopeId::parse),
            role.as_deref().and_then(Role::parse),
        ) {
            roles.insert(scope, role);
        }
    }
    Ok(roles)
}
