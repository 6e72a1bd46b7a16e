//! A token check records when the token was last seen without waiting for the WAL flush.
//!
//! Counted with `pg_stat_wal.wal_sync`, which a synchronously committed write increments once per commit. The
//! counter is the cluster's, so the test runs alone in its binary (test binaries run one after the other), stops
//! every other connection to its database first, and makes its one connection publish its statistics before
//! each reading (`pg_stat_force_next_flush`: published before the call's answer is sent).

mod common;

use common::*;
use dukasync::auth::TokenCache;
use sqlx::{postgres::PgPoolOptions, PgPool};
use std::time::Duration;

/// WAL syncs of the cluster, with this connection's own counts published first.
async fn wal_syncs(one: &PgPool) -> i64 {
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(one)
        .await
        .unwrap();
    sqlx::query_scalar("SELECT wal_sync FROM pg_stat_wal")
        .fetch_one(one)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_token_check_does_not_wait_for_the_wal_flush() {
    let app = TestApp::start().await;
    let token = app.token(OWNER, "owner-phone").await;
    let url = app.database_url.clone();
    app.db.close().await;
    app.stop().await.unwrap();
    let one = PgPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
    // Every other backend of this database gone (their statistics published as they exited).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let others: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_one(&one)
        .await
        .unwrap();
        if others == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{others} other connections to the database after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seen = || async {
        sqlx::query_scalar::<_, Option<chrono::DateTime<chrono::Utc>>>("SELECT max(last_seen_at) FROM device_tokens")
            .fetch_one(&one)
            .await
            .unwrap()
    };

    let cache = TokenCache::new(Duration::from_secs(600));
    let before = (wal_syncs(&one).await, seen().await);
    for _ in 0..40 {
        cache.clear();
        cache.authenticate(&one, &token).await.unwrap().expect("a valid token");
    }
    let after = (wal_syncs(&one).await, seen().await);
    assert!(after.1 > before.1, "the checks recorded when the token was seen");
    // Each of the 40 checks commits a write: flushed at commit, that is 40 syncs at least. The WAL writer's own
    // flushes (every 200 ms by default) and the cluster's background work add a few.
    let syncs = after.0 - before.0;
    assert!(syncs < 20, "{syncs} WAL syncs for 40 token checks");
}
