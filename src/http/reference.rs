//! Reference snapshots: a whole reference dataset with a strong ETag, for a PWA's service worker.

use super::{auth::ScopeAccess, encoding::Format};
use crate::{
    app::AppState,
    error::Result,
    sync::reference::{self, Answer, BodyFormat, Coding},
    wire::{ErrorBody, ReferenceSnapshot},
};
use axum::{
    extract::{Path, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};

/// Every answer, 304 included, carries these: the client must revalidate before each use, and a shared
/// cache must never hand one device's copy to another or mix encodings.
const CACHE_CONTROL: &str = "private, no-cache";
const VARY: &str = "Accept, Accept-Encoding, Authorization";

/// A whole reference dataset (`products`, `price_lists`, `payment_methods`, `tax_rates`, `accounts`) in
/// canonical form; `If-None-Match` with the current ETag answers 304 without a body.
#[utoipa::path(get, path = "/v1/scopes/{scope}/reference/{dataset}", tag = "reference",
    params(("scope" = String, Path, description = "Scope id"),
           ("dataset" = String, Path, description = "A collection declared as reference data"),
           ("If-None-Match" = Option<String>, Header, description = "ETag of the copy the client holds")),
    responses(
        (status = 200, body = ReferenceSnapshot,
         headers(("ETag" = String), ("Cache-Control" = String), ("Vary" = String))),
        (status = 304, description = "The client's copy is current"),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "scope_not_found, dataset_not_found")))]
pub async fn get_reference(
    State(state): State<AppState>,
    access: ScopeAccess,
    Path((_, dataset)): Path<(String, String)>,
    format: Format,
    headers: HeaderMap,
) -> Result<Response> {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let body_format = match format {
        Format::Json => BodyFormat::Json,
        Format::MessagePack => BodyFormat::MessagePack,
    };
    let coding = Coding::negotiate(text(header::ACCEPT_ENCODING));
    let answer = reference::snapshot(
        &state.cache,
        &state.hub.heads,
        &state.db,
        &access.scope,
        &dataset,
        body_format,
        coding,
        text(header::IF_NONE_MATCH),
    )
    .await?;
    let (status, etag, body) = match answer {
        Answer::NotModified { etag } => (StatusCode::NOT_MODIFIED, etag, None),
        Answer::Full(rep) => (StatusCode::OK, rep.etag, Some((rep.body, rep.coding))),
    };
    let mut response = match body {
        None => status.into_response(),
        Some((bytes, coding)) => {
            let mut response = (
                status,
                [(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()))],
                bytes,
            )
                .into_response();
            if let Some(token) = coding.token() {
                response
                    .headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static(token));
            }
            response
        }
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL));
    headers.insert(header::VARY, HeaderValue::from_static(VARY));
    Ok(response)
}
