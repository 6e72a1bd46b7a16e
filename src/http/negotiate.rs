//! Request headers a response depends on, parsed here so the features below see typed values: the content
//! coding of `Accept-Encoding` and the entity tags of `If-None-Match` (`reference::Wanted`).

use crate::reference::{Coding, IfNoneMatch};
use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts},
};

/// The coding a request accepts best (see [`coding`]), as an extractor. A header that is not text names none.
#[derive(Debug, Clone, Copy)]
pub struct AcceptEncoding(pub Coding);

impl<S: Send + Sync> FromRequestParts<S> for AcceptEncoding {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let value = parts.headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok());
        Ok(AcceptEncoding(coding(value)))
    }
}

/// The coding to use for an `Accept-Encoding` value: the supported one with the highest weight above zero; on
/// equal weights br, then zstd, then gzip. `*` stands for codings not named. Identity otherwise.
pub fn coding(accept_encoding: Option<&str>) -> Coding {
    let Some(header) = accept_encoding else {
        return Coding::Identity;
    };
    let mut named: Vec<(String, f32)> = Vec::new();
    for item in header.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        if name.is_empty() {
            continue;
        }
        let mut q = 1.0f32;
        for param in parts {
            if let Some((k, v)) = param.split_once('=') {
                if k.trim().eq_ignore_ascii_case("q") {
                    q = v.trim().parse().unwrap_or(0.0);
                }
            }
        }
        named.push((name, q));
    }
    let weight = |token: &str| -> f32 {
        let find = |n: &str| named.iter().find(|(name, _)| name == n).map(|(_, q)| *q);
        find(token)
            .or_else(|| if token == "gzip" { find("x-gzip") } else { None })
            .or_else(|| find("*"))
            .unwrap_or(0.0)
    };
    let mut best = (Coding::Identity, 0.0f32);
    for coding in Coding::COMPRESSED {
        let q = weight(coding.token().unwrap_or(""));
        if q > best.1 {
            best = (coding, q);
        }
    }
    best.0
}

/// The entity tags of an `If-None-Match` value: `*`, or the opaque parts of the quoted tags (weak ones too:
/// revalidation compares weakly). Anything unquoted is not an entity tag and matches nothing.
pub fn if_none_match(value: Option<&str>) -> IfNoneMatch {
    let Some(value) = value else {
        return IfNoneMatch::None;
    };
    let mut tags = Vec::new();
    for tag in value.split(',').map(str::trim) {
        if tag == "*" {
            return IfNoneMatch::Any;
        }
        let tag = tag.strip_prefix("W/").unwrap_or(tag);
        if let Some(opaque) = tag.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            tags.push(opaque.to_string());
        }
    }
    if tags.is_empty() {
        IfNoneMatch::None
    } else {
        IfNoneMatch::Tags(tags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_picks_the_heaviest_supported_coding() {
        assert_eq!(coding(None), Coding::Identity);
        assert_eq!(coding(Some("gzip, deflate, br, zstd")), Coding::Br);
        assert_eq!(coding(Some("gzip, deflate")), Coding::Gzip);
        assert_eq!(coding(Some("br;q=0.5, gzip;q=0.8")), Coding::Gzip);
        assert_eq!(coding(Some("br;q=0, zstd")), Coding::Zstd);
        assert_eq!(coding(Some("*")), Coding::Br);
        assert_eq!(coding(Some("*;q=0, identity")), Coding::Identity);
        assert_eq!(coding(Some("deflate, identity")), Coding::Identity);
        assert_eq!(coding(Some("GZIP;Q=1")), Coding::Gzip);
        assert_eq!(coding(Some("gzip;q=nonsense")), Coding::Identity);
    }

    #[test]
    fn if_none_match_keeps_quoted_tags_weak_or_strong_and_matches_ignoring_the_coding() {
        let plain = "\"0123abcd\"";
        let matches = |header: Option<&str>| if_none_match(header).matches(plain);
        assert!(matches(Some(plain)));
        assert!(
            matches(Some("\"0123abcd.gzip\"")),
            "the coding does not change the decoded copy"
        );
        assert!(matches(Some("W/\"0123abcd\"")));
        assert!(matches(Some("\"zzz\", \"0123abcd.br\"")));
        assert!(matches(Some("*")));
        assert!(
            !matches(Some("\"0123abcd.msgpack\"")),
            "MessagePack is another representation"
        );
        assert!(!matches(Some("0123abcd")), "unquoted is not an entity tag");
        assert!(!matches(None));
        assert!(!matches(Some("\"other\"")));
    }
}
