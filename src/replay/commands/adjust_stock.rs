//! `adjust_stock`: a counted difference in stock; its value moves between inventory and the cost of goods sold.

use super::{credit, debit, write, Effects, Run};
use crate::{
    domain::{
        commands,
        money::{self, accounts},
    },
    error::Result,
    replay::generic::Outcome,
};
use serde_json::json;

impl Run<'_, '_> {
    pub(super) async fn adjust_stock(&mut self, a: &commands::Adjustment) -> Result<Outcome> {
        const COLLECTION: &str = "stock_adjustments";
        if let Some(rejected) = self.exists(COLLECTION).await? {
            return Ok(rejected);
        }
        if let Some(rejected) = self.require_stocked(&[&a.product_id], COLLECTION).await? {
            return Ok(rejected);
        }
        let value = money::to_cents(a.quantity.abs() * a.unit_cost);
        // Found stock lowers the cost of goods sold; lost stock raises it. At zero cost only stock moves.
        let entry = (!value.is_zero()).then(|| {
            let lines = if a.quantity.is_sign_positive() {
                vec![
                    debit(accounts::INVENTORY, value),
                    credit(accounts::COST_OF_GOODS, value),
                ]
            } else {
                vec![
                    debit(accounts::COST_OF_GOODS, value),
                    credit(accounts::INVENTORY, value),
                ]
            };
            self.entry("stock_adjustment", COLLECTION, self.now, lines)
        });
        let row = json!({
            "id": self.key(),
            "product_id": a.product_id,
            "quantity": money::format_quantity(a.quantity),
            "reason": a.reason,
            "unit_cost": money::format_money(a.unit_cost),
            "value": money::format_money(value),
            "journal_entry_id": entry.as_ref().map(|e| e.id),
        });
        let effects = Effects {
            rows: vec![write(COLLECTION, &self.key(), row)],
            movements: vec![self.movement(&a.product_id, a.quantity, "adjustment", COLLECTION)],
            entry,
            ..Effects::default()
        };
        self.commit(effects, COLLECTION).await
    }
}
