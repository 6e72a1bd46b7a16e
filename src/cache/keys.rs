//! Every cache key, in one place.
//!
//! `dks:{FORMAT}:{namespace}:...`. `FORMAT` is bumped whenever the encoding of any cached value changes, so a
//! deploy with a new encoding never reads entries written by the old one (they age out of Redis by LRU and
//! TTL). The namespace names the PostgreSQL database (cluster system identifier and database oid), so two
//! databases sharing one Redis (staging and production, test databases) never read each other's entries even
//! where scope ids coincide. Within a database, every value is immutable under its key:
//! - a window key names an aligned range of versions; the entry carries the tag of its last change, checked
//!   against PostgreSQL before use, so a restored database with another history never uses it;
//! - a snapshot pointer key names the dataset's last change by version *and* tag, so it too is history-proof;
//! - a window member key (a compressed range of a closed window) names the window's last tag as well, so it is
//!   only ever used for the window it was made from, after that window was checked, and the layout the range
//!   was rendered in (it holds rendered bytes, unlike a window);
//! - a blob key is the blake3 hash of the bytes it holds, scoped: a hash never grants access to another scope.

use crate::domain::ScopeId;

/// The cache format version. Bump it when the encoding of any cached value changes.
pub const FORMAT: &str = "v1";

pub fn window(ns: &str, scope: &ScopeId, size: u32, index: i64) -> String {
    format!("dks:{FORMAT}:{ns}:w:{scope}:{size}:{index}")
}

/// A range (`from..to`, positions) of window `index`, whose last change has `end_tag`, rendered by layout
/// `rendering` (`feed::page::RENDERING`) and compressed with `coding`.
pub fn window_member(
    ns: &str,
    scope: &ScopeId,
    (size, index, end_tag): (u32, i64, i64),
    positions: std::ops::Range<usize>,
    rendering: u32,
    coding: &str,
) -> String {
    let (from, to) = (positions.start, positions.end);
    format!(
        "dks:{FORMAT}:{ns}:m{rendering}:{scope}:{size}:{index}:{:016x}:{from}-{to}:{coding}",
        end_tag as u64
    )
}

pub fn snapshot_pointer(ns: &str, scope: &ScopeId, dataset: &str, version: i64, tag: i64) -> String {
    format!("dks:{FORMAT}:{ns}:p:{scope}:{dataset}:{version}:{:016x}", tag as u64)
}

pub fn snapshot_blob(ns: &str, scope: &ScopeId, hash: &[u8; 32]) -> String {
    format!("dks:{FORMAT}:{ns}:b:{scope}:{}", hex::encode(hash))
}

/// In-process only: an encoded, possibly compressed representation of a blob.
pub fn representation(ns: &str, scope: &ScopeId, hash: &[u8; 32], representation: &str) -> String {
    format!("dks:{FORMAT}:{ns}:r:{scope}:{}:{representation}", hex::encode(hash))
}
