//! The named commands that move money and stock, parsed and checked before anything is written.
//!
//! A command that fails these checks can never succeed however often it is replayed (the device has a bug), so
//! it refuses the whole batch with a 4xx. What depends on the server's state (a product's current price, stock
//! on hand, whether a sale exists) is decided when the command runs (`replay::commands`).

use super::codes::ErrorCode;
use super::money::{self, DecimalError, PaymentMethod};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{de::DeserializeOwned, Deserialize};
use serde_json::Value;

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

/// Parses a command's name and arguments.
pub fn parse(name: &str, args: &Value) -> Result<Command, CommandError> {
    Ok(match name {
        "record_sale" => Command::RecordSale(sale(args_of(args)?)?),
        "void_sale" => {
            let a: VoidArgs = args_of(args)?;
            Command::VoidSale(Void {
                reason: text("reason", a.reason)?,
                voided_at: time("voided_at", a.voided_at)?,
            })
        }
        "receive_payment" => {
            let a: CustomerPaymentArgs = args_of(args)?;
            let payment = payment(a.method, &a.amount, a.reference)?;
            if payment.method == PaymentMethod::Credit {
                return refuse(
                    ErrorCode::InvalidPayment,
                    "a customer payment cannot itself be on credit",
                );
            }
            Command::ReceivePayment(CustomerPayment {
                customer_id: id("customer_id", a.customer_id)?,
                payment,
                received_at: time("received_at", a.received_at)?,
            })
        }
        "record_expense" => {
            let a: ExpenseArgs = args_of(args)?;
            let payment = payment(a.method, &a.amount, a.reference)?;
            if payment.method == PaymentMethod::Credit {
                return refuse(
                    ErrorCode::InvalidPayment,
                    "record unpaid bills as payables, not expenses on credit",
                );
            }
            Command::RecordExpense(Expense {
                account: id(
                    "account",
                    a.account.unwrap_or_else(|| money::accounts::OPERATING_EXPENSES.into()),
                )?,
                description: text("description", a.description)?,
                payment,
                spent_at: time("spent_at", a.spent_at)?,
            })
        }
        "adjust_stock" => {
            let a: AdjustmentArgs = args_of(args)?;
            Command::AdjustStock(Adjustment {
                product_id: id("product_id", a.product_id)?,
                quantity: money::stock_change("quantity", &a.quantity)?,
                reason: text("reason", a.reason)?,
                unit_cost: money::money("unit_cost", a.unit_cost.as_deref().unwrap_or("0"))?,
            })
        }
        "record_production" => Command::RecordProduction(production(args_of(args)?)?),
        "record_cylinder_exchange" => Command::RecordCylinderExchange(cylinder_exchange(args_of(args)?)?),
        other => {
            return refuse(
                ErrorCode::UnknownCommand,
                format!("unknown command `{other}`; known: {}", NAMES.join(", ")),
            )
        }
    })
}

fn args_of<T: DeserializeOwned>(args: &Value) -> Result<T, CommandError> {
    if !args.is_object() {
        return refuse(ErrorCode::InvalidArguments, "`args` must be an object");
    }
    serde_json::from_value(args.clone()).map_err(|e| {
        let message = e.to_string();
        CommandError {
            code: if message.starts_with("unknown field") {
                ErrorCode::UnknownField
            } else {
                ErrorCode::InvalidArguments
            },
            message: format!("args: {message}"),
        }
    })
}

/// Longest free text (reasons, descriptions, references) and id.
const MAX_TEXT: usize = 500;
const MAX_ID: usize = 128;

fn text(field: &str, value: String) -> Result<String, CommandError> {
    if value.trim().is_empty() || value.len() > MAX_TEXT {
        return refuse(
            ErrorCode::InvalidArguments,
            format!("`{field}` must be 1 to {MAX_TEXT} bytes of text"),
        );
    }
    Ok(value)
}

fn id(field: &str, value: String) -> Result<String, CommandError> {
    if value.is_empty() || value.len() > MAX_ID {
        return refuse(
            ErrorCode::InvalidArguments,
            format!("`{field}` must be 1 to {MAX_ID} bytes"),
        );
    }
    Ok(value)
}

