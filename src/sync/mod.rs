//! Sync logic: the versioned change feed, its live notifications, and the divergence checksum.
//! Nothing here knows about HTTP; it calls `store` and returns `wire` types or `error::Error`.

pub mod batch;
pub mod commands;
pub mod conflicts;
pub mod cursor;
pub mod feed;
pub mod group_commit;
pub mod heads;
pub mod hub;
pub mod listener;
pub mod longpoll;
pub mod operations;
pub mod page;
pub mod reference;
pub mod replay;
pub mod scope_queue;
pub mod setup;
pub mod single_flight;
pub mod summary;
pub mod windows;
