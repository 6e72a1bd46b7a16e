//! The books: running sums (stock on hand, account balances) checked against the rows they sum.

use rust_decimal::Decimal;
use sqlx::PgPool;

/// A decimal written as text, as the wire carries amounts.
pub fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// Every (scope, product) whose `stock_on_hand` (migration 0007) differs from the sum of its movements, with both (a missing balance
/// row counts as zero, as commands read it).
pub async fn stock_on_hand_mismatches(
    db: &PgPool,
) -> Vec<(String, String, rust_decimal::Decimal, rust_decimal::Decimal)> {
    sqlx::query_as(
        r#"SELECT coalesce(m.scope_id, s.scope_id), coalesce(m.product_id, s.product_id),
                  coalesce(s.quantity, 0), coalesce(m.quantity, 0)
             FROM (SELECT scope_id, product_id, sum(quantity) AS quantity FROM stock_movements
                    GROUP BY scope_id, product_id) m
             FULL JOIN stock_on_hand s ON s.scope_id = m.scope_id AND s.product_id = m.product_id
            WHERE coalesce(s.quantity, 0) <> coalesce(m.quantity, 0)"#,
    )
    .fetch_all(db)
    .await
    .unwrap()
}

/// Every (scope, account) whose running balance (migration 0008) differs from the sum of its journal lines'
/// debits minus credits, with both (a missing balance row counts as zero, as the summary reads it).
pub async fn account_balance_mismatches(
    db: &PgPool,
) -> Vec<(String, String, rust_decimal::Decimal, rust_decimal::Decimal)> {
    sqlx::query_as(
        r#"SELECT coalesce(l.scope_id, b.scope_id), coalesce(l.account, b.account),
                  coalesce(b.balance, 0), coalesce(l.balance, 0)
             FROM (SELECT scope_id, account, sum(debit - credit) AS balance FROM journal_lines
                    GROUP BY scope_id, account) l
             FULL JOIN account_balances b ON b.scope_id = l.scope_id AND b.account = l.account
            WHERE coalesce(b.balance, 0) <> coalesce(l.balance, 0)"#,
    )
    .fetch_all(db)
    .await
    .unwrap()
}
