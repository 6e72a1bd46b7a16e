//! Compressed pages of the feed, spliced from independently compressed pieces ("members").
//!
//! A page's JSON is the page's own text (brackets, commas, rows read from PostgreSQL, cursor and head) around
//! byte ranges of closed windows (`page`). Each piece is compressed on its own into a member that can be
//! joined to others so that the result is one ordinary stream of the coding, decoding to the concatenated
//! pieces byte for byte:
//! - **zstd:** a member is a frame; a zstd stream is any sequence of frames (RFC 8878 §3.1).
//! - **gzip:** a member is raw DEFLATE ended by a sync flush (byte aligned, not final); the page is one gzip
//!   header, the members, an empty final block and a trailer whose CRC-32 is combined from the members' (the
//!   way pigz joins blocks). One gzip member, so every decoder reads it whole.
//! - **br:** a member is a "catable" brotli stream (no reference before its start, no static dictionary);
//!   the brotli crate's `BroCatli` joins them into one standard stream, rewriting only the bytes at each seam.
//!
//! A member of a closed window's range never changes, so the feed keeps it in the cache (`Feed::encode_json`):
//! a cached page then costs its own short text, not the compression of its changes. That text (envelope,
//! separators, up to [`STORED_MAX_BYTES`]) is not compressed but written as the coding's uncompressed block
//! ([`stored`]): a compressor set up per request had cost more than the rest of the answer (benches/README.md,
//! "Cached compressed pages: where the time went").
//!
//! The price is context: a member cannot refer to bytes of the window before it. On a 1,024-change page of the
//! benchmark's sale history (267 KB of JSON, `tests/api/compression.rs` `measure`) the joined page was 12.7 KB
//! in br against 10.0 KB for the whole page compressed at once (13.1 KB against 12.7 KB in zstd, 20.2 KB
//! against 19.3 KB in gzip). Being catable costs brotli nothing measurable (same size with and without, on one
//! window and on the whole page); members spanning several windows would win most of the gap back.

use crate::domain::Coding;
use bytes::{BufMut, Bytes, BytesMut};
use std::io;

/// Below this many bytes (of the identity body) a page is sent uncompressed whatever the client accepts: it
/// fits in one TCP segment with its headers, so compression saves no round trip and next to no time on the
/// air, and an empty long-poll answer (about 80 bytes) would only grow.
pub const MIN_COMPRESSED_BYTES: usize = 1024;

/// Ranges of closed windows at least this long are compressed once and cached; shorter ones are compressed
/// with the page's own text, per request.
pub const MIN_MEMBER_BYTES: usize = 2048;

/// How hard a piece is compressed: once per cached window range, or per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effort {
    /// Members of closed windows, compressed once and then served from the cache.
    Once,
    /// The page's own text (the open tail, short ranges), compressed on every request.
    PerRequest,
}

impl Effort {
    /// The level for `coding`. Measured on 100- and 1,000-change pages of the benchmark's sale history
    /// (`tests/api/compression.rs` `measure`): brotli 6 was as small as 9 at a third of the time, brotli 5
    /// the fastest of 4-6 at nearly that size; zstd 9 the smallest below its slow levels, zstd 3 within a few
    /// percent of 1 at the same speed; gzip 9 and 5 within 3% of each other, 5 twice as fast.
    fn level(self, coding: Coding) -> u32 {
        match (self, coding) {
            (Effort::Once, Coding::Br) => 6,
            (Effort::Once, Coding::Zstd) => 9,
            (Effort::Once, Coding::Gzip) => 9,
            (Effort::PerRequest, Coding::Br) => 5,
            (Effort::PerRequest, Coding::Zstd) => 3,
            (Effort::PerRequest, Coding::Gzip) => 5,
            (_, Coding::Identity) => 0,
        }
    }
}

/// Brotli window of every member (and of the joined stream): 256 KiB, so a decoder never needs more.
const BROTLI_LGWIN: u8 = 18;

/// One compressed piece and, for gzip's trailer, its plain length and how its bytes go into the page's CRC-32.
#[derive(Debug, Clone)]
pub struct Member {
    pub bytes: Bytes,
    len: u32,
    crc: Crc,
}

