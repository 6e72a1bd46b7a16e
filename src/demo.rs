//! Demo data: the owner's three businesses (water packaging, laundry, retail shop with LPG), their reference
//! data, users and devices. Loading twice changes nothing: accounts are upserted and a scope's rows are seeded
//! only while its feed is empty. Rows are written through the change log like any other change.

use crate::{
    domain::{Role, ScopeId},
    setup,
    store::{
        accounts,
        changes::{self, RowWrite},
        ledger::{self, Movement},
    },
};
use anyhow::Context;
use serde_json::{json, Value};
use sqlx::PgPool;

struct Business {
    id: &'static str,
    name: &'static str,
    /// (id, name, unit, price, reorder level)
    products: &'static [(&'static str, &'static str, &'static str, &'static str, &'static str)],
}

const BUSINESSES: &[Business] = &[
    Business {
        id: "water",
        name: "Maji Safi Water Packaging",
        products: &[
            (
                "w-500ml",
                "Bottled water 500 ml (carton of 24)",
                "carton",
                "480.00",
                "20",
            ),
            ("w-1l", "Bottled water 1 L (carton of 12)", "carton", "420.00", "20"),
            ("w-5l", "Bottled water 5 L", "bottle", "150.00", "30"),
            ("w-refill-20l", "Refill 20 L", "refill", "100.00", "0"),
            ("w-jerrycan-20l", "20 L jerrycan, new", "piece", "350.00", "10"),
        ],
    },
    Business {
        id: "laundry",
        name: "Safi Laundry",
        products: &[
            ("l-wash-kg", "Wash and fold, per kg", "kg", "120.00", "0"),
            ("l-duvet", "Duvet, any size", "piece", "500.00", "0"),
            ("l-suit", "Suit dry clean", "piece", "450.00", "0"),
            ("l-iron", "Ironing, per piece", "piece", "30.00", "0"),
            ("l-detergent", "Detergent 5 kg (supplies)", "bag", "1150.00", "2"),
        ],
    },
    Business {
        id: "retail",
        name: "Duka Retail & LPG",
        products: &[
            ("r-sugar-1kg", "Sugar 1 kg", "packet", "180.00", "24"),
            ("r-maize-2kg", "Maize flour 2 kg", "packet", "165.00", "24"),
            ("r-milk-500", "Fresh milk 500 ml", "packet", "65.00", "30"),
            ("r-bread-400", "Bread 400 g", "loaf", "70.00", "20"),
            ("r-lpg-6kg-refill", "LPG 6 kg refill", "refill", "1100.00", "5"),
            ("r-lpg-13kg-refill", "LPG 13 kg refill", "refill", "2900.00", "3"),
            (
                "r-lpg-6kg-cylinder",
                "LPG 6 kg cylinder (deposit)",
                "cylinder",
                "2600.00",
                "2",
            ),
        ],
    },
];

struct Person {
    email: &'static str,
    name: &'static str,
    roles: &'static [(&'static str, Role)],
    device: &'static str,
}

const fn person(
    email: &'static str,
    name: &'static str,
    roles: &'static [(&'static str, Role)],
    device: &'static str,
) -> Person {
    Person {
        email,
        name,
        roles,
        device,
    }
}

const PEOPLE: &[Person] = &[
    person(
        "owner@duka.test",
        "Amina Wanjiru",
        &[
            ("water", Role::Owner),
            ("laundry", Role::Owner),
            ("retail", Role::Owner),
        ],
        "owner-phone",
    ),
    person(
        "manager@duka.test",
        "Brian Otieno",
        &[("laundry", Role::Manager), ("retail", Role::Manager)],
        "manager-phone",
    ),
    person(
        "cashier.water@duka.test",
        "Faith Njeri",
        &[("water", Role::Cashier)],
        "water-counter",
    ),
    person(
        "cashier.shop@duka.test",
        "Kevin Mutua",
        &[("retail", Role::Cashier)],
        "shop-till",
    ),
];

/// The email of the demo owner, whose token `deploy/dev up` prints.
pub const OWNER_EMAIL: &str = "owner@duka.test";

pub async fn load(db: &PgPool) -> anyhow::Result<()> {
    for business in BUSINESSES {
        let scope = ScopeId::parse(business.id).context("demo scope id")?;
        accounts::ensure_scope(db, &scope, business.name).await?;
    }
    for p in PEOPLE {
        let user = accounts::ensure_user(db, p.email, p.name).await?;
        for (scope, role) in p.roles {
            accounts::set_role(db, user, &ScopeId::parse(scope).context("demo scope id")?, *role).await?;
        }
        accounts::ensure_device(db, user, p.device).await?;
    }
    for business in BUSINESSES {
        let scope = ScopeId::parse(business.id).context("demo scope id")?;
        let mut tx = db.begin().await?;
        // Lock the scope row so two concurrent loads cannot both seed.
        let head = changes::lock_scope(&mut tx, &scope)
            .await?
            .context("the demo scope was just created")?;
        if head == 0 {
            changes::append(&mut tx, &scope, &rows(business)).await?;
            ledger::insert_movements(&mut tx, &scope, &opening_stock(business)).await?;
        }
        tx.commit().await?;
    }
    Ok(())
}

/// Stock on hand of every stock-tracked demo product: one opening movement each, so stock is the sum of its
/// movements from the start.
const OPENING_STOCK: u32 = 100;

fn opening_stock(business: &Business) -> Vec<Movement> {
    business
        .products
        .iter()
        .filter(|(.., reorder)| *reorder != "0")
        .map(|(id, ..)| Movement {
            id: uuid::Uuid::new_v4(),
            product_id: id.to_string(),
            quantity: OPENING_STOCK.into(),
            reason: "opening",
            source_collection: "stock_levels",
            source_key: id.to_string(),
            op_id: None,
        })
        .collect()
}

fn row(collection: &str, data: Value) -> RowWrite {
    let key = data["id"].as_str().expect("demo rows have string ids").to_string();
    RowWrite {
        collection: collection.to_string(),
        key,
        data: Some(data),
    }
}

fn rows(business: &Business) -> Vec<RowWrite> {
    // The same payment methods and chart of accounts as every new scope (`scope-add`).
    let mut out = setup::starter_rows();
    out.push(row(
        "tax_rates",
        json!({"id": "vat-16", "name": "VAT 16%", "rate": "0.16"}),
    ));
    out.push(row(
        "tax_rates",
        json!({"id": "exempt", "name": "Exempt", "rate": "0.00"}),
    ));
    let mut price_items = Vec::new();
    for (id, name, unit, price, reorder) in business.products {
        // Services (a reorder level of 0) keep no stock.
        let track_stock = *reorder != "0";
        out.push(row(
            "products",
            json!({
                "id": id, "name": name, "unit": unit, "price": price, "reorder_level": reorder, "tax_rate": "exempt",
                "active": true, "track_stock": track_stock
            }),
        ));
        if track_stock {
            out.push(row(
                "stock_levels",
                json!({"id": id, "product_id": id, "quantity": OPENING_STOCK.to_string()}),
            ));
        }
        price_items.push(json!({"product_id": id, "price": price}));
    }
    out.push(row(
        "price_lists",
        json!({"id": "standard", "name": "Standard prices", "currency": "KES", "items": price_items}),
    ));
    for (id, name, phone) in [
        ("cust-1", "Mama Njoki", "+254700000001"),
        ("cust-2", "Hotel Baraka", "+254700000002"),
    ] {
        out.push(row(
            "customers",
            json!({"id": format!("{}-{id}", business.id), "name": name, "phone": phone, "credit_limit": "5000.00"}),
        ));
    }
    out
}
