//! A pushed operation turned into a typed value once, when the batch is checked ([`Op::parse`]); that value is
//! what runs (`replay::generic::apply`, `replay::commands::execute`) and what the batch foresees
//! (`replay::batch::Foresight`), so nothing downstream parses arguments again or assumes a field is there.
//!
//! The wire operation is kept next to it: its `seq`, `id` and `key` identify the operation, its fingerprint is
//! taken over it, and rejected or flagged operations are recorded exactly as the client sent them.
//!
//! Shape errors (unknown collection, a server-only collection, floats, a key that does not match `id`, ...)
//! refuse the whole batch before anything is written: the client has a bug, and retrying cannot help.

use crate::error::ErrorCode;
use crate::{
    domain::{
        canonical::{self, CanonicalError},
        collections::{self, Collection, Writer, KEY_FIELD, MAX_KEY_LEN},
        commands::{self, Command},
    },
    error::{Error, Result},
    wire::{OpType, Operation},
};
use serde_json::{Map, Value};

/// What an operation does, checked in full.
#[derive(Debug)]
pub enum Op {
    /// A generic operation on a collection devices write.
    Write(Write),
    /// A named command, its arguments parsed.
    Command(Command),
}

/// A generic operation: create, put, update or delete of one row.
#[derive(Debug)]
pub struct Write {
    pub collection: &'static Collection,
    pub change: Change,
    /// The row version the device last saw (never negative).
    pub base_version: Option<i64>,
}

#[derive(Debug)]
pub enum Change {
    /// `create` or `put`: the whole object, whose `id` is the key. Both apply alike.
    Whole(Map<String, Value>),
    /// `update`: key paths (at least one) to new values; `null` clears.
    Update(Map<String, Value>),
    Delete,
}

impl Change {
    /// What the client sent, as recorded with a conflict (`None` for a delete).
    pub fn sent(&self) -> Option<Value> {
        match self {
            Change::Whole(fields) | Change::Update(fields) => Some(Value::Object(fields.clone())),
            Change::Delete => None,
        }
    }
}

impl Op {
    /// Checks an operation's shape and parses it; any error refuses the whole batch (4xx, nothing written).
    pub fn parse(op: &Operation) -> Result<Op> {
        if op.seq < 1 {
            return Err(refusal(
                op,
                ErrorCode::InvalidSequence,
                "sequence numbers start at 1".into(),
            ));
        }
        if op.key.is_empty() || op.key.len() > MAX_KEY_LEN {
            return Err(refusal(
                op,
                ErrorCode::InvalidKey,
                format!("keys are 1 to {MAX_KEY_LEN} bytes"),
            ));
        }
        // PostgreSQL's text and jsonb cannot hold U+0000: refused here, or the write would fail as a 500.
        for (field, text) in [("key", op.key.as_str()), ("collection", &op.collection)]
            .into_iter()
            .chain(op.command.as_deref().map(|c| ("command", c)))
        {
            if text.contains('\0') {
                let message = format!("`{field}` holds a NUL character (U+0000)");
                return Err(refusal(op, ErrorCode::NulNotAllowed, message));
            }
        }
        match op.op_type {
            OpType::Command => parse_command(op).map(Op::Command),
            OpType::Create | OpType::Put => parse_write(op, whole).map(Op::Write),
            OpType::Update => parse_write(op, update).map(Op::Write),
            OpType::Delete => parse_write(op, delete).map(Op::Write),
        }
    }
}

/// The 400 refusing the batch for `op`, its message naming the operation's sequence.
fn refusal(op: &Operation, code: ErrorCode, message: String) -> Error {
    Error::bad_request(code, format!("operation {}: {message}", op.seq))
}

/// A generic operation names a collection devices write; `change` checks what its type carries.
fn parse_write(op: &Operation, change: fn(&Operation) -> Result<Change>) -> Result<Write> {
    if op.command.is_some() || op.args.is_some() {
        let message = "`command` and `args` belong to operations of type `command`";
        return Err(refusal(op, ErrorCode::InvalidOperation, message.into()));
    }
    let Some(collection) = collections::find(&op.collection) else {
        let message = format!("unknown collection `{}`", op.collection);
        return Err(refusal(op, ErrorCode::UnknownCollection, message));
    };
    if collection.writer != Writer::Device {
        let by = if collection.writer == Writer::Backend {
            "the ERP backend"
        } else {
            "the server"
        };
        let message = format!("`{}` is written only by {by}", op.collection);
        return Err(refusal(op, ErrorCode::ServerOnlyCollection, message));
    }
    if op.base_version.is_some_and(|v| v < 0) {
        let message = "base_version must not be negative";
        return Err(refusal(op, ErrorCode::InvalidBaseVersion, message.into()));
    }
    let change = change(op)?;
    // A whole row is checked here, before anything applies: the batch is refused, like any malformed
    // operation. An update's row exists only once merged with the stored one (`replay::generic`).
    if let (Change::Whole(data), Some(schema)) = (&change, collection.schema) {
        if let Some((path, why)) = schema.violation(&Value::Object(data.clone())) {
            return Err(Error::SchemaViolation {
                message: format!(
                    "operation {}: the row does not satisfy the `{}` schema at `{path}`: {why}",
                    op.seq, op.collection
                ),
                path,
            });
        }
    }
    Ok(Write {
        collection,
        change,
        base_version: op.base_version,
    })
}

