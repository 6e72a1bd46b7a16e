//! A feed page's changes as runs from where they are held, and the page's bytes on the wire.
//!
//! Why runs: a window keeps its changes already rendered as the page's JSON (`windows::Window`), so a page of
//! windows is written from byte ranges of them, shared with the response rather than copied or serialised again
//! ([`FeedPage::json_parts`]). Rows read from PostgreSQL for one page are rendered by the
//! same function, [`render_change`], so the bytes are the same wherever a change came from; `tests` below holds
//! the writer to what serde writes for [`crate::wire::ChangesPageOut`].

use crate::feed::windows::Window;
use crate::{
    error::{Error, Result},
    store::changes::{FeedSlice, LoggedChange},
    wire::{Change, ChangeOp, ChangeOut, ChangesPage},
};
use bytes::Bytes;
use std::{ops::Range, sync::Arc};

/// One change, wherever it is held; `data` is the row's JSON text (`None`: a delete).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeRef<'a> {
    pub version: i64,
    pub collection: &'a str,
    pub key: &'a str,
    pub data: Option<&'a str>,
    pub tag: i64,
}

impl ChangeRef<'_> {
    pub fn op(&self) -> ChangeOp {
        if self.data.is_some() {
            ChangeOp::Upsert
        } else {
            ChangeOp::Delete
        }
    }
}

impl<'a> From<&'a LoggedChange> for ChangeRef<'a> {
    fn from(c: &'a LoggedChange) -> Self {
        ChangeRef {
            version: c.version,
            collection: &c.collection,
            key: &c.key,
            data: c.data.as_deref().map(|d| d.get()),
            tag: c.tag,
        }
    }
}

/// The version of [`render_change`]'s layout. Compressed ranges of windows are cached (in Redis too, across
/// deploys) as *rendered* bytes, and their keys name this version: bump it whenever the layout changes, so a
/// new server never sends an old layout (`rendering_is_pinned` below fails first).
pub const RENDERING: u32 = 1;

/// Appends one change as a page's JSON writes it (the one definition of that layout: [`ChangeOut`]).
pub fn render_change(out: &mut Vec<u8>, change: &LoggedChange) {
    let change = ChangeOut {
        version: change.version,
        collection: &change.collection,
        key: &change.key,
        op: ChangeRef::from(change).op(),
        data: change.data.as_deref(),
    };
    // Writing to a Vec cannot fail, and these fields (integers, strings, valid JSON text) always serialize.
    let _ = serde_json::to_writer(out, &change);
}

/// A run of consecutive changes of a page (consecutive in the page, not necessarily in versions).
#[derive(Debug, Clone)]
enum Run {
    /// Rows read from PostgreSQL.
    Rows(Vec<LoggedChange>),
    /// Changes `from..to` (positions) of a closed window.
    Window {
        window: Arc<Window>,
        from: usize,
        to: usize,
    },
}

impl Run {
    fn len(&self) -> usize {
        match self {
            Run::Rows(rows) => rows.len(),
            Run::Window { from, to, .. } => to - from,
        }
    }

    fn get(&self, i: usize) -> ChangeRef<'_> {
        match self {
            Run::Rows(rows) => (&rows[i]).into(),
            Run::Window { window, from, .. } => window.change(from + i),
        }
    }
}

/// The changes of a page, in order, as runs of rows and window ranges.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    runs: Vec<Run>,
}

impl Changes {
    pub fn rows(rows: Vec<LoggedChange>) -> Self {
        let mut changes = Changes::default();
        changes.push_rows(rows);
        changes
    }

    pub fn push_rows(&mut self, rows: Vec<LoggedChange>) {
        if rows.is_empty() {
            return;
        }
        match self.runs.last_mut() {
            Some(Run::Rows(last)) => last.extend(rows),
            _ => self.runs.push(Run::Rows(rows)),
        }
    }

    /// Appends changes `from..to` of `window`, joining a run that ends where this one starts.
    pub fn push_window(&mut self, window: &Arc<Window>, from: usize, to: usize) {
        if from >= to {
            return;
        }
        if let Some(Run::Window {
            window: last, to: end, ..
        }) = self.runs.last_mut()
        {
            if Arc::ptr_eq(last, window) && *end == from {
                *end = to;
                return;
            }
        }
        self.runs.push(Run::Window {
            window: Arc::clone(window),
            from,
            to,
        });
    }

