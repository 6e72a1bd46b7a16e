//! A row write, as the feed records it: what every writer (replay, commands, the CLI, the conflicts admin)
//! hands to `store::changes` to append to a scope's log.

use serde_json::Value;

/// One row write: an upsert with the row's full new state, or a delete (`data: None`).
#[derive(Debug, Clone)]
pub struct RowWrite {
    pub collection: String,
    pub key: String,
    pub data: Option<Value>,
}
