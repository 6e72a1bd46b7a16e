//! CORS (protocol §3.5): preflights and answers for allowed origins on `/v1`, nothing for anyone else, and
//! nothing at all by default.

use crate::common::*;
use reqwest::{header::HeaderMap, Method, StatusCode};

const ALLOWED: &str = "http://127.0.0.1:5173";
const OTHER: &str = "http://127.0.0.1:5174";

async fn preflight(app: &TestApp, path: &str, origin: &str, method: &str) -> (StatusCode, HeaderMap) {
    let resp = app
        .http
        .request(Method::OPTIONS, app.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header(
            "access-control-request-headers",
            "authorization,content-type,if-none-match",
        )
        .send()
        .await
        .unwrap();
    (resp.status(), resp.headers().clone())
}

fn list(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect()
}

#[tokio::test]
async fn an_allowed_origin_gets_preflights_without_a_token_and_readable_answers() {
    let app = TestApp::start_with(&[("DUKASYNC_CORS_ORIGINS", &format!("https://erp.duka.test,{ALLOWED}"))]).await;

    let (status, h) = preflight(&app, "/v1/scopes/retail/ops", ALLOWED, "POST").await;
    assert!(status.is_success(), "{status}");
    assert_eq!(h["access-control-allow-origin"], ALLOWED);
    let methods = list(&h, "access-control-allow-methods");
    assert!(
        methods.contains(&"get".into()) && methods.contains(&"post".into()),
        "{methods:?}"
    );
    let headers = list(&h, "access-control-allow-headers");
    for needed in [
        "authorization",
        "content-type",
        "accept",
        "if-none-match",
        "x-request-id",
    ] {
        assert!(headers.contains(&needed.to_string()), "{needed} in {headers:?}");
    }
    assert_eq!(h["access-control-max-age"], "600");
    assert!(
        h.get("access-control-allow-credentials").is_none(),
        "bearer tokens, no cookies"
    );

    // A real request: the answer names the origin, exposes what clients read, and varies by origin.
    let token = app.token(OWNER, "owner-phone").await;
    let resp = app
        .http
        .get(app.url("/v1/scopes"))
        .bearer_auth(&token)
        .header("origin", ALLOWED)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], ALLOWED);
    let exposed = list(h, "access-control-expose-headers");
    for needed in ["etag", "x-request-id", "retry-after", "www-authenticate"] {
        assert!(exposed.contains(&needed.to_string()), "{needed} in {exposed:?}");
    }
    assert!(list(h, "vary").contains(&"origin".into()), "{h:?}");
    assert!(h.contains_key("x-request-id"));

    // Refusals are readable too: a page learns it must sign in again.
    let resp = app
        .http
        .get(app.url("/v1/scopes"))
        .header("origin", ALLOWED)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["access-control-allow-origin"], ALLOWED);

    // A reference snapshot keeps its own Vary beside the CORS one (caches must still split by encoding).
    let resp = app
        .http
        .get(app.url("/v1/scopes/retail/reference/products"))
        .bearer_auth(&token)
        .header("origin", ALLOWED)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let vary = list(resp.headers(), "vary");
    assert!(
        vary.contains(&"accept-encoding".into()) && vary.contains(&"origin".into()),
        "{vary:?}"
    );
    assert!(resp.headers().contains_key("etag"));
}

#[tokio::test]
async fn other_origins_and_operator_routes_are_not_allowed() {
    let app = TestApp::start_with(&[("DUKASYNC_CORS_ORIGINS", ALLOWED)]).await;
    for (path, origin) in [
        ("/v1/scopes/retail/ops", OTHER),
        ("/v1/scopes/retail/ops", "http://127.0.0.1:5173.evil.test"),
        ("/metrics", ALLOWED),
        ("/readyz", ALLOWED),
    ] {
        let (_, h) = preflight(&app, path, origin, "POST").await;
        assert!(
            h.get("access-control-allow-origin").is_none(),
            "{path} from {origin}: {h:?}"
        );
        let resp = app
            .http
            .get(app.url(path))
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        let h = resp.headers();
        assert!(
            h.get("access-control-allow-origin").is_none(),
            "{path} from {origin}: {h:?}"
        );
    }
}

#[tokio::test]
async fn without_configured_origins_there_is_no_cors_at_all() {
    let app = TestApp::start().await;
    let (status, h) = preflight(&app, "/v1/scopes/retail/ops", ALLOWED, "POST").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(h.keys().all(|k| !k.as_str().starts_with("access-control-")), "{h:?}");
    let token = app.token(OWNER, "owner-phone").await;
    let resp = app
        .http
        .get(app.url("/v1/scopes"))
        .bearer_auth(&token)
        .header("origin", ALLOWED)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp
        .headers()
        .keys()
        .all(|k| !k.as_str().starts_with("access-control-")));
}

#[test]
fn a_malformed_origin_or_a_wildcard_fails_the_start() {
    for bad in [
        "*",
        "https://erp.duka.test/app",
        "erp.duka.test",
        "https://a.test,,https://b.test",
    ] {
        let lookup = |k: &str| match k {
            "DUKASYNC_DATABASE_URL" => Some("postgres://x@127.0.0.1/db".to_string()),
            "DUKASYNC_CORS_ORIGINS" => Some(bad.to_string()),
            _ => None,
        };
        let err = dukasync::Config::from_lookup(lookup).expect_err(bad);
        assert_eq!(err.variable, "DUKASYNC_CORS_ORIGINS", "{bad}");
    }
}
