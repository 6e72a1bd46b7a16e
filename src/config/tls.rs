//! TLS to PostgreSQL and Redis, read from their URLs (and `DUKASYNC_REDIS_CA_FILE`) and checked at start-up.
//!
//! PostgreSQL: `sslmode` and `sslrootcert` in `DUKASYNC_DATABASE_URL` mean what they mean to libpq, with
//! libpq's rules where sqlx differs: `require` with a root certificate checks the certificate's CA (as
//! `verify-ca`), and `sslrootcert=system` trusts the bundled Mozilla roots and implies `verify-full`. A root
//! certificate that cannot be read, or that the chosen mode would silently not check, stops the start with one
//! line. Redis: `rediss://` is TLS; `DUKASYNC_REDIS_CA_FILE` replaces the bundled roots by a private CA.
//! Certificate files are read here, once; a file that cannot be read is a start-up error, never an outage.

use super::{problem, ConfigError};
use std::{fmt, path::PathBuf};

const DATABASE_URL: &str = "DUKASYNC_DATABASE_URL";
const REDIS_CA_FILE: &str = "DUKASYNC_REDIS_CA_FILE";

/// libpq's `sslmode` values (sqlx treats `allow` as `disable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(raw: &str) -> Option<SslMode> {
        Some(match raw.to_ascii_lowercase().as_str() {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// Whether the server's certificate is checked against the root certificates.
    fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

/// What `DUKASYNC_DATABASE_URL` says about TLS, after libpq's rules (see the module header).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatabaseTls {
    /// The mode every connection uses; `None`: the URL names none (sqlx then uses `PGSSLMODE`, else `prefer`).
    pub mode: Option<SslMode>,
    /// `sslrootcert=system`: the bundled Mozilla roots, not a file (the URL's pair is not handed to sqlx).
    pub system_roots: bool,
}

/// The URL's names for the two settings (sqlx accepts these aliases too).
fn is_ssl_mode_key(key: &str) -> bool {
    matches!(key, "sslmode" | "ssl-mode")
}

pub fn is_root_cert_key(key: &str) -> bool {
    matches!(key, "sslrootcert" | "ssl-root-cert" | "ssl-ca")
}

/// Reads the TLS settings of a (syntactically valid) PostgreSQL URL and checks its root certificate file.
pub(super) fn database(url: &url::Url) -> Result<DatabaseTls, ConfigError> {
    let mut mode = None;
    let mut root_cert = None;
    for (key, value) in url.query_pairs() {
        if is_ssl_mode_key(&key) {
            mode = Some(SslMode::parse(&value).ok_or_else(|| {
                problem(
                    DATABASE_URL,
                    format!(
                        "has an unknown sslmode {value:?} (disable, allow, prefer, require, verify-ca or verify-full)"
                    ),
                )
            })?);
        } else if is_root_cert_key(&key) {
            root_cert = Some(value.into_owned());
        }
    }
    let Some(root_cert) = root_cert else {
        return Ok(DatabaseTls {
            mode,
            system_roots: false,
        });
    };
    if root_cert == "system" {
        return match mode {
            None | Some(SslMode::VerifyFull) => Ok(DatabaseTls {
                mode: Some(SslMode::VerifyFull),
                system_roots: true,
            }),
            Some(_) => Err(problem(
                DATABASE_URL,
                "sets sslrootcert=system, which needs sslmode=verify-full (as in libpq)",
            )),
        };
    }
    match mode {
        Some(mode) if mode.verifies() => {}
        // libpq: "if a root CA file exists, the behavior of sslmode=require will be the same as verify-ca".
        Some(SslMode::Require) => {}
        _ => {
            return Err(problem(
                DATABASE_URL,
                format!(
                    "sets sslrootcert but sslmode={} does not check the server's certificate; use sslmode=verify-full",
                    url_mode_name(mode)
                ),
            ))
        }
    }
    read_certificates(DATABASE_URL, "sslrootcert ", &PathBuf::from(&root_cert))?;
    Ok(DatabaseTls {
        mode: mode.map(|m| if m == SslMode::Require { SslMode::VerifyCa } else { m }),
        system_roots: false,
    })
}

fn url_mode_name(mode: Option<SslMode>) -> &'static str {
    match mode {
        None => "prefer (the default)",
        Some(SslMode::Disable) => "disable",
        Some(SslMode::Allow) => "allow",
        _ => "prefer",
    }
}

/// A PEM file of CA certificates, read at start-up. `Debug` shows the path only.
#[derive(Clone)]
pub struct CaFile {
    pub path: PathBuf,
    pub pem: Vec<u8>,
}

impl fmt::Debug for CaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CaFile({})", self.path.display())
    }
}

/// `DUKASYNC_REDIS_CA_FILE`: only with a `rediss://` URL, and it must hold a PEM certificate. A `#insecure`
/// URL (no certificate check) is refused: the redis client is built without that mode.
pub(super) fn redis(url: Option<&url::Url>, ca_file: Option<String>) -> Result<Option<CaFile>, ConfigError> {
    if let Some(url) = url {
        if url.scheme() == "rediss" && url.fragment() == Some("insecure") {
            return Err(problem(
                "DUKASYNC_REDIS_URL",
                "ends in #insecure, which is not supported: give Redis' CA in DUKASYNC_REDIS_CA_FILE instead",
            ));
        }
    }
    let Some(path) = ca_file.map(PathBuf::from) else {
        return Ok(None);
    };
    if url.map(url::Url::scheme) != Some("rediss") {
        return Err(problem(
            REDIS_CA_FILE,
            "is set but DUKASYNC_REDIS_URL does not start with rediss://",
        ));
    }
    let pem = read_certificates(REDIS_CA_FILE, "", &path)?;
    Ok(Some(CaFile { path, pem }))
}

