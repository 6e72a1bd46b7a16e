//! The backend read views (`dukasync_read`, migration 0017): their columns are exactly those documented in
//! docs/backend-read.md (a contract the ERP codes against), and a sale recorded through the API reads back from
//! them with the right numbers.

use crate::common::*;
use rust_decimal::Decimal;
use serde_json::json;
use std::collections::BTreeSet;

/// (view, column, type) rows of the table in docs/backend-read.md.
fn documented() -> BTreeSet<(String, String, String)> {
    let doc = include_str!("../../docs/backend-read.md");
    let start = doc
        .find("## Columns")
        .expect("docs/backend-read.md has a Columns section");
    let mut rows = BTreeSet::new();
    for row in doc[start..].lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let unquote = |c: &str| c.trim_matches('`').to_string();
        rows.insert((unquote(cells[1]), unquote(cells[2]), cells[3].to_string()));
    }
    rows
}

/// PostgreSQL's internal type name as the documentation spells it.
fn readable(udt: &str) -> String {
    match udt {
        "int4" => "integer".into(),
        "int8" => "bigint".into(),
        other => match other.strip_prefix('_') {
            Some(element) => format!("{}[]", readable(element)),
            None => other.into(),
        },
    }
}

#[tokio::test]
async fn the_views_columns_are_exactly_those_documented() {
    let db = demo_database().await;
    let actual: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, udt_name::text FROM information_schema.columns
          WHERE table_schema = 'dukasync_read'",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let actual: BTreeSet<_> = actual.into_iter().map(|(v, c, t)| (v, c, readable(&t))).collect();
    let documented = documented();
    assert!(documented.len() > 50, "read the table: {documented:?}");
    let undocumented: Vec<_> = actual.difference(&documented).collect();
    let missing: Vec<_> = documented.difference(&actual).collect();
    assert!(
        undocumented.is_empty(),
        "columns not in docs/backend-read.md: {undocumented:?}"
    );
    assert!(missing.is_empty(), "documented columns the views lack: {missing:?}");
}

#[tokio::test]
async fn a_sale_recorded_through_the_api_reads_back_from_the_views() {
    let app = TestApp::start().await;
    let device = Device::new(&app, WATER_CASHIER, "till-1", "water").await;
    let (stock_before,): (Decimal,) =
        sqlx::query_as("SELECT quantity FROM dukasync_read.stock_levels WHERE scope = 'water' AND product_id = 'w-5l'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    let answer = device
        .push(&[command(
            1,
            "record_sale",
            "sale-v-1",
            json!({"sold_at": "2026-11-25T09:30:00+03:00",
                   "lines": [{"product_id": "w-5l", "quantity": "3", "unit_price": "150.00", "discount": "10.00"},
                             {"product_id": "w-1l", "quantity": "1", "unit_price": "420.00"}],
                   "payments": [{"method": "cash", "amount": "500.00"}, {"method": "mpesa", "amount": "360.00"}]}),
        )])
        .await;
    assert_eq!(answer.last_seq, 1);

    let (status, total, sold_at_utc, entry): (String, Decimal, String, uuid::Uuid) = sqlx::query_as(
        "SELECT status, total, to_char(sold_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), journal_entry_id
           FROM dukasync_read.sales WHERE scope = 'water' AND id = 'sale-v-1'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!((status.as_str(), total), ("posted", dec("860.00")));
    assert_eq!(sold_at_utc, "2026-11-25 06:30");

    let lines: Vec<(i32, String, Decimal, Decimal, Decimal, Decimal)> = sqlx::query_as(
        "SELECT line_no, product_id, quantity, unit_price, discount, amount FROM dukasync_read.sale_lines
          WHERE scope = 'water' AND sale_id = 'sale-v-1' ORDER BY line_no",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(
        lines,
        vec![
            (1, "w-5l".into(), dec("3"), dec("150.00"), dec("10.00"), dec("440.00")),
            (2, "w-1l".into(), dec("1"), dec("420.00"), dec("0.00"), dec("420.00")),
        ]
    );

    let journal: Vec<(String, Decimal, Decimal, String, String)> = sqlx::query_as(
        "SELECT account, debit, credit, kind, source_key FROM dukasync_read.journal_lines
          WHERE scope = 'water' AND entry_id = $1 ORDER BY account",
    )
    .bind(entry)
    .fetch_all(&app.db)
    .await
    .unwrap();
    let sale = |a: &str, d: &str, c: &str| {
        (
            a.to_string(),
            dec(d),
            dec(c),
            "sale".to_string(),
            "sale-v-1".to_string(),
        )
    };
    assert_eq!(
        journal,
        vec![
            sale("1000", "500.00", "0"),
            sale("1010", "360.00", "0"),
            sale("4000", "0", "860.00")
        ]
    );

    let (stock_after,): (Decimal,) =
        sqlx::query_as("SELECT quantity FROM dukasync_read.stock_levels WHERE scope = 'water' AND product_id = 'w-5l'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(stock_after, stock_before - dec("3"));
    // Another scope sees nothing of it.
    let (elsewhere,): (i64,) = sqlx::query_as("SELECT count(*) FROM dukasync_read.sales WHERE scope <> 'water'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(elsewhere, 0);
    app.stop().await.unwrap();
}
