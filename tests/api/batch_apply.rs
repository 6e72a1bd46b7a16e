//! A batch is applied as a set (one read, operations in memory, one write: `replay::batch`), yet each operation
//! must see the effects of the ones before it exactly as if each had been sent alone. These tests send the same
//! operations as one batch to one server and one per request to another (each on a fresh copy of the same
//! database) and demand the same answers, rows, stock, books and checksums.

use crate::common::*;
use dukasync::wire::{OpResult, OpStatus};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use uuid::Uuid;

fn sale(seq: i64, key: &str, lines: &[(&str, &str, &str)], method: &str, amount: &str) -> Value {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(product, quantity, price)| json!({"product_id": product, "quantity": quantity, "unit_price": price}))
        .collect();
    command(
        seq,
        "record_sale",
        key,
        json!({"sold_at": "2026-11-25T09:30:00+03:00", "lines": lines,
               "payments": [{"method": method, "amount": amount}]}),
    )
}

fn generic(seq: i64, op_type: &str, collection: &str, key: &str, body: Value) -> Value {
    let mut op = json!({"seq": seq, "id": Uuid::new_v4(), "type": op_type, "collection": collection, "key": key});
    if let Value::Object(fields) = body {
        op.as_object_mut().unwrap().extend(fields);
    }
    op
}

/// What must not depend on how operations were batched: each result's status, original, code and number of
/// versions, and the scope afterwards (rows without server-made ids, stock, balances, conflicts, checksums).
#[derive(Debug, PartialEq)]
struct Observed {
    results: Vec<(OpStatus, Option<String>, usize)>,
    rows: BTreeMap<(String, String), Value>,
    stock: BTreeMap<String, Decimal>,
    balances: BTreeMap<String, Decimal>,
    conflicts: Vec<(i64, String, String)>,
    counts: BTreeMap<String, i64>,
    head: i64,
}

/// Removes the fields that hold ids or times the server makes up (they differ between two servers).
fn comparable(mut row: Value) -> Value {
    if let Value::Object(fields) = &mut row {
        for made_up in [
            "journal_entry_id",
            "void_entry_id",
            "op_id",
            "device_id",
            "voided_at",
            "received_at",
            "produced_at",
        ] {
            fields.remove(made_up);
        }
    }
    row
}

async fn observe(app: &TestApp, scope: &str, results: &[OpResult]) -> Observed {
    let rows: Vec<(String, String, Value)> = sqlx::query_as(
        r#"SELECT collection, key, data FROM records
           WHERE scope_id = $1 AND collection NOT IN ('journal_entries', 'stock_movements')"#,
    )
    .bind(scope)
    .fetch_all(&app.db)
    .await
    .unwrap();
    let stock: Vec<(String, Decimal)> =
        sqlx::query_as("SELECT product_id, sum(quantity) FROM stock_movements WHERE scope_id = $1 GROUP BY product_id")
            .bind(scope)
            .fetch_all(&app.db)
            .await
            .unwrap();
    let balances: Vec<(String, Decimal)> =
        sqlx::query_as("SELECT account, sum(debit - credit) FROM journal_lines WHERE scope_id = $1 GROUP BY account")
            .bind(scope)
            .fetch_all(&app.db)
            .await
            .unwrap();
    let conflicts: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT seq, kind, key FROM conflicts WHERE scope_id = $1 ORDER BY seq, kind")
            .bind(scope)
            .fetch_all(&app.db)
            .await
            .unwrap();
    let counts: Vec<(String, i64)> =
        sqlx::query_as("SELECT collection, row_count FROM collection_state WHERE scope_id = $1")
            .bind(scope)
            .fetch_all(&app.db)
            .await
            .unwrap();
    let head = sqlx::query_scalar("SELECT head_version FROM scopes WHERE id = $1")
        .bind(scope)
        .fetch_one(&app.db)
        .await
        .unwrap();
    Observed {
        results: results
            .iter()
            .map(|r| (r.status, r.code.clone(), r.versions.len()))
            .collect(),
        rows: rows.into_iter().map(|(c, k, d)| ((c, k), comparable(d))).collect(),
        stock: stock.into_iter().collect(),
        balances: balances.into_iter().collect(),
        conflicts,
        counts: counts.into_iter().collect(),
        head,
    }
}

