//! The references run in the same invocation: a private nginx serving the exact bytes of a pull page as a
//! static file, and pgbench's TPC-B on the same PostgreSQL.

use crate::stats::{fill_latencies, Outcome};
use anyhow::{bail, Context};
use serde::Serialize;
use std::{
    fs,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A private nginx: its own prefix, config, pid, logs and temp paths under `dir`; never the system one.
pub struct Nginx {
    child: Child,
}

impl Nginx {
    /// Serves `body` as `/page.json` and, to clients that accept gzip, `gzipped` (the same page, gzip-coded) from
    /// `page.json.gz` with `gzip_static`, never compressing anything itself.
    pub fn start(dir: &Path, body: &[u8], gzipped: &[u8], port: u16) -> anyhow::Result<Self> {
        let www = dir.join("www");
        fs::create_dir_all(&www)?;
        fs::create_dir_all(dir.join("tmp"))?;
        fs::write(www.join("page.json"), body)?;
        fs::write(www.join("page.json.gz"), gzipped)?;
        let d = dir.display();
        // Two workers for two cores, logging off, keep-alive without a request cap (dukasync has none).
        let conf = format!(
            "daemon off;\nworker_processes 2;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  keepalive_requests 10000000;\n\
               client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n\
               fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n\
               server {{\n    listen 127.0.0.1:{port};\n    root {d}/www;\n\
                 location / {{ default_type application/json; gzip_static on; }}\n  }}\n}}\n"
        );
        let conf_path = dir.join("nginx.conf");
        fs::write(&conf_path, conf)?;
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start nginx (apt-get install nginx)")?;
        Ok(Nginx { child })
    }

    /// Stops nginx (see `Drop`).
    pub fn stop(self) {}
}

/// Stopped when dropped, so that a run failing while nginx runs stops it too.
impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM via `kill` on our own, not yet reaped child (fast shutdown: the master stops its workers).
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill").arg(self.child.id().to_string()).status();
            let _ = self.child.wait();
        }
    }
}

#[derive(Serialize, Default)]
pub struct Pgbench {
    pub scale: u32,
    pub clients: u32,
    pub seconds: u32,
    pub tps: f64,
    pub latency_avg_ms: f64,
    /// Per-transaction latency percentiles from pgbench's own log (`--log`), ms: the database's durable-write
    /// latency at the same concurrency as the push scenarios, the floor under a sale's.
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub init_seconds: f64,
    pub fsync: String,
    pub synchronous_commit: String,
    /// Why the reference has no numbers, when it failed (the rest of the run still reports).
    pub error: Option<String>,
}

/// `pgbench -i` on the scratch database at `url`, then a TPC-B run.
pub fn pgbench(url: &str, scale: u32, clients: u32, seconds: u32) -> anyhow::Result<Pgbench> {
    let started = Instant::now();
    let init = Command::new("pgbench")
        .args(["-i", "-q", "-s", &scale.to_string(), url])
        .output()
        .context("cannot run pgbench")?;
    if !init.status.success() {
        bail!("pgbench -i failed: {}", String::from_utf8_lossy(&init.stderr));
    }
    let init_seconds = started.elapsed().as_secs_f64();
    // One log line per transaction, in files named after this prefix (one per pgbench thread).
    let logs = std::env::temp_dir().join(format!("pgbench-latency-{}", std::process::id()));
    fs::create_dir_all(&logs)?;
    let prefix = logs.join("tx");
    let run = Command::new("pgbench")
        .args([
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
            "--log",
        ])
        .arg(format!("--log-prefix={}", prefix.display()))
        .arg(url)
        .output()?;
    if !run.status.success() {
        bail!("pgbench failed: {}", String::from_utf8_lossy(&run.stderr));
    }
    let mut latencies = transaction_latencies(&logs)?;
    let _ = fs::remove_dir_all(&logs);
    let mut percentiles = Outcome::default();
    fill_latencies(&mut percentiles, &mut latencies);
    let out = String::from_utf8_lossy(&run.stdout);
    let number_after = |prefix: &str| -> Option<f64> {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    Ok(Pgbench {
        scale,
        clients,
        seconds,
        tps: number_after("tps = ").context("pgbench printed no tps")?,
        latency_avg_ms: number_after("latency average = ").unwrap_or(0.0),
        p50_ms: percentiles.p50_ms,
        p95_ms: percentiles.p95_ms,
        p99_ms: percentiles.p99_ms,
        max_ms: percentiles.max_ms,
        init_seconds,
        ..Pgbench::default()
    })
}

/// A custom pgbench script's run (the floor under a sale): `setup` once with psql, then `script` with
/// `clients` clients for `seconds` on the database at `url`, every transaction's latency logged.
#[derive(Serialize, Default)]
pub struct PgbenchScript {
    pub script: String,
    /// Sales in each transaction (1: one commit per sale; more: as dukasync's group commit has them).
    pub sales_per_transaction: u32,
    pub clients: u32,
    pub seconds: f64,
    pub transactions: u64,
    pub tps: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub setup_seconds: f64,
    /// CPU of the whole PostgreSQL cluster (every process, background ones included) per transaction, ms.
    pub postgres_cluster_cpu_ms_per_tx: Option<f64>,
    /// The same per sale.
    pub postgres_cluster_cpu_ms_per_sale: Option<f64>,
    pub machine_busy_pct: Option<f64>,
    pub error: Option<String>,
}

pub struct ScriptRun<'a> {
    pub url: &'a str,
    /// Run once with psql before the script, when given.
    pub setup: Option<&'a Path>,
    pub script: &'a Path,
    /// Sales per transaction: the script's sale repeated (see [`grouped_script`]) into a file in `work`.
    pub sales_per_transaction: u32,
    pub work: &'a Path,
    pub clients: u32,
    pub seconds: u32,
    pub postmaster: Option<u32>,
}

