//! Backend writes through SQL (docs/backend-sql.md): `dukasync_api.put/patch/delete` in the backend's own
//! transaction reach devices through the feed after commit and never after a rollback; bad calls raise and
//! queue nothing; a write that cannot apply becomes a conflict without blocking the rest; queued writes survive
//! a server restart and apply once; capture triggers turn a table's INSERT/UPDATE/DELETE into feed changes.

use crate::common::*;
use dukasync::wire::{Change, ChangeOp, ConflictList, ConflictSummary};
use serde_json::{json, Value};
use sqlx::{PgPool, Postgres, Transaction};
use std::time::{Duration, Instant};

/// Pulls `scope` from `cursor` (long-polling) until a page holds a change of `key`, then to the head; returns
/// every change seen on the way and moves `cursor` past them. Panics after 20 s.
async fn until_change(app: &TestApp, token: &str, scope: &str, cursor: &mut String, key: &str) -> Vec<Change> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "no change of {key} reached the feed");
        let page = app.changes(token, scope, &format!("since={cursor}&wait=5")).await;
        *cursor = page.cursor.clone();
        // The whole page: writes applied in one round commit together, so all of them are on it.
        let found = page.changes.iter().any(|c| c.key == key);
        seen.extend(page.changes);
        if found && !page.has_more {
            return seen;
        }
    }
}

/// A function's arguments: scope, collection, key, and the data or fields (none for a delete).
type Args<'a> = (&'a str, &'a str, &'a str, Option<Value>);

/// The last change of `key` among `seen`.
fn last_of<'a>(seen: &'a [Change], key: &str) -> &'a Change {
    seen.iter().rev().find(|c| c.key == key).expect("a change of the key")
}

/// The feed's cursor at its current head.
async fn head_cursor(app: &TestApp, token: &str, scope: &str) -> String {
    let mut cursor = "0".to_string();
    loop {
        let page = app.changes(token, scope, &format!("since={cursor}&limit=1000")).await;
        cursor = page.cursor;
        if !page.has_more {
            return cursor;
        }
    }
}

async fn pending_count(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM dukasync_api.pending_writes")
        .fetch_one(db)
        .await
        .unwrap()
}

