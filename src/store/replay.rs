//! Per-client replay state: the last applied sequence and the stored result of each operation.

use crate::domain::ScopeId;
use serde_json::Value;
use sqlx::{PgConnection, Row};
use std::collections::HashMap;
use uuid::Uuid;

/// The replaying clients of a group and their scope, all locked for the rest of the transaction.
#[derive(Debug, Clone)]
pub struct Locked {
    /// The scope's head and floor, read under its version lock (see `store::changes`).
    pub head: i64,
    pub floor: i64,
    /// Per client id: the device it is bound to and its last applied sequence.
    pub clients: HashMap<Uuid, (Uuid, i64)>,
}

/// Locks the scope's version lock and the rows of `clients` (client id, device), creating a client's row bound to
/// its device on first use; one statement when every client is known. `None` when the scope does not exist.
///
/// Every replaying transaction takes its locks in this one statement: the scope's row first, then its clients'
/// rows in client id order, so two transactions (two server instances) replaying overlapping sets of clients
/// cannot deadlock. The scope row is locked FOR NO KEY UPDATE, as `changes::lock_scope` explains: a transaction
/// that just created a client holds a KEY SHARE lock on the scope (the foreign key), which FOR UPDATE would
/// conflict with. Both tables are locked, so the values read are those after any wait; what else is read must
/// be read in later statements: a statement's snapshot is taken before it waits.
/// Begins a replay transaction with its planner settings, in the BEGIN itself (no extra round trip).
///
/// Generic plans: replay's statements take arrays whose lengths vary with the batch, so PostgreSQL would
/// otherwise plan them again on every execution; their generic plans are the same index lookups. Without
/// sequential scans: a plan is kept for the life of the connection, and one made while a table looked small (a
/// new database) would otherwise read the whole table on every later push until autovacuum analyzed it again;
/// this also covers the foreign-key checks, which PostgreSQL plans in this session (migration 0010,
/// tests/db/ledger_plans.rs). Every replay statement is a lookup by key.
pub async fn begin(db: &sqlx::PgPool) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    db.begin_with("BEGIN; SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL enable_seqscan = off")
        .await
}

pub async fn lock_clients_and_scope(
    tx: &mut PgConnection,
    scope: &ScopeId,
    clients: &[(Uuid, Uuid)],
) -> Result<Option<Locked>, sqlx::Error> {
    let ids: Vec<Uuid> = clients.iter().map(|(client, _)| *client).collect();
    let rows = lock(&mut *tx, scope, &ids).await?;
    let locked = |rows: Vec<LockedRow>| {
        let (head, floor) = rows.first().map(|r| (r.0, r.1))?;
        let clients = rows.into_iter().map(|r| (r.2, (r.3, r.4))).collect();
        Some(Locked { head, floor, clients })
    };
    if rows.len() == clients.len() {
        return Ok(locked(rows));
    }
    // Some client is new (or the scope does not exist: then nothing is inserted). The insert takes the scope's
    // lock first (when no client was known, the statement above locked nothing), so whoever else inserts one of
    // these clients holds that lock too and has finished when the insert runs: a client created meanwhile is
    // skipped here, and the lock below reads its sequence.
    let (new, devices): (Vec<Uuid>, Vec<Uuid>) = clients
        .iter()
        .filter(|(client, _)| !rows.iter().any(|r| r.2 == *client))
        .copied()
        .unzip();
    sqlx::query(
        r#"WITH s AS (SELECT id FROM scopes WHERE id = $1 FOR NO KEY UPDATE)
           INSERT INTO replay_clients (scope_id, client_id, device_id)
           SELECT s.id, u.client_id, u.device_id FROM s, unnest($2::uuid[], $3::uuid[]) AS u(client_id, device_id)
           ON CONFLICT DO NOTHING"#,
    )
    .bind(scope.as_str())
    .bind(&new)
    .bind(&devices)
    .execute(&mut *tx)
    .await?;
    let rows = lock(tx, scope, &ids).await?;
    Ok(locked(rows))
}

type LockedRow = (i64, i64, Uuid, Uuid, i64);

async fn lock(tx: &mut PgConnection, scope: &ScopeId, clients: &[Uuid]) -> Result<Vec<LockedRow>, sqlx::Error> {
    // ORDER BY sorts below the locking step, so the rows are locked in this order.
    sqlx::query_as(
        r#"SELECT s.head_version, s.floor_version, c.client_id, c.device_id, c.last_seq
             FROM scopes s JOIN replay_clients c ON c.scope_id = s.id
            WHERE s.id = $1 AND c.client_id = ANY($2)
            ORDER BY c.client_id
              FOR NO KEY UPDATE OF s FOR UPDATE OF c"#,
    )
    .bind(scope.as_str())
    .bind(clients)
    .fetch_all(tx)
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
