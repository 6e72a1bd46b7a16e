//! Group commit of replay pushes: concurrent pushes of one scope share one transaction.
//!
//! Why: a scope's writers are serialised by its version lock (`store::changes`), held from the lock statement
//! to the commit, so a scope takes one push at a time however many devices push, and most of a push's cost is
//! per transaction (its statements, the commit's WAL flush, the NOTIFY), paid while the scope waits. Here, while one transaction of a scope runs, the pushes that arrive queue up; the next
//! transaction takes all of them (one per client, up to `max_ops` operations), so under load one lock, one read,
//! one write and one flush serve several devices, and a lone push goes through at once, as before.
//!
//! Semantics are those of one transaction per push (`replay::replay_group`): the pushes are applied one
//! after the other in arrival order, each seeing the one before, and a device's answer is what it would have
//! been alone. If the group fails because of what one push holds (a sequence gap, a reused id, a bug that one
//! payload triggers), nothing was written, and the pushes are replayed one by one, each getting its own answer.
//! If PostgreSQL is unavailable, every push of the group is answered 503 (nothing was applied; they retry).
//!
//! Each scope's queue is served by a task of its own, so a device that goes away mid-push (its request is
//! dropped) never strands the others; its push still completes, and its retry reads the stored results.

use crate::{
    concurrency::scope_queue::{Queue, ScopeQueues, Serving},
    replay::{self, Push},
};
use crate::{
    domain::ScopeId,
    durability::Durability,
    error::{Error, Result},
    metrics::StaticCounter,
    wire::OpsResponse,
};
use sqlx::PgPool;
use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};
use tokio::{
    sync::oneshot,
    time::{Duration, Instant},
};

/// At most this many pushes share a transaction (its statements' arrays grow with it).
const MAX_PUSHES: usize = 64;

/// Under load (the last transaction carried several pushes), how long a transaction waits for as many pushes
/// as the last one carried before it starts. The devices just answered send their next push a moment later;
/// without this wait, the first of them starts a transaction alone and the others queue behind it, so groups
/// alternate between one push and the rest. Measured in `benches/run`: 2.7 pushes per transaction without it.
/// A lone push (the last transaction carried one) never waits.
const GATHER: Duration = Duration::from_millis(1);

type Reply = oneshot::Sender<Result<OpsResponse>>;
type Waiting = (Push, Reply);

pub struct GroupCommit {
    /// Operations a transaction takes at most (a push alone may reach it: it is the batch limit).
    max_ops: usize,
    queues: ScopeQueues<Waiting>,
    counts: Counts,
    /// Confirms, after the commit, how much of each answer a standby holds (`durable_seq`).
    durability: Arc<Durability>,
}

/// Counters for `/metrics`.
pub struct Counts {
    /// Replay transactions run (a group of one included).
    pub transactions: AtomicU64,
    /// Pushes those transactions carried.
    pub pushes: AtomicU64,
    /// Groups that failed on what a push held and were replayed one push at a time.
    pub split: AtomicU64,
    /// Operations answered by committed replays, by (outcome, kind, command), counted in `replay_all` after commit.
    pub operations: StaticCounter<3>,
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            transactions: AtomicU64::default(),
            pushes: AtomicU64::default(),
            split: AtomicU64::default(),
            operations: StaticCounter::new(["outcome", "kind", "command"], &[]),
        }
    }
}

impl GroupCommit {
    pub fn new(max_ops: usize, durability: Arc<Durability>) -> Self {
        GroupCommit {
            max_ops,
            queues: ScopeQueues::default(),
            counts: Counts::default(),
            durability,
        }
    }

    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Pushes queued behind a running transaction of their scope.
    pub fn waiting(&self) -> usize {
        self.queues.waiting()
    }

