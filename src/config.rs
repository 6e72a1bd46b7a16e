//! Configuration, read once from `DUKASYNC_*` environment variables.
//!
//! Every setting is documented here, where it is read, and in `README.md`. A missing or malformed value stops
//! start-up with one line naming the variable. Secrets (the database and Redis URLs may carry passwords) are
//! wrapped in [`Secret`] so that neither `Debug` nor logs can print them.

mod cors;
pub mod jwt;
pub mod tls;

use std::{fmt, net::SocketAddr, str::FromStr, time::Duration};

/// A value that must never appear in logs or `Debug` output.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; call only where it is handed to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A URL with its password replaced by `***`, safe to log.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "<unparseable url>".to_string(),
    }
}

/// Explicit limits; each is documented in `protocol/README.md`.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `DUKASYNC_MAX_BODY_BYTES`: largest accepted request body (default 1 MiB); larger answers 413.
    pub max_body_bytes: usize,
    /// `DUKASYNC_DEFAULT_PAGE_SIZE`: changes per pull page when `limit` is absent (default 500).
    pub default_page_size: u32,
    /// `DUKASYNC_MAX_PAGE_SIZE`: larger `limit` values are clamped to this (default 10000: a device catching up
    /// asks for large pages, since on a mobile link each page costs a round trip).
    pub max_page_size: u32,
    /// `DUKASYNC_MAX_WAIT_SECS`: longest long-poll `wait` (default 30); larger values are clamped.
    pub max_wait: Duration,
    /// `DUKASYNC_MAX_BATCH_OPS`: most operations in one push batch (default 500); more answers 413.
    pub max_batch_ops: usize,
    /// `DUKASYNC_MAX_IN_FLIGHT`: requests served at once (default 4096); more answers 503. Parked long-polls
    /// and the operations endpoints (`/healthz`, `/readyz`, `/metrics`) do not count.
    pub max_in_flight: usize,
    /// `DUKASYNC_MAX_LONGPOLLS`: long-polls parked at once on this instance (default 4096, 1 – 1000000); past
    /// it a pull answers at once instead of waiting.
    pub max_longpolls: usize,
    /// `DUKASYNC_MAX_LONGPOLLS_PER_SCOPE`: long-polls parked at once in one scope (default 1024, 1 – 1000000);
    /// past it a pull answers at once instead of waiting.
    pub max_longpolls_per_scope: usize,
    /// `DUKASYNC_MAX_LONGPOLLS_PER_DEVICE`: long-polls one device may park in one scope (default 4, 1 – 1000);
    /// a newer one ends the device's oldest there, which answers at once.
    pub max_longpolls_per_device: usize,
    /// `DUKASYNC_REQUEST_TIMEOUT_SECS`: how long a request may take beyond the longest long-poll wait
    /// (default 30); the router's timeout is `DUKASYNC_MAX_WAIT_SECS` plus this. Past it: 408 `timeout`.
    pub request_timeout: Duration,
    /// `DUKASYNC_HEADER_READ_TIMEOUT_SECS`: once a request's first byte arrived, how long its head may take
    /// (default 10, 1 – 300); past it the connection is closed (slowloris).
    pub header_read_timeout: Duration,
    /// `DUKASYNC_IDLE_TIMEOUT_SECS`: how long a connection may stay open with no request in progress (default
    /// 75, 1 – 3600; above nginx's 60 s upstream keep-alive, so nginx closes first). Then it is closed.
    pub idle_timeout: Duration,
}

