//! Content negotiation: JSON by default, MessagePack when asked.
//!
//! Responses are MessagePack when `Accept` names `application/msgpack` (also `application/x-msgpack`,
//! `application/vnd.msgpack`); request bodies are read by their `Content-Type`. Query strings go through
//! [`Query`], which answers malformed or unknown parameters with our error body instead of axum's plain text.

use crate::{app::AppState, error::Error};
use axum::{
    extract::{FromRequest, FromRequestParts, Request},
    http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};

pub const MSGPACK: &str = "application/msgpack";
const MSGPACK_ALIASES: [&str; 3] = [MSGPACK, "application/x-msgpack", "application/vnd.msgpack"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    MessagePack,
}

impl Format {
    /// The response format the request asked for.
    pub fn from_accept(headers: &HeaderMap) -> Format {
        let wants_msgpack = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|range| MSGPACK_ALIASES.contains(&range.split(';').next().unwrap_or("").trim()));
        if wants_msgpack {
            Format::MessagePack
        } else {
            Format::Json
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::MessagePack => MSGPACK,
        }
    }

    pub fn encode<T: Serialize>(self, value: &T) -> Result<Vec<u8>, Error> {
        match self {
            Format::Json => serde_json::to_vec(value).map_err(|e| Error::Internal(e.into())),
            Format::MessagePack => crate::wire::to_msgpack(value).map_err(|e| Error::Internal(e.into())),
        }
    }

    /// A complete response with `value` encoded in this format.
    pub fn reply<T: Serialize>(self, status: StatusCode, value: &T) -> Response {
        match self.encode(value) {
            Ok(bytes) => self.reply_bytes(status, bytes),
            Err(err) => err.into_response(),
        }
    }

    /// A complete response whose body is already encoded in this format.
    pub fn reply_bytes(self, status: StatusCode, body: Vec<u8>) -> Response {
        (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(self.content_type()))],
            body,
        )
            .into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Format {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        Ok(Format::from_accept(&parts.headers))
    }
}

/// A request body in JSON or MessagePack, chosen by `Content-Type`. Unknown fields are refused by the target
/// types (`deny_unknown_fields`); the size limit is enforced by the router's body-limit layer.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Body<T> {
    type Rejection = Error;
    async fn from_request(req: Request, state: &AppState) -> Result<Self, Error> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase());
        let format = match content_type.as_deref() {
            Some("application/json") => Format::Json,
            Some(t) if MSGPACK_ALIASES.contains(&t) => Format::MessagePack,
            _ => {
                return Err(Error::UnsupportedMediaType(
                    "send the body as application/json or application/msgpack".to_string(),
                ))
            }
        };
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::PayloadTooLarge {
                    limit: state.config.limits.max_body_bytes,
                }
            } else {
                Error::bad_request("malformed_body", rejection.body_text())
            }
        })?;
        decode(format, &bytes).map(Body)
    }
}

/// Decodes a body; errors name what was wrong without echoing the body.
pub fn decode<T: DeserializeOwned>(format: Format, bytes: &[u8]) -> Result<T, Error> {
    let result = match format {
        Format::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
        Format::MessagePack => {
            T::deserialize(&mut rmp_serde::Deserializer::new(bytes).with_human_readable()).map_err(|e| e.to_string())
        }
    };
    result.map_err(|message| {
        let code = if message.contains("unknown field") {
            "unknown_field"
        } else {
            "malformed_body"
        };
        Error::bad_request(code, message)
    })
}

/// Query-string parameters, refused with `invalid_query` when malformed or unknown.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        let raw = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(raw)
            .map(Query)
            .map_err(|e| Error::bad_request("invalid_query", format!("invalid query string: {e}")))
    }
}
