//! Test harness: real PostgreSQL and Redis started by `deploy/services.sh`, a fresh database per test cloned
//! from a migrated template, and the real server on port 0.
//!
//! Connection URLs come from `DUKASYNC_DATABASE_URL` / `DUKASYNC_REDIS_URL`, or from `.dukasync/env` written by
//! `deploy/services.sh start`. Without them the tests fail (they never skip).
#![allow(dead_code)]

mod app;
mod coding;
mod db;
mod device;
mod ledger;
mod locks;
mod plans;
mod process;
mod redis;

// Each test binary uses a part of the harness; the rest would be reported unused there.
#[allow(unused_imports)]
pub use self::{app::*, coding::*, db::*, device::*, ledger::*, locks::*, plans::*, process::*, redis::*};
