//! Reference snapshots: a whole reference dataset in canonical bytes, with a strong ETag, cached by content.
//!
//! - **Canonical bytes:** the JSON of [`ReferenceSnapshot`] with sorted keys and no whitespace, rows ordered by
//!   key. The ETag is the first 128 bits of `blake3(those bytes)` in hex; other representations append their
//!   name: `.msgpack` for MessagePack, then `.gzip`, `.br` or `.zstd` for a content coding, so every
//!   representation's ETag is strong and distinct. `If-None-Match` is compared ignoring the coding part (the
//!   client's decoded copy is the same whatever coding carried it), and `*` matches.
//! - **Caching, content-addressed:** a pointer `(scope, dataset, version, tag of the dataset's last change) →
//!   hash`, and the bytes under `(scope, hash)`. The pointer key names one state of one history, so it never
//!   changes meaning; the bytes are checked against their hash on every read from Redis, so garbage is a miss.
//!   A request asks PostgreSQL for the dataset's last change (one index step) before anything else, so it can
//!   never be served an older snapshot. Encoded and compressed representations are kept in memory only.
//! - **Revalidation without a query:** the process remembers, per dataset, the hash it found together with the
//!   scope's head in the same snapshot. A request first asks for the head (`feed::heads`: a snapshot taken
//!   after it arrived, one query shared by concurrent requests); if the head is still the remembered one,
//!   nothing at all was committed in the scope since, so the dataset still has that hash.

use crate::feed::hub::FeedHub;
use crate::{
    cache::{keys, memory::Value as CacheValue, stats::CacheKind, Cache},
    domain::{canonical, collections, ScopeId},
    error::{Error, Result},
    store::{self, reference::LastChange},
    wire::ReferenceSnapshot,
};
use bytes::Bytes;
use sqlx::PgPool;
use std::{
    collections::HashMap,
    io::Write,
    sync::{Arc, Mutex},
};

/// The body's encoding, as negotiated by `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    MessagePack,
}

pub use crate::domain::Coding;

/// A response body ready to send.
#[derive(Debug, Clone)]
pub struct Representation {
    pub body: Bytes,
    pub etag: String,
    pub format: BodyFormat,
    pub coding: Coding,
}

/// What to answer.
#[derive(Debug)]
pub enum Answer {
    /// The client's copy is current: 304 with this ETag.
    NotModified {
        etag: String,
    },
    Full(Representation),
}

/// Reference snapshots as the HTTP layer asks for them: one value in the state.
pub struct References {
    db: PgPool,
    cache: Arc<Cache>,
    /// For the scope's head (`feed::heads`), asked before anything else.
    hub: Arc<FeedHub>,
    known: KnownSnapshots,
}

impl References {
    pub fn new(db: PgPool, cache: Arc<Cache>, hub: Arc<FeedHub>) -> Self {
        let known = KnownSnapshots {
            enabled: cache.memory_enabled(),
            by_dataset: Mutex::new(HashMap::new()),
        };
        References { db, cache, hub, known }
    }

    /// Answers a snapshot request for `dataset` of `scope`.
    pub async fn snapshot(&self, scope: &ScopeId, wanted: Wanted<'_>) -> Result<Answer> {
        let (cache, heads, db) = (&*self.cache, &self.hub.heads, &self.db);
        let Wanted {
            dataset,
            format,
            coding,
            if_none_match,
        } = wanted;
        let dataset = collections::find(dataset)
            .filter(|c| c.reference)
            .ok_or(Error::NotFound("dataset"))?
            .name;
        let namespace = cache.namespace(|| store::cache_namespace(db)).await;
        let (hash, canonical) = match namespace {
            None => build(db, scope, dataset).await?,
            Some(ns) => {
                let known = match heads.read(db, scope).await? {
                    Some(Some(head)) => self.known.at(scope, dataset, head.version),
                    _ => None,
                };
                let hash = match known {
                    Some(hash) => Some(hash),
                    None => {
                        let (head, last) = store::reference::last_change(db, scope, dataset)
                            .await?
                            .ok_or(Error::NotFound("scope"))?;
                        let hash = cached_hash(cache, ns, scope, dataset, last).await;
                        if let Some(hash) = hash {
                            self.known.remember(scope, dataset, head, hash);
                        }
                        hash
                    }
                };
                match hash {
                    Some(hash) if if_none_match.matches(&etag(&hash, format, Coding::Identity)) => {
                        return Ok(Answer::NotModified {
                            etag: etag(&hash, format, coding),
                        })
                    }
                    Some(hash) => match cached_blob(cache, ns, scope, &hash).await {
                        Some(bytes) => (hash, bytes),
                        None => build_and_store(cache, ns, db, scope, dataset).await?,
                    },
                    None => build_and_store(cache, ns, db, scope, dataset).await?,
                }
            }
        };
        if if_none_match.matches(&etag(&hash, format, Coding::Identity)) {
            return Ok(Answer::NotModified {
                etag: etag(&hash, format, coding),
            });
        }
        let body = match namespace {
            Some(ns) => {
                let key = keys::representation(ns, scope, &hash, &representation_name(format, coding));
                match cache
                    .get_local(CacheKind::Representation, &key)
                    .and_then(CacheValue::into_bytes)
                {
                    Some(body) => body,
                    None => {
                        let body = encode(&canonical, format, coding)?;
                        cache.put_local(
                            CacheKind::Representation,
                            &key,
                            CacheValue::Bytes(body.clone()),
                            body.len(),
                        );
                        body
                    }
                }
            }
            None => encode(&canonical, format, coding)?,
        };
        Ok(Answer::Full(Representation {
            body,
            etag: etag(&hash, format, coding),
            format,
            coding,
        }))
    }
}

