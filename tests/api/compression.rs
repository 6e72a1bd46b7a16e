//! Compressed pages of the feed (protocol §7.2): every coding decodes to exactly the identity body, for pages
//! from cached windows, the open tail, filters and MessagePack; refusals and small pages are identity; a
//! closed window's range is compressed once per coding (counted by `/metrics`), also from Redis; a commit after
//! a cached compressed page is seen.

use crate::common::*;
use dukasync::wire::ChangesPage;
use serde_json::json;

/// Small windows, so the demo scope plus the rows written here make many closed ones.
const WINDOW: &str = "16";

struct Answer {
    status: u16,
    encoding: Option<String>,
    vary: String,
    body: Vec<u8>,
}

async fn fetch(app: &TestApp, token: &str, path: &str, accept_encoding: Option<&str>, msgpack: bool) -> Answer {
    let mut req = app.http.get(app.url(path)).bearer_auth(token);
    if let Some(value) = accept_encoding {
        req = req.header("accept-encoding", value);
    }
    if msgpack {
        req = req.header("accept", "application/msgpack");
    }
    let resp = req.send().await.unwrap();
    let header = |name: &str| resp.headers().get(name).map(|v| v.to_str().unwrap().to_string());
    let (status, encoding) = (resp.status().as_u16(), header("content-encoding"));
    let vary = resp
        .headers()
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let length = header("content-length");
    let body = resp.bytes().await.unwrap().to_vec();
    assert_eq!(length, Some(body.len().to_string()), "{path}: Content-Length");
    Answer {
        status,
        encoding,
        vary,
        body,
    }
}

/// Writes `n` products with some bulk to `water`, one transaction each `per` rows.
async fn write_products(app: &TestApp, n: usize, per: usize) {
    let rows: Vec<_> = (0..n)
        .map(|i| {
            upsert(
                "products",
                &format!("bulk-{i}"),
                json!({"id": format!("bulk-{i}"), "name": format!("Bulk product number {i} (carton of 24)"),
                       "price": format!("{}.00", 100 + i % 900), "unit": "carton", "reorder_level": "10",
                       "tax_rate": "standard", "active": true}),
            )
        })
        .collect();
    for chunk in rows.chunks(per) {
        app.write("water", chunk.to_vec()).await;
    }
}

fn window_compressions(coding: &str) -> String {
    format!("dukasync_feed_window_compressions_total{{coding=\"{coding}\"}}")
}

async fn compressions(app: &TestApp) -> f64 {
    let mut total = 0.0;
    for coding in ["br", "zstd", "gzip"] {
        total += app.metric(&window_compressions(coding)).await.unwrap();
    }
    total
}

#[tokio::test]
async fn every_coding_decodes_to_the_identity_bytes_for_cached_tail_filtered_and_msgpack_pages() {
    let app = TestApp::start_with(&[("DUKASYNC_CACHE_WINDOW", WINDOW)]).await;
    let token = app.token(OWNER, "compression").await;
    write_products(&app, 200, 50).await;
    let head = app.head_version("water").await;
    let pages = [
        "since=0&limit=64".to_string(),                        // window aligned: whole windows
        "since=16&limit=48".to_string(),                       // aligned, not from 0
        "since=5&limit=100".to_string(),                       // ragged at both ends
        format!("since={}&limit=1000", head - 40),             // closed windows and the open tail
        format!("since={}&limit=1000", head - 10),             // the tail only
        "since=0&limit=1000&collections=products".to_string(), // filtered: ranges with gaps
        "since=0&limit=1000&collections=products,customers".to_string(),
    ];
    for query in &pages {
        let path = format!("/v1/scopes/water/changes?{query}");
        for msgpack in [false, true] {
            let plain = fetch(&app, &token, &path, None, msgpack).await;
            assert_eq!((plain.status, plain.encoding.as_deref()), (200, None), "{query}");
            assert!(plain.body.len() >= 1024, "{query}: a page long enough to compress");
            // Twice: the second time ranges of closed windows come from the cache.
            for round in 0..2 {
                for coding in ["br", "zstd", "gzip"] {
                    let coded = fetch(&app, &token, &path, Some(coding), msgpack).await;
                    assert_eq!(coded.status, 200);
                    assert_eq!(coded.encoding.as_deref(), Some(coding), "{query} {coding}");
                    assert!(coded.vary.contains("Accept-Encoding"), "{query}: Vary {}", coded.vary);
                    assert!(coded.body.len() < plain.body.len() / 2, "{query} {coding}: compressed");
                    assert!(
                        decode(coding, &coded.body) == plain.body,
                        "{query} {coding} msgpack={msgpack} round {round}: the decoded body differs"
                    );
                }
            }
            assert!(plain.vary.contains("Accept-Encoding"), "an identity page varies too");
        }
    }
    assert!(
        compressions(&app).await > 0.0,
        "closed windows were compressed as members"
    );
}

