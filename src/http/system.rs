//! Operations endpoints: liveness, readiness, metrics, and the OpenAPI description. None needs a token, so
//! the reverse proxy in front must keep `/metrics` off the public internet.

use super::encoding::Format;
use crate::{
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
    let text = state.render_metrics().await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// This description.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", security(()),
    responses((status = 200, description = "OpenAPI 3 description of every route", content_type = "application/json")))]
pub async fn openapi_json() -> Response {
    Json(super::openapi()).into_response()
}
