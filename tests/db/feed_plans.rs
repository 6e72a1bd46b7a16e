//! A push that deletes a row looks that row up by key, however few rows `records` held when the connection
//! planned its write. Replay plans its statements once per connection, generic (`replay`); the delete step
//! of the log write (`store::changes::LOG_CTES`) was planned, on a small table, as a scan of all of the scope's
//! records joined to the deleted keys, and kept that plan while the table grew, until autovacuum analyzed it
//! again. Here `records` is analyzed while small, autovacuum is kept off it, plans are made, the table grows by
//! `GROWTH` rows, and two pushes that each delete one row must read almost none of them.

use crate::common::*;
use dukasync::wire::OpStatus;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

const GROWTH: i64 = 20_000;

fn delete(seq: i64, key: &str) -> Value {
    json!({"seq": seq, "id": Uuid::new_v4(), "type": "delete", "collection": "customers", "key": key})
}

/// Rows of `records` read by sequential and index scans (bitmap scans included), as the statistics have them.
async fn records_rows_read(db: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT (seq_tup_read + coalesce(idx_tup_fetch, 0))::bigint FROM pg_stat_user_tables WHERE relname = 'records'",
    )
    .fetch_one(db)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_push_deleting_a_row_reads_no_other_record_after_the_table_grew() {
    let (app, db) = start_with_small_statistics(&["records"]).await;
    let device = Device::new(&app, "cashier.shop@duka.test", "till", "retail").await;
    let warm_up = 16;
    for seq in 1..=warm_up {
        let answer = device.push(&[put_customer(seq, &format!("plan-{seq}"))]).await;
        assert_eq!(answer.results[0].status, OpStatus::Applied, "{answer:?}");
    }

    sqlx::query(
        "INSERT INTO records (scope_id, collection, key, data, version, row_hash)
         SELECT 'retail', 'customers', 'grown-' || n, '{}', 1, 0 FROM generate_series(1, $1) AS n",
    )
    .bind(GROWTH)
    .execute(&db)
    .await
    .unwrap();
    // Every live row of every scope was inserted once (nothing was deleted yet); the test's own reads stay off
    // `records` (counting its rows would read them), so the collections' row counts say how many inserts to wait
    // for: then every backend has reported.
    let live: i64 = sqlx::query_scalar("SELECT sum(row_count)::bigint FROM collection_state")
        .fetch_one(&db)
        .await
        .unwrap();
    wait_for_reported(&db, "records", "n_tup_ins", live + GROWTH).await;
    let before = records_rows_read(&db).await;

    for (seq, key) in [(warm_up + 1, "plan-1"), (warm_up + 2, "plan-2")] {
        let answer = device.push(&[delete(seq, key)]).await;
        assert_eq!(answer.results[0].status, OpStatus::Applied, "{answer:?}");
        assert_eq!(answer.results[0].versions.len(), 1, "{answer:?}");
    }
    wait_for_reported(&db, "records", "n_tup_del", 2).await;
    let read = records_rows_read(&db).await - before;
    assert!(read < 100, "two pushes deleting one row each read {read} records");
    app.stop().await.unwrap();
}
