//! Turns [`Error`] into the documented error body, in the format the client asked for.
//!
//! `IntoResponse` cannot see the request, so it writes JSON and attaches the error parts to the response;
//! [`encode_errors`] (called for every response by `observe::observe`) then re-encodes them as MessagePack when
//! the request's `Accept` asked for it. Error responses that did not come from [`Error`] (axum's own
//! rejections, tower layers) are rewritten into the same shape there, so every 4xx and 5xx has one body shape.

use super::encoding::Format;
use crate::error::ErrorCode;
use crate::{
    error::Error,
    wire::{ErrorBody, ErrorDetail},
};
use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};

#[derive(Clone)]
struct ErrorParts {
    code: String,
    message: String,
    details: Option<serde_json::Value>,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match &self {
            Error::Internal(err) => tracing::error!(error = ?err, "internal error"),
            Error::Unavailable(cause) => tracing::warn!(cause, "dependency unavailable"),
            _ => {}
        }
        let parts = ErrorParts {
            code: self.code().to_string(),
            message: self.public_message(),
            details: self.details(),
        };
        let mut response = render(Format::Json, self.status(), &parts);
        if matches!(self, Error::Unauthorized) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Error::TooManyAttempts { retry_after_secs } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response.extensions_mut().insert(parts);
        response
    }
}

fn render(format: Format, status: StatusCode, parts: &ErrorParts) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: parts.code.clone(),
            message: parts.message.clone(),
            details: parts.details.clone(),
        },
    };
    let bytes = format
        .encode(&body)
        .unwrap_or_else(|_| br#"{"error":{"code":"internal","message":"internal error"}}"#.to_vec());
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()))],
        bytes,
    )
        .into_response()
}

/// Gives an error response the documented body in the negotiated `format` (called by `observe::observe` for
/// every response; others pass through untouched).
pub fn encode_errors(format: Format, max_body_bytes: usize, response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    match response.extensions().get::<ErrorParts>().cloned() {
        Some(_) if format == Format::Json => response,
        Some(parts) => keep_headers(response, render(format, status, &parts)),
        // A structured answer of our own that happens to be an error status (readiness: 503 with its report).
        None if has_structured_body(&response) => response,
        None => {
            let error = foreign_error(status, max_body_bytes);
            let parts = ErrorParts {
                code: error.code().to_string(),
                message: error.public_message(),
                details: error.details(),
            };
            keep_headers(response, render(format, status, &parts))
        }
    }
}

fn has_structured_body(response: &Response) -> bool {
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    content_type == Format::Json.content_type() || content_type == Format::MessagePack.content_type()
}

/// Our error for a status produced outside our code (axum rejections, tower-http layers).
fn foreign_error(status: StatusCode, body_limit: usize) -> Error {
    match status {
        StatusCode::NOT_FOUND => Error::RouteNotFound,
        StatusCode::METHOD_NOT_ALLOWED => Error::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => Error::PayloadTooLarge { limit: body_limit },
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Error::UnsupportedMediaType("unsupported content type".into()),
        StatusCode::SERVICE_UNAVAILABLE => Error::Overloaded,
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => {
            Error::bad_request(ErrorCode::Timeout, "the request took too long")
        }
        s if s.is_client_error() => {
            Error::bad_request(ErrorCode::BadRequest, s.canonical_reason().unwrap_or("bad request"))
        }
        _ => Error::Internal(anyhow::anyhow!("unexpected {status} from a layer")),
    }
}

/// Carries over headers such as `WWW-Authenticate` and `x-request-id`, replacing only the body.
fn keep_headers(original: Response, mut replacement: Response) -> Response {
    let (parts, _) = original.into_parts();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            replacement.headers_mut().insert(name.clone(), value.clone());
        }
    }
    replacement
}
