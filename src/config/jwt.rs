//! Settings for tokens signed by the ERP's backend (JWTs, protocol §3.2), read from `DUKASYNC_JWT_*`.
//!
//! No JWT variable set: JWTs are refused (401) and device tokens work alone. Any of them set: a key source
//! (a JWKS URL or file, an HS256 secret, or both) and `DUKASYNC_JWT_AUDIENCE` are required, so a half-configured
//! server stops at start-up instead of accepting tokens for any audience.

use super::{problem, ConfigError, Env, Secret};
use std::{path::PathBuf, time::Duration};

/// Shortest HS256 secret accepted: RFC 7518 §3.2 asks for a key at least as long as the hash (256 bits).
const MIN_SECRET_BYTES: usize = 32;

/// Where the public keys of the asymmetric algorithms (EdDSA, ES256, RS256) come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// `DUKASYNC_JWT_JWKS_URL`: fetched over HTTP (plain `http://`, e.g. the ERP on the same host or network;
    /// this build has no TLS client, so an `https://` URL is refused at start-up).
    Url(String),
    /// `DUKASYNC_JWT_JWKS_FILE`: read from disk, re-read on every refresh.
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub jwks: Option<JwksSource>,
    /// `DUKASYNC_JWT_HS256_SECRET` or `DUKASYNC_JWT_HS256_SECRET_FILE` (at least 32 bytes).
    pub hs256_secret: Option<Secret>,
    /// `DUKASYNC_JWT_AUDIENCE` (required): the `aud` every token must carry.
    pub audience: String,
    /// `DUKASYNC_JWT_ISSUER` (optional): when set, the `iss` every token must carry.
    pub issuer: Option<String>,
    /// `DUKASYNC_JWT_MAX_LIFETIME_SECS` (default 3600, 60 – 86400): largest accepted `exp - iat`.
    pub max_lifetime: Duration,
    /// `DUKASYNC_JWT_LEEWAY_SECS` (default 30, 0 – 300): clock skew allowed on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// `DUKASYNC_JWT_JWKS_REFRESH_SECS` (default 300, 10 – 86400): how old the fetched keys may get.
    pub jwks_refresh: Duration,
    /// `DUKASYNC_JWT_JWKS_MIN_REFETCH_SECS` (default 30, 1 – 3600): at most one fetch per this interval when a
    /// token names an unknown `kid`, so random kids cannot make the server hammer the JWKS URL.
    pub jwks_min_refetch: Duration,
}

const VARIABLES: &[&str] = &[
    "DUKASYNC_JWT_JWKS_URL",
    "DUKASYNC_JWT_JWKS_FILE",
    "DUKASYNC_JWT_HS256_SECRET",
    "DUKASYNC_JWT_HS256_SECRET_FILE",
    "DUKASYNC_JWT_AUDIENCE",
    "DUKASYNC_JWT_ISSUER",
];

