//! The one error type of the request path, and its one status table.
//!
//! Handlers and the sync layer return [`Error`]; `http::error` turns it into the documented body
//! `{"error": {"code", "message", "details"}}`. Codes are stable API (see `protocol/README.md`): a new
//! condition gets a new code, an existing code never changes meaning. Internal failures are logged once where
//! they are turned into a response, and their details never reach the client.

pub use crate::domain::codes::ErrorCode;
use http::StatusCode;
use serde_json::Value;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a feed cursor cannot be honoured; the client must drop its copy of the scope and pull from zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetReason {
    /// The cursor is older than the retained history (compacted changes and tombstones).
    Expired,
    /// The cursor is ahead of the scope's head: the server was restored from a backup.
    AheadOfHead,
    /// The cursor names a change this database does not have: a restore, or another database.
    UnknownHistory,
}

impl ResetReason {
    pub const ALL: [ResetReason; 3] = [
        ResetReason::Expired,
        ResetReason::AheadOfHead,
        ResetReason::UnknownHistory,
    ];

    /// Its name on the wire (`details.reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            ResetReason::Expired => "expired",
            ResetReason::AheadOfHead => "ahead_of_head",
            ResetReason::UnknownHistory => "unknown_history",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(&'static str),
    /// Also answered for scopes the token may not see, so their existence is not revealed.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Client input that can never be valid. `code` is one of the documented codes.
    #[error("{message}")]
    BadRequest { code: ErrorCode, message: String },
    /// The feed cursor cannot be honoured; answered with 410.
    #[error("this version is not in the scope's history here; drop the local copy and pull from zero")]
    ResetRequired { reason: ResetReason, head: i64 },
    #[error("the batch has more than {limit} operations")]
    BatchTooLarge { limit: usize },
    /// Operations were sent past a gap in the client's sequence; nothing was applied.
    #[error("operation sequence {expected} is the next one expected from this client")]
    SequenceGap { expected: i64 },
    /// An operation sequence or id was already used with a different payload; nothing was applied.
    #[error("{message}")]
    PayloadMismatch { code: ErrorCode, message: String, seq: i64 },
    /// One operation of a pushed batch is malformed (a [`Error::BadRequest`] it raised, now with its place);
    /// nothing of the batch was applied. `index` is its 0-based position in `ops`.
    #[error("{message}")]
    InvalidOperation {
        code: ErrorCode,
        message: String,
        seq: i64,
        index: usize,
        /// For `schema_violation`: the JSON pointer of the failing part of the row.
        path: Option<String>,
    },
    /// A row a device sent does not satisfy its collection's JSON Schema (protocol §9); `path` points at the
    /// failing part. Raised while parsing an operation, so [`Error::at_operation`] gives it its place.
    #[error("{message}")]
    SchemaViolation { message: String, path: String },
    /// One write of a backend batch (`POST /rows`) is refused: 400 with its code, or 422 `payload_mismatch` when
    /// its id was used with another payload. Nothing of the batch was applied. `index`: its 0-based position.
    #[error("{message}")]
    InvalidWrite {
        code: ErrorCode,
        message: String,
        index: usize,
        /// For `schema_violation`: the JSON pointer of the failing part of the row.
        path: Option<String>,
    },
    #[error("this client id belongs to another device")]
    ClientTaken,
    /// The conflict was already resolved; `current` is its detail now.
    #[error("this conflict is already resolved")]
    AlreadyResolved { current: Box<Value> },
    /// The conflict's row changed since the decision was prepared; `current` is the conflict's detail now.
    #[error("the row has changed since; look at its current state and decide again")]
    RowMovedOn { current: Box<Value> },
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("route not found")]
    RouteNotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Too many pairing attempts from this address or in total (protocol §3.3); answered with `Retry-After`.
    #[error("too many pairing attempts; retry after {retry_after_secs} s")]
    TooManyAttempts { retry_after_secs: u64 },
    #[error("the server is busy; retry later")]
    Overloaded,
    /// A dependency (PostgreSQL) is unreachable: nothing was done, the client should retry.
    #[error("the service is temporarily unavailable; retry later")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// A refusal of the operation at `index` (sequence `seq`) of a batch: a bad request gains its place, so a
    /// client can set exactly that operation aside; every other error is kept as it is.
    pub fn at_operation(self, seq: i64, index: usize) -> Self {
        match self {
            Error::BadRequest { code, message } => Error::InvalidOperation {
                code,
                message,
                seq,
                index,
                path: None,
            },
            Error::SchemaViolation { message, path } => Error::InvalidOperation {
                code: ErrorCode::SchemaViolation,
                message,
                seq,
                index,
                path: Some(path),
            },
            other => other,
        }
    }

    /// A refusal of the backend write at `index` of a batch; every other error is kept as it is.
    pub fn at_write(self, index: usize) -> Self {
        match self {
            Error::BadRequest { code, message } => Error::InvalidWrite {
                code,
                message,
                index,
                path: None,
            },
            Error::SchemaViolation { message, path } => Error::InvalidWrite {
                code: ErrorCode::SchemaViolation,
                message,
                index,
                path: Some(path),
            },
            other => other,
        }
    }

