//! The state every request shares: configuration, the pool, the caches, the feed hub, group commit, admission.
//! Built without touching the network (PostgreSQL and Redis connect on first use); cheap to clone.

use crate::{
    auth::{attempts::AttemptLimiter, jwt::JwtVerifier, TokenCache},
    cache::{Cache, Redis},
    config::Config,
    durability::Durability,
    feed::longpoll::Early,
    feed::{
        hub::FeedHub,
        longpoll::{LongPollLimits, LongPolls},
        windows::WindowCache,
        Feed,
    },
    inbox::Inbox,
    metrics,
    metrics::Metrics,
    reference::References,
    replay::group_commit::GroupCommit,
    store,
};
use sqlx::PgPool;
use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};
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
    /// Bounds on pairing-code redemptions (protocol §3.3).
    pub pairing_attempts: Arc<AttemptLimiter>,
    /// Verifies JWTs of the ERP's backend; `None` when `DUKASYNC_JWT_*` is not configured (JWTs refused).
    pub jwt: Option<Arc<JwtVerifier>>,
    pub hub: Arc<FeedHub>,
    /// Pulls and checksums of the change feed.
    pub feed: Feed,
    /// Reference snapshots.
    pub references: References,
    /// Replay pushes, grouped per scope into shared transactions.
    pub replays: Arc<GroupCommit>,
    /// How far standbys hold the WAL (`durable_seq` of push answers, protocol §10.3).
    pub durability: Arc<Durability>,
    /// Wakes the applier of backend writes (`inbox`).
    pub inbox: Arc<Inbox>,
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
            .map(|url| Redis::with_timeout(url, config.redis_ca.as_ref(), config.cache.redis_timeout).map(Arc::new))
            .transpose()?;
        let cache = Arc::new(Cache::new(config.cache.memory_bytes, redis.clone()));
        let hub = Arc::new(FeedHub::default());
        let jwt_verifier = config.jwt.as_ref().map(JwtVerifier::new).transpose()?.map(Arc::new);
        let shutdown = CancellationToken::new();
        let windows = WindowCache::new(cache.clone(), config.cache.window);
        let durability = Durability::new(config.durability.clone());
        Ok(AppState(Arc::new(Inner {
            feed: Feed::new(db.clone(), windows, hub.clone(), shutdown.clone()),
            references: References::new(db.clone(), cache.clone(), hub.clone()),
            tokens: Arc::new(TokenCache::new(config.token_cache_ttl)),
            pairing_attempts: Arc::new(AttemptLimiter::new(
                config.enrollment.attempts_per_ip,
                config.enrollment.attempts_total,
            )),
            jwt: jwt_verifier,
            hub,
            replays: Arc::new(GroupCommit::new(config.limits.max_batch_ops, durability.clone())),
            durability,
            inbox: Arc::new(Inbox::default()),
            metrics: Metrics::default(),
            listening: Arc::new(AtomicBool::new(false)),
            shutdown,
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

impl AppState {
    /// The `/metrics` text (Prometheus exposition format): request counts and latency by route, long-polls
    /// (their durations by outcome, waiters and bounds), pool and listener state, the caches, group commit,
    /// operation outcomes, feed resets by reason, the process (`process_*`) and the build, each scope's head
    /// version and open conflicts. Gauges read from PostgreSQL are left out while it is unreachable.
    pub async fn render_metrics(&self) -> String {
        let mut out = String::new();
        self.metrics.render_http(&mut out);
        metrics::render_gauge(
            &mut out,
            "dukasync_longpoll_waiters",
            "Pulls waiting for a change.",
            &[(String::new(), self.hub.waiters() as f64)],
        );
        metrics::render_gauge(
            &mut out,
            "dukasync_longpoll_parked",
            "Long-polls holding a place in the long-poll bounds (DUKASYNC_MAX_LONGPOLLS*).",
            &[(String::new(), self.longpolls.parked() as f64)],
        );
        metrics::render_counter(
            &mut out,
            "dukasync_longpoll_early_total",
            "Long-polls answered before a change or their wait's end because of the long-poll bounds: replaced by a newer one of their device, or no place to wait.",
            &[
                (
                    "reason=\"replaced\"".into(),
                    self.longpolls.early(Early::Replaced) as f64,
                ),
                ("reason=\"full\"".into(), self.longpolls.early(Early::Full) as f64),
            ],
        );
        metrics::render_gauge(
            &mut out,
            "dukasync_db_pool_connections",
            "PostgreSQL pool connections by state.",
            &[
                ("state=\"idle\"".into(), self.db.num_idle() as f64),
                (
                    "state=\"in_use\"".into(),
                    (self.db.size() as usize).saturating_sub(self.db.num_idle()) as f64,
                ),
            ],
        );
        metrics::render_gauge(
            &mut out,
            "dukasync_listener_connected",
            "1 when the LISTEN connection for change notifications is up.",
            &[(
                String::new(),
                if self.listening.load(Ordering::Relaxed) {
                    1.0
                } else {
                    0.0
                },
            )],
        );
        self.cache.render_metrics(&mut out);
        let replays = self.replays.counts();
        let count = |counter: &std::sync::atomic::AtomicU64| [(String::new(), counter.load(Ordering::Relaxed) as f64)];
        metrics::render_counter(
            &mut out,
            "dukasync_replay_transactions_total",
            "Replay transactions run; concurrent pushes of a scope share one (group commit).",
            &count(&replays.transactions),
        );
        metrics::render_counter(
            &mut out,
            "dukasync_replay_pushes_total",
            "Pushes (POST /v1/scopes/{scope}/ops with a valid batch) replayed.",
            &count(&replays.pushes),
        );
        metrics::render_gauge(
            &mut out,
            "dukasync_replay_waiting",
            "Pushes queued behind a running replay transaction of their scope; the next transaction takes them together.",
            &[(String::new(), self.replays.waiting() as f64)],
        );
        metrics::render_counter(
            &mut out,
            "dukasync_replay_groups_split_total",
            "Shared replay transactions that failed on one push's content and were replayed one push at a time.",
            &count(&replays.split),
        );
        replays.operations.render(
            &mut out,
            "dukasync_operations_total",
            "Operations answered by committed replays, by outcome (applied, duplicate, conflict, rejected), type and command (\"\" for generic writes).",
        );
        self.feed.resets().render(
            &mut out,
            "dukasync_feed_resets_total",
            "reset_required (410) answers of the feed (pulls and checksums), by reason: the client drops its copy of the scope and pulls from zero.",
        );
        self.durability.render_metrics(&self.db, &mut out).await;
        self.feed.compressions().render(
            &mut out,
            "dukasync_feed_window_compressions_total",
            "Ranges of closed feed windows compressed for compressed pages, by coding: each is compressed once and then served from the cache (memory, Redis) until evicted.",
        );
        metrics::process::Process::read().render(&mut out);
        metrics::process::render_build_info(&mut out);
        if let Ok(heads) = store::scope_heads(&self.db).await {
            let samples: Vec<(String, f64)> = heads
                .into_iter()
                .map(|(scope, head)| (format!("scope=\"{}\"", metrics::escape(&scope)), head as f64))
                .collect();
            metrics::render_gauge(
                &mut out,
                "dukasync_scope_head_version",
                "Head version of each scope's change feed.",
                &samples,
            );
        }
        if let Ok(counts) = store::conflicts::open_counts(&self.db).await {
            let samples: Vec<(String, f64)> = counts
                .into_iter()
                .map(|(scope, open)| (format!("scope=\"{}\"", metrics::escape(&scope)), open as f64))
                .collect();
            metrics::render_gauge(
                &mut out,
                "dukasync_conflicts_open",
                "Open conflicts of each scope, waiting for an owner or manager (/v1/admin/conflicts).",
                &samples,
            );
        }
        out
    }
}
