//! The change log and current rows of each scope.
//!
//! Invariants (relied on by every reader, see `feed`):
//! - Versions are dense and commit-ordered per scope. [`append`] first runs
//!   `UPDATE scopes SET head_version = head_version + n ... RETURNING`, which takes the scope row's lock until the
//!   transaction ends. A second writer of the same scope waits at that statement, so it can only take version
//!   numbers after the first has committed (or rolled back, releasing its numbers unused: the counter update is
//!   rolled back too, so no hole remains). A reader therefore never sees version `n + 1` committed while `n` is
//!   still pending, and `version > cursor` can never skip a row. Writers of other scopes lock other rows.
//! - `changes` rows are immutable once committed; the row at the scope's floor is never compacted.
//! - `records` and `collection_state` always equal the fold of the log; each change stores its collection's
//!   checksum and row count after it, so the checksum at any retained version is one index lookup.

pub use crate::domain::change::RowWrite;
use crate::domain::{canonical, ScopeId};
use serde_json::{value::RawValue, Value};
use sqlx::{postgres::PgRow, PgConnection, PgExecutor, Row};
use std::{collections::HashMap, sync::LazyLock};

/// Channel carrying `scope:head` after every commit that appends changes.
pub const FEED_CHANNEL: &str = "dukasync_changes";

/// Appends `writes` to the scope's log inside the caller's transaction; the i-th write gets version
/// `first + i`. Returns the versions assigned, or `None` when the scope does not exist.
///
/// Three statements: the head update (the scope's version lock), one read of the prior row hashes and
/// collection states, and one statement writing the log, the rows, the states and the NOTIFY. A replay batch
/// does the same work inside its own single write (`store::batch`), through `prepare` and `log_ctes`.
pub async fn append(
    tx: &mut PgConnection,
    scope: &ScopeId,
    writes: &[RowWrite],
) -> Result<Option<Vec<i64>>, sqlx::Error> {
    if writes.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let count = writes.len() as i64;
    // Takes the scope's version lock; see the module header. The reads below must come after it, in their own
    // statement: a statement's snapshot is taken before it waits for a lock.
    let head: Option<i64> =
        sqlx::query_scalar("UPDATE scopes SET head_version = head_version + $2 WHERE id = $1 RETURNING head_version")
            .bind(scope.as_str())
            .bind(count)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(head) = head else { return Ok(None) };
    let first = head - count + 1;
    let prior = prior_state(&mut *tx, scope, writes).await?;
    let prepared = prepare(first, writes, prior);
    static APPEND: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH {}\nSELECT pg_notify(${}, ${})",
            log_ctes(2),
            2 + LOG_PARAMS,
            3 + LOG_PARAMS
        )
    });
    bind_log(sqlx::query(&APPEND).bind(scope.as_str()), &prepared)
        .bind(FEED_CHANNEL)
        // Delivered at commit, and only if the transaction commits.
        .bind(format!("{scope}:{head}"))
        .execute(&mut *tx)
        .await?;
    Ok(Some((first..=head).collect()))
}

pub(crate) type Slot = (String, String);

/// What the log fold starts from: each written row's hash before the writes (`None`: no live row; a row
/// missing from the map counts as absent) and each written collection's (checksum, row count).
#[derive(Debug, Default, Clone)]
pub(crate) struct Prior {
    pub row_hashes: HashMap<Slot, Option<u32>>,
    pub states: HashMap<String, (u32, i64)>,
}

