//! The `Authorization` scheme as protocol §3 states it (RFC 7235 §2.1, RFC 6750 §2.1): `Bearer` in any case,
//! then one or more spaces, then the token; anything else is 401 with `WWW-Authenticate: Bearer`.

use crate::common::*;
use reqwest::StatusCode;

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive_through_the_real_server() {
    let app = TestApp::start().await;
    let token = app.token(OWNER, "owner-phone").await;
    let call = |value: String| {
        let req = app.http.get(app.url("/v1/scopes")).header("authorization", value);
        async move { req.send().await.unwrap() }
    };
    for value in [
        format!("Bearer {token}"),
        format!("bearer {token}"),
        format!("BEARER {token}"),
        format!("Bearer   {token}"),
    ] {
        let resp = call(value.clone()).await;
        assert_eq!(resp.status(), StatusCode::OK, "{value:?}");
    }
    for value in [
        format!("Bearer\t{token}"),
        format!("Bearer{token}"),
        format!("Basic {token}"),
        format!("Bearer {token} x"),
        token.clone(),
    ] {
        let resp = call(value.clone()).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{value:?}");
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }
}
