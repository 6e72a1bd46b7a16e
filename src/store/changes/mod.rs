//! The change log and current rows of each scope.
//!
//! Invariants (relied on by every reader, see `feed`):
//! - Versions are dense and commit-ordered per scope. [`append`] first runs
//!   `UPDATE scopes SET head_version = head_version + n ... RETURNING`, which takes the scope row's lock until the
//!   transaction ends. A second writer of the same scope waits at that statement, so it can only take version
//!   numbers after the first has committed (or rolled back, releasing its numbers unused: the counter update is
//!   rolled back too, so no hole remains). A reader therefore never sees version `n + 1` committed while `n` is
//!   still pending, and `version > cursor` can never skip a row. Writers of other scopes lock other rows.
//! - `changes` rows are immutable once committed; the row at the scope's floor is never compacted.
//! - `records` and `collection_state` always equal the fold of the log; each change stores its collection's
//!   checksum and row count after it, so the checksum at any retained version is one index lookup.

mod log;
mod read;
mod rows;

pub use crate::domain::change::RowWrite;
pub use log::*;
pub use read::*;
pub use rows::*;