    pub fn len(&self) -> usize {
        self.runs.iter().map(Run::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.runs.iter().all(|r| r.len() == 0)
    }

    /// Keeps the first `n` changes.
    pub fn truncate(&mut self, n: usize) {
        let mut left = n;
        self.runs.retain_mut(|run| {
            let len = run.len();
            if left == 0 {
                return false;
            }
            if len > left {
                match run {
                    Run::Rows(rows) => rows.truncate(left),
                    Run::Window { from, to, .. } => *to = *from + left,
                }
            }
            left -= len.min(left);
            true
        });
    }

    /// A copy of the first `n` changes: window ranges are shared, rows are copied.
    pub fn first(&self, n: usize) -> Changes {
        let mut copy = Changes::default();
        let mut left = n;
        for run in &self.runs {
            if left == 0 {
                break;
            }
            let take = run.len().min(left);
            match run {
                Run::Rows(rows) => copy.push_rows(rows[..take].to_vec()),
                Run::Window { window, from, .. } => copy.push_window(window, *from, from + take),
            }
            left -= take;
        }
        copy
    }

    pub fn last(&self) -> Option<ChangeRef<'_>> {
        let run = self.runs.iter().rev().find(|r| r.len() > 0)?;
        Some(run.get(run.len() - 1))
    }

    pub fn iter(&self) -> impl Iterator<Item = ChangeRef<'_>> {
        self.runs.iter().flat_map(|run| (0..run.len()).map(move |i| run.get(i)))
    }

    /// Writes the changes as the elements of a JSON array (without the brackets) into `out`: rows rendered,
    /// window ranges shared.
    fn write_json(&self, out: &mut Parts) {
        let mut first = true;
        for run in &self.runs {
            match run {
                Run::Rows(rows) => {
                    for row in rows {
                        if !std::mem::take(&mut first) {
                            out.text.push(b',');
                        }
                        render_change(&mut out.text, row);
                    }
                }
                Run::Window { window, from, to } => {
                    if !std::mem::take(&mut first) {
                        out.text.push(b',');
                    }
                    out.share(WindowJson {
                        window: Arc::clone(window),
                        positions: *from..*to,
                    });
                }
            }
        }
    }

    /// Bytes the page renders itself (rows, punctuation), for the first buffer's capacity.
    fn rendered_len_estimate(&self) -> usize {
        self.runs
            .iter()
            .map(|run| match run {
                Run::Rows(rows) => rows.len() * 256,
                Run::Window { .. } => 1,
            })
            .sum()
    }
}

/// The JSON of a range of a window's changes, as an owner `Bytes` can borrow from: the window stays alive
/// (and its bytes in place) as long as a response still holds them.
#[derive(Debug, Clone)]
pub struct WindowJson {
    pub window: Arc<Window>,
    pub positions: Range<usize>,
}

impl AsRef<[u8]> for WindowJson {
    fn as_ref(&self) -> &[u8] {
        self.window.json(self.positions.clone())
    }
}

/// A piece of a page's JSON: text the page rendered, or a range of a closed window shared as it is.
#[derive(Debug, Clone)]
pub enum Segment {
    Text(Bytes),
    Window(WindowJson),
}

impl Segment {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Segment::Text(text) => text,
            Segment::Window(json) => json.as_ref(),
        }
    }
}

/// The buffers of `segments`, window ranges shared, not copied.
pub fn into_parts(segments: Vec<Segment>) -> Vec<Bytes> {
    segments
        .into_iter()
        .map(|segment| match segment {
            Segment::Text(text) => text,
            Segment::Window(json) => Bytes::from_owner(json),
        })
        .collect()
}

/// A page's bytes as the pieces it is written from: text the page rendered, and ranges of windows shared as
/// they are.
struct Parts {
    done: Vec<Segment>,
    text: Vec<u8>,
}

impl Parts {
    fn share(&mut self, json: WindowJson) {
        if !self.text.is_empty() {
            self.done
                .push(Segment::Text(Bytes::from(std::mem::take(&mut self.text))));
        }
        if !json.as_ref().is_empty() {
            self.done.push(Segment::Window(json));
        }
    }

    fn finish(mut self) -> Vec<Segment> {
        if !self.text.is_empty() {
            self.done.push(Segment::Text(Bytes::from(self.text)));
        }
        self.done
    }
}

