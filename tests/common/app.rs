//! The real server on port 0 over a fresh database, its demo users and their tokens, and the `dukasync` CLI.

use super::{fresh_database, write_rows};
use dukasync::{
    auth::NewToken,
    config::Config,
    store::{accounts, changes::RowWrite, tokens},
    wire::ChangesPage,
    AppState,
};
use sqlx::{postgres::PgPoolOptions, PgPool};
use std::{
    collections::HashMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

/// The demo users of `dukasync::demo::load`, by role.
pub const OWNER: &str = "owner@duka.test";
pub const MANAGER: &str = "manager@duka.test";
pub const WATER_CASHIER: &str = "cashier.water@duka.test";
pub const SHOP_CASHIER: &str = "cashier.shop@duka.test";

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

    /// One page of `scope`'s feed for `query` (e.g. `since=0&limit=100`), as JSON.
    pub async fn changes(&self, token: &str, scope: &str, query: &str) -> ChangesPage {
        self.get(&format!("/v1/scopes/{scope}/changes?{query}"), Some(token))
            .await
            .json()
            .await
            .unwrap()
    }

    /// The scope's head version, read from the database (not through the feed).
    pub async fn head_version(&self, scope: &str) -> i64 {
        sqlx::query_scalar("SELECT head_version FROM scopes WHERE id = $1")
            .bind(scope)
            .fetch_one(&self.db)
            .await
            .unwrap()
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

    /// The family `name` summed over its samples whose labels contain every one of `labels` (0 when none do).
    pub async fn metric_sum(&self, name: &str, labels: &[&str]) -> f64 {
        let text = self.get("/metrics", None).await.text().await.unwrap();
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter(|l| labels.iter().all(|want| l.contains(want)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
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

/// Runs the `dukasync` binary against the app's database; returns (success, stdout, stderr).
pub fn cli(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dukasync"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DUKASYNC_DATABASE_URL", &app.database_url)
        .env("DUKASYNC_LOG", "error")
        .output()
        .expect("binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
