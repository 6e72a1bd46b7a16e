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
//! duplicates. A failure of PostgreSQL rolls everything back and answers 503: nothing advanced, the client
//! retries. Stored results are kept for as long as the client row exists or until `dukasync prune-results` drops
//! them (see `protocol/README.md`, "Retention").
//!
//! Concurrent pushes of one scope's clients may share a transaction ([`replay_group`], `replay::group_commit`):
//! they are applied one after the other as if each had its own, and commit together.

pub mod batch;
pub mod commands;
pub mod generic;
pub mod group_commit;
pub mod op;

use crate::error::ErrorCode;
use crate::{
    domain::{canonical, Role, ScopeId},
    error::{Error, Result},
    failpoint,
    store::{self, conflicts::Origin},
    wire::{OpResult, OpStatus, OpType, Operation, OpsRequest, OpsResponse},
};
use batch::{Batch, Foresight};
use generic::Outcome;
use op::Op;
use sqlx::PgPool;
use std::collections::HashSet;
use uuid::Uuid;

/// Who is replaying.
#[derive(Debug, Clone, Copy)]
pub struct Replayer {
    pub device_id: Uuid,
    pub user_id: Uuid,
    /// The user's role in the scope, when the push arrived: what its generic operations may write
    /// (`Collection::rights`).
    pub role: Role,
}

/// One request's batch, checked for shape and each operation parsed: nothing about it depends on the database
/// any more.
#[derive(Debug)]
pub struct Push {
    pub who: Replayer,
    pub batch: OpsRequest,
    /// Per operation, in order: what it does, parsed once here and run as it is.
    parsed: Vec<Op>,
    /// Per operation, in order (see [`fingerprint`]).
    fingerprints: Vec<[u8; 32]>,
}

/// One operation of a push: as sent (its identity, and what rejections record), parsed, and its fingerprint.
#[derive(Debug, Clone, Copy)]
struct Pushed<'a> {
    wire: &'a Operation,
    op: &'a Op,
    fingerprint: &'a [u8; 32],
}

impl Push {
    /// Checks the batch's shape: at most `max_ops` operations, each valid, sequences consecutive, ids distinct.
    pub fn new(who: Replayer, batch: OpsRequest, max_ops: usize) -> Result<Push> {
        if batch.ops.len() > max_ops {
            return Err(Error::BatchTooLarge { limit: max_ops });
        }
        let parsed = check_batch(&batch.ops)?;
        let fingerprints = batch.ops.iter().map(fingerprint).collect();
        Ok(Push {
            who,
            batch,
            parsed,
            fingerprints,
        })
    }

    pub fn client_id(&self) -> Uuid {
        self.batch.client_id
    }

    pub fn len(&self) -> usize {
        self.batch.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batch.ops.is_empty()
    }

    /// Per operation, in order: its `type` and, for a command, its name ("" otherwise); only names written in
    /// the code, so metrics labelled by them stay bounded.
    pub fn kinds(&self) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
        self.batch.ops.iter().zip(&self.parsed).map(|(wire, op)| match op {
            Op::Command(command) => ("command", command.name()),
            Op::Write(_) => (
                match wire.op_type {
                    OpType::Create => "create",
                    OpType::Put => "put",
                    OpType::Update => "update",
                    OpType::Delete => "delete",
                    OpType::Command => "command",
                },
                "",
            ),
        })
    }

    fn ops(&self) -> impl Iterator<Item = Pushed<'_>> {
        self.batch
            .ops
            .iter()
            .zip(&self.parsed)
            .zip(&self.fingerprints)
            .map(|((wire, op), fingerprint)| Pushed { wire, op, fingerprint })
    }
}

/// Replays one push in a transaction of its own.
pub async fn replay(db: &PgPool, scope: &ScopeId, push: &Push) -> Result<OpsResponse> {
    let mut answers = replay_group(db, scope, &[push]).await?;
    Ok(answers.pop().expect("one answer per push"))
}

