//! A phone on an emulated mobile link (`link.rs`): the initial sync of the big scope, a day's pull, sale pushes
//! and the revalidation of every reference dataset, each through a fresh link, with the bytes that crossed it.
//!
//! Requests are the reference client's (client-fixtures/src/client.js): while catching up,
//! `changes?since=..&wait=0&limit=10000` (its catch-up page, the server's largest), JSON bodies, and the `Accept-Encoding: br, gzip` a browser sends; compressed
//! answers are decoded and every page parsed, as the client does.

use crate::{
    dataset::Sellable,
    devices,
    link::{self, Link, Profile, Wire},
    stats::{fill_latencies, ms},
};
use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::{json, Value};
use std::{
    collections::BTreeMap,
    io::Read,
    net::SocketAddr,
    time::{Duration, Instant},
};
use uuid::Uuid;

/// The reference client's page while catching up (`CATCH_UP_PAGE_SIZE` in client-fixtures/src/client.js).
const CATCH_UP_PAGE_SIZE: u32 = 10_000;

/// What a browser sends on every request.
pub const ACCEPT_ENCODING: &str = "br, gzip";
/// Sales pushed one after another on each link.
const SALES: usize = 50;
/// Warm revalidation rounds (all datasets at once, on connections already open).
const ROUNDS: usize = 10;

/// One scenario on one link.
#[derive(Serialize, Default, Clone)]
pub struct MobileOutcome {
    pub link: String,
    pub scenario: String,
    pub what: String,
    /// Wall time of the whole scenario (all pages, all rounds), seconds.
    pub seconds: f64,
    pub requests: u64,
    /// Per request (pushes) or per round (revalidation); the time of the whole thing for syncs.
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
    /// TCP payload through the proxy (HTTP headers included), both directions.
    pub bytes_down: u64,
    pub bytes_up: u64,
    pub connections: u64,
    /// Bodies after decoding (what the client parsed).
    pub decoded_body_bytes: u64,
    /// `Content-Encoding` of the answers, with counts (`identity` for none).
    pub encodings: BTreeMap<String, u64>,
    pub changes: u64,
    pub errors: u64,
    pub target: Option<String>,
    pub met: Option<bool>,
}

impl MobileOutcome {
    fn new(link: &Profile, scenario: &str, what: String) -> Self {
        MobileOutcome {
            link: link.name.into(),
            scenario: scenario.into(),
            what,
            ..Default::default()
        }
    }

    fn wire(&mut self, w: Wire) {
        self.bytes_down = w.bytes_down;
        self.bytes_up = w.bytes_up;
        self.connections = w.connections;
    }
}

/// Everything the mobile scenarios need from the run.
pub struct Mobile<'a> {
    pub upstream: SocketAddr,
    pub scope: &'a str,
    pub token: &'a str,
    /// The cursor `day_changes` behind the head, for the day's pull.
    pub day_cursor: String,
    pub day_changes: i64,
    pub sellable: &'a [Sellable],
}

fn client() -> anyhow::Result<reqwest::Client> {
    // HTTP/1.1, at most 6 connections to the host as a browser keeps.
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .pool_max_idle_per_host(6)
        .http1_only()
        .build()?)
}

/// A body decoded by its `Content-Encoding`.
fn decode(encoding: &str, body: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    match encoding {
        "identity" => out.extend_from_slice(body),
        "gzip" => {
            flate2::read::GzDecoder::new(body).read_to_end(&mut out)?;
        }
        "br" => {
            brotli::Decompressor::new(body, 64 * 1024).read_to_end(&mut out)?;
        }
        "zstd" => out = zstd::decode_all(body)?,
        other => bail!("unexpected Content-Encoding {other}"),
    }
    Ok(out)
}

/// GET with the browser's headers; (status, encoding, decoded body, ETag).
async fn fetch(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    if_none_match: Option<&str>,
) -> anyhow::Result<(u16, String, Vec<u8>, Option<String>)> {
    let mut req = http
        .get(url)
        .bearer_auth(token)
        .header("accept-encoding", ACCEPT_ENCODING);
    if let Some(tag) = if_none_match {
        req = req.header("if-none-match", tag);
    }
    let r = req.send().await?;
    let status = r.status().as_u16();
    let header = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let encoding = header("content-encoding").unwrap_or_else(|| "identity".into());
    let etag = header("etag");
    let body = r.bytes().await?;
    Ok((status, encoding.clone(), decode(&encoding, &body)?, etag))
}

