//! dukasync: an offline-first sync server.
//!
//! Layout, by feature (see ARCHITECTURE.md), in layers; a module imports only its own layer and those below,
//! and only the HTTP layer names axum (`tests/layering.rs` holds both):
//! - wiring: `app` (serves on a given listener: tests run it on port 0), `cli`, `demo`;
//! - HTTP: `http` (routing and handlers: extract, call one feature, encode), `server` (connections);
//! - `state`: what every request shares;
//! - features: `feed` (the pull side), `replay` (the push side), `conflicts`, `reference`, `summary`, `setup`,
//!   `auth`, `notify` (the LISTEN connection), `inbox` (backend writes queued through SQL);
//! - contracts: `error` (one error type, one status table), `wire` (what crosses the wire);
//! - infrastructure: `store` (SQL), `cache` (bytes in process and in Redis), `concurrency`;
//! - base: `domain` (the types everything shares), `config`, `metrics`, `failpoint`.

#![deny(clippy::unwrap_used)]

pub mod app;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod concurrency;
pub mod config;
pub mod conflicts;
pub mod demo;
pub mod domain;
pub mod durability;
pub mod error;
pub mod failpoint;
pub mod feed;
pub mod http;
pub mod inbox;
pub mod metrics;
pub mod notify;
pub mod reference;
pub mod replay;
pub mod server;
pub mod setup;
pub mod state;
pub mod store;
pub mod summary;
pub mod wire;

pub use app::serve;
pub use config::Config;
pub use state::AppState;
