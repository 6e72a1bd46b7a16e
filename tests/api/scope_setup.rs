//! A new business is usable at once: `scope-add` sets up the standard chart of accounts and payment methods,
//! and an owner or manager adds accounts and payment methods (API and CLI) that commands can use right away.

use crate::common::*;
use dukasync::wire::{ChangesPage, OpStatus, OpsResponse};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn ok_cli(app: &TestApp, args: &[&str]) {
    let (ok, _, err) = cli(app, args);
    assert!(ok, "dukasync {args:?}: {err}");
}

/// Every result's (status, code), in order.
fn statuses(resp: &OpsResponse) -> Vec<(OpStatus, Option<String>)> {
    resp.results.iter().map(|r| (r.status, r.code.clone())).collect()
}

/// Every journal entry of the scope balances (debits = credits, two lines or more); returns the number of
/// entries and each account's balance (debits minus credits).
async fn balanced_books(app: &TestApp, scope: &str) -> (i64, BTreeMap<String, Decimal>) {
    let unbalanced: i64 = sqlx::query_scalar(
        r#"SELECT count(*) FROM (SELECT e.id FROM journal_entries e JOIN journal_lines l
               ON l.scope_id = e.scope_id AND l.entry_id = e.id WHERE e.scope_id = $1
             GROUP BY e.id HAVING sum(l.debit) <> sum(l.credit) OR count(*) < 2) x"#,
    )
    .bind(scope)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(unbalanced, 0, "every journal entry of {scope} balances");
    let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM journal_entries WHERE scope_id = $1")
        .bind(scope)
        .fetch_one(&app.db)
        .await
        .unwrap();
    let rows: Vec<(String, Decimal)> =
        sqlx::query_as("SELECT account, sum(debit - credit) FROM journal_lines WHERE scope_id = $1 GROUP BY account")
            .bind(scope)
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert!(account_balance_mismatches(&app.db).await.is_empty());
    (entries, rows.into_iter().collect())
}

fn product(seq: i64, id: &str, price: &str) -> Value {
    json!({"seq": seq, "id": uuid::Uuid::new_v4(), "type": "put", "collection": "products", "key": id,
           "data": {"id": id, "name": id, "price": price, "unit": "piece", "track_stock": true}})
}