/// Pulls from `since` until `has_more` is false on a new connection through `link`, parsing every page.
async fn pull(link: &Link, m: &Mobile<'_>, since: &str, scenario: &str, what: String) -> anyhow::Result<MobileOutcome> {
    let http = client()?;
    let mut o = MobileOutcome::new(&link.profile, scenario, what);
    link.take();
    let started = Instant::now();
    let mut cursor = since.to_string();
    loop {
        let url = format!(
            "{}/v1/scopes/{}/changes?since={cursor}&wait=0&limit={CATCH_UP_PAGE_SIZE}",
            link.base(),
            m.scope
        );
        let (status, encoding, body, _) = fetch(&http, &url, m.token, None).await?;
        o.requests += 1;
        if status != 200 {
            bail!("{scenario} on {}: page answered {status}", link.profile.name);
        }
        *o.encodings.entry(encoding).or_default() += 1;
        o.decoded_body_bytes += body.len() as u64;
        let page: Value = serde_json::from_slice(&body)?;
        o.changes += page["changes"].as_array().map(|c| c.len()).unwrap_or(0) as u64;
        cursor = page["cursor"].as_str().context("cursor")?.to_string();
        if page["has_more"] != json!(true) {
            break;
        }
    }
    o.seconds = started.elapsed().as_secs_f64();
    o.p50_ms = ms(started.elapsed());
    o.p95_ms = o.p50_ms;
    o.max_ms = o.p50_ms;
    o.wire(link.take());
    Ok(o)
}

/// `SALES` single-sale pushes, one after another, on one connection (registered with an untimed first push).
async fn sales(link: &Link, m: &Mobile<'_>) -> anyhow::Result<MobileOutcome> {
    let http = client()?;
    let items: Vec<&Sellable> = m.sellable.iter().filter(|s| s.scope == m.scope).collect();
    let url = format!("{}/v1/scopes/{}/ops", link.base(), m.scope);
    let client_id = Uuid::new_v4();
    let push = |seq: i64| {
        let body = json!({"client_id": client_id, "ops": [devices::sale(seq, items[seq as usize % items.len()])]});
        http.post(&url)
            .bearer_auth(m.token)
            .header("accept-encoding", ACCEPT_ENCODING)
            .json(&body)
            .send()
    };
    let first = push(1).await?;
    if first.status() != 200 {
        bail!("the first push on {} answered {}", link.profile.name, first.status());
    }
    first.bytes().await?;
    let mut o = MobileOutcome::new(
        &link.profile,
        "sale_push",
        format!(
            "{SALES} single-sale pushes (record_sale, JSON) one after another on one warm connection; \
             percentiles per push"
        ),
    );
    link.take();
    let started = Instant::now();
    let mut latencies = Vec::new();
    for seq in 2..2 + SALES as i64 {
        let t = Instant::now();
        let r = push(seq).await?;
        let ok = r.status() == 200;
        let body: Value = r.json().await.unwrap_or(Value::Null);
        latencies.push(t.elapsed());
        o.requests += 1;
        if !ok || body["results"][0]["status"] != json!("applied") {
            o.errors += 1;
        }
    }
    o.seconds = started.elapsed().as_secs_f64();
    fill_latencies_into(&mut o, &mut latencies);
    o.wire(link.take());
    Ok(o)
}

fn fill_latencies_into(o: &mut MobileOutcome, samples: &mut [Duration]) {
    let mut s = crate::stats::Outcome::default();
    fill_latencies(&mut s, samples);
    (o.p50_ms, o.p95_ms, o.max_ms) = (s.p50_ms, s.p95_ms, s.max_ms);
}

