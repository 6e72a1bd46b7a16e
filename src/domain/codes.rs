//! The stable error codes of the protocol (`protocol/README.md` §4): every code an error answer can carry,
//! as one enum, so a code is a value the compiler checks, not a string each layer spells. The test below holds
//! the list to the protocol's table, both ways.

macro_rules! error_codes {
    ($($variant:ident => $code:literal,)*) => {
        /// A stable, machine-readable error code (`error.code` on the wire).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            /// Every code, in the order of the protocol's table.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as it crosses the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }
        }
    };
}

error_codes! {
    Unauthorized => "unauthorized",
    Forbidden => "forbidden",
    ScopeNotFound => "scope_not_found",
    DatasetNotFound => "dataset_not_found",
    RouteNotFound => "route_not_found",
    NotFound => "not_found",
    MethodNotAllowed => "method_not_allowed",
    Timeout => "timeout",
    BatchTooLarge => "batch_too_large",
    SequenceGap => "sequence_gap",
    ClientIdTaken => "client_id_taken",
    ConflictNotFound => "conflict_not_found",
    AlreadyResolved => "already_resolved",
    RowMovedOn => "row_moved_on",
    InvalidDecision => "invalid_decision",
    InvalidValue => "invalid_value",
    InvalidNote => "invalid_note",
    InvalidAccount => "invalid_account",
    InvalidAccountType => "invalid_account_type",
    InvalidPaymentMethod => "invalid_payment_method",
    InvalidName => "invalid_name",
    UnknownAccount => "unknown_account",
    AccountExists => "account_exists",
    PaymentMethodExists => "payment_method_exists",
    InvalidEmail => "invalid_email",
    InvalidRole => "invalid_role",
    InvalidDeviceName => "invalid_device_name",
    InvalidPairingCode => "invalid_pairing_code",
    TooManyAttempts => "too_many_attempts",
    TokenNotFound => "token_not_found",
    PayloadMismatch => "payload_mismatch",
    OpIdReused => "op_id_reused",
    FloatNotAllowed => "float_not_allowed",
    UnknownCollection => "unknown_collection",
    ServerOnlyCollection => "server_only_collection",
    SchemaViolation => "schema_violation",
    KeyMismatch => "key_mismatch",
    InvalidOperation => "invalid_operation",
    InvalidPath => "invalid_path",
    InvalidKey => "invalid_key",
    InvalidSequence => "invalid_sequence",
    InvalidBaseVersion => "invalid_base_version",
    DuplicateOpId => "duplicate_op_id",
    TooDeep => "too_deep",
    NulNotAllowed => "nul_not_allowed",
    UnknownCommand => "unknown_command",
    InvalidArguments => "invalid_arguments",
    InvalidDecimal => "invalid_decimal",
    InvalidQuantity => "invalid_quantity",
    InvalidAmount => "invalid_amount",
    PaymentMismatch => "payment_mismatch",
    CustomerRequired => "customer_required",
    InvalidPayment => "invalid_payment",
    DuplicateWriteId => "duplicate_write_id",
    InvalidIfVersion => "invalid_if_version",
    ResetRequired => "reset_required",
    PayloadTooLarge => "payload_too_large",
    UnsupportedMediaType => "unsupported_media_type",
    InvalidQuery => "invalid_query",
    InvalidCursor => "invalid_cursor",
    InvalidVersion => "invalid_version",
    MalformedBody => "malformed_body",
    UnknownField => "unknown_field",
    BadRequest => "bad_request",
    Overloaded => "overloaded",
    Unavailable => "unavailable",
    Internal => "internal",
}

/// Why an operation was rejected (`status: "rejected"`, protocol §10): the operation can never take effect, so it
/// is recorded for review and the client's sequence moves on. Not an error answer: the push itself succeeded.
/// Some share a name with an error code (`invalid_path`, `unknown_account`) when the same mistake is found
/// before anything runs (a 400) or only against the stored rows (a rejection); the status tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectionCode {
    RowNotFound,
    InvalidPath,
    SaleNotFound,
    AlreadyVoided,
    DuplicateKey,
    UnknownAccount,
    UnknownProduct,
    UnknownPaymentMethod,
    ForbiddenWrite,
    SchemaViolation,
}

impl RejectionCode {
    pub const ALL: &'static [RejectionCode] = &[
        RejectionCode::RowNotFound,
        RejectionCode::InvalidPath,
        RejectionCode::SaleNotFound,
        RejectionCode::AlreadyVoided,
        RejectionCode::DuplicateKey,
        RejectionCode::UnknownAccount,
        RejectionCode::UnknownProduct,
        RejectionCode::UnknownPaymentMethod,
        RejectionCode::ForbiddenWrite,
        RejectionCode::SchemaViolation,
    ];

    /// The code as it crosses the wire (`results[].code`).
    pub fn as_str(self) -> &'static str {
        match self {
            RejectionCode::RowNotFound => "row_not_found",
            RejectionCode::InvalidPath => "invalid_path",
            RejectionCode::SaleNotFound => "sale_not_found",
            RejectionCode::AlreadyVoided => "already_voided",
            RejectionCode::DuplicateKey => "duplicate_key",
            RejectionCode::UnknownAccount => "unknown_account",
            RejectionCode::UnknownProduct => "unknown_product",
            RejectionCode::UnknownPaymentMethod => "unknown_payment_method",
            RejectionCode::ForbiddenWrite => "forbidden_write",
            RejectionCode::SchemaViolation => "schema_violation",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::{ErrorCode, RejectionCode};
    use std::collections::BTreeSet;

    /// The codes in the first column of the table of protocol §4.
    fn documented() -> BTreeSet<String> {
        let protocol = include_str!("../../protocol/README.md");
        let start = protocol.find("## 4. Errors").expect("protocol §4");
        let end = protocol[start..].find("## 5.").map_or(protocol.len(), |e| start + e);
        let mut codes = BTreeSet::new();
        for row in protocol[start..end].lines().filter(|l| l.starts_with("| `")) {
            let first_cell = row.split('|').nth(1).unwrap_or("");
            codes.extend(first_cell.split('`').skip(1).step_by(2).map(str::to_string));
        }
        codes
    }

    #[test]
    fn the_codes_are_exactly_those_of_protocol_section_4() {
        let ours: BTreeSet<String> = ErrorCode::ALL.iter().map(|c| c.as_str().to_string()).collect();
        let documented = documented();
        assert!(documented.len() > 40, "read the table: {documented:?}");
        let undocumented: Vec<_> = ours.difference(&documented).collect();
        let missing: Vec<_> = documented.difference(&ours).collect();
        assert!(undocumented.is_empty(), "codes not in protocol §4: {undocumented:?}");
        assert!(
            missing.is_empty(),
            "codes of protocol §4 the server does not know: {missing:?}"
        );
    }

    /// Every rejection code is named in protocol §10 (the rules of `rejected`, and §10.1 for commands).
    #[test]
    fn every_rejection_code_is_documented_in_protocol_section_10() {
        let protocol = include_str!("../../protocol/README.md");
        let start = protocol.find("## 10. Operation replay").expect("protocol §10");
        let end = protocol.find("## 11.").expect("protocol §11");
        let section = &protocol[start..end];
        for code in RejectionCode::ALL {
            let quoted = format!("`{}`", code.as_str());
            assert!(
                section.contains(&quoted),
                "rejection code {quoted} is not in protocol §10"
            );
        }
    }
}
