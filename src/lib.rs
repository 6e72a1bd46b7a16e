//! dukasync: an offline-first sync server.
//!
//! Layout: `http` (routing and handlers; the only module that knows axum) calls `sync` (feed, replay logic),
//! which calls `store` (SQL). `domain` holds the types they share, `wire` what crosses the wire, `auth` tokens,
//! `cache` Redis and the in-process cache. `app` wires them into a server that tests run on port 0.

#![deny(clippy::unwrap_used)]

pub mod app;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod config;
pub mod demo;
pub mod domain;
pub mod error;
pub mod failpoint;
pub mod http;
pub mod metrics;
pub mod server;
pub mod store;
pub mod sync;
pub mod wire;

pub use app::{serve, AppState};
pub use config::Config;
