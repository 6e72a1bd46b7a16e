//! What every command uses: reading rows and products, payment accounts, times, writing the effects, rejecting.

use super::{entry_json, movement_json, write, Effects, Flag, Product, Run};
use crate::{
    domain::{
        codes::RejectionCode,
        commands::Payment,
        money::{self, accounts, PaymentMethod},
    },
    error::Result,
    replay::generic::{self, Outcome},
    store::{
        conflicts::NewConflict,
        ledger::{Entry, Line, Movement},
    },
};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use uuid::Uuid;

/// How far before the server's clock a command's time may be: a device may sell offline for weeks, but a time
/// five years back means its clock is wrong (a reset to 1970 or 2000). Generous on purpose: a tighter bound would
/// flag the genuine late uploads of a phone that sat in a drawer, and fixed dates in tests and vectors.
const MAX_TIME_BEFORE_NOW: chrono::Duration = chrono::Duration::days(5 * 365 + 1);
/// How far after the server's clock a command's time may be: a day covers a wrong time zone or a drifting clock.
const MAX_TIME_AFTER_NOW: chrono::Duration = chrono::Duration::days(1);

impl Run<'_, '_> {
    pub(super) fn key(&self) -> String {
        self.op.key.clone()
    }

    pub(super) async fn row(&mut self, collection: &str, key: &str) -> Result<Option<Value>> {
        Ok(self.batch.row(collection, key).await?.map(|(data, _)| data))
    }

    pub(super) async fn product(&mut self, id: &str) -> Result<Option<Product>> {
        Ok(self.row("products", id).await?.map(|p| Product {
            price: p["price"].as_str().and_then(|s| money::money("price", s).ok()),
            track_stock: p["track_stock"] != Value::Bool(false),
        }))
    }

    /// Refuses a second command creating the same row (a device reusing an id for a different operation).
    pub(super) async fn exists(&mut self, collection: &'static str) -> Result<Option<Outcome>> {
        let key = self.key();
        if self.row(collection, &key).await?.is_none() {
            return Ok(None);
        }
        let message = format!("`{collection}/{key}` already exists (made by another operation)");
        Ok(Some(
            self.reject(RejectionCode::DuplicateKey, &message, collection).await?,
        ))
    }

    pub(super) fn entry(
        &self,
        kind: &'static str,
        collection: &'static str,
        at: DateTime<Utc>,
        lines: Vec<Line>,
    ) -> Entry {
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

    pub(super) fn movement(
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
    pub(super) async fn method_account(&mut self, method: &PaymentMethod) -> Result<Result<String, String>> {
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
    pub(super) async fn payment_accounts(
        &mut self,
        payments: &[&Payment],
        collection: &'static str,
    ) -> Result<Result<Vec<(String, Decimal)>, Outcome>> {
        let mut out = Vec::with_capacity(payments.len());
        for p in payments {
            match self.method_account(&p.method).await? {
                Ok(account) => out.push((account, p.amount)),
                Err(message) => {
                    return Ok(Err(self
                        .reject(RejectionCode::UnknownPaymentMethod, &message, collection)
                        .await?))
                }
            }
        }
        Ok(Ok(out))
    }

    /// When the command took effect: the device's time if it sent one within [`MAX_TIME_BEFORE_NOW`] and
    /// [`MAX_TIME_AFTER_NOW`] of the server's clock, else the server's time, with an `implausible_time` flag that
    /// keeps the device's time for review. Not refused: the money changed hands, only the device's clock is
    /// wrong, and a time of 1970 or 2999 would put the entry outside every report.
    pub(super) fn when(
        &self,
        field: &'static str,
        sent: Option<DateTime<Utc>>,
        flags: &mut Vec<Flag>,
    ) -> DateTime<Utc> {
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

    /// Products that must exist and track stock for a stock-only command; otherwise the rejection.
    pub(super) async fn require_stocked(
        &mut self,
        products: &[&str],
        collection: &'static str,
    ) -> Result<Option<Outcome>> {
        for id in products {
            if !self.product(id).await?.is_some_and(|p| p.track_stock) {
                let message = format!("`{id}` is not a stock-tracked product of this business");
                return Ok(Some(
                    self.reject(RejectionCode::UnknownProduct, &message, collection).await?,
                ));
            }
        }
        Ok(None)
    }

    /// Writes the effects: ledger, movements, feed rows (the command's rows, the entry, each movement, each
    /// touched stock level), then the flags as conflicts.
    pub(super) async fn commit(&mut self, mut effects: Effects, collection: &'static str) -> Result<Outcome> {
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

    pub(super) async fn reject(
        &mut self,
        code: RejectionCode,
        message: &str,
        collection: &'static str,
    ) -> Result<Outcome> {
        generic::reject_in(self.batch, self.op, self.origin, collection, code, message)
    }
}
