//! The last `HISTORY_SNAPSHOTS` values of every switch × metric, for
//! `/telemetry/History`: one ring per shard (upstream), one entry per
//! snapshot of that shard the poller accepted (a 200; a 304 adds nothing),
//! the oldest dropped once the ring is full.
//!
//! An entry holds what answering needs and nothing of the snapshot itself
//! (no rendered items, no CSV, no gzip):
//!
//! - its time: the producer's `X-Snapshot-Ts`, else when it was fetched;
//! - the snapshot id, so that an answer stops at the snapshot the fabric
//!   serves (the entry is recorded just before the fabric that serves it is
//!   swapped in, so a reader never misses the point its entity tag names,
//!   and never shows one newer than it);
//! - the switch ids with their index ([`IdIndex`]: the ids concatenated,
//!   their ends, an open-addressing table of 4 bytes a slot), and the
//!   fields, both behind an `Arc` shared with the previous entry when they
//!   are equal, which is the usual case: a fleet of 100k switches keeps one
//!   copy of its ids (2.3 MB), not sixty;
//! - every value, row-major, in 4 bytes: `value_code`.
//!
//! Values are kept as the CSV wrote them (as the snapshot spells them in
//! JSON: `121.50` stays `121.50`, `-0` stays `-0`). A plain decimal with at
//! most 8 significant digits (any decimal up to 134,217,727 units of its
//! last place) and at most 14 decimal places is packed into the `u32`
//! itself: a sign bit, a 27-bit magnitude (every digit, the point left
//! out) and a 4-bit count of decimal places, which renders back to the very
//! same text (`121.50` is 12150 with 2 places, `0.05` is 5 with 2). Any
//! other spelling (an exponent, more digits) is escaped: places 15, and the
//! other 28 bits index a side table of the entry's own texts (so a 64-bit
//! counter comes back digit for digit). An empty cell is the reserved code
//! `NULL` and comes back `null`; a label's text is not kept (History
//! answers for values only). The data server's values all fit, so the side
//! table is normally empty.
//!
//! Memory: 4 bytes × switches × metrics per entry, plus the ids when they
//! change. At 100,000 switches × 8 metrics × 60 entries (the default) that
//! is 192 MB of values and 2.3 MB of ids and index, under the 200 MB it
//! must fit in; `/stats` reports the figure (`history.bytes`). The knob
//! stops at 1440 (a day of one-minute polls): memory grows linearly with
//! it, so 64 switches × 8 × 1440 is 3 MB but 100k switches need 60 or
//! fewer to stay under 200 MB.
//!
//! Writing: the poller encodes the entry in `State::publish` before any
//! shared lock (a few milliseconds at 100k switches), then takes the ring's
//! own mutex just to push it; the evicted entry is freed after the unlock.
//! Reading: a request clones the ring's `Arc`s under the mutex (at most
//! 1440 pointers) and reads them unlocked.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use super::snapshot::{Ids, Index, Snapshot};
use crate::json;

/// The most `HISTORY_SNAPSHOTS` may be.
pub const MAX_SNAPSHOTS: usize = 1440;

/// The default `HISTORY_SNAPSHOTS`.
pub const DEFAULT_SNAPSHOTS: usize = 60;

/// In a value code, the low 4 bits: decimal places, or this for an
/// escaped value (the other 28 bits then index the side table).
const ESCAPE: u32 = 0xF;
/// The largest magnitude a plain code holds (27 bits).
const MAX_MAGNITUDE: u32 = (1 << 27) - 1;
/// The most decimal places a plain code holds.
const MAX_PLACES: usize = 14;
/// The sign bit of a plain code.
const NEGATIVE: u32 = 1 << 31;
/// The most escaped values one entry holds (28 bits of index, the last
/// one being [`NULL`]).
const MAX_ESCAPED: usize = (1 << 28) - 1;
/// An empty cell (`null`), and a label's text, which history does not
/// keep: the last escape index, never a side-table one.
const NULL: u32 = u32::MAX;

