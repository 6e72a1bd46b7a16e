//! One replay batch applied as a set: its operations (those of one push, or of several pushes that
//! `replay::group_commit` put in one transaction, one push after the other) run in order against an in-memory view
//! of the rows, stock levels and ledger they touch, and all their effects are written at the end in one
//! statement.
//!
//! Why: applied one by one, a sale cost about 15 round trips to PostgreSQL under the scope's version lock, and
//! a batch of 50 repeated them 50 times. Now a batch costs, under the lock: the lock, one read of everything its
//! operations will look at (foreseen from their arguments, [`Foresight`]), one write, and the commit.
//!
//! Invariants:
//! - Operation n + 1 sees operation n's effects: every read goes through this view, which holds each row as
//!   the batch left it so far, and each product's stock as the sum of its movements including the batch's.
//! - A row the first read did not foresee is read from PostgreSQL when asked for. That read cannot miss a write
//!   of this batch: every row the batch writes is in the view from the moment it is written.
//! - Versions are `head + 1, head + 2, ...` in the order the writes are made, exactly as one `changes::append`
//!   per operation would have given them (the scope lock is held from the first read to the commit).
//! - Stock is the sum of movements: a product's level is read once (`stock_on_hand`, the running sum PostgreSQL
//!   keeps, migration 0007) before the batch's first movement of it, and every movement of the batch is added.

use crate::error::ErrorCode;
use crate::replay::op::Op;
use crate::{
    domain::{commands::Command, ScopeId},
    error::{Error, Result},
    store::{
        batch::{self as store, PendingConflict, PendingResult, Snapshot, Stored},
        changes::{self, Prior, RowWrite, Slot, Step},
        conflicts::{NewConflict, Origin},
        ledger::{self, Entry, Line, Movement},
    },
};
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::PgConnection;
use std::collections::{BTreeMap, HashMap, HashSet};
use uuid::Uuid;

/// Collections whose keys the server makes up as fresh UUIDs while applying (journal entries, movements): a new
/// key cannot name an existing row, so its prior state is "absent" without asking.
const FRESH_KEYS: [&str; 2] = ["journal_entries", "stock_movements"];

/// What a batch's operations will read, known from their arguments before anything runs.
#[derive(Debug, Default)]
pub struct Foresight {
    slots: HashSet<Slot>,
    products: HashSet<String>,
}

impl Foresight {
    pub fn row(&mut self, collection: &str, key: &str) {
        self.slots.insert((collection.to_string(), key.to_string()));
    }

    /// A product whose row, stock level and stock level row an operation reads.
    pub fn product(&mut self, id: &str) {
        self.row("products", id);
        self.row("stock_levels", id);
        self.products.insert(id.to_string());
    }

    /// What an operation on `key` reads: a generic operation its row, a command what its arguments name.
    pub fn operation(&mut self, op: &Op, key: &str) {
        let command = match op {
            Op::Write(write) => return self.row(write.collection.name, key),
            Op::Command(command) => command,
        };
        match command {
            Command::RecordSale(sale) => {
                self.row("sales", key);
                sale.lines.iter().for_each(|l| self.product(&l.product_id));
            }
            Command::VoidSale(_) => self.row("sales", key),
            Command::ReceivePayment(_) => self.row("payments", key),
            Command::RecordExpense(e) => {
                self.row("expenses", key);
                self.row("accounts", &e.account);
            }
            Command::AdjustStock(a) => {
                self.row("stock_adjustments", key);
                self.product(&a.product_id);
            }
            Command::RecordProduction(p) => {
                self.row("production_batches", key);
                self.product(&p.product_id);
                p.inputs.iter().for_each(|(id, _)| self.product(id));
            }
            Command::RecordCylinderExchange(x) => {
                self.row("cylinder_exchanges", key);
                self.product(&x.refill.product_id);
                if let Some(cylinder) = &x.cylinder_product_id {
                    self.product(cylinder);
                }
            }
        }
    }
}

/// The batch's view of the scope and everything it will write.
pub struct Batch<'t> {
    tx: &'t mut PgConnection,
    scope: &'t ScopeId,
    /// The head when the lock was taken: the batch's writes get the versions after it.
    head: i64,
    floor: i64,
    /// Every row read or written so far, as the batch has left it (`None`: no live row).
    rows: HashMap<Slot, Option<(Value, i64)>>,
    /// Each row's hash before the batch and every collection's state, for the log fold.
    prior: Prior,
    writes: Vec<RowWrite>,
    /// Stock on hand of every product read or moved so far, the batch's movements included.
    stock: HashMap<String, Decimal>,
    entries: Vec<Entry>,
    movements: Vec<Movement>,
    conflicts: Vec<PendingConflict>,
    results: Vec<PendingResult>,
}

