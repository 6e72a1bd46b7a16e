//! Extractors that authenticate the caller and authorise scope access.
//!
//! Missing or bad token: 401. A scope the token does not belong to: 404, exactly as for a scope that does not
//! exist, so a token cannot learn which scopes exist. A role that may not do the thing: 403.
//!
//! The bearer is either a device token (`dks_...`) or a JWT of the ERP's backend (protocol §3.2); both give a
//! `Principal` the same way, so everything past this extractor is the same for both.

use super::observe::DeviceSlot;
use crate::{
    auth::{jwt::looks_like_jwt, looks_like_token, Principal},
    domain::{Role, ScopeId},
    error::Error,
    state::AppState,
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
            .and_then(bearer_token)
            .ok_or(Error::Unauthorized)?;
        let principal = if looks_like_token(token) {
            state.tokens.authenticate(&state.db, token).await?
        } else {
            let verifier = state.jwt.as_deref();
            state.tokens.authenticate_jwt(&state.db, verifier, token).await?
        }
        .ok_or(Error::Unauthorized)?;
        if let Some(slot) = parts.extensions.get::<DeviceSlot>() {
            slot.set(principal.device_id);
        }
        Ok(Caller(principal))
    }
}

/// The token of an `Authorization` value, read as RFC 7235 §2.1 and RFC 6750 §2.1 say: the scheme `Bearer` in
/// any case, one or more spaces (SP, not tabs), the token; trailing spaces or tabs (optional whitespace around
/// a header value) are ignored. `None` for anything else, including a value shaped neither as a device token
/// nor as a JWT, so a malformed token is refused without a database lookup.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim_start_matches(' ').trim_end_matches([' ', '\t']);
    (looks_like_token(token) || looks_like_jwt(token)).then_some(token)
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

#[cfg(test)]
mod tests {
    use super::bearer_token;

    const TOKEN: &str = "dks_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn the_scheme_is_case_insensitive_and_followed_by_one_or_more_spaces() {
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            for gap in [" ", "  ", "     "] {
                let value = format!("{scheme}{gap}{TOKEN}");
                assert_eq!(bearer_token(&value), Some(TOKEN), "{value:?}");
            }
        }
        assert_eq!(bearer_token(&format!("Bearer {TOKEN} \t")), Some(TOKEN));
    }

    #[test]
    fn anything_else_is_refused() {
        for value in [
            String::new(),
            TOKEN.to_string(),
            format!("Bearer{TOKEN}"),
            format!("Bearer\t{TOKEN}"),
            format!("Bearer \t{TOKEN}"),
            format!("Basic {TOKEN}"),
            format!("Bearerx {TOKEN}"),
            format!(" Bearer {TOKEN}"),
            format!("Bearer {TOKEN} extra"),
            format!("Bearer {TOKEN}0"),
            "Bearer ".to_string(),
        ] {
            assert_eq!(bearer_token(&value), None, "{value:?}");
        }
    }
}
