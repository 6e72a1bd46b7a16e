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

use crate::feed::page::{render_change, ChangeRef, Changes, Slice};
use crate::{
    cache::{keys, memory::Value as CacheValue, stats::CacheKind, Cache},
    domain::ScopeId,
    store::{
        self,
        changes::LoggedChange,
        windows::{Candidate, WindowedRead},
    },
};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use sqlx::PgPool;
use std::{
    collections::HashMap,
    ops::Range,
    sync::{Arc, Mutex},
};

/// Most windows one pull looks at; the rest of a page comes from PostgreSQL directly.
pub const MAX_WINDOWS_PER_PULL: i64 = 32;

/// A closed window: exactly `size` changes with consecutive versions from `start`, held as a page's JSON
/// renders them (see `page`), so that pages are written from its bytes as they are.
#[derive(Debug)]
pub struct Window {
    pub start: i64,
    entries: Vec<Entry>,
    /// The changes rendered by `page::render_change`, separated by commas.
    json: Box<[u8]>,
}

/// Where one change of a window is in its JSON, and its tag. Collection and key are read from the rendered
/// text itself (a window is only made of changes whose collection and key need no JSON escaping), so a change
/// costs 32 bytes beyond its JSON.
#[derive(Debug)]
struct Entry {
    tag: i64,
    collection: Span,
    key: Span,
    /// Where its row data (the last field) begins in `json`, 0 for a delete; the data ends one byte before
    /// `end`. (0 is never a data start: the first change's `{` is there.)
    data: u32,
    /// Where its rendered JSON ends in `json` (exclusive).
    end: u32,
}

#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    len: u32,
}

impl crate::cache::memory::Decoded for Window {
    fn resident_bytes(&self) -> usize {
        Window::resident_bytes(self)
    }
    fn into_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

impl Window {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn end_tag(&self) -> i64 {
        self.entries.last().map(|e| e.tag).unwrap_or_default()
    }

    /// The change at position `i` (version `start + i`).
    pub fn change(&self, i: usize) -> ChangeRef<'_> {
        let e = &self.entries[i];
        ChangeRef {
            version: self.start + i as i64,
            collection: self.span(e.collection),
            key: self.span(e.key),
            data: (e.data > 0).then(|| self.text(e.data as usize..e.end as usize - 1)),
            tag: e.tag,
        }
    }

    /// The position of the first change after version `since` (`len()` when there is none).
    pub fn first_after(&self, since: i64) -> usize {
        (since + 1 - self.start).clamp(0, self.len() as i64) as usize
    }

    pub fn collection(&self, i: usize) -> &str {
        self.span(self.entries[i].collection)
    }

    fn span(&self, span: Span) -> &str {
        self.text(span.start as usize..(span.start + span.len) as usize)
    }

    /// The rendered JSON of the changes at `positions`, comma separated.
    pub fn json(&self, positions: Range<usize>) -> &[u8] {
        if positions.is_empty() {
            return &[];
        }
        let from = match positions.start {
            0 => 0,
            i => self.entries[i - 1].end as usize + 1,
        };
        &self.json[from..self.entries[positions.end - 1].end as usize]
    }

    fn text(&self, range: Range<usize>) -> &str {
        // Written from `&str`s and serde_json's output, cut at field boundaries: always UTF-8.
        std::str::from_utf8(&self.json[range]).unwrap_or_default()
    }

    /// An estimate of the heap this window occupies, which the in-process cache charges (tests/cache_footprint.rs
    /// holds it to what building a window really allocates).
    pub fn resident_bytes(&self) -> usize {
        use std::mem::size_of;
        size_of::<Window>() + heap_bytes(self.entries.capacity() * size_of::<Entry>()) + heap_bytes(self.json.len())
    }

