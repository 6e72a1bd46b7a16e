//! The feed read that uses cached windows: one statement, so one snapshot, like [`super::changes::read`].
//!
//! Windows are aligned ranges of `size` versions: window `k` holds versions `k·size + 1 ..= (k + 1)·size`. At a
//! given snapshot a window is *covered* (may be served from the cache) when it is closed (its last version is at
//! or below the head, so every version in it has committed: versions are dense and commit-ordered) and starts at
//! or above the floor (so compaction has removed nothing from it, and cannot while the floor stays where it is).
//! Such a window holds exactly `size` changes, which never change again.
//!
//! The caller passes consecutive candidate windows with the end tag of each one it found in the cache. The
//! statement answers, from one snapshot: head, floor and the tags a cursor check needs; which candidates are
//! covered and the tag of each one's last change (a cached window is used only when its end tag matches, so a
//! restored database with another history never uses it); the full rows of covered windows the cache lacks or
//! holds with another tag; and the changes before and after the covered range, filtered and limited like a
//! plain read. Covered windows are contiguous (the floor cuts candidates off at the front, the head at the
//! back), so "before" and "after" are two index range scans.

use super::changes::LoggedChange;
use crate::domain::ScopeId;
use sqlx::{PgExecutor, Row};

/// What a windowed read saw.
#[derive(Debug)]
pub struct WindowedSlice {
    pub head: i64,
    pub floor: i64,
    pub since_tag: Option<i64>,
    pub head_tag: Option<i64>,
    /// Covered candidates in order: (first version, tag of the last change).
    pub covered: Vec<(i64, i64)>,
    /// Every change of the covered windows whose cached copy was missing or carried another end tag.
    pub fetched: Vec<LoggedChange>,
    /// Changes after `since` and before the covered range, filtered, at most `limit`.
    pub before: Vec<LoggedChange>,
    /// Changes after the covered range (after `since` when nothing is covered), filtered, at most
    /// `after_limit`.
    pub after: Vec<LoggedChange>,
    /// A covered window without its last change: an invariant is broken, do not trust this read.
    pub anomaly: bool,
}

/// A candidate window: its first version and the end tag of the cached copy, if the cache had one.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub start: i64,
    pub cached_end_tag: Option<i64>,
}

/// What a windowed read asks: the changes after `since` (at most `limit`, then up to `after_limit` more past
/// the windows), of `collections` if given, with windows of `size` versions, checking `candidates`.
#[derive(Debug, Clone, Copy)]
pub struct WindowedRead<'a> {
    pub since: i64,
    pub limit: i64,
    pub after_limit: i64,
    pub collections: Option<&'a [String]>,
    pub size: i64,
    pub candidates: &'a [Candidate],
}

pub async fn read(
    db: impl PgExecutor<'_>,
    scope: &ScopeId,
    asked: WindowedRead<'_>,
) -> Result<Option<WindowedSlice>, sqlx::Error> {
    let WindowedRead {
        since,
        limit,
        after_limit,
        collections,
        size,
        candidates,
    } = asked;
    let starts: Vec<i64> = candidates.iter().map(|c| c.start).collect();
    let tags: Vec<Option<i64>> = candidates.iter().map(|c| c.cached_end_tag).collect();
    let rows = sqlx::query(
        r#"
        WITH sc AS (
            SELECT id, head_version, floor_version FROM scopes WHERE id = $1
        ),
        cand AS (
            SELECT u.a, u.cached_tag,
                   (SELECT tag FROM changes WHERE scope_id = $1 AND version = u.a + $6 - 1) AS end_tag
            FROM sc CROSS JOIN unnest($7::bigint[], $8::bigint[]) AS u(a, cached_tag)
            WHERE u.a >= sc.floor_version AND u.a + $6 - 1 <= sc.head_version
        ),
        cover AS (SELECT min(a) AS lo, max(a) + $6 - 1 AS hi FROM cand)
        SELECT 0 AS part, sc.head_version AS version, NULL::text AS collection, NULL::text AS key,
               NULL::jsonb AS data, sc.floor_version AS tag,
               (SELECT tag FROM changes WHERE scope_id = $1 AND version = $2) AS since_tag,
               (SELECT tag FROM changes WHERE scope_id = $1 AND version = sc.head_version) AS head_tag
        FROM sc
        UNION ALL
        SELECT 1, a, NULL, NULL, NULL, end_tag, NULL, NULL FROM cand
        UNION ALL
        (SELECT 2, version, collection, key, data, tag, NULL, NULL FROM changes
         WHERE scope_id = $1 AND version > $2 AND version < (SELECT lo FROM cover)
           AND ($4::text[] IS NULL OR collection = ANY($4))
         ORDER BY version LIMIT $3)
        UNION ALL
        (SELECT 3, c.version, c.collection, c.key, c.data, c.tag, NULL, NULL
         FROM cand JOIN changes c ON c.scope_id = $1 AND c.version BETWEEN cand.a AND cand.a + $6 - 1
         WHERE cand.cached_tag IS DISTINCT FROM cand.end_tag)
        UNION ALL
        (SELECT 4, version, collection, key, data, tag, NULL, NULL FROM changes
         WHERE scope_id = $1 AND version > GREATEST($2, (SELECT hi FROM cover))
           AND ($4::text[] IS NULL OR collection = ANY($4))
         ORDER BY version LIMIT $5)
        ORDER BY part, version
        "#,
    )
    .bind(scope.as_str())
    .bind(since)
    .bind(limit)
    .bind(collections)
    .bind(after_limit)
    .bind(size)
    .bind(&starts)
    .bind(&tags)
    .fetch_all(db)
    .await?;
    let mut slice: Option<WindowedSlice> = None;
    for row in rows {
        let part: i32 = row.try_get("part")?;
        let version: i64 = row.try_get("version")?;
        if part == 0 {
            slice = Some(WindowedSlice {
                head: version,
                floor: row.try_get("tag")?,
                since_tag: row.try_get("since_tag")?,
                head_tag: row.try_get("head_tag")?,
                covered: Vec::new(),
                fetched: Vec::new(),
                before: Vec::new(),
                after: Vec::new(),
                anomaly: false,
            });
            continue;
        }
        // Part 0 sorts first; without it the scope does not exist and nothing else can match.
        let Some(slice) = slice.as_mut() else { break };
        if part == 1 {
            let end_tag: Option<i64> = row.try_get("tag")?;
            // A closed window at or above the floor always has its last change (versions are dense and
            // compaction stays below the floor); if it ever does not, the caller falls back to a plain read.
            match end_tag {
                Some(tag) => slice.covered.push((version, tag)),
                None => slice.anomaly = true,
            }
            continue;
        }
        let change = LoggedChange {
            version,
            collection: row.try_get("collection")?,
            key: row.try_get("key")?,
            data: super::changes::raw_data(&row, "data")?,
            tag: row.try_get("tag")?,
        };
        match part {
            2 => slice.before.push(change),
            3 => slice.fetched.push(change),
            _ => slice.after.push(change),
        }
    }
    Ok(slice)
}
