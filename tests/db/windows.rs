//! Cached feed windows against the plain read: for every cursor, limit and filter, before and after
//! compaction, from memory, from Redis, and with windows cached from another history, the windowed read
//! returns exactly what `store::changes::read` returns.

use crate::common::*;
use dukasync::{
    cache::{stats::CacheKind, Cache, Redis},
    config::Secret,
    domain::ScopeId,
    feed::{
        page::Slice,
        windows::{self, WindowCache},
    },
    store,
};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::json;
use sqlx::PgPool;
use std::sync::Arc;

const WINDOW: u32 = 8;

/// Row data as its exact JSON text: the windowed read must pass the same bytes through.
type Row = (i64, String, String, Option<String>, i64);

fn rows(slice: &Slice) -> (i64, i64, Option<i64>, Option<i64>, Vec<Row>) {
    (
        slice.head,
        slice.floor,
        slice.since_tag,
        slice.head_tag,
        slice
            .changes
            .iter()
            .map(|c| {
                (
                    c.version,
                    c.collection.to_string(),
                    c.key.to_string(),
                    c.data.map(str::to_string),
                    c.tag,
                )
            })
            .collect(),
    )
}

async fn fresh_pool() -> PgPool {
    let url = fresh_database().await;
    let db = PgPool::connect(&url).await.unwrap();
    dukasync::demo::load(&db).await.unwrap();
    db
}

/// Writes `n` changes in `water` in transactions of random size: upserts and deletes over a few collections.
async fn random_writes(db: &PgPool, rng: &mut StdRng, n: usize) {
    let mut left = n;
    while left > 0 {
        let batch = rng.gen_range(1..=left.min(5));
        let writes = (0..batch)
            .map(|_| {
                let collection = ["customers", "products", "laundry_orders"][rng.gen_range(0..3)];
                let key = format!("{collection}-{}", rng.gen_range(0..12));
                if rng.gen_ratio(1, 5) {
                    delete(collection, &key)
                } else {
                    upsert(
                        collection,
                        &key,
                        json!({"id": key, "n": rng.gen_range(0..1000), "note": "x"}),
                    )
                }
            })
            .collect();
        write_rows(db, "water", writes).await;
        left -= batch;
    }
}

/// Compares the windowed read with the plain read for many cursors, limits and filters.
async fn assert_equivalent(cache: &WindowCache, db: &PgPool, label: &str) {
    let scope = ScopeId::parse("water").unwrap();
    let (head, _) = store::changes::bounds(db, &scope).await.unwrap().unwrap();
    let w = i64::from(WINDOW);
    let mut sinces: Vec<i64> = vec![0, 1, head, head.saturating_sub(1)];
    for k in 0..=head / w {
        sinces.extend([k * w, k * w + 1, k * w + w - 1]);
    }
    sinces.retain(|s| (0..=head).contains(s));
    let filters: [Option<Vec<String>>; 4] = [
        None,
        Some(vec!["customers".into()]),
        Some(vec!["products".into(), "laundry_orders".into()]),
        Some(vec!["tax_rates".into()]),
    ];
    for since in sinces {
        for limit in [1i64, 2, 8, 9, 17, 200] {
            for filter in &filters {
                // Twice: the first read may fill the cache, the second is served from it.
                for round in 0..2 {
                    let label = format!("{label}, round {round}");
                    assert_same(cache, db, since, limit, filter.as_deref(), &label).await;
                }
            }
        }
    }
}

async fn assert_same(cache: &WindowCache, db: &PgPool, since: i64, limit: i64, filter: Option<&[String]>, label: &str) {
    let scope = ScopeId::parse("water").unwrap();
    let plain: Slice = store::changes::read(db, &scope, since, limit, filter)
        .await
        .unwrap()
        .unwrap()
        .into();
    let windowed = windows::read(cache, db, &scope, since, limit, filter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        rows(&windowed),
        rows(&plain),
        "{label}: since {since}, limit {limit}, filter {filter:?}"
    );
}

async fn compact(db: &PgPool, below: i64) {
    let scope = ScopeId::parse("water").unwrap();
    let mut tx = db.begin().await.unwrap();
    store::changes::compact(&mut tx, &scope, below).await.unwrap().unwrap();
    tx.commit().await.unwrap();
}

fn window_hits(cache: &WindowCache) -> u64 {
    let f = cache
        .cache
        .stats
        .snapshot()
        .into_iter()
        .find(|f| f.cache == CacheKind::Window)
        .unwrap();
    f.memory_hits + f.redis_hits
}

#[tokio::test]
async fn windowed_reads_equal_plain_reads_before_and_after_compaction() {
    let db = fresh_pool().await;
    let cache = WindowCache::new(Arc::new(Cache::new(32 * 1024 * 1024, None)), WINDOW);
    let mut rng = StdRng::seed_from_u64(5);
    random_writes(&db, &mut rng, 120).await;
    assert_equivalent(&cache, &db, "in memory").await;
    assert!(window_hits(&cache) > 100, "the cache was used: {}", window_hits(&cache));

    // Compaction (by another process: this cache's hint still has the old floor) raises the floor into the
    // middle of a window: cached windows below it must not be served, PostgreSQL's floor decides.
    compact(&db, 77).await;
    assert_same(&cache, &db, 0, 200, None, "first read after compaction").await;
    assert_equivalent(&cache, &db, "after compaction").await;

    random_writes(&db, &mut rng, 40).await;
    assert_equivalent(&cache, &db, "after more writes").await;
}

