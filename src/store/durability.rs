//! Where the primary's WAL stands and how far the standbys named in `DUKASYNC_DURABLE_STANDBYS` have flushed it
//! (`pg_stat_replication`: a streaming standby or `pg_receivewal` alike). Positions are LSNs as byte offsets.

use sqlx::PgPool;

/// The standbys' side: how far the furthest of them has flushed, and whether any is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standbys {
    /// The furthest flush position reported by a connected standby of the given names (`None`: none connected,
    /// or the role may not read the positions; see [`can_read_positions`]).
    pub flushed: Option<i64>,
}

/// The WAL insert position now (everything committed before this call lies below it: a commit record is
/// inserted before the transaction becomes visible, synchronous commit or not), and the standbys' flush.
pub async fn position_and_standbys(db: &PgPool, names: &[String]) -> sqlx::Result<(i64, Standbys)> {
    let (insert, flushed): (i64, Option<i64>) = sqlx::query_as(
        r#"SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint,
                  (SELECT max((flush_lsn - '0/0'::pg_lsn)::bigint) FROM pg_stat_replication
                    WHERE application_name = ANY($1))"#,
    )
    .bind(names)
    .fetch_one(db)
    .await?;
    Ok((insert, Standbys { flushed }))
}

/// The standbys' flush position only (what the poller of `durability` reads while pushes wait).
pub async fn standbys(db: &PgPool, names: &[String]) -> sqlx::Result<Standbys> {
    let flushed: Option<i64> = sqlx::query_scalar(
        "SELECT max((flush_lsn - '0/0'::pg_lsn)::bigint) FROM pg_stat_replication WHERE application_name = ANY($1)",
    )
    .bind(names)
    .fetch_one(db)
    .await?;
    Ok(Standbys { flushed })
}

/// Whether this role sees other sessions' replication positions: PostgreSQL shows them only to superusers and
/// members of `pg_read_all_stats` (e.g. through `pg_monitor`); to others the columns are NULL, which would look
/// like a standby that never flushes.
pub async fn can_read_positions(db: &PgPool) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT rolsuper OR pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(db)
    .await
}
