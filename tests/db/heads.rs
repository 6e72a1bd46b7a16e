//! `feed::heads` shares head queries between concurrent callers; it must never answer a head older than a
//! commit acknowledged before the call began.
//!
//! The head query is made slow (its snapshot is taken when it starts, then it sleeps), which widens the window
//! in which a wrong design answers stale. Round by round: a first read is started and seen running in
//! PostgreSQL, a commit is acknowledged, then a second read must see that commit. A naive sharing ("join the
//! query already running") goes through the same rounds and is caught. A load test then checks, with many
//! callers and a writer, that no answer is stale and that queries really are shared.

use crate::common::*;
use dukasync::{
    domain::ScopeId,
    feed::heads::Heads,
    store::changes::{self, Head},
};
use serde_json::json;
use sqlx::PgPool;
use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst},
        Arc,
    },
};
use tokio::sync::{watch, Mutex};

type HeadFuture = Pin<Box<dyn Future<Output = Option<Head>> + Send>>;
type ReadHead = Arc<dyn Fn() -> HeadFuture + Send + Sync>;

fn water() -> ScopeId {
    ScopeId::parse("water").unwrap()
}

/// One statement: its snapshot is taken when it starts, then it sleeps `pause` seconds before answering.
async fn slow_head(db: &PgPool, pause: f64, queries: &AtomicUsize) -> Option<Head> {
    queries.fetch_add(1, SeqCst);
    let row: Option<(i64, i64, Option<i64>)> = sqlx::query_as(
        r#"SELECT s.head_version, s.floor_version, c.tag FROM scopes s
           LEFT JOIN changes c ON c.scope_id = s.id AND c.version = s.head_version
           CROSS JOIN (SELECT pg_sleep($2)) AS pause
           WHERE s.id = $1"#,
    )
    .bind("water")
    .bind(pause)
    .fetch_optional(db)
    .await
    .expect("the head query answers");
    row.map(|(version, floor, tag)| Head { version, floor, tag })
}

/// Reads through the real `Heads`, with the slow query.
fn shared(db: &PgPool, pause: f64, queries: Arc<AtomicUsize>) -> ReadHead {
    let heads = Arc::new(Heads::default());
    let db = db.clone();
    Arc::new(move || {
        let (heads, db, queries) = (heads.clone(), db.clone(), queries.clone());
        Box::pin(async move {
            heads
                .read_with(&water(), move || {
                    let (db, queries) = (db.clone(), queries.clone());
                    async move { Ok(slow_head(&db, pause, &queries).await) }
                })
                .await
                .ok()
                .flatten()
                .expect("the head query answers")
        })
    })
}

/// Joins whatever query is running, even one that began before the caller arrived.
fn naive(db: &PgPool, pause: f64, queries: Arc<AtomicUsize>) -> ReadHead {
    let running: Arc<Mutex<Option<watch::Receiver<Option<Head>>>>> = Arc::default();
    let db = db.clone();
    Arc::new(move || {
        let (running, db, queries) = (running.clone(), db.clone(), queries.clone());
        Box::pin(async move {
            let mut slot = running.lock().await;
            if let Some(query) = slot.as_ref() {
                let mut query = query.clone();
                drop(slot);
                return *query.wait_for(Option::is_some).await.unwrap();
            }
            let (tx, rx) = watch::channel(None);
            *slot = Some(rx);
            drop(slot);
            let head = slow_head(&db, pause, &queries).await;
            tx.send_replace(head);
            *running.lock().await = None;
            head
        })
    })
}

async fn database() -> PgPool {
    let db = PgPool::connect(&fresh_database().await).await.unwrap();
    dukasync::demo::load(&db).await.unwrap();
    db
}

async fn commit(db: &PgPool, n: usize) -> i64 {
    let row = upsert("customers", "c-heads", json!({"id": "c-heads", "n": n}));
    *write_rows(db, "water", vec![row]).await.last().unwrap()
}

