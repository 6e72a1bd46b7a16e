//! Idempotent replay of a device's outbox: every operation takes effect exactly once, in order.
//!
//! Per (scope, client) the server keeps the last applied sequence, advanced in the same transaction as the
//! operations' effects, and each operation's stored result. For a batch:
//! - sequences at or below the last applied are duplicates: no effect, the stored result is returned, and a
//!   different payload under the same sequence (blake3 fingerprint of the canonical operation) is 422;
//! - the next sequences are applied, in order, in one transaction with their results and the new last sequence;
//! - a first sequence beyond the next expected is a gap: 409 naming the expected one, nothing applied.
//!
//! Two connections replaying the same batch serialise on the client's row lock (`SELECT ... FOR UPDATE`, taken
//! with the scope's version lock in one statement), so the second sees the first's sequence and answers
//! duplicates. A failure of PostgreSQL rolls everything back
//! and answers 503: nothing advanced, the client retries. Stored results are kept for as long as the client
//! row exists or until `dukasync prune-results` drops them (see `protocol/README.md`, "Retention").

use super::{
    batch::{Batch, Foresight},
    operations::{self, Outcome},
};
use crate::{
    domain::{canonical, commands, ScopeId},
    error::{Error, Result},
    failpoint,
    store::{self, conflicts::Origin},
    wire::{OpResult, OpStatus, OpType, Operation, OpsRequest, OpsResponse},
};
use sqlx::PgPool;
use std::collections::HashSet;
use uuid::Uuid;

/// Who is replaying.
#[derive(Debug, Clone, Copy)]
pub struct Replayer {
    pub device_id: Uuid,
    pub user_id: Uuid,
}

pub async fn replay(
    db: &PgPool,
    scope: &ScopeId,
    who: Replayer,
    batch: OpsRequest,
    max_ops: usize,
) -> Result<OpsResponse> {
    if batch.ops.len() > max_ops {
        return Err(Error::BatchTooLarge { limit: max_ops });
    }
    check_batch(&batch.ops)?;
    let fingerprints: Vec<[u8; 32]> = batch.ops.iter().map(fingerprint).collect();

    // Generic plans: replay's statements take arrays whose lengths vary with the batch, so PostgreSQL would
    // otherwise plan them again on every execution (about a tenth of its CPU per push, measured with `perf`);
    // their generic plans are the same index lookups. In the BEGIN, so it costs no round trip.
    let mut tx = db
        .begin_with("BEGIN; SET LOCAL plan_cache_mode = force_generic_plan")
        .await?;
    // The client's lock and the scope's version lock, in one statement: from here to the commit, the scope's
    // other writers wait; what runs in between is at most a read of stored results, one read, the operations
    // in memory, and one write.
    let locked = store::replay::lock_client_and_scope(&mut tx, scope, batch.client_id, who.device_id)
        .await?
        .ok_or(Error::NotFound("scope"))?;
    let (owner, last_seq) = (locked.owner, locked.last_seq);
    if owner != who.device_id {
        return Err(Error::ClientTaken);
    }
    let Some(first) = batch.ops.first().map(|op| op.seq) else {
        tx.commit().await?;
        return Ok(OpsResponse {
            results: Vec::new(),
            last_seq,
        });
    };
    if first > last_seq + 1 {
        return Err(Error::SequenceGap { expected: last_seq + 1 });
    }

    let mut results = duplicates(&mut tx, scope, batch.client_id, &batch.ops, &fingerprints, last_seq).await?;
    let fresh: Vec<(&Operation, &[u8; 32])> = batch
        .ops
        .iter()
        .zip(&fingerprints)
        .filter(|(op, _)| op.seq > last_seq)
        .collect();
    let mut new_last = last_seq;
    if let Some((last, _)) = fresh.last() {
        new_last = last.seq;
        let ids: Vec<Uuid> = fresh.iter().map(|(op, _)| op.id).collect();
        let bounds = (locked.head, locked.floor);
        let mut applying = Batch::open(&mut tx, scope, bounds, foresee(&fresh), &ids).await?;
        for (op, print) in fresh {
            let origin = Origin {
                client_id: batch.client_id,
                op_id: op.id,
                seq: op.seq,
                device_id: who.device_id,
                user_id: who.user_id,
            };
            let result = to_result(op, operations::apply(&mut applying, op, origin).await?);
            let stored = serde_json::to_value(&result).map_err(|e| Error::Internal(e.into()))?;
            applying.add_result(op.seq, op.id, *print, stored);
            results.push(result);
        }
        applying.finish(batch.client_id, new_last).await?;
    }
    tx.commit().await?;
    failpoint::hang(failpoint::REPLAY_HANG_AFTER_COMMIT).await;
    Ok(OpsResponse {
        results,
        last_seq: new_last,
    })
}

