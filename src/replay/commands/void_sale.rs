//! `void_sale`: marks a sale voided, posts the reverse of its entry and returns its stock.

use super::{write, Effects, Run};
use crate::{
    domain::codes::RejectionCode,
    error::{Error, Result},
    replay::generic::Outcome,
    store::ledger::Line,
};
use chrono::{DateTime, Utc};
use serde_json::json;

impl Run<'_, '_> {
    pub(super) async fn void_sale(&mut self, reason: &str, voided_at: Option<DateTime<Utc>>) -> Result<Outcome> {
        let key = self.key();
        let Some(mut sale) = self.row("sales", &key).await? else {
            return self
                .reject(RejectionCode::SaleNotFound, "there is no such sale to void", "sales")
                .await;
        };
        if sale["status"] == "voided" {
            return self
                .reject(RejectionCode::AlreadyVoided, "the sale was already voided", "sales")
                .await;
        }
        let Some((original, lines)) = self.batch.open_entry_for("sale", "sales", &key).await? else {
            return Err(Error::Internal(anyhow::anyhow!(
                "posted sale {key} has no open journal entry"
            )));
        };
        let mut effects = Effects::default();
        let at = self.when("voided_at", voided_at, &mut effects.flags);
        let reversed = lines
            .into_iter()
            .map(|l| Line {
                account: l.account,
                debit: l.credit,
                credit: l.debit,
            })
            .collect();
        let mut entry = self.entry("sale_void", "sales", at, reversed);
        entry.reverses = Some(original);
        for (product, quantity) in self.batch.movements_for("sale", "sales", &key).await? {
            effects
                .movements
                .push(self.movement(&product, -quantity, "sale_void", "sales"));
        }
        sale["status"] = json!("voided");
        sale["voided_at"] = json!(at.to_rfc3339());
        sale["void_reason"] = json!(reason);
        sale["void_entry_id"] = json!(entry.id);
        effects.rows.push(write("sales", &key, sale));
        effects.entry = Some(entry);
        self.commit(effects, "sales").await
    }
}