/// Per (scope, reference dataset): a head and the dataset's snapshot hash at that head (read in one snapshot).
/// Bounded by scopes times datasets. Memory only: a hash is only trusted for the database this process talks to.
struct KnownSnapshots {
    /// `DUKASYNC_CACHE_MEMORY_BYTES=0`: nothing is kept in process.
    enabled: bool,
    by_dataset: Mutex<HashMap<(ScopeId, &'static str), SeenAt>>,
}

/// A head and the snapshot hash seen at it.
type SeenAt = (i64, [u8; 32]);

impl KnownSnapshots {
    /// The snapshot hash of `dataset` if it was seen at exactly this `head`: with the head unchanged, nothing
    /// was committed in the scope since, so the content is the same.
    fn at(&self, scope: &ScopeId, dataset: &'static str, head: i64) -> Option<[u8; 32]> {
        let known = self.by_dataset.lock().unwrap_or_else(|p| p.into_inner());
        match known.get(&(scope.clone(), dataset)) {
            Some(&(seen, hash)) if seen == head => Some(hash),
            _ => None,
        }
    }

    fn remember(&self, scope: &ScopeId, dataset: &'static str, head: i64, hash: [u8; 32]) {
        if self.enabled {
            let mut known = self.by_dataset.lock().unwrap_or_else(|p| p.into_inner());
            known.insert((scope.clone(), dataset), (head, hash));
        }
    }
}

/// Builds the snapshot from PostgreSQL: (hash, canonical bytes), and the last change it reflects.
async fn build_snapshot(db: &PgPool, scope: &ScopeId, dataset: &str) -> Result<([u8; 32], Bytes, Option<LastChange>)> {
    let data = store::reference::dataset(db, scope, dataset)
        .await?
        .ok_or(Error::NotFound("scope"))?;
    let snapshot = ReferenceSnapshot {
        checksum: data.checksum,
        count: data.count,
        dataset: dataset.to_string(),
        rows: data.rows.into_iter().map(|(_, value)| value).collect(),
        scope: scope.to_string(),
        version: data.last.map(|l| l.version).unwrap_or(0),
    };
    let bytes = Bytes::from(canonical_bytes(&snapshot));
    Ok((*blake3::hash(&bytes).as_bytes(), bytes, data.last))
}

async fn build(db: &PgPool, scope: &ScopeId, dataset: &str) -> Result<([u8; 32], Bytes)> {
    let (hash, bytes, _) = build_snapshot(db, scope, dataset).await?;
    Ok((hash, bytes))
}

async fn build_and_store(
    cache: &Cache,
    ns: &str,
    db: &PgPool,
    scope: &ScopeId,
    dataset: &str,
) -> Result<([u8; 32], Bytes)> {
    let (hash, bytes, last) = build_snapshot(db, scope, dataset).await?;
    // The pointer is stored for the last change this build saw (same statement as its rows), which may be
    // newer than the one looked up before: it is still exactly this content.
    if let Some(last) = last {
        let pointer = keys::snapshot_pointer(ns, scope, dataset, last.version, last.tag);
        cache.put(
            CacheKind::SnapshotPointer,
            &pointer,
            CacheValue::Bytes(Bytes::copy_from_slice(&hash)),
            &hash,
        );
    }
    let blob = keys::snapshot_blob(ns, scope, &hash);
    cache.put(CacheKind::SnapshotBlob, &blob, CacheValue::Bytes(bytes.clone()), &bytes);
    Ok((hash, bytes))
}

/// Stores the current snapshot of every reference dataset of `scope` in Redis (for `dukasync cache warm`).
/// Returns how many datasets were stored.
pub async fn warm(cache: &Cache, db: &PgPool, scope: &ScopeId) -> Result<usize> {
    let Some(ns) = cache.namespace(|| store::cache_namespace(db)).await else {
        return Ok(0);
    };
    let mut stored = 0;
    for dataset in collections::all().iter().filter(|c| c.reference) {
        let (hash, bytes, last) = build_snapshot(db, scope, dataset.name).await?;
        let mut ok = true;
        if let Some(last) = last {
            let pointer = keys::snapshot_pointer(ns, scope, dataset.name, last.version, last.tag);
            let value = CacheValue::Bytes(Bytes::copy_from_slice(&hash));
            ok &= cache
                .put_and_wait(CacheKind::SnapshotPointer, &pointer, value, &hash)
                .await;
        }
        let blob = keys::snapshot_blob(ns, scope, &hash);
        ok &= cache
            .put_and_wait(CacheKind::SnapshotBlob, &blob, CacheValue::Bytes(bytes.clone()), &bytes)
            .await;
        stored += usize::from(ok);
    }
    Ok(stored)
}

async fn cached_hash(
    cache: &Cache,
    ns: &str,
    scope: &ScopeId,
    dataset: &str,
    last: Option<LastChange>,
) -> Option<[u8; 32]> {
    // A dataset that never changed has no pointer; building it reads no rows.
    let last = last?;
    let key = keys::snapshot_pointer(ns, scope, dataset, last.version, last.tag);
    let value = cache
        .get(CacheKind::SnapshotPointer, &key, |_, bytes| {
            (bytes.len() == 32).then(|| CacheValue::Bytes(bytes.clone()))
        })
        .await?;
    value.into_bytes()?.as_ref().try_into().ok()
}

async fn cached_blob(cache: &Cache, ns: &str, scope: &ScopeId, hash: &[u8; 32]) -> Option<Bytes> {
    let key = keys::snapshot_blob(ns, scope, hash);
    cache
        .get(CacheKind::SnapshotBlob, &key, |_, bytes| {
            (blake3::hash(bytes).as_bytes() == hash).then(|| CacheValue::Bytes(bytes.clone()))
        })
        .await?
        .into_bytes()
}

/// The canonical JSON of a snapshot.
pub fn canonical_bytes(snapshot: &ReferenceSnapshot) -> Vec<u8> {
    // Rows are `serde_json::Value`s (sorted maps) and the struct's fields are declared in sorted order, so
    // plain serialization is canonical; a unit test holds this against `canonical::to_canonical_json`.
    serde_json::to_vec(snapshot).expect("a snapshot always serializes")
}

/// The ETag of a representation of the content with `hash`.
pub fn etag(hash: &[u8; 32], format: BodyFormat, coding: Coding) -> String {
    // Asked for on every revalidation: one allocation.
    let mut hex = [0u8; 32];
    let _ = hex::encode_to_slice(&hash[..16], &mut hex);
    let mut out = String::with_capacity(56);
    out.push('"');
    out.push_str(std::str::from_utf8(&hex).unwrap_or_default());
    push_suffix(&mut out, format, coding);
    out.push('"');
    out
}

fn push_suffix(out: &mut String, format: BodyFormat, coding: Coding) {
    if format == BodyFormat::MessagePack {
        out.push_str(".msgpack");
    }
    if let Some(token) = coding.token() {
        out.push('.');
        out.push_str(token);
    }
}

fn suffix(format: BodyFormat, coding: Coding) -> String {
    let mut out = String::new();
    push_suffix(&mut out, format, coding);
    out
}

fn representation_name(format: BodyFormat, coding: Coding) -> String {
    format!("{:?}{}", format, suffix(format, coding)).to_ascii_lowercase()
}

/// The entity tags of an `If-None-Match` header, parsed by the HTTP layer (`http::negotiate`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum IfNoneMatch {
    /// No header (or nothing usable in it): nothing matches.
    #[default]
    None,
    /// `*`: any current representation matches.
    Any,
    /// The opaque parts of the tags, weak or strong alike (weak comparison).
    Tags(Vec<String>),
}