    /// The status table: every variant's HTTP status in one place.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) | Error::RouteNotFound => StatusCode::NOT_FOUND,
            Error::BadRequest { .. } | Error::InvalidOperation { .. } | Error::SchemaViolation { .. } => {
                StatusCode::BAD_REQUEST
            }
            Error::ResetRequired { .. } => StatusCode::GONE,
            Error::PayloadTooLarge { .. } | Error::BatchTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::SequenceGap { .. }
            | Error::ClientTaken
            | Error::AlreadyResolved { .. }
            | Error::RowMovedOn { .. } => StatusCode::CONFLICT,
            Error::PayloadMismatch { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::InvalidWrite { code, .. } if *code == ErrorCode::PayloadMismatch => StatusCode::UNPROCESSABLE_ENTITY,
            Error::InvalidWrite { .. } => StatusCode::BAD_REQUEST,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Error::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Overloaded | Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Unauthorized => ErrorCode::Unauthorized,
            Error::Forbidden(_) => ErrorCode::Forbidden,
            Error::NotFound("scope") => ErrorCode::ScopeNotFound,
            Error::NotFound("dataset") => ErrorCode::DatasetNotFound,
            Error::NotFound("conflict") => ErrorCode::ConflictNotFound,
            Error::NotFound("token") => ErrorCode::TokenNotFound,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::BadRequest { code, .. }
            | Error::InvalidOperation { code, .. }
            | Error::InvalidWrite { code, .. } => *code,
            Error::SchemaViolation { .. } => ErrorCode::SchemaViolation,
            Error::ResetRequired { .. } => ErrorCode::ResetRequired,
            Error::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            Error::BatchTooLarge { .. } => ErrorCode::BatchTooLarge,
            Error::SequenceGap { .. } => ErrorCode::SequenceGap,
            Error::PayloadMismatch { code, .. } => *code,
            Error::ClientTaken => ErrorCode::ClientIdTaken,
            Error::AlreadyResolved { .. } => ErrorCode::AlreadyResolved,
            Error::RowMovedOn { .. } => ErrorCode::RowMovedOn,
            Error::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            Error::RouteNotFound => ErrorCode::RouteNotFound,
            Error::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            Error::TooManyAttempts { .. } => ErrorCode::TooManyAttempts,
            Error::Overloaded => ErrorCode::Overloaded,
            Error::Unavailable(_) => ErrorCode::Unavailable,
            Error::Internal(_) => ErrorCode::Internal,
        }
    }

    /// Structured details a client can act on, if any.
    pub fn details(&self) -> Option<Value> {
        match self {
            Error::ResetRequired { reason, head } => Some(serde_json::json!({ "reason": reason, "head": head })),
            Error::PayloadTooLarge { limit } => Some(serde_json::json!({ "limit_bytes": limit })),
            Error::BatchTooLarge { limit } => Some(serde_json::json!({ "limit_ops": limit })),
            Error::TooManyAttempts { retry_after_secs } => {
                Some(serde_json::json!({ "retry_after_secs": retry_after_secs }))
            }
            Error::SequenceGap { expected } => Some(serde_json::json!({ "expected_seq": expected })),
            Error::PayloadMismatch { seq, .. } => Some(serde_json::json!({ "seq": seq })),
            Error::InvalidOperation {
                seq,
                index,
                path: Some(path),
                ..
            } => Some(serde_json::json!({ "seq": seq, "index": index, "path": path })),
            Error::InvalidOperation { seq, index, .. } => Some(serde_json::json!({ "seq": seq, "index": index })),
            Error::InvalidWrite {
                index,
                path: Some(path),
                ..
            } => Some(serde_json::json!({ "index": index, "path": path })),
            Error::InvalidWrite { index, .. } => Some(serde_json::json!({ "index": index })),
            Error::AlreadyResolved { current } | Error::RowMovedOn { current } => {
                Some(serde_json::json!({ "conflict": current }))
            }
            _ => None,
        }
    }

    /// What the client is told. Server-side failures say nothing about their cause.
    pub fn public_message(&self) -> String {
        match self {
            Error::Unavailable(_) => "the service is temporarily unavailable; retry later".to_string(),
            Error::Internal(_) => "internal error".to_string(),
            other => other.to_string(),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        // Every database error of a request passes here, so this is the one place that tells the pool a
        // connection died (its idle connections are then pinged before reuse: `store::connect`). Done here,
        // and not at each query, so no path can forget it; it only records a time, it never changes the error.
        crate::store::note_connection_failure(&err);
        match &err {
            // The pool could not hand out a connection, or the connection broke: PostgreSQL is unreachable
            // or overloaded. Nothing was committed, so the client may safely retry.
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
                Error::Unavailable(err.to_string())
            }
            sqlx::Error::Database(db) if is_transient_sqlstate(db.code().as_deref()) => {
                Error::Unavailable(err.to_string())
            }
            _ => Error::Internal(err.into()),
        }
    }
}

/// SQLSTATEs that mean "try again": connection exceptions (08), serialization failure and deadlock (40001,
/// 40P01), insufficient resources such as too many connections (53), operator intervention such as shutdown
/// or a terminated backend (57P), and a database not accepting connections right now (55000, at connect).
fn is_transient_sqlstate(code: Option<&str>) -> bool {
    matches!(code, Some(c) if c.starts_with("08") || c.starts_with("53") || c.starts_with("57P")
        || matches!(c, "40001" | "40P01" | "55000" | "55P03"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_reasons_name_themselves_as_on_the_wire() {
        for reason in ResetReason::ALL {
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
        }
    }
}
