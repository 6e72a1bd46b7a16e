//! Foundation: authentication and authorisation, the error body in both encodings, readiness, metrics,
//! start-up failures and graceful shutdown, all against the real server, PostgreSQL and Redis.

use crate::common::*;
use dukasync::wire::{ErrorBody, Readiness, ScopeList};
use reqwest::StatusCode;
use sqlx::Connection;
use std::time::{Duration, Instant};

/// Asserts the response is an error with `status` and `code`; returns its body.
async fn expect_error(resp: reqwest::Response, status: StatusCode, code: &str) -> ErrorBody {
    let (actual, body) = error_of(resp).await;
    assert_eq!((actual, body.error.code.as_str()), (status, code));
    body
}

async fn error_of(resp: reqwest::Response) -> (StatusCode, ErrorBody) {
    let status = resp.status();
    let body = resp
        .json::<ErrorBody>()
        .await
        .expect("error body has the documented shape");
    (status, body)
}

#[tokio::test]
async fn health_needs_no_token_and_v1_needs_one() {
    let app = TestApp::start().await;
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);

    let resp = app.get("/v1/scopes", None).await;
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    expect_error(resp, StatusCode::UNAUTHORIZED, "unauthorized").await;

    for bad in ["nonsense", "dks_1234", &format!("dks_{}", "0".repeat(64))] {
        let (status, body) = error_of(app.get("/v1/scopes", Some(bad)).await).await;
        assert_eq!(
            (status, body.error.code.as_str()),
            (StatusCode::UNAUTHORIZED, "unauthorized"),
            "{bad}"
        );
    }
    let resp = app
        .http
        .get(app.url("/v1/scopes"))
        .header("authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_token_sees_exactly_its_users_scopes() {
    let app = TestApp::start().await;
    let owner = app.token(OWNER, "owner-phone").await;
    let cashier = app.token(WATER_CASHIER, "water-counter").await;

    let list: ScopeList = app.get("/v1/scopes", Some(&owner)).await.json().await.unwrap();
    let ids: Vec<_> = list.scopes.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["laundry", "retail", "water"]);
    assert!(list.scopes.iter().all(|s| s.head > 0), "demo data is in every feed");

    let list: ScopeList = app.get("/v1/scopes", Some(&cashier)).await.json().await.unwrap();
    assert_eq!(list.scopes.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["water"]);

    // Another business's feed, and a scope that does not exist, answer the same 404.
    let (s1, other) = error_of(app.get("/v1/scopes/retail/changes", Some(&cashier)).await).await;
    let (s2, missing) = error_of(app.get("/v1/scopes/nosuch/changes", Some(&cashier)).await).await;
    assert_eq!((s1, s2), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND));
    assert_eq!(other.error.code, "scope_not_found");
    assert_eq!(
        (other.error.code, other.error.message),
        (missing.error.code, missing.error.message)
    );
    assert_eq!(
        app.get("/v1/scopes/water/changes", Some(&cashier)).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn roles_that_may_not_administer_get_403() {
    let app = TestApp::start().await;
    let cashier = app.token(WATER_CASHIER, "water-counter").await;
    let manager = app.token(MANAGER, "manager-phone").await;
    let owner = app.token(OWNER, "owner-phone").await;

    let (status, body) = error_of(app.get("/v1/scopes/water/devices", Some(&cashier)).await).await;
    assert_eq!((status, body.error.code.as_str()), (StatusCode::FORBIDDEN, "forbidden"));
    // The manager is not a member of `water`: 404, not 403.
    assert_eq!(
        app.get("/v1/scopes/water/devices", Some(&manager)).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/v1/scopes/retail/devices", Some(&manager)).await.status(),
        StatusCode::OK
    );

    let devices: serde_json::Value = app
        .get("/v1/scopes/water/devices", Some(&owner))
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"water-counter") && names.contains(&"owner-phone"),
        "{names:?}"
    );
}

