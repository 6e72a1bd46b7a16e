//! dukasync: an offline-first sync server.
//!
//! Layout, by feature (see ARCHITECTURE.md): `http` (routing and handlers; the only module that knows axum)
//! calls the features: `feed` (the pull side), `replay` (the push side), `conflicts`, `reference`, `summary`,
//! `setup`, and `auth`. They call `store` (SQL), `cache` (bytes in process and in Redis) and `concurrency`
//! (shared runs, per-scope queues). `domain` holds the types they share, `wire` what crosses the wire. `notify`
//! holds the LISTEN connection; `app` wires everything into a server (`server`) that tests run on port 0.

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
pub mod error;
pub mod failpoint;
pub mod feed;
pub mod http;
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
