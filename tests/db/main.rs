//! What the database and the layers just above it guarantee, whatever code writes: the ledger invariants
//! (balanced entries, running stock and balances), scope references, the query-plan guards, and the feed's
//! reads (heads, windows, no missed change under concurrency) and the token cache against a real PostgreSQL.

#[path = "../common/mod.rs"]
mod common;

// Ledger invariants held by triggers and running sums.
mod account_balances;
mod journal_balance;
mod stock_on_hand;
// The feed's tables name an existing scope.
mod scope_references;
// Plans made on small tables stay key lookups as the tables grow.
mod feed_plans;
mod ledger_plans;
// The feed's reads: shared head queries, cached windows, every committed change exactly once.
mod feed_concurrency;
mod heads;
mod windows;
// Token checks shared between concurrent requests.
mod token_cache;
// The backend read views (dukasync_read) against their documentation.
mod read_views;
