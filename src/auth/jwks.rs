//! The ERP backend's public keys (a JWKS), by `kid`, fetched from a URL or a file and refreshed.
//!
//! Refreshed when older than `refresh` (checked on use, so an idle server fetches nothing), and early when a
//! token names an unknown `kid` (a rotation), but then at most once per `min_refetch`: a stream of tokens with
//! random kids costs one fetch per interval, not one per token. A failed fetch keeps the keys we had (the
//! backend being briefly down must not sign everyone out) and counts as an attempt.
//!
//! Fetched over `https://` with rustls on ring, the certificate checked against the bundled Mozilla roots or the
//! private CA of `DUKASYNC_JWT_JWKS_CA_FILE` (no setting turns the check off), or over plain `http://`. Redirects
//! are not followed (so an `https://` URL can never be sent on to `http://`): a 3xx answer is a failed fetch.
//!
//! Only EdDSA (Ed25519), ES256 (P-256) and RS256 keys with a `kid` are kept; symmetric (`oct`) keys and keys
//! marked for encryption are skipped, so a JWKS can never turn into an HMAC secret.

use crate::config::{jwt::JwksSource, tls::CaFile};
use jsonwebtoken::{
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse},
    Algorithm, DecodingKey,
};
use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

/// Largest JWKS document read (a handful of keys is a few KiB).
const MAX_JWKS_BYTES: usize = 256 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// A verification key and the one algorithm it may be used with.
#[derive(Clone)]
pub struct Key {
    pub alg: Algorithm,
    pub key: DecodingKey,
}

pub type Keys = HashMap<String, Key>;

/// Parses a JWKS document into its usable keys (see the module doc for which are kept).
pub fn parse(document: &[u8]) -> Result<Keys, String> {
    let set: JwkSet = serde_json::from_slice(document).map_err(|e| format!("not a JWKS ({e})"))?;
    Ok(set.keys.iter().filter_map(usable).collect())
}

fn usable(jwk: &Jwk) -> Option<(String, Key)> {
    let kid = jwk.common.key_id.clone().filter(|k| !k.is_empty())?;
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let alg = match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => Algorithm::EdDSA,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        _ => return None,
    };
    // A key that names another algorithm than its type implies is not used at all rather than guessed at.
    let declared_ok = match jwk.common.key_algorithm {
        None => true,
        Some(KeyAlgorithm::EdDSA) => alg == Algorithm::EdDSA,
        Some(KeyAlgorithm::ES256) => alg == Algorithm::ES256,
        Some(KeyAlgorithm::RS256) => alg == Algorithm::RS256,
        Some(_) => false,
    };
    if !declared_ok {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some((kid, Key { alg, key }))
}

struct Loaded {
    keys: Arc<Keys>,
    /// When the keys were last fetched successfully (`None`: never).
    fetched_at: Option<Instant>,
    /// When a fetch was last tried, successful or not.
    tried_at: Option<Instant>,
}

pub struct KeySet {
    source: JwksSource,
    refresh: Duration,
    min_refetch: Duration,
    http: reqwest::Client,
    loaded: RwLock<Loaded>,
    /// One fetch at a time; callers that waited for it look again before fetching themselves.
    fetching: tokio::sync::Mutex<()>,
}

impl KeySet {
    /// `ca`: the roots an `https://` URL's certificate must chain to (`None`: the bundled Mozilla roots).
    pub fn new(
        source: JwksSource,
        ca: Option<&CaFile>,
        refresh: Duration,
        min_refetch: Duration,
    ) -> anyhow::Result<Self> {
        Ok(KeySet {
            source,
            refresh,
            min_refetch,
            http: client(ca)?,
            loaded: RwLock::new(Loaded {
                keys: Arc::default(),
                fetched_at: None,
                tried_at: None,
            }),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// The key named `kid`, refreshing first when the keys are stale or `kid` is unknown (within the bounds of
    /// the module doc).
    pub async fn get(&self, kid: &str) -> Option<Key> {
        let (keys, due) = self.snapshot(kid);
        if !due {
            return keys.get(kid).cloned();
        }
        let _fetching = self.fetching.lock().await;
        // Another caller may have fetched while this one waited.
        let (keys, due) = self.snapshot(kid);
        if !due {
            return keys.get(kid).cloned();
        }
        self.fetch().await.get(kid).cloned()
    }

    /// The current keys and whether a fetch is due for `kid`.
    fn snapshot(&self, kid: &str) -> (Arc<Keys>, bool) {
        let loaded = self.loaded.read().unwrap_or_else(|p| p.into_inner());
        let stale = loaded.fetched_at.is_none_or(|at| at.elapsed() >= self.refresh);
        let unknown = !loaded.keys.contains_key(kid);
        let may_try = loaded.tried_at.is_none_or(|at| at.elapsed() >= self.min_refetch);
        (loaded.keys.clone(), (stale || unknown) && may_try)
    }

    async fn fetch(&self) -> Arc<Keys> {
        let result = match &self.source {
            JwksSource::Url(url) => self.download(url).await,
            JwksSource::File(path) => tokio::fs::read(path).await.map_err(|e| e.to_string()),
        }
        .and_then(|body| parse(&body));
        let mut loaded = self.loaded.write().unwrap_or_else(|p| p.into_inner());
        loaded.tried_at = Some(Instant::now());
        match result {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), "jwks.refreshed");
                loaded.keys = Arc::new(keys);
                loaded.fetched_at = Some(Instant::now());
            }
            Err(error) => tracing::warn!(%error, "jwks.refresh_failed: keeping the keys we had"),
        }
        loaded.keys.clone()
    }

    async fn download(&self, url: &str) -> Result<Vec<u8>, String> {
        let mut resp = self
            .http
            .get(url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| error_chain(&e.without_url()))?;
        if resp.status().is_redirection() {
            return Err(format!("answered {}: redirects are not followed", resp.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| error_chain(&e.without_url()))? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("JWKS larger than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The HTTP client: TLS by rustls on ring with `ca`'s roots (or the bundled ones), no redirects, a timeout.
fn client(ca: Option<&CaFile>) -> anyhow::Result<reqwest::Client> {
    let roots = crate::config::tls::root_store(ca).map_err(anyhow::Error::msg)?;
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// The error and its sources on one line: reqwest's own message ("error sending request") hides why, e.g. the
/// certificate check that failed.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_keys_and_keys_without_kid_are_skipped() {
        let doc = br#"{"keys":[
            {"kty":"oct","kid":"h","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"},
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"OKP","crv":"Ed25519","kid":"ed","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"OKP","crv":"Ed25519","kid":"lies","alg":"RS256","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
        ]}"#;
        let keys = parse(doc).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["ed"]);
        assert_eq!(keys["ed"].alg, Algorithm::EdDSA);
    }
}
