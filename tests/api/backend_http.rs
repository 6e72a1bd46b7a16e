//! Backend writes over HTTP (`POST /v1/scopes/{scope}/rows`, protocol §14): the ERP's service user (role
//! `backend`) writes rows that reach a long-polling device; each write id answers once; `if_version` is exact even
//! when two backends race; devices get 403, other scopes 404, and a bad batch writes nothing. The operator makes
//! the backend user and its token with the CLI; no pairing code ever yields a token that speaks for it.

use crate::{
    common::*,
    pairing::{create_code, pair},
};
use dukasync::{
    domain::{Role, ScopeId},
    store::accounts,
    wire::{ChangeOp, ErrorBody, RowWriteStatus, RowsResponse},
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

const BACKEND: &str = "erp@duka.test";

/// A token of the ERP's service user, whose role in `retail` is `backend`.
async fn backend_token(app: &TestApp, device: &str) -> String {
    let user = accounts::ensure_user(&app.db, BACKEND, "ERP").await.unwrap();
    let retail = ScopeId::parse("retail").unwrap();
    accounts::set_role(&app.db, user, &retail, Role::Backend).await.unwrap();
    app.token(BACKEND, device).await
}

async fn post(app: &TestApp, token: &str, scope: &str, writes: Value) -> reqwest::Response {
    app.http
        .post(app.url(&format!("/v1/scopes/{scope}/rows")))
        .bearer_auth(token)
        .json(&json!({ "writes": writes }))
        .send()
        .await
        .unwrap()
}

async fn rows(app: &TestApp, token: &str, writes: Value) -> RowsResponse {
    let resp = post(app, token, "retail", writes).await;
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{text}");
    serde_json::from_str(&text).unwrap()
}

async fn refused(app: &TestApp, token: &str, scope: &str, writes: Value) -> (StatusCode, ErrorBody) {
    let resp = post(app, token, scope, writes).await;
    (resp.status(), resp.json().await.unwrap())
}

fn put(key: &str, name: &str, if_version: Option<i64>) -> Value {
    let mut w = json!({"id": Uuid::new_v4(), "type": "put", "collection": "customers", "key": key,
                       "data": {"id": key, "name": name}});
    if let Some(v) = if_version {
        w["if_version"] = json!(v);
    }
    w
}

/// What the feed holds for the scope after `since`.
async fn changes_after(app: &TestApp, token: &str, since: i64) -> Vec<dukasync::wire::Change> {
    app.changes(token, "retail", &format!("since={since}&limit=1000"))
        .await
        .changes
}

#[tokio::test]
async fn put_patch_and_delete_reach_a_long_polling_device() {
    let app = TestApp::start().await;
    let backend = backend_token(&app, "erp").await;
    let phone = app.token(SHOP_CASHIER, "till").await;
    let head = app.head_version("retail").await;

    // The device waits on the head before anything is written: the write must wake it.
    let url = app.url(&format!("/v1/scopes/retail/changes?since={head}&wait=20"));
    let poll = tokio::spawn({
        let (http, phone) = (app.http.clone(), phone.clone());
        async move {
            http.get(url)
                .bearer_auth(phone)
                .send()
                .await
                .unwrap()
                .json::<dukasync::wire::ChangesPage>()
                .await
                .unwrap()
        }
    });
    app.wait_for_metric("dukasync_longpoll_waiters", 1.0).await;

    let answer = rows(
        &app,
        &backend,
        json!([
            put("c-1", "Achieng", Some(0)),
            {"id": Uuid::new_v4(), "type": "patch", "collection": "customers", "key": "c-1",
             "fields": {"phone": "+254700000001"}},
            put("c-2", "Otieno", None),
            {"id": Uuid::new_v4(), "type": "delete", "collection": "customers", "key": "c-2"},
        ]),
    )
    .await;
    let statuses: Vec<_> = answer.results.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![RowWriteStatus::Applied; 4]);
    let versions: Vec<_> = answer.results.iter().map(|r| r.version).collect();
    assert_eq!(versions, vec![Some(head + 1), Some(head + 2), Some(head + 3), None]);

    let page = poll.await.unwrap();
    let seen: Vec<_> = page.changes.iter().map(|c| (c.key.as_str(), c.op, c.version)).collect();
    assert_eq!(
        seen,
        vec![
            ("c-1", ChangeOp::Upsert, head + 1),
            ("c-1", ChangeOp::Upsert, head + 2),
            ("c-2", ChangeOp::Upsert, head + 3),
            ("c-2", ChangeOp::Delete, head + 4),
        ]
    );
    assert_eq!(
        page.changes[1].data,
        Some(json!({"id": "c-1", "name": "Achieng", "phone": "+254700000001"}))
    );

    // Patch and delete of a row that is not there answer not_found and write nothing.
    let answer = rows(
        &app,
        &backend,
        json!([
            {"id": Uuid::new_v4(), "type": "patch", "collection": "customers", "key": "nobody", "fields": {"a": 1}},
            {"id": Uuid::new_v4(), "type": "delete", "collection": "customers", "key": "c-2"},
        ]),
    )
    .await;
    let got: Vec<_> = answer.results.iter().map(|r| (r.status, r.version)).collect();
    assert_eq!(got, vec![(RowWriteStatus::NotFound, None); 2]);
    assert_eq!(app.head_version("retail").await, head + 4);

    // A put equal to the row is applied without a change: a retried sync job does not grow the feed.
    let answer = rows(
        &app,
        &backend,
        json!([{"id": Uuid::new_v4(), "type": "put", "collection": "customers", "key": "c-1",
                "data": {"id": "c-1", "name": "Achieng", "phone": "+254700000001"}}]),
    )
    .await;
    assert_eq!(
        (answer.results[0].status, answer.results[0].version),
        (RowWriteStatus::Applied, Some(head + 2))
    );
    assert_eq!(app.head_version("retail").await, head + 4);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_resent_write_returns_its_stored_result_and_another_payload_is_422() {
    let app = TestApp::start().await;
    let backend = backend_token(&app, "erp").await;
    let phone = app.token(SHOP_CASHIER, "till").await;
    let write = put("c-9", "Wambui", Some(0));

    let first = rows(&app, &backend, json!([write.clone()])).await;
    assert_eq!(first.results[0].status, RowWriteStatus::Applied);
    assert!(!first.results[0].duplicate);
    let head = app.head_version("retail").await;

    // Resent (the answer was lost): the stored answer, although if_version 0 no longer holds; nothing written.
    let again = rows(&app, &backend, json!([write.clone()])).await;
    assert_eq!(again.results[0].status, RowWriteStatus::Applied);
    assert_eq!(again.results[0].version, first.results[0].version);
    assert!(again.results[0].duplicate);
    assert_eq!(app.head_version("retail").await, head);

    // Resent beside a fresh write: the old one answers from storage, the fresh one applies.
    let fresh = put("c-11", "Njeri", None);
    let mixed = rows(&app, &backend, json!([write.clone(), fresh.clone()])).await;
    let got: Vec<_> = mixed
        .results
        .iter()
        .map(|r| (r.status, r.version, r.duplicate))
        .collect();
    assert_eq!(
        got,
        vec![
            (RowWriteStatus::Applied, first.results[0].version, true),
            (RowWriteStatus::Applied, Some(head + 1), false),
        ]
    );
    let keys: Vec<_> = changes_after(&app, &phone, head)
        .await
        .into_iter()
        .map(|c| c.key)
        .collect();
    assert_eq!(keys, vec!["c-11"], "c-9 is written once");
    let head = head + 1;

    // The same id with another payload refuses the whole batch, the fresh write before it included.
    let mut other = write.clone();
    other["data"]["name"] = json!("Someone else");
    let (status, body) = refused(&app, &backend, "retail", json!([put("c-10", "Fresh", None), other])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body.error.code, "payload_mismatch");
    assert_eq!(body.error.details, Some(json!({"index": 1})));
    assert_eq!(app.head_version("retail").await, head);
    assert!(changes_after(&app, &phone, head).await.is_empty());

    // The stored answer of a write that did not apply is returned as well: a resend never applies it later.
    let stale = put("c-9", "late", Some(0));
    let answer = rows(&app, &backend, json!([stale.clone()])).await;
    assert_eq!(answer.results[0].status, RowWriteStatus::VersionMismatch);
    rows(
        &app,
        &backend,
        json!([{"id": Uuid::new_v4(), "type": "delete", "collection": "customers", "key": "c-9"}]),
    )
    .await;
    let again = rows(&app, &backend, json!([stale])).await;
    assert_eq!(
        (again.results[0].status, again.results[0].duplicate),
        (RowWriteStatus::VersionMismatch, true)
    );
    assert_eq!(app.head_version("retail").await, head + 1, "only the delete");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn if_version_must_match_the_rows_current_version() {
    let app = TestApp::start().await;
    let backend = backend_token(&app, "erp").await;
    let created = rows(&app, &backend, json!([put("c-5", "v1", Some(0))])).await;
    let v1 = created.results[0].version.unwrap();

    // 0 means "must not exist": the row exists now.
    let answer = rows(&app, &backend, json!([put("c-5", "again", Some(0))])).await;
    assert_eq!(answer.results[0].status, RowWriteStatus::VersionMismatch);
    assert_eq!(answer.results[0].version, Some(v1));

    // A stale version: mismatch with the current one, nothing applied; the matching one applies.
    let answer = rows(
        &app,
        &backend,
        json!([
            put("c-5", "stale", Some(v1 - 1)),
            put("c-5", "v2", Some(v1)),
            put("c-5", "v3", Some(v1))
        ]),
    )
    .await;
    let got: Vec<_> = answer.results.iter().map(|r| (r.status, r.version)).collect();
    assert_eq!(
        got,
        vec![
            (RowWriteStatus::VersionMismatch, Some(v1)),
            (RowWriteStatus::Applied, Some(v1 + 1)),
            // Checked against the batch's own earlier write.
            (RowWriteStatus::VersionMismatch, Some(v1 + 1)),
        ]
    );
    assert_eq!(app.head_version("retail").await, v1 + 1);

    // A deleted row counts as absent for if_version 0.
    let del = json!({"id": Uuid::new_v4(), "type": "delete", "collection": "customers", "key": "c-5",
                     "if_version": v1 + 1});
    rows(&app, &backend, json!([del])).await;
    let answer = rows(&app, &backend, json!([put("c-5", "reborn", Some(0))])).await;
    assert_eq!(answer.results[0].status, RowWriteStatus::Applied);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn devices_get_403_other_scopes_404_and_bad_batches_write_nothing() {
    let app = TestApp::start().await;
    let backend = backend_token(&app, "erp").await;
    let head = app.head_version("retail").await;

    for device in [OWNER, MANAGER, SHOP_CASHIER] {
        let token = app.token(device, "phone").await;
        let (status, body) = refused(&app, &token, "retail", json!([put("c-1", "x", None)])).await;
        assert_eq!(
            (status, body.error.code.as_str()),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{device}"
        );
    }
    // The backend role pushes no operations: it would pose as a phone there.
    let resp = app
        .http
        .post(app.url("/v1/scopes/retail/ops"))
        .bearer_auth(&backend)
        .json(&json!({"client_id": Uuid::new_v4(), "ops": [put_customer(1, "c-1")]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let body: ErrorBody = resp.json().await.unwrap();
    assert_eq!(body.error.code, "forbidden");

    let (status, body) = refused(&app, &backend, "water", json!([put("c-1", "x", None)])).await;
    assert_eq!(
        (status, body.error.code.as_str()),
        (StatusCode::NOT_FOUND, "scope_not_found")
    );

    let id = Uuid::new_v4();
    // 32 levels below a top-level field: one too many.
    let deep = (0..32).fold(json!(1), |inner, _| json!({ "x": inner }));
    let cases = [
        (
            json!({"id": id, "type": "put", "collection": "sales", "key": "s", "data": {"id": "s"}}),
            "server_only_collection",
        ),
        (
            json!({"id": id, "type": "put", "collection": "nope", "key": "s", "data": {"id": "s"}}),
            "unknown_collection",
        ),
        (
            json!({"id": id, "type": "put", "collection": "customers", "key": "a", "data": {"id": "b"}}),
            "key_mismatch",
        ),
        (
            json!({"id": id, "type": "put", "collection": "customers", "key": "", "data": {"id": ""}}),
            "invalid_key",
        ),
        (
            json!({"id": id, "type": "put", "collection": "customers", "key": "a", "data": {"id": "a", "p": 1.5}}),
            "float_not_allowed",
        ),
        (
            json!({"id": id, "type": "patch", "collection": "customers", "key": "a", "fields": {}}),
            "invalid_operation",
        ),
        (
            json!({"id": id, "type": "delete", "collection": "customers", "key": "a", "data": {"id": "a"}}),
            "invalid_operation",
        ),
        (
            json!({"id": id, "type": "delete", "collection": "customers", "key": "a", "if_version": -1}),
            "invalid_if_version",
        ),
        (
            json!({"id": id, "type": "put", "collection": "customers", "key": "a", "fields": {"n": 1}}),
            "invalid_operation",
        ),
        (
            json!({"id": id, "type": "patch", "collection": "customers", "key": "a", "fields": {"id": "b"}}),
            "key_mismatch",
        ),
        (
            json!({"id": id, "type": "put", "collection": "customers", "key": "a\0", "data": {"id": "a\0"}}),
            "nul_not_allowed",
        ),
        (
            json!({"id": id, "type": "patch", "collection": "customers", "key": "a", "fields": {"n\0": 1}}),
            "nul_not_allowed",
        ),
        (
            json!({"id": id, "type": "put", "collection": "customers", "key": "a", "data": {"id": "a", "d": deep}}),
            "too_deep",
        ),
        (
            json!({"id": id, "type": "put", "collection": "customers", "key": "k".repeat(129),
                   "data": {"id": "k".repeat(129)}}),
            "invalid_key",
        ),
    ];
    for (bad, code) in cases {
        let (status, body) = refused(&app, &backend, "retail", json!([put("ok", "fine", None), bad])).await;
        assert_eq!((status, body.error.code.as_str()), (StatusCode::BAD_REQUEST, code));
        assert_eq!(body.error.details, Some(json!({"index": 1})), "{code}");
    }
    let twice = put("k", "x", None);
    let (status, body) = refused(&app, &backend, "retail", json!([twice.clone(), twice])).await;
    assert_eq!(
        (status, body.error.code.as_str()),
        (StatusCode::BAD_REQUEST, "duplicate_write_id")
    );
    assert_eq!(body.error.details, Some(json!({"index": 1})));
    let (status, body) = refused(
        &app,
        &backend,
        "retail",
        json!([{"id": id, "type": "put", "collection": "customers",
        "key": "a", "data": {"id": "a"}, "extra": 1}]),
    )
    .await;
    assert_eq!(
        (status, body.error.code.as_str()),
        (StatusCode::BAD_REQUEST, "unknown_field")
    );
    assert_eq!(app.head_version("retail").await, head);
    app.stop().await.unwrap();
}

/// Two backends race `if_version` on one row, many times: exactly one of each pair applies. Both requests are
/// sent together, so they overlap in the server; the scope lock makes the second see the first's version.
#[tokio::test]
async fn two_backends_racing_if_version_exactly_one_wins() {
    let app = TestApp::start().await;
    let (a, b) = (backend_token(&app, "erp-a").await, backend_token(&app, "erp-b").await);
    let created = rows(&app, &a, json!([put("hot", "start", Some(0))])).await;
    let mut version = created.results[0].version.unwrap();
    for round in 0..30 {
        let (ra, rb) = tokio::join!(
            rows(&app, &a, json!([put("hot", &format!("a{round}"), Some(version))])),
            rows(&app, &b, json!([put("hot", &format!("b{round}"), Some(version))])),
        );
        let (ra, rb) = (&ra.results[0], &rb.results[0]);
        let winners = [ra, rb].iter().filter(|r| r.status == RowWriteStatus::Applied).count();
        assert_eq!(winners, 1, "round {round}: {ra:?} {rb:?}");
        let (won, lost) = if ra.status == RowWriteStatus::Applied {
            (ra, rb)
        } else {
            (rb, ra)
        };
        assert_eq!(lost.status, RowWriteStatus::VersionMismatch);
        // The loser is told the winner's version.
        assert_eq!(lost.version, won.version);
        version = won.version.unwrap();
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_batch_over_the_limit_is_413_and_writes_nothing() {
    let app = TestApp::start_with(&[("DUKASYNC_MAX_BATCH_OPS", "3")]).await;
    let backend = backend_token(&app, "erp").await;
    let head = app.head_version("retail").await;
    let writes: Vec<Value> = (0..4).map(|i| put(&format!("c-{i}"), "x", None)).collect();
    let (status, body) = refused(&app, &backend, "retail", json!(writes)).await;
    assert_eq!(
        (status, body.error.code.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "batch_too_large")
    );
    assert_eq!(body.error.details, Some(json!({"limit_ops": 3})));
    assert_eq!(app.head_version("retail").await, head);
    // At the limit it applies.
    let answer = rows(&app, &backend, json!(writes[..3])).await;
    assert_eq!(answer.results.len(), 3);
    assert_eq!(app.head_version("retail").await, head + 3);
    app.stop().await.unwrap();
}

/// The operator's way (protocol §14, docs/backend-http.md): `user-add --role backend`, then `token issue`.
#[tokio::test]
async fn the_cli_makes_the_backend_user_and_its_token() {
    let app = TestApp::start().await;
    let (ok, _, err) = cli(
        &app,
        &[
            "user-add", "--email", BACKEND, "--name", "ERP", "--scope", "retail", "--role", "backend",
        ],
    );
    assert!(ok, "{err}");
    let (ok, token, err) = cli(&app, &["token", "issue", "--email", BACKEND, "--device", "erp-server"]);
    assert!(ok, "{err}");
    let answer = rows(&app, token.trim(), json!([put("cli-1", "From the CLI", Some(0))])).await;
    assert_eq!(answer.results[0].status, RowWriteStatus::Applied);

    // One user is a person or the backend, never both: a token speaks for its user in every scope.
    let (ok, _, err) = cli(
        &app,
        &[
            "user-add", "--email", OWNER, "--name", "Owner", "--scope", "retail", "--role", "backend",
        ],
    );
    assert!(!ok && err.contains("service user"), "{err}");
    let (ok, _, err) = cli(
        &app,
        &[
            "user-add", "--email", BACKEND, "--name", "ERP", "--scope", "water", "--role", "cashier",
        ],
    );
    assert!(!ok && err.contains("service user"), "{err}");
    let roles: Vec<(String, String)> = sqlx::query_as(
        "SELECT m.scope_id, m.role FROM memberships m JOIN users u ON u.id = m.user_id
          WHERE u.email = $1 AND m.role = 'backend' OR u.email = $2 ORDER BY 1, 2",
    )
    .bind(OWNER)
    .bind(BACKEND)
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(roles, vec![("retail".to_string(), "backend".to_string())]);
    app.stop().await.unwrap();
}

async fn devices_of(app: &TestApp, email: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM devices d JOIN users u ON u.id = d.user_id WHERE u.email = $1")
        .bind(email)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn no_pairing_code_yields_a_token_of_the_backend() {
    let app = TestApp::start().await;
    backend_token(&app, "erp").await;
    let owner = app.token(OWNER, "owner-phone").await;
    let devices = devices_of(&app, "later@duka.test").await;

    // Not the role...
    let resp = create_code(
        &app,
        &owner,
        "retail",
        json!({"email": "new@duka.test", "name": "New", "role": "backend"}),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.json::<ErrorBody>().await.unwrap().error.code, "invalid_role");
    let (ok, _, err) = cli(
        &app,
        &[
            "pairing-code",
            "--scope",
            "retail",
            "--email",
            "new@duka.test",
            "--name",
            "New",
            "--role",
            "backend",
        ],
    );
    assert!(!ok && err.contains("invalid_role"), "{err}");

    // ...nor any role for the backend's user, whose token would speak as the backend.
    let resp = create_code(&app, &owner, "retail", json!({"email": BACKEND, "role": "cashier"})).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(resp.json::<ErrorBody>().await.unwrap().error.code, "forbidden");

    // A code made before its user became the backend's is refused when redeemed.
    let resp = create_code(
        &app,
        &owner,
        "retail",
        json!({"email": "later@duka.test", "name": "Later", "role": "cashier"}),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let code: dukasync::wire::PairingCode = resp.json().await.unwrap();
    let later = accounts::ensure_user(&app.db, "later@duka.test", "Later")
        .await
        .unwrap();
    let water = ScopeId::parse("water").unwrap();
    accounts::set_role(&app.db, later, &water, Role::Backend).await.unwrap();
    let resp = pair(&app, &code.code, "phone").await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        resp.json::<ErrorBody>().await.unwrap().error.code,
        "invalid_pairing_code"
    );
    let roles = accounts::roles_of(&app.db, later).await.unwrap();
    assert_eq!(
        roles,
        vec![("water".to_string(), "backend".to_string())],
        "nothing granted"
    );
    assert_eq!(
        devices_of(&app, "later@duka.test").await,
        devices,
        "no device for the backend's user"
    );
    app.stop().await.unwrap();
}

/// Rows are held to their collection's JSON Schema (protocol §9): a put's row at once, a patch's once merged with
/// the stored row; either refuses the whole batch with 400 `schema_violation`, the write's index and the failing
/// path, and writes nothing, earlier valid writes of the batch included.
#[tokio::test]
async fn rows_against_the_collection_schema_refuse_the_batch_and_write_nothing() {
    let app = TestApp::start().await;
    let backend = backend_token(&app, "erp").await;
    let product = |key: &str, price: &str| {
        json!({"id": Uuid::new_v4(), "type": "put", "collection": "products", "key": key,
               "data": {"id": key, "name": "Sugar 1kg", "price": price}})
    };
    rows(&app, &backend, json!([product("p-schema", "180.00")])).await;
    let head = app.head_version("retail").await;

    let (status, body) = refused(
        &app,
        &backend,
        "retail",
        json!([product("p-fine", "1.00"), product("p-comma", "180,00")]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body.error.code, "schema_violation");
    assert_eq!(body.error.details, Some(json!({"index": 1, "path": "/price"})));

    let patch = json!({"id": Uuid::new_v4(), "type": "patch", "collection": "products", "key": "p-schema",
                       "fields": {"name": ""}});
    let (status, body) = refused(&app, &backend, "retail", json!([product("p-fine", "1.00"), patch])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body.error.code, "schema_violation");
    assert_eq!(body.error.details, Some(json!({"index": 1, "path": "/name"})));
    assert_eq!(
        app.head_version("retail").await,
        head,
        "nothing of either batch was written"
    );
}
