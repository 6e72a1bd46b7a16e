//! The canonical encoding of a synced row, and the row hash that scope checksums add up.
//!
//! Canonical JSON: object keys sorted by their UTF-8 bytes, no insignificant whitespace, strings escaped as
//! `serde_json` does (which matches `JSON.stringify` for every string), numbers only as integers within
//! ±(2^53 - 1). Floats are refused everywhere in the protocol, so the encoding is exact in every client language;
//! money and quantities travel as decimal strings.
//!
//! Row hash: the first four bytes, little-endian, of
//! `blake3(collection ‖ 0x1F ‖ key ‖ 0x1F ‖ canonical_json(data))`. A scope's checksum is the sum of its live
//! rows' hashes modulo 2^32, so it can be maintained incrementally (subtract the old hash, add the new one) and
//! a client computes the same value from its copy. See `protocol/README.md`, "Divergence check".

use serde_json::Value;

/// Largest integer that a JavaScript number holds exactly.
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// Why a value cannot be part of a synced row.
#[derive(Debug, PartialEq, Eq)]
pub enum CanonicalError {
    /// A float, or an integer outside ±(2^53 - 1); `path` names where.
    NonIntegerNumber { path: String },
    /// Nested deeper than [`MAX_DEPTH`] from the row's top.
    TooDeep,
    /// A string or an object key holds U+0000, which PostgreSQL's `jsonb` and `text` cannot store; `path` names
    /// where (the key itself when the key holds it).
    NulCharacter { path: String },
}

/// Deepest nesting of a row: a row's top-level fields are at depth 1, and no value may sit deeper than this.
/// Far below `serde_json`'s parse limit of 128, so every stored row can always be read back.
pub const MAX_DEPTH: usize = 32;

/// Checks that `value` can be encoded canonically: integers only, no NUL characters, bounded nesting.
pub fn validate(value: &Value) -> Result<(), CanonicalError> {
    validate_at(value, 0)
}

/// As [`validate`], for a value that will sit at `depth` inside its row (an `update`'s value at a key path of
/// that many segments): the nesting counted is the path's plus the value's own.
pub fn validate_at(value: &Value, depth: usize) -> Result<(), CanonicalError> {
    fn walk(value: &Value, path: &mut String, depth: usize) -> Result<(), CanonicalError> {
        if depth > MAX_DEPTH {
            return Err(CanonicalError::TooDeep);
        }
        match value {
            Value::String(s) if s.contains('\0') => Err(CanonicalError::NulCharacter { path: path.clone() }),
            Value::Number(n) => match n.as_i64() {
                Some(i) if (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&i) => Ok(()),
                _ => Err(CanonicalError::NonIntegerNumber { path: path.clone() }),
            },
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    walk(item, path, depth + 1)?;
                    path.truncate(len);
                }
                Ok(())
            }
            Value::Object(map) => {
                for (k, item) in map {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(k);
                    if k.contains('\0') {
                        return Err(CanonicalError::NulCharacter { path: path.clone() });
                    }
                    walk(item, path, depth + 1)?;
                    path.truncate(len);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
    walk(value, &mut String::new(), depth)
}

/// Canonical JSON bytes. `serde_json`'s map is ordered by key (the `preserve_order` feature is not enabled),
/// which is exactly the UTF-8 byte order the protocol specifies.
pub fn to_canonical_json(value: &Value) -> String {
    serde_json::to_string(value).expect("serializing a serde_json::Value cannot fail")
}

/// The row hash of a live row (see the module header).
pub fn row_hash(collection: &str, key: &str, data: &Value) -> u32 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(collection.as_bytes());
    hasher.update(&[0x1f]);
    hasher.update(key.as_bytes());
    hasher.update(&[0x1f]);
    hasher.update(to_canonical_json(data).as_bytes());
    let digest = hasher.finalize();
    let bytes = digest.as_bytes();
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_and_whitespace_dropped() {
        let value: Value = serde_json::from_str(r#"{ "b": 1, "a": {"d": "x", "c": [true, null]} }"#).unwrap();
        assert_eq!(to_canonical_json(&value), r#"{"a":{"c":[true,null],"d":"x"},"b":1}"#);
    }

    #[test]
    fn floats_and_unsafe_integers_are_refused_with_their_path() {
        assert_eq!(
            validate(&json!({"lines": [{"qty": 1.5}]})),
            Err(CanonicalError::NonIntegerNumber {
                path: "lines[0].qty".into()
            })
        );
        assert!(validate(&json!({"n": 9007199254740992_i64})).is_err());
        assert!(validate(&json!({"n": -9007199254740991_i64, "price": "12.50"})).is_ok());
    }

    #[test]
    fn nesting_counts_from_the_row_top_and_nul_is_refused_anywhere() {
        let mut deep = json!(1);
        for _ in 0..MAX_DEPTH {
            deep = json!({ "x": deep });
        }
        assert_eq!(validate(&deep), Ok(()), "a value at depth {MAX_DEPTH} is allowed");
        assert_eq!(validate(&json!({ "x": deep.clone() })), Err(CanonicalError::TooDeep));
        assert_eq!(validate_at(&json!(1), MAX_DEPTH), Ok(()));
        assert_eq!(validate_at(&json!(1), MAX_DEPTH + 1), Err(CanonicalError::TooDeep));
        assert_eq!(validate_at(&json!({"a": 1}), MAX_DEPTH), Err(CanonicalError::TooDeep));
        assert_eq!(
            validate(&json!({"a": ["ok", "b\u{0}"]})),
            Err(CanonicalError::NulCharacter { path: "a[1]".into() })
        );
        assert_eq!(
            validate(&json!({"k\u{0}": 1})),
            Err(CanonicalError::NulCharacter { path: "k\u{0}".into() })
        );
    }

    #[test]
    fn row_hash_depends_on_every_part() {
        let data = json!({"id": "c1", "name": "Wanjiru"});
        let base = row_hash("customers", "c1", &data);
        assert_ne!(base, row_hash("customers", "c2", &data));
        assert_ne!(base, row_hash("products", "c1", &data));
        assert_ne!(
            base,
            row_hash("customers", "c1", &json!({"id": "c1", "name": "Wanjiru K"}))
        );
        // Key order in the input does not matter.
        let reordered: Value = serde_json::from_str(r#"{"name":"Wanjiru","id":"c1"}"#).unwrap();
        assert_eq!(base, row_hash("customers", "c1", &reordered));
    }
}
