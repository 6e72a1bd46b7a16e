//! Reading the collections file (TOML, protocol §9) into [`Collection`]s.
//!
//! The file is read once at start-up, so its data is leaked into `'static` (no lifetimes through the code that
//! reads collections). Every mistake becomes one line, and all of them are listed, not just the first: whoever
//! edits the file fixes it in one round. Checked: unknown keys, types and values, duplicate names, the key
//! field, index syntax, that each schema compiles, and that the collections the server's commands write exist
//! with writer `server` (the code writes them, whatever a file says).

use super::{Collection, ConflictPolicy, RowSchema, WriteRights, Writer, KEY_FIELD};
use crate::domain::Role;
use toml::{Table, Value};

/// The ERP's collections, built into the binary so no file is needed.
pub const DEFAULT: &str = include_str!("../../../deploy/collections.toml");

/// Collections the server's commands (and setup) write: a file must declare each with writer `server`.
pub const BUILT_IN_SERVER: &[&str] = &[
    "accounts",
    "sales",
    "payments",
    "expenses",
    "stock_movements",
    "stock_levels",
    "stock_adjustments",
    "production_batches",
    "cylinder_exchanges",
    "journal_entries",
    "conflicts",
];

const KEYS: &[&str] = &[
    "name",
    "key",
    "writer",
    "rights",
    "conflict_policy",
    "reference",
    "indexes",
    "schema",
];

/// The built-in set. The file ships with the binary and a unit test parses it, so failing here is a build bug.
pub fn built_in() -> &'static [Collection] {
    match parse(DEFAULT) {
        Ok(set) => set,
        Err(lines) => panic!("the built-in deploy/collections.toml is invalid: {}", lines.join("; ")),
    }
}

/// Reads the file at `path`, or the built-in set without one.
pub fn load(path: Option<&std::path::Path>) -> Result<&'static [Collection], Vec<String>> {
    let Some(path) = path else {
        return parse(DEFAULT);
    };
    let text = std::fs::read_to_string(path).map_err(|e| vec![format!("{}: cannot read: {e}", path.display())])?;
    parse(&text)
}

/// Parses and checks a collections file; on mistakes, one line each.
pub fn parse(text: &str) -> Result<&'static [Collection], Vec<String>> {
    let table: Table = text
        .parse()
        .map_err(|e: toml::de::Error| vec![format!("not valid TOML: {}", one_line(&e.to_string()))])?;
    let mut mistakes = Vec::new();
    for key in table.keys().filter(|k| *k != "collection") {
        mistakes.push(format!(
            "unknown top-level key `{key}` (expected only [[collection]] tables)"
        ));
    }
    let entries = match table.get("collection") {
        Some(Value::Array(entries)) => entries.as_slice(),
        Some(_) => {
            mistakes.push("`collection` must be an array of tables ([[collection]])".into());
            &[]
        }
        None => {
            mistakes.push("no [[collection]] declared".into());
            &[]
        }
    };
    let mut set: Vec<Collection> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let name = entry.get("name").and_then(Value::as_str).unwrap_or("?");
        let mut entry_mistakes = Vec::new();
        let parsed = collection(entry, &mut entry_mistakes);
        mistakes.extend(
            entry_mistakes
                .into_iter()
                .map(|m| format!("collection {} (`{name}`): {m}", i + 1)),
        );
        if let Some(c) = parsed {
            if set.iter().any(|s| s.name == c.name) {
                mistakes.push(format!("collection {} (`{name}`): declared twice", i + 1));
            }
            set.push(c);
        }
    }
    for required in BUILT_IN_SERVER {
        let declared = entries
            .iter()
            .find(|e| e.get("name").and_then(Value::as_str) == Some(*required));
        match declared.map(|e| e.get("writer").and_then(Value::as_str)) {
            None => mistakes.push(format!(
                "built-in collection `{required}` is missing: the server's commands write it, so declare it with writer = \"server\""
            )),
            Some(Some("server")) => {}
            Some(_) => mistakes.push(format!(
                "built-in collection `{required}` must have writer = \"server\": only the server's commands write it"
            )),
        }
    }
    if mistakes.is_empty() {
        Ok(Vec::leak(set))
    } else {
        Err(mistakes)
    }
}

