//! Executing the named commands that move money and stock (parsed and checked in `domain::commands`).
//!
//! Each command writes, inside the replay transaction (which holds the scope lock): its own row, the stock
//! movements, at most one balanced journal entry, and the feed changes for all of them (the row, the entry, each
//! movement and each touched stock level), so a device sees the whole effect or none of it.
//!
//! A sale was paid for when it was made, so it is never refused because the world changed while the device was
//! offline: a line that oversells stock, uses a price that is no longer the product's price, or names a product
//! the server does not know is applied and flagged as a conflict for review. Commands that merely record stock or
//! costs (adjustments, production) are rejected when they name an unknown product, since nothing was paid.

use crate::{
    domain::{
        commands::{self, Command, CustomerPayment, CylinderExchange, Payment, Sale, SaleLine},
        money::{self, accounts, PaymentMethod},
    },
    error::{Error, Result},
    store::{
        changes::RowWrite,
        conflicts::{NewConflict, Origin},
        ledger::{Entry, Line, Movement},
    },
    wire::Operation,
};
use crate::{
    replay::batch::Batch,
    replay::generic::{self, Outcome},
};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use uuid::Uuid;

/// How far before the server's clock a command's time may be: a device may sell offline for weeks, but a time
/// five years back means its clock is wrong (a reset to 1970 or 2000). Generous on purpose: a tighter bound would
/// flag the genuine late uploads of a phone that sat in a drawer, and fixed dates in tests and vectors.
const MAX_TIME_BEFORE_NOW: chrono::Duration = chrono::Duration::days(5 * 365 + 1);
/// How far after the server's clock a command's time may be: a day covers a wrong time zone or a drifting clock.
const MAX_TIME_AFTER_NOW: chrono::Duration = chrono::Duration::days(1);

/// Executes a command (`command`, parsed from `op`) against the batch, after the batch's earlier operations.
pub async fn execute(batch: &mut Batch<'_>, op: &Operation, command: &Command, origin: Origin) -> Result<Outcome> {
    let mut run = Run {
        batch,
        op,
        origin,
        now: Utc::now(),
    };
    match command {
        Command::RecordSale(sale) => run.record_sale(sale).await,
        Command::VoidSale(void) => run.void_sale(&void.reason, void.voided_at).await,
        Command::ReceivePayment(payment) => run.receive_payment(payment).await,
        Command::RecordExpense(expense) => run.record_expense(expense).await,
        Command::AdjustStock(adjustment) => run.adjust_stock(adjustment).await,
        Command::RecordProduction(production) => run.record_production(production).await,
        Command::RecordCylinderExchange(exchange) => run.record_cylinder_exchange(exchange).await,
    }
}

/// What a command will write, gathered before anything is written.
#[derive(Default)]
struct Effects {
    rows: Vec<RowWrite>,
    entry: Option<Entry>,
    movements: Vec<Movement>,
    flags: Vec<Flag>,
    /// Flag any product whose stock ends below zero after a negative movement of this command.
    flag_oversold: bool,
}

/// A case for review raised by a command that was nevertheless applied.
struct Flag {
    kind: &'static str,
    detail: Value,
}

struct Run<'a, 't> {
    batch: &'a mut Batch<'t>,
    op: &'a Operation,
    origin: Origin,
    now: DateTime<Utc>,
}

/// A product as a command needs it.
struct Product {
    price: Option<Decimal>,
    track_stock: bool,
}

impl Run<'_, '_> {
    fn key(&self) -> String {
        self.op.key.clone()
    }

    async fn row(&mut self, collection: &str, key: &str) -> Result<Option<Value>> {
        Ok(self.batch.row(collection, key).await?.map(|(data, _)| data))
    }

    async fn product(&mut self, id: &str) -> Result<Option<Product>> {
        Ok(self.row("products", id).await?.map(|p| Product {
            price: p["price"].as_str().and_then(|s| money::money("price", s).ok()),
            track_stock: p["track_stock"] != Value::Bool(false),
        }))
    }

