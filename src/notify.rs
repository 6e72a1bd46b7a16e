//! The one PostgreSQL LISTEN connection of a server instance.
//!
//! It turns `dukasync_changes` notifications (sent by any instance's commits) into [`FeedHub`] wake-ups and
//! `dukasync_auth` notifications into token-cache flushes. When the connection drops, notifications sent
//! meanwhile are lost, so after every (re)connect it wakes all waiters and flushes the token cache: both then
//! re-read PostgreSQL, and nothing is missed.

use crate::feed::hub::FeedHub;
use crate::{
    auth::TokenCache,
    domain::ScopeId,
    store::{changes::FEED_CHANNEL, tokens::AUTH_CHANNEL},
};
use sqlx::{postgres::PgListener, PgPool};
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio_util::sync::CancellationToken;

/// Runs until `shutdown`; reconnects by itself with capped backoff. `connected` reflects the LISTEN state.
pub async fn run(
    db: PgPool,
    hub: Arc<FeedHub>,
    tokens: Arc<TokenCache>,
    connected: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        match listen(&db).await {
            Ok(mut listener) => {
                connected.store(true, Ordering::Relaxed);
                backoff = Duration::from_millis(100);
                hub.wake_all();
                tokens.clear();
                tracing::info!("listening for change notifications");
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        received = listener.try_recv() => match received {
                            Ok(Some(n)) => dispatch(n.channel(), n.payload(), &hub, &tokens),
                            Ok(None) => {
                                tracing::warn!("notification connection lost; reconnecting");
                                break;
                            }
                            Err(err) => {
                                tracing::warn!(error = %err, "notification connection failed; reconnecting");
                                break;
                            }
                        }
                    }
                }
                connected.store(false, Ordering::Relaxed);
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "cannot listen for notifications");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn listen(db: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(db).await?;
    listener.ignore_pool_close_event(true);
    listener.listen_all([FEED_CHANNEL, AUTH_CHANNEL]).await?;
    Ok(listener)
}

fn dispatch(channel: &str, payload: &str, hub: &FeedHub, tokens: &TokenCache) {
    if channel == AUTH_CHANNEL {
        tokens.clear();
        return;
    }
    let parsed = payload
        .rsplit_once(':')
        .and_then(|(scope, head)| Some((ScopeId::parse(scope)?, head.parse::<i64>().ok()?)));
    match parsed {
        Some((scope, head)) => hub.publish(&scope, head),
        None => tracing::warn!(payload, "ignoring malformed change notification"),
    }
}
