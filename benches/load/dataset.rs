//! The benchmark's data set, written straight through `store::changes::append` in big transactions:
//! the three demo businesses, a 2,000-product catalogue and a sales history that brings the largest scope
//! (`retail`) to [`BIG_SCOPE_CHANGES`] changes; `water` and `laundry` get smaller histories.
//! Every product is stocked generously so benchmark sales never oversell.

use anyhow::Context;
use dukasync::{
    auth::NewToken,
    demo,
    domain::ScopeId,
    store::{
        accounts,
        changes::{self, RowWrite},
        ledger::{self, Movement},
        tokens,
    },
};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sqlx::PgPool;

pub const BIG_SCOPE: &str = "retail";
pub const BIG_SCOPE_CHANGES: i64 = 100_000;
pub const CATALOGUE: usize = 2_000;
/// Changes per `append` transaction while loading.
const BATCH: usize = 5_000;
const STOCK: i64 = 10_000_000;

/// A product a benchmark device may sell: (scope, id, price).
#[derive(Clone)]
pub struct Sellable {
    pub scope: String,
    pub product: String,
    pub price: String,
}

pub struct Loaded {
    pub heads: Vec<(String, i64)>,
    pub sellable: Vec<Sellable>,
    /// One token per simulated device; all belong to the demo owner (a role in every scope).
    pub tokens: Vec<String>,
}

pub async fn load(db: &PgPool, devices: usize) -> anyhow::Result<Loaded> {
    demo::load(db).await?;
    let retail = scope(BIG_SCOPE)?;
    let mut writes = catalogue();
    writes.extend(customers("retail", 500));
    history_to(db, &retail, writes, BIG_SCOPE_CHANGES).await?;
    history_to(db, &scope("water")?, customers("water", 200), 20_000).await?;
    history_to(db, &scope("laundry")?, customers("laundry", 100), 5_000).await?;
    let sellable = stock_everything(db).await?;
    let tokens = issue_tokens(db, devices).await?;
    let heads = dukasync::store::scope_heads(db).await?;
    Ok(Loaded {
        heads,
        sellable,
        tokens,
    })
}

fn scope(id: &str) -> anyhow::Result<ScopeId> {
    ScopeId::parse(id).context("bench scope id")
}

fn row(collection: &str, data: Value) -> RowWrite {
    RowWrite {
        collection: collection.into(),
        key: data["id"].as_str().expect("rows have ids").to_string(),
        data: Some(data),
    }
}

fn catalogue() -> Vec<RowWrite> {
    (0..CATALOGUE)
        .map(|i| {
            row(
                "products",
                json!({"id": format!("r-item-{i:04}"), "name": format!("Catalogue item {i} (pack of {})", 1 + i % 24),
                       "unit": "piece", "price": format!("{}.00", 20 + (i * 37) % 2_000), "reorder_level": "10",
                       "tax_rate": if i % 3 == 0 { "vat-16" } else { "exempt" }, "active": true, "track_stock": true,
                       "barcode": format!("61640{:08}", i * 7919)}),
            )
        })
        .collect()
}

fn customers(scope: &str, n: usize) -> Vec<RowWrite> {
    (0..n)
        .map(|i| {
            row(
                "customers",
                json!({"id": format!("{scope}-bench-cust-{i}"), "name": format!("Customer {i}"),
                       "phone": format!("+2547{:08}", i), "credit_limit": "5000.00"}),
            )
        })
        .collect()
}

/// The four rows a sale leaves in the feed: the sale, its journal entry, a stock movement, the new level.
fn sale_rows(scope: &str, n: usize) -> [RowWrite; 4] {
    let product = format!("r-item-{:04}", n % CATALOGUE);
    let sale = format!("{scope}-hist-sale-{n}");
    let entry = format!("{sale}-je");
    let amount = format!("{}.00", 20 + (n * 37) % 2_000);
    [
        row(
            "sales",
            json!({"id": sale, "sold_at": "2026-11-25T09:30:00+03:00", "status": "completed", "total": amount,
                   "lines": [{"product_id": product, "quantity": "1", "unit_price": amount, "amount": amount}],
                   "payments": [{"method": "cash", "amount": amount}], "device": "till-1"}),
        ),
        row(
            "journal_entries",
            json!({"id": entry, "posted_at": "2026-11-25T09:30:00+03:00", "source": format!("sales/{sale}"),
                   "lines": [{"account": "1000", "debit": amount, "credit": "0.00"},
                             {"account": "4000", "debit": "0.00", "credit": amount}]}),
        ),
        row(
            "stock_movements",
            json!({"id": format!("{sale}-mv"), "product_id": product, "quantity": "-1", "reason": "sale",
                   "source": format!("sales/{sale}")}),
        ),
        row(
            "stock_levels",
            json!({"id": product, "product_id": product, "quantity": format!("{}", 1_000 - (n / CATALOGUE) as i64)}),
        ),
    ]
}

/// Appends `first` and then sale histories until the scope's head reaches `target`.
async fn history_to(db: &PgPool, scope: &ScopeId, first: Vec<RowWrite>, target: i64) -> anyhow::Result<()> {
    let (mut head, _) = changes::bounds(db, scope).await?.context("scope exists")?;
    let mut pending = first;
    let mut n = 0;
    loop {
        while (head + pending.len() as i64) < target && pending.len() < BATCH {
            pending.extend(sale_rows(scope.as_str(), n));
            n += 1;
        }
        pending.truncate((target - head).max(0) as usize);
        if pending.is_empty() {
            return Ok(());
        }
        let mut tx = db.begin().await?;
        changes::append(&mut tx, scope, &pending)
            .await?
            .context("scope exists")?;
        tx.commit().await?;
        head += pending.len() as i64;
        pending.clear();
    }
}

/// Gives every stock-tracked product of every scope a large opening stock; returns what can be sold, at its
/// current price.
async fn stock_everything(db: &PgPool) -> anyhow::Result<Vec<Sellable>> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT scope_id, key, data->>'price' FROM records WHERE collection = 'products' AND data->>'price' IS NOT NULL ORDER BY scope_id, key",
    )
    .fetch_all(db)
    .await?;
    let mut tx = db.begin().await?;
    for (scope_id, group) in ["laundry", "retail", "water"].map(|s| (s, rows.iter().filter(move |r| r.0 == s))) {
        let movements: Vec<Movement> = group
            .map(|(_, product, _)| Movement {
                id: uuid::Uuid::new_v4(),
                product_id: product.clone(),
                quantity: Decimal::from(STOCK),
                reason: "opening",
                source_collection: "stock_levels",
                source_key: product.clone(),
                op_id: None,
            })
            .collect();
        ledger::insert_movements(&mut tx, &scope(scope_id)?, &movements).await?;
    }
    tx.commit().await?;
    Ok(rows
        .into_iter()
        .map(|(scope, product, price)| Sellable { scope, product, price })
        .collect())
}

async fn issue_tokens(db: &PgPool, devices: usize) -> anyhow::Result<Vec<String>> {
    let owner = accounts::user_by_email(db, demo::OWNER_EMAIL)
        .await?
        .context("demo owner")?;
    let mut out = Vec::with_capacity(devices);
    for i in 0..devices {
        let device = accounts::ensure_device(db, owner, &format!("bench-device-{i}")).await?;
        let token = NewToken::generate();
        tokens::insert(db, device, &token.hash, "bench").await?;
        out.push(token.plaintext);
    }
    Ok(out)
}
