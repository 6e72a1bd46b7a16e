//! Enrollment by pairing code (protocol §3.3): an owner or manager (or the operator, by CLI) creates a one-time
//! code for a user and a role in a scope; a phone exchanges it, without any token, for a device token.
//!
//! A code is 10 characters of a 32-character alphabet without 0/O and 1/I look-alikes: 32^10 = 2^50 values,
//! short enough to type, and guessing is bounded by [`super::attempts`] (the arithmetic is in §3.3). Only its
//! blake3 hash is stored; it works once and expires (`DUKASYNC_PAIRING_CODE_SECS`).

use super::{attempts::AttemptLimiter, NewToken, Principal};
use crate::{
    config::Enrollment,
    domain::{Role, ScopeId},
    error::{Error, ErrorCode, Result},
    store::{accounts, pairing},
    wire::{IssuedToken, NewPairingCode, PairRequest, PairingCode, ScopeRole},
};
use sqlx::PgPool;
use std::net::IpAddr;

pub const ALPHABET: &[u8; 32] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
pub const CODE_LEN: usize = 10;

/// A fresh code, as shown: `XXXXX-XXXXX`.
fn generate() -> String {
    let bytes: [u8; CODE_LEN] = rand::random();
    // 256 is a multiple of 32, so masking keeps every character equally likely.
    let chars: String = bytes.iter().map(|b| ALPHABET[usize::from(b & 31)] as char).collect();
    format!("{}-{}", &chars[..5], &chars[5..])
}

/// The code as stored (hashed): dashes and spaces dropped, upper case. `None` if it cannot be a code.
fn normalize(raw: &str) -> Option<String> {
    let code: String = raw
        .chars()
        .filter(|c| *c != '-' && *c != ' ')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == CODE_LEN && code.bytes().all(|b| ALPHABET.contains(&b))).then_some(code)
}

/// Creates a code. `creator` is the API caller (already an owner or manager of `scope`); `None` for the CLI.
///
/// The token a code yields speaks for its user in *every* scope they belong to, so a caller may only create
/// codes for a user all of whose memberships they administer, may not create an owner code unless owner, and
/// may not target a user who is an owner anywhere unless owner there too (else a manager could take over an
/// owner's account, or reach a scope they do not run).
pub async fn create(
    db: &PgPool,
    settings: &Enrollment,
    scope: &ScopeId,
    creator: Option<&Principal>,
    req: &NewPairingCode,
) -> Result<PairingCode> {
    let email = valid_email(&req.email)?;
    // The backend role is the ERP's service user's, set by the operator (`dukasync user-add`); a phone never
    // holds it.
    let role = Role::parse(&req.role)
        .filter(|role| !role.is_backend())
        .ok_or_else(|| Error::bad_request(ErrorCode::InvalidRole, "role must be owner, manager or cashier"))?;
    let device_name = req.device_name.as_deref().map(valid_device_name).transpose()?;
    let existing = accounts::user_by_email(db, email).await?;
    if let Some(user) = existing {
        // A token speaks for its user in every scope: a phone of the backend's service user would write as the
        // backend (protocol §14). Redeeming checks this again, in case the role was granted since.
        if accounts::roles_of(db, user)
            .await?
            .iter()
            .any(|(_, role)| role == Role::Backend.as_str())
        {
            return Err(Error::Forbidden(
                "this user is the backend's service user; no phone may pair as it",
            ));
        }
    }
    let display_name = match existing {
        Some(_) => None,
        None => Some(valid_name(req.name.as_deref().unwrap_or(""))?),
    };
    if let Some(creator) = creator {
        let refuse = |why| Err(Error::Forbidden(why));
        if role == Role::Owner && creator.role_in(scope) != Some(Role::Owner) {
            return refuse("only an owner can create an owner's pairing code");
        }
        if let Some(user) = existing {
            for (other, their_role) in accounts::roles_of(db, user).await? {
                let mine = ScopeId::parse(&other).and_then(|s| creator.role_in(&s));
                let allowed = match (mine, Role::parse(&their_role)) {
                    (Some(Role::Owner), _) => true,
                    (Some(Role::Manager), Some(Role::Owner)) => false,
                    (Some(Role::Manager), _) => true,
                    _ => false,
                };
                if !allowed {
                    return refuse("this user belongs to a scope you do not administer, or is an owner");
                }
            }
        }
    } else if accounts::scopes_by_id(db, &[scope.as_str().to_string()])
        .await?
        .is_empty()
    {
        return Err(Error::NotFound("scope"));
    }
    let code = generate();
    let hash = super::hash_token(&normalize(&code).unwrap_or_default());
    let expires_at = pairing::insert(
        db,
        &pairing::NewCode {
            hash: &hash,
            scope,
            email,
            display_name,
            role,
            device_name,
            created_by: creator.map(|c| c.user_id),
            ttl: settings.code_ttl,
        },
    )
    .await?;
    Ok(PairingCode {
        url: settings
            .public_url
            .as_ref()
            .map(|base| format!("{base}/pair#code={code}")),
        code,
        expires_at,
        scope: scope.to_string(),
        email: email.to_string(),
        role,
    })
}

