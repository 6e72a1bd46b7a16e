//! `record_expense`: money paid out, against an expense account.

use super::{credit, debit, payment_json, write, Effects, Run};
use crate::{
    domain::{codes::RejectionCode, commands},
    error::Result,
    replay::generic::Outcome,
};
use serde_json::json;

impl Run<'_, '_> {
    pub(super) async fn record_expense(&mut self, e: &commands::Expense) -> Result<Outcome> {
        if let Some(rejected) = self.exists("expenses").await? {
            return Ok(rejected);
        }
        let account = self.row("accounts", &e.account).await?;
        if account.as_ref().map(|a| &a["type"]) != Some(&json!("expense")) {
            let message = format!("`{}` is not an expense account of this business", e.account);
            return self.reject(RejectionCode::UnknownAccount, &message, "expenses").await;
        }
        let method_account = match self.payment_accounts(&[&e.payment], "expenses").await? {
            Ok(mut paid) => paid.remove(0).0,
            Err(rejected) => return Ok(rejected),
        };
        let mut flags = Vec::new();
        let at = self.when("spent_at", e.spent_at, &mut flags);
        let lines = vec![
            debit(&e.account, e.payment.amount),
            credit(&method_account, e.payment.amount),
        ];
        let entry = self.entry("expense", "expenses", at, lines);
        let mut row = payment_json(&e.payment);
        row["id"] = json!(self.key());
        row["account"] = json!(e.account);
        row["description"] = json!(e.description);
        row["spent_at"] = json!(at.to_rfc3339());
        row["journal_entry_id"] = json!(entry.id);
        let effects = Effects {
            rows: vec![write("expenses", &self.key(), row)],
            entry: Some(entry),
            flags,
            ..Effects::default()
        };
        self.commit(effects, "expenses").await
    }
}
