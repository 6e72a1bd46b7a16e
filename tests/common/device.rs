//! A device replaying its outbox through `POST /v1/scopes/{scope}/ops`, and what "nothing written" means.

use super::TestApp;
use dukasync::wire::{ErrorBody, OpsResponse};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

/// An operation of type `command` with sequence `seq` and a fresh operation id.
pub fn command(seq: i64, name: &str, key: &str, args: Value) -> Value {
    json!({"seq": seq, "id": Uuid::new_v4(), "type": "command", "command": name, "key": key, "args": args})
}

/// A `put` of customer `key` with sequence `seq` and a fresh operation id.
pub fn put_customer(seq: i64, key: &str) -> Value {
    json!({"seq": seq, "id": Uuid::new_v4(), "type": "put", "collection": "customers", "key": key,
           "data": {"id": key, "name": "Wanjiru"}})
}

pub struct Device<'a> {
    pub app: &'a TestApp,
    pub token: String,
    pub client_id: Uuid,
    pub scope: &'static str,
}

impl<'a> Device<'a> {
    pub async fn new(app: &'a TestApp, email: &str, name: &str, scope: &'static str) -> Device<'a> {
        Device {
            app,
            token: app.token(email, name).await,
            client_id: Uuid::new_v4(),
            scope,
        }
    }

    pub async fn send_raw(&self, body: Value) -> reqwest::Response {
        self.app
            .http
            .post(self.app.url(&format!("/v1/scopes/{}/ops", self.scope)))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn push(&self, ops: &[Value]) -> OpsResponse {
        let resp = self.send_raw(json!({"client_id": self.client_id, "ops": ops})).await;
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    pub async fn push_error(&self, ops: &[Value]) -> (StatusCode, ErrorBody) {
        let resp = self.send_raw(json!({"client_id": self.client_id, "ops": ops})).await;
        (resp.status(), resp.json().await.unwrap())
    }
}

/// What "nothing was written" is checked against: the feed head, stored results, conflicts, client sequences,
/// journal entries and stock movements.
pub async fn footprint(app: &TestApp) -> [i64; 6] {
    let row: (i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        r#"SELECT (SELECT sum(head_version) FROM scopes)::bigint, (SELECT count(*) FROM replay_results),
                  (SELECT count(*) FROM conflicts), (SELECT coalesce(sum(last_seq), 0) FROM replay_clients)::bigint,
                  (SELECT count(*) FROM journal_entries), (SELECT count(*) FROM stock_movements)"#,
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    [row.0, row.1, row.2, row.3, row.4, row.5]
}