/// What [`rounds`] observed.
#[derive(Debug, Default)]
struct Rounds {
    /// Rounds where B began before A's read returned.
    overlapped: usize,
    /// Rounds where B answered older than the commit acknowledged before it began.
    stale: usize,
    /// Rounds where B made no query of its own: it joined A's, whose snapshot predates the commit.
    joined: usize,
    /// Of those, the rounds where B answered stale.
    joined_stale: usize,
}

/// Rounds of: read A starts and PostgreSQL shows its query running; a commit is acknowledged; read B starts
/// while A is still running. `queries` counts the head queries the reads make.
async fn rounds(db: &PgPool, read: ReadHead, queries: &AtomicUsize) -> Rounds {
    let mut seen = Rounds::default();
    for round in 0..3 {
        let first_done = Arc::new(AtomicBool::new(false));
        let first = tokio::spawn({
            let (read, first_done) = (read.clone(), first_done.clone());
            async move {
                read().await;
                first_done.store(true, SeqCst);
            }
        });
        // Wait for the observable state: A's statement is sleeping, so its snapshot is taken. Not merely
        // `active`: a backend reports that at Parse and Bind, before the portal takes its snapshot, and a commit
        // made in between is then inside A's snapshot (CI saw a joined round that was not stale).
        loop {
            let running: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'active'
                 AND pid <> pg_backend_pid() AND query LIKE '%pg_sleep($2)%' AND wait_event = 'PgSleep'",
            )
            .fetch_one(db)
            .await
            .unwrap();
            if running > 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        let acknowledged = commit(db, round).await;
        let began_while_first_ran = !first_done.load(SeqCst);
        let queries_before = queries.load(SeqCst);
        let second = read().await.unwrap();
        let is_stale = second.version < acknowledged;
        seen.stale += usize::from(is_stale);
        seen.overlapped += usize::from(began_while_first_ran);
        // Counted by what B did, not by timing: on a loaded machine A's query may end before B begins although
        // A's read has not returned yet, and B then rightly makes a query of its own.
        if queries.load(SeqCst) == queries_before {
            seen.joined += 1;
            seen.joined_stale += usize::from(is_stale);
        }
        first.await.unwrap();
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_head_read_sees_every_commit_acknowledged_before_it_began() {
    let db = database().await;
    let queries = Arc::new(AtomicUsize::new(0));
    let seen = rounds(&db, shared(&db, 1.0, queries.clone()), &queries).await;
    assert_eq!(seen.stale, 0, "{seen:?}");
    assert!(
        seen.overlapped > 0,
        "no round had the second read begin while the first ran: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_rounds_catch_sharing_a_query_that_began_before_the_caller() {
    let db = database().await;
    let queries = Arc::new(AtomicUsize::new(0));
    let seen = rounds(&db, naive(&db, 1.0, queries.clone()), &queries).await;
    assert!(
        seen.joined > 0,
        "the second read never joined the first's query: {seen:?}"
    );
    assert_eq!(
        seen.joined_stale, seen.joined,
        "the naive sharing answers stale whenever it joins an older query: {seen:?}"
    );
    assert!(seen.stale > 0, "the rounds catch it: {seen:?}");
}

/// Under load: 4 callers read in a loop (a query is nearly always running) and 4 read right after each of
/// 150 commits is acknowledged. No answer is older than the commit acknowledged before it began, and far
/// fewer queries than reads were made.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_load_no_answer_is_stale_and_queries_are_shared() {
    let db = database().await;
    let queries = Arc::new(AtomicUsize::new(0));
    let read = shared(&db, 0.02, queries.clone());
    let start = changes::head(&db, &water()).await.unwrap().unwrap().version;
    let acknowledged = Arc::new(watch::channel(start).0);
    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for reader in 0..8 {
        let (read, acknowledged, done) = (read.clone(), acknowledged.clone(), done.clone());
        let mut commits = acknowledged.subscribe();
        readers.push(tokio::spawn(async move {
            let (mut reads, mut stale) = (0, 0);
            while !done.load(SeqCst) {
                if reader >= 4 && commits.changed().await.is_err() {
                    break;
                }
                let before = *acknowledged.borrow();
                let head = read().await.expect("the scope exists");
                reads += 1;
                if head.version < before {
                    stale += 1;
                }
            }
            (reads, stale)
        }));
    }
    for n in 0..150 {
        acknowledged.send_replace(commit(&db, n).await);
    }
    done.store(true, SeqCst);
    acknowledged.send_modify(|_| {});
    let (mut reads, mut stale) = (0, 0);
    for reader in readers {
        let (r, s) = reader.await.unwrap();
        reads += r;
        stale += s;
    }
    assert_eq!(stale, 0, "{stale} of {reads} reads answered a stale head");
    let queries = queries.load(SeqCst);
    assert!(
        queries * 2 < reads,
        "queries are shared: {queries} queries for {reads} reads"
    );
}

/// The backends whose last statement was the head query (`store::changes::head`), other than this one.
async fn head_readers(db: &PgPool) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
         AND query LIKE '%c.version = s.head_version%' AND query NOT LIKE '%pg_stat_activity%' ORDER BY pid",
    )
    .fetch_all(db)
    .await
    .unwrap()
}

