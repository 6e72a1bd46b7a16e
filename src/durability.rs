//! Durability beyond the primary (protocol §10.3): which of a device's acknowledged operations a standby has
//! flushed, so that a phone can keep every operation the primary's disk alone holds and resend it after a restore.
//!
//! The rule: an answer's `last_seq` is read from committed state; the WAL insert position read after that lies
//! above the commit record of every operation up to it. Once a standby named in `DUKASYNC_DURABLE_STANDBYS` has
//! flushed past that position, all of them survive the loss of the primary's disk (a restore replays that WAL),
//! and the answer's `durable_seq` is `last_seq`; otherwise it is 0 and the device asks again later. No state is
//! kept per client: each answer confirms what it reports, or nothing.
//!
//! Waiting: a pull of `pg_stat_replication` per waiting push would cost a query every few milliseconds per
//! device, so one poller per instance reads the flush position while anyone waits, and waiters watch it. The wait
//! is bounded (`DUKASYNC_DURABLE_WAIT_MS`); with no such standby connected nobody waits.

use crate::{config::DurabilitySettings, metrics::StaticCounter, store};
use sqlx::PgPool;
use std::sync::{
    atomic::{AtomicBool, AtomicUsize, Ordering},
    Arc,
};
use tokio::{
    sync::{watch, Notify},
    time::Duration,
};

/// How often the poller reads the standbys' position while pushes wait. `pg_receivewal --synchronous`
/// reports a flush within a few milliseconds of the commit.
const POLL: Duration = Duration::from_millis(3);

pub struct Durability {
    settings: DurabilitySettings,
    /// The standbys' flush position at the poller's latest reading (it only sends changes).
    flushed: watch::Sender<i64>,
    waiters: AtomicUsize,
    wake: Notify,
    poller_started: AtomicBool,
    outcomes: StaticCounter<1>,
}

/// What one confirmation came to, for `/metrics`.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// No standby is configured: the primary's disk is all there is, and `last_seq` is reported as durable.
    PrimaryOnly,
    Confirmed,
    /// A standby is connected but did not flush far enough within the wait.
    Timeout,
    /// None of the named standbys is connected.
    NoStandby,
    /// PostgreSQL could not be asked.
    Error,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::PrimaryOnly => "primary_only",
            Outcome::Confirmed => "confirmed",
            Outcome::Timeout => "timeout",
            Outcome::NoStandby => "no_standby",
            Outcome::Error => "error",
        }
    }
}

impl Durability {
    pub fn new(settings: DurabilitySettings) -> Arc<Self> {
        let zeros: Vec<[&'static str; 1]> = if settings.standbys.is_empty() {
            vec![[Outcome::PrimaryOnly.label()]]
        } else {
            [Outcome::Confirmed, Outcome::Timeout, Outcome::NoStandby, Outcome::Error]
                .map(|o| [o.label()])
                .to_vec()
        };
        Arc::new(Durability {
            settings,
            flushed: watch::Sender::new(0),
            waiters: AtomicUsize::new(0),
            wake: Notify::new(),
            poller_started: AtomicBool::new(false),
            outcomes: StaticCounter::new(["outcome"], &zeros),
        })
    }

    /// The standbys whose flush counts (`DUKASYNC_DURABLE_STANDBYS`); empty when only the primary is trusted.
    pub fn standbys(&self) -> &[String] {
        &self.settings.standbys
    }

    /// The `durable_seq` of an answer whose `last_seq` was read from committed state just now: `last_seq` when a
    /// named standby has flushed everything committed so far (or when none is configured), else 0.
    pub async fn confirm(self: &Arc<Self>, db: &PgPool, last_seq: i64) -> i64 {
        let outcome = self.confirm_committed(db).await;
        self.outcomes.add([outcome.label()], 1);
        match outcome {
            Outcome::PrimaryOnly | Outcome::Confirmed => last_seq,
            Outcome::Timeout | Outcome::NoStandby | Outcome::Error => 0,
        }
    }

    async fn confirm_committed(self: &Arc<Self>, db: &PgPool) -> Outcome {
        if self.settings.standbys.is_empty() {
            return Outcome::PrimaryOnly;
        }
        // Only readings taken from here on count. An older one could come from before a restore to an earlier
        // time (this process outlives PostgreSQL's data directory), when positions were higher than they are now.
        let mut readings = self.flushed.subscribe();
        let (target, standbys) = match store::durability::position_and_standbys(db, &self.settings.standbys).await {
            Ok(read) => read,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the standbys' flush position; durable_seq 0");
                return Outcome::Error;
            }
        };
        let Some(flushed) = standbys.flushed else {
            return Outcome::NoStandby;
        };
        if flushed >= target {
            return Outcome::Confirmed;
        }
        self.start_poller(db);
        let _waiting = Waiting::new(&self.waiters);
        self.wake.notify_one();
        let reached = tokio::time::timeout(self.settings.wait, async {
            while readings.changed().await.is_ok() {
                if *readings.borrow_and_update() >= target {
                    return true;
                }
            }
            false
        })
        .await;
        if matches!(reached, Ok(true)) {
            Outcome::Confirmed
        } else {
            Outcome::Timeout
        }
    }

    fn start_poller(self: &Arc<Self>, db: &PgPool) {
        if self.poller_started.swap(true, Ordering::SeqCst) {
            return;
        }
        let (this, db) = (self.clone(), db.clone());
        tokio::spawn(async move {
            loop {
                while this.waiters.load(Ordering::SeqCst) == 0 {
                    this.wake.notified().await;
                }
                match store::durability::standbys(&db, &this.settings.standbys).await {
                    Ok(store::durability::Standbys { flushed: Some(flushed) }) => {
                        this.flushed
                            .send_if_modified(|seen| std::mem::replace(seen, flushed) != flushed);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "durability poller: PostgreSQL unreachable"),
                }
                tokio::time::sleep(POLL).await;
            }
        });
    }

    /// `/metrics`: confirmations by outcome, and how far behind the standbys are.
    pub async fn render_metrics(&self, db: &PgPool, out: &mut String) {
        self.outcomes.render(
            out,
            "dukasync_durability_confirmations_total",
            "Answers to pushes by whether their operations were confirmed durable beyond the primary (protocol §10.3): confirmed, timeout (a standby lagged past DUKASYNC_DURABLE_WAIT_MS), no_standby (none of DUKASYNC_DURABLE_STANDBYS connected), error, or primary_only (no standby configured).",
        );
        if self.settings.standbys.is_empty() {
            return;
        }
        if let Ok((insert, standbys)) = store::durability::position_and_standbys(db, &self.settings.standbys).await {
            let connected = standbys.flushed.is_some();
            crate::metrics::render_gauge(
                out,
                "dukasync_durable_standby_connected",
                "1 when a standby of DUKASYNC_DURABLE_STANDBYS is connected; while 0, phones keep every acknowledged operation.",
                &[(String::new(), if connected { 1.0 } else { 0.0 })],
            );
            if let Some(flushed) = standbys.flushed {
                crate::metrics::render_gauge(
                    out,
                    "dukasync_durable_standby_lag_bytes",
                    "WAL bytes the furthest standby of DUKASYNC_DURABLE_STANDBYS has not flushed yet.",
                    &[(String::new(), (insert - flushed).max(0) as f64)],
                );
            }
        }
    }
}

/// One push waiting for the poller; counted out also when its request is dropped mid-wait.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(waiters: &'a AtomicUsize) -> Self {
        waiters.fetch_add(1, Ordering::SeqCst);
        Waiting(waiters)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
