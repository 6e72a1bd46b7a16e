//! SQL of a replay batch applied as a set (see `replay::batch`): one read of everything the batch's operations
//! will look at, taken under the scope's version lock, and one statement writing all their effects.
//!
//! The read must be its own statement after the lock (`store::replay::lock_client_and_scope`): a statement's
//! snapshot is taken before it waits for a lock, so a read in the locking statement could miss what the
//! previous writer of the scope committed.

use super::{
    changes::{self, Prepared, Slot, FEED_CHANNEL},
    conflicts::Origin,
    ledger::{Entry, Movement},
    params::{numbered, Binder},
};
use crate::domain::ScopeId;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::{PgConnection, Row};
use std::{collections::HashMap, sync::LazyLock};
use uuid::Uuid;

/// A row as `records` holds it: its data, version and row hash.
#[derive(Debug, Clone)]
pub struct Stored {
    pub data: Value,
    pub version: i64,
    pub hash: u32,
}

/// What the batch read under the lock.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub head: i64,
    pub floor: i64,
    /// The asked rows that exist (absent ones are not in the map).
    pub rows: HashMap<Slot, Stored>,
    /// (checksum, row count) of every collection of the scope.
    pub states: HashMap<String, (u32, i64)>,
    /// Stock on hand of each asked product (the sum of its movements; zero without any).
    pub stock: HashMap<String, Decimal>,
    /// An asked operation id already used, with the sequence that used it.
    pub used_op_id: Option<i64>,
}

/// Reads `slots`, every collection state, the stock of `products` and whether any of `op_ids` was used before,
/// in one statement. The caller holds the scope's version lock (`store::replay::lock_client_and_scope`, an
/// earlier statement: this one's snapshot then includes everything the scope's previous writer committed);
/// `head` and `floor` are what that lock read.
pub async fn read(
    tx: &mut PgConnection,
    scope: &ScopeId,
    (head, floor): (i64, i64),
    slots: &[Slot],
    products: &[String],
    op_ids: &[Uuid],
) -> Result<Snapshot, sqlx::Error> {
    let (collections, keys): (Vec<&str>, Vec<&str>) = slots.iter().map(|(c, k)| (c.as_str(), k.as_str())).unzip();
    // Every lookup is a subquery keyed by one asked item (LIMIT 1 keeps PostgreSQL from flattening it into a
    // join it could plan as a scan), so that its only plan is an index lookup per item: replay runs generic
    // plans (see `replay`), and a generic plan made while a table was small joined the asked products
    // against all of the scope's stock balances, and filtered all of the scope's stored results for the asked
    // operation ids, work that grew with the scope's history.
    let rows = sqlx::query(
        r#"SELECT 'row' AS kind, r.collection AS name, r.key, r.data, r.version AS number, r.row_hash AS hash,
                  NULL::numeric AS quantity
             FROM unnest($2::text[], $3::text[]) AS u(collection, key)
             CROSS JOIN LATERAL (SELECT * FROM records
                                  WHERE scope_id = $1 AND collection = u.collection AND key = u.key LIMIT 1) r
           UNION ALL
           SELECT 'state', collection, NULL, NULL, row_count, checksum, NULL
             FROM collection_state WHERE scope_id = $1
           UNION ALL
           SELECT 'stock', p.id, NULL, NULL, NULL, NULL,
                  COALESCE((SELECT quantity FROM stock_on_hand WHERE scope_id = $1 AND product_id = p.id), 0)
             FROM unnest($4::text[]) AS p(id)
           UNION ALL
           (SELECT 'used', NULL, NULL, NULL, r.seq, NULL, NULL
              FROM unnest($5::uuid[]) AS o(id)
              CROSS JOIN LATERAL (SELECT seq FROM replay_results WHERE scope_id = $1 AND op_id = o.id LIMIT 1) r
             LIMIT 1)"#,
    )
    .bind(scope.as_str())
    .bind(&collections)
    .bind(&keys)
    .bind(products)
    .bind(op_ids)
    .fetch_all(&mut *tx)
    .await?;
    let mut snapshot = Snapshot {
        head,
        floor,
        ..Snapshot::default()
    };
    for row in rows {
        let kind: &str = row.try_get("kind")?;
        match kind {
            "row" => {
                let stored = Stored {
                    data: row.try_get::<sqlx::types::Json<Value>, _>("data")?.0,
                    version: row.try_get("number")?,
                    hash: row.try_get::<i64, _>("hash")? as u32,
                };
                snapshot
                    .rows
                    .insert((row.try_get("name")?, row.try_get("key")?), stored);
            }
            "state" => {
                let checksum = row.try_get::<i64, _>("hash")? as u32;
                snapshot
                    .states
                    .insert(row.try_get("name")?, (checksum, row.try_get("number")?));
            }
            "stock" => {
                snapshot.stock.insert(row.try_get("name")?, row.try_get("quantity")?);
            }
            _ => snapshot.used_op_id = Some(row.try_get("number")?),
        }
    }
    Ok(snapshot)
}

