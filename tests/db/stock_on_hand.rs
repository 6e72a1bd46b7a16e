//! `stock_on_hand` (migration 0007): the running sum of each product's movements that commands read instead of
//! summing the whole history. It must equal the sum of movements whatever writes them, under concurrent
//! writers, and after the migration runs on a database that already holds movements.

use crate::common::*;
use dukasync::{
    domain::ScopeId,
    store::ledger::{self, Movement},
};
use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

const MIGRATION: &str = include_str!("../../migrations/20261125000007_stock_on_hand.sql");

fn movement(product: &str, quantity: i64) -> Movement {
    Movement {
        id: Uuid::new_v4(),
        product_id: product.into(),
        quantity: Decimal::from(quantity),
        reason: "adjustment",
        source_collection: "stock_adjustments",
        source_key: Uuid::new_v4().to_string(),
        op_id: None,
    }
}

async fn insert(db: &PgPool, scope: &str, movements: &[Movement]) {
    let mut tx = db.begin().await.unwrap();
    ledger::insert_movements(&mut tx, &ScopeId::parse(scope).unwrap(), movements)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

async fn on_hand(db: &PgPool, scope: &str, product: &str) -> Decimal {
    let scope = ScopeId::parse(scope).unwrap();
    let mut conn = db.acquire().await.unwrap();
    ledger::stock_levels(&mut conn, &scope, &[product]).await.unwrap()[product]
}

#[tokio::test]
async fn inserts_updates_and_deletes_of_movements_keep_the_balance_equal_to_their_sum() {
    let db = demo_database().await;
    let before = on_hand(&db, "retail", "r-sugar-1kg").await;
    // One statement naming a product twice, another product, another scope, a product never stocked before.
    insert(
        &db,
        "retail",
        &[
            movement("r-sugar-1kg", 5),
            movement("r-sugar-1kg", -2),
            movement("r-milk-500", 7),
            movement("r-new", 1),
        ],
    )
    .await;
    insert(&db, "water", &[movement("w-5l", -4)]).await;
    assert_eq!(on_hand(&db, "retail", "r-sugar-1kg").await, before + Decimal::from(3));
    assert_eq!(on_hand(&db, "retail", "r-new").await, Decimal::ONE);
    assert_eq!(on_hand(&db, "retail", "r-unknown").await, Decimal::ZERO);
    assert_eq!(stock_on_hand_mismatches(&db).await, vec![]);

    // Movements are never changed by the server, but the balance follows whatever code does.
    sqlx::query(
        "UPDATE stock_movements SET product_id = 'r-bread-400', quantity = quantity * 10 \
         WHERE scope_id = 'retail' AND product_id = 'r-milk-500' AND quantity = 7",
    )
    .execute(&db)
    .await
    .unwrap();
    sqlx::query("DELETE FROM stock_movements WHERE scope_id = 'retail' AND product_id = 'r-sugar-1kg'")
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(on_hand(&db, "retail", "r-sugar-1kg").await, Decimal::ZERO);
    assert_eq!(stock_on_hand_mismatches(&db).await, vec![]);

    // Deleting a scope cascades to its movements and balances, in whatever order, without an error.
    sqlx::query("DELETE FROM scopes WHERE id = 'retail'")
        .execute(&db)
        .await
        .unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM stock_on_hand WHERE scope_id = 'retail'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(left, 0);
    assert_eq!(stock_on_hand_mismatches(&db).await, vec![]);
}

#[tokio::test]
async fn the_migration_fills_the_balances_of_a_database_that_already_holds_movements() {
    let db = demo_database().await;
    // The database as the previous release left it: movements, and no balances or triggers yet.
    sqlx::query("DROP TABLE stock_on_hand CASCADE")
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("DROP FUNCTION stock_on_hand_add, stock_on_hand_remove CASCADE")
        .execute(&db)
        .await
        .unwrap();
    insert(&db, "retail", &[movement("r-sugar-1kg", 5), movement("r-sugar-1kg", 6)]).await;
    insert(&db, "laundry", &[movement("l-detergent", -1)]).await;
    let movements: i64 = sqlx::query_scalar("SELECT count(DISTINCT (scope_id, product_id)) FROM stock_movements")
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(movements > 2, "the demo data has movements of its own");

    let mut tx = db.begin().await.unwrap();
    sqlx::raw_sql(MIGRATION).execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();

    let balances: i64 = sqlx::query_scalar("SELECT count(*) FROM stock_on_hand")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(balances, movements);
    assert_eq!(stock_on_hand_mismatches(&db).await, vec![]);
    insert(&db, "retail", &[movement("r-sugar-1kg", 1)]).await;
    assert_eq!(stock_on_hand_mismatches(&db).await, vec![]);
}

/// The balance of `product` after two transactions add to it at once: the first holds its insert open while the
/// second's insert is observed waiting on it, then the first commits and the second follows.
async fn two_concurrent_movements(db: &PgPool, product: &str) -> Decimal {
    let scope = ScopeId::parse("retail").unwrap();
    let before = on_hand(db, "retail", product).await;
    let mut first = db.begin().await.unwrap();
    ledger::insert_movements(&mut first, &scope, &[movement(product, 10)])
        .await
        .unwrap();
    let second = {
        let db = db.clone();
        let scope = scope.clone();
        let product = product.to_string();
        tokio::spawn(async move {
            let mut tx = db.begin().await.unwrap();
            ledger::insert_movements(&mut tx, &scope, &[movement(&product, 1)])
                .await
                .unwrap();
            tx.commit().await.unwrap();
        })
    };
    wait_until_blocked_on_a_lock(db, &second).await;
    first.commit().await.unwrap();
    second.await.unwrap();
    on_hand(db, "retail", product).await - before
}

#[tokio::test]
async fn concurrent_movements_of_one_product_both_count() {
    let db = demo_database().await;
    assert_eq!(two_concurrent_movements(&db, "r-sugar-1kg").await, Decimal::from(11));
    // A product without a balance row yet: both inserts race to create it.
    assert_eq!(two_concurrent_movements(&db, "r-brand-new").await, Decimal::from(11));
    assert_eq!(stock_on_hand_mismatches(&db).await, vec![]);
}

/// The same scenario against a trigger that reads the balance and writes it back (read committed: the second
/// transaction reads before the first commits) loses the first movement: the test above would catch it.
#[tokio::test]
async fn a_read_then_write_balance_loses_a_concurrent_movement() {
    let db = demo_database().await;
    sqlx::raw_sql(
        r#"CREATE OR REPLACE FUNCTION stock_on_hand_add() RETURNS trigger LANGUAGE plpgsql AS $$
           DECLARE r record; current numeric;
           BEGIN
               FOR r IN SELECT scope_id, product_id, sum(quantity) AS q FROM added GROUP BY 1, 2 LOOP
                   SELECT quantity INTO current FROM stock_on_hand
                    WHERE scope_id = r.scope_id AND product_id = r.product_id;
                   UPDATE stock_on_hand SET quantity = coalesce(current, 0) + r.q
                    WHERE scope_id = r.scope_id AND product_id = r.product_id;
               END LOOP;
               RETURN NULL;
           END $$"#,
    )
    .execute(&db)
    .await
    .unwrap();
    assert_eq!(two_concurrent_movements(&db, "r-sugar-1kg").await, Decimal::ONE);
}