/// `create` and `put`: the whole object in `data`, its `id` equal to the key.
fn whole(op: &Operation) -> Result<Change> {
    let Some(whole @ Value::Object(data)) = &op.data else {
        let message = "create and put carry the whole object in `data`";
        return Err(refusal(op, ErrorCode::InvalidOperation, message.into()));
    };
    if op.mods.is_some() {
        return Err(refusal(
            op,
            ErrorCode::InvalidOperation,
            "create and put take no `mods`".into(),
        ));
    }
    if data.get(KEY_FIELD) != Some(&Value::String(op.key.clone())) {
        return Err(refusal(
            op,
            ErrorCode::KeyMismatch,
            format!("`data.{KEY_FIELD}` must equal `key`"),
        ));
    }
    check_values(op, whole)?;
    Ok(Change::Whole(data.clone()))
}

/// `update`: a non-empty `mods` of key paths that may be changed.
fn update(op: &Operation) -> Result<Change> {
    let Some(mods) = op.mods.as_ref().filter(|m| !m.is_empty()) else {
        let message = "update carries a non-empty `mods`";
        return Err(refusal(op, ErrorCode::InvalidOperation, message.into()));
    };
    if op.data.is_some() {
        return Err(refusal(
            op,
            ErrorCode::InvalidOperation,
            "update takes `mods`, not `data`".into(),
        ));
    }
    for (path, value) in mods {
        if path.contains('\0') {
            let message = "a key path holds a NUL character (U+0000)";
            return Err(refusal(op, ErrorCode::NulNotAllowed, message.into()));
        }
        if path.split('.').any(str::is_empty) || path.split('.').next() == Some(KEY_FIELD) {
            let message = format!("`{path}` is not a key path that may be changed");
            return Err(refusal(op, ErrorCode::InvalidPath, message));
        }
        // The value lands as deep in the row as the path has segments: both count against the limit, or a
        // long dotted path would build a row nested deeper than any read can parse.
        check_values_at(op, value, path.split('.').count())?;
    }
    Ok(Change::Update(mods.clone()))
}

/// `delete`: the key alone.
fn delete(op: &Operation) -> Result<Change> {
    if op.data.is_some() || op.mods.is_some() {
        let message = "delete takes neither `data` nor `mods`";
        return Err(refusal(op, ErrorCode::InvalidOperation, message.into()));
    }
    Ok(Change::Delete)
}

/// A command names no collection and carries only `args`; its arguments are parsed in full here.
fn parse_command(op: &Operation) -> Result<Command> {
    if !op.collection.is_empty() || op.data.is_some() || op.mods.is_some() || op.base_version.is_some() {
        let message = "a command takes `command`, `key` and `args` only";
        return Err(refusal(op, ErrorCode::InvalidOperation, message.into()));
    }
    let (Some(name), Some(args)) = (&op.command, &op.args) else {
        let message = "a command needs `command` and `args`";
        return Err(refusal(op, ErrorCode::InvalidOperation, message.into()));
    };
    check_values(op, args)?;
    commands::parse(name, args).map_err(|e| refusal(op, e.code, e.message))
}

fn check_values(op: &Operation, value: &Value) -> Result<()> {
    check_values_at(op, value, 0)
}

/// Checks a value that will sit `depth` levels down in its row.
fn check_values_at(op: &Operation, value: &Value, depth: usize) -> Result<()> {
    canonical::validate_at(value, depth).map_err(|e| {
        let (code, message) = canonical_refusal(e);
        refusal(op, code, message)
    })
}

/// The code and message of a value canonical JSON refuses; shared with backend writes (`inbox::rows`).
pub fn canonical_refusal(e: CanonicalError) -> (ErrorCode, String) {
    match e {
        CanonicalError::NonIntegerNumber { path } => (
            ErrorCode::FloatNotAllowed,
            format!("`{path}` is not an integer; send decimals as strings"),
        ),
        CanonicalError::TooDeep => (
            ErrorCode::TooDeep,
            format!(
                "nested more than {} levels deep (key path segments and nesting together)",
                canonical::MAX_DEPTH
            ),
        ),
        CanonicalError::NulCharacter { path } => (
            ErrorCode::NulNotAllowed,
            format!("`{}` holds a NUL character (U+0000)", path.replace('\0', "\\u0000")),
        ),
    }
}
