//! PostgreSQL access. Functions here take a pool or a connection/transaction and know nothing of HTTP.
//!
//! Everything that writes runs in an explicit transaction chosen by the caller, so the caller decides what
//! commits together (for example an operation's effects and the client's sequence number).

pub mod accounts;
pub mod backend_users;
pub mod backend_writes;
pub mod batch;
pub mod capture;
pub mod changes;
pub mod conflicts;
pub mod durability;
pub mod inbox;
pub mod ledger;
pub mod pairing;
mod params;
pub mod reference;
pub mod replay;
pub mod summary;
pub mod token_admin;
pub mod tokens;
pub mod windows;

use crate::config::{
    redact_url,
    tls::{self, SslMode},
    Config,
};
use anyhow::Context;
use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions, PgSslMode},
    ConnectOptions, Connection, PgPool,
};
use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        OnceLock,
    },
    time::{Duration, Instant},
};

/// Embedded migrations from `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Opens the pool lazily: the server starts even while PostgreSQL is down, reports not-ready, and answers 503
/// until it is back. Every connection of the process (the pool's, the LISTEN connection, the CLI's) comes from
/// here, so all use the URL's TLS settings (`config::tls`).
pub fn connect_lazy(config: &Config) -> anyhow::Result<PgPool> {
    let options = connect_options(config).with_context(|| {
        format!(
            "DUKASYNC_DATABASE_URL is not usable ({})",
            redact_url(config.database_url.expose())
        )
    })?;
    let options = options
        .application_name("dukasync")
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));
    Ok(PgPoolOptions::new()
        .max_connections(config.db_max_connections)
        .min_connections(0)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .idle_timeout(Duration::from_secs(300))
        // sqlx pings a connection on every acquire by default: a second round trip for every statement. Only a
        // connection idle long enough to have been dropped meanwhile (PostgreSQL restarted, a firewall timed it
        // out), or idle since before a connection failed, is tested now. One that breaks while in use fails that request
        // (503, nothing written); sqlx pings every connection on its way back and closes it if dead.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for < PING_IF_IDLE_FOR && !idle_since_a_failure(meta.idle_for) {
                    return Ok(true);
                }
                Ok(conn.ping().await.is_ok())
            })
        })
        .connect_lazy_with(options))
}

/// The URL's options with libpq's TLS rules applied (`config::tls::DatabaseTls`).
fn connect_options(config: &Config) -> Result<PgConnectOptions, sqlx::Error> {
    let tls = &config.database_tls;
    let mut url = url::Url::parse(config.database_url.expose()).map_err(sqlx::Error::config)?;
    if tls.system_roots {
        // sqlx would read a file named `system`; without one it trusts its bundled roots, which is the point.
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(key, _)| !tls::is_root_cert_key(key))
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect();
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    let options = PgConnectOptions::from_url(&url)?;
    Ok(match tls.mode {
        Some(mode) => options.ssl_mode(match mode {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Allow => PgSslMode::Allow,
            SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require => PgSslMode::Require,
            SslMode::VerifyCa => PgSslMode::VerifyCa,
            SslMode::VerifyFull => PgSslMode::VerifyFull,
        }),
        None => options,
    })
}

/// The longest a request waits for a pooled connection (then 503 `unavailable`, protocol §5).
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// A pooled connection idle at least this long is pinged before use (and replaced if that fails).
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// When a connection last failed, in nanoseconds after [`clock_start`] plus one (0: never).
///
/// When PostgreSQL restarts or terminates backends, every connection idle in the pool is dead, yet one idle
/// for less than [`PING_IF_IDLE_FOR`] would be used unpinged: each would fail a request in turn. After the first
/// failure, the connections that went idle before it are pinged instead, so one outage fails one request per
/// in-flight use, not one per pooled connection. Process-wide: another pool in the process (tests run several)
/// only pays a ping it did not need.
static LAST_CONNECTION_FAILURE: AtomicU64 = AtomicU64::new(0);

fn clock_start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

fn clock(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(clock_start()).as_nanos()).unwrap_or(u64::MAX - 1) + 1
}

/// Records `err` if it says the connection, or PostgreSQL itself, failed (not a lock or serialization conflict).
pub fn note_connection_failure(err: &sqlx::Error) {
    let failed = match err {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            matches!(db.code().as_deref(), Some(c) if c.starts_with("08") || c.starts_with("57P"))
        }
        _ => false,
    };
    if failed {
        LAST_CONNECTION_FAILURE.fetch_max(clock(Instant::now()), Ordering::Relaxed);
    }
}

/// Whether a connection idle for `idle_for` went idle before the last connection failure.
fn idle_since_a_failure(idle_for: Duration) -> bool {
    let failed = LAST_CONNECTION_FAILURE.load(Ordering::Relaxed);
    failed != 0
        && Instant::now()
            .checked_sub(idle_for)
            .is_none_or(|idle_from| clock(idle_from) <= failed)
}

/// Applies pending migrations.
pub async fn migrate(db: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(db).await.context("applying migrations")
}

/// `SELECT 1`: used by readiness.
/// The versions of the migrations applied to the database (`42P01` when it has no dukasync schema at all).
pub async fn applied_migrations(db: &PgPool) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
        .fetch_all(db)
        .await
}

pub async fn ping(db: &PgPool) -> Result<(), sqlx::Error> {
    let result = sqlx::query("SELECT 1").execute(db).await.map(|_| ());
    if let Err(err) = &result {
        note_connection_failure(err);
    }
    result
}

/// Every scope's head version, for metrics.
pub async fn scope_heads(db: &PgPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT id, head_version FROM scopes ORDER BY id")
        .fetch_all(db)
        .await
}

/// A name for this database that no other database shares: the cluster's system identifier and the database's
/// oid. Cache keys carry it, so databases sharing one Redis never read each other's entries.
pub async fn cache_namespace(db: &PgPool) -> Result<String, sqlx::Error> {
    sqlx::query_scalar(
        r#"SELECT (SELECT system_identifier FROM pg_control_system())::text || '.' || d.oid::text
           FROM pg_database d WHERE d.datname = current_database()"#,
    )
    .fetch_one(db)
    .await
}
