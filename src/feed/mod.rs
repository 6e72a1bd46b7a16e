//! The versioned change feed of a scope.
//!
//! Mechanism (see `store::changes` for the proof sketch): a per-scope version counter incremented under the
//! scope row's lock inside each writing transaction. Chosen over an `(xid8, seq)` snapshot cursor because it
//! gives dense versions (a client can count what it missed, and checksums are defined per version), it needs no
//! epoch to survive dump/restore, and a long transaction in another scope never stalls this scope's readers.
//! Its cost, serialising the writers of one scope, is invisible at the load of one business's devices; the
//! benchmark measures it.
//!
//! A pull reads `version > since` in version order from one snapshot, so it can neither miss nor repeat a
//! committed change. A cursor the server cannot honour answers `reset_required` (410), never an empty page.

pub mod coded;
pub mod cursor;
pub mod heads;
pub mod hub;
pub mod longpoll;
pub mod page;
pub mod windows;

use crate::error::ErrorCode;
use crate::{
    cache::{keys, memory::Value as CacheValue, stats::CacheKind},
    concurrency::single_flight::SingleFlight,
    config::Limits,
    domain::{collections, Coding, ScopeId},
    error::{Error, ResetReason, Result},
    metrics::StaticCounter,
    store,
    wire::{ChecksumReport, CollectionChecksum},
};
use bytes::Bytes;
use coded::{Effort, Member};
use cursor::Cursor;
use hub::{FeedHub, SharedRead};
use longpoll::{LongPolls, Parked, WaitSlot, Waited};
use page::{Changes, FeedPage, Segment, Slice, WindowJson};
use sqlx::PgPool;
use std::{sync::Arc, time::Duration};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use windows::WindowCache;

/// A validated pull request.
#[derive(Debug, Clone)]
pub struct Pull {
    pub since: Cursor,
    pub limit: u32,
    pub collections: Option<Vec<String>>,
    pub wait: Duration,
}

impl Pull {
    /// Validates the raw query: malformed values are 400s, oversized `limit` and `wait` are clamped.
    pub fn from_query(
        since: Option<&str>,
        limit: Option<u32>,
        wait: Option<u32>,
        collections: Option<&str>,
        limits: &Limits,
    ) -> Result<Self> {
        let since = match since {
            None => Cursor::START,
            Some(raw) => Cursor::parse(raw).ok_or_else(|| {
                Error::bad_request(ErrorCode::InvalidCursor, "`since` is not a cursor this server issues")
            })?,
        };
        let limit = limit.unwrap_or(limits.default_page_size).clamp(1, limits.max_page_size);
        let wait = Duration::from_secs(wait.unwrap_or(0).into()).min(limits.max_wait);
        let collections = match collections {
            None => None,
            Some(list) => {
                let names: Vec<String> = list
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                if let Some(unknown) = names.iter().find(|n| collections::find(n).is_none()) {
                    return Err(Error::bad_request(
                        ErrorCode::UnknownCollection,
                        format!("unknown collection `{unknown}`"),
                    ));
                }
                (!names.is_empty()).then_some(names)
            }
        };
        Ok(Pull {
            since,
            limit,
            collections,
            wait,
        })
    }
}

/// Who waits, for the long-poll bounds (see `longpoll`).
pub struct Waiter<'a> {
    pub polls: &'a Arc<LongPolls>,
    pub device: Uuid,
    /// Called once, when the pull parks: the request gives back its ordinary admission permit, so parked
    /// long-polls never crowd out other requests (`DUKASYNC_MAX_IN_FLIGHT`).
    pub on_park: &'a (dyn Fn() + Send + Sync),
    /// Told how the wait ended, if the pull parked.
    pub waited: &'a WaitSlot,
}

