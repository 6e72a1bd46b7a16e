//! Compaction, the scope lock without appending, and one row's current state and history.

use crate::domain::ScopeId;
use serde_json::Value;
use sqlx::PgConnection;

/// Compacts the log below `new_floor`: drops changes superseded by a later change of the same row, and
/// tombstones, both only where the later change is itself below the floor. The change at the floor and the last
/// change of each collection below it are kept, so checksums stay answerable for every version from the floor
/// on. Cursors older than the floor must then reset. Returns the number of changes removed, or `None` (nothing
/// done) when the scope does not exist or `new_floor` is outside `0..=head`.
pub async fn compact(tx: &mut PgConnection, scope: &ScopeId, new_floor: i64) -> Result<Option<u64>, sqlx::Error> {
    // Lock the scope and check the floor first: compacting past the head would drop tombstones without moving
    // the floor, and devices would never be told to reset.
    let head = lock_scope(tx, scope).await?;
    if !matches!(head, Some(head) if (0..=head).contains(&new_floor)) {
        return Ok(None);
    }
    let removed = sqlx::query(
        r#"DELETE FROM changes c
           WHERE c.scope_id = $1 AND c.version < $2
             AND EXISTS (
                 SELECT 1 FROM changes l
                 WHERE l.scope_id = c.scope_id AND l.collection = c.collection AND l.version > c.version
                   AND l.version < $2 AND (l.key = c.key OR c.op = 'delete'))"#,
    )
    .bind(scope.as_str())
    .bind(new_floor)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query("UPDATE scopes SET floor_version = GREATEST(floor_version, $2) WHERE id = $1")
        .bind(scope.as_str())
        .bind(new_floor)
        .execute(&mut *tx)
        .await?;
    Ok(Some(removed))
}

/// Takes the scope's version lock for the rest of the transaction (the same row lock [`append`](super::append) takes), so
/// rows read afterwards cannot change before this transaction's writes. Returns the head, or `None`.
///
/// FOR NO KEY UPDATE, the lock `append`'s `UPDATE` takes, and not FOR UPDATE: a transaction that already
/// inserted a row referencing the scope (a new replay client) holds a KEY SHARE lock on it, which FOR UPDATE
/// would wait for; two such transactions then deadlock (tests/api/replay_concurrency.rs).
pub async fn lock_scope(tx: &mut PgConnection, scope: &ScopeId) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT head_version FROM scopes WHERE id = $1 FOR NO KEY UPDATE")
        .bind(scope.as_str())
        .fetch_optional(tx)
        .await
}

/// A live row's data and version.
pub async fn current_row(
    tx: &mut PgConnection,
    scope: &ScopeId,
    collection: &str,
    key: &str,
) -> Result<Option<(Value, i64)>, sqlx::Error> {
    let row: Option<(sqlx::types::Json<Value>, i64)> =
        sqlx::query_as("SELECT data, version FROM records WHERE scope_id = $1 AND collection = $2 AND key = $3")
            .bind(scope.as_str())
            .bind(collection)
            .bind(key)
            .fetch_optional(tx)
            .await?;
    Ok(row.map(|(data, version)| (data.0, version)))
}

/// One change of a row's history (see [`history`]).
#[derive(Debug, Clone)]
pub struct Step {
    pub version: i64,
    /// The row's state after the change (`None`: deleted).
    pub data: Option<Value>,
    /// Whether the change was made by an operation of the asking replay client.
    pub own: bool,
}

/// A row's history from `base`: the change in force at `base` (absent when the row had no change yet), then
/// every later change in version order, each marked `own` when a stored result of replay client `client` lists
/// its version. The caller checks the floor: below it the log no longer tells.
///
/// Only asked when an operation's base version is older than its row (`replay::generic`), so the scan of the
/// client's stored results (its primary-key range) stays off the common path.
pub async fn history(
    tx: &mut PgConnection,
    scope: &ScopeId,
    (collection, key): (&str, &str),
    base: i64,
    client: uuid::Uuid,
) -> Result<Vec<Step>, sqlx::Error> {
    let rows: Vec<(i64, Option<sqlx::types::Json<Value>>, bool)> = sqlx::query_as(
        r#"(SELECT version, data, false FROM changes
             WHERE scope_id = $1 AND collection = $2 AND key = $3 AND version <= $4
             ORDER BY version DESC LIMIT 1)
           UNION ALL
           (SELECT c.version, c.data,
                   EXISTS (SELECT 1 FROM replay_results r
                            WHERE r.scope_id = $1 AND r.client_id = $5 AND r.result->'versions' @> to_jsonb(c.version))
              FROM changes c
             WHERE c.scope_id = $1 AND c.collection = $2 AND c.key = $3 AND c.version > $4
             ORDER BY c.version)"#,
    )
    .bind(scope.as_str())
    .bind(collection)
    .bind(key)
    .bind(base)
    .bind(client)
    .fetch_all(tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(version, data, own)| Step {
            version,
            data: data.map(|j| j.0),
            own,
        })
        .collect())
}
