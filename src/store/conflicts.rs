//! The record of everything sync could not decide alone, for inspection and resolution. Every case is recorded
//! open, even when a policy already settled the row, so a person can review what was overwritten.

use crate::domain::ScopeId;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

/// Who sent the operation a conflict came from.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    pub client_id: Uuid,
    pub op_id: Uuid,
    pub seq: i64,
    pub device_id: Uuid,
    pub user_id: Uuid,
}

#[derive(Debug, Clone)]
pub struct NewConflict<'a> {
    pub kind: &'static str,
    pub collection: &'a str,
    pub key: &'a str,
    pub fields: Vec<String>,
    pub base: Option<Value>,
    pub server: Option<Value>,
    pub client: Option<Value>,
    /// The policy applied, a rejection's code, ...
    pub detail: Value,
}

pub async fn insert(
    tx: &mut PgConnection,
    scope: &ScopeId,
    origin: Origin,
    conflict: NewConflict<'_>,
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::new_v4();
    sqlx::query(
        r#"INSERT INTO conflicts (id, scope_id, kind, collection, key, fields, base, server, client, detail,
                                  client_id, op_id, seq, device_id, user_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"#,
    )
    .bind(id)
    .bind(scope.as_str())
    .bind(conflict.kind)
    .bind(conflict.collection)
    .bind(conflict.key)
    .bind(&conflict.fields)
    .bind(conflict.base.map(sqlx::types::Json))
    .bind(conflict.server.map(sqlx::types::Json))
    .bind(conflict.client.map(sqlx::types::Json))
    .bind(sqlx::types::Json(conflict.detail))
    .bind(origin.client_id)
    .bind(origin.op_id)
    .bind(origin.seq)
    .bind(origin.device_id)
    .bind(origin.user_id)
    .execute(tx)
    .await?;
    Ok(id)
}