/// The cache (see `cache`); documented in `README.md` and `deploy/REDIS.md`.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// `DUKASYNC_CACHE_MEMORY_BYTES`: bound of the in-process cache (default 64 MiB; 0 disables it). Without
    /// Redis it is the only cache; with Redis it is the hot layer in front of it.
    pub memory_bytes: usize,
    /// `DUKASYNC_CACHE_WINDOW`: versions per cached feed window (default 256; 0 disables window caching).
    pub window: u32,
    /// `DUKASYNC_REDIS_TIMEOUT_MS`: longest any Redis call may take before the request falls back to
    /// PostgreSQL (default 250).
    pub redis_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// `DUKASYNC_COLLECTIONS_FILE` (optional): a collections file (protocol §9) instead of the built-in
    /// `deploy/collections.toml`. Read and checked once at start-up, before anything else runs.
    pub collections_file: Option<std::path::PathBuf>,
    /// `DUKASYNC_DATABASE_URL` (required): PostgreSQL URL. Its `sslmode` and `sslrootcert` choose TLS as in
    /// libpq (`config::tls`).
    pub database_url: Secret,
    /// The URL's TLS settings, checked at start-up (`config::tls`).
    pub database_tls: tls::DatabaseTls,
    /// `DUKASYNC_REDIS_URL` (optional): Redis for the shared cache; absent means in-process cache only.
    /// `rediss://` is TLS.
    pub redis_url: Option<Secret>,
    /// `DUKASYNC_REDIS_CA_FILE` (optional, with `rediss://` only): the PEM CA that Redis' certificate must
    /// chain to, instead of the bundled Mozilla roots.
    pub redis_ca: Option<tls::CaFile>,
    /// `DUKASYNC_LISTEN`: address to bind (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// `DUKASYNC_DB_MAX_CONNECTIONS`: PostgreSQL pool size (default 16).
    pub db_max_connections: u32,
    /// `DUKASYNC_TOKEN_CACHE_SECS`: how long a checked token is trusted without asking PostgreSQL again
    /// (default 5). Revocations are also pushed by NOTIFY, so this is the worst case, not the usual one.
    pub token_cache_ttl: Duration,
    /// `DUKASYNC_SHUTDOWN_GRACE_SECS`: how long in-flight requests may finish after SIGTERM (default 10).
    pub shutdown_grace: Duration,
    pub limits: Limits,
    pub cache: CacheSettings,
    /// `DUKASYNC_CORS_ORIGINS`: comma-separated exact origins (`https://erp.example.com`) whose pages may call
    /// `/v1` from a browser; empty (the default) sends no CORS headers. Checked at start-up (`config::cors`).
    pub cors_origins: Vec<String>,
    /// `DUKASYNC_JWT_*` (see `config::jwt`): tokens signed by the ERP's backend; `None` refuses every JWT.
    pub jwt: Option<jwt::JwtSettings>,
    pub enrollment: Enrollment,
    pub durability: DurabilitySettings,
}

/// Durability beyond the primary (protocol §10.3, `deploy/BACKUP.md`).
#[derive(Debug, Clone, Default)]
pub struct DurabilitySettings {
    /// `DUKASYNC_DURABLE_STANDBYS`: comma-separated `application_name`s of standbys (`pg_receivewal` of
    /// `deploy/pitr.sh`, or a streaming replica) whose flush makes an operation durable. Empty (the default): the
    /// primary's disk is all there is, and every acknowledged operation is reported durable at once.
    pub standbys: Vec<String>,
    /// `DUKASYNC_DURABLE_WAIT_MS`: how long a push's answer waits for a standby's flush (default 500).
    pub wait: Duration,
}

/// Pairing codes, device-token lifetimes and rotation (protocol §3.3).
#[derive(Debug, Clone)]
pub struct Enrollment {
    /// `DUKASYNC_PAIRING_CODE_SECS`: how long a pairing code can be redeemed (default 600).
    pub code_ttl: Duration,
    /// `DUKASYNC_DEVICE_TOKEN_DAYS`: lifetime of paired and rotated device tokens (default 90).
    pub token_lifetime: Duration,
    /// `DUKASYNC_ROTATION_GRACE_SECS`: how long a rotated token keeps working (default 300).
    pub rotation_grace: Duration,
    /// `DUKASYNC_PAIR_ATTEMPTS_PER_IP`: redemptions allowed per client address per minute (default 10).
    pub attempts_per_ip: u32,
    /// `DUKASYNC_PAIR_ATTEMPTS_TOTAL`: redemptions allowed per minute in total, per instance (default 60).
    pub attempts_total: u32,
    /// `DUKASYNC_PUBLIC_URL`: the base URL phones reach the server at, for the pairing URL (none by default).
    pub public_url: Option<String>,
}

