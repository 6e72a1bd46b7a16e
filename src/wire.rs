//! Everything that crosses the wire, in one module. Field names here are the protocol (`protocol/README.md`);
//! changing one is a breaking change. Request types refuse unknown fields.
//!
//! Versions are integers (always below 2^53, so JavaScript holds them exactly). Row data is JSON with integer
//! numbers only; money and quantities inside it are decimal strings.

use crate::domain::{collections::Collection, Role};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

mod enroll;
mod rows;
pub use enroll::*;
pub use rows::*;

/// The body of every 4xx and 5xx answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `scope_not_found`.
    pub code: String,
    /// Human-readable explanation; wording may change.
    pub message: String,
    /// Structured details for some codes (e.g. `reset_required` carries `reason` and `head`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
}

/// A scope the caller may see, with the caller's role in it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ScopeInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub head: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ScopeList {
    pub scopes: Vec<ScopeInfo>,
}

/// A device of one of the scope's members.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeviceInfo {
    pub id: uuid::Uuid,
    pub name: String,
    pub user_email: String,
    pub role: Role,
    pub last_seen_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Tokens neither revoked nor expired.
    pub live_tokens: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeviceList {
    pub devices: Vec<DeviceInfo>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionList {
    pub collections: Vec<Collection>,
}

/// Query of `GET /v1/scopes/{scope}/changes`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChangesQuery {
    /// Cursor from the previous page (`"0"` or absent for the beginning). A bare version number is accepted
    /// but cannot detect a restored or different database; prefer the cursor.
    pub since: Option<String>,
    /// Most changes per page (default `DUKASYNC_DEFAULT_PAGE_SIZE`, 500); larger values are clamped to
    /// `DUKASYNC_MAX_PAGE_SIZE` (10000); 0 counts as 1. Above 4294967295: 400 `invalid_query`.
    #[param(value_type = Option<i64>, format = Int64, minimum = 0, maximum = 4294967295_i64)]
    pub limit: Option<u32>,
    /// Seconds to wait for a change when none is newer than `since` (long-poll); clamped to
    /// `DUKASYNC_MAX_WAIT_SECS` (30). Above 4294967295: 400 `invalid_query`.
    #[param(value_type = Option<i64>, format = Int64, minimum = 0, maximum = 4294967295_i64)]
    pub wait: Option<u32>,
    /// Comma-separated collection names; only their changes are returned.
    pub collections: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOp {
    Upsert,
    Delete,
}

/// One committed change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Change {
    pub version: i64,
    pub collection: String,
    pub key: String,
    pub op: ChangeOp,
    /// The row's full new state (upsert only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
}

/// A page of the change feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChangesPage {
    pub changes: Vec<Change>,
    /// Pass as `since` for the next page. Store it only together with the changes of this page.
    pub cursor: String,
    /// More changes are waiting: pull again at once.
    pub has_more: bool,
    /// The scope's current head version.
    pub head: i64,
}

/// A page of the change feed as the server writes it in JSON: the same fields as [`ChangesPage`], with row
/// data passed through as the stored JSON text instead of being parsed and printed again. JSON only: other
/// formats encode a [`ChangesPage`]. The definition of the layout: `feed::page` writes pages by hand (copying
/// pre-rendered changes) and its tests hold those bytes to what serde writes for this type; each change is
/// rendered through [`ChangeOut`].
#[derive(Debug, Serialize)]
pub struct ChangesPageOut<'a> {
    pub changes: Vec<ChangeOut<'a>>,
    pub cursor: &'a str,
    pub has_more: bool,
    pub head: i64,
}

/// One change of a [`ChangesPageOut`].
#[derive(Debug, Serialize)]
pub struct ChangeOut<'a> {
    pub version: i64,
    pub collection: &'a str,
    pub key: &'a str,
    pub op: ChangeOp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<&'a serde_json::value::RawValue>,
}

/// Query of `GET /v1/scopes/{scope}/checksum`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChecksumQuery {
    /// Version (default: the head); negative: 400 `invalid_version`.
    #[param(minimum = 0)]
    pub version: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CollectionChecksum {
    pub collection: String,
    /// Sum of the collection's row hashes modulo 2^32 (unsigned 32-bit).
    #[schema(value_type = i64, format = Int64, minimum = 0, maximum = 4294967295_i64)]
    pub checksum: u32,
    pub count: i64,
}