/// benches/pgbench/sale.sql with `k` sales in its one transaction: the `\set sale_*` lines and the statements
/// between `BEGIN;` and `END;` repeated, each copy's variables renamed `:sale<i>_`.
pub fn grouped_script(text: &str, k: u32) -> anyhow::Result<String> {
    let begin = text.find("\nBEGIN;\n").context("no BEGIN; line")? + "\nBEGIN;\n".len();
    let end = text.find("\nEND;\n").context("no END; line")? + 1;
    let (head, body, tail) = (&text[..begin], &text[begin..end], &text[end..]);
    let copies = |part: &str| -> String { (1..=k).map(|i| part.replace(":sale_", &format!(":sale{i}_"))).collect() };
    let sets: String = head
        .lines()
        .filter(|l| l.starts_with("\\set sale_"))
        .map(|l| format!("{l}\n"))
        .collect();
    let other: String = head
        .lines()
        .filter(|l| !l.starts_with("\\set sale_"))
        .map(|l| format!("{l}\n"))
        .collect();
    let sets = (1..=k)
        .map(|i| sets.replace("\\set sale_", &format!("\\set sale{i}_")))
        .collect::<String>();
    // The `\set` lines must come before `\startpipeline`.
    let other = other.replacen("\\startpipeline\n", &format!("{sets}\\startpipeline\n"), 1);
    Ok(format!("{other}{}{tail}", copies(body)))
}

pub fn pgbench_script(r: &ScriptRun) -> anyhow::Result<PgbenchScript> {
    let (url, clients, seconds, postmaster) = (r.url, r.clients, r.seconds, r.postmaster);
    let started = Instant::now();
    if let Some(setup) = r.setup {
        let psql = Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
            .arg(setup)
            .arg(url)
            .output()
            .context("cannot run psql")?;
        if !psql.status.success() {
            bail!("{} failed: {}", setup.display(), String::from_utf8_lossy(&psql.stderr));
        }
    }
    let setup_seconds = started.elapsed().as_secs_f64();
    let script = r.work.join(format!("sale-x{}.sql", r.sales_per_transaction));
    fs::write(
        &script,
        grouped_script(&fs::read_to_string(r.script)?, r.sales_per_transaction)?,
    )?;
    let logs = std::env::temp_dir().join(format!("pgbench-script-{}", std::process::id()));
    fs::create_dir_all(&logs)?;
    let prefix = logs.join("tx");
    let cpu = postmaster.map(crate::system::ClusterCpu::mark);
    let machine = crate::system::cpu_jiffies();
    let output = Command::new("pgbench")
        .args([
            "-n",
            "-M",
            "prepared",
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
        ])
        .arg("-f")
        .arg(&script)
        .arg("--log")
        .arg(format!("--log-prefix={}", prefix.display()))
        .arg(url)
        .output();
    let cluster_cpu_ms = cpu.map(|c| c.since());
    let busy = crate::system::busy_pct_since(machine);
    let output = output.context("cannot run pgbench")?;
    let out = output;
    if !out.status.success() {
        bail!(
            "pgbench -f {} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut latencies = transaction_latencies(&logs)?;
    let _ = fs::remove_dir_all(&logs);
    let transactions = latencies.len() as u64;
    let mut percentiles = Outcome::default();
    fill_latencies(&mut percentiles, &mut latencies);
    let text = String::from_utf8_lossy(&out.stdout);
    let tps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("pgbench printed no tps")?;
    let per_tx = cluster_cpu_ms
        .filter(|_| transactions > 0)
        .map(|ms| ms / transactions as f64);
    Ok(PgbenchScript {
        script: r.script.display().to_string(),
        sales_per_transaction: r.sales_per_transaction,
        clients,
        seconds: seconds as f64,
        transactions,
        tps,
        p50_ms: percentiles.p50_ms,
        p95_ms: percentiles.p95_ms,
        p99_ms: percentiles.p99_ms,
        max_ms: percentiles.max_ms,
        setup_seconds,
        postgres_cluster_cpu_ms_per_tx: per_tx.map(|ms| (ms * 1000.0).round() / 1000.0),
        postgres_cluster_cpu_ms_per_sale: per_tx
            .map(|ms| (ms / r.sales_per_transaction as f64 * 1000.0).round() / 1000.0),
        machine_busy_pct: Some(busy),
        error: None,
    })
}

/// Every transaction's latency from the pgbench logs in `dir`. A line is `client transaction latency_us script
/// epoch_s epoch_us` (pgbench's documented format without `--rate`).
fn transaction_latencies(dir: &Path) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::new();
    for file in fs::read_dir(dir)? {
        let text = fs::read_to_string(file?.path())?;
        for line in text.lines() {
            let micros = line
                .split_whitespace()
                .nth(2)
                .and_then(|v| v.parse::<u64>().ok())
                .with_context(|| format!("unexpected pgbench log line: {line}"))?;
            latencies.push(Duration::from_micros(micros));
        }
    }
    if latencies.is_empty() {
        bail!("pgbench logged no transaction");
    }
    Ok(latencies)
}

/// Waits until `port` answers TCP on loopback.
pub fn wait_for_port(port: u16) -> anyhow::Result<()> {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > Duration::from_secs(10) {
            bail!("nothing listens on port {port} after 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