/// Waits until the applier has emptied the queue (observable state).
async fn until_applied(db: &PgPool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while pending_count(db).await > 0 {
        assert!(Instant::now() < deadline, "queued backend writes were never applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the server has published its collections (at start-up, before the first round).
async fn until_published(db: &PgPool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM dukasync_api.collections")
            .fetch_one(db)
            .await
            .unwrap();
        if n > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "collections never published");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn call(tx: &mut Transaction<'_, Postgres>, function: &str, args: Args<'_>) -> i64 {
    try_call(tx, function, args).await.unwrap()
}

async fn try_call(
    tx: &mut Transaction<'_, Postgres>,
    function: &str,
    (scope, collection, key, data): Args<'_>,
) -> Result<i64, sqlx::Error> {
    let sql = match data {
        Some(_) => format!("SELECT dukasync_api.{function}($1, $2, $3, $4)"),
        None => format!("SELECT dukasync_api.{function}($1, $2, $3)"),
    };
    let mut query = sqlx::query_scalar(&sql).bind(scope).bind(collection).bind(key);
    if let Some(data) = data {
        query = query.bind(data);
    }
    query.fetch_one(&mut **tx).await
}

/// The one `rejected_backend_write` conflict recorded once the applier has taken every queued write.
async fn the_rejected_backend_write(app: &TestApp, token: &str) -> ConflictSummary {
    until_applied(&app.db).await;
    let list: ConflictList = app
        .get("/v1/admin/conflicts?kind=rejected_backend_write", Some(token))
        .await
        .json()
        .await
        .unwrap();
    let [conflict] = &list.conflicts[..] else {
        panic!("{list:?}")
    };
    conflict.clone()
}

fn product(key: &str, price: &str) -> Value {
    json!({"id": key, "name": format!("Product {key}"), "price": price})
}

#[tokio::test]
async fn a_put_in_a_transaction_reaches_a_long_polling_device_after_commit() {
    let app = TestApp::start().await;
    until_published(&app.db).await;
    let token = app.token(OWNER, "owner-phone").await;
    let cursor = head_cursor(&app, &token, "water").await;

    let mut tx = app.db.begin().await.unwrap();
    call(
        &mut tx,
        "put",
        ("water", "products", "p-sql", Some(product("p-sql", "12.50"))),
    )
    .await;
    // The device parks on a long-poll while the backend's transaction is open.
    let poll = {
        let (app_url, token, cursor) = (app.url("/v1/scopes/water/changes"), token.clone(), cursor.clone());
        tokio::spawn(async move {
            reqwest::Client::new()
                .get(format!("{app_url}?since={cursor}&wait=20"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json::<dukasync::wire::ChangesPage>()
                .await
                .unwrap()
        })
    };
    app.wait_for_metric("dukasync_longpoll_waiters", 1.0).await;
    assert!(!poll.is_finished(), "nothing may reach a device before the commit");
    tx.commit().await.unwrap();

    let page = poll.await.unwrap();
    let change = page
        .changes
        .iter()
        .find(|c| c.key == "p-sql")
        .expect("the put woke the long-poll");
    assert_eq!(change.collection, "products");
    assert_eq!(change.op, ChangeOp::Upsert);
    assert_eq!(change.data, Some(product("p-sql", "12.50")));
    until_applied(&app.db).await;
}

#[tokio::test]
async fn a_rolled_back_write_reaches_no_device() {
    let app = TestApp::start().await;
    until_published(&app.db).await;
    let token = app.token(OWNER, "owner-phone").await;
    let mut cursor = head_cursor(&app, &token, "water").await;

    let mut tx = app.db.begin().await.unwrap();
    call(
        &mut tx,
        "put",
        (
            "water",
            "products",
            "p-rolled-back",
            Some(product("p-rolled-back", "1")),
        ),
    )
    .await;
    tx.rollback().await.unwrap();
    let mut tx = app.db.begin().await.unwrap();
    call(
        &mut tx,
        "put",
        ("water", "products", "p-later", Some(product("p-later", "2"))),
    )
    .await;
    tx.commit().await.unwrap();

    let seen = until_change(&app, &token, "water", &mut cursor, "p-later").await;
    assert!(seen.iter().all(|c| c.key != "p-rolled-back"), "{seen:?}");
    until_applied(&app.db).await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM records WHERE key = 'p-rolled-back'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn patch_changes_fields_and_delete_removes_the_row() {
    let app = TestApp::start().await;
    until_published(&app.db).await;
    let token = app.token(OWNER, "owner-phone").await;
    let mut cursor = head_cursor(&app, &token, "water").await;

    let mut tx = app.db.begin().await.unwrap();
    let first = call(
        &mut tx,
        "put",
        (
            "water",
            "products",
            "p-1",
            Some(json!({"id": "p-1", "name": "A", "price": "5", "note": "x"})),
        ),
    )
    .await;
    let second = call(
        &mut tx,
        "patch",
        ("water", "products", "p-1", Some(json!({"price": "6", "note": null}))),
    )
    .await;
    assert!(second > first, "ids are drawn in call order");
    tx.commit().await.unwrap();
    let seen = until_change(&app, &token, "water", &mut cursor, "p-1").await;
    let last = last_of(&seen, "p-1");
    assert_eq!(
        last.data,
        Some(json!({"id": "p-1", "name": "A", "price": "6"})),
        "put and patch of one commit applied in order; null removed the field"
    );

    let mut tx = app.db.begin().await.unwrap();
    call(&mut tx, "delete", ("water", "products", "p-1", None)).await;
    tx.commit().await.unwrap();
    let seen = until_change(&app, &token, "water", &mut cursor, "p-1").await;
    assert_eq!(last_of(&seen, "p-1").op, ChangeOp::Delete);
}

#[tokio::test]
async fn a_bad_call_raises_and_queues_nothing() {
    let app = TestApp::start().await;
    until_published(&app.db).await;
    let cases: [(&str, Args, &str); 8] = [
        ("put", ("nowhere", "products", "p", Some(json!({"id": "p"}))), "ZD001"),
        ("put", ("water", "sales", "s", Some(json!({"id": "s"}))), "ZD002"),
        ("put", ("water", "no_such", "s", Some(json!({"id": "s"}))), "ZD002"),
        ("put", ("water", "products", "p", Some(json!(["p"]))), "ZD003"),
        ("put", ("water", "products", "p", Some(json!({"id": "q"}))), "ZD003"),
        (
            "put",
            ("water", "products", "p", Some(json!({"id": "p", "price": 1.5}))),
            "ZD003",
        ),
        ("patch", ("water", "products", "p", Some(json!({}))), "ZD003"),
        ("delete", ("water", "products", "", None), "ZD004"),
    ];
    for (function, args, code) in cases {
        let mut tx = app.db.begin().await.unwrap();
        let err = try_call(&mut tx, function, args.clone()).await.unwrap_err();
        let db_err = err.as_database_error().expect("a database error");
        assert_eq!(db_err.code().as_deref(), Some(code), "{function} {args:?}: {db_err}");
        assert!(db_err.message().starts_with("dukasync: "), "{}", db_err.message());
        tx.rollback().await.unwrap();
    }
    assert_eq!(pending_count(&app.db).await, 0);
}

#[tokio::test]
async fn a_write_that_cannot_apply_is_a_conflict_and_blocks_nothing() {
    let app = TestApp::start().await;
    until_published(&app.db).await;
    let token = app.token(OWNER, "owner-phone").await;
    let mut cursor = head_cursor(&app, &token, "water").await;
    let mut tx = app.db.begin().await.unwrap();
    call(
        &mut tx,
        "patch",
        ("water", "products", "p-missing", Some(json!({"price": "1"}))),
    )
    .await;
    call(
        &mut tx,
        "put",
        ("water", "products", "p-after", Some(product("p-after", "3"))),
    )
    .await;
    tx.commit().await.unwrap();

    let seen = until_change(&app, &token, "water", &mut cursor, "p-after").await;
    assert!(seen.iter().all(|c| c.key != "p-missing"));
    let conflict = the_rejected_backend_write(&app, &token).await;
    assert_eq!(
        (conflict.collection.as_str(), conflict.key.as_str()),
        ("products", "p-missing")
    );
    assert_eq!(conflict.status, "open");
}

/// A backend write whose row (a patch merged with the stored row) violates the collection's JSON Schema (§9) is
/// recorded as a rejected backend write, like any that cannot apply, and changes nothing.
#[tokio::test]
async fn a_write_against_the_row_schema_is_recorded_and_changes_nothing() {
    let app = TestApp::start().await;
    until_published(&app.db).await;
    let token = app.token(OWNER, "owner-phone").await;
    let mut cursor = head_cursor(&app, &token, "water").await;
    let mut tx = app.db.begin().await.unwrap();
    call(
        &mut tx,
        "put",
        ("water", "products", "p-schema", Some(product("p-schema", "3"))),
    )
    .await;
    // A decimal comma: the built-in schema wants `^-?[0-9]+(\.[0-9]+)?$`.
    call(
        &mut tx,
        "patch",
        ("water", "products", "p-schema", Some(json!({"price": "3,50"}))),
    )
    .await;
    call(
        &mut tx,
        "put",
        ("water", "products", "p-next", Some(product("p-next", "4"))),
    )
    .await;
    tx.commit().await.unwrap();

    let seen = until_change(&app, &token, "water", &mut cursor, "p-next").await;
    let prices: Vec<_> = seen
        .iter()
        .filter(|c| c.key == "p-schema")
        .map(|c| c.data.as_ref().unwrap()["price"].clone())
        .collect();
    assert_eq!(prices, [json!("3")], "only the valid put of p-schema reached the feed");
    let conflict = the_rejected_backend_write(&app, &token).await;
    assert_eq!(conflict.key, "p-schema");
    let detail: Value = app
        .get(&format!("/v1/admin/conflicts/{}", conflict.id), Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert!(detail.to_string().contains("schema_violation at `/price`"), "{detail}");
}

#[tokio::test]
async fn queued_writes_survive_a_restart_and_apply_once() {
    let first = TestApp::start().await;
    until_published(&first.db).await;
    let token = first.token(OWNER, "owner-phone").await;
    let mut cursor = head_cursor(&first, &token, "water").await;
    let url = first.database_url.clone();
    first.stop().await.unwrap();

    // Queued while no server runs: only a restart's first round can apply them.
    let db = PgPool::connect(&url).await.unwrap();
    let mut tx = db.begin().await.unwrap();
    call(&mut tx, "put", ("water", "products", "p-r", Some(product("p-r", "1")))).await;
    call(&mut tx, "put", ("water", "products", "p-r", Some(product("p-r", "2")))).await;
    tx.commit().await.unwrap();

    let second = TestApp::on_database(&url, &[]).await;
    until_applied(&second.db).await;
    let seen = until_change(&second, &token, "water", &mut cursor, "p-r").await;
    // Both puts, in order, once each; a marker written after them shows nothing came again.
    let mut tx = db.begin().await.unwrap();
    call(
        &mut tx,
        "put",
        ("water", "products", "p-marker", Some(product("p-marker", "0"))),
    )
    .await;
    tx.commit().await.unwrap();
    let mut all = seen;
    all.extend(until_change(&second, &token, "water", &mut cursor, "p-marker").await);
    let prices: Vec<&Value> = all
        .iter()
        .filter(|c| c.key == "p-r")
        .map(|c| &c.data.as_ref().unwrap()["price"])
        .collect();
    assert_eq!(prices, [&json!("1"), &json!("2")]);
    assert_eq!(pending_count(&db).await, 0);
}

const ERP_PRODUCT: &str = r#"CREATE TABLE erp_product (
    id bigserial PRIMARY KEY,
    business_id varchar(40) NOT NULL,
    name varchar(200) NOT NULL,
    price numeric(12, 2) NOT NULL,
    active boolean NOT NULL DEFAULT true,
    weight double precision
)"#;

#[tokio::test]
async fn a_capture_trigger_turns_table_writes_into_feed_changes_until_removed() {
    let app = TestApp::start().await;
    until_published(&app.db).await;
    let token = app.token(OWNER, "owner-phone").await;
    let mut cursor = head_cursor(&app, &token, "water").await;
    sqlx::query(ERP_PRODUCT).execute(&app.db).await.unwrap();
    let install = |extra: &[&str]| {
        let mut args = vec![
            "capture",
            "install",
            "--table",
            "erp_product",
            "--collection",
            "products",
            "--key",
            "id",
            "--scope-column",
            "business_id",
        ];
        args.extend_from_slice(extra);
        cli(&app, &args)
    };

    let (ok, _, err) = install(&["--columns", "name,price"]);
    assert!(!ok && err.contains("--allow-device-writes"), "{err}");
    let (ok, _, err) = install(&["--columns", "name,weight", "--allow-device-writes"]);
    assert!(!ok && err.contains("double precision"), "{err}");
    let (ok, _, err) = install(&["--columns", "name,price,active", "--allow-device-writes"]);
    assert!(ok, "{err}");
    let (ok, out, _) = cli(&app, &["capture", "list"]);
    assert!(
        ok && out.contains("erp_product\tproducts\tkey id\tscope column business_id"),
        "{out}"
    );

    // As Django's ORM would: plain statements on its own table, nothing else.
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO erp_product (business_id, name, price) VALUES ('water', 'Jar 20L', 150.5) RETURNING id",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    let key = id.to_string();
    let seen = until_change(&app, &token, "water", &mut cursor, &key).await;
    assert_eq!(
        last_of(&seen, &key).data,
        Some(json!({"id": key, "name": "Jar 20L", "price": "150.50", "active": true}))
    );
    sqlx::query("UPDATE erp_product SET price = 160 WHERE id = $1")
        .bind(id)
        .execute(&app.db)
        .await
        .unwrap();
    let seen = until_change(&app, &token, "water", &mut cursor, &key).await;
    assert_eq!(last_of(&seen, &key).data.as_ref().unwrap()["price"], json!("160.00"));
    sqlx::query("DELETE FROM erp_product WHERE id = $1")
        .bind(id)
        .execute(&app.db)
        .await
        .unwrap();
    let seen = until_change(&app, &token, "water", &mut cursor, &key).await;
    assert_eq!(last_of(&seen, &key).op, ChangeOp::Delete);

    let (ok, _, err) = cli(&app, &["capture", "remove", "--table", "erp_product"]);
    assert!(ok, "{err}");
    let after: i64 = sqlx::query_scalar(
        "INSERT INTO erp_product (business_id, name, price) VALUES ('water', 'Cap', 1) RETURNING id",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    let mut tx = app.db.begin().await.unwrap();
    call(
        &mut tx,
        "put",
        ("water", "products", "p-marker", Some(product("p-marker", "0"))),
    )
    .await;
    tx.commit().await.unwrap();
    let seen = until_change(&app, &token, "water", &mut cursor, "p-marker").await;
    assert!(seen.iter().all(|c| c.key != after.to_string()), "{seen:?}");
    let (ok, out, _) = cli(&app, &["capture", "list"]);
    assert!(ok && out.is_empty(), "{out}");
}

/// The grants of docs/erp-guide.md ("Roles"), run as written for a separate login role, are enough for the ERP:
/// it writes through `dukasync_api` and reads `dukasync_read`, and its write reaches the feed. They are also all
/// it gets: dukasync's own tables refuse it, and a role without the grants can call and read nothing.
#[tokio::test]
async fn the_documented_grants_let_a_separate_erp_role_write_and_read_and_nothing_more() {
    let app = TestApp::start().await;
    until_published(&app.db).await;
    let token = app.token(OWNER, "owner-phone").await;
    let mut cursor = head_cursor(&app, &token, "water").await;
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (erp, stranger) = (format!("erp_{}", &suffix[..12]), format!("nobody_{}", &suffix[..12]));
    let guide = include_str!("../../docs/erp-guide.md");
    let roles = &guide[guide.find("**Roles.**").expect("the guide's Roles paragraph")..];
    let sql = &roles[roles.find("```sql").unwrap() + 6..];
    let grants = sql[..sql.find("```").unwrap()].replace(" TO erp;", &format!(" TO {erp};"));
    for role in [&erp, &stranger] {
        sqlx::query(&format!("CREATE ROLE {role} LOGIN PASSWORD 'pw-{suffix}'"))
            .execute(&app.db)
            .await
            .unwrap();
    }
    sqlx::raw_sql(&grants).execute(&app.db).await.unwrap();
    let as_role = |role: &str| {
        let mut url = url::Url::parse(&app.database_url).unwrap();
        url.set_username(role).unwrap();
        url.set_password(Some(&format!("pw-{suffix}"))).unwrap();
        PgPool::connect_lazy(url.as_str()).unwrap()
    };

    let erp_db = as_role(&erp);
    let put =
        "SELECT dukasync_api.put('water', 'customers', 'c-granted', '{\"id\": \"c-granted\", \"name\": \"Granted\"}')";
    sqlx::query(put)
        .execute(&erp_db)
        .await
        .expect("the ERP's role may write");
    let (sales,): (i64,) = sqlx::query_as("SELECT count(*) FROM dukasync_read.sales")
        .fetch_one(&erp_db)
        .await
        .expect("the ERP's role may read the views");
    assert!(sales >= 0);
    until_change(&app, &token, "water", &mut cursor, "c-granted").await;
    let denied = |e: sqlx::Error| e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42501");
    let err = sqlx::query("SELECT count(*) FROM records")
        .execute(&erp_db)
        .await
        .unwrap_err();
    assert!(denied(err), "dukasync's own tables refuse the ERP's role");

    let stranger_db = as_role(&stranger);
    let err = sqlx::query(put).execute(&stranger_db).await.unwrap_err();
    assert!(denied(err), "a role without the grants cannot write");
    let err = sqlx::query("SELECT count(*) FROM dukasync_read.sales")
        .execute(&stranger_db)
        .await
        .unwrap_err();
    assert!(denied(err), "a role without the grants cannot read");

    erp_db.close().await;
    stranger_db.close().await;
    // Roles belong to the cluster, not the test's database: take the grants back and drop them.
    let revokes = grants
        .replace("GRANT ", "REVOKE ")
        .replace(&format!(" TO {erp};"), &format!(" FROM {erp};"));
    sqlx::raw_sql(&revokes).execute(&app.db).await.unwrap();
    for role in [&erp, &stranger] {
        sqlx::query(&format!("DROP ROLE {role}"))
            .execute(&app.db)
            .await
            .unwrap();
    }
}
