//! Replay under faults: the server process killed between commit and answer, and PostgreSQL refusing
//! connections mid-run. In both the device simply retries, and every operation takes effect exactly once.

use crate::common::*;
use dukasync::wire::{OpStatus, OpsResponse};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection, PgPool};
use std::{
    process::{Child, Stdio},
    time::{Duration, Instant},
};
use uuid::Uuid;

fn sale(seq: i64) -> Value {
    command(
        seq,
        "record_sale",
        &format!("s-{seq}"),
        json!({"lines": [{"product_id": "w-5l", "quantity": "1", "unit_price": "150.00"}],
               "payments": [{"method": "cash", "amount": "150.00"}]}),
    )
}

/// The real `dukasync serve` process on a database.
struct ServerProcess {
    child: Child,
    base: String,
}

impl ServerProcess {
    async fn start(database_url: &str, failpoints: &str) -> ServerProcess {
        let port = free_port();
        let child = serve_command(database_url, port)
            .env("DUKASYNC_FAILPOINTS", failpoints)
            .env("DUKASYNC_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the dukasync binary starts");
        let server = ServerProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        wait_until_serving(&server.base).await;
        server
    }

    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL"); // std's Child::kill sends SIGKILL on Unix
        self.child.wait().unwrap();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn push(base: &str, token: &str, body: &Value) -> reqwest::Result<reqwest::Response> {
    reqwest::Client::new()
        .post(format!("{base}/v1/scopes/water/ops"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
}

async fn effects(db: &PgPool) -> (i64, i64, i64) {
    sqlx::query_as(
        r#"SELECT (SELECT count(*) FROM records WHERE scope_id = 'water' AND collection = 'sales'),
                  (SELECT count(*) FROM journal_entries WHERE scope_id = 'water'),
                  (SELECT count(*) FROM stock_movements WHERE scope_id = 'water' AND reason = 'sale')"#,
    )
    .fetch_one(db)
    .await
    .unwrap()
}

async fn wait_for_last_seq(db: &PgPool, client: Uuid, seq: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let last: Option<i64> = sqlx::query_scalar("SELECT last_seq FROM replay_clients WHERE client_id = $1")
            .bind(client)
            .fetch_optional(db)
            .await
            .unwrap();
        if last == Some(seq) {
            return;
        }
        assert!(Instant::now() < deadline, "the batch never committed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn killed_after_commit_before_answering_the_retry_gets_the_stored_results() {
    let url = fresh_database().await;
    let db = PgPool::connect(&url).await.unwrap();
    dukasync::demo::load(&db).await.unwrap();
    let token = issue_token(&db, WATER_CASHIER, "water-counter").await;
    let client = Uuid::new_v4();
    let body = json!({"client_id": client, "ops": (1..=5).map(sale).collect::<Vec<_>>()});

    let mut crashing = ServerProcess::start(&url, dukasync::failpoint::REPLAY_HANG_AFTER_COMMIT).await;
    let base = crashing.base.clone();
    let (token2, body2) = (token.clone(), body.clone());
    let lost = tokio::spawn(async move { push(&base, &token2, &body2).await });
    // The batch is committed (observable in the database), and its answer has not been sent.
    wait_for_last_seq(&db, client, 5).await;
    assert!(!lost.is_finished(), "the answer must not have been sent yet");
    crashing.kill();
    assert!(lost.await.unwrap().is_err(), "the device never got its answer");
    assert_eq!(effects(&db).await, (5, 5, 5));

    // The device retries the same batch against the restarted server.
    let server = ServerProcess::start(&url, "").await;
    let resp = push(&server.base, &token, &body).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let answer: OpsResponse = resp.json().await.unwrap();
    assert_eq!(answer.last_seq, 5);
    for r in &answer.results {
        assert_eq!((r.status, r.original), (OpStatus::Duplicate, Some(OpStatus::Applied)));
        assert_eq!(
            r.versions.len(),
            4,
            "the stored versions: sale, entry, movement, stock level"
        );
    }
    assert_eq!(effects(&db).await, (5, 5, 5), "each sale applied exactly once");
}

/// Makes the database refuse connections (as if PostgreSQL were down for it), and drops the live ones.
async fn set_database_reachable(url: &str, reachable: bool) {
    let name = url::Url::parse(url).unwrap().path().trim_start_matches('/').to_string();
    let mut admin = PgConnection::connect(&admin_url()).await.unwrap();
    sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {reachable}"))
        .execute(&mut admin)
        .await
        .unwrap();
    if !reachable {
        // Client backends only: an autovacuum worker in the database belongs to the superuser, and terminating it
        // fails the whole statement ("must be a superuser to terminate superuser process").
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND backend_type = 'client backend'",
        )
        .bind(&name)
        .execute(&mut admin)
        .await
        .unwrap();
    }
}

/// Leaves the server's pool holding at least `scopes.len()` idle connections: the test holds the scopes' locks
/// while a push to each waits on them, each push on a connection of its own.
async fn open_pooled_connections(app: &TestApp, scopes: &[&'static str]) {
    let mut locks = PgConnection::connect(&app.database_url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut locks).await.unwrap();
    sqlx::query("SELECT 1 FROM scopes WHERE id = ANY($1) FOR NO KEY UPDATE")
        .bind(scopes)
        .execute(&mut locks)
        .await
        .unwrap();
    let mut pushes = Vec::new();
    for scope in scopes {
        let device = Device::new(app, OWNER, "owner-phone", scope).await;
        let put = json!({"seq": 1, "id": Uuid::new_v4(), "type": "put", "collection": "customers", "key": "c-1",
                         "data": {"id": "c-1", "name": "Achieng"}});
        let req = app
            .http
            .post(app.url(&format!("/v1/scopes/{scope}/ops")))
            .bearer_auth(&device.token)
            .json(&json!({"client_id": device.client_id, "ops": [put]}));
        pushes.push(tokio::spawn(async move { req.send().await.unwrap().status() }));
    }
    wait_for_replays_on_lock(app, scopes.len() as i64).await;
    sqlx::query("ROLLBACK").execute(&mut locks).await.unwrap();
    for push in pushes {
        assert_eq!(push.await.unwrap(), StatusCode::OK);
    }
}

#[tokio::test]
async fn with_the_database_unreachable_a_push_is_503_and_nothing_advances() {
    let app = TestApp::start().await;
    let till = Device::new(&app, WATER_CASHIER, "water-counter", "water").await;
    till.push(&[sale(1)]).await;
    // Several connections idle in the pool, all about to be terminated: after the first request fails on one,
    // the next must not fail on another (they are pinged, found dead and replaced).
    open_pooled_connections(&app, &["laundry", "retail", "water"]).await;
    let before = footprint(&app).await;

    let ops = [sale(2), sale(3)];
    set_database_reachable(&app.database_url, false).await;
    let resp = till.send_raw(json!({"client_id": till.client_id, "ops": ops})).await;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    set_database_reachable(&app.database_url, true).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    assert_eq!(footprint(&app).await, before, "nothing advanced");

    // PostgreSQL is back: the device retries the same operations and they apply, once.
    let answer = till.push(&ops).await;
    assert_eq!(answer.last_seq, 3);
    assert!(answer.results.iter().all(|r| r.status == OpStatus::Applied));
    assert!(till
        .push(&ops)
        .await
        .results
        .iter()
        .all(|r| r.status == OpStatus::Duplicate));
}
