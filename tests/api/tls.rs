//! TLS to PostgreSQL and Redis, against the dev services of `deploy/services.sh` (PostgreSQL with `ssl = on`,
//! Redis with a TLS port, both with a certificate of a private CA for 127.0.0.1).
//!
//! PostgreSQL itself says which of the server's connections are encrypted (`pg_stat_ssl`): the server names
//! them `application_name = 'dukasync'`, so the test's own pool (without that name) is never counted. A wrong
//! CA (or `sslrootcert=system`, the bundled public roots) fails `dukasync serve`'s start with one line; a server
//! already running whose CA stops matching answers 503 `unavailable`. Redis over `rediss://` with `DUKASYNC_REDIS_CA_FILE`: the snapshot's keys land in Redis
//! and are read back over the TLS port; with a wrong CA Redis counts as down and the answers are unchanged.

use crate::common::*;
use dukasync::wire::ErrorBody;
use reqwest::StatusCode;
use serde_json::Value;
use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// A setting `deploy/services.sh start` writes to `.dukasync/env` (or the environment's).
fn service_setting(key: &str) -> String {
    std::env::var(key)
        .ok()
        .or_else(|| service_env().get(key).cloned())
        .unwrap_or_else(|| panic!("no {key}: run `deploy/services.sh start` (it makes the dev CA)"))
}

fn dev_ca() -> String {
    service_setting("DUKASYNC_TEST_TLS_CA")
}

/// `url` with `query` appended.
fn with_query(url: &str, query: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{query}")
}

/// A CA that signed nothing the services use: a fresh self-signed certificate, removed on drop.
struct WrongCa(PathBuf);