/// How a member's plain bytes go into a gzip page's CRC-32.
#[derive(Debug, Clone, Copy)]
enum Crc {
    /// Not needed: a member of zstd or brotli.
    Unused,
    /// A compressed member: its CRC-32, and what appending its plain bytes does to a CRC ([`crc32::shift`] of
    /// its length), both computed once with the member, so that joining costs one multiplication per member.
    Of { crc: u32, shift: u32 },
    /// A stored gzip member: its plain bytes are at hand after the block header, and the page's CRC runs on
    /// over them (a few dozen bytes: cheaper than a CRC and a shift of their own).
    Stored,
}

/// The bytes of a cached member start with this many bytes of header (CRC-32, length and shift, little endian).
const HEADER: usize = 12;

/// A stored DEFLATE block's header: the block type byte, LEN and NLEN ([`stored`]).
const STORED_BLOCK_HEADER: usize = 5;

impl Member {
    /// A compressed member of `plain`.
    fn compressed(bytes: Vec<u8>, plain: &[u8], coding: Coding) -> Member {
        let crc = match coding {
            Coding::Gzip => Crc::Of {
                crc: crc32fast::hash(plain),
                shift: crc32::shift(plain.len() as u64),
            },
            _ => Crc::Unused,
        };
        Member {
            bytes: Bytes::from(bytes),
            len: plain.len() as u32,
            crc,
        }
    }

    /// The member as the cache stores it: header, then the compressed bytes.
    pub fn to_stored(&self) -> Bytes {
        let (crc, shift) = match self.crc {
            Crc::Unused => (0, 0),
            Crc::Of { crc, shift } => (crc, shift),
            Crc::Stored => (
                crc32fast::hash(&self.bytes[STORED_BLOCK_HEADER..]),
                crc32::shift(u64::from(self.len)),
            ),
        };
        let mut out = BytesMut::with_capacity(HEADER + self.bytes.len());
        out.put_u32_le(crc);
        out.put_u32_le(self.len);
        out.put_u32_le(shift);
        out.extend_from_slice(&self.bytes);
        out.freeze()
    }

    /// A member read back from the cache (a slice of `stored`, not a copy), if it has the shape of one. The
    /// header is read whatever the coding: in zstd and brotli it is zeros, and unused.
    pub fn from_stored(stored: &Bytes) -> Option<Member> {
        if stored.len() <= HEADER {
            return None;
        }
        let word = |at: usize| u32::from_le_bytes([stored[at], stored[at + 1], stored[at + 2], stored[at + 3]]);
        Some(Member {
            crc: Crc::Of {
                crc: word(0),
                shift: word(8),
            },
            len: word(4),
            bytes: stored.slice(HEADER..),
        })
    }
}

/// Compresses `plain` into a member of `coding` (not identity).
pub fn member(plain: &[u8], coding: Coding, effort: Effort) -> io::Result<Member> {
    let level = effort.level(coding);
    let bytes = match coding {
        Coding::Identity => return Err(io::Error::other("identity has no members")),
        Coding::Zstd => zstd::bulk::compress(plain, level as i32)?,
        Coding::Gzip => deflate_sync_flushed(plain, level)?,
        Coding::Br => {
            let params = brotli::enc::BrotliEncoderParams {
                quality: level as i32,
                lgwin: i32::from(BROTLI_LGWIN),
                catable: true,
                appendable: true,
                use_dictionary: false,
                ..Default::default()
            };
            let mut out = Vec::with_capacity(plain.len() / 4 + 64);
            brotli::BrotliCompress(&mut &plain[..], &mut out, &params)?;
            out
        }
    };
    Ok(Member::compressed(bytes, plain, coding))
}

/// Raw DEFLATE of `plain` ended by a sync flush: byte aligned, no final block, so more can follow.
fn deflate_sync_flushed(plain: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let mut compress = flate2::Compress::new(flate2::Compression::new(level), false);
    let mut out = Vec::with_capacity(plain.len() / 3 + 64);
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(64));
        }
        let consumed = compress.total_in() as usize;
        compress
            .compress_vec(&plain[consumed..], &mut out, flate2::FlushCompress::Sync)
            .map_err(io::Error::other)?;
        // The flush is complete once all input is taken and the output was not filled up.
        if compress.total_in() as usize == plain.len() && out.len() < out.capacity() {
            return Ok(out);
        }
    }
}

