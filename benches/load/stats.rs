//! One scenario's measured result, and percentiles from raw latencies.

use serde::Serialize;
use std::time::Duration;

#[derive(Serialize, Clone, Default)]
pub struct Outcome {
    pub name: String,
    /// What was measured, in a sentence (connections, payload, what counts as an error).
    pub what: String,
    pub connections: usize,
    pub seconds: f64,
    pub requests: u64,
    pub req_per_s: f64,
    /// Operations per second for pushes (a batch carries many).
    pub ops_per_s: Option<f64>,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub errors: u64,
    /// Largest resident set of the server during this scenario (VmHWM, reset before it), MiB.
    pub server_peak_rss_mib: Option<f64>,
    pub response_bytes: Option<usize>,
    /// Bytes the server's in-process cache accounts for after the scenario (from /metrics), MiB.
    pub server_cache_accounted_mib: Option<f64>,
    /// CPU the server spent per request in this scenario, ms (from /proc).
    pub server_cpu_ms_per_req: Option<f64>,
    /// CPU the bench database's PostgreSQL backends spent per request, ms.
    pub postgres_cpu_ms_per_req: Option<f64>,
    /// CPU of the whole PostgreSQL cluster (all its processes, background ones included) per request, ms: the
    /// figure the floor under a sale (pgbench's sale script) is measured with.
    pub postgres_cluster_cpu_ms_per_req: Option<f64>,
    /// How busy all CPUs were during the scenario, everything included (others compile on this machine).
    pub machine_busy_pct: Option<f64>,
    pub notes: Vec<String>,
}

/// Fills the latency fields from raw samples (sorted in place).
pub fn fill_latencies(outcome: &mut Outcome, samples: &mut [Duration]) {
    samples.sort_unstable();
    let at = |q: f64| -> f64 {
        if samples.is_empty() {
            return 0.0;
        }
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        ms(samples[i])
    };
    outcome.p50_ms = at(0.50);
    outcome.p95_ms = at(0.95);
    outcome.p99_ms = at(0.99);
    outcome.max_ms = samples.last().map(|d| ms(*d)).unwrap_or(0.0);
}

pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}
