//! Reading the log: pages of changes after a cursor, heads and bounds, checksums at a version.

use crate::domain::ScopeId;
use serde_json::value::RawValue;
use sqlx::{postgres::PgRow, PgExecutor, Row};

/// One change as read from the log. `data` is the row's JSON text as stored, never parsed into a tree: a
/// pull passes it through to the response (see [`compact_json`]).
#[derive(Debug, Clone)]
pub struct LoggedChange {
    pub version: i64,
    pub collection: String,
    pub key: String,
    pub data: Option<Box<RawValue>>,
    pub tag: i64,
}

/// Reads a `jsonb` column as JSON text without building a tree. PostgreSQL prints `jsonb` with a space after
/// every `:` and `,`; those are dropped, so the bytes on the wire are what serializing the value would give.
pub fn raw_data(row: &PgRow, column: &str) -> Result<Option<Box<RawValue>>, sqlx::Error> {
    let Some(text) = row.try_get::<Option<sqlx::types::Json<Box<RawValue>>>, _>(column)? else {
        return Ok(None);
    };
    RawValue::from_string(compact_json(text.0.get()))
        .map(Some)
        .map_err(|e| sqlx::Error::Decode(e.into()))
}

/// `json` without whitespace outside strings. The input is valid JSON (it was just parsed), so a string is
/// everything between an unescaped `"` and the next unescaped `"`.
pub fn compact_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for ch in json.chars() {
        if in_string {
            out.push(ch);
            match (escaped, ch) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if ch == '"' {
            in_string = true;
            out.push(ch);
        } else if !matches!(ch, ' ' | '\n' | '\r' | '\t') {
            out.push(ch);
        }
    }
    out
}

/// What one read of the feed saw, all from a single statement (one snapshot).
#[derive(Debug)]
pub struct FeedSlice {
    pub head: i64,
    pub floor: i64,
    /// Tag of the change at the requested `since` version, if that change exists.
    pub since_tag: Option<i64>,
    /// Tag of the change at `head`, if any.
    pub head_tag: Option<i64>,
    pub changes: Vec<LoggedChange>,
}

/// Reads up to `limit` changes after `since`, optionally only of `collections`, with the scope's head and floor
/// from the same snapshot. `None` when the scope does not exist.
pub async fn read(
    db: impl PgExecutor<'_>,
    scope: &ScopeId,
    since: i64,
    limit: i64,
    collections: Option<&[String]>,
) -> Result<Option<FeedSlice>, sqlx::Error> {
    let rows = sqlx::query(
        r#"
        SELECT s.head_version, s.floor_version,
               (SELECT tag FROM changes WHERE scope_id = s.id AND version = $2) AS since_tag,
               (SELECT tag FROM changes WHERE scope_id = s.id AND version = s.head_version) AS head_tag,
               c.version, c.collection, c.key, c.data, c.tag
        FROM scopes s
        LEFT JOIN LATERAL (
            SELECT version, collection, key, data, tag FROM changes
            WHERE scope_id = s.id AND version > $2 AND ($4::text[] IS NULL OR collection = ANY($4))
            ORDER BY version
            LIMIT $3
        ) c ON true
        WHERE s.id = $1
        ORDER BY c.version
        "#,
    )
    .bind(scope.as_str())
    .bind(since)
    .bind(limit)
    .bind(collections)
    .fetch_all(db)
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let mut slice = FeedSlice {
        head: first.try_get("head_version")?,
        floor: first.try_get("floor_version")?,
        since_tag: first.try_get("since_tag")?,
        head_tag: first.try_get("head_tag")?,
        changes: Vec::with_capacity(rows.len()),
    };
    for row in rows {
        let Some(version) = row.try_get::<Option<i64>, _>("version")? else {
            continue;
        };
        slice.changes.push(LoggedChange {
            version,
            collection: row.try_get("collection")?,
            key: row.try_get("key")?,
            data: raw_data(&row, "data")?,
            tag: row.try_get("tag")?,
        });
    }
    Ok(Some(slice))
}

/// A scope's head with what a cursor at it needs, from one snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub version: i64,
    pub floor: i64,
    /// Tag of the change at `version` (`None` at version 0).
    pub tag: Option<i64>,
}

/// The scope's head, floor and head tag (one row lookup and one index step), or `None` when it does not exist.
pub async fn head(db: impl PgExecutor<'_>, scope: &ScopeId) -> Result<Option<Head>, sqlx::Error> {
    let row: Option<(i64, i64, Option<i64>)> = sqlx::query_as(
        r#"SELECT s.head_version, s.floor_version, c.tag FROM scopes s
           LEFT JOIN changes c ON c.scope_id = s.id AND c.version = s.head_version
           WHERE s.id = $1"#,
    )
    .bind(scope.as_str())
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(version, floor, tag)| Head { version, floor, tag }))
}

/// Head and floor of a scope, or `None` when it does not exist.
pub async fn bounds(db: impl PgExecutor<'_>, scope: &ScopeId) -> Result<Option<(i64, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT head_version, floor_version FROM scopes WHERE id = $1")
        .bind(scope.as_str())
        .fetch_optional(db)
        .await
}

/// Checksum and row count of every collection of the scope as of `version` (one index lookup each).
/// Only meaningful for `floor <= version <= head`.
pub async fn checksums_at(
    db: impl PgExecutor<'_>,
    scope: &ScopeId,
    version: i64,
) -> Result<Vec<(String, u32, i64)>, sqlx::Error> {
    let rows = sqlx::query(
        r#"SELECT cs.collection, c.checksum_after, c.count_after
           FROM collection_state cs
           CROSS JOIN LATERAL (
               SELECT checksum_after, count_after FROM changes
               WHERE scope_id = cs.scope_id AND collection = cs.collection AND version <= $2
               ORDER BY version DESC LIMIT 1
           ) c
           WHERE cs.scope_id = $1
           ORDER BY cs.collection"#,
    )
    .bind(scope.as_str())
    .bind(version)
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok((
                r.try_get("collection")?,
                r.try_get::<i64, _>("checksum_after")? as u32,
                r.try_get("count_after")?,
            ))
        })
        .collect()
}
