//! The dashboard summary: a sale is in the summary and in the feed as soon as its operation is acknowledged,
//! with every cache warm (feed windows in memory and Redis, snapshots, and the summary itself asked for just
//! before, so a summary cache keyed without the head version would answer the old figures).

use crate::common::*;
use dukasync::wire::{ChangesPage, OpStatus, OpsResponse, Summary};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use uuid::Uuid;

const DAY: &str = "day=2026-11-25&utc_offset_minutes=180";

async fn summary(app: &TestApp, token: &str, query: &str) -> Summary {
    let resp = app
        .get(&format!("/v1/scopes/retail/summary?{query}"), Some(token))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    resp.json().await.unwrap()
}

fn by_method(s: &Summary, method: &str) -> Decimal {
    dec(&s.sales_by_method.iter().find(|m| m.method == method).unwrap().amount)
}

async fn pull_to_head(app: &TestApp, token: &str, cursor: &str) -> (Vec<Value>, String) {
    let mut cursor = cursor.to_string();
    let mut changes = Vec::new();
    loop {
        let page: ChangesPage = app
            .get(
                &format!("/v1/scopes/retail/changes?since={cursor}&limit=7"),
                Some(token),
            )
            .await
            .json()
            .await
            .unwrap();
        changes.extend(page.changes.iter().map(|c| serde_json::to_value(c).unwrap()));
        cursor = page.cursor;
        if !page.has_more {
            return (changes, cursor);
        }
    }
}

#[tokio::test]
async fn a_sale_is_in_the_summary_and_the_feed_as_soon_as_it_is_acknowledged_with_every_cache_warm() {
    let redis = RedisProcess::start();
    let app = TestApp::start_with(&[("DUKASYNC_REDIS_URL", &redis.url()), ("DUKASYNC_CACHE_WINDOW", "4")]).await;
    let owner = app.token(OWNER, "owner-phone").await;
    let till = app.token(SHOP_CASHIER, "shop-counter").await;
    let client_id = Uuid::new_v4();
    let (_, mut cursor) = pull_to_head(&app, &owner, "0").await;

    for seq in 1..=5i64 {
        // Warm everything: the feed from the start (windows) and from the device's cursor, the snapshots,
        // and the summary itself, twice.
        pull_to_head(&app, &owner, "0").await;
        pull_to_head(&app, &owner, "0").await;
        for dataset in ["products", "price_lists"] {
            assert_eq!(
                app.get(&format!("/v1/scopes/retail/reference/{dataset}"), Some(&owner))
                    .await
                    .status(),
                StatusCode::OK
            );
        }
        summary(&app, &owner, DAY).await;
        let before = summary(&app, &owner, DAY).await;

        // 16 × 180.00 = 2880.00: 1000 cash, 880 M-Pesa, 1000 on the customer's account.
        let key = format!("sale-{seq}");
        let op = json!({"seq": seq, "id": Uuid::new_v4(), "type": "command", "command": "record_sale", "key": key,
            "args": {"sold_at": "2026-11-25T10:00:00+03:00", "customer_id": "retail-cust-1",
                     "lines": [{"product_id": "r-sugar-1kg", "quantity": "16", "unit_price": "180.00"}],
                     "payments": [{"method": "cash", "amount": "1000.00"}, {"method": "mpesa", "amount": "880.00"},
                                  {"method": "credit", "amount": "1000.00"}]}});
        let resp = app
            .http
            .post(app.url("/v1/scopes/retail/ops"))
            .bearer_auth(&till)
            .json(&json!({"client_id": client_id, "ops": [op]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let ack: OpsResponse = resp.json().await.unwrap();
        assert_eq!(ack.results[0].status, OpStatus::Applied, "{ack:?}");
        let last_version = *ack.results[0].versions.iter().max().unwrap();

        // Right after the acknowledgement: the summary has it ...
        let after = summary(&app, &owner, DAY).await;
        assert!(after.version >= last_version, "{} < {last_version}", after.version);
        assert_eq!(dec(&after.revenue) - dec(&before.revenue), dec("2880.00"));
        assert_eq!(by_method(&after, "cash") - by_method(&before, "cash"), dec("1000"));
        assert_eq!(by_method(&after, "mpesa") - by_method(&before, "mpesa"), dec("880"));
        assert_eq!(by_method(&after, "credit") - by_method(&before, "credit"), dec("1000"));
        assert_eq!(dec(&after.balances.cash) - dec(&before.balances.cash), dec("1000"));
        assert_eq!(dec(&after.balances.mpesa) - dec(&before.balances.mpesa), dec("880"));
        assert_eq!(
            dec(&after.balances.receivables) - dec(&before.balances.receivables),
            dec("1000")
        );
        // 100 opening stock, reorder level 24: low after the fifth sale (20 left), not before (36).
        let sugar = after.low_stock.iter().find(|i| i.product_id == "r-sugar-1kg");
        match seq {
            5 => assert_eq!(sugar.map(|i| i.quantity.as_str()), Some("20"), "{:?}", after.low_stock),
            _ => assert!(sugar.is_none(), "{:?}", after.low_stock),
        }

        // ... and so does the feed, from the device's cursor.
        let (changes, next) = pull_to_head(&app, &owner, &cursor).await;
        assert!(
            changes
                .iter()
                .any(|c| c["collection"] == "sales" && c["key"] == key.as_str()),
            "sale {key} missing from the feed"
        );
        assert!(changes.iter().any(|c| c["version"] == last_version));
        cursor = next;
    }
    // The caches were warm indeed.
    let report: Value = app.get("/v1/admin/cache", Some(&owner)).await.json().await.unwrap();
    let hits = |name: &str| {
        let c = report["caches"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["cache"] == name)
            .unwrap();
        c["memory_hits"].as_u64().unwrap() + c["redis_hits"].as_u64().unwrap()
    };
    assert!(hits("window") > 0 && hits("snapshot_pointer") > 0, "{report}");

    // Another day has none of it.
    let other = summary(&app, &owner, "day=2026-11-24&utc_offset_minutes=180").await;
    assert_eq!(other.revenue, "0.00");
    assert!(other.sales_by_method.iter().all(|m| m.amount == "0.00"));
    // Balances are not per day: the same on any day asked.
    let today = summary(&app, &owner, DAY).await;
    assert_eq!(other.balances, today.balances);
}

#[tokio::test]
async fn the_summary_is_for_owners_and_managers_and_refuses_bad_days() {
    let app = TestApp::start().await;
    let cashier = app.token(SHOP_CASHIER, "shop-counter").await;
    let manager = app.token(MANAGER, "manager-phone").await;
    let resp = app.get("/v1/scopes/retail/summary", Some(&cashier)).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = app.get("/v1/scopes/laundry/summary", Some(&manager)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let s: Summary = resp.json().await.unwrap();
    assert_eq!(s.revenue, "0.00");
    assert_eq!(s.sales_by_method.len(), 4);
    for query in [
        "day=2026-02-30",
        "day=yesterday",
        "utc_offset_minutes=900",
        "utc_offset_minutes=x",
        "nope=1",
    ] {
        let resp = app
            .get(&format!("/v1/scopes/laundry/summary?{query}"), Some(&manager))
            .await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{query}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_query", "{query}");
    }
}
