//! Generic operations as Dexie records them (create, put, update with key-path `mods`, delete) and how an
//! operation made against an old base version is settled.
//!
//! Their shape was checked, and each parsed, when the batch was (`replay::op`). Operations that are well-formed
//! but cannot apply to the current state (updating a row that does not exist) are *rejected*: recorded,
//! answered as such, and the client's sequence moves on, so its queue never wedges.
//!
//! Conflicts: when `base_version` is older than the row, the row as the device saw it is read back from the
//! log. Fields only the device changed are applied, fields only the server changed are kept, and fields both
//! changed follow the collection's policy (`server_wins`, `client_wins`, or `manual`, which keeps the server's
//! value). Every such case is recorded in `conflicts` with base, server and client values.
//!
//! Rights: the collection declares which roles may create, update and delete (`Collection::rights`). The check
//! needs the current row (a `create`/`put` of an existing row replaces it: an update), so it runs here, first;
//! a forbidden operation is rejected (`forbidden_write`) like any operation that can never take effect, never
//! applied, and the queue moves on.

use crate::replay::{
    batch::{Batch, Seen},
    op::{Change, Write},
};
use crate::{
    domain::{
        codes::RejectionCode,
        collections::{ConflictPolicy, WriteKind},
        Role,
    },
    error::Result,
    store::{
        changes::RowWrite,
        conflicts::{NewConflict, Origin},
    },
    wire::Operation,
};
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// How an operation ended.
#[derive(Debug)]
pub enum Outcome {
    Applied {
        versions: Vec<i64>,
    },
    Conflict {
        versions: Vec<i64>,
        conflict_id: Uuid,
    },
    Rejected {
        code: RejectionCode,
        message: String,
        conflict_id: Uuid,
    },
}

/// Applies a generic operation (`write`, parsed from `op`) to the batch (which holds the scope lock), after the
/// batch's earlier operations, if `role` may write it.
pub async fn apply(
    batch: &mut Batch<'_>,
    op: &Operation,
    write: &Write,
    origin: Origin,
    role: Role,
) -> Result<Outcome> {
    let policy = write.collection.conflict_policy;
    let current = batch.row(&op.collection, &op.key).await?;
    let kind = match (&write.change, &current) {
        (Change::Whole(_), None) => WriteKind::Create,
        (Change::Whole(_), Some(_)) | (Change::Update(_), _) => WriteKind::Update,
        (Change::Delete, _) => WriteKind::Delete,
    };
    if !write.collection.rights.allows(role, kind) {
        let message = format!(
            "the {} role may not {} rows of `{}`",
            role.as_str(),
            kind.as_str(),
            op.collection
        );
        return reject(batch, op, origin, RejectionCode::ForbiddenWrite, &message).await;
    }
    let stale_base = match (&current, write.base_version) {
        (Some((_, version)), Some(base)) if base < *version => Some(base),
        _ => None,
    };
    // The row as the device saw it. Its own writes since the base are part of what it saw, not the server's
    // side: a device that edits a row twice before its next pull sends both edits against the same base.
    let (stale_base, base) = match stale_base {
        Some(version) => match batch
            .seen_by(&op.collection, &op.key, version, origin.client_id)
            .await?
        {
            Seen::Current => (None, None),
            Seen::Row(row) => (Some(version), Some(row)),
            Seen::Unknown => (Some(version), None),
        },
        None => (None, None),
    };
    let plan = match &write.change {
        Change::Whole(data) => match (&current, stale_base) {
            (Some((server, _)), Some(_)) => {
                merge_fields(server, &top_level_mods(base.as_ref(), data), base.as_ref(), policy)
            }
            _ => Plan::write(Some(Value::Object(data.clone()))),
        },
        Change::Update(mods) => {
            let Some((server, _)) = &current else {
                return reject(
                    batch,
                    op,
                    origin,
                    RejectionCode::RowNotFound,
                    "update of a row that does not exist",
                )
                .await;
            };
            match stale_base {
                Some(_) => merge_fields(server, mods, base.as_ref(), policy),
                None => match with_mods(server, mods) {
                    Some(updated) => Plan::write(Some(updated)),
                    None => {
                        return reject(
                            batch,
                            op,
                            origin,
                            RejectionCode::InvalidPath,
                            "a key path runs through a value that is not an object",
                        )
                        .await
                    }
                },
            }
        }
        Change::Delete => match (&current, stale_base) {
            (None, _) => Plan::nothing(),
            (Some(_), Some(_)) if policy != ConflictPolicy::ClientWins => Plan {
                write: None,
                changes_row: false,
                overlap: vec!["*".into()],
            },
            (Some(_), stale) => Plan {
                write: None,
                changes_row: true,
                overlap: if stale.is_some() { vec!["*".into()] } else { vec![] },
            },
        },
    };
    // The row as it would be stored: an update (or a merge against a stale base) shows it only now.
    if let (Some(schema), Some(row), true) = (write.collection.schema, &plan.write, plan.changes_row) {
        if let Some((path, why)) = schema.violation(row) {
            let message = format!(
                "the merged row does not satisfy the `{}` schema at `{path}`: {why}",
                op.collection
            );
            return reject(batch, op, origin, RejectionCode::SchemaViolation, &message).await;
        }
    }
    let server_value = current.as_ref().map(|(d, _)| d.clone());
    let versions = if plan.changes_row && plan.write.as_ref() != server_value.as_ref() {
        let write = RowWrite {
            collection: op.collection.clone(),
            key: op.key.clone(),
            data: plan.write.clone(),
        };
        batch.append(vec![write]).await?
    } else {
        Vec::new()
    };
    if plan.overlap.is_empty() {
        return Ok(Outcome::Applied { versions });
    }
    let client = write.change.sent();
    let conflict_id = batch.add_conflict(
        origin,
        NewConflict {
            kind: "field_conflict",
            collection: &op.collection,
            key: &op.key,
            fields: plan.overlap,
            base: base.flatten(),
            server: server_value,
            client,
            detail: json!({ "policy": policy, "operation": op.op_type, "base_version": op.base_version }),
            row_version: versions.last().copied().or(current.as_ref().map(|(_, v)| *v)),
        },
    );
    Ok(Outcome::Conflict { versions, conflict_id })
}

