//! The application: shared state, background tasks, and serving on a given listener with graceful shutdown.
//! Tests bind port 0 and call [`serve`] exactly as `dukasync serve` does.

use crate::{
    auth::TokenCache,
    cache::{Cache, Redis},
    config::{redact_url, Config},
    http,
    metrics::Metrics,
    server::{self, ConnectionLimits},
    store,
    sync::{
        group_commit::GroupCommit,
        hub::FeedHub,
        listener,
        longpoll::{LongPollLimits, LongPolls},
    },
};
use sqlx::PgPool;
use std::{
    future::Future,
    sync::{atomic::AtomicBool, Arc},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// State shared by every request. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub db: PgPool,
    pub redis: Option<Arc<Redis>>,
    /// Snapshots and feed windows: in-process, in front of Redis when configured.
    pub cache: Arc<Cache>,
    pub tokens: Arc<TokenCache>,
    pub hub: Arc<FeedHub>,
    /// Replay pushes, grouped per scope into shared transactions.
    pub replays: Arc<GroupCommit>,
    pub metrics: Metrics,
    /// Whether the LISTEN connection is up (reported by `/metrics` as `dukasync_listener_connected`).
    pub listening: Arc<AtomicBool>,
    /// Admission control: one permit per request in flight (`DUKASYNC_MAX_IN_FLIGHT`).
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// Admission of parked long-polls, apart from `in_flight` (see `sync::longpoll`).
    pub longpolls: Arc<LongPolls>,
    /// Cancelled when shutdown begins: long-polls answer at once and background tasks stop.
    pub shutdown: CancellationToken,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Builds the state without touching the network: PostgreSQL and Redis are connected on first use.
    pub fn new(config: Config) -> anyhow::Result<Self> {
        let db = store::connect_lazy(&config)?;
        let redis = config
            .redis_url
            .as_ref()
            .map(|url| Redis::with_timeout(url, config.cache.redis_timeout).map(Arc::new))
            .transpose()?;
        let cache = Arc::new(Cache::new(
            config.cache.memory_bytes,
            config.cache.window,
            redis.clone(),
        ));
        Ok(AppState(Arc::new(Inner {
            tokens: Arc::new(TokenCache::new(config.token_cache_ttl)),
            hub: Arc::new(FeedHub::default()),
            replays: Arc::new(GroupCommit::new(config.limits.max_batch_ops)),
            metrics: Metrics::default(),
            listening: Arc::new(AtomicBool::new(false)),
            shutdown: CancellationToken::new(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(config.limits.max_in_flight)),
            longpolls: Arc::new(LongPolls::new(LongPollLimits {
                total: config.limits.max_longpolls,
                per_scope: config.limits.max_longpolls_per_scope,
                per_device: config.limits.max_longpolls_per_device,
            })),
            redis,
            cache,
            db,
            config,
        })))
    }
}

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
    let background = tokio::spawn(listener::run(
        state.db.clone(),
        state.hub.clone(),
        state.tokens.clone(),
        state.listening.clone(),
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
