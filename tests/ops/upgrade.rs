//! Upgrades (deploy/UPGRADE.md): the next release's migrations run while this release's servers keep serving,
//! so they must only expand. This test applies an expand migration of the allowed kinds (a nullable column on
//! the change log, a new table, a new index) under a running server, as `dukasync migrate` of a newer binary
//! would, and shows that
//! - the running server answers exactly as before, pushes included;
//! - this binary still starts on the newer schema (it checks only that its own migrations are applied);
//! - this binary's `migrate` refuses the newer schema, so a rollback never runs it.
//!
//! A contract step taken too early (renaming a column this release reads) breaks the same checks: the test
//! would catch a migration that the running release does not tolerate.

use crate::common::*;
use dukasync::wire::{ChangesPage, ChecksumReport};
use reqwest::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};
use uuid::Uuid;

const NEXT_VERSION: i64 = 29_991_231_000_001;

/// Runs SQL as the next release's migration, recording it as sqlx does.
async fn apply_next_migration(app: &TestApp, sql: &str) {
    let mut tx = app.db.begin().await.unwrap();
    sqlx::raw_sql(sql).execute(&mut *tx).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ($1, 'next release', true, '\\x00'::bytea, 0)",
    )
    .bind(NEXT_VERSION)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

/// Everything a phone does: a push, a pull from zero, a checksum. Returns the statuses and the answers.
async fn phone_round(
    app: &TestApp,
    token: &str,
    key: &str,
) -> (Vec<StatusCode>, Option<(ChangesPage, ChecksumReport)>) {
    let push = app
        .http
        .post(app.url("/v1/scopes/water/ops"))
        .bearer_auth(token)
        .json(
            &json!({"client_id": Uuid::new_v4(), "ops": [{"seq": 1, "id": Uuid::new_v4(), "type": "put",
            "collection": "customers", "key": key, "data": {"id": key, "name": "Akinyi"}}]}),
        )
        .send()
        .await
        .unwrap()
        .status();
    let pull = app
        .get("/v1/scopes/water/changes?since=0&limit=1000", Some(token))
        .await;
    let checksum = app.get("/v1/scopes/water/checksum", Some(token)).await;
    let statuses = vec![push, pull.status(), checksum.status()];
    if statuses.iter().all(|s| *s == StatusCode::OK) {
        (
            statuses,
            Some((pull.json().await.unwrap(), checksum.json().await.unwrap())),
        )
    } else {
        (statuses, None)
    }
}

/// Starts the real binary on `url`; returns whether it reported listening (then stops it with SIGTERM), and
/// its log.
async fn binary_serves(url: &str) -> (bool, String) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_dukasync"))
        .arg("serve")
        .env("DUKASYNC_DATABASE_URL", url)
        .env("DUKASYNC_LISTEN", "127.0.0.1:0")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Ok(Ok(Some(line))) = tokio::time::timeout(deadline - Instant::now(), lines.next_line()).await {
        log.push_str(&line);
        log.push('\n');
        if line.contains("dukasync listening") {
            let pid = child.id().unwrap().to_string();
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap();
            let status = child.wait().await.unwrap();
            return (status.success(), log);
        }
    }
    let _ = child.wait().await;
    (false, log)
}

#[tokio::test]
async fn an_expand_migration_runs_under_a_serving_release_and_a_restart_or_rollback_is_safe() {
    let app = TestApp::start().await;
    let token = app.token(OWNER, "owner-phone").await;
    let (statuses, before) = phone_round(&app, &token, "c-before").await;
    assert!(before.is_some(), "{statuses:?}");

    apply_next_migration(
        &app,
        r#"ALTER TABLE changes ADD COLUMN origin_device uuid;
           CREATE TABLE next_release_things (id uuid PRIMARY KEY, scope_id text NOT NULL REFERENCES scopes (id));
           CREATE INDEX changes_by_commit_time ON changes (committed_at);"#,
    )
    .await;

    // The running release answers as before; the push and its change are there.
    let (statuses, after) = phone_round(&app, &token, "c-after").await;
    let (page, checksum) = after.unwrap_or_else(|| panic!("the release stopped working: {statuses:?}"));
    assert!(page.changes.iter().any(|c| c.key == "c-after"));
    assert_eq!(checksum.version, page.head);
    assert_eq!(page.changes.len(), before.unwrap().0.changes.len() + 1);

    // A restart of this release on the newer schema works (and a rolled-back binary is this one).
    let (served, log) = binary_serves(&app.database_url).await;
    assert!(served, "the binary refused a newer schema:\n{log}");

    // Its own `migrate` refuses the newer schema and changes nothing.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dukasync"))
        .arg("migrate")
        .env("DUKASYNC_DATABASE_URL", &app.database_url)
        .output()
        .unwrap();
    assert!(!out.status.success(), "an older migrate must not run on a newer schema");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE version = $1")
        .bind(NEXT_VERSION)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn a_contract_step_taken_too_early_breaks_the_same_checks() {
    let app = TestApp::start().await;
    let token = app.token(OWNER, "owner-phone").await;
    assert!(phone_round(&app, &token, "c-before").await.1.is_some());
    // Renaming a column this release reads is a contract step: it belongs after every server stopped reading it.
    apply_next_migration(&app, "ALTER TABLE changes RENAME COLUMN tag TO change_tag;").await;
    let (statuses, answers) = phone_round(&app, &token, "c-after").await;
    assert!(
        answers.is_none(),
        "the check must fail on an intolerable migration: {statuses:?}"
    );
}
