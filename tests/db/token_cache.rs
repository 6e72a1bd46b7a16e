//! The token cache against a real PostgreSQL: concurrent requests of one token that miss share one check, and a
//! check that was running when the cache was cleared (a revocation heard) is not kept.
//!
//! A check records when the token was last seen (an UPDATE of its row), so the checks are counted by a trigger
//! on `device_tokens` that this test installs in its own database.

use crate::common::*;
use dukasync::auth::TokenCache;
use sqlx::PgPool;
use std::time::Duration;

async fn count_checks(db: &PgPool) {
    sqlx::raw_sql(
        r#"CREATE TABLE token_checks (n bigint NOT NULL);
           INSERT INTO token_checks VALUES (0);
           CREATE FUNCTION count_token_check() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN UPDATE token_checks SET n = n + 1; RETURN NULL; END $$;
           CREATE TRIGGER count_token_check AFTER UPDATE ON device_tokens
               FOR EACH ROW EXECUTE FUNCTION count_token_check();"#,
    )
    .execute(db)
    .await
    .unwrap();
}

/// A server with the demo data, a token of the owner's phone, and its checks counted.
async fn app_with_counted_checks() -> (TestApp, String) {
    let app = TestApp::start().await;
    let token = app.token(OWNER, "owner-phone").await;
    count_checks(&app.db).await;
    (app, token)
}

async fn checks(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT n FROM token_checks")
        .fetch_one(db)
        .await
        .unwrap()
}

#[tokio::test]
async fn concurrent_requests_of_one_token_share_one_check() {
    let (app, token) = app_with_counted_checks().await;
    let cache = TokenCache::new(Duration::from_secs(600));

    // join_all polls each call once before any can finish (each needs PostgreSQL), so all ten miss the cache.
    let answers = futures_util::future::join_all((0..10).map(|_| cache.authenticate(&app.db, &token))).await;
    let token_ids: Vec<_> = answers
        .into_iter()
        .map(|a| a.unwrap().expect("a valid token").token_id)
        .collect();
    assert!(token_ids.windows(2).all(|w| w[0] == w[1]), "{token_ids:?}");
    assert_eq!(
        checks(&app.db).await,
        1,
        "ten concurrent misses of one token, one check"
    );

    cache.authenticate(&app.db, &token).await.unwrap().unwrap();
    assert_eq!(checks(&app.db).await, 1, "then the cache answers");
    cache.clear();
    cache.authenticate(&app.db, &token).await.unwrap().unwrap();
    assert_eq!(checks(&app.db).await, 2, "after a clear, PostgreSQL again");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_check_running_when_the_cache_is_cleared_is_not_kept() {
    let (app, token) = app_with_counted_checks().await;
    let cache = std::sync::Arc::new(TokenCache::new(Duration::from_secs(600)));

    // Hold the token's row, so that a check waits for it; clear the cache (as a revocation's NOTIFY does) while
    // the check waits.
    let mut holder = app.db.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM device_tokens FOR UPDATE")
        .execute(&mut *holder)
        .await
        .unwrap();
    let check = tokio::spawn({
        let (cache, db, token) = (cache.clone(), app.db.clone(), token.clone());
        async move { cache.authenticate(&db, &token).await }
    });
    wait_until_blocked_on_a_lock(&app.db, &check).await;
    cache.clear();
    holder.rollback().await.unwrap();
    assert!(
        check.await.unwrap().unwrap().is_some(),
        "the waiting request gets its answer"
    );
    assert_eq!(checks(&app.db).await, 1);

    cache.authenticate(&app.db, &token).await.unwrap().unwrap();
    assert_eq!(
        checks(&app.db).await,
        2,
        "the answer of a check that began before the clear was not kept"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn with_the_cache_disabled_every_request_checks() {
    let (app, token) = app_with_counted_checks().await;
    let cache = TokenCache::new(Duration::ZERO);
    let answers = futures_util::future::join_all((0..3).map(|_| cache.authenticate(&app.db, &token))).await;
    assert!(answers.into_iter().all(|a| a.unwrap().is_some()));
    assert_eq!(
        checks(&app.db).await,
        3,
        "DUKASYNC_TOKEN_CACHE_SECS=0: no answer is shared or kept"
    );
    app.stop().await.unwrap();
}