/// The scope's state checksum at a version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChecksumReport {
    pub version: i64,
    /// Sum of all collections' checksums modulo 2^32 (unsigned 32-bit).
    #[schema(value_type = i64, format = Int64, minimum = 0, maximum = 4294967295_i64)]
    pub checksum: u32,
    pub count: i64,
    pub collections: Vec<CollectionChecksum>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// `ready`, `degraded` (Redis configured but unreachable; still serving) or `down` (PostgreSQL unreachable).
    pub status: String,
    /// `up` or `down`.
    pub postgres: String,
    /// `up`, `down` or `not_configured`.
    pub redis: String,
}

/// MessagePack as every endpoint sends it: structs as maps, and human-readable mode so that UUIDs, timestamps
/// and decimals are strings exactly as in JSON.
pub fn to_msgpack<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    let mut out = Vec::new();
    let mut serializer = rmp_serde::Serializer::new(&mut out)
        .with_struct_map()
        .with_human_readable();
    value.serialize(&mut serializer)?;
    Ok(out)
}

/// Body of `POST /v1/scopes/{scope}/ops`: a run of one client's outbox, in the order the client made them.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpsRequest {
    /// The outbox's id (one per device installation); bound to the token's device on first use.
    pub client_id: uuid::Uuid,
    /// At most `DUKASYNC_MAX_BATCH_OPS` operations (default 500, configurable 1 to 10000; more: 413
    /// `batch_too_large`). `maxItems` states the default.
    #[schema(max_items = 500)]
    pub ops: Vec<Operation>,
}

/// The kind of a generic operation, as Dexie records changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OpType {
    /// Dexie `add` / Dexie.Syncable type 1: the whole object. Same effect as `put`.
    Create,
    /// Dexie `put`: the whole object, replacing the row.
    Put,
    /// Dexie `update` / type 2: `mods` maps key paths (`"address.city"`) to new values.
    Update,
    /// Dexie `delete` / type 3.
    Delete,
    /// A named command the server executes (`record_sale`, ...): money and stock are never written as rows.
    Command,
}

/// One operation of the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    /// The client's sequence number: 1, 2, 3, ... without gaps.
    pub seq: i64,
    /// Unique id of the operation (UUID), stable across replays.
    pub id: uuid::Uuid,
    #[serde(rename = "type")]
    pub op_type: OpType,
    /// The collection of a generic operation; absent for a `command`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub collection: String,
    /// The row's key; for a command, the id of what it creates or acts on (the sale, the payment, ...).
    /// 1 to 128 bytes (`invalid_key`).
    #[schema(min_length = 1, max_length = 128)]
    pub key: String,
    /// The whole object (`create`, `put`); its `id` field must equal `key`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "floats_kept::value"
    )]
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
    /// Key path to new value (`update`); a `null` value clears the field.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "floats_kept::map"
    )]
    #[schema(value_type = Option<Object>)]
    pub mods: Option<serde_json::Map<String, Value>>,
    /// The row version the device last saw; older than the server's row means a conflict check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_version: Option<i64>,
    /// For `command`: its name (`record_sale`, `void_sale`, ...; see `protocol/README.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// For `command`: its arguments. Money and quantities are decimal strings.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "floats_kept::value"
    )]
    #[schema(value_type = Option<Object>)]
    pub args: Option<Value>,
}

/// Operation values (and a conflict resolution's `value`) read so that no float is lost before validation
/// refuses it. `serde_json::Value` reads a
/// MessagePack NaN or infinity as `null` (it has no number for them), which would store a `null` the device never
/// sent. Read here, such a float becomes the largest finite float instead: still a float, so validation refuses the
/// operation with `float_not_allowed`, its path and its place in the batch. Floats never get past validation, so
/// that stand-in is never stored or answered.
mod floats_kept {
    use serde::{
        de::{self, MapAccess, SeqAccess, Visitor},
        Deserialize, Deserializer,
    };
    use serde_json::{Map, Number, Value};
    use std::fmt;

