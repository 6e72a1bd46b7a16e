//! Verifying JWTs signed by the ERP's backend (protocol §3.2).
//!
//! The algorithm is chosen by the key, never by the token: an EdDSA, ES256 or RS256 token must name (`kid`) a
//! key of the JWKS whose type gives exactly that algorithm; an HS256 token is checked with the configured
//! secret only. So a public key can never be used as an HMAC secret (algorithm confusion), `alg: none` and
//! every other algorithm are refused, and a JWKS cannot smuggle in a symmetric key (`jwks.rs`).
//!
//! Time is checked here, against a `now` the caller passes (the protocol vectors replay with a fixed one):
//! `exp` and `iat` are required, `nbf` optional, each with the configured leeway; `exp - iat` may not exceed
//! the maximum lifetime, so a leaked backend key cannot mint tokens that live for a year.

use super::jwks::{KeySet, Keys};
use crate::config::jwt::JwtSettings;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// Longest accepted token; a JWT is a few hundred bytes, and this bounds the work a garbage one costs.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
const MAX_SUB_BYTES: usize = 255;
const MAX_DEVICE_BYTES: usize = 128;

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// `sub`: the ERP's user id (`users.external_id`).
    pub subject: String,
    /// `device`: the app's stable id of the device (`devices.external_id`).
    pub device: String,
    /// `exp`, in Unix seconds.
    pub expires_at: i64,
}

/// Why a token was refused. Every refusal answers 401 `unauthorized`; the reason is for logs and tests only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not three base64url parts of JSON, or an algorithm we do not know (`none` included).
    Malformed,
    /// An algorithm other than EdDSA, ES256, RS256 and HS256, or one with no key configured.
    Algorithm,
    /// An asymmetric token without `kid`, or whose `kid` is not in the JWKS.
    UnknownKey,
    /// The token's `alg` is not the algorithm of the key its `kid` names.
    KeyMismatch,
    /// Signature, `aud`, `iss` or a required claim wrong or missing.
    Invalid,
    Expired,
    NotYetValid,
    /// `exp - iat` over the maximum lifetime, or `exp` not after `iat`.
    TooLong,
    /// `sub` or `device` empty or too long.
    BadIdentity,
}

impl Refusal {
    /// The reason's name in `protocol/vectors/jwt.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::Algorithm => "algorithm",
            Refusal::UnknownKey => "unknown_kid",
            Refusal::KeyMismatch => "key_mismatch",
            Refusal::Invalid => "invalid",
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::TooLong => "lifetime_too_long",
            Refusal::BadIdentity => "bad_identity",
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    iat: i64,
    #[serde(default)]
    nbf: Option<i64>,
    device: String,
}

/// The rules and the secret, apart from the key set so they can be checked without any I/O.
pub struct Rules {
    pub audience: String,
    pub issuer: Option<String>,
    pub max_lifetime_secs: i64,
    pub leeway_secs: i64,
    pub hs256: Option<DecodingKey>,
}

impl Rules {
    pub fn from_settings(settings: &JwtSettings) -> Self {
        Rules {
            audience: settings.audience.clone(),
            issuer: settings.issuer.clone(),
            max_lifetime_secs: settings.max_lifetime.as_secs() as i64,
            leeway_secs: settings.leeway.as_secs() as i64,
            hs256: settings
                .hs256_secret
                .as_ref()
                .map(|s| DecodingKey::from_secret(s.expose().as_bytes())),
        }
    }

    /// Verifies `token` at `now` (Unix seconds) with the asymmetric keys `keys`.
    pub fn verify(&self, token: &str, now: i64, keys: &Keys) -> Result<Verified, Refusal> {
        let header = decode_header(token).map_err(|_| Refusal::Malformed)?;
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref().ok_or(Refusal::Algorithm)?,
            Algorithm::EdDSA | Algorithm::ES256 | Algorithm::RS256 => {
                let kid = header.kid.as_deref().ok_or(Refusal::UnknownKey)?;
                let key = keys.get(kid).ok_or(Refusal::UnknownKey)?;
                if key.alg != header.alg {
                    return Err(Refusal::KeyMismatch);
                }
                &key.key
            }
            _ => return Err(Refusal::Algorithm),
        };
        let mut validation = Validation::new(header.alg);
        // Time is checked below against `now`, not the library's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        validation.required_spec_claims = ["exp", "iat", "aud", "sub"].map(String::from).into();
        validation.set_audience(&[&self.audience]);
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            validation.required_spec_claims.insert("iss".into());
        }
        let claims = decode::<Claims>(token, key, &validation)
            .map_err(|_| Refusal::Invalid)?
            .claims;
        self.check_claims(&claims, now)?;
        Ok(Verified {
            subject: claims.sub,
            device: claims.device,
            expires_at: claims.exp,
        })
    }

    fn check_claims(&self, c: &Claims, now: i64) -> Result<(), Refusal> {
        let leeway = self.leeway_secs;
        if c.exp.saturating_add(leeway) <= now {
            return Err(Refusal::Expired);
        }
        if c.iat.saturating_sub(leeway) > now || c.nbf.is_some_and(|nbf| nbf.saturating_sub(leeway) > now) {
            return Err(Refusal::NotYetValid);
        }
        let lifetime = c.exp.saturating_sub(c.iat);
        if lifetime <= 0 || lifetime > self.max_lifetime_secs {
            return Err(Refusal::TooLong);
        }
        let bad = |s: &str, max: usize| s.is_empty() || s.len() > max || s.chars().any(char::is_control);
        if bad(&c.sub, MAX_SUB_BYTES) || bad(&c.device, MAX_DEVICE_BYTES) {
            return Err(Refusal::BadIdentity);
        }
        Ok(())
    }
}

