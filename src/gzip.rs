//! gzip answers (`Content-Encoding: gzip`) built from parts deflated once.
//!
//! A big answer here is mostly bytes that are the same for every request
//! about one snapshot (the `ListMetrics` rows, the `/metrics` fabric block,
//! the `/counters` CSV) with a few bytes that are not (the age, the server's
//! own counters). Compressing the whole answer per request would cost some
//! 30 ms per megabyte of CPU for every client. Instead, the shared parts are
//! deflated once into [`Deflated`] segments, each ending on a byte boundary
//! (a sync flush) and none marked final, so that deflate streams can follow
//! each other in one gzip member; the per-request bytes go between them as
//! stored (uncompressed) blocks; an empty final block and the trailer close
//! it. The CRC-32 of the whole is combined from the parts' CRCs, so nothing
//! shared is read again. The result is one ordinary gzip member (RFC 1952)
//! that any client inflates.

use std::sync::{Arc, OnceLock};

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

use crate::http::Chunk;

/// The fixed gzip member header: magic, deflate, no flags, no time, no
/// extra flags, unknown OS.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// An empty stored block marked final: the end of the deflate stream.
const FINAL: [u8; 5] = [1, 0, 0, 0xff, 0xff];

/// The compression level of the shared segments, built once per snapshot
/// and sent many times. Measured at 100k switches (BENCHMARKS.md, "gzip"):
/// level 3 deflates 3× faster than the usual 6 for 10–15% more bytes, and
/// keeps a million-switch table within a couple of seconds of one core.
const LEVEL: u32 = 3;

/// Text deflated once, ready to sit anywhere in a gzip member.
pub struct Deflated {
    /// Raw deflate blocks, none final, ending byte-aligned.
    bytes: Arc<[u8]>,
    /// The CRC-32 and length of the text they hold.
    crc: Crc,
}

impl Deflated {
    /// Deflates `parts`, in order, as one segment. `None` only if the
    /// compressor fails, which it does not on any input; callers then
    /// answer uncompressed.
    pub fn new<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Option<Deflated> {
        let mut c = Compress::new(Compression::new(LEVEL), false);
        let mut crc = Crc::new();
        let mut out = Vec::new();
        for part in parts {
            crc.update(part);
            let mut input = part;
            while !input.is_empty() {
                out.reserve(input.len() / 4 + 64);
                let before = c.total_in();
                c.compress_vec(input, &mut out, FlushCompress::None).ok()?;
                input = &input[(c.total_in() - before) as usize..];
            }
        }
        // A sync flush ends on a byte boundary with no final block; the
        // compressor may need several calls to write all it holds.
        loop {
            out.reserve(4096);
            match c.compress_vec(&[], &mut out, FlushCompress::Sync).ok()? {
                Status::Ok | Status::StreamEnd if out.len() < out.capacity() => break,
                _ => {}
            }
        }
        Some(Deflated {
            bytes: Arc::from(out),
            crc,
        })
    }

    /// The compressed size.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True if it holds no compressed bytes (never, in practice).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// What a gzip answer's entity tag adds to the plain one's: the two are
/// different representations (RFC 9110 §8.8.3), and a cache holding both
/// must learn from a 304 which one it names.
pub const TAG_SUFFIX: &str = "-gz";

/// A segment deflated by the first request that wants it, then shared by
/// every later one (for as long as its snapshot lives).
#[derive(Default)]
pub struct Lazy(OnceLock<Option<Deflated>>);

impl std::fmt::Debug for Lazy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lazy({:?})", self.made_len())
    }
}

impl Lazy {
    /// The segment, deflating `parts()` if this is the first call.
    pub fn get<'a, I>(&self, parts: impl FnOnce() -> I) -> Option<&Deflated>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        self.0.get_or_init(|| Deflated::new(parts())).as_ref()
    }

    /// The compressed size, if it has been made.
    pub fn made_len(&self) -> Option<usize> {
        self.0.get().and_then(|d| d.as_ref()).map(Deflated::len)
    }
}

