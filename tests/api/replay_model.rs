//! A property test of replay against a model: several devices make random operations (customer edits, sales,
//! voids, customer payments), and deliver their outboxes in random, overlapping, re-batched and repeated pieces.
//! After every delivery the server's answer must be the one the model predicts (gap, duplicate, applied,
//! conflict, rejected), and at the end the server's customers, stock and account balances equal the model's and
//! every journal entry balances.
//!
//! `PROPTEST_CASES` sets the number of cases (default 12: each case is a fresh database and server).

use crate::common::*;
use dukasync::wire::{OpStatus, OpsResponse};
use proptest::prelude::*;
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use uuid::Uuid;

const PRODUCTS: &[(&str, i64)] = &[
    ("r-sugar-1kg", 180),
    ("r-milk-500", 65),
    ("r-bread-400", 70),
    ("r-lpg-6kg-refill", 1100),
];
const DEVICES: &[(&str, &str)] = &[
    (SHOP_CASHIER, "shop-till"),
    (MANAGER, "manager-phone"),
    (OWNER, "owner-phone"),
];

#[derive(Debug, Clone)]
enum Op {
    PutCustomer {
        key: u8,
        name: u8,
    },
    DeleteCustomer {
        key: u8,
    },
    Sale {
        product: usize,
        quantity: i64,
        stale: bool,
        mpesa: bool,
    },
    Void {
        device: usize,
        sale: u8,
    },
    Payment {
        amount: i64,
        mpesa: bool,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..3u8, 0..5u8).prop_map(|(key, name)| Op::PutCustomer { key, name }),
        1 => (0..3u8).prop_map(|key| Op::DeleteCustomer { key }),
        3 => (0..PRODUCTS.len(), 1..40i64, prop::bool::weighted(0.2), any::<bool>())
            .prop_map(|(product, quantity, stale, mpesa)| Op::Sale { product, quantity, stale, mpesa }),
        1 => (0..DEVICES.len(), 0..8u8).prop_map(|(device, sale)| Op::Void { device, sale }),
        1 => (1..500i64, any::<bool>()).prop_map(|(amount, mpesa)| Op::Payment { amount, mpesa }),
    ]
}

/// A delivery: `len` operations of `device`'s outbox starting at index `start` (clamped to the outbox).
#[derive(Debug, Clone)]
struct Delivery {
    device: usize,
    start: usize,
    len: usize,
}

#[derive(Debug, Clone)]
struct Case {
    outboxes: Vec<Vec<Op>>,
    deliveries: Vec<Delivery>,
}

fn case_strategy() -> impl Strategy<Value = Case> {
    let outboxes = prop::collection::vec(prop::collection::vec(op_strategy(), 1..10), DEVICES.len());
    let deliveries = prop::collection::vec(
        (0..DEVICES.len(), 0..10usize, 1..6usize).prop_map(|(device, start, len)| Delivery { device, start, len }),
        0..16,
    );
    (outboxes, deliveries).prop_map(|(outboxes, deliveries)| Case { outboxes, deliveries })
}

fn sale_key(device: usize, seq: usize) -> String {
    format!("d{device}-s{seq}")
}

fn method(mpesa: bool) -> &'static str {
    if mpesa {
        "mpesa"
    } else {
        "cash"
    }
}