/// The change feed as the HTTP layer asks it: one value in the state, one method per question.
pub struct Feed {
    db: PgPool,
    windows: WindowCache,
    hub: Arc<FeedHub>,
    /// Cancelled when shutdown begins: long-polls answer at once.
    shutdown: CancellationToken,
    /// `reset_required` answers by reason (see [`Feed::reset`]).
    resets: StaticCounter<1>,
    /// Compressions of closed windows' ranges, by coding: one per range and coding while it stays cached.
    compressions: StaticCounter<1>,
    /// One compression of a window range at a time, shared by the requests that need it.
    compressing: SingleFlight<String, Member>,
}

impl Feed {
    pub fn new(db: PgPool, windows: WindowCache, hub: Arc<FeedHub>, shutdown: CancellationToken) -> Self {
        Feed {
            db,
            windows,
            hub,
            shutdown,
            resets: StaticCounter::new(["reason"], &ResetReason::ALL.map(|r| [r.as_str()])),
            compressions: StaticCounter::new(["coding"], &Coding::COMPRESSED.map(|c| [c.token().unwrap_or("")])),
            compressing: SingleFlight::default(),
        }
    }

    /// The cache of closed windows (also warmed by `dukasync cache warm`).
    pub fn windows(&self) -> &WindowCache {
        &self.windows
    }

    /// Answers a pull; with `wait`, holds the request until a change commits in the scope (on any instance) or the
    /// wait runs out. Returns early with what it has when `shutdown` fires, when `waiter` finds no place to wait,
    /// or when a newer long-poll of the same device and scope replaces it. Closed windows may come from `cache`
    /// (see `windows`); the answer is the same as without it.
    pub async fn pull(&self, scope: &ScopeId, pull: &Pull, waiter: &Waiter<'_>) -> Result<FeedPage> {
        crate::failpoint::panic_if(crate::failpoint::PULL_PANIC);
        let mut parked: Option<Parked> = None;
        let answer = self.answer(scope, pull, waiter, &mut parked).await;
        if parked.is_some() {
            waiter.waited.set(match &answer {
                Ok((_, waited)) => *waited,
                Err(_) => Waited::Failed,
            });
        }
        answer.map(|(page, _)| page)
    }