/// A configuration problem, phrased as the one line start-up prints.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {variable} {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so tests can supply their own environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let database_url = env.required("DUKASYNC_DATABASE_URL")?;
        let database_tls = tls::database(&check_url(
            "DUKASYNC_DATABASE_URL",
            &database_url,
            &["postgres", "postgresql"],
        )?)?;
        let redis_url = env.optional_string("DUKASYNC_REDIS_URL");
        let parsed_redis_url = match &redis_url {
            Some(url) => Some(check_url("DUKASYNC_REDIS_URL", url, &["redis", "rediss"])?),
            None => None,
        };
        let redis_ca = tls::redis(parsed_redis_url.as_ref(), env.optional_string("DUKASYNC_REDIS_CA_FILE"))?;
        let limits = Limits {
            max_body_bytes: env.parse_or("DUKASYNC_MAX_BODY_BYTES", 1024 * 1024, 1..=64 * 1024 * 1024)?,
            default_page_size: env.parse_or("DUKASYNC_DEFAULT_PAGE_SIZE", 500, 1..=10_000)?,
            max_page_size: env.parse_or("DUKASYNC_MAX_PAGE_SIZE", 10_000, 1..=10_000)?,
            max_wait: Duration::from_secs(env.parse_or("DUKASYNC_MAX_WAIT_SECS", 30, 0..=300)?),
            max_batch_ops: env.parse_or("DUKASYNC_MAX_BATCH_OPS", 500, 1..=10_000)?,
            max_in_flight: env.parse_or("DUKASYNC_MAX_IN_FLIGHT", 4096, 1..=1_000_000)?,
            max_longpolls: env.parse_or("DUKASYNC_MAX_LONGPOLLS", 4096, 1..=1_000_000)?,
            max_longpolls_per_scope: env.parse_or("DUKASYNC_MAX_LONGPOLLS_PER_SCOPE", 1024, 1..=1_000_000)?,
            max_longpolls_per_device: env.parse_or("DUKASYNC_MAX_LONGPOLLS_PER_DEVICE", 4, 1..=1000)?,
            request_timeout: Duration::from_secs(env.parse_or("DUKASYNC_REQUEST_TIMEOUT_SECS", 30, 1..=600)?),
            header_read_timeout: Duration::from_secs(env.parse_or("DUKASYNC_HEADER_READ_TIMEOUT_SECS", 10, 1..=300)?),
            idle_timeout: Duration::from_secs(env.parse_or("DUKASYNC_IDLE_TIMEOUT_SECS", 75, 1..=3600)?),
        };
        if limits.default_page_size > limits.max_page_size {
            return Err(ConfigError {
                variable: "DUKASYNC_DEFAULT_PAGE_SIZE",
                problem: format!("must not exceed DUKASYNC_MAX_PAGE_SIZE ({})", limits.max_page_size),
            });
        }
        Ok(Config {
            collections_file: env.optional_string("DUKASYNC_COLLECTIONS_FILE").map(Into::into),
            database_url: Secret::new(database_url),
            database_tls,
            redis_url: redis_url.map(Secret::new),
            redis_ca,
            listen: env.parse_or_default("DUKASYNC_LISTEN", "127.0.0.1:8080".parse().expect("literal"))?,
            db_max_connections: env.parse_or("DUKASYNC_DB_MAX_CONNECTIONS", 16, 2..=1000)?,
            token_cache_ttl: Duration::from_secs(env.parse_or("DUKASYNC_TOKEN_CACHE_SECS", 5, 0..=300)?),
            shutdown_grace: Duration::from_secs(env.parse_or("DUKASYNC_SHUTDOWN_GRACE_SECS", 10, 0..=600)?),
            limits,
            cache: CacheSettings {
                memory_bytes: env.parse_or("DUKASYNC_CACHE_MEMORY_BYTES", 64 * 1024 * 1024, 0..=1 << 40)?,
                window: env.parse_or("DUKASYNC_CACHE_WINDOW", 256, 0..=10_000)?,
                redis_timeout: Duration::from_millis(env.parse_or("DUKASYNC_REDIS_TIMEOUT_MS", 250, 10..=10_000)?),
            },
            enrollment: enrollment(&env)?,
            durability: durability(&env)?,
            jwt: jwt::read(&env)?,
            cors_origins: cors::parse_origins(env.optional_string("DUKASYNC_CORS_ORIGINS").as_deref())?,
        })
    }
}

fn enrollment<F: Fn(&str) -> Option<String>>(env: &Env<'_, F>) -> Result<Enrollment, ConfigError> {
    let public_url = env.optional_string("DUKASYNC_PUBLIC_URL");
    if let Some(url) = &public_url {
        check_url("DUKASYNC_PUBLIC_URL", url, &["http", "https"])?;
    }
    Ok(Enrollment {
        code_ttl: Duration::from_secs(env.parse_or("DUKASYNC_PAIRING_CODE_SECS", 600, 1..=86_400)?),
        token_lifetime: Duration::from_secs(86_400 * env.parse_or("DUKASYNC_DEVICE_TOKEN_DAYS", 90u64, 1..=3650)?),
        rotation_grace: Duration::from_secs(env.parse_or("DUKASYNC_ROTATION_GRACE_SECS", 300, 0..=86_400)?),
        attempts_per_ip: env.parse_or("DUKASYNC_PAIR_ATTEMPTS_PER_IP", 10, 1..=10_000)?,
        attempts_total: env.parse_or("DUKASYNC_PAIR_ATTEMPTS_TOTAL", 60, 1..=100_000)?,
        public_url: public_url.map(|u| u.trim_end_matches('/').to_string()),
    })
}

fn durability<F: Fn(&str) -> Option<String>>(env: &Env<'_, F>) -> Result<DurabilitySettings, ConfigError> {
    let mut standbys = Vec::new();
    for name in env
        .optional_string("DUKASYNC_DURABLE_STANDBYS")
        .unwrap_or_default()
        .split(',')
    {
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        // PostgreSQL truncates application_name to 63 bytes; a longer name would never match.
        if name.len() > 63
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(ConfigError {
                variable: "DUKASYNC_DURABLE_STANDBYS",
                problem: format!("'{name}' is not a standby application_name (letters, digits, _ and -, at most 63)"),
            });
        }
        standbys.push(name.to_string());
    }
    Ok(DurabilitySettings {
        standbys,
        wait: Duration::from_millis(env.parse_or("DUKASYNC_DURABLE_WAIT_MS", 500, 0..=10_000)?),
    })
}

