//! Enrollment by pairing code (protocol §3.3): creating a code (owners and managers), redeeming it (no token).

use super::{
    chart::ScopeAdmin,
    encoding::{Body, Format},
};
use crate::{
    auth::pairing,
    error::Result,
    state::AppState,
    wire::{ErrorBody, IssuedToken, NewPairingCode, PairRequest, PairingCode},
};
use axum::{
    extract::{ConnectInfo, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use std::net::{IpAddr, SocketAddr};

/// Creates a one-time pairing code for a user and a role in the scope.
#[utoipa::path(post, path = "/v1/scopes/{scope}/pairing_codes", tag = "enrollment",
    params(("scope" = String, Path, description = "Scope id")),
    request_body(content = NewPairingCode, content_type = "application/json"),
    responses(
        (status = 201, body = PairingCode),
        (status = 400, body = ErrorBody, description = "invalid_email, invalid_role, invalid_name, invalid_device_name, malformed_body, unknown_field"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "not an owner or manager; an owner code by a manager; a user of a scope the caller does not administer"),
        (status = 404, body = ErrorBody, description = "scope_not_found"),
        (status = 415, body = ErrorBody)))]
pub async fn create_pairing_code(
    State(state): State<AppState>,
    ScopeAdmin(access): ScopeAdmin,
    format: Format,
    Body(new): Body<NewPairingCode>,
) -> Result<Response> {
    let code = pairing::create(
        &state.db,
        &state.config.enrollment,
        &access.scope,
        Some(&access.principal),
        &new,
    )
    .await?;
    Ok(format.reply(StatusCode::CREATED, &code))
}

/// Exchanges a pairing code for a device token. Needs no Authorization header.
#[utoipa::path(post, path = "/v1/pair", tag = "enrollment", security(()),
    request_body(content = PairRequest, content_type = "application/json"),
    responses(
        (status = 201, body = IssuedToken),
        (status = 400, body = ErrorBody, description = "invalid_pairing_code (unknown, used or expired), invalid_device_name, malformed_body, unknown_field"),
        (status = 415, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "too_many_attempts, with Retry-After")))]
pub async fn pair(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    format: Format,
    Body(req): Body<PairRequest>,
) -> Result<Response> {
    let client = client_address(peer.ip(), &headers);
    let token = pairing::redeem(
        &state.db,
        &state.config.enrollment,
        &state.pairing_attempts,
        client,
        &req,
    )
    .await?;
    Ok(format.reply(StatusCode::CREATED, &token))
}

/// The address attempts are counted against: the peer's, unless the peer is a proxy on this machine (the nginx
/// site of `deploy/`), whose `X-Forwarded-For` ends with the address it saw. Only the last entry is trusted:
/// the earlier ones are whatever the client sent.
fn client_address(peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    if !peer.is_loopback() {
        return peer;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|last| last.trim().parse().ok())
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_local_proxy_names_the_client() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "6.6.6.6, 10.1.2.3".parse().unwrap());
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let remote: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(client_address(local, &headers), "10.1.2.3".parse::<IpAddr>().unwrap());
        assert_eq!(client_address(remote, &headers), remote);
        assert_eq!(client_address(local, &HeaderMap::new()), local);
    }
}
