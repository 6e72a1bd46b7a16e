//! Exact decimals for money and quantities, the payment methods and the accounts they post to.
//!
//! On the wire every decimal is a JSON string (`"480.00"`): JSON numbers are binary floats in most clients, and
//! one rounding is enough to lose a cent. Parsing is strict (digits, one optional point, an optional leading
//! minus where a sign makes sense; no exponent, no spaces) so that one amount has one spelling's meaning.

use super::codes::ErrorCode;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// Money has at most this many decimal places (cents).
pub const MONEY_SCALE: u32 = 2;
/// Quantities (kg of laundry, litres) have at most this many.
pub const QUANTITY_SCALE: u32 = 3;
/// Largest absolute amount or quantity accepted: far beyond a small business, far below NUMERIC(20, 2).
const MAX_ABS: i64 = 1_000_000_000_000;

/// An argument that is not a valid decimal for its purpose; `code` is the stable error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecimalError {
    pub code: ErrorCode,
    pub message: String,
}

fn fail<T>(code: ErrorCode, field: &str, why: &str) -> Result<T, DecimalError> {
    Err(DecimalError {
        code,
        message: format!("`{field}` {why}"),
    })
}

/// Parses `text` strictly; `signed` allows a leading minus.
fn parse(field: &str, text: &str, scale: u32, signed: bool) -> Result<Decimal, DecimalError> {
    let digits = text.strip_prefix('-').filter(|_| signed).unwrap_or(text);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let well_formed = !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
        && (fraction.is_empty() != digits.contains('.'))
        && whole.len() <= 13;
    if !well_formed {
        return fail(
            ErrorCode::InvalidDecimal,
            field,
            &format!("must be a decimal string such as \"12.50\", not {text:?}"),
        );
    }
    if fraction.len() > scale as usize {
        return fail(
            ErrorCode::InvalidDecimal,
            field,
            &format!("has more than {scale} decimal places"),
        );
    }
    let value = Decimal::from_str(text).map_err(|_| DecimalError {
        code: ErrorCode::InvalidDecimal,
        message: format!("`{field}` is not a decimal"),
    })?;
    if value.abs() > Decimal::from(MAX_ABS) {
        return fail(ErrorCode::InvalidDecimal, field, "is too large");
    }
    Ok(value.normalize())
}

/// An amount of money, zero or more.
pub fn money(field: &str, text: &str) -> Result<Decimal, DecimalError> {
    parse(field, text, MONEY_SCALE, false)
}

/// An amount of money that must be more than zero.
pub fn positive_money(field: &str, text: &str) -> Result<Decimal, DecimalError> {
    let value = money(field, text)?;
    if value.is_zero() {
        return fail(ErrorCode::InvalidAmount, field, "must be more than zero");
    }
    Ok(value)
}

/// A quantity that must be more than zero (sold, produced, consumed).
pub fn quantity(field: &str, text: &str) -> Result<Decimal, DecimalError> {
    if text.starts_with('-') {
        return fail(ErrorCode::InvalidQuantity, field, "must be more than zero");
    }
    let value = parse(field, text, QUANTITY_SCALE, false)?;
    if value.is_zero() {
        return fail(ErrorCode::InvalidQuantity, field, "must be more than zero");
    }
    Ok(value)
}

/// A signed, non-zero quantity (a stock adjustment).
pub fn stock_change(field: &str, text: &str) -> Result<Decimal, DecimalError> {
    let value = parse(field, text, QUANTITY_SCALE, true)?;
    if value.is_zero() {
        return fail(ErrorCode::InvalidQuantity, field, "must not be zero");
    }
    Ok(value)
}

/// Rounds to cents, half away from zero (how a till rounds).
pub fn to_cents(value: Decimal) -> Decimal {
    value.round_dp_with_strategy(MONEY_SCALE, RoundingStrategy::MidpointAwayFromZero)
}

/// The canonical wire spelling of a decimal: no exponent, trailing zeros kept to the scale given.
pub fn format(value: Decimal, scale: u32) -> String {
    let mut v = value;
    v.rescale(scale.max(value.normalize().scale()));
    v.to_string()
}

pub fn format_money(value: Decimal) -> String {
    format(value, MONEY_SCALE)
}

/// A quantity without trailing zeros (`"2"`, `"1.5"`).
pub fn format_quantity(value: Decimal) -> String {
    value.normalize().to_string()
}

