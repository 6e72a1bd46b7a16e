//! Waiting on observable lock states (`pg_stat_activity`), never on sleeps: a task parked behind a transaction
//! the test holds open, replays queued behind a lock.

use super::TestApp;
use sqlx::PgPool;
use std::time::{Duration, Instant};

/// Waits until some transaction of this database waits for a lock, seen in `pg_stat_activity`: the observable
/// state in which `blocked` (a task that must wait for a transaction the test holds open) is parked. Fails at once
/// if `blocked` finished instead.
pub async fn wait_until_blocked_on_a_lock<T>(db: &PgPool, blocked: &tokio::task::JoinHandle<T>) {
    assert!(
        blocked_or_finished(db, blocked).await,
        "the second insert did not wait for the first"
    );
}

/// Waits until some transaction of this database waits for a lock (true: `task` is parked behind a transaction
/// the test holds open) or `task` has finished without waiting (false).
pub async fn blocked_or_finished<T>(db: &PgPool, task: &tokio::task::JoinHandle<T>) -> bool {
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(db)
        .await
        .unwrap();
        if waiting > 0 {
            return true;
        }
        if task.is_finished() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until `count` replay transactions wait for a lock (one the test holds), seen in `pg_stat_activity`.
pub async fn wait_for_replays_on_lock(app: &TestApp, count: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%replay_clients%'",
        )
        .fetch_one(&app.db)
        .await
        .unwrap();
        if waiting >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{waiting} of {count} replay transactions waited for a lock"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
