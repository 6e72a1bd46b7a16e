//! Device tokens after enrollment (protocol §3.3): expiry, rotation with a grace period, and listing and
//! revoking from a phone.

use crate::common::*;
use dukasync::wire::{ErrorBody, IssuedToken, RevokedToken, TokenList};
use reqwest::StatusCode;
use std::time::{Duration, Instant};
use uuid::Uuid;

async fn token_id(app: &TestApp, token: &str) -> Uuid {
    sqlx::query_scalar("SELECT id FROM device_tokens WHERE token_hash = $1")
        .bind(&dukasync::auth::hash_token(token)[..])
        .fetch_one(&app.db)
        .await
        .unwrap()
}

async fn post(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    app.http.post(app.url(path)).bearer_auth(token).send().await.unwrap()
}

async fn code_of(resp: reqwest::Response) -> (StatusCode, String) {
    let status = resp.status();
    (status, resp.json::<ErrorBody>().await.unwrap().error.code)
}

/// Polls until `token` is refused; panics after `limit`.
async fn wait_until_refused(app: &TestApp, token: &str, limit: Duration) -> Instant {
    let deadline = Instant::now() + limit;
    loop {
        if app.get("/v1/scopes", Some(token)).await.status() == StatusCode::UNAUTHORIZED {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "token still accepted after {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_expired_device_token_is_refused() {
    let app = TestApp::start().await;
    let token = app.token(WATER_CASHIER, "water-counter").await;
    assert_eq!(app.get("/v1/scopes", Some(&token)).await.status(), StatusCode::OK);
    let other = app.token(WATER_CASHIER, "spare").await;
    sqlx::query("UPDATE device_tokens SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(token_id(&app, &other).await)
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(
        code_of(app.get("/v1/scopes", Some(&other)).await).await,
        (StatusCode::UNAUTHORIZED, "unauthorized".into())
    );
}

#[tokio::test]
async fn rotation_gives_a_new_token_and_the_old_one_dies_after_the_grace() {
    let grace = Duration::from_secs(3);
    let app = TestApp::start_with(&[
        ("DUKASYNC_ROTATION_GRACE_SECS", "3"),
        ("DUKASYNC_TOKEN_CACHE_SECS", "300"),
    ])
    .await;
    let old = app.token(WATER_CASHIER, "water-counter").await;
    assert_eq!(
        app.get("/v1/scopes", Some(&old)).await.status(),
        StatusCode::OK,
        "cached now"
    );
    let before = Instant::now();
    let resp = post(&app, "/v1/tokens/rotate", &old).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let new: IssuedToken = resp.json().await.unwrap();
    assert_ne!(new.token, old);
    assert_eq!(new.token_id, token_id(&app, &new.token).await);
    assert_eq!(app.get("/v1/scopes", Some(&new.token)).await.status(), StatusCode::OK);
    let device: Uuid = sqlx::query_scalar("SELECT device_id FROM device_tokens WHERE id = $1")
        .bind(token_id(&app, &old).await)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(device, new.device_id, "the same device");

    // In the grace period the old token still works (an outbox in flight is not stranded)...
    let status = app.get("/v1/scopes", Some(&old)).await.status();
    assert!(before.elapsed() < grace, "too slow to observe the grace period");
    assert_eq!(status, StatusCode::OK);
    // ...then it is refused (its cache entry was dropped by the rotation's notification), the new one is not.
    let refused_at = wait_until_refused(&app, &old, Duration::from_secs(20)).await;
    assert!(
        refused_at.duration_since(before) >= grace,
        "refused before the grace ended"
    );
    assert_eq!(app.get("/v1/scopes", Some(&new.token)).await.status(), StatusCode::OK);
    // An expired token cannot rotate.
    assert_eq!(
        code_of(post(&app, "/v1/tokens/rotate", &old).await).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn owners_list_and_revoke_tokens_of_their_scope_at_once() {
    // A long cache lifetime: only the revocation's notification can make it take effect in time.
    let app = TestApp::start_with(&[("DUKASYNC_TOKEN_CACHE_SECS", "300")]).await;
    let owner = app.token(OWNER, "owner-phone").await;
    let manager = app.token(MANAGER, "manager-phone").await;
    let cashier = app.token(WATER_CASHIER, "water-counter").await;
    let shop = app.token(SHOP_CASHIER, "shop-till").await;
    assert_eq!(
        app.get("/v1/scopes", Some(&cashier)).await.status(),
        StatusCode::OK,
        "cached now"
    );

    let resp = app.get("/v1/scopes/water/tokens", Some(&owner)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    assert!(!text.contains("dks_"), "never the tokens themselves");
    let list: TokenList = serde_json::from_str(&text).unwrap();
    let cashier_id = token_id(&app, &cashier).await;
    let entry = list
        .tokens
        .iter()
        .find(|t| t.id == cashier_id)
        .expect("the cashier's token is listed");
    assert_eq!(
        (entry.user_email.as_str(), entry.device_name.as_str()),
        (WATER_CASHIER, "water-counter")
    );
    assert!(entry.last_seen_at.is_some() && entry.revoked_at.is_none());
    assert!(
        list.tokens.iter().all(|t| t.user_email != SHOP_CASHIER),
        "not a member of water"
    );
    assert_eq!(
        code_of(app.get("/v1/scopes/water/tokens", Some(&cashier)).await)
            .await
            .0,
        StatusCode::FORBIDDEN
    );

    // Another scope's token is 404, as if it did not exist; so is a scope the caller does not see.
    let shop_id = token_id(&app, &shop).await;
    let resp = post(&app, &format!("/v1/scopes/water/tokens/{shop_id}/revoke"), &owner).await;
    assert_eq!(code_of(resp).await, (StatusCode::NOT_FOUND, "token_not_found".into()));
    let resp = post(&app, &format!("/v1/scopes/water/tokens/{cashier_id}/revoke"), &manager).await;
    assert_eq!(code_of(resp).await, (StatusCode::NOT_FOUND, "scope_not_found".into()));
    // A manager may not revoke an owner's token.
    let owner_id = token_id(&app, &owner).await;
    let resp = post(&app, &format!("/v1/scopes/retail/tokens/{owner_id}/revoke"), &manager).await;
    assert_eq!(code_of(resp).await, (StatusCode::FORBIDDEN, "forbidden".into()));
    assert_eq!(app.get("/v1/scopes", Some(&shop)).await.status(), StatusCode::OK);

    let resp = post(&app, &format!("/v1/scopes/water/tokens/{cashier_id}/revoke"), &owner).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let revoked: RevokedToken = resp.json().await.unwrap();
    assert!(revoked.revoked);
    wait_until_refused(&app, &cashier, Duration::from_secs(5)).await;
    let again: RevokedToken = post(&app, &format!("/v1/scopes/water/tokens/{cashier_id}/revoke"), &owner)
        .await
        .json()
        .await
        .unwrap();
    assert!(!again.revoked, "idempotent");
    assert_eq!(app.get("/v1/scopes", Some(&owner)).await.status(), StatusCode::OK);
}
