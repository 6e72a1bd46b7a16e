//! The database refuses an unbalanced journal entry at commit, whatever code writes it (the deferred constraint
//! triggers of migration 0004, whose functions migration 0007 made one query each): every way an entry can be
//! touched after the fact is covered here, not only the insert of a new entry.

use crate::common::*;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

async fn entry(tx: &mut Transaction<'_, Postgres>, lines: &[(i32, &str, &str)]) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO journal_entries (scope_id, id, kind, source_collection, source_key, occurred_at)
         VALUES ('water', $1, 'test', 'sales', 'x', now())",
    )
    .bind(id)
    .execute(&mut **tx)
    .await
    .unwrap();
    for line in lines {
        add_line(tx, id, *line).await;
    }
    id
}

/// A line: (number, debit, credit).
async fn add_line(tx: &mut Transaction<'_, Postgres>, entry: Uuid, line: (i32, &str, &str)) {
    try_add_line(tx, entry, line).await.unwrap();
}

async fn try_add_line(
    tx: &mut Transaction<'_, Postgres>,
    entry: Uuid,
    (no, debit, credit): (i32, &str, &str),
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO journal_lines (scope_id, entry_id, line_no, account, debit, credit)
         VALUES ('water', $1, $2, '1000', $3::numeric, $4::numeric)",
    )
    .bind(entry)
    .bind(no)
    .bind(debit)
    .bind(credit)
    .execute(&mut **tx)
    .await
    .map(|_| ())
}

/// Lines 3 and 4 of `entry`, debit and credit of 5.00: balanced between themselves.
async fn try_add_balanced_pair(tx: &mut Transaction<'_, Postgres>, entry: Uuid) -> Result<(), sqlx::Error> {
    try_add_line(tx, entry, (3, "5.00", "0")).await?;
    try_add_line(tx, entry, (4, "0", "5.00")).await
}

fn refused(result: Result<(), sqlx::Error>) -> bool {
    match result {
        Err(e) => {
            assert!(e.to_string().contains("unbalanced"), "{e}");
            true
        }
        Ok(()) => false,
    }
}

#[tokio::test]
async fn every_way_of_unbalancing_an_entry_is_refused_at_commit_and_balanced_ones_commit() {
    let db = demo_database().await;

    // Lines inserted one by one, balanced only at the end: the check waits for the commit.
    let mut tx = db.begin().await.unwrap();
    let kept = entry(&mut tx, &[(1, "100.00", "0")]).await;
    add_line(&mut tx, kept, (2, "0", "100.00")).await;
    tx.commit().await.expect("a balanced entry commits");

    let mut tx = db.begin().await.unwrap();
    entry(&mut tx, &[(1, "100.00", "0"), (2, "0", "99.99")]).await;
    assert!(refused(tx.commit().await), "debits and credits differ");

    let mut tx = db.begin().await.unwrap();
    entry(&mut tx, &[(1, "100.00", "0")]).await;
    assert!(refused(tx.commit().await), "one line is no entry");

    let mut tx = db.begin().await.unwrap();
    entry(&mut tx, &[]).await;
    assert!(refused(tx.commit().await), "an entry without lines");

    // The committed entry, touched later by its lines alone. Lines are added only by the transaction that posts
    // the entry (migration 0009), so even a balanced pair is refused, at once.
    let mut tx = db.begin().await.unwrap();
    let err = try_add_line(&mut tx, kept, (3, "5.00", "0")).await.unwrap_err();
    assert!(err.to_string().contains("posted by an earlier transaction"), "{err}");
    drop(tx);
    let mut tx = db.begin().await.unwrap();
    let added = async {
        try_add_line(&mut tx, kept, (3, "5.00", "0")).await?;
        try_add_line(&mut tx, kept, (4, "0", "5.00")).await
    };
    assert!(
        added.await.is_err(),
        "a balanced pair of lines added to a committed entry"
    );
    drop(tx);

    // Code that re-opens the entry (its posting transaction set to its own) may add lines: the entry's own check
    // then runs at commit.
    let reopen = "UPDATE journal_entries SET posted_in = pg_current_xact_id(), posted_at = now() WHERE id = $1";
    let mut tx = db.begin().await.unwrap();
    sqlx::query(reopen).bind(kept).execute(&mut *tx).await.unwrap();
    add_line(&mut tx, kept, (3, "5.00", "0")).await;
    assert!(refused(tx.commit().await), "a line added to a re-opened entry");

    // An entry carrying this transaction's id but an earlier start, as one restored from a dump into another
    // cluster may (ids repeat across clusters): still refused, even a balanced pair.
    let mut tx = db.begin().await.unwrap();
    sqlx::query("UPDATE journal_entries SET posted_in = pg_current_xact_id(), posted_at = now() - interval '1 day' WHERE id = $1")
        .bind(kept)
        .execute(&mut *tx)
        .await
        .unwrap();
    let err = try_add_balanced_pair(&mut tx, kept).await.unwrap_err();
    assert!(err.to_string().contains("posted by an earlier transaction"), "{err}");
    drop(tx);

    // Lines moved to another entry: the one they joined still balances, the one they left has no lines.
    let mut tx = db.begin().await.unwrap();
    let other = entry(&mut tx, &[(1, "100.00", "0"), (2, "0", "100.00")]).await;
    tx.commit().await.expect("a second balanced entry commits");
    let mut tx = db.begin().await.unwrap();
    sqlx::query("UPDATE journal_lines SET entry_id = $2, line_no = line_no + 2 WHERE entry_id = $1")
        .bind(kept)
        .bind(other)
        .execute(&mut *tx)
        .await
        .unwrap();
    let err = tx.commit().await.unwrap_err().to_string();
    assert!(err.contains("unbalanced") && err.contains(&kept.to_string()), "{err}");
    sqlx::query("DELETE FROM journal_entries WHERE id = $1")
        .bind(other)
        .execute(&db)
        .await
        .unwrap();

    let mut tx = db.begin().await.unwrap();
    sqlx::query("UPDATE journal_lines SET debit = 90 WHERE entry_id = $1 AND line_no = 1")
        .bind(kept)
        .execute(&mut *tx)
        .await
        .unwrap();
    assert!(refused(tx.commit().await), "a line changed");

    let mut tx = db.begin().await.unwrap();
    sqlx::query("DELETE FROM journal_lines WHERE entry_id = $1 AND line_no = 2")
        .bind(kept)
        .execute(&mut *tx)
        .await
        .unwrap();
    assert!(refused(tx.commit().await), "a line deleted");

    // The entry deleted with its lines (cascade): nothing is left to balance.
    let mut tx = db.begin().await.unwrap();
    sqlx::query("DELETE FROM journal_entries WHERE id = $1")
        .bind(kept)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.expect("deleting a whole entry commits");

    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM journal_entries WHERE kind = 'test'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(left, 0, "only the deleted entry ever committed");
}