#[tokio::test]
async fn refused_codings_small_pages_and_errors_are_identity() {
    let app = TestApp::start_with(&[("DUKASYNC_CACHE_WINDOW", WINDOW)]).await;
    let token = app.token(OWNER, "compression").await;
    write_products(&app, 60, 60).await;
    let path = "/v1/scopes/water/changes?since=0&limit=80";
    let plain = fetch(&app, &token, path, None, false).await;
    for (accept, expected) in [
        ("br;q=0, zstd;q=0, gzip;q=0", None),
        ("identity", None),
        ("*;q=0, identity", None),
        ("deflate, compress", None),
        ("gzip;q=0, br", Some("br")),
        ("br;q=0.5, gzip;q=0.8", Some("gzip")),
        ("*", Some("br")),
        ("br;q=0, *", Some("zstd")),
    ] {
        let answer = fetch(&app, &token, path, Some(accept), false).await;
        assert_eq!(answer.encoding.as_deref(), expected, "{accept}");
        let body = match expected {
            Some(coding) => decode(coding, &answer.body),
            None => answer.body,
        };
        assert!(body == plain.body, "{accept}");
    }
    // Small pages (below 1 KiB), empty long-poll answers included, are sent as they are.
    let head = app.head_version("water").await;
    for query in ["since=0&limit=1".to_string(), format!("since={head}&wait=0")] {
        let answer = fetch(
            &app,
            &token,
            &format!("/v1/scopes/water/changes?{query}"),
            Some("br, gzip"),
            false,
        )
        .await;
        assert_eq!((answer.status, answer.encoding.as_deref()), (200, None), "{query}");
        assert!(answer.body.len() < 1024);
        assert!(answer.vary.contains("Accept-Encoding"));
    }
    // Errors are answered exactly as before: never compressed.
    for (query, status) in [
        (format!("since={}", head + 5), 410),
        ("since=x".to_string(), 400),
        ("bogus=1".to_string(), 400),
    ] {
        let answer = fetch(
            &app,
            &token,
            &format!("/v1/scopes/water/changes?{query}"),
            Some("br, gzip, zstd"),
            false,
        )
        .await;
        assert_eq!((answer.status, answer.encoding.as_deref()), (status, None), "{query}");
        serde_json::from_slice::<serde_json::Value>(&answer.body).expect("a plain JSON error body");
    }
    let missing = fetch(&app, &token, "/v1/scopes/nope/changes", Some("br"), false).await;
    assert_eq!((missing.status, missing.encoding.as_deref()), (404, None));
}

