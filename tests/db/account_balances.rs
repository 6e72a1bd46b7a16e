//! `account_balances` (migration 0008): the running sum of each account's journal lines that the dashboard
//! summary reads instead of summing the whole history. It must equal the sum of the lines whatever writes them
//! (the server's own writers are covered by every test of `tests/api/money.rs`), under concurrent writers, and after
//! the migration runs on a database that already holds lines.

use crate::common::*;
use rust_decimal::Decimal;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

const MIGRATION: &str = include_str!("../../migrations/20261125000008_ledger_running_balances.sql");

/// Posts, in `tx`, a balanced entry in `scope`: `amount` debited to `debit_account`, credited to `credit_account`.
async fn post_in(
    tx: &mut Transaction<'_, Postgres>,
    scope: &str,
    debit_account: &str,
    credit_account: &str,
    amount: &str,
) {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO journal_entries (scope_id, id, kind, source_collection, source_key, occurred_at)
         VALUES ($1, $2, 'test', 'sales', 'x', now())",
    )
    .bind(scope)
    .bind(id)
    .execute(&mut **tx)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO journal_lines (scope_id, entry_id, line_no, account, debit, credit)
         VALUES ($1, $2, 1, $3, $5::numeric, 0), ($1, $2, 2, $4, 0, $5::numeric)",
    )
    .bind(scope)
    .bind(id)
    .bind(debit_account)
    .bind(credit_account)
    .bind(amount)
    .execute(&mut **tx)
    .await
    .unwrap();
}

async fn post(db: &PgPool, scope: &str, debit_account: &str, credit_account: &str, amount: &str) {
    let mut tx = db.begin().await.unwrap();
    post_in(&mut tx, scope, debit_account, credit_account, amount).await;
    tx.commit().await.unwrap();
}

async fn balance(db: &PgPool, scope: &str, account: &str) -> Decimal {
    sqlx::query_scalar::<_, Decimal>("SELECT balance FROM account_balances WHERE scope_id = $1 AND account = $2")
        .bind(scope)
        .bind(account)
        .fetch_optional(db)
        .await
        .unwrap()
        .unwrap_or_default()
}

