//! Setting a business up: a new scope with the standard chart of accounts and payment methods, and the accounts
//! and payment methods an owner or manager adds later (`POST /v1/scopes/{scope}/accounts`,
//! `.../payment_methods`, `dukasync scope-add|account-add|payment-method-add`).
//!
//! Invariants: every row is written through the change log (`changes::append`) under the scope's version lock,
//! so devices receive it through the feed and checksums cover it; a command can use it as soon as the
//! transaction commits, because commands read `accounts` and `payment_methods` rows under the same lock. Nothing
//! is overwritten: an account code or method id that names a live row is refused.

use crate::error::ErrorCode;
use crate::{
    domain::{money::accounts as codes, ScopeId},
    error::{Error, Result},
    store::{
        accounts,
        changes::{self, RowWrite},
    },
    wire::{NewAccount, NewPaymentMethod, RowCreated},
};
use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool};

/// The account types of the chart (`accounts` rows' `type`).
pub const ACCOUNT_TYPES: &[&str] = &["asset", "liability", "equity", "revenue", "expense"];

/// The standard chart of accounts: (code, name, type). The commands post to these codes (`money::accounts`).
const CHART: &[(&str, &str, &str)] = &[
    (codes::CASH, "Cash on hand", "asset"),
    (codes::MPESA, "M-Pesa float", "asset"),
    (codes::CARD, "Card clearing", "asset"),
    (codes::RECEIVABLES, "Accounts receivable", "asset"),
    (codes::INVENTORY, "Inventory", "asset"),
    ("2000", "Accounts payable", "liability"),
    (codes::CYLINDER_DEPOSITS, "Cylinder deposits held", "liability"),
    ("3000", "Owner's equity", "equity"),
    (codes::SALES_REVENUE, "Sales revenue", "revenue"),
    (codes::COST_OF_GOODS, "Cost of goods sold", "expense"),
    (codes::OPERATING_EXPENSES, "Operating expenses", "expense"),
];

/// The standard payment methods: (id, name, type, account).
const METHODS: &[(&str, &str, &str, &str)] = &[
    ("cash", "Cash", "cash", codes::CASH),
    ("mpesa", "M-Pesa", "mobile_money", codes::MPESA),
    ("card", "Card", "card", codes::CARD),
    ("credit", "On credit", "credit", codes::RECEIVABLES),
];

/// The rows every business starts with: its payment methods, then its chart of accounts. The demo data and
/// `scope-add` both write these, so a new scope can run every command at once.
pub fn starter_rows() -> Vec<RowWrite> {
    let methods = METHODS.iter().map(|(id, name, kind, account)| {
        write(
            "payment_methods",
            json!({"id": id, "name": name, "type": kind, "account": account, "active": true}),
        )
    });
    let chart = CHART
        .iter()
        .map(|(code, name, kind)| write("accounts", account_row(code, name, kind)));
    methods.chain(chart).collect()
}

fn account_row(code: &str, name: &str, kind: &str) -> Value {
    json!({"id": code, "code": code, "name": name, "type": kind})
}

fn write(collection: &str, data: Value) -> RowWrite {
    RowWrite {
        collection: collection.to_string(),
        key: data["id"].as_str().unwrap_or_default().to_string(),
        data: Some(data),
    }
}

/// Creates the scope (or renames it) and writes the starter rows it lacks, in one transaction. Returns how many
/// rows were written: all of them for a new scope, none for one that has them all. A row that exists is never
/// overwritten, so running it again is harmless, and it repairs scopes created before it set their chart up.
pub async fn add_scope(db: &PgPool, scope: &ScopeId, name: &str) -> Result<usize> {
    let mut tx = db.begin().await?;
    accounts::ensure_scope(&mut *tx, scope, name).await?;
    changes::lock_scope(&mut tx, scope)
        .await?
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("scope {scope} vanished inside its own transaction")))?;
    let mut missing = Vec::new();
    for row in starter_rows() {
        if changes::current_row(&mut tx, scope, &row.collection, &row.key)
            .await?
            .is_none()
        {
            missing.push(row);
        }
    }
    changes::append(&mut tx, scope, &missing).await?;
    tx.commit().await?;
    Ok(missing.len())
}

/// Adds an account to the scope's chart. 400 `invalid_account` (code), `invalid_name`, `invalid_account_type`,
/// `account_exists`.
pub async fn add_account(db: &PgPool, scope: &ScopeId, new: &NewAccount) -> Result<RowCreated> {
    check_id(ErrorCode::InvalidAccount, "code", &new.code)?;
    check_name(&new.name)?;
    if !ACCOUNT_TYPES.contains(&new.kind.as_str()) {
        return Err(Error::bad_request(
            ErrorCode::InvalidAccountType,
            format!("`type` is one of {}", ACCOUNT_TYPES.join(", ")),
        ));
    }
    let row = account_row(&new.code, new.name.trim(), &new.kind);
    let mut tx = db.begin().await?;
    lock(&mut tx, scope).await?;
    if changes::current_row(&mut tx, scope, "accounts", &new.code)
        .await?
        .is_some()
    {
        return Err(Error::bad_request(
            ErrorCode::AccountExists,
            format!("the scope already has an account `{}`", new.code),
        ));
    }
    insert(tx, scope, "accounts", row).await
}