    /// [`Feed::pull`]'s page, and how its wait ended (meaningful only if it parked in `parked`).
    async fn answer(
        &self,
        scope: &ScopeId,
        pull: &Pull,
        waiter: &Waiter<'_>,
        parked: &mut Option<Parked>,
    ) -> Result<(FeedPage, Waited)> {
        let deadline = Instant::now() + pull.wait;
        // Subscribe before reading, so a commit between the read and the wait still wakes us.
        let mut wake = self.hub.subscribe(scope);
        loop {
            wake.borrow_and_update();
            let slice = self.read(scope, pull).await?;
            self.check_cursor(&pull.since, &slice)?;
            if !slice.changes.is_empty() {
                return Ok((page(slice, pull.limit), Waited::Change));
            }
            if self.shutdown.is_cancelled() {
                return Ok((page(slice, pull.limit), Waited::Ended));
            }
            if Instant::now() >= deadline {
                return Ok((page(slice, pull.limit), Waited::Timeout));
            }
            let ended = match parked {
                Some(place) => place.ended.clone(),
                None => match waiter.polls.park(waiter.device, scope) {
                    Some(place) => {
                        (waiter.on_park)();
                        parked.insert(place).ended.clone()
                    }
                    // No place to wait: a page without waiting is a correct answer (protocol §7.5).
                    None => return Ok((page(slice, pull.limit), Waited::Ended)),
                },
            };
            tokio::select! {
                changed = wake.changed() => {
                    if changed.is_err() {
                        // The hub dropped the channel (cannot happen while we hold a receiver); answer now.
                        return Ok((page(slice, pull.limit), Waited::Ended));
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return Ok((page(slice, pull.limit), Waited::Timeout)),
                _ = self.shutdown.cancelled() => return Ok((page(slice, pull.limit), Waited::Ended)),
                _ = ended.cancelled() => return Ok((page(slice, pull.limit), Waited::Ended)),
            }
        }
    }

    /// One read of the feed for `pull`, equal to a plain read (`store::changes::read`) at a snapshot taken after
    /// this call began. Cheapest first:
    /// 1. every change of the page is in closed windows held in this process's memory: only the head is asked
    ///    for, and that question is shared with concurrent pulls of the scope (`heads`);
    /// 2. the (shared) head says nothing is newer than `since`: the page is empty;
    /// 3. otherwise a read of PostgreSQL (with cached windows), shared by concurrent pulls asking exactly the same
    ///    after seeing the same head: 1,000 long-polls woken by one commit make one read, not 1,000.
    async fn read(&self, scope: &ScopeId, pull: &Pull) -> Result<Arc<Slice>> {
        let since = pull.since.version;
        let limit = i64::from(pull.limit) + 1;
        let collections = pull.collections.as_deref();
        let in_memory = windows::from_memory(&self.windows, scope, since, limit, collections);
        let head = self.hub.heads.read(&self.db, scope).await?;
        let head = match head {
            Some(Some(head)) => head,
            Some(None) => return Err(Error::NotFound("scope")),
            // PostgreSQL did not answer the head: the plain read reports why.
            None => {
                let slice = windows::read(&self.windows, &self.db, scope, since, limit, collections).await?;
                return slice.map(Arc::new).ok_or(Error::NotFound("scope"));
            }
        };
        // Below the floor a plain read returns the compacted log, which memory does not hold.
        if since >= head.floor && since <= head.version {
            if let Some(memory) = in_memory {
                return Ok(Arc::new(Slice {
                    head: head.version,
                    floor: head.floor,
                    since_tag: memory.since_tag,
                    head_tag: head.tag,
                    changes: memory.changes,
                }));
            }
            if since == head.version {
                // The change at the head is never compacted (it is at or above the floor): its tag is `since`'s.
                return Ok(Arc::new(Slice {
                    head: head.version,
                    floor: head.floor,
                    since_tag: head.tag,
                    head_tag: head.tag,
                    changes: Changes::default(),
                }));
            }
        }
        let key = SharedRead {
            scope: scope.clone(),
            since,
            limit,
            collections: pull.collections.clone(),
            seen_head: head.version,
        };
        self.hub
            .shared_reads
            .run(key, || async {
                windows::read(&self.windows, &self.db, scope, since, limit, collections)
                    .await?
                    .ok_or(Error::NotFound("scope"))
            })
            .await
    }

    /// `reset_required` for `since` if the slice cannot honour it.
    fn check_cursor(&self, since: &Cursor, slice: &Slice) -> Result<()> {
        match reset_reason(since, slice) {
            Some(reason) => Err(self.reset(reason, slice.head)),
            None => Ok(()),
        }
    }

    /// The `reset_required` answer (410), counted by reason: every one the feed gives is made here.
    fn reset(&self, reason: ResetReason, head: i64) -> Error {
        self.resets.add([reason.as_str()], 1);
        Error::ResetRequired { reason, head }
    }

    /// `reset_required` answers given (pulls and checksums), by reason, for `/metrics`.
    pub fn resets(&self) -> &StaticCounter<1> {
        &self.resets
    }

    /// Compressions of closed windows' ranges, by coding, for `/metrics`.
    pub fn compressions(&self) -> &StaticCounter<1> {
        &self.compressions
    }

    /// `page`'s JSON body in `coding`, and the coding it is in: identity when `coding` is, or when the body is
    /// shorter than [`coded::MIN_COMPRESSED_BYTES`]. Decoded, it is byte for byte [`FeedPage::json_parts`].
    /// Ranges of closed windows of at least [`coded::MIN_MEMBER_BYTES`] are compressed once per coding and
    /// kept in the cache next to their window (memory, then Redis, all looked up at once); the rest of the page
    /// (its own text, the open tail, short ranges) is compressed per request at a fast level.
    pub async fn encode_json(&self, scope: &ScopeId, page: &FeedPage, coding: Coding) -> Result<(Vec<Bytes>, Coding)> {
        let segments = page.json_segments();
        let total: usize = segments.iter().map(|s| s.bytes().len()).sum();
        if coding == Coding::Identity || total < coded::MIN_COMPRESSED_BYTES {
            return Ok((page::into_parts(segments), Coding::Identity));
        }
        let namespace = self.windows.cache.namespace_known();
        // The page as pieces: text compressed here, and ranges of closed windows with their cache keys.
        let mut pieces: Vec<Piece> = Vec::with_capacity(segments.len());
        for segment in segments {
            match (segment, namespace) {
                (Segment::Window(json), Some(ns)) if json.as_ref().len() >= coded::MIN_MEMBER_BYTES => {
                    let key = self.member_key(ns, scope, &json, coding);
                    pieces.push(Piece::Range(key, json));
                }
                (other, _) => match pieces.last_mut() {
                    Some(Piece::Text(text)) => text.extend_from_slice(other.bytes()),
                    _ => pieces.push(Piece::Text(other.bytes().to_vec())),
                },
            }
        }
        let keys: Vec<String> = pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Range(key, _) => Some(key.clone()),
                Piece::Text(_) => None,
            })
            .collect();
        let mut cached = self
            .windows
            .cache
            .get_many(CacheKind::WindowMember, &keys, |_, bytes| {
                Member::from_stored(bytes).map(|_| CacheValue::Bytes(bytes.clone()))
            })
            .await
            .into_iter()
            .map(|value| value.and_then(stored_member));
        let mut members = Vec::with_capacity(pieces.len());
        for piece in pieces {
            members.push(match piece {
                Piece::Text(text) => per_request(text, coding).await?,
                Piece::Range(key, json) => match cached.next().flatten() {
                    Some(member) => member,
                    None => self.compress_range(key, json, coding).await?,
                },
            });
        }
        Ok((coded::join(coding, &members).map_err(internal)?, coding))
    }

