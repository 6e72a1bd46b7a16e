//! Simulated devices written in Rust where wrk cannot express the protocol: pushes (each device its own outbox
//! with consecutive sequences), long-poll waiters woken by one commit, and an initial sync.

use crate::{
    dataset::Sellable,
    stats::{fill_latencies, Outcome},
};
use anyhow::{bail, Context};
use dukasync::{
    domain::ScopeId,
    store::changes::{self, RowWrite},
};
use serde_json::{json, Value};
use sqlx::PgPool;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A `record_sale` of one unit, paid in cash at the product's current price.
pub(crate) fn sale(seq: i64, item: &Sellable) -> Value {
    json!({"seq": seq, "id": Uuid::new_v4(), "type": "command", "command": "record_sale",
           "key": format!("bench-sale-{}", Uuid::new_v4()),
           "args": {"lines": [{"product_id": item.product, "quantity": "1", "unit_price": item.price}],
                    "payments": [{"method": "cash", "amount": item.price}]}})
}

/// A `put` of a new laundry order: a generic row operation (one feed change, no ledger, no stock).
fn laundry_order(seq: i64, item: &Sellable) -> Value {
    let key = format!("bench-order-{}", Uuid::new_v4());
    json!({"seq": seq, "id": Uuid::new_v4(), "type": "put", "collection": "laundry_orders", "key": key,
           "data": {"id": key, "customer_id": "bench-customer", "status": "received",
                    "items": [{"service": "wash-and-fold", "kg": "4.500"}], "total": item.price}})
}

/// What a device's operations are.
#[derive(Clone, Copy)]
pub enum Workload {
    /// `record_sale` commands: a sale row, a journal entry, a stock movement and a stock level each.
    Sales,
    /// Generic `put`s of new `laundry_orders` rows.
    LaundryOrders,
}

impl Workload {
    fn op(self, seq: i64, item: &Sellable) -> Value {
        match self {
            Workload::Sales => sale(seq, item),
            Workload::LaundryOrders => laundry_order(seq, item),
        }
    }
}

pub struct Push<'a> {
    pub base: &'a str,
    pub tokens: &'a [String],
    pub sellable: &'a [Sellable],
    pub devices: usize,
    pub ops_per_request: usize,
    pub workload: Workload,
    pub duration: Duration,
}

#[derive(Default)]
struct DeviceTally {
    latencies: Vec<Duration>,
    errors: u64,
    conflicts: u64,
    ops: u64,
    /// The first error seen, for the report.
    first_error: Option<String>,
}

