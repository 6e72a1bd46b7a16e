//! Generic concurrency utilities, used by the feed, replay and auth: sharing one run of a task among
//! concurrent callers, and queueing callers per scope.

pub mod scope_queue;
pub mod single_flight;
