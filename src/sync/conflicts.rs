//! Inspecting and resolving recorded conflicts (`/v1/admin/conflicts`, `dukasync conflicts`).
//!
//! Only owners and managers of a conflict's scope see it: a scope the caller does not belong to answers 404
//! (for a conflict, `conflict_not_found`, exactly as an unknown id), a cashier's scope 403.
//!
//! A resolution is a normal change: in one transaction holding the scope's version lock (the same lock replay
//! takes) it writes the decided row state through `changes::append`, marks the conflict resolved with who, when
//! and what, and appends a `conflicts/<id>` row, so every device learns of the decision through the feed. The
//! conflict row is locked too, so two resolutions of one conflict serialise and the second gets 409
//! `already_resolved`. A decision is only applied to the row state it was made against: when the row's version
//! differs from `expected_version` (default: the version the operation left the row at), 409 `row_moved_on`.

use super::operations::{get_path, set_path, with_mods};
use crate::{
    domain::{
        canonical::{self, CanonicalError},
        collections, Role, ScopeId,
    },
    error::{Error, Result},
    store::{
        changes::{self, RowWrite},
        conflicts::{self as store, ConflictRecord, ListFilter},
    },
    wire::{
        ConflictDetail, ConflictList, ConflictOrigin, ConflictResolution, ConflictSummary, ConflictsQuery, Decision,
        DeviceRef, FieldDiff, ResolveRequest, RowState, UserRef,
    },
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use sqlx::{PgConnection, PgPool};
use std::collections::{BTreeSet, HashMap};
use uuid::Uuid;

/// Default and largest page of the list.
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;
/// Longest `note` of a resolution, in characters.
pub const MAX_NOTE_CHARS: usize = 1000;

/// Every kind replay records.
pub const KINDS: [&str; 5] = [
    "field_conflict",
    "rejected_operation",
    "oversold_stock",
    "stale_price",
    "unknown_product",
];

/// Who is asking: a user (for the audit record) and their role in each scope.
pub struct Admin<'a> {
    pub user_id: Uuid,
    pub roles: &'a HashMap<ScopeId, Role>,
}

impl Admin<'_> {
    /// 404 (`not_found`) when not a member of `scope`, 403 when a member who may not administer it.
    fn check(&self, scope: &ScopeId, not_found: Error) -> Result<()> {
        match self.roles.get(scope) {
            None => Err(not_found),
            Some(role) if !role.may_administer() => Err(forbidden()),
            Some(_) => Ok(()),
        }
    }
}

fn forbidden() -> Error {
    Error::Forbidden("conflicts are for the owner or manager role in the scope")
}

fn invalid_query(message: impl Into<String>) -> Error {
    Error::bad_request("invalid_query", message)
}

/// Conflicts of the scopes the caller administers (or of `query.scope`), newest first, one page.
pub async fn list(db: &PgPool, admin: &Admin<'_>, query: ConflictsQuery) -> Result<ConflictList> {
    let scopes = match &query.scope {
        Some(raw) => {
            let scope = ScopeId::parse(raw).ok_or(Error::NotFound("scope"))?;
            admin.check(&scope, Error::NotFound("scope"))?;
            vec![scope.as_str().to_string()]
        }
        None => {
            let mut administered: Vec<String> = admin
                .roles
                .iter()
                .filter(|(_, role)| role.may_administer())
                .map(|(scope, _)| scope.as_str().to_string())
                .collect();
            if administered.is_empty() {
                return Err(forbidden());
            }
            administered.sort();
            administered
        }
    };
    if let Some(status) = &query.status {
        if !matches!(status.as_str(), "open" | "resolved") {
            return Err(invalid_query("`status` is `open` or `resolved`"));
        }
    }
    if let Some(kind) = &query.kind {
        if !KINDS.contains(&kind.as_str()) {
            return Err(invalid_query(format!("`kind` is one of {}", KINDS.join(", "))));
        }
    }
    if let Some(collection) = &query.collection {
        if collections::find(collection).is_none() {
            return Err(Error::bad_request(
                "unknown_collection",
                format!("unknown collection `{collection}`"),
            ));
        }
    }
    let before = match query.cursor.as_deref() {
        Some(raw) => Some(
            parse_cursor(raw)
                .ok_or_else(|| Error::bad_request("invalid_cursor", "`cursor` is not one this server issued"))?,
        ),
        None => None,
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let filter = ListFilter {
        scopes,
        status: query.status,
        collection: query.collection,
        kind: query.kind,
        device: query.device,
        since: query.since,
        until: query.until,
        before,
        // One more than asked tells whether another page follows.
        limit: i64::from(limit) + 1,
    };
    let mut rows = store::list(db, &filter).await?;
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|r| issue_cursor(r.created_at, r.id))
    } else {
        None
    };
    Ok(ConflictList {
        conflicts: rows.into_iter().map(summary).collect(),
        next_cursor,
    })
}

