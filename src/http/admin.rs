//! Instance administration under `/v1/admin/`: owners and managers (of any scope) only. Nothing here reveals a
//! scope's data; the reverse proxy may further restrict `/v1/admin/` to operators' addresses.

use super::{auth::Caller, encoding::Format};
use crate::{
    cache::keys,
    error::Error,
    error::Result,
    state::AppState,
    wire::{CacheReport, ErrorBody},
};
use axum::{extract::State, http::StatusCode, response::Response};
use std::sync::atomic::Ordering::Relaxed;

/// Cache statistics of this instance: hits and misses per cache and layer, fallbacks, corrupt values,
/// evictions and bytes.
#[utoipa::path(get, path = "/v1/admin/cache", tag = "admin",
    responses((status = 200, body = CacheReport), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "not an owner or manager of any scope")))]
pub async fn get_cache(State(state): State<AppState>, Caller(principal): Caller, format: Format) -> Result<Response> {
    if !principal.roles.values().any(|role| role.may_administer()) {
        return Err(Error::Forbidden("this needs the owner or manager role in some scope"));
    }
    let cache = &state.cache;
    let caches = cache.stats.snapshot();
    let redis = match (cache.redis_configured(), cache.stats.redis_up.load(Relaxed)) {
        (false, _) => "not_configured",
        (true, 1) => "up",
        (true, _) => "down",
    };
    let report = CacheReport {
        format: keys::FORMAT.to_string(),
        redis: redis.to_string(),
        memory_budget_bytes: cache.memory_budget() as u64,
        memory_bytes: caches.iter().map(|c| c.memory_bytes).sum(),
        window_size: state.feed.windows().size,
        caches,
    };
    Ok(format.reply(StatusCode::OK, &report))
}