/// What the batch's operations will read, from their arguments (commands parse: they were validated).
fn foresee(ops: &[(&Operation, &[u8; 32])]) -> Foresight {
    let mut foresight = Foresight::default();
    for (op, _) in ops {
        let command = match (op.op_type, &op.command, &op.args) {
            (OpType::Command, Some(name), Some(args)) => commands::parse(name, args).ok(),
            _ => None,
        };
        foresight.operation(&op.collection, &op.key, command.as_ref());
    }
    foresight
}

/// Shape checks of the whole batch: every operation valid, sequences consecutive, ids distinct.
fn check_batch(ops: &[Operation]) -> Result<()> {
    let mut ids = HashSet::new();
    for (i, op) in ops.iter().enumerate() {
        operations::validate(op)?;
        if i > 0 && op.seq != ops[i - 1].seq + 1 {
            return Err(Error::bad_request(
                "invalid_sequence",
                "sequences in a batch must be consecutive and increasing",
            ));
        }
        if !ids.insert(op.id) {
            return Err(Error::bad_request(
                "duplicate_op_id",
                format!("operation id {} appears twice in the batch", op.id),
            ));
        }
    }
    Ok(())
}

/// blake3 of the canonical JSON of the operation: equal exactly when the payloads are equal.
fn fingerprint(op: &Operation) -> [u8; 32] {
    let value = serde_json::to_value(op).expect("operations serialize");
    *blake3::hash(canonical::to_canonical_json(&value).as_bytes()).as_bytes()
}

/// The stored results of operations already applied, checking that each payload is the one applied.
async fn duplicates(
    tx: &mut sqlx::PgConnection,
    scope: &ScopeId,
    client: Uuid,
    ops: &[Operation],
    fingerprints: &[[u8; 32]],
    last_seq: i64,
) -> Result<Vec<OpResult>> {
    let replayed: Vec<(&Operation, &[u8; 32])> = ops
        .iter()
        .zip(fingerprints)
        .filter(|(op, _)| op.seq <= last_seq)
        .collect();
    let (Some(first), Some(last)) = (replayed.first(), replayed.last()) else {
        return Ok(Vec::new());
    };
    let stored = store::replay::stored_results(tx, scope, client, first.0.seq, last.0.seq).await?;
    let mut results = Vec::with_capacity(replayed.len());
    for (op, print) in replayed {
        let Some(s) = stored.iter().find(|s| s.seq == op.seq) else {
            // Pruned (see `store::replay::prune_results`): applied long ago, the payload can no longer be checked.
            results.push(OpResult {
                seq: op.seq,
                id: op.id,
                status: OpStatus::Duplicate,
                original: None,
                versions: Vec::new(),
                code: Some("result_expired".into()),
                message: Some("applied long ago; its stored result was pruned".into()),
                conflict_id: None,
            });
            continue;
        };
        if s.fingerprint.as_slice() != print.as_slice() || s.op_id != op.id {
            return Err(Error::PayloadMismatch {
                code: "payload_mismatch",
                message: format!("sequence {} was applied with a different payload", op.seq),
                seq: op.seq,
            });
        }
        let mut result: OpResult = serde_json::from_value(s.result.clone()).map_err(|e| Error::Internal(e.into()))?;
        result.original = Some(result.status);
        result.status = OpStatus::Duplicate;
        results.push(result);
    }
    Ok(results)
}

fn to_result(op: &Operation, outcome: Outcome) -> OpResult {
    let base = OpResult {
        seq: op.seq,
        id: op.id,
        status: OpStatus::Applied,
        original: None,
        versions: Vec::new(),
        code: None,
        message: None,
        conflict_id: None,
    };
    match outcome {
        Outcome::Applied { versions } => OpResult { versions, ..base },
        Outcome::Conflict { versions, conflict_id } => OpResult {
            status: OpStatus::Conflict,
            versions,
            conflict_id: Some(conflict_id),
            ..base
        },
        Outcome::Rejected {
            code,
            message,
            conflict_id,
        } => OpResult {
            status: OpStatus::Rejected,
            code: Some(code.to_string()),
            message: Some(message),
            conflict_id: Some(conflict_id),
            ..base
        },
    }
}
