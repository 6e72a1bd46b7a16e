//! The application: background tasks, and serving the state (`state::AppState`) on a given listener with graceful
//! shutdown.
//! Tests bind port 0 and call [`serve`] exactly as `dukasync serve` does.

use crate::{
    config::redact_url,
    http, inbox, notify,
    server::{self, ConnectionLimits},
    state::AppState,
};
use std::future::Future;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves on `listener` until `signal` completes, then stops accepting, wakes long-polls, and lets in-flight
/// requests finish for at most the configured grace period.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    signal: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let local = listener.local_addr()?;
    tracing::info!(
        address = %local,
        database = %redact_url(state.config.database_url.expose()),
        redis = state.config.redis_url.as_ref().map(|u| redact_url(u.expose())).unwrap_or_else(|| "none".into()),
        "dukasync listening"
    );
    let background = tokio::spawn(notify::run(
        state.db.clone(),
        state.hub.clone(),
        state.tokens.clone(),
        state.inbox.clone(),
        state.listening.clone(),
        state.shutdown.clone(),
    ));
    let applier = tokio::spawn(inbox::run(
        state.db.clone(),
        state.inbox.clone(),
        state.shutdown.clone(),
    ));
    let shutdown = state.shutdown.clone();
    let grace = state.config.shutdown_grace;
    let router = http::router(state.clone());
    let limits = ConnectionLimits {
        header_read: state.config.limits.header_read_timeout,
        idle: state.config.limits.idle_timeout,
    };
    let stopping = CancellationToken::new();
    tokio::spawn({
        let (shutdown, stopping) = (shutdown.clone(), stopping.clone());
        async move {
            tokio::select! {
                _ = signal => tracing::info!("shutting down: no new connections, finishing in-flight requests"),
                // Shutdown begun elsewhere (the grace period below ran out): stop accepting too.
                _ = shutdown.cancelled() => {}
            }
            shutdown.cancel();
            stopping.cancel();
        }
    });
    let server = server::serve(listener, router, limits, stopping);
    let result = tokio::select! {
        _ = server => Ok(()),
        _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_secs = grace.as_secs(), "in-flight requests did not finish within the grace period");
            Ok(())
        }
    };
    shutdown.cancel();
    let _ = background.await;
    let _ = applier.await;
    state.db.close().await;
    result
}

/// A future that completes on SIGTERM or SIGINT. The handlers are registered here, before serving starts, so
/// a signal that arrives as soon as the server reports it is listening still shuts it down gracefully.
pub fn termination_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}