impl<'t> Batch<'t> {
    /// Reads what `foresight` names. The caller holds the scope's version lock, which read `locked`: the
    /// scope's (head, floor). Fails with 422 `op_id_reused` when one of `op_ids` was already used.
    pub async fn open(
        tx: &'t mut PgConnection,
        scope: &'t ScopeId,
        locked: (i64, i64),
        foresight: Foresight,
        op_ids: &[Uuid],
    ) -> Result<Batch<'t>> {
        let slots: Vec<Slot> = foresight.slots.into_iter().collect();
        let products: Vec<String> = foresight.products.into_iter().collect();
        let snapshot = store::read(tx, scope, locked, &slots, &products, op_ids).await?;
        if let Some(seq) = snapshot.used_op_id {
            return Err(Error::PayloadMismatch {
                code: ErrorCode::OpIdReused,
                message: format!("an operation id of this batch was already used (by sequence {seq})"),
                seq,
            });
        }
        let Snapshot {
            head,
            floor,
            rows: found,
            states,
            stock,
            ..
        } = snapshot;
        let mut batch = Batch {
            tx,
            scope,
            head,
            floor,
            rows: HashMap::with_capacity(slots.len()),
            prior: Prior {
                row_hashes: HashMap::with_capacity(slots.len()),
                states,
            },
            writes: Vec::new(),
            stock,
            entries: Vec::new(),
            movements: Vec::new(),
            conflicts: Vec::new(),
            results: Vec::new(),
        };
        batch.remember(slots, found);
        Ok(batch)
    }

    /// Adds rows read from PostgreSQL (`slots` asked, `found` those that exist) to the view.
    fn remember(&mut self, slots: Vec<Slot>, mut found: HashMap<Slot, Stored>) {
        for slot in slots {
            let stored = found.remove(&slot);
            self.prior
                .row_hashes
                .insert(slot.clone(), stored.as_ref().map(|s| s.hash));
            self.rows.insert(slot, stored.map(|s| (s.data, s.version)));
        }
    }

    /// Reads the rows of `slots` the view does not hold yet, in one statement.
    async fn ensure(&mut self, slots: impl IntoIterator<Item = Slot>) -> Result<()> {
        let mut missing: Vec<Slot> = slots.into_iter().filter(|s| !self.rows.contains_key(s)).collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        let found = store::read_rows(self.tx, self.scope, &missing).await?;
        self.remember(missing, found);
        Ok(())
    }

    /// A live row's data and version, as the batch has left it.
    pub async fn row(&mut self, collection: &str, key: &str) -> Result<Option<(Value, i64)>> {
        let slot = (collection.to_string(), key.to_string());
        self.ensure([slot.clone()]).await?;
        Ok(self.rows[&slot].clone())
    }

    /// What replay client `client` had seen of a row when it made an operation against `base`: the row at
    /// `base` with the client's own later changes laid over it, the committed ones and this batch's alike. A
    /// device's own earlier writes therefore never count as another side's change (tests/api/conflicts.rs,
    /// `a_device_never_conflicts_with_its_own_earlier_edits`).
    pub async fn seen_by(&mut self, collection: &str, key: &str, base: i64, client: Uuid) -> Result<Seen> {
        if base < self.floor {
            return Ok(Seen::Unknown);
        }
        let mut steps = changes::history(self.tx, self.scope, (collection, key), base, client).await?;
        for (i, write) in self.writes.iter().enumerate() {
            if write.collection == collection && write.key == key {
                let version = self.head + 1 + i as i64;
                let own = self.results.iter().any(|r| {
                    r.client_id == client
                        && r.result["versions"]
                            .as_array()
                            .is_some_and(|versions| versions.contains(&Value::from(version)))
                });
                steps.push(Step {
                    version,
                    data: write.data.clone(),
                    own,
                });
            }
        }
        Ok(seen(base, steps))
    }

    /// Appends row writes to the batch's log; returns their versions.
    pub async fn append(&mut self, writes: Vec<RowWrite>) -> Result<Vec<i64>> {
        let unknown: Vec<Slot> = writes
            .iter()
            .filter(|w| !FRESH_KEYS.contains(&w.collection.as_str()))
            .map(|w| (w.collection.clone(), w.key.clone()))
            .collect();
        self.ensure(unknown).await?;
        let mut versions = Vec::with_capacity(writes.len());
        for write in writes {
            let version = self.head + 1 + self.writes.len() as i64;
            let slot = (write.collection.clone(), write.key.clone());
            self.rows.insert(slot, write.data.clone().map(|d| (d, version)));
            self.writes.push(write);
            versions.push(version);
        }
        Ok(versions)
    }

    /// Stock on hand of `products` now, the batch's movements included.
    pub async fn stock_levels(&mut self, products: &[&str]) -> Result<BTreeMap<String, Decimal>> {
        let missing: Vec<&str> = products
            .iter()
            .copied()
            .filter(|p| !self.stock.contains_key(*p))
            .collect();
        if !missing.is_empty() {
            // No movement of these products is pending (see `add_movements`), so PostgreSQL's sum is current.
            let levels = ledger::stock_levels(self.tx, self.scope, &missing).await?;
            self.stock.extend(levels);
        }
        Ok(products.iter().map(|p| (p.to_string(), self.stock[*p])).collect())
    }

    pub async fn add_movements(&mut self, movements: Vec<Movement>) -> Result<()> {
        let products: Vec<&str> = movements.iter().map(|m| m.product_id.as_str()).collect();
        self.stock_levels(&products).await?;
        for m in movements {
            *self.stock.get_mut(&m.product_id).expect("read above") += m.quantity;
            self.movements.push(m);
        }
        Ok(())
    }

    pub fn add_entry(&mut self, entry: Entry) {
        self.entries.push(entry);
    }

    /// The entry of `kind` posted for a source row and not yet reversed, with its lines.
    pub async fn open_entry_for(
        &mut self,
        kind: &str,
        source_collection: &str,
        source_key: &str,
    ) -> Result<Option<(Uuid, Vec<Line>)>> {
        let reversed = |id: Uuid| self.entries.iter().any(|e| e.reverses == Some(id));
        let pending = self.entries.iter().find(|e| {
            e.kind == kind && e.source_collection == source_collection && e.source_key == source_key && !reversed(e.id)
        });
        if let Some(e) = pending {
            return Ok(Some((e.id, e.lines.clone())));
        }
        let found = ledger::open_entry_for(self.tx, self.scope, kind, source_collection, source_key).await?;
        Ok(found.filter(|(id, _)| !reversed(*id)))
    }

    /// The movements recorded for a source row with `reason`, in the order PostgreSQL would list them.
    pub async fn movements_for(
        &mut self,
        reason: &str,
        source_collection: &str,
        source_key: &str,
    ) -> Result<Vec<(String, Decimal)>> {
        let mut pending: Vec<&Movement> = self
            .movements
            .iter()
            .filter(|m| m.reason == reason && m.source_collection == source_collection && m.source_key == source_key)
            .collect();
        if pending.is_empty() {
            return Ok(ledger::movements_for(self.tx, self.scope, reason, source_collection, source_key).await?);
        }
        // A source row's movements are all written by the one operation that made it, so they are all pending
        // here; PostgreSQL would order these (same `at`: the transaction's time) by id.
        pending.sort_by_key(|m| m.id);
        Ok(pending
            .into_iter()
            .map(|m| (m.product_id.clone(), m.quantity))
            .collect())
    }

    /// Records a conflict (written with the batch); returns its id.
    pub fn add_conflict(&mut self, origin: Origin, c: NewConflict<'_>) -> Uuid {
        let id = Uuid::new_v4();
        self.conflicts.push(PendingConflict {
            id,
            origin,
            kind: c.kind,
            collection: c.collection.to_string(),
            key: c.key.to_string(),
            fields: c.fields,
            base: c.base,
            server: c.server,
            client: c.client,
            detail: c.detail,
            row_version: c.row_version,
        });
        id
    }

    pub fn add_result(&mut self, client_id: Uuid, seq: i64, op_id: Uuid, fingerprint: [u8; 32], result: Value) {
        self.results.push(PendingResult {
            client_id,
            seq,
            op_id,
            fingerprint,
            result,
        });
    }

    /// Writes everything in one statement and advances each replaying client's last sequence (`last_seqs`).
    pub async fn finish(self, last_seqs: &[(Uuid, i64)]) -> Result<()> {
        let count = self.writes.len() as i64;
        let log = changes::prepare(self.head + 1, &self.writes, self.prior);
        let effects = store::Effects {
            log,
            count,
            entries: &self.entries,
            movements: &self.movements,
            conflicts: &self.conflicts,
            results: &self.results,
            last_seqs,
        };
        let head = store::write(self.tx, self.scope, effects).await?;
        if count > 0 && head != Some(self.head + count) {
            return Err(Error::Internal(anyhow::anyhow!(
                "scope {} moved to {head:?} while its lock was held at {}",
                self.scope,
                self.head
            )));
        }
        Ok(())
    }
}

