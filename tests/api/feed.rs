//! The change feed through the HTTP API: pages, tombstones, resets, long-poll, isolation, checksums.

use crate::common::*;
use dukasync::wire::{ChangeOp, ChangesPage, ChecksumReport, ErrorBody};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

async fn pull(app: &TestApp, token: &str, scope: &str, query: &str) -> ChangesPage {
    let resp = app
        .get(&format!("/v1/scopes/{scope}/changes?{query}"), Some(token))
        .await;
    assert_eq!(resp.status(), StatusCode::OK, "{query}");
    resp.json().await.unwrap()
}

async fn pull_error(app: &TestApp, token: &str, scope: &str, query: &str) -> (StatusCode, ErrorBody) {
    let resp = app
        .get(&format!("/v1/scopes/{scope}/changes?{query}"), Some(token))
        .await;
    (resp.status(), resp.json().await.unwrap())
}

/// Pages from `cursor` to the end; returns every change and the final page.
async fn pull_all(
    app: &TestApp,
    token: &str,
    scope: &str,
    cursor: &str,
    limit: u32,
) -> (Vec<dukasync::wire::Change>, ChangesPage) {
    let mut cursor = cursor.to_string();
    let mut all = Vec::new();
    loop {
        let page = pull(app, token, scope, &format!("since={cursor}&limit={limit}")).await;
        all.extend(page.changes.iter().cloned());
        cursor = page.cursor.clone();
        if !page.has_more {
            return (all, page);
        }
    }
}

fn customer(i: usize) -> dukasync::store::changes::RowWrite {
    upsert(
        "customers",
        &format!("c-{i}"),
        json!({"id": format!("c-{i}"), "name": format!("Customer {i}"), "balance": "0.00"}),
    )
}

#[tokio::test]
async fn pages_cover_every_change_once_in_order_at_every_boundary() {
    let app = TestApp::start().await;
    let token = app.token(OWNER, "owner-phone").await;
    let head = pull(&app, &token, "water", "since=0&limit=1").await.head;
    app.write("water", (0..10).map(customer).collect()).await;
    let head_after = head + 10;

    for limit in [1, 3, 5, 10, 11, 1000] {
        let first = pull(&app, &token, "water", &format!("since={head}&limit={limit}")).await;
        assert_eq!(first.head, head_after);
        assert_eq!(first.changes.len(), limit.min(10) as usize, "limit {limit}");
        // A page exactly as long as what is left says nothing more is waiting.
        assert_eq!(first.has_more, limit < 10, "limit {limit}");
        let (all, last) = pull_all(&app, &token, "water", &format!("{head}"), limit).await;
        let versions: Vec<i64> = all.iter().map(|c| c.version).collect();
        assert_eq!(versions, ((head + 1)..=head_after).collect::<Vec<_>>(), "limit {limit}");
        assert!(!last.has_more);
        // Caught up: the next page is empty, says so, and keeps the cursor at head.
        let empty = pull(&app, &token, "water", &format!("since={}", last.cursor)).await;
        assert!(empty.changes.is_empty() && !empty.has_more);
        assert_eq!(empty.cursor, last.cursor);
        assert!(empty.cursor.starts_with(&format!("{head_after}.")), "{}", empty.cursor);
    }
}

#[tokio::test]
async fn limits_are_clamped_not_refused() {
    let app = TestApp::start_with(&[("DUKASYNC_MAX_PAGE_SIZE", "4"), ("DUKASYNC_DEFAULT_PAGE_SIZE", "2")]).await;
    let token = app.token(OWNER, "owner-phone").await;
    assert_eq!(pull(&app, &token, "water", "since=0&limit=5000").await.changes.len(), 4);
    assert_eq!(pull(&app, &token, "water", "since=0").await.changes.len(), 2);
    assert_eq!(pull(&app, &token, "water", "since=0&limit=0").await.changes.len(), 1);
}

