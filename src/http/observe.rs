//! Per-request observation and admission: a `tracing` span named by the route template, latency metrics, a
//! bound on requests in flight, and the documented body on every error answer. One middleware, not three: each
//! `from_fn` layer costs a boxed future and a service clone per request.

use super::{encoding::Format, error::encode_errors};
use crate::{error::Error, feed::longpoll::WaitSlot, state::AppState};
use axum::{
    extract::{MatchedPath, Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use std::{
    sync::{Arc, Mutex, OnceLock},
    time::Instant,
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

/// Wraps the request in a span (`method`, `route`, `request_id`; its last line also names the authenticated
/// `device`) and records its latency by route template, never by raw path, so metrics stay bounded; a pull that
/// waited for a change is counted but timed in the long-poll histogram instead, by how its wait ended. Beyond
/// `DUKASYNC_MAX_IN_FLIGHT` requests in flight it answers 503 `overloaded` instead of queueing; the operations
/// endpoints are not counted, and long-polls are counted apart (see [`is_long_poll`], [`Admission`]). Every error
/// answer, those of the layers below included, gets the documented body in the format the request asked for.
pub async fn observe(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    // The matched path is shared (`Arc<str>` inside); cloning it copies no text.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map(MatchedPath::as_str).unwrap_or("unmatched");
    let method = request.method().clone();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let span = tracing::info_span!("request", %method, route = %route, request_id = %request_id);
    let started = Instant::now();
    let format = Format::from_accept(request.headers());
    let device = DeviceSlot::default();
    request.extensions_mut().insert(device.clone());
    // Told by the feed whether (and how) the pull waited: such a request is timed apart from the others.
    let waited = WaitSlot::default();
    let response = if is_operations(route) {
        next.run(request).instrument(span.clone()).await
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
                let response = next.run(request).instrument(span.clone()).await;
                drop(admission);
                response
            }
            Err(_) => Error::Overloaded.into_response(),
        }
    };
    let response = encode_errors(format, state.config.limits.max_body_bytes, response);
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
