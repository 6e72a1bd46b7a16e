//! The change feed and its checksum.

use super::{
    auth::ScopeAccess,
    encoding::{Format, Query},
    negotiate::AcceptEncoding,
    observe::Admission,
};
use crate::{
    error::Result,
    feed::{self, longpoll::WaitSlot, Pull, Waiter},
    state::AppState,
    wire::{ChangesPage, ChangesQuery, ChecksumQuery, ChecksumReport, ErrorBody},
};
use axum::{
    extract::State,
    http::{header, HeaderValue, StatusCode},
    response::Response,
    Extension,
};

/// Every page's answer depends on these request headers (the format and the coding), so a cache in between
/// must key on them.
const VARY: &str = "Accept, Accept-Encoding";

/// Changes after `since`, in version order, one page at a time; with `wait`, a long-poll. Compressed (br,
/// zstd, gzip) when `Accept-Encoding` asks and the page is at least 1 KiB (protocol §7.2).
#[utoipa::path(get, path = "/v1/scopes/{scope}/changes", tag = "feed",
    params(("scope" = String, Path, description = "Scope id"), ChangesQuery),
    responses(
        (status = 200, body = ChangesPage, headers(("Content-Encoding" = String), ("Vary" = String))),
        (status = 400, body = ErrorBody, description = "invalid_cursor, invalid_query, unknown_collection"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 410, body = ErrorBody, description = "reset_required: drop the local copy and pull from 0")))]
pub async fn get_changes(
    State(state): State<AppState>,
    access: ScopeAccess,
    admission: Option<Extension<Admission>>,
    waited: Option<Extension<WaitSlot>>,
    Query(query): Query<ChangesQuery>,
    format: Format,
    AcceptEncoding(accepted): AcceptEncoding,
) -> Result<Response> {
    let release = move || {
        if let Some(Extension(admission)) = &admission {
            admission.release();
        }
    };
    let waited = waited.map(|Extension(slot)| slot).unwrap_or_default();
    let waiter = Waiter {
        polls: &state.longpolls,
        device: access.principal.device_id,
        on_park: &release,
        waited: &waited,
    };
    let pull = Pull::from_query(
        query.since.as_deref(),
        query.limit,
        query.wait,
        query.collections.as_deref(),
        &state.config.limits,
    )?;
    let page = state.feed.pull(&access.scope, &pull, &waiter).await?;
    let (parts, coding) = match format {
        Format::Json => state.feed.encode_json(&access.scope, &page, accepted).await?,
        Format::MessagePack => feed::encode_body(format.encode(&page.to_wire()?)?, accepted).await?,
    };
    let mut response = format.reply_parts(StatusCode::OK, parts);
    let headers = response.headers_mut();
    if let Some(token) = coding.token() {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(token));
    }
    headers.append(header::VARY, HeaderValue::from_static(VARY));
    Ok(response)
}

/// The scope's state checksum at a version (default: head), for a client to prove its copy is equal.
#[utoipa::path(get, path = "/v1/scopes/{scope}/checksum", tag = "feed",
    params(("scope" = String, Path, description = "Scope id"), ChecksumQuery),
    responses(
        (status = 200, body = ChecksumReport),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 410, body = ErrorBody, description = "reset_required: the version is not in the retained history")))]
pub async fn get_checksum(
    State(state): State<AppState>,
    access: ScopeAccess,
    Query(query): Query<ChecksumQuery>,
    format: Format,
) -> Result<Response> {
    let report = state.feed.checksum(&access.scope, query.version).await?;
    Ok(format.reply(StatusCode::OK, &report))
}