/// Texts that do not fit a plain code: concatenated, with their ends.
#[derive(Debug, Default)]
pub struct Side {
    text: String,
    ends: Vec<u32>,
}

impl Side {
    fn heap_bytes(&self) -> usize {
        self.text.capacity() + self.ends.capacity() * size_of::<u32>()
    }

    fn get(&self, i: usize) -> &str {
        let Some(&end) = self.ends.get(i) else {
            return "";
        };
        let start = match i {
            0 => 0,
            _ => self.ends[i - 1],
        };
        self.text.get(start as usize..end as usize).unwrap_or("")
    }
}

/// The code of `text` (a JSON number as the snapshot spells it): plain if
/// it fits, else escaped into `side`; `None` if `side` is full.
pub fn encode(text: &str, side: &mut Side) -> Option<u32> {
    if let Some(code) = plain_code(text) {
        return Some(code);
    }
    if text == "null" || text.starts_with('"') {
        return Some(NULL);
    }
    let index = side.ends.len();
    let end = u32::try_from(side.text.len() + text.len()).ok()?;
    if index >= MAX_ESCAPED {
        return None;
    }
    side.text.push_str(text);
    side.ends.push(end);
    Some((index as u32) << 4 | ESCAPE)
}

/// The plain code of `-?(0|[1-9][0-9]*)(\.[0-9]+)?` when its digits (the
/// point left out) make at most [`MAX_MAGNITUDE`] and it has at most
/// [`MAX_PLACES`] decimals; `None` for anything else.
fn plain_code(text: &str) -> Option<u32> {
    let b = text.as_bytes();
    let (negative, b) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, b),
    };
    match b {
        [b'0', next, ..] if next.is_ascii_digit() => return None,
        [b'0'..=b'9', ..] => {}
        _ => return None,
    }
    let mut magnitude: u32 = 0;
    let mut digits = |run: &[u8]| -> Option<usize> {
        let n = run.iter().take_while(|c| c.is_ascii_digit()).count();
        for &d in &run[..n] {
            magnitude = magnitude
                .checked_mul(10)?
                .checked_add(u32::from(d - b'0'))?;
        }
        (magnitude <= MAX_MAGNITUDE).then_some(n)
    };
    let whole = digits(b)?;
    let places = match &b[whole..] {
        [] => 0,
        [b'.', frac @ ..] => match digits(frac)? {
            n if n == frac.len() && (1..=MAX_PLACES).contains(&n) => n,
            _ => return None,
        },
        _ => return None,
    };
    Some(u32::from(negative) << 31 | magnitude << 4 | places as u32)
}

/// Appends the text `code` stands for (escaped ones read from `side`).
pub fn decode(code: u32, side: &Side, out: &mut String) {
    if code == NULL {
        out.push_str("null");
        return;
    }
    let places = (code & 0xF) as usize;
    if places == ESCAPE as usize {
        out.push_str(side.get((code >> 4) as usize));
        return;
    }
    if code & NEGATIVE != 0 {
        out.push('-');
    }
    // At most 9 digits of magnitude, or places + 1 with the leading zeros.
    let mut buf = [b'0'; 16];
    let mut n = (code >> 4) & MAX_MAGNITUDE;
    let mut len = 0;
    loop {
        buf[buf.len() - 1 - len] = b'0' + (n % 10) as u8;
        n /= 10;
        len += 1;
        if n == 0 {
            break;
        }
    }
    let len = len.max(places + 1);
    let digits = &buf[buf.len() - len..];
    let (whole, frac) = digits.split_at(len - places);
    out.push_str(std::str::from_utf8(whole).unwrap_or("0"));
    if places > 0 {
        out.push('.');
        out.push_str(std::str::from_utf8(frac).unwrap_or(""));
    }
}

/// A copy of a snapshot's switch ids with their index, shared by the
/// entries of consecutive snapshots that have the same ids.
pub struct IdIndex {
    ids: Ids,
    index: Index,
}

impl IdIndex {
    /// `None` if two ids are equal (a snapshot's never are).
    fn new(ids: Ids) -> Option<IdIndex> {
        let index = Index::build(&ids).ok()?;
        Some(IdIndex { ids, index })
    }

