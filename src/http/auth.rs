//! Extractors that authenticate the caller and authorise scope access.
//!
//! Missing or bad token: 401. A scope the token does not belong to: 404, exactly as for a scope that does not
//! exist, so a token cannot learn which scopes exist. A role that may not do the thing: 403.

use super::observe::DeviceSlot;
use crate::{
    app::AppState,
    auth::{looks_like_token, Principal},
    domain::{Role, ScopeId},
    error::Error,
};
use axum::{
    extract::{FromRequestParts, RawPathParams},
    http::{header, request::Parts},
};

/// The authenticated caller.
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| looks_like_token(t))
            .ok_or(Error::Unauthorized)?;
        let principal = state
            .tokens
            .authenticate(&state.db, token)
            .await?
            .ok_or(Error::Unauthorized)?;
        if let Some(slot) = parts.extensions.get::<DeviceSlot>() {
            slot.set(principal.device_id);
        }
        Ok(Caller(principal))
    }
}

/// A caller with access to the `{scope}` of the path.
pub struct ScopeAccess {
    pub scope: ScopeId,
    pub role: Role,
    pub principal: Principal,
}

impl ScopeAccess {
    /// Owners and managers only; others get 403.
    pub fn require_admin(&self) -> Result<(), Error> {
        if self.role.may_administer() {
            Ok(())
        } else {
            Err(Error::Forbidden("this needs the owner or manager role in the scope"))
        }
    }
}

impl FromRequestParts<AppState> for ScopeAccess {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let Caller(principal) = Caller::from_request_parts(parts, state).await?;
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| Error::NotFound("scope"))?;
        let raw = params
            .iter()
            .find(|(name, _)| *name == "scope")
            .map(|(_, v)| v)
            .ok_or(Error::NotFound("scope"))?;
        let scope = ScopeId::parse(raw).ok_or(Error::NotFound("scope"))?;
        let role = principal.role_in(&scope).ok_or(Error::NotFound("scope"))?;
        Ok(ScopeAccess { scope, role, principal })
    }
}
