//! The conflicts admin API: list, inspect and resolve what sync could not decide (owners and managers).

use super::{
    auth::Caller,
    encoding::{Body, Format, Query},
};
use crate::{
    conflicts::{self, Admin},
    error::Result,
    state::AppState,
    wire::{ConflictDetail, ConflictList, ConflictsQuery, ErrorBody, ResolveRequest},
};
use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::Response,
};
use uuid::Uuid;

/// Conflicts of the scopes the caller administers, newest first, one page at a time.
#[utoipa::path(get, path = "/v1/admin/conflicts", tag = "conflicts",
    params(ConflictsQuery),
    responses(
        (status = 200, body = ConflictList),
        (status = 400, body = ErrorBody, description = "invalid_query, invalid_cursor, unknown_collection"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "the caller administers no scope, or not `scope`"),
        (status = 404, body = ErrorBody, description = "scope_not_found")))]
pub async fn list_conflicts(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Query(query): Query<ConflictsQuery>,
    format: Format,
) -> Result<Response> {
    let admin = Admin::from(&principal);
    let list = conflicts::list(&state.db, &admin, query).await?;
    Ok(format.reply(StatusCode::OK, &list))
}

/// One conflict with everything needed to decide it.
#[utoipa::path(get, path = "/v1/admin/conflicts/{id}", tag = "conflicts",
    params(("id" = Uuid, Path, description = "Conflict id")),
    responses(
        (status = 200, body = ConflictDetail),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "conflict_not_found")))]
pub async fn get_conflict(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Path(id): Path<String>,
    format: Format,
) -> Result<Response> {
    let admin = Admin::from(&principal);
    let detail = conflicts::show(&state.db, &admin, parse_id(&id)?).await?;
    Ok(format.reply(StatusCode::OK, &detail))
}

/// Resolves a conflict: the decided row is written as a normal change, and the decision is recorded.
#[utoipa::path(post, path = "/v1/admin/conflicts/{id}/resolve", tag = "conflicts",
    params(("id" = Uuid, Path, description = "Conflict id")),
    request_body(content = ResolveRequest, content_type = "application/json"),
    responses(
        (status = 200, body = ConflictDetail),
        (status = 400, body = ErrorBody, description = "invalid_decision, invalid_value, invalid_note, float_not_allowed, malformed_body, unknown_field"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "conflict_not_found"),
        (status = 409, body = ErrorBody, description = "already_resolved or row_moved_on; details.conflict is the conflict now"),
        (status = 415, body = ErrorBody)))]
pub async fn resolve_conflict(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Path(id): Path<String>,
    format: Format,
    Body(request): Body<ResolveRequest>,
) -> Result<Response> {
    let admin = Admin::from(&principal);
    let detail = conflicts::resolve(&state.db, &admin, parse_id(&id)?, request).await?;
    Ok(format.reply(StatusCode::OK, &detail))
}

/// A malformed id names no conflict: 404, like an unknown one.
fn parse_id(raw: &str) -> Result<Uuid> {
    Uuid::parse_str(raw).map_err(|_| crate::error::Error::NotFound("conflict"))
}