/// Every reference dataset revalidated at once with its current ETag (all answer 304): once on new
/// connections (cold), then `ROUNDS` times on the connections already open (warm).
async fn revalidate(link: &Link, m: &Mobile<'_>, tags: &[(String, String)]) -> anyhow::Result<[MobileOutcome; 2]> {
    let http = client()?;
    let round = |http: reqwest::Client| {
        let base = link.base();
        let tags = tags.to_vec();
        let token = m.token.to_string();
        let scope = m.scope.to_string();
        async move {
            let t = Instant::now();
            let mut tasks = Vec::new();
            for (dataset, tag) in tags {
                let (http, token) = (http.clone(), token.clone());
                let url = format!("{base}/v1/scopes/{scope}/reference/{dataset}");
                tasks.push(tokio::spawn(async move {
                    fetch(&http, &url, &token, Some(&tag)).await.map(|(s, ..)| s)
                }));
            }
            let mut not_modified = 0;
            for task in tasks {
                if task.await?? == 304 {
                    not_modified += 1;
                }
            }
            anyhow::Ok((t.elapsed(), not_modified))
        }
    };
    let n = tags.len();
    let what = |how: &str| {
        format!(
            "all {n} reference datasets with If-None-Match, sent at once on {n} HTTP/1.1 connections ({how}); \
             time until all answered"
        )
    };
    let mut cold = MobileOutcome::new(
        &link.profile,
        "revalidate_cold",
        what("new connections: one RTT of TCP handshake, no TLS"),
    );
    link.take();
    let (took, ok) = round(http.clone()).await?;
    cold.requests = n as u64;
    cold.errors = (n - ok) as u64;
    cold.seconds = took.as_secs_f64();
    fill_latencies_into(&mut cold, &mut [took]);
    cold.wire(link.take());
    let mut warm = MobileOutcome::new(
        &link.profile,
        "revalidate_warm",
        what(&format!(
            "connections already open; {ROUNDS} rounds, percentiles per round"
        )),
    );
    let mut rounds = Vec::new();
    let started = Instant::now();
    for _ in 0..ROUNDS {
        let (took, ok) = round(http.clone()).await?;
        rounds.push(took);
        warm.requests += n as u64;
        warm.errors += (n - ok) as u64;
    }
    warm.seconds = started.elapsed().as_secs_f64();
    fill_latencies_into(&mut warm, &mut rounds);
    let mut wire = link.take();
    // Per round, so that the bytes compare with the cold round's.
    wire.bytes_down /= ROUNDS as u64;
    wire.bytes_up /= ROUNDS as u64;
    warm.wire(wire);
    warm.what.push_str("; bytes per round");
    Ok([cold, warm])
}

/// The reference datasets of the scope (from `/v1/collections`, as the client learns them) with their ETags,
/// fetched directly from the server.
async fn reference_tags(base: &str, m: &Mobile<'_>) -> anyhow::Result<Vec<(String, String)>> {
    let http = client()?;
    let collections: Value = http
        .get(format!("{base}/v1/collections"))
        .bearer_auth(m.token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let mut out = Vec::new();
    for c in collections["collections"].as_array().context("collections")? {
        if c["reference"] != json!(true) {
            continue;
        }
        let name = c["name"].as_str().context("name")?.to_string();
        let url = format!("{base}/v1/scopes/{}/reference/{name}", m.scope);
        let (status, _, _, etag) = fetch(&http, &url, m.token, None).await?;
        if status != 200 {
            bail!("{url} answered {status}");
        }
        out.push((name, etag.context("reference answer without ETag")?));
    }
    Ok(out)
}

/// Checks the link itself each run: a warm `GET /readyz` (should take one RTT plus the server's time) and the
/// plain `products` snapshot on a warm connection (its transfer rate, after one RTT, should be near the link's).
async fn calibrate(link: &Link, m: &Mobile<'_>) -> anyhow::Result<MobileOutcome> {
    let http = client()?;
    let readyz = format!("{}/readyz", link.base());
    http.get(&readyz).send().await?.bytes().await?;
    let mut rtts = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        http.get(&readyz).send().await?.bytes().await?;
        rtts.push(t.elapsed());
    }
    link.take();
    let t = Instant::now();
    let url = format!("{}/v1/scopes/{}/reference/products", link.base(), m.scope);
    let body = http.get(&url).bearer_auth(m.token).send().await?.bytes().await?;
    let took = t.elapsed().as_secs_f64();
    let wire = link.take();
    let mut o = MobileOutcome::new(&link.profile, "calibration", String::new());
    fill_latencies_into(&mut o, &mut rtts);
    let rate = wire.bytes_down as f64 * 8.0 / (took - link.profile.rtt_ms as f64 / 1e3).max(1e-3) / 1e6;
    o.what = format!(
        "the link itself: 5 warm GET /readyz, p50 {:.1} ms (RTT {} ms); the plain products snapshot ({}) on a warm \
         connection in {:.0} ms: {rate:.2} Mbit/s after one RTT (link {} Mbit/s down)",
        o.p50_ms,
        link.profile.rtt_ms,
        size(body.len() as u64),
        took * 1e3,
        link.profile.down_bits_per_s as f64 / 1e6
    );
    o.requests = 6;
    o.seconds = took;
    o.wire(wire);
    o.decoded_body_bytes = body.len() as u64;
    Ok(o)
}

