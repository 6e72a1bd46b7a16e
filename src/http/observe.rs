//! Per-request observation and admission: the request id, a `tracing` span named by the route template, latency
//! metrics, a bound on requests in flight, the bounds on the body and on the time, a panic caught, and the
//! documented body on every error answer. One middleware, not seven: each layer on the routes costs boxed
//! services cloned and a boxed future per request (`http::router` says how much).

use super::{encoding::Format, error::encode_errors};
use crate::{error::Error, feed::longpoll::WaitSlot, state::AppState};
use axum::{
    extract::{MatchedPath, Request, State},
    http::{header, HeaderName, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use futures_util::FutureExt;
use std::{
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;
use uuid::Uuid;

/// Where authentication leaves the caller's device for the request's last log line (`http::auth`).
///
/// Why not `Span::record`: the JSON log format re-parses and re-writes all of a span's fields on every record.
#[derive(Clone, Default)]
pub struct DeviceSlot(Arc<OnceLock<Uuid>>);

impl DeviceSlot {
    pub fn set(&self, device: Uuid) {
        let _ = self.0.set(device);
    }
}

/// The request's admission permit (of `DUKASYNC_MAX_IN_FLIGHT`, or for a long-poll of the long-poll entry),
/// which a long-poll gives back once it parks: it then holds a parked place instead (see `feed::longpoll`).
#[derive(Clone)]
pub struct Admission(Arc<Mutex<Option<OwnedSemaphorePermit>>>);

impl Admission {
    pub fn release(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// The operations endpoints: never refused by admission, so an overloaded server can still be watched and
/// `/healthz` stays "always 200" (protocol §6).
fn is_operations(route: &str) -> bool {
    matches!(route, "/healthz" | "/readyz" | "/metrics")
}

/// A pull with a `wait`: admitted by the long-poll bounds (`feed::longpoll`), not by `DUKASYNC_MAX_IN_FLIGHT`.
/// A malformed `wait` counts too; its 400 comes at once.
fn is_long_poll(route: &str, request: &Request) -> bool {
    route == "/v1/scopes/{scope}/changes"
        && request.uri().query().is_some_and(|query| {
            query.split('&').any(|pair| {
                pair.strip_prefix("wait=")
                    .is_some_and(|wait| wait.bytes().any(|b| b != b'0'))
            })
        })
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id: the one it came with (from nginx, or a client), else a new UUID, set on the request.
fn request_id(request: &mut Request) -> HeaderValue {
    if let Some(given) = request.headers().get(&X_REQUEST_ID) {
        return given.clone();
    }
    let id = uuid::Uuid::new_v4();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = HeaderValue::from_str(id.hyphenated().encode_lower(&mut text)).expect("a UUID is a header value");
    request.headers_mut().insert(X_REQUEST_ID, id.clone());
    id
}

/// Runs the rest of the request within its bounds: a body announced larger than `DUKASYNC_MAX_BODY_BYTES` is
/// refused before anything reads it (a body without a length is bounded by the extractor, `DefaultBodyLimit`
/// in `http::router`); a request that takes longer than `timeout` answers 408 `timeout`; a panic answers the
/// documented 500 `internal`, logged with its message, which the client never sees.
async fn run_bounded(next: Next, request: Request, max_body_bytes: usize, timeout: Duration) -> Response {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|len| len > max_body_bytes as u64) {
        return Error::PayloadTooLarge { limit: max_body_bytes }.into_response();
    }
    match tokio::time::timeout(timeout, AssertUnwindSafe(next.run(request)).catch_unwind()).await {
        Ok(Ok(response)) => response,
        Ok(Err(panic)) => panic_answer(panic),
        // Its body is made below, with the others (`encode_errors`).
        Err(_) => StatusCode::REQUEST_TIMEOUT.into_response(),
    }
}

fn panic_answer(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string());
    Error::Internal(anyhow::anyhow!("a handler panicked: {message}")).into_response()
}

/// Wraps the request in a span (`method`, `route`, `request_id`; its last line also names the authenticated
/// `device`) and records its latency by route template, never by raw path, so metrics stay bounded; a pull that
/// waited for a change is counted but timed in the long-poll histogram instead, by how its wait ended. Beyond
/// `DUKASYNC_MAX_IN_FLIGHT` requests in flight it answers 503 `overloaded` instead of queueing; the operations
/// endpoints are not counted, and long-polls are counted apart (see [`is_long_poll`], [`Admission`]). Every
/// answer carries the request's id (`x-request-id`, the one it came with or a new one), and every error answer,
/// the bounds' of [`run_bounded`] included, gets the documented body in the format the request asked for.
pub async fn observe(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    // The matched path is shared (`Arc<str>` inside); cloning it copies no text.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map(MatchedPath::as_str).unwrap_or("unmatched");
    let method = request.method().clone();
    let request_id = request_id(&mut request);
    let span = tracing::info_span!(
        "request",
        %method,
        route = %route,
        request_id = %request_id.to_str().unwrap_or("")
    );
    let limits = &state.config.limits;
    // The longest a request may legitimately take: the longest long-poll plus the ordinary bound.
    let timeout = (limits.max_wait + limits.request_timeout).max(Duration::from_secs(1));
    let started = Instant::now();
    let format = Format::from_accept(request.headers());
    let device = DeviceSlot::default();
    request.extensions_mut().insert(device.clone());
    // Told by the feed whether (and how) the pull waited: such a request is timed apart from the others.
    let waited = WaitSlot::default();
    let run = |request| run_bounded(next, request, limits.max_body_bytes, timeout).instrument(span.clone());
    let response = if is_operations(route) {
        run(request).await
    } else {
        let pool = if is_long_poll(route, &request) {
            request.extensions_mut().insert(waited.clone());
            &state.longpolls.entry
        } else {
            &state.in_flight
        };
        match pool.clone().try_acquire_owned() {
            Ok(permit) => {
                // Held here until the answer is ready unless a long-poll releases it sooner: the request's
                // extensions may be dropped once the extractors ran.
                let admission = Admission(Arc::new(Mutex::new(Some(permit))));
                request.extensions_mut().insert(admission.clone());
                let response = run(request).await;
                drop(admission);
                response
            }
            Err(_) => Error::Overloaded.into_response(),
        }
    };
    let mut response = encode_errors(format, limits.max_body_bytes, response);
    response.headers_mut().entry(X_REQUEST_ID).or_insert(request_id);
    let elapsed = started.elapsed();
    let status = response.status();
    let device = device.0.get().map(tracing::field::display);
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::warn!(
                status = status.as_u16(),
                elapsed_ms = elapsed.as_millis() as u64,
                device,
                "request failed"
            );
        } else if status.is_client_error() {
            // At the default level, so the request id a client shows with its error finds this line.
            tracing::info!(
                status = status.as_u16(),
                elapsed_ms = elapsed.as_millis() as u64,
                device,
                "request refused"
            );
        } else {
            tracing::debug!(
                status = status.as_u16(),
                elapsed_ms = elapsed.as_millis() as u64,
                device,
                "request done"
            );
        }
    });
    match waited.get() {
        Some(outcome) => {
            state
                .metrics
                .observe_longpoll(route, method.as_str(), status.as_u16(), outcome.as_str(), elapsed)
        }
        None => state
            .metrics
            .observe_request(route, method.as_str(), status.as_u16(), elapsed),
    }
    response
}