fn time(field: &str, value: Option<String>) -> Result<Option<DateTime<Utc>>, CommandError> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(&v)
                .map(|t| t.with_timezone(&Utc))
                .or_else(|_| {
                    refuse(
                        ErrorCode::InvalidArguments,
                        format!("`{field}` must be an RFC 3339 time such as 2026-11-25T10:00:00+03:00"),
                    )
                })
        })
        .transpose()
}

fn payment(method: PaymentMethod, amount: &str, reference: Option<String>) -> Result<Payment, CommandError> {
    Ok(Payment {
        method,
        amount: money::positive_money("amount", amount)?,
        reference: reference.map(|r| text("reference", r)).transpose()?,
    })
}

fn sale_line(a: SaleLineArgs) -> Result<SaleLine, CommandError> {
    let quantity = money::quantity("quantity", &a.quantity)?;
    let unit_price = money::money("unit_price", &a.unit_price)?;
    let discount = money::money("discount", a.discount.as_deref().unwrap_or("0"))?;
    let gross = money::to_cents(quantity * unit_price);
    if discount > gross {
        return refuse(
            ErrorCode::InvalidAmount,
            format!("the discount on `{}` is more than the line's amount", a.product_id),
        );
    }
    Ok(SaleLine {
        product_id: id("product_id", a.product_id)?,
        quantity,
        unit_price,
        discount,
        amount: gross - discount,
    })
}

fn payments(args: Vec<PaymentArgs>, due: Decimal, customer: Option<&String>) -> Result<Vec<Payment>, CommandError> {
    if args.is_empty() || args.len() > MAX_LINES {
        return refuse(ErrorCode::InvalidArguments, format!("1 to {MAX_LINES} payments"));
    }
    let payments = args
        .into_iter()
        .map(|p| payment(p.method, &p.amount, p.reference))
        .collect::<Result<Vec<_>, _>>()?;
    let paid: Decimal = payments.iter().map(|p| p.amount).sum();
    if paid != due {
        return refuse(
            ErrorCode::PaymentMismatch,
            format!(
                "payments add up to {} but {} is due",
                money::format_money(paid),
                money::format_money(due)
            ),
        );
    }
    if customer.is_none() && payments.iter().any(|p| p.method == PaymentMethod::Credit) {
        return refuse(ErrorCode::CustomerRequired, "a payment on credit needs `customer_id`");
    }
    Ok(payments)
}

fn sale(a: SaleArgs) -> Result<Sale, CommandError> {
    if a.lines.is_empty() || a.lines.len() > MAX_LINES {
        return refuse(
            ErrorCode::InvalidArguments,
            format!("a sale has 1 to {MAX_LINES} lines"),
        );
    }
    let lines = a.lines.into_iter().map(sale_line).collect::<Result<Vec<_>, _>>()?;
    let total: Decimal = lines.iter().map(|l| l.amount).sum();
    if total.is_zero() {
        return refuse(ErrorCode::InvalidAmount, "a sale's total must be more than zero");
    }
    let customer_id = a.customer_id.map(|c| id("customer_id", c)).transpose()?;
    Ok(Sale {
        sold_at: time("sold_at", a.sold_at)?,
        payments: payments(a.payments, total, customer_id.as_ref())?,
        customer_id,
        lines,
        total,
    })
}

fn production(a: ProductionArgs) -> Result<Production, CommandError> {
    if a.inputs.len() > MAX_LINES {
        return refuse(ErrorCode::InvalidArguments, format!("at most {MAX_LINES} inputs"));
    }
    let cost = match (a.cost, a.method) {
        (Some(cost), method) => {
            let p = payment(method.unwrap_or(PaymentMethod::Cash), &cost, None)?;
            if p.method == PaymentMethod::Credit {
                return refuse(
                    ErrorCode::InvalidPayment,
                    "production costs are paid by cash, M-Pesa or card",
                );
            }
            Some(p)
        }
        (None, Some(_)) => return refuse(ErrorCode::InvalidArguments, "`method` without `cost`"),
        (None, None) => None,
    };
    Ok(Production {
        product_id: id("product_id", a.product_id)?,
        quantity: money::quantity("quantity", &a.quantity)?,
        inputs: a
            .inputs
            .into_iter()
            .map(|i| {
                Ok((
                    id("product_id", i.product_id)?,
                    money::quantity("quantity", &i.quantity)?,
                ))
            })
            .collect::<Result<_, CommandError>>()?,
        cost,
        produced_at: time("produced_at", a.produced_at)?,
    })
}