#[tokio::test]
async fn a_cached_window_below_a_new_floor_is_never_served_even_with_a_stale_hint() {
    // One window whose first change is later superseded and compacted away while its last change stays: the
    // cached copy still carries the right end tag, so only the floor can tell it is no longer the log.
    let db = fresh_pool().await;
    let cache = WindowCache::new(Arc::new(Cache::new(32 * 1024 * 1024, None)), WINDOW);
    let scope = ScopeId::parse("water").unwrap();
    let w = i64::from(WINDOW);
    let (head, _) = store::changes::bounds(&db, &scope).await.unwrap().unwrap();
    let pad = (w - head % w) % w;
    let customer = |key: &str| upsert("customers", key, json!({"id": key, "name": key}));
    write_rows(&db, "water", (0..pad).map(|i| customer(&format!("pad-{i}"))).collect()).await;
    let start = head + pad + 1;
    let mut window = vec![customer("k")];
    window.extend((1..w).map(|i| customer(&format!("d-{i}"))));
    write_rows(&db, "water", window).await;
    write_rows(
        &db,
        "water",
        (0..w).map(|i| customer(if i == 0 { "k" } else { "e" })).collect(),
    )
    .await;
    assert_same(&cache, &db, start - 1, w, None, "warming the window").await;
    let f = cache
        .cache
        .stats
        .snapshot()
        .into_iter()
        .find(|f| f.cache == CacheKind::Window)
        .unwrap();
    assert!(f.memory_entries > 0, "the window is cached: {f:?}");

    compact(&db, start + w + 1).await;
    assert_same(&cache, &db, start - 1, w, None, "the compacted window").await;
    let page = store::changes::read(&db, &scope, start - 1, w, None)
        .await
        .unwrap()
        .unwrap();
    assert!(
        page.changes.iter().all(|c| c.key != "k" || c.version > start),
        "k's first change is gone"
    );
}

#[tokio::test]
async fn windows_cached_from_another_history_are_never_used() {
    // Two databases with the same scope and versions but other changes (as after a restore): one cache
    // (same namespace, so same keys) filled from the first must not serve the second.
    let first = fresh_pool().await;
    let second = fresh_pool().await;
    let cache = WindowCache::new(Arc::new(Cache::new(32 * 1024 * 1024, None)), WINDOW);
    random_writes(&first, &mut StdRng::seed_from_u64(1), 80).await;
    random_writes(&second, &mut StdRng::seed_from_u64(2), 80).await;
    assert_equivalent(&cache, &first, "first history").await;
    let hits_before = window_hits(&cache);
    assert_equivalent(&cache, &second, "second history, same keys").await;
    assert!(
        window_hits(&cache) > hits_before,
        "the second history refilled and then used the cache"
    );
}

#[tokio::test]
async fn windows_from_redis_equal_plain_reads_and_garbage_is_a_miss() {
    let db = fresh_pool().await;
    let redis_server = RedisProcess::start();
    let redis = Arc::new(Redis::new(&Secret::new(redis_server.url())).unwrap());
    // No memory layer: every window comes from Redis.
    let cache = WindowCache::new(Arc::new(Cache::new(0, Some(redis))), WINDOW);
    random_writes(&db, &mut StdRng::seed_from_u64(3), 100).await;
    // Fill Redis and wait until the background writes landed (observable: the keys exist).
    assert_equivalent(&cache, &db, "filling redis").await;
    let mut conn = redis::Client::open(redis_server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = wait_for_keys(&mut conn, "dks:v2:*:w:*", 100 / WINDOW as usize).await;
    assert_equivalent(&cache, &db, "from redis").await;
    let hits = cache
        .cache
        .stats
        .snapshot()
        .into_iter()
        .find(|f| f.cache == CacheKind::Window)
        .unwrap();
    assert!(hits.redis_hits > 0 && hits.memory_hits == 0, "{hits:?}");

    // Corrupt every window: flip a byte in half of them, replace the others with garbage.
    for (i, key) in keys.iter().enumerate() {
        let mut value: Vec<u8> = redis::cmd("GET").arg(key).query_async(&mut conn).await.unwrap();
        if i % 2 == 0 {
            let last = value.len() - 2;
            value[last] ^= 0x20;
        } else {
            value = b"garbage".to_vec();
        }
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    assert_equivalent(&cache, &db, "corrupted redis").await;
    let after = cache
        .cache
        .stats
        .snapshot()
        .into_iter()
        .find(|f| f.cache == CacheKind::Window)
        .unwrap();
    assert!(after.corrupt >= keys.len() as u64, "{after:?}");
}

async fn wait_for_keys(conn: &mut redis::aio::MultiplexedConnection, pattern: &str, at_least: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query_async(conn).await.unwrap();
        if keys.len() >= at_least {
            return keys;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {} keys in Redis",
            keys.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
