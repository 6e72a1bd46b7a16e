//! The run's report: JSON for comparing runs, and a markdown table for benches/README.md, with each target of
//! issue 8 checked against what was measured (reported, never asserted).

use crate::{
    mobile::{self, MobileOutcome},
    references::{Pgbench, PgbenchScript},
    stats::Outcome,
    system, ServiceMemory,
};
use serde::Serialize;
use std::{fmt::Write, fs, path::Path};

#[derive(Serialize)]
pub struct Dataset {
    pub heads: Vec<(String, i64)>,
    pub catalogue: usize,
    pub devices_with_tokens: usize,
    pub load_seconds: f64,
}

/// The 100-change page compressed: its sizes, and nginx's gzip_static serving the same gzip bytes (measured
/// before and after the server's compressed-page scenarios).
#[derive(Serialize, Default)]
pub struct Compressed {
    pub plain_bytes: usize,
    pub gzip_bytes: usize,
    /// Whether the gzip bytes are the server's own (it compressed the page) or gzip -6 made by the harness.
    pub server_gzip: bool,
    /// What the server answered to `Accept-Encoding: br, gzip`, and its size.
    pub server_br_encoding: String,
    pub server_br_bytes: usize,
    pub nginx: Vec<Outcome>,
}

#[derive(Serialize)]
pub struct Report {
    pub date: String,
    pub command: String,
    pub git_commit: String,
    pub machine: system::Machine,
    pub load_before: system::Load,
    pub load_after: system::Load,
    pub dataset: Dataset,
    pub seconds_per_scenario: u64,
    pub nginx: Outcome,
    /// The same reference again, after the read scenarios.
    pub nginx_after_reads: Outcome,
    pub pgbench: Pgbench,
    /// The floor under a sale: benches/pgbench/sale.sql on the same PostgreSQL, same clients.
    pub sale_floor: Vec<PgbenchScript>,
    pub compressed: Compressed,
    /// A phone on the emulated 4G and 3G links.
    pub mobile: Vec<MobileOutcome>,
    pub scenarios: Vec<Outcome>,
    pub services: ServiceMemory,
    pub server_peak_rss_mib_last_scenario: f64,
    pub total_seconds: f64,
}

#[derive(Serialize)]
pub struct Verdict {
    pub target: String,
    pub measured: String,
    /// `None`: the scenario did not run.
    pub met: Option<bool>,
}

impl Report {
    fn scenario(&self, name: &str) -> Option<&Outcome> {
        self.scenarios.iter().find(|o| o.name == name && o.requests > 0)
    }

    /// nginx's rate for the read ratios: the mean of its runs before and after the read scenarios.
    fn nginx_reference(&self) -> f64 {
        let runs: Vec<f64> = [&self.nginx, &self.nginx_after_reads]
            .iter()
            .filter(|o| o.requests > 0)
            .map(|o| o.req_per_s)
            .collect();
        (runs.iter().sum::<f64>() / runs.len().max(1) as f64).max(1.0)
    }

    /// How much nginx's rate moved between its two runs, in percent of the first.
    fn nginx_drift_pct(&self) -> f64 {
        100.0 * (self.nginx_after_reads.req_per_s - self.nginx.req_per_s) / self.nginx.req_per_s.max(1.0)
    }

    fn server_peak(&self) -> f64 {
        self.scenarios
            .iter()
            .filter_map(|o| o.server_peak_rss_mib)
            .fold(0.0, f64::max)
    }

