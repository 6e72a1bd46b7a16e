//! The cache layer. Redis is optional and never trusted: it only ever holds what can be recomputed from
//! PostgreSQL, every call to it is bounded by a short timeout, and a failure means "miss", never an error.
//!
//! - [`Redis`]: one multiplexed connection that reconnects on demand.
//! - [`shared::SharedCache`]: Redis as a cache: integrity-checked values, a circuit breaker, bounded writes.
//! - [`memory::MemoryCache`]: the bounded in-process cache (alone, or as the hot layer in front of Redis).
//! - [`Cache`]: both layers behind one interface; `keys` names every entry with the format version.

pub mod keys;
pub mod memory;
pub mod shared;
pub mod stats;

mod layered;
pub use layered::Cache;

use crate::config::{tls::CaFile, Secret};
use redis::aio::MultiplexedConnection;
use std::time::Duration;
use tokio::sync::Mutex;

/// How long any single Redis call may take before we give up on it and fall back (the default of
/// `DUKASYNC_REDIS_TIMEOUT_MS`).
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// A Redis connection that reconnects on demand.
pub struct Redis {
    client: redis::Client,
    connection: Mutex<Option<MultiplexedConnection>>,
    timeout: Duration,
}

impl Redis {
    /// Parses the URL; connecting happens on first use, so a Redis that is down at start-up is not fatal.
    pub fn new(url: &Secret) -> anyhow::Result<Self> {
        Self::with_timeout(url, None, REDIS_TIMEOUT)
    }

    /// Like [`Redis::new`], with every call bounded by `timeout`. A `rediss://` URL is TLS: Redis' certificate
    /// must chain to `ca` (`DUKASYNC_REDIS_CA_FILE`) if given, else to the bundled Mozilla roots. A TLS failure
    /// is a failed connection like any other: Redis counts as down and requests fall back to PostgreSQL.
    pub fn with_timeout(url: &Secret, ca: Option<&CaFile>, timeout: Duration) -> anyhow::Result<Self> {
        let client = match ca {
            None => redis::Client::open(url.expose()),
            Some(ca) => redis::Client::build_with_tls(
                url.expose(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.pem.clone()),
                },
            ),
        }
        // The error may quote the URL, password included: never show it.
        .map_err(|_| {
            anyhow::anyhow!("DUKASYNC_REDIS_URL is not a usable Redis URL (or DUKASYNC_REDIS_CA_FILE not a usable CA)")
        })?;
        Ok(Redis {
            client,
            connection: Mutex::new(None),
            timeout,
        })
    }

    /// The bound on every call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A live connection, reconnecting when needed. Waiting for another caller's reconnect counts against the
    /// same timeout, so a hung Redis never queues requests behind each other.
    pub async fn connection(&self) -> Option<MultiplexedConnection> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, async {
            let mut slot = self.connection.lock().await;
            if let Some(conn) = slot.as_ref() {
                return Some(conn.clone());
            }
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(timeout)
                .set_response_timeout(timeout);
            match self.client.get_multiplexed_async_connection_with_config(&config).await {
                Ok(conn) => {
                    *slot = Some(conn.clone());
                    Some(conn)
                }
                Err(_) => None,
            }
        })
        .await
        .ok()
        .flatten()
    }

    /// Forgets the connection after a failure, so the next call reconnects.
    pub async fn reset(&self) {
        *self.connection.lock().await = None;
    }

    /// `PING` within the timeout.
    pub async fn ping(&self) -> bool {
        let Some(mut conn) = self.connection().await else {
            return false;
        };
        let pong: Result<Result<String, _>, _> =
            tokio::time::timeout(self.timeout, redis::cmd("PING").query_async(&mut conn)).await;
        let ok = matches!(pong, Ok(Ok(ref s)) if s == "PONG");
        if !ok {
            self.reset().await;
        }
        ok
    }
}
