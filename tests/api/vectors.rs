//! Replays the protocol vectors in `protocol/vectors/` against the real server, so the written protocol and
//! the server cannot drift apart. The JS client tests replay the same files.

use crate::common::*;
use dukasync::domain::{canonical, Role, ScopeId};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = format!("{}/protocol/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn row_hashes_match_the_independently_computed_vectors() {
    let doc = load("row_hash.json");
    let mut sum = 0u32;
    for row in doc["rows"].as_array().unwrap() {
        let (collection, key, data) = (
            row["collection"].as_str().unwrap(),
            row["key"].as_str().unwrap(),
            &row["data"],
        );
        assert_eq!(
            canonical::to_canonical_json(data),
            row["canonical"].as_str().unwrap(),
            "{key}"
        );
        let hash = canonical::row_hash(collection, key, data);
        assert_eq!(u64::from(hash), row["row_hash"].as_u64().unwrap(), "{key}");
        sum = sum.wrapping_add(hash);
    }
    assert_eq!(u64::from(sum), doc["checksum_of_all_rows"].as_u64().unwrap());
}

/// `expected` matches `actual`, where the string `{any}` matches any string, `{uuid}` a UUID and `{tag}` 16 hex
/// digits.
fn matches(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::String(e), Value::String(a)) if e == "{any}" => !a.is_empty(),
        (Value::String(e), Value::String(a)) if e == "{uuid}" => uuid::Uuid::parse_str(a).is_ok(),
        (Value::String(e), Value::String(a)) if e.contains("{tag}") => {
            let (prefix, suffix) = e.split_once("{tag}").unwrap();
            a.len() == prefix.len() + 16 + suffix.len()
                && a.starts_with(prefix)
                && a.ends_with(suffix)
                && a[prefix.len()..prefix.len() + 16]
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        }
        (Value::Object(e), Value::Object(a)) => {
            e.len() == a.len() && e.iter().all(|(k, v)| a.get(k).is_some_and(|av| matches(v, av)))
        }
        (Value::Array(e), Value::Array(a)) => e.len() == a.len() && e.iter().zip(a).all(|(x, y)| matches(x, y)),
        _ => expected == actual,
    }
}

/// A server with the vectors' scope, owned by the demo owner.
async fn app_with_scope(doc: &Value) -> (TestApp, ScopeId) {
    let app = TestApp::start().await;
    let scope = ScopeId::parse(doc["scope"].as_str().unwrap()).unwrap();
    dukasync::store::accounts::ensure_scope(&app.db, &scope, "Vectors")
        .await
        .unwrap();
    let owner = dukasync::store::accounts::user_by_email(&app.db, OWNER)
        .await
        .unwrap()
        .unwrap();
    dukasync::store::accounts::set_role(&app.db, owner, &scope, Role::Owner)
        .await
        .unwrap();
    (app, scope)
}