/// Row hashes of the written rows and the states of the written collections, in one statement.
async fn prior_state(tx: &mut PgConnection, scope: &ScopeId, writes: &[RowWrite]) -> Result<Prior, sqlx::Error> {
    let collections: Vec<&str> = writes.iter().map(|w| w.collection.as_str()).collect();
    let keys: Vec<&str> = writes.iter().map(|w| w.key.as_str()).collect();
    let rows = sqlx::query(
        // One index lookup per written row (LIMIT 1: not flattened into a join that a generic plan could make a
        // scan of the scope's rows; see `store::batch::read`). A row written twice is read twice.
        r#"SELECT r.collection, r.key, r.row_hash AS hash, NULL::bigint AS row_count
             FROM unnest($2::text[], $3::text[]) AS u(collection, key)
             CROSS JOIN LATERAL (SELECT collection, key, row_hash FROM records
                                  WHERE scope_id = $1 AND collection = u.collection AND key = u.key LIMIT 1) r
           UNION ALL
           SELECT collection, NULL, checksum, row_count FROM collection_state
           WHERE scope_id = $1 AND collection = ANY($2)"#,
    )
    .bind(scope.as_str())
    .bind(&collections)
    .bind(&keys)
    .fetch_all(&mut *tx)
    .await?;
    let mut prior = Prior::default();
    for row in rows {
        let hash = row.try_get::<i64, _>("hash")? as u32;
        let collection: String = row.try_get("collection")?;
        match row.try_get::<Option<String>, _>("key")? {
            Some(key) => {
                prior.row_hashes.insert((collection, key), Some(hash));
            }
            None => {
                prior.states.insert(collection, (hash, row.try_get("row_count")?));
            }
        }
    }
    Ok(prior)
}

/// Parameters [`log_ctes`] takes.
pub(crate) const LOG_PARAMS: usize = 15;

/// The common table expressions `log`, `up`, `del` and `states` that write a [`Prepared`] fold: the log rows,
/// `records` (upserts and deletes) and `collection_state`. Their [`LOG_PARAMS`] parameters are numbered from
/// `$first` in the order [`bind_log`] binds them; the scope is `$1`. The one place this SQL is written: [`append`]
/// and the replay batch's single write (`store::batch`) both build their statement around it.
pub(crate) fn log_ctes(first: usize) -> String {
    let p: Vec<String> = (first..first + LOG_PARAMS).map(|n| format!("${n}")).collect();
    // `records` takes each final row from the log insert's RETURNING (the row's last write is one of the log's
    // rows), so its JSON crosses the wire and is parsed into jsonb once, not twice.
    // `del` finds each deleted row by key (LIMIT 1: a subquery PostgreSQL cannot flatten into a join) and deletes
    // it by its tuple id: as a semi-join, the generic plan made while `records` was small scanned all of the
    // scope's rows for every delete (tests/db/feed_plans.rs). The tuple ids are the statement's snapshot; every
    // writer holds the scope's version lock, so no other transaction moves them before the delete. Without
    // deletes, the one-time filter on `cardinality` skips the step whatever its plan.
    format!(
        r#"log AS (
    INSERT INTO changes (scope_id, version, collection, key, op, data, tag, checksum_after, count_after)
    SELECT $1, v, c, k, o, d::jsonb, t, s, n
    FROM unnest({}::bigint[], {}::text[], {}::text[], {}::text[], {}::text[], {}::bigint[], {}::bigint[],
                {}::bigint[]) AS u(v, c, k, o, d, t, s, n)
    RETURNING version, collection, key, data
), up AS (
    INSERT INTO records (scope_id, collection, key, data, version, row_hash)
    SELECT $1, l.collection, l.key, l.data, l.version, u.h
    FROM unnest({}::bigint[], {}::bigint[]) AS u(v, h) JOIN log l ON l.version = u.v
    ON CONFLICT (scope_id, collection, key)
    DO UPDATE SET data = EXCLUDED.data, version = EXCLUDED.version, row_hash = EXCLUDED.row_hash
), del AS (
    DELETE FROM records WHERE cardinality({del_keys}::text[]) > 0 AND ctid = ANY (ARRAY(
        SELECT r.ctid FROM unnest({del_collections}::text[], {del_keys}::text[]) AS u(c, k)
        CROSS JOIN LATERAL (SELECT ctid FROM records WHERE scope_id = $1 AND collection = u.c AND key = u.k LIMIT 1) r))
), states AS (
    INSERT INTO collection_state (scope_id, collection, checksum, row_count)
    SELECT $1, c, s, n FROM unnest({}::text[], {}::bigint[], {}::bigint[]) AS u(c, s, n)
    ON CONFLICT (scope_id, collection) DO UPDATE SET checksum = EXCLUDED.checksum, row_count = EXCLUDED.row_count
)"#,
        p[0],
        p[1],
        p[2],
        p[3],
        p[4],
        p[5],
        p[6],
        p[7],
        p[8],
        p[9],
        p[12],
        p[13],
        p[14],
        del_collections = p[10],
        del_keys = p[11],
    )
}

