//! A device token's life after enrollment (protocol §3.3): rotation by the token itself, and listing and
//! revocation by the scope's owners and managers.

use super::{NewToken, Principal};
use crate::{
    config::Enrollment,
    domain::{Role, ScopeId},
    error::{Error, Result},
    store::{token_admin, tokens},
    wire::{IssuedToken, RevokedToken, ScopeRole, ScopeTokenInfo, TokenList},
};
use sqlx::PgPool;
use uuid::Uuid;

/// A new token for the caller's device; the caller's token keeps working for `rotation_grace`, so requests
/// already sent with it (an outbox in flight) still succeed.
pub async fn rotate(db: &PgPool, settings: &Enrollment, caller: &Principal) -> Result<IssuedToken> {
    let token = NewToken::generate();
    let (token_id, device_id, expires_at) = token_admin::rotate(
        db,
        caller.token_id,
        &token.hash,
        settings.token_lifetime,
        settings.rotation_grace,
    )
    .await?
    // Revoked or expired since the (cached) check let the request in.
    .ok_or(Error::Unauthorized)?;
    let mut scopes: Vec<ScopeRole> = caller
        .roles
        .iter()
        .map(|(scope, role)| ScopeRole {
            scope: scope.to_string(),
            role: *role,
        })
        .collect();
    scopes.sort_by(|a, b| a.scope.cmp(&b.scope));
    Ok(IssuedToken {
        token: token.plaintext,
        token_id,
        device_id,
        expires_at,
        scopes,
    })
}

/// The tokens of the scope's members (the caller is an owner or manager of `scope`).
pub async fn list(db: &PgPool, scope: &ScopeId) -> Result<TokenList> {
    let tokens = token_admin::list_in_scope(db, scope)
        .await?
        .into_iter()
        .filter_map(info)
        .collect();
    Ok(TokenList { tokens })
}

/// Revokes token `id` of one of the scope's members; another scope's token is 404 (as if it did not exist),
/// and a manager may not revoke an owner's token (403).
pub async fn revoke(db: &PgPool, scope: &ScopeId, caller_role: Role, id: Uuid) -> Result<RevokedToken> {
    let token = token_admin::find_in_scope(db, scope, id)
        .await?
        .ok_or(Error::NotFound("token"))?;
    if token.role == Role::Owner.as_str() && caller_role != Role::Owner {
        return Err(Error::Forbidden("only an owner can revoke an owner's token"));
    }
    let revoked = tokens::revoke(db, id).await?;
    Ok(RevokedToken { id, revoked })
}

fn info(t: token_admin::ScopeToken) -> Option<ScopeTokenInfo> {
    Some(ScopeTokenInfo {
        role: Role::parse(&t.role)?,
        id: t.id,
        device_id: t.device_id,
        device_name: t.device_name,
        user_email: t.user_email,
        label: t.label,
        created_at: t.created_at,
        last_seen_at: t.last_seen_at,
        expires_at: t.expires_at,
        revoked_at: t.revoked_at,
    })
}