/// Rows of `slots` that exist (for a row the first read did not foresee); one index lookup per slot, as in
/// [`read`].
pub async fn read_rows(
    tx: &mut PgConnection,
    scope: &ScopeId,
    slots: &[Slot],
) -> Result<HashMap<Slot, Stored>, sqlx::Error> {
    let (collections, keys): (Vec<&str>, Vec<&str>) = slots.iter().map(|(c, k)| (c.as_str(), k.as_str())).unzip();
    let rows = sqlx::query(
        r#"SELECT r.collection, r.key, r.data, r.version, r.row_hash
             FROM unnest($2::text[], $3::text[]) AS u(collection, key)
             CROSS JOIN LATERAL (SELECT * FROM records
                                  WHERE scope_id = $1 AND collection = u.collection AND key = u.key LIMIT 1) r"#,
    )
    .bind(scope.as_str())
    .bind(&collections)
    .bind(&keys)
    .fetch_all(tx)
    .await?;
    rows.into_iter()
        .map(|row| {
            let stored = Stored {
                data: row.try_get::<sqlx::types::Json<Value>, _>("data")?.0,
                version: row.try_get("version")?,
                hash: row.try_get::<i64, _>("row_hash")? as u32,
            };
            Ok(((row.try_get("collection")?, row.try_get("key")?), stored))
        })
        .collect()
}

/// A conflict to record, owned.
#[derive(Debug, Clone)]
pub struct PendingConflict {
    pub id: Uuid,
    pub origin: Origin,
    pub kind: &'static str,
    pub collection: String,
    pub key: String,
    pub fields: Vec<String>,
    pub base: Option<Value>,
    pub server: Option<Value>,
    pub client: Option<Value>,
    pub detail: Value,
    pub row_version: Option<i64>,
}

/// An operation's stored result (see `store::replay`).
#[derive(Debug, Clone)]
pub struct PendingResult {
    pub client_id: Uuid,
    pub seq: i64,
    pub op_id: Uuid,
    pub fingerprint: [u8; 32],
    pub result: Value,
}

/// Everything a batch writes.
pub(crate) struct Effects<'a> {
    /// The log fold of the batch's row writes (`changes::prepare`), versions `head + 1 ..= head + count`.
    pub log: Prepared,
    pub count: i64,
    pub entries: &'a [Entry],
    pub movements: &'a [Movement],
    pub conflicts: &'a [PendingConflict],
    pub results: &'a [PendingResult],
    /// Each replaying client's new last applied sequence.
    pub last_seqs: &'a [(Uuid, i64)],
}

