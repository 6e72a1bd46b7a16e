//! A handler that panics answers the documented 500 `internal` body, and the server goes on serving.
//! Needs the test hooks: `cargo test --features failpoints --test panics`.

mod common;

use common::*;
use dukasync::wire::ErrorBody;
use reqwest::StatusCode;

#[tokio::test]
async fn a_panicking_handler_answers_500_internal_and_the_server_goes_on() {
    // This binary holds this one test, so the process-wide failpoint touches nothing else. It is set before the
    // server reads it (on the first pull).
    std::env::set_var("DUKASYNC_FAILPOINTS", dukasync::failpoint::PULL_PANIC);
    let app = TestApp::start().await;
    let token = app.token(OWNER, "owner-phone").await;
    // One connection for everything: a panic must not cost the client its connection either.
    let http = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
    for accept in ["application/json", "application/msgpack"] {
        let resp = http
            .get(app.url("/v1/scopes/water/changes?since=0"))
            .bearer_auth(&token)
            .header("accept", accept)
            .send()
            .await
            .expect("an answer, not a dropped connection");
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(resp.headers()["content-type"], accept);
        assert!(resp.headers().contains_key("x-request-id"));
        let bytes = resp.bytes().await.unwrap();
        let body: ErrorBody = if accept == "application/json" {
            serde_json::from_slice(&bytes).unwrap()
        } else {
            rmp_serde::from_slice(&bytes).unwrap()
        };
        assert_eq!(body.error.code, "internal");
        assert_eq!(
            body.error.message, "internal error",
            "the panic's message stays on the server"
        );
    }
    let resp = http
        .get(app.url("/v1/scopes"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "other routes are served");
    assert_eq!(
        app.metric("dukasync_http_requests_total{route=\"/v1/scopes/{scope}/changes\",method=\"GET\",status=\"500\"}")
            .await,
        Some(2.0)
    );
}
