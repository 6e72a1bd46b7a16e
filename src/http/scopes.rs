//! What the caller may see: their scopes, the declared collections, and (administrators) the scope's devices.

use super::{
    auth::{Caller, ScopeAccess},
    encoding::Format,
};
use crate::{
    domain::{collections, Role, ScopeId},
    error::Result,
    state::AppState,
    store::accounts,
    wire::{CollectionList, DeviceInfo, DeviceList, ErrorBody, ScopeInfo, ScopeList},
};
use axum::{extract::State, http::StatusCode, response::Response};

/// The scopes this token may see, with the caller's role and each scope's head version.
#[utoipa::path(get, path = "/v1/scopes", tag = "scopes",
    responses((status = 200, body = ScopeList), (status = 401, body = ErrorBody)))]
pub async fn list_scopes(State(state): State<AppState>, Caller(principal): Caller, format: Format) -> Result<Response> {
    let ids: Vec<String> = principal.roles.keys().map(|s| s.as_str().to_string()).collect();
    let rows = accounts::scopes_by_id(&state.db, &ids).await?;
    let scopes = rows
        .into_iter()
        .filter_map(|(id, name, head)| {
            let role = principal.role_in(&ScopeId::parse(&id)?)?;
            Some(ScopeInfo { id, name, role, head })
        })
        .collect();
    Ok(format.reply(StatusCode::OK, &ScopeList { scopes }))
}

/// The declared collections: who may write each, its conflict policy, and whether it is reference data.
#[utoipa::path(get, path = "/v1/collections", tag = "scopes",
    responses((status = 200, body = CollectionList), (status = 401, body = ErrorBody)))]
pub async fn list_collections(_caller: Caller, format: Format) -> Response {
    format.reply(
        StatusCode::OK,
        &CollectionList {
            collections: collections::all().to_vec(),
        },
    )
}

/// The devices of the scope's members, with when each was last seen. Owners and managers only.
#[utoipa::path(get, path = "/v1/scopes/{scope}/devices", tag = "scopes",
    params(("scope" = String, Path, description = "Scope id")),
    responses((status = 200, body = DeviceList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_devices(State(state): State<AppState>, access: ScopeAccess, format: Format) -> Result<Response> {
    access.require_admin()?;
    let devices = accounts::devices_in_scope(&state.db, &access.scope)
        .await?
        .into_iter()
        .filter_map(|d| {
            Some(DeviceInfo {
                role: Role::parse(&d.role)?,
                id: d.id,
                name: d.name,
                user_email: d.user_email,
                last_seen_at: d.last_seen_at,
                live_tokens: d.live_tokens,
            })
        })
        .collect();
    Ok(format.reply(StatusCode::OK, &DeviceList { devices }))
}
