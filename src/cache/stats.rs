//! Cache statistics, per cache and layer, for `/metrics` and `GET /v1/admin/cache`.
//!
//! Counters only ever grow; `bytes` and `entries` are the in-process layer's current size.

use serde::Serialize;
use std::{
    fmt::Write,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

/// The caches: what is stored, not where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CacheKind {
    /// Closed, immutable windows of a scope's change feed.
    Window,
    /// (scope, dataset, last change) → content hash of the snapshot.
    SnapshotPointer,
    /// Canonical snapshot bytes under their content hash.
    SnapshotBlob,
    /// Encoded and compressed snapshot representations (in-process only).
    Representation,
    /// Compressed members of closed windows' ranges, one per coding (`feed::coded`).
    WindowMember,
}

impl CacheKind {
    pub const ALL: [CacheKind; 5] = [
        CacheKind::Window,
        CacheKind::SnapshotPointer,
        CacheKind::SnapshotBlob,
        CacheKind::Representation,
        CacheKind::WindowMember,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CacheKind::Window => "window",
            CacheKind::SnapshotPointer => "snapshot_pointer",
            CacheKind::SnapshotBlob => "snapshot_blob",
            CacheKind::Representation => "representation",
            CacheKind::WindowMember => "window_member",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Default)]
struct Counters {
    memory_hits: AtomicU64,
    memory_misses: AtomicU64,
    redis_hits: AtomicU64,
    redis_misses: AtomicU64,
    /// Redis lookups skipped or failed (down, timed out, circuit open): served from PostgreSQL instead.
    fallbacks: AtomicU64,
    /// Values whose integrity check failed: treated as misses and overwritten.
    corrupt: AtomicU64,
    evictions: AtomicU64,
    memory_bytes: AtomicU64,
    memory_entries: AtomicU64,
    redis_bytes_written: AtomicU64,
    redis_writes_dropped: AtomicU64,
}

/// The statistics of one server instance.
#[derive(Default)]
pub struct Stats {
    kinds: [Counters; 5],
    /// Redis commands that failed or timed out.
    pub redis_errors: AtomicU64,
    /// 1 while Redis is considered reachable (the circuit is closed).
    pub redis_up: AtomicU64,
}

/// One cache's figures, as the admin endpoint reports them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CacheFigures {
    pub cache: CacheKind,
    pub memory_hits: u64,
    pub memory_misses: u64,
    pub redis_hits: u64,
    pub redis_misses: u64,
    pub fallbacks: u64,
    pub corrupt: u64,
    pub evictions: u64,
    pub memory_bytes: u64,
    pub memory_entries: u64,
    pub redis_bytes_written: u64,
    pub redis_writes_dropped: u64,
}

impl Stats {
    fn of(&self, kind: CacheKind) -> &Counters {
        &self.kinds[kind.index()]
    }

    pub fn memory_lookup(&self, kind: CacheKind, hit: bool) {
        let c = self.of(kind);
        if hit { &c.memory_hits } else { &c.memory_misses }.fetch_add(1, Relaxed);
    }

    pub fn redis_lookup(&self, kind: CacheKind, hit: bool) {
        let c = self.of(kind);
        if hit { &c.redis_hits } else { &c.redis_misses }.fetch_add(1, Relaxed);
    }

    pub fn fallback(&self, kind: CacheKind, n: u64) {
        self.of(kind).fallbacks.fetch_add(n, Relaxed);
    }

    pub fn corrupt(&self, kind: CacheKind) {
        self.of(kind).corrupt.fetch_add(1, Relaxed);
    }

    pub fn evicted(&self, kind: CacheKind) {
        self.of(kind).evictions.fetch_add(1, Relaxed);
    }

    pub fn memory_added(&self, kind: CacheKind, size: usize) {
        let c = self.of(kind);
        c.memory_bytes.fetch_add(size as u64, Relaxed);
        c.memory_entries.fetch_add(1, Relaxed);
    }

    pub fn memory_removed(&self, kind: CacheKind, size: usize) {
        let c = self.of(kind);
        c.memory_bytes.fetch_sub(size as u64, Relaxed);
        c.memory_entries.fetch_sub(1, Relaxed);
    }

    pub fn redis_written(&self, kind: CacheKind, size: usize) {
        self.of(kind).redis_bytes_written.fetch_add(size as u64, Relaxed);
    }

