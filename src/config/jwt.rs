//! Settings for tokens signed by the ERP's backend (JWTs, protocol §3.2), read from `DUKASYNC_JWT_*`.
//!
//! No JWT variable set: JWTs are refused (401) and device tokens work alone. Any of them set: a key source
//! (a JWKS URL or file, an HS256 secret, or both) and `DUKASYNC_JWT_AUDIENCE` are required, so a half-configured
//! server stops at start-up instead of accepting tokens for any audience.

use super::{problem, tls::CaFile, ConfigError, Env, Secret};
use std::{path::PathBuf, time::Duration};

/// Shortest HS256 secret accepted: RFC 7518 §3.2 asks for a key at least as long as the hash (256 bits).
const MIN_SECRET_BYTES: usize = 32;

/// Where the public keys of the asymmetric algorithms (EdDSA, ES256, RS256) come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// `DUKASYNC_JWT_JWKS_URL`: fetched over `https://` (the certificate checked against the bundled Mozilla
    /// roots, or against `DUKASYNC_JWT_JWKS_CA_FILE`) or plain `http://` (only for the ERP on the same host or a
    /// trusted network: whoever can change the keys on the way decides who may sign in).
    Url(String),
    /// `DUKASYNC_JWT_JWKS_FILE`: read from disk, re-read on every refresh.
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub jwks: Option<JwksSource>,
    /// `DUKASYNC_JWT_JWKS_CA_FILE` (PEM, read at start-up): the private CA an `https://` JWKS URL's certificate
    /// must chain to, instead of the bundled Mozilla roots.
    pub jwks_ca: Option<CaFile>,
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
    "DUKASYNC_JWT_JWKS_CA_FILE",
    "DUKASYNC_JWT_HS256_SECRET",
    "DUKASYNC_JWT_HS256_SECRET_FILE",
    "DUKASYNC_JWT_AUDIENCE",
    "DUKASYNC_JWT_ISSUER",
];

const JWKS_CA_FILE: &str = "DUKASYNC_JWT_JWKS_CA_FILE";

