//! Backup and restore with the operator's own scripts (`deploy/backup.sh`, `deploy/restore.sh`), and what a
//! device experiences afterwards (deploy/BACKUP.md): back up, write more, restore into a fresh database, and
//! - a device that pulled past the backup gets 410 `reset_required` (`ahead_of_head` while the restored head is
//!   below its cursor, `unknown_history` once new writes have passed it), resets, and converges (checksum);
//! - a device whose cursor predates the backup goes on without a reset;
//! - a device whose acknowledged operations were lost gets 409 `sequence_gap` and goes on under a new client id.

use crate::common::*;
use dukasync::wire::{ChangeOp, ChangesPage, ChecksumReport, ErrorBody, OpStatus, OpsResponse};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Connection;
use std::{collections::BTreeMap, path::Path, process::Command};
use uuid::Uuid;

const SCOPE: &str = "water";

/// Runs a deploy/ script with the database tools of the test services; returns (success, stdout, stderr).
fn script(name: &str, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(name);
    let mut cmd = Command::new(&path);
    cmd.args(args).env_remove("DUKASYNC_DATABASE_URL");
    if let Some(bin) = service_env().get("DUKASYNC_PG_BIN") {
        cmd.env("DUKASYNC_PG_BIN", bin);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An empty database (not cloned from the migrated template): what an operator makes with `createdb`.
async fn empty_database() -> String {
    let mut url = url::Url::parse(&admin_url()).unwrap();
    let name = test_database_name();
    let mut conn = sqlx::PgConnection::connect(url.as_str()).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// A phone: a token, an outbox client id and sequence, a cursor, and its synced copy of the scope.
struct Phone {
    token: String,
    client_id: Uuid,
    next_seq: i64,
    cursor: String,
    copy: BTreeMap<(String, String), Value>,
}

impl Phone {
    async fn new(app: &TestApp, device: &str) -> Phone {
        Phone {
            token: app.token(OWNER, device).await,
            client_id: Uuid::new_v4(),
            next_seq: 1,
            cursor: "0".into(),
            copy: BTreeMap::new(),
        }
    }

    async fn push(&mut self, app: &TestApp, keys: &[&str]) -> reqwest::Response {
        let ops: Vec<Value> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                json!({"seq": self.next_seq + i as i64, "id": Uuid::new_v4(), "type": "put",
                       "collection": "customers", "key": key, "data": {"id": key, "name": "Otieno"}})
            })
            .collect();
        let resp = app
            .http
            .post(app.url(&format!("/v1/scopes/{SCOPE}/ops")))
            .bearer_auth(&self.token)
            .json(&json!({"client_id": self.client_id, "ops": ops}))
            .send()
            .await
            .unwrap();
        if resp.status() == StatusCode::OK {
            self.next_seq += keys.len() as i64;
        }
        resp
    }

    /// Pulls until `has_more` is false, applying each page; returns the first error, if any.
    async fn sync(&mut self, app: &TestApp) -> Result<(), (StatusCode, ErrorBody)> {
        loop {
            let resp = app
                .get(
                    &format!("/v1/scopes/{SCOPE}/changes?since={}&limit=7", self.cursor),
                    Some(&self.token),
                )
                .await;
            if resp.status() != StatusCode::OK {
                return Err((resp.status(), resp.json().await.unwrap()));
            }
            let page: ChangesPage = resp.json().await.unwrap();
            for c in &page.changes {
                let slot = (c.collection.clone(), c.key.clone());
                match c.op {
                    ChangeOp::Upsert => self.copy.insert(slot, c.data.clone().unwrap()),
                    ChangeOp::Delete => self.copy.remove(&slot),
                };
            }
            self.cursor = page.cursor;
            if !page.has_more {
                return Ok(());
            }
        }
    }

    /// The protocol's reset (§7.6): drop the synced copy, keep the outbox, cursor back to "0".
    fn reset(&mut self) {
        self.copy.clear();
        self.cursor = "0".into();
    }

    fn checksum(&self) -> u32 {
        self.copy
            .iter()
            .map(|((collection, key), data)| dukasync::domain::canonical::row_hash(collection, key, data))
            .fold(0u32, u32::wrapping_add)
    }
}

async fn server_checksum(app: &TestApp, token: &str) -> ChecksumReport {
    app.get(&format!("/v1/scopes/{SCOPE}/checksum"), Some(token))
        .await
        .json()
        .await
        .unwrap()
}

fn reset_reason(err: &(StatusCode, ErrorBody)) -> (StatusCode, &str, &str) {
    let details = err.1.error.details.as_ref().expect("reset details");
    (err.0, err.1.error.code.as_str(), details["reason"].as_str().unwrap())
}

/// A scratch directory for backups, removed when the test ends, failed or not.
struct BackupDir(std::path::PathBuf);

impl BackupDir {
    fn new() -> Self {
        BackupDir(std::env::temp_dir().join(format!("dukasync-backup-{}", Uuid::new_v4().simple())))
    }
}

impl Drop for BackupDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn a_restored_backup_resets_devices_that_pulled_past_it_and_they_converge() {
    let app = TestApp::start().await;
    let mut early = Phone::new(&app, "early-phone").await; // pulls only before the backup
    let mut late = Phone::new(&app, "late-phone").await; // pulls after the backup too
    assert_eq!(late.push(&app, &["c-1", "c-2"]).await.status(), StatusCode::OK);
    early.sync(&app).await.unwrap();
    late.sync(&app).await.unwrap();

    let scratch = BackupDir::new();
    let dir = scratch.0.clone();
    let dir_arg = dir.to_str().unwrap();
    let (ok, stdout, stderr) = script(
        "backup.sh",
        &[dir_arg],
        &[
            ("DUKASYNC_DATABASE_URL", &app.database_url),
            ("DUKASYNC_BACKUP_KEEP", "2"),
        ],
    );
    assert!(ok, "backup failed: {stderr}");
    let dump = stdout.trim().to_string();
    assert!(dump.starts_with(dir_arg) && dump.ends_with(".dump"), "{stdout}");
    let password = url::Url::parse(&app.database_url)
        .unwrap()
        .password()
        .unwrap()
        .to_string();
    assert!(!stderr.contains(&password), "the password leaked: {stderr}");
    let backup_head = server_checksum(&app, &late.token).await.version;

    // After the backup: two more acknowledged operations and a server-side write, pulled by the late phone.
    let acked: OpsResponse = late.push(&app, &["c-3", "c-4"]).await.json().await.unwrap();
    assert_eq!(
        acked.last_seq, 4,
        "acknowledged: the phone deletes them from its outbox"
    );
    app.write(
        SCOPE,
        vec![upsert("customers", "c-srv", json!({"id": "c-srv", "name": "Server"}))],
    )
    .await;
    late.sync(&app).await.unwrap();
    let late_version: i64 = late.cursor.split('.').next().unwrap().parse().unwrap();
    assert_eq!(late_version, backup_head + 3);

    // The restore refuses a database that holds data, and restores into a fresh one.
    let (ok, _, stderr) = script("restore.sh", &[&dump, &app.database_url], &[]);
    assert!(!ok && stderr.contains("not empty"), "{stderr}");
    let target = empty_database().await;
    let (ok, _, stderr) = script("restore.sh", &[&dump, &target], &[]);
    assert!(ok, "restore failed: {stderr}");
    let restored = TestApp::on_database(&target, &[]).await;
    dukasync::store::migrate(&restored.db)
        .await
        .expect("the restored schema is the binary's: migrate has nothing to do");

    // The late phone is ahead of the restored head: reset, answered honestly.
    let err = late.sync(&restored).await.unwrap_err();
    assert_eq!(
        reset_reason(&err),
        (StatusCode::GONE, "reset_required", "ahead_of_head")
    );
    assert_eq!(err.1.error.details.as_ref().unwrap()["head"], backup_head);

    // New writes on the restored server pass the phone's version: now its tag is unknown to this history.
    for i in 0..4 {
        let key = format!("c-new-{i}");
        restored
            .write(
                SCOPE,
                vec![upsert("customers", &key, json!({"id": key, "name": "New"}))],
            )
            .await;
    }
    let err = late.sync(&restored).await.unwrap_err();
    assert_eq!(
        reset_reason(&err),
        (StatusCode::GONE, "reset_required", "unknown_history")
    );

    // After the reset the phone converges: its copy's checksum is the server's.
    late.reset();
    late.sync(&restored).await.unwrap();
    let report = server_checksum(&restored, &late.token).await;
    assert_eq!(
        (late.checksum(), late.copy.len() as i64),
        (report.checksum, report.count)
    );
    assert!(
        !late.copy.contains_key(&("customers".into(), "c-3".into())),
        "what came after the backup is gone"
    );

    // The early phone's cursor predates the backup: it is part of the restored history, no reset needed.
    early
        .sync(&restored)
        .await
        .expect("a cursor from before the backup is honoured");
    assert_eq!(early.checksum(), report.checksum);

    // The late phone's outbox continues at sequence 5, but the restored server applied only up to 2.
    let resp = late.push(&restored, &["c-5"]).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let body: ErrorBody = resp.json().await.unwrap();
    assert_eq!(body.error.code, "sequence_gap");
    assert_eq!(body.error.details.unwrap()["expected_seq"], 3);
    // Operations 3 and 4 left its outbox when acknowledged; it cannot resend them. It goes on under a new
    // client id, renumbering its unsent operations from 1 (deploy/BACKUP.md).
    late.client_id = Uuid::new_v4();
    late.next_seq = 1;
    let resp: OpsResponse = late.push(&restored, &["c-5"]).await.json().await.unwrap();
    assert_eq!(resp.results[0].status, OpStatus::Applied);
}

#[tokio::test]
async fn backups_are_pruned_to_the_newest_few_and_a_failed_dump_leaves_nothing() {
    let app = TestApp::start().await;
    let scratch = BackupDir::new();
    let dir = scratch.0.clone();
    let dir_arg = dir.to_str().unwrap();
    // Older backups as the timer would have left them (names sort by time).
    std::fs::create_dir_all(&dir).unwrap();
    for stamp in ["20260101T000000Z", "20260102T000000Z", "20260103T000000Z"] {
        std::fs::write(dir.join(format!("dukasync-{stamp}.dump")), b"old").unwrap();
    }
    let env = [
        ("DUKASYNC_DATABASE_URL", app.database_url.as_str()),
        ("DUKASYNC_BACKUP_KEEP", "2"),
    ];
    let (ok, stdout, stderr) = script("backup.sh", &[dir_arg], &env);
    assert!(ok, "{stderr}");
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".dump"))
        .collect();
    left.sort();
    assert_eq!(left.len(), 2, "{left:?}");
    assert_eq!(left[0], "dukasync-20260103T000000Z.dump");
    assert!(stdout.trim().ends_with(&left[1]), "the new one is kept: {stdout}");

    // An unreachable database: the script fails and leaves no partial file behind.
    let closed = free_port();
    let url = format!("postgres://nobody:pw@127.0.0.1:{closed}/none");
    let (ok, _, stderr) = script("backup.sh", &[dir_arg], &[("DUKASYNC_DATABASE_URL", &url)]);
    assert!(!ok, "{stderr}");
    assert_eq!(
        std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name().into_string().unwrap();
                name.ends_with(".dump") || name.ends_with(".partial")
            })
            .count(),
        2
    );
}
