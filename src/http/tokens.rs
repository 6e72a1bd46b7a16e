//! A device token's life after enrollment (protocol §3.3): rotation by the token itself; listing and revoking
//! the scope members' tokens (owners and managers).

use super::{auth::Caller, chart::ScopeAdmin, encoding::Format};
use crate::{
    auth::lifecycle,
    error::{Error, Result},
    state::AppState,
    wire::{ErrorBody, IssuedToken, RevokedToken, TokenList},
};
use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::Response,
};
use uuid::Uuid;

/// A new token for the caller's device; the current token keeps working for `DUKASYNC_ROTATION_GRACE_SECS`.
#[utoipa::path(post, path = "/v1/tokens/rotate", tag = "enrollment",
    responses((status = 201, body = IssuedToken), (status = 401, body = ErrorBody)))]
pub async fn rotate_token(
    State(state): State<AppState>,
    Caller(principal): Caller,
    format: Format,
) -> Result<Response> {
    let token = lifecycle::rotate(&state.db, &state.config.enrollment, &principal).await?;
    Ok(format.reply(StatusCode::CREATED, &token))
}

/// The tokens of the scope members' devices (never the tokens themselves). Owners and managers only.
#[utoipa::path(get, path = "/v1/scopes/{scope}/tokens", tag = "enrollment",
    params(("scope" = String, Path, description = "Scope id")),
    responses((status = 200, body = TokenList), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody, description = "scope_not_found")))]
pub async fn list_tokens(
    State(state): State<AppState>,
    ScopeAdmin(access): ScopeAdmin,
    format: Format,
) -> Result<Response> {
    let list = lifecycle::list(&state.db, &access.scope).await?;
    Ok(format.reply(StatusCode::OK, &list))
}

/// Revokes a token of a member of the scope, at once on every instance. Owners and managers; a manager may
/// not revoke an owner's token.
#[utoipa::path(post, path = "/v1/scopes/{scope}/tokens/{id}/revoke", tag = "enrollment",
    params(("scope" = String, Path, description = "Scope id"), ("id" = Uuid, Path, description = "Token id")),
    responses((status = 200, body = RevokedToken), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "not an owner or manager; an owner's token revoked by a manager"),
        (status = 404, body = ErrorBody, description = "scope_not_found, token_not_found (also another scope's token)")))]
pub async fn revoke_token(
    State(state): State<AppState>,
    ScopeAdmin(access): ScopeAdmin,
    Path((_, id)): Path<(String, String)>,
    format: Format,
) -> Result<Response> {
    let id = Uuid::parse_str(&id).map_err(|_| Error::NotFound("token"))?;
    let revoked = lifecycle::revoke(&state.db, &access.scope, access.role, id).await?;
    Ok(format.reply(StatusCode::OK, &revoked))
}