    pub fn verdicts(&self) -> Vec<Verdict> {
        let mut v = Vec::new();
        let mut check = |target: &str, found: Option<(String, Option<bool>)>| {
            let (measured, met) = match found {
                Some((m, ok)) => (m, ok),
                None => ("not run".into(), None),
            };
            v.push(Verdict {
                target: target.into(),
                measured,
                met,
            });
        };
        let nginx = self.nginx_reference();
        check(
            "cached 100-change page ≥ 0.5 × nginx req/s, p99 < 5 ms at 50 connections",
            self.scenario("pull_same_page").map(|o| {
                let r = o.req_per_s / nginx;
                (
                    format!("{r:.2} × nginx, p99 {:.2} ms", o.p99_ms),
                    Some(r >= 0.5 && o.p99_ms < 5.0),
                )
            }),
        );
        check(
            "reference revalidation (304) ≥ 0.6 × nginx req/s",
            self.scenario("reference_304").map(|o| {
                let r = o.req_per_s / nginx;
                (format!("{r:.2} × nginx"), Some(r >= 0.6))
            }),
        );
        check(
            "uncached pull of the open tail: p99 < 10 ms",
            self.scenario("pull_open_tail")
                .map(|o| (format!("p99 {:.2} ms", o.p99_ms), Some(o.p99_ms < 10.0))),
        );
        let floors: Vec<&PgbenchScript> = self.sale_floor.iter().filter(|f| f.transactions > 0).collect();
        let floor_text = |f: &PgbenchScript, what: &dyn Fn(&PgbenchScript) -> String| {
            format!("{} ({} a transaction)", what(f), f.sales_per_transaction)
        };
        check(
            "a sale's p99 against pgbench's p99 of the sale's plain SQL (benches/pgbench/sale.sql), same clients",
            self.scenario("push_single_sale")
                .filter(|_| !floors.is_empty())
                .map(|o| {
                    let against: Vec<String> = floors
                        .iter()
                        .map(|f| {
                            floor_text(f, &|f| {
                                format!(
                                    "p99 {:.2} ms, {:.0} sales/s",
                                    f.p99_ms,
                                    f.tps * f.sales_per_transaction as f64
                                )
                            })
                        })
                        .collect();
                    (
                        format!(
                            "p99 {:.2} ms, {:.0} sales/s; floor: {}",
                            o.p99_ms,
                            o.req_per_s,
                            against.join("; ")
                        ),
                        // A comparison: no threshold was set.
                        None,
                    )
                }),
        );
        check(
            "a sale's PostgreSQL CPU against the floor's per sale (whole cluster)",
            self.scenario("push_single_sale")
                .filter(|_| !floors.is_empty())
                .map(|o| {
                    let sale = o.postgres_cluster_cpu_ms_per_req.unwrap_or(0.0);
                    let batch = self.scenario("push_batch_50").and_then(|b| {
                        Some(b.postgres_cluster_cpu_ms_per_req? / (b.ops_per_s? * b.seconds / b.requests as f64))
                    });
                    let against: Vec<String> = floors
                        .iter()
                        .map(|f| {
                            let cpu = f.postgres_cluster_cpu_ms_per_sale.unwrap_or(0.0);
                            floor_text(f, &|_| {
                                format!("{cpu:.3} ms (single sale {:.1} × it)", sale / cpu.max(0.001))
                            })
                        })
                        .collect();
                    (
                        format!(
                            "single sale {sale:.3} ms, in batches of 50 {} ms per sale; floor: {}",
                            batch.map(|b| format!("{b:.3}")).unwrap_or_else(|| "n/a".into()),
                            against.join("; ")
                        ),
                        None,
                    )
                }),
        );
        check(
            "initial sync of the 100,000-change scope on loopback: < 3 s",
            self.scenario("initial_sync_100k")
                .map(|o| (format!("{:.2} s", o.seconds), Some(o.seconds < 3.0 && o.errors == 0))),
        );
        check(
            "1,000 long-poll devices: server RSS < 100 MB, all woken within 200 ms",
            self.scenario("longpoll_1000_wakeup").map(|o| {
                let rss = o.server_peak_rss_mib.unwrap_or(f64::MAX);
                (
                    format!(
                        "peak RSS {rss:.1} MiB, slowest wake-up {:.1} ms, {} missed",
                        o.max_ms, o.errors
                    ),
                    Some(rss < 100.0 && o.max_ms < 200.0 && o.errors == 0),
                )
            }),
        );
        let gzip = self.scenario("pull_same_page_gzip");
        let nginx_gz: Vec<f64> = self
            .compressed
            .nginx
            .iter()
            .filter(|o| o.requests > 0)
            .map(|o| o.req_per_s)
            .collect();
        check(
            "cached compressed page (Accept-Encoding: gzip) ≥ 0.5 × nginx gzip_static serving the same gzip bytes",
            gzip.filter(|_| !nginx_gz.is_empty()).map(|o| {
                let reference = nginx_gz.iter().sum::<f64>() / nginx_gz.len() as f64;
                let r = o.req_per_s / reference.max(1.0);
                let how = if self.compressed.server_gzip {
                    "the server's gzip bytes"
                } else {
                    "the server answered uncompressed; nginx served gzip -6 of the page"
                };
                (
                    format!("{r:.2} × nginx ({reference:.0} req/s, mean of before and after; {how})"),
                    Some(r >= 0.5 && self.compressed.server_gzip),
                )
            }),
        );
        for o in self.mobile.iter().filter(|o| o.target.is_some()) {
            let target = match o.scenario.as_str() {
                "initial_sync" => format!(
                    "initial sync of the 100,000-change scope on {}: < 3 s, ≤ 4 MB on the wire",
                    o.link
                ),
                _ => format!(
                    "revalidation of all reference datasets on {}: within one round trip",
                    o.link
                ),
            };
            let measured = format!(
                "{} ({}), {} down + {} up",
                if o.scenario == "initial_sync" {
                    format!("{:.2} s", o.seconds)
                } else {
                    format!("p95 {:.0} ms", o.p95_ms)
                },
                o.target.clone().unwrap_or_default(),
                mobile::size(o.bytes_down),
                mobile::size(o.bytes_up)
            );
            check(&target, Some((measured, o.met)));
        }
        let m = &self.services;
        let server = self.server_peak().max(m.whole_run.server_rss_mib);
        let stack = server + m.whole_run.postgres_mib() + m.whole_run.redis_rss_mib;
        let pg_figure = if m.whole_run.postgres_resident_mib.is_some() {
            "resident"
        } else {
            "PSS"
        };
        check(
            "whole stack < 1.5 GB resident (peaks over the run: server RSS + PostgreSQL + Redis RSS)",
            Some((
                format!(
                    "{stack:.0} MiB ({server:.0} + {:.0} {pg_figure} + {:.0}; at one moment at most {:.0}), {} stack",
                    m.whole_run.postgres_mib(),
                    m.whole_run.redis_rss_mib,
                    m.whole_run.stack_mib,
                    m.stack
                ),
                Some(stack < 1536.0),
            )),
        );
        v
    }