/// Per-request text up to this many bytes (the envelope `{"changes":[`, `],"cursor":...}`, separators) is
/// written as stored bytes ([`stored`]) instead of compressed. Compressing it set up a compressor per call
/// (flate2's deflate state, a brotli quality-5 encoder: over 100 KB each, allocated and cleared) and cost about
/// as much server CPU as the whole answer of a cached plain page (benches/README.md, "Cached compressed pages:
/// where the time went"). Text this short, a cursor and a few digits, shrinks by a few dozen bytes at most: the
/// benchmark's 100-change page went from 2,344 to 2,338 bytes in gzip and from 1,548-1,549 to 1,549 in br.
pub const STORED_MAX_BYTES: usize = 512;

/// `plain` as a member that is not compressed, written by hand without any compressor state (at most
/// 65,535 bytes, so that every coding needs exactly one block):
/// - **gzip:** one stored DEFLATE block, not final. It starts byte aligned (after the gzip header or a
///   member's sync flush) and ends byte aligned, as a sync-flushed member does: a zero byte (BFINAL 0, BTYPE
///   00, padding), LEN and its complement, little endian, then the bytes (RFC 1951 §3.2.4).
/// - **zstd:** one frame, single segment with its content size, one Raw block that is the last (RFC 8878
///   §3.1.1).
/// - **br:** a stream of the members' window (`WBITS` 18), one uncompressed meta-block (ISLAST 0, MNIBBLES
///   4, MLEN - 1, ISUNCOMPRESSED 1: 24 bits, so the bytes start aligned), then an empty last meta-block
///   (ISLAST 1, ISLASTEMPTY 1), RFC 7932 §9.2. A stream beginning with an uncompressed meta-block is what
///   `BroCatli` needs to join it after another.
pub fn stored(plain: &[u8], coding: Coding) -> io::Result<Member> {
    let n = plain.len();
    if n > usize::from(u16::MAX) {
        return Err(io::Error::other("a stored member holds at most 65,535 bytes"));
    }
    let mut out = Vec::with_capacity(n + 16);
    match coding {
        Coding::Identity => return Err(io::Error::other("identity has no members")),
        Coding::Gzip => {
            let len = n as u16;
            out.push(0x00);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&(!len).to_le_bytes());
            out.extend_from_slice(plain);
        }
        Coding::Zstd => {
            out.extend_from_slice(&0xFD2F_B528u32.to_le_bytes());
            if n < 256 {
                // Frame header descriptor: Single_Segment_flag, a 1-byte Frame_Content_Size.
                out.extend_from_slice(&[0x20, n as u8]);
            } else {
                // Single_Segment_flag and a 2-byte Frame_Content_Size, which holds the size minus 256.
                out.push(0x60);
                out.extend_from_slice(&((n - 256) as u16).to_le_bytes());
            }
            // Block header: Last_Block 1, Block_Type 0 (Raw), Block_Size, 3 bytes little endian.
            out.extend_from_slice(&(((n as u32) << 3) | 1).to_le_bytes()[..3]);
            out.extend_from_slice(plain);
        }
        Coding::Br => {
            debug_assert_eq!(BROTLI_LGWIN, 18, "WBITS 18 is the 4 bits 0b0011");
            // Nothing at all for no bytes: `join` leaves empty members out (a stream shorter than 5 bytes
            // cannot be joined).
            if n > 0 {
                let header: u32 = 0b0011 | (((n - 1) as u32) << 7) | (1 << 23);
                out.extend_from_slice(&header.to_le_bytes()[..3]);
                out.extend_from_slice(plain);
                out.push(0b11);
            }
        }
    }
    Ok(Member {
        bytes: Bytes::from(out),
        len: n as u32,
        crc: match coding {
            Coding::Gzip => Crc::Stored,
            _ => Crc::Unused,
        },
    })
}

/// A page's own text as a member: stored when short ([`STORED_MAX_BYTES`]), else compressed at the per-request
/// level.
pub fn per_request(plain: &[u8], coding: Coding) -> io::Result<Member> {
    if plain.len() <= STORED_MAX_BYTES {
        stored(plain, coding)
    } else {
        member(plain, coding, Effort::PerRequest)
    }
}

/// The gzip header: deflate, no name or time, unknown OS.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
/// An empty final block with fixed codes: ends the DEFLATE stream after the last sync-flushed member.
const DEFLATE_FINAL: [u8; 2] = [0x03, 0x00];

