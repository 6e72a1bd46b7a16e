//! Hot delta windows: the change feed served from cached immutable windows where it can be.
//!
//! The feed's answer must be exactly what a plain read (`store::changes::read`) returns at the same snapshot:
//! same changes, cursor, `has_more` and head. This module only changes where the rows come from:
//! - windows are aligned (`k·size + 1 ..= (k + 1)·size`), so devices with different cursors share them;
//! - a window is cached only when it is closed and at or above the floor (see `store::windows`): every version
//!   in it is committed and can never change, so the cache cannot be stale and nothing is invalidated;
//! - every use is checked against PostgreSQL in the same statement that reads the rest of the page: head,
//!   floor and the window's end tag, so compaction (which raises the floor) and a restore (another history,
//!   other tags) are both seen before a cached window is served;
//! - the open tail (the window containing the head) and anything below the floor come from PostgreSQL.
//!
//! When the assembled rows cannot be shown to equal a plain read (a cached window turned out unusable after
//! the rest of the page was limited on the assumption it was), the read is simply repeated the plain way.

use crate::{
    cache::{keys, memory::Value as CacheValue, stats::CacheKind, Cache},
    domain::ScopeId,
    store::{
        self,
        changes::{FeedSlice, LoggedChange},
        windows::Candidate,
    },
};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sqlx::PgPool;
use std::{collections::HashMap, sync::Arc};

/// Most windows one pull looks at; the rest of a page comes from PostgreSQL directly.
pub const MAX_WINDOWS_PER_PULL: i64 = 32;

/// A closed window: exactly `size` changes with consecutive versions from `start`.
#[derive(Debug)]
pub struct Window {
    pub start: i64,
    pub changes: Vec<LoggedChange>,
}

impl Window {
    pub fn end_tag(&self) -> i64 {
        self.changes.last().map(|c| c.tag).unwrap_or_default()
    }

    /// An estimate of the heap this window occupies, which the in-process cache charges (row data is kept as
    /// JSON text; when it was a parsed `serde_json::Value` tree, the benchmark measured 23 MiB of windows
    /// charged by JSON length holding about 190 MiB resident).
    pub fn resident_bytes(&self) -> usize {
        use std::mem::size_of;
        size_of::<Window>()
            + self.changes.capacity() * size_of::<LoggedChange>()
            + self
                .changes
                .iter()
                .map(|c| {
                    heap_string(&c.collection)
                        + heap_string(&c.key)
                        + c.data.as_ref().map(|d| heap_string(d.get())).unwrap_or(0)
                })
                .sum::<usize>()
    }

    /// A window from rows read from PostgreSQL, if they are exactly the window (dense, complete).
    fn from_rows(start: i64, size: i64, changes: Vec<LoggedChange>) -> Result<Window, Vec<LoggedChange>> {
        let complete =
            changes.len() as i64 == size && changes.iter().enumerate().all(|(i, c)| c.version == start + i as i64);
        if complete {
            Ok(Window { start, changes })
        } else {
            Err(changes)
        }
    }
}

/// What the allocator hands out per allocation beyond the bytes asked for (header and rounding), roughly.
const ALLOCATION_OVERHEAD: usize = 16;

fn heap_string(s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        s.len() + ALLOCATION_OVERHEAD
    }
}

/// How a window is stored in Redis: JSON, so row data comes back exactly as PostgreSQL gave it.
#[derive(Serialize, Deserialize)]
struct Stored {
    start: i64,
    changes: Vec<StoredChange>,
}

/// (version, collection, key, data, tag)
type StoredChange = (i64, String, String, Option<Box<RawValue>>, i64);

pub fn encode(window: &Window) -> Vec<u8> {
    let stored = Stored {
        start: window.start,
        changes: window
            .changes
            .iter()
            .map(|c| (c.version, c.collection.clone(), c.key.clone(), c.data.clone(), c.tag))
            .collect(),
    };
    serde_json::to_vec(&stored).expect("a window always serializes")
}