#[tokio::test]
async fn a_scope_made_by_scope_add_runs_every_command_at_once() {
    let app = TestApp::start().await;
    ok_cli(&app, &["scope-add", "kiosk", "--name", "Mama Kiosk"]);
    ok_cli(
        &app,
        &[
            "user-add", "--email", OWNER, "--name", "Amina", "--scope", "kiosk", "--role", "owner",
        ],
    );
    let device = Device::new(&app, OWNER, "kiosk-phone", "kiosk").await;

    // The device sees the chart and the payment methods through the feed, like any change.
    let page: ChangesPage = app
        .get("/v1/scopes/kiosk/changes?since=0", Some(&device.token))
        .await
        .json()
        .await
        .unwrap();
    let keys = |collection: &str| -> Vec<String> {
        let mut k: Vec<String> = page
            .changes
            .iter()
            .filter(|c| c.collection == collection)
            .map(|c| c.key.clone())
            .collect();
        k.sort();
        k
    };
    assert_eq!(keys("payment_methods"), ["card", "cash", "credit", "mpesa"]);
    assert_eq!(
        keys("accounts"),
        ["1000", "1010", "1020", "1100", "1200", "2000", "2100", "3000", "4000", "5000", "6000"]
    );
    let cash = page.changes.iter().find(|c| c.key == "cash").unwrap();
    assert_eq!(cash.data.as_ref().unwrap()["account"], "1000");

    // Running it again renames the scope and writes nothing else.
    let head = page.head;
    ok_cli(&app, &["scope-add", "kiosk", "--name", "Mama Kiosk & Gas"]);
    let after: ChangesPage = app
        .get(&format!("/v1/scopes/kiosk/changes?since={head}"), Some(&device.token))
        .await
        .json()
        .await
        .unwrap();
    assert!(after.changes.is_empty(), "{:?}", after.changes);

    // Every command of protocol §10.1, on products the device adds itself.
    let mut ops = vec![
        product(1, "soap", "50.00"),
        product(2, "oil", "10.00"),
        product(3, "gas-refill", "1100.00"),
        product(4, "gas-cylinder", "2600.00"),
    ];
    let commands = [
        (
            "adjust_stock",
            "adj-1",
            json!({"product_id": "soap", "quantity": "40", "reason": "opening", "unit_cost": "30.00"}),
        ),
        (
            "adjust_stock",
            "adj-2",
            json!({"product_id": "gas-cylinder", "quantity": "5", "reason": "opening"}),
        ),
        (
            "adjust_stock",
            "adj-3",
            json!({"product_id": "gas-refill", "quantity": "5", "reason": "opening"}),
        ),
        (
            "adjust_stock",
            "adj-4",
            json!({"product_id": "oil", "quantity": "20", "reason": "opening"}),
        ),
        (
            "record_production",
            "batch-1",
            json!({"product_id": "soap", "quantity": "10", "inputs": [{"product_id": "oil", "quantity": "5"}],
                "cost": "120.00", "method": "card"}),
        ),
        (
            "record_sale",
            "sale-1",
            json!({"lines": [{"product_id": "soap", "quantity": "2", "unit_price": "50.00"}],
                "payments": [{"method": "cash", "amount": "60.00"}, {"method": "mpesa", "amount": "40.00"}]}),
        ),
        (
            "record_sale",
            "sale-2",
            json!({"customer_id": "kiosk-cust-1", "lines": [{"product_id": "soap", "quantity": "1", "unit_price": "50.00"}],
                "payments": [{"method": "credit", "amount": "50.00"}]}),
        ),
        ("void_sale", "sale-1", json!({"reason": "wrong item"})),
        (
            "receive_payment",
            "pay-1",
            json!({"customer_id": "kiosk-cust-1", "method": "mpesa", "amount": "50.00"}),
        ),
        (
            "record_expense",
            "exp-1",
            json!({"description": "Transport", "method": "cash", "amount": "20.00"}),
        ),
        (
            "record_cylinder_exchange",
            "cx-1",
            json!({"refill_product_id": "gas-refill", "quantity": "1", "unit_price": "1100.00", "deposit": "2600.00",
                "cylinder_product_id": "gas-cylinder", "payments": [{"method": "cash", "amount": "3700.00"}]}),
        ),
    ];
    for (i, (name, key, args)) in commands.iter().enumerate() {
        ops.push(command(5 + i as i64, name, key, args.clone()));
    }
    let resp = device.push(&ops).await;
    let expected: Vec<(OpStatus, Option<String>)> = vec![(OpStatus::Applied, None); ops.len()];
    assert_eq!(statuses(&resp), expected, "{resp:?}");

    // One entry per command that moves money (the zero-cost adjustments post none), all balanced.
    let (entries, balances) = balanced_books(&app, "kiosk").await;
    assert_eq!(entries, 8);
    assert_eq!(balances["6000"], dec("20.00"));
    assert_eq!(balances["1000"], dec("3680.00")); // 60 − 60 (void) − 20 + 3700
    assert_eq!(balances["2100"], dec("-2600.00"));
}

