//! Content negotiation: JSON by default, MessagePack when asked.
//!
//! Responses are MessagePack when `Accept` names `application/msgpack` (also `application/x-msgpack`,
//! `application/vnd.msgpack`); request bodies are read by their `Content-Type`. Query strings go through
//! [`Query`], which answers malformed or unknown parameters with our error body instead of axum's plain text.

use crate::error::ErrorCode;
use crate::{error::Error, state::AppState};
use axum::{
    extract::{FromRequest, FromRequestParts, Request},
    http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use serde::{de::DeserializeOwned, Serialize};
use std::{
    collections::VecDeque,
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
};

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

    /// A complete response whose body is already encoded in this format, in buffers sent as they are (one
    /// vectored write, no copy into one buffer), with its `Content-Length` as for one buffer.
    pub fn reply_parts(self, status: StatusCode, parts: Vec<Bytes>) -> Response {
        let body = Buffers {
            remaining: parts.iter().map(|p| p.len() as u64).sum(),
            parts: parts.into(),
        };
        (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(self.content_type()))],
            axum::body::Body::new(body),
        )
            .into_response()
    }
}

/// A body of several buffers of known total length: it reports that length exactly, so the response gets a
/// `Content-Length` (not chunked encoding), and hands each buffer to hyper whole.
struct Buffers {
    parts: VecDeque<Bytes>,
    remaining: u64,
}

impl http_body::Body for Buffers {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let next = self.parts.pop_front();
        if let Some(part) = &next {
            self.remaining -= part.len() as u64;
        }
        Poll::Ready(next.map(|part| Ok(Frame::data(part))))
    }

    fn is_end_stream(&self) -> bool {
        self.parts.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
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
                Error::bad_request(ErrorCode::MalformedBody, rejection.body_text())
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
            ErrorCode::UnknownField
        } else {
            ErrorCode::MalformedBody
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
            .map_err(|e| Error::bad_request(ErrorCode::InvalidQuery, format!("invalid query string: {e}")))
    }
}
