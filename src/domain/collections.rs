//! The declared collections: what devices sync, who may write each, and how conflicts are settled.
//!
//! Adding a collection is one line in [`COLLECTIONS`]; the feed, replay and snapshots read this table.
//! Every row's key lives in its `id` field (Dexie's primary key path).
//!
//! Who may write is data too ([`WriteRights`], roles per kind of write), not code branches, so the table can
//! later be read from a file without touching replay.

use super::Role;
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
    /// The roles that may write rows through generic operations (empty for `server` collections).
    pub rights: WriteRights,
}

/// What a generic operation does to a row, as far as rights go. A `create` or `put` of a row that exists
/// replaces it, so it is an [`WriteKind::Update`]: otherwise a role allowed only to create could overwrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteKind {
    Create,
    Update,
    Delete,
}

impl WriteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteKind::Create => "create",
            WriteKind::Update => "update",
            WriteKind::Delete => "delete",
        }
    }
}

/// The roles that may create, update and delete rows of a collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct WriteRights {
    #[schema(value_type = Vec<Role>)]
    pub create: &'static [Role],
    #[schema(value_type = Vec<Role>)]
    pub update: &'static [Role],
    #[schema(value_type = Vec<Role>)]
    pub delete: &'static [Role],
}

impl WriteRights {
    /// No device may write (server collections).
    pub const NONE: WriteRights = WriteRights {
        create: &[],
        update: &[],
        delete: &[],
    };

    pub fn allows(&self, role: Role, kind: WriteKind) -> bool {
        let roles = match kind {
            WriteKind::Create => self.create,
            WriteKind::Update => self.update,
            WriteKind::Delete => self.delete,
        };
        roles.contains(&role)
    }
}

const EVERYONE: &[Role] = &[Role::Owner, Role::Manager, Role::Cashier];
const ADMINS: &[Role] = &[Role::Owner, Role::Manager];

/// Prices, products, tax rates, payment methods: what a sale is computed from, so only those who run the
/// business change them (a cashier could otherwise lower a price or switch off stock tracking before a sale).
const ADMINS_ONLY: WriteRights = WriteRights {
    create: ADMINS,
    update: ADMINS,
    delete: ADMINS,
};

/// Everyday records every role keeps: cashiers sign customers up and take laundry orders at the till. A
/// customer delete stays open to them too: receivables live in the journal, not on the customer row, so a
/// delete hides no debt (and the log keeps the row).
const EVERYONE_WRITES: WriteRights = WriteRights {
    create: EVERYONE,
    update: EVERYONE,
    delete: EVERYONE,
};

const fn device(
    name: &'static str,
    conflict_policy: ConflictPolicy,
    reference: bool,
    rights: WriteRights,
) -> Collection {
    Collection {
        name,
        writer: Writer::Device,
        conflict_policy,
        reference,
        rights,
    }
}

const fn server(name: &'static str, reference: bool) -> Collection {
    Collection {
        name,
        writer: Writer::Server,
        conflict_policy: ConflictPolicy::ServerWins,
        reference,
        rights: WriteRights::NONE,
    }
}

use ConflictPolicy::{ClientWins, Manual, ServerWins};

/// Every collection of the ERP, in one place.
pub const COLLECTIONS: &[Collection] = &[
    // Reference data, edited by managers from a device and served as snapshots.
    device("products", ServerWins, true, ADMINS_ONLY),
    device("price_lists", Manual, true, ADMINS_ONLY),
    device("payment_methods", ServerWins, true, ADMINS_ONLY),
    device("tax_rates", ServerWins, true, ADMINS_ONLY),
    server("accounts", true),
    // Everyday records that devices edit directly.
    device("customers", ClientWins, false, EVERYONE_WRITES),
    device("laundry_orders", ServerWins, false, EVERYONE_WRITES),
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

    #[test]
    fn owners_write_every_device_collection_and_nobody_a_server_one() {
        for c in COLLECTIONS {
            for kind in [WriteKind::Create, WriteKind::Update, WriteKind::Delete] {
                let owner = c.rights.allows(Role::Owner, kind);
                assert_eq!(owner, c.writer == Writer::Device, "{} {kind:?}", c.name);
            }
            if c.writer == Writer::Server {
                assert_eq!(c.rights, WriteRights::NONE, "{}", c.name);
            }
        }
        let products = find("products").unwrap().rights;
        assert!(products.allows(Role::Manager, WriteKind::Update));
        assert!(!products.allows(Role::Cashier, WriteKind::Create));
    }
}
