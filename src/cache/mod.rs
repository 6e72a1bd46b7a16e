//! The cache layer. Redis is optional and never trusted: it only ever holds what can be recomputed from
//! PostgreSQL, every call to it is bounded by a short timeout, and a failure means "miss", never an error.

use crate::config::Secret;
use redis::aio::MultiplexedConnection;
use std::time::Duration;
use tokio::sync::Mutex;

/// How long any single Redis call may take before we give up on it and fall back.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// A Redis connection that reconnects on demand.
pub struct Redis {
    client: redis::Client,
    connection: Mutex<Option<MultiplexedConnection>>,
}

impl Redis {
    /// Parses the URL; connecting happens on first use, so a Redis that is down at start-up is not fatal.
    pub fn new(url: &Secret) -> anyhow::Result<Self> {
        let client = redis::Client::open(url.expose())
            .map_err(|_| anyhow::anyhow!("DUKASYNC_REDIS_URL is not a usable Redis URL"))?;
        Ok(Redis {
            client,
            connection: Mutex::new(None),
        })
    }

    /// A live connection, reconnecting when needed, within [`REDIS_TIMEOUT`].
    pub async fn connection(&self) -> Option<MultiplexedConnection> {
        let mut slot = self.connection.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Some(conn.clone());
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(REDIS_TIMEOUT)
            .set_response_timeout(REDIS_TIMEOUT);
        match tokio::time::timeout(
            REDIS_TIMEOUT,
            self.client.get_multiplexed_async_connection_with_config(&config),
        )
        .await
        {
            Ok(Ok(conn)) => {
                *slot = Some(conn.clone());
                Some(conn)
            }
            _ => None,
        }
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
            tokio::time::timeout(REDIS_TIMEOUT, redis::cmd("PING").query_async(&mut conn)).await;
        let ok = matches!(pong, Ok(Ok(ref s)) if s == "PONG");
        if !ok {
            self.reset().await;
        }
        ok
    }
}
