//! Operation replay: a device's outbox, applied exactly once.

use super::{
    auth::ScopeAccess,
    encoding::{Body, Format},
};
use crate::{
    error::{Error, Result},
    replay::{Push, Replayer},
    state::AppState,
    wire::{ErrorBody, OpsRequest, OpsResponse},
};
use axum::{extract::State, http::StatusCode, response::Response};

/// Applies a batch of one client's operations, in order, each exactly once; replays return stored results.
#[utoipa::path(post, path = "/v1/scopes/{scope}/ops", tag = "replay",
    params(("scope" = String, Path, description = "Scope id")),
    request_body(content = OpsRequest, content_type = "application/json"),
    responses(
        (status = 200, body = OpsResponse),
        (status = 400, body = ErrorBody, description = "malformed batch or operation; nothing written"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "the backend role"),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "sequence_gap (details.expected_seq) or client_id_taken"),
        (status = 413, body = ErrorBody, description = "payload_too_large or batch_too_large"),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "payload_mismatch or op_id_reused"),
        (status = 503, body = ErrorBody, description = "unavailable: nothing applied, retry")))]
pub async fn post_ops(
    State(state): State<AppState>,
    access: ScopeAccess,
    format: Format,
    Body(batch): Body<OpsRequest>,
) -> Result<Response> {
    if access.role.is_backend() {
        // The backend writes rows through `/rows`, where its writes are checked as its own; here it would pose
        // as a phone.
        return Err(Error::Forbidden(
            "the backend role writes through /v1/scopes/{scope}/rows",
        ));
    }
    let who = Replayer {
        device_id: access.principal.device_id,
        user_id: access.principal.user_id,
        role: access.role,
    };
    let push = Push::new(who, batch, state.config.limits.max_batch_ops)?;
    let response = state.replays.replay(&state.db, &access.scope, push).await?;
    Ok(format.reply(StatusCode::OK, &response))
}
