//! The named commands that move money and stock, parsed and checked before anything is written.
//!
//! A command that fails these checks can never succeed however often it is replayed (the device has a bug), so
//! it refuses the whole batch with a 4xx. What depends on the server's state (a product's current price, stock
//! on hand, whether a sale exists) is decided when the command runs (`replay::commands`).

use super::codes::ErrorCode;
use super::money::{self, DecimalError, PaymentMethod};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

/// Most lines a sale may have, and most payments or production inputs.
pub const MAX_LINES: usize = 200;

/// A refusal: stable code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    pub code: ErrorCode,
    pub message: String,
}

impl From<DecimalError> for CommandError {
    fn from(e: DecimalError) -> Self {
        CommandError {
            code: e.code,
            message: e.message,
        }
    }
}

fn refuse<T>(code: ErrorCode, message: impl Into<String>) -> Result<T, CommandError> {
    Err(CommandError {
        code,
        message: message.into(),
    })
}

/// Every command, with its names on the wire.
pub const NAMES: &[&str] = &[
    "record_sale",
    "void_sale",
    "receive_payment",
    "record_expense",
    "adjust_stock",
    "record_production",
    "record_cylinder_exchange",
];

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    RecordSale(Sale),
    VoidSale(Void),
    ReceivePayment(CustomerPayment),
    RecordExpense(Expense),
    AdjustStock(Adjustment),
    RecordProduction(Production),
    RecordCylinderExchange(CylinderExchange),
}

impl Command {
    /// Its name on the wire (one of [`NAMES`]).
    pub fn name(&self) -> &'static str {
        match self {
            Command::RecordSale(_) => "record_sale",
            Command::VoidSale(_) => "void_sale",
            Command::ReceivePayment(_) => "receive_payment",
            Command::RecordExpense(_) => "record_expense",
            Command::AdjustStock(_) => "adjust_stock",
            Command::RecordProduction(_) => "record_production",
            Command::RecordCylinderExchange(_) => "record_cylinder_exchange",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SaleLine {
    pub product_id: String,
    pub quantity: Decimal,
    pub unit_price: Decimal,
    pub discount: Decimal,
    /// quantity × unit price − discount, in cents.
    pub amount: Decimal,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Payment {
    pub method: PaymentMethod,
    pub amount: Decimal,
    pub reference: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sale {
    pub sold_at: Option<DateTime<Utc>>,
    pub customer_id: Option<String>,
    pub lines: Vec<SaleLine>,
    pub payments: Vec<Payment>,
    pub total: Decimal,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Void {
    pub reason: String,
    pub voided_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CustomerPayment {
    pub customer_id: String,
    pub payment: Payment,
    pub received_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expense {
    pub account: String,
    pub description: String,
    pub payment: Payment,
    pub spent_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Adjustment {
    pub product_id: String,
    pub quantity: Decimal,
    pub reason: String,
    pub unit_cost: Decimal,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Production {
    pub product_id: String,
    pub quantity: Decimal,
    /// Materials consumed: (product, quantity).
    pub inputs: Vec<(String, Decimal)>,
    /// Money spent on the batch, if any, and how it was paid.
    pub cost: Option<Payment>,
    pub produced_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CylinderExchange {
    pub customer_id: Option<String>,
    /// The refill sold (a sale line).
    pub refill: SaleLine,
    /// A deposit taken for a cylinder the customer takes away without returning an empty one.
    pub deposit: Decimal,
    pub cylinder_product_id: Option<String>,
    pub payments: Vec<Payment>,
    pub exchanged_at: Option<DateTime<Utc>>,
}

mod args;
mod parse;
#[cfg(test)]
mod tests;

pub use parse::parse;