/// Joins `members` (in order) into one body of `coding`, decoding to their plain bytes concatenated. zstd and
/// gzip share the members' bytes; brotli copies them once (its seams are rewritten).
pub fn join(coding: Coding, members: &[Member]) -> io::Result<Vec<Bytes>> {
    match coding {
        Coding::Identity => Err(io::Error::other("identity has no members")),
        Coding::Zstd => Ok(members.iter().map(|m| m.bytes.clone()).collect()),
        Coding::Gzip => {
            let mut crc = 0;
            let mut len: u32 = 0;
            let mut out = Vec::with_capacity(members.len() + 2);
            out.push(Bytes::from_static(&GZIP_HEADER));
            for m in members {
                crc = match m.crc {
                    Crc::Of { crc: own, shift } => crc32::append(crc, own, shift),
                    Crc::Stored => {
                        let mut running = crc32fast::Hasher::new_with_initial(crc);
                        running.update(&m.bytes[STORED_BLOCK_HEADER..]);
                        running.finalize()
                    }
                    Crc::Unused => return Err(io::Error::other("a member of another coding in a gzip page")),
                };
                len = len.wrapping_add(m.len);
                out.push(m.bytes.clone());
            }
            let mut tail = Vec::with_capacity(10);
            tail.extend_from_slice(&DEFLATE_FINAL);
            tail.extend_from_slice(&crc.to_le_bytes());
            tail.extend_from_slice(&len.to_le_bytes());
            out.push(Bytes::from(tail));
            Ok(out)
        }
        Coding::Br => {
            use brotli::concat::{BroCatli, BroCatliResult};
            let total: usize = members.iter().map(|m| m.bytes.len()).sum();
            if total == 0 {
                // WBITS 18, then ISLAST and ISLASTEMPTY: the empty stream.
                return Ok(vec![Bytes::from_static(&[0x33])]);
            }
            let mut out = vec![0u8; total + 16 * members.len() + 16];
            let mut written = 0;
            let mut cat = BroCatli::new_with_window_size(BROTLI_LGWIN);
            let fail = |what: &str| io::Error::other(format!("brotli members could not be joined ({what})"));
            for m in members.iter().filter(|m| !m.bytes.is_empty()) {
                cat.new_brotli_file();
                let mut read = 0;
                while read < m.bytes.len() {
                    match cat.stream(&m.bytes, &mut read, &mut out, &mut written) {
                        BroCatliResult::NeedsMoreInput | BroCatliResult::Success => {}
                        BroCatliResult::NeedsMoreOutput => out.resize(out.len() * 2 + 64, 0),
                        other => return Err(fail(&format!("{other:?}"))),
                    }
                }
            }
            loop {
                match cat.finish(&mut out, &mut written) {
                    BroCatliResult::Success => break,
                    BroCatliResult::NeedsMoreOutput => out.resize(out.len() * 2 + 64, 0),
                    other => return Err(fail(&format!("{other:?}"))),
                }
            }
            out.truncate(written);
            Ok(vec![Bytes::from(out)])
        }
    }
}

/// A whole body compressed as one member (MessagePack pages, pages without cached ranges).
pub fn compress_whole(plain: &[u8], coding: Coding) -> io::Result<Vec<Bytes>> {
    join(coding, &[member(plain, coding, Effort::PerRequest)?])
}

/// Decodes a body of `coding` (for tests and measurements).
pub fn decode(coding: Coding, body: &[u8]) -> io::Result<Vec<u8>> {
    use io::Read;
    let mut out = Vec::new();
    match coding {
        Coding::Identity => out.extend_from_slice(body),
        Coding::Gzip => {
            flate2::read::GzDecoder::new(body).read_to_end(&mut out)?;
        }
        Coding::Br => {
            brotli::Decompressor::new(body, 4096).read_to_end(&mut out)?;
        }
        Coding::Zstd => out = zstd::decode_all(body)?,
    }
    Ok(out)
}

/// Joining CRC-32s (as zlib's `crc32_combine`): the CRC of `a` then `b` is the CRC of `a` shifted by `b`'s
/// length, xor the CRC of `b`. The shift is a multiplication by x^(8·len) modulo the CRC polynomial, in
/// reflected bit order, so it can be computed once per member and kept with it.
mod crc32 {
    /// The CRC-32 polynomial, reflected.
    const POLY: u32 = 0xedb8_8320;

