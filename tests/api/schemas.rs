//! Row schemas (protocol §9): a whole row that violates its collection's JSON Schema refuses the batch with 400
//! `schema_violation` and the failing path, writing nothing; an update whose merged row violates it is
//! recorded as rejected `schema_violation` and changes nothing; `GET /v1/collections` serves the schema.

use crate::common::*;
use dukasync::wire::OpStatus;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

fn put_product(seq: i64, key: &str, data: Value) -> Value {
    json!({"seq": seq, "id": Uuid::new_v4(), "type": "put", "collection": "products", "key": key, "data": data})
}

#[tokio::test]
async fn a_whole_row_against_the_schema_refuses_the_batch_and_writes_nothing() {
    let app = TestApp::start().await;
    let owner = Device::new(&app, OWNER, "owner-phone", "retail").await;
    let before = footprint(&app).await;
    let ops = [
        put_product(1, "s-ok", json!({"id": "s-ok", "name": "Soap", "price": "12.50"})),
        // A price with a decimal comma: money is a decimal string with a point (the file's pattern).
        put_product(2, "s-bad", json!({"id": "s-bad", "name": "Salt", "price": "12,5"})),
    ];
    let (status, body) = owner.push_error(&ops).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
    assert_eq!(body.error.code, "schema_violation");
    assert_eq!(
        body.error.details,
        Some(json!({"seq": 2, "index": 1, "path": "/price"}))
    );
    assert_eq!(footprint(&app).await, before, "nothing of the batch was written");

    // The same batch with a valid row applies: the schema is what refused it.
    let ops = [
        put_product(1, "s-ok", json!({"id": "s-ok", "name": "Soap", "price": "12.50"})),
        put_product(2, "s-bad", json!({"id": "s-bad", "name": "Salt", "price": "12.5"})),
    ];
    let done = owner.push(&ops).await;
    assert!(done.results.iter().all(|r| r.status == OpStatus::Applied), "{done:?}");
}

#[tokio::test]
async fn an_update_whose_merged_row_violates_is_rejected_and_changes_nothing() {
    let app = TestApp::start().await;
    let owner = Device::new(&app, OWNER, "owner-phone", "retail").await;
    owner
        .push(&[put_product(1, "u1", json!({"id": "u1", "name": "Soap", "price": "10"}))])
        .await;
    let head = app.head_version("retail").await;
    let update = json!({"seq": 2, "id": Uuid::new_v4(), "type": "update", "collection": "products", "key": "u1",
                        "mods": {"name": ""}});
    let fine = json!({"seq": 3, "id": Uuid::new_v4(), "type": "update", "collection": "products", "key": "u1",
                      "mods": {"price": "11"}});
    let done = owner.push(&[update, fine]).await;
    assert_eq!(done.results[0].status, OpStatus::Rejected, "{done:?}");
    assert_eq!(done.results[0].code.as_deref(), Some("schema_violation"));
    assert!(
        done.results[0].message.as_deref().unwrap_or("").contains("/name"),
        "{done:?}"
    );
    assert_eq!(done.results[1].status, OpStatus::Applied, "the queue goes on: {done:?}");
    assert_eq!(
        app.head_version("retail").await,
        head + 1,
        "only the valid update wrote"
    );
    let page = app.changes(&owner.token, "retail", &format!("since={head}")).await;
    assert_eq!(
        page.changes[0].data,
        Some(json!({"id": "u1", "name": "Soap", "price": "11"}))
    );
}

#[tokio::test]
async fn the_definitions_are_served_with_indexes_and_schema() {
    let app = TestApp::start().await;
    let token = app.token(OWNER, "owner-phone").await;
    let resp = app.get("/v1/collections", Some(&token)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    let list = body["collections"].as_array().unwrap();
    let products = list.iter().find(|c| c["name"] == "products").unwrap();
    assert_eq!(products["key"], "id");
    assert_eq!(products["indexes"], json!(["active", "name"]));
    assert_eq!(products["schema"]["properties"]["price"]["type"], "string");
    assert_eq!(products["rights"]["create"], json!(["owner", "manager"]));
    let sales = list.iter().find(|c| c["name"] == "sales").unwrap();
    assert_eq!(sales["writer"], "server");
    assert_eq!(sales["schema"], Value::Null);
}
