//! The dashboard summary: today's sales by payment method, cash and M-Pesa balances, receivables, low stock.
//!
//! Financial figures are never stale: the summary is computed from PostgreSQL on every request, in one
//! snapshot (see `store::summary`), and is never cached. It reports the head version of that snapshot, so a
//! client can tell it reflects every change up to that version of the feed: an operation acknowledged before
//! the request is in it.

use crate::error::ErrorCode;
use crate::{
    domain::{
        money::{accounts, format_money, format_quantity},
        ScopeId,
    },
    error::{Error, Result},
    store,
    wire::{Balances, LowStockItem, MethodAmount, Summary},
};
use chrono::{Duration, NaiveDate, Utc};
use rust_decimal::Decimal;
use sqlx::PgPool;
use std::str::FromStr;

/// East Africa Time, where the businesses this was built for are; a client elsewhere passes its own offset.
pub const DEFAULT_UTC_OFFSET_MINUTES: i32 = 180;

/// Journal entry kinds whose payments are the day's takings.
const SALE_KINDS: [&str; 3] = ["sale", "sale_void", "cylinder_exchange"];

const METHODS: [(&str, &str); 4] = [
    ("cash", accounts::CASH),
    ("mpesa", accounts::MPESA),
    ("card", accounts::CARD),
    ("credit", accounts::RECEIVABLES),
];

/// Validates the query: a malformed day or an offset outside −12:00..+14:00 is 400 `invalid_query`.
pub fn business_day(day: Option<&str>, utc_offset_minutes: Option<i32>) -> Result<(NaiveDate, i32)> {
    let offset = utc_offset_minutes.unwrap_or(DEFAULT_UTC_OFFSET_MINUTES);
    if !(-720..=840).contains(&offset) {
        return Err(Error::bad_request(
            ErrorCode::InvalidQuery,
            "`utc_offset_minutes` must be between -720 and 840",
        ));
    }
    let day = match day {
        None => (Utc::now() + Duration::minutes(offset.into())).date_naive(),
        Some(raw) => NaiveDate::parse_from_str(raw, "%Y-%m-%d")
            .ok()
            .filter(|_| raw.len() == 10)
            .ok_or_else(|| Error::bad_request(ErrorCode::InvalidQuery, "`day` must be a date as YYYY-MM-DD"))?,
    };
    Ok((day, offset))
}

pub async fn summary(db: &PgPool, scope: &ScopeId, day: NaiveDate, utc_offset_minutes: i32) -> Result<Summary> {
    let midnight = day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
    let from = midnight - Duration::minutes(utc_offset_minutes.into());
    let until = from + Duration::days(1);
    let asked: Vec<&str> = METHODS.iter().map(|(_, account)| *account).collect();
    let figures = store::summary::figures(db, scope, &SALE_KINDS, from, until, &asked)
        .await?
        .ok_or(Error::NotFound("scope"))?;
    let day_amount = |account: &str| -> Decimal {
        figures
            .day_by_account
            .iter()
            .find(|(a, _)| a == account)
            .map(|(_, v)| *v)
            .unwrap_or_default()
    };
    let balance = |account: &str| -> String {
        let value = figures
            .balances
            .iter()
            .find(|(a, _)| a == account)
            .map(|(_, v)| *v)
            .unwrap_or_default();
        format_money(value)
    };
    let low_stock = figures
        .products
        .iter()
        .filter_map(|(id, name, reorder, quantity)| {
            let level = Decimal::from_str(reorder.as_deref()?).ok()?;
            (level > Decimal::ZERO && *quantity <= level).then(|| LowStockItem {
                product_id: id.clone(),
                name: name.clone().unwrap_or_default(),
                quantity: format_quantity(*quantity),
                reorder_level: reorder.clone().unwrap_or_default(),
            })
        })
        .collect();
    Ok(Summary {
        version: figures.head,
        day: day.format("%Y-%m-%d").to_string(),
        utc_offset_minutes,
        // Revenue is credited: credits minus debits (`normalize` turns a negated zero into plain zero).
        revenue: format_money((-day_amount(accounts::SALES_REVENUE)).normalize()),
        sales_by_method: METHODS
            .iter()
            .map(|(method, account)| MethodAmount {
                method: method.to_string(),
                amount: format_money(day_amount(account)),
            })
            .collect(),
        balances: Balances {
            cash: balance(accounts::CASH),
            mpesa: balance(accounts::MPESA),
            card: balance(accounts::CARD),
            receivables: balance(accounts::RECEIVABLES),
        },
        low_stock,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_day_and_offset_are_validated() {
        assert_eq!(
            business_day(Some("2026-11-25"), None).unwrap(),
            (NaiveDate::from_ymd_opt(2026, 11, 25).unwrap(), 180)
        );
        assert_eq!(business_day(Some("2026-11-25"), Some(-300)).unwrap().1, -300);
        for bad in ["2026-13-01", "25-11-2026", "2026-11-25T00:00", "2026-1-5", ""] {
            assert_eq!(
                business_day(Some(bad), None).unwrap_err().code(),
                ErrorCode::InvalidQuery,
                "{bad}"
            );
        }
        assert!(business_day(None, Some(841)).is_err());
        assert!(business_day(None, Some(-721)).is_err());
    }
}