    fn heap_bytes(&self) -> usize {
        self.ids.heap_bytes() + self.index.heap_bytes()
    }

    /// The row of `id`, if present.
    pub fn row(&self, id: &str) -> Option<usize> {
        self.index.find(&self.ids, id)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.len() == 0
    }
}

/// One accepted snapshot of a shard, as history keeps it.
pub struct Entry {
    snapshot_id: Box<str>,
    /// The producer's time of the snapshot, else when it was fetched.
    pub ts_ms: u64,
    pub ids: Arc<IdIndex>,
    pub fields: Arc<Vec<String>>,
    /// Row-major, `fields.len()` a row.
    values: Box<[u32]>,
    side: Side,
}

impl Entry {
    /// `snap` encoded, sharing the ids and the fields of `prev` (the
    /// shard's previous entry) when they are the same. `None` only past
    /// 2^28 escaped values in one snapshot.
    pub fn new(snap: &Snapshot, prev: Option<&Entry>) -> Option<Entry> {
        let ids = match prev {
            Some(p) if p.ids.ids == *snap.ids() => p.ids.clone(),
            _ => Arc::new(IdIndex::new(snap.ids().clone())?),
        };
        let fields = match prev {
            Some(p) if *p.fields == snap.fields => p.fields.clone(),
            _ => Arc::new(snap.fields.clone()),
        };
        let mut side = Side::default();
        let mut values = Vec::with_capacity(snap.rows() * snap.fields.len());
        for row in 0..snap.rows() {
            for text in snap.cells(row).iter() {
                values.push(encode(text, &mut side)?);
            }
        }
        side.text.shrink_to_fit();
        side.ends.shrink_to_fit();
        Some(Entry {
            snapshot_id: snap.id().into(),
            ts_ms: snap.producer_ts_ms().unwrap_or(snap.origin.fetched_ms),
            ids,
            fields,
            values: values.into_boxed_slice(),
            side,
        })
    }

    pub fn snapshot_id(&self) -> &str {
        &self.snapshot_id
    }

    /// Heap bytes of its own (not the ids and fields it may share).
    fn own_bytes(&self) -> usize {
        size_of::<Entry>()
            + self.snapshot_id.len()
            + self.values.len() * size_of::<u32>()
            + self.side.heap_bytes()
    }

    /// Appends the value at (`row`, `col`) as its snapshot spelled it;
    /// false (nothing appended) outside the table.
    pub fn push_value(&self, row: usize, col: usize, out: &mut String) -> bool {
        let width = self.fields.len();
        if col >= width {
            return false;
        }
        match row
            .checked_mul(width)
            .and_then(|i| self.values.get(i + col))
        {
            Some(&code) => {
                decode(code, &self.side, out);
                true
            }
            None => false,
        }
    }
}

/// One shard's entries, oldest first.
#[derive(Default)]
pub struct Ring {
    entries: Mutex<VecDeque<Arc<Entry>>>,
}

impl Ring {
    /// The newest entry.
    pub fn last(&self) -> Option<Arc<Entry>> {
        self.lock().back().cloned()
    }

    /// Appends `entry`, dropping the oldest beyond `keep` (freed after the
    /// lock is released).
    pub fn push(&self, entry: Entry, keep: usize) {
        let mut evicted = Vec::new();
        {
            let mut entries = self.lock();
            entries.push_back(Arc::new(entry));
            while entries.len() > keep {
                evicted.extend(entries.pop_front());
            }
        }
        drop(evicted);
    }

    /// Every entry, oldest first.
    pub fn entries(&self) -> Vec<Arc<Entry>> {
        self.lock().iter().cloned().collect()
    }

