//! Query plans made against small statistics, for the plan guards (`tests/db/ledger_plans.rs`,
//! `tests/db/feed_plans.rs`), and the table counters they read.

use super::TestApp;
use sqlx::{postgres::PgPoolOptions, PgPool};
use std::time::{Duration, Instant};

/// A server with two pooled connections (the least it takes) whose plans will be made against small statistics:
/// `tables` are analyzed as they are now and kept from autovacuum. Also a one-connection pool for the test's own
/// statements, which never plan a sequential scan (they must not add to the scans the test counts).
/// tests/db/ledger_plans.rs and tests/db/feed_plans.rs grow a table after the server made its plans.
pub async fn start_with_small_statistics(tables: &[&str]) -> (TestApp, PgPool) {
    let app = TestApp::start_with(&[("DUKASYNC_DB_MAX_CONNECTIONS", "2")]).await;
    let db = PgPoolOptions::new()
        .max_connections(1)
        .after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::query("SET enable_seqscan = off").execute(conn).await?;
                Ok(())
            })
        })
        .connect(&app.database_url)
        .await
        .unwrap();
    freeze_small_statistics(&db, tables).await;
    (app, db)
}

/// Analyzes `tables` as they are and keeps autovacuum from analyzing them again.
pub async fn freeze_small_statistics(db: &PgPool, tables: &[&str]) {
    for table in tables {
        for sql in [
            format!("ALTER TABLE {table} SET (autovacuum_enabled = false)"),
            format!("ANALYZE {table}"),
        ] {
            sqlx::query(&sql).execute(db).await.unwrap();
        }
    }
}

/// Waits until the backends have reported `column` (a counter of `pg_stat_user_tables`) of `table` up to
/// `count`. A backend reports all its table counters at once, within a second of going idle, so the reads that
/// came with those writes are reported too.
pub async fn wait_for_reported(db: &PgPool, table: &str, column: &str, count: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reported: i64 = sqlx::query_scalar(&format!("SELECT {column} FROM pg_stat_user_tables WHERE relname = $1"))
            .bind(table)
            .fetch_one(db)
            .await
            .unwrap();
        if reported >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{reported} of {count} {column} of {table} reported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
