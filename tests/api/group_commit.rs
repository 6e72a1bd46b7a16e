//! Group commit of replay pushes (`replay::group_commit`): pushes of one scope that queue behind a running
//! transaction share the next one, and each device's answer is what it would have been alone.
//!
//! Each test makes the queue it needs without timing: it holds the scope's version lock from a connection of its
//! own, sends a first push (whose transaction then waits on that lock, seen in `pg_stat_activity`), queues the
//! pushes of the group (seen in `dukasync_replay_waiting`), and releases the lock.

use crate::common::*;
use dukasync::wire::{OpStatus, OpsResponse};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use tokio::task::JoinHandle;
use uuid::Uuid;

fn sale(seq: i64, key: &str, quantity: u32) -> Value {
    let amount = format!("{}.00", 480 * quantity);
    command(
        seq,
        "record_sale",
        key,
        json!({"sold_at": "2026-11-25T09:30:00+03:00",
               "lines": [{"product_id": "w-500ml", "quantity": quantity.to_string(), "unit_price": "480.00"}],
               "payments": [{"method": "cash", "amount": amount}]}),
    )
}

/// The water scope's version lock, held until dropped or released.
struct ScopeLock(PgConnection);

impl ScopeLock {
    async fn take(app: &TestApp) -> ScopeLock {
        let mut conn = PgConnection::connect(&app.database_url).await.unwrap();
        sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
        sqlx::query("SELECT 1 FROM scopes WHERE id = 'water' FOR NO KEY UPDATE")
            .execute(&mut conn)
            .await
            .unwrap();
        ScopeLock(conn)
    }

    async fn release(mut self) {
        sqlx::query("ROLLBACK").execute(&mut self.0).await.unwrap();
    }
}

/// Sends a push in the background; the answer is (status, body).
fn send(device: &Device<'_>, ops: Vec<Value>) -> JoinHandle<(StatusCode, String)> {
    let req = device
        .app
        .http
        .post(device.app.url(&format!("/v1/scopes/{}/ops", device.scope)))
        .bearer_auth(&device.token)
        .json(&json!({"client_id": device.client_id, "ops": ops}));
    tokio::spawn(async move {
        let resp = req.send().await.unwrap();
        (resp.status(), resp.text().await.unwrap())
    })
}

