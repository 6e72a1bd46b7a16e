//! The conflicts admin API through HTTP and the CLI: listing, inspecting and resolving what sync could not
//! decide, with resolutions delivered to devices through the feed.

use crate::common::*;
use dukasync::{domain::canonical, wire::OpStatus};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::HashMap;
use uuid::Uuid;

async fn get(app: &TestApp, path: &str, token: Option<&str>) -> (StatusCode, Value) {
    let resp = app.get(path, token).await;
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

async fn post(app: &TestApp, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
    let mut req = app.http.post(app.url(path)).json(&body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

async fn resolve(app: &TestApp, token: &str, id: &str, body: Value) -> (StatusCode, Value) {
    post(app, &format!("/v1/admin/conflicts/{id}/resolve"), Some(token), body).await
}

fn op(seq: i64, body: Value) -> Value {
    let mut op = json!({"seq": seq, "id": Uuid::new_v4()});
    op.as_object_mut().unwrap().extend(body.as_object().unwrap().clone());
    op
}

/// A device's local copy of a scope: every change folded in, pulled page by page from zero.
async fn pull_copy(app: &TestApp, token: &str, scope: &str) -> HashMap<(String, String), Value> {
    let mut copy = HashMap::new();
    let mut cursor = "0".to_string();
    loop {
        let page = app.changes(token, scope, &format!("since={cursor}&limit=100")).await;
        for c in page.changes {
            match c.data {
                Some(data) => copy.insert((c.collection, c.key), data),
                None => copy.remove(&(c.collection, c.key)),
            };
        }
        cursor = page.cursor;
        if !page.has_more {
            return copy;
        }
    }
}

/// The copy's checksum and count, computed as the protocol says (§8), compared with the server's.
async fn assert_converged(app: &TestApp, token: &str, scope: &str, copy: &HashMap<(String, String), Value>) {
    let sum = copy
        .iter()
        .fold(0u32, |s, ((c, k), d)| s.wrapping_add(canonical::row_hash(c, k, d)));
    let (status, report) = get(app, &format!("/v1/scopes/{scope}/checksum"), Some(token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (u64::from(sum), copy.len() as u64),
        (report["checksum"].as_u64().unwrap(), report["count"].as_u64().unwrap())
    );
}

/// Two water devices edit customer `key` offline from the same base: the owner renames, the cashier renames and
/// adds a phone. The cashier's replay records a field conflict on `name` (customers: the client wins).
async fn offline_customer_edits<'a>(app: &'a TestApp, key: &str) -> (Device<'a>, Device<'a>, String) {
    let owner = Device::new(app, OWNER, "owner-phone", "water").await;
    let cashier = Device::new(app, WATER_CASHIER, "water-counter", "water").await;
    let created = owner
        .push(&[op(
            1,
            json!({"type": "put", "collection": "customers", "key": key,
                   "data": {"id": key, "name": "Wanjiru", "credit_limit": "500.00"}}),
        )])
        .await;
    let base = created.results[0].versions[0];
    owner
        .push(&[op(
            2,
            json!({"type": "update", "collection": "customers", "key": key,
                   "mods": {"name": "Wanjiru K"}, "base_version": base}),
        )])
        .await;
    let r = cashier
        .push(&[op(
            1,
            json!({"type": "update", "collection": "customers", "key": key,
                   "mods": {"name": "Wanjiru Kamau", "phone": "0722000111"}, "base_version": base}),
        )])
        .await;
    let id = r.results[0].conflict_id.expect("a conflict is recorded").to_string();
    (owner, cashier, id)
}

#[tokio::test]
async fn two_devices_conflict_and_converge_on_the_resolution_through_the_feed() {
    let app = TestApp::start().await;
    let (owner, cashier, id) = offline_customer_edits(&app, "cu-77").await;

    let (status, list) = get(&app, "/v1/admin/conflicts?scope=water&status=open", Some(&owner.token)).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let listed = &list["conflicts"][0];
    assert_eq!(
        (listed["id"].as_str(), listed["kind"].as_str(), listed["key"].as_str()),
        (Some(id.as_str()), Some("field_conflict"), Some("cu-77"))
    );
    assert_eq!(listed["fields"], json!(["name"]));

    let (status, detail) = get(&app, &format!("/v1/admin/conflicts/{id}"), Some(&owner.token)).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(
        detail["diff"],
        json!([
            {"path": "name", "base": "Wanjiru", "server": "Wanjiru K", "client": "Wanjiru Kamau"},
            {"path": "phone", "base": null, "server": null, "client": "0722000111"}
        ])
    );
    assert_eq!(detail["operation"]["device"]["name"], "water-counter");
    assert_eq!(detail["operation"]["user"]["email"], WATER_CASHIER);
    assert_eq!(detail["operation"]["seq"], 1);
    assert_eq!(detail["detail"]["policy"], "client_wins");
    assert_eq!(detail["current"]["data"]["name"], "Wanjiru Kamau", "the policy applied");
    assert_eq!(detail["current"]["version"], detail["row_version"]);
    assert!(detail.get("resolution").is_none());

    let (status, resolved) = resolve(
        &app,
        &owner.token,
        &id,
        json!({"decision": "keep_server", "note": "the owner spoke to her"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{resolved}");
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(
        resolved["current"]["data"],
        json!({"id": "cu-77", "name": "Wanjiru K", "phone": "0722000111", "credit_limit": "500.00"}),
        "only the conflicting field takes the server's value"
    );
    let record = &resolved["resolution"]["record"];
    assert_eq!(
        (record["decision"].as_str(), record["note"].as_str()),
        (Some("keep_server"), Some("the owner spoke to her"))
    );
    assert_eq!(
        record["versions"].as_array().unwrap().len(),
        2,
        "the row and the conflict"
    );
    let owner_id: Uuid = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(OWNER)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(resolved["resolution"]["resolved_by"], json!(owner_id));

    // Both devices pull the resolution and hold exactly the server's state.
    for device in [&owner, &cashier] {
        let copy = pull_copy(&app, &device.token, "water").await;
        assert_eq!(copy[&("customers".into(), "cu-77".into())]["name"], "Wanjiru K");
        let note = &copy[&("conflicts".into(), id.clone())];
        assert_eq!(
            (note["status"].as_str(), note["decision"].as_str(), note["key"].as_str()),
            (Some("resolved"), Some("keep_server"), Some("cu-77"))
        );
        assert_converged(&app, &device.token, "water", &copy).await;
    }
    let (_, open) = get(&app, "/v1/admin/conflicts?scope=water&status=open", Some(&owner.token)).await;
    assert_eq!(open["conflicts"], json!([]));
}

/// The stored product `key` and how many conflicts its row has.
async fn product_and_conflicts(app: &TestApp, key: &str) -> (Value, i64) {
    let data: Value = sqlx::query_scalar(
        "SELECT data FROM records WHERE scope_id = 'retail' AND collection = 'products' AND key = $1",
    )
    .bind(key)
    .fetch_one(&app.db)
    .await
    .unwrap();
    let conflicts: i64 = sqlx::query_scalar("SELECT count(*) FROM conflicts WHERE scope_id = 'retail' AND key = $1")
        .bind(key)
        .fetch_one(&app.db)
        .await
        .unwrap();
    (data, conflicts)
}

#[tokio::test]
async fn a_device_never_conflicts_with_its_own_earlier_edits() {
    let app = TestApp::start().await;
    let phone = Device::new(&app, OWNER, "owner-phone", "retail").await;
    let other = Device::new(&app, MANAGER, "manager-phone", "retail").await;
    let price = |seq, price: &str, base| {
        op(
            seq,
            json!({"type": "update", "collection": "products", "key": "p-own",
                   "mods": {"price": price}, "base_version": base}),
        )
    };
    let created = phone
        .push(&[op(
            1,
            json!({"type": "put", "collection": "products", "key": "p-own",
                   "data": {"id": "p-own", "name": "Jar 20l", "price": "1.00"}}),
        )])
        .await;
    let base = created.results[0].versions[0];

    // Two edits made offline against the same base, sent in one push: the second is the device's latest word.
    let r = phone.push(&[price(2, "2.00", base), price(3, "3.00", base)]).await;
    let statuses: Vec<_> = r.results.iter().map(|r| (r.status, r.conflict_id)).collect();
    assert_eq!(statuses, [(OpStatus::Applied, None), (OpStatus::Applied, None)]);
    assert_eq!(
        product_and_conflicts(&app, "p-own").await,
        (json!({"id": "p-own", "name": "Jar 20l", "price": "3.00"}), 0)
    );

    // The same in two pushes (the first one's answer was lost, so the base stayed), and a whole-row put.
    phone.push(&[price(4, "4.00", base)]).await;
    let r = phone
        .push(&[op(
            5,
            json!({"type": "put", "collection": "products", "key": "p-own", "base_version": base,
                   "data": {"id": "p-own", "name": "Jar 20 l", "price": "5.00"}}),
        )])
        .await;
    assert_eq!(
        (r.results[0].status, r.results[0].conflict_id),
        (OpStatus::Applied, None)
    );
    assert_eq!(
        product_and_conflicts(&app, "p-own").await,
        (json!({"id": "p-own", "name": "Jar 20 l", "price": "5.00"}), 0)
    );

    // Another device renames it: the phone's next price, still on its old base, touches another field.
    let renamed = other
        .push(&[op(
            1,
            json!({"type": "update", "collection": "products", "key": "p-own", "mods": {"name": "Jar"}, "base_version": base + 4}),
        )])
        .await;
    assert_eq!(renamed.results[0].status, OpStatus::Applied);
    let r = phone.push(&[price(6, "6.00", base)]).await;
    assert_eq!(
        (r.results[0].status, r.results[0].conflict_id),
        (OpStatus::Applied, None)
    );
    let latest = r.results[0].versions[0];
    assert_eq!(
        product_and_conflicts(&app, "p-own").await,
        (json!({"id": "p-own", "name": "Jar", "price": "6.00"}), 0)
    );

    // But another device's change of the same field after the phone's own edit is still a conflict
    // (products: the server wins).
    other
        .push(&[op(
            2,
            json!({"type": "update", "collection": "products", "key": "p-own", "mods": {"price": "7.00"}, "base_version": latest}),
        )])
        .await;
    let r = phone.push(&[price(7, "8.00", base)]).await;
    assert_eq!(r.results[0].status, OpStatus::Conflict);
    let (data, conflicts) = product_and_conflicts(&app, "p-own").await;
    assert_eq!((data["price"].as_str(), conflicts), (Some("7.00"), 1));
    let (_, detail) = get(
        &app,
        &format!("/v1/admin/conflicts/{}", r.results[0].conflict_id.unwrap()),
        Some(&phone.token),
    )
    .await;
    assert_eq!(
        detail["diff"][0],
        json!({"path": "price", "base": "6.00", "server": "7.00", "client": "8.00"}),
        "the base is the row as the phone saw it: its own edits included"
    );
}

#[tokio::test]
async fn take_client_and_merge_write_the_chosen_values() {
    let app = TestApp::start().await;
    let (owner, _, id) = offline_customer_edits(&app, "cu-1").await;
    // customers: the client already won, so take_client changes no row; only the conflict row is appended.
    let before = app.head_version("water").await;
    let (status, body) = resolve(&app, &owner.token, &id, json!({"decision": "take_client"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["current"]["data"]["name"], "Wanjiru Kamau");
    assert_eq!(app.head_version("water").await, before + 1);

    let (_, _, id) = offline_customer_edits(&app, "cu-2").await;
    let (status, body) = resolve(
        &app,
        &owner.token,
        &id,
        json!({"decision": "merge", "value": {"name": "Wanjiru Kamau K."}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["current"]["data"]["name"], "Wanjiru Kamau K.");
    assert_eq!(body["current"]["data"]["phone"], "0722000111");

    // Bad values are refused and nothing is written.
    let (_, _, id) = offline_customer_edits(&app, "cu-3").await;
    let before = footprint(&app).await;
    for (body, code) in [
        (json!({"decision": "merge", "value": {"phone": "1"}}), "invalid_value"),
        (json!({"decision": "merge"}), "invalid_value"),
        (
            json!({"decision": "merge", "value": {"name": 1.5}}),
            "float_not_allowed",
        ),
        (
            json!({"decision": "merge", "value": {"id": "other", "name": "x"}}),
            "invalid_value",
        ),
        (
            json!({"decision": "keep_server", "value": {"name": "x"}}),
            "invalid_value",
        ),
        (json!({"decision": "accept"}), "invalid_decision"),
        (json!({"decision": "shrug"}), "malformed_body"),
        (json!({"decision": "keep_server", "extra": 1}), "unknown_field"),
        (
            json!({"decision": "keep_server", "note": "x".repeat(1001)}),
            "invalid_note",
        ),
        // PostgreSQL cannot store U+0000 (issue 18): a 400, never a 500.
        (
            json!({"decision": "merge", "value": {"name": "a\u{0}b"}}),
            "nul_not_allowed",
        ),
        (
            json!({"decision": "keep_server", "note": "checked\u{0}"}),
            "invalid_note",
        ),
    ] {
        let (status, err) = resolve(&app, &owner.token, &id, body.clone()).await;
        assert_eq!(
            (status, err["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{body}: {err}"
        );
    }
    // A MessagePack NaN is a float, refused as one: read as `null`, it would have removed the field.
    let mut bytes = Vec::new();
    let body = json!({"decision": "merge", "value": {"name": 1.5}});
    serde::Serialize::serialize(&body, &mut rmp_serde::Serializer::new(&mut bytes).with_struct_map()).unwrap();
    let at = bytes
        .windows(9)
        .position(|w| w[0] == 0xcb && w[1..] == 1.5f64.to_be_bytes())
        .unwrap();
    bytes[at + 1..at + 9].copy_from_slice(&f64::NAN.to_be_bytes());
    let resp = app
        .http
        .post(app.url(&format!("/v1/admin/conflicts/{id}/resolve")))
        .bearer_auth(&owner.token)
        .header("content-type", "application/msgpack")
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let err: Value = resp.json().await.unwrap();
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("float_not_allowed")),
        "{err}"
    );
    assert_eq!(footprint(&app).await, before);
    let status: String = sqlx::query_scalar("SELECT status FROM conflicts WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(status, "open");
}

#[tokio::test]
async fn a_delete_against_an_edit_is_a_whole_row_conflict() {
    let app = TestApp::start().await;
    // laundry_orders: the server wins, so the stale delete is not applied and the whole row is in conflict.
    let owner = Device::new(&app, OWNER, "owner-phone", "laundry").await;
    let manager = Device::new(&app, MANAGER, "manager-phone", "laundry").await;
    let r = owner
        .push(&[op(
            1,
            json!({"type": "put", "collection": "laundry_orders", "key": "lo-9",
                   "data": {"id": "lo-9", "name": "Otieno", "kg": 4}}),
        )])
        .await;
    let base = r.results[0].versions[0];
    owner
        .push(&[op(
            2,
            json!({"type": "update", "collection": "laundry_orders", "key": "lo-9",
                   "mods": {"kg": 5}, "base_version": base}),
        )])
        .await;
    let r = manager
        .push(&[op(
            1,
            json!({"type": "delete", "collection": "laundry_orders", "key": "lo-9", "base_version": base}),
        )])
        .await;
    let id = r.results[0].conflict_id.unwrap().to_string();
    let (_, detail) = get(&app, &format!("/v1/admin/conflicts/{id}"), Some(&manager.token)).await;
    assert_eq!(detail["fields"], json!(["*"]));
    assert_eq!(detail["current"]["data"]["kg"], 5, "the delete waits for a decision");
    let (status, body) = resolve(&app, &manager.token, &id, json!({"decision": "take_client"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["current"].get("data").is_none(), "deleted");
    let copy = pull_copy(&app, &owner.token, "laundry").await;
    assert!(!copy.contains_key(&("laundry_orders".into(), "lo-9".into())));
    assert_converged(&app, &owner.token, "laundry", &copy).await;
}

#[tokio::test]
async fn resolving_twice_or_against_a_moved_row_is_409_with_the_current_state() {
    let app = TestApp::start().await;
    let (owner, cashier, id) = offline_customer_edits(&app, "cu-5").await;
    let (status, _) = resolve(&app, &owner.token, &id, json!({"decision": "keep_server"})).await;
    assert_eq!(status, StatusCode::OK);
    let before = footprint(&app).await;
    let (status, err) = resolve(&app, &owner.token, &id, json!({"decision": "take_client"})).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("already_resolved"))
    );
    let current = &err["error"]["details"]["conflict"];
    assert_eq!(current["status"], "resolved");
    assert_eq!(current["resolution"]["record"]["decision"], "keep_server");
    assert_eq!(footprint(&app).await, before, "nothing written");

    // The row moves on after the conflict: the decision was made against a state that is gone.
    let (_, _, id) = offline_customer_edits(&app, "cu-6").await;
    let r = cashier
        .push(&[op(
            2,
            json!({"type": "update", "collection": "customers", "key": "cu-6", "mods": {"phone": "0733"}}),
        )])
        .await;
    let moved_to = r.results[0].versions[0];
    let before = footprint(&app).await;
    let (status, err) = resolve(&app, &owner.token, &id, json!({"decision": "keep_server"})).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("row_moved_on"))
    );
    let current = &err["error"]["details"]["conflict"];
    assert_eq!(
        (current["status"].as_str(), current["current"]["version"].as_i64()),
        (Some("open"), Some(moved_to))
    );
    assert_eq!(current["current"]["data"]["phone"], "0733");
    assert_eq!(footprint(&app).await, before, "nothing written");
    // Deciding again against the state now succeeds and keeps the later edit.
    let (status, body) = resolve(
        &app,
        &owner.token,
        &id,
        json!({"decision": "keep_server", "expected_version": moved_to}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            body["current"]["data"]["name"].as_str(),
            body["current"]["data"]["phone"].as_str()
        ),
        (Some("Wanjiru K"), Some("0733"))
    );
}

/// Checked against the naive variant (deciding on the conflict as read before taking the locks): it resolves
/// twice and this test fails (3 of 3 runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_concurrent_resolutions_apply_once() {
    let app = TestApp::start().await;
    let (owner, _, id) = offline_customer_edits(&app, "cu-8").await;
    let laptop = app.token(OWNER, "owner-laptop").await;
    let before = app.head_version("water").await;
    let (a, b) = tokio::join!(
        resolve(&app, &owner.token, &id, json!({"decision": "keep_server"})),
        resolve(&app, &laptop, &id, json!({"decision": "take_client"})),
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT]);
    let loser = if a.0 == StatusCode::CONFLICT { &a.1 } else { &b.1 };
    assert_eq!(loser["error"]["code"], "already_resolved");
    // keep_server writes the row and the conflict (2), take_client only the conflict (1): never both.
    let winner = if a.0 == StatusCode::OK { &a.1 } else { &b.1 };
    let written = winner["resolution"]["record"]["versions"].as_array().unwrap().len() as i64;
    assert_eq!(app.head_version("water").await, before + written);
}

/// Sales in the retail shop: one oversells the gas and uses the old price.
async fn flagged_sale(app: &TestApp) -> Device<'_> {
    let shop = Device::new(app, SHOP_CASHIER, "shop-till", "retail").await;
    let sale = |seq: i64, key: &str, qty: &str, price: &str, amount: &str| {
        op(
            seq,
            json!({"type": "command", "command": "record_sale", "key": key,
                   "args": {"sold_at": "2026-11-25T09:30:00+03:00",
                            "lines": [{"product_id": "r-lpg-13kg-refill", "quantity": qty, "unit_price": price}],
                            "payments": [{"method": "cash", "amount": amount}]}}),
        )
    };
    shop.push(&[
        sale(1, "s-big", "97", "2900.00", "281300.00"),
        sale(2, "s-late", "5", "2800.00", "14000.00"),
    ])
    .await;
    shop
}

#[tokio::test]
async fn flagged_sales_are_listed_applied_and_balanced_and_accepting_records_the_review() {
    let app = TestApp::start().await;
    flagged_sale(&app).await;
    let manager = app.token(MANAGER, "manager-phone").await;
    let mut ids = Vec::new();
    for kind in ["oversold_stock", "stale_price"] {
        let (status, list) = get(&app, &format!("/v1/admin/conflicts?kind={kind}"), Some(&manager)).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        let conflicts = list["conflicts"].as_array().unwrap();
        assert_eq!(conflicts.len(), 1, "{kind}: {list}");
        assert_eq!(
            (conflicts[0]["collection"].as_str(), conflicts[0]["key"].as_str()),
            (Some("sales"), Some("s-late"))
        );
        ids.push(conflicts[0]["id"].as_str().unwrap().to_string());
    }
    let (_, detail) = get(&app, &format!("/v1/admin/conflicts/{}", ids[0]), Some(&manager)).await;
    assert_eq!(detail["current"]["data"]["id"], "s-late", "the sale is applied");
    assert_eq!(detail["detail"]["products"][0]["stock_after"], "-2");
    assert_eq!(detail["current"]["version"], detail["row_version"]);
    assert_eq!(detail["diff"], json!([]));
    let unbalanced: i64 = sqlx::query_scalar(
        r#"SELECT count(*) FROM (SELECT entry_id FROM journal_lines GROUP BY scope_id, entry_id
             HAVING sum(debit) <> sum(credit)) x"#,
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(unbalanced, 0);

    let sale_before = detail["current"].clone();
    let (status, err) = resolve(&app, &manager, &ids[0], json!({"decision": "keep_server"})).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_decision"))
    );
    for id in &ids {
        let (status, body) = resolve(
            &app,
            &manager,
            id,
            json!({"decision": "accept", "note": "counted the cylinders"}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "resolved");
        assert_eq!(body["resolution"]["record"]["decision"], "accept");
        assert_eq!(body["resolution"]["record"]["note"], "counted the cylinders");
        assert_eq!(body["current"], sale_before, "accepting changes no row");
    }
    let copy = pull_copy(&app, &manager, "retail").await;
    for id in &ids {
        assert_eq!(copy[&("conflicts".into(), id.clone())]["decision"], "accept");
    }
    assert_converged(&app, &manager, "retail", &copy).await;
}

#[tokio::test]
async fn every_route_answers_each_role_as_documented() {
    let app = TestApp::start().await;
    // A conflict in water (owner: owner; cashier: water cashier; the manager is not a member) and in retail
    // (owner, manager; cashier: shop cashier).
    let (_, _, water) = offline_customer_edits(&app, "cu-a").await;
    flagged_sale(&app).await;
    let (_, retail_list) = get(
        &app,
        "/v1/admin/conflicts?scope=retail",
        Some(&app.token(OWNER, "o").await),
    )
    .await;
    let retail = retail_list["conflicts"][0]["id"].as_str().unwrap().to_string();

    let owner = app.token(OWNER, "owner-phone").await;
    let manager = app.token(MANAGER, "manager-phone").await;
    let water_cashier = app.token(WATER_CASHIER, "w").await;
    let shop_cashier = app.token(SHOP_CASHIER, "s").await;
    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or("").to_string();

    // No token: 401 everywhere.
    for path in [
        "/v1/admin/conflicts".to_string(),
        format!("/v1/admin/conflicts/{water}"),
    ] {
        assert_eq!(get(&app, &path, None).await.0, StatusCode::UNAUTHORIZED, "{path}");
    }
    let (status, _) = post(
        &app,
        &format!("/v1/admin/conflicts/{water}/resolve"),
        None,
        json!({"decision": "keep_server"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Lists.
    let (status, body) = get(&app, "/v1/admin/conflicts", Some(&owner)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["conflicts"].as_array().unwrap().len(), 3, "water and retail");
    let (status, body) = get(&app, "/v1/admin/conflicts", Some(&manager)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["scope"] == "retail"));
    assert_eq!(body["conflicts"].as_array().unwrap().len(), 2);
    for (token, path, want, want_code) in [
        (
            &manager,
            "/v1/admin/conflicts?scope=water",
            StatusCode::NOT_FOUND,
            "scope_not_found",
        ),
        (
            &manager,
            "/v1/admin/conflicts?scope=nope",
            StatusCode::NOT_FOUND,
            "scope_not_found",
        ),
        (
            &water_cashier,
            "/v1/admin/conflicts",
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            &water_cashier,
            "/v1/admin/conflicts?scope=water",
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            &shop_cashier,
            "/v1/admin/conflicts?scope=retail",
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            &shop_cashier,
            "/v1/admin/conflicts?scope=water",
            StatusCode::NOT_FOUND,
            "scope_not_found",
        ),
    ] {
        let (status, body) = get(&app, path, Some(token)).await;
        assert_eq!((status, code(&body).as_str()), (want, want_code), "{path}");
    }

    // Show and resolve: another scope's conflict is 404 like an unknown one; a cashier is 403.
    let before = footprint(&app).await;
    for (token, id, want, want_code) in [
        (&manager, water.as_str(), StatusCode::NOT_FOUND, "conflict_not_found"),
        (
            &shop_cashier,
            water.as_str(),
            StatusCode::NOT_FOUND,
            "conflict_not_found",
        ),
        (&water_cashier, water.as_str(), StatusCode::FORBIDDEN, "forbidden"),
        (&shop_cashier, retail.as_str(), StatusCode::FORBIDDEN, "forbidden"),
        (
            &owner,
            &Uuid::new_v4().to_string(),
            StatusCode::NOT_FOUND,
            "conflict_not_found",
        ),
        (&owner, "not-a-uuid", StatusCode::NOT_FOUND, "conflict_not_found"),
    ] {
        let (status, body) = get(&app, &format!("/v1/admin/conflicts/{id}"), Some(token)).await;
        assert_eq!((status, code(&body).as_str()), (want, want_code), "show {id}");
        let (status, body) = resolve(&app, token, id, json!({"decision": "accept"})).await;
        assert_eq!((status, code(&body).as_str()), (want, want_code), "resolve {id}");
    }
    assert_eq!(footprint(&app).await, before, "nothing written by refused calls");

    // Owner and manager may show and resolve.
    let (status, _) = get(&app, &format!("/v1/admin/conflicts/{water}"), Some(&owner)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = get(&app, &format!("/v1/admin/conflicts/{retail}"), Some(&manager)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = resolve(&app, &manager, &retail, json!({"decision": "accept"})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = resolve(&app, &owner, &water, json!({"decision": "keep_server"})).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn filters_and_pages_walk_every_conflict_once_newest_first() {
    let app = TestApp::start().await;
    let owner = app.token(OWNER, "owner-phone").await;
    // Five rejections in one batch (equal created_at: ties are broken by id), then a field conflict.
    let counter = Device::new(&app, WATER_CASHIER, "water-counter", "water").await;
    let ops: Vec<Value> = (1..=5)
        .map(|i| {
            op(
                i,
                json!({"type": "update", "collection": "customers", "key": format!("ghost-{i}"),
                       "mods": {"name": "x"}}),
            )
        })
        .collect();
    counter.push(&ops).await;
    let (_, _, field) = offline_customer_edits(&app, "cu-f").await;

    let mut seen: Vec<Value> = Vec::new();
    let mut path = "/v1/admin/conflicts?scope=water&limit=2".to_string();
    let mut pages = 0;
    loop {
        let (status, page) = get(&app, &path, Some(&owner)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        let conflicts = page["conflicts"].as_array().unwrap();
        assert!(conflicts.len() <= 2);
        seen.extend(conflicts.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/admin/conflicts?scope=water&limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(
        (seen.len(), pages),
        (6, 3),
        "a last page exactly the limit has no next_cursor"
    );
    assert_eq!(seen[0]["id"], json!(field), "newest first");
    let keys: Vec<(String, String)> = seen
        .iter()
        .map(|c| {
            (
                c["created_at"].as_str().unwrap().to_string(),
                c["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(keys.len(), sorted.len(), "no conflict twice");

    let count = |q: &'static str| {
        let app = &app;
        let owner = &owner;
        async move {
            let (status, body) = get(app, &format!("/v1/admin/conflicts?{q}"), Some(owner)).await;
            assert_eq!(status, StatusCode::OK, "{q}: {body}");
            body["conflicts"].as_array().unwrap().len()
        }
    };
    assert_eq!(count("kind=rejected_operation").await, 5);
    assert_eq!(count("kind=field_conflict&collection=customers").await, 1);
    assert_eq!(count("collection=sales").await, 0);
    assert_eq!(count("status=resolved").await, 0);
    assert_eq!(count("since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z").await, 6);
    assert_eq!(count("until=2000-01-01T00:00:00Z").await, 0);
    assert_eq!(count("since=2999-01-01T00:00:00Z").await, 0);
    let device: Uuid = sqlx::query_scalar("SELECT device_id FROM conflicts WHERE id = $1::uuid")
        .bind(&field)
        .fetch_one(&app.db)
        .await
        .unwrap();
    let (_, body) = get(&app, &format!("/v1/admin/conflicts?device={device}"), Some(&owner)).await;
    assert_eq!(body["conflicts"].as_array().unwrap().len(), 6, "all from the counter");
    let (_, body) = get(
        &app,
        &format!("/v1/admin/conflicts?device={}", Uuid::new_v4()),
        Some(&owner),
    )
    .await;
    assert_eq!(body["conflicts"], json!([]));
    resolve(&app, &owner, &field, json!({"decision": "take_client"})).await;
    assert_eq!(count("status=resolved").await, 1);
    assert_eq!(count("status=open").await, 5);

    for (q, want) in [
        ("status=closed", "invalid_query"),
        ("kind=weird", "invalid_query"),
        ("colour=red", "invalid_query"),
        ("since=yesterday", "invalid_query"),
        ("device=abc", "invalid_query"),
        ("limit=-1", "invalid_query"),
        ("cursor=junk", "invalid_cursor"),
        ("collection=nope", "unknown_collection"),
    ] {
        let (status, body) = get(&app, &format!("/v1/admin/conflicts?{q}"), Some(&owner)).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(want)),
            "{q}"
        );
    }
}

#[tokio::test]
async fn the_open_count_per_scope_is_a_metric() {
    let app = TestApp::start().await;
    app.wait_for_metric("dukasync_conflicts_open{scope=\"water\"}", 0.0)
        .await;
    let (owner, _, id) = offline_customer_edits(&app, "cu-m").await;
    app.wait_for_metric("dukasync_conflicts_open{scope=\"water\"}", 1.0)
        .await;
    app.wait_for_metric("dukasync_conflicts_open{scope=\"retail\"}", 0.0)
        .await;
    resolve(&app, &owner.token, &id, json!({"decision": "keep_server"})).await;
    app.wait_for_metric("dukasync_conflicts_open{scope=\"water\"}", 0.0)
        .await;
}

#[tokio::test]
async fn the_cli_lists_shows_and_resolves_like_the_api() {
    let app = TestApp::start().await;
    let (owner, _, id) = offline_customer_edits(&app, "cu-cli").await;

    let (ok, out, err) = cli(&app, &["conflicts", "list", "--scope", "water", "--status", "open"]);
    assert!(ok, "{err}");
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["conflicts"][0]["id"], json!(id));
    let (ok, out, _) = cli(&app, &["conflicts", "list", "--by", MANAGER]);
    assert!(ok);
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        list["conflicts"],
        json!([]),
        "the manager administers no water conflict"
    );

    let (ok, out, err) = cli(&app, &["conflicts", "show", &id]);
    assert!(ok, "{err}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    let (_, api) = get(&app, &format!("/v1/admin/conflicts/{id}"), Some(&owner.token)).await;
    assert_eq!(shown, api, "the same detail as the API");

    let before = footprint(&app).await;
    let (ok, _, err) = cli(
        &app,
        &[
            "conflicts",
            "resolve",
            &id,
            "--decision",
            "keep_server",
            "--by",
            WATER_CASHIER,
        ],
    );
    assert!(!ok);
    assert!(err.contains("forbidden"), "{err}");
    let (ok, _, err) = cli(
        &app,
        &["conflicts", "resolve", &id, "--decision", "accept", "--by", OWNER],
    );
    assert!(!ok);
    assert!(err.contains("invalid_decision"), "{err}");
    assert_eq!(footprint(&app).await, before);

    let (ok, out, err) = cli(
        &app,
        &[
            "conflicts",
            "resolve",
            &id,
            "--decision",
            "merge",
            "--value",
            r#"{"name": "Wanjiru (CLI)"}"#,
            "--note",
            "from the shell",
            "--by",
            OWNER,
        ],
    );
    assert!(ok, "{err}");
    let resolved: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(resolved["current"]["data"]["name"], "Wanjiru (CLI)");
    assert_eq!(resolved["resolution"]["record"]["note"], "from the shell");
    let copy = pull_copy(&app, &owner.token, "water").await;
    assert_eq!(copy[&("customers".into(), "cu-cli".into())]["name"], "Wanjiru (CLI)");
    let (ok, _, err) = cli(
        &app,
        &["conflicts", "resolve", &id, "--decision", "keep_server", "--by", OWNER],
    );
    assert!(!ok);
    assert!(err.contains("already_resolved"), "{err}");
}
