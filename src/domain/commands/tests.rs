use super::*;
use serde_json::{json, Value};

fn code(name: &str, args: Value) -> &'static str {
    parse(name, &args).unwrap_err().code.as_str()
}

fn sale_args(payments: Value) -> Value {
    json!({"lines": [{"product_id": "p", "quantity": "3", "unit_price": "0.335", "discount": "0.00"}],
           "payments": payments})
}

#[test]
fn a_sale_totals_its_lines_in_cents_and_payments_must_match() {
    // 3 × 0.335 = 1.005 → 1.01 (half away from zero); but unit prices have at most 2 places.
    assert_eq!(code("record_sale", sale_args(json!([]))), "invalid_decimal");
    let args = json!({"lines": [{"product_id": "p", "quantity": "1.5", "unit_price": "0.35"}],
                      "payments": [{"method": "cash", "amount": "0.53"}]});
    let Command::RecordSale(sale) = parse("record_sale", &args).unwrap() else {
        panic!()
    };
    assert_eq!(sale.total.to_string(), "0.53"); // 0.525 rounds up
    let short = json!({"lines": [{"product_id": "p", "quantity": "2", "unit_price": "10.00"}],
                       "payments": [{"method": "cash", "amount": "19.99"}]});
    assert_eq!(code("record_sale", short), "payment_mismatch");
}

#[test]
fn bad_arguments_have_stable_codes() {
    let line = |q: &str, p: &str| {
        json!({"lines": [{"product_id": "p", "quantity": q, "unit_price": p}],
               "payments": [{"method": "cash", "amount": "1.00"}]})
    };
    assert_eq!(code("record_sale", line("0", "1.00")), "invalid_quantity");
    assert_eq!(code("record_sale", line("-1", "1.00")), "invalid_quantity");
    assert_eq!(code("record_sale", line("1", "1.0.0")), "invalid_decimal");
    assert_eq!(
        code(
            "record_sale",
            json!({"lines": [{"product_id": "p", "quantity": 1, "unit_price": "1"}],
        "payments": []})
        ),
        "invalid_arguments"
    );
    assert_eq!(
        code("record_sale", json!({"lines": [], "payments": [], "extra": 1})),
        "unknown_field"
    );
    assert_eq!(code("record_sale", json!([])), "invalid_arguments");
    assert_eq!(code("sell_everything", json!({})), "unknown_command");
    assert_eq!(
        code(
            "record_sale",
            json!({"lines": [{"product_id": "p", "quantity": "1", "unit_price": "5.00"}],
            "payments": [{"method": "credit", "amount": "5.00"}]})
        ),
        "customer_required"
    );
    assert_eq!(
        code(
            "record_sale",
            json!({"lines": [{"product_id": "p", "quantity": "1", "unit_price": "5.00"}],
            "payments": [{"method": "", "amount": "5.00"}]})
        ),
        "invalid_arguments"
    );
    assert_eq!(
        code(
            "record_cylinder_exchange",
            json!({"refill_product_id": "g", "quantity": "1", "unit_price": "1100.00",
            "deposit": "2600.00", "payments": [{"method": "cash", "amount": "3700.00"}]})
        ),
        "invalid_arguments"
    );
    assert_eq!(code("void_sale", json!({"reason": " "})), "invalid_arguments");
    assert_eq!(
        code(
            "adjust_stock",
            json!({"product_id": "p", "quantity": "0", "reason": "count"})
        ),
        "invalid_quantity"
    );
}

#[test]
fn every_named_command_parses() {
    let pay = json!([{"method": "mpesa", "amount": "3700.00", "reference": "QX1"}]);
    let cases = [
        (
            "record_sale",
            json!({"lines": [{"product_id": "p", "quantity": "1", "unit_price": "3700.00"}], "payments": pay}),
        ),
        (
            "void_sale",
            json!({"reason": "wrong item", "voided_at": "2026-11-25T10:00:00+03:00"}),
        ),
        (
            "receive_payment",
            json!({"customer_id": "c", "method": "cash", "amount": "10.00"}),
        ),
        (
            "record_expense",
            json!({"description": "Fuel", "method": "cash", "amount": "10.00"}),
        ),
        (
            "adjust_stock",
            json!({"product_id": "p", "quantity": "-2", "reason": "damaged", "unit_cost": "5.00"}),
        ),
        (
            "record_production",
            json!({"product_id": "w", "quantity": "40", "inputs": [{"product_id": "caps", "quantity": "40"}], "cost": "200.00"}),
        ),
        (
            "record_cylinder_exchange",
            json!({"refill_product_id": "g", "quantity": "1", "unit_price": "1100.00",
            "deposit": "2600.00", "cylinder_product_id": "cyl", "payments": pay}),
        ),
    ];
    assert_eq!(cases.len(), NAMES.len());
    for (name, args) in cases {
        let command = parse(name, &args).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        // The name metrics label it with (`dukasync_operations_total{command}`) is its name on the wire.
        assert_eq!(command.name(), name);
    }
}
