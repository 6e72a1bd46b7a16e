//! The declared collections: what devices sync, who may write each, and how conflicts are settled.
//!
//! They are data, read once at start-up from a TOML file ([`mod@file`]; `deploy/collections.toml` is built in as
//! the default, `DUKASYNC_COLLECTIONS_FILE` names another) into a process-wide registry. The rest of the code
//! reads them through [`find`] and [`all`] only. A process that never installs a set (the API tests, which
//! start many servers in one process) gets the built-in one.
//! Every row's key lives in its `id` field (Dexie's primary key path).

pub mod file;

use super::Role;
use serde::Serialize;
use serde_json::Value;
use std::sync::OnceLock;

/// Who may write rows of a collection directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Writer {
    /// Devices may create, update and delete rows through generic operations.
    Device,
    /// Only the ERP backend writes rows (through SQL or HTTP, protocol §14); devices read them.
    Backend,
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
    /// The row field holding its key: always [`KEY_FIELD`] for now.
    pub key: &'static str,
    pub writer: Writer,
    pub conflict_policy: ConflictPolicy,
    /// Reference data is also served whole as a snapshot with an ETag.
    pub reference: bool,
    /// The roles that may write rows through generic operations (empty for `server` collections).
    pub rights: WriteRights,
    /// The Dexie indexes a client keeps besides the key (`name`, `[a+b]`).
    #[schema(value_type = Vec<String>)]
    pub indexes: &'static [&'static str],
    /// A JSON Schema (draft 2020-12) every row devices or the backend write must satisfy.
    #[schema(value_type = Option<Object>)]
    pub schema: Option<&'static RowSchema>,
}

/// A row's JSON Schema, compiled once when the file is read.
pub struct RowSchema {
    pub json: Value,
    validator: jsonschema::Validator,
}

impl RowSchema {
    /// Compiles `json` as a draft 2020-12 schema.
    pub fn compile(json: Value) -> Result<RowSchema, String> {
        let validator = jsonschema::draft202012::new(&json).map_err(|e| e.to_string())?;
        Ok(RowSchema { json, validator })
    }

    /// The first violation of `row`: its instance path (a JSON pointer, `""` for the row itself) and why.
    pub fn violation(&self, row: &Value) -> Option<(String, String)> {
        let err = self.validator.iter_errors(row).next()?;
        Some((err.instance_path.to_string(), err.to_string()))
    }
}

impl Serialize for RowSchema {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(s)
    }
}

impl std::fmt::Debug for RowSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RowSchema({})", self.json)
    }
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

/// The set this process uses, installed once at start-up.
static REGISTRY: OnceLock<&'static [Collection]> = OnceLock::new();

/// Makes `set` the process's collections. Only the first call wins (start-up); a later one is refused, so
/// no request ever sees the set change under it.
pub fn install(set: &'static [Collection]) -> Result<(), &'static str> {
    REGISTRY.set(set).map_err(|_| "the collections were already set")
}

/// Every declared collection, in the file's order.
pub fn all() -> &'static [Collection] {
    REGISTRY.get_or_init(file::built_in)
}

pub fn find(name: &str) -> Option<&'static Collection> {
    all().iter().find(|c| c.name == name)
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
        for c in all() {
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
        for c in all() {
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
