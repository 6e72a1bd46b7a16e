//! The rows, ledger lines and JSON shapes commands write.

use crate::{
    domain::{
        commands::{Payment, SaleLine},
        money,
    },
    store::{
        changes::RowWrite,
        ledger::{Entry, Line, Movement},
    },
};
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub(super) fn write(collection: &str, key: &str, data: Value) -> RowWrite {
    RowWrite {
        collection: collection.to_string(),
        key: key.to_string(),
        data: Some(data),
    }
}

pub(super) fn debit(account: &str, amount: Decimal) -> Line {
    Line {
        account: account.to_string(),
        debit: amount,
        credit: Decimal::ZERO,
    }
}

pub(super) fn credit(account: &str, amount: Decimal) -> Line {
    Line {
        account: account.to_string(),
        debit: Decimal::ZERO,
        credit: amount,
    }
}

/// One debit per account the payments (account, amount) went to, in a fixed order.
pub(super) fn debits_for(payments: &[(String, Decimal)]) -> Vec<Line> {
    let mut by_account: BTreeMap<&str, Decimal> = BTreeMap::new();
    for (account, amount) in payments {
        *by_account.entry(account).or_default() += *amount;
    }
    by_account.into_iter().map(|(a, amount)| debit(a, amount)).collect()
}

pub(super) fn line_json(l: &SaleLine) -> Value {
    json!({
        "product_id": l.product_id,
        "quantity": money::format_quantity(l.quantity),
        "unit_price": money::format_money(l.unit_price),
        "discount": money::format_money(l.discount),
        "amount": money::format_money(l.amount),
    })
}

pub(super) fn payment_json(p: &Payment) -> Value {
    let mut v = Map::new();
    v.insert("method".into(), json!(p.method.as_str()));
    v.insert("amount".into(), json!(money::format_money(p.amount)));
    if let Some(r) = &p.reference {
        v.insert("reference".into(), json!(r));
    }
    Value::Object(v)
}

pub(super) fn entry_json(e: &Entry) -> Value {
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

pub(super) fn movement_json(m: &Movement) -> Value {
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
    use crate::domain::money::accounts;

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