/// The file's bytes, if it can be read and holds at least one PEM certificate.
pub(super) fn read_certificates(
    variable: &'static str,
    what: &str,
    path: &std::path::Path,
) -> Result<Vec<u8>, ConfigError> {
    let pem =
        std::fs::read(path).map_err(|e| problem(variable, format!("{what}{} cannot be read ({e})", path.display())))?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(problem(
            variable,
            format!("{what}{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(pem)
}

/// The roots a TLS client trusts: the certificates of `ca` if given (all of them must parse), else the bundled
/// Mozilla roots (`webpki-roots`, as `sslrootcert=system`).
pub fn root_store(ca: Option<&CaFile>) -> Result<rustls::RootCertStore, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let Some(ca) = ca else {
        return Ok(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        });
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&ca.pem) {
        let cert = cert.map_err(|e| format!("{} holds an unreadable PEM certificate ({e})", ca.path.display()))?;
        roots.add(cert).map_err(|e| {
            format!(
                "{} holds a certificate that is not a usable CA ({e})",
                ca.path.display()
            )
        })?;
    }
    if roots.is_empty() {
        return Err(format!("{} holds no PEM certificate", ca.path.display()));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(url: &str) -> Result<DatabaseTls, ConfigError> {
        database(&url::Url::parse(url).unwrap())
    }

    /// A readable PEM file for the duration of a test.
    struct Pem(PathBuf);
    impl Pem {
        fn new(name: &str, text: &str) -> Pem {
            let path = std::env::temp_dir().join(format!("dukasync-tls-{}-{name}", std::process::id()));
            std::fs::write(&path, text).unwrap();
            Pem(path)
        }
        fn url(&self, query: &str) -> String {
            format!("postgres://u@h/db?sslrootcert={}&{query}", self.0.display())
        }
    }
    impl Drop for Pem {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn modes_are_read_and_unknown_ones_refused() {
        assert_eq!(db("postgres://u@h/db").unwrap(), DatabaseTls::default());
        assert_eq!(
            db("postgres://u@h/db?sslmode=require").unwrap().mode,
            Some(SslMode::Require)
        );
        let err = db("postgres://u@h/db?sslmode=verify_full").unwrap_err();
        assert_eq!(err.variable, DATABASE_URL);
        assert!(err.problem.contains("unknown sslmode \"verify_full\""), "{err}");
    }

    #[test]
    fn a_root_certificate_must_be_readable_and_checked() {
        let err = db("postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem").unwrap_err();
        assert!(
            err.problem
                .starts_with("sslrootcert /nonexistent/ca.pem cannot be read"),
            "{err}"
        );
        let junk = Pem::new("junk.pem", "not a certificate");
        let err = db(&junk.url("sslmode=verify-full")).unwrap_err();
        assert!(err.problem.ends_with("holds no PEM certificate"), "{err}");
        let ca = Pem::new("ca.pem", CERT);
        for weak in ["sslmode=disable", "sslmode=prefer", "sslmode=allow", ""] {
            let err = db(&ca.url(weak)).unwrap_err();
            assert!(
                err.problem.contains("does not check the server's certificate"),
                "{weak}: {err}"
            );
        }
        assert_eq!(
            db(&ca.url("sslmode=verify-full")).unwrap().mode,
            Some(SslMode::VerifyFull)
        );
        // libpq's rule: require with a root certificate checks the CA.
        assert_eq!(db(&ca.url("sslmode=require")).unwrap().mode, Some(SslMode::VerifyCa));
    }

    #[test]
    fn system_roots_imply_verify_full() {
        let tls = db("postgres://u@h/db?sslrootcert=system").unwrap();
        assert_eq!((tls.mode, tls.system_roots), (Some(SslMode::VerifyFull), true));
        assert!(db("postgres://u@h/db?sslrootcert=system&sslmode=require").is_err());
    }

    #[test]
    fn a_redis_ca_needs_rediss_and_a_certificate() {
        let parse = |u: &str| url::Url::parse(u).unwrap();
        let ca = Pem::new("redis-ca.pem", CERT);
        let path = || Some(ca.0.display().to_string());
        assert_eq!(redis(None, path()).unwrap_err().variable, REDIS_CA_FILE);
        assert_eq!(
            redis(Some(&parse("redis://h/")), path()).unwrap_err().variable,
            REDIS_CA_FILE
        );
        assert_eq!(
            redis(Some(&parse("rediss://h/")), path()).unwrap().unwrap().pem,
            CERT.as_bytes()
        );
        let err = redis(Some(&parse("rediss://h/")), Some("/nonexistent.pem".into())).unwrap_err();
        assert!(err.problem.starts_with("/nonexistent.pem cannot be read"), "{err}");
        let err = redis(Some(&parse("rediss://h/#insecure")), None).unwrap_err();
        assert_eq!(err.variable, "DUKASYNC_REDIS_URL");
        assert!(format!("{:?}", redis(Some(&parse("rediss://h/")), path()).unwrap()).starts_with("Some(CaFile("));
    }
}
