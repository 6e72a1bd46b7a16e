//! Reference snapshots: a whole reference dataset with a strong ETag, for a PWA's service worker.

use super::{auth::ScopeAccess, encoding::Format, negotiate};
use crate::{
    error::Result,
    reference::{Answer, BodyFormat, Wanted},
    state::AppState,
    wire::{ErrorBody, ReferenceSnapshot},
};
use axum::{
    extract::{FromRequestParts, Path, State},
    http::{header, request::Parts, HeaderValue, StatusCode},
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
    headers: Revalidation,
) -> Result<Response> {
    let body_format = match format {
        Format::Json => BodyFormat::Json,
        Format::MessagePack => BodyFormat::MessagePack,
    };
    let seen = negotiate::if_none_match(text(&headers.if_none_match));
    let wanted = Wanted {
        dataset: &dataset,
        format: body_format,
        coding: negotiate::coding(text(&headers.accept_encoding)),
        if_none_match: &seen,
    };
    let answer = state.references.snapshot(&access.scope, wanted).await?;
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

fn text(value: &Option<HeaderValue>) -> Option<&str> {
    value.as_ref().and_then(|v| v.to_str().ok())
}

/// The two request headers a snapshot's answer depends on (taking the whole `HeaderMap` would copy it).
pub struct Revalidation {
    if_none_match: Option<HeaderValue>,
    accept_encoding: Option<HeaderValue>,
}

impl<S: Send + Sync> FromRequestParts<S> for Revalidation {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> std::result::Result<Self, Self::Rejection> {
        Ok(Revalidation {
            if_none_match: parts.headers.get(header::IF_NONE_MATCH).cloned(),
            accept_encoding: parts.headers.get(header::ACCEPT_ENCODING).cloned(),
        })
    }
}
