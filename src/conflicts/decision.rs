//! What a resolution decides: which decisions fit which conflict, the row a decision leaves, and the
//! field-by-field diff an admin sees. Pure functions of the recorded conflict and the current row.

use crate::conflicts::MAX_NOTE_CHARS;
use crate::error::ErrorCode;
use crate::replay::generic::{get_path, set_path, with_mods};
use crate::{
    domain::{
        canonical::{self, CanonicalError},
        collections,
    },
    error::{Error, Result},
    store::conflicts::ConflictRecord,
    wire::{Decision, FieldDiff, ResolveRequest},
};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

/// Shape checks of a resolution that do not depend on the row: the decision fits the kind, `value` only with
/// `merge`, the note's length.
pub(super) fn check_request(record: &ConflictRecord, request: &ResolveRequest) -> Result<()> {
    let field_conflict = record.kind == "field_conflict";
    let fits = match request.decision {
        Decision::KeepServer | Decision::TakeClient | Decision::Merge => field_conflict,
        Decision::Accept => !field_conflict,
    };
    if !fits {
        let allowed = if field_conflict {
            "keep_server, take_client or merge"
        } else {
            "accept"
        };
        return Err(Error::bad_request(
            ErrorCode::InvalidDecision,
            format!("a `{}` conflict is resolved with {allowed}", record.kind),
        ));
    }
    match (request.decision, &request.value) {
        (Decision::Merge, Some(Value::Object(_))) => {}
        (Decision::Merge, _) => {
            return Err(Error::bad_request(
                ErrorCode::InvalidValue,
                "`merge` needs `value`: an object of the conflicting fields, or the whole row",
            ))
        }
        (_, Some(_)) => {
            return Err(Error::bad_request(
                ErrorCode::InvalidValue,
                "`value` is only for the `merge` decision",
            ))
        }
        (_, None) => {}
    }
    // U+0000 too: PostgreSQL cannot store it, and the write would fail as a 500.
    if request
        .note
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS || n.contains('\0'))
    {
        return Err(Error::bad_request(
            ErrorCode::InvalidNote,
            format!("`note` is at most {MAX_NOTE_CHARS} characters, without NUL (U+0000)"),
        ));
    }
    Ok(())
}

/// The row state a decision leads to (`None`: deleted). `current` is the row now (equal to what the operation
/// left, as the version was checked).
pub(super) fn decide(
    record: &ConflictRecord,
    current: Option<&Value>,
    request: &ResolveRequest,
) -> Result<Option<Value>> {
    let server = record.server.as_ref().map(|j| j.0.clone());
    let client = client_row(record);
    let whole = record.fields.iter().any(|f| f == "*");
    let merged_row = |value: &Map<String, Value>| -> Option<Value> {
        value
            .contains_key(collections::KEY_FIELD)
            .then(|| Value::Object(value.clone()))
    };
    let value = request.value.as_ref().and_then(Value::as_object);
    if whole {
        return match request.decision {
            Decision::KeepServer => Ok(server),
            Decision::TakeClient => Ok(client),
            Decision::Merge => match value.and_then(merged_row) {
                Some(row) => whole_row(record, row).map(Some),
                None => Err(Error::bad_request(
                    ErrorCode::InvalidValue,
                    "the whole row is in conflict: `value` is the whole row, with its `id`",
                )),
            },
            Decision::Accept => unreachable!("checked by check_request"),
        };
    }
    if let Some(row) = value.and_then(merged_row) {
        return whole_row(record, row).map(Some);
    }
    let mut row = current
        .cloned()
        .unwrap_or_else(|| json!({ collections::KEY_FIELD: record.key }));
    let chosen: Vec<(String, Value)> = match request.decision {
        Decision::KeepServer => record
            .fields
            .iter()
            .map(|f| (f.clone(), at(server.as_ref(), f)))
            .collect(),
        Decision::TakeClient => record
            .fields
            .iter()
            .map(|f| (f.clone(), client_value(record, f)))
            .collect(),
        Decision::Merge => {
            let value = value.expect("checked by check_request");
            if let Some(extra) = value.keys().find(|k| !record.fields.contains(k)) {
                return Err(Error::bad_request(
                    ErrorCode::InvalidValue,
                    format!(
                        "`{extra}` is not a conflicting field ({}); send those, or the whole row with its `id`",
                        record.fields.join(", ")
                    ),
                ));
            }
            value.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        }
        Decision::Accept => unreachable!("checked by check_request"),
    };
    for (path, new) in chosen {
        if !set_path(&mut row, &path, new) {
            return Err(Error::bad_request(
                ErrorCode::InvalidValue,
                format!("`{path}` runs through a value that is not an object"),
            ));
        }
    }
    Ok(Some(row))
}

