//! Users named by the ERP's backend (a JWT's `sub`) and their devices (its `device` claim).

use crate::domain::principal::{Principal, TokenHash};
use sqlx::{PgPool, Row};
use std::sync::Arc;
use uuid::Uuid;

/// The principal of a verified JWT: the user whose `external_id` is `subject`, with their memberships, and
/// their device `device`, created on first sight and marked seen now. `None` when no user has that id.
///
/// Like `tokens::principal_for`, the statement commits without waiting for the WAL flush: it writes only
/// when the device was last seen (and, once, the device row, which the next request recreates if a crash
/// loses it).
pub async fn principal_for(
    db: &PgPool,
    subject: &str,
    device: &str,
    token: &TokenHash,
) -> Result<Option<Principal>, sqlx::Error> {
    let rows = sqlx::query(
        r#"
        WITH u AS (
            SELECT id FROM users WHERE external_id = $1
        ), d AS (
            INSERT INTO devices (id, user_id, name, external_id, last_seen_at)
            SELECT $3, u.id, 'jwt:' || $2, $2, now() FROM u
            ON CONFLICT (user_id, external_id) DO UPDATE SET last_seen_at = now()
            RETURNING devices.id, devices.user_id
        )
        SELECT d.id AS device_id, d.user_id, m.scope_id, m.role,
               set_config('synchronous_commit', 'off', true) AS commit_without_flush
        FROM d LEFT JOIN memberships m ON m.user_id = d.user_id
        "#,
    )
    .bind(subject)
    .bind(device)
    .bind(Uuid::new_v4())
    .fetch_all(db)
    .await?;

    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let roles = super::tokens::roles_in(&rows)?;
    Ok(Some(Principal {
        token_id: token_id(token),
        device_id: first.try_get("device_id")?,
        user_id: first.try_get("user_id")?,
        roles: Arc::new(roles),
    }))
}

/// A JWT has no `device_tokens` row; its id is derived from the token's hash (a version 8 UUID, so it can never
/// equal a stored token's random version 4 id), stable for the token's life.
pub fn token_id(token: &TokenHash) -> Uuid {
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&token[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// Sets the ERP's id of a user (`dukasync user-add --external-id`).
pub async fn set_external_id(db: &PgPool, user: Uuid, external_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET external_id = $2 WHERE id = $1")
        .bind(user)
        .bind(external_id)
        .execute(db)
        .await
        .map(|_| ())
}
