//! Appending to the log: the scope's version lock, the fold of writes into log rows, current rows and
//! collection checksums, and the SQL that writes them (shared with the replay batch's single write).

use super::RowWrite;
use crate::domain::{canonical, ScopeId};
use crate::store::params::{numbered, Binder};
use sqlx::{PgConnection, Row};
use std::{collections::HashMap, sync::LazyLock};

/// Channel carrying `scope:head` after every commit that appends changes.
pub const FEED_CHANNEL: &str = "dukasync_changes";

/// Appends `writes` to the scope's log inside the caller's transaction; the i-th write gets version
/// `first + i`. Returns the versions assigned, or `None` when the scope does not exist.
///
/// Three statements: the head update (the scope's version lock), one read of the prior row hashes and
/// collection states, and one statement writing the log, the rows, the states and the NOTIFY. A replay batch
/// does the same work inside its own single write (`store::batch`), through `prepare` and `LOG_CTES`.
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
    static PARAMS: LazyLock<Vec<&'static str>> =
        LazyLock::new(|| [&["scope"][..], &LOG_PARAMS, &["channel", "payload"]].concat());
    static APPEND: LazyLock<String> = LazyLock::new(|| {
        numbered(
            &format!("WITH {LOG_CTES}\nSELECT pg_notify($channel, $payload)"),
            &PARAMS,
        )
    });
    let binder = Binder::new(sqlx::query(&APPEND), &PARAMS).bind("scope", scope.as_str());
    bind_log(binder, &prepared)
        .bind("channel", FEED_CHANNEL)
        // Delivered at commit, and only if the transaction commits.
        .bind("payload", format!("{scope}:{head}"))
        .finish()
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

/// The parameters of [`LOG_CTES`], in the order [`bind_log`] binds them (after the statement's `scope`).
pub(crate) const LOG_PARAMS: [&str; 15] = [
    "log_versions",
    "log_collections",
    "log_keys",
    "log_ops",
    "log_data",
    "log_tags",
    "log_checksums",
    "log_counts",
    "up_versions",
    "up_hashes",
    "del_collections",
    "del_keys",
    "state_names",
    "state_checksums",
    "state_counts",
];

/// The common table expressions `log`, `up`, `del` and `states` that write a [`Prepared`] fold: the log rows,
/// `records` (upserts and deletes) and `collection_state`, with the parameters [`LOG_PARAMS`] and `$scope`. The
/// one place this SQL is written: [`append`] and the replay batch's single write (`store::batch`) both build
/// their statement around it.
///
/// `records` takes each final row from the log insert's RETURNING (the row's last write is one of the log's
/// rows), so its JSON crosses the wire and is parsed into jsonb once, not twice. `del` finds each deleted row by
/// key (LIMIT 1: a subquery PostgreSQL cannot flatten into a join) and deletes it by its tuple id: as a
/// semi-join, the generic plan made while `records` was small scanned all of the scope's rows for every delete
/// (tests/db/feed_plans.rs). The tuple ids are the statement's snapshot; every writer holds the scope's version
/// lock, so no other transaction moves them before the delete. Without deletes, the one-time filter on
/// `cardinality` skips the step whatever its plan.
pub(crate) const LOG_CTES: &str = r#"log AS (
    INSERT INTO changes (scope_id, version, collection, key, op, data, tag, checksum_after, count_after)
    SELECT $scope, v, c, k, o, d::jsonb, t, s, n
    FROM unnest($log_versions::bigint[], $log_collections::text[], $log_keys::text[], $log_ops::text[],
                $log_data::text[], $log_tags::bigint[], $log_checksums::bigint[], $log_counts::bigint[])
         AS u(v, c, k, o, d, t, s, n)
    RETURNING version, collection, key, data
), up AS (
    INSERT INTO records (scope_id, collection, key, data, version, row_hash)
    SELECT $scope, l.collection, l.key, l.data, l.version, u.h
    FROM unnest($up_versions::bigint[], $up_hashes::bigint[]) AS u(v, h) JOIN log l ON l.version = u.v
    ON CONFLICT (scope_id, collection, key)
    DO UPDATE SET data = EXCLUDED.data, version = EXCLUDED.version, row_hash = EXCLUDED.row_hash
), del AS (
    DELETE FROM records WHERE cardinality($del_keys::text[]) > 0 AND ctid = ANY (ARRAY(
        SELECT r.ctid FROM unnest($del_collections::text[], $del_keys::text[]) AS u(c, k)
        CROSS JOIN LATERAL (SELECT ctid FROM records WHERE scope_id = $scope AND collection = u.c AND key = u.k LIMIT 1) r))
), states AS (
    INSERT INTO collection_state (scope_id, collection, checksum, row_count)
    SELECT $scope, c, s, n FROM unnest($state_names::text[], $state_checksums::bigint[], $state_counts::bigint[])
         AS u(c, s, n)
    ON CONFLICT (scope_id, collection) DO UPDATE SET checksum = EXCLUDED.checksum, row_count = EXCLUDED.row_count
)"#;

/// Binds the [`LOG_PARAMS`] of [`LOG_CTES`], in their order.
pub(crate) fn bind_log<'q>(binder: Binder<'q>, prepared: &'q Prepared) -> Binder<'q> {
    let Prepared { log, rows, states } = prepared;
    binder
        .bind("log_versions", &log.versions)
        .bind("log_collections", &log.collections)
        .bind("log_keys", &log.keys)
        .bind("log_ops", &log.ops)
        .bind("log_data", &log.data)
        .bind("log_tags", &log.tags)
        .bind("log_checksums", &log.checksums)
        .bind("log_counts", &log.counts)
        .bind("up_versions", &rows.up_versions)
        .bind("up_hashes", &rows.up_hashes)
        .bind("del_collections", &rows.del_collections)
        .bind("del_keys", &rows.del_keys)
        .bind("state_names", &states.names)
        .bind("state_checksums", &states.checksums)
        .bind("state_counts", &states.counts)
}

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
