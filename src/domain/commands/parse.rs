//! From a command's name and JSON arguments to a checked [`Command`], or the code that refuses it.

use super::args::*;
use super::*;
use serde::de::DeserializeOwned;
use serde_json::Value;

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
