//! The ledger's records: journal entries with their lines, and stock movements. A command builds them; the
//! replay batch writes them (`store::batch`), and PostgreSQL refuses an unbalanced entry.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

/// One side of a journal line: exactly one of debit and credit is more than zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub account: String,
    pub debit: Decimal,
    pub credit: Decimal,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub id: Uuid,
    pub kind: &'static str,
    pub source_collection: &'static str,
    pub source_key: String,
    pub op_id: Option<Uuid>,
    pub reverses: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
    pub lines: Vec<Line>,
}

#[derive(Debug, Clone)]
pub struct Movement {
    pub id: Uuid,
    pub product_id: String,
    /// Signed: sold stock is negative.
    pub quantity: Decimal,
    pub reason: &'static str,
    pub source_collection: &'static str,
    pub source_key: String,
    pub op_id: Option<Uuid>,
}
