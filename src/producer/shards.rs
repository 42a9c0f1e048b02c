//! Shards of `/counters`: `?num_shards=N&shard=K` answers the header and the
//! rows of the switches whose index `i` (`sw-000` is 0) has `i mod N == K`,
//! in row order. Ids are `sw-{i:03}`, so a switch keeps its shard as the
//! fleet grows. With `&sharding_field=<column>` (NVIDIA UFM Telemetry's
//! grammar) a row's shard is instead the hash of its cell in that column,
//! mod N (see [`super::partition`]), so rows with one key stay together.
//!
//! A shard is cut from its snapshot's CSV along the line ends noted when the
//! CSV was rendered ([`super::simulator::Table`]): one copy of its rows. An
//! index shard needs no parsing; a shard by a field reads each row's cell
//! once per snapshot, column and N, into a [`Partition`] every shard of that
//! N is cut from. Each snapshot keeps the shards cut from it in a [`Cache`],
//! so every poller of a shard shares one body (and one gzip form) until the
//! next tick. The cache is bounded against a client asking for many pairs;
//! past the bound a shard is cut for its request alone.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use super::partition::{self, Partition};
use crate::gzip;
use crate::http::Chunk;
use crate::json;

/// The largest `num_shards`.
pub const MAX_SHARDS: u16 = 1024;

/// The parameters `/counters` takes.
pub const PARAMS: &[&str] = &["num_shards", "shard", "sharding_field"];

/// At most this many shards cached per snapshot (one full set at
/// [`MAX_SHARDS`]).
pub const MAX_ENTRIES: usize = 1024;

/// The rows of the shards cached per snapshot add up to at most this many
/// times the table's rows: two complete sets of shards, of any sizes.
pub const MAX_ROW_BYTES_FACTOR: usize = 2;

/// At most this many partitions (one per column and N sharded by) kept per
/// snapshot, 4 bytes a row each; past that a shard by a field reads the
/// table for its request alone.
pub const MAX_PARTITIONS: usize = 8;

/// Which shard: `k` of `n`, with `k < n <= MAX_SHARDS`, by row index or by
/// the cells of one column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Selection {
    pub n: u16,
    pub k: u16,
    /// The column (an index into the header) whose cell picks a row's
    /// shard; `None`: the row's index does.
    pub by: Option<usize>,
}

/// What `/counters`'s parameters ask for, before `field` is looked up in a
/// snapshot's header ([`Asked::resolve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asked<'a> {
    pub n: u16,
    pub k: u16,
    /// `sharding_field`, not empty.
    pub field: Option<&'a str>,
}

/// Why a shard request was refused (every one is a 400).
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// One of the pair was given without the other; this one is missing.
    Missing(&'static str),
    /// `sharding_field` was given without the pair.
    FieldAlone,
    /// `num_shards` is not an integer in 1..=[`MAX_SHARDS`] (clipped value).
    NumShards(String),
    /// `shard` is not an integer below `n` (clipped value).
    Shard { value: String, n: u16 },
    /// `sharding_field` is empty.
    EmptyField,
    /// `sharding_field` names no column of the header (clipped value, and
    /// the header's columns, clipped).
    UnknownField { value: String, columns: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Missing(p) => write!(
                f,
                "missing query parameter: {p} (num_shards and shard go together)"
            ),
            Error::FieldAlone => write!(
                f,
                "missing query parameter: num_shards (sharding_field goes with num_shards and shard)"
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
            Error::EmptyField => write!(
                f,
                "invalid sharding_field: empty (want a column of the header)"
            ),
            Error::UnknownField { value, columns } => {
                write!(f, "unknown sharding_field: {value} (want one of {columns})")
            }
        }
    }
}

impl std::error::Error for Error {}

/// The shard that `/counters`'s checked parameters (from `query::strict`
/// with [`PARAMS`]) ask for: `None` for the whole table.
pub fn parse<'a>(pairs: &'a [(&'static str, Cow<'_, str>)]) -> Result<Option<Asked<'a>>, Error> {
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_ref())
    };
    let field = get("sharding_field");
    let (n, k) = match (get("num_shards"), get("shard")) {
        (None, None) if field.is_some() => return Err(Error::FieldAlone),
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
    if field == Some("") {
        return Err(Error::EmptyField);
    }
    Ok(Some(Asked { n, k, field }))
}