    struct Kept(Value);

    impl<'de> Deserialize<'de> for Kept {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(KeptVisitor).map(Kept)
        }
    }

    struct KeptVisitor;

    impl<'de> Visitor<'de> for KeptVisitor {
        type Value = Value;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
            let kept = Number::from_f64(v).or_else(|| Number::from_f64(f64::MAX));
            Ok(kept.map_or(Value::Null, Value::Number))
        }
        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_owned()))
        }
        fn visit_string<E>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }
        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(self)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut items = Vec::new();
            while let Some(Kept(item)) = seq.next_element()? {
                items.push(item);
            }
            Ok(Value::Array(items))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut object = Map::new();
            while let Some((key, Kept(item))) = map.next_entry::<String, Kept>()? {
                object.insert(key, item);
            }
            Ok(Value::Object(object))
        }
    }

    pub fn value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
        Ok(Option::<Kept>::deserialize(d)?.map(|k| k.0))
    }

    pub fn map<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Map<String, Value>>, D::Error> {
        match value(d)? {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(de::Error::invalid_type(de::Unexpected::Other("a non-map"), &"a map")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OpStatus {
    /// Took effect now.
    Applied,
    /// Took effect earlier; this is the stored result (`original` says how it ended then).
    Duplicate,
    /// Took effect, but overlapping fields were settled by the collection's policy; see `conflict_id`.
    Conflict,
    /// Can never take effect (e.g. updating a row that does not exist); the sequence moved on.
    Rejected,
}

impl OpStatus {
    /// Its name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            OpStatus::Applied => "applied",
            OpStatus::Duplicate => "duplicate",
            OpStatus::Conflict => "conflict",
            OpStatus::Rejected => "rejected",
        }
    }
}

/// The result of one operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OpResult {
    pub seq: i64,
    pub id: uuid::Uuid,
    pub status: OpStatus,
    /// For `duplicate`: the status the operation had when it was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<OpStatus>,
    /// Feed versions the operation produced (empty when it changed nothing).
    pub versions: Vec<i64>,
    /// For `rejected`: a stable code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For `conflict` (and `rejected`): the recorded case, for `/v1/admin/conflicts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict_id: Option<uuid::Uuid>,
}

/// Answer of `POST /v1/scopes/{scope}/ops`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OpsResponse {
    pub results: Vec<OpResult>,
    /// The last sequence the server has applied for this client: outbox entries up to it are acknowledged.
    pub last_seq: i64,
    /// Every operation of this client up to this sequence is durable beyond the primary's disk (a standby has
    /// flushed it; protocol §10.3): outbox entries up to it may be deleted. 0 when that is not confirmed yet;
    /// equal to `last_seq` on a server with no standby configured.
    pub durable_seq: i64,
}

/// A whole reference dataset (`GET /v1/scopes/{scope}/reference/{dataset}`). The JSON representation is
/// canonical (keys sorted, no whitespace; fields are declared in that order), and its blake3 hash is the ETag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReferenceSnapshot {
    /// Sum of the rows' hashes modulo 2^32 (unsigned 32-bit), as in `/checksum` for this collection.
    #[schema(value_type = i64, format = Int64, minimum = 0, maximum = 4294967295_i64)]
    pub checksum: u32,
    /// Number of rows.
    pub count: i64,
    /// The dataset, i.e. the collection's name.
    pub dataset: String,
    /// Every live row's full data, ordered by `id` (UTF-8 bytes).
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<Value>,
    /// The scope: snapshots of different scopes never have the same bytes, so never the same ETag.
    pub scope: String,
    /// Feed version of the dataset's last change (0 if it never had one). The snapshot equals the collection's
    /// state at every version from this one until its next change.
    pub version: i64,
}

/// `GET /v1/admin/cache`: this instance's cache statistics (the same figures as `/metrics`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CacheReport {
    /// Cache key format version; entries of another version are never read.
    pub format: String,
    /// `up`, `down` (bypassed after a failure; retried with backoff) or `not_configured`.
    pub redis: String,
    /// `DUKASYNC_CACHE_MEMORY_BYTES`: the in-process cache's bound (0: disabled).
    pub memory_budget_bytes: u64,
    /// Bytes the in-process cache holds now.
    pub memory_bytes: u64,
    /// `DUKASYNC_CACHE_WINDOW`: versions per feed window (0: window caching off).
    pub window_size: u32,
    pub caches: Vec<crate::cache::stats::CacheFigures>,
}

