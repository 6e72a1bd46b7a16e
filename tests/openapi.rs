//! The OpenAPI description covers every route, and every described route exists.
//!
//! Routes are only ever mounted through `OpenApiRouter::routes(routes!(...))`, which documents them as it mounts
//! them. This test fails when a route is mounted any other way (the source scan), when a handler carries a
//! description but is not mounted (the count), or when a described route does not answer (the probe).

mod common;

use common::*;
use serde_json::Value;

fn http_sources() -> Vec<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/http");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            out.push((path.display().to_string(), std::fs::read_to_string(&path).unwrap()));
        }
    }
    out
}

fn described_operations(doc: &Value) -> Vec<(String, String)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                ops.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

#[test]
fn no_route_is_mounted_outside_the_documented_router() {
    for (file, text) in http_sources() {
        for forbidden in [".route(", ".route_service(", ".nest(", ".nest_service(", ".merge("] {
            assert!(
                !text.contains(forbidden),
                "{file} mounts a route with `{forbidden}`, which bypasses the OpenAPI description"
            );
        }
    }
}

#[test]
fn every_described_handler_is_mounted() {
    let described: usize = http_sources()
        .iter()
        .map(|(_, t)| t.matches("#[utoipa::path(").count())
        .sum();
    let doc = serde_json::to_value(dukasync::http::openapi()).unwrap();
    assert_eq!(
        described,
        described_operations(&doc).len(),
        "a handler has #[utoipa::path] but is not in routes!()"
    );
}

#[tokio::test]
async fn every_described_route_answers() {
    let app = TestApp::start().await;
    let token = app.token(OWNER, "owner-phone").await;
    let doc: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let ops = described_operations(&doc);
    assert!(ops.len() >= 9, "{ops:?}");
    for (method, path) in ops {
        let concrete = path.replace("{scope}", "water");
        let resp = app
            .http
            .request(method.parse().unwrap(), app.url(&concrete))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap();
        assert!(
            !body.contains("route_not_found") && !body.contains("method_not_allowed"),
            "{method} {path} is described but not routed: {status} {body}"
        );
    }
}