/// Writes `effects` in one statement: the head (when rows were written), the log, `records`, the collection
/// states, journal entries and lines, stock movements, conflicts, stored results, the clients' sequences and the
/// NOTIFY (delivered at commit). Returns the new head, or `None` when no row was written.
pub(crate) async fn write(
    tx: &mut PgConnection,
    scope: &ScopeId,
    effects: Effects<'_>,
) -> Result<Option<i64>, sqlx::Error> {
    let Effects {
        log,
        count,
        entries,
        movements,
        conflicts,
        results,
        last_seqs,
    } = effects;

    let mut entry_cols = EntryColumns::default();
    for e in entries {
        entry_cols.push(e);
    }
    let m_ids: Vec<Uuid> = movements.iter().map(|m| m.id).collect();
    let m_products: Vec<&str> = movements.iter().map(|m| m.product_id.as_str()).collect();
    let m_quantities: Vec<Decimal> = movements.iter().map(|m| m.quantity).collect();
    let m_reasons: Vec<&str> = movements.iter().map(|m| m.reason).collect();
    let m_collections: Vec<&str> = movements.iter().map(|m| m.source_collection).collect();
    let m_keys: Vec<&str> = movements.iter().map(|m| m.source_key.as_str()).collect();
    let m_ops: Vec<Option<Uuid>> = movements.iter().map(|m| m.op_id).collect();

    let json = |v: &Option<Value>| v.as_ref().map(Value::to_string);
    let c_ids: Vec<Uuid> = conflicts.iter().map(|c| c.id).collect();
    let c_kinds: Vec<&str> = conflicts.iter().map(|c| c.kind).collect();
    let c_collections: Vec<&str> = conflicts.iter().map(|c| c.collection.as_str()).collect();
    let c_keys: Vec<&str> = conflicts.iter().map(|c| c.key.as_str()).collect();
    // Each conflict's `fields` as a JSON array: PostgreSQL arrays cannot be ragged.
    let c_fields: Vec<String> = conflicts
        .iter()
        .map(|c| Value::from(c.fields.clone()).to_string())
        .collect();
    let c_base: Vec<Option<String>> = conflicts.iter().map(|c| json(&c.base)).collect();
    let c_server: Vec<Option<String>> = conflicts.iter().map(|c| json(&c.server)).collect();
    let c_client: Vec<Option<String>> = conflicts.iter().map(|c| json(&c.client)).collect();
    let c_detail: Vec<String> = conflicts.iter().map(|c| c.detail.to_string()).collect();
    let c_client_ids: Vec<Uuid> = conflicts.iter().map(|c| c.origin.client_id).collect();
    let c_op_ids: Vec<Uuid> = conflicts.iter().map(|c| c.origin.op_id).collect();
    let c_seqs: Vec<i64> = conflicts.iter().map(|c| c.origin.seq).collect();
    let c_devices: Vec<Uuid> = conflicts.iter().map(|c| c.origin.device_id).collect();
    let c_users: Vec<Uuid> = conflicts.iter().map(|c| c.origin.user_id).collect();
    let c_versions: Vec<Option<i64>> = conflicts.iter().map(|c| c.row_version).collect();

    let r_clients: Vec<Uuid> = results.iter().map(|r| r.client_id).collect();
    let r_seqs: Vec<i64> = results.iter().map(|r| r.seq).collect();
    let r_ops: Vec<Uuid> = results.iter().map(|r| r.op_id).collect();
    let r_prints: Vec<&[u8]> = results.iter().map(|r| &r.fingerprint[..]).collect();
    let r_results: Vec<String> = results.iter().map(|r| r.result.to_string()).collect();
    let (s_clients, s_seqs): (Vec<Uuid>, Vec<i64>) = last_seqs.iter().copied().unzip();

    let binder = Binder::new(sqlx::query(&WRITE), &WRITE_PARAMS)
        .bind("scope", scope.as_str())
        .bind("count", count);
    let head: Option<i64> = changes::bind_log(binder, &log)
        .bind("entry_ids", &entry_cols.ids)
        .bind("entry_kinds", &entry_cols.kinds)
        .bind("entry_collections", &entry_cols.collections)
        .bind("entry_keys", &entry_cols.keys)
        .bind("entry_op_ids", &entry_cols.op_ids)
        .bind("entry_reverses", &entry_cols.reverses)
        .bind("entry_occurred_at", &entry_cols.occurred_at)
        .bind("line_entries", &entry_cols.line_entries)
        .bind("line_numbers", &entry_cols.line_numbers)
        .bind("line_accounts", &entry_cols.line_accounts)
        .bind("line_debits", &entry_cols.line_debits)
        .bind("line_credits", &entry_cols.line_credits)
        .bind("movement_ids", &m_ids)
        .bind("movement_products", &m_products)
        .bind("movement_quantities", &m_quantities)
        .bind("movement_reasons", &m_reasons)
        .bind("movement_collections", &m_collections)
        .bind("movement_keys", &m_keys)
        .bind("movement_op_ids", &m_ops)
        .bind("conflict_ids", &c_ids)
        .bind("conflict_kinds", &c_kinds)
        .bind("conflict_collections", &c_collections)
        .bind("conflict_keys", &c_keys)
        .bind("conflict_fields", &c_fields)
        .bind("conflict_bases", &c_base)
        .bind("conflict_servers", &c_server)
        .bind("conflict_clients", &c_client)
        .bind("conflict_details", &c_detail)
        .bind("conflict_client_ids", &c_client_ids)
        .bind("conflict_op_ids", &c_op_ids)
        .bind("conflict_seqs", &c_seqs)
        .bind("conflict_devices", &c_devices)
        .bind("conflict_users", &c_users)
        .bind("conflict_row_versions", &c_versions)
        .bind("result_clients", &r_clients)
        .bind("result_seqs", &r_seqs)
        .bind("result_op_ids", &r_ops)
        .bind("result_fingerprints", &r_prints)
        .bind("result_bodies", &r_results)
        .bind("client_ids", &s_clients)
        .bind("client_last_seqs", &s_seqs)
        .bind("channel", FEED_CHANNEL)
        .finish()
        .fetch_one(tx)
        .await?
        .try_get(0)?;
    Ok(head)
}

