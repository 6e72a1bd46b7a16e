//! Test harness: real PostgreSQL and Redis started by `deploy/services.sh`, a fresh database per test cloned
//! from a migrated template, and the real server on port 0.
//!
//! Connection URLs come from `DUKASYNC_DATABASE_URL` / `DUKASYNC_REDIS_URL`, or from `.dukasync/env` written by
//! `deploy/services.sh start`. Without them the tests fail (they never skip).
#![allow(dead_code)]

mod device;
#[allow(unused_imports)]
pub use device::{command, footprint, put_customer, Device};

use dukasync::{
    auth::NewToken,
    config::Config,
    domain::ScopeId,
    store::{self, accounts, changes::RowWrite, tokens},
    AppState,
};
use sqlx::{postgres::PgPoolOptions, Connection, PgConnection, PgPool};
use std::{
    collections::HashMap,
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};
use tokio::sync::OnceCell;
use uuid::Uuid;

/// Settings from the environment or `.dukasync/env`.
pub fn service_env() -> HashMap<String, String> {
    let mut vars = HashMap::new();
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/.dukasync/env");
    if let Ok(text) = std::fs::read_to_string(file) {
        for line in text.lines() {
            if let Some((k, v)) = line.trim().trim_start_matches("export ").split_once('=') {
                vars.insert(k.to_string(), v.trim_matches('"').to_string());
            }
        }
    }
    for key in ["DUKASYNC_DATABASE_URL", "DUKASYNC_REDIS_URL"] {
        if let Ok(v) = std::env::var(key) {
            vars.insert(key.to_string(), v);
        }
    }
    assert!(
        vars.contains_key("DUKASYNC_DATABASE_URL"),
        "no DUKASYNC_DATABASE_URL: run `deploy/services.sh start` (or `deploy/dev test`) first"
    );
    vars
}

pub fn admin_url() -> String {
    service_env()["DUKASYNC_DATABASE_URL"].clone()
}

pub fn redis_url() -> String {
    service_env()
        .get("DUKASYNC_REDIS_URL")
        .cloned()
        .expect("no DUKASYNC_REDIS_URL: run `deploy/services.sh start`")
}

fn with_database(url: &str, name: &str) -> String {
    let mut parsed = url::Url::parse(url).expect("database URL");
    parsed.set_path(&format!("/{name}"));
    parsed.to_string()
}

static TEMPLATE: OnceCell<String> = OnceCell::const_new();

/// A migrated template database, named after the migrations so a schema change makes a new one.
async fn template() -> &'static str {
    TEMPLATE
        .get_or_init(|| async {
            let admin = admin_url();
            let mut hasher = blake3::Hasher::new();
            for m in store::MIGRATOR.iter() {
                hasher.update(&m.checksum);
            }
            let name = format!("dukasync_tmpl_{}", &hasher.finalize().to_hex()[..12]);
            let mut conn = PgConnection::connect(&admin)
                .await
                .expect("cannot reach PostgreSQL: start it with `deploy/services.sh start` (deploy/dev test does)");
            // Serialise template creation across concurrently running test binaries.
            sqlx::query("SELECT pg_advisory_lock(727274)")
                .execute(&mut conn)
                .await
                .unwrap();
            let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&name)
                .fetch_one(&mut conn)
                .await
                .unwrap();
            if !exists {
                let building = format!("{name}_building");
                sqlx::query(&format!("DROP DATABASE IF EXISTS {building}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                sqlx::query(&format!("CREATE DATABASE {building}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                let pool = PgPool::connect(&with_database(&admin, &building)).await.unwrap();
                store::migrate(&pool)
                    .await
                    .expect("migrations apply to an empty database");
                pool.close().await;
                sqlx::query(&format!("ALTER DATABASE {building} RENAME TO {name}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            sqlx::query("SELECT pg_advisory_unlock(727274)")
                .execute(&mut conn)
                .await
                .unwrap();
            name
        })
        .await
}

/// The name of a new test database: it carries this process's id, so that [`sweep_databases`] can tell when the
/// test process that made it is gone.
pub fn test_database_name() -> String {
    format!("{TEST_DB_PREFIX}{}_{}", std::process::id(), Uuid::new_v4().simple())
}

const TEST_DB_PREFIX: &str = "dukasync_test_";

/// Drops, once per test process and in a thread of its own (tests do not wait for it), the test databases whose
/// process has ended: each test makes a database and leaves it for inspection, and without this they piled up
/// (thousands, tens of GB) on a developer's cluster. One left by a crashed or failed run goes at the next run.
fn sweep_databases() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let admin = admin_url();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let Ok(mut conn) = PgConnection::connect(&admin).await else {
                    return;
                };
                let names: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
                    .bind(format!("{TEST_DB_PREFIX}%"))
                    .fetch_all(&mut conn)
                    .await
                    .unwrap_or_default();
                for name in names {
                    let owner = name[TEST_DB_PREFIX.len()..]
                        .split('_')
                        .next()
                        .and_then(|p| p.parse::<u32>().ok());
                    // Names from before the process id was part of them have no owner to wait for.
                    let alive = owner.is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
                    if !alive {
                        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .execute(&mut conn)
                            .await;
                    }
                }
            });
        });
    });
}

