//! Serving the router on a TCP listener, with the connection bounds `axum::serve` does not offer.
//!
//! Issue 18, item 7b: idle and slowloris connections were kept for ever. Each connection here has a watchdog:
//! - between requests (none in progress on the connection, and no byte of a next one read), the connection is
//!   closed after `DUKASYNC_IDLE_TIMEOUT_SECS`;
//! - once a byte of the next request arrived, its head must be complete (the handler started) within
//!   `DUKASYNC_HEADER_READ_TIMEOUT_SECS`, or the connection is closed: a client dripping a header a byte at a
//!   time does not reset it;
//! - while a request is in progress (a long-poll included) the watchdog never closes the connection; the
//!   router's timeout bounds the request (`DUKASYNC_MAX_WAIT_SECS` + `DUKASYNC_REQUEST_TIMEOUT_SECS`). A request
//!   lasts until its response body was written or dropped.
//!
//! HTTP/1.1 only, as `axum::serve` did with axum's default features (nginx in `deploy/` speaks HTTP/1.1 to the
//! server; clients get HTTP/2 from nginx).
//!
//! Graceful shutdown: when `stop` fires, no connection is accepted any more, idle connections close, and the
//! returned future completes once every connection finished its requests (the caller bounds the wait).

use axum::{body::Body, Router};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::{rt::TokioIo, server::graceful::GracefulShutdown};
use std::{
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Notify,
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The per-connection bounds (`config::Limits`).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_read: Duration,
    pub idle: Duration,
}

/// Serves `router` on `listener` until `stop` is cancelled, then waits for the open connections to finish.
pub async fn serve(listener: TcpListener, router: Router, limits: ConnectionLimits, stop: CancellationToken) {
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    accept_failed(err).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        // Responses are written whole; Nagle's algorithm would only hold back the last segment of a large page
        // until the client's (possibly delayed) ACK.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY on a connection");
        }
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched {
            inner: stream,
            activity: activity.clone(),
        });
        let service = {
            let (router, activity) = (router.clone(), activity.clone());
            hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                let in_progress = InProgress::start(&activity);
                let router = router.clone();
                // The peer's address, for the bounds on pairing attempts (`http::pairing`).
                request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                async move {
                    let response = router
                        .oneshot(request.map(Body::new))
                        .await
                        .unwrap_or_else(|never| match never {});
                    Ok::<_, std::convert::Infallible>(response.map(|body| {
                        Body::new(Tracked {
                            body,
                            _in_progress: in_progress,
                        })
                    }))
                }
            })
        };
        // hyper's own header timeout (which needs a timer) is not used: the watchdog covers it, and the idle time
        // before the first byte too.
        let builder = hyper::server::conn::http1::Builder::new();
        let connection = graceful.watch(builder.serve_connection(io, service));
        tokio::spawn(async move {
            tokio::select! {
                result = connection => {
                    if let Err(err) = result {
                        tracing::trace!(error = %err, "connection ended with an error");
                    }
                }
                reason = watchdog(&activity, limits) => {
                    // Dropping the connection closes the socket; no request is in progress on it.
                    tracing::debug!(reason, "closing connection");
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Errors of one connection (the peer reset it before it was accepted) are ignored; others (out of file
/// descriptors) are logged and the loop pauses a moment instead of spinning.
async fn accept_failed(err: io::Error) {
    use io::ErrorKind::*;
    if matches!(err.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset) {
        return;
    }
    tracing::error!(error = %err, "accepting a connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// What the watchdog of one connection looks at.
struct Activity {
    state: Mutex<State>,
    changed: Notify,
}

struct State {
    in_progress: usize,
    /// When the connection last had no request in progress (or was accepted).
    idle_since: Instant,
    /// When the first byte after that arrived: a request is being sent.
    request_started: Option<Instant>,
}

impl Activity {
    fn new() -> Self {
        Activity {
            state: Mutex::new(State {
                in_progress: 0,
                idle_since: Instant::now(),
                request_started: None,
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bytes_read(&self) {
        let mut state = self.lock();
        if state.in_progress == 0 && state.request_started.is_none() {
            state.request_started = Some(Instant::now());
            drop(state);
            self.changed.notify_one();
        }
    }
}

/// A request in progress on its connection, from the handler's start until its response body is done.
struct InProgress(Arc<Activity>);

impl InProgress {
    fn start(activity: &Arc<Activity>) -> Self {
        let mut state = activity.lock();
        state.in_progress += 1;
        state.request_started = None;
        drop(state);
        activity.changed.notify_one();
        InProgress(activity.clone())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.in_progress -= 1;
        if state.in_progress == 0 {
            state.idle_since = Instant::now();
            state.request_started = None;
        }
        drop(state);
        self.0.changed.notify_one();
    }
}

/// Completes (with the reason) when the connection must be closed.
async fn watchdog(activity: &Activity, limits: ConnectionLimits) -> &'static str {
    loop {
        // Register for a change before reading the state, so a change in between is not missed.
        let changed = activity.changed.notified();
        let deadline = {
            let state = activity.lock();
            match (state.in_progress, state.request_started) {
                (0, Some(started)) => Some((started + limits.header_read, "request head not read in time")),
                (0, None) => Some((state.idle_since + limits.idle, "idle")),
                _ => None,
            }
        };
        match deadline {
            None => changed.await,
            Some((at, reason)) => {
                tokio::select! {
                    _ = changed => {}
                    _ = tokio::time::sleep_until(at) => return reason,
                }
            }
        }
    }
}

/// The socket, reporting reads to the watchdog.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_read();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A response body that keeps its request counted as in progress until it is written or dropped.
struct Tracked {
    body: Body,
    _in_progress: InProgress,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