#[tokio::test]
async fn tokens_are_checked_without_a_database_round_trip_and_revocation_is_prompt() {
    // A long cache lifetime: only the revocation notification can make the revocation take effect in time.
    let app = TestApp::start_with(&[("DUKASYNC_TOKEN_CACHE_SECS", "300")]).await;
    let token = app.token(OWNER, "owner-phone").await;
    let hash = dukasync::auth::hash_token(&token);
    let seen = || async {
        sqlx::query_scalar::<_, Option<chrono::DateTime<chrono::Utc>>>(
            "SELECT last_seen_at FROM device_tokens WHERE token_hash = $1",
        )
        .bind(&hash[..])
        .fetch_one(&app.db)
        .await
        .unwrap()
    };
    assert_eq!(seen().await, None, "a new token was never seen");
    assert_eq!(app.get("/v1/scopes", Some(&token)).await.status(), StatusCode::OK);
    let first = seen()
        .await
        .expect("the first request looks the token up and records it");
    for _ in 0..10 {
        assert_eq!(app.get("/v1/scopes", Some(&token)).await.status(), StatusCode::OK);
    }
    assert_eq!(
        seen().await,
        Some(first),
        "later requests were served from the cache, without a lookup"
    );

    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM device_tokens WHERE token_hash = $1")
        .bind(&hash[..])
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(dukasync::store::tokens::revoke(&app.db, id).await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = app.get("/v1/scopes", Some(&token)).await.status();
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(Instant::now() < deadline, "revoked token still accepted after 5 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn errors_come_in_messagepack_when_asked() {
    let app = TestApp::start().await;
    let token = app.token(OWNER, "owner-phone").await;
    for (path, token, status, code) in [
        ("/v1/scopes", None, 401, "unauthorized"),
        (
            "/v1/scopes/nosuch/changes",
            Some(token.as_str()),
            404,
            "scope_not_found",
        ),
        (
            "/v1/scopes/water/changes?bogus=1",
            Some(token.as_str()),
            400,
            "invalid_query",
        ),
        ("/v1/nowhere", Some(token.as_str()), 404, "route_not_found"),
    ] {
        let mut req = app.http.get(app.url(path)).header("accept", "application/msgpack");
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{path}");
        assert_eq!(resp.headers()["content-type"], "application/msgpack", "{path}");
        let body: ErrorBody = rmp_serde::from_slice(&resp.bytes().await.unwrap()).expect("msgpack error body");
        assert_eq!(body.error.code, code, "{path}");

        // The same request in JSON gives the same code.
        let mut req = app.http.get(app.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let (_, json) = error_of(req.send().await.unwrap()).await;
        assert_eq!(json.error.code, code, "{path}");
    }
    let resp = app
        .http
        .post(app.url("/v1/scopes"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
}

#[tokio::test]
async fn readiness_reports_redis_as_degraded_and_postgres_as_down() {
    let mut redis = RedisProcess::start();
    let app = TestApp::start_with(&[("DUKASYNC_REDIS_URL", &redis.url())]).await;
    let ready: Readiness = app.get("/readyz", None).await.json().await.unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.postgres.as_str(), ready.redis.as_str()),
        ("ready", "up", "up")
    );

    redis.kill();
    let resp = app.get("/readyz", None).await;
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "Redis down does not make the server unready"
    );
    let ready: Readiness = resp.json().await.unwrap();
    assert_eq!((ready.status.as_str(), ready.redis.as_str()), ("degraded", "down"));
    // And the API keeps serving.
    let token = app.token(OWNER, "owner-phone").await;
    assert_eq!(
        app.get("/v1/scopes/water/changes", Some(&token)).await.status(),
        StatusCode::OK
    );

    let plain = TestApp::start().await;
    let ready: Readiness = plain.get("/readyz", None).await.json().await.unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.redis.as_str()),
        ("ready", "not_configured")
    );

    // PostgreSQL unreachable: a closed port.
    let closed = free_port();
    let down = TestApp::on_database(&format!("postgres://nobody:pw@127.0.0.1:{closed}/none"), &[]).await;
    let resp = down.get("/readyz", None).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let ready: Readiness = resp.json().await.unwrap();
    assert_eq!((ready.status.as_str(), ready.postgres.as_str()), ("down", "down"));
    // A request that needs PostgreSQL answers 503 `unavailable`, not 500.
    let (status, body) = error_of(down.get("/v1/scopes", Some(&format!("dks_{}", "a".repeat(64)))).await).await;
    assert_eq!(
        (status, body.error.code.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    );
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = TestApp::start().await;
    let token = app.token(OWNER, "owner-phone").await;
    for _ in 0..3 {
        app.get("/v1/scopes", None).await;
    }
    app.get("/v1/scopes/water/changes", Some(&token)).await;
    let text = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        text.contains(r#"dukasync_http_requests_total{route="/v1/scopes",method="GET",status="401"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"dukasync_http_requests_total{route="/v1/scopes/{scope}/changes",method="GET",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains("dukasync_http_request_duration_seconds_bucket{"),
        "{text}"
    );
    assert!(text.contains(r#"dukasync_scope_head_version{scope="water"}"#), "{text}");
}

/// Starts a 30 s long-poll of water's feed at its current head; it answers when a change commits (or the
/// server stops).
async fn long_poll_at_head(app: &TestApp, token: &str) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    let head: ScopeList = app.get("/v1/scopes", Some(token)).await.json().await.unwrap();
    let water = head.scopes.iter().find(|s| s.id == "water").unwrap().head;
    let url = app.url(&format!("/v1/scopes/water/changes?since={water}&wait=30"));
    let req = app.http.get(url).bearer_auth(token);
    tokio::spawn(async move { req.send().await })
}

#[tokio::test]
async fn shutdown_answers_waiting_long_polls_and_finishes() {
    let app = TestApp::start().await;
    let token = app.token(OWNER, "owner-phone").await;
    let poll = long_poll_at_head(&app, &token).await;
    app.wait_for_metric("dukasync_longpoll_waiters", 1.0).await;
    let started = Instant::now();
    app.stop().await.expect("server stops cleanly");
    let resp = poll.await.unwrap().expect("the long-poll got an answer");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown waited for the full long-poll"
    );
}

/// Runs the real binary with `env` and returns (exit code, stderr).
fn run_binary(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_dukasync"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("binary runs");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_configuration_stops_start_up_with_one_line_naming_the_variable() {
    let (code, err) = run_binary(&["serve"], &[]);
    assert_eq!(code, Some(2));
    assert_eq!(
        err.trim(),
        "dukasync: configuration error: DUKASYNC_DATABASE_URL is not set"
    );

    let (code, err) = run_binary(
        &["serve"],
        &[
            ("DUKASYNC_DATABASE_URL", "postgres://u:pw@127.0.0.1/x"),
            ("DUKASYNC_MAX_PAGE_SIZE", "many"),
        ],
    );
    assert_eq!(code, Some(2));
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("DUKASYNC_MAX_PAGE_SIZE"), "{err}");

    let (code, err) = run_binary(
        &["serve"],
        &[
            ("DUKASYNC_DATABASE_URL", "postgres://u:pw@127.0.0.1/x"),
            ("DUKASYNC_LISTEN", "localhost"),
        ],
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("DUKASYNC_LISTEN") && !err.contains("pw"), "{err}");
}