/// Binds the [`LOG_PARAMS`] parameters of [`log_ctes`], in its order.
pub(crate) fn bind_log<'q>(query: PgQuery<'q>, prepared: &'q Prepared) -> PgQuery<'q> {
    let Prepared { log, rows, states } = prepared;
    query
        .bind(&log.versions)
        .bind(&log.collections)
        .bind(&log.keys)
        .bind(&log.ops)
        .bind(&log.data)
        .bind(&log.tags)
        .bind(&log.checksums)
        .bind(&log.counts)
        .bind(&rows.up_versions)
        .bind(&rows.up_hashes)
        .bind(&rows.del_collections)
        .bind(&rows.del_keys)
        .bind(&states.names)
        .bind(&states.checksums)
        .bind(&states.counts)
}

pub(crate) type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Everything one append writes, column by column for `unnest`.
pub(crate) struct Prepared {
    pub log: LogColumns,
    pub rows: FinalRows,
    pub states: StateColumns,
}

/// Folds `writes` (versions `first..`) into the log rows with the checksum and row count of their collection
/// after each, the final state of each row, and the collections' new states. The one place the checksums of
/// §8 are computed on the write side.
pub(crate) fn prepare(first: i64, writes: &[RowWrite], prior: Prior) -> Prepared {
    let Prior {
        mut row_hashes,
        mut states,
    } = prior;
    let mut log = LogColumns::with_capacity(writes.len());
    let mut hashes = Vec::with_capacity(writes.len());
    for (i, write) in writes.iter().enumerate() {
        let version = first + i as i64;
        let slot = (write.collection.clone(), write.key.clone());
        let state = states.entry(write.collection.clone()).or_insert((0, 0));
        if let Some(old) = row_hashes.get(&slot).copied().flatten() {
            state.0 = state.0.wrapping_sub(old);
            state.1 -= 1;
        }
        let new_hash = write
            .data
            .as_ref()
            .map(|d| canonical::row_hash(&write.collection, &write.key, d));
        if let Some(new) = new_hash {
            state.0 = state.0.wrapping_add(new);
            state.1 += 1;
        }
        row_hashes.insert(slot, new_hash);
        hashes.push(new_hash);
        log.push(version, write, state.0, state.1);
    }
    let rows = FinalRows::new(writes, first, &hashes);
    let mut columns = StateColumns::default();
    // Only the written collections: `prior` may hold the states of all of them.
    let mut written: Vec<&str> = writes.iter().map(|w| w.collection.as_str()).collect();
    written.sort_unstable();
    written.dedup();
    for name in written {
        let (checksum, count) = states[name];
        columns.names.push(name.to_string());
        columns.checksums.push(i64::from(checksum));
        columns.counts.push(count);
    }
    Prepared {
        log,
        rows,
        states: columns,
    }
}

/// New collection states, column by column.
#[derive(Default)]
pub(crate) struct StateColumns {
    pub names: Vec<String>,
    pub checksums: Vec<i64>,
    pub counts: Vec<i64>,
}

/// The new log rows, column by column, for one `INSERT ... SELECT FROM unnest(...)`.
pub(crate) struct LogColumns {
    pub versions: Vec<i64>,
    pub collections: Vec<String>,
    pub keys: Vec<String>,
    pub ops: Vec<&'static str>,
    pub data: Vec<Option<String>>,
    pub tags: Vec<i64>,
    pub checksums: Vec<i64>,
    pub counts: Vec<i64>,
}

