//! Adding accounts and payment methods to a scope (owners and managers): what a new business needs beyond the
//! standard chart it starts with (`setup`).

use super::{
    auth::ScopeAccess,
    encoding::{Body, Format},
};
use crate::{
    error::Result,
    setup,
    state::AppState,
    wire::{ErrorBody, NewAccount, NewPaymentMethod, RowCreated},
};
use axum::{
    extract::{FromRequestParts, State},
    http::{request::Parts, StatusCode},
    response::Response,
};

/// An owner or manager of the `{scope}` of the path. An extractor, so that the role is checked (403) before the
/// body is read (400), in the order of protocol §3.
pub struct ScopeAdmin(pub(super) ScopeAccess);

impl FromRequestParts<AppState> for ScopeAdmin {
    type Rejection = crate::error::Error;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let access = ScopeAccess::from_request_parts(parts, state).await?;
        access.require_admin()?;
        Ok(ScopeAdmin(access))
    }
}

/// Adds an account to the scope's chart; commands can post to it as soon as this answers.
#[utoipa::path(post, path = "/v1/scopes/{scope}/accounts", tag = "scopes",
    params(("scope" = String, Path, description = "Scope id")),
    request_body(content = NewAccount, content_type = "application/json"),
    responses(
        (status = 201, body = RowCreated),
        (status = 400, body = ErrorBody, description = "invalid_account, invalid_name, invalid_account_type, account_exists, malformed_body, unknown_field"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "not an owner or manager of the scope"),
        (status = 404, body = ErrorBody, description = "scope_not_found"),
        (status = 415, body = ErrorBody)))]
pub async fn add_account(
    State(state): State<AppState>,
    ScopeAdmin(access): ScopeAdmin,
    format: Format,
    Body(new): Body<NewAccount>,
) -> Result<Response> {
    let created = setup::add_account(&state.db, &access.scope, &new).await?;
    Ok(format.reply(StatusCode::CREATED, &created))
}

/// Adds a payment method posting to one of the scope's asset accounts; usable by commands at once.
#[utoipa::path(post, path = "/v1/scopes/{scope}/payment_methods", tag = "scopes",
    params(("scope" = String, Path, description = "Scope id")),
    request_body(content = NewPaymentMethod, content_type = "application/json"),
    responses(
        (status = 201, body = RowCreated),
        (status = 400, body = ErrorBody, description = "invalid_payment_method, invalid_name, unknown_account, payment_method_exists, malformed_body, unknown_field"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "not an owner or manager of the scope"),
        (status = 404, body = ErrorBody, description = "scope_not_found"),
        (status = 415, body = ErrorBody)))]
pub async fn add_payment_method(
    State(state): State<AppState>,
    ScopeAdmin(access): ScopeAdmin,
    format: Format,
    Body(new): Body<NewPaymentMethod>,
) -> Result<Response> {
    let created = setup::add_payment_method(&state.db, &access.scope, &new).await?;
    Ok(format.reply(StatusCode::CREATED, &created))
}