/// A collections file with mistakes stops every command before it touches anything, listing each mistake on
/// its own line, so whoever edits the file fixes it in one round.
#[tokio::test]
async fn a_bad_collections_file_stops_start_up_listing_every_mistake() {
    let path = std::env::temp_dir().join(format!("dukasync-collections-{}.toml", uuid::Uuid::new_v4()));
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/collections.toml")).unwrap();
    let bad = format!(
        "{shipped}\n[[collection]]\nname = \"Deliveries\"\nwriter = \"phone\"\nconflict_policy = \"server_wins\"\n"
    );
    std::fs::write(&path, bad).unwrap();
    let file = path.to_str().unwrap();
    let (code, err) = run_binary(
        &["serve"],
        &[
            ("DUKASYNC_DATABASE_URL", "postgres://u:pw@127.0.0.1:1/x"),
            ("DUKASYNC_COLLECTIONS_FILE", file),
        ],
    );
    std::fs::remove_file(&path).unwrap();
    assert_eq!(code, Some(2), "{err}");
    let lines: Vec<&str> = err.trim().lines().collect();
    assert_eq!(lines.len(), 3, "a header and one line per mistake: {err}");
    assert!(lines[0].contains(file) && lines[0].contains("2 mistake(s)"), "{err}");
    assert!(lines[1].contains("`Deliveries`") && lines[1].contains("name"), "{err}");
    assert!(lines[2].contains("`writer` must be one of"), "{err}");

    // The shipped file under the same variable is accepted: the mistakes, not the variable, were refused.
    std::fs::write(&path, &shipped).unwrap();
    let url = fresh_database().await;
    let (code, err) = run_binary(
        &["migrate"],
        &[("DUKASYNC_DATABASE_URL", &url), ("DUKASYNC_COLLECTIONS_FILE", file)],
    );
    std::fs::remove_file(&path).unwrap();
    assert_eq!(code, Some(0), "{err}");
}