/// Decodes a stored window, refusing anything that is not exactly window `start` of `size` versions.
pub fn decode(bytes: &[u8], start: i64, size: i64) -> Option<Window> {
    let stored: Stored = serde_json::from_slice(bytes).ok()?;
    if stored.start != start {
        return None;
    }
    let changes = stored
        .changes
        .into_iter()
        .map(|(version, collection, key, data, tag)| LoggedChange {
            version,
            collection,
            key,
            data,
            tag,
        })
        .collect();
    Window::from_rows(start, size, changes).ok()
}

/// Changes found in windows held in this process's memory: see [`from_memory`].
#[derive(Debug)]
pub struct MemoryRead {
    /// Tag of the change at `since` (`None` for `since` 0).
    pub since_tag: Option<i64>,
    pub changes: Vec<LoggedChange>,
}

/// The first `limit` changes after `since` (filtered) when closed windows held in this process's memory
/// contain all of them and the change at `since`; `None` otherwise. No I/O at all. A window enters memory only
/// after it was read from, or checked against, this database (`read`), and its changes can never change, so
/// these are exactly the rows a read of PostgreSQL would return *if* `since` is at or above the floor (below
/// it, PostgreSQL holds the compacted log): the caller checks that against a fresh head.
pub fn from_memory(
    cache: &Cache,
    scope: &ScopeId,
    since: i64,
    limit: i64,
    collections: Option<&[String]>,
) -> Option<MemoryRead> {
    let size = i64::from(cache.window_size);
    let namespace = cache.namespace_known()?;
    if size <= 0 || since < 0 || limit <= 0 {
        return None;
    }
    // Only windows the last seen head says are closed: the open one is never in memory, and looking for it
    // would only count misses.
    let (known_head, _) = cache.feed_hint(scope)?;
    let mut used = 0;
    let mut window = |index: i64| -> Option<Arc<Window>> {
        if (index + 1) * size > known_head {
            return None;
        }
        let key = keys::window(namespace, scope, cache.window_size, index);
        let w = cache.peek_local(&key)?.into_window()?;
        used += 1;
        Some(w)
    };
    let since_tag = match since {
        0 => None,
        _ => {
            let w = window((since - 1) / size)?;
            Some(w.changes.get((since - w.start) as usize)?.tag)
        }
    };
    let mut changes = Vec::with_capacity(limit as usize);
    for index in (since / size)..(since / size + MAX_WINDOWS_PER_PULL) {
        let w = window(index)?;
        for change in w.changes.iter().filter(|c| c.version > since && wanted(c, collections)) {
            changes.push(change.clone());
            if changes.len() as i64 == limit {
                cache.count_local_hits(CacheKind::Window, used);
                return Some(MemoryRead { since_tag, changes });
            }
        }
    }
    None
}

