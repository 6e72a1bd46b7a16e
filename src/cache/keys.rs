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
pub const FORMAT: &str = "v2";

/// The start of a key: `dks:{FORMAT}:{ns}:{kind}`, in a string with room for the rest.
fn start(ns: &str, kind: &str) -> String {
    let mut key = String::with_capacity(96);
    for part in ["dks:", FORMAT, ":", ns, ":", kind] {
        key.push_str(part);
    }
    key
}

/// `n` in decimal. The window and member keys are made for every cached pull, several per page: written by
/// hand they cost a fraction of what `format!` does (callgrind, benches/README.md "Layers around every route").
fn push_number(key: &mut String, n: i64) {
    if n < 0 {
        key.push('-');
    }
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    key.extend(digits[at..].iter().map(|&d| char::from(d)));
}

pub fn window(ns: &str, scope: &ScopeId, size: u32, index: i64) -> String {
    let mut key = start(ns, "w:");
    key.push_str(scope.as_str());
    key.push(':');
    push_number(&mut key, i64::from(size));
    key.push(':');
    push_number(&mut key, index);
    key
}

/// A range (`from..to`, positions) of window `index`, whose last change has `end_tag`, rendered by layout
/// `rendering` (`feed::page::RENDERING`) and compressed with `coding`:
/// `dks:{FORMAT}:{ns}:m{rendering}:{scope}:{size}:{index}:{end_tag:016x}:{from}-{to}:{coding}`.
pub fn window_member(
    ns: &str,
    scope: &ScopeId,
    (size, index, end_tag): (u32, i64, i64),
    positions: std::ops::Range<usize>,
    rendering: u32,
    coding: &str,
) -> String {
    let mut key = start(ns, "m");
    push_number(&mut key, i64::from(rendering));
    key.push(':');
    key.push_str(scope.as_str());
    key.push(':');
    push_number(&mut key, i64::from(size));
    key.push(':');
    push_number(&mut key, index);
    key.push(':');
    let tag = end_tag as u64;
    key.extend(
        (0..16)
            .rev()
            .map(|nibble| char::from(b"0123456789abcdef"[(tag >> (nibble * 4)) as usize & 15])),
    );
    key.push(':');
    push_number(&mut key, positions.start as i64);
    key.push('-');
    push_number(&mut key, positions.end as i64);
    key.push(':');
    key.push_str(coding);
    key
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_written_by_hand_are_the_ones_format_writes() {
        let scope = ScopeId::parse("retail-2").unwrap();
        let ns = "7312345678901234567-16384";
        for (size, index) in [(256, 0), (256, 390), (1, i64::MAX), (u32::MAX, 7), (256, -1)] {
            assert_eq!(
                window(ns, &scope, size, index),
                format!("dks:{FORMAT}:{ns}:w:{scope}:{size}:{index}")
            );
        }
        for (tag, from, to, rendering) in [(0i64, 0usize, 1usize, 1u32), (-5, 17, 256, 12), (i64::MAX, 255, 256, 0)] {
            assert_eq!(
                window_member(ns, &scope, (256, 3, tag), from..to, rendering, "gzip"),
                format!(
                    "dks:{FORMAT}:{ns}:m{rendering}:{scope}:256:3:{:016x}:{from}-{to}:gzip",
                    tag as u64
                )
            );
        }
    }
}