impl IfNoneMatch {
    /// Whether the client's copy is `current` (an identity-coded ETag), whatever coding it was sent with: the
    /// coding does not change the decoded copy.
    pub fn matches(&self, current: &str) -> bool {
        let current = current.trim_matches('"');
        match self {
            IfNoneMatch::None => false,
            IfNoneMatch::Any => true,
            IfNoneMatch::Tags(tags) => tags.iter().any(|opaque| {
                let without_coding = [".gzip", ".br", ".zstd"]
                    .iter()
                    .find_map(|s| opaque.strip_suffix(s))
                    .unwrap_or(opaque);
                without_coding == current
            }),
        }
    }
}

/// What a client asks of a snapshot: which dataset, in which representation, and what copy it holds.
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    pub dataset: &'a str,
    pub format: BodyFormat,
    pub coding: Coding,
    pub if_none_match: &'a IfNoneMatch,
}

/// Encodes the canonical JSON as `format`, compressed with `coding`.
fn encode(canonical: &Bytes, format: BodyFormat, coding: Coding) -> Result<Bytes> {
    let plain: Bytes = match format {
        BodyFormat::Json => canonical.clone(),
        BodyFormat::MessagePack => {
            let value: serde_json::Value = serde_json::from_slice(canonical).map_err(|e| Error::Internal(e.into()))?;
            Bytes::from(crate::wire::to_msgpack(&value).map_err(|e| Error::Internal(e.into()))?)
        }
    };
    compress(&plain, coding)
        .map(Bytes::from)
        .map_err(|e| Error::Internal(e.into()))
}

