//! Per-request observation and admission: a `tracing` span named by the route template, latency metrics, and
//! a bound on requests in flight.

use crate::{app::AppState, error::Error};
use axum::{
    extract::{MatchedPath, Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use std::time::Instant;
use tracing::Instrument;

/// Wraps the request in a span (`method`, `route`, `request_id`, and `device` once authenticated) and records
/// its latency by route template, never by raw path, so metrics stay bounded.
pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // The matched path is shared (`Arc<str>` inside); cloning it copies no text.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map(MatchedPath::as_str).unwrap_or("unmatched");
    let method = request.method().clone();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let span = tracing::info_span!("request", %method, route = %route, request_id = %request_id, device = tracing::field::Empty);
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status();
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::warn!(
                status = status.as_u16(),
                elapsed_ms = elapsed.as_millis() as u64,
                "request failed"
            );
        } else {
            tracing::debug!(
                status = status.as_u16(),
                elapsed_ms = elapsed.as_millis() as u64,
                "request done"
            );
        }
    });
    state
        .metrics
        .observe_request(route, method.as_str(), status.as_u16(), elapsed);
    response
}

/// Refuses requests beyond `DUKASYNC_MAX_IN_FLIGHT` with 503 `overloaded` instead of queueing them.
pub async fn admission(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match state.in_flight.clone().try_acquire_owned() {
        Ok(_permit) => next.run(request).await,
        Err(_) => Error::Overloaded.into_response(),
    }
}
