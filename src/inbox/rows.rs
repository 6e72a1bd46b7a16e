//! Backend writes over HTTP (`POST /v1/scopes/{scope}/rows`, protocol §14): the ERP's service user (role
//! `backend`) puts, patches and deletes rows in batches, each write idempotent by its id and optionally
//! conditional on the row's version.
//!
//! Invariants:
//! - Nothing or everything: every write is checked for shape before anything is read ([`check`]); a used id with
//!   another payload refuses the whole batch (422); otherwise the batch applies in one transaction.
//! - Exact `if_version`: the transaction holds the scope's version lock (as replay and the SQL inbox's applier
//!   do) from before the rows are read until commit, so the version compared is the version the write replaces.
//! - Like any writer of the scope: it goes through the replay batch (`replay::batch`), so versions, row hashes,
//!   checksums and `records` move together and `NOTIFY dukasync_changes` wakes long-polls at commit.
//! - Exactly once per id: each write's answer is stored with its fingerprint in the transaction that applied it;
//!   a resend is answered from there (`duplicate: true`), whatever happened to the row since.

use super::backend_may_write;
use crate::{
    domain::{
        canonical,
        collections::{self, KEY_FIELD, MAX_KEY_LEN},
        ScopeId,
    },
    error::{Error, ErrorCode, Result},
    replay::{
        batch::{Batch, Foresight},
        op::canonical_refusal,
    },
    store::{self, changes::RowWrite},
    wire::{RowWriteRequest, RowWriteResult, RowWriteStatus, RowWriteType, RowsRequest, RowsResponse},
};
use serde_json::{Map, Value};
use std::collections::HashSet;
use uuid::Uuid;

/// A batch whose every write has been checked for shape; nothing about it depends on the database.
#[derive(Debug)]
pub struct Rows {
    writes: Vec<RowWriteRequest>,
    /// Per write, blake3 of its canonical JSON: equal exactly when the payloads are equal.
    prints: Vec<[u8; 32]>,
}

/// Checks a batch: at most `max` writes, ids distinct, each write well formed for a collection the backend writes.
pub fn check(request: RowsRequest, max: usize) -> Result<Rows> {
    if request.writes.len() > max {
        return Err(Error::BatchTooLarge { limit: max });
    }
    let mut ids = HashSet::with_capacity(request.writes.len());
    for (i, write) in request.writes.iter().enumerate() {
        check_write(write).map_err(|e| e.at_write(i))?;
        if !ids.insert(write.id) {
            let message = format!("write id {} appears twice in the batch", write.id);
            return Err(Error::bad_request(ErrorCode::DuplicateWriteId, message).at_write(i));
        }
    }
    let prints = request.writes.iter().map(fingerprint).collect();
    Ok(Rows {
        writes: request.writes,
        prints,
    })
}

fn check_write(write: &RowWriteRequest) -> Result<()> {
    let bad = |code, message: &str| Err(Error::bad_request(code, message.to_string()));
    // PostgreSQL's text and jsonb cannot hold U+0000: refused here (as in operations), or the write would fail as
    // a 500.
    for (field, text) in [("key", &write.key), ("collection", &write.collection)] {
        if text.contains('\0') {
            return bad(
                ErrorCode::NulNotAllowed,
                &format!("`{field}` holds a NUL character (U+0000)"),
            );
        }
    }
    match collections::find(&write.collection) {
        None => return bad(ErrorCode::UnknownCollection, "no such collection"),
        Some(c) if !backend_may_write(c) => {
            return bad(
                ErrorCode::ServerOnlyCollection,
                "the backend may not write this collection",
            )
        }
        Some(_) => {}
    }
    if write.key.is_empty() || write.key.len() > MAX_KEY_LEN {
        return bad(ErrorCode::InvalidKey, "keys are 1 to 128 bytes");
    }
    if write.if_version.is_some_and(|v| v < 0) {
        return bad(
            ErrorCode::InvalidIfVersion,
            "if_version is a row version (0: the row must not exist)",
        );
    }
    let fields = match (write.write_type, &write.data, &write.fields) {
        (RowWriteType::Put, Some(Value::Object(data)), None) => {
            if data.get(KEY_FIELD) != Some(&Value::String(write.key.clone())) {
                return bad(ErrorCode::KeyMismatch, "`data.id` must equal the key");
            }
            data
        }
        (RowWriteType::Patch, None, Some(fields)) if !fields.is_empty() => {
            if fields
                .get(KEY_FIELD)
                .is_some_and(|id| id != &Value::String(write.key.clone()))
            {
                return bad(ErrorCode::KeyMismatch, "a patch cannot change `id`");
            }
            fields
        }
        (RowWriteType::Delete, None, None) => return Ok(()),
        _ => {
            let message = "put takes `data` (an object), patch `fields` (a non-empty object), delete neither";
            return bad(ErrorCode::InvalidOperation, message);
        }
    };
    // A put's fields and a patch's are both the row's top-level fields (depth 1), names included: checked as
    // the object they sit in.
    canonical::validate(&Value::Object(fields.clone())).map_err(|e| {
        let (code, message) = canonical_refusal(e);
        Error::bad_request(code, message)
    })?;
    // A put is the whole row: checked against the collection's schema now. A patch's row exists only once merged
    // with the stored one ([`apply`]).
    match write.write_type {
        RowWriteType::Put => check_schema(&write.collection, &Value::Object(fields.clone())),
        _ => Ok(()),
    }
}

