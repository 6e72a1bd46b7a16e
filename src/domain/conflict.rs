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

impl Origin {
    /// A write the backend queued in `dukasync_api.pending_writes` (docs/backend-sql.md): no client, device or
    /// user (the nil UUID); `seq` is the queued write's id, and `op_id` is made from it, so a conflict names
    /// the write it came from.
    pub fn backend(pending_id: i64) -> Origin {
        Origin {
            client_id: Uuid::nil(),
            op_id: Uuid::from_u64_pair(0, pending_id as u64),
            seq: pending_id,
            device_id: Uuid::nil(),
            user_id: Uuid::nil(),
        }
    }
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