/// The wire form of a device's `index`-th operation (sequence `index + 1`); ids are fixed per case.
fn wire(device: usize, index: usize, op: &Op, id: Uuid) -> Value {
    let seq = index as i64 + 1;
    let cmd = |name: &str, key: String, args: Value| json!({"seq": seq, "id": id, "type": "command", "command": name, "key": key, "args": args});
    match op {
        Op::PutCustomer { key, name } => json!({"seq": seq, "id": id, "type": "put", "collection": "customers",
            "key": format!("m-c{key}"), "data": {"id": format!("m-c{key}"), "name": format!("name-{name}")}}),
        Op::DeleteCustomer { key } => {
            json!({"seq": seq, "id": id, "type": "delete", "collection": "customers", "key": format!("m-c{key}")})
        }
        Op::Sale {
            product,
            quantity,
            stale,
            mpesa,
        } => {
            let (product_id, price) = PRODUCTS[*product];
            let price = price + if *stale { 10 } else { 0 };
            cmd(
                "record_sale",
                sale_key(device, index + 1),
                json!({"lines": [{"product_id": product_id, "quantity": quantity.to_string(),
                                  "unit_price": format!("{price}.00")}],
                       "payments": [{"method": method(*mpesa), "amount": format!("{}.00", price * quantity)}]}),
            )
        }
        Op::Void { device: of, sale } => cmd("void_sale", sale_key(*of, *sale as usize), json!({"reason": "model"})),
        Op::Payment { amount, mpesa } => cmd(
            "receive_payment",
            format!("d{device}-p{seq}"),
            json!({"customer_id": "retail-cust-1", "method": method(*mpesa), "amount": format!("{amount}.00")}),
        ),
    }
}

/// What the server should hold, and the status each operation should get.
#[derive(Default)]
struct Model {
    last: Vec<usize>,
    customers: BTreeMap<String, String>,
    stock: BTreeMap<&'static str, i64>,
    balances: BTreeMap<&'static str, i64>,
    /// sale key → (product, quantity, amount, method account, voided)
    sales: BTreeMap<String, (&'static str, i64, i64, &'static str, bool)>,
    /// The status each applied operation got, per device.
    statuses: Vec<Vec<OpStatus>>,
}

impl Model {
    fn new() -> Model {
        Model {
            last: vec![0; DEVICES.len()],
            stock: PRODUCTS.iter().map(|(p, _)| (*p, 100)).collect(),
            statuses: vec![Vec::new(); DEVICES.len()],
            ..Model::default()
        }
    }

    fn post(&mut self, debit: &'static str, credit: &'static str, amount: i64) {
        *self.balances.entry(debit).or_default() += amount;
        *self.balances.entry(credit).or_default() -= amount;
    }

    fn apply(&mut self, device: usize, index: usize, op: &Op) -> OpStatus {
        let account = |mpesa: bool| if mpesa { "1010" } else { "1000" };
        match op {
            Op::PutCustomer { key, name } => {
                self.customers.insert(format!("m-c{key}"), format!("name-{name}"));
                OpStatus::Applied
            }
            Op::DeleteCustomer { key } => {
                self.customers.remove(&format!("m-c{key}"));
                OpStatus::Applied
            }
            Op::Sale {
                product,
                quantity,
                stale,
                mpesa,
            } => {
                let (product_id, price) = PRODUCTS[*product];
                let price = price + if *stale { 10 } else { 0 };
                let stock = self.stock.get_mut(product_id).unwrap();
                *stock -= quantity;
                let oversold = *stock < 0;
                self.post(account(*mpesa), "4000", price * quantity);
                self.sales.insert(
                    sale_key(device, index + 1),
                    (product_id, *quantity, price * quantity, account(*mpesa), false),
                );
                if *stale || oversold {
                    OpStatus::Conflict
                } else {
                    OpStatus::Applied
                }
            }
            Op::Void { device: of, sale } => match self.sales.get_mut(&sale_key(*of, *sale as usize)) {
                Some(s) if !s.4 => {
                    s.4 = true;
                    let (product, quantity, amount, account) = (s.0, s.1, s.2, s.3);
                    *self.stock.get_mut(product).unwrap() += quantity;
                    self.post("4000", account, amount);
                    OpStatus::Applied
                }
                _ => OpStatus::Rejected,
            },
            Op::Payment { amount, mpesa } => {
                self.post(account(*mpesa), "1100", *amount);
                OpStatus::Applied
            }
        }
    }
}