/// `DUKASYNC_JWT_JWKS_CA_FILE`: only with an `https://` JWKS URL (anywhere else it would be silently unused), and
/// every certificate in it must parse, so a wrong file stops the start instead of signing everyone out later.
fn jwks_ca(path: Option<String>, jwks: Option<&JwksSource>) -> Result<Option<CaFile>, ConfigError> {
    let Some(path) = path.map(PathBuf::from) else {
        return Ok(None);
    };
    match jwks {
        Some(JwksSource::Url(url)) if url::Url::parse(url).is_ok_and(|u| u.scheme() == "https") => {}
        _ => {
            return Err(problem(
                JWKS_CA_FILE,
                "is set but DUKASYNC_JWT_JWKS_URL does not start with https://",
            ))
        }
    }
    let pem = super::tls::read_certificates(JWKS_CA_FILE, "", &path)?;
    let ca = CaFile { path, pem };
    super::tls::root_store(Some(&ca)).map_err(|e| problem(JWKS_CA_FILE, e))?;
    Ok(Some(ca))
}

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
            super::check_url("DUKASYNC_JWT_JWKS_URL", &url, &["https", "http"])?;
            Some(JwksSource::Url(url))
        }
        (None, Some(path)) => Some(JwksSource::File(path.into())),
        (None, None) => None,
    };
    let jwks_ca = jwks_ca(env.optional_string(JWKS_CA_FILE), jwks.as_ref())?;
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
        jwks_ca,
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
    use crate::config::{jwt::JwksSource, Config, ConfigError};
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
    fn url_and_file_exclude_each_other_and_https_or_http_is_needed() {
        let both = config(&[
            ("DUKASYNC_JWT_JWKS_URL", "http://127.0.0.1:8000/jwks.json"),
            ("DUKASYNC_JWT_JWKS_FILE", "/etc/jwks.json"),
            ("DUKASYNC_JWT_AUDIENCE", "dukasync"),
        ])
        .unwrap_err();
        assert_eq!(both.variable, "DUKASYNC_JWT_JWKS_FILE");
        for url in [
            "https://erp.example/.well-known/jwks.json",
            "http://127.0.0.1:8000/jwks.json",
        ] {
            let cfg = config(&[("DUKASYNC_JWT_JWKS_URL", url), ("DUKASYNC_JWT_AUDIENCE", "dukasync")]).unwrap();
            let jwt = cfg.jwt.unwrap();
            assert_eq!(jwt.jwks, Some(JwksSource::Url(url.into())));
            assert!(jwt.jwks_ca.is_none());
        }
        let ftp = config(&[
            ("DUKASYNC_JWT_JWKS_URL", "ftp://erp.example/jwks.json"),
            ("DUKASYNC_JWT_AUDIENCE", "dukasync"),
        ])
        .unwrap_err();
        assert_eq!(ftp.variable, "DUKASYNC_JWT_JWKS_URL");
    }

    /// A real (throwaway, self-signed) CA certificate: the file is parsed, not only searched for a PEM marker.
    const CA: &str = concat!(
        "-----BEGIN CERTIFICATE-----\n",
        "MIIBlzCCAT2gAwIBAgIUJXud5H5N0OjeC8mBE25fI0/rBCQwCgYIKoZIzj0EAwIw\n",
        "IDEeMBwGA1UEAwwVZHVrYXN5bmMgdW5pdC10ZXN0IENBMCAXDTI2MTIwNDE0MTYx\n",
        "MloYDzIxMjYxMTEwMTQxNjEyWjAgMR4wHAYDVQQDDBVkdWthc3luYyB1bml0LXRl\n",
        "c3QgQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQocCSwv6adMALwUnp80JWr\n",
        "mUqZHVMF/gN/x+zc7OPvhxgNMExLtd1VlCUduVkg9PrELTixUMUtGFUSuh3dRja+\n",
        "o1MwUTAdBgNVHQ4EFgQUrwgkGYAdH4cm/Jjwrdz8Uy+eJF0wHwYDVR0jBBgwFoAU\n",
        "rwgkGYAdH4cm/Jjwrdz8Uy+eJF0wDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQD\n",
        "AgNIADBFAiB05xM4WESDXqBbyQPSHjxesUQ4iMvgzb7iNGyM3OGfkQIhAKYYSwEF\n",
        "VJk5nv83D498P573GQ2/up9DQSzsKyDq9FKA\n",
        "-----END CERTIFICATE-----\n",
    );

    /// A file for the duration of a test.
    struct TempFile(std::path::PathBuf);
    impl TempFile {
        fn new(name: &str, text: &str) -> TempFile {
            let path = std::env::temp_dir().join(format!("dukasync-jwt-{}-{name}", std::process::id()));
            std::fs::write(&path, text).unwrap();
            TempFile(path)
        }
        fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }
    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn with_ca(url: &str, ca_file: &str) -> Result<Config, ConfigError> {
        config(&[
            ("DUKASYNC_JWT_JWKS_URL", url),
            ("DUKASYNC_JWT_JWKS_CA_FILE", ca_file),
            ("DUKASYNC_JWT_AUDIENCE", "dukasync"),
        ])
    }

    #[test]
    fn a_jwks_ca_file_is_read_and_checked_at_start() {
        const URL: &str = "https://erp.example/jwks.json";
        let ca = TempFile::new("ca.pem", CA);
        let cfg = with_ca(URL, ca.path()).unwrap();
        let jwks_ca = cfg.jwt.unwrap().jwks_ca.unwrap();
        assert_eq!(jwks_ca.pem, CA.as_bytes());

        let missing = with_ca(URL, "/nonexistent/jwks-ca.pem").unwrap_err();
        assert_eq!(missing.variable, "DUKASYNC_JWT_JWKS_CA_FILE");
        assert!(
            missing.problem.starts_with("/nonexistent/jwks-ca.pem cannot be read"),
            "{missing}"
        );
        assert!(missing.to_string().contains("DUKASYNC_JWT_JWKS_CA_FILE"), "{missing}");

        let junk = TempFile::new("junk.pem", "not a certificate");
        let err = with_ca(URL, junk.path()).unwrap_err();
        assert_eq!(err.variable, "DUKASYNC_JWT_JWKS_CA_FILE");
        assert!(err.problem.ends_with("holds no PEM certificate"), "{err}");

        // A PEM marker around garbage is not a certificate either.
        let broken = TempFile::new(
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        );
        let err = with_ca(URL, broken.path()).unwrap_err();
        assert_eq!(err.variable, "DUKASYNC_JWT_JWKS_CA_FILE");

        // Without an https:// URL the file would be silently unused.
        let err = with_ca("http://127.0.0.1:8000/jwks.json", ca.path()).unwrap_err();
        assert_eq!(err.variable, "DUKASYNC_JWT_JWKS_CA_FILE");
        assert!(err.problem.contains("does not start with https://"), "{err}");
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
