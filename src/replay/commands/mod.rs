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

mod adjust_stock;
mod receive_payment;
mod record_cylinder_exchange;
mod record_expense;
mod record_production;
mod record_sale;
mod rows;
mod run;
mod void_sale;

use rows::{credit, debit, debits_for, entry_json, line_json, movement_json, payment_json, write};

use crate::{
    domain::commands::Command,
    error::Result,
    replay::{batch::Batch, generic::Outcome},
    store::{
        changes::RowWrite,
        conflicts::Origin,
        ledger::{Entry, Movement},
    },
    wire::Operation,
};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;

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
