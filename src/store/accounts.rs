//! Scopes, users, memberships and devices: created by the CLI and the demo data, read by auth.
//! Every function is idempotent (safe to run twice), so set-up scripts can be re-run.

use crate::domain::{Role, ScopeId};
use sqlx::PgExecutor;
use uuid::Uuid;

pub async fn ensure_scope(db: impl PgExecutor<'_>, id: &ScopeId, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO scopes (id, name) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name")
        .bind(id.as_str())
        .bind(name)
        .execute(db)
        .await
        .map(|_| ())
}

/// The user's id, creating the user when the email is new.
pub async fn ensure_user(db: impl PgExecutor<'_>, email: &str, display_name: &str) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar(
        r#"INSERT INTO users (id, email, display_name) VALUES ($1, $2, $3)
           ON CONFLICT (email) DO UPDATE SET display_name = EXCLUDED.display_name
           RETURNING id"#,
    )
    .bind(Uuid::new_v4())
    .bind(email)
    .bind(display_name)
    .fetch_one(db)
    .await
}

pub async fn set_role(db: impl PgExecutor<'_>, user: Uuid, scope: &ScopeId, role: Role) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"INSERT INTO memberships (user_id, scope_id, role) VALUES ($1, $2, $3)
           ON CONFLICT (user_id, scope_id) DO UPDATE SET role = EXCLUDED.role"#,
    )
    .bind(user)
    .bind(scope.as_str())
    .bind(role.as_str())
    .execute(db)
    .await
    .map(|_| ())
}

/// The device's id, creating it when the user has no device of that name.
pub async fn ensure_device(db: impl PgExecutor<'_>, user: Uuid, name: &str) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar(
        r#"INSERT INTO devices (id, user_id, name) VALUES ($1, $2, $3)
           ON CONFLICT (user_id, name) DO UPDATE SET name = EXCLUDED.name
           RETURNING id"#,
    )
    .bind(Uuid::new_v4())
    .bind(user)
    .bind(name)
    .fetch_one(db)
    .await
}

pub async fn user_by_email(db: impl PgExecutor<'_>, email: &str) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(email)
        .fetch_optional(db)
        .await
}

/// Name and head version of each of `ids` that exists.
pub async fn scopes_by_id(db: impl PgExecutor<'_>, ids: &[String]) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT id, name, head_version FROM scopes WHERE id = ANY($1) ORDER BY id")
        .bind(ids)
        .fetch_all(db)
        .await
}

/// A device of one of the scope's members, as its administrators see it.
#[derive(Debug, sqlx::FromRow)]
pub struct ScopeDevice {
    pub id: Uuid,
    pub name: String,
    pub user_email: String,
    pub role: String,
    pub last_seen_at: Option<chrono::DateTime<chrono::Utc>>,
    pub live_tokens: i64,
}

pub async fn devices_in_scope(db: impl PgExecutor<'_>, scope: &ScopeId) -> Result<Vec<ScopeDevice>, sqlx::Error> {
    sqlx::query_as(
        r#"SELECT d.id, d.name, u.email AS user_email, m.role, d.last_seen_at,
                  (SELECT count(*) FROM device_tokens t WHERE t.device_id = d.id AND t.revoked_at IS NULL
                   AND (t.expires_at IS NULL OR t.expires_at > now())) AS live_tokens
           FROM memberships m JOIN users u ON u.id = m.user_id JOIN devices d ON d.user_id = u.id
           WHERE m.scope_id = $1 ORDER BY u.email, d.name"#,
    )
    .bind(scope.as_str())
    .fetch_all(db)
    .await
}

/// A user's role in every scope they belong to (`(scope, role)`), for the command line acting as that user.
pub async fn roles_of(db: impl PgExecutor<'_>, user: Uuid) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT scope_id, role FROM memberships WHERE user_id = $1 ORDER BY scope_id")
        .bind(user)
        .fetch_all(db)
        .await
}