/// One part of a gzip member under construction.
pub enum Part<'a> {
    /// Shared, deflated once.
    Deflated(&'a Deflated),
    /// Bytes of this request only, stored uncompressed.
    Stored(&'a [u8]),
}

/// A whole gzip member holding `parts` in order, as answer chunks: the
/// deflated segments shared, everything else built here.
pub fn member(parts: &[Part<'_>]) -> Vec<Chunk> {
    let mut crc = Crc::new();
    let mut body = vec![Chunk::Static(&HEADER)];
    for part in parts {
        match part {
            Part::Deflated(d) => {
                crc.combine(&d.crc);
                body.push(Chunk::Shared(d.bytes.clone()));
            }
            Part::Stored(bytes) => {
                crc.update(bytes);
                let mut out = Vec::with_capacity(bytes.len() + 5 * (bytes.len() / 65_535 + 1));
                for block in bytes.chunks(65_535) {
                    // Not final, type 00 (stored): one byte once aligned,
                    // then LEN and its complement, little-endian.
                    let len = block.len() as u16;
                    out.push(0);
                    out.extend_from_slice(&len.to_le_bytes());
                    out.extend_from_slice(&(!len).to_le_bytes());
                    out.extend_from_slice(block);
                }
                body.push(Chunk::Owned(out));
            }
        }
    }
    let mut tail = Vec::with_capacity(FINAL.len() + 8);
    tail.extend_from_slice(&FINAL);
    tail.extend_from_slice(&crc.sum().to_le_bytes());
    tail.extend_from_slice(&crc.amount().to_le_bytes());
    body.push(Chunk::Owned(tail));
    body
}

/// `bytes` as a gzip member, compressed now: for answers made per request.
/// `None` if the compressor fails (answer uncompressed then).
pub fn compress(bytes: &[u8]) -> Option<Vec<Chunk>> {
    let d = Deflated::new([bytes])?;
    Some(member(&[Part::Deflated(&d)]))
}

/// True if an `Accept-Encoding` list accepts gzip: `gzip` (or `x-gzip`, or
/// `*` when gzip is not named) with a q-value above 0.
pub fn accepted<'a>(headers: impl Iterator<Item = &'a str>) -> bool {
    let (mut gzip, mut star) = (None, None);
    for item in headers.flat_map(|h| h.split(',')) {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let mut q = 1.0f32;
        for p in parts {
            if let Some((k, v)) = p.split_once('=') {
                if k.trim().eq_ignore_ascii_case("q") {
                    q = v
                        .trim()
                        .parse()
                        .ok()
                        .filter(|q| (0.0..=1.0).contains(q))
                        .unwrap_or(0.0);
                }
            }
        }
        let slot = if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            &mut gzip
        } else if coding == "*" {
            &mut star
        } else {
            continue;
        };
        *slot = Some(slot.map_or(q, |old: f32| old.max(q)));
    }
    gzip.or(star).is_some_and(|q| q > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn bytes(chunks: &[Chunk]) -> Vec<u8> {
        chunks.iter().flat_map(|c| c.bytes().to_vec()).collect()
    }

    /// Inflates with flate2's own reader, which checks the CRC and length.
    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut r = flate2::read::GzDecoder::new(data);
        r.read_to_end(&mut out).unwrap();
        // One member, nothing after it.
        assert_eq!(r.into_inner().len(), 0);
        out
    }

    #[test]
    fn segments_and_stored_bytes_make_one_member() {
        let head = Deflated::new([&b"{\"snapshot_id\":\"s-1\",\"age_ms\":"[..]]).unwrap();
        let rows: String = (0..20_000)
            .map(|i| format!("{{\"switch_id\":\"sw-{i:03}\",\"a\":{}}},", i % 97))
            .collect();
        let tail = Deflated::new(rows.as_bytes().chunks(1_000)).unwrap();
        assert!(
            tail.len() * 5 < rows.len(),
            "{} of {}",
            tail.len(),
            rows.len()
        );
        for age in ["0", "123456", ""] {
            let got = gunzip(&bytes(&member(&[
                Part::Deflated(&head),
                Part::Stored(age.as_bytes()),
                Part::Deflated(&tail),
            ])));
            let want = format!("{{\"snapshot_id\":\"s-1\",\"age_ms\":{age}{rows}");
            assert!(got == want.as_bytes(), "age {age}");
        }
        // Stored parts longer than one block, and nothing at all.
        let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let got = gunzip(&bytes(&member(&[
            Part::Stored(&big),
            Part::Deflated(&head),
        ])));
        assert_eq!(&got[..big.len()], &big[..]);
        assert!(gunzip(&bytes(&member(&[]))).is_empty());
        let empty = Deflated::new([]).unwrap();
        assert!(gunzip(&bytes(&member(&[Part::Deflated(&empty)]))).is_empty());
        let gz = bytes(&compress(rows.as_bytes()).unwrap());
        assert_eq!(gunzip(&gz), rows.as_bytes());
    }

    #[test]
    fn a_lazy_segment_is_made_once() {
        let lazy = Lazy::default();
        assert_eq!(lazy.made_len(), None);
        let mut calls = 0;
        for _ in 0..3 {
            let d = lazy.get(|| {
                calls += 1;
                [&b"abc"[..], b"def"]
            });
            let got = gunzip(&bytes(&member(&[Part::Deflated(d.unwrap())])));
            assert_eq!(got, b"abcdef");
        }
        assert_eq!(calls, 1);
        assert!(lazy.made_len().is_some());
    }

    #[test]
    fn accept_encoding_is_read_with_q_values() {
        let ok = |h: &str| accepted([h].into_iter());
        for yes in [
            "gzip",
            "gzip, deflate, br",
            "deflate, GZIP;q=0.5",
            "*",
            "x-gzip",
            "br;q=1, *;q=0.1",
            "gzip;q=1.0",
        ] {
            assert!(ok(yes), "{yes}");
        }
        for no in [
            "",
            "identity",
            "br, deflate",
            "gzip;q=0",
            "gzip;q=0, *",
            "*;q=0",
            "gzip;q=bogus",
            "gzipx",
        ] {
            assert!(!ok(no), "{no}");
        }
        assert!(!accepted(std::iter::empty()));
        assert!(accepted(["br", "gzip"].into_iter()));
    }
}