/// A configuration problem of `variable` (for the submodules' checks).
fn problem(variable: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        problem: problem.into(),
    }
}

fn check_url(variable: &'static str, value: &str, schemes: &[&str]) -> Result<url::Url, ConfigError> {
    let parsed = url::Url::parse(value).map_err(|e| ConfigError {
        variable,
        problem: format!("is not a valid URL ({e})"),
    })?;
    if !schemes.contains(&parsed.scheme()) {
        return Err(ConfigError {
            variable,
            problem: format!("must start with {}://", schemes[0]),
        });
    }
    Ok(parsed)
}

struct Env<'a, F: Fn(&str) -> Option<String>>(&'a F);

impl<F: Fn(&str) -> Option<String>> Env<'_, F> {
    fn optional_string(&self, name: &str) -> Option<String> {
        (self.0)(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    }

    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.optional_string(name).ok_or(ConfigError {
            variable: name,
            problem: "is not set".to_string(),
        })
    }

    fn parse_or_default<T: FromStr>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        match self.optional_string(name) {
            None => Ok(default),
            Some(raw) => raw.parse().map_err(|e| ConfigError {
                variable: name,
                problem: format!("has an invalid value {raw:?} ({e})"),
            }),
        }
    }

    fn parse_or<T>(&self, name: &'static str, default: T, range: std::ops::RangeInclusive<T>) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
        T::Err: fmt::Display,
    {
        let value = self.parse_or_default(name, default)?;
        if !range.contains(&value) {
            return Err(ConfigError {
                variable: name,
                problem: format!("must be between {} and {}, got {value}", range.start(), range.end()),
            });
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn missing_database_url_names_the_variable() {
        let err = config(&[]).unwrap_err();
        assert_eq!(err.to_string(), "configuration error: DUKASYNC_DATABASE_URL is not set");
    }

    #[test]
    fn malformed_number_names_the_variable() {
        let err = config(&[
            ("DUKASYNC_DATABASE_URL", "postgres://x@h/db"),
            ("DUKASYNC_MAX_PAGE_SIZE", "lots"),
        ])
        .unwrap_err();
        assert_eq!(err.variable, "DUKASYNC_MAX_PAGE_SIZE");
    }

    #[test]
    fn out_of_range_is_refused() {
        let err = config(&[
            ("DUKASYNC_DATABASE_URL", "postgres://x@h/db"),
            ("DUKASYNC_MAX_WAIT_SECS", "3600"),
        ])
        .unwrap_err();
        assert_eq!(err.variable, "DUKASYNC_MAX_WAIT_SECS");
    }

    #[test]
    fn long_poll_and_connection_bounds_have_ranges() {
        for variable in [
            "DUKASYNC_MAX_LONGPOLLS",
            "DUKASYNC_MAX_LONGPOLLS_PER_SCOPE",
            "DUKASYNC_MAX_LONGPOLLS_PER_DEVICE",
            "DUKASYNC_HEADER_READ_TIMEOUT_SECS",
            "DUKASYNC_IDLE_TIMEOUT_SECS",
        ] {
            let err = config(&[("DUKASYNC_DATABASE_URL", "postgres://x@h/db"), (variable, "0")]).unwrap_err();
            assert_eq!(err.variable, variable);
        }
        let limits = config(&[("DUKASYNC_DATABASE_URL", "postgres://x@h/db")])
            .unwrap()
            .limits;
        assert_eq!(
            (
                limits.max_longpolls,
                limits.max_longpolls_per_scope,
                limits.max_longpolls_per_device
            ),
            (4096, 1024, 4)
        );
        assert_eq!(
            (limits.header_read_timeout, limits.idle_timeout),
            (Duration::from_secs(10), Duration::from_secs(75))
        );
    }

    #[test]
    fn wrong_scheme_is_refused() {
        let err = config(&[("DUKASYNC_DATABASE_URL", "mysql://x@h/db")]).unwrap_err();
        assert_eq!(err.variable, "DUKASYNC_DATABASE_URL");
    }

    #[test]
    fn debug_output_hides_secrets() {
        let cfg = config(&[
            ("DUKASYNC_DATABASE_URL", "postgres://u:hunter2@h/db"),
            ("DUKASYNC_REDIS_URL", "redis://:s3cret@h/"),
        ])
        .unwrap();
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("s3cret"), "{shown}");
        assert_eq!(redact_url(cfg.database_url.expose()), "postgres://u:***@h/db");
    }
}