#[tokio::test]
async fn the_binary_serves_hides_secrets_and_stops_on_sigterm() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let url = fresh_database().await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_dukasync"))
        .arg("serve")
        .env("DUKASYNC_DATABASE_URL", &url)
        .env("DUKASYNC_LISTEN", "127.0.0.1:0")
        .env("DUKASYNC_LOG", "debug")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let password = url::Url::parse(&url).unwrap().password().unwrap().to_string();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log.contains("dukasync listening") {
        assert!(Instant::now() < deadline, "no ready log line: {log}");
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .expect("log line");
        log.push_str(&line);
        log.push('\n');
    }
    assert!(log.contains("***"), "the database URL is logged redacted: {log}");
    let pid = child.id().unwrap() as i32;
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    while let Ok(Ok(Some(line))) = tokio::time::timeout(Duration::from_secs(5), lines.next_line()).await {
        log.push_str(&line);
        log.push('\n');
    }
    assert!(status.success(), "graceful exit: {status:?}\n{log}");
    assert!(
        !log.contains(&password),
        "the database password leaked into the log:\n{log}"
    );
}

#[tokio::test]
async fn oversized_bodies_get_413_with_the_limit() {
    let app = TestApp::start_with(&[("DUKASYNC_MAX_BODY_BYTES", "1024")]).await;
    let token = app.token(OWNER, "owner-phone").await;
    let resp = app
        .http
        .get(app.url("/v1/scopes"))
        .bearer_auth(&token)
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    let body = expect_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    assert_eq!(body.error.details.unwrap()["limit_bytes"], 1024);
    let text = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        text.contains(r#"route="/v1/scopes",method="GET",status="413""#),
        "rejections are counted: {text}"
    );
}

#[tokio::test]
async fn messagepack_carries_ids_and_times_as_strings_like_json() {
    let app = TestApp::start().await;
    let owner = app.token(OWNER, "owner-phone").await;
    app.get("/v1/scopes", Some(&owner)).await; // marks the device as seen
    let json: dukasync::wire::DeviceList = app
        .get("/v1/scopes/water/devices", Some(&owner))
        .await
        .json()
        .await
        .unwrap();
    let bytes = app.get_msgpack("/v1/scopes/water/devices", &owner).await;
    let raw: serde_json::Value = rmp_serde::from_slice(&bytes).unwrap();
    assert!(raw["devices"][0]["id"].is_string(), "{raw}");
    assert_eq!(raw["devices"].as_array().unwrap().len(), json.devices.len());
    assert!(json.devices.iter().any(|d| d.last_seen_at.is_some()));
}

#[tokio::test]
async fn beyond_the_in_flight_limit_requests_get_503_overloaded_and_the_limit_frees_up() {
    let app = TestApp::start_with(&[("DUKASYNC_MAX_IN_FLIGHT", "1")]).await;
    let token = app.token(OWNER, "owner-phone").await;
    // An ordinary request holds the only slot: a push waiting for the scope's lock, which the test holds.
    let mut lock = sqlx::PgConnection::connect(&app.database_url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut lock).await.unwrap();
    sqlx::query("SELECT 1 FROM scopes WHERE id = 'water' FOR NO KEY UPDATE")
        .execute(&mut lock)
        .await
        .unwrap();
    let till = Device::new(&app, OWNER, "owner-phone", "water").await;
    let push = {
        let req = app
            .http
            .post(app.url("/v1/scopes/water/ops"))
            .bearer_auth(&till.token)
            .json(&serde_json::json!({"client_id": till.client_id, "ops": [put_customer(1, "c-admission")]}));
        tokio::spawn(async move { req.send().await.unwrap().status() })
    };
    wait_for_replays_on_lock(&app, 1).await;
    let refused = app
        .http
        .get(app.url("/v1/scopes"))
        .bearer_auth(&token)
        .header("accept", "application/msgpack")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["content-type"], "application/msgpack");
    let body: ErrorBody = rmp_serde::from_slice(&refused.bytes().await.unwrap()).unwrap();
    assert_eq!(body.error.code, "overloaded");
    // The operations endpoints are never refused by admission.
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(app.get(path, None).await.status(), StatusCode::OK, "{path}");
    }

    // The push finishes once the lock goes, which frees the slot.
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    assert_eq!(push.await.unwrap(), StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.get("/v1/scopes", Some(&token)).await.status() != StatusCode::OK {
        assert!(Instant::now() < deadline, "the slot never came back");
        tokio::task::yield_now().await;
    }
}