#[tokio::test]
async fn accounts_and_methods_added_by_api_or_cli_are_usable_by_commands_at_once() {
    let app = TestApp::start().await;
    let owner = app.token(OWNER, "owner-phone").await;
    let post = |path: &'static str, body: Value| {
        let req = app
            .http
            .post(app.url(&format!("/v1/scopes/water/{path}")))
            .bearer_auth(&owner)
            .json(&body);
        async move {
            let resp = req.send().await.unwrap();
            (resp.status(), resp.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = post("accounts", json!({"code": "6100", "name": "Fuel", "type": "expense"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["collection"], "accounts");
    assert_eq!(
        body["row"],
        json!({"id": "6100", "code": "6100", "name": "Fuel", "type": "expense"})
    );
    let (status, body) = post(
        "accounts",
        json!({"code": "1030", "name": "KCB account", "type": "asset"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = post(
        "payment_methods",
        json!({"id": "kcb", "name": "KCB transfer", "account": "1030"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let version = body["version"].as_i64().unwrap();
    // The row reached the feed at the version the answer names.
    let page: ChangesPage = app
        .get(&format!("/v1/scopes/water/changes?since={}", version - 1), Some(&owner))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page.changes[0].version, version);
    assert_eq!(page.changes[0].key, "kcb");

    // The same through the CLI.
    ok_cli(
        &app,
        &[
            "account-add",
            "--scope",
            "water",
            "--code",
            "6200",
            "--name",
            "Rent",
            "--type",
            "expense",
        ],
    );
    ok_cli(
        &app,
        &[
            "payment-method-add",
            "--scope",
            "water",
            "--id",
            "airtel",
            "--name",
            "Airtel Money",
            "--account",
            "1030",
        ],
    );
    let (ok, _, err) = cli(
        &app,
        &[
            "account-add",
            "--scope",
            "water",
            "--code",
            "6200",
            "--name",
            "Rent",
            "--type",
            "expense",
        ],
    );
    assert!(!ok && err.contains("account_exists"), "{err}");

    let device = Device::new(&app, WATER_CASHIER, "water-counter", "water").await;
    let before = balanced_books(&app, "water").await.1;
    let resp = device
        .push(&[
            command(
                1,
                "record_expense",
                "exp-fuel",
                json!({"description": "Generator fuel", "account": "6100", "method": "kcb", "amount": "500.00"}),
            ),
            command(
                2,
                "record_expense",
                "exp-rent",
                json!({"description": "Rent", "account": "6200", "method": "airtel", "amount": "300.00"}),
            ),
            command(
                3,
                "record_sale",
                "sale-kcb",
                json!({"lines": [{"product_id": "w-5l", "quantity": "2", "unit_price": "150.00"}],
                       "payments": [{"method": "kcb", "amount": "200.00"}, {"method": "cash", "amount": "100.00"}]}),
            ),
            command(
                4,
                "receive_payment",
                "pay-airtel",
                json!({"customer_id": "water-cust-1", "method": "airtel", "amount": "50.00"}),
            ),
        ])
        .await;
    assert_eq!(statuses(&resp), vec![(OpStatus::Applied, None); 4], "{resp:?}");
    let after = balanced_books(&app, "water").await.1;
    let moved = |account: &str| {
        after.get(account).copied().unwrap_or_default() - before.get(account).copied().unwrap_or_default()
    };
    assert_eq!(moved("6100"), dec("500.00"));
    assert_eq!(moved("6200"), dec("300.00"));
    // 1030: −500 (fuel) −300 (rent) +200 (sale) +50 (payment)
    assert_eq!(moved("1030"), dec("-550.00"));
    assert_eq!(moved("1000"), dec("100.00"));
}

#[tokio::test]
async fn a_method_the_business_does_not_have_is_rejected_and_recorded() {
    let app = TestApp::start().await;
    // The owner: writing payment methods is for owners and managers (protocol §9).
    let device = Device::new(&app, OWNER, "owner-phone", "water").await;
    let sale = |seq: i64, key: &str, method: &str| {
        command(
            seq,
            "record_sale",
            key,
            json!({"lines": [{"product_id": "w-5l", "quantity": "1", "unit_price": "150.00"}],
                   "payments": [{"method": method, "amount": "150.00"}]}),
        )
    };
    // payment_methods is a device collection: a device may write a method, but not one that posts money to
    // an account that is not an asset (here revenue), nor to receivables.
    let bad_method = |seq: i64, id: &str, account: &str| {
        json!({"seq": seq, "id": uuid::Uuid::new_v4(), "type": "put", "collection": "payment_methods", "key": id,
               "data": {"id": id, "name": id, "account": account}})
    };
    let before = footprint(&app).await;
    let resp = device
        .push(&[
            sale(1, "s-1", "bitcoin"),
            bad_method(2, "to-revenue", "4000"),
            sale(3, "s-2", "to-revenue"),
            bad_method(4, "to-receivables", "1100"),
            sale(5, "s-3", "to-receivables"),
            bad_method(6, "to-nowhere", "9999"),
            sale(7, "s-4", "to-nowhere"),
        ])
        .await;
    let rejected = (OpStatus::Rejected, Some("unknown_payment_method".to_string()));
    let applied = (OpStatus::Applied, None);
    assert_eq!(
        statuses(&resp),
        vec![
            rejected.clone(),
            applied.clone(),
            rejected.clone(),
            applied.clone(),
            rejected.clone(),
            applied,
            rejected
        ]
    );
    // No journal entry was posted.
    assert_eq!(footprint(&app).await[4], before[4]);
}

/// (token, scope, route, body, expected status, expected code)
type Case = (
    Option<String>,
    &'static str,
    &'static str,
    Value,
    StatusCode,
    &'static str,
);

#[tokio::test]
async fn adding_is_for_owners_and_managers_and_bad_input_writes_nothing() {
    let app = TestApp::start().await;
    let owner = app.token(OWNER, "owner-phone").await;
    let cashier = app.token(WATER_CASHIER, "water-counter").await;
    let manager = app.token(MANAGER, "manager-phone").await;
    let send = |token: Option<String>, scope: &'static str, path: &'static str, body: Value| {
        let mut req = app
            .http
            .post(app.url(&format!("/v1/scopes/{scope}/{path}")))
            .json(&body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status();
            let body: Value = resp.json().await.unwrap();
            (status, body["error"]["code"].as_str().unwrap_or_default().to_string())
        }
    };
    let account = json!({"code": "6100", "name": "Fuel", "type": "expense"});
    let before = footprint(&app).await;
    let cases: Vec<Case> = vec![
        (
            None,
            "water",
            "accounts",
            account.clone(),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            Some(cashier.clone()),
            "water",
            "accounts",
            account.clone(),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        // The role is checked before the body is read.
        (
            Some(cashier.clone()),
            "water",
            "accounts",
            json!({"x": 1}),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            Some(cashier),
            "water",
            "payment_methods",
            json!({}),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        // The manager is not a member of `water`: as a scope that does not exist.
        (
            Some(manager.clone()),
            "water",
            "accounts",
            account.clone(),
            StatusCode::NOT_FOUND,
            "scope_not_found",
        ),
        (
            Some(owner.clone()),
            "nowhere",
            "accounts",
            account.clone(),
            StatusCode::NOT_FOUND,
            "scope_not_found",
        ),
        (
            Some(owner.clone()),
            "water",
            "accounts",
            json!({"code": "1000", "name": "Cash", "type": "asset"}),
            StatusCode::BAD_REQUEST,
            "account_exists",
        ),
        (
            Some(owner.clone()),
            "water",
            "accounts",
            json!({"code": "6100", "name": "Fuel", "type": "costs"}),
            StatusCode::BAD_REQUEST,
            "invalid_account_type",
        ),
        (
            Some(owner.clone()),
            "water",
            "accounts",
            json!({"code": "61 00", "name": "Fuel", "type": "expense"}),
            StatusCode::BAD_REQUEST,
            "invalid_account",
        ),
        (
            Some(owner.clone()),
            "water",
            "accounts",
            json!({"code": "6100", "name": " ", "type": "expense"}),
            StatusCode::BAD_REQUEST,
            "invalid_name",
        ),
        (
            Some(owner.clone()),
            "water",
            "accounts",
            json!({"code": "6100", "name": "Fuel"}),
            StatusCode::BAD_REQUEST,
            "malformed_body",
        ),
        (
            Some(owner.clone()),
            "water",
            "accounts",
            json!({"code": "6100", "name": "Fuel", "type": "expense", "x": 1}),
            StatusCode::BAD_REQUEST,
            "unknown_field",
        ),
        (
            Some(owner.clone()),
            "water",
            "payment_methods",
            json!({"id": "cash", "name": "Cash", "account": "1000"}),
            StatusCode::BAD_REQUEST,
            "payment_method_exists",
        ),
        (
            Some(owner.clone()),
            "water",
            "payment_methods",
            json!({"id": "kcb", "name": "KCB", "account": "1030"}),
            StatusCode::BAD_REQUEST,
            "unknown_account",
        ),
        (
            Some(owner.clone()),
            "water",
            "payment_methods",
            json!({"id": "kcb", "name": "KCB", "account": "4000"}),
            StatusCode::BAD_REQUEST,
            "unknown_account",
        ),
        (
            Some(owner.clone()),
            "water",
            "payment_methods",
            json!({"id": "kcb", "name": "KCB", "account": "1100"}),
            StatusCode::BAD_REQUEST,
            "unknown_account",
        ),
        (
            Some(owner.clone()),
            "water",
            "payment_methods",
            json!({"id": "k/b", "name": "KCB", "account": "1000"}),
            StatusCode::BAD_REQUEST,
            "invalid_payment_method",
        ),
    ];
    for (token, scope, path, body, status, code) in cases {
        let got = send(token, scope, path, body.clone()).await;
        assert_eq!(got, (status, code.to_string()), "{scope}/{path} {body}");
    }
    assert_eq!(footprint(&app).await, before, "nothing was written");

    // A manager of the scope may add.
    let (status, code) = send(Some(manager), "retail", "accounts", account).await;
    assert_eq!((status, code.as_str()), (StatusCode::CREATED, ""));
}
