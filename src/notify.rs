//! The one PostgreSQL LISTEN connection of a server instance.
//!
//! It turns `dukasync_changes` notifications (sent by any instance's commits) into [`FeedHub`] wake-ups and
//! `dukasync_auth` notifications into token-cache flushes, and `dukasync_inbox` (the backend queued writes,
//! `inbox`) into a round of the applier. When the connection drops, notifications sent meanwhile are lost, so
//! after every (re)connect it wakes all waiters, flushes the token cache and kicks the applier: all then re-read
//! PostgreSQL, and nothing is missed.

use crate::feed::hub::FeedHub;
use crate::{
    auth::TokenCache,
    domain::ScopeId,
    inbox::Inbox,
    store::{changes::FEED_CHANNEL, inbox::INBOX_CHANNEL, tokens::AUTH_CHANNEL},
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
    inbox: Arc<Inbox>,
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
                inbox.kick();
                tracing::info!("listening for change notifications");
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        received = listener.try_recv() => match received {
                            Ok(Some(n)) => dispatch(n.channel(), n.payload(), &hub, &tokens, &inbox),
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
    listener.listen_all([FEED_CHANNEL, AUTH_CHANNEL, INBOX_CHANNEL]).await?;
    Ok(listener)
}

fn dispatch(channel: &str, payload: &str, hub: &FeedHub, tokens: &TokenCache, inbox: &Inbox) {
    if channel == AUTH_CHANNEL {
        tokens.clear();
        return;
    }
    if channel == INBOX_CHANNEL {
        // One round applies every scope's queue: the payload (the scope) needs no reading.
        inbox.kick();
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