impl LogColumns {
    fn with_capacity(n: usize) -> Self {
        LogColumns {
            versions: Vec::with_capacity(n),
            collections: Vec::with_capacity(n),
            keys: Vec::with_capacity(n),
            ops: Vec::with_capacity(n),
            data: Vec::with_capacity(n),
            tags: Vec::with_capacity(n),
            checksums: Vec::with_capacity(n),
            counts: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, version: i64, write: &RowWrite, checksum: u32, count: i64) {
        self.versions.push(version);
        self.collections.push(write.collection.clone());
        self.keys.push(write.key.clone());
        self.ops.push(if write.data.is_some() { "upsert" } else { "delete" });
        self.data.push(write.data.as_ref().map(canonical::to_canonical_json));
        self.tags.push(rand::random::<i64>());
        self.checksums.push(i64::from(checksum));
        self.counts.push(count);
    }
}

/// `records` after the writes: the last write of each row, as an upsert (the version of that write, whose log
/// row holds its data) or a delete.
#[derive(Default)]
pub(crate) struct FinalRows {
    pub up_versions: Vec<i64>,
    pub up_hashes: Vec<i64>,
    pub del_collections: Vec<String>,
    pub del_keys: Vec<String>,
}

impl FinalRows {
    /// `hashes` are the row hash of each write (`None` for a delete), computed once by [`prepare`].
    fn new(writes: &[RowWrite], first: i64, hashes: &[Option<u32>]) -> FinalRows {
        let mut last: HashMap<(&str, &str), usize> = HashMap::with_capacity(writes.len());
        for (i, w) in writes.iter().enumerate() {
            last.insert((w.collection.as_str(), w.key.as_str()), i);
        }
        let mut last: Vec<usize> = last.into_values().collect();
        last.sort_unstable();
        let mut rows = FinalRows::default();
        for i in last {
            let write = &writes[i];
            match hashes[i] {
                Some(hash) => {
                    rows.up_versions.push(first + i as i64);
                    rows.up_hashes.push(i64::from(hash));
                }
                None => {
                    rows.del_collections.push(write.collection.clone());
                    rows.del_keys.push(write.key.clone());
                }
            }
        }
        rows
    }
}

/// One change as read from the log. `data` is the row's JSON text as stored, never parsed into a tree: a
/// pull passes it through to the response (see [`compact_json`]).
#[derive(Debug, Clone)]
pub struct LoggedChange {
    pub version: i64,
    pub collection: String,
    pub key: String,
    pub data: Option<Box<RawValue>>,
    pub tag: i64,
}

/// Reads a `jsonb` column as JSON text without building a tree. PostgreSQL prints `jsonb` with a space after
/// every `:` and `,`; those are dropped, so the bytes on the wire are what serializing the value would give.
pub fn raw_data(row: &PgRow, column: &str) -> Result<Option<Box<RawValue>>, sqlx::Error> {
    let Some(text) = row.try_get::<Option<sqlx::types::Json<Box<RawValue>>>, _>(column)? else {
        return Ok(None);
    };
    RawValue::from_string(compact_json(text.0.get()))
        .map(Some)
        .map_err(|e| sqlx::Error::Decode(e.into()))
}

/// `json` without whitespace outside strings. The input is valid JSON (it was just parsed), so a string is
/// everything between an unescaped `"` and the next unescaped `"`.
pub fn compact_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for ch in json.chars() {
        if in_string {
            out.push(ch);
            match (escaped, ch) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if ch == '"' {
            in_string = true;
            out.push(ch);
        } else if !matches!(ch, ' ' | '\n' | '\r' | '\t') {
            out.push(ch);
        }
    }
    out
}

/// What one read of the feed saw, all from a single statement (one snapshot).
#[derive(Debug)]
pub struct FeedSlice {
    pub head: i64,
    pub floor: i64,
    /// Tag of the change at the requested `since` version, if that change exists.
    pub since_tag: Option<i64>,
    /// Tag of the change at `head`, if any.
    pub head_tag: Option<i64>,
    pub changes: Vec<LoggedChange>,
}

/// Reads up to `limit` changes after `since`, optionally only of `collections`, with the scope's head and floor
/// from the same snapshot. `None` when the scope does not exist.
pub async fn read(
    db: impl PgExecutor<'_>,
    scope: &ScopeId,
    since: i64,
    limit: i64,
    collections: Option<&[String]>,
) -> Result<Option<FeedSlice>, sqlx::Error> {
    let rows = sqlx::query(
        r#"
        SELECT s.head_version, s.floor_version,
               (SELECT tag FROM changes WHERE scope_id = s.id AND version = $2) AS since_tag,
               (SELECT tag FROM changes WHERE scope_id = s.id AND version = s.head_version) AS head_tag,
               c.version, c.collection, c.key, c.data, c.tag
        FROM scopes s
        LEFT JOIN LATERAL (
            SELECT version, collection, key, data, tag FROM changes
            WHERE scope_id = s.id AND version > $2 AND ($4::text[] IS NULL OR collection = ANY($4))
            ORDER BY version
            LIMIT $3
        ) c ON true
        WHERE s.id = $1
        ORDER BY c.version
        "#,
    )
    .bind(scope.as_str())
    .bind(since)
    .bind(limit)
    .bind(collections)
    .fetch_all(db)
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let mut slice = FeedSlice {
        head: first.try_get("head_version")?,
        floor: first.try_get("floor_version")?,
        since_tag: first.try_get("since_tag")?,
        head_tag: first.try_get("head_tag")?,
        changes: Vec::with_capacity(rows.len()),
    };
    for row in rows {
        let Some(version) = row.try_get::<Option<i64>, _>("version")? else {
            continue;
        };
        slice.changes.push(LoggedChange {
            version,
            collection: row.try_get("collection")?,
            key: row.try_get("key")?,
            data: raw_data(&row, "data")?,
            tag: row.try_get("tag")?,
        });
    }
    Ok(Some(slice))
}

/// A scope's head with what a cursor at it needs, from one snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub version: i64,
    pub floor: i64,
    /// Tag of the change at `version` (`None` at version 0).
    pub tag: Option<i64>,
}

