//! Reference snapshots over HTTP: canonical bytes, strong ETags per representation, 304s, isolation, errors.

use crate::common::*;
use dukasync::{reference::is_canonical, wire::ReferenceSnapshot};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn get(app: &TestApp, path: &str, token: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = app.http.get(app.url(path)).bearer_auth(token);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

fn header_of(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// The ETag, cache headers and body of the JSON snapshot, checked against the protocol.
async fn snapshot(app: &TestApp, token: &str, scope: &str, dataset: &str) -> (String, Vec<u8>) {
    let resp = get(app, &format!("/v1/scopes/{scope}/reference/{dataset}"), token, &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header_of(&resp, "content-type"), "application/json");
    assert_eq!(header_of(&resp, "cache-control"), "private, no-cache");
    assert_eq!(header_of(&resp, "vary"), "Accept, Accept-Encoding, Authorization");
    assert_eq!(header_of(&resp, "content-encoding"), "");
    let etag = header_of(&resp, "etag");
    let body = resp.bytes().await.unwrap().to_vec();
    assert!(is_canonical(&body), "{}", String::from_utf8_lossy(&body));
    let hash = blake3::hash(&body);
    assert_eq!(
        etag,
        format!("\"{}\"", &hash.to_hex()[..32]),
        "the ETag is the hash of the bytes"
    );
    (etag, body)
}

async fn etag_round_trip(overrides: &[(&str, &str)]) {
    let app = TestApp::start_with(overrides).await;
    let token = app.token(OWNER, "owner-phone").await;
    let (etag, body) = snapshot(&app, &token, "water", "products").await;
    let parsed: ReferenceSnapshot = serde_json::from_slice(&body).unwrap();
    assert_eq!(parsed.dataset, "products");
    assert_eq!(parsed.count, 5);
    let ids: Vec<&str> = parsed.rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "rows are ordered by id");
    // The checksum is the collection's, as `/checksum` reports it.
    let report: Value = app
        .get("/v1/scopes/water/checksum", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    let products = report["collections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["collection"] == "products")
        .unwrap();
    assert_eq!(u64::from(parsed.checksum), products["checksum"].as_u64().unwrap());

    // Same ETag: 304, no body, same validators.
    for _ in 0..2 {
        let resp = get(
            &app,
            "/v1/scopes/water/reference/products",
            &token,
            &[("if-none-match", &etag)],
        )
        .await;
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(header_of(&resp, "etag"), etag);
        assert_eq!(header_of(&resp, "cache-control"), "private, no-cache");
        assert!(resp.bytes().await.unwrap().is_empty());
    }
    // A list containing it, a weak form of it, and `*` also match; another tag does not.
    for inm in [format!("\"nope\", {etag}"), format!("W/{etag}"), "*".to_string()] {
        let resp = get(
            &app,
            "/v1/scopes/water/reference/products",
            &token,
            &[("if-none-match", &inm)],
        )
        .await;
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED, "{inm}");
    }
    let resp = get(
        &app,
        "/v1/scopes/water/reference/products",
        &token,
        &[("if-none-match", "\"nope\"")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);

    // A reference change: new ETag, 200 for the old one, and the new row is in the body.
    let new_product = json!({"id": "w-10l", "name": "Bottled water 10 L", "price": "250.00", "unit": "bottle"});
    app.write("water", vec![upsert("products", "w-10l", new_product.clone())])
        .await;
    let resp = get(
        &app,
        "/v1/scopes/water/reference/products",
        &token,
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let (new_etag, new_body) = snapshot(&app, &token, "water", "products").await;
    assert_ne!(new_etag, etag);
    let parsed: ReferenceSnapshot = serde_json::from_slice(&new_body).unwrap();
    assert!(parsed.rows.contains(&new_product));
    assert_eq!(parsed.count, 6);
    // A change elsewhere in the scope (a customer) does not change the products ETag.
    app.write(
        "water",
        vec![upsert("customers", "c-9", json!({"id": "c-9", "name": "C"}))],
    )
    .await;
    let resp = get(
        &app,
        "/v1/scopes/water/reference/products",
        &token,
        &[("if-none-match", &new_etag)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);

    // Another scope's ETag never matches, even for the same dataset.
    let (laundry_etag, _) = snapshot(&app, &token, "laundry", "products").await;
    assert_ne!(laundry_etag, new_etag);
    let resp = get(
        &app,
        "/v1/scopes/laundry/reference/products",
        &token,
        &[("if-none-match", &new_etag)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn etag_then_304_then_a_new_etag_after_a_change_with_the_in_process_cache() {
    etag_round_trip(&[]).await;
}

#[tokio::test]
async fn etag_then_304_then_a_new_etag_after_a_change_without_any_cache() {
    etag_round_trip(&[("DUKASYNC_CACHE_MEMORY_BYTES", "0")]).await;
}

#[tokio::test]
async fn etag_then_304_then_a_new_etag_after_a_change_with_redis_only() {
    let redis = RedisProcess::start();
    etag_round_trip(&[
        ("DUKASYNC_CACHE_MEMORY_BYTES", "0"),
        ("DUKASYNC_REDIS_URL", &redis.url()),
    ])
    .await;
}

#[tokio::test]
async fn every_representation_has_its_own_strong_etag_and_the_same_content() {
    let app = TestApp::start().await;
    let token = app.token(OWNER, "owner-phone").await;
    let path = "/v1/scopes/retail/reference/accounts";
    let (etag, identity) = snapshot(&app, &token, "retail", "accounts").await;
    let base = etag.trim_matches('"').to_string();
    let mut seen = vec![etag.clone()];
    for (accept_encoding, coding) in [
        ("gzip", "gzip"),
        ("br", "br"),
        ("zstd", "zstd"),
        ("gzip, deflate, br, zstd", "br"),
        ("br;q=0.1, gzip;q=0.9", "gzip"),
    ] {
        let resp = get(&app, path, &token, &[("accept-encoding", accept_encoding)]).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header_of(&resp, "content-encoding"), coding, "{accept_encoding}");
        let tag = header_of(&resp, "etag");
        assert_eq!(tag, format!("\"{base}.{coding}\""));
        let body = resp.bytes().await.unwrap();
        assert_eq!(decode(coding, &body), identity, "{accept_encoding}");
        // The client's decoded copy is the same whatever coding carried it: its tag revalidates.
        let resp = get(&app, path, &token, &[("if-none-match", &tag)]).await;
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(
            header_of(&resp, "etag"),
            etag,
            "the 304 names the representation it would send"
        );
        seen.push(tag);
    }
    // MessagePack: another representation, another ETag; JSON's ETag does not validate it.
    let resp = get(
        &app,
        path,
        &token,
        &[("accept", "application/msgpack"), ("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(header_of(&resp, "content-type"), "application/msgpack");
    let msgpack_tag = header_of(&resp, "etag");
    assert_eq!(msgpack_tag, format!("\"{base}.msgpack.gzip\""));
    let body = decode("gzip", &resp.bytes().await.unwrap());
    let decoded: Value = rmp_serde::from_slice(&body).unwrap();
    assert_eq!(decoded, serde_json::from_slice::<Value>(&identity).unwrap());
    let resp = get(
        &app,
        path,
        &token,
        &[("accept", "application/msgpack"), ("if-none-match", &etag)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = get(
        &app,
        path,
        &token,
        &[("accept", "application/msgpack"), ("if-none-match", &msgpack_tag)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header_of(&resp, "etag"), format!("\"{base}.msgpack\""));
    seen.push(msgpack_tag);
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen.len(),
        5,
        "identity, gzip, br, zstd and msgpack.gzip are all distinct"
    );
}

#[tokio::test]
async fn only_reference_datasets_of_visible_scopes_are_served() {
    let app = TestApp::start().await;
    let cashier = app.token(WATER_CASHIER, "water-counter").await;
    // Any role reads reference data.
    for dataset in ["products", "price_lists", "payment_methods", "tax_rates", "accounts"] {
        let resp = get(&app, &format!("/v1/scopes/water/reference/{dataset}"), &cashier, &[]).await;
        assert_eq!(resp.status(), StatusCode::OK, "{dataset}");
    }
    for (path, status, code) in [
        ("/v1/scopes/water/reference/customers", 404, "dataset_not_found"),
        ("/v1/scopes/water/reference/nope", 404, "dataset_not_found"),
        ("/v1/scopes/retail/reference/products", 404, "scope_not_found"),
        ("/v1/scopes/nope/reference/products", 404, "scope_not_found"),
    ] {
        let resp = get(&app, path, &cashier, &[]).await;
        assert_eq!(resp.status().as_u16(), status, "{path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{path}");
    }
    let resp = app.get("/v1/scopes/water/reference/products", None).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // The same 404 body for a scope that exists but is not visible and one that does not exist.
    let hidden = get(&app, "/v1/scopes/retail/reference/products", &cashier, &[])
        .await
        .bytes()
        .await
        .unwrap();
    let missing = get(&app, "/v1/scopes/nope/reference/products", &cashier, &[])
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(hidden, missing);
    // A dataset that never had a row is an empty, still canonical, snapshot.
    dukasync::store::accounts::ensure_scope(&app.db, &dukasync::domain::ScopeId::parse("empty").unwrap(), "Empty")
        .await
        .unwrap();
    let user = dukasync::store::accounts::user_by_email(&app.db, OWNER)
        .await
        .unwrap()
        .unwrap();
    dukasync::store::accounts::set_role(
        &app.db,
        user,
        &dukasync::domain::ScopeId::parse("empty").unwrap(),
        dukasync::domain::Role::Owner,
    )
    .await
    .unwrap();
    let owner = app.token(OWNER, "owner-phone").await;
    let (_, body) = snapshot(&app, &owner, "empty", "tax_rates").await;
    assert_eq!(
        body,
        br#"{"checksum":0,"count":0,"dataset":"tax_rates","rows":[],"scope":"empty","version":0}"#
    );
}
