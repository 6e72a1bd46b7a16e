//! Two server instances on one PostgreSQL and one Redis, as behind nginx (deploy/README.md, "Beyond one
//! machine"): a push to one wakes a long-poll on the other, both serve identical pulls and checksums, a batch
//! sent to both at once applies once, and a revocation on one reaches the other. Nothing a request needs lives
//! only in one instance; the per-instance parts (the long-poll hub, the token cache) are kept right by the
//! LISTEN connection of `src/notify.rs`.
//!
//! The last test serves the same router *without* that LISTEN connection (the naive design, where each
//! instance only hears its own commits) and shows the same check then fails: the long-poll sleeps through the
//! other instance's push.

use crate::common::*;
use dukasync::{
    wire::{ChangesPage, ChecksumReport, OpStatus, OpsResponse},
    AppState,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use uuid::Uuid;

fn put(seq: i64, key: &str, name: &str) -> Value {
    json!({"seq": seq, "id": Uuid::new_v4(), "type": "put", "collection": "customers", "key": key,
           "data": {"id": key, "name": name, "credit_limit": "2500.00"}})
}

async fn push(base: &str, http: &reqwest::Client, token: &str, client_id: Uuid, ops: &[Value]) -> OpsResponse {
    let resp = http
        .post(format!("{base}/v1/scopes/water/ops"))
        .bearer_auth(token)
        .json(&json!({"client_id": client_id, "ops": ops}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

async fn pull(base: &str, http: &reqwest::Client, token: &str, query: &str) -> ChangesPage {
    let resp = http
        .get(format!("{base}/v1/scopes/water/changes?{query}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{query}");
    resp.json().await.unwrap()
}

/// Reads a gauge from `/metrics` at `base` until it equals `value` (observable state, never a sleep).
async fn wait_for_gauge(http: &reqwest::Client, base: &str, metric: &str, value: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let current = text
            .lines()
            .find(|l| l.starts_with(metric) && l[metric.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
        if current == Some(value) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{metric} at {base} never reached {value}; last {current:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Long-polls `waiter` with `wait` seconds, pushes one operation through `pusher` once the pull is waiting, and
/// returns how long after the push the long-poll answered *with that change*, or `None` if it answered without
/// it (its wait ran out first).
async fn long_poll_sees_push_through_other(
    waiter: &str,
    pusher: &str,
    token: &str,
    wait: u64,
    key: &str,
) -> Option<Duration> {
    let http = reqwest::Client::new();
    let head = pull(waiter, &http, token, "since=0&limit=1").await.head;
    let poll = {
        let (http, url, token) = (
            http.clone(),
            format!("{waiter}/v1/scopes/water/changes?since={head}&wait={wait}"),
            token.to_string(),
        );
        tokio::spawn(async move {
            let page: ChangesPage = http
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (Instant::now(), page)
        })
    };
    wait_for_gauge(&http, waiter, "dukasync_longpoll_waiters", 1.0).await;
    let pushed = Instant::now();
    let answer = push(pusher, &http, token, Uuid::new_v4(), &[put(1, key, "Wanjiku")]).await;
    assert_eq!(answer.results[0].status, OpStatus::Applied);
    let (answered, page) = poll.await.unwrap();
    page.changes
        .iter()
        .any(|c| c.key == key)
        .then(|| answered.duration_since(pushed))
}

fn redis_and_long_token_cache() -> Vec<(&'static str, String)> {
    vec![
        ("DUKASYNC_REDIS_URL", redis_url()),
        // Only a notification can make a revocation take effect before this runs out.
        ("DUKASYNC_TOKEN_CACHE_SECS", "300".to_string()),
    ]
}

fn as_refs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test]
async fn a_push_to_one_instance_wakes_a_long_poll_on_the_other_and_both_serve_the_same_pulls() {
    let settings = redis_and_long_token_cache();
    let first = TestApp::start_with(&as_refs(&settings)).await;
    let second = TestApp::on_database(&first.database_url, &as_refs(&settings)).await;
    let (a, b) = (first.url(""), second.url(""));
    let token = first.token(OWNER, "owner-phone").await;

    // Both instances are ready on the shared PostgreSQL and Redis.
    for base in [&a, &b] {
        let ready: Value = first
            .http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(ready["status"], "ready", "{base}: {ready}");
    }

    // A long-poll on the second instance wakes on a push through the first, and the other way round. The wait
    // is 20 s: an answer carrying the change within 2 s can only come from the cross-instance notification.
    for (waiter, pusher, key) in [(&b, &a, "c-on-a"), (&a, &b, "c-on-b")] {
        let latency = long_poll_sees_push_through_other(waiter, pusher, &token, 20, key)
            .await
            .unwrap_or_else(|| panic!("the long-poll on {waiter} never saw the push through {pusher}"));
        println!("long-poll on {waiter} answered {latency:?} after the push through {pusher}");
        assert!(latency < Duration::from_secs(2), "woke after {latency:?}");
    }

    // Every pull and checksum is the same whichever instance answers, cursors included: a device may be sent
    // to either instance on each request.
    let from_a = pull(&a, &first.http, &token, "since=0&limit=1000").await;
    let from_b = pull(&b, &first.http, &token, "since=0&limit=1000").await;
    assert_eq!(from_a, from_b);
    assert!(from_a.changes.iter().any(|c| c.key == "c-on-a") && from_a.changes.iter().any(|c| c.key == "c-on-b"));
    let mid = &from_a.changes[from_a.changes.len() / 2];
    let cursor = pull(
        &a,
        &first.http,
        &token,
        &format!("since=0&limit={}", from_a.changes.len() / 2 + 1),
    )
    .await
    .cursor;
    assert!(cursor.starts_with(&format!("{}.", mid.version)), "{cursor}");
    assert_eq!(
        pull(&a, &first.http, &token, &format!("since={cursor}")).await,
        pull(&b, &first.http, &token, &format!("since={cursor}")).await,
        "a cursor issued by one instance is honoured identically by the other"
    );
    let checksum = |base: String| {
        let (http, token) = (first.http.clone(), token.clone());
        async move {
            let report: ChecksumReport = http
                .get(format!("{base}/v1/scopes/water/checksum"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            report
        }
    };
    assert_eq!(checksum(a.clone()).await, checksum(b.clone()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_sent_to_both_instances_at_once_applies_once() {
    let first = TestApp::start().await;
    let second = TestApp::on_database(&first.database_url, &[]).await;
    let token = first.token(WATER_CASHIER, "water-counter").await;
    let client_id = Uuid::new_v4();
    let ops: Vec<Value> = (1..=20).map(|i| put(i, &format!("c-{i}"), "Njeri")).collect();
    let before = pull(&first.url(""), &first.http, &token, "since=0&limit=1").await.head;

    let (a, b) = (first.url(""), second.url(""));
    let (from_a, from_b) = tokio::join!(
        push(&a, &first.http, &token, client_id, &ops),
        push(&b, &second.http, &token, client_id, &ops)
    );
    let applied = |r: &OpsResponse| r.results.iter().filter(|x| x.status == OpStatus::Applied).count();
    assert_eq!((from_a.last_seq, from_b.last_seq), (20, 20));
    assert_eq!(
        applied(&from_a) + applied(&from_b),
        20,
        "each operation applied by one instance only"
    );
    let after = pull(&second.url(""), &second.http, &token, "since=0&limit=1")
        .await
        .head;
    assert_eq!(after - before, 20, "twenty versions, not forty");
}

#[tokio::test]
async fn a_revocation_on_one_instance_reaches_the_other_before_its_token_cache_expires() {
    let settings = redis_and_long_token_cache();
    let first = TestApp::start_with(&as_refs(&settings)).await;
    let second = TestApp::on_database(&first.database_url, &as_refs(&settings)).await;
    let token = first.token(OWNER, "owner-phone").await;
    // Both instances have now cached the token as valid for 300 s.
    assert_eq!(first.get("/v1/scopes", Some(&token)).await.status(), StatusCode::OK);
    assert_eq!(second.get("/v1/scopes", Some(&token)).await.status(), StatusCode::OK);

    let id: Uuid = sqlx::query_scalar("SELECT id FROM device_tokens WHERE token_hash = $1")
        .bind(&dukasync::auth::hash_token(&token)[..])
        .fetch_one(&first.db)
        .await
        .unwrap();
    assert!(dukasync::store::tokens::revoke(&first.db, id).await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    while second.get("/v1/scopes", Some(&token)).await.status() != StatusCode::UNAUTHORIZED {
        assert!(
            Instant::now() < deadline,
            "the second instance still accepts a revoked token"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An instance built like `dukasync::serve` but without the LISTEN connection: it only hears its own commits.
struct DeafInstance {
    base: String,
    stop: tokio_util::sync::CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

impl DeafInstance {
    async fn start(database_url: &str, overrides: &[(&str, &str)]) -> DeafInstance {
        let state = AppState::new(config(database_url, overrides)).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = state.shutdown.clone();
        let router = dukasync::http::router(state);
        let handle = tokio::spawn({
            let stop = stop.clone();
            async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await
                    .unwrap();
            }
        });
        DeafInstance { base, stop, handle }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.handle.await.unwrap();
    }
}

#[tokio::test]
async fn without_the_listen_connection_the_same_check_fails() {
    let first = TestApp::start().await;
    let deaf = DeafInstance::start(&first.database_url, &[]).await;
    let token = first.token(OWNER, "owner-phone").await;
    // The check itself works against the real second instance (first test); here the waiting instance is deaf
    // to the other's commits, so the pull sleeps through the push until its 2 s wait runs out.
    let started = Instant::now();
    let seen = long_poll_sees_push_through_other(&deaf.base, &first.url(""), &token, 2, "c-unheard").await;
    assert_eq!(seen, None, "a deaf instance cannot have been woken by the other's push");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the pull ran its whole wait"
    );
    // The change is there all the same for the next pull: only the wake-up was lost.
    let page = pull(&deaf.base, &first.http, &token, "since=0&limit=1000").await;
    assert!(page.changes.iter().any(|c| c.key == "c-unheard"));
    deaf.stop().await;
}