/// The body of a response, decoded by its content type (MessagePack in human-readable mode, as specified).
async fn decoded(resp: reqwest::Response) -> (String, Value) {
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    let bytes = resp.bytes().await.unwrap();
    let body = if content_type == "application/msgpack" {
        rmp_serde::from_slice(&bytes).unwrap()
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (content_type, body)
}

/// Checks a response against a vector's `response`: status, body, and content type where the vector names one.
async fn check(name: &str, resp: reqwest::Response, expected: &Value) {
    assert_eq!(
        u64::from(resp.status().as_u16()),
        expected["status"].as_u64().unwrap(),
        "{name}"
    );
    let (content_type, body) = decoded(resp).await;
    if let Some(expected_type) = expected["content_type"].as_str() {
        assert_eq!(content_type, expected_type, "{name}");
    }
    assert!(
        matches(&expected["body"], &body),
        "{name}:\nexpected {}\nactual   {body}",
        expected["body"]
    );
}

/// A vector request's body: JSON, or MessagePack (struct maps) where its `content_type` says so.
fn with_body(req: reqwest::RequestBuilder, request: &Value) -> reqwest::RequestBuilder {
    match request["content_type"].as_str() {
        Some("application/msgpack") => {
            let mut bytes = Vec::new();
            let mut serializer = rmp_serde::Serializer::new(&mut bytes).with_struct_map();
            serde::Serialize::serialize(&request["body"], &mut serializer).unwrap();
            req.header("content-type", "application/msgpack").body(bytes)
        }
        _ => req.json(&request["body"]),
    }
}

#[tokio::test]
async fn the_server_answers_every_ops_vector_in_order() {
    let doc = load("ops.json");
    let (app, scope) = app_with_scope(&doc).await;
    let token = app.token(OWNER, "owner-phone").await;
    for case in doc["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let request = &case["request"];
        let req = app
            .http
            .post(app.url(&format!("/v1/scopes/{scope}/ops")))
            .bearer_auth(&token);
        check(name, with_body(req, request).send().await.unwrap(), &case["response"]).await;
    }
}

#[tokio::test]
async fn the_server_answers_every_rows_vector_in_order() {
    let doc = load("rows.json");
    let (app, scope) = app_with_scope(&doc).await;
    let email = doc["backend"].as_str().unwrap();
    let backend = dukasync::store::accounts::ensure_user(&app.db, email, "ERP")
        .await
        .unwrap();
    dukasync::store::accounts::set_role(&app.db, backend, &scope, Role::Backend)
        .await
        .unwrap();
    let backend_token = app.token(email, "erp-server").await;
    let owner_token = app.token(OWNER, "owner-phone").await;
    for case in doc["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let request = &case["request"];
        let token = match request["token"].as_str() {
            Some("owner") => &owner_token,
            _ => &backend_token,
        };
        let req = app
            .http
            .post(app.url(&format!("/v1/scopes/{scope}/rows")))
            .bearer_auth(token);
        check(name, with_body(req, request).send().await.unwrap(), &case["response"]).await;
    }
}

#[tokio::test]
async fn the_server_answers_every_feed_vector() {
    let doc = load("feed.json");
    let (app, scope) = app_with_scope(&doc).await;
    for tx in doc["setup"].as_array().unwrap() {
        let writes = tx
            .as_array()
            .unwrap()
            .iter()
            .map(|w| dukasync::store::changes::RowWrite {
                collection: w["collection"].as_str().unwrap().into(),
                key: w["key"].as_str().unwrap().into(),
                data: (!w["data"].is_null()).then(|| w["data"].clone()),
            })
            .collect();
        app.write(scope.as_str(), writes).await;
    }
    let token = app.token(OWNER, "owner-phone").await;
    for case in doc["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let request = &case["request"];
        let mut req = app.http.get(app.url(request["path"].as_str().unwrap()));
        if request["token"] != Value::Bool(false) {
            req = req.bearer_auth(&token);
        }
        if let Some(accept) = request["accept"].as_str() {
            req = req.header("accept", accept);
        }
        check(name, req.send().await.unwrap(), &case["response"]).await;
    }
}

#[tokio::test]
async fn the_server_answers_every_reference_vector_byte_for_byte() {
    use std::io::Read;
    let doc = load("reference.json");
    let (app, scope) = app_with_scope(&doc).await;
    for tx in doc["setup"].as_array().unwrap() {
        let writes = tx
            .as_array()
            .unwrap()
            .iter()
            .map(|w| dukasync::store::changes::RowWrite {
                collection: w["collection"].as_str().unwrap().into(),
                key: w["key"].as_str().unwrap().into(),
                data: (!w["data"].is_null()).then(|| w["data"].clone()),
            })
            .collect();
        app.write(scope.as_str(), writes).await;
    }
    let token = app.token(OWNER, "owner-phone").await;
    let mut bodies: std::collections::HashMap<String, Vec<u8>> = Default::default();
    for case in doc["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (request, expected) = (&case["request"], &case["response"]);
        let mut req = app.http.get(app.url(request["path"].as_str().unwrap()));
        if request["token"] != Value::Bool(false) {
            req = req.bearer_auth(&token);
        }
        for (k, v) in request["headers"].as_object().into_iter().flatten() {
            req = req.header(k.as_str(), v.as_str().unwrap());
        }
        let resp = req.send().await.unwrap();
        assert_eq!(
            u64::from(resp.status().as_u16()),
            expected["status"].as_u64().unwrap(),
            "{name}"
        );
        for (k, v) in expected["headers"].as_object().unwrap() {
            assert_eq!(
                resp.headers().get(k.as_str()).map(|h| h.to_str().unwrap()),
                v.as_str(),
                "{name}: {k}"
            );
        }
        for k in expected["absent_headers"].as_array().into_iter().flatten() {
            assert!(resp.headers().get(k.as_str().unwrap()).is_none(), "{name}: {k}");
        }
        let encoding = resp
            .headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap().to_string());
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let raw = resp.bytes().await.unwrap().to_vec();
        if let Some(body) = expected["body"].as_str() {
            assert_eq!(String::from_utf8_lossy(&raw), body, "{name}");
        }
        if let Some(code) = expected["error_code"].as_str() {
            let body: Value = serde_json::from_slice(&raw).unwrap();
            assert_eq!(body["error"]["code"], code, "{name}");
        }
        if let Some(of) = expected["decoded_body_of"].as_str() {
            let mut plain = Vec::new();
            match encoding.as_deref() {
                Some("gzip") => {
                    flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut plain).unwrap();
                }
                None => plain = raw.clone(),
                Some(other) => panic!("{name}: unexpected coding {other}"),
            }
            let decoded: Value = if content_type == "application/msgpack" {
                rmp_serde::from_slice(&plain).unwrap()
            } else {
                serde_json::from_slice(&plain).unwrap()
            };
            let reference: Value = serde_json::from_slice(&bodies[of]).unwrap();
            assert_eq!(decoded, reference, "{name}");
        }
        bodies.insert(name.to_string(), raw);
    }
}

