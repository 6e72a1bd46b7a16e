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

mod decision;

pub use decision::diff;

use crate::error::ErrorCode;
use crate::{
    domain::{collections, principal::Principal, Role, ScopeId},
    error::{Error, Result},
    store::{
        changes::{self, RowWrite},
        conflicts::{self as store, ConflictRecord, ListFilter},
    },
    wire::{
        ConflictDetail, ConflictList, ConflictOrigin, ConflictResolution, ConflictSummary, ConflictsQuery, DeviceRef,
        ResolveRequest, RowState, UserRef,
    },
};
use chrono::{DateTime, SecondsFormat, Utc};
use decision::{check_request, check_values, decide};
use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool};
use std::collections::HashMap;
use uuid::Uuid;

/// Default and largest page of the list.
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;
/// Longest `note` of a resolution, in characters.
pub const MAX_NOTE_CHARS: usize = 1000;

/// Every kind replay records.
pub const KINDS: [&str; 7] = [
    "field_conflict",
    "rejected_operation",
    "oversold_stock",
    "stale_price",
    "unknown_product",
    "implausible_time",
    "rejected_backend_write",
];

/// Who is asking: a user (for the audit record) and their role in each scope.
pub struct Admin<'a> {
    pub user_id: Uuid,
    pub roles: &'a HashMap<ScopeId, Role>,
}

impl<'a> From<&'a Principal> for Admin<'a> {
    fn from(principal: &'a Principal) -> Self {
        Admin {
            user_id: principal.user_id,
            roles: &principal.roles,
        }
    }
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
    Error::bad_request(ErrorCode::InvalidQuery, message)
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
                ErrorCode::UnknownCollection,
                format!("unknown collection `{collection}`"),
            ));
        }
    }
    let before =
        match query.cursor.as_deref() {
            Some(raw) => Some(parse_cursor(raw).ok_or_else(|| {
                Error::bad_request(ErrorCode::InvalidCursor, "`cursor` is not one this server issued")
            })?),
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
}