/// Runs every scenario on every link in `links`, after checking the link (`calibrate`).
pub async fn run(m: &Mobile<'_>, links: &[Profile], want: impl Fn(&str) -> bool) -> anyhow::Result<Vec<MobileOutcome>> {
    let base = format!("http://{}", m.upstream);
    let tags = reference_tags(&base, m).await?;
    let mut out = Vec::new();
    for (i, profile) in links.iter().enumerate() {
        let (p, first) = (*profile, i == 0);
        let label = format!(
            "{} ({} Mbit/s down, {} up, {} ms RTT)",
            p.name,
            p.down_bits_per_s as f64 / 1e6,
            p.up_bits_per_s as f64 / 1e6,
            p.rtt_ms
        );
        {
            let link = Link::start(p, m.upstream).await?;
            let o = calibrate(&link, m).await?;
            eprintln!("bench: {label}: {}", o.what);
            out.push(o);
        }
        if want("mobile_initial_sync") {
            if first {
                // The first phone after the server started compresses the closed windows on the way (once per
                // coding, then cached in memory and Redis): timed apart, so `initial_sync` is what every later
                // phone gets.
                eprintln!("bench: mobile initial sync on {label}, cold cache");
                let link = Link::start(p, m.upstream).await?;
                out.push(
                    pull(
                        &link,
                        m,
                        "0",
                        "initial_sync_cold",
                        format!(
                            "as initial_sync, by the first phone after the server started: its closed windows are compressed on the way ({} changes a page)",
                            CATCH_UP_PAGE_SIZE
                        ),
                    )
                    .await?,
                );
            }
            eprintln!("bench: mobile initial sync on {label}");
            let link = Link::start(p, m.upstream).await?;
            let mut o = pull(
                &link,
                m,
                "0",
                "initial_sync",
                format!(
                    "pull the {} scope from 0 until has_more is false, {} changes a page (the reference client's catch-up page), one new connection",
                    m.scope, CATCH_UP_PAGE_SIZE
                ),
            )
            .await?;
            if p.name == link::LTE.name {
                o.target = Some("< 3 s and ≤ 4 MB on the wire".into());
                o.met = Some(o.seconds < 3.0 && o.bytes_down + o.bytes_up <= 4_000_000);
            }
            out.push(o);
        }
        if want("mobile_day_pull") {
            eprintln!("bench: mobile day's pull on {label}");
            let link = Link::start(p, m.upstream).await?;
            out.push(
                pull(
                    &link,
                    m,
                    &m.day_cursor,
                    "day_pull",
                    format!(
                        "pull the last {} changes of {} (a day of about {} sales at four feed rows each) from a \
                         cursor, one new connection",
                        m.day_changes,
                        m.scope,
                        m.day_changes / 4
                    ),
                )
                .await?,
            );
        }
        if want("mobile_revalidate") {
            eprintln!("bench: mobile revalidation on {label}");
            let link = Link::start(p, m.upstream).await?;
            let [cold, mut warm] = revalidate(&link, m, &tags).await?;
            if p.name == link::THREE_G.name {
                let rtt = p.rtt_ms as f64;
                // One round trip plus the time to move the round's bytes each way at the link's rates.
                let transfer = warm.bytes_down as f64 * 8.0 / p.down_bits_per_s as f64 * 1e3
                    + warm.bytes_up as f64 * 8.0 / p.up_bits_per_s as f64 * 1e3;
                // 0.5 ms for the proxy's timers (tokio's resolution is 1 ms).
                warm.target = Some(format!(
                    "one round trip: p95 ≤ {rtt:.0} ms + transfer ({transfer:.1} ms for these bytes) + 0.5 ms = {:.1} ms",
                    rtt + transfer + 0.5
                ));
                warm.met = Some(warm.p95_ms <= rtt + transfer + 0.5);
            }
            out.push(cold);
            out.push(warm);
        }
    }
    // Sales last, on every link: they add to the scope, which the pulls above must find as the run loaded it.
    for p in links.iter().filter(|_| want("mobile_sale_push")) {
        eprintln!("bench: mobile sale pushes on {}", p.name);
        let link = Link::start(*p, m.upstream).await?;
        out.push(sales(&link, m).await?);
    }
    Ok(out)
}

/// Human-sized bytes for the tables.
pub fn size(bytes: u64) -> String {
    if bytes >= 1_000_000 {
        format!("{:.2} MB", bytes as f64 / 1e6)
    } else if bytes >= 10_000 {
        format!("{:.1} kB", bytes as f64 / 1e3)
    } else {
        format!("{bytes} B")
    }
}
