//! `durable_seq` (protocol §10.3): a push's operations count as durable only once a standby named in
//! `DUKASYNC_DURABLE_STANDBYS` has flushed them. The standby here is a real `pg_receivewal` streaming this
//! cluster's WAL; stopping it (SIGSTOP) is the lagging or lost standby a naive server would not notice.

use crate::common::{admin_url, put_customer, service_env, Device, TestApp, WATER_CASHIER};
use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};
use uuid::Uuid;

/// A `pg_receivewal --synchronous` under its own application name, writing into a scratch directory.
struct Receiver {
    child: Child,
    dir: PathBuf,
    name: String,
    /// PostgreSQL's binaries, and the replication connection, to drop the slot when done.
    bin: String,
    url: String,
}

impl Receiver {
    fn start(name: &str) -> Receiver {
        let bin = service_env()
            .get("DUKASYNC_PG_BIN")
            .cloned()
            .expect("DUKASYNC_PG_BIN in .dukasync/env (deploy/services.sh start)");
        let dir = std::env::temp_dir().join(format!("dukasync-receivewal-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut url = url::Url::parse(&admin_url()).unwrap();
        url.query_pairs_mut().append_pair("application_name", name);
        // A slot of its own, so the WAL it has not received is kept while it is stopped: the other tests of this
        // binary write so much WAL meanwhile that, without one, PostgreSQL removed the segment it needed next and
        // the resumed receiver died ("requested WAL segment ... has already been removed").
        let created = Command::new(format!("{bin}/pg_receivewal"))
            .args(["--create-slot", "--if-not-exists", "--slot", name, "-d", url.as_str()])
            .status()
            .unwrap();
        assert!(created.success(), "pg_receivewal --create-slot");
        let child = Command::new(format!("{bin}/pg_receivewal"))
            .arg("--synchronous")
            .arg("--slot")
            .arg(name)
            // It reports a flush at once, except the end of a segment, which waits for the status interval
            // (10 s by default; other tests write WAL in the same cluster meanwhile). deploy/pitr.sh does the same.
            .arg("--status-interval=1")
            .arg("--no-loop")
            .arg("-D")
            .arg(&dir)
            .arg("-d")
            .arg(url.as_str())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pg_receivewal starts");
        Receiver {
            child,
            dir,
            name: name.to_string(),
            bin,
            url: url.to_string(),
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal}");
    }

    /// Waits until PostgreSQL lists the receiver as streaming.
    async fn streaming(&self, app: &TestApp) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let state: Option<String> =
                sqlx::query_scalar("SELECT state FROM pg_stat_replication WHERE application_name = $1")
                    .bind(&self.name)
                    .fetch_optional(&app.db)
                    .await
                    .unwrap();
            if state.as_deref() == Some("streaming") {
                return;
            }
            assert!(Instant::now() < deadline, "pg_receivewal never started streaming");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.signal("CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A slot left behind would keep WAL in the dev cluster for ever.
        let _ = Command::new(format!("{}/pg_receivewal", self.bin))
            .args(["--drop-slot", "--slot", &self.name, "-d", &self.url])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn durable_seq_follows_what_a_standby_has_flushed() {
    let name = format!("dks_test_{}", &Uuid::new_v4().simple().to_string()[..12]);
    let app = TestApp::start_with(&[
        ("DUKASYNC_DURABLE_STANDBYS", name.as_str()),
        ("DUKASYNC_DURABLE_WAIT_MS", "3000"),
    ])
    .await;
    let device = Device::new(&app, WATER_CASHIER, "water-counter", "water").await;

    // No standby of that name connected: acknowledged, but not durable beyond the primary.
    let answer = device.push(&[put_customer(1, "c-1")]).await;
    assert_eq!((answer.last_seq, answer.durable_seq), (1, 0));
    assert_eq!(app.metric("dukasync_durable_standby_connected").await, Some(0.0));

    // A synchronous-flushing receiver: the answer confirms the push it acknowledges, and the one before it.
    let receiver = Receiver::start(&name);
    receiver.streaming(&app).await;
    let answer = device.push(&[put_customer(2, "c-2")]).await;
    assert_eq!((answer.last_seq, answer.durable_seq), (2, 2));

    // The receiver stalls (its disk hangs, it is stopped): it is still connected, but flushes nothing more.
    receiver.signal("STOP");
    let answer = device.push(&[put_customer(3, "c-3")]).await;
    assert_eq!(
        (answer.last_seq, answer.durable_seq),
        (3, 0),
        "not flushed by any standby"
    );
    let asked_again = device.push(&[]).await;
    assert_eq!((asked_again.last_seq, asked_again.durable_seq), (3, 0));
    assert!(
        app.metric("dukasync_durability_confirmations_total{outcome=\"timeout\"}")
            .await
            >= Some(2.0)
    );

    // It resumes and flushes what it had not: asking again (an empty push) confirms everything up to 3. An ask
    // waits for the WAL position current when it came, and the other tests of this binary write WAL all the
    // time; a receiver catching up on what they wrote while it was stopped can take longer than one ask's wait,
    // so the device asks again, as the reference client does (`confirm()`), until it is confirmed.
    receiver.signal("CONT");
    let deadline = Instant::now() + Duration::from_secs(30);
    let asked_again = loop {
        let answer = device.push(&[]).await;
        if answer.durable_seq != 0 || Instant::now() > deadline {
            break answer;
        }
    };
    assert_eq!((asked_again.last_seq, asked_again.durable_seq), (3, 3));
    assert!(
        app.metric("dukasync_durability_confirmations_total{outcome=\"confirmed\"}")
            .await
            >= Some(2.0)
    );
    assert_eq!(app.metric("dukasync_durable_standby_connected").await, Some(1.0));
}

#[tokio::test]
async fn without_standbys_every_acknowledged_operation_is_reported_durable() {
    let app = TestApp::start().await;
    let device = Device::new(&app, WATER_CASHIER, "water-counter", "water").await;
    let answer = device.push(&[put_customer(1, "c-1"), put_customer(2, "c-2")]).await;
    assert_eq!((answer.last_seq, answer.durable_seq), (2, 2));
    let asked_again = device.push(&[]).await;
    assert_eq!((asked_again.last_seq, asked_again.durable_seq), (2, 2));
}

#[tokio::test]
async fn a_server_that_cannot_read_the_standbys_positions_refuses_to_start() {
    // Without pg_monitor (pg_read_all_stats), PostgreSQL shows this role NULL positions: every push would report
    // nothing durable and phones would keep their operations forever. The server says so at start instead.
    let app = TestApp::start().await;
    let role = format!("dks_nomon_{}", &Uuid::new_v4().simple().to_string()[..12]);
    sqlx::query(&format!("CREATE ROLE {role} LOGIN PASSWORD 'not-a-secret'"))
        .execute(&app.db)
        .await
        .unwrap();
    let mut url = url::Url::parse(&app.database_url).unwrap();
    url.set_username(&role).unwrap();
    url.set_password(Some("not-a-secret")).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_dukasync"))
        .arg("serve")
        .env("DUKASYNC_DATABASE_URL", url.as_str())
        .env("DUKASYNC_LISTEN", "127.0.0.1:0")
        .env("DUKASYNC_DURABLE_STANDBYS", "dukasync_wal")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("the server stops at once")
        .unwrap();
    sqlx::query(&format!("DROP ROLE {role}"))
        .execute(&app.db)
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it must not serve: {stderr}");
    assert!(stderr.contains("GRANT pg_monitor"), "{stderr}");
}
