//! CORS for browsers (protocol §3.5): pages of the origins in `DUKASYNC_CORS_ORIGINS` may call `/v1`.
//!
//! The layer sits outside every other one (see `http::router`): a preflight is answered here, before the
//! request id, admission, authentication and metrics, so it needs no token and never takes an admission slot
//! a real request needs; and every answer, errors of the inner layers included (401, 413, 503), carries the
//! CORS headers, so a page can read why it was refused. Without configured origins there is no layer at all:
//! no CORS header is sent and `OPTIONS` stays 405.

use axum::http::{
    header::{self, HeaderName, HeaderValue},
    Method,
};
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// How long a browser may reuse a preflight's answer. Chromium caps it at 2 hours, Firefox at 24; 10 minutes
/// keeps a changed allowlist from lingering in browsers for long.
pub const MAX_AGE: Duration = Duration::from_secs(600);

/// The CORS layer for `origins` (already checked and normalised by `config::cors`), if there are any.
pub fn layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    // Normalised origins are ASCII, so each is a valid header value; one that somehow is not allows nothing.
    let allowed: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    Some(
        CorsLayer::new()
            // Only the API: `/metrics`, `/readyz` and the rest are for operators, not for pages.
            .allow_origin(AllowOrigin::predicate(move |origin, parts| {
                parts.uri.path().starts_with("/v1/") && allowed.contains(origin)
            }))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::ACCEPT,
                header::IF_NONE_MATCH,
                X_REQUEST_ID,
            ])
            // What clients read besides the CORS-safelisted headers (Content-Type, Cache-Control, ...).
            .expose_headers([
                header::ETAG,
                X_REQUEST_ID,
                header::RETRY_AFTER,
                header::WWW_AUTHENTICATE,
                header::CONTENT_ENCODING,
                header::VARY,
            ])
            .max_age(MAX_AGE),
    )
}
