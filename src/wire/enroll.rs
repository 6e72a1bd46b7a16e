//! Enrollment by pairing code, rotation and token administration (protocol §3.3).

use crate::domain::Role;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Body of `POST /v1/scopes/{scope}/pairing_codes`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPairingCode {
    /// The user the phone will act as: an existing user, or a new one (then `name` is required).
    pub email: String,
    /// Display name of a new user; ignored for an existing one.
    #[serde(default)]
    pub name: Option<String>,
    /// `owner`, `manager` or `cashier`: the user's role in the scope once the code is redeemed.
    pub role: String,
    /// Suggested device name, used when the phone sends none.
    #[serde(default)]
    pub device_name: Option<String>,
}

/// A pairing code, shown once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PairingCode {
    /// 10 characters of `23456789ABCDEFGHJKLMNPQRSTUVWXYZ`, shown as `XXXXX-XXXXX`; case, dashes and spaces are
    /// ignored when redeemed.
    pub code: String,
    pub expires_at: DateTime<Utc>,
    /// `<DUKASYNC_PUBLIC_URL>/pair#code=<code>`, for a QR code; `null` when `DUKASYNC_PUBLIC_URL` is not set.
    pub url: Option<String>,
    pub scope: String,
    pub email: String,
    pub role: Role,
}

/// Body of `POST /v1/pair` (no Authorization header).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PairRequest {
    pub code: String,
    /// The device's name; defaults to the code's `device_name`, else `phone`.
    #[serde(default)]
    pub device_name: Option<String>,
}

/// A scope the new token sees, with the user's role there.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ScopeRole {
    pub scope: String,
    pub role: Role,
}

/// A device token, shown once: the answer of `POST /v1/pair` and `POST /v1/tokens/rotate`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IssuedToken {
    /// `dks_` + 64 hex digits; send as `Authorization: Bearer`.
    pub token: String,
    pub token_id: Uuid,
    pub device_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub scopes: Vec<ScopeRole>,
}

/// A token of one of the scope's members (never the token itself).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ScopeTokenInfo {
    pub id: Uuid,
    pub device_id: Uuid,
    pub device_name: String,
    pub user_email: String,
    pub role: Role,
    pub label: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: Option<DateTime<Utc>>,
    /// `null`: never expires (tokens issued by the CLI without `--expires-days`).
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<ScopeTokenInfo>,
}

/// Answer of `POST /v1/scopes/{scope}/tokens/{id}/revoke`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RevokedToken {
    pub id: Uuid,
    /// `false` when the token was already revoked (the call is idempotent).
    pub revoked: bool,
}