/// The configured verifier: rules plus the JWKS, when one is configured.
pub struct JwtVerifier {
    rules: Rules,
    keys: Option<KeySet>,
}

impl JwtVerifier {
    pub fn new(settings: &JwtSettings) -> anyhow::Result<Self> {
        Ok(JwtVerifier {
            rules: Rules::from_settings(settings),
            keys: settings
                .jwks
                .clone()
                .map(|source| {
                    KeySet::new(
                        source,
                        settings.jwks_ca.as_ref(),
                        settings.jwks_refresh,
                        settings.jwks_min_refetch,
                    )
                })
                .transpose()?,
        })
    }

    /// Verifies `token` now, fetching the JWKS first when it is stale or the token's `kid` is new to it.
    pub async fn verify(&self, token: &str) -> Result<Verified, Refusal> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Refusal::Malformed);
        }
        let header = decode_header(token).map_err(|_| Refusal::Malformed)?;
        let mut keys = Keys::new();
        if let (Some(set), Some(kid), false) = (&self.keys, &header.kid, header.alg == Algorithm::HS256) {
            if let Some(key) = set.get(kid).await {
                keys.insert(kid.clone(), key);
            }
        }
        let now = chrono::Utc::now().timestamp();
        self.rules.verify(token, now, &keys)
    }
}

/// Whether `raw` has the shape of a JWT (three base64url parts), so anything else is refused without work.
pub fn looks_like_jwt(raw: &str) -> bool {
    raw.len() <= MAX_TOKEN_BYTES
        && raw.split('.').count() == 3
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const NOW: i64 = 1_767_225_600;
    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn rules() -> Rules {
        Rules {
            audience: "dukasync".into(),
            issuer: None,
            max_lifetime_secs: 3600,
            leeway_secs: 30,
            hs256: Some(DecodingKey::from_secret(SECRET)),
        }
    }

    fn token(iat: i64, exp: i64, nbf: Option<i64>) -> String {
        let mut claims = json!({"sub": "u1", "aud": "dukasync", "iat": iat, "exp": exp, "device": "d1"});
        if let Some(nbf) = nbf {
            claims["nbf"] = json!(nbf);
        }
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    #[test]
    fn time_bounds_hold_at_their_edges() {
        let r = rules();
        let keys = Keys::new();
        let at = |t: &str| r.verify(t, NOW, &keys).map(|v| v.subject);
        assert_eq!(at(&token(NOW - 60, NOW + 60, None)), Ok("u1".into()));
        assert_eq!(at(&token(NOW - 600, NOW - 29, None)), Ok("u1".into()));
        assert_eq!(at(&token(NOW - 600, NOW - 30, None)), Err(Refusal::Expired));
        assert_eq!(at(&token(NOW + 30, NOW + 600, None)), Ok("u1".into()));
        assert_eq!(at(&token(NOW + 31, NOW + 600, None)), Err(Refusal::NotYetValid));
        assert_eq!(at(&token(NOW, NOW + 600, Some(NOW + 31))), Err(Refusal::NotYetValid));
        assert_eq!(at(&token(NOW, NOW + 3600, None)), Ok("u1".into()));
        assert_eq!(at(&token(NOW, NOW + 3601, None)), Err(Refusal::TooLong));
        assert_eq!(at(&token(NOW, NOW, None)), Err(Refusal::TooLong));
    }

    #[test]
    fn hs256_is_refused_without_a_secret() {
        let r = Rules { hs256: None, ..rules() };
        assert_eq!(
            r.verify(&token(NOW, NOW + 60, None), NOW, &Keys::new()),
            Err(Refusal::Algorithm)
        );
    }

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt(&token(NOW, NOW + 60, None)));
        assert!(looks_like_jwt("eyJhbGciOiJub25lIn0.e30."));
        for bad in ["", "a.b", "a.b.c.d", "a b.c.d", "a.b.c=", &"a.".repeat(MAX_TOKEN_BYTES)] {
            assert!(!looks_like_jwt(bad), "{bad:?}");
        }
    }
}
