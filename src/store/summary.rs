//! Reads for the dashboard summary, all in one read-only REPEATABLE READ transaction: every figure is from the
//! same snapshot, and that snapshot's head version is reported with them.

use crate::domain::ScopeId;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgPool;

/// The raw figures of one snapshot.
#[derive(Debug)]
pub struct Figures {
    pub head: i64,
    /// Debits minus credits per account, over entries of `day_kinds` that occurred in the day.
    pub day_by_account: Vec<(String, Decimal)>,
    /// Debits minus credits per account, over all entries, for the asked accounts (an account without lines may
    /// be missing).
    pub balances: Vec<(String, Decimal)>,
    /// Stock-tracked products: (id, name, reorder level as written, stock on hand).
    pub products: Vec<(String, Option<String>, Option<String>, Decimal)>,
}

pub async fn figures(
    db: &PgPool,
    scope: &ScopeId,
    day_kinds: &[&str],
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    accounts: &[&str],
) -> Result<Option<Figures>, sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let Some(head) = sqlx::query_scalar::<_, i64>("SELECT head_version FROM scopes WHERE id = $1")
        .bind(scope.as_str())
        .fetch_optional(&mut *tx)
        .await?
    else {
        return Ok(None);
    };
    let day_by_account = sqlx::query_as(
        r#"SELECT l.account, sum(l.debit - l.credit)
           FROM journal_entries e JOIN journal_lines l ON l.scope_id = e.scope_id AND l.entry_id = e.id
           WHERE e.scope_id = $1 AND e.kind = ANY($2) AND e.occurred_at >= $3 AND e.occurred_at < $4
           GROUP BY l.account ORDER BY l.account"#,
    )
    .bind(scope.as_str())
    .bind(day_kinds)
    .bind(from)
    .bind(until)
    .fetch_all(&mut *tx)
    .await?;
    // The running sums kept by triggers in the writing transaction (migration 0008): the same figures as summing
    // the accounts' journal lines here, without a read that grows with the history.
    let balances = sqlx::query_as(
        r#"SELECT account, balance FROM account_balances
           WHERE scope_id = $1 AND account = ANY($2) ORDER BY account"#,
    )
    .bind(scope.as_str())
    .bind(accounts)
    .fetch_all(&mut *tx)
    .await?;
    // Stock on hand is the sum of the product's movements, kept by triggers in the writing transaction
    // (migration 0007): the same figure as summing them here, without a read that grows with the history.
    let products = sqlx::query_as(
        r#"SELECT r.key, r.data->>'name', r.data->>'reorder_level', COALESCE(s.quantity, 0)
           FROM records r
           LEFT JOIN stock_on_hand s ON s.scope_id = $1 AND s.product_id = r.key
           WHERE r.scope_id = $1 AND r.collection = 'products'
             AND COALESCE(r.data->>'track_stock', 'true') <> 'false'
           ORDER BY r.key COLLATE "C""#,
    )
    .bind(scope.as_str())
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(Figures {
        head,
        day_by_account,
        balances,
        products,
    }))
}
