//! `record_production`: a production batch adds stock of its product, uses up its inputs, and posts its paid cost to inventory.

use super::{credit, debit, payment_json, write, Effects, Run};
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
    pub(super) async fn record_production(&mut self, p: &commands::Production) -> Result<Outcome> {
        const COLLECTION: &str = "production_batches";
        if let Some(rejected) = self.exists(COLLECTION).await? {
            return Ok(rejected);
        }
        let mut products = vec![p.product_id.as_str()];
        products.extend(p.inputs.iter().map(|(id, _)| id.as_str()));
        if let Some(rejected) = self.require_stocked(&products, COLLECTION).await? {
            return Ok(rejected);
        }
        let cost_account = match &p.cost {
            Some(cost) => match self.payment_accounts(&[cost], COLLECTION).await? {
                Ok(mut paid) => Some(paid.remove(0).0),
                Err(rejected) => return Ok(rejected),
            },
            None => None,
        };
        let mut flags = Vec::new();
        let at = self.when("produced_at", p.produced_at, &mut flags);
        let mut movements = vec![self.movement(&p.product_id, p.quantity, "production", COLLECTION)];
        for (input, quantity) in &p.inputs {
            movements.push(self.movement(input, -*quantity, "production_input", COLLECTION));
        }
        let entry = p.cost.as_ref().zip(cost_account).map(|(cost, account)| {
            let lines = vec![debit(accounts::INVENTORY, cost.amount), credit(&account, cost.amount)];
            self.entry("production", COLLECTION, at, lines)
        });
        let row = json!({
            "id": self.key(),
            "product_id": p.product_id,
            "quantity": money::format_quantity(p.quantity),
            "inputs": p.inputs.iter().map(|(id, q)| json!({"product_id": id, "quantity": money::format_quantity(*q)}))
                .collect::<Vec<_>>(),
            "cost": p.cost.as_ref().map(payment_json),
            "produced_at": at.to_rfc3339(),
            "journal_entry_id": entry.as_ref().map(|e| e.id),
        });
        let effects = Effects {
            rows: vec![write(COLLECTION, &self.key(), row)],
            movements,
            entry,
            flags,
            ..Effects::default()
        };
        self.commit(effects, COLLECTION).await
    }
}
