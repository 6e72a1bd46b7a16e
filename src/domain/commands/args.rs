//! The argument shapes of the commands as they arrive; decimals are strings, parsed in `parse.rs` with their own
//! error codes.

use crate::domain::money::PaymentMethod;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SaleLineArgs {
    pub(super) product_id: String,
    pub(super) quantity: String,
    pub(super) unit_price: String,
    #[serde(default)]
    pub(super) discount: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PaymentArgs {
    pub(super) method: PaymentMethod,
    pub(super) amount: String,
    #[serde(default)]
    pub(super) reference: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SaleArgs {
    #[serde(default)]
    pub(super) sold_at: Option<String>,
    #[serde(default)]
    pub(super) customer_id: Option<String>,
    pub(super) lines: Vec<SaleLineArgs>,
    pub(super) payments: Vec<PaymentArgs>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VoidArgs {
    pub(super) reason: String,
    #[serde(default)]
    pub(super) voided_at: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CustomerPaymentArgs {
    pub(super) customer_id: String,
    pub(super) method: PaymentMethod,
    pub(super) amount: String,
    #[serde(default)]
    pub(super) reference: Option<String>,
    #[serde(default)]
    pub(super) received_at: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExpenseArgs {
    #[serde(default)]
    pub(super) account: Option<String>,
    pub(super) description: String,
    pub(super) method: PaymentMethod,
    pub(super) amount: String,
    #[serde(default)]
    pub(super) reference: Option<String>,
    #[serde(default)]
    pub(super) spent_at: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AdjustmentArgs {
    pub(super) product_id: String,
    pub(super) quantity: String,
    pub(super) reason: String,
    #[serde(default)]
    pub(super) unit_cost: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InputArgs {
    pub(super) product_id: String,
    pub(super) quantity: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProductionArgs {
    pub(super) product_id: String,
    pub(super) quantity: String,
    #[serde(default)]
    pub(super) inputs: Vec<InputArgs>,
    #[serde(default)]
    pub(super) cost: Option<String>,
    #[serde(default)]
    pub(super) method: Option<PaymentMethod>,
    #[serde(default)]
    pub(super) produced_at: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CylinderExchangeArgs {
    pub(super) refill_product_id: String,
    pub(super) quantity: String,
    pub(super) unit_price: String,
    #[serde(default)]
    pub(super) deposit: Option<String>,
    #[serde(default)]
    pub(super) cylinder_product_id: Option<String>,
    #[serde(default)]
    pub(super) customer_id: Option<String>,
    pub(super) payments: Vec<PaymentArgs>,
    #[serde(default)]
    pub(super) exchanged_at: Option<String>,
}
