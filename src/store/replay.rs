//! Per-client replay state: the last applied sequence and the stored result of each operation.

use crate::domain::ScopeId;
use serde_json::Value;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

/// A replaying client and its scope, both locked for the rest of the transaction.
#[derive(Debug, Clone, Copy)]
pub struct Locked {
    /// The device the client is bound to.
    pub owner: Uuid,
    pub last_seq: i64,
    /// The scope's head and floor, read under its version lock (see `store::changes`).
    pub head: i64,
    pub floor: i64,
}

/// Locks the client's row, creating it bound to `device` on first use, and the scope's version lock, in one
/// statement for a known client (one round trip fewer per push than two statements). `None` when the scope
/// does not exist.
///
/// Every replaying transaction takes the two locks in this one statement, so they are always taken in the same
/// order. The scope row is locked FOR NO KEY UPDATE, as `changes::lock_scope` explains: a transaction that just
/// created its client holds a KEY SHARE lock on the scope (the foreign key), which FOR UPDATE would conflict with.
/// What is read afterwards must be read in later statements: a statement's snapshot is taken before it waits.
pub async fn lock_client_and_scope(
    tx: &mut PgConnection,
    scope: &ScopeId,
    client: Uuid,
    device: Uuid,
) -> Result<Option<Locked>, sqlx::Error> {
    const LOCK: &str = r#"SELECT c.device_id, c.last_seq, s.head_version, s.floor_version
                            FROM replay_clients c JOIN scopes s ON s.id = c.scope_id
                           WHERE c.scope_id = $1 AND c.client_id = $2
                             FOR UPDATE OF c FOR NO KEY UPDATE OF s"#;
    let locked = |(owner, last_seq, head, floor)| Locked {
        owner,
        last_seq,
        head,
        floor,
    };
    let known: Option<(Uuid, i64, i64, i64)> = sqlx::query_as(LOCK)
        .bind(scope.as_str())
        .bind(client)
        .fetch_optional(&mut *tx)
        .await?;
    if let Some(known) = known {
        return Ok(Some(locked(known)));
    }
    // Nothing when the scope does not exist; nothing either when a concurrent first batch of the same client
    // created the row meanwhile: the lock below then waits for that batch and reads its sequence.
    sqlx::query(
        r#"INSERT INTO replay_clients (scope_id, client_id, device_id)
           SELECT id, $2, $3 FROM scopes WHERE id = $1
           ON CONFLICT DO NOTHING"#,
    )
    .bind(scope.as_str())
    .bind(client)
    .bind(device)
    .execute(&mut *tx)
    .await?;
    Ok(sqlx::query_as(LOCK)
        .bind(scope.as_str())
        .bind(client)
        .fetch_optional(tx)
        .await?
        .map(locked))
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
