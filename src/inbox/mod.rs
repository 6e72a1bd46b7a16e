//! The applier of backend writes: what the backend queued in its own transactions through
//! `dukasync_api.put/patch/delete` (migration 0016, docs/backend-sql.md) becomes feed changes.
//!
//! Why a queue: a feed change carries a blake3 row hash of canonical JSON and moves its collection's checksum
//! (protocol §8), which PostgreSQL cannot compute; so the backend's transaction only queues the write, and it
//! commits or rolls back with the backend's own writes. The server then applies what committed.
//!
//! Invariants:
//! - Exactly once: a scope's queued writes are applied in one transaction that also deletes them; a crash
//!   before its commit leaves them queued, a crash after leaves nothing to apply again.
//! - In order: writes of one scope are applied in id order, which for writes of one row is their commit order
//!   (the queueing function takes the row's advisory lock before drawing the id).
//! - Like any writer of the scope: the transaction takes the scope's version lock and goes through the replay
//!   batch (`replay::batch`), so versions stay dense and commit-ordered, row hashes, checksums and `records`
//!   move together, and `NOTIFY dukasync_changes` wakes long-polls at commit.
//! - Never wedged: a write that cannot apply (a patch of a missing row, a collection the backend may no longer
//!   write, a value canonical JSON refuses) is recorded as a conflict of kind `rejected_backend_write`, deleted
//!   from the queue, and the rest applies.
//! - Backend writes are authoritative: a put replaces the row, a patch its fields; a device's later edit made
//!   against an older base merges against it by the collection's policy, as against any server write.
//!
//! When: on `NOTIFY dukasync_inbox` (sent at the backend's commit, `notify`), at start-up, and every
//! [`SWEEP`], so a lost notification only delays.

pub mod rows;

use crate::{
    domain::{
        canonical,
        collections::{self, Collection, Writer, KEY_FIELD, MAX_KEY_LEN},
        ScopeId,
    },
    error::Result,
    replay::batch::{Batch, Foresight},
    store::{
        self,
        changes::RowWrite,
        conflicts::{NewConflict, Origin},
        inbox::{Pending, Published},
    },
};
use serde_json::{json, Map, Value};
use sqlx::PgPool;
use std::{sync::Arc, time::Duration};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How often the queue is read without a notification.
pub const SWEEP: Duration = Duration::from_secs(5);

/// Queued writes applied per transaction; a longer queue takes several rounds.
const ROUND: i64 = 500;

/// The conflict kind of a write that could not apply.
pub const REJECTED_KIND: &str = "rejected_backend_write";

/// Whether the backend may write a collection's rows: those devices write and those declared for the backend alone. Collections written only as the
/// effect of commands (sales, journal entries, stock) stay the commands' own, so the ledger stays balanced.
pub fn backend_may_write(collection: &Collection) -> bool {
    matches!(collection.writer, Writer::Device | Writer::Backend)
}

/// The applier's wake-up: notifications and the periodic sweep both end in [`Inbox::kick`].
#[derive(Default)]
pub struct Inbox {
    kick: Notify,
}

impl Inbox {
    /// Asks for a round soon. A kick while a round runs is kept, so that round is followed by another.
    pub fn kick(&self) {
        self.kick.notify_one();
    }
}

/// Runs until `shutdown`: publishes the collection definitions, then applies the queue on every kick and every
/// [`SWEEP`].
pub async fn run(db: PgPool, inbox: Arc<Inbox>, shutdown: CancellationToken) {
    let mut published = false;
    loop {
        if !published {
            match store::inbox::publish_collections(&db, &definitions()).await {
                Ok(()) => published = true,
                Err(err) => tracing::warn!(error = %err, "cannot publish collections for backend writes; retrying"),
            }
        }
        apply_all(&db).await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = inbox.kick.notified() => {}
            _ = tokio::time::sleep(SWEEP) => {}
        }
    }
}

/// The collection definitions the queueing functions check against (`dukasync_api.collections`).
pub fn definitions() -> Vec<Published> {
    collections::all()
        .iter()
        .map(|c| Published {
            name: c.name,
            backend_writes: backend_may_write(c),
            device_writes: c.writer == Writer::Device,
            conflict_policy: match c.conflict_policy {
                collections::ConflictPolicy::ServerWins => "server_wins",
                collections::ConflictPolicy::ClientWins => "client_wins",
                collections::ConflictPolicy::Manual => "manual",
            },
            reference: c.reference,
        })
        .collect()
}

/// Applies every scope's queue; a scope that fails is logged and retried at the next round.
async fn apply_all(db: &PgPool) {
    let scopes = match store::inbox::scopes_with_pending(db).await {
        Ok(scopes) => scopes,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the backend inbox");
            return;
        }
    };
    for raw in scopes {
        let Some(scope) = ScopeId::parse(&raw) else {
            // The foreign key admits only existing scopes, whose ids are valid.
            tracing::warn!(scope = raw, "backend inbox holds writes of an invalid scope id");
            continue;
        };
        loop {
            match apply_round(db, &scope).await {
                Ok(applied) if applied as i64 == ROUND => continue,
                Ok(_) => break,
                Err(err) => {
                    tracing::warn!(%scope, error = %err, "cannot apply backend writes; retrying later");
                    break;
                }
            }
        }
    }
}