/// The first push, parked on the held lock; then each of `group` queued behind it, in this order.
async fn park_then_queue(
    app: &TestApp,
    first: (&Device<'_>, Vec<Value>),
    group: Vec<(&Device<'_>, Vec<Value>)>,
) -> (JoinHandle<(StatusCode, String)>, Vec<JoinHandle<(StatusCode, String)>>) {
    let parked = send(first.0, first.1);
    wait_for_replays_on_lock(app, 1).await;
    let mut queued = Vec::new();
    for (device, ops) in group {
        queued.push(send(device, ops));
        app.wait_for_metric("dukasync_replay_waiting", queued.len() as f64)
            .await;
    }
    (parked, queued)
}

async fn answer(handle: JoinHandle<(StatusCode, String)>) -> (StatusCode, String) {
    handle.await.unwrap()
}

async fn applied(handle: JoinHandle<(StatusCode, String)>) -> OpsResponse {
    let (status, body) = answer(handle).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn metric(app: &TestApp, name: &str) -> f64 {
    app.metric(name)
        .await
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

async fn devices(app: &TestApp, n: usize) -> Vec<Device<'_>> {
    let mut devices = Vec::new();
    for i in 0..n {
        devices.push(Device::new(app, WATER_CASHIER, &format!("counter-{i}"), "water").await);
    }
    devices
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_pushes_share_one_transaction_with_dense_versions_in_arrival_order() {
    let app = TestApp::start().await;
    let devices = devices(&app, 6).await;
    let head: i64 = sqlx::query_scalar("SELECT head_version FROM scopes WHERE id = 'water'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let lock = ScopeLock::take(&app).await;
    let group = devices[1..]
        .iter()
        .enumerate()
        .map(|(i, d)| {
            (
                d,
                vec![
                    put_customer(1, &format!("g-{i}-a")),
                    put_customer(2, &format!("g-{i}-b")),
                ],
            )
        })
        .collect();
    let (parked, queued) = park_then_queue(&app, (&devices[0], vec![put_customer(1, "first")]), group).await;
    let transactions = metric(&app, "dukasync_replay_transactions_total").await;
    lock.release().await;

    let first = applied(parked).await;
    assert_eq!(first.results[0].versions, [head + 1]);
    let mut next = head + 2;
    for handle in queued {
        let answer = applied(handle).await;
        assert_eq!(answer.last_seq, 2);
        let versions: Vec<i64> = answer.results.iter().flat_map(|r| r.versions.clone()).collect();
        assert!(answer.results.iter().all(|r| r.status == OpStatus::Applied));
        // Applied in the order they queued, each after the one before, with no gap.
        assert_eq!(versions, [next, next + 1]);
        next += 2;
    }
    assert_eq!(
        metric(&app, "dukasync_replay_transactions_total").await,
        transactions + 1.0
    );
    assert_eq!(metric(&app, "dukasync_replay_pushes_total").await, 6.0);
    assert_eq!(metric(&app, "dukasync_replay_groups_split_total").await, 0.0);
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM records WHERE collection = 'customers' AND key LIKE 'g-%'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(rows, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sale_in_a_group_sees_the_stock_the_sales_before_it_took() {
    let app = TestApp::start().await;
    let devices = devices(&app, 5).await;
    let lock = ScopeLock::take(&app).await;
    // 100 cartons on hand: the first push takes 10, then four sales of 25 queue; the last one oversells.
    let group = devices[1..]
        .iter()
        .enumerate()
        .map(|(i, d)| (d, vec![sale(1, &format!("s-{i}"), 25)]))
        .collect();
    let (parked, queued) = park_then_queue(&app, (&devices[0], vec![sale(1, "s-first", 10)]), group).await;
    lock.release().await;

    assert_eq!(applied(parked).await.results[0].status, OpStatus::Applied);
    let mut statuses = Vec::new();
    for handle in queued {
        statuses.push(applied(handle).await.results[0].status);
    }
    assert_eq!(
        statuses,
        [
            OpStatus::Applied,
            OpStatus::Applied,
            OpStatus::Applied,
            OpStatus::Conflict
        ]
    );
    let oversold: Vec<String> =
        sqlx::query_scalar("SELECT key FROM conflicts WHERE kind = 'oversold_stock' AND scope_id = 'water'")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(oversold, ["s-3"]);
    let on_hand: rust_decimal::Decimal =
        sqlx::query_scalar("SELECT quantity FROM stock_on_hand WHERE scope_id = 'water' AND product_id = 'w-500ml'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(on_hand, rust_decimal::Decimal::from(-10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_that_fails_in_a_group_fails_alone() {
    let app = TestApp::start().await;
    let devices = devices(&app, 5).await;
    let lock = ScopeLock::take(&app).await;
    let taken_id = Uuid::new_v4();
    let mut reused = put_customer(1, "reused");
    reused["id"] = json!(taken_id);
    let mut reusing = put_customer(1, "reusing");
    reusing["id"] = json!(taken_id);
    let group = vec![
        (&devices[1], vec![put_customer(1, "good-1")]),
        (&devices[2], vec![put_customer(5, "gap")]),
        (&devices[3], vec![reused]),
        (&devices[4], vec![reusing]),
    ];
    let (parked, queued) = park_then_queue(&app, (&devices[0], vec![put_customer(1, "first")]), group).await;
    lock.release().await;

    applied(parked).await;
    let mut queued = queued.into_iter();
    let good = applied(queued.next().unwrap()).await;
    assert_eq!(good.results[0].status, OpStatus::Applied);
    let (status, body) = answer(queued.next().unwrap()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.contains("sequence_gap"), "{body}");
    let first_user = applied(queued.next().unwrap()).await;
    assert_eq!(first_user.results[0].status, OpStatus::Applied);
    let (status, body) = answer(queued.next().unwrap()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("op_id_reused"), "{body}");

    assert_eq!(metric(&app, "dukasync_replay_groups_split_total").await, 1.0);
    // Operations are counted from the answers of committed transactions: the failed group's counts nothing,
    // its pushes replayed one by one count once each, and the two refused pushes nothing.
    let applied_puts = r#"dukasync_operations_total{outcome="applied",kind="put",command=""}"#;
    assert_eq!(metric(&app, applied_puts).await, 3.0);
    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT key FROM records WHERE collection = 'customers' AND scope_id = 'water' ORDER BY version",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    let written: Vec<&str> = keys
        .iter()
        .map(String::as_str)
        .filter(|k| ["first", "good-1", "gap", "reused", "reusing"].contains(k))
        .collect();
    assert_eq!(written, ["first", "good-1", "reused"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_clients_second_push_waits_for_the_next_transaction() {
    let app = TestApp::start().await;
    let devices = devices(&app, 2).await;
    let lock = ScopeLock::take(&app).await;
    let batch = vec![put_customer(1, "twice-1")];
    let group = vec![
        (&devices[1], batch.clone()),
        (&devices[1], batch.clone()),
        (&devices[1], vec![put_customer(2, "then-2")]),
    ];
    let (parked, queued) = park_then_queue(&app, (&devices[0], vec![put_customer(1, "first")]), group).await;
    lock.release().await;

    applied(parked).await;
    let mut queued = queued.into_iter();
    assert_eq!(
        applied(queued.next().unwrap()).await.results[0].status,
        OpStatus::Applied
    );
    // The same batch again (a retry that overtook its answer): a duplicate, not a second sale or an error.
    let again = applied(queued.next().unwrap()).await;
    assert_eq!(again.results[0].status, OpStatus::Duplicate);
    assert_eq!(again.results[0].original, Some(OpStatus::Applied));
    assert_eq!(
        applied(queued.next().unwrap()).await.results[0].status,
        OpStatus::Applied
    );
    assert_eq!(metric(&app, "dukasync_replay_groups_split_total").await, 0.0);
    // One transaction for the parked push, then one per push of the same client.
    assert_eq!(metric(&app, "dukasync_replay_transactions_total").await, 4.0);
}
