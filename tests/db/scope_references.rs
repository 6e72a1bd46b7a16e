//! The feed's tables (`changes`, `records`) name an existing scope (migration 0011): checked once per statement
//! by a trigger instead of per row by a foreign key, with the same rule. A row naming an unknown scope is refused,
//! scope ids do not change, deleting a scope deletes its feed rows, and a scope cannot be deleted under a writer
//! that is still open: the check's lock, shown below to be what prevents left-behind rows.

use crate::common::*;
use sqlx::{PgPool, Postgres, Transaction};

/// Inserts one change and its record for `key` in `scope` straight into the tables, as a writer that does not
/// lock the scope's head would (the server's writers also update the head, which locks the scope anyway).
async fn insert_row(tx: &mut Transaction<'_, Postgres>, scope: &str, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO changes (scope_id, version, collection, key, op, data, tag, checksum_after, count_after)
         VALUES ($1, 1000000, 'customers', $2, 'upsert', '{}', 1, 0, 0)",
    )
    .bind(scope)
    .bind(key)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO records (scope_id, collection, key, data, version, row_hash)
         VALUES ($1, 'customers', $2, '{}', 1000000, 0)",
    )
    .bind(scope)
    .bind(key)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Feed rows of `scope` in both tables.
async fn feed_rows(db: &PgPool, scope: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM changes WHERE scope_id = $1) + (SELECT count(*) FROM records WHERE scope_id = $1)",
    )
    .bind(scope)
    .fetch_one(db)
    .await
    .unwrap()
}

fn sqlstate(e: &sqlx::Error) -> (String, Option<String>) {
    let db = e.as_database_error().expect("a database error");
    (
        db.code().unwrap_or_default().into_owned(),
        db.constraint().map(str::to_owned),
    )
}

async fn refused(db: &PgPool, sql: &str) -> String {
    let e = sqlx::query(sql).execute(db).await.expect_err(sql);
    sqlstate(&e).0
}

#[tokio::test]
async fn a_feed_row_naming_an_unknown_scope_is_refused_and_nothing_is_written() {
    let db = demo_database().await;
    let changes_before: i64 = sqlx::query_scalar("SELECT count(*) FROM changes")
        .fetch_one(&db)
        .await
        .unwrap();
    for table in ["changes", "records"] {
        // One good row and one bad one in the same statement: the statement fails whole.
        let sql = if table == "changes" {
            "INSERT INTO changes (scope_id, version, collection, key, op, data, tag, checksum_after, count_after)
             VALUES ('retail', 1000000, 'customers', 'k', 'upsert', '{}', 1, 0, 0),
                    ('nowhere', 1, 'customers', 'k', 'upsert', '{}', 1, 0, 0)"
        } else {
            "INSERT INTO records (scope_id, collection, key, data, version, row_hash)
             VALUES ('retail', 'customers', 'k', '{}', 1000000, 0), ('nowhere', 'customers', 'k', '{}', 1, 0)"
        };
        let e = sqlx::query(sql).execute(&db).await.expect_err(table);
        assert_eq!(
            sqlstate(&e),
            ("23503".into(), Some(format!("{table}_scope_id_fkey"))),
            "{table}: {e}"
        );
    }
    let changes_after: i64 = sqlx::query_scalar("SELECT count(*) FROM changes")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(changes_after, changes_before);
    assert_eq!(feed_rows(&db, "nowhere").await, 0);

    // The same rows with a known scope go in: the refusal was about the scope.
    let mut tx = db.begin().await.unwrap();
    insert_row(&mut tx, "water", "k").await.unwrap();
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn scope_ids_do_not_change_and_deleting_a_scope_deletes_its_feed_rows() {
    let db = demo_database().await;
    assert_eq!(
        refused(&db, "UPDATE records SET scope_id = 'water' WHERE scope_id = 'retail'").await,
        "23503"
    );
    assert_eq!(
        refused(&db, "UPDATE changes SET scope_id = 'water' WHERE scope_id = 'retail'").await,
        "23503"
    );
    assert_eq!(
        refused(&db, "UPDATE scopes SET id = 'shop' WHERE id = 'retail'").await,
        "23503"
    );
    assert_eq!(refused(&db, "TRUNCATE scopes CASCADE").await, "0A000");
    // A delete whose snapshot could miss a writer's committed rows is refused.
    let mut tx = db.begin().await.unwrap();
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await
        .unwrap();
    let e = sqlx::query("DELETE FROM scopes WHERE id = 'retail'")
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).0, "0A000");
    tx.rollback().await.unwrap();

    let water = feed_rows(&db, "water").await;
    assert!(feed_rows(&db, "retail").await > 0 && water > 0);
    sqlx::query("DELETE FROM scopes WHERE id = 'retail'")
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(feed_rows(&db, "retail").await, 0);
    assert_eq!(feed_rows(&db, "water").await, water, "other scopes keep theirs");
}

