//! Everything that crosses the wire, in one module. Field names here are the protocol (`protocol/README.md`);
//! changing one is a breaking change. Request types refuse unknown fields.
//!
//! Versions are integers (always below 2^53, so JavaScript holds them exactly). Row data is JSON with integer
//! numbers only; money and quantities inside it are decimal strings.

use crate::domain::{collections::Collection, Role};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

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
    /// `DUKASYNC_MAX_PAGE_SIZE` (1000).
    pub limit: Option<u32>,
    /// Seconds to wait for a change when none is newer than `since` (long-poll); clamped to
    /// `DUKASYNC_MAX_WAIT_SECS` (30).
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

/// Query of `GET /v1/scopes/{scope}/checksum`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChecksumQuery {
    /// Version (default: the head).
    pub version: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CollectionChecksum {
    pub collection: String,
    /// Sum of the collection's row hashes modulo 2^32.
    pub checksum: u32,
    pub count: i64,
}

/// The scope's state checksum at a version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChecksumReport {
    pub version: i64,
    /// Sum of all collections' checksums modulo 2^32.
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
