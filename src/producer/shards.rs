//! Shards of `/counters`: `?num_shards=N&shard=K` answers the header and the
//! rows of the switches whose index `i` (`sw-000` is 0) has `i mod N == K`,
//! in row order. Ids are `sw-{i:03}`, so a switch keeps its shard as the
//! fleet grows.
//!
//! A shard is cut from its snapshot's CSV along the line ends noted when the
//! CSV was rendered ([`super::simulator::Table`]): no parsing, one copy of its
//! rows. Each snapshot keeps the shards cut from it in a [`Cache`], so every
//! poller of a shard shares one body (and one gzip form) until the next
//! tick. The cache is bounded against a client asking for many pairs; past
//! the bound a shard is cut for its request alone.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use crate::gzip;
use crate::http::Chunk;
use crate::json;

/// The largest `num_shards`.
pub const MAX_SHARDS: u16 = 1024;

/// The parameters `/counters` takes.
pub const PARAMS: &[&str] = &["num_shards", "shard"];

/// At most this many shards cached per snapshot (one full set at
/// [`MAX_SHARDS`]).
pub const MAX_ENTRIES: usize = 1024;

/// The rows of the shards cached per snapshot add up to at most this many
/// times the table's rows: two complete sets of shards, of any sizes.
pub const MAX_ROW_BYTES_FACTOR: usize = 2;

/// Which shard: `k` of `n`, with `k < n <= MAX_SHARDS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Selection {
    pub n: u16,
    pub k: u16,
}

/// Why a shard request was refused (every one is a 400).
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// One of the pair was given without the other; this one is missing.
    Missing(&'static str),
    /// `num_shards` is not an integer in 1..=[`MAX_SHARDS`] (clipped value).
    NumShards(String),
    /// `shard` is not an integer below `n` (clipped value).
    Shard { value: String, n: u16 },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Missing(p) => write!(
                f,
                "missing query parameter: {p} (num_shards and shard go together)"
            ),
            Error::NumShards(v) => write!(
                f,
                "invalid num_shards: {v} (want an integer 1..={MAX_SHARDS})"
            ),
            Error::Shard { value, n } => write!(
                f,
                "invalid shard: {value} (want an integer 0..={} for num_shards={n})",
                n - 1
            ),
        }
    }
}

impl std::error::Error for Error {}

/// The shard that `/counters`'s checked parameters (from `query::strict`
/// with [`PARAMS`]) ask for: `None` for the whole table.
pub fn parse(pairs: &[(&'static str, Cow<'_, str>)]) -> Result<Option<Selection>, Error> {
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_ref())
    };
    let (n, k) = match (get("num_shards"), get("shard")) {
        (None, None) => return Ok(None),
        (Some(_), None) => return Err(Error::Missing("shard")),
        (None, Some(_)) => return Err(Error::Missing("num_shards")),
        (Some(n), Some(k)) => (n, k),
    };
    let n = number(n)
        .filter(|n| (1..=MAX_SHARDS).contains(n))
        .ok_or_else(|| Error::NumShards(clip(n)))?;
    let k = number(k)
        .filter(|k| *k < n)
        .ok_or_else(|| Error::Shard { value: clip(k), n })?;
    Ok(Some(Selection { n, k }))
}