#[tokio::test]
async fn the_server_answers_every_conflicts_vector_in_order() {
    let doc = load("conflicts.json");
    let (app, scope) = app_with_scope(&doc).await;
    let token = app.token(OWNER, "owner-phone").await;
    let mut conflict_ids = Vec::new();
    for batch in doc["setup"].as_array().unwrap() {
        // A plain list is the document's client's; an object names its own client (another outbox).
        let (client_id, ops) = match batch.get("ops") {
            Some(ops) => (&batch["client_id"], ops),
            None => (&doc["client_id"], batch),
        };
        let resp = app
            .http
            .post(app.url(&format!("/v1/scopes/{scope}/ops")))
            .bearer_auth(&token)
            .json(&serde_json::json!({"client_id": client_id, "ops": ops}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), reqwest::StatusCode::OK);
        let answer: Value = resp.json().await.unwrap();
        for result in answer["results"].as_array().unwrap() {
            if let Some(id) = result["conflict_id"].as_str() {
                conflict_ids.push(id.to_string());
            }
        }
    }
    assert_eq!(
        conflict_ids.len(),
        2,
        "the setup records a field conflict and a rejection"
    );
    for case in doc["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let request = &case["request"];
        let path = request["path"]
            .as_str()
            .unwrap()
            .replace("{field_conflict}", &conflict_ids[0])
            .replace("{rejection}", &conflict_ids[1]);
        let mut req = match request["method"].as_str().unwrap() {
            "POST" => app.http.post(app.url(&path)).json(&request["body"]),
            _ => app.http.get(app.url(&path)),
        };
        if request["token"] != Value::Bool(false) {
            req = req.bearer_auth(&token);
        }
        if let Some(accept) = request["accept"].as_str() {
            req = req.header("accept", accept);
        }
        check(name, req.send().await.unwrap(), &case["response"]).await;
    }
}