/// The checksum of every collection, folded from the rows themselves, equals the stored one, and the log's
/// last change of each collection carries it (the feed invariants of `store::changes`).
async fn assert_checksums_fold(app: &TestApp, scope: &str) {
    let mismatched: Vec<(String,)> = sqlx::query_as(
        r#"SELECT cs.collection FROM collection_state cs
           LEFT JOIN LATERAL (SELECT count(*) AS n, COALESCE(sum(row_hash), 0) AS s FROM records r
                              WHERE r.scope_id = cs.scope_id AND r.collection = cs.collection) f ON true
           LEFT JOIN LATERAL (SELECT checksum_after, count_after FROM changes c
                              WHERE c.scope_id = cs.scope_id AND c.collection = cs.collection
                              ORDER BY version DESC LIMIT 1) l ON true
           WHERE cs.scope_id = $1
             AND (f.n <> cs.row_count OR (f.s % 4294967296) <> cs.checksum
                  OR l.checksum_after <> cs.checksum OR l.count_after <> cs.row_count)"#,
    )
    .bind(scope)
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert!(mismatched.is_empty(), "checksums off in {mismatched:?}");
    let holes: i64 = sqlx::query_scalar(
        r#"SELECT s.head_version - count(c.version) FROM scopes s LEFT JOIN changes c ON c.scope_id = s.id
           WHERE s.id = $1 GROUP BY s.head_version"#,
    )
    .bind(scope)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(holes, 0, "versions are dense");
}

/// Sends `ops` as one batch to one server and one operation per request to another; both must agree.
async fn batched_equals_one_by_one(email: &str, scope: &'static str, ops: Vec<Value>) -> Vec<OpResult> {
    let batched = TestApp::start().await;
    let single = TestApp::start().await;
    let a = Device::new(&batched, email, "till-a", scope).await;
    let b = Device::new(&single, email, "till-b", scope).await;
    let together = a.push(&ops).await.results;
    let mut alone = Vec::new();
    for op in &ops {
        alone.extend(b.push(std::slice::from_ref(op)).await.results);
    }
    let seen_batched = observe(&batched, scope, &together).await;
    let seen_single = observe(&single, scope, &alone).await;
    assert_eq!(seen_batched, seen_single);
    assert_checksums_fold(&batched, scope).await;
    // Versions are the same numbers too: both started from the same head.
    let versions = |rs: &[OpResult]| rs.iter().map(|r| r.versions.clone()).collect::<Vec<_>>();
    assert_eq!(versions(&together), versions(&alone));
    together
}

#[tokio::test]
async fn a_batch_mixing_commands_and_generic_ops_on_the_same_rows_sees_each_effect_in_order() {
    let lpg = "r-lpg-13kg-refill";
    let ops = vec![
        // The price goes up by a generic put of the product: the next sale at the new price is not stale.
        generic(
            1,
            "put",
            "products",
            lpg,
            json!({"data": {"id": lpg, "name": "LPG 13 kg refill", "unit": "refill", "price": "3000.00",
                           "reorder_level": "3", "tax_rate": "exempt", "active": true, "track_stock": true}}),
        ),
        sale(2, "s-1", &[(lpg, "60", "3000.00")], "cash", "180000.00"),
        // The old price is stale now.
        sale(3, "s-2", &[(lpg, "39", "2900.00")], "mpesa", "113100.00"),
        // The last unit, then one more: the second is oversold (stock 100 - 60 - 39 = 1).
        sale(4, "s-3", &[(lpg, "1", "3000.00")], "cash", "3000.00"),
        sale(5, "s-4", &[(lpg, "1", "3000.00")], "cash", "3000.00"),
        // Voiding a sale of this batch returns its stock and reverses its entry.
        command(6, "void_sale", "s-1", json!({"reason": "wrong till"})),
        command(7, "void_sale", "s-1", json!({"reason": "twice"})),
        // After the void there is stock again.
        sale(8, "s-5", &[(lpg, "2", "3000.00")], "card", "6000.00"),
        // A generic op now makes the product untracked: the next sale moves no stock.
        generic(9, "update", "products", lpg, json!({"mods": {"track_stock": false}})),
        sale(10, "s-6", &[(lpg, "5", "3000.00")], "cash", "15000.00"),
        // The sale's key is taken by s-1 already.
        sale(11, "s-1", &[(lpg, "1", "3000.00")], "cash", "3000.00"),
    ];
    // A manager: prices and stock tracking are not a cashier's to change (protocol §9).
    let results = batched_equals_one_by_one(MANAGER, "retail", ops).await;
    let statuses: Vec<(OpStatus, Option<&str>)> = results.iter().map(|r| (r.status, r.code.as_deref())).collect();
    use OpStatus::*;
    assert_eq!(
        statuses,
        [
            (Applied, None),
            (Applied, None),
            (Conflict, None),
            (Applied, None),
            (Conflict, None),
            (Applied, None),
            (Rejected, Some("already_voided")),
            (Applied, None),
            (Applied, None),
            (Applied, None),
            (Rejected, Some("duplicate_key")),
        ]
    );
    // s-6 wrote its row and its entry only (no movement, no stock level).
    assert_eq!(results[9].versions.len(), 2);
}