    /// The cache key of a closed window's range in `coding`: it names the window's last tag, so it is only ever
    /// used for the window it was made from (after that window was checked, see `windows`).
    fn member_key(&self, ns: &str, scope: &ScopeId, json: &WindowJson, coding: Coding) -> String {
        let window = &json.window;
        let size = self.windows.size;
        let index = (window.start - 1) / i64::from(size.max(1));
        keys::window_member(
            ns,
            scope,
            (size, index, window.end_tag()),
            json.positions.clone(),
            page::RENDERING,
            coding.token().unwrap_or(""),
        )
    }

    /// Compresses a closed window's range once for all the requests that want it at the same time, and keeps
    /// it in the cache.
    async fn compress_range(&self, key: String, json: WindowJson, coding: Coding) -> Result<Member> {
        let cache = &self.windows.cache;
        let member = self
            .compressing
            .run(key.clone(), || async {
                // A request that compressed it just before this one asked has left it in memory.
                if let Some(member) = cache.peek_local(&key).and_then(stored_member) {
                    return Ok(member);
                }
                let member = tokio::task::spawn_blocking(move || coded::member(json.as_ref(), coding, Effort::Once))
                    .await
                    .map_err(internal)?
                    .map_err(internal)?;
                self.compressions.add([coding.token().unwrap_or("")], 1);
                let bytes = member.to_stored();
                cache.put(CacheKind::WindowMember, &key, CacheValue::Bytes(bytes.clone()), &bytes);
                Ok::<_, Error>(member)
            })
            .await?;
        Ok((*member).clone())
    }

    /// The scope's checksum at `version` (default: head). Versions outside the retained history answer
    /// `reset_required`, like cursors.
    pub async fn checksum(&self, scope: &ScopeId, version: Option<i64>) -> Result<ChecksumReport> {
        let db = &self.db;
        let (head, floor) = store::changes::bounds(db, scope)
            .await?
            .ok_or(Error::NotFound("scope"))?;
        let version = version.unwrap_or(head);
        if version < 0 {
            return Err(Error::bad_request(
                ErrorCode::InvalidVersion,
                "`version` must not be negative",
            ));
        }
        if version > head {
            return Err(self.reset(ResetReason::AheadOfHead, head));
        }
        if version < floor {
            return Err(self.reset(ResetReason::Expired, head));
        }
        let rows = store::changes::checksums_at(db, scope, version).await?;
        let collections: Vec<CollectionChecksum> = rows
            .into_iter()
            .filter(|(_, _, count)| *count > 0)
            .map(|(collection, checksum, count)| CollectionChecksum {
                collection,
                checksum,
                count,
            })
            .collect();
        Ok(ChecksumReport {
            version,
            checksum: collections.iter().fold(0u32, |sum, c| sum.wrapping_add(c.checksum)),
            count: collections.iter().map(|c| c.count).sum(),
            collections,
        })
    }
}