impl WrongCa {
    fn new() -> WrongCa {
        let dir = std::env::temp_dir().join(format!("dukasync-wrong-ca-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&dir).unwrap();
        let status = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-new",
                "-nodes",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-days", "1", "-subj", "/CN=not the dukasync dev CA", "-keyout"])
            .arg(dir.join("ca.key"))
            .arg("-out")
            .arg(dir.join("ca.crt"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl runs (deploy/services.sh installs it)");
        assert!(status.success(), "openssl could not make a CA");
        WrongCa(dir)
    }

    fn path(&self) -> String {
        self.0.join("ca.crt").display().to_string()
    }
}

impl Drop for WrongCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn database_name(url: &str) -> String {
    url::Url::parse(url).unwrap().path().trim_start_matches('/').to_string()
}

/// The server's connections to `database` as PostgreSQL sees them: (encrypted, last statement).
async fn server_connections(app: &TestApp, database: &str) -> Vec<(bool, String)> {
    sqlx::query_as(
        "SELECT s.ssl, a.query FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
         WHERE a.datname = $1 AND a.application_name = 'dukasync' ORDER BY a.pid",
    )
    .bind(database)
    .fetch_all(&app.db)
    .await
    .unwrap()
}

/// A server on a fresh database reached through `query` (appended to the dev URL), with the demo data.
async fn app_with_database_query(query: &str, overrides: &[(&str, &str)]) -> (TestApp, String) {
    let url = with_query(&fresh_database().await, query);
    let app = TestApp::on_database(&url, overrides).await;
    dukasync::demo::load(&app.db).await.expect("demo data loads");
    (app, url)
}

/// Serves a push and a pull, waits for the LISTEN connection, and returns the server's connections, each
/// (encrypted, last statement); the LISTEN connection is among them.
async fn push_pull_and_connections(app: &TestApp, url: &str) -> Vec<(bool, String)> {
    let device = Device::new(app, OWNER, "owner-phone", "water").await;
    let pushed = device.push(&[put_customer(1, "c-tls")]).await;
    assert_eq!(pushed.last_seq, 1, "{pushed:?}");
    let page = app.changes(&device.token, "water", "since=0&limit=1000").await;
    assert!(
        serde_json::to_string(&page).unwrap().contains("c-tls"),
        "the pull shows the push"
    );
    app.wait_for_metric("dukasync_listener_connected", 1.0).await;
    let connections = server_connections(app, &database_name(url)).await;
    assert!(
        connections.len() >= 2 && connections.iter().any(|(_, q)| q.starts_with("LISTEN")),
        "the pool's and the LISTEN connection: {connections:?}"
    );
    connections
}

#[tokio::test]
async fn verify_full_with_the_ca_serves_a_push_and_a_pull_over_tls_on_every_connection() {
    let (app, url) = app_with_database_query(&format!("sslmode=verify-full&sslrootcert={}", dev_ca()), &[]).await;
    let connections = push_pull_and_connections(&app, &url).await;
    assert!(connections.iter().all(|(ssl, _)| *ssl), "{connections:?}");
}

#[tokio::test]
async fn require_without_a_ca_encrypts_and_disable_does_not() {
    let (app, url) = app_with_database_query("sslmode=require", &[]).await;
    let connections = push_pull_and_connections(&app, &url).await;
    assert!(connections.iter().all(|(ssl, _)| *ssl), "{connections:?}");

    // The same check sees plain connections: it would catch TLS silently left off.
    let (plain, url) = app_with_database_query("sslmode=disable", &[]).await;
    let connections = push_pull_and_connections(&plain, &url).await;
    assert!(connections.iter().all(|(ssl, _)| !*ssl), "{connections:?}");
}

/// Runs `dukasync serve` on `url`, which must fail to start, naming DUKASYNC_DATABASE_URL's TLS settings
/// without showing the password. Returns its stderr.
async fn serve_fails(url: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dukasync"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DUKASYNC_DATABASE_URL", url)
        .env("DUKASYNC_LISTEN", "127.0.0.1:0")
        .env("DUKASYNC_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("dukasync serve kept running on {}", dukasync::config::redact_url(url));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot connect to PostgreSQL over TLS as DUKASYNC_DATABASE_URL says")
            && stderr.contains("check its sslmode and sslrootcert"),
        "{stderr}"
    );
    let password = url::Url::parse(url).unwrap().password().unwrap().to_string();
    assert!(!stderr.contains(&password), "the password is not printed: {stderr}");
    stderr
}

#[tokio::test]
async fn a_wrong_ca_fails_the_start_and_a_running_server_answers_unavailable() {
    let wrong = WrongCa::new();
    let plain_url = fresh_database().await;
    let plain_db = sqlx::PgPool::connect_lazy(&plain_url).unwrap();
    dukasync::demo::load(&plain_db).await.expect("demo data loads");
    let token = issue_token(&plain_db, OWNER, "owner-phone").await;
    let url = with_query(&plain_url, &format!("sslmode=verify-full&sslrootcert={}", wrong.path()));

    // `dukasync serve` refuses to start, with one line saying why.
    let stderr = serve_fails(&url).await;
    assert!(stderr.contains("invalid peer certificate: UnknownIssuer"), "{stderr}");

    // A server already running (here: started in-process, which skips the start-up check) answers 503.
    let app = TestApp::on_database(&url, &[]).await;
    let resp = app.get("/v1/scopes/water/changes?since=0", Some(&token)).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: ErrorBody = resp.json().await.unwrap();
    assert_eq!(body.error.code, "unavailable");
    assert_eq!(app.get("/readyz", None).await.status(), StatusCode::SERVICE_UNAVAILABLE);

    // sslrootcert=system: the bundled public roots (no file named `system` is read), which never signed the dev
    // CA's certificate.
    let stderr = serve_fails(&with_query(&plain_url, "sslrootcert=system")).await;
    assert!(stderr.contains("invalid peer certificate: UnknownIssuer"), "{stderr}");
}

/// A server with Redis only (no memory layer): every cached read goes to Redis.
async fn redis_only(redis_url: &str, ca: &str) -> TestApp {
    TestApp::start_with(&[
        ("DUKASYNC_CACHE_MEMORY_BYTES", "0"),
        ("DUKASYNC_REDIS_URL", redis_url),
        ("DUKASYNC_REDIS_CA_FILE", ca),
        ("DUKASYNC_REDIS_TIMEOUT_MS", "1000"),
    ])
    .await
}

async fn snapshot(app: &TestApp, token: &str) -> (StatusCode, String) {
    let resp = app.get("/v1/scopes/water/reference/products", Some(token)).await;
    (resp.status(), resp.text().await.unwrap())
}

/// The Redis clients connected to `port` (Redis' own view: `CLIENT LIST` names each one's local address).
async fn clients_on_port(conn: &mut redis::aio::MultiplexedConnection, port: u16) -> usize {
    let list: String = redis::cmd("CLIENT").arg("LIST").query_async(conn).await.unwrap();
    list.lines()
        .filter(|l| l.split(' ').any(|f| f == format!("laddr=127.0.0.1:{port}")))
        .count()
}

#[tokio::test]
async fn a_snapshot_cached_over_rediss_lands_in_redis_and_is_read_back_over_tls() {
    let tls_url = service_setting("DUKASYNC_TEST_REDIS_TLS_URL");
    let tls_port = url::Url::parse(&tls_url).unwrap().port().unwrap();
    let mut plain = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let app = redis_only(&tls_url, &dev_ca()).await;
    let token = app.token(OWNER, "owner-phone").await;
    let namespace = dukasync::store::cache_namespace(&app.db).await.unwrap();

    let first = snapshot(&app, &token).await;
    assert_eq!(first.0, StatusCode::OK);
    // What the server stored, read over the plain port: the snapshot's pointer and bytes, in its namespace.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("dks:*:{namespace}:*"))
        .query_async(&mut plain)
        .await
        .unwrap();
    assert!(
        keys.iter().any(|k| k.contains(":p:water:products:")) && keys.iter().any(|k| k.contains(":b:water:")),
        "{keys:?}"
    );
    // Read back from Redis (no memory layer), through the server's one connection: on the TLS port.
    let hits = app
        .metric_sum("dukasync_cache_lookups_total", &["layer=\"redis\"", "result=\"hit\""])
        .await;
    assert_eq!(snapshot(&app, &token).await, first);
    assert!(
        app.metric_sum("dukasync_cache_lookups_total", &["layer=\"redis\"", "result=\"hit\""])
            .await
            > hits
    );
    assert!(clients_on_port(&mut plain, tls_port).await >= 1);
    assert_eq!(app.metric_sum("dukasync_cache_redis_up", &[]).await, 1.0);
}

#[tokio::test]
async fn with_a_wrong_redis_ca_redis_is_down_and_the_answers_come_from_postgresql() {
    let tls_url = service_setting("DUKASYNC_TEST_REDIS_TLS_URL");
    let wrong = WrongCa::new();
    let app = redis_only(&tls_url, &wrong.path()).await;
    let token = app.token(OWNER, "owner-phone").await;
    let reference = TestApp::on_database(&app.database_url, &[("DUKASYNC_CACHE_MEMORY_BYTES", "0")]).await;

    for _ in 0..2 {
        let answer = snapshot(&app, &token).await;
        assert_eq!(answer.0, StatusCode::OK);
        assert_eq!(answer, snapshot(&reference, &token).await);
    }
    assert!(app.metric_sum("dukasync_cache_fallbacks_total", &[]).await > 0.0);
    assert_eq!(
        app.metric_sum("dukasync_cache_lookups_total", &["layer=\"redis\"", "result=\"hit\""])
            .await,
        0.0
    );
    assert_eq!(app.metric_sum("dukasync_cache_redis_up", &[]).await, 0.0);
    let report: Value = app.get("/v1/admin/cache", Some(&token)).await.json().await.unwrap();
    assert_eq!(report["redis"], "down");
}
