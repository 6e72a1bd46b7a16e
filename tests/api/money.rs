//! Money-moving commands through the HTTP API: each posts one balanced entry, its stock movements and its feed
//! rows in one transaction, exactly once; offline sales that oversell or use an old price are applied and flagged.

use crate::common::*;
use dukasync::wire::OpStatus;
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use uuid::Uuid;

fn sale(seq: i64, key: &str, product: &str, quantity: &str, price: &str, method: &str, amount: &str) -> Value {
    command(
        seq,
        "record_sale",
        key,
        json!({"sold_at": "2026-11-25T09:30:00+03:00",
               "lines": [{"product_id": product, "quantity": quantity, "unit_price": price}],
               "payments": [{"method": method, "amount": amount}]}),
    )
}

/// Balance (debits minus credits) of every account of a scope.
async fn balances(app: &TestApp, scope: &str) -> BTreeMap<String, Decimal> {
    let rows: Vec<(String, Decimal)> =
        sqlx::query_as("SELECT account, sum(debit - credit) FROM journal_lines WHERE scope_id = $1 GROUP BY account")
            .bind(scope)
            .fetch_all(&app.db)
            .await
            .unwrap();
    rows.into_iter().collect()
}

/// The invariants every test ends on: each entry balances with two or more lines, and every product's
/// published stock level equals the sum of its movements.
async fn assert_books_consistent(app: &TestApp) {
    let unbalanced: i64 = sqlx::query_scalar(
        r#"SELECT count(*) FROM (SELECT e.id FROM journal_entries e JOIN journal_lines l
               ON l.scope_id = e.scope_id AND l.entry_id = e.id
             GROUP BY e.scope_id, e.id HAVING sum(l.debit) <> sum(l.credit) OR count(*) < 2) x"#,
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(unbalanced, 0, "every journal entry balances");
    let mismatched: Vec<(String, String, Option<String>, Decimal)> = sqlx::query_as(
        r#"SELECT m.scope_id, m.product_id, r.data->>'quantity', sum(m.quantity)
             FROM stock_movements m
             LEFT JOIN records r ON r.scope_id = m.scope_id AND r.collection = 'stock_levels' AND r.key = m.product_id
            GROUP BY m.scope_id, m.product_id, r.data->>'quantity'"#,
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    for (scope, product, published, sum) in mismatched {
        assert_eq!(published.map(|p| dec(&p)), Some(sum), "{scope}/{product}");
    }
    // What commands read as stock on hand (migration 0007) is that same sum.
    assert_eq!(
        stock_on_hand_mismatches(&app.db).await,
        vec![],
        "stock_on_hand is the sum of movements"
    );
    // What the summary reads as an account's balance (migration 0008) is the sum of its lines.
    assert_eq!(account_balance_mismatches(&app.db).await, vec![]);
}

async fn stock(app: &TestApp, scope: &str, product: &str) -> Decimal {
    sqlx::query_scalar("SELECT coalesce(sum(quantity), 0) FROM stock_movements WHERE scope_id = $1 AND product_id = $2")
        .bind(scope)
        .bind(product)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

async fn feed(app: &TestApp, token: &str, scope: &str, since: i64) -> Vec<dukasync::wire::Change> {
    app.changes(token, scope, &format!("since={since}&limit=1000"))
        .await
        .changes
}

#[tokio::test]
async fn a_sale_posts_its_rows_entry_and_stock_once_however_often_replayed() {
    let app = TestApp::start().await;
    let till = Device::new(&app, WATER_CASHIER, "water-counter", "water").await;
    let start = app.head_version("water").await;
    let ops = vec![
        command(
            1,
            "record_sale",
            "sale-1",
            json!({"lines": [
                    {"product_id": "w-500ml", "quantity": "2", "unit_price": "480.00", "discount": "10.00"},
                    {"product_id": "w-refill-20l", "quantity": "3", "unit_price": "100.00"}],
                   "payments": [{"method": "cash", "amount": "1000.00"},
                                {"method": "mpesa", "amount": "250.00", "reference": "QKX1"}]}),
        ),
        sale(2, "sale-2", "w-5l", "1", "150.00", "card", "150.00"),
    ];
    let first = till.push(&ops).await;
    assert!(first.results.iter().all(|r| r.status == OpStatus::Applied), "{first:?}");
    for _ in 0..2 {
        let again = till.push(&ops).await;
        assert!(again.results.iter().all(|r| r.status == OpStatus::Duplicate));
        assert_eq!(again.results[0].versions, first.results[0].versions);
    }
    // One entry each; revenue 1250 + 150, cash 1000, M-Pesa 250, card 150.
    let b = balances(&app, "water").await;
    assert_eq!(b["4000"], dec("-1400.00"));
    assert_eq!((b["1000"], b["1010"], b["1020"]), (dec("1000"), dec("250"), dec("150")));
    let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM journal_entries")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(entries, 2);
    // The refill is a service (no stock); the cartons and the bottle came out of stock once.
    assert_eq!(stock(&app, "water", "w-500ml").await, dec("98"));
    assert_eq!(stock(&app, "water", "w-5l").await, dec("99"));
    assert_eq!(stock(&app, "water", "w-refill-20l").await, Decimal::ZERO);
    assert_books_consistent(&app).await;

    // The feed carries the sale, its entry, the movement and the new stock level, at the versions answered.
    let changes = feed(&app, &till.token, "water", start).await;
    let sale_one: Vec<_> = changes
        .iter()
        .filter(|c| first.results[0].versions.contains(&c.version))
        .map(|c| (c.collection.as_str(), c.data.clone().unwrap()))
        .collect();
    let collections: Vec<&str> = sale_one.iter().map(|(c, _)| *c).collect();
    assert_eq!(
        collections,
        ["sales", "journal_entries", "stock_movements", "stock_levels"]
    );
    let sale_row = &sale_one[0].1;
    assert_eq!(
        (sale_row["total"].as_str(), sale_row["status"].as_str()),
        (Some("1250.00"), Some("posted"))
    );
    assert_eq!(sale_row["lines"][0]["amount"], "950.00");
    assert_eq!(sale_one[3].1["quantity"], "98");
    let entry_lines = sale_one[1].1["lines"].as_array().unwrap();
    let debit: Decimal = entry_lines.iter().map(|l| dec(l["debit"].as_str().unwrap())).sum();
    let credit: Decimal = entry_lines.iter().map(|l| dec(l["credit"].as_str().unwrap())).sum();
    assert_eq!((debit, credit), (dec("1250"), dec("1250")));
}

#[tokio::test]
async fn every_command_balances_and_stock_is_the_sum_of_its_movements() {
    let app = TestApp::start().await;
    let shop = Device::new(&app, SHOP_CASHIER, "shop-till", "retail").await;
    let ops = vec![
        command(
            1,
            "record_sale",
            "s-credit",
            json!({"customer_id": "retail-cust-1",
            "lines": [{"product_id": "r-sugar-1kg", "quantity": "2", "unit_price": "180.00"}],
            "payments": [{"method": "credit", "amount": "360.00"}]}),
        ),
        command(
            2,
            "receive_payment",
            "pay-1",
            json!({"customer_id": "retail-cust-1", "method": "mpesa", "amount": "200.00"}),
        ),
        command(
            3,
            "record_expense",
            "exp-1",
            json!({"description": "Transport", "method": "cash", "amount": "150.00"}),
        ),
        command(
            4,
            "adjust_stock",
            "adj-1",
            json!({"product_id": "r-milk-500", "quantity": "-3", "reason": "spoilt", "unit_cost": "50.00"}),
        ),
        command(
            5,
            "adjust_stock",
            "adj-2",
            json!({"product_id": "r-bread-400", "quantity": "5", "reason": "count"}),
        ),
        command(
            6,
            "record_cylinder_exchange",
            "gas-1",
            json!({
            "refill_product_id": "r-lpg-6kg-refill", "quantity": "1", "unit_price": "1100.00",
            "deposit": "2600.00", "cylinder_product_id": "r-lpg-6kg-cylinder",
            "payments": [{"method": "cash", "amount": "3700.00"}]}),
        ),
        command(
            7,
            "void_sale",
            "s-credit",
            json!({"reason": "customer returned the sugar"}),
        ),
    ];
    let res = shop.push(&ops).await;
    assert!(res.results.iter().all(|r| r.status == OpStatus::Applied), "{res:?}");
    let b = balances(&app, "retail").await;
    // Sale on credit then voided: receivables back to zero, less the 200 received.
    assert_eq!(b["1100"], dec("-200.00"));
    assert_eq!(b["1010"], dec("200.00"));
    assert_eq!(b["1000"], dec("3550.00")); // 3700 exchange − 150 expense
    assert_eq!(b["6000"], dec("150.00"));
    assert_eq!(b["5000"], dec("150.00")); // spoilt milk: 3 × 50
    assert_eq!(b["1200"], dec("-150.00"));
    assert_eq!(b["4000"], dec("-1100.00")); // only the refill: the sugar sale was reversed
    assert_eq!(b["2100"], dec("-2600.00"));
    assert_eq!(b.values().copied().sum::<Decimal>(), Decimal::ZERO);
    assert_eq!(stock(&app, "retail", "r-sugar-1kg").await, dec("100")); // sold 2, returned 2
    assert_eq!(stock(&app, "retail", "r-milk-500").await, dec("97"));
    assert_eq!(stock(&app, "retail", "r-bread-400").await, dec("105"));
    assert_eq!(stock(&app, "retail", "r-lpg-6kg-refill").await, dec("99"));
    assert_eq!(stock(&app, "retail", "r-lpg-6kg-cylinder").await, dec("99"));
    let voided: Value = sqlx::query_scalar("SELECT data FROM records WHERE scope_id = 'retail' AND key = 's-credit'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(voided["status"], "voided");
    assert_books_consistent(&app).await;

    // Water production: 40 cartons from 40 packs of caps, paid in cash.
    let plant = Device::new(&app, WATER_CASHIER, "water-counter", "water").await;
    let res = plant
        .push(&[command(
            1,
            "record_production",
            "batch-1",
            json!({
            "product_id": "w-500ml", "quantity": "40", "inputs": [{"product_id": "w-jerrycan-20l", "quantity": "2"}],
            "cost": "800.00", "method": "mpesa"}),
        )])
        .await;
    assert_eq!(res.results[0].status, OpStatus::Applied, "{res:?}");
    assert_eq!(stock(&app, "water", "w-500ml").await, dec("140"));
    assert_eq!(stock(&app, "water", "w-jerrycan-20l").await, dec("98"));
    let b = balances(&app, "water").await;
    assert_eq!((b["1200"], b["1010"]), (dec("800"), dec("-800")));
    assert_books_consistent(&app).await;
}

#[tokio::test]
async fn state_errors_are_rejected_recorded_and_the_sequence_moves_on() {
    let app = TestApp::start().await;
    let shop = Device::new(&app, SHOP_CASHIER, "shop-till", "retail").await;
    let res = shop
        .push(&[
            command(1, "void_sale", "no-such-sale", json!({"reason": "mistake"})),
            sale(2, "s-1", "r-bread-400", "1", "70.00", "cash", "70.00"),
            command(3, "void_sale", "s-1", json!({"reason": "mistake"})),
            command(4, "void_sale", "s-1", json!({"reason": "again"})),
            sale(5, "s-1", "r-bread-400", "1", "70.00", "cash", "70.00"),
            command(
                6,
                "record_expense",
                "e-1",
                json!({"account": "4000", "description": "x", "method": "cash", "amount": "1.00"}),
            ),
            command(
                7,
                "adjust_stock",
                "a-1",
                json!({"product_id": "nope", "quantity": "1", "reason": "count"}),
            ),
        ])
        .await;
    let statuses: Vec<(OpStatus, Option<&str>)> = res.results.iter().map(|r| (r.status, r.code.as_deref())).collect();
    assert_eq!(
        statuses,
        [
            (OpStatus::Rejected, Some("sale_not_found")),
            (OpStatus::Applied, None),
            (OpStatus::Applied, None),
            (OpStatus::Rejected, Some("already_voided")),
            (OpStatus::Rejected, Some("duplicate_key")),
            (OpStatus::Rejected, Some("unknown_account")),
            (OpStatus::Rejected, Some("unknown_product")),
        ]
    );
    assert_eq!(res.last_seq, 7);
    let rejected: i64 =
        sqlx::query_scalar("SELECT count(*) FROM conflicts WHERE kind = 'rejected_operation' AND scope_id = 'retail'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(rejected, 5);
    // The sale and its void: revenue nets to zero, stock is back.
    let b = balances(&app, "retail").await;
    assert_eq!((b["4000"], b["1000"]), (Decimal::ZERO, Decimal::ZERO));
    assert_eq!(stock(&app, "retail", "r-bread-400").await, dec("100"));
    assert_books_consistent(&app).await;
}

#[tokio::test]
async fn an_oversold_or_stale_price_sale_is_applied_and_flagged() {
    let app = TestApp::start().await;
    let shop = Device::new(&app, SHOP_CASHIER, "shop-till", "retail").await;
    // 5 cylinders of gas at the old price of 2800 (the current price is 2900); only 3 are in stock after the
    // first sale of 97.
    let res = shop
        .push(&[
            sale(1, "s-big", "r-lpg-13kg-refill", "97", "2900.00", "mpesa", "281300.00"),
            sale(2, "s-late", "r-lpg-13kg-refill", "5", "2800.00", "cash", "14000.00"),
        ])
        .await;
    assert_eq!(res.results[0].status, OpStatus::Applied);
    assert_eq!(res.results[1].status, OpStatus::Conflict);
    assert!(!res.results[1].versions.is_empty(), "a flagged sale is still applied");
    let kinds: Vec<(String, Value)> =
        sqlx::query_as("SELECT kind, detail FROM conflicts WHERE key = 's-late' AND status = 'open' ORDER BY kind")
            .fetch_all(&app.db)
            .await
            .unwrap();
    let names: Vec<&str> = kinds.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["oversold_stock", "stale_price"]);
    assert_eq!(kinds[0].1["products"][0]["stock_after"], "-2");
    assert_eq!(kinds[1].1["lines"][0]["current_price"], "2900.00");
    assert_eq!(stock(&app, "retail", "r-lpg-13kg-refill").await, dec("-2"));
    assert_eq!(balances(&app, "retail").await["1000"], dec("14000"));
    assert_books_consistent(&app).await;
}

#[tokio::test]
async fn the_database_refuses_an_unbalanced_entry() {
    let app = TestApp::start().await;
    let insert = |debit: &'static str, credit: &'static str| {
        let db = app.db.clone();
        async move {
            let mut tx = db.begin().await.unwrap();
            let id = Uuid::new_v4();
            sqlx::query(
                "INSERT INTO journal_entries (scope_id, id, kind, source_collection, source_key, occurred_at)
                 VALUES ('water', $1, 'test', 'sales', 'x', now())",
            )
            .bind(id)
            .execute(&mut *tx)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO journal_lines (scope_id, entry_id, line_no, account, debit, credit)
                 VALUES ('water', $1, 1, '1000', $2::numeric, 0), ('water', $1, 2, '4000', 0, $3::numeric)",
            )
            .bind(id)
            .bind(debit)
            .bind(credit)
            .execute(&mut *tx)
            .await
            .unwrap();
            tx.commit().await
        }
    };
    let err = insert("100.00", "99.99").await.unwrap_err();
    assert!(err.to_string().contains("unbalanced"), "{err}");
    insert("100.00", "100.00").await.expect("a balanced entry commits");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM journal_entries")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(count, 1, "the unbalanced entry was rolled back");
}

#[tokio::test]
async fn bad_money_input_is_refused_whole_and_nothing_is_written() {
    let app = TestApp::start().await;
    let shop = Device::new(&app, SHOP_CASHIER, "shop-till", "retail").await;
    let good = sale(1, "ok", "r-bread-400", "1", "70.00", "cash", "70.00");
    let line = |quantity: Value, price: Value| {
        command(
            2,
            "record_sale",
            "bad",
            json!({"lines": [{"product_id": "r-bread-400", "quantity": quantity, "unit_price": price}],
            "payments": [{"method": "cash", "amount": "70.00"}]}),
        )
    };
    let cases: Vec<(&str, Value)> = vec![
        ("float_not_allowed", line(json!("1"), json!(70.0))),
        ("invalid_decimal", line(json!("1"), json!("70,00"))),
        ("invalid_decimal", line(json!("1"), json!("7e1"))),
        ("invalid_decimal", line(json!("1"), json!("70.001"))),
        ("invalid_quantity", line(json!("0"), json!("70.00"))),
        ("invalid_quantity", line(json!("-1"), json!("70.00"))),
        ("invalid_arguments", line(json!(1), json!("70.00"))),
        ("payment_mismatch", line(json!("2"), json!("70.00"))),
        ("unknown_command", command(2, "give_away", "bad", json!({}))),
        (
            "unknown_field",
            command(2, "void_sale", "bad", json!({"reason": "x", "refund": "all"})),
        ),
        (
            "invalid_operation",
            json!({"seq": 2, "id": Uuid::new_v4(), "type": "command", "key": "bad", "args": {}}),
        ),
        (
            "invalid_operation",
            json!({"seq": 2, "id": Uuid::new_v4(), "type": "command", "command": "void_sale",
            "collection": "sales", "key": "bad", "args": {"reason": "x"}}),
        ),
        (
            "server_only_collection",
            json!({"seq": 2, "id": Uuid::new_v4(), "type": "put", "collection": "journal_entries",
            "key": "j", "data": {"id": "j"}}),
        ),
    ];
    let before = footprint(&app).await;
    for (code, bad) in cases {
        // The good operation before the bad one is not applied either: the batch is refused whole.
        let (status, body) = shop.push_error(&[good.clone(), bad.clone()]).await;
        assert_eq!(
            (status, body.error.code.as_str()),
            (StatusCode::BAD_REQUEST, code),
            "{bad}: {}",
            body.error.message
        );
        assert_eq!(footprint(&app).await, before, "{bad}");
    }
    // The same batch without the bad operation goes through.
    assert_eq!(shop.push(&[good]).await.results[0].status, OpStatus::Applied);
}

#[tokio::test]
async fn two_connections_pushing_the_same_sales_take_effect_once() {
    let app = TestApp::start().await;
    let till = Device::new(&app, WATER_CASHIER, "water-counter", "water").await;
    let ops: Vec<Value> = (1..=20)
        .map(|i| sale(i, &format!("s-{i}"), "w-1l", "1", "420.00", "cash", "420.00"))
        .collect();
    let (a, b) = tokio::join!(till.push(&ops), till.push(&ops));
    let applied = |r: &dukasync::wire::OpsResponse| r.results.iter().filter(|x| x.status == OpStatus::Applied).count();
    assert_eq!(
        applied(&a) + applied(&b),
        20,
        "each sale applied by exactly one of the two"
    );
    assert_eq!(stock(&app, "water", "w-1l").await, dec("80"));
    assert_eq!(balances(&app, "water").await["1000"], dec("8400"));
    assert_books_consistent(&app).await;
}

/// A command's time far from the server's clock (a phone reset to 1970, a year typed as 2999) is not refused, since
/// the money changed hands: it is applied at the server's time and flagged `implausible_time` with the device's
/// time. A device that was merely offline for weeks keeps its own time.
#[tokio::test]
async fn implausible_command_times_are_applied_at_the_server_time_and_flagged() {
    let app = TestApp::start().await;
    let shop = Device::new(&app, SHOP_CASHIER, "shop-till", "retail").await;
    let at = |seq: i64, key: &str, sold_at: &str| {
        command(
            seq,
            "record_sale",
            key,
            json!({"sold_at": sold_at, "lines": [{"product_id": "r-bread-400", "quantity": "1", "unit_price": "70.00"}],
                   "payments": [{"method": "cash", "amount": "70.00"}]}),
        )
    };
    let weeks_ago =
        (chrono::Utc::now() - chrono::Duration::days(40)).to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
    let started = chrono::Utc::now();
    let res = shop
        .push(&[
            at(1, "s-1970", "1970-01-01T00:00:00Z"),
            at(2, "s-2999", "2999-06-01T12:00:00+03:00"),
            at(3, "s-offline", &weeks_ago),
            command(
                4,
                "record_expense",
                "e-1970",
                json!({"description": "rent", "method": "cash", "amount": "5.00", "spent_at": "1970-01-01T00:00:00Z"}),
            ),
        ])
        .await;
    let statuses: Vec<OpStatus> = res.results.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [
            OpStatus::Conflict,
            OpStatus::Conflict,
            OpStatus::Applied,
            OpStatus::Conflict
        ],
        "{res:?}"
    );
    let flags: Vec<(String, String, Value)> = sqlx::query_as(
        "SELECT key, kind, detail FROM conflicts WHERE scope_id = 'retail' AND status = 'open' ORDER BY key",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    let sent: Vec<(&str, &str, &str, &str)> = flags
        .iter()
        .map(|(key, kind, d)| {
            (
                key.as_str(),
                kind.as_str(),
                d["field"].as_str().unwrap(),
                d["sent"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        sent,
        [
            ("e-1970", "implausible_time", "spent_at", "1970-01-01T00:00:00+00:00"),
            ("s-1970", "implausible_time", "sold_at", "1970-01-01T00:00:00+00:00"),
            ("s-2999", "implausible_time", "sold_at", "2999-06-01T09:00:00+00:00"),
        ]
    );
    // The flagged ones took the server's time, in their rows and their journal entries.
    let times: Vec<(String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT source_key, occurred_at FROM journal_entries WHERE scope_id = 'retail' ORDER BY source_key",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    for (key, occurred) in &times {
        if key == "s-offline" {
            assert_eq!(occurred.to_rfc3339(), weeks_ago, "an offline sale keeps its time");
        } else {
            assert!(
                *occurred >= started - chrono::Duration::seconds(5) && *occurred <= chrono::Utc::now(),
                "{key} at {occurred}"
            );
        }
    }
    assert_eq!(times.len(), 4);
    let sold_at: String =
        sqlx::query_scalar("SELECT data->>'sold_at' FROM records WHERE scope_id = 'retail' AND key = 's-2999'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(sold_at.starts_with(&started.format("%Y-").to_string()), "{sold_at}");
    assert_books_consistent(&app).await;
}