    /// a(x)·b(x) modulo the polynomial, reflected.
    const fn multiply(a: u32, mut b: u32) -> u32 {
        let mut product = 0u32;
        let mut i = 0;
        while i < 32 {
            product ^= b & ((a >> (31 - i)) & 1).wrapping_neg();
            b = (b >> 1) ^ ((b & 1).wrapping_neg() & POLY);
            i += 1;
        }
        product
    }

    /// x^(8·2^k) for every k: the shift of 2^k bytes.
    const SHIFT_OF_POWERS: [u32; 64] = {
        let mut table = [0u32; 64];
        let mut power = 1u32 << 23; // x^8, reflected
        let mut k = 0;
        while k < 64 {
            table[k] = power;
            power = multiply(power, power);
            k += 1;
        }
        table
    };

    /// x^(8·len) modulo the polynomial: what appending `len` bytes does to a CRC.
    pub fn shift(len: u64) -> u32 {
        let mut shift = 1u32 << 31; // x^0, reflected
        let bits = (u64::BITS - len.leading_zeros()) as usize;
        for (k, power) in SHIFT_OF_POWERS[..bits].iter().enumerate() {
            if len >> k & 1 == 1 {
                shift = multiply(*power, shift);
            }
        }
        shift
    }

    /// The CRC of bytes whose CRC is `before`, followed by bytes whose CRC is `crc` and shift is `shift`.
    pub fn append(before: u32, crc: u32, shift: u32) -> u32 {
        multiply(shift, before) ^ crc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize, seed: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n {
            out.extend_from_slice(
                format!(
                    r#"{{"version":{v},"collection":"sales","key":"s-{v}","op":"upsert","data":{{"id":"s-{v}","total":"{t}.00","lines":[{{"product":"p-{p}","qty":"{q}"}}]}}}},"#,
                    v = seed + i,
                    t = (i * 37) % 1000,
                    p = i % 17,
                    q = i % 5 + 1
                )
                .as_bytes(),
            );
        }
        out
    }

    #[test]
    fn joined_members_decode_to_the_concatenated_pieces_in_every_coding() {
        // Pieces of very different sizes, an empty one and a one-byte one included.
        let pieces: Vec<Vec<u8>> = vec![
            b"{\"changes\":[".to_vec(),
            sample(300, 1),
            b",".to_vec(),
            Vec::new(),
            sample(7, 301),
            sample(1000, 308),
            b"],\"cursor\":\"x\",\"has_more\":false,\"head\":1}".to_vec(),
        ];
        let whole: Vec<u8> = pieces.concat();
        for coding in Coding::COMPRESSED {
            for effort in [Effort::Once, Effort::PerRequest] {
                let members: Vec<Member> = pieces.iter().map(|p| member(p, coding, effort).unwrap()).collect();
                let body = join(coding, &members).unwrap().concat();
                assert_eq!(decode(coding, &body).unwrap(), whole, "{coding:?} {effort:?}");
                // A stored member reads back as itself.
                let back = Member::from_stored(&members[1].to_stored()).unwrap();
                let again = join(coding, &[back]).unwrap().concat();
                assert_eq!(decode(coding, &again).unwrap(), pieces[1], "{coding:?} stored");
            }
            assert_eq!(
                decode(coding, &compress_whole(&whole, coding).unwrap().concat()).unwrap(),
                whole
            );
        }
    }