/// What one read of the feed found: the bounds at its snapshot and the changes after `since`.
#[derive(Debug, Clone)]
pub struct Slice {
    pub head: i64,
    pub floor: i64,
    /// Tag of the change at the requested `since` version, if that change exists.
    pub since_tag: Option<i64>,
    /// Tag of the change at `head`, if any.
    pub head_tag: Option<i64>,
    pub changes: Changes,
}

impl From<FeedSlice> for Slice {
    fn from(s: FeedSlice) -> Self {
        Slice {
            head: s.head,
            floor: s.floor,
            since_tag: s.since_tag,
            head_tag: s.head_tag,
            changes: Changes::rows(s.changes),
        }
    }
}

/// A page of the feed as the server answers it.
#[derive(Debug)]
pub struct FeedPage {
    pub changes: Changes,
    pub cursor: String,
    pub has_more: bool,
    pub head: i64,
}

impl FeedPage {
    /// The JSON body, byte for byte what serde writes for [`crate::wire::ChangesPageOut`]: row data is copied
    /// through as stored, never parsed. Written as several buffers: the changes of closed windows are not
    /// copied into the response but shared with the window they are held in (a unit test below checks the
    /// sharing).
    pub fn json_parts(&self) -> Vec<Bytes> {
        into_parts(self.json_segments())
    }

    /// The JSON body as [`FeedPage::json_parts`] writes it, each piece saying where it comes from (for
    /// compressed pages: `coded`).
    pub fn json_segments(&self) -> Vec<Segment> {
        let mut out = Parts {
            done: Vec::new(),
            text: Vec::with_capacity(self.changes.rendered_len_estimate() + 128),
        };
        out.text.extend_from_slice(b"{\"changes\":[");
        self.changes.write_json(&mut out);
        out.text.extend_from_slice(b"],\"cursor\":");
        let _ = serde_json::to_writer(&mut out.text, &self.cursor);
        out.text.extend_from_slice(if self.has_more {
            b",\"has_more\":true,\"head\":"
        } else {
            b",\"has_more\":false,\"head\":"
        });
        out.text.extend_from_slice(self.head.to_string().as_bytes());
        out.text.push(b'}');
        out.finish()
    }