    /// Replays `push`, in a transaction shared with the scope's other pushes waiting at the same time, and
    /// reports how much of the client's sequence is durable beyond the primary (protocol §10.3).
    pub async fn replay(self: &Arc<Self>, db: &PgPool, scope: &ScopeId, push: Push) -> Result<OpsResponse> {
        let (reply, answer) = oneshot::channel();
        if let Some(serving) = self.queues.queue(scope).push((push, reply)) {
            // Its own task, so a device that goes away never strands the others (see the module's comment);
            // pushes still waiting if it ends otherwise are answered with an internal error (their reply is
            // dropped, nothing of theirs was committed).
            tokio::spawn(serve(self.clone(), serving, db.clone(), scope.clone()));
        }
        let mut response = answer.await.unwrap_or_else(|_| {
            Err(Error::Internal(anyhow::anyhow!(
                "the replay task ended without answering"
            )))
        })?;
        // Outside the scope's queue: the next group need not wait for this one's standby.
        response.durable_seq = self.durability.confirm(db, response.last_seq).await;
        Ok(response)
    }
}

/// Serves the queue until it is empty: each round takes a group and replays it.
async fn serve(commit: Arc<GroupCommit>, mut serving: Serving<Waiting>, db: PgPool, scope: ScopeId) {
    let mut last_group = 0;
    loop {
        if last_group > 1 {
            gather(serving.queue(), last_group).await;
        }
        let Some(group) = serving.next(|waiting| take_group(waiting, commit.max_ops)) else {
            return;
        };
        last_group = group.len();
        let (pushes, replies): (Vec<Push>, Vec<Reply>) = group.into_iter().unzip();
        let answers = replay_all(&commit.counts, &db, &scope, &pushes).await;
        for (reply, answer) in replies.into_iter().zip(answers) {
            let _ = reply.send(answer);
        }
    }
}

/// Waits until `count` pushes are queued, or for [`GATHER`] at most.
async fn gather(queue: &Queue<Waiting>, count: usize) {
    let deadline = Instant::now() + GATHER;
    while queue.len() < count {
        if tokio::time::timeout_at(deadline, queue.arrived()).await.is_err() {
            return;
        }
    }
}

/// Takes the next group from `waiting`: pushes in arrival order, at most one per client (a client's next push
/// waits for the next group, behind its earlier one), at most `max_ops` operations (the first push always).
fn take_group(waiting: &mut Vec<Waiting>, max_ops: usize) -> Vec<Waiting> {
    let mut clients = HashSet::new();
    let mut ops = 0;
    let mut group = Vec::new();
    let mut left = Vec::new();
    for (push, reply) in waiting.drain(..) {
        let fits = group.is_empty() || (group.len() < MAX_PUSHES && ops + push.len() <= max_ops);
        // A client's first push in the queue, taken or not: its later pushes stay behind it.
        let first_of_client = clients.insert(push.client_id());
        if fits && first_of_client {
            ops += push.len();
            group.push((push, reply));
        } else {
            left.push((push, reply));
        }
    }
    *waiting = left;
    group
}

/// One answer per push, in order; the operations of those answered are counted.
async fn replay_all(counts: &Counts, db: &PgPool, scope: &ScopeId, pushes: &[Push]) -> Vec<Result<OpsResponse>> {
    let answers = replay_pushes(counts, db, scope, pushes).await;
    for (push, answer) in pushes.iter().zip(&answers) {
        if let Ok(response) = answer {
            count_outcomes(&counts.operations, push, response);
        }
    }
    answers
}

/// Counts each operation's outcome. Every push's answer passes here, and only answers of committed transactions
/// are `Ok` (a group that failed and was split is counted once, by the answers of its replays alone; a push
/// answered with an error had nothing committed and counts nothing).
fn count_outcomes(operations: &StaticCounter<3>, push: &Push, response: &OpsResponse) {
    // One result per operation, in order (`replay::replay_group`).
    for (result, (kind, command)) in response.results.iter().zip(push.kinds()) {
        operations.add([result.status.as_str(), kind, command], 1);
    }
}

