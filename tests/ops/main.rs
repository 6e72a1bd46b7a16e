//! Operations: what an operator does and what the machine does to the server. Backup and restore, upgrades,
//! the nginx site, two instances on one database, idle and slow connections, a PostgreSQL outage, and replay
//! under faults (a server process killed between commit and answer: it needs the test hooks, hence
//! `required-features = ["failpoints"]` for this binary in Cargo.toml).

#[path = "../common/mod.rs"]
mod common;

mod backup_restore;
mod connections;
mod log_sink;
mod nginx;
mod outage;
mod replay_faults;
mod two_instances;
mod upgrade;