/// What an operation will write.
struct Plan {
    /// The row's new state (`None`: delete).
    write: Option<Value>,
    /// Whether to write at all.
    changes_row: bool,
    /// Fields both sides changed (`*`: the whole row).
    overlap: Vec<String>,
}

impl Plan {
    fn write(data: Option<Value>) -> Plan {
        Plan {
            write: data,
            changes_row: true,
            overlap: Vec::new(),
        }
    }
    fn nothing() -> Plan {
        Plan {
            write: None,
            changes_row: false,
            overlap: Vec::new(),
        }
    }
}

/// A whole object turned into the top-level changes it makes to `base` (fields it drops are set to null).
fn top_level_mods(base: Option<&Option<Value>>, new_fields: &Map<String, Value>) -> Map<String, Value> {
    let empty = Map::new();
    let base_fields = match base {
        Some(Some(Value::Object(m))) => m,
        _ => &empty,
    };
    let mut mods = Map::new();
    for (k, v) in new_fields {
        if base_fields.get(k) != Some(v) {
            mods.insert(k.clone(), v.clone());
        }
    }
    for k in base_fields.keys() {
        if !new_fields.contains_key(k) {
            mods.insert(k.clone(), Value::Null);
        }
    }
    mods
}

/// Applies `mods` made against `base` to the server's row, settling paths both sides changed by `policy`.
/// An unknown base (compacted log) counts every differing path as changed by both.
fn merge_fields(
    server: &Value,
    mods: &Map<String, Value>,
    base: Option<&Option<Value>>,
    policy: ConflictPolicy,
) -> Plan {
    let base_value = match base {
        Some(Some(v)) => Some(v),
        Some(None) => Some(&Value::Null),
        None => None,
    };
    let mut merged = server.clone();
    let mut overlap = Vec::new();
    for (path, client_value) in mods {
        let server_at = get_path(server, path);
        let server_changed = match base_value {
            Some(b) => get_path(b, path) != server_at,
            None => true,
        };
        let differs = server_at != Some(client_value) && !(client_value.is_null() && server_at.is_none());
        if server_changed && differs {
            overlap.push(path.clone());
            if policy != ConflictPolicy::ClientWins {
                continue;
            }
        }
        if !set_path(&mut merged, path, client_value.clone()) {
            overlap.push(path.clone());
        }
    }
    overlap.sort();
    overlap.dedup();
    Plan {
        write: Some(merged),
        changes_row: true,
        overlap,
    }
}