    pub fn redis_write_dropped(&self, kind: CacheKind) {
        self.of(kind).redis_writes_dropped.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> Vec<CacheFigures> {
        CacheKind::ALL
            .iter()
            .map(|&kind| {
                let c = self.of(kind);
                CacheFigures {
                    cache: kind,
                    memory_hits: c.memory_hits.load(Relaxed),
                    memory_misses: c.memory_misses.load(Relaxed),
                    redis_hits: c.redis_hits.load(Relaxed),
                    redis_misses: c.redis_misses.load(Relaxed),
                    fallbacks: c.fallbacks.load(Relaxed),
                    corrupt: c.corrupt.load(Relaxed),
                    evictions: c.evictions.load(Relaxed),
                    memory_bytes: c.memory_bytes.load(Relaxed),
                    memory_entries: c.memory_entries.load(Relaxed),
                    redis_bytes_written: c.redis_bytes_written.load(Relaxed),
                    redis_writes_dropped: c.redis_writes_dropped.load(Relaxed),
                }
            })
            .collect()
    }

    /// The Prometheus families `dukasync_cache_*`.
    pub fn render(&self, out: &mut String, memory_budget: usize, redis_configured: bool) {
        let figures = self.snapshot();
        let counter = |out: &mut String, name: &str, help: &str, rows: &mut dyn Iterator<Item = (String, u64)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, value) in rows {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        };
        counter(
            out,
            "dukasync_cache_lookups_total",
            "Cache lookups by cache, layer (memory, redis) and result (hit, miss).",
            &mut figures.iter().flat_map(|f| {
                let c = f.cache.as_str();
                [
                    (format!("cache=\"{c}\",layer=\"memory\",result=\"hit\""), f.memory_hits),
                    (
                        format!("cache=\"{c}\",layer=\"memory\",result=\"miss\""),
                        f.memory_misses,
                    ),
                    (format!("cache=\"{c}\",layer=\"redis\",result=\"hit\""), f.redis_hits),
                    (format!("cache=\"{c}\",layer=\"redis\",result=\"miss\""), f.redis_misses),
                ]
            }),
        );
        let per_cache = |out: &mut String, name: &str, help: &str, get: fn(&CacheFigures) -> u64| {
            counter(
                out,
                name,
                help,
                &mut figures
                    .iter()
                    .map(|f| (format!("cache=\"{}\"", f.cache.as_str()), get(f))),
            );
        };
        per_cache(
            out,
            "dukasync_cache_fallbacks_total",
            "Redis lookups skipped or failed (down, timeout, circuit open); answered from PostgreSQL.",
            |f| f.fallbacks,
        );
        per_cache(
            out,
            "dukasync_cache_corrupt_total",
            "Cached values that failed their integrity check; treated as misses.",
            |f| f.corrupt,
        );
        per_cache(
            out,
            "dukasync_cache_evictions_total",
            "Entries evicted from the in-process cache to stay within its budget.",
            |f| f.evictions,
        );
        per_cache(
            out,
            "dukasync_cache_redis_written_bytes_total",
            "Bytes written to Redis.",
            |f| f.redis_bytes_written,
        );
        per_cache(
            out,
            "dukasync_cache_redis_writes_dropped_total",
            "Redis writes dropped because too many were in flight or Redis was down.",
            |f| f.redis_writes_dropped,
        );
        let _ = writeln!(
            out,
            "# HELP dukasync_cache_redis_errors_total Redis commands that failed or timed out.\n# TYPE dukasync_cache_redis_errors_total counter\ndukasync_cache_redis_errors_total {}",
            self.redis_errors.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP dukasync_cache_memory_bytes Bytes held by the in-process cache, by cache.\n# TYPE dukasync_cache_memory_bytes gauge"
        );
        for f in &figures {
            let _ = writeln!(
                out,
                "dukasync_cache_memory_bytes{{cache=\"{}\"}} {}",
                f.cache.as_str(),
                f.memory_bytes
            );
        }
        let _ = writeln!(
            out,
            "# HELP dukasync_cache_memory_entries Entries held by the in-process cache, by cache.\n# TYPE dukasync_cache_memory_entries gauge"
        );
        for f in &figures {
            let _ = writeln!(
                out,
                "dukasync_cache_memory_entries{{cache=\"{}\"}} {}",
                f.cache.as_str(),
                f.memory_entries
            );
        }
        let _ = writeln!(
            out,
            "# HELP dukasync_cache_memory_budget_bytes The in-process cache's bound (DUKASYNC_CACHE_MEMORY_BYTES).\n# TYPE dukasync_cache_memory_budget_bytes gauge\ndukasync_cache_memory_budget_bytes {memory_budget}"
        );
        let up = if redis_configured {
            self.redis_up.load(Relaxed) as i64
        } else {
            -1
        };
        let _ = writeln!(
            out,
            "# HELP dukasync_cache_redis_up 1 when Redis is in use, 0 while it is bypassed after a failure, -1 when not configured.\n# TYPE dukasync_cache_redis_up gauge\ndukasync_cache_redis_up {up}"
        );
    }
}
