//! The cache through the HTTP API: the same interleaving of writes and reads answers byte for byte the same
//! (and with its exact `Content-Length`) with no cache, the in-process cache, Redis, and Redis killed halfway; Redis paused, killed, flushed and
//! corrupted never changes an answer or causes a 5xx; the hit rate rises; statistics are visible.

use crate::common::*;
use rand::{rngs::StdRng, Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const WINDOW: &str = "4";

/// A request and everything about its answer that must not depend on the cache.
#[derive(Debug, Clone)]
struct Request {
    path: String,
    headers: Vec<(&'static str, String)>,
}

#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    etag: String,
    content_encoding: String,
    content_type: String,
    body: Vec<u8>,
}

async fn send(app: &TestApp, token: &str, request: &Request) -> Answer {
    let mut req = app.http.get(app.url(&request.path)).bearer_auth(token);
    for (k, v) in &request.headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.unwrap();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let answer = Answer {
        status: resp.status().as_u16(),
        etag: header("etag"),
        content_encoding: header("content-encoding"),
        content_type: header("content-type"),
        body: Vec::new(),
    };
    let length = header("content-length");
    let chunked = header("transfer-encoding");
    let body = resp.bytes().await.unwrap().to_vec();
    // Pages from windows are written from several shared buffers; they must still say their length, exactly.
    if answer.status == 200 {
        assert_eq!(
            (length.as_str(), chunked.as_str()),
            (body.len().to_string().as_str(), ""),
            "{request:?}: Content-Length and Transfer-Encoding"
        );
    }
    Answer { body, ..answer }
}

/// Sends `request` to every server; all must answer the same, and none with a 5xx. Returns the answer.
async fn same_everywhere(servers: &[(&str, &TestApp)], token: &str, request: &Request) -> Answer {
    let expected = send(servers[0].1, token, request).await;
    assert!(expected.status < 500, "{request:?}: {}", expected.status);
    for (label, app) in &servers[1..] {
        let answer = send(app, token, request).await;
        assert_eq!(answer, expected, "{label} differs on {request:?}");
    }
    expected
}

fn pull(cursor: &str, limit: u32, collections: Option<&str>) -> Request {
    let mut path = format!("/v1/scopes/water/changes?since={cursor}&limit={limit}");
    if let Some(c) = collections {
        path.push_str(&format!("&collections={c}"));
    }
    Request {
        path,
        headers: Vec::new(),
    }
}

fn snapshot(dataset: &str, headers: &[(&'static str, &str)]) -> Request {
    Request {
        path: format!("/v1/scopes/water/reference/{dataset}"),
        headers: headers.iter().map(|(k, v)| (*k, v.to_string())).collect(),
    }
}

async fn random_writes(app: &TestApp, rng: &mut StdRng, transactions: usize) {
    for _ in 0..transactions {
        let n = rng.gen_range(1..=6);
        let writes = (0..n)
            .map(|_| {
                let collection = ["customers", "products", "price_lists", "laundry_orders"][rng.gen_range(0..4)];
                let key = format!("{collection}-{}", rng.gen_range(0..10));
                if rng.gen_ratio(1, 6) {
                    delete(collection, &key)
                } else {
                    upsert(
                        collection,
                        &key,
                        json!({"id": key, "price": format!("{}.00", rng.gen_range(1..999))}),
                    )
                }
            })
            .collect();
        app.write("water", writes).await;
    }
}

async fn compact(app: &TestApp, below: i64) {
    let scope = dukasync::domain::ScopeId::parse("water").unwrap();
    let mut tx = app.db.begin().await.unwrap();
    dukasync::store::changes::compact(&mut tx, &scope, below)
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn the_same_writes_and_reads_answer_identically_with_any_cache_and_with_redis_killed_halfway() {
    let redis_only = RedisProcess::start();
    let mut redis_killed = RedisProcess::start();
    let none = TestApp::start_with(&[("DUKASYNC_CACHE_MEMORY_BYTES", "0"), ("DUKASYNC_CACHE_WINDOW", WINDOW)]).await;
    let url = none.database_url.clone();
    let memory = TestApp::on_database(&url, &[("DUKASYNC_CACHE_WINDOW", WINDOW)]).await;
    let redis = TestApp::on_database(
        &url,
        &[
            ("DUKASYNC_CACHE_MEMORY_BYTES", "0"),
            ("DUKASYNC_CACHE_WINDOW", WINDOW),
            ("DUKASYNC_REDIS_URL", &redis_only.url()),
        ],
    )
    .await;
    let killed = TestApp::on_database(
        &url,
        &[
            ("DUKASYNC_CACHE_WINDOW", WINDOW),
            ("DUKASYNC_REDIS_URL", &redis_killed.url()),
            ("DUKASYNC_REDIS_TIMEOUT_MS", "100"),
        ],
    )
    .await;
    let servers = [
        ("no cache", &none),
        ("in-process cache", &memory),
        ("redis", &redis),
        ("redis killed halfway", &killed),
    ];
    let token = none.token(OWNER, "owner-phone").await;
    let mut rng = StdRng::seed_from_u64(42);
    let mut cursors: Vec<String> = vec!["0".into()];
    let mut etags: Vec<String> = Vec::new();
    let filters = [None, Some("customers"), Some("products,price_lists"), Some("tax_rates")];
    for step in 0..36 {
        let transactions = rng.gen_range(1..=3);
        random_writes(&none, &mut rng, transactions).await;
        if step == 12 || step == 26 {
            let head: i64 = none
                .get("/v1/scopes", Some(&token))
                .await
                .json::<Value>()
                .await
                .unwrap()["scopes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["id"] == "water")
                .unwrap()["head"]
                .as_i64()
                .unwrap();
            compact(&none, head - 5).await;
        }
        if step == 18 {
            redis_killed.kill();
        }
        // Pulls from many cursors: the beginning, cursors handed out earlier (some now below the floor),
        // each with a few limits and filters, every one sent to all four servers.
        for _ in 0..8 {
            let cursor = cursors[rng.gen_range(0..cursors.len())].clone();
            let limit = [1, 3, 4, 5, 9, 50][rng.gen_range(0..6)];
            let filter = filters[rng.gen_range(0..filters.len())];
            let answer = same_everywhere(&servers, &token, &pull(&cursor, limit, filter)).await;
            if answer.status == 200 {
                let page: Value = serde_json::from_slice(&answer.body).unwrap();
                cursors.push(page["cursor"].as_str().unwrap().to_string());
            }
        }
        for dataset in ["products", "price_lists"] {
            for headers in [
                vec![],
                vec![("accept-encoding", "gzip")],
                vec![("accept", "application/msgpack"), ("accept-encoding", "br, zstd")],
            ] {
                let answer = same_everywhere(&servers, &token, &snapshot(dataset, &headers)).await;
                etags.push(answer.etag.clone());
            }
            let old = etags[rng.gen_range(0..etags.len())].clone();
            same_everywhere(&servers, &token, &snapshot(dataset, &[("if-none-match", &old)])).await;
        }
    }
    // The caches were actually used, and the killed Redis was actually bypassed.
    assert!(
        memory
            .metric_sum("dukasync_cache_lookups_total", &["window", "memory", "result=\"hit\""])
            .await
            > 0.0
    );
    assert!(
        redis
            .metric_sum("dukasync_cache_lookups_total", &["window", "redis", "result=\"hit\""])
            .await
            > 0.0
    );
    assert!(
        redis
            .metric_sum(
                "dukasync_cache_lookups_total",
                &["snapshot_blob", "redis", "result=\"hit\""]
            )
            .await
            > 0.0
    );
    assert!(killed.metric_sum("dukasync_cache_fallbacks_total", &[]).await > 0.0);
    assert_eq!(killed.metric_sum("dukasync_cache_redis_up", &[]).await, 0.0);
}

/// Two servers on one database: `plain` without any cache, `cached` with Redis only (no memory layer, so
/// every cached read goes to Redis).
async fn plain_and_cached(redis: &RedisProcess) -> (TestApp, TestApp, String, Vec<Request>) {
    let plain = TestApp::start_with(&[("DUKASYNC_CACHE_MEMORY_BYTES", "0")]).await;
    let cached = TestApp::on_database(
        &plain.database_url,
        &[
            ("DUKASYNC_CACHE_MEMORY_BYTES", "0"),
            ("DUKASYNC_CACHE_WINDOW", WINDOW),
            ("DUKASYNC_REDIS_URL", &redis.url()),
            ("DUKASYNC_REDIS_TIMEOUT_MS", "100"),
        ],
    )
    .await;
    let token = plain.token(OWNER, "owner-phone").await;
    random_writes(&plain, &mut StdRng::seed_from_u64(7), 20).await;
    let mut requests = Vec::new();
    for since in [0, 3, 8, 21, 40] {
        for limit in [4, 10, 100] {
            requests.push(pull(&since.to_string(), limit, None));
        }
        requests.push(pull(&since.to_string(), 10, Some("customers")));
    }
    for dataset in ["products", "price_lists", "accounts"] {
        requests.push(snapshot(dataset, &[]));
        requests.push(snapshot(dataset, &[("accept-encoding", "gzip")]));
    }
    (plain, cached, token, requests)
}

async fn all_same(plain: &TestApp, cached: &TestApp, token: &str, requests: &[Request]) {
    for request in requests {
        same_everywhere(&[("no cache", plain), ("redis", cached)], token, request).await;
    }
}

async fn redis_hits(app: &TestApp) -> f64 {
    app.metric_sum("dukasync_cache_lookups_total", &["layer=\"redis\"", "result=\"hit\""])
        .await
}

/// Repeats the requests until Redis serves hits again (it reconnected by itself), or fails after 15 s.
async fn until_redis_hits_again(plain: &TestApp, cached: &TestApp, token: &str, requests: &[Request]) {
    let before = redis_hits(cached).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        all_same(plain, cached, token, requests).await;
        if redis_hits(cached).await > before {
            return;
        }
        assert!(Instant::now() < deadline, "the server never used Redis again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_paused_redis_is_bypassed_and_used_again_when_it_resumes() {
    let redis = RedisProcess::start();
    let (plain, cached, token, requests) = plain_and_cached(&redis).await;
    until_redis_hits_again(&plain, &cached, &token, &requests).await;

    redis.signal("STOP");
    let fallbacks = cached.metric_sum("dukasync_cache_fallbacks_total", &[]).await;
    all_same(&plain, &cached, &token, &requests).await;
    assert!(cached.metric_sum("dukasync_cache_fallbacks_total", &[]).await > fallbacks);
    assert_eq!(cached.metric_sum("dukasync_cache_redis_up", &[]).await, 0.0);
    let report: Value = cached.get("/v1/admin/cache", Some(&token)).await.json().await.unwrap();
    assert_eq!(report["redis"], "down");

    redis.signal("CONT");
    until_redis_hits_again(&plain, &cached, &token, &requests).await;
    assert_eq!(cached.metric_sum("dukasync_cache_redis_up", &[]).await, 1.0);
}

#[tokio::test]
async fn a_killed_redis_is_bypassed_and_a_restarted_one_is_used_without_restarting_the_server() {
    let mut redis = RedisProcess::start();
    let port = redis.port;
    let (plain, cached, token, requests) = plain_and_cached(&redis).await;
    until_redis_hits_again(&plain, &cached, &token, &requests).await;

    redis.kill();
    all_same(&plain, &cached, &token, &requests).await;
    assert!(cached.metric_sum("dukasync_cache_redis_errors_total", &[]).await > 0.0);

    let _restarted = RedisProcess::start_on(port);
    until_redis_hits_again(&plain, &cached, &token, &requests).await;
}

#[tokio::test]
async fn a_flushed_redis_is_refilled() {
    let redis = RedisProcess::start();
    let (plain, cached, token, requests) = plain_and_cached(&redis).await;
    until_redis_hits_again(&plain, &cached, &token, &requests).await;
    let mut conn = redis_connection(&redis).await;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    let misses = cached
        .metric_sum("dukasync_cache_lookups_total", &["layer=\"redis\"", "result=\"miss\""])
        .await;
    all_same(&plain, &cached, &token, &requests).await;
    assert!(
        cached
            .metric_sum("dukasync_cache_lookups_total", &["layer=\"redis\"", "result=\"miss\""])
            .await
            > misses
    );
    until_redis_hits_again(&plain, &cached, &token, &requests).await;
}

#[tokio::test]
async fn corrupted_redis_values_are_misses_detected_by_their_hash() {
    let redis = RedisProcess::start();
    let (plain, cached, token, requests) = plain_and_cached(&redis).await;
    until_redis_hits_again(&plain, &cached, &token, &requests).await;
    let mut conn = redis_connection(&redis).await;
    let keys: Vec<String> = redis::cmd("KEYS").arg("dks:*").query_async(&mut conn).await.unwrap();
    let (blobs, others): (Vec<String>, Vec<String>) = keys.into_iter().partition(|k| k.contains(":b:"));
    assert!(
        !blobs.is_empty() && others.iter().any(|k| k.contains(":w:")),
        "{others:?}"
    );
    // First the snapshot bytes alone (their pointers intact, so they are read), then every other key.
    for keys in [blobs, others] {
        let corrupt = cached.metric_sum("dukasync_cache_corrupt_total", &[]).await;
        for (i, key) in keys.iter().enumerate() {
            let mut value: Vec<u8> = redis::cmd("GET").arg(key).query_async(&mut conn).await.unwrap();
            match i % 3 {
                0 => *value.last_mut().unwrap() ^= 1,
                1 => value.truncate(value.len() / 2),
                _ => value = b"not a cache value at all".to_vec(),
            }
            let _: () = redis::cmd("SET")
                .arg(key)
                .arg(value)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
        all_same(&plain, &cached, &token, &requests).await;
        let detected = cached.metric_sum("dukasync_cache_corrupt_total", &[]).await - corrupt;
        assert!(
            detected >= keys.len() as f64,
            "{detected} of {} corrupted values detected",
            keys.len()
        );
    }
    // Overwritten by the next writes: hits again.
    until_redis_hits_again(&plain, &cached, &token, &requests).await;
}

async fn redis_connection(redis: &RedisProcess) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_hit_rate_rises_on_repeated_pulls() {
    let app = TestApp::start_with(&[("DUKASYNC_CACHE_WINDOW", WINDOW)]).await;
    let token = app.token(OWNER, "owner-phone").await;
    random_writes(&app, &mut StdRng::seed_from_u64(9), 25).await;
    let requests: Vec<Request> = [0, 5, 9, 17, 30]
        .iter()
        .flat_map(|since| {
            [
                pull(&since.to_string(), 20, None),
                pull(&since.to_string(), 8, Some("products")),
            ]
        })
        .collect();
    let mut rates = Vec::new();
    let (mut hits, mut misses) = (0.0, 0.0);
    for _ in 0..4 {
        for request in &requests {
            assert_eq!(send(&app, &token, request).await.status, 200);
        }
        let h = app
            .metric_sum("dukasync_cache_lookups_total", &["window", "result=\"hit\""])
            .await;
        let m = app
            .metric_sum("dukasync_cache_lookups_total", &["window", "result=\"miss\""])
            .await;
        rates.push((h - hits) / ((h - hits) + (m - misses)));
        (hits, misses) = (h, m);
    }
    assert!(rates[0] < 1.0, "the first round misses: {rates:?}");
    assert!(rates[1] > rates[0] && rates[3] == 1.0, "then it only hits: {rates:?}");
}

#[tokio::test]
async fn cache_statistics_are_for_owners_and_managers() {
    let app = TestApp::start().await;
    for (email, device, status) in [
        (OWNER, "owner-phone", StatusCode::OK),
        (MANAGER, "manager-phone", StatusCode::OK),
        (WATER_CASHIER, "water-counter", StatusCode::FORBIDDEN),
    ] {
        let token = app.token(email, device).await;
        let resp = app.get("/v1/admin/cache", Some(&token)).await;
        assert_eq!(resp.status(), status, "{email}");
        if status == StatusCode::OK {
            let report: Value = resp.json().await.unwrap();
            assert_eq!(report["redis"], "not_configured");
            assert_eq!(report["format"], "v2");
            assert_eq!(
                report["caches"].as_array().unwrap().len(),
                5,
                "window, snapshot_pointer, snapshot_blob, representation, window_member"
            );
        }
    }
    assert_eq!(
        app.get("/v1/admin/cache", None).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn cache_warm_fills_redis_so_a_fresh_server_starts_with_hits() {
    let redis = RedisProcess::start();
    let app = TestApp::start_with(&[("DUKASYNC_CACHE_MEMORY_BYTES", "0")]).await;
    random_writes(&app, &mut StdRng::seed_from_u64(11), 20).await;
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_dukasync"))
        .args(["cache", "warm", "--scope", "water", "--windows", "100"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("DUKASYNC_DATABASE_URL", &app.database_url)
        .env("DUKASYNC_REDIS_URL", redis.url())
        .env("DUKASYNC_CACHE_WINDOW", WINDOW)
        .env("DUKASYNC_LOG", "warn")
        .status()
        .unwrap();
    assert!(status.success());
    let fresh = TestApp::on_database(
        &app.database_url,
        &[
            ("DUKASYNC_CACHE_MEMORY_BYTES", "0"),
            ("DUKASYNC_CACHE_WINDOW", WINDOW),
            ("DUKASYNC_REDIS_URL", &redis.url()),
        ],
    )
    .await;
    let token = fresh.token(OWNER, "owner-phone").await;
    let expected_snapshot = send(&app, &token, &snapshot("products", &[])).await;
    assert_eq!(
        send(&fresh, &token, &snapshot("products", &[])).await,
        expected_snapshot
    );
    let expected_page = send(&app, &token, &pull("0", 40, None)).await;
    assert_eq!(send(&fresh, &token, &pull("0", 40, None)).await, expected_page);
    for cache in ["snapshot_pointer", "snapshot_blob", "window"] {
        let labels = [cache, "layer=\"redis\""];
        assert!(
            fresh
                .metric_sum("dukasync_cache_lookups_total", &[&labels[..], &["hit"]].concat())
                .await
                > 0.0,
            "{cache}"
        );
        assert_eq!(
            fresh
                .metric_sum("dukasync_cache_lookups_total", &[&labels[..], &["miss"]].concat())
                .await,
            0.0,
            "{cache}: warm left nothing to miss"
        );
    }
}