/// Everything needed to decide a conflict.
pub async fn show(db: &PgPool, admin: &Admin<'_>, id: Uuid) -> Result<ConflictDetail> {
    let record = store::get(db, id).await?.ok_or(Error::NotFound("conflict"))?;
    authorize(admin, &record)?;
    let mut conn = db.acquire().await?;
    detail(&mut conn, record).await
}

/// Applies a decision; returns the conflict's detail afterwards.
pub async fn resolve(db: &PgPool, admin: &Admin<'_>, id: Uuid, request: ResolveRequest) -> Result<ConflictDetail> {
    let record = store::get(db, id).await?.ok_or(Error::NotFound("conflict"))?;
    let scope = authorize(admin, &record)?;
    check_request(&record, &request)?;

    let mut tx = db.begin().await?;
    changes::lock_scope(&mut tx, &scope)
        .await?
        .ok_or(Error::NotFound("conflict"))?;
    // Read again under the locks: another resolution may have committed since the first read.
    let record = store::lock(&mut tx, id).await?.ok_or(Error::NotFound("conflict"))?;
    if record.status == "resolved" {
        let current = detail(&mut tx, record).await?;
        return Err(Error::AlreadyResolved {
            current: Box::new(to_value(&current)?),
        });
    }

    let mut writes = Vec::new();
    let mut value = Value::Null;
    if record.kind == "field_conflict" {
        let now = store::row_version_now(&mut *tx, &record.scope_id, &record.collection, &record.key).await?;
        let expected = request.expected_version.or(record.row_version);
        if now != expected {
            let current = detail(&mut tx, record).await?;
            return Err(Error::RowMovedOn {
                current: Box::new(to_value(&current)?),
            });
        }
        let current = changes::current_row(&mut tx, &scope, &record.collection, &record.key)
            .await?
            .map(|(data, _)| data);
        let decided = decide(&record, current.as_ref(), &request)?;
        if let Some(row) = &decided {
            check_values(row)?;
        }
        value = decided.clone().unwrap_or(Value::Null);
        if decided != current {
            writes.push(RowWrite {
                collection: record.collection.clone(),
                key: record.key.clone(),
                data: decided,
            });
        }
    }
    let resolved_at = store::transaction_now(&mut tx).await?;
    writes.push(RowWrite {
        collection: "conflicts".into(),
        key: record.id.to_string(),
        data: Some(json!({
            "id": record.id.to_string(),
            "kind": record.kind,
            "collection": record.collection,
            "key": record.key,
            "status": "resolved",
            "decision": request.decision,
            "resolved_at": resolved_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        })),
    });
    let versions = changes::append(&mut tx, &scope, &writes)
        .await?
        .ok_or(Error::NotFound("conflict"))?;
    let resolution = json!({
        "decision": request.decision,
        "value": value,
        "note": request.note,
        "versions": versions,
    });
    store::mark_resolved(&mut tx, id, admin.user_id, &resolution).await?;
    let record = store::lock(&mut tx, id).await?.ok_or(Error::NotFound("conflict"))?;
    let answer = detail(&mut tx, record).await?;
    tx.commit().await?;
    Ok(answer)
}

fn to_value(detail: &ConflictDetail) -> Result<Value> {
    serde_json::to_value(detail).map_err(|e| Error::Internal(e.into()))
}

/// The conflict's scope, if the caller administers it.
fn authorize(admin: &Admin<'_>, record: &ConflictRecord) -> Result<ScopeId> {
    let scope = ScopeId::parse(&record.scope_id).ok_or(Error::NotFound("conflict"))?;
    admin.check(&scope, Error::NotFound("conflict"))?;
    Ok(scope)
}

/// Shape checks of a resolution that do not depend on the row: the decision fits the kind, `value` only with
/// `merge`, the note's length.
fn check_request(record: &ConflictRecord, request: &ResolveRequest) -> Result<()> {
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
            "invalid_decision",
            format!("a `{}` conflict is resolved with {allowed}", record.kind),
        ));
    }
    match (request.decision, &request.value) {
        (Decision::Merge, Some(Value::Object(_))) => {}
        (Decision::Merge, _) => {
            return Err(Error::bad_request(
                "invalid_value",
                "`merge` needs `value`: an object of the conflicting fields, or the whole row",
            ))
        }
        (_, Some(_)) => {
            return Err(Error::bad_request(
                "invalid_value",
                "`value` is only for the `merge` decision",
            ))
        }
        (_, None) => {}
    }
    if request
        .note
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS)
    {
        return Err(Error::bad_request(
            "invalid_note",
            format!("`note` is at most {MAX_NOTE_CHARS} characters"),
        ));
    }
    Ok(())
}