    #[test]
    fn stored_members_decode_with_the_real_decoders_alone_and_between_compressed_ones() {
        // Sizes at each edge of the hand-written headers: empty, one byte, zstd's 1- and 2-byte content size
        // (255, 256, 257), the per-request limit, the largest one.
        let sizes = [0, 1, 255, 256, 257, STORED_MAX_BYTES, usize::from(u16::MAX)];
        let text: Vec<u8> = sample(300, 7).into_iter().cycle().take(usize::from(u16::MAX)).collect();
        for coding in Coding::COMPRESSED {
            for &n in &sizes {
                let alone = join(coding, &[stored(&text[..n], coding).unwrap()]).unwrap().concat();
                assert_eq!(decode(coding, &alone).unwrap(), &text[..n], "{coding:?} {n} alone");
                // As the cache would keep it (it keeps compressed members only, but the header must hold).
                let back = Member::from_stored(&stored(&text[..n], coding).unwrap().to_stored());
                if let Some(back) = back {
                    let again = join(coding, &[back]).unwrap().concat();
                    assert_eq!(decode(coding, &again).unwrap(), &text[..n], "{coding:?} {n} kept");
                }
            }
            // Stored first, last, next to each other and between compressed members.
            let pieces: Vec<(Vec<u8>, bool)> = vec![
                (b"{\"changes\":[".to_vec(), true),
                (sample(200, 1), false),
                (b",".to_vec(), true),
                (Vec::new(), true),
                (text[..300].to_vec(), true),
                (sample(50, 201), false),
                (b"],\"cursor\":\"x\",\"has_more\":false,\"head\":1}".to_vec(), true),
            ];
            let members: Vec<Member> = pieces
                .iter()
                .map(|(p, raw)| match raw {
                    true => stored(p, coding).unwrap(),
                    false => member(p, coding, Effort::Once).unwrap(),
                })
                .collect();
            let body = join(coding, &members).unwrap().concat();
            let whole: Vec<u8> = pieces.iter().flat_map(|(p, _)| p.clone()).collect();
            assert_eq!(decode(coding, &body).unwrap(), whole, "{coding:?} spliced");
            assert!(stored(&text, coding).is_ok());
            assert!(
                stored(&[text.as_slice(), b"x"].concat(), coding).is_err(),
                "one block at most"
            );
        }
        // The decoders do read the hand-written headers: a wrong length complement (gzip), content size (zstd)
        // or length (brotli) fails.
        for (coding, at) in [(Coding::Gzip, 3), (Coding::Zstd, 5), (Coding::Br, 1)] {
            let mut body = join(coding, &[stored(b"0123456789", coding).unwrap()])
                .unwrap()
                .concat();
            let at = if coding == Coding::Gzip {
                GZIP_HEADER.len() + at
            } else {
                at
            };
            body[at] ^= 0x04;
            assert!(decode(coding, &body).is_err(), "{coding:?}");
        }
    }

    #[test]
    fn short_text_is_stored_and_longer_text_compressed() {
        for coding in Coding::COMPRESSED {
            let short = sample(3, 1);
            assert!(short.len() <= STORED_MAX_BYTES);
            assert_eq!(
                per_request(&short, coding).unwrap().bytes,
                stored(&short, coding).unwrap().bytes
            );
            let long = sample(30, 1);
            assert!(
                per_request(&long, coding).unwrap().bytes.len() < long.len() / 2,
                "{coding:?}"
            );
        }
    }

    #[test]
    fn crcs_append_as_if_computed_over_the_bytes_joined() {
        let text = sample(400, 1);
        // Splits at every edge: empty parts, one byte, lengths with one and with many bits set.
        for at in [0, 1, 2, 255, 256, 4096, 4097, text.len() - 1, text.len()] {
            let (a, b) = text.split_at(at);
            let joined = crc32::append(crc32fast::hash(a), crc32fast::hash(b), crc32::shift(b.len() as u64));
            assert_eq!(joined, crc32fast::hash(&text), "split at {at}");
        }
        assert_eq!(
            crc32::append(0, 0x1234_5678, crc32::shift(3)),
            0x1234_5678,
            "after nothing"
        );
        // zlib's crc32_combine golden value (crc32fast's test vector).
        assert_eq!(
            crc32::append(0x4f62_6f9a, 0x9e5c_cbf5, crc32::shift(0xa59d)),
            0x98d4_3168
        );
    }

    #[test]
    fn a_gzip_page_is_one_gzip_member_with_the_whole_pages_crc() {
        // A decoder that stops after the first gzip member (flate2's GzDecoder does) still reads it all, and
        // the trailer is checked: a wrong CRC makes decoding fail.
        let pieces = [sample(50, 1), sample(50, 51)];
        let members: Vec<Member> = pieces
            .iter()
            .map(|p| member(p, Coding::Gzip, Effort::Once).unwrap())
            .collect();
        let mut body = join(Coding::Gzip, &members).unwrap().concat();
        assert_eq!(decode(Coding::Gzip, &body).unwrap(), pieces.concat());
        let crc_at = body.len() - 8;
        body[crc_at] ^= 1;
        assert!(decode(Coding::Gzip, &body).is_err(), "the CRC is checked");
    }
}