    /// A window from rows read from PostgreSQL, if they are exactly the window (dense, complete) and their
    /// collections and keys need no escaping in JSON (otherwise they are served from PostgreSQL, never cached).
    pub fn from_rows(start: i64, size: i64, changes: Vec<LoggedChange>) -> Result<Window, Vec<LoggedChange>> {
        let complete =
            changes.len() as i64 == size && changes.iter().enumerate().all(|(i, c)| c.version == start + i as i64);
        let plain = changes
            .iter()
            .all(|c| !needs_escape(&c.collection) && !needs_escape(&c.key));
        let json_len: usize = changes
            .iter()
            .map(|c| 80 + c.collection.len() + c.key.len() + c.data.as_ref().map_or(0, |d| d.get().len()))
            .sum();
        if !complete || !plain || json_len > u32::MAX as usize / 2 {
            return Err(changes);
        }
        let mut json = Vec::with_capacity(json_len);
        let mut entries = Vec::with_capacity(changes.len());
        for change in &changes {
            if !entries.is_empty() {
                json.push(b',');
            }
            let begin = json.len();
            render_change(&mut json, change);
            let end = json.len();
            // `{"version":V,"collection":"C","key":"K","op":...,"data":D}` (see `wire::ChangeOut`): neither C nor
            // K is escaped, and D, the last field, is written verbatim before the closing brace.
            let collection = begin + r#"{"version":"#.len() + digits(change.version) + r#","collection":""#.len();
            let key = collection + change.collection.len() + r#"","key":""#.len();
            let data = change.data.as_ref().map_or(0, |d| end - 1 - d.get().len());
            let found = |at: usize, text: &str| json.get(at..at + text.len()) == Some(text.as_bytes());
            let laid_out = found(collection, &change.collection)
                && found(key, &change.key)
                && change.data.as_ref().is_none_or(|d| found(data, d.get()));
            if !laid_out {
                // Only if `ChangeOut` changed its layout; a unit test below fails first.
                return Err(changes);
            }
            entries.push(Entry {
                tag: change.tag,
                collection: Span {
                    start: collection as u32,
                    len: change.collection.len() as u32,
                },
                key: Span {
                    start: key as u32,
                    len: change.key.len() as u32,
                },
                data: data as u32,
                end: end as u32,
            });
        }
        Ok(Window {
            start,
            entries,
            json: json.into_boxed_slice(),
        })
    }
}

/// Whether serde_json escapes anything in `s` (it escapes `"`, `\` and control characters, nothing else).
fn needs_escape(s: &str) -> bool {
    s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20)
}

fn digits(n: i64) -> usize {
    n.to_string().len()
}

/// What the allocator hands out per allocation beyond the bytes asked for (header and rounding), roughly.
const ALLOCATION_OVERHEAD: usize = 16;

fn heap_bytes(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        len + ALLOCATION_OVERHEAD
    }
}

/// How a window is stored in Redis: JSON, so row data comes back exactly as PostgreSQL gave it.
#[derive(Deserialize)]
struct Stored {
    start: i64,
    changes: Vec<StoredChange>,
}

/// (version, collection, key, data, tag)
type StoredChange = (i64, String, String, Option<Box<RawValue>>, i64);

