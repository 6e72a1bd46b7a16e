//! The metrics an operator alerts on, each seen moving through `/metrics` when its event happens and only then:
//! long-polls timed apart from requests, operation outcomes, feed resets by reason, the process and the build.

use crate::common::*;
use dukasync::wire::{ChangesPage, OpStatus};
use reqwest::StatusCode;
use serde_json::{json, Value};

const CHANGES_200: &str = r#"{route="/v1/scopes/{scope}/changes",method="GET",status="200"}"#;

async fn value(app: &TestApp, series: &str) -> f64 {
    app.metric(series).await.unwrap_or(0.0)
}

/// Every `dukasync_operations_total` series, as (labels, value).
async fn operations(app: &TestApp) -> Vec<(String, f64)> {
    let text = app.get("/metrics", None).await.text().await.unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("dukasync_operations_total"))
        .filter_map(|l| {
            let (labels, value) = l.rsplit_once(' ')?;
            Some((labels.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn ops_series(outcome: &str, kind: &str, command: &str) -> String {
    format!(r#"dukasync_operations_total{{outcome="{outcome}",kind="{kind}",command="{command}"}}"#)
}

#[tokio::test]
async fn a_long_poll_is_counted_as_a_request_but_timed_apart_by_how_it_ended() {
    let app = TestApp::start().await;
    let token = app.token(OWNER, "owner-phone").await;
    let page = app.changes(&token, "water", "since=0&limit=1000").await;
    assert_eq!(
        value(
            &app,
            &format!("dukasync_http_request_duration_seconds_count{CHANGES_200}")
        )
        .await,
        1.0
    );

    // Woken by a change.
    let url = app.url(&format!("/v1/scopes/water/changes?since={}&wait=30", page.cursor));
    let waiting = tokio::spawn(app.http.get(url).bearer_auth(&token).send());
    app.wait_for_metric("dukasync_longpoll_parked", 1.0).await;
    app.write(
        "water",
        vec![upsert("customers", "c-lp", json!({"id": "c-lp", "name": "Akinyi"}))],
    )
    .await;
    let woken: ChangesPage = waiting.await.unwrap().unwrap().json().await.unwrap();
    assert_eq!(woken.changes.len(), 1);

    // Ran out: a one-second wait with nothing new.
    let timed_out = app
        .get(
            &format!("/v1/scopes/water/changes?since={}&wait=1", woken.cursor),
            Some(&token),
        )
        .await;
    assert_eq!(timed_out.status(), StatusCode::OK);

    // Both long-polls are requests, but neither is among the request latencies.
    assert_eq!(
        value(&app, &format!("dukasync_http_requests_total{CHANGES_200}")).await,
        3.0
    );
    assert_eq!(
        value(
            &app,
            &format!("dukasync_http_request_duration_seconds_count{CHANGES_200}")
        )
        .await,
        1.0
    );
    assert_eq!(
        value(&app, r#"dukasync_longpoll_duration_seconds_count{outcome="change"}"#).await,
        1.0
    );
    assert_eq!(
        value(&app, r#"dukasync_longpoll_duration_seconds_count{outcome="timeout"}"#).await,
        1.0
    );
    // The one that ran out waited its second: it is in no bucket below 1 s.
    assert_eq!(
        value(
            &app,
            r#"dukasync_longpoll_duration_seconds_bucket{outcome="timeout",le="0.5"}"#
        )
        .await,
        0.0
    );
    assert!(value(&app, r#"dukasync_longpoll_duration_seconds_sum{outcome="timeout"}"#).await >= 1.0);

    // A pull that asked to wait but had changes at once never waited: it is an ordinary request.
    app.changes(&token, "water", "since=0&wait=30").await;
    assert_eq!(
        value(
            &app,
            &format!("dukasync_http_request_duration_seconds_count{CHANGES_200}")
        )
        .await,
        2.0
    );
    let mut longpolls = 0.0;
    for outcome in ["change", "timeout", "ended", "error"] {
        longpolls += value(
            &app,
            &format!(r#"dukasync_longpoll_duration_seconds_count{{outcome="{outcome}"}}"#),
        )
        .await;
    }
    assert_eq!(longpolls, 2.0);
}

#[tokio::test]
async fn a_long_poll_replaced_by_a_newer_one_of_its_device_ended_early() {
    let app = TestApp::start_with(&[("DUKASYNC_MAX_LONGPOLLS_PER_DEVICE", "1")]).await;
    let token = app.token(OWNER, "owner-phone").await;
    let page = app.changes(&token, "water", "since=0&limit=1000").await;
    let url = app.url(&format!("/v1/scopes/water/changes?since={}&wait=30", page.cursor));
    let first = tokio::spawn(app.http.get(&url).bearer_auth(&token).send());
    app.wait_for_metric("dukasync_longpoll_parked", 1.0).await;
    let second = tokio::spawn(app.http.get(&url).bearer_auth(&token).send());
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(
        value(&app, r#"dukasync_longpoll_duration_seconds_count{outcome="ended"}"#).await,
        1.0
    );
    assert_eq!(
        value(&app, r#"dukasync_longpoll_duration_seconds_count{outcome="change"}"#).await,
        0.0
    );
    second.abort();
}

fn sale(seq: i64, key: &str, price: &str) -> Value {
    command(
        seq,
        "record_sale",
        key,
        json!({"sold_at": "2026-11-25T09:30:00+03:00",
               "lines": [{"product_id": "r-lpg-13kg-refill", "quantity": "1", "unit_price": price}],
               "payments": [{"method": "cash", "amount": price}]}),
    )
}

#[tokio::test]
async fn operations_are_counted_by_outcome_kind_and_command_once_committed() {
    let app = TestApp::start().await;
    let shop = Device::new(&app, SHOP_CASHIER, "shop-till", "retail").await;
    assert!(operations(&app).await.is_empty(), "nothing replayed yet");
    let batch = [
        put_customer(1, "c-ops"),
        sale(2, "s-now", "2900.00"),
        // The old price: applied and flagged.
        sale(3, "s-old", "2800.00"),
        command(
            4,
            "adjust_stock",
            "a-1",
            json!({"product_id": "nope", "quantity": "1", "reason": "count"}),
        ),
    ];
    let first = shop.push(&batch).await;
    let statuses: Vec<OpStatus> = first.results.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [
            OpStatus::Applied,
            OpStatus::Applied,
            OpStatus::Conflict,
            OpStatus::Rejected
        ]
    );
    let mut expected = vec![
        (ops_series("applied", "command", "record_sale"), 1.0),
        (ops_series("applied", "put", ""), 1.0),
        (ops_series("conflict", "command", "record_sale"), 1.0),
        (ops_series("rejected", "command", "adjust_stock"), 1.0),
    ];
    let labelled = |v: Vec<(String, f64)>| -> Vec<(String, f64)> {
        v.into_iter()
            .map(|(labels, n)| (format!("dukasync_operations_total{labels}"), n))
            .collect()
    };
    assert_eq!(labelled(operations(&app).await), expected);

    // The same batch again: four duplicates, nothing applied anew.
    shop.push(&batch).await;
    expected.insert(1, (ops_series("duplicate", "command", "record_sale"), 2.0));
    expected.insert(2, (ops_series("duplicate", "command", "adjust_stock"), 1.0));
    expected.insert(3, (ops_series("duplicate", "put", ""), 1.0));
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(labelled(operations(&app).await), expected);

    // Pushes answered with an error committed nothing and count nothing: a duplicate followed by a different
    // payload under an applied sequence (422), and a sequence gap (409).
    let (status, _) = shop.push_error(&[batch[0].clone(), put_customer(2, "c-other")]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = shop.push_error(&[put_customer(9, "c-gap")]).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(labelled(operations(&app).await), expected);
}

#[tokio::test]
async fn each_reset_required_counts_its_reason_once() {
    let app = TestApp::start().await;
    let token = app.token(OWNER, "owner-phone").await;
    let reset = |reason: &str| format!(r#"dukasync_feed_resets_total{{reason="{reason}"}}"#);
    for reason in ["expired", "ahead_of_head", "unknown_history"] {
        assert_eq!(app.metric(&reset(reason)).await, Some(0.0), "present at 0: {reason}");
    }
    let page = app.changes(&token, "water", "since=0&limit=1000").await;
    // Ordinary pulls and checksums reset nothing.
    app.changes(&token, "water", &format!("since={}", page.cursor)).await;
    let ok = app.get("/v1/scopes/water/checksum", Some(&token)).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(value(&app, &reset("ahead_of_head")).await, 0.0);

    let ahead = app
        .get(
            &format!("/v1/scopes/water/changes?since={}", page.head + 5),
            Some(&token),
        )
        .await;
    assert_eq!(ahead.status(), StatusCode::GONE);
    let ahead = app
        .get(
            &format!("/v1/scopes/water/checksum?version={}", page.head + 5),
            Some(&token),
        )
        .await;
    assert_eq!(ahead.status(), StatusCode::GONE);
    let version = page.cursor.split('.').next().unwrap();
    let other = app
        .get(
            &format!("/v1/scopes/water/changes?since={version}.0123456789abcdef"),
            Some(&token),
        )
        .await;
    assert_eq!(other.status(), StatusCode::GONE);
    // A malformed cursor is a client error, not a reset.
    let bad = app.get("/v1/scopes/water/changes?since=abc", Some(&token)).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    assert_eq!(value(&app, &reset("ahead_of_head")).await, 2.0);
    assert_eq!(value(&app, &reset("unknown_history")).await, 1.0);
    assert_eq!(value(&app, &reset("expired")).await, 0.0);
}

#[tokio::test]
async fn the_process_and_the_build_are_reported() {
    let app = TestApp::start().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let text = app.get("/metrics", None).await.text().await.unwrap();
    let sample = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
    };
    // The server runs in this test process: its figures are this process's.
    assert!(sample("process_resident_memory_bytes") > 1e6);
    assert!(sample("process_virtual_memory_bytes") >= sample("process_resident_memory_bytes"));
    assert!(sample("process_cpu_seconds_total") > 0.0);
    assert!(sample("process_open_fds") >= 3.0);
    assert!(sample("process_max_fds") >= sample("process_open_fds"));
    let started = sample("process_start_time_seconds");
    assert!(started <= now + 1.0 && started > now - 3600.0, "{started} vs {now}");
    assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"), "{text}");

    let build = text
        .lines()
        .find(|l| l.starts_with("dukasync_build_info{"))
        .unwrap_or_else(|| panic!("no build info:\n{text}"));
    let version = format!(r#"version="{}""#, env!("CARGO_PKG_VERSION"));
    assert!(build.contains(&version) && build.ends_with("} 1"), "{build}");
    let commit = build
        .split(r#"commit=""#)
        .nth(1)
        .and_then(|c| c.split('"').next())
        .unwrap();
    // A hex commit when built from a git checkout, else what DUKASYNC_COMMIT said, else "unknown"; never empty.
    assert!(!commit.is_empty(), "{build}");
}