/// Refuses a row that does not satisfy its collection's JSON Schema (protocol §9).
fn check_schema(collection: &str, row: &Value) -> Result<()> {
    let Some(schema) = collections::find(collection).and_then(|c| c.schema) else {
        return Ok(());
    };
    match schema.violation(row) {
        None => Ok(()),
        Some((path, why)) => Err(Error::SchemaViolation {
            message: format!("the row does not satisfy the `{collection}` schema at `{path}`: {why}"),
            path,
        }),
    }
}

fn fingerprint(write: &RowWriteRequest) -> [u8; 32] {
    let value = serde_json::to_value(write).expect("writes serialize");
    *blake3::hash(canonical::to_canonical_json(&value).as_bytes()).as_bytes()
}

/// Applies the batch in one transaction under the scope's version lock; answers each write in order.
pub async fn write_rows(db: &sqlx::PgPool, scope: &ScopeId, rows: &Rows) -> Result<RowsResponse> {
    let mut tx = store::replay::begin(db).await?;
    let locked = store::inbox::lock_scope(&mut tx, scope)
        .await?
        .ok_or(Error::NotFound("scope"))?;
    let ids: Vec<Uuid> = rows.writes.iter().map(|w| w.id).collect();
    let stored = store::backend_writes::stored(&mut tx, scope, &ids).await?;

    // First the writes answered before: a reused id with another payload refuses the batch before any effect.
    let mut results: Vec<Option<RowWriteResult>> = Vec::with_capacity(rows.writes.len());
    let mut foresight = Foresight::default();
    for (i, (write, print)) in rows.writes.iter().zip(&rows.prints).enumerate() {
        let Some(before) = stored.iter().find(|s| s.write_id == write.id) else {
            foresight.row(&write.collection, &write.key);
            results.push(None);
            continue;
        };
        if before.fingerprint.as_slice() != print.as_slice() {
            return Err(Error::InvalidWrite {
                code: ErrorCode::PayloadMismatch,
                message: format!("write id {} was used with a different payload", write.id),
                index: i,
                path: None,
            });
        }
        let mut result: RowWriteResult =
            serde_json::from_value(before.result.0.clone()).map_err(|e| Error::Internal(e.into()))?;
        result.duplicate = true;
        results.push(Some(result));
    }

    let mut answers = Vec::new();
    if results.iter().any(Option::is_none) {
        let mut batch = Batch::open(&mut tx, scope, locked, foresight, &[]).await?;
        for (i, ((write, print), slot)) in rows.writes.iter().zip(&rows.prints).zip(&mut results).enumerate() {
            if slot.is_some() {
                continue;
            }
            // A refusal here returns before commit: nothing of the batch is written.
            let result = apply(&mut batch, write).await.map_err(|e| e.at_write(i))?;
            let stored = serde_json::to_value(&result).map_err(|e| Error::Internal(e.into()))?;
            answers.push((write.id, *print, stored));
            *slot = Some(result);
        }
        batch.finish(&[]).await?;
        store::backend_writes::store(&mut tx, scope, &answers).await?;
    }
    tx.commit().await?;
    let results = results.into_iter().map(|r| r.expect("every write answered")).collect();
    Ok(RowsResponse { results })
}

/// Applies one write to the batch, if its `if_version` holds and its row is there to patch or delete.
async fn apply(batch: &mut Batch<'_>, write: &RowWriteRequest) -> Result<RowWriteResult> {
    let current = batch.row(&write.collection, &write.key).await?;
    let version = current.as_ref().map(|(_, v)| *v);
    let answer = |status, version| RowWriteResult {
        id: write.id,
        status,
        version,
        duplicate: false,
    };
    if let Some(expected) = write.if_version {
        // Under the scope lock, `version` is the row's version at commit: nothing else writes in between.
        if version.unwrap_or(0) != expected {
            return Ok(answer(RowWriteStatus::VersionMismatch, version));
        }
    }
    let current = current.map(|(row, _)| row);
    let new_row = match (write.write_type, &current) {
        (RowWriteType::Put, _) => write.data.clone(),
        (RowWriteType::Patch, Some(Value::Object(row))) => Some(Value::Object(patched(row, write.fields.as_ref()))),
        (RowWriteType::Delete, Some(_)) => None,
        (RowWriteType::Patch | RowWriteType::Delete, _) => return Ok(answer(RowWriteStatus::NotFound, None)),
    };
    if let (RowWriteType::Patch, Some(row)) = (write.write_type, &new_row) {
        check_schema(&write.collection, row)?;
    }
    // An unchanged row is no change, so a retried sync job does not grow the feed.
    if current == new_row {
        return Ok(answer(RowWriteStatus::Applied, version));
    }
    let exists = new_row.is_some();
    let row = RowWrite {
        collection: write.collection.clone(),
        key: write.key.clone(),
        data: new_row,
    };
    let versions = batch.append(vec![row]).await?;
    Ok(answer(
        RowWriteStatus::Applied,
        versions.first().copied().filter(|_| exists),
    ))
}

fn patched(row: &Map<String, Value>, fields: Option<&Map<String, Value>>) -> Map<String, Value> {
    let mut row = row.clone();
    for (field, value) in fields.into_iter().flatten() {
        match value {
            Value::Null => row.remove(field),
            _ => row.insert(field.clone(), value.clone()),
        };
    }
    row
}