/// Query of `GET /v1/scopes/{scope}/summary`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SummaryQuery {
    /// The business day, `YYYY-MM-DD` (default: today at `utc_offset_minutes`).
    pub day: Option<String>,
    /// The business's offset from UTC in minutes, -720 to 840 (default 180, East Africa Time).
    #[param(minimum = -720, maximum = 840)]
    pub utc_offset_minutes: Option<i32>,
}

/// An amount of money by payment method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MethodAmount {
    /// `cash`, `mpesa`, `card` or `credit`.
    pub method: String,
    /// Decimal string with 2 places.
    pub amount: String,
}

/// Money the business holds or is owed, now (all time, every entry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Balances {
    /// Account 1000.
    pub cash: String,
    /// Account 1010, the M-Pesa float.
    pub mpesa: String,
    /// Account 1020, card payments not yet settled.
    pub card: String,
    /// Account 1100, what customers owe.
    pub receivables: String,
}

/// A stock-tracked product at or below its reorder level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LowStockItem {
    pub product_id: String,
    pub name: String,
    /// Stock on hand (decimal string); may be negative after offline oversales.
    pub quantity: String,
    pub reorder_level: String,
}

/// `GET /v1/scopes/{scope}/summary`: the owner's dashboard, computed from PostgreSQL at one snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Summary {
    /// The scope's head version at the snapshot these figures were computed from.
    pub version: i64,
    pub day: String,
    pub utc_offset_minutes: i32,
    /// Sales revenue of the day (account 4000), net of voids, deposits excluded.
    pub revenue: String,
    /// What the day's sales and cylinder exchanges were paid with, net of voids (deposits included); one
    /// entry per method, always all four.
    pub sales_by_method: Vec<MethodAmount>,
    pub balances: Balances,
    /// Ordered by product id.
    pub low_stock: Vec<LowStockItem>,
}

/// Query of `GET /v1/admin/conflicts`. Timestamps are RFC 3339 (percent-encode a `+` offset as `%2B`).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConflictsQuery {
    /// Only this scope (one the caller administers); default: every scope the caller administers.
    pub scope: Option<String>,
    /// `open` or `resolved`.
    pub status: Option<String>,
    pub collection: Option<String>,
    /// `field_conflict`, `rejected_operation`, `oversold_stock`, `stale_price`, `unknown_product` or
    /// `implausible_time`.
    pub kind: Option<String>,
    /// The device the operation came from.
    pub device: Option<uuid::Uuid>,
    /// Created at or after.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Created before.
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Most conflicts per page: default 50, at most 200 (larger values are clamped).
    #[param(value_type = Option<i64>, format = Int64, minimum = 0, maximum = 4294967295_i64)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A conflict in a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConflictSummary {
    pub id: uuid::Uuid,
    pub scope: String,
    pub kind: String,
    /// `open` or `resolved`.
    pub status: String,
    pub collection: String,
    pub key: String,
    /// The fields both sides changed (`*`: the whole row); empty for kinds other than `field_conflict`.
    pub fields: Vec<String>,
    pub device_id: uuid::Uuid,
    pub user_id: uuid::Uuid,
    pub created_at: chrono::DateTime<chrono::Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Answer of `GET /v1/admin/conflicts`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConflictList {
    pub conflicts: Vec<ConflictSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// One field both sides touched, as the base, the server and the client had it (`null`: absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FieldDiff {
    /// A top-level field name or a key path (`address.city`).
    pub path: String,
    #[schema(value_type = Object)]
    pub base: Value,
    #[schema(value_type = Object)]
    pub server: Value,
    #[schema(value_type = Object)]
    pub client: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeviceRef {
    pub id: uuid::Uuid,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UserRef {
    pub id: uuid::Uuid,
    pub email: Option<String>,
    pub name: Option<String>,
}

/// The operation a conflict came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConflictOrigin {
    pub client_id: uuid::Uuid,
    pub op_id: uuid::Uuid,
    pub seq: i64,
    pub device: DeviceRef,
    pub user: UserRef,
}

/// The row as it stands now (`data` absent: no live row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RowState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
    /// The row's version now (for a deleted row, its tombstone's); what `expected_version` is compared with.
    pub version: Option<i64>,
}

