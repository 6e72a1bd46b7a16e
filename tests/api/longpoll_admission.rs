//! Issue 18, item 4: one token parking long-polls must not starve anyone. Long-polls have their own bounds
//! (per device and scope, per scope, in total) apart from `DUKASYNC_MAX_IN_FLIGHT`, and the operations
//! endpoints are never refused by admission.

use crate::common::*;
use dukasync::wire::ChangesPage;
use reqwest::StatusCode;
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

async fn head(app: &TestApp, token: &str) -> i64 {
    let resp = app.get("/v1/scopes/water/changes?since=0&limit=1", Some(token)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json::<ChangesPage>().await.unwrap().head
}

/// The tester's attack at a small scale: 64 requests in flight allowed, one token sends 200 long-polls.
#[tokio::test]
async fn one_token_parking_many_long_polls_starves_nobody() {
    const ATTACK: usize = 200;
    const PER_DEVICE: usize = 4;
    let app = TestApp::start_with(&[
        ("DUKASYNC_MAX_IN_FLIGHT", "64"),
        ("DUKASYNC_MAX_LONGPOLLS_PER_DEVICE", &PER_DEVICE.to_string()),
    ])
    .await;
    let attacker = app.token(OWNER, "owner-phone").await;
    let head = head(&app, &attacker).await;

    let answers: Arc<Mutex<Vec<(StatusCode, ChangesPage)>>> = Arc::default();
    let mut polls = Vec::new();
    for _ in 0..ATTACK {
        let req = app
            .http
            .get(app.url(&format!("/v1/scopes/water/changes?since={head}&wait=30")))
            .bearer_auth(&attacker);
        let answers = answers.clone();
        polls.push(tokio::spawn(async move {
            let resp = req.send().await.unwrap();
            let status = resp.status();
            let text = resp.text().await.unwrap();
            let page = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: {text}"));
            answers.lock().unwrap().push((status, page));
        }));
    }
    // Observable state: all but the device's bound have answered, and that many wait.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answered = answers.lock().unwrap().len();
        if answered == ATTACK - PER_DEVICE {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{answered} of {} long-polls beyond the device's bound answered",
            ATTACK - PER_DEVICE
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app.wait_for_metric("dukasync_longpoll_waiters", PER_DEVICE as f64)
        .await;
    assert_eq!(app.metric("dukasync_longpoll_parked").await, Some(PER_DEVICE as f64));
    for (status, page) in answers.lock().unwrap().iter() {
        assert_eq!(*status, StatusCode::OK, "a long-poll was refused instead of answered");
        assert!(page.changes.is_empty() && page.head == head);
    }

    // Another device is served normally: pulls, a long-poll of its own, a push; and the operations endpoints.
    let other = Device::new(&app, OWNER, "owner-laptop", "water").await;
    for _ in 0..20 {
        let resp = app
            .get("/v1/scopes/water/changes?since=0&limit=5", Some(&other.token))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(app.get(path, None).await.status(), StatusCode::OK, "{path}");
    }
    let own_poll = {
        let req = app
            .http
            .get(app.url(&format!("/v1/scopes/water/changes?since={head}&wait=30")))
            .bearer_auth(&other.token);
        tokio::spawn(async move { req.send().await.unwrap().json::<ChangesPage>().await.unwrap() })
    };
    app.wait_for_metric("dukasync_longpoll_waiters", (PER_DEVICE + 1) as f64)
        .await;
    let pushed = other.push(&[put_customer(1, "c-after-the-attack")]).await;
    assert_eq!(pushed.last_seq, 1);

    // The push wakes every parked long-poll, the attacker's included, with the change.
    assert_eq!(own_poll.await.unwrap().changes[0].key, "c-after-the-attack");
    for poll in polls {
        poll.await.unwrap();
    }
    let answers = std::mem::take(&mut *answers.lock().unwrap());
    assert_eq!(answers.len(), ATTACK);
    assert!(answers.iter().all(|(status, _)| *status == StatusCode::OK));
    let woken = answers.iter().filter(|(_, page)| !page.changes.is_empty()).count();
    assert_eq!(woken, PER_DEVICE, "the parked ones answered with the change");
    assert_eq!(app.metric("dukasync_longpoll_parked").await, Some(0.0));
    assert_eq!(
        app.metric("dukasync_longpoll_early_total{reason=\"replaced\"}").await,
        Some((ATTACK - PER_DEVICE) as f64)
    );
}

/// Past the scope's bound a long-poll answers at once (a correct page), instead of waiting or being refused.
#[tokio::test]
async fn past_the_scope_bound_a_long_poll_answers_at_once() {
    let app = TestApp::start_with(&[("DUKASYNC_MAX_LONGPOLLS_PER_SCOPE", "1")]).await;
    let first = app.token(OWNER, "owner-phone").await;
    let second = app.token(OWNER, "owner-laptop").await;
    let head = head(&app, &first).await;
    let parked = {
        let req = app
            .http
            .get(app.url(&format!("/v1/scopes/water/changes?since={head}&wait=30")))
            .bearer_auth(&first);
        tokio::spawn(async move { req.send().await.unwrap().json::<ChangesPage>().await.unwrap() })
    };
    app.wait_for_metric("dukasync_longpoll_parked", 1.0).await;
    let started = Instant::now();
    let resp = app
        .get(&format!("/v1/scopes/water/changes?since={head}&wait=30"), Some(&second))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let page: ChangesPage = resp.json().await.unwrap();
    assert!(page.changes.is_empty() && page.head == head);
    assert!(started.elapsed() < Duration::from_secs(10), "it waited");
    assert_eq!(
        app.metric("dukasync_longpoll_early_total{reason=\"full\"}").await,
        Some(1.0)
    );
    app.write(
        "water",
        vec![upsert(
            "customers",
            "c-9",
            serde_json::json!({"id": "c-9", "name": "Atieno"}),
        )],
    )
    .await;
    assert_eq!(parked.await.unwrap().changes[0].key, "c-9");
}