#[tokio::test]
async fn a_rejected_operation_in_the_middle_does_not_stop_later_ones_that_depend_on_earlier_ones() {
    let ops = vec![
        sale(1, "s-a", &[("r-sugar-1kg", "2", "180.00")], "cash", "360.00"),
        generic(
            2,
            "put",
            "customers",
            "c-new",
            json!({"data": {"id": "c-new", "name": "Wanjiru", "phone": "0711"}}),
        ),
        // Rejected: no such row. The sequence moves on.
        generic(3, "update", "customers", "c-missing", json!({"mods": {"name": "x"}})),
        // Depends on operation 2.
        generic(
            4,
            "update",
            "customers",
            "c-new",
            json!({"mods": {"address.city": "Nakuru"}}),
        ),
        command(
            5,
            "receive_payment",
            "p-1",
            json!({"customer_id": "c-new", "method": "mpesa", "amount": "100.00"}),
        ),
        // Depends on operation 1.
        command(6, "void_sale", "s-a", json!({"reason": "customer returned it"})),
        command(7, "void_sale", "s-missing", json!({"reason": "none"})),
        generic(8, "delete", "customers", "c-new", json!({})),
        generic(9, "delete", "customers", "c-new", json!({})),
        generic(
            10,
            "put",
            "customers",
            "c-new",
            json!({"data": {"id": "c-new", "name": "Wanjiru again"}}),
        ),
    ];
    let results = batched_equals_one_by_one(SHOP_CASHIER, "retail", ops).await;
    let codes: Vec<Option<&str>> = results.iter().map(|r| r.code.as_deref()).collect();
    assert_eq!(codes[2], Some("row_not_found"));
    assert_eq!(codes[6], Some("sale_not_found"));
    assert!(results[3].status == OpStatus::Applied && results[3].versions.len() == 1);
    assert!(results[8].versions.is_empty(), "deleting a deleted row changes nothing");
}

#[tokio::test]
async fn stale_base_versions_inside_a_batch_merge_against_the_log_as_if_sent_alone() {
    // The customer exists at some version v; the batch edits it twice, then sends an edit made against v.
    let app = TestApp::start().await;
    let (version, head): (i64, i64) = sqlx::query_as(
        r#"SELECT r.version, s.head_version FROM records r JOIN scopes s ON s.id = r.scope_id
           WHERE r.scope_id = 'retail' AND r.key = 'retail-cust-1'"#,
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    drop(app);
    let ops = vec![
        generic(
            1,
            "update",
            "customers",
            "retail-cust-1",
            json!({"mods": {"phone": "0722"}, "base_version": version}),
        ),
        generic(
            2,
            "update",
            "customers",
            "retail-cust-1",
            json!({"mods": {"name": "Njoki W"}}),
        ),
        // Made against v: its name edit follows operation 2's, which the device made itself.
        generic(
            3,
            "update",
            "customers",
            "retail-cust-1",
            json!({"mods": {"name": "Njoki M", "credit_limit": "100.00"}, "base_version": version}),
        ),
        // A put against v of the whole row.
        generic(
            4,
            "put",
            "customers",
            "retail-cust-1",
            json!({"data": {"id": "retail-cust-1", "name": "Mama Njoki", "phone": "0700"}, "base_version": version}),
        ),
        // Made against the row as operation 2 of this batch left it (a version only this batch wrote).
        generic(
            5,
            "update",
            "customers",
            "retail-cust-1",
            json!({"mods": {"phone": "0799"}, "base_version": head + 2}),
        ),
        generic(
            6,
            "delete",
            "customers",
            "retail-cust-1",
            json!({"base_version": version}),
        ),
    ];
    let results = batched_equals_one_by_one(SHOP_CASHIER, "retail", ops).await;
    // Every change since each base is this device's own, committed or earlier in the batch: none is the other
    // side of a conflict (protocol §10), batched or alone.
    let statuses: Vec<OpStatus> = results.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [OpStatus::Applied; 6]);
    assert_eq!(results[1].versions, [head + 2]);
}

#[tokio::test]
async fn a_sale_with_two_lines_of_one_product_publishes_the_sum_of_its_movements() {
    let ops = vec![
        sale(
            1,
            "s-two",
            &[("r-milk-500", "2", "65.00"), ("r-milk-500", "3", "65.00")],
            "cash",
            "325.00",
        ),
        command(
            2,
            "record_production",
            "b-1",
            json!({"product_id": "r-bread-400", "quantity": "4", "inputs": [{"product_id": "r-bread-400", "quantity": "1"}]}),
        ),
    ];
    batched_equals_one_by_one(SHOP_CASHIER, "retail", ops).await;
    let app = TestApp::start().await;
    let till = Device::new(&app, SHOP_CASHIER, "till", "retail").await;
    till.push(&[sale(
        1,
        "s-two",
        &[("r-milk-500", "2", "65.00"), ("r-milk-500", "3", "65.00")],
        "cash",
        "325.00",
    )])
    .await;
    let published: Value = sqlx::query_scalar(
        "SELECT data->'quantity' FROM records WHERE scope_id = 'retail' AND collection = 'stock_levels' AND key = 'r-milk-500'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(published, json!("95"));
}