/// What a replaying client had seen of a row (see [`Batch::seen_by`]).
#[derive(Debug, PartialEq)]
pub enum Seen {
    /// Every change since the base is the client's own: the base is, for this client, the current row.
    Current,
    /// The row as the client saw it (`None`: absent), and another side changed it since.
    Row(Option<Value>),
    /// The log no longer tells (compacted below the floor).
    Unknown,
}

/// Folds a row's history (the change in force at `base`, then later changes in version order) into what the
/// client saw: the row at `base`, with each of its own later changes laid over it, path by path.
fn seen(base: i64, steps: Vec<Step>) -> Seen {
    let mut view: Option<Value> = None;
    let mut before: Option<Value> = None;
    let mut foreign = false;
    for step in steps {
        if step.version <= base {
            view.clone_from(&step.data);
        } else if step.own {
            lay_over(&mut view, before.as_ref(), step.data.as_ref());
        } else {
            foreign = true;
        }
        before = step.data;
    }
    if foreign {
        Seen::Row(view)
    } else {
        Seen::Current
    }
}

/// Applies to `view` what one change did (`before` to `after`): the paths it changed take their new values,
/// every other path of `view` stays as it is.
fn lay_over(view: &mut Option<Value>, before: Option<&Value>, after: Option<&Value>) {
    match (view.as_mut(), before, after) {
        (Some(v), Some(b), Some(a)) => lay_over_value(v, b, a),
        _ if before != after => *view = after.cloned(),
        _ => {}
    }
}