/// The Redis form of a window: `{"start":S,"changes":[[version,collection,key,data,tag],...]}`, what serde
/// writes for `Stored`, written from the rendered changes without parsing them.
pub fn encode(window: &Window) -> Vec<u8> {
    let mut out = Vec::with_capacity(window.json.len() + 32);
    out.extend_from_slice(format!("{{\"start\":{},\"changes\":[", window.start).as_bytes());
    for i in 0..window.len() {
        let c = window.change(i);
        if i > 0 {
            out.push(b',');
        }
        // Writing integers and strings to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, &(c.version, c.collection, c.key));
        out.pop(); // the tuple's closing bracket: data and tag follow
        out.push(b',');
        out.extend_from_slice(c.data.unwrap_or("null").as_bytes());
        out.extend_from_slice(format!(",{}]", c.tag).as_bytes());
    }
    out.extend_from_slice(b"]}");
    out
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

/// The feed's cache of closed windows: the byte cache it stores them in, the window size, and per scope the
/// (head, floor) last seen, only a hint for which windows are worth looking up, never trusted for correctness
/// (bounded by the number of scopes that exist).
pub struct WindowCache {
    pub cache: Arc<Cache>,
    /// Versions per window (`DUKASYNC_CACHE_WINDOW`); 0 disables the window cache.
    pub size: u32,
    hints: Mutex<HashMap<ScopeId, (i64, i64)>>,
}

impl WindowCache {
    pub fn new(cache: Arc<Cache>, size: u32) -> Self {
        WindowCache {
            cache,
            size,
            hints: Mutex::new(HashMap::new()),
        }
    }

    /// The (head, floor) last seen for `scope`, if any.
    fn hint(&self, scope: &ScopeId) -> Option<(i64, i64)> {
        self.hints.lock().unwrap_or_else(|p| p.into_inner()).get(scope).copied()
    }

    fn set_hint(&self, scope: &ScopeId, head: i64, floor: i64) {
        let mut hints = self.hints.lock().unwrap_or_else(|p| p.into_inner());
        match hints.get_mut(scope) {
            Some(hint) => *hint = (head, floor),
            None => {
                hints.insert(scope.clone(), (head, floor));
            }
        }
    }
}

/// Changes found in windows held in this process's memory: see [`from_memory`].
#[derive(Debug)]
pub struct MemoryRead {
    /// Tag of the change at `since` (`None` for `since` 0).
    pub since_tag: Option<i64>,
    pub changes: Changes,
}

/// The first `limit` changes after `since` (filtered) when closed windows held in this process's memory
/// contain all of them and the change at `since`; `None` otherwise. No I/O at all. A window enters memory only
/// after it was read from, or checked against, this database (`read`), and its changes can never change, so
/// these are exactly the rows a read of PostgreSQL would return *if* `since` is at or above the floor (below
/// it, PostgreSQL holds the compacted log): the caller checks that against a fresh head.
pub fn from_memory(
    windows: &WindowCache,
    scope: &ScopeId,
    since: i64,
    limit: i64,
    collections: Option<&[String]>,
) -> Option<MemoryRead> {
    let size = i64::from(windows.size);
    let namespace = windows.cache.namespace_known()?;
    if size <= 0 || since < 0 || limit <= 0 {
        return None;
    }
    // Only windows the last seen head says are closed: the open one is never in memory, and looking for it
    // would only count misses.
    let (known_head, _) = windows.hint(scope)?;
    let mut used = 0;
    let mut window = |index: i64| -> Option<Arc<Window>> {
        if (index + 1) * size > known_head {
            return None;
        }
        let key = keys::window(namespace, scope, windows.size, index);
        let w = windows.cache.peek_local(&key)?.into_decoded::<Window>()?;
        used += 1;
        Some(w)
    };
    let since_tag = match since {
        0 => None,
        _ => {
            let w = window((since - 1) / size)?;
            Some(w.entries.get((since - w.start) as usize)?.tag)
        }
    };
    let mut changes = Changes::default();
    let mut wanted_left = limit as usize;
    for index in (since / size)..(since / size + MAX_WINDOWS_PER_PULL) {
        let w = window(index)?;
        let taken = take_from(&w, since, collections, wanted_left, &mut changes);
        wanted_left -= taken;
        if wanted_left == 0 {
            windows.cache.count_local_hits(CacheKind::Window, used);
            return Some(MemoryRead { since_tag, changes });
        }
    }
    None
}

/// Appends to `changes` the window's changes after `since` that the filter wants, at most `most`, as runs of
/// consecutive positions. Returns how many it appended.
fn take_from(w: &Arc<Window>, since: i64, collections: Option<&[String]>, most: usize, changes: &mut Changes) -> usize {
    let mut i = w.first_after(since);
    if collections.is_none() {
        let to = w.len().min(i.saturating_add(most));
        changes.push_window(w, i, to);
        return to - i;
    }
    let mut taken = 0;
    let mut run = None;
    while i < w.len() && taken < most {
        if wanted(w.collection(i), collections) {
            run.get_or_insert(i);
            taken += 1;
        } else if let Some(from) = run.take() {
            changes.push_window(w, from, i);
        }
        i += 1;
    }
    // Ended at the window's end or just after the last change taken: either way the run ends at `i`.
    if let Some(from) = run {
        changes.push_window(w, from, i);
    }
    taken
}

/// Reads up to `limit` changes after `since` (like `store::changes::read`), using cached windows.
pub async fn read(
    windows: &WindowCache,
    db: &PgPool,
    scope: &ScopeId,
    since: i64,
    limit: i64,
    collections: Option<&[String]>,
) -> Result<Option<Slice>, sqlx::Error> {
    let size = i64::from(windows.size);
    let namespace = match size > 0 {
        true => windows.cache.namespace(|| store::cache_namespace(db)).await,
        false => None,
    };
    let Some(namespace) = namespace else {
        return plain(db, scope, since, limit, collections).await;
    };
    let starts = candidate_starts(windows.hint(scope), since, limit, size);
    if starts.is_empty() {
        let slice = store::changes::read(db, scope, since, limit, collections).await?;
        if let Some(s) = &slice {
            windows.set_hint(scope, s.head, s.floor);
        }
        return Ok(slice.map(Slice::from));
    }

    let cache_keys: Vec<String> = starts
        .iter()
        .map(|start| keys::window(namespace, scope, windows.size, (start - 1) / size))
        .collect();
    let cached: Vec<Option<Arc<Window>>> = windows
        .cache
        .get_many(CacheKind::Window, &cache_keys, |key, bytes: &Bytes| {
            let start = starts[cache_keys.iter().position(|k| k == key)?];
            decode(bytes, start, size).map(|w| CacheValue::Decoded(Arc::new(w)))
        })
        .await
        .into_iter()
        .map(|v| v.and_then(CacheValue::into_decoded::<Window>))
        .collect();

    // Assume every cached window is usable; if one is not, the check below notices and reads plainly.
    let cached_matches: i64 = cached
        .iter()
        .flatten()
        .map(|w| {
            (w.first_after(since)..w.len())
                .filter(|&i| wanted(w.collection(i), collections))
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
    let Some(slice) = store::windows::read(
        db,
        scope,
        WindowedRead {
            since,
            limit,
            after_limit,
            collections,
            size,
            candidates: &candidates,
        },
    )
    .await?
    else {
        return Ok(None);
    };
    windows.set_hint(scope, slice.head, slice.floor);
    if slice.anomaly {
        tracing::warn!(%scope, "a closed window lacks its last change; reading the feed without windows");
        return plain(db, scope, since, limit, collections).await;
    }

    let by_start: HashMap<i64, &Arc<Window>> = starts
        .iter()
        .zip(&cached)
        .filter_map(|(&start, w)| Some((start, w.as_ref()?)))
        .collect();
    let mut fetched = group_by_window(slice.fetched, size);
    let mut changes = Changes::rows(slice.before);
    for (start, end_tag) in slice.covered {
        let usable = by_start.get(&start).filter(|w| w.end_tag() == end_tag);
        let window: Arc<Window> = match usable {
            Some(w) => Arc::clone(w),
            None => match Window::from_rows(start, size, fetched.remove(&start).unwrap_or_default()) {
                Ok(window) => {
                    let window = Arc::new(window);
                    let key = keys::window(namespace, scope, windows.size, (start - 1) / size);
                    windows.cache.put(
                        CacheKind::Window,
                        &key,
                        CacheValue::Decoded(window.clone()),
                        &encode(&window),
                    );
                    window
                }
                Err(_) => {
                    // Same snapshot, so the rows are right, but they are not a whole window: serve, never cache.
                    tracing::warn!(%scope, start, "a closed window is not dense; reading the feed without windows");
                    return plain(db, scope, since, limit, collections).await;
                }
            },
        };
        take_from(&window, since, collections, usize::MAX, &mut changes);
    }
    let after_may_be_cut = slice.after.len() as i64 >= after_limit;
    changes.push_rows(slice.after);
    if (changes.len() as i64) < limit && after_may_be_cut {
        // The rest was limited assuming cached windows that turned out unusable: the page may be short.
        return plain(db, scope, since, limit, collections).await;
    }
    changes.truncate(limit.max(0) as usize);
    Ok(Some(Slice {
        head: slice.head,
        floor: slice.floor,
        since_tag: slice.since_tag,
        head_tag: slice.head_tag,
        changes,
    }))
}

/// A plain read of PostgreSQL, without windows.
async fn plain(
    db: &PgPool,
    scope: &ScopeId,
    since: i64,
    limit: i64,
    collections: Option<&[String]>,
) -> Result<Option<Slice>, sqlx::Error> {
    Ok(store::changes::read(db, scope, since, limit, collections)
        .await?
        .map(Slice::from))
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

fn wanted(collection: &str, collections: Option<&[String]>) -> bool {
    collections.is_none_or(|names| names.iter().any(|n| n == collection))
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
pub async fn warm(windows: &WindowCache, db: &PgPool, scope: &ScopeId, count: i64) -> Result<usize, sqlx::Error> {
    let size = i64::from(windows.size);
    let Some(namespace) = (if size > 0 {
        windows.cache.namespace(|| store::cache_namespace(db)).await
    } else {
        None
    }) else {
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
    let asked = WindowedRead {
        since: head,
        limit: 0,
        after_limit: 0,
        collections: None,
        size,
        candidates: &candidates,
    };
    let Some(slice) = store::windows::read(db, scope, asked).await? else {
        return Ok(0);
    };
    let mut fetched = group_by_window(slice.fetched, size);
    let mut stored = 0;
    for (start, _) in slice.covered {
        if let Ok(window) = Window::from_rows(start, size, fetched.remove(&start).unwrap_or_default()) {
            let key = keys::window(namespace, scope, windows.size, (start - 1) / size);
            let encoded = encode(&window);
            if windows
                .cache
                .put_and_wait(CacheKind::Window, &key, CacheValue::Decoded(Arc::new(window)), &encoded)
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
        assert_eq!(back.len(), 4);
        assert_eq!(back.end_tag(), 8 * 7);
        assert_eq!(back.json(0..4), window.json(0..4));
        for i in 0..4 {
            assert_eq!(back.change(i), window.change(i));
        }
        assert_eq!(window.change(1).data, Some(r#"{"id":"p6","n":6}"#));
        assert_eq!(window.change(1).key, "p6");
        assert_eq!(window.change(1).version, 6);
        assert!(decode(&bytes, 9, 4).is_none(), "another window's key");
        assert!(decode(&bytes, 5, 8).is_none(), "another window size");
        assert!(decode(b"{\"start\":5,\"changes\":[]}", 5, 4).is_none(), "incomplete");
        assert!(decode(b"\xff\x00garbage", 5, 4).is_none());
        assert!(Window::from_rows(5, 4, vec![change(5), change(6), change(8), change(9)]).is_err());
        let mut quoted = change(8);
        quoted.key = "p\"8".into();
        assert!(
            Window::from_rows(5, 4, vec![change(5), change(6), change(7), quoted]).is_err(),
            "a key JSON must escape is never held in a window"
        );
    }
}