/// Applies up to `ROUND` of the scope's queued writes in one transaction; returns how many.
pub async fn apply_round(db: &PgPool, scope: &ScopeId) -> Result<usize> {
    let mut tx = store::replay::begin(db).await?;
    let Some(locked) = store::inbox::lock_scope(&mut tx, scope).await? else {
        return Ok(0);
    };
    let pending = store::inbox::pending(&mut tx, scope, ROUND).await?;
    if pending.is_empty() {
        return Ok(0);
    }
    let mut foresight = Foresight::default();
    for write in &pending {
        foresight.row(&write.collection, &write.key);
    }
    let mut batch = Batch::open(&mut tx, scope, locked, foresight, &[]).await?;
    for write in &pending {
        apply(&mut batch, write).await?;
    }
    batch.finish(&[]).await?;
    let ids: Vec<i64> = pending.iter().map(|w| w.id).collect();
    store::inbox::remove(&mut tx, &ids).await?;
    tx.commit().await?;
    tracing::debug!(%scope, writes = ids.len(), "backend writes applied");
    Ok(ids.len())
}

/// Applies one queued write to the batch, or records why it cannot apply.
async fn apply(batch: &mut Batch<'_>, write: &Pending) -> Result<()> {
    let data = write.data.as_ref().map(|d| &d.0);
    let new_row = match check(write, data) {
        Err(message) => {
            reject(batch, write, message);
            return Ok(());
        }
        Ok(None) => None,
        Ok(Some(fields)) if write.kind == "put" => Some(Value::Object(fields.clone())),
        Ok(Some(fields)) => {
            let Some((Value::Object(mut row), _)) = batch.row(&write.collection, &write.key).await? else {
                reject(batch, write, "patch of a row that does not exist".into());
                return Ok(());
            };
            for (field, value) in fields {
                match value {
                    Value::Null => row.remove(field),
                    _ => row.insert(field.clone(), value.clone()),
                };
            }
            Some(Value::Object(row))
        }
    };
    // The row as it would be stored must satisfy the collection's schema, patch merged in (protocol §9).
    let schema = collections::find(&write.collection).and_then(|c| c.schema);
    if let (Some(schema), Some(row)) = (schema, &new_row) {
        if let Some((path, why)) = schema.violation(row) {
            reject(batch, write, format!("schema_violation at `{path}`: {why}"));
            return Ok(());
        }
    }
    let current = batch.row(&write.collection, &write.key).await?.map(|(row, _)| row);
    // An unchanged row is no change: a capture trigger fires on every UPDATE, mapped columns changed or not.
    if current != new_row {
        let row = RowWrite {
            collection: write.collection.clone(),
            key: write.key.clone(),
            data: new_row,
        };
        batch.append(vec![row]).await?;
    }
    Ok(())
}

/// What a queued write carries, checked again here (the functions checked what SQL can; a collection may have
/// changed since): `Some(fields)` for a put or patch, `None` for a delete.
fn check<'a>(write: &Pending, data: Option<&'a Value>) -> std::result::Result<Option<&'a Map<String, Value>>, String> {
    match collections::find(&write.collection) {
        Some(c) if backend_may_write(c) => {}
        _ => return Err(format!("the backend may not write collection `{}`", write.collection)),
    }
    if write.key.is_empty() || write.key.len() > MAX_KEY_LEN {
        return Err(format!("keys are 1 to {MAX_KEY_LEN} bytes"));
    }
    if write.kind == "delete" {
        return Ok(None);
    }
    let Some(Value::Object(fields)) = data else {
        return Err(format!("{} takes a JSON object", write.kind));
    };
    if write.kind == "put" && fields.get(KEY_FIELD) != Some(&Value::String(write.key.clone())) {
        return Err(format!("`data.{KEY_FIELD}` must equal the key"));
    }
    // A put's fields and a patch's are both the row's top-level fields: depth 1.
    for value in fields.values() {
        canonical::validate_at(value, 1).map_err(|e| format!("not storable as canonical JSON: {e:?}"))?;
    }
    Ok(Some(fields))
}

/// Records a write that cannot apply as an open conflict for `/v1/admin/conflicts`.
fn reject(batch: &mut Batch<'_>, write: &Pending, message: String) {
    tracing::info!(
        id = write.id,
        collection = write.collection,
        reason = message,
        "backend write rejected"
    );
    batch.add_conflict(
        Origin::backend(write.id),
        NewConflict {
            kind: REJECTED_KIND,
            collection: &write.collection,
            key: &write.key,
            fields: Vec::new(),
            base: None,
            server: None,
            client: Some(json!({ "kind": write.kind, "data": write.data.as_ref().map(|d| &d.0) })),
            detail: json!({ "message": message, "source": write.source, "pending_id": write.id }),
            row_version: None,
        },
    );
}