/// The row state a decision leads to (`None`: deleted). `current` is the row now (equal to what the operation
/// left, as the version was checked).
fn decide(record: &ConflictRecord, current: Option<&Value>, request: &ResolveRequest) -> Result<Option<Value>> {
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
                    "invalid_value",
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
                    "invalid_value",
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
                "invalid_value",
                format!("`{path}` runs through a value that is not an object"),
            ));
        }
    }
    Ok(Some(row))
}

fn whole_row(record: &ConflictRecord, row: Value) -> Result<Value> {
    if row.get(collections::KEY_FIELD) != Some(&Value::String(record.key.clone())) {
        return Err(Error::bad_request(
            "invalid_value",
            format!("the row's `{}` must be `{}`", collections::KEY_FIELD, record.key),
        ));
    }
    Ok(row)
}

fn check_values(row: &Value) -> Result<()> {
    canonical::validate(row).map_err(|e| match e {
        CanonicalError::NonIntegerNumber { path } => Error::bad_request(
            "float_not_allowed",
            format!("`{path}` is not an integer; send decimals as strings"),
        ),
        CanonicalError::TooDeep => Error::bad_request("too_deep", "the value is nested too deeply"),
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

fn summary(r: ConflictRecord) -> ConflictSummary {
    ConflictSummary {
        id: r.id,
        scope: r.scope_id,
        kind: r.kind,
        status: r.status,
        collection: r.collection,
        key: r.key,
        fields: r.fields,
        device_id: r.device_id,
        user_id: r.user_id,
        created_at: r.created_at,
        resolved_at: r.resolved_at,
    }
}

async fn detail(conn: &mut PgConnection, r: ConflictRecord) -> Result<ConflictDetail> {
    let scope = ScopeId::parse(&r.scope_id).ok_or(Error::NotFound("conflict"))?;
    let data = changes::current_row(&mut *conn, &scope, &r.collection, &r.key)
        .await?
        .map(|(data, _)| data);
    let version = store::row_version_now(&mut *conn, &r.scope_id, &r.collection, &r.key).await?;
    let diff = diff(&r);
    let resolution = match (r.resolved_at, r.resolution) {
        (Some(resolved_at), Some(record)) => Some(ConflictResolution {
            resolved_at,
            resolved_by: r.resolved_by,
            record: record.0,
        }),
        _ => None,
    };
    Ok(ConflictDetail {
        id: r.id,
        scope: r.scope_id,
        kind: r.kind,
        status: r.status,
        collection: r.collection,
        key: r.key,
        fields: r.fields,
        base: r.base.map(|j| j.0),
        server: r.server.map(|j| j.0),
        client: r.client.map(|j| j.0),
        diff,
        detail: r.detail.0,
        operation: ConflictOrigin {
            client_id: r.client_id,
            op_id: r.op_id,
            seq: r.seq,
            device: DeviceRef {
                id: r.device_id,
                name: r.device_name,
            },
            user: UserRef {
                id: r.user_id,
                email: r.user_email,
                name: r.user_name,
            },
        },
        row_version: r.row_version,
        current: RowState { data, version },
        created_at: r.created_at,
        resolution,
    })
}

/// `{microseconds since the epoch}.{id}`: opaque to clients.
fn issue_cursor(at: DateTime<Utc>, id: Uuid) -> String {
    format!("{}.{}", at.timestamp_micros(), id.simple())
}

fn parse_cursor(raw: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let (micros, id) = raw.split_once('.')?;
    if micros.is_empty() || !micros.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        return None;
    }
    let at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    (id.len() == 32).then_some(())?;
    Some((at, Uuid::parse_str(id).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::types::Json;

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
    fn cursors_round_trip_and_junk_is_refused() {
        let at = DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap();
        let id = Uuid::new_v4();
        assert_eq!(parse_cursor(&issue_cursor(at, id)), Some((at, id)));
        for bad in [
            "",
            ".",
            "1.",
            ".abc",
            "x.00000000000000000000000000000000",
            "1.zz",
            "1.2.3",
        ] {
            assert_eq!(parse_cursor(bad), None, "{bad:?}");
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
        assert_eq!(err.code(), "invalid_value");
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
        assert_eq!(err.code(), "invalid_value");
    }

    #[test]
    fn decisions_must_fit_the_kind() {
        let mut r = record(&["name"], json!({}), json!({}), json!({}), "update");
        assert_eq!(
            check_request(&r, &request(Decision::Accept, None)).unwrap_err().code(),
            "invalid_decision"
        );
        r.kind = "stale_price".into();
        assert!(check_request(&r, &request(Decision::Accept, None)).is_ok());
        assert_eq!(
            check_request(&r, &request(Decision::KeepServer, None))
                .unwrap_err()
                .code(),
            "invalid_decision"
        );
        assert_eq!(
            check_request(&r, &request(Decision::Accept, Some(json!({}))))
                .unwrap_err()
                .code(),
            "invalid_value"
        );
    }
}
