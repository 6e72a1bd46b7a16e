//! `record_sale`: a sale, its stock movements and its balanced entry; never refused for a changed world.

use super::{credit, debits_for, line_json, payment_json, write, Effects, Flag, Run};
use crate::{
    domain::{
        commands::{Sale, SaleLine},
        money::{self, accounts},
    },
    error::Result,
    replay::generic::Outcome,
};
use serde_json::json;

impl Run<'_, '_> {
    /// Checks sale lines against the catalogue: stock movements for tracked products, flags for the rest.
    pub(super) async fn sell(
        &mut self,
        lines: &[SaleLine],
        collection: &'static str,
        effects: &mut Effects,
    ) -> Result<()> {
        let mut stale = Vec::new();
        let mut unknown = Vec::new();
        for line in lines {
            match self.product(&line.product_id).await? {
                None => unknown.push(json!(line.product_id)),
                Some(product) => {
                    if product.price.is_some_and(|p| p != line.unit_price) {
                        stale.push(json!({
                            "product_id": line.product_id,
                            "unit_price": money::format_money(line.unit_price),
                            "current_price": product.price.map(money::format_money),
                        }));
                    }
                    if product.track_stock {
                        let m = self.movement(&line.product_id, -line.quantity, "sale", collection);
                        effects.movements.push(m);
                    }
                }
            }
        }
        if !stale.is_empty() {
            effects.flags.push(Flag {
                kind: "stale_price",
                detail: json!({ "lines": stale }),
            });
        }
        if !unknown.is_empty() {
            effects.flags.push(Flag {
                kind: "unknown_product",
                detail: json!({ "products": unknown }),
            });
        }
        effects.flag_oversold = true;
        Ok(())
    }

    pub(super) async fn record_sale(&mut self, sale: &Sale) -> Result<Outcome> {
        if let Some(rejected) = self.exists("sales").await? {
            return Ok(rejected);
        }
        let paid = match self
            .payment_accounts(&sale.payments.iter().collect::<Vec<_>>(), "sales")
            .await?
        {
            Ok(paid) => paid,
            Err(rejected) => return Ok(rejected),
        };
        let mut effects = Effects::default();
        let at = self.when("sold_at", sale.sold_at, &mut effects.flags);
        self.sell(&sale.lines, "sales", &mut effects).await?;
        let mut lines = debits_for(&paid);
        lines.push(credit(accounts::SALES_REVENUE, sale.total));
        let entry = self.entry("sale", "sales", at, lines);
        let mut row = json!({
            "id": self.key(),
            "status": "posted",
            "sold_at": at.to_rfc3339(),
            "lines": sale.lines.iter().map(line_json).collect::<Vec<_>>(),
            "payments": sale.payments.iter().map(payment_json).collect::<Vec<_>>(),
            "total": money::format_money(sale.total),
            "journal_entry_id": entry.id,
            "device_id": self.origin.device_id,
            "op_id": self.op.id,
        });
        if let Some(customer) = &sale.customer_id {
            row["customer_id"] = json!(customer);
        }
        effects.rows.push(write("sales", &self.key(), row));
        effects.entry = Some(entry);
        self.commit(effects, "sales").await
    }
}
