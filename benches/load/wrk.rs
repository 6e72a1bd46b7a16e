//! Runs `wrk` with `benches/wrk/paths.lua` against dukasync or the nginx reference, the same generator for both.

use crate::stats::Outcome;
use anyhow::{bail, Context};
use serde::Deserialize;
use std::{path::Path, process::Command};

#[derive(Deserialize)]
struct WrkLine {
    requests: u64,
    duration_us: u64,
    connect_errors: u64,
    read_errors: u64,
    write_errors: u64,
    status_errors: u64,
    timeouts: u64,
    p50_us: u64,
    p95_us: u64,
    p99_us: u64,
    max_us: u64,
}

pub struct Run<'a> {
    pub base: &'a str,
    pub paths_file: &'a Path,
    pub token: &'a str,
    pub if_none_match: &'a str,
    /// `Accept-Encoding` to send ("": none, so answers are plain).
    pub accept_encoding: &'a str,
    pub connections: usize,
    pub seconds: u64,
}

/// Runs wrk with two threads (the machine has two cores, shared with the server).
pub fn run(script: &Path, run: &Run) -> anyhow::Result<Outcome> {
    let output = Command::new("wrk")
        .args(["-t2", &format!("-c{}", run.connections), &format!("-d{}s", run.seconds)])
        .args(["--timeout", "5s", "-s"])
        .arg(script)
        .arg(run.base)
        .arg("--")
        .arg(run.paths_file)
        .arg(run.token)
        .arg(run.if_none_match)
        .arg(run.accept_encoding)
        .output()
        .context("cannot run wrk (apt-get install wrk)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let Some(line) = stdout.lines().find(|l| l.starts_with('{')) else {
        bail!(
            "wrk printed no result: {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let w: WrkLine = serde_json::from_str(line).context("wrk result line")?;
    let seconds = w.duration_us as f64 / 1e6;
    Ok(Outcome {
        connections: run.connections,
        seconds,
        requests: w.requests,
        req_per_s: (w.requests as f64 / seconds).round(),
        p50_ms: w.p50_us as f64 / 1e3,
        p95_ms: w.p95_us as f64 / 1e3,
        p99_ms: w.p99_us as f64 / 1e3,
        max_ms: w.max_us as f64 / 1e3,
        errors: w.connect_errors + w.read_errors + w.write_errors + w.status_errors + w.timeouts,
        ..Outcome::default()
    })
}