#[tokio::test]
async fn deletes_travel_as_tombstones() {
    let app = TestApp::start().await;
    let token = app.token(OWNER, "owner-phone").await;
    let start = pull(&app, &token, "laundry", "since=0&limit=1").await.head;
    app.write("laundry", vec![customer(1), customer(2)]).await;
    app.write("laundry", vec![delete("customers", "c-1")]).await;
    let page = pull(&app, &token, "laundry", &format!("since={start}")).await;
    let ops: Vec<(ChangeOp, &str, bool)> = page
        .changes
        .iter()
        .map(|c| (c.op, c.key.as_str(), c.data.is_some()))
        .collect();
    assert_eq!(
        ops,
        [
            (ChangeOp::Upsert, "c-1", true),
            (ChangeOp::Upsert, "c-2", true),
            (ChangeOp::Delete, "c-1", false)
        ]
    );
    let raw: Value = app
        .get(&format!("/v1/scopes/laundry/changes?since={}", start + 2), Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        raw["changes"][0].get("data").is_none(),
        "a tombstone carries no data: {raw}"
    );
}

#[tokio::test]
async fn cursors_that_cannot_be_honoured_answer_reset_required() {
    let app = TestApp::start().await;
    let token = app.token(OWNER, "owner-phone").await;
    let page = pull(&app, &token, "water", "since=0").await;

    // Ahead of the head: a restored backup.
    let (status, body) = pull_error(&app, &token, "water", &format!("since={}", page.head + 5)).await;
    assert_eq!(status, StatusCode::GONE);
    assert_eq!(body.error.code, "reset_required");
    assert_eq!(body.error.details.as_ref().unwrap()["reason"], "ahead_of_head");
    assert_eq!(body.error.details.as_ref().unwrap()["head"], page.head);

    // Same version, other history: a tag this database never issued.
    let version = page.cursor.split('.').next().unwrap();
    let (status, body) = pull_error(&app, &token, "water", &format!("since={version}.0123456789abcdef")).await;
    assert_eq!(
        (status, body.error.details.unwrap()["reason"].as_str()),
        (StatusCode::GONE, Some("unknown_history"))
    );

    // A cursor of another scope (the owner sees both): never its data, a reset.
    let laundry = pull(&app, &token, "laundry", "since=0&limit=3").await;
    let (status, _) = pull_error(&app, &token, "water", &format!("since={}", laundry.cursor)).await;
    assert_eq!(status, StatusCode::GONE);

    // Malformed cursors are client errors, not resets.
    let (status, body) = pull_error(&app, &token, "water", "since=abc").await;
    assert_eq!(
        (status, body.error.code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_cursor")
    );
    let (status, body) = pull_error(&app, &token, "water", "since=0&collections=customers,nope").await;
    assert_eq!(
        (status, body.error.code.as_str()),
        (StatusCode::BAD_REQUEST, "unknown_collection")
    );
}

#[tokio::test]
async fn compaction_expires_old_cursors_and_a_fresh_pull_still_converges() {
    let app = TestApp::start().await;
    let token = app.token(OWNER, "owner-phone").await;
    let base = pull(&app, &token, "retail", "since=0&limit=1").await.head;
    let old_cursor = pull(&app, &token, "retail", &format!("since={base}")).await.cursor;
    for round in 0..3 {
        app.write(
            "retail",
            vec![
                upsert(
                    "customers",
                    "c-x",
                    json!({"id": "c-x", "name": format!("round {round}")}),
                ),
                customer(round),
            ],
        )
        .await;
    }
    app.write("retail", vec![delete("customers", "c-0")]).await;
    let floor = base + 6;
    let mut tx = app.db.begin().await.unwrap();
    let scope = dukasync::domain::ScopeId::parse("retail").unwrap();
    let head = floor + 10;
    assert_eq!(
        dukasync::store::changes::compact(&mut tx, &scope, head + 100)
            .await
            .unwrap(),
        None,
        "beyond head"
    );
    let removed = dukasync::store::changes::compact(&mut tx, &scope, floor)
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    assert!(removed >= 2, "superseded versions of c-x were compacted ({removed})");

    let (status, body) = pull_error(&app, &token, "retail", &format!("since={old_cursor}")).await;
    assert_eq!(
        (status, body.error.details.unwrap()["reason"].as_str()),
        (StatusCode::GONE, Some("expired"))
    );
    // From zero, a device pages through the compacted log (small pages: cursors below the floor) and still
    // gets the whole current state, matching the server's checksum.
    let (all, last) = pull_all(&app, &token, "retail", "0", 7).await;
    let copy = fold(&all);
    let report: ChecksumReport = app
        .get("/v1/scopes/retail/checksum", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report.version, last.head);
    assert_eq!(client_checksum(&copy), report.checksum);
    assert_eq!(copy.len() as i64, report.count);
}

#[tokio::test]
async fn collection_filters_return_only_those_and_advance_to_head() {
    let app = TestApp::start().await;
    let token = app.token(OWNER, "owner-phone").await;
    let page = pull(&app, &token, "water", "since=0&collections=products,tax_rates").await;
    assert!(!page.changes.is_empty());
    assert!(page
        .changes
        .iter()
        .all(|c| c.collection == "products" || c.collection == "tax_rates"));
    assert!(!page.has_more);
    assert!(
        page.cursor.starts_with(&format!("{}.", page.head)),
        "scanned to head: {}",
        page.cursor
    );
}

#[tokio::test]
async fn messagepack_pages_equal_json_pages() {
    let app = TestApp::start().await;
    let token = app.token(OWNER, "owner-phone").await;
    let json_page = pull(&app, &token, "retail", "since=0&limit=20").await;
    let bytes = app
        .get_msgpack("/v1/scopes/retail/changes?since=0&limit=20", &token)
        .await;
    let msgpack_page: ChangesPage = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(json_page, msgpack_page);
    // Money is a decimal string in both.
    let product = json_page.changes.iter().find(|c| c.collection == "products").unwrap();
    assert!(product.data.as_ref().unwrap()["price"].is_string());
}

/// Polls until `n` pulls are waiting (observable through /metrics), then commits and times the wake-up.
async fn long_poll_wakes(waiting_on: &TestApp, writer: &TestApp) {
    let token = waiting_on.token(OWNER, "owner-phone").await;
    let head = pull(waiting_on, &token, "water", "since=0&limit=1").await.head;
    let req = waiting_on
        .http
        .get(waiting_on.url(&format!("/v1/scopes/water/changes?since={head}&wait=20")))
        .bearer_auth(&token);
    let poll = tokio::spawn(async move {
        let resp = req.send().await.unwrap();
        (Instant::now(), resp.json::<ChangesPage>().await.unwrap())
    });
    waiting_on.wait_for_metric("dukasync_longpoll_waiters", 1.0).await;
    let committed = Instant::now();
    writer.write("water", vec![customer(42)]).await;
    let (answered, page) = poll.await.unwrap();
    let latency = answered.duration_since(committed);
    println!("long-poll answered {latency:?} after the commit");
    assert_eq!(page.changes.len(), 1);
    assert_eq!(page.changes[0].key, "c-42");
    // The wait was 20 s; an answer within 2 s can only come from the notification.
    assert!(latency < Duration::from_secs(2), "woke after {latency:?}");
}

#[tokio::test]
async fn long_poll_wakes_on_a_commit() {
    let app = TestApp::start().await;
    long_poll_wakes(&app, &app).await;
}

#[tokio::test]
async fn long_poll_on_a_second_instance_wakes_on_the_first_instances_commit() {
    let first = TestApp::start().await;
    let second = TestApp::on_database(&first.database_url, &[]).await;
    long_poll_wakes(&second, &first).await;
}

#[tokio::test]
async fn long_poll_times_out_empty() {
    let app = TestApp::start_with(&[("DUKASYNC_MAX_WAIT_SECS", "1")]).await;
    let token = app.token(OWNER, "owner-phone").await;
    let head = pull(&app, &token, "water", "since=0&limit=1").await.head;
    // `wait=25` is clamped to the 1 s maximum.
    let page = pull(&app, &token, "water", &format!("since={head}&wait=25")).await;
    assert!(page.changes.is_empty() && !page.has_more);
    assert_eq!(page.head, head);
}

#[tokio::test]
async fn another_scopes_data_is_never_visible() {
    let app = TestApp::start().await;
    let cashier = app.token(SHOP_CASHIER, "shop-till").await;
    app.write("water", vec![customer(7)]).await;
    for path in [
        "/v1/scopes/water/changes?since=0",
        "/v1/scopes/water/checksum",
        "/v1/scopes/laundry/changes?since=0&wait=5",
    ] {
        let resp = app.get(path, Some(&cashier)).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let (all, _) = pull_all(&app, &cashier, "retail", "0", 1000).await;
    assert!(
        all.iter().all(|c| !c.key.starts_with("w-") && c.key != "c-7"),
        "only retail rows"
    );
}

/// The client's copy: collection -> key -> row.
type Copy = BTreeMap<(String, String), Value>;

fn fold(changes: &[dukasync::wire::Change]) -> Copy {
    let mut copy = Copy::new();
    for c in changes {
        match &c.data {
            Some(data) => copy.insert((c.collection.clone(), c.key.clone()), data.clone()),
            None => copy.remove(&(c.collection.clone(), c.key.clone())),
        };
    }
    copy
}

/// The checksum as a client computes it, written from the protocol text, not with the server's function.
fn client_checksum(copy: &Copy) -> u32 {
    copy.iter().fold(0u32, |sum, ((collection, key), data)| {
        let canonical = serde_json::to_string(data).unwrap(); // BTreeMap-backed: keys sorted by bytes
        let mut input = Vec::new();
        input.extend_from_slice(collection.as_bytes());
        input.push(0x1f);
        input.extend_from_slice(key.as_bytes());
        input.push(0x1f);
        input.extend_from_slice(canonical.as_bytes());
        let digest = blake3::hash(&input);
        sum.wrapping_add(u32::from_le_bytes(digest.as_bytes()[..4].try_into().unwrap()))
    })
}

#[tokio::test]
async fn a_copy_built_from_the_feed_matches_the_checksum_and_a_dropped_change_does_not() {
    let app = TestApp::start().await;
    let token = app.token(OWNER, "owner-phone").await;
    app.write("water", (0..5).map(customer).collect()).await;
    app.write(
        "water",
        vec![
            delete("customers", "c-3"),
            upsert("customers", "c-1", json!({"id": "c-1", "name": "Renamed"})),
        ],
    )
    .await;
    let (all, last) = pull_all(&app, &token, "water", "0", 7).await;

    let report: ChecksumReport = app
        .get(
            &format!("/v1/scopes/water/checksum?version={}", last.head),
            Some(&token),
        )
        .await
        .json()
        .await
        .unwrap();
    let copy = fold(&all);
    assert_eq!(client_checksum(&copy), report.checksum);
    assert_eq!(copy.len() as i64, report.count);

    // Dropping any one change that the final state depends on makes the copy differ.
    let mut detected = 0;
    for skip in 0..all.len() {
        let mut partial = all.clone();
        partial.remove(skip);
        let copy_without = fold(&partial);
        if copy_without == copy {
            continue; // superseded by a later change of the same row: the state is truly equal
        }
        assert_ne!(
            client_checksum(&copy_without),
            report.checksum,
            "missing change {} went unnoticed",
            all[skip].version
        );
        detected += 1;
    }
    assert!(
        detected >= all.len() - 2,
        "only {detected} of {} drops mattered",
        all.len()
    );

    // The checksum at an older version equals the fold of the changes up to it.
    let mid = all[all.len() / 2].version;
    let old: ChecksumReport = app
        .get(&format!("/v1/scopes/water/checksum?version={mid}"), Some(&token))
        .await
        .json()
        .await
        .unwrap();
    let upto: Vec<_> = all.iter().filter(|c| c.version <= mid).cloned().collect();
    assert_eq!(client_checksum(&fold(&upto)), old.checksum);

    let resp = app
        .get(
            &format!("/v1/scopes/water/checksum?version={}", last.head + 1),
            Some(&token),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::GONE);
}

#[tokio::test]
async fn initial_sync_of_a_large_scope_pages_through_everything() {
    let app = TestApp::start().await;
    let token = app.token(OWNER, "owner-phone").await;
    const ROWS: usize = 30_000;
    for batch in 0..(ROWS / 1000) {
        app.write("laundry", (batch * 1000..(batch + 1) * 1000).map(customer).collect())
            .await;
    }
    let started = Instant::now();
    let (all, last) = pull_all(&app, &token, "laundry", "0", 1000).await;
    println!("initial sync of {} changes took {:?}", all.len(), started.elapsed());
    assert_eq!(all.len() as i64, last.head);
    assert!(
        all.windows(2).all(|w| w[1].version == w[0].version + 1),
        "dense and in order"
    );
    let report: ChecksumReport = app
        .get("/v1/scopes/laundry/checksum", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(client_checksum(&fold(&all)), report.checksum);
}