/// Compresses `data`; levels are moderate because each representation is computed once per instance.
pub fn compress(data: &[u8], coding: Coding) -> std::io::Result<Vec<u8>> {
    match coding {
        Coding::Identity => Ok(data.to_vec()),
        Coding::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            encoder.write_all(data)?;
            encoder.finish()
        }
        Coding::Br => {
            let mut out = Vec::new();
            {
                let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 6, 22);
                writer.write_all(data)?;
            }
            Ok(out)
        }
        Coding::Zstd => zstd::bulk::compress(data, 6),
    }
}

/// The canonical JSON's check against the protocol's canonical encoding, for tests and vectors.
pub fn is_canonical(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .map(|v| canonical::to_canonical_json(&v).as_bytes() == bytes)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn snapshot_json_is_canonical() {
        let snapshot = ReferenceSnapshot {
            checksum: 7,
            count: 2,
            dataset: "products".into(),
            rows: vec![json!({"id": "a", "price": "1.00", "name": "A"}), json!({"id": "b"})],
            scope: "water".into(),
            version: 12,
        };
        let bytes = canonical_bytes(&snapshot);
        assert!(is_canonical(&bytes), "{}", String::from_utf8_lossy(&bytes));
        assert!(bytes.starts_with(br#"{"checksum":7,"count":2,"dataset":"products","rows":[{"id":"a","name""#));
    }

    #[test]
    fn etags_differ_per_representation_and_match_ignoring_the_coding() {
        let hash = *blake3::hash(b"x").as_bytes();
        let plain = etag(&hash, BodyFormat::Json, Coding::Identity);
        let gz = etag(&hash, BodyFormat::Json, Coding::Gzip);
        let mp = etag(&hash, BodyFormat::MessagePack, Coding::Identity);
        let mp_br = etag(&hash, BodyFormat::MessagePack, Coding::Br);
        assert_eq!(plain.len(), 34);
        assert!(gz.ends_with(".gzip\"") && mp.ends_with(".msgpack\"") && mp_br.ends_with(".msgpack.br\""));
        let seen = |tag: &str| IfNoneMatch::Tags(vec![tag.trim_matches('"').to_string()]);
        assert!(seen(&plain).matches(&plain));
        assert!(seen(&gz).matches(&plain), "the coding does not change the decoded copy");
        assert!(!seen(&mp).matches(&plain), "MessagePack is another representation");
        assert!(seen(&mp_br).matches(&mp));
        assert!(IfNoneMatch::Any.matches(&plain));
        assert!(!IfNoneMatch::None.matches(&plain));
        let other = etag(blake3::hash(b"y").as_bytes(), BodyFormat::Json, Coding::Identity);
        assert!(!seen(&other).matches(&plain));
    }

    #[test]
    fn compressed_bodies_decompress_to_the_original() {
        use std::io::Read;
        let data = br#"{"rows":[{"id":"a"},{"id":"b"},{"id":"a"},{"id":"b"}]}"#.repeat(20);
        let gz = compress(&data, Coding::Gzip).unwrap();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        let br = compress(&data, Coding::Br).unwrap();
        let mut out = Vec::new();
        brotli::Decompressor::new(&br[..], 4096).read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        let zs = compress(&data, Coding::Zstd).unwrap();
        assert_eq!(zstd::decode_all(&zs[..]).unwrap(), data);
        assert_eq!(compress(&data, Coding::Gzip).unwrap(), gz, "deterministic");
    }
}