/// Each device pushes its workload's operations into one scope (device i into the i-th scope, round robin), one batch at a time
/// until the time is up. An error is a non-200 answer, or any result that is not `applied`/`conflict`.
pub async fn push(http: &reqwest::Client, p: &Push<'_>) -> anyhow::Result<Outcome> {
    let mut scopes: Vec<&str> = p.sellable.iter().map(|s| s.scope.as_str()).collect();
    scopes.dedup();
    // A device's first batch registers its outbox; send those one at a time, untimed, so the timed part
    // measures devices in their steady state (a real device registers once in its life).
    let mut devices = Vec::new();
    for d in 0..p.devices {
        let scope = scopes[d % scopes.len()].to_string();
        let items: Vec<Sellable> = p.sellable.iter().filter(|s| s.scope == scope).cloned().collect();
        let url = format!("{}/v1/scopes/{scope}/ops", p.base);
        let token = p.tokens[d % p.tokens.len()].clone();
        let client = Uuid::new_v4();
        let first = json!({"client_id": client, "ops": [p.workload.op(1, &items[d % items.len()])]});
        let r = http.post(&url).bearer_auth(&token).json(&first).send().await?;
        if r.status() != 200 {
            bail!(
                "a device's first push answered {}: {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
        }
        devices.push((url, token, client, items));
    }
    let deadline = Instant::now() + p.duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (d, (url, token, client, items)) in devices.into_iter().enumerate() {
        let http = http.clone();
        let per = p.ops_per_request;
        let workload = p.workload;
        tasks.push(tokio::spawn(async move {
            let mut tally = DeviceTally::default();
            let mut seq = 2;
            let mut n = d;
            while Instant::now() < deadline {
                let ops: Vec<Value> = (0..per)
                    .map(|i| {
                        n += 7;
                        workload.op(seq + i as i64, &items[n % items.len()])
                    })
                    .collect();
                let body = json!({"client_id": client, "ops": ops});
                let t = Instant::now();
                let answer = http.post(&url).bearer_auth(&token).json(&body).send().await;
                let answer = match answer {
                    Ok(r) => (r.status(), r.text().await.unwrap_or_default()),
                    Err(e) => (reqwest::StatusCode::default(), e.to_string()),
                };
                tally.latencies.push(t.elapsed());
                let parsed: Option<Value> = (answer.0 == 200)
                    .then(|| serde_json::from_str(&answer.1).ok())
                    .flatten();
                let Some(parsed) = parsed else {
                    tally.errors += 1;
                    tally
                        .first_error
                        .get_or_insert(format!("{} {:.200}", answer.0, answer.1));
                    continue;
                };
                for result in parsed["results"].as_array().into_iter().flatten() {
                    match result["status"].as_str() {
                        Some("applied") => tally.ops += 1,
                        Some("conflict") => {
                            tally.ops += 1;
                            tally.conflicts += 1
                        }
                        _ => {
                            tally.errors += 1;
                            tally.first_error.get_or_insert(format!("{result:.200}"));
                        }
                    }
                }
                seq += per as i64;
            }
            tally
        }));
    }
    let mut all = DeviceTally::default();
    for task in tasks {
        let t = task.await?;
        all.latencies.extend(t.latencies);
        all.errors += t.errors;
        all.conflicts += t.conflicts;
        all.ops += t.ops;
        all.first_error = all.first_error.or(t.first_error);
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut outcome = Outcome {
        connections: p.devices,
        seconds,
        requests: all.latencies.len() as u64,
        req_per_s: (all.latencies.len() as f64 / seconds).round(),
        ops_per_s: Some((all.ops as f64 / seconds).round()),
        errors: all.errors,
        ..Outcome::default()
    };
    if all.conflicts > 0 {
        outcome.notes.push(format!(
            "{} operations answered `conflict` (applied, flagged)",
            all.conflicts
        ));
    }
    if let Some(e) = all.first_error {
        outcome.notes.push(format!("first error: {e}"));
    }
    fill_latencies(&mut outcome, &mut all.latencies);
    Ok(outcome)
}

pub struct LongPoll<'a> {
    pub base: &'a str,
    pub tokens: &'a [String],
    pub scope: &'a str,
    pub waiters: usize,
}

/// Parks `waiters` long-polls at the scope's head, waits until the server reports them all waiting
/// (`dukasync_longpoll_waiters`), commits one change, and measures when each waiter has its answer, counted
/// from just before the commit. Returns the outcome and the server's RSS while all were parked (via `parked`).
pub async fn long_poll(db: &PgPool, lp: &LongPoll<'_>, parked: impl FnOnce() -> f64) -> anyhow::Result<(Outcome, f64)> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(40))
        .build()?;
    let scope = ScopeId::parse(lp.scope).context("scope")?;
    let head_page: Value = http
        .get(format!("{}/v1/scopes/{}/changes?limit=1&since=0", lp.base, lp.scope))
        .bearer_auth(&lp.tokens[0])
        .send()
        .await?
        .json()
        .await?;
    let head = head_page["head"].as_i64().context("head")?;
    let tail = tail_cursor(&http, lp.base, lp.scope, &lp.tokens[0], head).await?;
    let mut tasks = Vec::new();
    for w in 0..lp.waiters {
        let url = format!("{}/v1/scopes/{}/changes?since={tail}&wait=25", lp.base, lp.scope);
        let req = http.get(url).bearer_auth(&lp.tokens[w % lp.tokens.len()]);
        tasks.push(tokio::spawn(async move {
            let page: Value = req.send().await.ok()?.json().await.ok()?;
            let got = Instant::now();
            let n = page["changes"].as_array().map(|c| c.len()).unwrap_or(0);
            (n > 0).then_some(got)
        }));
    }
    let metrics_url = format!("{}/metrics", lp.base);
    let wait_start = Instant::now();
    loop {
        let text = http.get(&metrics_url).send().await?.text().await?;
        let waiting = text
            .lines()
            .find(|l| l.starts_with("dukasync_longpoll_waiters"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if waiting as usize >= lp.waiters {
            break;
        }
        if wait_start.elapsed() > Duration::from_secs(20) {
            bail!("only {waiting} of {} long-polls parked after 20 s", lp.waiters);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let parked_rss = parked();
    let mut tx = db.begin().await?;
    changes::append(
        &mut tx,
        &scope,
        &[RowWrite {
            collection: "customers".into(),
            key: "wake-up".into(),
            data: Some(json!({"id": "wake-up", "name": "Wake-up"})),
        }],
    )
    .await?;
    let t0 = Instant::now();
    tx.commit().await?;
    let commit_took = t0.elapsed();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        match task.await? {
            Some(got) => latencies.push(got.saturating_duration_since(t0)),
            None => errors += 1,
        }
    }
    let mut outcome = Outcome {
        connections: lp.waiters,
        requests: latencies.len() as u64,
        errors,
        notes: vec![format!(
            "latency from just before COMMIT to each waiter's full answer; the COMMIT itself took {:.1} ms",
            commit_took.as_secs_f64() * 1e3
        )],
        ..Outcome::default()
    };
    fill_latencies(&mut outcome, &mut latencies);
    Ok((outcome, parked_rss))
}

/// The cursor at the scope's head, as the server issues it (pull the last page).
async fn tail_cursor(
    http: &reqwest::Client,
    base: &str,
    scope: &str,
    token: &str,
    head: i64,
) -> anyhow::Result<String> {
    let page: Value = http
        .get(format!("{base}/v1/scopes/{scope}/changes?since={}&limit=1", head - 1))
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?;
    page["cursor"].as_str().map(str::to_string).context("cursor")
}

/// One device pulls the whole scope from "0" with the largest page, parsing every page as a client would.
/// Returns the outcome (one "request" per page) and the number of changes received.
pub async fn initial_sync(
    http: &reqwest::Client,
    base: &str,
    scope: &str,
    token: &str,
) -> anyhow::Result<(Outcome, u64)> {
    let started = Instant::now();
    let mut cursor = "0".to_string();
    let mut received = 0u64;
    let mut pages = Vec::new();
    let mut bytes = 0usize;
    loop {
        let t = Instant::now();
        let body = http
            .get(format!("{base}/v1/scopes/{scope}/changes?since={cursor}&limit=1000"))
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        bytes += body.len();
        let page: Value = serde_json::from_slice(&body)?;
        pages.push(t.elapsed());
        received += page["changes"].as_array().map(|c| c.len()).unwrap_or(0) as u64;
        cursor = page["cursor"].as_str().context("cursor")?.to_string();
        if page["has_more"] != json!(true) {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut outcome = Outcome {
        connections: 1,
        seconds,
        requests: pages.len() as u64,
        req_per_s: (pages.len() as f64 / seconds).round(),
        response_bytes: Some(bytes),
        ..Outcome::default()
    };
    fill_latencies(&mut outcome, &mut pages);
    Ok((outcome, received))
}