/// A fresh, migrated, empty database; returns its URL.
pub async fn fresh_database() -> String {
    sweep_databases();
    let template = template().await;
    let admin = admin_url();
    let name = test_database_name();
    let mut conn = PgConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
        .execute(&mut conn)
        .await
        .unwrap();
    with_database(&admin, &name)
}

/// A configuration for tests: `overrides` are applied over the database URL and defaults.
pub fn config(database_url: &str, overrides: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = HashMap::new();
    vars.insert("DUKASYNC_DATABASE_URL".into(), database_url.into());
    vars.insert("DUKASYNC_LISTEN".into(), "127.0.0.1:0".into());
    for (k, v) in overrides {
        vars.insert(k.to_string(), v.to_string());
    }
    Config::from_lookup(|k| vars.get(k).cloned()).expect("test configuration is valid")
}

/// A running server.
pub struct TestApp {
    pub addr: SocketAddr,
    pub db: PgPool,
    pub database_url: String,
    pub http: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// A server on a fresh database, with the demo data loaded.
    pub async fn start() -> TestApp {
        Self::start_with(&[]).await
    }

    pub async fn start_with(overrides: &[(&str, &str)]) -> TestApp {
        let url = fresh_database().await;
        let app = Self::on_database(&url, overrides).await;
        dukasync::demo::load(&app.db).await.expect("demo data loads");
        app
    }

