//! The state every request shares: configuration, the pool, the caches, the feed hub, group commit, admission.
//! Built without touching the network (PostgreSQL and Redis connect on first use); cheap to clone.

use crate::{
    auth::TokenCache,
    cache::{Cache, Redis},
    config::Config,
    feed::{
        hub::FeedHub,
        longpoll::{LongPollLimits, LongPolls},
    },
    metrics::Metrics,
    replay::group_commit::GroupCommit,
    store,
};
use sqlx::PgPool;
use std::sync::{atomic::AtomicBool, Arc};
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
    /// Admission of parked long-polls, apart from `in_flight` (see `feed::longpoll`).
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