/// Reads up to `limit` changes after `since` (like `store::changes::read`), using cached windows.
pub async fn read(
    cache: &Cache,
    db: &PgPool,
    scope: &ScopeId,
    since: i64,
    limit: i64,
    collections: Option<&[String]>,
) -> Result<Option<FeedSlice>, sqlx::Error> {
    let size = i64::from(cache.window_size);
    let namespace = match size > 0 {
        true => cache.namespace(db).await,
        false => None,
    };
    let Some(namespace) = namespace else {
        return store::changes::read(db, scope, since, limit, collections).await;
    };
    let starts = candidate_starts(cache.feed_hint(scope), since, limit, size);
    if starts.is_empty() {
        let slice = store::changes::read(db, scope, since, limit, collections).await?;
        if let Some(s) = &slice {
            cache.set_feed_hint(scope, s.head, s.floor);
        }
        return Ok(slice);
    }

    let cache_keys: Vec<String> = starts
        .iter()
        .map(|start| keys::window(namespace, scope, cache.window_size, (start - 1) / size))
        .collect();
    let cached: Vec<Option<Arc<Window>>> = cache
        .get_many(CacheKind::Window, &cache_keys, |key, bytes: &Bytes| {
            let start = starts[cache_keys.iter().position(|k| k == key)?];
            decode(bytes, start, size).map(|w| CacheValue::Window(Arc::new(w)))
        })
        .await
        .into_iter()
        .map(|v| v.and_then(CacheValue::into_window))
        .collect();

    // Assume every cached window is usable; if one is not, the check below notices and reads plainly.
    let cached_matches: i64 = cached
        .iter()
        .flatten()
        .map(|w| {
            w.changes
                .iter()
                .filter(|c| c.version > since && wanted(c, collections))
                .count() as i64
        })
        .sum();
    let after_limit = (limit - cached_matches).max(0);
    let candidates: Vec<Candidate> = starts
        .iter()
        .zip(&cached)
        .map(|(&start, w)| Candidate {
            start,
            cached_end_tag: w.as_ref().map(|w| w.end_tag()),
        })
        .collect();
    let Some(slice) =
        store::windows::read(db, scope, since, limit, after_limit, collections, size, &candidates).await?
    else {
        return Ok(None);
    };
    cache.set_feed_hint(scope, slice.head, slice.floor);
    if slice.anomaly {
        tracing::warn!(%scope, "a closed window lacks its last change; reading the feed without windows");
        return store::changes::read(db, scope, since, limit, collections).await;
    }

    let by_start: HashMap<i64, &Arc<Window>> = starts
        .iter()
        .zip(&cached)
        .filter_map(|(&start, w)| Some((start, w.as_ref()?)))
        .collect();
    let mut fetched = group_by_window(slice.fetched, size);
    let mut changes = slice.before;
    for (start, end_tag) in slice.covered {
        let usable = by_start.get(&start).filter(|w| w.end_tag() == end_tag);
        let window: Arc<Window> = match usable {
            Some(w) => Arc::clone(w),
            None => match Window::from_rows(start, size, fetched.remove(&start).unwrap_or_default()) {
                Ok(window) => {
                    let window = Arc::new(window);
                    let key = keys::window(namespace, scope, cache.window_size, (start - 1) / size);
                    cache.put(
                        CacheKind::Window,
                        &key,
                        CacheValue::Window(window.clone()),
                        &encode(&window),
                    );
                    window
                }
                Err(_) => {
                    // Same snapshot, so the rows are right, but they are not a whole window: serve, never cache.
                    tracing::warn!(%scope, start, "a closed window is not dense; reading the feed without windows");
                    return store::changes::read(db, scope, since, limit, collections).await;
                }
            },
        };
        changes.extend(
            window
                .changes
                .iter()
                .filter(|c| c.version > since && wanted(c, collections))
                .cloned(),
        );
    }
    let after_may_be_cut = slice.after.len() as i64 >= after_limit;
    changes.extend(slice.after);
    if (changes.len() as i64) < limit && after_may_be_cut {
        // The rest was limited assuming cached windows that turned out unusable: the page may be short.
        return store::changes::read(db, scope, since, limit, collections).await;
    }
    changes.truncate(limit.max(0) as usize);
    Ok(Some(FeedSlice {
        head: slice.head,
        floor: slice.floor,
        since_tag: slice.since_tag,
        head_tag: slice.head_tag,
        changes,
    }))
}

/// First versions of the windows worth looking up for a page after `since`: those a page of `limit` changes
/// could reach, that the last seen head says are closed and the last seen floor says are not compacted.
fn candidate_starts(hint: Option<(i64, i64)>, since: i64, limit: i64, size: i64) -> Vec<i64> {
    let first = since / size;
    let last = (since + limit.max(1) - 1) / size;
    let count = (last - first + 1).clamp(0, MAX_WINDOWS_PER_PULL);
    (first..first + count)
        .filter(|k| match hint {
            Some((head, floor)) => (k + 1) * size <= head && k * size + 1 >= floor,
            None => true,
        })
        .map(|k| k * size + 1)
        .collect()
}

fn wanted(change: &LoggedChange, collections: Option<&[String]>) -> bool {
    collections.is_none_or(|names| names.contains(&change.collection))
}