/// One answer per push, in order.
async fn replay_pushes(counts: &Counts, db: &PgPool, scope: &ScopeId, pushes: &[Push]) -> Vec<Result<OpsResponse>> {
    counts.transactions.fetch_add(1, Ordering::Relaxed);
    counts.pushes.fetch_add(pushes.len() as u64, Ordering::Relaxed);
    let group: Vec<&Push> = pushes.iter().collect();
    if let [push] = group[..] {
        return vec![replay::replay(db, scope, push).await];
    }
    match replay::replay_group(db, scope, &group).await {
        Ok(answers) => answers.into_iter().map(Ok).collect(),
        Err(Error::Unavailable(cause)) => pushes.iter().map(|_| Err(Error::Unavailable(cause.clone()))).collect(),
        Err(err) => {
            tracing::debug!(%scope, pushes = pushes.len(), error = %err, "replay group failed; replaying its pushes one by one");
            counts.split.fetch_add(1, Ordering::Relaxed);
            let mut answers = Vec::with_capacity(pushes.len());
            for push in pushes {
                counts.transactions.fetch_add(1, Ordering::Relaxed);
                answers.push(replay::replay(db, scope, push).await);
            }
            answers
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        replay::Replayer,
        wire::{Operation, OpsRequest},
    };
    use uuid::Uuid;

    fn push(client: Uuid, ops: usize) -> Waiting {
        let ops = (1..=ops as i64)
            .map(|seq| {
                serde_json::from_value::<Operation>(serde_json::json!({
                    "seq": seq, "id": Uuid::new_v4(), "type": "put", "collection": "customers",
                    "key": format!("k{seq}"), "data": {"id": format!("k{seq}")}
                }))
                .unwrap()
            })
            .collect();
        let who = Replayer {
            device_id: Uuid::new_v4(),
            user_id: Uuid::new_v4(),
            role: crate::domain::Role::Cashier,
        };
        let push = Push::new(who, OpsRequest { client_id: client, ops }, 500).unwrap();
        (push, oneshot::channel().0)
    }

    fn clients(group: &[Waiting]) -> Vec<Uuid> {
        group.iter().map(|(p, _)| p.client_id()).collect()
    }

    #[test]
    fn a_group_takes_one_push_per_client_in_arrival_order() {
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut waiting = vec![push(a, 1), push(b, 1), push(a, 1), push(c, 1), push(b, 1)];
        let group = take_group(&mut waiting, 500);
        assert_eq!(clients(&group), [a, b, c]);
        // The clients' later pushes stay, in their order, for the next group.
        assert_eq!(clients(&waiting), [a, b]);
        assert_eq!(clients(&take_group(&mut waiting, 500)), [a, b]);
        assert!(waiting.is_empty());
    }

    #[test]
    fn a_group_stays_within_the_operation_limit_but_always_takes_the_first_push() {
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut waiting = vec![push(a, 8), push(b, 3), push(c, 2)];
        let group = take_group(&mut waiting, 10);
        // a (8) fits alone; b (3) would make 11; c (2) makes 10.
        assert_eq!(clients(&group), [a, c]);
        assert_eq!(clients(&waiting), [b]);
        let mut big = vec![push(a, 12)];
        assert_eq!(clients(&take_group(&mut big, 10)), [a]);
    }

    #[test]
    fn a_push_left_out_for_the_limit_keeps_its_clients_later_pushes_behind_it() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut waiting = vec![push(a, 8), push(b, 5), push(b, 1)];
        let group = take_group(&mut waiting, 10);
        // b's first push (5) does not fit beside a's 8; b's second (1) would, but must not overtake it.
        assert_eq!(clients(&group), [a]);
        assert_eq!(waiting.iter().map(|(p, _)| p.len()).collect::<Vec<_>>(), [5, 1]);
    }

    #[test]
    fn a_group_holds_at_most_max_pushes() {
        let mut waiting: Vec<_> = (0..MAX_PUSHES + 3).map(|_| push(Uuid::new_v4(), 1)).collect();
        assert_eq!(take_group(&mut waiting, 10_000).len(), MAX_PUSHES);
        assert_eq!(waiting.len(), 3);
    }
}
