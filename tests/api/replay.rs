//! Operation replay through the HTTP API: exactly once whatever the replays, and nothing written on bad input.

use crate::common::*;
use dukasync::wire::{ChangesPage, ErrorBody, OpStatus, OpsResponse};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

fn put(seq: i64, id: Uuid, key: &str, name: &str) -> Value {
    json!({"seq": seq, "id": id, "type": "put", "collection": "customers", "key": key,
           "data": {"id": key, "name": name, "credit_limit": "1000.00"}})
}

async fn customer_changes(app: &TestApp, token: &str, scope: &str) -> Vec<dukasync::wire::Change> {
    app.changes(token, scope, "since=0&collections=customers&limit=1000")
        .await
        .changes
}

#[tokio::test]
async fn a_batch_replayed_three_times_takes_effect_once() {
    let app = TestApp::start().await;
    let device = Device::new(&app, WATER_CASHIER, "water-counter", "water").await;
    let ops: Vec<Value> = (1..=3)
        .map(|i| put(i, Uuid::new_v4(), &format!("c-{i}"), "Achieng"))
        .collect();
    let before = customer_changes(&app, &device.token, "water").await.len();

    let first = device.push(&ops).await;
    assert_eq!(first.last_seq, 3);
    assert!(first
        .results
        .iter()
        .all(|r| r.status == OpStatus::Applied && r.versions.len() == 1));
    for _ in 0..2 {
        let again = device.push(&ops).await;
        assert_eq!(again.last_seq, 3);
        for (a, b) in first.results.iter().zip(&again.results) {
            assert_eq!(
                (b.status, b.original, &b.versions),
                (OpStatus::Duplicate, Some(OpStatus::Applied), &a.versions)
            );
        }
    }
    assert_eq!(customer_changes(&app, &device.token, "water").await.len(), before + 3);
}

