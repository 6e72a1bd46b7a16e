//! The journal and stock movements: the server's truth for money and stock (migration 0004).
//!
//! Entries are only ever added, with their lines, in one transaction; a mistake is undone by a reversing entry.
//! The database refuses an unbalanced entry at commit (a deferred constraint trigger), and a line added to an
//! entry posted by an earlier transaction at once (migration 0009), whatever code wrote it.

pub use crate::domain::ledger::{Entry, Line, Movement};
use crate::domain::ScopeId;
use rust_decimal::Decimal;
use sqlx::PgConnection;
use std::collections::BTreeMap;
use uuid::Uuid;

/// The entry of `kind` posted for a source row and not yet reversed, with its lines.
pub async fn open_entry_for(
    tx: &mut PgConnection,
    scope: &ScopeId,
    kind: &str,
    source_collection: &str,
    source_key: &str,
) -> Result<Option<(Uuid, Vec<Line>)>, sqlx::Error> {
    let id: Option<Uuid> = sqlx::query_scalar(
        r#"SELECT e.id FROM journal_entries e
           WHERE e.scope_id = $1 AND e.kind = $2 AND e.source_collection = $3 AND e.source_key = $4
             AND NOT EXISTS (SELECT 1 FROM journal_entries r WHERE r.scope_id = e.scope_id AND r.reverses = e.id)"#,
    )
    .bind(scope.as_str())
    .bind(kind)
    .bind(source_collection)
    .bind(source_key)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = id else { return Ok(None) };
    let rows: Vec<(String, Decimal, Decimal)> = sqlx::query_as(
        "SELECT account, debit, credit FROM journal_lines WHERE scope_id = $1 AND entry_id = $2 ORDER BY line_no",
    )
    .bind(scope.as_str())
    .bind(id)
    .fetch_all(tx)
    .await?;
    let lines = rows
        .into_iter()
        .map(|(account, debit, credit)| Line { account, debit, credit })
        .collect();
    Ok(Some((id, lines)))
}

pub async fn insert_movements(
    tx: &mut PgConnection,
    scope: &ScopeId,
    movements: &[Movement],
) -> Result<(), sqlx::Error> {
    if movements.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = movements.iter().map(|m| m.id).collect();
    let products: Vec<&str> = movements.iter().map(|m| m.product_id.as_str()).collect();
    let quantities: Vec<Decimal> = movements.iter().map(|m| m.quantity).collect();
    let reasons: Vec<&str> = movements.iter().map(|m| m.reason).collect();
    let collections: Vec<&str> = movements.iter().map(|m| m.source_collection).collect();
    let keys: Vec<&str> = movements.iter().map(|m| m.source_key.as_str()).collect();
    let ops: Vec<Option<Uuid>> = movements.iter().map(|m| m.op_id).collect();
    sqlx::query(
        r#"INSERT INTO stock_movements (scope_id, id, product_id, quantity, reason, source_collection, source_key, op_id)
           SELECT $1, * FROM unnest($2::uuid[], $3::text[], $4::numeric[], $5::text[], $6::text[], $7::text[], $8::uuid[])"#,
    )
    .bind(scope.as_str())
    .bind(&ids)
    .bind(&products)
    .bind(&quantities)
    .bind(&reasons)
    .bind(&collections)
    .bind(&keys)
    .bind(&ops)
    .execute(tx)
    .await?;
    Ok(())
}

/// The movements recorded for a source row with `reason`.
pub async fn movements_for(
    tx: &mut PgConnection,
    scope: &ScopeId,
    reason: &str,
    source_collection: &str,
    source_key: &str,
) -> Result<Vec<(String, Decimal)>, sqlx::Error> {
    sqlx::query_as(
        r#"SELECT product_id, quantity FROM stock_movements
           WHERE scope_id = $1 AND reason = $2 AND source_collection = $3 AND source_key = $4 ORDER BY at, id"#,
    )
    .bind(scope.as_str())
    .bind(reason)
    .bind(source_collection)
    .bind(source_key)
    .fetch_all(tx)
    .await
}

/// Stock on hand per product: the sum of its movements (zero for a product without any), as `stock_on_hand`
/// keeps it (migration 0007: one index lookup, however long the product's history).
pub async fn stock_levels(
    tx: &mut PgConnection,
    scope: &ScopeId,
    products: &[&str],
) -> Result<BTreeMap<String, Decimal>, sqlx::Error> {
    let rows: Vec<(String, Decimal)> = sqlx::query_as(
        r#"SELECT p.id, COALESCE((SELECT quantity FROM stock_on_hand WHERE scope_id = $1 AND product_id = p.id), 0)
             FROM (SELECT DISTINCT id FROM unnest($2::text[]) AS u(id)) p"#,
    )
    .bind(scope.as_str())
    .bind(products)
    .fetch_all(tx)
    .await?;
    Ok(rows.into_iter().collect())
}