impl Asked<'_> {
    /// The shard asked for, of a table whose header is `columns`: the
    /// field, if any, must name one of them exactly (the first, if named
    /// twice).
    pub fn resolve<S: AsRef<str>>(&self, columns: &[S]) -> Result<Selection, Error> {
        let by = match self.field {
            None => None,
            Some(field) => Some(
                columns
                    .iter()
                    .position(|c| c.as_ref() == field)
                    .ok_or_else(|| Error::UnknownField {
                        value: clip(field),
                        columns: json::clipped(
                            &columns
                                .iter()
                                .map(AsRef::as_ref)
                                .collect::<Vec<_>>()
                                .join(", "),
                            256,
                        ),
                    })?,
            ),
        };
        Ok(Selection {
            n: self.n,
            k: self.k,
            by,
        })
    }
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

/// The entity tag of shard `sel` of snapshot `id`, unquoted, distinct per
/// shard and per snapshot: `<id>-s<K>of<N>`, or `<id>-s<K>of<N>-by-<field>`
/// for a shard by `field` (the name of the column `sel.by`).
pub fn tag(id: &str, sel: Selection, field: Option<&str>) -> String {
    let mut tag = format!("{id}-s{}of{}", sel.k, sel.n);
    if let Some(field) = field {
        tag.push_str("-by-");
        tag.push_str(&field_tag(field));
    }
    tag
}

/// A field as a tag spells it: its name when that is 1 to 64 of
/// `[A-Za-z0-9_]`, else `~` and the name's FNV-1a 64 in hex. Either way
/// visible ASCII without quotes or `-`, so a `-gz` after it is never part
/// of it.
fn field_tag(field: &str) -> Cow<'_, str> {
    let plain = (1..=64).contains(&field.len())
        && field
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if plain {
        Cow::Borrowed(field)
    } else {
        Cow::Owned(format!("~{:016x}", partition::fnv1a64(field.as_bytes())))
    }
}

/// One snapshot's table, as shards are cut from it.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// The snapshot's id.
    pub id: &'a str,
    /// The whole CSV.
    pub csv: &'a [u8],
    /// Where its lines end (see [`super::simulator::Table::ends`]).
    pub ends: &'a [usize],
    /// The header's column names.
    pub columns: &'a [String],
}

impl Source<'_> {
    /// The header line's length.
    fn header_len(&self) -> usize {
        self.ends.first().copied().unwrap_or(0)
    }
}

/// One shard of one snapshot, ready to serve.
#[derive(Debug)]
pub struct Shard {
    /// The header line, then the shard's rows.
    pub body: Arc<[u8]>,
    /// `"<tag>"` (see [`tag`]).
    pub etag: String,
    /// `"<tag>-gz"`: the `ETag` of the gzip form.
    pub etag_gz: String,
    /// The body deflated, when first asked for.
    pub gz: gzip::Lazy,
}

