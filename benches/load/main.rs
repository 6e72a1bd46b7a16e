//! The load harness: `benches/run` prepares a fresh database and runs this (`cargo bench --bench load`).
//!
//! It loads the data set, starts the release server, runs every scenario and the references (nginx on the
//! same bytes, pgbench TPC-B on the same PostgreSQL) in one invocation, and writes
//! `benches/results/<date>.json` and `.md`. A benchmark, not a test: targets are reported, never asserted.
//!
//! Settings (environment): `DUKASYNC_DATABASE_URL` (the fresh, migrated bench database), `DUKASYNC_REDIS_URL`
//! (optional, passed to the server), `BENCH_PGBENCH_URL` (a scratch database for pgbench), `BENCH_SERVER`
//! (the release binary), `BENCH_SECONDS` (per throughput scenario, default 8), `BENCH_OUT`, `BENCH_COMMAND`,
//! `BENCH_LINKS` (the emulated mobile links the phone scenarios run on: `4g,3g` by default; benches/load/link.rs).
//! The stack (benches/vps-stack.sh sets these): `BENCH_STACK`, `BENCH_STACK_POSTGRES`, `BENCH_STACK_REDIS`,
//! `BENCH_STACK_SERVER` (what was started, with which configuration, for the report), `BENCH_POSTMASTER_PID` and
//! `BENCH_REDIS_PID` (whose process trees are sampled; without them: the bench connection's postmaster, and the
//! pid Redis reports in `INFO server`). The server inherits the environment, so its settings are benches/run's.

mod dataset;
mod devices;
mod link;
mod mobile;
mod references;
mod report;
mod stats;
mod system;
mod wrk;