fn whole_row(record: &ConflictRecord, row: Value) -> Result<Value> {
    if row.get(collections::KEY_FIELD) != Some(&Value::String(record.key.clone())) {
        return Err(Error::bad_request(
            ErrorCode::InvalidValue,
            format!("the row's `{}` must be `{}`", collections::KEY_FIELD, record.key),
        ));
    }
    Ok(row)
}

pub(super) fn check_values(row: &Value) -> Result<()> {
    canonical::validate(row).map_err(|e| match e {
        CanonicalError::NonIntegerNumber { path } => Error::bad_request(
            ErrorCode::FloatNotAllowed,
            format!("`{path}` is not an integer; send decimals as strings"),
        ),
        CanonicalError::TooDeep => Error::bad_request(ErrorCode::TooDeep, "the value is nested too deeply"),
        CanonicalError::NulCharacter { path } => Error::bad_request(
            ErrorCode::NulNotAllowed,
            format!("`{}` holds a NUL character (U+0000)", path.replace('\0', "\\u0000")),
        ),
    })
}

/// The value at `path` (`null` when absent).
fn at(row: Option<&Value>, path: &str) -> Value {
    row.and_then(|r| get_path(r, path)).cloned().unwrap_or(Value::Null)
}

/// Whether the client sent `mods` (an update) rather than a whole object.
fn is_update(record: &ConflictRecord) -> bool {
    record.detail.0.get("operation").and_then(Value::as_str) == Some("update")
}

/// The client's value for a conflicting field: the `mods` entry of an update, else the field of its object.
fn client_value(record: &ConflictRecord, path: &str) -> Value {
    let client = record.client.as_ref().map(|j| &j.0);
    if is_update(record) {
        client.and_then(|c| c.get(path)).cloned().unwrap_or(Value::Null)
    } else {
        at(client, path)
    }
}

/// The row as the client meant it: its object, the base with its `mods` applied, or `None` for a delete.
fn client_row(record: &ConflictRecord) -> Option<Value> {
    let client = record.client.as_ref().map(|j| j.0.clone())?;
    if !is_update(record) {
        return Some(client);
    }
    let base = record
        .base
        .as_ref()
        .map(|j| j.0.clone())
        .or_else(|| record.server.as_ref().map(|j| j.0.clone()))
        .unwrap_or_else(|| json!({}));
    with_mods(&base, client.as_object()?)
}

