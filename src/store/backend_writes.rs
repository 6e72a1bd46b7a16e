//! SQL of backend writes over HTTP (`inbox::rows`, migration 0019): each write id's fingerprint and answer.

use crate::domain::ScopeId;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

/// A write id already answered.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredWrite {
    pub write_id: Uuid,
    pub fingerprint: Vec<u8>,
    pub result: sqlx::types::Json<Value>,
}

/// The stored answers of those of `ids` already used in `scope`. Read under the scope's version lock, which every
/// writer of results holds, so no answer is committed between this read and the caller's own writes.
pub async fn stored(tx: &mut PgConnection, scope: &ScopeId, ids: &[Uuid]) -> Result<Vec<StoredWrite>, sqlx::Error> {
    sqlx::query_as(
        r#"SELECT write_id, fingerprint, result FROM backend_write_results
            WHERE scope = $1 AND write_id = ANY($2)"#,
    )
    .bind(scope.as_str())
    .bind(ids)
    .fetch_all(tx)
    .await
}

/// Stores the answers of newly applied writes, in the transaction that applied them.
pub async fn store(
    tx: &mut PgConnection,
    scope: &ScopeId,
    answers: &[(Uuid, [u8; 32], Value)],
) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = answers.iter().map(|(id, _, _)| *id).collect();
    let prints: Vec<Vec<u8>> = answers.iter().map(|(_, print, _)| print.to_vec()).collect();
    let results: Vec<Value> = answers.iter().map(|(_, _, result)| result.clone()).collect();
    sqlx::query(
        r#"INSERT INTO backend_write_results (scope, write_id, fingerprint, result)
           SELECT $1, * FROM unnest($2::uuid[], $3::bytea[], $4::jsonb[])"#,
    )
    .bind(scope.as_str())
    .bind(&ids)
    .bind(&prints)
    .bind(&results)
    .execute(tx)
    .await
    .map(|_| ())
}