    /// A server on an existing database (for several instances sharing one).
    pub async fn on_database(url: &str, overrides: &[(&str, &str)]) -> TestApp {
        let state = AppState::new(config(url, overrides)).expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(dukasync::serve(state, listener, async move {
            let _ = rx.await;
        }));
        let db = PgPoolOptions::new().max_connections(8).connect_lazy(url).unwrap();
        TestApp {
            addr,
            db,
            database_url: url.to_string(),
            http: reqwest::Client::new(),
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = self.http.get(self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send().await.expect("request reaches the server")
    }

    /// GET asking for MessagePack; asserts the answer is MessagePack and returns its bytes.
    pub async fn get_msgpack(&self, path: &str, token: &str) -> bytes::Bytes {
        let resp = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .header("accept", "application/msgpack")
            .send()
            .await
            .expect("request reaches the server");
        assert_eq!(resp.headers()["content-type"], "application/msgpack", "{path}");
        resp.bytes().await.unwrap()
    }

    /// Issues a token for a demo user's device.
    pub async fn token(&self, email: &str, device: &str) -> String {
        issue_token(&self.db, email, device).await
    }

    /// Starts graceful shutdown and waits for the server to finish.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.shutdown.take().unwrap().send(());
        self.handle.take().unwrap().await.unwrap()
    }

    /// Commits one transaction of row writes in `scope`.
    pub async fn write(&self, scope: &str, writes: Vec<RowWrite>) -> Vec<i64> {
        write_rows(&self.db, scope, writes).await
    }

    /// The value of the series `metric` (its name with any labels, exactly as written) in `/metrics`, if there.
    pub async fn metric(&self, metric: &str) -> Option<f64> {
        let text = self.get("/metrics", None).await.text().await.unwrap();
        text.lines()
            .find(|l| l.starts_with(metric) && l[metric.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    }

    /// Polls `/metrics` until `metric` reads `value` (observable state, not a sleep). Panics after 10 s.
    pub async fn wait_for_metric(&self, metric: &str, value: f64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let current = self.metric(metric).await;
            if current == Some(value) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{metric} never reached {value}; last {current:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Every (scope, product) whose `stock_on_hand` (migration 0007) differs from the sum of its movements, with both (a missing balance
/// row counts as zero, as commands read it).
pub async fn stock_on_hand_mismatches(
    db: &PgPool,
) -> Vec<(String, String, rust_decimal::Decimal, rust_decimal::Decimal)> {
    sqlx::query_as(
        r#"SELECT coalesce(m.scope_id, s.scope_id), coalesce(m.product_id, s.product_id),
                  coalesce(s.quantity, 0), coalesce(m.quantity, 0)
             FROM (SELECT scope_id, product_id, sum(quantity) AS quantity FROM stock_movements
                    GROUP BY scope_id, product_id) m
             FULL JOIN stock_on_hand s ON s.scope_id = m.scope_id AND s.product_id = m.product_id
            WHERE coalesce(s.quantity, 0) <> coalesce(m.quantity, 0)"#,
    )
    .fetch_all(db)
    .await
    .unwrap()
}

/// Every (scope, account) whose running balance (migration 0008) differs from the sum of its journal lines'
/// debits minus credits, with both (a missing balance row counts as zero, as the summary reads it).
pub async fn account_balance_mismatches(
    db: &PgPool,
) -> Vec<(String, String, rust_decimal::Decimal, rust_decimal::Decimal)> {
    sqlx::query_as(
        r#"SELECT coalesce(l.scope_id, b.scope_id), coalesce(l.account, b.account),
                  coalesce(b.balance, 0), coalesce(l.balance, 0)
             FROM (SELECT scope_id, account, sum(debit - credit) AS balance FROM journal_lines
                    GROUP BY scope_id, account) l
             FULL JOIN account_balances b ON b.scope_id = l.scope_id AND b.account = l.account
            WHERE coalesce(b.balance, 0) <> coalesce(l.balance, 0)"#,
    )
    .fetch_all(db)
    .await
    .unwrap()
}

/// Waits until some transaction of this database waits for a lock, seen in `pg_stat_activity`: the observable
/// state in which `blocked` (a task that must wait for a transaction the test holds open) is parked. Fails at once
/// if `blocked` finished instead.
pub async fn wait_until_blocked_on_a_lock<T>(db: &PgPool, blocked: &tokio::task::JoinHandle<T>) {
    assert!(
        blocked_or_finished(db, blocked).await,
        "the second insert did not wait for the first"
    );
}

/// Waits until some transaction of this database waits for a lock (true: `task` is parked behind a transaction
/// the test holds open) or `task` has finished without waiting (false).
pub async fn blocked_or_finished<T>(db: &PgPool, task: &tokio::task::JoinHandle<T>) -> bool {
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(db)
        .await
        .unwrap();
        if waiting > 0 {
            return true;
        }
        if task.is_finished() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A server with two pooled connections (the least it takes) whose plans will be made against small statistics:
/// `tables` are analyzed as they are now and kept from autovacuum. Also a one-connection pool for the test's own
/// statements, which never plan a sequential scan (they must not add to the scans the test counts).
/// tests/ledger_plans.rs and tests/feed_plans.rs grow a table after the server made its plans.
pub async fn start_with_small_statistics(tables: &[&str]) -> (TestApp, PgPool) {
    let app = TestApp::start_with(&[("DUKASYNC_DB_MAX_CONNECTIONS", "2")]).await;
    let db = PgPoolOptions::new()
        .max_connections(1)
        .after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::query("SET enable_seqscan = off").execute(conn).await?;
                Ok(())
            })
        })
        .connect(&app.database_url)
        .await
        .unwrap();
    freeze_small_statistics(&db, tables).await;
    (app, db)
}

/// Analyzes `tables` as they are and keeps autovacuum from analyzing them again.
pub async fn freeze_small_statistics(db: &PgPool, tables: &[&str]) {
    for table in tables {
        for sql in [
            format!("ALTER TABLE {table} SET (autovacuum_enabled = false)"),
            format!("ANALYZE {table}"),
        ] {
            sqlx::query(&sql).execute(db).await.unwrap();
        }
    }
}

/// Waits until the backends have reported `column` (a counter of `pg_stat_user_tables`) of `table` up to
/// `count`. A backend reports all its table counters at once, within a second of going idle, so the reads that
/// came with those writes are reported too.
pub async fn wait_for_reported(db: &PgPool, table: &str, column: &str, count: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reported: i64 = sqlx::query_scalar(&format!("SELECT {column} FROM pg_stat_user_tables WHERE relname = $1"))
            .bind(table)
            .fetch_one(db)
            .await
            .unwrap();
        if reported >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{reported} of {count} {column} of {table} reported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `count` replay transactions wait for a lock (one the test holds), seen in `pg_stat_activity`.
pub async fn wait_for_replays_on_lock(app: &TestApp, count: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%replay_clients%'",
        )
        .fetch_one(&app.db)
        .await
        .unwrap();
        if waiting >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{waiting} of {count} replay transactions waited for a lock"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub async fn issue_token(db: &PgPool, email: &str, device: &str) -> String {
    let user = accounts::user_by_email(db, email)
        .await
        .unwrap()
        .expect("demo user exists");
    let device_id = accounts::ensure_device(db, user, device).await.unwrap();
    let token = NewToken::generate();
    tokens::insert(db, device_id, &token.hash, "test").await.unwrap();
    token.plaintext
}

pub async fn write_rows(db: &PgPool, scope: &str, writes: Vec<RowWrite>) -> Vec<i64> {
    let scope = ScopeId::parse(scope).unwrap();
    let mut tx = db.begin().await.unwrap();
    let versions = store::changes::append(&mut tx, &scope, &writes)
        .await
        .unwrap()
        .expect("scope exists");
    tx.commit().await.unwrap();
    versions
}

pub fn upsert(collection: &str, key: &str, data: serde_json::Value) -> RowWrite {
    RowWrite {
        collection: collection.into(),
        key: key.into(),
        data: Some(data),
    }
}

pub fn delete(collection: &str, key: &str) -> RowWrite {
    RowWrite {
        collection: collection.into(),
        key: key.into(),
        data: None,
    }
}

pub const OWNER: &str = "owner@duka.test";
pub const MANAGER: &str = "manager@duka.test";
pub const WATER_CASHIER: &str = "cashier.water@duka.test";
pub const SHOP_CASHIER: &str = "cashier.shop@duka.test";

/// A private `redis-server` process on a free loopback port, killed on drop.
pub struct RedisProcess {
    pub port: u16,
    child: Child,
}

impl RedisProcess {
    pub fn start() -> RedisProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(port)
    }

    /// A new `redis-server` on `port` (e.g. the port of one that was killed, to test reconnecting).
    pub fn start_on(port: u16) -> RedisProcess {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (deploy/services.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(10));
        }
        RedisProcess { port, child }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Sends a signal (`STOP`, `CONT`, ...) with `kill(1)`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// SIGKILL, and wait until the port is closed.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