/// Journal entries and their lines, column by column.
#[derive(Default)]
struct EntryColumns<'a> {
    ids: Vec<Uuid>,
    kinds: Vec<&'static str>,
    collections: Vec<&'static str>,
    keys: Vec<&'a str>,
    op_ids: Vec<Option<Uuid>>,
    reverses: Vec<Option<Uuid>>,
    occurred_at: Vec<DateTime<Utc>>,
    line_entries: Vec<Uuid>,
    line_numbers: Vec<i32>,
    line_accounts: Vec<&'a str>,
    line_debits: Vec<Decimal>,
    line_credits: Vec<Decimal>,
}

impl<'a> EntryColumns<'a> {
    fn push(&mut self, e: &'a Entry) {
        self.ids.push(e.id);
        self.kinds.push(e.kind);
        self.collections.push(e.source_collection);
        self.keys.push(&e.source_key);
        self.op_ids.push(e.op_id);
        self.reverses.push(e.reverses);
        self.occurred_at.push(e.occurred_at);
        for (i, line) in e.lines.iter().enumerate() {
            self.line_entries.push(e.id);
            self.line_numbers.push(i as i32 + 1);
            self.line_accounts.push(&line.account);
            self.line_debits.push(line.debit);
            self.line_credits.push(line.credit);
        }
    }
}

/// The parameters of [`WRITE`], in the order [`write`] binds them.
static WRITE_PARAMS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let own = [
        "entry_ids",
        "entry_kinds",
        "entry_collections",
        "entry_keys",
        "entry_op_ids",
        "entry_reverses",
        "entry_occurred_at",
        "line_entries",
        "line_numbers",
        "line_accounts",
        "line_debits",
        "line_credits",
        "movement_ids",
        "movement_products",
        "movement_quantities",
        "movement_reasons",
        "movement_collections",
        "movement_keys",
        "movement_op_ids",
        "conflict_ids",
        "conflict_kinds",
        "conflict_collections",
        "conflict_keys",
        "conflict_fields",
        "conflict_bases",
        "conflict_servers",
        "conflict_clients",
        "conflict_details",
        "conflict_client_ids",
        "conflict_op_ids",
        "conflict_seqs",
        "conflict_devices",
        "conflict_users",
        "conflict_row_versions",
        "result_clients",
        "result_seqs",
        "result_op_ids",
        "result_fingerprints",
        "result_bodies",
        "client_ids",
        "client_last_seqs",
        "channel",
    ];
    [&["scope", "count"][..], &changes::LOG_PARAMS, &own].concat()
});

