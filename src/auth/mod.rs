//! Bearer tokens and who they speak for.
//!
//! A token is `dks_` followed by 64 hex digits (32 random bytes). Only its blake3 hash is stored: tokens are
//! high-entropy random values, so a fast hash is enough (no password stretching needed), and a leaked table
//! does not reveal usable tokens. A token belongs to a device, the device to a user, and the user has one role
//! per scope; a token sees exactly those scopes.
//!
//! Beside them, JWTs signed by the ERP's backend (`jwt`, `jwks`; protocol §3.2) name a user by its
//! `external_id` and a device of that user; the user's memberships here give the roles, as for device tokens.

pub mod attempts;
mod cache;
pub mod jwks;
pub mod jwt;
pub mod lifecycle;
pub mod pairing;

pub use cache::TokenCache;

pub use crate::domain::principal::{Principal, TokenHash};

const PREFIX: &str = "dks_";

/// A freshly generated token: `plaintext` is shown once and never stored.
pub struct NewToken {
    pub plaintext: String,
    pub hash: TokenHash,
}

impl NewToken {
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        let plaintext = format!("{PREFIX}{}", hex::encode(bytes));
        let hash = hash_token(&plaintext);
        NewToken { plaintext, hash }
    }
}

pub fn hash_token(plaintext: &str) -> TokenHash {
    *blake3::hash(plaintext.as_bytes()).as_bytes()
}

/// Whether `raw` has the shape of a token; anything else is refused without asking the database.
pub fn looks_like_token(raw: &str) -> bool {
    raw.strip_prefix(PREFIX)
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_have_the_documented_shape_and_differ() {
        let a = NewToken::generate();
        let b = NewToken::generate();
        assert!(looks_like_token(&a.plaintext));
        assert_ne!(a.plaintext, b.plaintext);
        assert_eq!(hash_token(&a.plaintext), a.hash);
    }

    #[test]
    fn malformed_tokens_are_recognised() {
        for bad in [
            "",
            "dks_",
            "dks_xyz",
            "Bearer dks_00",
            &format!("dks_{}", "g".repeat(64)),
        ] {
            assert!(!looks_like_token(bad), "{bad:?}");
        }
    }
}