#[tokio::test]
async fn inserts_updates_and_deletes_of_lines_keep_the_balance_equal_to_their_sum() {
    let db = demo_database().await;
    let cash = balance(&db, "retail", "1000").await;
    post(&db, "retail", "1000", "4000", "150.50").await;
    post(&db, "retail", "1010", "4000", "99.99").await;
    post(&db, "water", "1000", "4000", "20.00").await;
    assert_eq!(balance(&db, "retail", "1000").await, cash + dec("150.50"));
    assert_eq!(account_balance_mismatches(&db).await, vec![]);

    // Lines are never changed by the server, but the balance follows whatever code does (here, inside one
    // transaction that keeps every entry balanced: moving both sides of an entry to other accounts).
    let mut tx = db.begin().await.unwrap();
    sqlx::query(
        "UPDATE journal_lines SET account = CASE account WHEN '1010' THEN '1100' ELSE '4100' END, \
                debit = debit * 2, credit = credit * 2 \
          WHERE scope_id = 'retail' AND entry_id IN \
                (SELECT entry_id FROM journal_lines WHERE scope_id = 'retail' AND account = '1010')",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(balance(&db, "retail", "1010").await, Decimal::ZERO);
    assert_eq!(account_balance_mismatches(&db).await, vec![]);
    sqlx::query("DELETE FROM journal_entries WHERE scope_id = 'water'")
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(balance(&db, "water", "1000").await, Decimal::ZERO);
    assert_eq!(account_balance_mismatches(&db).await, vec![]);

    // Deleting a scope cascades to its lines and balances, in whatever order, without an error.
    sqlx::query("DELETE FROM scopes WHERE id = 'retail'")
        .execute(&db)
        .await
        .unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM account_balances WHERE scope_id = 'retail'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(left, 0);
    assert_eq!(account_balance_mismatches(&db).await, vec![]);
}

#[tokio::test]
async fn the_migration_fills_the_balances_of_a_database_that_already_holds_lines() {
    let db = demo_database().await;
    // The database as the previous release left it: lines, their account index, no balances or triggers yet.
    sqlx::raw_sql(
        "DROP TABLE account_balances CASCADE;
         DROP FUNCTION account_balances_add, account_balances_remove CASCADE;
         DROP INDEX stock_movements_source;
         CREATE INDEX journal_lines_account ON journal_lines (scope_id, account);
         CREATE INDEX stock_movements_product ON stock_movements (scope_id, product_id);",
    )
    .execute(&db)
    .await
    .unwrap();
    post(&db, "retail", "1000", "4000", "10.00").await;
    post(&db, "laundry", "1020", "4000", "5.25").await;
    let accounts: i64 = sqlx::query_scalar("SELECT count(DISTINCT (scope_id, account)) FROM journal_lines")
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(accounts > 2, "the demo data has lines of its own");

    let mut tx = db.begin().await.unwrap();
    sqlx::raw_sql(MIGRATION).execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();

    let balances: i64 = sqlx::query_scalar("SELECT count(*) FROM account_balances")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(balances, accounts);
    assert_eq!(account_balance_mismatches(&db).await, vec![]);
    post(&db, "retail", "1000", "4000", "1.00").await;
    assert_eq!(account_balance_mismatches(&db).await, vec![]);
}

/// How much `account` and the revenue account `4000` of `retail` moved after two transactions post to both at
/// once: the first holds its insert open while the second's insert is observed waiting on it, then the first
/// commits and the second follows.
async fn two_concurrent_posts(db: &PgPool, account: &str) -> (Decimal, Decimal) {
    let before = (
        balance(db, "retail", account).await,
        balance(db, "retail", "4000").await,
    );
    let mut first = db.begin().await.unwrap();
    post_in(&mut first, "retail", account, "4000", "10.00").await;
    let second = {
        let db = db.clone();
        let account = account.to_string();
        tokio::spawn(async move { post(&db, "retail", &account, "4000", "1.00").await })
    };
    wait_until_blocked_on_a_lock(db, &second).await;
    first.commit().await.unwrap();
    second.await.unwrap();
    (
        balance(db, "retail", account).await - before.0,
        balance(db, "retail", "4000").await - before.1,
    )
}

#[tokio::test]
async fn concurrent_posts_to_one_account_both_count() {
    let db = demo_database().await;
    let both = (dec("11.00"), dec("-11.00"));
    assert_eq!(two_concurrent_posts(&db, "1000").await, both);
    // An account without a balance row yet: both inserts race to create it.
    assert_eq!(two_concurrent_posts(&db, "1999").await, both);
    assert_eq!(account_balance_mismatches(&db).await, vec![]);
}

/// The same scenario against a trigger that reads the balance and writes it back (read committed: the second
/// transaction reads before the first commits) loses the first post on the account it updates first (the other
/// one it reads after the first committed): the test above would catch it.
#[tokio::test]
async fn a_read_then_write_balance_loses_a_concurrent_post() {
    let db = demo_database().await;
    // The balance rows exist (this variant only updates them).
    post(&db, "retail", "1000", "4000", "1.00").await;
    sqlx::raw_sql(
        r#"CREATE OR REPLACE FUNCTION account_balances_add() RETURNS trigger LANGUAGE plpgsql AS $$
           DECLARE r record; current numeric;
           BEGIN
               FOR r IN SELECT scope_id, account, sum(debit - credit) AS b FROM added GROUP BY 1, 2 LOOP
                   SELECT balance INTO current FROM account_balances
                    WHERE scope_id = r.scope_id AND account = r.account;
                   UPDATE account_balances SET balance = coalesce(current, 0) + r.b
                    WHERE scope_id = r.scope_id AND account = r.account;
               END LOOP;
               RETURN NULL;
           END $$"#,
    )
    .execute(&db)
    .await
    .unwrap();
    assert_ne!(two_concurrent_posts(&db, "1000").await, (dec("11.00"), dec("-11.00")));
    assert_ne!(account_balance_mismatches(&db).await, vec![]);
}
