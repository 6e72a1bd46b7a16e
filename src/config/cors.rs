//! `DUKASYNC_CORS_ORIGINS`: the web origins whose pages may call `/v1` from a browser (protocol §3.5).
//!
//! Exact origins only, checked at start-up so that a typo fails the start rather than leaving a PWA unable to
//! sync: `scheme://host[:port]`, scheme `http` or `https`, no path, query, fragment or user info. A wildcard
//! is refused: tokens are bearer tokens, so any page holding one could use it, and an allowlist is the point.

use super::ConfigError;

const VARIABLE: &str = "DUKASYNC_CORS_ORIGINS";

/// The origins of a comma-separated list, each in the form a browser sends in `Origin` (lowercase scheme and
/// host, no default port), so that comparing bytes is enough. An absent or empty list: no CORS at all.
pub(super) fn parse_origins(raw: Option<&str>) -> Result<Vec<String>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let mut origins = Vec::new();
    for item in raw.split(',').map(str::trim) {
        let origin = parse_origin(item).map_err(|problem| ConfigError {
            variable: VARIABLE,
            problem: format!("has an invalid origin {item:?}: {problem}"),
        })?;
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    Ok(origins)
}

fn parse_origin(item: &str) -> Result<String, &'static str> {
    if item.is_empty() {
        return Err("empty (a stray comma?)");
    }
    if item.contains('*') {
        return Err("wildcards are not allowed; list exact origins");
    }
    if item.eq_ignore_ascii_case("null") {
        return Err("the `null` origin (files, sandboxed frames) cannot be allowed");
    }
    let url = url::Url::parse(item).map_err(|_| "not scheme://host[:port]")?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("the scheme must be http or https");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("an origin has no user info");
    }
    // `Url` turns "https://a.test" into "https://a.test/": only a bare trailing slash is tolerated.
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err("an origin has no path, query or fragment");
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("no host");
    }
    // The ASCII serialization is what browsers send: lowercase, default port dropped, IDNs in punycode.
    Ok(url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_origins_are_normalised_as_browsers_send_them() {
        let parsed = parse_origins(Some(
            " https://ERP.Duka.test , http://127.0.0.1:5173,https://erp.duka.test:443/",
        ));
        assert_eq!(
            parsed.unwrap(),
            ["https://erp.duka.test", "http://127.0.0.1:5173"],
            "trimmed, lowercased, default port dropped, duplicates merged"
        );
        assert!(parse_origins(None).unwrap().is_empty());
    }

    #[test]
    fn anything_but_an_exact_origin_fails_the_start() {
        for bad in [
            "*",
            "https://*.duka.test",
            "null",
            "erp.duka.test",
            "ftp://erp.duka.test",
            "https://erp.duka.test/app",
            "https://erp.duka.test?x=1",
            "https://erp.duka.test#x",
            "https://user@erp.duka.test",
            "https://a.test,,https://b.test",
            "https://a.test,",
            "file:///tmp/x",
        ] {
            let err = parse_origins(Some(bad)).expect_err(bad);
            assert_eq!(err.variable, VARIABLE);
        }
    }
}