/// Replays the pushes of distinct clients in one transaction, one after the other in the given order, exactly
/// as consecutive transactions of one push each would have, and commits them together (see
/// `replay::group_commit` for why). Any error fails the whole group and nothing is written: the caller then
/// replays the pushes one by one to give each its own answer.
pub async fn replay_group(db: &PgPool, scope: &ScopeId, pushes: &[&Push]) -> Result<Vec<OpsResponse>> {
    let mut tx = store::replay::begin(db).await?;
    // The scope's version lock and the clients' locks, in one statement: from here to the commit, the scope's
    // other writers wait; what runs in between is at most a read of stored results per push, one read, the
    // operations in memory, and one write.
    let clients: Vec<(Uuid, Uuid)> = pushes.iter().map(|p| (p.client_id(), p.who.device_id)).collect();
    let client_ids: Vec<Uuid> = clients.iter().map(|(client, _)| *client).collect();
    if let Some(twice) = first_repeated(&client_ids) {
        // A client's second push must see its first one's sequence: it belongs in a later transaction.
        return Err(Error::Internal(anyhow::anyhow!(
            "a replay group holds two pushes of client {twice}"
        )));
    }
    let locked = store::replay::lock_clients_and_scope(&mut tx, scope, &clients)
        .await?
        .ok_or(Error::NotFound("scope"))?;

    let mut answers = Vec::with_capacity(pushes.len());
    // Per push, its operations not applied yet.
    let mut fresh: Vec<Vec<Pushed>> = Vec::with_capacity(pushes.len());
    for push in pushes {
        let Some(&(owner, last_seq)) = locked.clients.get(&push.client_id()) else {
            return Err(Error::Internal(anyhow::anyhow!(
                "client {} not locked",
                push.client_id()
            )));
        };
        if owner != push.who.device_id {
            return Err(Error::ClientTaken);
        }
        let (Some(first), Some(last)) = (push.batch.ops.first(), push.batch.ops.last()) else {
            answers.push(OpsResponse {
                results: Vec::new(),
                last_seq,
                durable_seq: 0,
            });
            fresh.push(Vec::new());
            continue;
        };
        if first.seq > last_seq + 1 {
            return Err(Error::SequenceGap { expected: last_seq + 1 });
        }
        let results = duplicates(&mut tx, scope, push, last_seq).await?;
        answers.push(OpsResponse {
            results,
            last_seq: last.seq.max(last_seq),
            // Confirmed after the commit (`durability`), by the caller that answers the push.
            durable_seq: 0,
        });
        fresh.push(push.ops().filter(|pushed| pushed.wire.seq > last_seq).collect());
    }

    let ids: Vec<Uuid> = fresh.iter().flatten().map(|pushed| pushed.wire.id).collect();
    if !ids.is_empty() {
        if let Some(reused) = first_repeated(&ids) {
            // Two clients of the group chose the same id; replayed alone, the later one is refused.
            return Err(Error::PayloadMismatch {
                code: ErrorCode::OpIdReused,
                message: format!("operation id {reused} is used by two clients"),
                seq: 0,
            });
        }
        let bounds = (locked.head, locked.floor);
        let foresight = foresee(fresh.iter().flatten());
        let mut applying = Batch::open(&mut tx, scope, bounds, foresight, &ids).await?;
        let mut last_seqs = Vec::with_capacity(pushes.len());
        for ((push, answer), ops) in pushes.iter().zip(&mut answers).zip(&fresh) {
            for pushed in ops {
                let wire = pushed.wire;
                let origin = Origin {
                    client_id: push.client_id(),
                    op_id: wire.id,
                    seq: wire.seq,
                    device_id: push.who.device_id,
                    user_id: push.who.user_id,
                };
                let result = to_result(wire, apply(&mut applying, *pushed, origin, push.who.role).await?);
                let stored = serde_json::to_value(&result).map_err(|e| Error::Internal(e.into()))?;
                applying.add_result(push.client_id(), wire.seq, wire.id, *pushed.fingerprint, stored);
                answer.results.push(result);
            }
            if let Some(last) = ops.last() {
                last_seqs.push((push.client_id(), last.wire.seq));
            }
        }
        applying.finish(&last_seqs).await?;
    }
    tx.commit().await?;
    failpoint::hang(failpoint::REPLAY_HANG_AFTER_COMMIT).await;
    Ok(answers)
}

fn first_repeated(ids: &[Uuid]) -> Option<Uuid> {
    let mut seen = HashSet::with_capacity(ids.len());
    ids.iter().copied().find(|id| !seen.insert(*id))
}

/// Applies one operation to the batch: a generic write or a command.
async fn apply(batch: &mut Batch<'_>, pushed: Pushed<'_>, origin: Origin, role: Role) -> Result<Outcome> {
    match pushed.op {
        Op::Write(write) => generic::apply(batch, pushed.wire, write, origin, role).await,
        Op::Command(command) => commands::execute(batch, pushed.wire, command, origin).await,
    }
}

/// What the batch's operations will read, from their parsed arguments.
fn foresee<'a>(ops: impl Iterator<Item = &'a Pushed<'a>>) -> Foresight {
    let mut foresight = Foresight::default();
    for pushed in ops {
        foresight.operation(pushed.op, &pushed.wire.key);
    }
    foresight
}

/// Shape checks of the whole batch: every operation valid (and parsed, in order), sequences consecutive, ids
/// distinct.
fn check_batch(ops: &[Operation]) -> Result<Vec<Op>> {
    let mut ids = HashSet::new();
    let mut parsed = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        parsed.push(Op::parse(op).map_err(|e| e.at_operation(op.seq, i))?);
        if i > 0 && op.seq != ops[i - 1].seq + 1 {
            return Err(Error::bad_request(
                ErrorCode::InvalidSequence,
                "sequences in a batch must be consecutive and increasing",
            )
            .at_operation(op.seq, i));
        }
        if !ids.insert(op.id) {
            return Err(Error::bad_request(
                ErrorCode::DuplicateOpId,
                format!("operation id {} appears twice in the batch", op.id),
            )
            .at_operation(op.seq, i));
        }
    }
    Ok(parsed)
}

/// blake3 of the canonical JSON of the operation: equal exactly when the payloads are equal.
fn fingerprint(op: &Operation) -> [u8; 32] {
    let value = serde_json::to_value(op).expect("operations serialize");
    *blake3::hash(canonical::to_canonical_json(&value).as_bytes()).as_bytes()
}

/// The stored results of the push's operations already applied (sequences up to `last_seq`), checking that
/// each payload is the one applied.
async fn duplicates(tx: &mut sqlx::PgConnection, scope: &ScopeId, push: &Push, last_seq: i64) -> Result<Vec<OpResult>> {
    let replayed: Vec<Pushed> = push.ops().filter(|pushed| pushed.wire.seq <= last_seq).collect();
    let (Some(first), Some(last)) = (replayed.first(), replayed.last()) else {
        return Ok(Vec::new());
    };
    let stored = store::replay::stored_results(tx, scope, push.client_id(), first.wire.seq, last.wire.seq).await?;
    let mut results = Vec::with_capacity(replayed.len());
    for pushed in replayed {
        let (op, print) = (pushed.wire, pushed.fingerprint);
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
                code: ErrorCode::PayloadMismatch,
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
            code: Some(code.as_str().to_string()),
            message: Some(message),
            conflict_id: Some(conflict_id),
            ..base
        },
    }
}
