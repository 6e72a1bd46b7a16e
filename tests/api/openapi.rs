//! The OpenAPI description covers every route, and every described route exists.
//!
//! Routes are only ever mounted through `OpenApiRouter::routes(routes!(...))`, which documents them as it mounts
//! them. This test fails when a route is mounted any other way (the source scan), when a handler carries a
//! description but is not mounted (the count), or when a described route does not answer (the probe).

use crate::common::*;
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

fn doc() -> Value {
    serde_json::to_value(dukasync::http::openapi()).unwrap()
}

/// `$ref`s to component schemas, followed.
fn schema<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(r) => &doc["components"]["schemas"][r.trim_start_matches("#/components/schemas/")],
        None => value,
    }
}

#[test]
fn every_v1_route_declares_the_answers_any_request_may_get() {
    let doc = doc();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/v1/") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            // Every /v1 route needs a token (the document's global security), so every one may answer 401;
            // the layers in front of every route may answer 408 and 503.
            for status in ["401", "408", "503"] {
                let response = responses
                    .get(status)
                    .unwrap_or_else(|| panic!("{method} {path} does not declare {status}"));
                assert!(
                    response["content"]["application/json"]["schema"]["$ref"]
                        .as_str()
                        .is_some_and(|r| r.ends_with("/ErrorBody")),
                    "{method} {path} {status}: {response}"
                );
            }
            let five = responses["503"]["description"].as_str().unwrap();
            assert!(five.contains("unavailable") && five.contains("overloaded"), "{five}");
            assert!(responses["408"]["description"].as_str().unwrap().contains("timeout"));
            for param in op["parameters"].as_array().into_iter().flatten() {
                if param["name"] == "scope" && param["in"] == "path" {
                    assert_eq!(
                        param["schema"]["pattern"], "^[a-z0-9][a-z0-9-]{0,39}$",
                        "{method} {path}: {param}"
                    );
                    assert_eq!(param["schema"]["maxLength"], 40);
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 14, "{checked} /v1 operations");
    assert!(doc["security"][0]["bearer"].is_array(), "{}", doc["security"]);
}

#[test]
fn checksums_are_unsigned_32_bit() {
    let doc = doc();
    let schemas = &doc["components"]["schemas"];
    for name in ["ChecksumReport", "CollectionChecksum", "ReferenceSnapshot"] {
        let checksum = &schemas[name]["properties"]["checksum"];
        assert_eq!(checksum["type"], "integer", "{name}: {checksum}");
        assert_ne!(checksum["format"], "int32", "{name}: {checksum}");
        assert_eq!(checksum["minimum"].as_f64(), Some(0.0), "{name}: {checksum}");
        assert_eq!(
            checksum["maximum"].as_f64(),
            Some(u32::MAX as f64),
            "{name}: {checksum}"
        );
    }
}

#[test]
fn schemas_carry_the_limits_the_server_enforces() {
    let doc = doc();
    let config =
        dukasync::Config::from_lookup(|k| (k == "DUKASYNC_DATABASE_URL").then(|| "postgres://h/d".into())).unwrap();
    let schemas = &doc["components"]["schemas"];
    let ops = &schemas["OpsRequest"]["properties"]["ops"];
    assert_eq!(
        ops["maxItems"].as_u64(),
        Some(config.limits.max_batch_ops as u64),
        "{ops}"
    );
    assert!(ops["description"].as_str().unwrap().contains("DUKASYNC_MAX_BATCH_OPS"));
    // Backend writes (`POST /rows`, protocol §14) share the batch limit and the key's bounds.
    let writes = &schemas["RowsRequest"]["properties"]["writes"];
    assert_eq!(
        writes["maxItems"].as_u64(),
        Some(config.limits.max_batch_ops as u64),
        "{writes}"
    );
    assert!(writes["description"]
        .as_str()
        .unwrap()
        .contains("DUKASYNC_MAX_BATCH_OPS"));
    for owner in ["Operation", "RowWriteRequest"] {
        let key = &schemas[owner]["properties"]["key"];
        assert_eq!(
            key["maxLength"].as_u64(),
            Some(dukasync::domain::collections::MAX_KEY_LEN as u64),
            "{owner}: {key}"
        );
        assert_eq!(key["minLength"], 1, "{owner}: {key}");
    }

    let params = |path: &str| -> Vec<Value> {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| schema(&doc, p).clone())
            .collect()
    };
    let param = |path: &str, name: &str| -> Value {
        params(path)
            .into_iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{path} has no parameter {name}"))
    };
    // `limit` and `wait` are read as unsigned 32-bit (larger: 400) and clamped below the documented bounds.
    for name in ["limit", "wait"] {
        let p = param("/v1/scopes/{scope}/changes", name);
        assert_eq!(p["schema"]["minimum"].as_f64(), Some(0.0), "{p}");
        assert_eq!(p["schema"]["maximum"].as_f64(), Some(u32::MAX as f64), "{p}");
        assert_ne!(p["schema"]["format"], "int32", "{p}");
    }
    assert!(param("/v1/scopes/{scope}/changes", "limit")["description"]
        .as_str()
        .unwrap()
        .contains(&config.limits.max_page_size.to_string()));
    assert!(param("/v1/scopes/{scope}/changes", "wait")["description"]
        .as_str()
        .unwrap()
        .contains(&config.limits.max_wait.as_secs().to_string()));
    assert_eq!(
        param("/v1/scopes/{scope}/checksum", "version")["schema"]["minimum"].as_f64(),
        Some(0.0)
    );
    let offset = param("/v1/scopes/{scope}/summary", "utc_offset_minutes");
    assert_eq!(offset["schema"]["minimum"].as_f64(), Some(-720.0), "{offset}");
    assert_eq!(offset["schema"]["maximum"].as_f64(), Some(840.0), "{offset}");
    let account = &schemas["NewAccount"]["properties"]["code"];
    assert_eq!(account["maxLength"], 32, "{account}");
}