    /// The compressed page against gzip_static, the floor under a sale, and the phone on each link.
    fn floor_and_links_markdown(&self) -> String {
        let mut md = String::new();
        let c = &self.compressed;
        if !c.nginx.is_empty() {
            let _ = writeln!(
                md,
                "Compressed 100-change page: {} plain, {} gzip ({}), the server's answer to `br, gzip`: {} ({}). \
                 nginx gzip_static on the same gzip bytes: {} req/s before, {} after (p99 {} ms).\n",
                mobile::size(c.plain_bytes as u64),
                mobile::size(c.gzip_bytes as u64),
                if c.server_gzip {
                    "the server's own bytes"
                } else {
                    "the server did not compress; gzip -6 made by the harness"
                },
                c.server_br_encoding,
                mobile::size(c.server_br_bytes as u64),
                c.nginx
                    .first()
                    .map(|o| format!("{:.0}", o.req_per_s))
                    .unwrap_or_default(),
                c.nginx
                    .get(1)
                    .map(|o| format!("{:.0}", o.req_per_s))
                    .unwrap_or_default(),
                c.nginx
                    .iter()
                    .map(|o| format!("{:.2}", o.p99_ms))
                    .collect::<Vec<_>>()
                    .join(" / "),
            );
        }
        for f in &self.sale_floor {
            let _ = writeln!(
                md,
                "Floor under a sale (`benches/pgbench/sale.sql`, {} sale(s) a transaction, {} clients, same PostgreSQL): \
                 {:.0} tps ({:.0} sales/s), p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms per transaction; \
                 PostgreSQL cluster CPU {} ms per sale (machine busy {}%).{}\n",
                f.sales_per_transaction,
                f.clients,
                f.tps,
                f.tps * f.sales_per_transaction as f64,
                f.p50_ms,
                f.p95_ms,
                f.p99_ms,
                f.max_ms,
                f.postgres_cluster_cpu_ms_per_sale.map(|x| format!("{x:.3}")).unwrap_or_else(|| "n/a".into()),
                f.machine_busy_pct.map(|x| format!("{x:.0}")).unwrap_or_default(),
                f.error.as_ref().map(|e| format!(" Failed: {e}")).unwrap_or_default()
            );
        }
        if !self.sale_floor.is_empty() {
            for o in self
                .scenarios
                .iter()
                .filter(|o| o.name.starts_with("push_") && o.requests > 0)
            {
                let _ = writeln!(
                    md,
                    "- {}: PostgreSQL cluster CPU {} ms per request",
                    o.name,
                    o.postgres_cluster_cpu_ms_per_req
                        .map(|x| format!("{x:.3}"))
                        .unwrap_or_else(|| "n/a".into())
                );
            }
            md.push('\n');
        }
        if !self.mobile.is_empty() {
            md.push_str(
                "Phone on an emulated link (benches/load/link.rs: bandwidth per direction shared by the phone's \
                 connections, RTT/2 each way, one RTT per new connection; no slow start, loss or TLS). Bytes are TCP \
                 payload through the proxy, HTTP headers included.\n\n\
                 | Link | Scenario | Requests | Time | p50 ms | p95 ms | max ms | Down | Up | Conns | Decoded bodies | Encodings | Changes | Errors | Target | Met |\n\
                 |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---|\n",
            );
            for o in &self.mobile {
                let enc: Vec<String> = o.encodings.iter().map(|(k, v)| format!("{k} {v}")).collect();
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {:.2} s | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    o.link,
                    o.scenario,
                    o.requests,
                    o.seconds,
                    o.p50_ms,
                    o.p95_ms,
                    o.max_ms,
                    mobile::size(o.bytes_down),
                    mobile::size(o.bytes_up),
                    o.connections,
                    mobile::size(o.decoded_body_bytes),
                    enc.join(", "),
                    o.changes,
                    o.errors,
                    o.target.clone().unwrap_or_default(),
                    match o.met {
                        Some(true) => "yes",
                        Some(false) => "**no**",
                        None => "",
                    }
                );
            }
            md.push('\n');
            for o in &self.mobile {
                let _ = writeln!(md, "- {} {}: {}", o.link, o.scenario, o.what);
            }
            md.push('\n');
        }
        md
    }

    /// The stack the run used and the memory of its processes, phase by phase.
    fn memory_markdown(&self) -> String {
        let m = &self.services;
        let p = &self.pgbench;
        let mut md = String::new();
        let settings: Vec<String> = m.postgres_settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(
            md,
            "Stack ({}): PostgreSQL: {} ({}; fsync={}, synchronous_commit={}). Redis: {}. Server: {}.\n",
            m.stack,
            m.postgres_setup,
            settings.join(", "),
            p.fsync,
            p.synchronous_commit,
            m.redis_setup,
            m.server_setup
        );
        let _ = writeln!(
            md,
            "Memory of exactly these processes, sampled every {} ms (largest sample per phase, MiB). PostgreSQL is the \
             postmaster and all its children; its resident figure is their PSS plus the pages of the shared \
             segment no live process maps (shared_buffers pages stay resident after the backend that read them \
             exits, where PSS no longer sees them); in brackets the shared segment's resident size. The stack is server RSS + PostgreSQL resident (PSS where \
             unknown) + Redis RSS within one sample.\n",
            m.sample_every_ms
        );
        md.push_str(
            "| Phase | Samples | Server RSS | PostgreSQL processes | PostgreSQL RSS | PostgreSQL PSS | PostgreSQL resident (of it shared) | Redis RSS | Stack |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        let sampled = m.phases.iter().filter(|ph| ph.samples > 0);
        for ph in sampled.chain(std::iter::once(&m.whole_run)) {
            let _ = writeln!(
                md,
                "| {} | {} | {:.1} | {} | {:.0} | {:.0} | {} | {:.1} | {:.0} |",
                ph.phase,
                ph.samples,
                ph.server_rss_mib,
                ph.postgres_processes,
                ph.postgres_rss_mib,
                ph.postgres_pss_mib,
                match (ph.postgres_resident_mib, ph.postgres_shared_segment_mib) {
                    (Some(r), Some(s)) => format!("{r:.0} ({s:.0})"),
                    _ => "n/a".into(),
                },
                ph.redis_rss_mib,
                ph.stack_mib
            );
        }
        let opt = |v: Option<f64>| v.map(|x| format!("{x:.1} MiB")).unwrap_or_else(|| "unknown".into());
        let _ = writeln!(
            md,
            "\nServer peak RSS (VmHWM) over the scenarios {:.1} MiB. shared_buffers holding pages at the end \
             (pg_buffercache): {}. Redis: used_memory_peak {}, maxmemory {}, evicted keys {}.\n",
            m.server_peak_rss_mib,
            opt(m.shared_buffers_used_mib),
            opt(m.redis_used_memory_peak_mib),
            opt(m.redis_maxmemory_mib),
            m.redis_evicted_keys
                .map(|e| e.to_string())
                .unwrap_or_else(|| "unknown".into()),
        );
        md
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let _ = writeln!(
            md,
            "Run {} (commit {}), {} cores ({}), {} MiB memory, kernel {}. Command: `{}`. Load before: `{}`; \
             after: `{}`. Load generator (wrk, 2 threads, or the harness's Rust clients) on the same cores.\n",
            &self.date[..19],
            self.git_commit,
            m.cores,
            m.cpu_model,
            m.memory_mib,
            m.kernel,
            self.command,
            self.load_before.uptime,
            self.load_after.uptime
        );
        md.push_str(
            "| Scenario | Conns | req/s | ops/s | p50 ms | p95 ms | p99 ms | max ms | Errors | Server peak RSS MiB | CPU ms/req server + PG | Machine busy % |\n",
        );
        md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for o in [&self.nginx, &self.nginx_after_reads]
            .into_iter()
            .chain(&self.scenarios)
        {
            if o.requests == 0 {
                let _ = writeln!(md, "| {} | | | | | | | | | | | {} |", o.name, o.what);
                continue;
            }
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} |",
                o.name,
                o.connections,
                o.req_per_s,
                o.ops_per_s.map(|x| format!("{x:.0}")).unwrap_or_default(),
                o.p50_ms,
                o.p95_ms,
                o.p99_ms,
                o.max_ms,
                o.errors,
                o.server_peak_rss_mib
                    .map(|x| format!("{x:.1}"))
                    .unwrap_or_else(|| "n/a".into()),
                match (o.server_cpu_ms_per_req, o.postgres_cpu_ms_per_req) {
                    (Some(s), Some(p)) => format!("{s:.3} + {p:.3}"),
                    _ => String::new(),
                },
                o.machine_busy_pct.map(|b| format!("{b:.0}")).unwrap_or_default(),
            );
        }
        let p = &self.pgbench;
        let _ = writeln!(
            md,
            "| pgbench TPC-B (reference) | {} | {:.0} tps | | {:.2} | {:.2} | {:.2} | {:.2} | | n/a | | |\n",
            p.clients, p.tps, p.p50_ms, p.p95_ms, p.p99_ms, p.max_ms
        );
        let _ = writeln!(
            md,
            "- nginx reference: {:.0} req/s before the read scenarios, {:.0} after ({:+.1}%, how much the machine \
             moved meanwhile); read ratios use their mean, {:.0}",
            self.nginx.req_per_s,
            self.nginx_after_reads.req_per_s,
            self.nginx_drift_pct(),
            self.nginx_reference()
        );
        for o in &self.scenarios {
            for note in &o.notes {
                let _ = writeln!(md, "- {}: {note}", o.name);
            }
        }
        md.push('\n');
        md.push_str(&self.floor_and_links_markdown());
        md.push_str(&self.memory_markdown());
        md.push_str("| Target | Measured | Met |\n|---|---|---|\n");
        for v in self.verdicts() {
            let met = match v.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None if v.measured == "not run" => "not run",
                None => "reported",
            };
            let _ = writeln!(md, "| {} | {} | {met} |", v.target, v.measured);
        }
        md
    }
}

pub fn write(report: &Report, dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir)?;
    let stamp = report.date[..19].replace(':', "-");
    let mut json = serde_json::to_value(report)?;
    json["verdicts"] = serde_json::to_value(report.verdicts())?;
    let json_path = dir.join(format!("{stamp}.json"));
    fs::write(&json_path, serde_json::to_string_pretty(&json)?)?;
    let md = report.markdown();
    fs::write(dir.join(format!("{stamp}.md")), &md)?;
    println!("{md}");
    eprintln!("bench: wrote {}", json_path.display());
    Ok(())
}
