//! `record_cylinder_exchange`: an LPG refill swaps an empty cylinder for a full one.

use super::{credit, debits_for, line_json, payment_json, write, Effects, Run};
use crate::{
    domain::{
        commands::CylinderExchange,
        money::{self, accounts},
    },
    error::Result,
    replay::generic::Outcome,
};
use serde_json::json;

impl Run<'_, '_> {
    pub(super) async fn record_cylinder_exchange(&mut self, x: &CylinderExchange) -> Result<Outcome> {
        const COLLECTION: &str = "cylinder_exchanges";
        if let Some(rejected) = self.exists(COLLECTION).await? {
            return Ok(rejected);
        }
        let paid = match self
            .payment_accounts(&x.payments.iter().collect::<Vec<_>>(), COLLECTION)
            .await?
        {
            Ok(paid) => paid,
            Err(rejected) => return Ok(rejected),
        };
        let mut effects = Effects::default();
        let at = self.when("exchanged_at", x.exchanged_at, &mut effects.flags);
        self.sell(std::slice::from_ref(&x.refill), COLLECTION, &mut effects)
            .await?;
        if let Some(cylinder) = x.cylinder_product_id.as_deref().filter(|_| !x.deposit.is_zero()) {
            // The customer leaves with a cylinder of ours: it leaves our stock, held against the deposit.
            if self.product(cylinder).await?.is_some_and(|p| p.track_stock) {
                let m = self.movement(cylinder, -x.refill.quantity, "cylinder_deposit", COLLECTION);
                effects.movements.push(m);
            }
        }
        let mut lines = debits_for(&paid);
        lines.push(credit(accounts::SALES_REVENUE, x.refill.amount));
        if !x.deposit.is_zero() {
            lines.push(credit(accounts::CYLINDER_DEPOSITS, x.deposit));
        }
        let entry = self.entry("cylinder_exchange", COLLECTION, at, lines);
        let mut row = json!({
            "id": self.key(),
            "refill": line_json(&x.refill),
            "deposit": money::format_money(x.deposit),
            "payments": x.payments.iter().map(payment_json).collect::<Vec<_>>(),
            "exchanged_at": at.to_rfc3339(),
            "journal_entry_id": entry.id,
        });
        if let Some(cylinder) = &x.cylinder_product_id {
            row["cylinder_product_id"] = json!(cylinder);
        }
        if let Some(customer) = &x.customer_id {
            row["customer_id"] = json!(customer);
        }
        effects.rows.push(write(COLLECTION, &self.key(), row));
        effects.entry = Some(entry);
        self.commit(effects, COLLECTION).await
    }
}