/// Exchanges a code for a device token. Every call counts against the limits of `limiter` for `client`
/// first; a wrong, used or expired code answers the same 400, so the answer reveals nothing about other codes.
pub async fn redeem(
    db: &PgPool,
    settings: &Enrollment,
    limiter: &AttemptLimiter,
    client: IpAddr,
    req: &PairRequest,
) -> Result<IssuedToken> {
    limiter
        .attempt(client)
        .map_err(|retry_after_secs| Error::TooManyAttempts { retry_after_secs })?;
    let device_name = req.device_name.as_deref().map(valid_device_name).transpose()?;
    let refused = || Error::bad_request(ErrorCode::InvalidPairingCode, "unknown, used or expired pairing code");
    let code = normalize(&req.code).ok_or_else(refused)?;
    let token = NewToken::generate();
    let redeemed = pairing::redeem(
        db,
        &super::hash_token(&code),
        device_name,
        &token.hash,
        settings.token_lifetime,
    )
    .await?
    .ok_or_else(refused)?;
    Ok(IssuedToken {
        token: token.plaintext,
        token_id: redeemed.token_id,
        device_id: redeemed.device_id,
        expires_at: redeemed.expires_at,
        scopes: redeemed
            .roles
            .into_iter()
            .filter_map(|(scope, role)| {
                Some(ScopeRole {
                    role: Role::parse(&role)?,
                    scope,
                })
            })
            .collect(),
    })
}

fn valid_email(raw: &str) -> Result<&str> {
    let email = raw.trim();
    let ok = (3..=254).contains(&email.len())
        && email.split('@').count() == 2
        && !email.starts_with('@')
        && !email.ends_with('@')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then_some(email)
        .ok_or_else(|| Error::bad_request(ErrorCode::InvalidEmail, "email must look like name@host"))
}

/// A display name or device name: 1 to 100 characters after trimming, no control characters.
fn plain_text(raw: &str) -> Option<&str> {
    let text = raw.trim();
    (!text.is_empty() && text.chars().count() <= 100 && !text.chars().any(char::is_control)).then_some(text)
}

fn valid_name(raw: &str) -> Result<&str> {
    plain_text(raw)
        .ok_or_else(|| Error::bad_request(ErrorCode::InvalidName, "a new user needs a name of 1 to 100 characters"))
}

fn valid_device_name(raw: &str) -> Result<&str> {
    plain_text(raw).ok_or_else(|| {
        Error::bad_request(
            ErrorCode::InvalidDeviceName,
            "device_name must be 1 to 100 characters, no control characters",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_typed_loosely_and_checked_strictly() {
        let code = generate();
        assert_eq!(code.len(), CODE_LEN + 1);
        let bare = normalize(&code).unwrap();
        assert_eq!(normalize(&code.to_lowercase()), Some(bare.clone()));
        assert_eq!(normalize(&format!(" {} ", code.replace('-', " "))), Some(bare));
        for bad in [
            "",
            "ABCDE-FGHJ",
            "ABCDE-FGHJK2",
            "ABCDE-FGHJ0",
            "ABCDE-FGHJI",
            "ABCDÉ-FGHJK",
        ] {
            assert_eq!(normalize(bad), None, "{bad}");
        }
    }
}
