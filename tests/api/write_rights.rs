//! Write rights per collection: every role against every device-writable collection, for create, update (by
//! `update` and by `put` of an existing row) and delete, in one table. A forbidden operation is `rejected` with
//! `forbidden_write` and a conflict record, changes nothing, lets the queue go on, and replays as `duplicate`.

use crate::common::*;
use dukasync::{
    domain::collections::{self, Writer},
    wire::{OpResult, OpStatus},
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// Who may do what, written out here rather than read from the server's table, so that the test fails when the
/// table changes: (collection, roles that may create, update, delete).
const EXPECTED: &[(&str, [&str; 3])] = &[
    ("products", ["owner manager", "owner manager", "owner manager"]),
    ("price_lists", ["owner manager", "owner manager", "owner manager"]),
    ("payment_methods", ["owner manager", "owner manager", "owner manager"]),
    ("tax_rates", ["owner manager", "owner manager", "owner manager"]),
    (
        "customers",
        [
            "owner manager cashier",
            "owner manager cashier",
            "owner manager cashier",
        ],
    ),
    (
        "laundry_orders",
        [
            "owner manager cashier",
            "owner manager cashier",
            "owner manager cashier",
        ],
    ),
];

/// The demo users of the `retail` scope, one per role.
const ROLES: &[(&str, &str)] = &[("owner", OWNER), ("manager", MANAGER), ("cashier", SHOP_CASHIER)];

/// The operations tried: name, index into EXPECTED's rights, whether the row exists first.
const KINDS: &[(&str, usize, bool)] = &[
    ("create", 0, false),
    ("update", 1, true),
    ("put", 1, true),
    ("delete", 2, true),
];

fn seeded(key: &str) -> Value {
    json!({"id": key, "name": "seeded"})
}

fn operation(kind: &str, seq: i64, collection: &str, key: &str, role: &str) -> Value {
    let id = Uuid::new_v4();
    let written = json!({"id": key, "name": format!("by {role}")});
    match kind {
        "create" | "put" => {
            json!({"seq": seq, "id": id, "type": kind, "collection": collection, "key": key, "data": written})
        }
        "update" => json!({"seq": seq, "id": id, "type": "update", "collection": collection, "key": key,
                           "mods": {"name": format!("by {role}")}}),
        _ => json!({"seq": seq, "id": id, "type": "delete", "collection": collection, "key": key}),
    }
}

/// One case of the table and what it should come to.
struct Case {
    collection: &'static str,
    role: &'static str,
    kind: &'static str,
    key: String,
    allowed: bool,
}

/// The scope's rows now, pulled through the feed from zero.
async fn rows(app: &TestApp, token: &str) -> HashMap<(String, String), Value> {
    let mut copy = HashMap::new();
    let mut cursor = "0".to_string();
    loop {
        let page = app
            .changes(token, "retail", &format!("since={cursor}&limit=1000"))
            .await;
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

#[tokio::test]
async fn every_role_against_every_device_collection_and_write_kind() {
    let app = TestApp::start().await;
    let device_collections: HashSet<&str> = collections::all()
        .iter()
        .filter(|c| c.writer == Writer::Device)
        .map(|c| c.name)
        .collect();
    let tabled: HashSet<&str> = EXPECTED.iter().map(|(c, _)| *c).collect();
    assert_eq!(tabled, device_collections, "the table names every device collection");

    // Every case gets its own key; rows that updates and deletes work on are written first, by the server.
    let mut cases = Vec::new();
    let mut seeds = Vec::new();
    for (collection, rights) in EXPECTED {
        for (role, _) in ROLES {
            for (kind, right, exists) in KINDS {
                let key = format!("{role}-{kind}");
                if *exists {
                    seeds.push(upsert(collection, &key, seeded(&key)));
                }
                let allowed = rights[*right].split(' ').any(|r| r == *role);
                cases.push(Case {
                    collection,
                    role,
                    kind,
                    key,
                    allowed,
                });
            }
        }
    }
    app.write("retail", seeds).await;

    // Each role pushes its cases as one outbox, in order: forbidden ones must not stop those after them.
    let mut results: HashMap<(&str, &str, &str), OpResult> = HashMap::new();
    let mut devices = Vec::new();
    for (role, email) in ROLES {
        let device = Device::new(&app, email, &format!("{role}-phone"), "retail").await;
        let mine: Vec<&Case> = cases.iter().filter(|c| c.role == *role).collect();
        let ops: Vec<Value> = mine
            .iter()
            .enumerate()
            .map(|(i, c)| operation(c.kind, i as i64 + 1, c.collection, &c.key, role))
            .collect();
        let answer = device.push(&ops).await;
        assert_eq!(
            answer.last_seq,
            ops.len() as i64,
            "{role}: the queue moved past every operation"
        );
        for (case, result) in mine.iter().zip(answer.results) {
            results.insert((case.collection, case.role, case.kind), result);
        }
        devices.push((device, ops));
    }

    let owner_token = app.token(OWNER, "owner-reader").await;
    let now = rows(&app, &owner_token).await;
    let mut forbidden = HashSet::new();
    for case in &cases {
        let what = format!("{} {} {}", case.role, case.kind, case.collection);
        let result = &results[&(case.collection, case.role, case.kind)];
        let row = now.get(&(case.collection.to_string(), case.key.clone()));
        if case.allowed {
            assert_eq!(result.status, OpStatus::Applied, "{what}: {result:?}");
            assert!(!result.versions.is_empty(), "{what}: applied and written");
            let expected =
                (case.kind != "delete").then(|| json!({"id": case.key, "name": format!("by {}", case.role)}));
            assert_eq!(row, expected.as_ref(), "{what}: the row is the one written");
        } else {
            assert_eq!(result.status, OpStatus::Rejected, "{what}: {result:?}");
            assert_eq!(result.code.as_deref(), Some("forbidden_write"), "{what}");
            assert!(result.versions.is_empty(), "{what}");
            forbidden.insert(result.conflict_id.expect("a rejection is recorded"));
            let unchanged = (case.kind != "create").then(|| seeded(&case.key));
            assert_eq!(row, unchanged.as_ref(), "{what}: the row did not change");
        }
    }
    // Cashiers are refused prices, products, tax rates and payment methods: 4 collections × 4 operations.
    assert_eq!(forbidden.len(), 16);

    // The owner sees every refusal among the scope's conflicts.
    let listed: Value = app
        .get(
            "/v1/admin/conflicts?scope=retail&kind=rejected_operation&limit=200",
            Some(&owner_token),
        )
        .await
        .json()
        .await
        .unwrap();
    let listed: HashSet<Uuid> = listed["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(listed, forbidden);

    // A replay answers duplicate with the original status, and still changes nothing.
    let head = app.head_version("retail").await;
    for (device, ops) in &devices {
        let again = device.push(ops).await;
        for (result, op) in again.results.iter().zip(ops) {
            assert_eq!(result.status, OpStatus::Duplicate, "{op}");
            let first = results
                .values()
                .find(|r| r.id == result.id)
                .expect("the same operation");
            assert_eq!(result.original, Some(first.status));
            assert_eq!(result.code, first.code);
        }
    }
    assert_eq!(app.head_version("retail").await, head, "a replay writes nothing");
}

#[tokio::test]
async fn the_collections_endpoint_serves_the_rights() {
    let app = TestApp::start().await;
    let token = app.token(SHOP_CASHIER, "shop-till").await;
    let resp = app.get("/v1/collections", Some(&token)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    let find = |name: &str| {
        body["collections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()["rights"]
            .clone()
    };
    assert_eq!(
        find("products"),
        json!({"create": ["owner", "manager"], "update": ["owner", "manager"], "delete": ["owner", "manager"]})
    );
    assert_eq!(find("customers")["delete"], json!(["owner", "manager", "cashier"]));
    assert_eq!(find("sales"), json!({"create": [], "update": [], "delete": []}));
}
