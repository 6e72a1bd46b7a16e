//! Feed cursors: `"0"`, `"{version}"`, `"{version}.{tag}"` or `"{version}.{tag}.{floor}"`.
//!
//! `tag` (16 hex digits) is the random tag of the change at `version`; it lets the server recognise a cursor
//! from another history (a restored backup, another database) and answer "reset" instead of silently skipping
//! changes. `floor` appears only on cursors that point below the scope's compaction floor, which the server
//! issues while a device pages through the compacted part of the log from zero: such a cursor is valid only
//! under the compaction it was issued under. A device that synced before a compaction and is still below the
//! new floor may have missed compacted tombstones, so its cursor (with another floor, or none) must reset.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub version: i64,
    pub tag: Option<i64>,
    pub floor: Option<i64>,
}

impl Cursor {
    pub const START: Cursor = Cursor {
        version: 0,
        tag: None,
        floor: None,
    };

    /// The cursor the server issues for `version` (whose change has `tag`) in a scope compacted up to `floor`.
    pub fn issue(version: i64, tag: Option<i64>, floor: i64) -> Self {
        match tag {
            Some(tag) if version > 0 => Cursor {
                version,
                tag: Some(tag),
                floor: (version < floor).then_some(floor),
            },
            _ => Cursor {
                version,
                tag: None,
                floor: None,
            },
        }
    }

    /// Parses a client-supplied cursor; `None` for anything malformed.
    pub fn parse(raw: &str) -> Option<Cursor> {
        let mut parts = raw.split('.');
        let version = parse_decimal(parts.next()?)?;
        let tag = match parts.next() {
            None => None,
            Some(t) if t.len() == 16 && t.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Some(u64::from_str_radix(t, 16).ok()? as i64)
            }
            Some(_) => return None,
        };
        let floor = match parts.next() {
            None => None,
            Some(f) => Some(parse_decimal(f)?),
        };
        if parts.next().is_some() || (version == 0 && tag.is_some()) {
            return None;
        }
        Some(Cursor { version, tag, floor })
    }
}

fn parse_decimal(raw: &str) -> Option<i64> {
    if raw.is_empty() || raw.len() > 16 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok()
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.version)?;
        if let Some(tag) = self.tag {
            write!(f, ".{:016x}", tag as u64)?;
            if let Some(floor) = self.floor {
                write!(f, ".{floor}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for c in [
            Cursor::START,
            Cursor::issue(42, None, 0),
            Cursor::issue(7, Some(-1), 0),
            Cursor::issue(9, Some(0x1234), 20),
            Cursor {
                version: 42,
                tag: None,
                floor: None,
            },
        ] {
            assert_eq!(Cursor::parse(&c.to_string()), Some(c), "{c}");
        }
        assert_eq!(Cursor::issue(7, Some(-1), 0).to_string(), "7.ffffffffffffffff");
        assert_eq!(Cursor::issue(7, Some(1), 9).to_string(), "7.0000000000000001.9");
        assert_eq!(
            Cursor::issue(9, Some(1), 9).to_string(),
            "9.0000000000000001",
            "at the floor: no marker"
        );
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "",
            "-1",
            "1.2",
            "x",
            "1.zzzzzzzzzzzzzzzz",
            "0.0000000000000001",
            "99999999999999999",
            " 1",
            "1.",
            "1.0000000000000001.",
            "1.0000000000000001.x",
            "1.0000000000000001.2.3",
            "1.+000000000000001",
        ] {
            assert_eq!(Cursor::parse(bad), None, "{bad:?}");
        }
    }
}