/// A piece of a page to compress: text of this request, or a closed window's range under its cache key.
enum Piece {
    Text(Vec<u8>),
    Range(String, WindowJson),
}

/// Above this many bytes, text is compressed on the blocking pool rather than on the request's worker.
const BLOCKING_COMPRESS_BYTES: usize = 64 * 1024;

/// A page's own text as a member, per request: stored when short (the envelope, separators), else compressed at
/// a fast level (`coded::per_request`).
async fn per_request(text: Vec<u8>, coding: Coding) -> Result<Member> {
    if text.len() <= BLOCKING_COMPRESS_BYTES {
        return coded::per_request(&text, coding).map_err(internal);
    }
    tokio::task::spawn_blocking(move || coded::member(&text, coding, Effort::PerRequest))
        .await
        .map_err(internal)?
        .map_err(internal)
}

/// A whole body (a MessagePack page) in `coding`, compressed per request, and the coding it is in: identity
/// when `coding` is, or below [`coded::MIN_COMPRESSED_BYTES`].
pub async fn encode_body(body: Vec<u8>, coding: Coding) -> Result<(Vec<Bytes>, Coding)> {
    if coding == Coding::Identity || body.len() < coded::MIN_COMPRESSED_BYTES {
        return Ok((vec![Bytes::from(body)], Coding::Identity));
    }
    let member = per_request(body, coding).await?;
    Ok((coded::join(coding, &[member]).map_err(internal)?, coding))
}

/// A member as the cache holds it.
fn stored_member(value: CacheValue) -> Option<Member> {
    value.into_bytes().and_then(|bytes| Member::from_stored(&bytes))
}

/// A failure that is the server's own (compression), never the client's.
fn internal(error: impl Into<anyhow::Error>) -> Error {
    Error::Internal(error.into())
}

/// Why `since` cannot be honoured against `slice`, if it cannot.
fn reset_reason(since: &Cursor, slice: &Slice) -> Option<ResetReason> {
    if since.version == 0 {
        return None;
    }
    // Below the floor, only a cursor issued under the current compaction is safe (see `cursor`).
    let issued_under_current_floor = since.floor == Some(slice.floor);
    if since.version > slice.head {
        Some(ResetReason::AheadOfHead)
    } else if since.version < slice.floor && !issued_under_current_floor {
        Some(ResetReason::Expired)
    } else if slice.since_tag.is_none() || (since.tag.is_some() && since.tag != slice.since_tag) {
        Some(ResetReason::UnknownHistory)
    } else {
        None
    }
}

/// The page of at most `limit` changes. A slice read for this pull alone is moved into the page; a shared one
/// (see `read`) is copied, window ranges by reference.
fn page(slice: Arc<Slice>, limit: u32) -> FeedPage {
    let limit = limit as usize;
    let has_more = slice.changes.len() > limit;
    let (head, floor, head_tag) = (slice.head, slice.floor, slice.head_tag);
    let mut changes = match Arc::try_unwrap(slice) {
        Ok(own) => own.changes,
        Err(shared) => shared.changes.first(limit),
    };
    changes.truncate(limit);
    // Without more to come, everything up to head was scanned (changes of other collections included).
    let cursor = match changes.last() {
        Some(last) if has_more => Cursor::issue(last.version, Some(last.tag), floor),
        _ => Cursor::issue(head, head_tag, floor),
    };
    FeedPage {
        changes,
        cursor: cursor.to_string(),
        has_more,
        head,
    }
}