#[tokio::test]
async fn overlapping_and_split_batches_apply_each_operation_once() {
    let app = TestApp::start().await;
    let device = Device::new(&app, WATER_CASHIER, "water-counter", "water").await;
    let ops: Vec<Value> = (1..=6)
        .map(|i| put(i, Uuid::new_v4(), &format!("c-{i}"), "Baraka"))
        .collect();
    let before = customer_changes(&app, &device.token, "water").await.len();
    device.push(&ops[0..3]).await;
    let r = device.push(&ops[1..5]).await;
    let statuses: Vec<OpStatus> = r.results.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [
            OpStatus::Duplicate,
            OpStatus::Duplicate,
            OpStatus::Applied,
            OpStatus::Applied
        ]
    );
    let r = device.push(&ops).await;
    assert_eq!(r.last_seq, 6);
    assert_eq!(r.results.iter().filter(|r| r.status == OpStatus::Applied).count(), 1);
    assert_eq!(customer_changes(&app, &device.token, "water").await.len(), before + 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_connections_sending_the_same_batch_apply_it_once() {
    let app = TestApp::start().await;
    let device = Device::new(&app, WATER_CASHIER, "water-counter", "water").await;
    let ops: Vec<Value> = (1..=20)
        .map(|i| put(i, Uuid::new_v4(), &format!("c-{i}"), "Chebet"))
        .collect();
    let before = customer_changes(&app, &device.token, "water").await.len();
    let (a, b) = tokio::join!(device.push(&ops), device.push(&ops));
    assert_eq!((a.last_seq, b.last_seq), (20, 20));
    let applied = |r: &OpsResponse| r.results.iter().filter(|x| x.status == OpStatus::Applied).count();
    assert_eq!(
        applied(&a) + applied(&b),
        20,
        "each operation applied by exactly one of the two"
    );
    assert_eq!(customer_changes(&app, &device.token, "water").await.len(), before + 20);
}

#[tokio::test]
async fn a_gap_is_refused_with_the_expected_sequence_and_nothing_applied() {
    let app = TestApp::start().await;
    let device = Device::new(&app, WATER_CASHIER, "water-counter", "water").await;
    device.push(&[put(1, Uuid::new_v4(), "c-1", "Dama")]).await;
    let before = footprint(&app).await;
    let (status, body) = device.push_error(&[put(3, Uuid::new_v4(), "c-3", "Dama")]).await;
    assert_eq!(
        (status, body.error.code.as_str()),
        (StatusCode::CONFLICT, "sequence_gap")
    );
    assert_eq!(body.error.details.unwrap()["expected_seq"], 2);
    assert_eq!(footprint(&app).await, before);
}

#[tokio::test]
async fn the_same_sequence_or_id_with_another_payload_is_422_and_nothing_applied() {
    let app = TestApp::start().await;
    let device = Device::new(&app, WATER_CASHIER, "water-counter", "water").await;
    let id = Uuid::new_v4();
    device.push(&[put(1, id, "c-1", "Esther")]).await;
    let before = footprint(&app).await;

    let (status, body) = device.push_error(&[put(1, id, "c-1", "Esther changed")]).await;
    assert_eq!(
        (status, body.error.code.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "payload_mismatch")
    );
    // A changed payload inside an otherwise good batch refuses the whole batch.
    let (status, _) = device
        .push_error(&[
            put(1, Uuid::new_v4(), "c-1", "Esther"),
            put(2, Uuid::new_v4(), "c-2", "F"),
        ])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = device.push_error(&[put(2, id, "c-2", "Esther")]).await;
    assert_eq!(
        (status, body.error.code.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "op_id_reused")
    );
    assert_eq!(footprint(&app).await, before);
}

#[tokio::test]
async fn an_operation_that_can_never_apply_is_rejected_and_the_queue_moves_on() {
    let app = TestApp::start().await;
    let device = Device::new(&app, WATER_CASHIER, "water-counter", "water").await;
    let update_missing = json!({"seq": 1, "id": Uuid::new_v4(), "type": "update", "collection": "customers",
                                "key": "nobody", "mods": {"name": "X"}});
    let r = device
        .push(&[update_missing.clone(), put(2, Uuid::new_v4(), "c-2", "Faraji")])
        .await;
    assert_eq!(r.results[0].status, OpStatus::Rejected);
    assert_eq!(r.results[0].code.as_deref(), Some("row_not_found"));
    assert!(r.results[0].conflict_id.is_some(), "rejections are recorded");
    assert_eq!(r.results[1].status, OpStatus::Applied);
    assert_eq!(r.last_seq, 2);
    // Replayed, the rejection is returned again as stored.
    let again = device.push(&[update_missing]).await;
    assert_eq!(
        (again.results[0].status, again.results[0].original),
        (OpStatus::Duplicate, Some(OpStatus::Rejected))
    );
}

async fn offline_edits(collection: &str, key: &str) -> (TestApp, dukasync::wire::OpResult, Value) {
    let app = TestApp::start().await;
    let a = Device::new(&app, OWNER, "owner-phone", "laundry").await;
    let b = Device::new(&app, MANAGER, "manager-phone", "laundry").await;
    let data = json!({"id": key, "name": "Gathoni", "phone": "0700", "status": "received"});
    let created = a
        .push(&[
            json!({"seq": 1, "id": Uuid::new_v4(), "type": "put", "collection": collection, "key": key, "data": data}),
        ])
        .await;
    let base = created.results[0].versions[0];
    // Both devices saw version `base`; A changes name, then B (offline) changes name and phone.
    a.push(&[
        json!({"seq": 2, "id": Uuid::new_v4(), "type": "update", "collection": collection, "key": key,
                    "mods": {"name": "Gathoni A"}, "base_version": base}),
    ])
    .await;
    let r = b
        .push(&[
            json!({"seq": 1, "id": Uuid::new_v4(), "type": "update", "collection": collection, "key": key,
                       "mods": {"name": "Gathoni B", "phone": "0711"}, "base_version": base}),
        ])
        .await;
    let page: ChangesPage = app
        .get(
            &format!("/v1/scopes/laundry/changes?since=0&collections={collection}&limit=1000"),
            Some(&a.token),
        )
        .await
        .json()
        .await
        .unwrap();
    let row = page
        .changes
        .iter()
        .rev()
        .find(|c| c.key == key)
        .unwrap()
        .data
        .clone()
        .unwrap();
    (app, r.results[0].clone(), row)
}

#[tokio::test]
async fn concurrent_edits_merge_disjoint_fields_and_record_the_overlap() {
    // laundry_orders: server wins on overlapping fields.
    let (app, result, row) = offline_edits("laundry_orders", "lo-1").await;
    assert_eq!(result.status, OpStatus::Conflict);
    assert_eq!(
        (row["name"].as_str(), row["phone"].as_str()),
        (Some("Gathoni A"), Some("0711"))
    );
    let (fields, base, server, client): (Vec<String>, Value, Value, Value) =
        sqlx::query_as("SELECT fields, base, server, client FROM conflicts WHERE id = $1")
            .bind(result.conflict_id.unwrap())
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(fields, ["name"]);
    assert_eq!(
        (base["name"].as_str(), server["name"].as_str()),
        (Some("Gathoni"), Some("Gathoni A"))
    );
    assert_eq!(client, json!({"name": "Gathoni B", "phone": "0711"}));

    // customers: the client wins.
    let (_, result, row) = offline_edits("customers", "cu-1").await;
    assert_eq!(result.status, OpStatus::Conflict);
    assert_eq!(
        (row["name"].as_str(), row["phone"].as_str()),
        (Some("Gathoni B"), Some("0711"))
    );
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_nothing_is_written() {
    let app = TestApp::start_with(&[("DUKASYNC_MAX_BATCH_OPS", "5"), ("DUKASYNC_MAX_BODY_BYTES", "4096")]).await;
    let device = Device::new(&app, WATER_CASHIER, "water-counter", "water").await;
    let id = || Uuid::new_v4();
    let cases: Vec<(&str, Value, StatusCode, &str)> = vec![
        (
            "unknown field in the batch",
            json!({"client_id": device.client_id, "ops": [], "extra": 1}),
            StatusCode::BAD_REQUEST,
            "unknown_field",
        ),
        (
            "unknown field in an op",
            json!({"client_id": device.client_id, "ops": [{"seq": 1, "id": id(), "type": "delete", "collection": "customers", "key": "k", "oops": 1}]}),
            StatusCode::BAD_REQUEST,
            "unknown_field",
        ),
        (
            "float money",
            json!({"client_id": device.client_id, "ops": [{"seq": 1, "id": id(), "type": "put", "collection": "customers", "key": "k", "data": {"id": "k", "credit_limit": 10.5}}]}),
            StatusCode::BAD_REQUEST,
            "float_not_allowed",
        ),
        (
            "unknown collection",
            json!({"client_id": device.client_id, "ops": [{"seq": 1, "id": id(), "type": "delete", "collection": "widgets", "key": "k"}]}),
            StatusCode::BAD_REQUEST,
            "unknown_collection",
        ),
        (
            "server-only collection",
            json!({"client_id": device.client_id, "ops": [{"seq": 1, "id": id(), "type": "put", "collection": "journal_entries", "key": "k", "data": {"id": "k"}}]}),
            StatusCode::BAD_REQUEST,
            "server_only_collection",
        ),
        (
            "unknown operation type",
            json!({"client_id": device.client_id, "ops": [{"seq": 1, "id": id(), "type": "upsert", "collection": "customers", "key": "k"}]}),
            StatusCode::BAD_REQUEST,
            "malformed_body",
        ),
        (
            "key differs from data.id",
            json!({"client_id": device.client_id, "ops": [{"seq": 1, "id": id(), "type": "put", "collection": "customers", "key": "k", "data": {"id": "other"}}]}),
            StatusCode::BAD_REQUEST,
            "key_mismatch",
        ),
        (
            "update without mods",
            json!({"client_id": device.client_id, "ops": [{"seq": 1, "id": id(), "type": "update", "collection": "customers", "key": "k"}]}),
            StatusCode::BAD_REQUEST,
            "invalid_operation",
        ),
        (
            "sequence zero",
            json!({"client_id": device.client_id, "ops": [{"seq": 0, "id": id(), "type": "delete", "collection": "customers", "key": "k"}]}),
            StatusCode::BAD_REQUEST,
            "invalid_sequence",
        ),
        (
            "non-consecutive sequences",
            json!({"client_id": device.client_id, "ops": [put(1, id(), "a", "A"), put(3, id(), "b", "B")]}),
            StatusCode::BAD_REQUEST,
            "invalid_sequence",
        ),
        (
            "too many operations",
            json!({"client_id": device.client_id, "ops": (1..=6).map(|i| json!({"seq": i, "id": id(), "type": "delete", "collection": "customers", "key": "k"})).collect::<Vec<_>>()}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
        ),
        (
            "body over the byte limit",
            json!({"client_id": device.client_id, "ops": [put(1, id(), "k", &"x".repeat(5000))]}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            "client id not a uuid",
            json!({"client_id": "phone-1", "ops": []}),
            StatusCode::BAD_REQUEST,
            "malformed_body",
        ),
    ];
    let before = footprint(&app).await;
    for (name, body, status, code) in cases {
        let resp = device.send_raw(body).await;
        let actual = resp.status();
        let error: ErrorBody = resp.json().await.unwrap();
        assert_eq!(
            (actual, error.error.code.as_str()),
            (status, code),
            "{name}: {}",
            error.error.message
        );
    }
    let raw = |content_type: &'static str, body: &'static [u8]| {
        app.http
            .post(app.url("/v1/scopes/water/ops"))
            .bearer_auth(&device.token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let resp = raw("application/json", b"{\"client_id\": ").await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = raw("application/msgpack", b"\xc1\xc1").await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = raw("text/plain", b"hello").await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Another scope's ops endpoint: 404, like any other route of it.
    let resp = app
        .http
        .post(app.url("/v1/scopes/retail/ops"))
        .bearer_auth(&device.token)
        .json(&json!({"client_id": device.client_id, "ops": [put(1, id(), "k", "K")]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        footprint(&app).await,
        before,
        "nothing was written by any refused request"
    );
}

#[tokio::test]
async fn messagepack_batches_work_and_a_client_id_stays_with_its_device() {
    let app = TestApp::start().await;
    let device = Device::new(&app, OWNER, "owner-phone", "water").await;
    let body = json!({"client_id": device.client_id, "ops": [put(1, Uuid::new_v4(), "c-m", "Mumbua")]});
    let mut bytes = Vec::new();
    serde::Serialize::serialize(&body, &mut rmp_serde::Serializer::new(&mut bytes).with_struct_map()).unwrap();
    let resp = app
        .http
        .post(app.url("/v1/scopes/water/ops"))
        .bearer_auth(&device.token)
        .header("content-type", "application/msgpack")
        .header("accept", "application/msgpack")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = resp.bytes().await.unwrap();
    // As the protocol says: ids are strings in MessagePack too (human-readable mode).
    let answer: OpsResponse =
        serde::Deserialize::deserialize(&mut rmp_serde::Deserializer::new(&bytes[..]).with_human_readable()).unwrap();
    assert_eq!((answer.last_seq, answer.results[0].status), (1, OpStatus::Applied));

    let other = Device {
        client_id: device.client_id,
        ..Device::new(&app, WATER_CASHIER, "water-counter", "water").await
    };
    let (status, body) = other.push_error(&[put(2, Uuid::new_v4(), "c-n", "N")]).await;
    assert_eq!(
        (status, body.error.code.as_str()),
        (StatusCode::CONFLICT, "client_id_taken")
    );
}

#[tokio::test]
async fn invalid_path_is_a_rejection_on_the_stored_row_and_a_refusal_when_malformed() {
    let app = TestApp::start().await;
    let device = Device::new(&app, OWNER, "owner-phone", "water").await;
    let update = |seq: i64, path: &str| {
        json!({"seq": seq, "id": Uuid::new_v4(), "type": "update", "collection": "customers", "key": "c-path",
               "mods": {path: "Nakuru"}})
    };
    let created = json!({"seq": 1, "id": Uuid::new_v4(), "type": "put", "collection": "customers", "key": "c-path",
                         "data": {"id": "c-path", "name": "Otieno", "address": "PO Box 1"}});
    let r = device.push(&[created, update(2, "address.city")]).await;
    assert_eq!(
        (r.results[1].status, r.results[1].code.as_deref(), r.last_seq),
        (OpStatus::Rejected, Some("invalid_path"), 2),
        "the stored address is a string: rejected, recorded, and the queue moves on"
    );
    let (status, body) = device.push_error(&[update(3, "address..city")]).await;
    assert_eq!(
        (status, body.error.code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_path")
    );
}

#[tokio::test]
async fn a_client_ids_sequence_counts_per_scope() {
    let app = TestApp::start().await;
    let water = Device::new(&app, OWNER, "owner-phone", "water").await;
    let retail = Device {
        client_id: water.client_id,
        scope: "retail",
        ..Device::new(&app, OWNER, "owner-phone", "retail").await
    };
    for device in [&water, &retail] {
        let r = device.push(&[put(1, Uuid::new_v4(), "c-per-scope", "Wairimu")]).await;
        assert_eq!(
            (r.last_seq, r.results[0].status),
            (1, OpStatus::Applied),
            "{}",
            device.scope
        );
    }
    let r = water.push(&[put(2, Uuid::new_v4(), "c-per-scope-2", "Wairimu")]).await;
    assert_eq!(r.last_seq, 2, "water's sequence went on where water's left off");
}

#[tokio::test]
async fn pruned_results_answer_result_expired_and_never_reapply() {
    let app = TestApp::start().await;
    let device = Device::new(&app, WATER_CASHIER, "water-counter", "water").await;
    let ops: Vec<Value> = (1..=3)
        .map(|i| put(i, Uuid::new_v4(), &format!("p-{i}"), "Wanjiku"))
        .collect();
    device.push(&ops).await;
    // Results of the first two are old; the third is recent.
    sqlx::query("UPDATE replay_results SET applied_at = now() - interval '31 days' WHERE seq <= 2")
        .execute(&app.db)
        .await
        .unwrap();
    let removed = dukasync::store::replay::prune_results(&app.db, 30).await.unwrap();
    assert_eq!(removed, 2);
    let before = footprint(&app).await;
    let again = device.push(&ops).await;
    let codes: Vec<(OpStatus, Option<&str>)> = again.results.iter().map(|r| (r.status, r.code.as_deref())).collect();
    assert_eq!(
        codes,
        [
            (OpStatus::Duplicate, Some("result_expired")),
            (OpStatus::Duplicate, Some("result_expired")),
            (OpStatus::Duplicate, None),
        ]
    );
    assert_eq!(again.last_seq, 3);
    assert_eq!(footprint(&app).await, before, "nothing re-applied");
}

/// The outside tester's attack: an `update` whose key path has 128 segments. It used to be stored nested 129 levels
/// deep, past what any read can parse, so the products snapshot, every sale of the product and even the owner's
/// overwrite and delete answered 500. The path's segments now count against the nesting limit of 32.
#[tokio::test]
async fn a_key_path_counts_against_the_nesting_limit_so_every_row_stays_readable() {
    let app = TestApp::start().await;
    let owner = Device::new(&app, OWNER, "owner-phone", "retail").await;
    let cashier = Device::new(&app, SHOP_CASHIER, "shop-till", "retail").await;
    let update = |seq: i64, path: String, value: Value| {
        json!({"seq": seq, "id": Uuid::new_v4(), "type": "update", "collection": "products", "key": "r-sugar-1kg",
               "mods": {path: value}})
    };
    let dotted = |n: usize| vec!["x"; n].join(".");

    let before = footprint(&app).await;
    for (path, value) in [
        (dotted(128), json!("deep")),
        (dotted(33), json!(1)),
        // 31 segments and a value two levels deep: 33 together.
        (dotted(31), json!({"y": {"z": 1}})),
    ] {
        let (status, body) = owner.push_error(&[update(1, path, value)]).await;
        assert_eq!(
            (status, body.error.code.as_str()),
            (StatusCode::BAD_REQUEST, "too_deep"),
            "{}",
            body.error.message
        );
        assert_eq!(body.error.details, Some(json!({"seq": 1, "index": 0})));
    }
    assert_eq!(footprint(&app).await, before, "nothing written");

    // Exactly at the limit is fine, and the row stays readable by everything that read the attacked one.
    let answer = owner.push(&[update(1, dotted(32), json!("edge"))]).await;
    assert_eq!(answer.results[0].status, OpStatus::Applied);
    for device in [&owner, &cashier] {
        let resp = app
            .get("/v1/scopes/retail/reference/products", Some(&device.token))
            .await;
        assert_eq!(resp.status(), StatusCode::OK, "the products snapshot");
    }
    let sale = command(
        2,
        "record_sale",
        "deep-sale-1",
        json!({"lines": [{"product_id": "r-sugar-1kg", "quantity": "1", "unit_price": "180.00"}],
               "payments": [{"method": "cash", "amount": "180.00"}]}),
    );
    let overwrite = json!({"seq": 3, "id": Uuid::new_v4(), "type": "put", "collection": "products",
                           "key": "r-sugar-1kg", "data": {"id": "r-sugar-1kg", "name": "Sugar 1 kg", "price": "180.00"}});
    let delete = json!({"seq": 4, "id": Uuid::new_v4(), "type": "delete", "collection": "products",
                        "key": "r-sugar-1kg"});
    let answer = owner.push(&[sale, overwrite, delete]).await;
    let statuses: Vec<OpStatus> = answer.results.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [OpStatus::Applied, OpStatus::Applied, OpStatus::Applied],
        "{answer:?}"
    );
}

/// PostgreSQL's text and jsonb cannot hold U+0000: wherever the client puts one, the batch is refused with a
/// stable code and the offending operation's place, never answered 500.
#[tokio::test]
async fn a_nul_character_anywhere_is_refused_with_the_operations_place() {
    let app = TestApp::start().await;
    let device = Device::new(&app, OWNER, "owner-phone", "retail").await;
    let op = |fields: Value| {
        let mut op = json!({"seq": 2, "id": Uuid::new_v4()});
        op.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
        op
    };
    let sale_args = |customer: &str| {
        json!({"customer_id": customer, "lines": [{"product_id": "r-sugar-1kg", "quantity": "1", "unit_price": "180.00"}],
               "payments": [{"method": "cash", "amount": "180.00"}]})
    };
    let cases = [
        (
            "a data value",
            op(json!({"type": "put", "collection": "customers", "key": "k", "data": {"id": "k", "name": "a\u{0}b"}})),
        ),
        (
            "a data key",
            op(json!({"type": "put", "collection": "customers", "key": "k", "data": {"id": "k", "n\u{0}": "x"}})),
        ),
        (
            "a nested value",
            op(json!({"type": "put", "collection": "customers", "key": "k", "data": {"id": "k", "tags": ["\u{0}"]}})),
        ),
        (
            "a mods value",
            op(json!({"type": "update", "collection": "customers", "key": "k", "mods": {"name": "\u{0}"}})),
        ),
        (
            "a key path",
            op(json!({"type": "update", "collection": "customers", "key": "k", "mods": {"a\u{0}.b": "x"}})),
        ),
        (
            "the key",
            op(json!({"type": "delete", "collection": "customers", "key": "k\u{0}"})),
        ),
        (
            "the collection",
            op(json!({"type": "delete", "collection": "customers\u{0}", "key": "k"})),
        ),
        (
            "the command",
            op(json!({"type": "command", "command": "record_sale\u{0}", "key": "s", "args": sale_args("c")})),
        ),
        (
            "a command argument",
            op(json!({"type": "command", "command": "record_sale", "key": "s", "args": sale_args("c\u{0}")})),
        ),
    ];
    let before = footprint(&app).await;
    for (name, bad) in cases {
        let (status, body) = device.push_error(&[put(1, Uuid::new_v4(), "fine", "Fine"), bad]).await;
        assert_eq!(
            (status, body.error.code.as_str()),
            (StatusCode::BAD_REQUEST, "nul_not_allowed"),
            "{name}: {}",
            body.error.message
        );
        assert_eq!(body.error.details, Some(json!({"seq": 2, "index": 1})), "{name}");
    }
    assert_eq!(footprint(&app).await, before, "nothing written");
}

/// A refused batch names the operation at fault in `details`, so a client sets exactly that one aside.
#[tokio::test]
async fn a_refused_batch_names_the_failing_operation() {
    let app = TestApp::start().await;
    let device = Device::new(&app, WATER_CASHIER, "water-counter", "water").await;
    let key_mismatch = json!({"seq": 3, "id": Uuid::new_v4(), "type": "put", "collection": "customers", "key": "k",
                              "data": {"id": "other"}});
    let ops = [
        put(1, Uuid::new_v4(), "a", "A"),
        put(2, Uuid::new_v4(), "b", "B"),
        key_mismatch,
    ];
    let (status, body) = device.push_error(&ops).await;
    assert_eq!(
        (status, body.error.code.as_str()),
        (StatusCode::BAD_REQUEST, "key_mismatch")
    );
    assert_eq!(body.error.details, Some(json!({"seq": 3, "index": 2})));

    let repeated = Uuid::new_v4();
    let (_, body) = device
        .push_error(&[put(1, repeated, "a", "A"), put(2, repeated, "b", "B")])
        .await;
    assert_eq!(body.error.code, "duplicate_op_id");
    assert_eq!(body.error.details, Some(json!({"seq": 2, "index": 1})));
    let (_, body) = device
        .push_error(&[put(1, Uuid::new_v4(), "a", "A"), put(3, Uuid::new_v4(), "b", "B")])
        .await;
    assert_eq!(body.error.code, "invalid_sequence");
    assert_eq!(body.error.details, Some(json!({"seq": 3, "index": 1})));
}

/// MessagePack can carry NaN and infinities, which `serde_json::Value` would read as `null`: they are floats, and
/// refused as such (with the operation's place), not stored as a `null` the device never sent.
#[tokio::test]
async fn messagepack_nan_and_infinity_are_refused_as_floats() {
    let app = TestApp::start().await;
    let device = Device::new(&app, OWNER, "owner-phone", "retail").await;
    const MARK: f64 = 1.5;
    let cases = [
        json!({"type": "put", "collection": "customers", "key": "k", "data": {"id": "k", "credit_limit": MARK}}),
        json!({"type": "update", "collection": "customers", "key": "k", "mods": {"credit_limit": MARK}}),
        json!({"type": "update", "collection": "customers", "key": "k", "mods": {"a": [{"b": MARK}]}}),
        json!({"type": "command", "command": "record_sale", "key": "s",
               "args": {"lines": [{"product_id": "r-sugar-1kg", "quantity": "1", "unit_price": "180.00", "x": MARK}],
                        "payments": [{"method": "cash", "amount": "180.00"}]}}),
    ];
    let before = footprint(&app).await;
    for case in cases {
        for special in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut op = json!({"seq": 1, "id": Uuid::new_v4()});
            op.as_object_mut().unwrap().extend(case.as_object().unwrap().clone());
            let body = json!({"client_id": device.client_id, "ops": [op]});
            let mut bytes = Vec::new();
            serde::Serialize::serialize(&body, &mut rmp_serde::Serializer::new(&mut bytes).with_struct_map()).unwrap();
            // The encoder wrote the marker as a MessagePack float 64 (0xcb + 8 bytes): set it to the special value.
            let mut marker = vec![0xcb];
            marker.extend(MARK.to_be_bytes());
            let at = bytes.windows(9).position(|w| w == marker).expect("the marker float");
            bytes[at + 1..at + 9].copy_from_slice(&special.to_be_bytes());
            let resp = app
                .http
                .post(app.url("/v1/scopes/retail/ops"))
                .bearer_auth(&device.token)
                .header("content-type", "application/msgpack")
                .body(bytes)
                .send()
                .await
                .unwrap();
            let status = resp.status();
            let error: ErrorBody = resp.json().await.unwrap();
            assert_eq!(
                (status, error.error.code.as_str()),
                (StatusCode::BAD_REQUEST, "float_not_allowed"),
                "{case} with {special}: {}",
                error.error.message
            );
            assert_eq!(error.error.details, Some(json!({"seq": 1, "index": 0})));
        }
    }
    assert_eq!(footprint(&app).await, before, "nothing written");
}

/// A row an older version stored nested too deeply (the 128-segment attack) cannot be parsed back, and takes every
/// read of it down. The runbook's repair (deploy/sql/repair-deep-rows.sql) deletes it as the server deletes a row,
/// after which the snapshot, sales of the product and writes of the row work again and the checksums still add up.
#[tokio::test]
async fn the_runbook_repair_deletes_a_row_an_older_version_stored_too_deep() {
    let app = TestApp::start().await;
    let owner = Device::new(&app, OWNER, "owner-phone", "retail").await;
    let cashier = Device::new(&app, SHOP_CASHIER, "shop-till", "retail").await;
    // What the older version stored for `update r-sugar-1kg {"x.x.….x" (128 segments): "deep"}`.
    let mut row: Value = sqlx::query_scalar(
        "SELECT data FROM records WHERE scope_id = 'retail' AND collection = 'products' AND key = 'r-sugar-1kg'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    let mut deep = json!("deep");
    for _ in 0..127 {
        deep = json!({ "x": deep });
    }
    row["x"] = deep;
    let write = |data| dukasync::store::changes::RowWrite {
        collection: "products".into(),
        key: "r-sugar-1kg".into(),
        data,
    };
    app.write("retail", vec![write(Some(row))]).await;
    let snapshot = "/v1/scopes/retail/reference/products";
    assert_eq!(
        app.get(snapshot, Some(&cashier.token)).await.status(),
        StatusCode::INTERNAL_SERVER_ERROR,
        "the damage the repair is for"
    );

    let head_before: i64 = sqlx::query_scalar("SELECT head_version FROM scopes WHERE id = 'retail'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let msgpack_feed = app
        .http
        .get(app.url("/v1/scopes/retail/changes?since=0&collections=products&limit=1000"))
        .bearer_auth(&cashier.token)
        .header("accept", "application/msgpack")
        .send()
        .await
        .unwrap();
    // The feed passes stored JSON through as text, but its MessagePack form parses it: the old change in the log
    // still breaks it until compaction drops that change (the runbook's second step).
    assert_eq!(msgpack_feed.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let repair = include_str!("../../deploy/sql/repair-deep-rows.sql");
    sqlx::raw_sql(repair).execute(&app.db).await.unwrap();
    sqlx::raw_sql(repair).execute(&app.db).await.unwrap(); // again: nothing left to do
    for device in [&owner, &cashier] {
        assert_eq!(app.get(snapshot, Some(&device.token)).await.status(), StatusCode::OK);
    }
    let sale = command(
        1,
        "record_sale",
        "after-repair",
        json!({"lines": [{"product_id": "r-sugar-1kg", "quantity": "1", "unit_price": "180.00"}],
               "payments": [{"method": "cash", "amount": "180.00"}]}),
    );
    let put = json!({"seq": 2, "id": Uuid::new_v4(), "type": "put", "collection": "products", "key": "r-sugar-1kg",
                     "data": {"id": "r-sugar-1kg", "name": "Sugar 1 kg", "price": "180.00"}});
    let answer = owner.push(&[sale, put]).await;
    let outcomes: Vec<(OpStatus, Option<&str>)> =
        answer.results.iter().map(|r| (r.status, r.code.as_deref())).collect();
    // The sale of a product the server no longer knows is applied and flagged (§10.1), then the owner re-enters it.
    assert_eq!(
        outcomes,
        [(OpStatus::Conflict, None), (OpStatus::Applied, None)],
        "{answer:?}"
    );
    let drift: i64 = sqlx::query_scalar(
        r#"SELECT count(*) FROM collection_state s
            LEFT JOIN (SELECT scope_id, collection, sum(row_hash) % 4294967296 AS checksum, count(*) AS n
                         FROM records GROUP BY 1, 2) r USING (scope_id, collection)
            WHERE s.checksum <> coalesce(r.checksum, 0) OR s.row_count <> coalesce(r.n, 0)"#,
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(drift, 0, "collection checksums and counts equal the rows'");
    let page: ChangesPage = app
        .get(
            &format!("/v1/scopes/retail/changes?since={head_before}&collections=products"),
            Some(&cashier.token),
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(page
        .changes
        .iter()
        .any(|c| c.key == "r-sugar-1kg" && c.op == dukasync::wire::ChangeOp::Delete));

    // `dukasync compact --scope retail --below <head>` drops the superseded deep change from the log.
    let head: i64 = sqlx::query_scalar("SELECT head_version FROM scopes WHERE id = 'retail'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let mut tx = app.db.begin().await.unwrap();
    let scope = dukasync::domain::ScopeId::parse("retail").unwrap();
    dukasync::store::changes::compact(&mut tx, &scope, head)
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    let bytes = app
        .get_msgpack(
            "/v1/scopes/retail/changes?since=0&collections=products&limit=1000",
            &cashier.token,
        )
        .await;
    let page: ChangesPage =
        serde::Deserialize::deserialize(&mut rmp_serde::Deserializer::new(&bytes[..]).with_human_readable()).unwrap();
    let sugar = page.changes.iter().rev().find(|c| c.key == "r-sugar-1kg").unwrap();
    assert_eq!(
        sugar.data.as_ref().unwrap()["name"],
        "Sugar 1 kg",
        "the re-entered row, readable"
    );
}