/// Plain decimal digits (no sign, no spaces) that fit a `u16`.
fn number(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Untrusted text clipped for an error message.
fn clip(s: &str) -> String {
    json::clipped(s, 128)
}

/// The entity tag of shard `sel` of snapshot `id`, unquoted: distinct per
/// shard and per snapshot.
pub fn tag(id: &str, sel: Selection) -> String {
    format!("{id}-s{}of{}", sel.k, sel.n)
}

/// One shard of one snapshot, ready to serve.
#[derive(Debug)]
pub struct Shard {
    /// The header line, then the shard's rows.
    pub body: Arc<[u8]>,
    /// `"<id>-s<K>of<N>"`.
    pub etag: String,
    /// `"<id>-s<K>of<N>-gz"`: the `ETag` of the gzip form.
    pub etag_gz: String,
    /// The body deflated, when first asked for.
    pub gz: gzip::Lazy,
}

impl Shard {
    fn new(id: &str, sel: Selection, body: Vec<u8>) -> Shard {
        let tag = tag(id, sel);
        Shard {
            body: Arc::from(body),
            etag: format!("\"{tag}\""),
            etag_gz: format!("\"{tag}{}\"", gzip::TAG_SUFFIX),
            gz: gzip::Lazy::default(),
        }
    }

    /// The body as one gzip member (deflated once, on first use).
    pub fn gzip_body(&self) -> Option<Vec<Chunk>> {
        let d = self.gz.get(|| [&self.body[..]])?;
        Some(gzip::member(&[gzip::Part::Deflated(d)]))
    }
}

/// The byte ranges of shard `sel`'s rows in a table whose lines end at
/// `ends` (see [`super::simulator::Table::ends`]).
fn rows(ends: &[usize], sel: Selection) -> impl Iterator<Item = (usize, usize)> + '_ {
    ends.windows(2)
        .skip(usize::from(sel.k))
        .step_by(usize::from(sel.n).max(1))
        .map(|w| (w[0], w[1]))
}

/// The bytes of shard `sel`'s rows, header not counted: O(rows / n), no
/// copying.
fn row_bytes(ends: &[usize], sel: Selection) -> usize {
    rows(ends, sel).map(|(a, b)| b.saturating_sub(a)).sum()
}

/// Shard `sel` of `csv`: its header line, then rows `k`, `k + n`, … .
pub fn cut(csv: &[u8], ends: &[usize], sel: Selection) -> Vec<u8> {
    let header = csv.get(..ends.first().copied().unwrap_or(0)).unwrap_or(&[]);
    let mut out = Vec::with_capacity(header.len() + row_bytes(ends, sel));
    out.extend_from_slice(header);
    for (a, b) in rows(ends, sel) {
        out.extend_from_slice(csv.get(a..b).unwrap_or(&[]));
    }
    out
}

/// A shard being cut, or cut: concurrent first requests wait on it, not on
/// the cache's lock, and it is cut once.
type Slot = Arc<OnceLock<Arc<Shard>>>;

/// The shards cut from one snapshot, each cut once. Bounded: at most
/// [`MAX_ENTRIES`] shards, whose rows add up to at most
/// [`MAX_ROW_BYTES_FACTOR`] times the table's (headers, at most one per
/// entry, are not counted). A shard past either bound is cut for its
/// request alone and not kept, so a client cycling through many pairs
/// costs itself CPU, not the server memory.
#[derive(Default)]
pub struct Cache {
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    slots: HashMap<Selection, Slot>,
    /// Row bytes of the shards in `slots`.
    row_bytes: usize,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        write!(
            f,
            "Cache({} shards, {} row bytes)",
            e.slots.len(),
            e.row_bytes
        )
    }
}

impl Cache {
    /// Shard `sel` of snapshot `id`, whose CSV is `csv` with line ends
    /// `ends`: cut by the first request for it (with no lock held while
    /// copying) and shared with every later one, within the bounds.
    pub fn get(&self, id: &str, csv: &[u8], ends: &[usize], sel: Selection) -> Arc<Shard> {
        let make = || Arc::new(Shard::new(id, sel, cut(csv, ends, sel)));
        if let Some(slot) = self.lock().slots.get(&sel).cloned() {
            return slot.get_or_init(make).clone();
        }
        // A miss: size the shard without the lock, then claim a slot if
        // another request has not meanwhile and the bounds allow.
        let size = row_bytes(ends, sel);
        let budget = MAX_ROW_BYTES_FACTOR
            .saturating_mul(csv.len().saturating_sub(ends.first().copied().unwrap_or(0)));
        let slot = {
            let mut e = self.lock();
            match e.slots.get(&sel) {
                Some(slot) => Some(slot.clone()),
                None if e.slots.len() < MAX_ENTRIES
                    && e.row_bytes.saturating_add(size) <= budget =>
                {
                    let slot = Slot::default();
                    e.slots.insert(sel, slot.clone());
                    e.row_bytes += size;
                    Some(slot)
                }
                None => None,
            }
        };
        match slot {
            Some(slot) => slot.get_or_init(make).clone(),
            None => make(),
        }
    }