#[tokio::test]
async fn a_cached_closed_window_is_compressed_once_per_coding_also_from_redis() {
    let redis = RedisProcess::start();
    let overrides = [("DUKASYNC_CACHE_WINDOW", WINDOW), ("DUKASYNC_REDIS_URL", &redis.url())];
    let first = TestApp::start_with(&overrides).await;
    let token = first.token(OWNER, "compression").await;
    write_products(&first, 200, 200).await;
    // Whole closed windows only (versions 33-160): the page's members are exactly those windows.
    let path = "/v1/scopes/water/changes?since=32&limit=128";
    let plain = fetch(&first, &token, path, None, false).await;
    assert_eq!(compressions(&first).await, 0.0);

    // Many requests at once on a cold cache: each window is compressed by one of them.
    let burst = (0..8).map(|_| fetch(&first, &token, path, Some("br"), false));
    for answer in futures_util::future::join_all(burst).await {
        assert!(decode("br", &answer.body) == plain.body);
    }
    let once = first.metric(&window_compressions("br")).await.unwrap();
    assert_eq!(
        once, 8.0,
        "one compression per window (8 windows of 16), not per request"
    );
    for _ in 0..3 {
        let answer = fetch(&first, &token, path, Some("br"), false).await;
        assert!(decode("br", &answer.body) == plain.body);
    }
    assert_eq!(
        first.metric(&window_compressions("br")).await,
        Some(once),
        "cached, not compressed again"
    );
    // Another coding is another member, compressed once too.
    fetch(&first, &token, path, Some("gzip"), false).await;
    fetch(&first, &token, path, Some("gzip"), false).await;
    assert_eq!(first.metric(&window_compressions("gzip")).await, Some(8.0));

    // Another instance on the same Redis finds the members there (keys that name the coding): it compresses
    // nothing, and its answers are the same bytes. Redis is written after the answers: wait for the 16 keys.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("dks:*:m1:*")
            .query_async(&mut conn)
            .await
            .unwrap();
        if keys.len() == 16 {
            assert_eq!(keys.iter().filter(|k| k.ends_with(":br")).count(), 8, "{keys:?}");
            assert_eq!(keys.iter().filter(|k| k.ends_with(":gzip")).count(), 8, "{keys:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "members in Redis: {keys:?}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let second = TestApp::on_database(&first.database_url, &overrides).await;
    for coding in ["br", "gzip"] {
        let a = fetch(&first, &token, path, Some(coding), false).await;
        let b = fetch(&second, &token, path, Some(coding), false).await;
        assert!(a.body == b.body, "{coding}: the same bytes from either instance");
    }
    assert_eq!(
        compressions(&second).await,
        0.0,
        "the second instance found every member in Redis"
    );
}

#[tokio::test]
async fn a_commit_after_a_cached_compressed_page_is_seen() {
    let app = TestApp::start_with(&[("DUKASYNC_CACHE_WINDOW", WINDOW)]).await;
    let token = app.token(OWNER, "compression").await;
    write_products(&app, 100, 100).await;
    let path = "/v1/scopes/water/changes?since=0&limit=1000";
    let page = |body: Vec<u8>| serde_json::from_slice::<ChangesPage>(&body).unwrap();
    let before = page(decode("br", &fetch(&app, &token, path, Some("br"), false).await.body));
    let before_again = page(decode("br", &fetch(&app, &token, path, Some("br"), false).await.body));
    assert_eq!(before.head, before_again.head);
    let versions = app
        .write(
            "water",
            vec![upsert(
                "products",
                "late",
                json!({"id": "late", "name": "Late product"}),
            )],
        )
        .await;
    for coding in ["br", "zstd", "gzip"] {
        let after = page(decode(
            coding,
            &fetch(&app, &token, path, Some(coding), false).await.body,
        ));
        assert_eq!(after.head, before.head + 1, "{coding}");
        let last = after.changes.last().unwrap();
        assert_eq!((last.version, last.key.as_str()), (versions[0], "late"), "{coding}");
        assert_eq!(after.changes.len(), before.changes.len() + 1, "{coding}");
    }
}

/// The benchmark's sale history (`benches/load/dataset.rs`): four rows per sale.
fn sale_rows(n: usize) -> Vec<dukasync::store::changes::RowWrite> {
    let product = format!("r-item-{:04}", n % 2000);
    let sale = format!("retail-hist-sale-{n}");
    let amount = format!("{}.00", 20 + (n * 37) % 2_000);
    vec![
        upsert(
            "sales",
            &sale,
            json!({"id": sale, "sold_at": "2026-11-25T09:30:00+03:00", "status": "completed", "total": amount,
                   "lines": [{"product_id": product, "quantity": "1", "unit_price": amount, "amount": amount}],
                   "payments": [{"method": "cash", "amount": amount}], "device": "till-1"}),
        ),
        upsert(
            "journal_entries",
            &format!("{sale}-je"),
            json!({"id": format!("{sale}-je"), "posted_at": "2026-11-25T09:30:00+03:00", "source": format!("sales/{sale}"),
                   "lines": [{"account": "1000", "debit": amount, "credit": "0.00"},
                             {"account": "4000", "debit": "0.00", "credit": amount}]}),
        ),
        upsert(
            "stock_movements",
            &format!("{sale}-mv"),
            json!({"id": format!("{sale}-mv"), "product_id": product, "quantity": "-1", "reason": "sale",
                   "source": format!("sales/{sale}")}),
        ),
        upsert(
            "stock_levels",
            &product,
            json!({"id": product, "product_id": product, "quantity": format!("{}", 1_000 - (n / 2000) as i64)}),
        ),
    ]
}

/// Bytes on the wire of a 1,000-change page of the benchmark's sale history in each coding (cold: members
/// compressed by this request; warm: from the cache), and the compress time of a 100- and a 1,000-change
/// page per coding and level. A measurement for the report, not a test; the dev profile builds dependencies
/// at opt-level 1, so times are pessimistic:
/// `cargo test --features failpoints --test api compression::measure -- --ignored --nocapture`.
#[tokio::test]
#[ignore]
async fn measure() {
    use dukasync::domain::Coding;
    use std::time::Instant;
    let app = TestApp::start().await; // the default window: 256
    let token = app.token(OWNER, "compression").await;
    let rows: Vec<_> = (0..600).flat_map(sale_rows).collect();
    for chunk in rows.chunks(500) {
        app.write("retail", chunk.to_vec()).await;
    }
    let head = app.head_version("retail").await;
    let since = head - 1500; // a ragged page, as a device paging by 1,000 from 0 sees
    for (label, query) in [
        ("aligned", format!("since={}&limit=1024", since / 256 * 256)),
        ("ragged", format!("since={since}&limit=1000")),
    ] {
        let path = format!("/v1/scopes/retail/changes?{query}");
        let plain = fetch(&app, &token, &path, None, false).await;
        let msgpack = fetch(&app, &token, &path, None, true).await;
        println!(
            "{label} page ({query}): identity {} bytes (MessagePack {})",
            plain.body.len(),
            msgpack.body.len()
        );
        for coding in ["br", "zstd", "gzip"] {
            let start = Instant::now();
            let cold = fetch(&app, &token, &path, Some(coding), false).await;
            let cold_time = start.elapsed();
            let warm = fetch(&app, &token, &path, Some(coding), false).await;
            let (mut warm_time, mut plain_time) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
            for _ in 0..20 {
                let start = Instant::now();
                fetch(&app, &token, &path, Some(coding), false).await;
                warm_time += start.elapsed() / 20;
                let start = Instant::now();
                fetch(&app, &token, &path, None, false).await;
                plain_time += start.elapsed() / 20;
            }
            let mp = fetch(&app, &token, &path, Some(coding), true).await;
            assert!(decode(coding, &warm.body) == plain.body);
            println!(
                "  {coding}: {} bytes ({:.1}%), cold {cold_time:?}, warm {warm_time:?} (identity {plain_time:?}; means of 20); MessagePack {} bytes",
                warm.body.len(),
                100.0 * warm.body.len() as f64 / plain.body.len() as f64,
                mp.body.len()
            );
            assert_eq!(cold.body.len(), warm.body.len());
        }
        // One-shot compression of the whole page, for comparison with the spliced members.
        for (coding, token) in [(Coding::Br, "br"), (Coding::Zstd, "zstd"), (Coding::Gzip, "gzip")] {
            let whole = dukasync::feed::coded::compress_whole(&plain.body, coding)
                .unwrap()
                .concat();
            println!("  {token} whole page at the per-request level: {} bytes", whole.len());
        }
    }
    // Compress time per coding and level, 100 and 1,000 changes of the same history.
    for n in [100, 1000] {
        let path = format!("/v1/scopes/retail/changes?since={}&limit={n}", head - 1200);
        let plain = fetch(&app, &token, &path, None, false).await.body;
        println!("{n} changes: {} bytes", plain.len());
        let mut runs: Vec<(&str, u32)> = Vec::new();
        runs.extend([4, 5, 6, 9].map(|l| ("br", l)));
        runs.extend([1, 3, 6, 9].map(|l| ("zstd", l)));
        runs.extend([1, 4, 5, 6, 9].map(|l| ("gzip", l)));
        for (coding, level) in runs {
            let rounds = 10;
            let start = Instant::now();
            let mut size = 0;
            for _ in 0..rounds {
                size = match coding {
                    "br" => {
                        let params = brotli::enc::BrotliEncoderParams {
                            quality: level as i32,
                            lgwin: 18,
                            ..Default::default()
                        };
                        let mut out = Vec::new();
                        brotli::BrotliCompress(&mut &plain[..], &mut out, &params).unwrap();
                        out.len()
                    }
                    "zstd" => zstd::bulk::compress(&plain, level as i32).unwrap().len(),
                    _ => {
                        use std::io::Write;
                        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
                        e.write_all(&plain).unwrap();
                        e.finish().unwrap().len()
                    }
                };
            }
            println!("  {coding} {level}: {size} bytes, {:?}", start.elapsed() / rounds);
        }
    }
}
