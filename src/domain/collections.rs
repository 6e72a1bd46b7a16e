//! The declared collections: what devices sync, who may write each, and how conflicts are settled.
//!
//! Adding a collection is one line in [`COLLECTIONS`]; the feed, replay and snapshots read this table.
//! Every row's key lives in its `id` field (Dexie's primary key path).

use serde::Serialize;

/// Who may write rows of a collection directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Writer {
    /// Devices may create, update and delete rows through generic operations.
    Device,
    /// Only the server writes rows, as the effect of named commands (sales, journal entries, ...).
    Server,
}

/// How an update made against an old base version settles fields that the server also changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConflictPolicy {
    ServerWins,
    ClientWins,
    /// Keep the server's value and leave the case open for a person to decide.
    Manual,
}

#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct Collection {
    pub name: &'static str,
    pub writer: Writer,
    pub conflict_policy: ConflictPolicy,
    /// Reference data is also served whole as a snapshot with an ETag.
    pub reference: bool,
}

const fn device(name: &'static str, conflict_policy: ConflictPolicy, reference: bool) -> Collection {
    Collection {
        name,
        writer: Writer::Device,
        conflict_policy,
        reference,
    }
}

const fn server(name: &'static str, reference: bool) -> Collection {
    Collection {
        name,
        writer: Writer::Server,
        conflict_policy: ConflictPolicy::ServerWins,
        reference,
    }
}

use ConflictPolicy::{ClientWins, Manual, ServerWins};

/// Every collection of the ERP, in one place.
pub const COLLECTIONS: &[Collection] = &[
    // Reference data, edited by managers from a device and served as snapshots.
    device("products", ServerWins, true),
    device("price_lists", Manual, true),
    device("payment_methods", ServerWins, true),
    device("tax_rates", ServerWins, true),
    server("accounts", true),
    // Everyday records that devices edit directly.
    device("customers", ClientWins, false),
    device("laundry_orders", ServerWins, false),
    // Effects of named commands: only the server writes them.
    server("sales", false),
    server("payments", false),
    server("expenses", false),
    server("stock_movements", false),
    server("stock_levels", false),
    server("stock_adjustments", false),
    server("production_batches", false),
    server("cylinder_exchanges", false),
    server("journal_entries", false),
    // Conflicts and their resolutions flow to devices like any other change.
    server("conflicts", false),
];

pub fn find(name: &str) -> Option<&'static Collection> {
    COLLECTIONS.iter().find(|c| c.name == name)
}

/// Longest key a row may have.
pub const MAX_KEY_LEN: usize = 128;

/// The field of a row that holds its key.
pub const KEY_FIELD: &str = "id";

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_lowercase() {
        let mut seen = HashSet::new();
        for c in COLLECTIONS {
            assert!(seen.insert(c.name), "{} declared twice", c.name);
            assert!(
                c.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn money_collections_are_server_only() {
        for name in ["sales", "payments", "expenses", "journal_entries", "stock_levels"] {
            assert_eq!(find(name).unwrap().writer, Writer::Server, "{name}");
        }
        assert!(find("nope").is_none());
    }
}