    /// Refuses a second command creating the same row (a device reusing an id for a different operation).
    async fn exists(&mut self, collection: &'static str) -> Result<Option<Outcome>> {
        let key = self.key();
        if self.row(collection, &key).await?.is_none() {
            return Ok(None);
        }
        let message = format!("`{collection}/{key}` already exists (made by another operation)");
        Ok(Some(self.reject("duplicate_key", &message, collection).await?))
    }

    fn entry(&self, kind: &'static str, collection: &'static str, at: DateTime<Utc>, lines: Vec<Line>) -> Entry {
        Entry {
            id: Uuid::new_v4(),
            kind,
            source_collection: collection,
            source_key: self.key(),
            op_id: Some(self.op.id),
            reverses: None,
            occurred_at: at,
            lines,
        }
    }

    fn movement(
        &self,
        product_id: &str,
        quantity: Decimal,
        reason: &'static str,
        collection: &'static str,
    ) -> Movement {
        Movement {
            id: Uuid::new_v4(),
            product_id: product_id.to_string(),
            quantity,
            reason,
            source_collection: collection,
            source_key: self.key(),
            op_id: Some(self.op.id),
        }
    }

    /// The account a payment by `method` moves, or why it cannot be used (the rejection's message).
    ///
    /// The business's `payment_methods/<id>` row names the account (`account`); a built-in method whose row names
    /// none (or that has no row: scopes made before their chart was set up with them) uses its default account.
    /// Devices write `payment_methods` rows, so an account named by a row must be an asset account of the
    /// business, and only `credit` may post to receivables (a receivable needs the customer `credit` requires).
    async fn method_account(&mut self, method: &PaymentMethod) -> Result<Result<String, String>> {
        let id = method.as_str().to_string();
        let row = self.row("payment_methods", &id).await?;
        let named = row
            .as_ref()
            .and_then(|r| r.get("account"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let Some(account) = named.or_else(|| method.default_account().map(str::to_string)) else {
            return Ok(Err(format!(
                "`{id}` is not a payment method of this business (or names no account)"
            )));
        };
        if method.default_account() == Some(account.as_str()) {
            return Ok(Ok(account));
        }
        let kind = self.row("accounts", &account).await?.map(|a| a["type"].clone());
        if kind != Some(json!("asset")) {
            return Ok(Err(format!(
                "payment method `{id}` names `{account}`, which is not an asset account of this business"
            )));
        }
        if account == accounts::RECEIVABLES && *method != PaymentMethod::Credit {
            return Ok(Err(format!(
                "payment method `{id}` names receivables; only `credit` may"
            )));
        }
        Ok(Ok(account))
    }

    /// Each payment's account and amount, in order; or the rejection when a method cannot be used.
    async fn payment_accounts(
        &mut self,
        payments: &[&Payment],
        collection: &'static str,
    ) -> Result<Result<Vec<(String, Decimal)>, Outcome>> {
        let mut out = Vec::with_capacity(payments.len());
        for p in payments {
            match self.method_account(&p.method).await? {
                Ok(account) => out.push((account, p.amount)),
                Err(message) => return Ok(Err(self.reject("unknown_payment_method", &message, collection).await?)),
            }
        }
        Ok(Ok(out))
    }

    /// When the command took effect: the device's time if it sent one within [`MAX_TIME_BEFORE_NOW`] and
    /// [`MAX_TIME_AFTER_NOW`] of the server's clock, else the server's time, with an `implausible_time` flag that
    /// keeps the device's time for review. Not refused: the money changed hands, only the device's clock is
    /// wrong, and a time of 1970 or 2999 would put the entry outside every report.
    fn when(&self, field: &'static str, sent: Option<DateTime<Utc>>, flags: &mut Vec<Flag>) -> DateTime<Utc> {
        match sent {
            None => self.now,
            Some(t) if t >= self.now - MAX_TIME_BEFORE_NOW && t <= self.now + MAX_TIME_AFTER_NOW => t,
            Some(t) => {
                flags.push(Flag {
                    kind: "implausible_time",
                    detail: json!({ "field": field, "sent": t.to_rfc3339(), "applied": self.now.to_rfc3339() }),
                });
                self.now
            }
        }
    }

    /// Checks sale lines against the catalogue: stock movements for tracked products, flags for the rest.
    async fn sell(&mut self, lines: &[SaleLine], collection: &'static str, effects: &mut Effects) -> Result<()> {
        let mut stale = Vec::new();
        let mut unknown = Vec::new();
        for line in lines {
            match self.product(&line.product_id).await? {
                None => unknown.push(json!(line.product_id)),
                Some(product) => {
                    if product.price.is_some_and(|p| p != line.unit_price) {
                        stale.push(json!({
                            "product_id": line.product_id,
                            "unit_price": money::format_money(line.unit_price),
                            "current_price": product.price.map(money::format_money),
                        }));
                    }
                    if product.track_stock {
                        let m = self.movement(&line.product_id, -line.quantity, "sale", collection);
                        effects.movements.push(m);
                    }
                }
            }
        }
        if !stale.is_empty() {
            effects.flags.push(Flag {
                kind: "stale_price",
                detail: json!({ "lines": stale }),
            });
        }
        if !unknown.is_empty() {
            effects.flags.push(Flag {
                kind: "unknown_product",
                detail: json!({ "products": unknown }),
            });
        }
        effects.flag_oversold = true;
        Ok(())
    }

    async fn record_sale(&mut self, sale: &Sale) -> Result<Outcome> {
        if let Some(rejected) = self.exists("sales").await? {
            return Ok(rejected);
        }
        let paid = match self
            .payment_accounts(&sale.payments.iter().collect::<Vec<_>>(), "sales")
            .await?
        {
            Ok(paid) => paid,
            Err(rejected) => return Ok(rejected),
        };
        let mut effects = Effects::default();
        let at = self.when("sold_at", sale.sold_at, &mut effects.flags);
        self.sell(&sale.lines, "sales", &mut effects).await?;
        let mut lines = debits_for(&paid);
        lines.push(credit(accounts::SALES_REVENUE, sale.total));
        let entry = self.entry("sale", "sales", at, lines);
        let mut row = json!({
            "id": self.key(),
            "status": "posted",
            "sold_at": at.to_rfc3339(),
            "lines": sale.lines.iter().map(line_json).collect::<Vec<_>>(),
            "payments": sale.payments.iter().map(payment_json).collect::<Vec<_>>(),
            "total": money::format_money(sale.total),
            "journal_entry_id": entry.id,
            "device_id": self.origin.device_id,
            "op_id": self.op.id,
        });
        if let Some(customer) = &sale.customer_id {
            row["customer_id"] = json!(customer);
        }
        effects.rows.push(write("sales", &self.key(), row));
        effects.entry = Some(entry);
        self.commit(effects, "sales").await
    }

    async fn void_sale(&mut self, reason: &str, voided_at: Option<DateTime<Utc>>) -> Result<Outcome> {
        let key = self.key();
        let Some(mut sale) = self.row("sales", &key).await? else {
            return self
                .reject("sale_not_found", "there is no such sale to void", "sales")
                .await;
        };
        if sale["status"] == "voided" {
            return self
                .reject("already_voided", "the sale was already voided", "sales")
                .await;
        }
        let Some((original, lines)) = self.batch.open_entry_for("sale", "sales", &key).await? else {
            return Err(Error::Internal(anyhow::anyhow!(
                "posted sale {key} has no open journal entry"
            )));
        };
        let mut effects = Effects::default();
        let at = self.when("voided_at", voided_at, &mut effects.flags);
        let reversed = lines
            .into_iter()
            .map(|l| Line {
                account: l.account,
                debit: l.credit,
                credit: l.debit,
            })
            .collect();
        let mut entry = self.entry("sale_void", "sales", at, reversed);
        entry.reverses = Some(original);
        for (product, quantity) in self.batch.movements_for("sale", "sales", &key).await? {
            effects
                .movements
                .push(self.movement(&product, -quantity, "sale_void", "sales"));
        }
        sale["status"] = json!("voided");
        sale["voided_at"] = json!(at.to_rfc3339());
        sale["void_reason"] = json!(reason);
        sale["void_entry_id"] = json!(entry.id);
        effects.rows.push(write("sales", &key, sale));
        effects.entry = Some(entry);
        self.commit(effects, "sales").await
    }

    async fn receive_payment(&mut self, p: &CustomerPayment) -> Result<Outcome> {
        if let Some(rejected) = self.exists("payments").await? {
            return Ok(rejected);
        }
        let account = match self.payment_accounts(&[&p.payment], "payments").await? {
            Ok(mut paid) => paid.remove(0).0,
            Err(rejected) => return Ok(rejected),
        };
        let mut flags = Vec::new();
        let at = self.when("received_at", p.received_at, &mut flags);
        let lines = vec![
            debit(&account, p.payment.amount),
            credit(accounts::RECEIVABLES, p.payment.amount),
        ];
        let entry = self.entry("customer_payment", "payments", at, lines);
        let mut row = payment_json(&p.payment);
        row["id"] = json!(self.key());
        row["customer_id"] = json!(p.customer_id);
        row["received_at"] = json!(at.to_rfc3339());
        row["journal_entry_id"] = json!(entry.id);
        let effects = Effects {
            rows: vec![write("payments", &self.key(), row)],
            entry: Some(entry),
            flags,
            ..Effects::default()
        };
        self.commit(effects, "payments").await
    }

    async fn record_expense(&mut self, e: &commands::Expense) -> Result<Outcome> {
        if let Some(rejected) = self.exists("expenses").await? {
            return Ok(rejected);
        }
        let account = self.row("accounts", &e.account).await?;
        if account.as_ref().map(|a| &a["type"]) != Some(&json!("expense")) {
            let message = format!("`{}` is not an expense account of this business", e.account);
            return self.reject("unknown_account", &message, "expenses").await;
        }
        let method_account = match self.payment_accounts(&[&e.payment], "expenses").await? {
            Ok(mut paid) => paid.remove(0).0,
            Err(rejected) => return Ok(rejected),
        };
        let mut flags = Vec::new();
        let at = self.when("spent_at", e.spent_at, &mut flags);
        let lines = vec![
            debit(&e.account, e.payment.amount),
            credit(&method_account, e.payment.amount),
        ];
        let entry = self.entry("expense", "expenses", at, lines);
        let mut row = payment_json(&e.payment);
        row["id"] = json!(self.key());
        row["account"] = json!(e.account);
        row["description"] = json!(e.description);
        row["spent_at"] = json!(at.to_rfc3339());
        row["journal_entry_id"] = json!(entry.id);
        let effects = Effects {
            rows: vec![write("expenses", &self.key(), row)],
            entry: Some(entry),
            flags,
            ..Effects::default()
        };
        self.commit(effects, "expenses").await
    }

    /// Products that must exist and track stock for a stock-only command; otherwise the rejection.
    async fn require_stocked(&mut self, products: &[&str], collection: &'static str) -> Result<Option<Outcome>> {
        for id in products {
            if !self.product(id).await?.is_some_and(|p| p.track_stock) {
                let message = format!("`{id}` is not a stock-tracked product of this business");
                return Ok(Some(self.reject("unknown_product", &message, collection).await?));
            }
        }
        Ok(None)
    }

    async fn adjust_stock(&mut self, a: &commands::Adjustment) -> Result<Outcome> {
        const COLLECTION: &str = "stock_adjustments";
        if let Some(rejected) = self.exists(COLLECTION).await? {
            return Ok(rejected);
        }
        if let Some(rejected) = self.require_stocked(&[&a.product_id], COLLECTION).await? {
            return Ok(rejected);
        }
        let value = money::to_cents(a.quantity.abs() * a.unit_cost);
        // Found stock lowers the cost of goods sold; lost stock raises it. At zero cost only stock moves.
        let entry = (!value.is_zero()).then(|| {
            let lines = if a.quantity.is_sign_positive() {
                vec![
                    debit(accounts::INVENTORY, value),
                    credit(accounts::COST_OF_GOODS, value),
                ]
            } else {
                vec![
                    debit(accounts::COST_OF_GOODS, value),
                    credit(accounts::INVENTORY, value),
                ]
            };
            self.entry("stock_adjustment", COLLECTION, self.now, lines)
        });
        let row = json!({
            "id": self.key(),
            "product_id": a.product_id,
            "quantity": money::format_quantity(a.quantity),
            "reason": a.reason,
            "unit_cost": money::format_money(a.unit_cost),
            "value": money::format_money(value),
            "journal_entry_id": entry.as_ref().map(|e| e.id),
        });
        let effects = Effects {
            rows: vec![write(COLLECTION, &self.key(), row)],
            movements: vec![self.movement(&a.product_id, a.quantity, "adjustment", COLLECTION)],
            entry,
            ..Effects::default()
        };
        self.commit(effects, COLLECTION).await
    }

    async fn record_production(&mut self, p: &commands::Production) -> Result<Outcome> {
        const COLLECTION: &str = "production_batches";
        if let Some(rejected) = self.exists(COLLECTION).await? {
            return Ok(rejected);
        }
        let mut products = vec![p.product_id.as_str()];
        products.extend(p.inputs.iter().map(|(id, _)| id.as_str()));
        if let Some(rejected) = self.require_stocked(&products, COLLECTION).await? {
            return Ok(rejected);
        }
        let cost_account = match &p.cost {
            Some(cost) => match self.payment_accounts(&[cost], COLLECTION).await? {
                Ok(mut paid) => Some(paid.remove(0).0),
                Err(rejected) => return Ok(rejected),
            },
            None => None,
        };
        let mut flags = Vec::new();
        let at = self.when("produced_at", p.produced_at, &mut flags);
        let mut movements = vec![self.movement(&p.product_id, p.quantity, "production", COLLECTION)];
        for (input, quantity) in &p.inputs {
            movements.push(self.movement(input, -*quantity, "production_input", COLLECTION));
        }
        let entry = p.cost.as_ref().zip(cost_account).map(|(cost, account)| {
            let lines = vec![debit(accounts::INVENTORY, cost.amount), credit(&account, cost.amount)];
            self.entry("production", COLLECTION, at, lines)
        });
        let row = json!({
            "id": self.key(),
            "product_id": p.product_id,
            "quantity": money::format_quantity(p.quantity),
            "inputs": p.inputs.iter().map(|(id, q)| json!({"product_id": id, "quantity": money::format_quantity(*q)}))
                .collect::<Vec<_>>(),
            "cost": p.cost.as_ref().map(payment_json),
            "produced_at": at.to_rfc3339(),
            "journal_entry_id": entry.as_ref().map(|e| e.id),
        });
        let effects = Effects {
            rows: vec![write(COLLECTION, &self.key(), row)],
            movements,
            entry,
            flags,
            ..Effects::default()
        };
        self.commit(effects, COLLECTION).await
    }

    async fn record_cylinder_exchange(&mut self, x: &CylinderExchange) -> Result<Outcome> {
        const COLLECTION: &str = "cylinder_exchanges";
        if let Some(rejected) = self.exists(COLLECTION).await? {
            return Ok(rejected);
        }
        let paid = match self
            .payment_accounts(&x.payments.iter().collect::<Vec<_>>(), COLLECTION)
            .await?
        {
            Ok(paid) => paid,
            Err(rejected) => return Ok(rejected),
        };
        let mut effects = Effects::default();
        let at = self.when("exchanged_at", x.exchanged_at, &mut effects.flags);
        self.sell(std::slice::from_ref(&x.refill), COLLECTION, &mut effects)
            .await?;
        if let Some(cylinder) = x.cylinder_product_id.as_deref().filter(|_| !x.deposit.is_zero()) {
            // The customer leaves with a cylinder of ours: it leaves our stock, held against the deposit.
            if self.product(cylinder).await?.is_some_and(|p| p.track_stock) {
                let m = self.movement(cylinder, -x.refill.quantity, "cylinder_deposit", COLLECTION);
                effects.movements.push(m);
            }
        }
        let mut lines = debits_for(&paid);
        lines.push(credit(accounts::SALES_REVENUE, x.refill.amount));
        if !x.deposit.is_zero() {
            lines.push(credit(accounts::CYLINDER_DEPOSITS, x.deposit));
        }
        let entry = self.entry("cylinder_exchange", COLLECTION, at, lines);
        let mut row = json!({
            "id": self.key(),
            "refill": line_json(&x.refill),
            "deposit": money::format_money(x.deposit),
            "payments": x.payments.iter().map(payment_json).collect::<Vec<_>>(),
            "exchanged_at": at.to_rfc3339(),
            "journal_entry_id": entry.id,
        });
        if let Some(cylinder) = &x.cylinder_product_id {
            row["cylinder_product_id"] = json!(cylinder);
        }
        if let Some(customer) = &x.customer_id {
            row["customer_id"] = json!(customer);
        }
        effects.rows.push(write(COLLECTION, &self.key(), row));
        effects.entry = Some(entry);
        self.commit(effects, COLLECTION).await
    }

    /// Writes the effects: ledger, movements, feed rows (the command's rows, the entry, each movement, each
    /// touched stock level), then the flags as conflicts.
    async fn commit(&mut self, mut effects: Effects, collection: &'static str) -> Result<Outcome> {
        if let Some(entry) = effects.entry.take() {
            effects
                .rows
                .push(write("journal_entries", &entry.id.to_string(), entry_json(&entry)));
            self.batch.add_entry(entry);
        }
        self.batch.add_movements(effects.movements.clone()).await?;
        let touched: Vec<&str> = effects.movements.iter().map(|m| m.product_id.as_str()).collect();
        let levels = self.batch.stock_levels(&touched).await?;
        for m in &effects.movements {
            effects
                .rows
                .push(write("stock_movements", &m.id.to_string(), movement_json(m)));
        }
        let mut oversold = Vec::new();
        for (product, level) in &levels {
            let sold = effects
                .movements
                .iter()
                .any(|m| &m.product_id == product && m.quantity.is_sign_negative());
            if effects.flag_oversold && sold && level.is_sign_negative() && !level.is_zero() {
                oversold.push(json!({"product_id": product, "stock_after": money::format_quantity(*level)}));
            }
            let row = json!({"id": product, "product_id": product, "quantity": money::format_quantity(*level)});
            effects.rows.push(write("stock_levels", product, row));
        }
        if !oversold.is_empty() {
            effects.flags.push(Flag {
                kind: "oversold_stock",
                detail: json!({ "products": oversold }),
            });
        }
        let rows = std::mem::take(&mut effects.rows);
        let position = rows
            .iter()
            .position(|w| w.collection == collection && w.key == self.op.key);
        let versions = self.batch.append(rows).await?;
        let mut first_conflict = None;
        // The operation as sent, recorded with each flag; built only when there is one.
        let client = (!effects.flags.is_empty())
            .then(|| serde_json::to_value(self.op).ok())
            .flatten();
        // The version of the command's own row (the sale, ...), recorded with its flags.
        let row_version = position.and_then(|i| versions.get(i).copied());
        for flag in effects.flags {
            let id = self.batch.add_conflict(
                self.origin,
                NewConflict {
                    kind: flag.kind,
                    collection,
                    key: &self.op.key,
                    fields: Vec::new(),
                    base: None,
                    server: None,
                    client: client.clone(),
                    detail: flag.detail,
                    row_version,
                },
            );
            first_conflict.get_or_insert(id);
        }
        Ok(match first_conflict {
            Some(conflict_id) => Outcome::Conflict { versions, conflict_id },
            None => Outcome::Applied { versions },
        })
    }

    async fn reject(&mut self, code: &'static str, message: &str, collection: &'static str) -> Result<Outcome> {
        generic::reject_in(self.batch, self.op, self.origin, collection, code, message)
    }
}

fn write(collection: &str, key: &str, data: Value) -> RowWrite {
    RowWrite {
        collection: collection.to_string(),
        key: key.to_string(),
        data: Some(data),
    }
}

fn debit(account: &str, amount: Decimal) -> Line {
    Line {
        account: account.to_string(),
        debit: amount,
        credit: Decimal::ZERO,
    }
}

fn credit(account: &str, amount: Decimal) -> Line {
    Line {
        account: account.to_string(),
        debit: Decimal::ZERO,
        credit: amount,
    }
}

/// One debit per account the payments (account, amount) went to, in a fixed order.
fn debits_for(payments: &[(String, Decimal)]) -> Vec<Line> {
    let mut by_account: BTreeMap<&str, Decimal> = BTreeMap::new();
    for (account, amount) in payments {
        *by_account.entry(account).or_default() += *amount;
    }
    by_account.into_iter().map(|(a, amount)| debit(a, amount)).collect()
}

fn line_json(l: &SaleLine) -> Value {
    json!({
        "product_id": l.product_id,
        "quantity": money::format_quantity(l.quantity),
        "unit_price": money::format_money(l.unit_price),
        "discount": money::format_money(l.discount),
        "amount": money::format_money(l.amount),
    })
}

fn payment_json(p: &Payment) -> Value {
    let mut v = Map::new();
    v.insert("method".into(), json!(p.method.as_str()));
    v.insert("amount".into(), json!(money::format_money(p.amount)));
    if let Some(r) = &p.reference {
        v.insert("reference".into(), json!(r));
    }
    Value::Object(v)
}

fn entry_json(e: &Entry) -> Value {
    json!({
        "id": e.id,
        "kind": e.kind,
        "source_collection": e.source_collection,
        "source_key": e.source_key,
        "occurred_at": e.occurred_at.to_rfc3339(),
        "reverses": e.reverses,
        "lines": e.lines.iter().map(|l| json!({
            "account": l.account,
            "debit": money::format_money(l.debit),
            "credit": money::format_money(l.credit),
        })).collect::<Vec<_>>(),
    })
}

fn movement_json(m: &Movement) -> Value {
    json!({
        "id": m.id,
        "product_id": m.product_id,
        "quantity": money::format_quantity(m.quantity),
        "reason": m.reason,
        "source_collection": m.source_collection,
        "source_key": m.source_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payments_become_one_debit_per_account() {
        let pay = |account: &str, amount: &str| (account.to_string(), amount.parse().unwrap());
        let lines = debits_for(&[
            pay(accounts::MPESA, "10.00"),
            pay(accounts::CASH, "5.50"),
            pay(accounts::MPESA, "1.25"),
        ]);
        assert_eq!(
            lines,
            vec![
                debit(accounts::CASH, "5.50".parse().unwrap()),
                debit(accounts::MPESA, "11.25".parse().unwrap())
            ]
        );
    }
}