fn cylinder_exchange(a: CylinderExchangeArgs) -> Result<CylinderExchange, CommandError> {
    let refill = sale_line(SaleLineArgs {
        product_id: a.refill_product_id,
        quantity: a.quantity,
        unit_price: a.unit_price,
        discount: None,
    })?;
    let deposit = money::money("deposit", a.deposit.as_deref().unwrap_or("0"))?;
    if !deposit.is_zero() && a.cylinder_product_id.is_none() {
        return refuse(
            ErrorCode::InvalidArguments,
            "a deposit is for a cylinder: `cylinder_product_id` is required",
        );
    }
    let customer_id = a.customer_id.map(|c| id("customer_id", c)).transpose()?;
    let due = refill.amount + deposit;
    if due.is_zero() {
        return refuse(ErrorCode::InvalidAmount, "an exchange's total must be more than zero");
    }
    Ok(CylinderExchange {
        payments: payments(a.payments, due, customer_id.as_ref())?,
        customer_id,
        refill,
        deposit,
        cylinder_product_id: a
            .cylinder_product_id
            .map(|c| id("cylinder_product_id", c))
            .transpose()?,
        exchanged_at: time("exchanged_at", a.exchanged_at)?,
    })
}

// The argument shapes as they arrive; decimals are strings, parsed above with their own error codes.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SaleLineArgs {
    product_id: String,
    quantity: String,
    unit_price: String,
    #[serde(default)]
    discount: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PaymentArgs {
    method: PaymentMethod,
    amount: String,
    #[serde(default)]
    reference: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SaleArgs {
    #[serde(default)]
    sold_at: Option<String>,
    #[serde(default)]
    customer_id: Option<String>,
    lines: Vec<SaleLineArgs>,
    payments: Vec<PaymentArgs>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VoidArgs {
    reason: String,
    #[serde(default)]
    voided_at: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomerPaymentArgs {
    customer_id: String,
    method: PaymentMethod,
    amount: String,
    #[serde(default)]
    reference: Option<String>,
    #[serde(default)]
    received_at: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpenseArgs {
    #[serde(default)]
    account: Option<String>,
    description: String,
    method: PaymentMethod,
    amount: String,
    #[serde(default)]
    reference: Option<String>,
    #[serde(default)]
    spent_at: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdjustmentArgs {
    product_id: String,
    quantity: String,
    reason: String,
    #[serde(default)]
    unit_cost: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputArgs {
    product_id: String,
    quantity: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductionArgs {
    product_id: String,
    quantity: String,
    #[serde(default)]
    inputs: Vec<InputArgs>,
    #[serde(default)]
    cost: Option<String>,
    #[serde(default)]
    method: Option<PaymentMethod>,
    #[serde(default)]
    produced_at: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CylinderExchangeArgs {
    refill_product_id: String,
    quantity: String,
    unit_price: String,
    #[serde(default)]
    deposit: Option<String>,
    #[serde(default)]
    cylinder_product_id: Option<String>,
    #[serde(default)]
    customer_id: Option<String>,
    payments: Vec<PaymentArgs>,
    #[serde(default)]
    exchanged_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn code(name: &str, args: Value) -> &'static str {
        parse(name, &args).unwrap_err().code.as_str()
    }

    fn sale_args(payments: Value) -> Value {
        json!({"lines": [{"product_id": "p", "quantity": "3", "unit_price": "0.335", "discount": "0.00"}],
               "payments": payments})
    }

    #[test]
    fn a_sale_totals_its_lines_in_cents_and_payments_must_match() {
        // 3 × 0.335 = 1.005 → 1.01 (half away from zero); but unit prices have at most 2 places.
        assert_eq!(code("record_sale", sale_args(json!([]))), "invalid_decimal");
        let args = json!({"lines": [{"product_id": "p", "quantity": "1.5", "unit_price": "0.35"}],
                          "payments": [{"method": "cash", "amount": "0.53"}]});
        let Command::RecordSale(sale) = parse("record_sale", &args).unwrap() else {
            panic!()
        };
        assert_eq!(sale.total.to_string(), "0.53"); // 0.525 rounds up
        let short = json!({"lines": [{"product_id": "p", "quantity": "2", "unit_price": "10.00"}],
                           "payments": [{"method": "cash", "amount": "19.99"}]});
        assert_eq!(code("record_sale", short), "payment_mismatch");
    }

    #[test]
    fn bad_arguments_have_stable_codes() {
        let line = |q: &str, p: &str| {
            json!({"lines": [{"product_id": "p", "quantity": q, "unit_price": p}],
                   "payments": [{"method": "cash", "amount": "1.00"}]})
        };
        assert_eq!(code("record_sale", line("0", "1.00")), "invalid_quantity");
        assert_eq!(code("record_sale", line("-1", "1.00")), "invalid_quantity");
        assert_eq!(code("record_sale", line("1", "1.0.0")), "invalid_decimal");
        assert_eq!(
            code(
                "record_sale",
                json!({"lines": [{"product_id": "p", "quantity": 1, "unit_price": "1"}],
            "payments": []})
            ),
            "invalid_arguments"
        );
        assert_eq!(
            code("record_sale", json!({"lines": [], "payments": [], "extra": 1})),
            "unknown_field"
        );
        assert_eq!(code("record_sale", json!([])), "invalid_arguments");
        assert_eq!(code("sell_everything", json!({})), "unknown_command");
        assert_eq!(
            code(
                "record_sale",
                json!({"lines": [{"product_id": "p", "quantity": "1", "unit_price": "5.00"}],
                "payments": [{"method": "credit", "amount": "5.00"}]})
            ),
            "customer_required"
        );
        assert_eq!(
            code(
                "record_sale",
                json!({"lines": [{"product_id": "p", "quantity": "1", "unit_price": "5.00"}],
                "payments": [{"method": "", "amount": "5.00"}]})
            ),
            "invalid_arguments"
        );
        assert_eq!(
            code(
                "record_cylinder_exchange",
                json!({"refill_product_id": "g", "quantity": "1", "unit_price": "1100.00",
                "deposit": "2600.00", "payments": [{"method": "cash", "amount": "3700.00"}]})
            ),
            "invalid_arguments"
        );
        assert_eq!(code("void_sale", json!({"reason": " "})), "invalid_arguments");
        assert_eq!(
            code(
                "adjust_stock",
                json!({"product_id": "p", "quantity": "0", "reason": "count"})
            ),
            "invalid_quantity"
        );
    }

    #[test]
    fn every_named_command_parses() {
        let pay = json!([{"method": "mpesa", "amount": "3700.00", "reference": "QX1"}]);
        let cases = [
            (
                "record_sale",
                json!({"lines": [{"product_id": "p", "quantity": "1", "unit_price": "3700.00"}], "payments": pay}),
            ),
            (
                "void_sale",
                json!({"reason": "wrong item", "voided_at": "2026-11-25T10:00:00+03:00"}),
            ),
            (
                "receive_payment",
                json!({"customer_id": "c", "method": "cash", "amount": "10.00"}),
            ),
            (
                "record_expense",
                json!({"description": "Fuel", "method": "cash", "amount": "10.00"}),
            ),
            (
                "adjust_stock",
                json!({"product_id": "p", "quantity": "-2", "reason": "damaged", "unit_cost": "5.00"}),
            ),
            (
                "record_production",
                json!({"product_id": "w", "quantity": "40", "inputs": [{"product_id": "caps", "quantity": "40"}], "cost": "200.00"}),
            ),
            (
                "record_cylinder_exchange",
                json!({"refill_product_id": "g", "quantity": "1", "unit_price": "1100.00",
                "deposit": "2600.00", "cylinder_product_id": "cyl", "payments": pay}),
            ),
        ];
        assert_eq!(cases.len(), NAMES.len());
        for (name, args) in cases {
            parse(name, &args).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        }
    }
}