/// Field-level differences: every `fields` path, then every top-level field where base, server and client
/// (the row as the client meant it) do not all agree. Only field conflicts have rows to compare.
pub fn diff(record: &ConflictRecord) -> Vec<FieldDiff> {
    if record.kind != "field_conflict" {
        return Vec::new();
    }
    let base = record.base.as_ref().map(|j| &j.0);
    let server = record.server.as_ref().map(|j| &j.0);
    let client = client_row(record);
    let mut out: Vec<FieldDiff> = record
        .fields
        .iter()
        .filter(|f| f.as_str() != "*")
        .map(|f| FieldDiff {
            path: f.clone(),
            base: at(base, f),
            server: at(server, f),
            client: client_value(record, f),
        })
        .collect();
    let mut top: BTreeSet<&String> = BTreeSet::new();
    for row in [base, server, client.as_ref()].into_iter().flatten() {
        if let Some(object) = row.as_object() {
            top.extend(object.keys());
        }
    }
    for field in top {
        let (b, s, c) = (at(base, field), at(server, field), at(client.as_ref(), field));
        if (b != s || s != c) && !out.iter().any(|d| &d.path == field) {
            out.push(FieldDiff {
                path: field.clone(),
                base: b,
                server: s,
                client: c,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use sqlx::types::Json;
    use uuid::Uuid;

    fn record(fields: &[&str], base: Value, server: Value, client: Value, operation: &str) -> ConflictRecord {
        ConflictRecord {
            id: Uuid::nil(),
            scope_id: "water".into(),
            kind: "field_conflict".into(),
            status: "open".into(),
            collection: "customers".into(),
            key: "c".into(),
            fields: fields.iter().map(|f| f.to_string()).collect(),
            base: Some(Json(base)),
            server: Some(Json(server)),
            client: Some(Json(client)),
            detail: Json(json!({"operation": operation})),
            client_id: Uuid::nil(),
            op_id: Uuid::nil(),
            seq: 1,
            device_id: Uuid::nil(),
            device_name: None,
            user_id: Uuid::nil(),
            user_email: None,
            user_name: None,
            row_version: Some(3),
            created_at: Utc::now(),
            resolved_at: None,
            resolved_by: None,
            resolution: None,
        }
    }

    fn request(decision: Decision, value: Option<Value>) -> ResolveRequest {
        ResolveRequest {
            decision,
            value,
            expected_version: None,
            note: None,
        }
    }

    #[test]
    fn the_diff_shows_conflicting_paths_and_differing_top_level_fields() {
        let r = record(
            &["name"],
            json!({"id": "c", "name": "A", "phone": "1", "city": "X"}),
            json!({"id": "c", "name": "S", "phone": "1", "city": "Y"}),
            json!({"name": "C"}),
            "update",
        );
        let diff = diff(&r);
        let paths: Vec<&str> = diff.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["name", "city"]);
        assert_eq!(diff[0].client, json!("C"));
        assert_eq!(diff[1].client, json!("X"), "the client's row is its base with its mods");
    }

    #[test]
    fn field_decisions_change_only_the_conflicting_fields_of_the_current_row() {
        let r = record(
            &["name"],
            json!({"id": "c", "name": "A"}),
            json!({"id": "c", "name": "S"}),
            json!({"name": "C", "phone": "2"}),
            "update",
        );
        let now = json!({"id": "c", "name": "C", "phone": "2"});
        let keep = decide(&r, Some(&now), &request(Decision::KeepServer, None)).unwrap();
        assert_eq!(keep, Some(json!({"id": "c", "name": "S", "phone": "2"})));
        let take = decide(&r, Some(&now), &request(Decision::TakeClient, None)).unwrap();
        assert_eq!(take, Some(now.clone()));
        let merged = decide(&r, Some(&now), &request(Decision::Merge, Some(json!({"name": "M"})))).unwrap();
        assert_eq!(merged, Some(json!({"id": "c", "name": "M", "phone": "2"})));
        let err = decide(&r, Some(&now), &request(Decision::Merge, Some(json!({"phone": "9"})))).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidValue);
        let whole = decide(
            &r,
            Some(&now),
            &request(Decision::Merge, Some(json!({"id": "c", "name": "W"}))),
        )
        .unwrap();
        assert_eq!(whole, Some(json!({"id": "c", "name": "W"})));
    }

    #[test]
    fn whole_row_conflicts_write_a_side_or_delete() {
        let r = record(
            &["*"],
            json!({"id": "c", "name": "A"}),
            json!({"id": "c", "name": "S"}),
            Value::Null,
            "delete",
        );
        let mut r = r;
        r.client = None;
        let now = json!({"id": "c", "name": "S"});
        assert_eq!(
            decide(&r, Some(&now), &request(Decision::TakeClient, None)).unwrap(),
            None
        );
        assert_eq!(
            decide(&r, Some(&now), &request(Decision::KeepServer, None)).unwrap(),
            Some(now.clone())
        );
        let err = decide(&r, Some(&now), &request(Decision::Merge, Some(json!({"name": "x"})))).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidValue);
    }

    #[test]
    fn decisions_must_fit_the_kind() {
        let mut r = record(&["name"], json!({}), json!({}), json!({}), "update");
        assert_eq!(
            check_request(&r, &request(Decision::Accept, None)).unwrap_err().code(),
            ErrorCode::InvalidDecision
        );
        r.kind = "stale_price".into();
        assert!(check_request(&r, &request(Decision::Accept, None)).is_ok());
        assert_eq!(
            check_request(&r, &request(Decision::KeepServer, None))
                .unwrap_err()
                .code(),
            ErrorCode::InvalidDecision
        );
        assert_eq!(
            check_request(&r, &request(Decision::Accept, Some(json!({}))))
                .unwrap_err()
                .code(),
            ErrorCode::InvalidValue
        );
    }
}