/// Foreign keys between these tables (lines to entries, a reversal to its entry, results to the client) are
/// checked at the end of the statement, when every part has run. The balance of each entry is checked at
/// commit by its deferred trigger, and that its lines join an entry of this transaction at the end of the
/// statement (migration 0009), as for any other writer.
static WRITE: LazyLock<String> = LazyLock::new(|| {
    let sql = format!(
        r#"
WITH head AS (
    UPDATE scopes SET head_version = head_version + $count WHERE id = $scope AND $count > 0 RETURNING head_version
), {log}, entries AS (
    INSERT INTO journal_entries (scope_id, id, kind, source_collection, source_key, op_id, reverses, occurred_at)
    SELECT $scope, * FROM unnest($entry_ids::uuid[], $entry_kinds::text[], $entry_collections::text[],
                                 $entry_keys::text[], $entry_op_ids::uuid[], $entry_reverses::uuid[],
                                 $entry_occurred_at::timestamptz[])
), lines AS (
    INSERT INTO journal_lines (scope_id, entry_id, line_no, account, debit, credit)
    SELECT $scope, * FROM unnest($line_entries::uuid[], $line_numbers::int[], $line_accounts::text[],
                                 $line_debits::numeric[], $line_credits::numeric[])
), movements AS (
    INSERT INTO stock_movements (scope_id, id, product_id, quantity, reason, source_collection, source_key, op_id)
    SELECT $scope, * FROM unnest($movement_ids::uuid[], $movement_products::text[], $movement_quantities::numeric[],
                                 $movement_reasons::text[], $movement_collections::text[], $movement_keys::text[],
                                 $movement_op_ids::uuid[])
), conflicts AS (
    INSERT INTO conflicts (id, scope_id, kind, collection, key, fields, base, server, client, detail,
                           client_id, op_id, seq, device_id, user_id, row_version)
    SELECT id, $scope, kind, collection, key, ARRAY(SELECT jsonb_array_elements_text(fields::jsonb)), base::jsonb,
           server::jsonb, client::jsonb, detail::jsonb, client_id, op_id, seq, device_id, user_id, row_version
    FROM unnest($conflict_ids::uuid[], $conflict_kinds::text[], $conflict_collections::text[],
                $conflict_keys::text[], $conflict_fields::text[], $conflict_bases::text[],
                $conflict_servers::text[], $conflict_clients::text[], $conflict_details::text[],
                $conflict_client_ids::uuid[], $conflict_op_ids::uuid[], $conflict_seqs::bigint[],
                $conflict_devices::uuid[], $conflict_users::uuid[], $conflict_row_versions::bigint[])
         AS u(id, kind, collection, key, fields, base, server, client, detail, client_id, op_id, seq, device_id,
              user_id, row_version)
), results AS (
    INSERT INTO replay_results (scope_id, client_id, seq, op_id, fingerprint, result)
    SELECT $scope, * FROM unnest($result_clients::uuid[], $result_seqs::bigint[], $result_op_ids::uuid[],
                                 $result_fingerprints::bytea[], $result_bodies::text[]::jsonb[])
), clients AS (
    UPDATE replay_clients c SET last_seq = u.last_seq, updated_at = now()
      FROM unnest($client_ids::uuid[], $client_last_seqs::bigint[]) AS u(client_id, last_seq)
     WHERE c.scope_id = $scope AND c.client_id = u.client_id AND c.last_seq <> u.last_seq
)
SELECT (SELECT head_version FROM head WHERE pg_notify($channel, $scope || ':' || head_version) IS NOT NULL)
"#,
        log = changes::LOG_CTES
    );
    numbered(&sql, &WRITE_PARAMS)
});