/// A writer holds feed rows of `scope` uncommitted while another transaction deletes the scope; then the writer
/// commits. Returns the scope's feed rows left at the end, and whether the delete waited for the writer.
async fn delete_under_an_open_writer(db: &PgPool, scope: &'static str) -> (i64, bool) {
    let mut writer = db.begin().await.unwrap();
    insert_row(&mut writer, scope, "written-before-the-delete")
        .await
        .unwrap();
    let delete = {
        let db = db.clone();
        tokio::spawn(async move {
            sqlx::query("DELETE FROM scopes WHERE id = $1")
                .bind(scope)
                .execute(&db)
                .await
                .unwrap();
        })
    };
    let waited = blocked_or_finished(db, &delete).await;
    writer.commit().await.unwrap();
    delete.await.unwrap();
    (feed_rows(db, scope).await, waited)
}

/// A transaction deletes `scope` and holds it uncommitted while a writer inserts feed rows for it; then the
/// delete commits. Returns the writer's outcome, whether it waited for the delete, and the scope's feed rows left.
async fn write_under_an_open_delete(db: &PgPool, scope: &'static str) -> (Result<(), sqlx::Error>, bool, i64) {
    let mut delete = db.begin().await.unwrap();
    sqlx::query("DELETE FROM scopes WHERE id = $1")
        .bind(scope)
        .execute(&mut *delete)
        .await
        .unwrap();
    let writer = {
        let db = db.clone();
        tokio::spawn(async move {
            let mut tx = db.begin().await?;
            insert_row(&mut tx, scope, "written-after-the-delete").await?;
            tx.commit().await
        })
    };
    let waited = blocked_or_finished(db, &writer).await;
    delete.commit().await.unwrap();
    let outcome = writer.await.unwrap();
    (outcome, waited, feed_rows(db, scope).await)
}

#[tokio::test]
async fn a_scope_deleted_under_an_open_writer_waits_for_it_and_takes_its_rows() {
    let db = demo_database().await;
    assert_eq!(delete_under_an_open_writer(&db, "retail").await, (0, true));
}

#[tokio::test]
async fn a_writer_that_waited_for_a_delete_of_its_scope_is_refused() {
    let db = demo_database().await;
    let (outcome, waited, left) = write_under_an_open_delete(&db, "retail").await;
    assert_eq!(
        sqlstate(&outcome.unwrap_err()),
        ("23503".into(), Some("changes_scope_id_fkey".into()))
    );
    assert_eq!((waited, left), (true, 0));
}

/// The same two races against a check that looks for the scope without locking it: neither side waits for the
/// other, and both leave feed rows of a scope that no longer exists. The two tests above would catch it.
#[tokio::test]
async fn without_the_lock_both_races_leave_rows_of_a_deleted_scope() {
    let db = demo_database().await;
    sqlx::raw_sql(
        r#"CREATE OR REPLACE FUNCTION feed_scope_must_exist() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
               IF EXISTS (SELECT 1 FROM added a WHERE NOT EXISTS (SELECT 1 FROM scopes s WHERE s.id = a.scope_id))
               THEN RAISE EXCEPTION 'no scope' USING ERRCODE = 'foreign_key_violation';
               END IF;
               RETURN NULL;
           END $$"#,
    )
    .execute(&db)
    .await
    .unwrap();
    assert_eq!(delete_under_an_open_writer(&db, "retail").await, (2, false));
    let (outcome, waited, left) = write_under_an_open_delete(&db, "water").await;
    assert!(outcome.is_ok());
    assert_eq!((waited, left), (false, 2));
}
