//! The record of everything sync could not decide alone, for inspection and resolution. Every case is recorded
//! open, even when a policy already settled the row, so a person can review what was overwritten.

pub use crate::domain::conflict::{NewConflict, Origin};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{types::Json, PgConnection, PgExecutor};
use uuid::Uuid;

/// A recorded conflict with the names of the device and user it came from.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConflictRecord {
    pub id: Uuid,
    pub scope_id: String,
    pub kind: String,
    pub status: String,
    pub collection: String,
    pub key: String,
    pub fields: Vec<String>,
    pub base: Option<Json<Value>>,
    pub server: Option<Json<Value>>,
    pub client: Option<Json<Value>>,
    pub detail: Json<Value>,
    pub client_id: Uuid,
    pub op_id: Uuid,
    pub seq: i64,
    pub device_id: Uuid,
    pub device_name: Option<String>,
    pub user_id: Uuid,
    pub user_email: Option<String>,
    pub user_name: Option<String>,
    pub row_version: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<Uuid>,
    pub resolution: Option<Json<Value>>,
}

const SELECT: &str = r#"SELECT c.id, c.scope_id, c.kind, c.status, c.collection, c.key, c.fields, c.base, c.server,
           c.client, c.detail, c.client_id, c.op_id, c.seq, c.device_id, d.name AS device_name, c.user_id,
           u.email AS user_email, u.display_name AS user_name, c.row_version, c.created_at, c.resolved_at,
           c.resolved_by, c.resolution
      FROM conflicts c
      LEFT JOIN devices d ON d.id = c.device_id
      LEFT JOIN users u ON u.id = c.user_id"#;

/// What to list; every `None` is "any".
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// The scopes to look in (the caller's administered scopes, or the one asked for).
    pub scopes: Vec<String>,
    pub status: Option<String>,
    pub collection: Option<String>,
    pub kind: Option<String>,
    pub device: Option<Uuid>,
    /// Created at or after.
    pub since: Option<DateTime<Utc>>,
    /// Created before.
    pub until: Option<DateTime<Utc>>,
    /// Only conflicts older than this (created_at, id): the previous page's last.
    pub before: Option<(DateTime<Utc>, Uuid)>,
    pub limit: i64,
}

/// Conflicts matching `filter`, newest first (ties by id, descending).
pub async fn list(db: impl PgExecutor<'_>, filter: &ListFilter) -> Result<Vec<ConflictRecord>, sqlx::Error> {
    let sql = format!(
        r#"{SELECT}
      WHERE c.scope_id = ANY($1)
        AND ($2::text IS NULL OR c.status = $2)
        AND ($3::text IS NULL OR c.collection = $3)
        AND ($4::text IS NULL OR c.kind = $4)
        AND ($5::uuid IS NULL OR c.device_id = $5)
        AND ($6::timestamptz IS NULL OR c.created_at >= $6)
        AND ($7::timestamptz IS NULL OR c.created_at < $7)
        AND ($8::timestamptz IS NULL OR (c.created_at, c.id) < ($8, $9::uuid))
      ORDER BY c.created_at DESC, c.id DESC
      LIMIT $10"#
    );
    sqlx::query_as(&sql)
        .bind(&filter.scopes)
        .bind(&filter.status)
        .bind(&filter.collection)
        .bind(&filter.kind)
        .bind(filter.device)
        .bind(filter.since)
        .bind(filter.until)
        .bind(filter.before.map(|(at, _)| at))
        .bind(filter.before.map(|(_, id)| id))
        .bind(filter.limit)
        .fetch_all(db)
        .await
}

/// One conflict by id.
pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<ConflictRecord>, sqlx::Error> {
    sqlx::query_as(&format!("{SELECT} WHERE c.id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// One conflict by id, locked until the transaction ends, so two resolutions of it serialise.
pub async fn lock(tx: &mut PgConnection, id: Uuid) -> Result<Option<ConflictRecord>, sqlx::Error> {
    sqlx::query_as(&format!("{SELECT} WHERE c.id = $1 FOR UPDATE OF c"))
        .bind(id)
        .fetch_optional(tx)
        .await
}

/// Marks a conflict resolved by `user` with `resolution`; returns the time recorded.
pub async fn mark_resolved(
    tx: &mut PgConnection,
    id: Uuid,
    user: Uuid,
    resolution: &Value,
) -> Result<DateTime<Utc>, sqlx::Error> {
    sqlx::query_scalar(
        r#"UPDATE conflicts SET status = 'resolved', resolved_at = now(), resolved_by = $2, resolution = $3
           WHERE id = $1 RETURNING resolved_at"#,
    )
    .bind(id)
    .bind(user)
    .bind(Json(resolution))
    .fetch_one(tx)
    .await
}

/// The row's version now: its live version, or for a deleted row the version of its last change (tombstone);
/// `None` when the log no longer knows the row.
pub async fn row_version_now(
    db: impl PgExecutor<'_>,
    scope: &str,
    collection: &str,
    key: &str,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        r#"SELECT coalesce(
               (SELECT version FROM records WHERE scope_id = $1 AND collection = $2 AND key = $3),
               (SELECT max(version) FROM changes WHERE scope_id = $1 AND collection = $2 AND key = $3))"#,
    )
    .bind(scope)
    .bind(collection)
    .bind(key)
    .fetch_one(db)
    .await
}

/// Open conflicts of every scope (zero included), for `/metrics`.
pub async fn open_counts(db: impl PgExecutor<'_>) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        r#"SELECT s.id, count(c.id) FROM scopes s
             LEFT JOIN conflicts c ON c.scope_id = s.id AND c.status = 'open'
            GROUP BY s.id ORDER BY s.id"#,
    )
    .fetch_all(db)
    .await
}

/// The transaction's timestamp (`now()` is fixed for a transaction), so rows written in it can carry the same
/// time that `mark_resolved` records.
pub async fn transaction_now(tx: &mut PgConnection) -> Result<DateTime<Utc>, sqlx::Error> {
    sqlx::query_scalar("SELECT now()").fetch_one(tx).await
}
