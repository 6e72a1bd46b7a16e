//! A sale reads the ledger by key, however small the journal tables looked when the connection planned its
//! statements (migration 0010, `replay`). A plan is kept for the life of a connection until the table's
//! statistics change; plans made while the tables looked empty read the whole ledger on every later sale, until
//! autovacuum analyzed the tables again. Here the tables are analyzed while nearly empty, autovacuum is kept off
//! them, plans are made, the ledger grows by `GROWTH` entries, and one more sale must read none of them by a
//! sequential scan. Without the fixes, that sale read every entry and line (tests below say how much).

use crate::common::*;
use dukasync::wire::OpStatus;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

const GROWTH: i64 = 20_000;
const JOURNAL: &[&str] = &["journal_entries", "journal_lines"];

/// `GROWTH` balanced entries of two lines, posted in one statement by a connection that reads by index itself.
async fn grow_ledger(url: &str) {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query(
        r#"WITH ids AS (SELECT gen_random_uuid() AS id FROM generate_series(1, $1)),
           e AS (INSERT INTO journal_entries (scope_id, id, kind, source_collection, source_key, occurred_at)
                 SELECT 'retail', id, 'test', 'sales', id::text, now() FROM ids)
           INSERT INTO journal_lines (scope_id, entry_id, line_no, account, debit, credit)
           SELECT 'retail', id, n, CASE n WHEN 1 THEN '1000' ELSE '4000' END,
                  CASE n WHEN 1 THEN 1 ELSE 0 END, CASE n WHEN 1 THEN 0 ELSE 1 END
             FROM ids, generate_series(1, 2) AS n"#,
    )
    .bind(GROWTH)
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
}

/// Rows read by sequential scans of the two journal tables, as the statistics collector has them.
async fn ledger_rows_scanned(db: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT sum(seq_tup_read)::bigint FROM pg_stat_user_tables WHERE relname IN ('journal_entries', 'journal_lines')",
    )
    .fetch_one(db)
    .await
    .unwrap()
}

fn sale(seq: i64) -> Value {
    command(
        seq,
        "record_sale",
        &format!("plan-sale-{seq}"),
        json!({"lines": [{"product_id": "r-sugar-1kg", "quantity": "1", "unit_price": "180.00"}],
               "payments": [{"method": "cash", "amount": "180.00"}]}),
    )
}

#[tokio::test]
async fn a_push_reads_no_ledger_table_sequentially_after_the_ledger_grew() {
    let (app, db) = start_with_small_statistics(JOURNAL).await;
    let device = Device::new(&app, "cashier.shop@duka.test", "till", "retail").await;
    // More than five sales per connection: PostgreSQL keeps a generic plan from the sixth execution on.
    let warm_up = 16;
    for seq in 1..=warm_up {
        let answer = device.push(&[sale(seq)]).await;
        assert_eq!(answer.results[0].status, OpStatus::Applied, "{answer:?}");
    }
    grow_ledger(&app.database_url).await;
    let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM journal_entries")
        .fetch_one(&db)
        .await
        .unwrap();
    wait_for_reported(&db, "journal_entries", "n_tup_ins", entries).await;
    let before = ledger_rows_scanned(&db).await;

    for seq in warm_up + 1..=warm_up + 2 {
        let answer = device.push(&[sale(seq)]).await;
        assert_eq!(answer.results[0].status, OpStatus::Applied, "{answer:?}");
    }
    wait_for_reported(&db, "journal_entries", "n_tup_ins", entries + 2).await;
    let scanned = ledger_rows_scanned(&db).await - before;
    // With plans made to scan, the two sales read 240,210 journal rows (80,070 with only migration 0010: the
    // foreign-key checks, planned in the replay's session).
    assert!(
        scanned < 100,
        "two sales read {scanned} journal rows by sequential scans"
    );
    app.stop().await.unwrap();
}

/// Any writer, not only the server: the balance checks at commit (migration 0010's function settings) read an
/// entry's lines by key although this connection planned them while the ledger was nearly empty.
#[tokio::test]
async fn the_balance_checks_read_by_key_for_any_writer() {
    let url = fresh_database().await;
    let db = PgPool::connect(&url).await.unwrap();
    dukasync::demo::load(&db).await.unwrap();
    freeze_small_statistics(&db, JOURNAL).await;
    // One connection with PostgreSQL's default settings posts sales: its plans are made now.
    let mut writer = PgConnection::connect(&url).await.unwrap();
    for _ in 0..8 {
        let mut tx = writer.begin().await.unwrap();
        post_sale(&mut tx).await;
        tx.commit().await.unwrap();
    }
    grow_ledger(&url).await;

    let mut tx = writer.begin().await.unwrap();
    post_sale(&mut tx).await;
    let before = scanned_in_transaction(&mut tx).await;
    // The deferred balance checks run here, and only they.
    sqlx::query("SET CONSTRAINTS ALL IMMEDIATE")
        .execute(&mut *tx)
        .await
        .unwrap();
    let scanned = scanned_in_transaction(&mut tx).await - before;
    tx.commit().await.unwrap();
    // With the plans of migrations 0004 and 0009, the check read every entry and every line here (60,027 rows).
    assert!(
        scanned < 100,
        "the balance check of one entry read {scanned} journal rows by sequential scans"
    );
}

/// An entry with its two lines in one statement, as the server posts them.
async fn post_sale(tx: &mut PgConnection) {
    sqlx::query(
        r#"WITH e AS (INSERT INTO journal_entries (scope_id, id, kind, source_collection, source_key, occurred_at)
                      VALUES ('retail', $1, 'test', 'sales', $1::text, now()))
           INSERT INTO journal_lines (scope_id, entry_id, line_no, account, debit, credit)
           VALUES ('retail', $1, 1, '1000', 5, 0), ('retail', $1, 2, '4000', 0, 5)"#,
    )
    .bind(Uuid::new_v4())
    .execute(tx)
    .await
    .unwrap();
}

/// Rows this transaction has read so far by sequential scans of the two journal tables.
async fn scanned_in_transaction(tx: &mut PgConnection) -> i64 {
    sqlx::query_scalar(
        "SELECT sum(seq_tup_read)::bigint FROM pg_stat_xact_user_tables
          WHERE relname IN ('journal_entries', 'journal_lines')",
    )
    .fetch_one(tx)
    .await
    .unwrap()
}