    /// Entries held, and their heap bytes: each one's own, and each id
    /// index and field list once (only consecutive entries share them).
    pub fn figures(&self) -> (usize, usize) {
        let entries = self.entries();
        let mut bytes = 0;
        let mut prev: Option<&Entry> = None;
        for e in entries.iter().map(|e| &**e) {
            bytes += e.own_bytes();
            if !prev.is_some_and(|p| Arc::ptr_eq(&p.ids, &e.ids)) {
                bytes += size_of::<IdIndex>() + e.ids.heap_bytes();
            }
            if !prev.is_some_and(|p| Arc::ptr_eq(&p.fields, &e.fields)) {
                bytes += e.fields.iter().map(|f| f.capacity()).sum::<usize>()
                    + e.fields.capacity() * size_of::<String>();
            }
            prev = Some(e);
        }
        (entries.len(), bytes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Entry>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What `/stats` reports of history.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Figures {
    /// `HISTORY_SNAPSHOTS`.
    pub snapshots: usize,
    /// Entries held, every shard together.
    pub entries: usize,
    /// Their heap bytes.
    pub bytes: usize,
}

/// Appends the points of `switch_id`'s `metric` in `entries` (a shard's,
/// oldest first) up to the newest entry of snapshot `served` (the one the
/// fabric serves; all of them if none is), as `[ts_ms,value]` separated by
/// commas. Entries lacking the switch or the metric add nothing.
pub fn push_points(
    entries: &[Arc<Entry>],
    served: &str,
    switch_id: &str,
    metric: &str,
    out: &mut String,
) {
    let upto = entries
        .iter()
        .rposition(|e| e.snapshot_id() == served)
        .map_or(entries.len(), |i| i + 1);
    let mut first = true;
    // Consecutive entries mostly share their ids and fields: the row and
    // column found in one entry serve the next while it shares them.
    let mut found: Option<(&Entry, Option<(usize, usize)>)> = None;
    for e in &entries[..upto] {
        let at = match found {
            Some((p, at)) if Arc::ptr_eq(&p.ids, &e.ids) && Arc::ptr_eq(&p.fields, &e.fields) => at,
            _ => e
                .ids
                .row(switch_id)
                .zip(e.fields.iter().position(|f| f == metric)),
        };
        found = Some((e, at));
        let Some((row, col)) = at else {
            continue;
        };
        let mark = out.len();
        out.push_str(if first { "[" } else { ",[" });
        let _ = write!(out, "{}", e.ts_ms);
        out.push(',');
        if e.push_value(row, col, out) {
            out.push(']');
            first = false;
        } else {
            out.truncate(mark);
        }
    }
}

/// The entity tag of a History answer from `entries` under the fabric
/// tagged `fabric_id`: `"<fabric_id>-h<16 hex>"`, the hex a hash of every
/// entry's snapshot id and time. A snapshot id can come back (an upstream
/// without tags sending an earlier body again), and the ring has grown
/// since: the points differ, so the tag must.
pub fn etag(fabric_id: &str, entries: &[Arc<Entry>]) -> String {
    let mut text = String::new();
    for e in entries {
        text.push_str(e.snapshot_id());
        let _ = write!(text, "@{};", e.ts_ms);
    }
    let h = crate::xxh64::hash(text.as_bytes(), 0);
    format!("\"{fabric_id}-h{h:016x}\"")
}

/// The History body: `{"switch_id":…,"metric":…,"points":[…]}` (`id`
/// for keyed rows: `id_name`).
pub fn body(
    entries: &[Arc<Entry>],
    served: &str,
    id_name: &str,
    switch_id: &str,
    metric: &str,
) -> String {
    let mut out = String::with_capacity(64 + switch_id.len() + metric.len() + entries.len() * 24);
    out.push_str("{\"");
    out.push_str(id_name);
    out.push_str("\":");
    json::push_str(&mut out, switch_id);
    out.push_str(",\"metric\":");
    json::push_str(&mut out, metric);
    out.push_str(",\"points\":[");
    push_points(entries, served, switch_id, metric, &mut out);
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::store::snapshot::{Limits, Origin};

    fn round_trip(text: &str) -> (String, bool) {
        let mut side = Side::default();
        let code = encode(text, &mut side).unwrap();
        let mut out = String::new();
        decode(code, &side, &mut out);
        (out, code & 0xF != ESCAPE)
    }

    #[test]
    fn every_tricky_spelling_comes_back_as_it_was() {
        // (text, packed into the code itself)
        for (text, plain) in [
            ("0", true),
            ("-0", true),
            ("0.0", true),
            ("-0.000", true),
            ("0.000", true),
            ("121.5", true),
            ("121.50", true),
            ("-0.25", true),
            ("0.05", true),
            ("0.00000000000001", true),
            ("0.000000000000001", false),
            ("1.0000000", true),
            ("1.00000000000000", false),
            ("10", true),
            ("100.000", true),
            ("99999999", true),
            ("-99999999", true),
            ("134217727", true),
            ("-1342177.27", true),
            ("134217728", false),
            ("1342177.28", false),
            ("4294967296", false),
            ("99999999999999999999", false),
            ("123456789012345678901234567890.5", false),
            ("1e3", false),
            ("1E-7", false),
            ("-2.5e+3", false),
            ("1e-7", false),
            ("1.7976931348623157e308", false),
            // Not JSON (a snapshot never holds these), still kept as is.
            ("05", false),
            (".5", false),
            ("1.", false),
            ("+2", false),
            ("-", false),
            ("", false),
            ("--1", false),
            ("1.2.3", false),
            ("１", false),
        ] {
            assert_eq!(round_trip(text), (text.to_string(), plain), "{text:?}");
        }
    }

    /// A random number as JSON spells one, sometimes with an exponent.
    fn random_literal(rng: &mut fastrand::Rng) -> String {
        let mut s = String::new();
        if rng.bool() {
            s.push('-');
        }
        match rng.u8(0..4) {
            0 => s.push('0'),
            _ => {
                s.push(char::from(b'1' + rng.u8(0..9)));
                for _ in 0..rng.usize(0..12) {
                    s.push(char::from(b'0' + rng.u8(0..10)));
                }
            }
        }
        if rng.bool() {
            s.push('.');
            for _ in 0..rng.usize(1..18) {
                s.push(char::from(b'0' + rng.u8(0..10)));
            }
        }
        if rng.u8(0..6) == 0 {
            s.push(if rng.bool() { 'e' } else { 'E' });
            s.push_str(["", "+", "-"][rng.usize(0..3)]);
            s.push_str(&rng.u16(0..400).to_string());
        }
        s
    }

    #[test]
    fn random_numbers_round_trip_and_plain_decimals_are_not_escaped() {
        let mut rng = fastrand::Rng::with_seed(0x4157_0e1d);
        let mut plain = 0;
        for i in 0..200_000 {
            let text = match i % 3 {
                0 => random_literal(&mut rng),
                1 => {
                    let mut t = String::new();
                    json::push_f64(&mut t, f64::from_bits(rng.u64(..)));
                    t
                }
                _ => {
                    // What a producer writes: a value with 1 or 2 decimals.
                    let v = rng.i64(-10_000_000..10_000_000);
                    match rng.u8(0..3) {
                        0 => v.to_string(),
                        1 => format!("{:.1}", v as f64 / 10.0),
                        _ => format!("{:.2}", v as f64 / 100.0),
                    }
                }
            };
            if text == "null" {
                continue;
            }
            let (back, packed) = round_trip(&text);
            assert_eq!(back, text);
            // Whatever fits must be packed: no exponent, at most 14
            // places, the digits at most 2^27 - 1.
            let unsigned = text.strip_prefix('-').unwrap_or(&text);
            let (whole, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
            let digits = format!("{whole}{frac}");
            let fits = json::is_number_literal(&text)
                && !text.contains(['e', 'E'])
                && frac.len() <= MAX_PLACES
                && digits
                    .parse::<u64>()
                    .is_ok_and(|d| d <= u64::from(MAX_MAGNITUDE));
            assert_eq!(packed, fits, "{text:?}");
            plain += usize::from(packed);
        }
        assert!(plain > 60_000, "only {plain} plain");
    }

    fn snapshot(id: &str, ts: Option<u64>, csv: &str) -> Snapshot {
        let origin = Origin {
            id: id.into(),
            producer_ts_ms: ts,
            fetched_ms: 9_999,
        };
        Snapshot::parse(csv.as_bytes(), origin, Limits { max_rows: 10_000 }).unwrap()
    }

    fn value(e: &Entry, row: usize, col: usize) -> Option<String> {
        let mut out = String::new();
        e.push_value(row, col, &mut out).then_some(out)
    }

    #[test]
    fn an_entry_holds_every_value_as_the_snapshot_spells_it() {
        let csv = "switch_id,a,b,\"c,d\"\nsw-0,121.50,-0,1e3\nsw-1,.5,+2,99999999999999999999\nx,0.000,4.,-1E-7\n";
        let snap = snapshot("s1", Some(1_000), csv);
        let e = Entry::new(&snap, None).unwrap();
        assert_eq!((e.ts_ms, e.snapshot_id()), (1_000, "s1"));
        assert_eq!(e.ids.len(), 3);
        for row in 0..3 {
            for col in 0..3 {
                assert_eq!(value(&e, row, col).as_deref(), Some(snap.number(row, col)));
            }
            assert_eq!(e.ids.row(snap.switch_id(row)), Some(row));
        }
        assert_eq!(value(&e, 0, 0).as_deref(), Some("121.50"));
        assert_eq!(value(&e, 3, 0), None);
        assert_eq!(value(&e, 0, 3), None);
        assert_eq!(e.ids.row("sw-9"), None);
        // Three spellings did not fit.
        assert_eq!(e.side.ends.len(), 3);
        // No producer time: the fetch time.
        let e = Entry::new(&snapshot("s2", None, csv), None).unwrap();
        assert_eq!(e.ts_ms, 9_999);
    }

    #[test]
    fn the_tag_changes_with_the_points_even_when_an_id_comes_back() {
        let a = Arc::new(Entry::new(&snapshot("a", Some(1), "switch_id,x\nsw,1\n"), None).unwrap());
        let b = Arc::new(Entry::new(&snapshot("b", Some(2), "switch_id,x\nsw,2\n"), None).unwrap());
        let first = etag("a", std::slice::from_ref(&a));
        assert!(
            first.starts_with("\"a-h") && first.len() == "\"a-h\"".len() + 16,
            "{first}"
        );
        // A, B, then A again: the same id is served, with more points.
        let again = etag("a", &[a.clone(), b.clone(), a.clone()]);
        assert_ne!(first, again);
        assert_eq!(again, etag("a", &[a.clone(), b, a]));
    }

    #[test]
    fn equal_ids_and_fields_are_shared_with_the_previous_entry() {
        let a = Entry::new(&snapshot("1", Some(1), "switch_id,m\nx,1\ny,2\n"), None).unwrap();
        let b = Entry::new(&snapshot("2", Some(2), "switch_id,m\nx,3\ny,4\n"), Some(&a)).unwrap();
        assert!(Arc::ptr_eq(&a.ids, &b.ids) && Arc::ptr_eq(&a.fields, &b.fields));
        // Other ids (here, other order): a new index; the fields still shared.
        let c = Entry::new(&snapshot("3", Some(3), "switch_id,m\ny,5\nx,6\n"), Some(&b)).unwrap();
        assert!(!Arc::ptr_eq(&b.ids, &c.ids) && Arc::ptr_eq(&b.fields, &c.fields));
        assert_eq!(c.ids.row("x"), Some(1));
        let d = Entry::new(&snapshot("4", Some(4), "switch_id,n\ny,5\nx,6\n"), Some(&c)).unwrap();
        assert!(Arc::ptr_eq(&c.ids, &d.ids) && !Arc::ptr_eq(&c.fields, &d.fields));
    }

    fn table(rows: usize, v: usize) -> String {
        let mut csv = String::from("switch_id,a,b\n");
        for r in 0..rows {
            csv.push_str(&format!("sw-{r:03},{v}.5,{r}\n"));
        }
        csv
    }

    #[test]
    fn the_ring_keeps_the_newest_and_counts_its_bytes() {
        let ring = Ring::default();
        assert_eq!(ring.figures(), (0, 0));
        let mut sizes = Vec::new();
        for i in 0..10u64 {
            let snap = snapshot(&format!("s{i}"), Some(100 + i), &table(1_000, i as usize));
            let entry = Entry::new(&snap, ring.last().as_deref()).unwrap();
            ring.push(entry, 3);
            sizes.push(ring.figures());
        }
        let entries = ring.entries();
        let ts: Vec<u64> = entries.iter().map(|e| e.ts_ms).collect();
        assert_eq!(ts, [107, 108, 109]);
        assert!(Arc::ptr_eq(&entries[0].ids, &entries[2].ids));
        // 8 kB of values an entry, the ids (about 20 kB) once.
        let (one, three) = (sizes[0].1, sizes[2].1);
        assert_eq!(sizes[0].0, 1);
        assert!(one > 8_000 + 7_000 + 8_192 && one < 40_000, "{one}");
        let entry_bytes = entries[1].own_bytes();
        assert!((8_000..8_300).contains(&entry_bytes), "{entry_bytes}");
        assert_eq!(three, one + 2 * entry_bytes);
        // Bounded: full, it stays the same.
        assert!(sizes[3..].iter().all(|&s| s == sizes[2]), "{sizes:?}");
        // New ids are counted too, and the old ones go with the last entry
        // that held them.
        let other = snapshot("o", Some(200), "switch_id,a,b\nq,1,2\n");
        ring.push(Entry::new(&other, ring.last().as_deref()).unwrap(), 3);
        let (n, bytes) = ring.figures();
        assert_eq!(n, 3);
        assert!(bytes > three - entry_bytes, "{bytes} {three}");
        for _ in 0..2 {
            ring.push(Entry::new(&other, ring.last().as_deref()).unwrap(), 3);
        }
        let (_, bytes) = ring.figures();
        assert!(bytes < 1_500, "{bytes}");
    }

    #[test]
    fn points_skip_what_an_entry_lacks_and_stop_at_the_served_snapshot() {
        let ring = Ring::default();
        for (id, csv) in [
            ("1", "switch_id,a,b\nx,1,2\ny,3,4\n"),
            ("2", "switch_id,a\nx,1.50\ny,3\n"),
            ("3", "switch_id,a,b\ny,5,6\n"),
            ("4", "switch_id,b,a\nx,-0,1e3\n"),
            ("5", "switch_id,b,a\nx,7,8\n"),
        ] {
            let ts = id.parse::<u64>().unwrap() * 1_000;
            let e = Entry::new(&snapshot(id, Some(ts), csv), ring.last().as_deref()).unwrap();
            ring.push(e, 10);
        }
        let entries = ring.entries();
        let points = |served: &str, sw: &str, m: &str| {
            let mut out = String::new();
            push_points(&entries, served, sw, m, &mut out);
            out
        };
        assert_eq!(
            points("5", "x", "a"),
            "[1000,1],[2000,1.50],[4000,1e3],[5000,8]"
        );
        assert_eq!(points("5", "x", "b"), "[1000,2],[4000,-0],[5000,7]");
        assert_eq!(points("4", "x", "b"), "[1000,2],[4000,-0]");
        assert_eq!(points("3", "y", "b"), "[1000,4],[3000,6]");
        // A snapshot not held: all of them.
        assert_eq!(points("?", "y", "a"), "[1000,3],[2000,3],[3000,5]");
        assert_eq!(points("5", "z", "a"), "");
        assert_eq!(points("5", "x", "c"), "");
        let v: serde_json::Value =
            serde_json::from_str(&body(&entries, "5", "switch_id", "x\"", "b")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"switch_id":"x\"","metric":"b","points":[]})
        );
        let v: serde_json::Value =
            serde_json::from_str(&body(&entries, "5", "switch_id", "x", "a")).unwrap();
        assert_eq!(v["points"][1], serde_json::json!([2000, 1.5]));
    }
}