    /// How many shards are kept.
    pub fn len(&self) -> usize {
        self.lock().slots.len()
    }

    /// True if no shard is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::producer::Simulator;

    fn sel(n: u16, k: u16) -> Selection {
        Selection { n, k }
    }

    /// Percent-encodes every byte but letters and digits.
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b if b.is_ascii_alphanumeric() => (b as char).to_string(),
                b => format!("%{b:02X}"),
            })
            .collect()
    }

    fn parsed(q: &str) -> Result<Option<Selection>, String> {
        let pairs = crate::query::strict(q, PARAMS).map_err(|e| e.to_string())?;
        parse(&pairs).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_the_pair_or_nothing() {
        assert_eq!(parsed(""), Ok(None));
        assert_eq!(parsed("num_shards=4&shard=1"), Ok(Some(sel(4, 1))));
        assert_eq!(parsed("shard=0&num_shards=1"), Ok(Some(sel(1, 0))));
        assert_eq!(
            parsed("num_shards=1024&shard=1023"),
            Ok(Some(sel(1024, 1023)))
        );
        assert_eq!(parsed("num_shards=016&shard=007"), Ok(Some(sel(16, 7))));
        assert_eq!(parsed("num%5Fshards=2&shard=%31"), Ok(Some(sel(2, 1))));
    }

    #[test]
    fn refuses_each_bad_pair_naming_the_parameter() {
        let err = |q: &str| parsed(q).unwrap_err();
        assert_eq!(
            err("shard=1"),
            "missing query parameter: num_shards (num_shards and shard go together)"
        );
        assert_eq!(
            err("num_shards=4"),
            "missing query parameter: shard (num_shards and shard go together)"
        );
        for n in [
            "0",
            "1025",
            "65536",
            "99999999999999999999",
            "-1",
            "+4",
            " 4",
            "4 ",
            "4.0",
            "0x10",
            "",
            "four",
        ] {
            let q = format!("num_shards={}&shard=0", enc(n));
            assert_eq!(
                err(&q),
                format!("invalid num_shards: {n} (want an integer 1..=1024)"),
                "{q}"
            );
        }
        for k in ["4", "5", "-0", "+1", "1e0", "", "x", "70000"] {
            let q = format!("num_shards=4&shard={}", enc(k));
            assert_eq!(
                err(&q),
                format!("invalid shard: {k} (want an integer 0..=3 for num_shards=4)"),
                "{q}"
            );
        }
        // num_shards is checked first; long values are clipped.
        assert!(err("num_shards=0&shard=x").starts_with("invalid num_shards: 0 "));
        let long = err(&format!("num_shards=2&shard={}", "9".repeat(5000)));
        assert!(long.len() < 220 && long.contains('…'), "{long}");
        assert_eq!(
            err("num_shards=2&shard=1&shard=1"),
            "repeated query parameter: shard"
        );
        assert_eq!(
            err("num_shards=2&shard=1&x=1"),
            "unknown query parameter: x (want one of num_shards, shard)"
        );
    }

    fn table(switches: usize) -> (Vec<u8>, Vec<usize>) {
        let t = Simulator::new(switches, Some(4)).render();
        (t.csv.into_bytes(), t.ends)
    }

    fn ids(body: &[u8]) -> Vec<String> {
        std::str::from_utf8(body)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap().to_string())
            .collect()
    }

    #[test]
    fn every_row_is_in_exactly_one_shard_in_order() {
        let (csv, ends) = table(50);
        let text = std::str::from_utf8(&csv).unwrap();
        let header = text.lines().next().unwrap();
        let all: Vec<&str> = text.lines().skip(1).collect();
        for n in [1u16, 3, 16, 50, 64, 1024] {
            let mut seen = Vec::new();
            for k in 0..n {
                let body = cut(&csv, &ends, sel(n, k));
                let lines: Vec<&str> = std::str::from_utf8(&body).unwrap().lines().collect();
                assert_eq!(lines[0], header);
                let want: Vec<&str> = all
                    .iter()
                    .skip(k.into())
                    .step_by(n.into())
                    .copied()
                    .collect();
                assert_eq!(lines[1..], want[..], "shard {k} of {n}");
                seen.extend(ids(&body));
            }
            seen.sort();
            let mut every = ids(&csv);
            every.sort();
            assert_eq!(seen, every, "{n} shards");
        }
        assert_eq!(cut(&csv, &ends, sel(1, 0)), csv);
    }

    #[test]
    fn a_switch_keeps_its_shard_as_the_fleet_grows() {
        for switches in [8, 100, 1200] {
            let (csv, ends) = table(switches);
            let one = ids(&cut(&csv, &ends, sel(4, 1)));
            assert_eq!(one[..2], ["sw-001", "sw-005"], "{switches} switches");
            let far = ids(&cut(&csv, &ends, sel(1000, 999)));
            assert_eq!(far.len(), switches / 1000, "{switches} switches");
        }
        let (csv, ends) = table(1200);
        assert_eq!(ids(&cut(&csv, &ends, sel(1000, 0))), ["sw-000", "sw-1000"]);
    }

    #[test]
    fn a_shard_is_cut_once_and_shared() {
        let (csv, ends) = table(40);
        let cache = Cache::default();
        let a = cache.get("s-1", &csv, &ends, sel(4, 1));
        let b = cache.get("s-1", &csv, &ends, sel(4, 1));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(Arc::ptr_eq(&a.body, &b.body));
        assert_eq!(a.etag, "\"s-1-s1of4\"");
        assert_eq!(a.etag_gz, "\"s-1-s1of4-gz\"");
        let c = cache.get("s-1", &csv, &ends, sel(4, 2));
        assert!(!Arc::ptr_eq(&a.body, &c.body));
        assert_ne!(a.etag, c.etag);
        assert_eq!(cache.len(), 2);
        // Threads racing for one shard all get the one body.
        let cache = Cache::default();
        let bodies: Vec<Arc<Shard>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| cache.get("s-2", &csv, &ends, sel(3, 0))))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(bodies.iter().all(|b| Arc::ptr_eq(b, &bodies[0])));
    }

    #[test]
    fn the_cache_is_bounded() {
        let (csv, ends) = table(2000);
        // Entries: every shard of 1024, then one more is cut but not kept.
        let cache = Cache::default();
        for k in 0..1024 {
            cache.get("s", &csv, &ends, sel(1024, k));
        }
        assert_eq!(cache.len(), MAX_ENTRIES);
        let a = cache.get("s", &csv, &ends, sel(2, 0));
        let b = cache.get("s", &csv, &ends, sel(2, 0));
        assert!(
            !Arc::ptr_eq(&a.body, &b.body),
            "past the bound: per request"
        );
        assert_eq!(a.body, b.body);
        assert_eq!(cache.len(), MAX_ENTRIES);
        // Bytes: two whole sets of shards fit, a third does not.
        let cache = Cache::default();
        for n in [2, 3] {
            for k in 0..n {
                cache.get("s", &csv, &ends, sel(n, k));
            }
        }
        assert_eq!(cache.len(), 5);
        cache.get("s", &csv, &ends, sel(4, 0));
        assert_eq!(cache.len(), 5, "a third set is not kept");
        let e = cache.lock();
        assert!(e.row_bytes <= 2 * (csv.len() - ends[0]));
    }

    #[test]
    fn gzip_of_a_shard_inflates_to_its_body() {
        use std::io::Read;
        let (csv, ends) = table(30);
        let shard = Cache::default().get("s", &csv, &ends, sel(3, 2));
        let gz: Vec<u8> = shard
            .gzip_body()
            .unwrap()
            .iter()
            .flat_map(|c| c.bytes().to_vec())
            .collect();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, &shard.body[..]);
        assert!(shard.gz.made_len().is_some(), "kept for the next request");
    }
}
