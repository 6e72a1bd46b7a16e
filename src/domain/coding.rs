//! Content codings (`Accept-Encoding` / `Content-Encoding`): what snapshots and pages of the feed may be
//! compressed with.

/// A content coding, as negotiated by `Accept-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coding {
    Identity,
    Gzip,
    Br,
    Zstd,
}

impl Coding {
    /// The compressing codings, in the order of preference on equal weights.
    pub const COMPRESSED: [Coding; 3] = [Coding::Br, Coding::Zstd, Coding::Gzip];

    /// The `Content-Encoding` token (`None` for identity).
    pub fn token(self) -> Option<&'static str> {
        match self {
            Coding::Identity => None,
            Coding::Gzip => Some("gzip"),
            Coding::Br => Some("br"),
            Coding::Zstd => Some("zstd"),
        }
    }
}
