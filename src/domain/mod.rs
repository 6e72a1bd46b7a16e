//! Domain types shared by the sync logic, storage and the wire: scopes, roles, collections, and the canonical
//! encoding that checksums are computed over. Nothing here knows about HTTP or SQL.

pub mod canonical;
pub mod change;
pub mod codes;
pub mod coding;
pub mod collections;
pub mod commands;
pub mod conflict;
pub mod ledger;
pub mod money;
pub mod principal;

use serde::{Deserialize, Serialize};
use std::fmt;

pub use coding::Coding;

/// A scope is one business; its id is a short slug such as `water`, used in URLs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ScopeId(String);

/// What [`ScopeId::parse`] accepts, as a regular expression (for the OpenAPI description).
pub const SCOPE_ID_PATTERN: &str = "^[a-z0-9][a-z0-9-]{0,39}$";

impl ScopeId {
    /// Accepts `[a-z0-9][a-z0-9-]{0,39}`; anything else cannot name a scope.
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = !raw.is_empty()
            && raw.len() <= 40
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !raw.starts_with('-');
        ok.then(|| Self(raw.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ScopeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user's role in one scope. Owners and managers may administer the scope; cashiers may sell. `backend` is
/// the ERP's service user: it writes rows through `POST /v1/scopes/{scope}/rows` (protocol §14) and pushes no
/// operations; a pairing code never grants it, so no phone holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Manager,
    Cashier,
    Backend,
}

impl Role {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "owner" => Some(Role::Owner),
            "manager" => Some(Role::Manager),
            "cashier" => Some(Role::Cashier),
            "backend" => Some(Role::Backend),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Manager => "manager",
            Role::Cashier => "cashier",
            Role::Backend => "backend",
        }
    }
    pub fn may_administer(self) -> bool {
        matches!(self, Role::Owner | Role::Manager)
    }
    /// Whether this is the backend's role, which writes rows over HTTP instead of pushing operations.
    pub fn is_backend(self) -> bool {
        self == Role::Backend
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_ids_are_slugs() {
        assert!(ScopeId::parse("water").is_some());
        assert!(ScopeId::parse("retail-lpg-2").is_some());
        for bad in ["", "-x", "Water", "a/b", "a b", &"x".repeat(41), "ü"] {
            assert!(ScopeId::parse(bad).is_none(), "{bad:?} accepted");
        }
    }

    #[test]
    fn only_owner_and_manager_administer() {
        assert!(Role::Owner.may_administer() && Role::Manager.may_administer());
        assert!(!Role::Cashier.may_administer());
        assert_eq!(Role::parse(Role::Cashier.as_str()), Some(Role::Cashier));
    }
}