async fn deliver(devices: &[Device<'_>], ids: &[Vec<Uuid>], case: &Case, model: &mut Model, d: &Delivery) {
    let outbox = &case.outboxes[d.device];
    let start = d.start.min(outbox.len() - 1);
    let end = (start + d.len).min(outbox.len());
    let ops: Vec<Value> = (start..end)
        .map(|i| wire(d.device, i, &outbox[i], ids[d.device][i]))
        .collect();
    let device = &devices[d.device];
    let resp = device
        .send_raw(json!({"client_id": device.client_id, "ops": ops}))
        .await;
    let last = model.last[d.device];
    if start > last {
        assert_eq!(resp.status(), StatusCode::CONFLICT, "a gap: {d:?} after {last}");
        return;
    }
    assert_eq!(resp.status(), StatusCode::OK, "{d:?}");
    let answer: OpsResponse = resp.json().await.unwrap();
    for (i, result) in (start..end).zip(&answer.results) {
        if i < last {
            assert_eq!(result.status, OpStatus::Duplicate);
            assert_eq!(result.original, Some(model.statuses[d.device][i]));
        } else {
            let expected = model.apply(d.device, i, &outbox[i]);
            model.statuses[d.device].push(expected);
            assert_eq!(result.status, expected, "device {} op {i}: {:?}", d.device, outbox[i]);
        }
    }
    model.last[d.device] = model.last[d.device].max(end);
    assert_eq!(answer.last_seq as usize, model.last[d.device]);
}

async fn run(case: Case) {
    let app = TestApp::start().await;
    let mut devices = Vec::new();
    for (email, name) in DEVICES {
        devices.push(Device::new(&app, email, name, "retail").await);
    }
    let ids: Vec<Vec<Uuid>> = case
        .outboxes
        .iter()
        .map(|o| o.iter().map(|_| Uuid::new_v4()).collect())
        .collect();
    let mut model = Model::new();
    let flush = (0..DEVICES.len()).map(|device| Delivery {
        device,
        start: 0,
        len: usize::MAX / 2,
    });
    for d in case.deliveries.iter().cloned().chain(flush) {
        deliver(&devices, &ids, &case, &mut model, &d).await;
    }

    let customers: BTreeMap<String, String> = sqlx::query_as(
        "SELECT key, data->>'name' FROM records WHERE scope_id = 'retail' AND collection = 'customers' AND key LIKE 'm-c%'",
    )
    .fetch_all(&app.db)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(customers, model.customers);
    for (product, expected) in &model.stock {
        let (sum, published): (Decimal, Option<String>) = sqlx::query_as(
            r#"SELECT (SELECT coalesce(sum(quantity), 0) FROM stock_movements WHERE scope_id = 'retail' AND product_id = $1),
                      (SELECT data->>'quantity' FROM records WHERE scope_id = 'retail' AND collection = 'stock_levels' AND key = $1)"#,
        )
        .bind(product)
        .fetch_one(&app.db)
        .await
        .unwrap();
        assert_eq!(sum, Decimal::from(*expected), "{product}");
        assert_eq!(published.map(|p| p.parse::<Decimal>().unwrap()), Some(sum), "{product}");
    }
    let balances: BTreeMap<String, Decimal> = sqlx::query_as(
        "SELECT account, sum(debit - credit) FROM journal_lines WHERE scope_id = 'retail' GROUP BY account",
    )
    .fetch_all(&app.db)
    .await
    .unwrap()
    .into_iter()
    .collect();
    for account in ["1000", "1010", "1100", "4000"] {
        let expected = Decimal::from(model.balances.get(account).copied().unwrap_or(0));
        assert_eq!(
            balances.get(account).copied().unwrap_or_default(),
            expected,
            "account {account}"
        );
    }
    let unbalanced: i64 = sqlx::query_scalar(
        r#"SELECT count(*) FROM (SELECT entry_id FROM journal_lines GROUP BY scope_id, entry_id
             HAVING sum(debit) <> sum(credit) OR count(*) < 2) x"#,
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(unbalanced, 0);
    app.stop().await.unwrap();
}

#[test]
fn replay_matches_the_model() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(12);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    });
    runner
        .run(&case_strategy(), |case| {
            runtime.block_on(run(case));
            Ok(())
        })
        .unwrap();
}
