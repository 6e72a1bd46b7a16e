//! Reads for reference snapshots: a dataset (a collection declared `reference: true`) as it stands now.

use crate::domain::ScopeId;
use serde_json::Value;
use sqlx::{PgExecutor, Row};

/// The change that last touched a dataset, which identifies its current content: (version, tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastChange {
    pub version: i64,
    pub tag: i64,
}

/// The dataset's last change (`None` if it never had one) with the scope's head from the same snapshot, or
/// `None` when the scope does not exist. One backward step on the `(scope_id, collection, version)` index.
pub async fn last_change(
    db: impl PgExecutor<'_>,
    scope: &ScopeId,
    dataset: &str,
) -> Result<Option<(i64, Option<LastChange>)>, sqlx::Error> {
    let row = sqlx::query(
        r#"SELECT s.head_version, c.version, c.tag FROM scopes s
           LEFT JOIN LATERAL (
               SELECT version, tag FROM changes WHERE scope_id = s.id AND collection = $2
               ORDER BY version DESC LIMIT 1
           ) c ON true
           WHERE s.id = $1"#,
    )
    .bind(scope.as_str())
    .bind(dataset)
    .fetch_optional(db)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let head: i64 = row.try_get("head_version")?;
    let version: Option<i64> = row.try_get("version")?;
    let tag: Option<i64> = row.try_get("tag")?;
    Ok(Some((
        head,
        version.zip(tag).map(|(version, tag)| LastChange { version, tag }),
    )))
}

/// A dataset's rows with its last change and checksum, all from one snapshot.
#[derive(Debug)]
pub struct Dataset {
    pub last: Option<LastChange>,
    pub checksum: u32,
    pub count: i64,
    /// (key, data), ordered by the key's UTF-8 bytes.
    pub rows: Vec<(String, Value)>,
}

/// The whole dataset, or `None` when the scope does not exist.
pub async fn dataset(db: impl PgExecutor<'_>, scope: &ScopeId, dataset: &str) -> Result<Option<Dataset>, sqlx::Error> {
    let rows = sqlx::query(
        r#"SELECT c.version, c.tag, cs.checksum, r.key, r.data
           FROM scopes s
           LEFT JOIN LATERAL (
               SELECT version, tag FROM changes WHERE scope_id = s.id AND collection = $2
               ORDER BY version DESC LIMIT 1
           ) c ON true
           LEFT JOIN collection_state cs ON cs.scope_id = s.id AND cs.collection = $2
           LEFT JOIN records r ON r.scope_id = s.id AND r.collection = $2
           WHERE s.id = $1"#,
    )
    .bind(scope.as_str())
    .bind(dataset)
    .fetch_all(db)
    .await?;
    let Some(first) = rows.first() else { return Ok(None) };
    let version: Option<i64> = first.try_get("version")?;
    let tag: Option<i64> = first.try_get("tag")?;
    let checksum: Option<i64> = first.try_get("checksum")?;
    let mut out = Dataset {
        last: version.zip(tag).map(|(version, tag)| LastChange { version, tag }),
        checksum: checksum.unwrap_or(0) as u32,
        count: 0,
        rows: Vec::with_capacity(rows.len()),
    };
    for row in rows {
        let Some(key) = row.try_get::<Option<String>, _>("key")? else {
            continue;
        };
        let data: sqlx::types::Json<Value> = row.try_get("data")?;
        out.rows.push((key, data.0));
    }
    // `String`'s order is the order of its UTF-8 bytes, whatever the database's collation.
    out.rows.sort_by(|a, b| a.0.cmp(&b.0));
    out.count = out.rows.len() as i64;
    Ok(Some(out))
}
