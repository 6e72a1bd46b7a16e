//! Pushes from many devices to one scope at once. Found by the load of deploy/memory-load.sh: the first batch
//! of a new client inserts its `replay_clients` row, whose foreign key takes a KEY SHARE lock on the scope row;
//! two such batches then both asked for the scope's version lock (`lock_scope`), each waiting for the other's
//! KEY SHARE lock: a deadlock, answered 503 after PostgreSQL's one-second deadlock timeout. With the version lock
//! taken as FOR NO KEY UPDATE (which, like the `UPDATE scopes SET head_version` of `append`, does not conflict
//! with KEY SHARE) the batches simply queue. Before that change this test failed: 503 `unavailable` answers.

use crate::common::*;
use dukasync::wire::{OpStatus, OpsResponse};
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn first_batches_of_many_new_clients_in_one_scope_all_apply() {
    let app = TestApp::start_with(&[("DUKASYNC_DB_MAX_CONNECTIONS", "16")]).await;
    let token = app.token(WATER_CASHIER, "water-counter").await;
    let before: i64 = sqlx::query_scalar("SELECT head_version FROM scopes WHERE id = 'water'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let (rounds, at_once) = (5, 12);
    for round in 0..rounds {
        let pushes = (0..at_once).map(|i| {
            let key = format!("c-{round}-{i}");
            let body = json!({"client_id": Uuid::new_v4(), "ops": [{"seq": 1, "id": Uuid::new_v4(), "type": "put",
                "collection": "customers", "key": key, "data": {"id": key, "name": "Mutua"}}]});
            let req = app
                .http
                .post(app.url("/v1/scopes/water/ops"))
                .bearer_auth(&token)
                .json(&body);
            async move { req.send().await.unwrap() }
        });
        for resp in futures_util::future::join_all(pushes).await {
            let status = resp.status();
            let text = resp.text().await.unwrap();
            assert_eq!(status, StatusCode::OK, "round {round}: {text}");
            let answer: OpsResponse = serde_json::from_str(&text).unwrap();
            assert_eq!(answer.results[0].status, OpStatus::Applied);
        }
    }
    let after: i64 = sqlx::query_scalar("SELECT head_version FROM scopes WHERE id = 'water'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(after - before, rounds * at_once);
}
