//! SQL of the backend inbox (`dukasync_api`, migration 0016, docs/backend-sql.md): the writes the backend queued
//! in its own transactions, read and deleted by the applier (`inbox`), and the collection definitions the
//! queueing functions check against.

use crate::domain::ScopeId;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};

/// Channel the queueing functions notify (payload: the scope) when their transaction commits.
pub const INBOX_CHANNEL: &str = "dukasync_inbox";

/// A queued write, as the backend called it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Pending {
    pub id: i64,
    pub collection: String,
    pub key: String,
    /// `put`, `patch` or `delete`.
    pub kind: String,
    pub data: Option<sqlx::types::Json<Value>>,
    pub source: String,
}

/// One collection as the queueing functions see it.
#[derive(Debug, Clone)]
pub struct Published {
    pub name: &'static str,
    pub backend_writes: bool,
    pub device_writes: bool,
    pub conflict_policy: &'static str,
    pub reference: bool,
}

/// Replaces the published collection definitions with `collections`, in one transaction.
pub async fn publish_collections(db: &PgPool, collections: &[Published]) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query("DELETE FROM dukasync_api.collections")
        .execute(&mut *tx)
        .await?;
    let names: Vec<&str> = collections.iter().map(|c| c.name).collect();
    let backend: Vec<bool> = collections.iter().map(|c| c.backend_writes).collect();
    let device: Vec<bool> = collections.iter().map(|c| c.device_writes).collect();
    let policies: Vec<&str> = collections.iter().map(|c| c.conflict_policy).collect();
    let reference: Vec<bool> = collections.iter().map(|c| c.reference).collect();
    sqlx::query(
        r#"INSERT INTO dukasync_api.collections (name, backend_writes, device_writes, conflict_policy, reference)
           SELECT * FROM unnest($1::text[], $2::bool[], $3::bool[], $4::text[], $5::bool[])"#,
    )
    .bind(&names)
    .bind(&backend)
    .bind(&device)
    .bind(&policies)
    .bind(&reference)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Scopes with queued writes (committed ones: the caller's snapshot).
pub async fn scopes_with_pending(db: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT DISTINCT scope FROM dukasync_api.pending_writes")
        .fetch_all(db)
        .await
}

/// Takes the scope's version lock (as replay does, `store::replay`) and returns its (head, floor), or `None`
/// when the scope is gone. What is read afterwards must be read in later statements.
pub async fn lock_scope(tx: &mut PgConnection, scope: &ScopeId) -> Result<Option<(i64, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT head_version, floor_version FROM scopes WHERE id = $1 FOR NO KEY UPDATE")
        .bind(scope.as_str())
        .fetch_optional(tx)
        .await
}

/// The scope's first `limit` queued writes in id order. Under the scope's lock, so no other applier holds them;
/// a write committed after this statement's snapshot waits for the next round.
pub async fn pending(tx: &mut PgConnection, scope: &ScopeId, limit: i64) -> Result<Vec<Pending>, sqlx::Error> {
    sqlx::query_as(
        r#"SELECT id, collection, key, kind, data, source FROM dukasync_api.pending_writes
            WHERE scope = $1 ORDER BY id LIMIT $2"#,
    )
    .bind(scope.as_str())
    .bind(limit)
    .fetch_all(tx)
    .await
}

/// Deletes applied writes, in the transaction that applied them: each is applied exactly once.
pub async fn remove(tx: &mut PgConnection, ids: &[i64]) -> Result<u64, sqlx::Error> {
    sqlx::query("DELETE FROM dukasync_api.pending_writes WHERE id = ANY($1)")
        .bind(ids)
        .execute(tx)
        .await
        .map(|r| r.rows_affected())
}
