//! `receive_payment`: a customer pays down what they owe.

use super::{credit, debit, payment_json, write, Effects, Run};
use crate::{
    domain::{commands::CustomerPayment, money::accounts},
    error::Result,
    replay::generic::Outcome,
};
use serde_json::json;

impl Run<'_, '_> {
    pub(super) async fn receive_payment(&mut self, p: &CustomerPayment) -> Result<Outcome> {
        if let Some(rejected) = self.exists("payments").await? {
            return Ok(rejected);
        }
        let account = match self.payment_accounts(&[&p.payment], "payments").await? {
            Ok(mut paid) => paid.remove(0).0,
            Err(rejected) => return Ok(rejected),
        };
        let mut flags = Vec::new();
        let at = self.when("received_at", p.received_at, &mut flags);
        let lines = vec![
            debit(&account, p.payment.amount),
            credit(accounts::RECEIVABLES, p.payment.amount),
        ];
        let entry = self.entry("customer_payment", "payments", at, lines);
        let mut row = payment_json(&p.payment);
        row["id"] = json!(self.key());
        row["customer_id"] = json!(p.customer_id);
        row["received_at"] = json!(at.to_rfc3339());
        row["journal_entry_id"] = json!(entry.id);
        let effects = Effects {
            rows: vec![write("payments", &self.key(), row)],
            entry: Some(entry),
            flags,
            ..Effects::default()
        };
        self.commit(effects, "payments").await
    }
}