use anyhow::{bail, Context};
use serde_json::Value;
use stats::Outcome;
use std::{
    env, fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Simulated devices with their own token (long-poll uses all of them).
const DEVICES: usize = 1_000;
const READ_CONNECTIONS: usize = 50;
const PUSH_DEVICES: usize = 16;
const BATCH_OPS: usize = 50;
const PGBENCH_SCALE: u32 = 16;
/// The memory phase of the set-up between scenarios.
const BETWEEN: &str = "between_scenarios";

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it: do nothing then.
    if !env::args().any(|a| a == "--bench") {
        eprintln!("the load harness runs from benches/run (cargo bench --bench load)");
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

fn var(name: &str) -> anyhow::Result<String> {
    env::var(name).with_context(|| format!("{name} is not set; run benches/run"))
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// A run that fails half-way must not leave the server running (benches/run also stops the process group).
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn start_server(binary: &str, log: &Path) -> anyhow::Result<Server> {
    let port = free_port()?;
    let child = Command::new(binary)
        .arg("serve")
        .env("DUKASYNC_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(fs::File::create(log)?)
        .spawn()
        .with_context(|| format!("cannot start {binary}"))?;
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/readyz")).await {
            if r.status() == 200 {
                return Ok(Server { child, base });
            }
        }
        if started.elapsed() > Duration::from_secs(20) {
            bail!("the server did not become ready in 20 s; see {}", log.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The stack the run measured, and the memory of exactly its processes (the server, the PostgreSQL cluster's
/// process tree, the Redis process), sampled through the run by `system::MemorySampler`.
#[derive(Default, serde::Serialize)]
struct ServiceMemory {
    /// `vps` (benches/run's own stack under the 4 GB VPS profile) or `dev` (the checkout's shared services).
    stack: String,
    postgres_setup: String,
    redis_setup: String,
    server_setup: String,
    /// PostgreSQL settings in effect (SHOW), to prove the profile was applied.
    postgres_settings: Vec<(String, String)>,
    postmaster_pid: Option<u32>,
    redis_pid: Option<u32>,
    sample_every_ms: u64,
    /// Largest figures per phase, in the order the phases ran.
    phases: Vec<system::PhaseMemory>,
    /// Over the whole run (data load, references and scenarios).
    whole_run: system::PhaseMemory,
    /// The server's exact peak RSS (VmHWM) over the scenarios, MiB.
    server_peak_rss_mib: f64,
    /// Pages held in shared_buffers at the end (pg_buffercache), MiB: resident even where no live process
    /// maps them, so PSS can miss some of it.
    shared_buffers_used_mib: Option<f64>,
    redis_used_memory_peak_mib: Option<f64>,
    redis_maxmemory_mib: Option<f64>,
    redis_evicted_keys: Option<u64>,
    // The figures earlier runs' JSON had under these names (whole run).
    postgres_pss_mib_max: f64,
    postgres_processes: usize,
    redis_rss_mib_max: f64,
}

/// The Redis `INFO` text of the server's Redis, if there is one.
async fn redis_info(section: &str) -> Option<String> {
    let client = redis::Client::open(env::var("DUKASYNC_REDIS_URL").ok()?).ok()?;
    let mut con = client.get_multiplexed_async_connection().await.ok()?;
    redis::cmd("INFO").arg(section).query_async(&mut con).await.ok()
}

/// The stack as benches/run described it, the settings in effect, and the pids whose memory is sampled.
async fn describe_stack(db: &sqlx::PgPool, backend_pid: u32) -> anyhow::Result<ServiceMemory> {
    let mut settings = Vec::new();
    for name in [
        "shared_buffers",
        "max_connections",
        "work_mem",
        "effective_cache_size",
        "huge_pages",
    ] {
        let value: String = sqlx::query_scalar(&format!("SHOW {name}")).fetch_one(db).await?;
        settings.push((name.to_string(), value));
    }
    let pid_var = |name: &str| env::var(name).ok().and_then(|v| v.parse::<u32>().ok());
    let redis_pid = match pid_var("BENCH_REDIS_PID") {
        Some(pid) => Some(pid),
        None => redis_info("server")
            .await
            .and_then(|i| system::info_field(&i, "process_id"))
            .map(|p| p as u32),
    };
    let described = |name: &str| env::var(name).unwrap_or_else(|_| "not said (run benches/run)".into());
    Ok(ServiceMemory {
        stack: env::var("BENCH_STACK").unwrap_or_else(|_| "unknown".into()),
        postgres_setup: described("BENCH_STACK_POSTGRES"),
        redis_setup: described("BENCH_STACK_REDIS"),
        server_setup: described("BENCH_STACK_SERVER"),
        postgres_settings: settings,
        postmaster_pid: pid_var("BENCH_POSTMASTER_PID").or_else(|| system::postmaster_of(backend_pid)),
        redis_pid,
        sample_every_ms: system::SAMPLE_EVERY.as_millis() as u64,
        ..Default::default()
    })
}

/// What only PostgreSQL and Redis can say about their memory, read once at the end of the run.
async fn final_service_figures(db: &sqlx::PgPool, mem: &mut ServiceMemory) {
    let used: Result<i64, _> =
        sqlx::query_scalar("SELECT count(*) FILTER (WHERE relfilenode IS NOT NULL) FROM pg_buffercache")
            .fetch_one(db)
            .await;
    let block: Result<String, _> = sqlx::query_scalar("SHOW block_size").fetch_one(db).await;
    if let (Ok(used), Ok(block)) = (used, block) {
        let block: f64 = block.parse().unwrap_or(8192.0);
        mem.shared_buffers_used_mib = Some(used as f64 * block / 1048576.0);
    }
    let mib = |v: u64| v as f64 / 1048576.0;
    if let Some(info) = redis_info("memory").await {
        mem.redis_used_memory_peak_mib = system::info_field(&info, "used_memory_peak").map(mib);
        mem.redis_maxmemory_mib = system::info_field(&info, "maxmemory").map(mib);
    }
    if let Some(info) = redis_info("stats").await {
        mem.redis_evicted_keys = system::info_field(&info, "evicted_keys");
    }
}

async fn get(http: &reqwest::Client, base: &str, path: &str, token: &str) -> anyhow::Result<reqwest::Response> {
    Ok(http.get(format!("{base}{path}")).bearer_auth(token).send().await?)
}

/// Cursors the server issued at `versions` (pulling one change after `v - 1` returns the cursor at `v`).
async fn cursors_at(
    http: &reqwest::Client,
    base: &str,
    scope: &str,
    token: &str,
    versions: &[i64],
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for v in versions {
        let page: Value = get(
            http,
            base,
            &format!("/v1/scopes/{scope}/changes?since={}&limit=1", v - 1),
            token,
        )
        .await?
        .error_for_status()?
        .json()
        .await?;
        out.push(page["cursor"].as_str().context("cursor")?.to_string());
    }
    Ok(out)
}

async fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    let seconds: u64 = env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(8);
    let server_bin = env::var("BENCH_SERVER").unwrap_or_else(|_| "target/release/dukasync".into());
    let out_dir = PathBuf::from(env::var("BENCH_OUT").unwrap_or_else(|_| "benches/results".into()));
    let pgbench_url = var("BENCH_PGBENCH_URL")?;
    let work = env::temp_dir().join(format!("dukasync-bench-{}", std::process::id()));
    fs::create_dir_all(&work)?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/wrk/paths.lua");
    let load_before = system::load();
    // BENCH_ONLY=name,name runs only those scenarios (nginx always runs), for profiling one of them.
    let only = env::var("BENCH_ONLY").ok();
    let want = |name: &str| only.as_deref().is_none_or(|o| o.split(',').any(|n| n == name));

    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&var("DUKASYNC_DATABASE_URL")?)
        .await
        .context("cannot reach the bench database")?;
    let backend_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&db).await?;
    let backend_pid = backend_pid as u32;
    let fsync: String = sqlx::query_scalar("SHOW fsync").fetch_one(&db).await?;
    let sync_commit: String = sqlx::query_scalar("SHOW synchronous_commit").fetch_one(&db).await?;
    let mut mem = describe_stack(&db, backend_pid).await?;
    let memory = system::MemorySampler::start(mem.postmaster_pid, mem.redis_pid);
    memory.phase("load_data_set");

    eprintln!("bench: loading the data set");
    let t = Instant::now();
    let data = dataset::load(&db, DEVICES).await?;
    let load_seconds = t.elapsed().as_secs_f64();
    eprintln!("bench: loaded {:?} in {load_seconds:.1} s", data.heads);

    let server = start_server(&server_bin, &work.join("server.log")).await?;
    let base = server.base.clone();
    let pid = server.pid();
    memory.set_server(pid);
    memory.phase(BETWEEN);
    let database: String = sqlx::query_scalar("SELECT current_database()").fetch_one(&db).await?;
    let probe = Probe {
        pid,
        metrics_url: format!("{}/metrics", server.base),
        cpu: system::CpuProbe::new(pid, backend_pid, &database),
        started: Default::default(),
        memory,
    };
    let token = data.tokens[0].clone();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let mut outcomes: Vec<Outcome> = Vec::new();
    let big = dataset::BIG_SCOPE;
    let big_head = data
        .heads
        .iter()
        .find(|(s, _)| s == big)
        .map(|h| h.1)
        .context("big scope")?;

    // The page nginx serves: 100 changes from the middle of the history, exactly as dukasync answers it.
    let hot_cursor = cursors_at(&http, &base, big, &token, &[big_head / 2]).await?.remove(0);
    let hot_path = format!("/v1/scopes/{big}/changes?since={hot_cursor}&limit=100");
    let page = get(&http, &base, &hot_path, &token)
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let hot_file = work.join("hot.paths");
    fs::write(&hot_file, format!("{hot_path}\n"))?;

    let wrk_encoded = |name: &str,
                       what: &str,
                       base: &str,
                       file: &Path,
                       tok: &str,
                       inm: &str,
                       accept_encoding: &str|
     -> anyhow::Result<Outcome> {
        eprintln!("bench: {name}");
        probe.start(name);
        let mut o = wrk::run(
            &script,
            &wrk::Run {
                base,
                paths_file: file,
                token: tok,
                if_none_match: inm,
                accept_encoding,
                connections: READ_CONNECTIONS,
                seconds,
            },
        )?;
        o.name = name.into();
        o.what = what.into();
        Ok(o)
    };
    let wrk_scenario = |name: &str, what: &str, base: &str, file: &Path, tok: &str, inm: &str| {
        wrk_encoded(name, what, base, file, tok, inm, "")
    };

    // Reference: nginx, same bytes, same generator.
    let nginx_port = free_port()?;
    // The same page gzip-coded, as nginx's gzip_static serves it: the server's own gzip bytes when it compresses
    // pages, else gzip -6 of the plain page (and the report says which).
    let (gz_page, server_gzip) = {
        let r = http
            .get(format!("{base}{hot_path}"))
            .bearer_auth(&token)
            .header("accept-encoding", "gzip")
            .send()
            .await?
            .error_for_status()?;
        let coded = r.headers().get("content-encoding").is_some_and(|v| v == "gzip");
        let body = r.bytes().await?;
        if coded {
            (body.to_vec(), true)
        } else {
            let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            std::io::Write::write_all(&mut z, &page)?;
            (z.finish()?, false)
        }
    };
    let nginx = references::Nginx::start(&work.join("nginx"), &page, &gz_page, nginx_port)?;
    references::wait_for_port(nginx_port)?;
    let nginx_file = work.join("nginx.paths");
    fs::write(&nginx_file, "/page.json\n")?;
    let nginx_base = format!("http://127.0.0.1:{nginx_port}");
    let check = reqwest::get(format!("{nginx_base}/page.json")).await?.bytes().await?;
    if check != page {
        bail!("nginx does not serve the page's exact bytes");
    }
    // Measured before and again after the read scenarios: the read ratios use both, and their difference is how
    // much the machine itself moved meanwhile.
    let measure_nginx = |name: &str| -> anyhow::Result<Outcome> {
        let mut o = wrk_scenario(
            name,
            "reference: nginx serving the exact bytes of the 100-change pull page as a static file",
            &nginx_base,
            &nginx_file,
            "",
            "",
        )?;
        o.server_peak_rss_mib = None;
        if let Some(start) = probe.started.borrow_mut().take() {
            o.machine_busy_pct = Some(probe.cpu.since(&start).2);
        }
        o.response_bytes = Some(page.len());
        probe.memory.phase(BETWEEN);
        Ok(o)
    };
    let nginx_outcome = measure_nginx("nginx_static_page")?;

    if want("pull_same_page") {
        let mut o = wrk_scenario(
            "pull_same_page",
            "GET the same 100-change page (the bytes nginx served), one cursor",
            &base,
            &hot_file,
            &token,
            "",
        )?;
        o.response_bytes = Some(page.len());
        finish(&mut o, &probe, &mut outcomes).await;
    }

    if want("pull_varied_cursors") {
        let mut rng_versions: Vec<i64> = (0..200).map(|i| 1 + (i * 7919 % (big_head - 100))).collect();
        rng_versions.sort_unstable();
        let varied = cursors_at(&http, &base, big, &token, &rng_versions).await?;
        let varied_file = work.join("varied.paths");
        fs::write(
            &varied_file,
            varied
                .iter()
                .map(|c| format!("/v1/scopes/{big}/changes?since={c}&limit=100\n"))
                .collect::<String>(),
        )?;
        let mut o = wrk_scenario(
            "pull_varied_cursors",
            "GET 100-change pages from 200 cursors spread over the 100k history",
            &base,
            &varied_file,
            &token,
            "",
        )?;
        finish(&mut o, &probe, &mut outcomes).await;
    }

    if want("pull_open_tail") {
        let tail = cursors_at(&http, &base, big, &token, &[big_head]).await?.remove(0);
        let tail_file = work.join("tail.paths");
        fs::write(&tail_file, format!("/v1/scopes/{big}/changes?since={tail}&limit=100\n"))?;
        let mut o = wrk_scenario(
            "pull_open_tail",
            "GET at the head cursor (nothing new: the common poll of an up-to-date device)",
            &base,
            &tail_file,
            &token,
            "",
        )?;
        finish(&mut o, &probe, &mut outcomes).await;
    }

    // Reference revalidation (issue 5): skipped, and said so, where the route does not exist yet.
    if want("reference_304") {
        let ref_path = format!("/v1/scopes/{big}/reference/products");
        let first = get(&http, &base, &ref_path, &token).await?;
        if first.status() == 200 {
            let etag = first
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .context("reference answer without ETag")?
                .to_string();
            let again = http
                .get(format!("{base}{ref_path}"))
                .bearer_auth(&token)
                .header("if-none-match", &etag)
                .send()
                .await?;
            if again.status() != 304 {
                bail!("revalidation with the current ETag answered {}", again.status());
            }
            let ref_file = work.join("ref.paths");
            fs::write(&ref_file, format!("{ref_path}\n"))?;
            let mut o = wrk_scenario(
                "reference_304",
                "GET the 2,000-product reference snapshot with its current ETag (answers 304)",
                &base,
                &ref_file,
                &token,
                &etag,
            )?;
            finish(&mut o, &probe, &mut outcomes).await;
        } else {
            outcomes.push(Outcome {
                name: "reference_304".into(),
                what: format!("NOT RUN: {ref_path} answered {} on this build", first.status()),
                ..Outcome::default()
            });
        }
    }

    let nginx_after = measure_nginx("nginx_static_page_after_reads")?;

    // A cached compressed page: nginx's gzip_static serving the same gzip bytes, before and after the server
    // answering the same page to `Accept-Encoding: gzip` and to `br, gzip`.
    let mut compressed = report::Compressed {
        plain_bytes: page.len(),
        gzip_bytes: gz_page.len(),
        server_gzip,
        ..Default::default()
    };
    if want("pull_same_page_gzip") {
        let check = http
            .get(format!("{nginx_base}/page.json"))
            .header("accept-encoding", "gzip")
            .send()
            .await?;
        if check.headers().get("content-encoding").is_none_or(|v| v != "gzip") || check.bytes().await? != gz_page {
            bail!("nginx's gzip_static does not serve the page's gzip bytes");
        }
        let br = http
            .get(format!("{base}{hot_path}"))
            .bearer_auth(&token)
            .header("accept-encoding", "br, gzip")
            .send()
            .await?;
        compressed.server_br_encoding = br
            .headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("identity")
            .to_string();
        compressed.server_br_bytes = br.bytes().await?.len();
        let nginx_gz = |name: &str| -> anyhow::Result<Outcome> {
            let mut o = wrk_encoded(
                name,
                "reference: nginx gzip_static serving the gzip bytes of the 100-change page (Accept-Encoding: gzip)",
                &nginx_base,
                &nginx_file,
                "",
                "",
                "gzip",
            )?;
            if let Some(start) = probe.started.borrow_mut().take() {
                o.machine_busy_pct = Some(probe.cpu.since(&start).2);
            }
            o.response_bytes = Some(gz_page.len());
            probe.memory.phase(BETWEEN);
            Ok(o)
        };
        compressed.nginx.push(nginx_gz("nginx_gzip_static_page")?);
        for (name, accept, what) in [
            (
                "pull_same_page_gzip",
                "gzip",
                "GET the same 100-change page with Accept-Encoding: gzip",
            ),
            (
                "pull_same_page_br",
                "br, gzip",
                "GET the same 100-change page with Accept-Encoding: br, gzip",
            ),
        ] {
            let mut o = wrk_encoded(name, what, &base, &hot_file, &token, "", accept)?;
            o.response_bytes = Some(if accept == "gzip" {
                if server_gzip {
                    gz_page.len()
                } else {
                    page.len()
                }
            } else {
                compressed.server_br_bytes
            });
            finish(&mut o, &probe, &mut outcomes).await;
        }
        compressed.nginx.push(nginx_gz("nginx_gzip_static_page_after")?);
    }
    nginx.stop();

    if want("initial_sync_100k") {
        eprintln!("bench: initial sync");
        probe.start("initial_sync_100k");
        let (mut o, received) = devices::initial_sync(&http, &base, big, &token).await?;
        o.name = "initial_sync_100k".into();
        o.what = format!("one device pulls the {big} scope from 0, 1,000 per page, parsing JSON; {received} changes");
        if received < dataset::BIG_SCOPE_CHANGES as u64 {
            o.errors += 1;
        }
        finish(&mut o, &probe, &mut outcomes).await;
    }

    if want("longpoll_1000_wakeup") {
        eprintln!("bench: long-poll");
        probe.start("longpoll_1000_wakeup");
        let (mut o, parked_rss) = devices::long_poll(
            &db,
            &devices::LongPoll {
                base: &base,
                tokens: &data.tokens,
                scope: "laundry",
                waiters: DEVICES,
            },
            || system::rss_mib(pid).0,
        )
        .await?;
        o.name = "longpoll_1000_wakeup".into();
        o.what = "1,000 devices (own tokens) long-poll one scope; latency of each wake-up after one commit".into();
        o.notes
            .push(format!("server RSS with all 1,000 parked: {parked_rss:.1} MiB"));
        finish(&mut o, &probe, &mut outcomes).await;
    }

    // A phone on an emulated 4G and 3G link (benches/load/link.rs), through the same server.
    let mut mobile_outcomes = Vec::new();
    if [
        "mobile_initial_sync",
        "mobile_day_pull",
        "mobile_sale_push",
        "mobile_revalidate",
    ]
    .iter()
    .any(|n| want(n))
    {
        let links: Vec<link::Profile> = env::var("BENCH_LINKS")
            .unwrap_or_else(|_| "4g,3g".into())
            .split(',')
            .filter_map(|n| [link::LTE, link::THREE_G].into_iter().find(|p| p.name == n.trim()))
            .collect();
        let day_changes = 2_000;
        let big_head_now = dukasync::store::scope_heads(&db)
            .await?
            .into_iter()
            .find(|(s, _)| s == big)
            .map(|h| h.1)
            .context("big scope")?;
        let day_cursor = cursors_at(&http, &base, big, &token, &[big_head_now - day_changes])
            .await?
            .remove(0);
        probe.memory.phase("mobile");
        let m = mobile::Mobile {
            upstream: base.trim_start_matches("http://").parse()?,
            scope: big,
            token: &token,
            day_cursor,
            day_changes,
            sellable: &data.sellable,
        };
        mobile_outcomes = mobile::run(&m, &links, &want).await?;
        probe.memory.phase(BETWEEN);
    }

    eprintln!("bench: pgbench");
    probe.memory.phase("pgbench");
    let mut pgbench = if want("pgbench") {
        references::pgbench(&pgbench_url, PGBENCH_SCALE, PUSH_DEVICES as u32, seconds as u32).unwrap_or_else(|e| {
            eprintln!("bench: pgbench failed: {e:#}");
            references::Pgbench {
                error: Some(format!("{e:#}")),
                ..Default::default()
            }
        })
    } else {
        references::Pgbench::default()
    };
    probe.memory.phase(BETWEEN);
    pgbench.fsync = fsync.clone();
    pgbench.synchronous_commit = sync_commit.clone();

    // The floor under a sale: the rows a sale writes, as plain SQL (benches/pgbench/sale.sql), same clients.
    // The floor under a sale: the rows a sale writes, as plain SQL (benches/pgbench/sale.sql), same clients; one
    // sale a transaction, then four (about what group commit puts in one replay transaction here).
    let mut sale_floor = Vec::new();
    if want("pgbench_sale") {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/pgbench");
        let url = var("DUKASYNC_DATABASE_URL")?;
        let setup = dir.join("sale-setup.sql");
        for per in [1, 4] {
            let name = format!("pgbench_sale_x{per}");
            eprintln!("bench: {name}");
            probe.memory.phase(&name);
            let floor = references::pgbench_script(&references::ScriptRun {
                url: &url,
                setup: (per == 1).then_some(setup.as_path()),
                script: &dir.join("sale.sql"),
                sales_per_transaction: per,
                work: &work,
                clients: PUSH_DEVICES as u32,
                seconds: seconds as u32,
                postmaster: mem.postmaster_pid,
            })
            .unwrap_or_else(|e| {
                eprintln!("bench: {name} failed: {e:#}");
                references::PgbenchScript {
                    sales_per_transaction: per,
                    error: Some(format!("{e:#}")),
                    ..Default::default()
                }
            });
            probe.memory.phase(BETWEEN);
            eprintln!(
                "bench:   {:.0} tps p99 {:.2} ms, cluster CPU {:?} ms/sale",
                floor.tps, floor.p99_ms, floor.postgres_cluster_cpu_ms_per_sale
            );
            sale_floor.push(floor);
        }
    }

    for (name, per, workload, what) in [
        (
            "push_single_sale",
            1,
            devices::Workload::Sales,
            "each device POSTs one record_sale per request, waiting for each answer",
        ),
        (
            "push_batch_50",
            BATCH_OPS,
            devices::Workload::Sales,
            "each device POSTs 50 record_sale operations per request",
        ),
        (
            "push_batch_50_rows",
            BATCH_OPS,
            devices::Workload::LaundryOrders,
            "each device POSTs 50 puts of new laundry_orders rows per request (generic operations: one feed \
             change each, no ledger; a comparison for push_batch_50, not a target)",
        ),
    ] {
        if !want(name) {
            continue;
        }
        eprintln!("bench: {name}");
        let replays_before = replay_counts(&probe.metrics_url).await;
        probe.start(name);
        let cluster = mem.postmaster_pid.map(system::ClusterCpu::mark);
        let mut o = devices::push(
            &http,
            &devices::Push {
                base: &base,
                tokens: &data.tokens,
                sellable: &data.sellable,
                devices: PUSH_DEVICES,
                ops_per_request: per,
                workload,
                duration: Duration::from_secs(seconds),
            },
        )
        .await?;
        o.name = name.into();
        o.what = format!(
            "{PUSH_DEVICES} devices over the 3 scopes; {what}; fsync={fsync}, synchronous_commit={sync_commit}"
        );
        if let Some(cluster) = cluster {
            let cpu = cluster.since();
            let ops = o.ops_per_s.unwrap_or(0.0) * o.seconds;
            o.postgres_cluster_cpu_ms_per_req =
                (o.requests > 0).then(|| (cpu / o.requests as f64 * 1000.0).round() / 1000.0);
            if ops > 0.0 {
                o.notes
                    .push(format!("PostgreSQL cluster CPU {:.3} ms per operation", cpu / ops));
            }
        }
        if let (Some((t0, p0)), Some((t1, p1))) = (replays_before, replay_counts(&probe.metrics_url).await) {
            let (transactions, pushes) = (t1 - t0, p1 - p0);
            o.notes.push(format!(
                "group commit: {pushes:.0} pushes in {transactions:.0} replay transactions ({:.2} per transaction)",
                pushes / transactions.max(1.0)
            ));
        }
        finish(&mut o, &probe, &mut outcomes).await;
    }

    let (_, server_peak_overall) = system::rss_mib(pid);
    final_service_figures(&db, &mut mem).await;
    mem.phases = probe.memory.finish();
    mem.whole_run = system::PhaseMemory::max_of("whole_run", &mem.phases);
    mem.server_peak_rss_mib = outcomes
        .iter()
        .filter_map(|o| o.server_peak_rss_mib)
        .fold(0.0, f64::max);
    mem.postgres_pss_mib_max = mem.whole_run.postgres_pss_mib;
    mem.postgres_processes = mem.whole_run.postgres_processes;
    mem.redis_rss_mib_max = mem.whole_run.redis_rss_mib;
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let mut server = server;
    let _ = server.child.wait();
    let load_after = system::load();

    let report = report::Report {
        date: chrono::Utc::now().to_rfc3339(),
        command: env::var("BENCH_COMMAND").unwrap_or_else(|_| "benches/run".into()),
        git_commit: Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default(),
        machine: system::machine(),
        load_before,
        load_after,
        dataset: report::Dataset {
            heads: data.heads,
            catalogue: dataset::CATALOGUE,
            devices_with_tokens: DEVICES,
            load_seconds,
        },
        seconds_per_scenario: seconds,
        nginx: nginx_outcome,
        nginx_after_reads: nginx_after,
        pgbench,
        sale_floor,
        compressed,
        mobile: mobile_outcomes,
        scenarios: outcomes,
        services: mem,
        server_peak_rss_mib_last_scenario: server_peak_overall,
        total_seconds: started.elapsed().as_secs_f64(),
    };
    report::write(&report, &out_dir)?;
    if env::var_os("BENCH_KEEP").is_none() {
        let _ = fs::remove_dir_all(&work);
    } else {
        eprintln!("bench: kept {} (server.log)", work.display());
    }
    Ok(())
}

/// What the server's in-process cache believes it holds (`dukasync_cache_memory_bytes`, all caches), MiB.
/// (replay transactions, pushes) so far, from `/metrics`.
async fn replay_counts(metrics_url: &str) -> Option<(f64, f64)> {
    let text = reqwest::get(metrics_url).await.ok()?.text().await.ok()?;
    let value = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.split_whitespace().last()?.parse::<f64>().ok())
    };
    Some((
        value("dukasync_replay_transactions_total")?,
        value("dukasync_replay_pushes_total")?,
    ))
}

async fn cache_accounted_mib(metrics_url: &str) -> Option<f64> {
    let text = reqwest::get(metrics_url).await.ok()?.text().await.ok()?;
    let bytes: f64 = text
        .lines()
        .filter(|l| l.starts_with("dukasync_cache_memory_bytes{"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum();
    Some(bytes / 1048576.0)
}

/// Measures one scenario: the server's peak RSS, the CPU of the server and the bench database's backends, and
/// (through the sampler) the memory of the whole stack.
struct Probe {
    pid: u32,
    metrics_url: String,
    cpu: system::CpuProbe,
    started: std::cell::RefCell<Option<system::CpuMark>>,
    memory: system::MemorySampler,
}

impl Probe {
    fn start(&self, phase: &str) {
        self.memory.phase(phase);
        system::reset_peak(self.pid);
        *self.started.borrow_mut() = Some(self.cpu.mark());
    }
}

/// Records the scenario's peak server RSS and CPU, and files the outcome.
async fn finish(o: &mut Outcome, probe: &Probe, outcomes: &mut Vec<Outcome>) {
    o.server_peak_rss_mib = Some(system::rss_mib(probe.pid).1);
    if let Some(start) = probe.started.borrow_mut().take() {
        let (server, pg, busy) = probe.cpu.since(&start);
        o.machine_busy_pct = Some(busy);
        let per = |ms: f64| (o.requests > 0).then(|| (ms / o.requests as f64 * 1000.0).round() / 1000.0);
        o.server_cpu_ms_per_req = per(server);
        o.postgres_cpu_ms_per_req = per(pg);
    }
    o.server_cache_accounted_mib = cache_accounted_mib(&probe.metrics_url).await;
    // What runs until the next scenario (its set-up: fetching cursors) is no scenario's.
    probe.memory.phase(BETWEEN);
    eprintln!(
        "bench:   {:.0} req/s p50 {:.2} p99 {:.2} ms, {} errors, peak RSS {:.1} MiB",
        o.req_per_s,
        o.p50_ms,
        o.p99_ms,
        o.errors,
        o.server_peak_rss_mib.unwrap_or(0.0)
    );
    outcomes.push(std::mem::take(o));
}