pub(super) fn read<F: Fn(&str) -> Option<String>>(env: &Env<'_, F>) -> Result<Option<JwtSettings>, ConfigError> {
    if VARIABLES.iter().all(|v| env.optional_string(v).is_none()) {
        return Ok(None);
    }
    let jwks = match (
        env.optional_string("DUKASYNC_JWT_JWKS_URL"),
        env.optional_string("DUKASYNC_JWT_JWKS_FILE"),
    ) {
        (Some(_), Some(_)) => {
            return Err(problem(
                "DUKASYNC_JWT_JWKS_FILE",
                "cannot be set together with DUKASYNC_JWT_JWKS_URL",
            ))
        }
        (Some(url), None) => {
            super::check_url("DUKASYNC_JWT_JWKS_URL", &url, &["http"])?;
            Some(JwksSource::Url(url))
        }
        (None, Some(path)) => Some(JwksSource::File(path.into())),
        (None, None) => None,
    };
    let hs256_secret = match (
        env.optional_string("DUKASYNC_JWT_HS256_SECRET"),
        env.optional_string("DUKASYNC_JWT_HS256_SECRET_FILE"),
    ) {
        (Some(_), Some(_)) => {
            return Err(problem(
                "DUKASYNC_JWT_HS256_SECRET_FILE",
                "cannot be set together with DUKASYNC_JWT_HS256_SECRET",
            ))
        }
        (Some(secret), None) => Some(secret),
        (None, Some(path)) => Some(
            std::fs::read_to_string(&path)
                .map_err(|e| problem("DUKASYNC_JWT_HS256_SECRET_FILE", format!("cannot be read ({e})")))?
                .trim()
                .to_string(),
        ),
        (None, None) => None,
    };
    if let Some(secret) = &hs256_secret {
        if secret.len() < MIN_SECRET_BYTES {
            // Named without the value: the message is printed and must not leak even a short secret.
            return Err(problem(
                "DUKASYNC_JWT_HS256_SECRET",
                format!("must be at least {MIN_SECRET_BYTES} bytes"),
            ));
        }
    }
    if jwks.is_none() && hs256_secret.is_none() {
        return Err(problem(
            "DUKASYNC_JWT_JWKS_URL",
            "(or DUKASYNC_JWT_JWKS_FILE or DUKASYNC_JWT_HS256_SECRET) is needed when any DUKASYNC_JWT_* is set",
        ));
    }
    let audience = env.optional_string("DUKASYNC_JWT_AUDIENCE").ok_or_else(|| {
        problem(
            "DUKASYNC_JWT_AUDIENCE",
            "is not set (required when a JWT key is configured)",
        )
    })?;
    let secs = |name, default, range| env.parse_or(name, default, range).map(Duration::from_secs);
    Ok(Some(JwtSettings {
        jwks,
        hs256_secret: hs256_secret.map(Secret::new),
        audience,
        issuer: env.optional_string("DUKASYNC_JWT_ISSUER"),
        max_lifetime: secs("DUKASYNC_JWT_MAX_LIFETIME_SECS", 3600, 60..=86_400)?,
        leeway: secs("DUKASYNC_JWT_LEEWAY_SECS", 30, 0..=300)?,
        jwks_refresh: secs("DUKASYNC_JWT_JWKS_REFRESH_SECS", 300, 10..=86_400)?,
        jwks_min_refetch: secs("DUKASYNC_JWT_JWKS_MIN_REFETCH_SECS", 30, 1..=3600)?,
    }))
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        map.insert("DUKASYNC_DATABASE_URL".into(), "postgres://x@h/db".into());
        Config::from_lookup(|k| map.get(k).cloned())
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn no_jwt_variable_means_no_jwt() {
        assert!(config(&[]).unwrap().jwt.is_none());
    }

    #[test]
    fn a_key_needs_an_audience() {
        let err = config(&[("DUKASYNC_JWT_HS256_SECRET", SECRET)]).unwrap_err();
        assert_eq!(err.variable, "DUKASYNC_JWT_AUDIENCE");
    }

    #[test]
    fn an_audience_needs_a_key() {
        let err = config(&[("DUKASYNC_JWT_AUDIENCE", "dukasync")]).unwrap_err();
        assert_eq!(err.variable, "DUKASYNC_JWT_JWKS_URL");
    }

    #[test]
    fn a_short_secret_is_refused_without_showing_it() {
        let err = config(&[
            ("DUKASYNC_JWT_HS256_SECRET", "tooshort-s3cret"),
            ("DUKASYNC_JWT_AUDIENCE", "dukasync"),
        ])
        .unwrap_err();
        assert_eq!(err.variable, "DUKASYNC_JWT_HS256_SECRET");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn url_and_file_exclude_each_other_and_https_is_refused() {
        let both = config(&[
            ("DUKASYNC_JWT_JWKS_URL", "http://127.0.0.1:8000/jwks.json"),
            ("DUKASYNC_JWT_JWKS_FILE", "/etc/jwks.json"),
            ("DUKASYNC_JWT_AUDIENCE", "dukasync"),
        ])
        .unwrap_err();
        assert_eq!(both.variable, "DUKASYNC_JWT_JWKS_FILE");
        let https = config(&[
            ("DUKASYNC_JWT_JWKS_URL", "https://erp.example/jwks.json"),
            ("DUKASYNC_JWT_AUDIENCE", "dukasync"),
        ])
        .unwrap_err();
        assert_eq!(https.variable, "DUKASYNC_JWT_JWKS_URL");
    }

    #[test]
    fn defaults_and_secret_hidden_from_debug() {
        let cfg = config(&[
            ("DUKASYNC_JWT_HS256_SECRET", SECRET),
            ("DUKASYNC_JWT_AUDIENCE", "dukasync"),
        ])
        .unwrap();
        let jwt = cfg.jwt.as_ref().unwrap();
        assert_eq!(jwt.max_lifetime.as_secs(), 3600);
        assert_eq!(jwt.leeway.as_secs(), 30);
        assert!(!format!("{cfg:?}").contains(SECRET));
    }
}