pub(crate) fn with_mods(row: &Value, mods: &Map<String, Value>) -> Option<Value> {
    let mut updated = row.clone();
    mods.iter()
        .all(|(path, value)| set_path(&mut updated, path, value.clone()))
        .then_some(updated)
}

pub(crate) fn get_path<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(value, |v, segment| v.as_object()?.get(segment))
}

/// Sets (or, for null, removes) the value at a dotted key path, creating intermediate objects.
/// Returns false when the path runs through a value that is not an object.
pub(crate) fn set_path(value: &mut Value, path: &str, new: Value) -> bool {
    let mut segments: Vec<&str> = path.split('.').collect();
    let last = segments.pop().expect("split yields at least one segment");
    let mut target = value;
    for segment in segments {
        let Some(object) = target.as_object_mut() else {
            return false;
        };
        target = object.entry(segment).or_insert_with(|| Value::Object(Map::new()));
    }
    let Some(object) = target.as_object_mut() else {
        return false;
    };
    if new.is_null() {
        object.remove(last);
    } else {
        object.insert(last.to_string(), new);
    }
    true
}

/// Records an operation that can never take effect (against `collection`) and answers `rejected`.
pub(super) fn reject_in(
    batch: &mut Batch<'_>,
    op: &Operation,
    origin: Origin,
    collection: &str,
    code: RejectionCode,
    message: &str,
) -> Result<Outcome> {
    let conflict_id = batch.add_conflict(
        origin,
        NewConflict {
            kind: "rejected_operation",
            collection,
            key: &op.key,
            fields: Vec::new(),
            base: None,
            server: None,
            client: serde_json::to_value(op).ok(),
            detail: json!({ "code": code.as_str(), "message": message }),
            row_version: None,
        },
    );
    Ok(Outcome::Rejected {
        code,
        message: message.to_string(),
        conflict_id,
    })
}

async fn reject(
    batch: &mut Batch<'_>,
    op: &Operation,
    origin: Origin,
    code: RejectionCode,
    message: &str,
) -> Result<Outcome> {
    reject_in(batch, op, origin, &op.collection, code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_set_nested_values_and_null_removes() {
        let mut row = json!({"id": "c1", "address": {"city": "Nakuru"}, "tags": ["a"]});
        assert!(set_path(&mut row, "address.city", json!("Nairobi")));
        assert!(set_path(&mut row, "phone.mobile", json!("+254700")));
        assert!(set_path(&mut row, "tags", Value::Null));
        assert_eq!(
            row,
            json!({"id": "c1", "address": {"city": "Nairobi"}, "phone": {"mobile": "+254700"}})
        );
        assert!(!set_path(&mut row, "address.city.x", json!(1)), "through a string");
    }

    #[test]
    fn disjoint_fields_merge_and_overlaps_follow_the_policy() {
        let base = Some(json!({"id": "c", "name": "A", "phone": "1", "note": "x"}));
        let server = json!({"id": "c", "name": "A", "phone": "2", "note": "server"});
        let mods: Map<String, Value> = serde_json::from_value(json!({"name": "B", "note": "client"})).unwrap();
        let plan = merge_fields(&server, &mods, Some(&base), ConflictPolicy::ServerWins);
        assert_eq!(
            plan.write,
            Some(json!({"id": "c", "name": "B", "phone": "2", "note": "server"}))
        );
        assert_eq!(plan.overlap, ["note"]);
        let plan = merge_fields(&server, &mods, Some(&base), ConflictPolicy::ClientWins);
        assert_eq!(
            plan.write,
            Some(json!({"id": "c", "name": "B", "phone": "2", "note": "client"}))
        );
        assert_eq!(plan.overlap, ["note"]);
        // The same value on both sides is no conflict.
        let same: Map<String, Value> = serde_json::from_value(json!({"phone": "2"})).unwrap();
        assert!(merge_fields(&server, &same, Some(&base), ConflictPolicy::Manual)
            .overlap
            .is_empty());
    }

    #[test]
    fn a_whole_object_becomes_the_fields_it_changes() {
        let base = Some(json!({"id": "c", "name": "A", "gone": 1}));
        let data: Map<String, Value> = serde_json::from_value(json!({"id": "c", "name": "B", "new": "n"})).unwrap();
        let mods = top_level_mods(Some(&base), &data);
        assert_eq!(Value::Object(mods), json!({"name": "B", "new": "n", "gone": null}));
    }
}