/// One entry, its mistakes pushed to `m`; `None` if any.
fn collection(entry: &Value, m: &mut Vec<String>) -> Option<Collection> {
    let Some(t) = entry.as_table() else {
        m.push("must be a table".into());
        return None;
    };
    for key in t.keys().filter(|k| !KEYS.contains(&k.as_str())) {
        m.push(format!("unknown key `{key}` (known: {})", KEYS.join(", ")));
    }
    let before = m.len();
    let name = match t.get("name") {
        Some(Value::String(n)) if valid_name(n) => Some(n.as_str()),
        Some(Value::String(n)) => {
            m.push(format!(
                "name `{n}` must be lowercase letters, digits and `_`, start with a letter, and not start with `local_`"
            ));
            None
        }
        Some(_) => {
            m.push("`name` must be a string".into());
            None
        }
        None => {
            m.push("`name` is missing".into());
            None
        }
    };
    match t.get("key") {
        None => {}
        Some(Value::String(k)) if k == KEY_FIELD => {}
        Some(other) => m.push(format!(
            "`key` must be \"{KEY_FIELD}\" (rows are keyed by their `{KEY_FIELD}` field), not {}",
            shown(other)
        )),
    }
    let writer = one_of(
        t,
        "writer",
        &[
            ("device", Writer::Device),
            ("backend", Writer::Backend),
            ("server", Writer::Server),
        ],
        m,
    );
    let conflict_policy = one_of(
        t,
        "conflict_policy",
        &[
            ("server_wins", ConflictPolicy::ServerWins),
            ("client_wins", ConflictPolicy::ClientWins),
            ("manual", ConflictPolicy::Manual),
        ],
        m,
    );
    let reference = match t.get("reference") {
        None => false,
        Some(Value::Boolean(b)) => *b,
        Some(_) => {
            m.push("`reference` must be true or false".into());
            false
        }
    };
    let rights = match (writer, t.get("rights")) {
        (Some(Writer::Device), Some(r)) => rights(r, m),
        (Some(Writer::Device), None) => {
            m.push("writer \"device\" needs `rights` (roles per create, update, delete)".into());
            WriteRights::NONE
        }
        (Some(_), Some(_)) => {
            m.push("`rights` applies only to writer \"device\": devices do not write this collection".into());
            WriteRights::NONE
        }
        _ => WriteRights::NONE,
    };
    let indexes = indexes(t.get("indexes"), m);
    let schema = match (t.get("schema"), writer) {
        (None, _) => None,
        (Some(_), Some(Writer::Server)) => {
            m.push("`schema` applies to rows devices or the backend write; a \"server\" collection has none".into());
            None
        }
        (Some(s @ Value::Table(_)), _) => match serde_json::to_value(s)
            .map_err(|e| e.to_string())
            .and_then(RowSchema::compile)
        {
            Ok(schema) => Some(&*Box::leak(Box::new(schema))),
            Err(e) => {
                m.push(format!(
                    "`schema` is not a valid JSON Schema (draft 2020-12): {}",
                    one_line(&e)
                ));
                None
            }
        },
        (Some(_), _) => {
            m.push("`schema` must be a table (a JSON Schema object)".into());
            None
        }
    };
    if m.len() > before {
        return None;
    }
    Some(Collection {
        name: String::leak(name?.to_string()),
        key: KEY_FIELD,
        writer: writer?,
        conflict_policy: conflict_policy?,
        reference,
        rights,
        indexes: Vec::leak(indexes),
        schema,
    })
}

fn one_of<T: Copy>(t: &Table, key: &str, choices: &[(&str, T)], m: &mut Vec<String>) -> Option<T> {
    let names: Vec<String> = choices.iter().map(|(n, _)| format!("\"{n}\"")).collect();
    let Some(value) = t.get(key) else {
        m.push(format!("`{key}` is missing (one of {})", names.join(", ")));
        return None;
    };
    let found = value
        .as_str()
        .and_then(|s| choices.iter().find(|(n, _)| *n == s).map(|(_, v)| *v));
    if found.is_none() {
        m.push(format!(
            "`{key}` must be one of {}, not {}",
            names.join(", "),
            shown(value)
        ));
    }
    found
}

fn rights(value: &Value, m: &mut Vec<String>) -> WriteRights {
    let Some(t) = value.as_table() else {
        m.push("`rights` must be a table { create = [...], update = [...], delete = [...] }".into());
        return WriteRights::NONE;
    };
    for key in t
        .keys()
        .filter(|k| !["create", "update", "delete"].contains(&k.as_str()))
    {
        m.push(format!("unknown key `rights.{key}` (known: create, update, delete)"));
    }
    let mut roles = |kind: &str| -> &'static [Role] {
        let Some(list) = t.get(kind) else {
            m.push(format!("`rights.{kind}` is missing (use [] for nobody)"));
            return &[];
        };
        let Some(list) = list.as_array() else {
            m.push(format!("`rights.{kind}` must be a list of roles"));
            return &[];
        };
        let mut out = Vec::new();
        for r in list {
            match r.as_str().and_then(Role::parse) {
                // The backend writes rows over §14 (HTTP or SQL), never through device operations.
                Some(Role::Backend) => m.push(format!(
                    "`rights.{kind}`: `backend` is not a device role (the backend writes any collection with writer \"device\" or \"backend\")"
                )),
                Some(role) => out.push(role),
                None => m.push(format!(
                    "`rights.{kind}`: unknown role {} (owner, manager or cashier)",
                    shown(r)
                )),
            }
        }
        Vec::leak(out)
    };
    WriteRights {
        create: roles("create"),
        update: roles("update"),
        delete: roles("delete"),
    }
}

fn indexes(value: Option<&Value>, m: &mut Vec<String>) -> Vec<&'static str> {
    let Some(value) = value else {
        return Vec::new();
    };
    let Some(list) = value.as_array() else {
        m.push("`indexes` must be a list of field names".into());
        return Vec::new();
    };
    let mut out: Vec<&'static str> = Vec::new();
    for index in list {
        match index.as_str() {
            Some(i) if i == KEY_FIELD => m.push(format!("index `{i}` is the key, which is always indexed")),
            Some(i) if out.contains(&i) => m.push(format!("index `{i}` listed twice")),
            Some(i) if valid_index(i) => out.push(String::leak(i.to_string())),
            _ => m.push(format!(
                "index {} must be a field path (`name`, `address.city`) or a compound `[a+b]`",
                shown(index)
            )),
        }
    }
    out
}

/// Names become table names on devices and in SQL views; `local_*` are the client's own tables.
fn valid_name(n: &str) -> bool {
    n.len() <= 63
        && n.starts_with(|c: char| c.is_ascii_lowercase())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !n.starts_with("local_")
}

/// A Dexie index: a dotted field path, or a compound `[a+b]` of them.
fn valid_index(i: &str) -> bool {
    let path = |p: &str| {
        !p.is_empty()
            && p.split('.').all(|part| {
                part.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            })
    };
    match i.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        Some(inner) => inner.split('+').count() >= 2 && inner.split('+').all(path),
        None => path(i),
    }
}

/// A value as the file's reader wrote it (strings quoted), as JSON shows it.
fn shown(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "?".into())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests;
