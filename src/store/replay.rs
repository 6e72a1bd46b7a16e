//! Per-client replay state: the last applied sequence and the stored result of each operation.

use crate::domain::ScopeId;
use serde_json::Value;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

/// Locks the client's row for the rest of the transaction, creating it bound to `device` on first use.
/// Returns the device the client is bound to and its last applied sequence. One statement for a known client.
pub async fn lock_client(
    tx: &mut PgConnection,
    scope: &ScopeId,
    client: Uuid,
    device: Uuid,
) -> Result<(Uuid, i64), sqlx::Error> {
    const LOCK: &str =
        "SELECT device_id, last_seq FROM replay_clients WHERE scope_id = $1 AND client_id = $2 FOR UPDATE";
    let known: Option<(Uuid, i64)> = sqlx::query_as(LOCK)
        .bind(scope.as_str())
        .bind(client)
        .fetch_optional(&mut *tx)
        .await?;
    if let Some(known) = known {
        return Ok(known);
    }
    sqlx::query(
        "INSERT INTO replay_clients (scope_id, client_id, device_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(scope.as_str())
    .bind(client)
    .bind(device)
    .execute(&mut *tx)
    .await?;
    sqlx::query_as(LOCK)
        .bind(scope.as_str())
        .bind(client)
        .fetch_one(tx)
        .await
}

/// A stored result of an applied operation.
pub struct Stored {
    pub seq: i64,
    pub op_id: Uuid,
    pub fingerprint: Vec<u8>,
    pub result: Value,
}

/// Stored results of the client's operations with sequences in `from..=to`.
pub async fn stored_results(
    tx: &mut PgConnection,
    scope: &ScopeId,
    client: Uuid,
    from: i64,
    to: i64,
) -> Result<Vec<Stored>, sqlx::Error> {
    let rows = sqlx::query(
        r#"SELECT seq, op_id, fingerprint, result FROM replay_results
           WHERE scope_id = $1 AND client_id = $2 AND seq BETWEEN $3 AND $4 ORDER BY seq"#,
    )
    .bind(scope.as_str())
    .bind(client)
    .bind(from)
    .bind(to)
    .fetch_all(tx)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(Stored {
                seq: r.try_get("seq")?,
                op_id: r.try_get("op_id")?,
                fingerprint: r.try_get("fingerprint")?,
                result: r.try_get::<sqlx::types::Json<Value>, _>("result")?.0,
            })
        })
        .collect()
}

/// Deletes stored results applied more than `days` days ago. A device replaying such an old operation gets
/// `duplicate` with code `result_expired` (its sequence is still known to be applied), and its operation id
/// can no longer be checked for reuse.
pub async fn prune_results(db: &sqlx::PgPool, days: u32) -> Result<u64, sqlx::Error> {
    sqlx::query("DELETE FROM replay_results WHERE applied_at < now() - make_interval(days => $1)")
        .bind(days as i32)
        .execute(db)
        .await
        .map(|r| r.rows_affected())
}
