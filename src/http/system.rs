//! Operations endpoints: liveness, readiness, metrics, and the OpenAPI description. None needs a token, so
//! the reverse proxy in front must keep `/metrics` off the public internet.

use super::encoding::Format;
use crate::{
    feed::longpoll::Early,
    metrics,
    state::AppState,
    store,
    wire::{Health, Readiness},
};
use axum::{
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use std::sync::atomic::Ordering;

/// Liveness: the process is up and serving.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()), responses((status = 200, body = Health)))]
pub async fn healthz(format: Format) -> Response {
    format.reply(StatusCode::OK, &Health { status: "ok".into() })
}

/// Readiness: PostgreSQL reachable (else 503 `down`); Redis unreachable is reported as `degraded`, still 200,
/// because the server stays correct without it.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn readyz(State(state): State<AppState>, format: Format) -> Response {
    let postgres_up = store::ping(&state.db).await.is_ok();
    let redis = match &state.redis {
        None => "not_configured",
        Some(redis) if redis.ping().await => "up",
        Some(_) => "down",
    };
    let status = match (postgres_up, redis) {
        (false, _) => "down",
        (true, "down") => "degraded",
        (true, _) => "ready",
    };
    let code = if postgres_up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        status: status.into(),
        postgres: if postgres_up { "up" } else { "down" }.into(),
        redis: redis.into(),
    };
    format.reply(code, &body)
}

/// Prometheus text format: request counts and latency by route, long-poll waiters, pool and listener state,
/// each scope's head version and open conflicts.
#[utoipa::path(get, path = "/metrics", tag = "operations", security(()),
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut out = String::new();
    state.metrics.render_http(&mut out);
    metrics::render_gauge(
        &mut out,
        "dukasync_longpoll_waiters",
        "Pulls waiting for a change.",
        &[(String::new(), state.hub.waiters() as f64)],
    );
    metrics::render_gauge(
        &mut out,
        "dukasync_longpoll_parked",
        "Long-polls holding a place in the long-poll bounds (DUKASYNC_MAX_LONGPOLLS*).",
        &[(String::new(), state.longpolls.parked() as f64)],
    );
    metrics::render_counter(
        &mut out,
        "dukasync_longpoll_early_total",
        "Long-polls answered before a change or their wait's end because of the long-poll bounds: replaced by a newer one of their device, or no place to wait.",
        &[
            (
                "reason=\"replaced\"".into(),
                state.longpolls.early(Early::Replaced) as f64,
            ),
            ("reason=\"full\"".into(), state.longpolls.early(Early::Full) as f64),
        ],
    );
    metrics::render_gauge(
        &mut out,
        "dukasync_db_pool_connections",
        "PostgreSQL pool connections by state.",
        &[
            ("state=\"idle\"".into(), state.db.num_idle() as f64),
            (
                "state=\"in_use\"".into(),
                (state.db.size() as usize).saturating_sub(state.db.num_idle()) as f64,
            ),
        ],
    );
    metrics::render_gauge(
        &mut out,
        "dukasync_listener_connected",
        "1 when the LISTEN connection for change notifications is up.",
        &[(
            String::new(),
            if state.listening.load(Ordering::Relaxed) {
                1.0
            } else {
                0.0
            },
        )],
    );
    state.cache.render_metrics(&mut out);
    let replays = state.replays.counts();
    let count = |counter: &std::sync::atomic::AtomicU64| [(String::new(), counter.load(Ordering::Relaxed) as f64)];
    metrics::render_counter(
        &mut out,
        "dukasync_replay_transactions_total",
        "Replay transactions run; concurrent pushes of a scope share one (group commit).",
        &count(&replays.transactions),
    );
    metrics::render_counter(
        &mut out,
        "dukasync_replay_pushes_total",
        "Pushes (POST /v1/scopes/{scope}/ops with a valid batch) replayed.",
        &count(&replays.pushes),
    );
    metrics::render_gauge(
        &mut out,
        "dukasync_replay_waiting",
        "Pushes queued behind a running replay transaction of their scope; the next transaction takes them together.",
        &[(String::new(), state.replays.waiting() as f64)],
    );
    metrics::render_counter(
        &mut out,
        "dukasync_replay_groups_split_total",
        "Shared replay transactions that failed on one push's content and were replayed one push at a time.",
        &count(&replays.split),
    );
    if let Ok(heads) = store::scope_heads(&state.db).await {
        let samples: Vec<(String, f64)> = heads
            .into_iter()
            .map(|(scope, head)| (format!("scope=\"{}\"", metrics::escape(&scope)), head as f64))
            .collect();
        metrics::render_gauge(
            &mut out,
            "dukasync_scope_head_version",
            "Head version of each scope's change feed.",
            &samples,
        );
    }
    if let Ok(counts) = store::conflicts::open_counts(&state.db).await {
        let samples: Vec<(String, f64)> = counts
            .into_iter()
            .map(|(scope, open)| (format!("scope=\"{}\"", metrics::escape(&scope)), open as f64))
            .collect();
        metrics::render_gauge(
            &mut out,
            "dukasync_conflicts_open",
            "Open conflicts of each scope, waiting for an owner or manager (/v1/admin/conflicts).",
            &samples,
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// This description.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", security(()),
    responses((status = 200, description = "OpenAPI 3 description of every route", content_type = "application/json")))]
pub async fn openapi_json() -> Response {
    Json(super::openapi()).into_response()
}