impl Shard {
    fn new(tag: &str, body: Vec<u8>) -> Shard {
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

/// Which rows a shard has.
#[derive(Debug, Clone, Copy)]
enum Rows<'a> {
    /// Rows `k`, `k + n`, … (an index shard).
    Every { n: u16, k: u16 },
    /// These rows, in order (a shard by a field: its partition's list).
    Listed(&'a [u32]),
}

/// Calls `f` with the byte range of each row of `rows`, in order, in a
/// table whose lines end at `ends`.
fn each_row(ends: &[usize], rows: Rows<'_>, mut f: impl FnMut(usize, usize)) {
    match rows {
        Rows::Every { n, k } => ends
            .windows(2)
            .skip(usize::from(k))
            .step_by(usize::from(n).max(1))
            .for_each(|w| f(w[0], w[1])),
        Rows::Listed(list) => {
            for &i in list {
                let i = i as usize;
                if let (Some(&a), Some(&b)) = (ends.get(i), ends.get(i + 1)) {
                    f(a, b);
                }
            }
        }
    }
}

/// The bytes of `rows`, header not counted: O(rows), no copying.
fn row_bytes(ends: &[usize], rows: Rows<'_>) -> usize {
    let mut sum = 0usize;
    each_row(ends, rows, |a, b| sum += b.saturating_sub(a));
    sum
}

/// A shard of `csv`: its header line, then `rows`.
fn cut(csv: &[u8], ends: &[usize], rows: Rows<'_>) -> Vec<u8> {
    let header = csv.get(..ends.first().copied().unwrap_or(0)).unwrap_or(&[]);
    let mut out = Vec::with_capacity(header.len() + row_bytes(ends, rows));
    out.extend_from_slice(header);
    each_row(ends, rows, |a, b| {
        out.extend_from_slice(csv.get(a..b).unwrap_or(&[]));
    });
    out
}

/// Something made once, by the first request that needs it: concurrent
/// first requests wait on it, not on the cache's lock.
type Slot<T> = Arc<OnceLock<Arc<T>>>;

/// The shards cut from one snapshot, each cut once. Bounded: at most
/// [`MAX_ENTRIES`] shards, whose rows add up to at most
/// [`MAX_ROW_BYTES_FACTOR`] times the table's (headers, at most one per
/// entry, are not counted), and at most [`MAX_PARTITIONS`] partitions. A
/// shard past either bound is cut for its request alone and not kept, so
/// a client cycling through many pairs costs itself CPU, not the server
/// memory.
#[derive(Default)]
pub struct Cache {
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    slots: HashMap<Selection, Slot<Shard>>,
    /// Row bytes of the shards in `slots`.
    row_bytes: usize,
    /// The partitions shards by a field are cut from, per (column, n).
    partitions: HashMap<(usize, u16), Slot<Partition>>,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        write!(
            f,
            "Cache({} shards, {} row bytes, {} partitions)",
            e.slots.len(),
            e.row_bytes,
            e.partitions.len()
        )
    }
}

impl Cache {
    /// Shard `sel` of `src`: cut by the first request for it (with no lock
    /// held while reading or copying) and shared with every later one,
    /// within the bounds.
    pub fn get(&self, src: Source<'_>, sel: Selection) -> Arc<Shard> {
        // A shard by a field is cut from its partition, made at most once
        // here (and once per snapshot within the bounds).
        let part: OnceCell<Arc<Partition>> = OnceCell::new();
        let rows = || match sel.by {
            None => Rows::Every { n: sel.n, k: sel.k },
            Some(col) => Rows::Listed(
                part.get_or_init(|| self.partition(src, col, sel.n))
                    .rows(sel.k),
            ),
        };
        let make = || {
            let field = sel
                .by
                .map(|c| src.columns.get(c).map_or("", String::as_str));
            let body = cut(src.csv, src.ends, rows());
            Arc::new(Shard::new(&tag(src.id, sel, field), body))
        };
        if let Some(slot) = self.lock().slots.get(&sel).cloned() {
            return slot.get_or_init(make).clone();
        }
        // A miss: size the shard without the lock, then claim a slot if
        // another request has not meanwhile and the bounds allow.
        let size = row_bytes(src.ends, rows());
        let budget =
            MAX_ROW_BYTES_FACTOR.saturating_mul(src.csv.len().saturating_sub(src.header_len()));
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

    /// The rows of `src` grouped by the shard among `n` of their cell in
    /// column `col`: made by the first request that needs it and kept, or,
    /// past [`MAX_PARTITIONS`], made for this request alone.
    fn partition(&self, src: Source<'_>, col: usize, n: u16) -> Arc<Partition> {
        let make = || Arc::new(Partition::new(src.csv, src.ends, col, n));
        let slot = {
            let mut e = self.lock();
            match e.partitions.get(&(col, n)) {
                Some(slot) => Some(slot.clone()),
                None if e.partitions.len() < MAX_PARTITIONS => {
                    let slot = Slot::default();
                    e.partitions.insert((col, n), slot.clone());
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

    /// How many partitions are kept.
    pub fn partitions(&self) -> usize {
        self.lock().partitions.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::producer::Simulator;
    use crate::producer::simulator::COLUMNS;

    fn sel(n: u16, k: u16) -> Selection {
        Selection { n, k, by: None }
    }

    fn by(n: u16, k: u16, col: usize) -> Selection {
        Selection {
            n,
            k,
            by: Some(col),
        }
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

    /// What `q` asks for of the simulator's table.
    fn parsed(q: &str) -> Result<Option<Selection>, String> {
        let pairs = crate::query::strict(q, PARAMS).map_err(|e| e.to_string())?;
        let asked = parse(&pairs).map_err(|e| e.to_string())?;
        asked
            .map(|a| a.resolve(&COLUMNS).map_err(|e| e.to_string()))
            .transpose()
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
    fn parses_a_sharding_field_naming_a_column() {
        assert_eq!(
            parsed("num_shards=4&shard=1&sharding_field=switch_id"),
            Ok(Some(by(4, 1, 0)))
        );
        assert_eq!(
            parsed("sharding_field=temperature_c&shard=0&num_shards=1"),
            Ok(Some(by(1, 0, 8)))
        );
        assert_eq!(
            parsed("sharding%5Ffield=switch%5Fid&num_shards=2&shard=1"),
            Ok(Some(by(2, 1, 0)))
        );
        // Any column of the header, the first if two share a name.
        let pairs =
            crate::query::strict("num_shards=2&shard=0&sharding_field=port_guid", PARAMS).unwrap();
        let asked = parse(&pairs).unwrap().unwrap();
        assert_eq!(asked.field, Some("port_guid"));
        assert_eq!(
            asked.resolve(&["node_guid", "port_guid", "port_guid"]),
            Ok(by(2, 0, 1))
        );
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
            "unknown query parameter: x (want one of num_shards, shard, sharding_field)"
        );
    }

    #[test]
    fn refuses_a_bad_sharding_field() {
        let err = |q: &str| parsed(q).unwrap_err();
        let columns = COLUMNS.join(", ");
        for (q, want) in [
            (
                "sharding_field=switch_id".to_string(),
                "missing query parameter: num_shards (sharding_field goes with num_shards and shard)"
                    .to_string(),
            ),
            (
                "sharding_field=switch_id&shard=1".into(),
                "missing query parameter: num_shards (num_shards and shard go together)".into(),
            ),
            (
                "sharding_field=switch_id&num_shards=2".into(),
                "missing query parameter: shard (num_shards and shard go together)".into(),
            ),
            (
                "num_shards=2&shard=0&sharding_field=".into(),
                "invalid sharding_field: empty (want a column of the header)".into(),
            ),
            (
                "num_shards=2&shard=0&sharding_field".into(),
                "invalid sharding_field: empty (want a column of the header)".into(),
            ),
            (
                "num_shards=2&shard=0&sharding_field=port_guid".into(),
                format!("unknown sharding_field: port_guid (want one of {columns})"),
            ),
            (
                // Names are matched exactly.
                "num_shards=2&shard=0&sharding_field=Switch_ID".into(),
                format!("unknown sharding_field: Switch_ID (want one of {columns})"),
            ),
            (
                "num_shards=2&shard=0&sharding_field=switch_id&sharding_field=switch_id".into(),
                "repeated query parameter: sharding_field".into(),
            ),
            (
                // The pair is checked before the field.
                "num_shards=0&shard=0&sharding_field=nope".into(),
                "invalid num_shards: 0 (want an integer 1..=1024)".into(),
            ),
        ] {
            assert_eq!(err(&q), want, "{q}");
        }
        // Unknown at one shard of one too; a long name and a long header
        // are clipped.
        assert!(
            err("num_shards=1&shard=0&sharding_field=x").starts_with("unknown sharding_field: x ")
        );
        let long = err(&format!(
            "num_shards=2&shard=0&sharding_field={}",
            "f".repeat(5000)
        ));
        assert!(long.len() < 350 && long.contains('…'), "{long}");
        assert!(long.starts_with(&format!("unknown sharding_field: {}… (", "f".repeat(128))));
        let many: Vec<String> = (0..200).map(|i| format!("column_{i}")).collect();
        let e = Asked {
            n: 2,
            k: 0,
            field: Some("x"),
        }
        .resolve(&many)
        .unwrap_err()
        .to_string();
        assert!(
            e.len() < 320
                && e.starts_with("unknown sharding_field: x (want one of column_0, column_1, "),
            "{e}"
        );
        assert!(e.ends_with("…)"), "{e}");
    }

    /// A table of `switches` simulated switches.
    struct Table {
        csv: Vec<u8>,
        ends: Vec<usize>,
        columns: Vec<String>,
    }

    impl Table {
        fn simulated(switches: usize) -> Table {
            let t = Simulator::new(switches, Some(4)).render();
            Table {
                csv: t.csv.into_bytes(),
                ends: t.ends,
                columns: COLUMNS.iter().map(|c| c.to_string()).collect(),
            }
        }

        /// A table from its text (one record a line).
        fn of(text: &str) -> Table {
            let mut ends = Vec::new();
            for line in text.split_inclusive('\n') {
                ends.push(ends.last().copied().unwrap_or(0) + line.len());
            }
            let header = text.lines().next().unwrap_or("");
            Table {
                csv: text.as_bytes().to_vec(),
                ends,
                columns: header.split(',').map(str::to_string).collect(),
            }
        }

        fn src<'a>(&'a self, id: &'a str) -> Source<'a> {
            Source {
                id,
                csv: &self.csv,
                ends: &self.ends,
                columns: &self.columns,
            }
        }

        /// Index shard `k` of `n`, cut without a cache.
        fn cut(&self, n: u16, k: u16) -> Vec<u8> {
            cut(&self.csv, &self.ends, Rows::Every { n, k })
        }
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
        let t = Table::simulated(50);
        let text = std::str::from_utf8(&t.csv).unwrap();
        let header = text.lines().next().unwrap();
        let all: Vec<&str> = text.lines().skip(1).collect();
        for n in [1u16, 3, 16, 50, 64, 1024] {
            let mut seen = Vec::new();
            for k in 0..n {
                let body = t.cut(n, k);
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
            let mut every = ids(&t.csv);
            every.sort();
            assert_eq!(seen, every, "{n} shards");
        }
        assert_eq!(t.cut(1, 0), t.csv);
    }

    #[test]
    fn a_switch_keeps_its_shard_as_the_fleet_grows() {
        for switches in [8, 100, 1200] {
            let t = Table::simulated(switches);
            let one = ids(&t.cut(4, 1));
            assert_eq!(one[..2], ["sw-001", "sw-005"], "{switches} switches");
            let far = ids(&t.cut(1000, 999));
            assert_eq!(far.len(), switches / 1000, "{switches} switches");
        }
        let t = Table::simulated(1200);
        assert_eq!(ids(&t.cut(1000, 0)), ["sw-000", "sw-1000"]);
    }

    #[test]
    fn a_shard_by_a_field_has_the_rows_whose_cell_hashes_to_it() {
        let t = Table::simulated(300);
        let text = std::str::from_utf8(&t.csv).unwrap();
        let header = text.lines().next().unwrap();
        let all: Vec<&str> = text.lines().skip(1).collect();
        for n in [2u16, 3, 16, 1024] {
            let cache = Cache::default();
            let mut seen = Vec::new();
            for k in 0..n {
                let shard = cache.get(t.src("s"), by(n, k, 0));
                let body = std::str::from_utf8(&shard.body).unwrap();
                let lines: Vec<&str> = body.lines().collect();
                assert_eq!(lines[0], header);
                // The table's rows whose switch_id hashes to k, in order.
                let want: Vec<&str> = all
                    .iter()
                    .filter(|l| {
                        let id = l.split(',').next().unwrap();
                        partition::fnv1a64(id.as_bytes()) % u64::from(n) == u64::from(k)
                    })
                    .copied()
                    .collect();
                assert_eq!(lines[1..], want[..], "shard {k} of {n} by switch_id");
                seen.extend(ids(&shard.body));
            }
            assert_eq!(seen.len(), 300, "every row once, {n} shards");
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), 300, "every row once, {n} shards");
            assert_eq!(cache.partitions(), 1, "one partition for every k");
        }
        // sw-000's hash is 0xeda72eb935966c52: shard 2 of 4, 2 of 16.
        let cache = Cache::default();
        assert!(ids(&cache.get(t.src("s"), by(4, 2, 0)).body).contains(&"sw-000".into()));
        assert!(ids(&cache.get(t.src("s"), by(16, 2, 0)).body).contains(&"sw-000".into()));
        assert_eq!(cache.partitions(), 2);
    }

    #[test]
    fn any_column_shards_and_one_key_stays_together() {
        // A UFM-shaped table: the ports of a node, keyed by its GUID (one
        // of them quoted, which is the same cell).
        let t = Table::of(
            "node_guid,port_guid,port,rx\n\
             0xa1,0xa101,1,5\n\
             0xb2,0xb201,1,6\n\
             \"0xa1\",0xa102,2,7\n\
             0xc3,0xc301,1,8\n\
             0xb2,0xb202,2,9\n",
        );
        let home = |cell: &str, n: u16| partition::shard_of(cell, n);
        for n in [2u16, 3, 5] {
            let cache = Cache::default();
            let mut rows = 0;
            for k in 0..n {
                let shard = cache.get(t.src("u"), by(n, k, 0));
                let body = std::str::from_utf8(&shard.body).unwrap();
                let lines: Vec<&str> = body.lines().skip(1).collect();
                rows += lines.len();
                for line in &lines {
                    let guid = line.split(',').next().unwrap().trim_matches('"');
                    assert_eq!(home(guid, n), k, "{line}");
                }
                assert_eq!(shard.etag, format!("\"u-s{k}of{n}-by-node_guid\""));
            }
            assert_eq!(rows, 5);
            // Both of 0xa1's ports in the one shard, in table order.
            let a = cache.get(t.src("u"), by(n, home("0xa1", n), 0));
            let body = std::str::from_utf8(&a.body).unwrap();
            let ports: Vec<&str> = body.lines().filter(|l| l.contains("0xa1")).collect();
            assert_eq!(ports, ["0xa1,0xa101,1,5", "\"0xa1\",0xa102,2,7"]);
        }
        // By port_guid: a column other than the first.
        let cache = Cache::default();
        let shard = cache.get(t.src("u"), by(2, home("0xc301", 2), 1));
        assert!(
            std::str::from_utf8(&shard.body)
                .unwrap()
                .contains("0xc3,0xc301,1,8\n")
        );
        assert!(shard.etag.ends_with("-by-port_guid\""));
    }

    #[test]
    fn a_shard_by_a_field_has_a_tag_of_its_own() {
        assert_eq!(tag("s-1", sel(4, 1), None), "s-1-s1of4");
        assert_eq!(
            tag("s-1", by(4, 1, 0), Some("switch_id")),
            "s-1-s1of4-by-switch_id"
        );
        assert_eq!(tag("s-1", by(4, 1, 0), Some("gz")), "s-1-s1of4-by-gz");
        // A name that is not plain letters, digits and `_`: its hash.
        for name in ["port guid", "a-gz", "\"q\"", "é", "", &"x".repeat(65)] {
            let t = tag("s-1", by(4, 1, 0), Some(name));
            let hash = format!("s-1-s1of4-by-~{:016x}", partition::fnv1a64(name.as_bytes()));
            assert_eq!(t, hash, "{name:?}");
        }
        let t = Table::simulated(20);
        let cache = Cache::default();
        let a = cache.get(t.src("s-1"), sel(4, 1));
        let b = cache.get(t.src("s-1"), by(4, 1, 0));
        assert_eq!(b.etag, "\"s-1-s1of4-by-switch_id\"");
        assert_eq!(b.etag_gz, "\"s-1-s1of4-by-switch_id-gz\"");
        assert_ne!(a.etag, b.etag);
        assert_ne!(a.etag_gz, b.etag_gz);
        let c = cache.get(t.src("s-1"), by(4, 1, 8));
        assert_eq!(c.etag, "\"s-1-s1of4-by-temperature_c\"");
        assert_eq!(cache.len(), 3, "cached apart");
        assert!(Arc::ptr_eq(&b, &cache.get(t.src("s-1"), by(4, 1, 0))));
        for e in [&a.etag, &b.etag, &c.etag, &b.etag_gz] {
            let inner = e.trim_matches('"');
            assert!(
                inner.bytes().all(|c| c.is_ascii_graphic() && c != b'"'),
                "{e}"
            );
        }
    }

    #[test]
    fn a_shard_is_cut_once_and_shared() {
        let t = Table::simulated(40);
        let cache = Cache::default();
        let a = cache.get(t.src("s-1"), sel(4, 1));
        let b = cache.get(t.src("s-1"), sel(4, 1));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(Arc::ptr_eq(&a.body, &b.body));
        assert_eq!(a.etag, "\"s-1-s1of4\"");
        assert_eq!(a.etag_gz, "\"s-1-s1of4-gz\"");
        let c = cache.get(t.src("s-1"), sel(4, 2));
        assert!(!Arc::ptr_eq(&a.body, &c.body));
        assert_ne!(a.etag, c.etag);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.partitions(), 0, "index shards read no cells");
        // Threads racing for one shard all get the one body, by index or
        // by a field.
        for s in [sel(3, 0), by(3, 0, 0)] {
            let cache = Cache::default();
            let bodies: Vec<Arc<Shard>> = std::thread::scope(|scope| {
                let hs: Vec<_> = (0..8)
                    .map(|_| scope.spawn(|| cache.get(t.src("s-2"), s)))
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert!(bodies.iter().all(|b| Arc::ptr_eq(b, &bodies[0])));
        }
    }

    #[test]
    fn the_cache_is_bounded() {
        let t = Table::simulated(2000);
        // Entries: every shard of 1024, then one more is cut but not kept.
        let cache = Cache::default();
        for k in 0..1024 {
            cache.get(t.src("s"), sel(1024, k));
        }
        assert_eq!(cache.len(), MAX_ENTRIES);
        let a = cache.get(t.src("s"), sel(2, 0));
        let b = cache.get(t.src("s"), sel(2, 0));
        assert!(
            !Arc::ptr_eq(&a.body, &b.body),
            "past the bound: per request"
        );
        assert_eq!(a.body, b.body);
        assert_eq!(cache.len(), MAX_ENTRIES);
        // Bytes: two whole sets of shards fit, a third does not; shards by
        // a field count as index shards do.
        let cache = Cache::default();
        for k in 0..2 {
            cache.get(t.src("s"), sel(2, k));
        }
        for k in 0..3 {
            cache.get(t.src("s"), by(3, k, 0));
        }
        assert_eq!(cache.len(), 5);
        cache.get(t.src("s"), sel(4, 0));
        cache.get(t.src("s"), by(4, 0, 0));
        assert_eq!(cache.len(), 5, "a third set is not kept");
        let e = cache.lock();
        assert!(e.row_bytes <= 2 * (t.csv.len() - t.ends[0]));
        drop(e);
        // Partitions: MAX_PARTITIONS kept; past that, made per request,
        // and the shard is the same.
        let cache = Cache::default();
        for n in 2..2 + MAX_PARTITIONS as u16 {
            cache.get(t.src("s"), by(n, 0, 0));
        }
        assert_eq!(cache.partitions(), MAX_PARTITIONS);
        let past = cache.get(t.src("s"), by(100, 7, 0));
        assert_eq!(cache.partitions(), MAX_PARTITIONS);
        let fresh = Cache::default().get(t.src("s"), by(100, 7, 0));
        assert_eq!(past.body, fresh.body);
    }

    #[test]
    fn gzip_of_a_shard_inflates_to_its_body() {
        use std::io::Read;
        let t = Table::simulated(30);
        for s in [sel(3, 2), by(3, 2, 0)] {
            let shard = Cache::default().get(t.src("s"), s);
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
}