/// How money was received or paid: one of the four built-in methods, or the id of a method the business added
/// (a `payment_methods` row naming its account), resolved when the command runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PaymentMethod {
    Cash,
    Mpesa,
    Card,
    /// On the customer's account: a receivable, not money in hand.
    Credit,
    /// Another method of the business, by its `payment_methods` id.
    Other(String),
}

/// Longest payment method id (a row key of `payment_methods`).
pub const MAX_METHOD_ID: usize = 128;

impl PaymentMethod {
    pub fn parse(id: &str) -> Option<PaymentMethod> {
        Some(match id {
            "cash" => PaymentMethod::Cash,
            "mpesa" => PaymentMethod::Mpesa,
            "card" => PaymentMethod::Card,
            "credit" => PaymentMethod::Credit,
            other if !other.is_empty() && other.len() <= MAX_METHOD_ID => PaymentMethod::Other(other.to_string()),
            _ => return None,
        })
    }

    /// The account a built-in method moves (debited when money comes in) when the business's own
    /// `payment_methods` row names none; `None` for methods the business added.
    pub fn default_account(&self) -> Option<&'static str> {
        match self {
            PaymentMethod::Cash => Some(accounts::CASH),
            PaymentMethod::Mpesa => Some(accounts::MPESA),
            PaymentMethod::Card => Some(accounts::CARD),
            PaymentMethod::Credit => Some(accounts::RECEIVABLES),
            PaymentMethod::Other(_) => None,
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            PaymentMethod::Cash => "cash",
            PaymentMethod::Mpesa => "mpesa",
            PaymentMethod::Card => "card",
            PaymentMethod::Credit => "credit",
            PaymentMethod::Other(id) => id,
        }
    }
}

impl Serialize for PaymentMethod {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for PaymentMethod {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let id = String::deserialize(d)?;
        PaymentMethod::parse(&id)
            .ok_or_else(|| serde::de::Error::custom(format!("a payment method is an id of 1 to {MAX_METHOD_ID} bytes")))
    }
}

/// The chart of accounts the commands post to (codes as in the demo data and `protocol/README.md`).
pub mod accounts {
    pub const CASH: &str = "1000";
    pub const MPESA: &str = "1010";
    pub const CARD: &str = "1020";
    pub const RECEIVABLES: &str = "1100";
    pub const INVENTORY: &str = "1200";
    pub const CYLINDER_DEPOSITS: &str = "2100";
    pub const SALES_REVENUE: &str = "4000";
    pub const COST_OF_GOODS: &str = "5000";
    pub const OPERATING_EXPENSES: &str = "6000";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn money_is_strict() {
        assert_eq!(money("a", "480.00").unwrap(), d("480"));
        assert_eq!(money("a", "0.5").unwrap(), d("0.5"));
        assert_eq!(money("a", "0").unwrap(), d("0"));
        for bad in [
            "", ".5", "5.", "1e3", "+1", " 1", "1 ", "1,000", "0x10", "-1", "1.234", "NaN", "١٢",
        ] {
            let err = money("a", bad).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidDecimal, "{bad:?}");
        }
        assert_eq!(positive_money("a", "0.00").unwrap_err().code, ErrorCode::InvalidAmount);
        assert_eq!(
            money("a", "99999999999999").unwrap_err().code,
            ErrorCode::InvalidDecimal
        );
    }

    #[test]
    fn quantities_are_positive_and_adjustments_signed() {
        assert_eq!(quantity("q", "1.5").unwrap(), d("1.5"));
        assert_eq!(quantity("q", "0").unwrap_err().code, ErrorCode::InvalidQuantity);
        assert_eq!(quantity("q", "-2").unwrap_err().code, ErrorCode::InvalidQuantity);
        assert_eq!(quantity("q", "0.0001").unwrap_err().code, ErrorCode::InvalidDecimal);
        assert_eq!(stock_change("q", "-2").unwrap(), d("-2"));
        assert_eq!(stock_change("q", "-0").unwrap_err().code, ErrorCode::InvalidQuantity);
    }

    #[test]
    fn rounding_and_formatting() {
        assert_eq!(to_cents(d("0.125")), d("0.13"));
        assert_eq!(to_cents(d("-0.125")), d("-0.13"));
        assert_eq!(format_money(d("480")), "480.00");
        assert_eq!(format_money(d("0.5")), "0.50");
        assert_eq!(format_quantity(d("2.000")), "2");
        assert_eq!(format_quantity(d("-1.50")), "-1.5");
    }
}