/// The scope's head, floor and head tag (one row lookup and one index step), or `None` when it does not exist.
pub async fn head(db: impl PgExecutor<'_>, scope: &ScopeId) -> Result<Option<Head>, sqlx::Error> {
    let row: Option<(i64, i64, Option<i64>)> = sqlx::query_as(
        r#"SELECT s.head_version, s.floor_version, c.tag FROM scopes s
           LEFT JOIN changes c ON c.scope_id = s.id AND c.version = s.head_version
           WHERE s.id = $1"#,
    )
    .bind(scope.as_str())
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(version, floor, tag)| Head { version, floor, tag }))
}

/// Head and floor of a scope, or `None` when it does not exist.
pub async fn bounds(db: impl PgExecutor<'_>, scope: &ScopeId) -> Result<Option<(i64, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT head_version, floor_version FROM scopes WHERE id = $1")
        .bind(scope.as_str())
        .fetch_optional(db)
        .await
}

/// Checksum and row count of every collection of the scope as of `version` (one index lookup each).
/// Only meaningful for `floor <= version <= head`.
pub async fn checksums_at(
    db: impl PgExecutor<'_>,
    scope: &ScopeId,
    version: i64,
) -> Result<Vec<(String, u32, i64)>, sqlx::Error> {
    let rows = sqlx::query(
        r#"SELECT cs.collection, c.checksum_after, c.count_after
           FROM collection_state cs
           CROSS JOIN LATERAL (
               SELECT checksum_after, count_after FROM changes
               WHERE scope_id = cs.scope_id AND collection = cs.collection AND version <= $2
               ORDER BY version DESC LIMIT 1
           ) c
           WHERE cs.scope_id = $1
           ORDER BY cs.collection"#,
    )
    .bind(scope.as_str())
    .bind(version)
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok((
                r.try_get("collection")?,
                r.try_get::<i64, _>("checksum_after")? as u32,
                r.try_get("count_after")?,
            ))
        })
        .collect()
}

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

/// Takes the scope's version lock for the rest of the transaction (the same row lock [`append`] takes), so
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