/// Adds a payment method posting to one of the scope's asset accounts (not receivables: a payment on a
/// customer's account is `credit`, which needs the customer). 400 `invalid_payment_method` (id),
/// `invalid_name`, `unknown_account`, `payment_method_exists`.
pub async fn add_payment_method(db: &PgPool, scope: &ScopeId, new: &NewPaymentMethod) -> Result<RowCreated> {
    check_id(ErrorCode::InvalidPaymentMethod, "id", &new.id)?;
    check_name(&new.name)?;
    check_id(ErrorCode::UnknownAccount, "account", &new.account)?;
    let row = json!({"id": new.id, "name": new.name.trim(), "type": "other", "account": new.account, "active": true});
    let mut tx = db.begin().await?;
    lock(&mut tx, scope).await?;
    if changes::current_row(&mut tx, scope, "payment_methods", &new.id)
        .await?
        .is_some()
    {
        return Err(Error::bad_request(
            ErrorCode::PaymentMethodExists,
            format!("the scope already has a payment method `{}`", new.id),
        ));
    }
    let account = changes::current_row(&mut tx, scope, "accounts", &new.account).await?;
    let is_asset = account.is_some_and(|(data, _)| data["type"] == "asset");
    if !is_asset || new.account == codes::RECEIVABLES {
        return Err(Error::bad_request(
            ErrorCode::UnknownAccount,
            format!(
                "`{}` is not an asset account of this scope a payment method may post to (receivables: use `credit`)",
                new.account
            ),
        ));
    }
    insert(tx, scope, "payment_methods", row).await
}

async fn lock(tx: &mut PgConnection, scope: &ScopeId) -> Result<()> {
    changes::lock_scope(tx, scope).await?.ok_or(Error::NotFound("scope"))?;
    Ok(())
}

async fn insert(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    scope: &ScopeId,
    collection: &str,
    row: Value,
) -> Result<RowCreated> {
    let versions = changes::append(&mut tx, scope, &[write(collection, row.clone())])
        .await?
        .ok_or(Error::NotFound("scope"))?;
    tx.commit().await?;
    Ok(RowCreated {
        collection: collection.to_string(),
        version: versions.first().copied().unwrap_or_default(),
        row,
    })
}

/// Longest account code or payment method id.
pub const MAX_ID: usize = 32;
/// Longest account or payment method name.
pub const MAX_NAME: usize = 100;

/// Ids and codes: 1 to 32 ASCII letters, digits, `-` and `_`: they are row keys, and appear in journal lines.
fn check_id(code: ErrorCode, field: &str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= MAX_ID
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::bad_request(
            code,
            format!("`{field}` is 1 to {MAX_ID} ASCII letters, digits, '-' or '_'"),
        ))
    }
}

fn check_name(name: &str) -> Result<()> {
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed.chars().count() > MAX_NAME || trimmed.chars().any(char::is_control) {
        return Err(Error::bad_request(
            ErrorCode::InvalidName,
            format!("`name` is 1 to {MAX_NAME} characters of text"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_holds_every_account_the_commands_post_to() {
        let rows = starter_rows();
        let has = |collection: &str, key: &str| rows.iter().any(|r| r.collection == collection && r.key == key);
        for code in [
            codes::CASH,
            codes::MPESA,
            codes::CARD,
            codes::RECEIVABLES,
            codes::INVENTORY,
            codes::CYLINDER_DEPOSITS,
            codes::SALES_REVENUE,
            codes::COST_OF_GOODS,
            codes::OPERATING_EXPENSES,
        ] {
            assert!(has("accounts", code), "{code}");
        }
        for method in ["cash", "mpesa", "card", "credit"] {
            assert!(has("payment_methods", method), "{method}");
        }
    }

    #[test]
    fn ids_and_names_are_checked() {
        assert!(check_id(ErrorCode::InvalidAccount, "code", "6100").is_ok());
        assert!(check_id(ErrorCode::InvalidAccount, "code", "bank-kcb_1").is_ok());
        for bad in ["", "a b", "é", "1/2", &"x".repeat(33)] {
            assert!(check_id(ErrorCode::InvalidAccount, "code", bad).is_err(), "{bad:?}");
        }
        assert!(check_name("Fuel").is_ok());
        for bad in ["", "   ", "a\nb", &"x".repeat(101)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