/// Who resolved a conflict, when, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConflictResolution {
    pub resolved_at: chrono::DateTime<chrono::Utc>,
    pub resolved_by: Option<uuid::Uuid>,
    /// `{decision, value, note, versions}` as recorded.
    #[schema(value_type = Object)]
    pub record: Value,
}

/// Answer of `GET /v1/admin/conflicts/{id}` and of a resolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConflictDetail {
    pub id: uuid::Uuid,
    pub scope: String,
    pub kind: String,
    pub status: String,
    pub collection: String,
    pub key: String,
    pub fields: Vec<String>,
    /// The row as the device last saw it.
    #[schema(value_type = Option<Object>)]
    pub base: Option<Value>,
    /// The row on the server when the operation arrived.
    #[schema(value_type = Option<Object>)]
    pub server: Option<Value>,
    /// What the device sent (`mods`, the whole object, or the whole operation for commands and rejections).
    #[schema(value_type = Option<Object>)]
    pub client: Option<Value>,
    pub diff: Vec<FieldDiff>,
    #[schema(value_type = Object)]
    pub detail: Value,
    pub operation: ConflictOrigin,
    /// The version the operation left the row at; a resolution expects the row still there by default.
    pub row_version: Option<i64>,
    pub current: RowState,
    pub created_at: chrono::DateTime<chrono::Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<ConflictResolution>,
}

/// How a conflict is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// `field_conflict`: the conflicting fields (or the whole row) take the server's values.
    KeepServer,
    /// `field_conflict`: the conflicting fields (or the whole row) take the client's values.
    TakeClient,
    /// `field_conflict`: `value` gives the conflicting fields (`{field: value}`) or the whole row.
    Merge,
    /// Every other kind: the case was reviewed; no row changes.
    Accept,
}

/// Body of `POST /v1/admin/conflicts/{id}/resolve`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    pub decision: Decision,
    /// For `merge` only.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "floats_kept::value"
    )]
    #[schema(value_type = Option<Object>)]
    pub value: Option<Value>,
    /// The row version the decision was made against; default the conflict's `row_version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<i64>,
    /// Why (kept in the audit record, at most 1000 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Body of `POST /v1/scopes/{scope}/accounts`: an account added to the scope's chart.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    /// The account code, also its row id: 1 to 32 ASCII letters, digits, `-` or `_`.
    #[schema(max_length = 32, pattern = "^[A-Za-z0-9_-]{1,32}$")]
    pub code: String,
    /// 1 to 100 characters.
    #[schema(max_length = 100)]
    pub name: String,
    /// `asset`, `liability`, `equity`, `revenue` or `expense`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// Body of `POST /v1/scopes/{scope}/payment_methods`: a payment method posting to one of the scope's asset
/// accounts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPaymentMethod {
    /// The method's id, as commands name it in `method`: 1 to 32 ASCII letters, digits, `-` or `_`.
    #[schema(max_length = 32, pattern = "^[A-Za-z0-9_-]{1,32}$")]
    pub id: String,
    /// 1 to 100 characters.
    #[schema(max_length = 100)]
    pub name: String,
    /// Code of an `asset` account of the scope other than 1100 receivables.
    #[schema(max_length = 32)]
    pub account: String,
}

/// Answer of the routes that add a reference row: the row as written and its feed version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RowCreated {
    pub collection: String,
    #[schema(value_type = Object)]
    pub row: Value,
    pub version: i64,
}

#[cfg(test)]
mod op_status_tests {
    use super::OpStatus;

    #[test]
    fn op_statuses_name_themselves_as_on_the_wire() {
        for status in [
            OpStatus::Applied,
            OpStatus::Duplicate,
            OpStatus::Conflict,
            OpStatus::Rejected,
        ] {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
    }
}