/// Head reads run on a connection of their own, out of the pool (no ping on its way back). When that
/// connection dies (here its backend is terminated, as when PostgreSQL restarts), the read in progress still
/// answers, through the pool, and the next one opens a new connection. Answering the dead connection's error
/// instead would fail the pull with 503 although PostgreSQL is up.
#[tokio::test]
async fn a_head_read_whose_connection_died_reads_through_the_pool() {
    let db = database().await;
    let heads = Heads::default();
    let read = || async { heads.read(&db, &water()).await };
    let first = read().await.unwrap().unwrap().unwrap();
    for _ in 0..3 {
        read().await.unwrap().unwrap().unwrap();
    }
    let readers = head_readers(&db).await;
    assert_eq!(readers.len(), 1, "one connection reads heads: {readers:?}");
    let terminated: Vec<bool> = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(readers[0])
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(terminated, [true]);
    let version = commit(&db, 1).await;
    assert!(version > first.version);
    let after = read()
        .await
        .expect("not unavailable: PostgreSQL is up")
        .expect("the query answered");
    assert_eq!(after.map(|head| head.version), Some(version), "a fresh head");
    read().await.unwrap().unwrap().unwrap();
    let now = head_readers(&db).await;
    assert!(
        !now.is_empty() && !now.contains(&readers[0]),
        "the next reads use a new connection: {now:?} (the terminated one was {})",
        readers[0]
    );
}

/// A stopped PostgreSQL backend (`kill -STOP`), continued when dropped, so a failing test leaves none behind.
struct Stopped(i32);

impl Stopped {
    fn new(pid: i32) -> Self {
        signal("STOP", pid);
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal("CONT", self.0);
    }
}

fn signal(name: &str, pid: i32) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

/// A head-read connection whose backend stopped answering (as when its host vanished without a reset) must
/// not hold the scope's pulls for as long as TCP takes to give up: after the pool's acquire timeout the read
/// goes through the pool and answers.
#[tokio::test]
async fn a_head_read_whose_connection_hangs_reads_through_the_pool_after_the_acquire_timeout() {
    let db = database().await;
    let heads = Heads::default();
    heads.read(&db, &water()).await.unwrap().unwrap().unwrap();
    let readers = head_readers(&db).await;
    assert_eq!(readers.len(), 1, "one connection reads heads: {readers:?}");
    let stopped = Stopped::new(readers[0]);
    let version = commit(&db, 1).await;
    let started = std::time::Instant::now();
    let answer = tokio::time::timeout(dukasync::store::ACQUIRE_TIMEOUT * 4, heads.read(&db, &water()))
        .await
        .expect("the read answers instead of waiting on the stopped backend");
    let head = answer.unwrap().unwrap().unwrap();
    assert_eq!(head.version, version, "a fresh head");
    assert!(
        started.elapsed() >= dukasync::store::ACQUIRE_TIMEOUT,
        "it waited the timeout first: {:?}",
        started.elapsed()
    );
    drop(stopped);
}
