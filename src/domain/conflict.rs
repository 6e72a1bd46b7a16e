//! A conflict as replay records it: who sent the operation, and what was settled or refused.

use serde_json::Value;
use uuid::Uuid;

/// Who sent the operation a conflict came from.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    pub client_id: Uuid,
    pub op_id: Uuid,
    pub seq: i64,
    pub device_id: Uuid,
    pub user_id: Uuid,
}

#[derive(Debug, Clone)]
pub struct NewConflict<'a> {
    pub kind: &'static str,
    pub collection: &'a str,
    pub key: &'a str,
    pub fields: Vec<String>,
    pub base: Option<Value>,
    pub server: Option<Value>,
    pub client: Option<Value>,
    /// The policy applied, a rejection's code, ...
    pub detail: Value,
    /// The version the operation left the row at (`None`: no live row); a resolution checks it is unchanged.
    pub row_version: Option<i64>,
}
