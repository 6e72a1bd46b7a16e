//! Backend writes over HTTP (protocol §14): `POST /v1/scopes/{scope}/rows`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

/// Body of `POST /v1/scopes/{scope}/rows`: row writes applied in order, in one transaction.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RowsRequest {
    /// At most `DUKASYNC_MAX_BATCH_OPS` writes (default 500, configurable 1 to 10000; more: 413
    /// `batch_too_large`). `maxItems` states the default.
    #[schema(max_items = 500)]
    pub writes: Vec<RowWriteRequest>,
}

/// What a backend write does to its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RowWriteType {
    /// Replace the whole row (`data`, whose `id` equals `key`); creates it when missing.
    Put,
    /// Set top-level fields of an existing row (`fields`; a `null` value removes the field).
    Patch,
    /// Delete the row.
    Delete,
}

/// One backend write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RowWriteRequest {
    /// Chosen by the backend, unique per scope: resending it returns the stored result.
    pub id: Uuid,
    #[serde(rename = "type")]
    pub write_type: RowWriteType,
    pub collection: String,
    /// 1 to 128 bytes.
    #[schema(min_length = 1, max_length = 128)]
    pub key: String,
    /// `put` only: the whole row.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::floats_kept::value"
    )]
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
    /// `patch` only: top-level fields to set; `null` removes one.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::floats_kept::map"
    )]
    #[schema(value_type = Option<Object>)]
    pub fields: Option<Map<String, Value>>,
    /// Optimistic concurrency: the row's current version must be this one when the write applies; `0`: the row
    /// must not exist. Absent: no check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub if_version: Option<i64>,
}

/// What became of a backend write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RowWriteStatus {
    /// Applied; `version` is the row's version now (`null` after a delete).
    Applied,
    /// `if_version` was not the row's version; nothing applied. `version` is the current one (`null`: no row).
    VersionMismatch,
    /// A patch or delete of a row that does not exist; nothing applied.
    NotFound,
}

/// The answer to one backend write, in request order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RowWriteResult {
    pub id: Uuid,
    pub status: RowWriteStatus,
    /// The row's version after the write (`applied`), or as found (`version_mismatch`); `null` when no row.
    pub version: Option<i64>,
    /// True when this id was applied by an earlier request: the stored result, nothing applied now.
    #[serde(default)]
    pub duplicate: bool,
}

/// Body of the answer to `POST /v1/scopes/{scope}/rows`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RowsResponse {
    pub results: Vec<RowWriteResult>,
}
