//! Backend writes over HTTP (protocol §14): the ERP's service user writes rows, in batches.

use super::{
    auth::ScopeAccess,
    encoding::{Body, Format},
};
use crate::{
    error::{Error, Result},
    inbox::rows,
    state::AppState,
    wire::{ErrorBody, RowsRequest, RowsResponse},
};
use axum::{extract::State, http::StatusCode, response::Response};

/// Puts, patches and deletes rows as the backend, in order, in one transaction; each write id answers once.
#[utoipa::path(post, path = "/v1/scopes/{scope}/rows", tag = "backend",
    params(("scope" = String, Path, description = "Scope id")),
    request_body(content = RowsRequest, content_type = "application/json"),
    responses(
        (status = 200, body = RowsResponse, description = "each write applied, version_mismatch or not_found"),
        (status = 400, body = ErrorBody, description = "malformed batch or write (details.index); nothing written"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "the caller's role in the scope is not `backend`"),
        (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody, description = "payload_too_large or batch_too_large"),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "payload_mismatch: a write id used with another payload"),
        (status = 503, body = ErrorBody, description = "unavailable: nothing applied, retry")))]
pub async fn post_rows(
    State(state): State<AppState>,
    access: ScopeAccess,
    format: Format,
    Body(request): Body<RowsRequest>,
) -> Result<Response> {
    if !access.role.is_backend() {
        return Err(Error::Forbidden("this needs the backend role in the scope"));
    }
    let batch = rows::check(request, state.config.limits.max_batch_ops)?;
    let response = rows::write_rows(&state.db, &access.scope, &batch).await?;
    Ok(format.reply(StatusCode::OK, &response))
}
