//! Enrollment by pairing code (protocol §3.3): who may create codes, the exchange without a token, a code
//! working once and expiring, and the bounds on guessing.

use crate::common::*;
use dukasync::wire::{ErrorBody, IssuedToken, PairingCode, ScopeList};
use reqwest::StatusCode;
use serde_json::{json, Value};

pub async fn create_code(app: &TestApp, token: &str, scope: &str, body: Value) -> reqwest::Response {
    app.http
        .post(app.url(&format!("/v1/scopes/{scope}/pairing_codes")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// A code created by the demo owner for a new cashier of `water`.
pub async fn cashier_code(app: &TestApp, email: &str) -> PairingCode {
    let owner = app.token(OWNER, "owner-phone").await;
    let resp = create_code(
        app,
        &owner,
        "water",
        json!({"email": email, "name": "Neema", "role": "cashier"}),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    resp.json().await.unwrap()
}

pub async fn pair(app: &TestApp, code: &str, device: &str) -> reqwest::Response {
    app.http
        .post(app.url("/v1/pair"))
        .json(&json!({"code": code, "device_name": device}))
        .send()
        .await
        .unwrap()
}

async fn expect_error(resp: reqwest::Response, status: StatusCode, code: &str) {
    let actual = resp.status();
    let body: ErrorBody = resp.json().await.expect("error body");
    assert_eq!(
        (actual, body.error.code.as_str()),
        (status, code),
        "{}",
        body.error.message
    );
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.db).await.unwrap()
}

#[tokio::test]
async fn a_code_enrolls_a_new_user_once_and_is_stored_hashed() {
    let app = TestApp::start_with(&[("DUKASYNC_PUBLIC_URL", "https://sync.example/")]).await;
    let code = cashier_code(&app, "neema@duka.test").await;
    assert_eq!(code.code.len(), 11, "{}", code.code);
    assert_eq!(
        code.url.as_deref(),
        Some(format!("https://sync.example/pair#code={}", code.code).as_str())
    );
    let left = code.expires_at - chrono::Utc::now();
    assert!(
        left > chrono::Duration::seconds(590) && left <= chrono::Duration::seconds(600),
        "{left}"
    );
    let stored: Vec<u8> = sqlx::query_scalar("SELECT code_hash FROM pairing_codes")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stored, dukasync::auth::hash_token(&code.code.replace('-', "")).to_vec());

    // Typed by hand: lower case, a space instead of the dash.
    let resp = pair(&app, &code.code.to_lowercase().replace('-', " "), "neema-phone").await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let issued: IssuedToken = resp.json().await.unwrap();
    assert!(issued.token.starts_with("dks_"));
    let life = issued.expires_at - chrono::Utc::now();
    assert!(
        life > chrono::Duration::days(89) && life <= chrono::Duration::days(90),
        "{life}"
    );
    assert_eq!(issued.scopes.len(), 1);
    assert_eq!(
        (issued.scopes[0].scope.as_str(), issued.scopes[0].role.as_str()),
        ("water", "cashier")
    );

    let scopes: ScopeList = app.get("/v1/scopes", Some(&issued.token)).await.json().await.unwrap();
    assert_eq!(scopes.scopes.len(), 1);
    assert_eq!(scopes.scopes[0].id, "water");
    let device: String = sqlx::query_scalar(
        "SELECT d.name FROM devices d JOIN users u ON u.id = d.user_id WHERE u.email = 'neema@duka.test'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(device, "neema-phone");

    // Used once: refused, and nothing more is written.
    let tokens = count(&app, "SELECT count(*) FROM device_tokens").await;
    expect_error(
        pair(&app, &code.code, "other").await,
        StatusCode::BAD_REQUEST,
        "invalid_pairing_code",
    )
    .await;
    assert_eq!(count(&app, "SELECT count(*) FROM device_tokens").await, tokens);
}

#[tokio::test]
async fn wrong_malformed_and_expired_codes_are_refused_alike() {
    let app = TestApp::start().await;
    let code = cashier_code(&app, "late@duka.test").await;
    let users = count(&app, "SELECT count(*) FROM users").await;
    expect_error(
        pair(&app, "22222-22222", "x").await,
        StatusCode::BAD_REQUEST,
        "invalid_pairing_code",
    )
    .await;
    expect_error(
        pair(&app, "not a code", "x").await,
        StatusCode::BAD_REQUEST,
        "invalid_pairing_code",
    )
    .await;
    sqlx::query("UPDATE pairing_codes SET expires_at = now() - interval '1 second'")
        .execute(&app.db)
        .await
        .unwrap();
    expect_error(
        pair(&app, &code.code, "x").await,
        StatusCode::BAD_REQUEST,
        "invalid_pairing_code",
    )
    .await;
    assert_eq!(
        count(&app, "SELECT count(*) FROM users").await,
        users,
        "no user was created"
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM pairing_codes WHERE used_at IS NOT NULL").await,
        0
    );
}

#[tokio::test]
async fn guessing_is_bounded_per_address_with_429_and_retry_after() {
    let app = TestApp::start_with(&[("DUKASYNC_PAIR_ATTEMPTS_PER_IP", "3")]).await;
    let code = cashier_code(&app, "guess@duka.test").await;
    for _ in 0..3 {
        expect_error(
            pair(&app, "22222-22222", "x").await,
            StatusCode::BAD_REQUEST,
            "invalid_pairing_code",
        )
        .await;
    }
    let resp = pair(&app, &code.code, "x").await;
    let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    expect_error(resp, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
    assert_eq!(
        count(&app, "SELECT count(*) FROM pairing_codes WHERE used_at IS NULL").await,
        1,
        "the right code, sent past the limit, was not redeemed"
    );
}

#[tokio::test]
async fn concurrent_redemptions_of_one_code_yield_exactly_one_token() {
    let app = TestApp::start().await;
    let code = cashier_code(&app, "race@duka.test").await;
    let tasks: Vec<_> = (0..8)
        .map(|i| pair(&app, &code.code, if i % 2 == 0 { "a" } else { "b" }))
        .collect();
    let statuses: Vec<StatusCode> = futures_util::future::join_all(tasks)
        .await
        .iter()
        .map(|r| r.status())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::CREATED).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::BAD_REQUEST).count(),
        7,
        "{statuses:?}"
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM device_tokens WHERE label = 'paired'").await,
        1
    );
}

#[tokio::test]
async fn who_may_create_which_code() {
    let app = TestApp::start().await;
    let cashier = app.token(WATER_CASHIER, "water-counter").await;
    let manager = app.token(MANAGER, "manager-phone").await;
    let new_user = |role: &str| json!({"email": "new@duka.test", "name": "New", "role": role});

    expect_error(
        create_code(&app, &cashier, "water", new_user("cashier")).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    expect_error(
        create_code(&app, &manager, "laundry", new_user("owner")).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    // The manager runs laundry and retail, not water.
    expect_error(
        create_code(&app, &manager, "water", new_user("cashier")).await,
        StatusCode::NOT_FOUND,
        "scope_not_found",
    )
    .await;
    // A user of a scope the manager does not run, and an owner: their token would reach beyond the manager.
    let water_cashier = json!({"email": WATER_CASHIER, "role": "cashier"});
    expect_error(
        create_code(&app, &manager, "laundry", water_cashier).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let owner = json!({"email": OWNER, "role": "cashier"});
    expect_error(
        create_code(&app, &manager, "laundry", owner).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    expect_error(
        create_code(
            &app,
            &manager,
            "laundry",
            json!({"email": "x@duka.test", "role": "cashier"}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_name",
    )
    .await;
    expect_error(
        create_code(
            &app,
            &manager,
            "laundry",
            json!({"email": "nope", "name": "N", "role": "cashier"}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_email",
    )
    .await;
    expect_error(
        create_code(&app, &manager, "laundry", new_user("boss")).await,
        StatusCode::BAD_REQUEST,
        "invalid_role",
    )
    .await;
    assert_eq!(
        count(&app, "SELECT count(*) FROM pairing_codes").await,
        0,
        "nothing written"
    );

    let resp = create_code(&app, &manager, "laundry", new_user("cashier")).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn the_cli_creates_codes_a_phone_can_redeem() {
    let app = TestApp::start().await;
    let (ok, out, err) = cli(
        &app,
        &[
            "pairing-code",
            "--scope",
            "retail",
            "--email",
            "till@duka.test",
            "--name",
            "Till",
            "--role",
            "cashier",
        ],
    );
    assert!(ok, "{err}");
    let code = out.lines().next().unwrap();
    assert!(!err.contains(code), "the code goes to stdout only");
    let resp = pair(&app, code, "till").await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let (ok, _, err) = cli(
        &app,
        &[
            "pairing-code",
            "--scope",
            "nowhere",
            "--email",
            OWNER,
            "--role",
            "cashier",
        ],
    );
    assert!(!ok && err.contains("scope_not_found"), "{err}");
}