fn lay_over_value(view: &mut Value, before: &Value, after: &Value) {
    if before == after {
        return;
    }
    let (Value::Object(v), Value::Object(b), Value::Object(a)) = (&mut *view, before, after) else {
        *view = after.clone();
        return;
    };
    for (field, new) in a {
        match (b.get(field), v.get_mut(field)) {
            (Some(old), _) if old == new => {}
            (Some(old), Some(mine)) => lay_over_value(mine, old, new),
            _ => {
                v.insert(field.clone(), new.clone());
            }
        }
    }
    for field in b.keys() {
        if !a.contains_key(field) {
            v.remove(field);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step(version: i64, data: Option<Value>, own: bool) -> Step {
        Step { version, data, own }
    }

    #[test]
    fn own_changes_alone_leave_the_base_current() {
        let steps = vec![
            step(3, Some(json!({"id": "p", "price": "1"})), false),
            step(4, Some(json!({"id": "p", "price": "2"})), true),
            step(5, None, true),
        ];
        assert_eq!(seen(3, steps), Seen::Current);
        assert_eq!(seen(3, vec![step(3, None, false)]), Seen::Current);
    }

    #[test]
    fn the_view_is_the_base_with_only_the_clients_own_paths_laid_over() {
        let steps = vec![
            step(
                3,
                Some(json!({"id": "p", "price": "1", "name": "A", "tags": {"a": 1, "b": 2}})),
                false,
            ),
            step(
                4,
                Some(json!({"id": "p", "price": "1", "name": "B", "tags": {"a": 1, "b": 2}})),
                false,
            ),
            step(
                5,
                Some(json!({"id": "p", "price": "2", "name": "B", "tags": {"a": 9}})),
                true,
            ),
            step(
                6,
                Some(json!({"id": "p", "price": "7", "name": "B", "tags": {"a": 9}})),
                false,
            ),
        ];
        assert_eq!(
            seen(3, steps),
            Seen::Row(Some(json!({"id": "p", "price": "2", "name": "A", "tags": {"a": 9}}))),
            "the foreign rename and price stay unseen; the own price and tag edits are seen"
        );
    }

    #[test]
    fn an_own_create_or_delete_replaces_the_whole_view() {
        let steps = vec![
            step(4, Some(json!({"id": "p", "price": "1"})), false),
            step(5, Some(json!({"id": "p", "price": "1", "x": 1})), false),
            step(6, None, true),
        ];
        assert_eq!(seen(3, steps), Seen::Row(None));
        let steps = vec![
            step(2, None, false),
            step(4, Some(json!({"id": "p"})), true),
            step(5, Some(json!({"id": "p", "x": 1})), false),
        ];
        assert_eq!(seen(3, steps), Seen::Row(Some(json!({"id": "p"}))));
    }
}