    /// The page with row data parsed, for encodings other than JSON.
    pub fn to_wire(&self) -> Result<ChangesPage> {
        let changes = self
            .changes
            .iter()
            .map(|c| {
                let data = match c.data {
                    Some(raw) => Some(serde_json::from_str(raw).map_err(|e| Error::Internal(e.into()))?),
                    None => None,
                };
                Ok(Change {
                    version: c.version,
                    collection: c.collection.to_string(),
                    key: c.key.to_string(),
                    op: c.op(),
                    data,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ChangesPage {
            changes,
            cursor: self.cursor.clone(),
            has_more: self.has_more,
            head: self.head,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ChangesPageOut;
    use serde_json::value::RawValue;

    fn change(version: i64) -> LoggedChange {
        LoggedChange {
            version,
            collection: if version % 3 == 0 { "sales" } else { "products" }.into(),
            // Windows only hold keys that need no escaping; rows past 16 (never in a window here) test escaping.
            key: if version > 16 {
                format!("k\"{version}\u{e9}")
            } else {
                format!("k{version}\u{e9}")
            },
            data: (version % 5 != 0)
                .then(|| RawValue::from_string(format!(r#"{{"id":"k{version}","n":{version},"s":"a\"b"}}"#)).unwrap()),
            tag: version * 7,
        }
    }

    /// What serde writes for the page: the definition the hand-written writer must match.
    fn serde_bytes(rows: &[LoggedChange], cursor: &str, has_more: bool, head: i64) -> Vec<u8> {
        let page = ChangesPageOut {
            changes: rows
                .iter()
                .map(|c| ChangeOut {
                    version: c.version,
                    collection: &c.collection,
                    key: &c.key,
                    op: if c.data.is_some() {
                        ChangeOp::Upsert
                    } else {
                        ChangeOp::Delete
                    },
                    data: c.data.as_deref(),
                })
                .collect(),
            cursor,
            has_more,
            head,
        };
        serde_json::to_vec(&page).unwrap()
    }

    fn window(start: i64, size: i64) -> Arc<Window> {
        Arc::new(Window::from_rows(start, size, (start..start + size).map(change).collect()).unwrap())
    }

    #[test]
    fn rendering_is_pinned() {
        let mut out = Vec::new();
        render_change(&mut out, &change(4));
        render_change(&mut out, &change(5));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"version":4,"collection":"products","key":"k4é","op":"upsert","data":{"id":"k4","n":4,"s":"a\"b"}}{"version":5,"collection":"products","key":"k5é","op":"delete"}"#,
            "the layout of a change changed: bump RENDERING (cached compressed ranges hold rendered bytes)"
        );
    }

    #[test]
    fn pages_of_rows_windows_and_both_write_what_serde_writes() {
        let (w1, w2) = (window(1, 8), window(9, 8));
        let all: Vec<LoggedChange> = (1..=20).map(change).collect();
        // (description, changes, the rows they stand for)
        let mut cases: Vec<(&str, Changes, Vec<LoggedChange>)> = vec![
            ("empty", Changes::default(), vec![]),
            ("rows", Changes::rows(all[..5].to_vec()), all[..5].to_vec()),
        ];
        let mut windows_only = Changes::default();
        windows_only.push_window(&w1, 2, 8);
        windows_only.push_window(&w2, 0, 3);
        cases.push(("two windows", windows_only, all[2..11].to_vec()));
        let mut mixed = Changes::rows(all[..1].to_vec());
        mixed.push_window(&w1, 1, 4);
        mixed.push_window(&w1, 5, 6); // a filtered gap: position 4 left out
        mixed.push_rows(all[16..18].to_vec());
        let expected: Vec<LoggedChange> = [&all[0..4], &all[5..6], &all[16..18]].concat();
        cases.push(("mixed with a gap", mixed, expected));
        for (label, changes, rows) in cases {
            for (has_more, head) in [(false, 0), (true, 1234567890123)] {
                let cursor = "12.abc\"";
                let page = FeedPage {
                    changes: changes.clone(),
                    cursor: cursor.into(),
                    has_more,
                    head,
                };
                assert_eq!(
                    String::from_utf8(page.json_parts().concat()).unwrap(),
                    String::from_utf8(serde_bytes(&rows, cursor, has_more, head)).unwrap(),
                    "{label}"
                );
                let seen: Vec<ChangeRef> = page.changes.iter().collect();
                let want: Vec<ChangeRef> = rows.iter().map(ChangeRef::from).collect();
                assert_eq!(seen, want, "{label}");
                assert_eq!(page.changes.len(), rows.len(), "{label}");
                assert_eq!(page.changes.last(), rows.last().map(ChangeRef::from), "{label}");
            }
        }
    }

    #[test]
    fn window_ranges_are_shared_with_the_window_not_copied() {
        let (w1, w2) = (window(1, 8), window(9, 8));
        let all: Vec<LoggedChange> = (1..=20).map(change).collect();
        let mut changes = Changes::rows(all[..1].to_vec());
        changes.push_window(&w1, 1, 8);
        changes.push_window(&w2, 0, 4);
        changes.push_rows(all[16..18].to_vec());
        let page = FeedPage {
            changes,
            cursor: "18".into(),
            has_more: true,
            head: 20,
        };
        let parts = page.json_parts();
        for (window, positions) in [(&w1, 1..8), (&w2, 0..4)] {
            let held = window.json(positions);
            assert!(
                parts
                    .iter()
                    .any(|p| p.as_ptr() == held.as_ptr() && p.len() == held.len()),
                "a window range was copied"
            );
        }
        assert_eq!(parts.len(), 5, "text, window, comma, window, rows and the rest");
    }

    #[test]
    fn truncate_and_first_cut_across_runs() {
        let w = window(1, 8);
        let all: Vec<LoggedChange> = (1..=12).map(change).collect();
        let mut changes = Changes::rows(all[..2].to_vec());
        changes.push_window(&w, 2, 8);
        changes.push_rows(all[8..12].to_vec());
        for n in 0..=13 {
            let want: Vec<ChangeRef> = all.iter().take(n).map(ChangeRef::from).collect();
            let first = changes.first(n);
            assert_eq!(first.iter().collect::<Vec<_>>(), want, "first({n})");
            let mut cut = changes.clone();
            cut.truncate(n);
            assert_eq!(cut.iter().collect::<Vec<_>>(), want, "truncate({n})");
            assert_eq!(cut.is_empty(), n == 0);
        }
    }
}