fn group_by_window(changes: Vec<LoggedChange>, size: i64) -> HashMap<i64, Vec<LoggedChange>> {
    let mut out: HashMap<i64, Vec<LoggedChange>> = HashMap::new();
    for change in changes {
        out.entry((change.version - 1) / size * size + 1)
            .or_default()
            .push(change);
    }
    out
}

/// Loads the last `count` closed windows of `scope` at or above its floor into Redis (for
/// `dukasync cache warm`). Returns how many were stored.
pub async fn warm(cache: &Cache, db: &PgPool, scope: &ScopeId, count: i64) -> Result<usize, sqlx::Error> {
    let size = i64::from(cache.window_size);
    let Some(namespace) = (if size > 0 { cache.namespace(db).await } else { None }) else {
        return Ok(0);
    };
    let Some((head, floor)) = store::changes::bounds(db, scope).await? else {
        return Ok(0);
    };
    let last = head / size; // windows 0..last are closed
    let first = (last - count).max(0);
    let candidates: Vec<Candidate> = (first..last)
        .map(|k| Candidate {
            start: k * size + 1,
            cached_end_tag: None,
        })
        .filter(|c| c.start >= floor)
        .collect();
    let Some(slice) = store::windows::read(db, scope, head, 0, 0, None, size, &candidates).await? else {
        return Ok(0);
    };
    let mut fetched = group_by_window(slice.fetched, size);
    let mut stored = 0;
    for (start, _) in slice.covered {
        if let Ok(window) = Window::from_rows(start, size, fetched.remove(&start).unwrap_or_default()) {
            let key = keys::window(namespace, scope, cache.window_size, (start - 1) / size);
            let encoded = encode(&window);
            if cache
                .put_and_wait(CacheKind::Window, &key, CacheValue::Window(Arc::new(window)), &encoded)
                .await
            {
                stored += 1;
            }
        }
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_aligned_and_bounded_by_the_hint() {
        // since 0, 10 changes wanted, windows of 4: windows 0, 1, 2 (versions 1-12).
        assert_eq!(candidate_starts(None, 0, 10, 4), vec![1, 5, 9]);
        // since 5 is inside window 1 (5..8): the page starts there.
        assert_eq!(candidate_starts(None, 5, 3, 4), vec![5]);
        // Head 10: only windows ending at or below 10 are closed.
        assert_eq!(candidate_starts(Some((10, 0)), 0, 100, 4), vec![1, 5]);
        // Floor 6: window 1 (5..8) starts below it.
        assert_eq!(candidate_starts(Some((100, 6)), 0, 12, 4), vec![9]);
        assert_eq!(
            candidate_starts(None, 0, 1_000_000, 4).len() as i64,
            MAX_WINDOWS_PER_PULL
        );
    }

    fn change(version: i64) -> LoggedChange {
        LoggedChange {
            version,
            collection: "products".into(),
            key: format!("p{version}"),
            data: Some(RawValue::from_string(format!(r#"{{"id":"p{version}","n":{version}}}"#)).unwrap()),
            tag: version * 7,
        }
    }

    #[test]
    fn stored_windows_round_trip_and_refuse_anything_else() {
        let window = Window::from_rows(5, 4, (5..9).map(change).collect()).unwrap();
        let bytes = encode(&window);
        let back = decode(&bytes, 5, 4).unwrap();
        assert_eq!(back.changes.len(), 4);
        assert_eq!(back.end_tag(), 8 * 7);
        assert_eq!(
            back.changes[1].data.as_ref().map(|d| d.get()),
            window.changes[1].data.as_ref().map(|d| d.get())
        );
        assert!(decode(&bytes, 9, 4).is_none(), "another window's key");
        assert!(decode(&bytes, 5, 8).is_none(), "another window size");
        assert!(decode(b"{\"start\":5,\"changes\":[]}", 5, 4).is_none(), "incomplete");
        assert!(decode(b"\xff\x00garbage", 5, 4).is_none());
        assert!(Window::from_rows(5, 4, vec![change(5), change(6), change(8), change(9)]).is_err());
    }
}
