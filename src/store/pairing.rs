//! Pairing codes (protocol §3.3): stored by hash, redeemed once.

use crate::domain::{principal::TokenHash, Role, ScopeId};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

/// A code to store; its plaintext is never stored.
pub struct NewCode<'a> {
    pub hash: &'a TokenHash,
    pub scope: &'a ScopeId,
    pub email: &'a str,
    /// Only for a user who does not exist yet.
    pub display_name: Option<&'a str>,
    pub role: Role,
    pub device_name: Option<&'a str>,
    pub created_by: Option<Uuid>,
    pub ttl: Duration,
}

/// Stores a code and returns its expiry; codes that expired more than a day ago are swept on the way, so the
/// table stays small without a background job.
pub async fn insert(db: &PgPool, code: &NewCode<'_>) -> Result<DateTime<Utc>, sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query("DELETE FROM pairing_codes WHERE expires_at < now() - interval '1 day'")
        .execute(&mut *tx)
        .await?;
    let expires_at = sqlx::query_scalar(
        r#"INSERT INTO pairing_codes (id, code_hash, scope_id, email, display_name, role, device_name, created_by,
                                      expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + make_interval(secs => $9))
           RETURNING expires_at"#,
    )
    .bind(Uuid::new_v4())
    .bind(&code.hash[..])
    .bind(code.scope.as_str())
    .bind(code.email)
    .bind(code.display_name)
    .bind(code.role.as_str())
    .bind(code.device_name)
    .bind(code.created_by)
    .bind(code.ttl.as_secs_f64())
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(expires_at)
}

/// What a redeemed code produced.
#[derive(Debug)]
pub struct Redeemed {
    pub token_id: Uuid,
    pub device_id: Uuid,
    pub expires_at: DateTime<Utc>,
    /// The user's role in every scope they belong to, after the code's role was set.
    pub roles: Vec<(String, String)>,
}

/// A live code being redeemed: id, scope, email, name of a new user, role, suggested device name.
type CodeRow = (Uuid, String, String, Option<String>, String, Option<String>);

/// Redeems the code with hash `code` in one transaction: marks it used, creates the user if new, sets their
/// role in the code's scope, creates the device if new and stores the token `token` for it.
/// `None` when no live, unused code has that hash, or when its user is the backend's service user (a user with
/// the role `backend` anywhere), whose token no phone may hold.
///
/// Exactly one of concurrent redemptions wins: the first UPDATE locks the row, and the others, re-checking
/// `used_at IS NULL` once it commits, match nothing.
pub async fn redeem(
    db: &PgPool,
    code: &TokenHash,
    device_name: Option<&str>,
    token: &TokenHash,
    lifetime: Duration,
) -> Result<Option<Redeemed>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let row: Option<CodeRow> = sqlx::query_as(
        r#"UPDATE pairing_codes SET used_at = now()
           WHERE code_hash = $1 AND used_at IS NULL AND expires_at > now()
             -- Never for the backend's service user (protocol §14), even if it became one after the code was made.
             AND NOT EXISTS (SELECT 1 FROM users u JOIN memberships m ON m.user_id = u.id
                              WHERE u.email = pairing_codes.email AND m.role = 'backend')
           RETURNING id, scope_id, email, display_name, role, device_name"#,
    )
    .bind(&code[..])
    .fetch_optional(&mut *tx)
    .await?;
    let Some((code_id, scope, email, display_name, role, code_device)) = row else {
        return Ok(None);
    };
    // An existing user keeps their name; a new one gets the code's (or the email if the code had none: the
    // user existed when the code was made and was deleted since).
    sqlx::query("INSERT INTO users (id, email, display_name) VALUES ($1, $2, $3) ON CONFLICT (email) DO NOTHING")
        .bind(Uuid::new_v4())
        .bind(&email)
        .bind(display_name.as_deref().unwrap_or(&email))
        .execute(&mut *tx)
        .await?;
    let user: Uuid = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(&email)
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query(
        r#"INSERT INTO memberships (user_id, scope_id, role) VALUES ($1, $2, $3)
           ON CONFLICT (user_id, scope_id) DO UPDATE SET role = EXCLUDED.role"#,
    )
    .bind(user)
    .bind(&scope)
    .bind(&role)
    .execute(&mut *tx)
    .await?;
    let name = device_name.or(code_device.as_deref()).unwrap_or("phone");
    let device_id = super::accounts::ensure_device(&mut *tx, user, name).await?;
    let (token_id, expires_at) =
        super::token_admin::insert_expiring(&mut *tx, device_id, token, "paired", lifetime).await?;
    sqlx::query("UPDATE pairing_codes SET token_id = $2 WHERE id = $1")
        .bind(code_id)
        .bind(token_id)
        .execute(&mut *tx)
        .await?;
    let roles = sqlx::query_as("SELECT scope_id, role FROM memberships WHERE user_id = $1 ORDER BY scope_id")
        .bind(user)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(Redeemed {
        token_id,
        device_id,
        expires_at,
        roles,
    }))
}
