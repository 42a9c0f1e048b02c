//! One validated upstream snapshot, with everything the API needs to answer
//! from it prepared once, when it is built.
//!
//! Building reads the CSV once: it checks the header (no empty or duplicate
//! names) and lets a [`Layout`] say how its columns are read: which make a
//! row's id (`switch_id` for the original matrix; `Node_GUID:Port_Number`
//! for UFM Telemetry, whose dialects `poll::dialect` knows), which are text
//! (labels), and which are values. It checks every row (a non-empty, unique
//! id; every value a finite number or empty), indexes id → row and field →
//! column, and spells each cell as JSON once: a value as the CSV wrote it
//! when that already is a JSON number (`121.5` stays `121.5`,
//! `18446744073709551615` stays exactly that), an empty value `null`, a
//! label a JSON string. A request then only looks things up and writes the
//! small part that changes (the age).
//!
//! Besides that body, a snapshot keeps each value's JSON text once, packed
//! (a 32-bit end offset per value), for the answers rendered per request;
//! no floats, no per-row allocations. At 100k switches × 8 metrics that is
//! about 20 MB of JSON, cut into shared pieces (see `pieces`), 6.4 MB of
//! value texts and offsets, and 2 MB of ids and index.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use super::pieces::{PIECE_BYTES, Pieces};
use super::value::Num;
use crate::csv;
use crate::gzip;
use crate::json;

/// Bounds on what a snapshot may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Data rows (switches) at most.
    pub max_rows: usize,
}

/// Why an upstream body was refused. Each is one `poll.error` reason.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// Not CSV at all (bad quoting, ragged rows, not UTF-8).
    Csv(csv::Error),
    /// No header line.
    Empty,
    /// The first column is not `switch_id`.
    FirstColumn(String),
    /// A header with only `switch_id`.
    NoMetrics,
    /// A column name that is empty.
    EmptyColumn { column: usize },
    /// A column name holding a control character (a line break, a bare CR).
    ControlInColumn { column: usize },
    /// A key column (`UPSTREAM_KEY`) the header lacks.
    KeyColumn(String),
    /// A key column named twice.
    RepeatedKey(String),
    /// A column name given twice.
    DuplicateColumn(String),
    /// More rows than [`Limits::max_rows`].
    TooManyRows { limit: usize },
    /// A row whose id (`name`: `switch_id`, or `id` made of the key
    /// columns) is empty.
    EmptyId { line: usize, name: &'static str },
    /// An id seen on an earlier row.
    DuplicateId {
        line: usize,
        name: &'static str,
        id: String,
    },
    /// A value that is not a finite number (nor empty). `labels` says the
    /// layout could have read the column as text.
    NotANumber {
        line: usize,
        column: String,
        value: String,
        labels: bool,
    },
    /// The switch ids, or the values' texts, past 4 GiB (the offsets are
    /// 32-bit; no client could use such a table anyway).
    TooLarge { line: usize },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Csv(e) => write!(f, "{e}"),
            Error::Empty => write!(f, "csv: empty body"),
            Error::FirstColumn(c) => write!(
                f,
                "csv: first column is {c:?}, expected \"switch_id\" or a UFM Telemetry header (Node_GUID and Port_Number, or node_guid and port_num); set UPSTREAM_KEY for any other"
            ),
            Error::NoMetrics => write!(f, "csv: no metric columns"),
            Error::EmptyColumn { column } => write!(f, "csv: column {column} has no name"),
            Error::ControlInColumn { column } => {
                write!(
                    f,
                    "csv: column {column} has a control character in its name"
                )
            }
            Error::KeyColumn(c) => write!(f, "csv: key column {c:?} is not in the header"),
            Error::RepeatedKey(c) => write!(f, "csv: key column {c:?} is named twice"),
            Error::DuplicateColumn(c) => write!(f, "csv: duplicate column {c:?}"),
            Error::TooManyRows { limit } => write!(f, "csv: more than {limit} rows"),
            Error::EmptyId { line, name } => write!(f, "csv: line {line}: empty {name}"),
            Error::DuplicateId { line, name, id } => {
                write!(f, "csv: line {line}: duplicate {name} {id:?}")
            }
            Error::NotANumber {
                line,
                column,
                value,
                labels,
            } => {
                write!(
                    f,
                    "csv: line {line}: {column} is {value:?}, not a finite number"
                )?;
                if *labels {
                    write!(
                        f,
                        " (a text column is read as text when UPSTREAM_LABELS names it)"
                    )?;
                }
                Ok(())
            }
            Error::TooLarge { line } => {
                write!(f, "csv: line {line}: the table grows past 4 GiB")
            }
        }
    }
}

impl std::error::Error for Error {}

impl From<csv::Error> for Error {
    fn from(e: csv::Error) -> Error {
        Error::Csv(e)
    }
}

/// The id's name in a matrix (the original design's CSV): `switch_id`.
pub const MATRIX_ID: &str = "switch_id";

/// The id's name for rows keyed by other columns (UFM's ports).
pub const KEYED_ID: &str = "id";

/// How a header's columns are read.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// What the id is called in items, errors and CSV answers:
    /// [`MATRIX_ID`] (its key column is no field), or [`KEYED_ID`] (the key
    /// columns are text fields too).
    pub id_name: &'static str,
    /// The columns whose cells, joined with `:`, are a row's id.
    pub key: Vec<usize>,
    /// Columns kept as text (labels); every other column is a value.
    pub labels: Vec<usize>,
    /// A column of microsecond timestamps (UFM's `timestamp`): its newest
    /// cell is the data's time when the upstream's headers give none.
    pub time: Option<usize>,
}

impl Layout {
    /// The original matrix: `switch_id` first, every other column a value.
    pub fn matrix(header: &[&str]) -> Result<Layout, Error> {
        match header.first() {
            Some(&MATRIX_ID) => Ok(Layout {
                id_name: MATRIX_ID,
                key: vec![0],
                labels: Vec::new(),
                time: None,
            }),
            first => Err(Error::FirstColumn(clip(first.copied().unwrap_or("")))),
        }
    }
}

/// What a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Numbers (or `null` for an empty cell).
    Value,
    /// Text, kept as the CSV wrote it: a column of the row's key.
    Key,
    /// Text, kept as the CSV wrote it: any other label.
    Label,
}

impl Kind {
    /// True for text (a key column or a label), false for values.
    pub fn is_text(self) -> bool {
        self != Kind::Value
    }
}

/// Items of a table whose cells' JSON is at most about this big are
/// rendered when it is built (see [`Snapshot::prepare`]).
pub const EAGER_ITEMS_BYTES: usize = 16 << 20;

/// Epoch milliseconds, if plausible (2000 to 2286); else `None`.
pub fn plausible_ms(ms: u64) -> Option<u64> {
    (946_684_800_000..10_000_000_000_000)
        .contains(&ms)
        .then_some(ms)
}

/// Where a snapshot came from: the identity and time the upstream gave it.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The entity tag without quotes or `W/`.
    pub id: String,
    /// The upstream's `X-Snapshot-Ts`, if it sent one.
    pub producer_ts_ms: Option<u64>,
    /// When we fetched it (epoch ms).
    pub fetched_ms: u64,
}

/// What a CSV answer's entity tag adds to the snapshot id: the CSV and JSON
/// forms of one table are different representations, and a cache holding
/// both (`Vary: Accept`) must be able to tell from a 304 which one it names.
pub const CSV_TAG_SUFFIX: &str = "-csv";

/// A validated snapshot of one upstream, ready to serve: what a
/// [`Fabric`](super::fabric::Fabric) is composed of.
pub struct Snapshot {
    pub origin: Origin,
    /// What the id is called: [`MATRIX_ID`] or [`KEYED_ID`].
    pub id_name: &'static str,
    /// Field names (every column but a matrix's `switch_id`) in upstream
    /// column order.
    pub fields: Vec<String>,
    /// What each field holds.
    pub kinds: Vec<Kind>,
    column_of: HashMap<String, u32>,
    /// Switch ids in upstream row order.
    ids: Ids,
    /// Switch id → row.
    index: Index,
    /// The `ListMetrics` items, `{"switch_id":…,…}` separated by commas
    /// (no brackets), in pieces cut between rows; see [`Snapshot::prepare`].
    items: OnceLock<Vec<Arc<str>>>,
    /// The JSON spelling of every value, row-major, concatenated;
    /// `number_ends[i]` is where value `i`'s text ends. Read per request,
    /// this is a sixth of the size of the rendered rows, so much quicker
    /// to go through.
    numbers: String,
    number_ends: Vec<u32>,
    /// The rows as CSV (no header), in pieces, rendered when first asked for.
    csv_rows: OnceLock<Vec<Arc<str>>>,
    /// The items and the CSV rows deflated, when first asked for.
    items_gz: gzip::Lazy,
    csv_rows_gz: gzip::Lazy,
    /// Every id's hash (one key for the whole process) and row, sorted by
    /// hash: made when first asked for, by a fabric looking for ids two
    /// shards share (a merge of two sorted lists, not a probe per row).
    id_hashes: OnceLock<Vec<(u64, u32)>>,
    /// Size of the CSV body this was built from.
    pub csv_bytes: usize,
    /// When the upstream last vouched for this data (fetched it, or
    /// answered 304 to it), epoch ms: the age's base when it gave no time.
    confirmed_ms: AtomicU64,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("origin", &self.origin)
            .field("fields", &self.fields)
            .field("rows", &self.rows())
            .field(
                "items_bytes",
                &self.items.get().map(|i| super::pieces::total_len(i)),
            )
            .finish_non_exhaustive()
    }
}

/// Every switch id, concatenated: one allocation instead of one per row.
/// (`history` keeps copies of these, compared whole, with their index.)
#[derive(Default, Clone, PartialEq)]
pub(super) struct Ids {
    text: String,
    /// Where each id ends in `text`.
    ends: Vec<u32>,
}

impl Ids {
    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Heap bytes held.
    pub(super) fn heap_bytes(&self) -> usize {
        self.text.capacity() + self.ends.capacity() * size_of::<u32>()
    }

    /// The id of `row` ("" past the end).
    pub(super) fn get(&self, row: usize) -> &str {
        let Some(&end) = self.ends.get(row) else {
            return "";
        };
        let start = match row {
            0 => 0,
            _ => self.ends[row - 1] as usize,
        };
        self.text.get(start..end as usize).unwrap_or("")
    }

    /// Appends an id; `false` if the ids would pass 4 GiB.
    fn push(&mut self, id: &str) -> bool {
        let Ok(end) = u32::try_from(self.text.len() + id.len()) else {
            return false;
        };
        self.text.push_str(id);
        self.ends.push(end);
        true
    }
}

/// Switch id → row, by open addressing over row numbers (`row + 1` per
/// slot, 0 for empty; at most half full): 4 bytes a slot, no copy of the
/// ids, where a `HashMap<Box<str>, u32>` would cost some 60 bytes a row.
/// Keyed with a random SipHash like `HashMap`, so upstream ids cannot be
/// chosen to collide.
pub(super) struct Index {
    slots: Vec<u32>,
    hasher: RandomState,
}

impl Index {
    /// Indexes every id in `ids`, or returns the first row whose id an
    /// earlier row has. Built in one tight pass once the rows are read, so
    /// the processor overlaps the cache misses of many inserts (inserting
    /// row by row while parsing made them a sixth of the parse at 100k).
    pub(super) fn build(ids: &Ids) -> Result<Index, usize> {
        let mut index = Index {
            slots: vec![0; (ids.len().max(8) * 2).next_power_of_two()],
            hasher: RandomState::new(),
        };
        for row in 0..ids.len() {
            match index.probe(ids, ids.get(row)) {
                Ok(slot) => index.slots[slot] = row as u32 + 1,
                Err(_) => return Err(row),
            }
        }
        Ok(index)
    }

    /// The slot holding `id` (`Err`), or the empty slot where it belongs.
    fn probe(&self, ids: &Ids, id: &str) -> Result<usize, usize> {
        let mask = self.slots.len() - 1;
        let mut i = self.hasher.hash_one(id) as usize & mask;
        loop {
            match self.slots[i] {
                0 => return Ok(i),
                slot if ids.get(slot as usize - 1) == id => return Err(i),
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Heap bytes held.
    pub(super) fn heap_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<u32>()
    }

    /// The row holding `id`, if any.
    pub(super) fn find(&self, ids: &Ids, id: &str) -> Option<usize> {
        match self.probe(ids, id) {
            Err(slot) => Some(self.slots[slot] as usize - 1),
            Ok(_) => None,
        }
    }
}

/// The line on which data row `row` (0-based) of `body` starts: read again,
/// for an error message only.
fn line_of_row(body: &[u8], row: usize) -> usize {
    let Ok(mut reader) = csv::Reader::new(body) else {
        return 0;
    };
    let mut record = Vec::new();
    for _ in 0..row + 2 {
        if !matches!(reader.read_record(&mut record), Ok(true)) {
            return 0;
        }
    }
    reader.line()
}

/// Appends `text` spelled as a JSON number, or returns false if it is not a
/// finite number. A JSON literal is kept as it is; an integer JSON does not
/// allow (`+2`, `007`) loses its `+` and leading zeros, digit for digit (as
/// a float, `+9007199254740993` would become 2^53 and
/// `+18446744073709551615` `1.8446744073709552e+19`); anything else Rust
/// reads as a finite float (`.5`, `1.`) is written in its shortest form.
fn push_number(out: &mut String, text: &str) -> bool {
    // The common case, a counter: plain digits, no leading zero, already
    // JSON as it is; one scan.
    let b = text.as_bytes();
    if (1..=300).contains(&b.len())
        && (b[0] != b'0' || b.len() == 1)
        && b.iter().all(u8::is_ascii_digit)
    {
        out.push_str(text);
        return true;
    }
    let (minus, digits) = match text.as_bytes().first() {
        Some(b'-') => ("-", &text[1..]),
        Some(b'+') => ("", &text[1..]),
        _ => ("", text),
    };
    let integer = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    if integer && !json::is_number_literal(text) {
        let significant = digits.trim_start_matches('0');
        let significant = if significant.is_empty() {
            "0"
        } else {
            significant
        };
        return push_number(out, &format!("{minus}{significant}"));
    }
    if json::is_number_literal(text) {
        // No exponent and at most 300 digits: below f64::MAX (309 digits),
        // so finite without parsing it.
        let finite = (text.len() <= 300 && !text.contains(['e', 'E']))
            || text.parse::<f64>().is_ok_and(f64::is_finite);
        if finite {
            out.push_str(text);
        }
        return finite;
    }
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => {
            json::push_f64(out, v);
            true
        }
        _ => false,
    }
}

/// The values of one row, to read several of them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cells<'a> {
    numbers: &'a str,
    /// Where the value before the row's first ends.
    start: u32,
    /// Where each of the row's values ends.
    ends: &'a [u32],
}

impl<'a> Cells<'a> {
    /// The value in `column` spelled as JSON ("" past the last column).
    pub fn get(&self, column: usize) -> &'a str {
        let Some(&end) = self.ends.get(column) else {
            return "";
        };
        let start = match column {
            0 => self.start,
            _ => self.ends[column - 1],
        };
        self.numbers.get(start as usize..end as usize).unwrap_or("")
    }

    /// Every value, in column order.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        let cells = *self;
        (0..self.ends.len()).map(move |c| cells.get(c))
    }
}

impl Snapshot {
    /// Validates `body` as the original matrix (first column `switch_id`)
    /// and builds the snapshot, or says what is wrong.
    pub fn parse(body: &[u8], origin: Origin, limits: Limits) -> Result<Snapshot, Error> {
        Snapshot::parse_as(body, origin, limits, Layout::matrix)
    }

    /// Validates `body`, reading its columns as `layout_of` its header
    /// says, and builds the snapshot, or says what is wrong. Without a time
    /// from the upstream's headers, the newest cell of the layout's time
    /// column (microseconds) is the data's time.
    pub fn parse_as(
        body: &[u8],
        mut origin: Origin,
        limits: Limits,
        layout_of: impl FnOnce(&[&str]) -> Result<Layout, Error>,
    ) -> Result<Snapshot, Error> {
        let mut reader = csv::Reader::new(body)?;
        let mut record = Vec::new();
        if !reader.read_record(&mut record)? {
            return Err(Error::Empty);
        }
        let mut names = HashMap::with_capacity(record.len());
        for (i, name) in record.iter().enumerate() {
            if name.is_empty() {
                return Err(Error::EmptyColumn { column: i + 1 });
            }
            if name.chars().any(char::is_control) {
                return Err(Error::ControlInColumn { column: i + 1 });
            }
            if names.insert(name.as_ref(), i).is_some() {
                return Err(Error::DuplicateColumn(clip(name)));
            }
        }
        let header: Vec<&str> = record.iter().map(|c| c.as_ref()).collect();
        let layout = layout_of(&header)?;
        // Fields: every column but a matrix's `switch_id`, in header order;
        // `from[f]` is field `f`'s column, `text[f]` whether it is a label.
        let mut fields = Vec::with_capacity(header.len());
        let mut from = Vec::with_capacity(header.len());
        let mut kinds = Vec::with_capacity(header.len());
        for (col, name) in header.iter().enumerate() {
            let key = layout.key.contains(&col);
            // Keyed rows keep their key columns as text fields too
            // (`Node_GUID`, `Port_Number`); the matrix does not.
            if key && layout.id_name == MATRIX_ID {
                continue;
            }
            fields.push(name.to_string());
            from.push(col);
            kinds.push(if key {
                Kind::Key
            } else if layout.labels.contains(&col) {
                Kind::Label
            } else {
                Kind::Value
            });
        }
        if fields.is_empty() {
            return Err(Error::NoMetrics);
        }
        if fields.iter().any(|f| f == layout.id_name) {
            return Err(Error::DuplicateColumn(layout.id_name.to_string()));
        }
        let column_of: HashMap<String, u32> = fields
            .iter()
            .enumerate()
            .map(|(i, f)| (f.clone(), i as u32))
            .collect();
        drop(names);
        drop(header);
        let labels_possible = layout.id_name != MATRIX_ID;

        // Lines are rows but for blank lines and quoted line breaks: a close
        // estimate, so nothing below needs to grow. Every value takes at
        // least two bytes of the body, which bounds the guess (blank lines
        // under a wide header must not reserve rows × columns).
        let lines = body.iter().filter(|&&b| b == b'\n').count();
        let rows_hint = lines.min(limits.max_rows);
        let cells_hint = rows_hint.saturating_mul(fields.len()).min(body.len() / 2);
        let mut ids = Ids {
            text: String::with_capacity(body.len() / (fields.len() + 1)),
            ends: Vec::with_capacity(rows_hint),
        };
        let mut numbers = String::with_capacity(body.len());
        let mut number_ends: Vec<u32> = Vec::with_capacity(cells_hint);
        let mut joined = String::new();
        let mut newest_us: Option<u64> = None;

        // Rows are read to the end or the first error; then the ids read so
        // far are indexed, and a duplicate among them, being on an earlier
        // line (or the same one), is the error reported.
        let read = (|| {
            while reader.read_record(&mut record)? {
                let line = reader.line();
                let row = ids.len();
                if row == limits.max_rows {
                    return Err(Error::TooManyRows {
                        limit: limits.max_rows,
                    });
                }
                let id: &str = match &layout.key[..] {
                    [one] => record.get(*one).map_or("", |c| c.as_ref()),
                    key => {
                        joined.clear();
                        for (i, &col) in key.iter().enumerate() {
                            if i > 0 {
                                joined.push(':');
                            }
                            joined.push_str(record.get(col).map_or("", |c| c.as_ref()));
                        }
                        &joined
                    }
                };
                let empty = |&col: &usize| record.get(col).is_none_or(|c| c.is_empty());
                if layout.key.iter().any(empty) {
                    return Err(Error::EmptyId {
                        line,
                        name: layout.id_name,
                    });
                }
                if !ids.push(id) {
                    return Err(Error::TooLarge { line });
                }
                if let Some(t) = layout.time {
                    let us = record.get(t).and_then(|c| c.trim().parse::<u64>().ok());
                    newest_us = newest_us.max(us);
                }
                for (f, &col) in from.iter().enumerate() {
                    let cell = record.get(col).map_or("", |c| c.as_ref());
                    if kinds[f].is_text() {
                        json::push_str(&mut numbers, cell);
                    } else {
                        let text = cell.trim();
                        if text.is_empty() {
                            numbers.push_str("null");
                        } else if !push_number(&mut numbers, text) {
                            return Err(Error::NotANumber {
                                line,
                                column: clip(&fields[f]),
                                value: clip(text),
                                labels: labels_possible,
                            });
                        }
                    }
                    let end = u32::try_from(numbers.len()).map_err(|_| Error::TooLarge { line })?;
                    number_ends.push(end);
                }
            }
            Ok(())
        })();
        let index = Index::build(&ids).map_err(|row| Error::DuplicateId {
            line: line_of_row(body, row),
            name: layout.id_name,
            id: clip(ids.get(row)),
        })?;
        read?;
        ids.text.shrink_to_fit();
        ids.ends.shrink_to_fit();
        numbers.shrink_to_fit();
        number_ends.shrink_to_fit();
        if origin.producer_ts_ms.is_none() {
            origin.producer_ts_ms = newest_us.and_then(|us| plausible_ms(us / 1000));
        }

        Ok(Snapshot {
            confirmed_ms: AtomicU64::new(origin.fetched_ms),
            origin,
            id_name: layout.id_name,
            fields,
            kinds,
            column_of,
            ids,
            index,
            items: OnceLock::new(),
            numbers,
            number_ends,
            csv_rows: OnceLock::new(),
            items_gz: gzip::Lazy::default(),
            csv_rows_gz: gzip::Lazy::default(),
            id_hashes: OnceLock::new(),
            csv_bytes: body.len(),
        })
    }

    /// Renders what every `ListMetrics` answer needs now, when that is
    /// small enough to keep ([`EAGER_ITEMS_BYTES`]); a bigger table's items
    /// are rendered when first asked for, so a fleet nobody lists whole
    /// does not hold its JSON twice.
    pub fn prepare(&self) {
        if self.numbers.len() + self.number_ends.len() * 24 <= EAGER_ITEMS_BYTES {
            self.items();
        }
    }

    /// How old the data is at `now_ms`: since the producer took it, or, if
    /// the producer gave no time, since the upstream last vouched for it (a
    /// fetch or a 304). Never negative.
    pub fn age_ms(&self, now_ms: u64) -> u64 {
        let born = match self.origin.producer_ts_ms {
            Some(ts) => ts,
            None => self.confirmed_ms.load(Ordering::Relaxed),
        };
        now_ms.saturating_sub(born)
    }

    /// Records that the upstream confirmed this snapshot (a 304) at `now_ms`.
    pub fn confirm(&self, now_ms: u64) {
        self.confirmed_ms.fetch_max(now_ms, Ordering::Relaxed);
    }

    pub fn id(&self) -> &str {
        &self.origin.id
    }

    /// The producer's `X-Snapshot-Ts` for this snapshot, if it sent one.
    pub fn producer_ts_ms(&self) -> Option<u64> {
        self.origin.producer_ts_ms
    }

    pub fn rows(&self) -> usize {
        self.ids.len()
    }

    /// The switch id of `row` ("" past the last row).
    pub fn switch_id(&self, row: usize) -> &str {
        self.ids.get(row)
    }

    /// The switch ids as they are held (for `history`, which copies them).
    pub(super) fn ids(&self) -> &Ids {
        &self.ids
    }

    /// Every switch id, in upstream row order.
    pub fn switch_ids(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.rows()).map(|r| self.ids.get(r))
    }

    /// The row of `switch_id`, if present.
    pub fn row(&self, switch_id: &str) -> Option<usize> {
        self.index.find(&self.ids, switch_id)
    }

    /// The column of `metric`, if present.
    pub fn column(&self, metric: &str) -> Option<usize> {
        self.column_of.get(metric).map(|&c| c as usize)
    }

    /// The values of `row` (none past the last row).
    pub fn cells(&self, row: usize) -> Cells<'_> {
        let width = self.fields.len();
        let first = row.saturating_mul(width);
        let ends = self
            .number_ends
            .get(first..first.saturating_add(width))
            .unwrap_or_default();
        let start = match first {
            0 => 0,
            _ => self.number_ends.get(first - 1).copied().unwrap_or(0),
        };
        Cells {
            numbers: &self.numbers,
            start,
            ends,
        }
    }

    /// The value at (`row`, `column`) spelled as JSON, as the CSV carried
    /// it ("" outside the table).
    pub fn number(&self, row: usize, column: usize) -> &str {
        self.cells(row).get(column)
    }

    /// The value at (`row`, `column`) for comparing (not a number outside
    /// the table).
    pub fn value(&self, row: usize, column: usize) -> Num {
        Num::of(self.number(row, column))
    }

    /// The `ListMetrics` items of every row, pre-rendered: JSON objects
    /// separated by commas, in pieces.
    pub fn items(&self) -> &[Arc<str>] {
        self.items.get_or_init(|| {
            let layout: Vec<Option<u32>> = (0..self.fields.len() as u32).map(Some).collect();
            self.render_items(&self.fields, &layout, 0..self.rows())
        })
    }

    /// [`Snapshot::items`] deflated, made on first use.
    pub fn items_gz(&self) -> Option<&gzip::Deflated> {
        self.items_gz
            .get(|| self.items().iter().map(|p| p.as_bytes()))
    }

    /// Every row as a CSV line (`switch_id,<values…>`, numbers as in
    /// JSON; no header), in pieces, rendered on first use and kept with
    /// the snapshot (4.3 MB at 100k switches), since a big answer
    /// allocated per request costs a page fault per 4 KiB.
    pub fn csv_rows(&self) -> &[Arc<str>] {
        self.csv_rows
            .get_or_init(|| self.render_csv_rows(None, 0..self.rows()))
    }

    /// [`Snapshot::csv_rows`] deflated, made on first use.
    pub fn csv_rows_gz(&self) -> Option<&gzip::Deflated> {
        self.csv_rows_gz
            .get(|| self.csv_rows().iter().map(|p| p.as_bytes()))
    }

    /// Every switch id's hash and row, sorted by hash; the hash key is the
    /// same for every snapshot of the process, so two lists meet where two
    /// snapshots may share an id (equal hashes; the ids still need
    /// comparing).
    pub fn id_hashes(&self) -> &[(u64, u32)] {
        static KEY: OnceLock<RandomState> = OnceLock::new();
        self.id_hashes.get_or_init(|| {
            let key = KEY.get_or_init(RandomState::new);
            let mut v: Vec<(u64, u32)> = (0..self.rows())
                .map(|r| (key.hash_one(self.switch_id(r)), r as u32))
                .collect();
            v.sort_unstable();
            v
        })
    }

    /// The items of `rows` laid out for other fields: `layout[c]` is the
    /// column of this snapshot holding field `c` of `keys`, `None` for a
    /// field it lacks (`null`). For a fabric whose shards differ.
    pub fn render_items(
        &self,
        keys: &[String],
        layout: &[Option<u32>],
        rows: impl Iterator<Item = usize>,
    ) -> Vec<Arc<str>> {
        let keys = json_keys(keys);
        let mut pieces = Pieces::new(PIECE_BYTES);
        for (i, row) in rows.enumerate() {
            let out = pieces.text();
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"");
            out.push_str(self.id_name);
            out.push_str("\":");
            json::push_str(out, self.switch_id(row));
            let cells = self.cells(row);
            for (key, col) in keys.iter().zip(layout) {
                out.push_str(key);
                out.push_str(col.map_or("null", |c| cells.get(c as usize)));
            }
            out.push('}');
            pieces.cut_if_full();
        }
        pieces.finish()
    }

    /// The CSV lines of `rows`, in this snapshot's columns or (`layout`,
    /// as for [`Snapshot::render_items`]) another's, a missing value empty.
    pub fn render_csv_rows(
        &self,
        layout: Option<&[Option<u32>]>,
        rows: impl Iterator<Item = usize>,
    ) -> Vec<Arc<str>> {
        let mut pieces = Pieces::new(PIECE_BYTES);
        for row in rows {
            let out = pieces.text();
            csv::push_field(out, self.switch_id(row));
            let cells = self.cells(row);
            match layout {
                None => cells.iter().for_each(|n| {
                    out.push(',');
                    push_csv_cell(out, n);
                }),
                Some(layout) => layout.iter().for_each(|c| {
                    out.push(',');
                    push_csv_cell(out, c.map_or("", |c| cells.get(c as usize)));
                }),
            }
            out.push('\n');
            pieces.cut_if_full();
        }
        pieces.finish()
    }
}

/// Appends a cell spelled as JSON (see [`Cells::get`]) as a CSV field: a
/// number as it is, `null` (and a missing value) empty, a string unquoted
/// (and quoted for CSV if it must be).
pub fn push_csv_cell(out: &mut String, json_text: &str) {
    match json_text.as_bytes().first() {
        None => {}
        Some(b'"') => match serde_json::from_str::<String>(json_text) {
            Ok(text) => csv::push_field(out, &text),
            Err(_) => csv::push_field(out, json_text),
        },
        Some(_) if json_text == "null" => {}
        Some(_) => out.push_str(json_text),
    }
}

/// Each field as an item's key: `,"name":`.
fn json_keys(fields: &[String]) -> Vec<String> {
    fields
        .iter()
        .map(|f| {
            let mut k = String::from(",");
            json::push_str(&mut k, f);
            k.push(':');
            k
        })
        .collect()
}

/// Untrusted text clipped for an error message.
fn clip(s: &str) -> String {
    json::clipped(s, 64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::store::fabric::Fabric;

    const LIMITS: Limits = Limits { max_rows: 1000 };

    fn origin() -> Origin {
        Origin {
            id: "abc-1".into(),
            producer_ts_ms: Some(1_000),
            fetched_ms: 1_500,
        }
    }

    fn parse(body: &str) -> Result<Snapshot, Error> {
        Snapshot::parse(body.as_bytes(), origin(), LIMITS)
    }

    /// The `ListMetrics` document of `s` served alone.
    fn list_json(s: &Snapshot, now: u64) -> serde_json::Value {
        serde_json::from_str(&list_text(s, now)).unwrap()
    }

    fn list_text(s: &Snapshot, now: u64) -> String {
        // A fabric of a snapshot of the same table (a Fabric holds an Arc).
        let mut csv = String::from("switch_id");
        for f in &s.fields {
            csv.push(',');
            csv::push_field(&mut csv, f);
        }
        csv.push('\n');
        s.csv_rows().iter().for_each(|p| csv.push_str(p));
        let all = Limits { max_rows: s.rows() };
        let snap = Snapshot::parse(csv.as_bytes(), s.origin.clone(), all);
        let fabric = Fabric::from(snap.unwrap());
        let bytes: Vec<u8> = fabric
            .list_body(now, &[], "")
            .iter()
            .flat_map(|c| c.bytes().to_vec())
            .collect();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn builds_indexes_and_keeps_number_spelling() {
        let s = parse(
            "switch_id,bandwidth_gbps,packet_errors,x\nsw-000,121.5,0,1e3\nsw-001,118.30,7,-0.25\n",
        )
        .unwrap();
        assert_eq!(s.fields, ["bandwidth_gbps", "packet_errors", "x"]);
        assert_eq!(s.rows(), 2);
        assert_eq!(s.row("sw-001"), Some(1));
        assert_eq!(s.row("sw-002"), None);
        assert_eq!(s.column("packet_errors"), Some(1));
        assert_eq!(s.column("switch_id"), None);
        assert_eq!(s.number(0, 0), "121.5");
        assert_eq!(s.number(0, 1), "0");
        assert_eq!(s.number(0, 2), "1e3");
        assert_eq!(s.number(1, 0), "118.30");
        assert_eq!(s.value(1, 2), Num::Float(-0.25));
        assert_eq!(s.switch_ids().collect::<Vec<_>>(), ["sw-000", "sw-001"]);
        // Outside the table: nothing, never a panic.
        assert_eq!(s.switch_id(2), "");
        assert_eq!(s.number(2, 0), "");
        assert_eq!(s.number(0, 3), "");
        assert!(!s.value(5, 5).is_some());
    }

    #[test]
    fn an_integer_json_would_not_allow_keeps_every_digit() {
        let s = parse(
            "switch_id,a,b,c,d\nx,+9007199254740993,0018446744073709551615,-0009223372036854775808,+000\ny,+2,007,-00,1E3\n",
        )
        .unwrap();
        let row = |r: usize| (0..4).map(|c| s.number(r, c)).collect::<Vec<_>>();
        assert_eq!(
            row(0),
            [
                "9007199254740993",
                "18446744073709551615",
                "-9223372036854775808",
                "0"
            ]
        );
        assert_eq!(row(1), ["2", "7", "-0", "1E3"]);
        assert_eq!(s.value(0, 0), Num::Int(9_007_199_254_740_993));
    }

    #[test]
    fn values_are_found_past_keys_holding_commas_and_braces() {
        let s = parse("switch_id,\"a,}b\",\"c\"\"}\",d\n\"x,\"\"y\",1,-2.5e3,.5\n").unwrap();
        assert_eq!(
            s.cells(0).iter().collect::<Vec<_>>(),
            ["1", "-2.5e3", "0.5"]
        );
        assert_eq!(s.row("x,\"y"), Some(0));
        assert_eq!(s.value(0, 1), Num::Float(-2500.0));
    }

    #[test]
    fn the_index_finds_every_id_and_the_first_duplicate() {
        let mut ids = Ids::default();
        for row in 0..5_000 {
            assert!(ids.push(&format!("id-{row}")));
        }
        let Ok(index) = Index::build(&ids) else {
            panic!("no duplicates here");
        };
        for row in (0..5_000).step_by(7) {
            assert_eq!(index.find(&ids, &format!("id-{row}")), Some(row));
        }
        assert_eq!(index.find(&ids, "id-5000"), None);
        assert!(ids.push("id-17"));
        assert!(ids.push("id-18"));
        assert_eq!(Index::build(&ids).err(), Some(5_000));
    }

    #[test]
    fn a_duplicate_is_reported_before_a_later_error() {
        let body = "switch_id,a\nx,1\n\ny,2\nx,3\nz,oops\n";
        assert_eq!(
            parse(body).unwrap_err(),
            Error::DuplicateId {
                line: 5,
                name: MATRIX_ID,
                id: "x".into()
            }
        );
        // On the same line too, as it was checked first.
        assert_eq!(
            parse("switch_id,a\nx,1\nx,oops\n").unwrap_err(),
            Error::DuplicateId {
                line: 3,
                name: MATRIX_ID,
                id: "x".into()
            }
        );
        // An error before the duplicate wins.
        assert_eq!(
            parse("switch_id,a\nx,oops\nx,1\n").unwrap_err(),
            Error::NotANumber {
                line: 2,
                column: "a".into(),
                value: "oops".into(),
                labels: false,
            }
        );
    }

    #[test]
    fn a_large_table_spans_pieces() {
        let mut body = String::from("switch_id,v,w\n");
        for i in 0..60_000 {
            body.push_str(&format!("{i},{},{}\n", i % 7, i));
        }
        let s = Snapshot::parse(body.as_bytes(), origin(), Limits { max_rows: 60_000 })
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(s.items().len() > 3, "{} pieces", s.items().len());
        assert_eq!(s.rows(), 60_000);
        for i in (0..60_000).step_by(997).chain([59_999]) {
            let id = i.to_string();
            assert_eq!(s.row(&id), Some(i), "{id}");
            assert_eq!(s.switch_id(i), id);
            assert_eq!(s.number(i, 0), (i % 7).to_string());
            assert_eq!(s.number(i, 1), id);
        }
        assert_eq!(s.row("60000"), None);
        let v = list_json(&s, 0);
        let items = v["items"].as_array().unwrap();
        assert_eq!(items.len(), 60_000);
        assert_eq!(
            items[59_999],
            serde_json::json!({"switch_id":"59999","v":2,"w":59999})
        );
        let debug = format!("{s:?}");
        assert!(debug.len() < 300, "Debug stays short: {debug}");
    }

    #[test]
    fn list_body_is_the_contract_json() {
        let s = parse("switch_id,a,b\nsw-000,121.5,0\n\"odd \"\"id\"\"\",.5,+2\n").unwrap();
        let v = list_json(&s, 4_000);
        assert_eq!(v["snapshot_id"], "abc-1");
        assert_eq!(v["age_ms"], 3_000);
        assert_eq!(v["fields"], serde_json::json!(["a", "b"]));
        assert_eq!(
            v["items"][0],
            serde_json::json!({"switch_id":"sw-000","a":121.5,"b":0})
        );
        assert_eq!(v["items"][1]["switch_id"], "odd \"id\"");
        // Non-JSON spellings are normalised, never emitted raw.
        assert_eq!(s.number(1, 0), "0.5");
        assert_eq!(s.number(1, 1), "2");
        // Key order: switch_id first, then fields in upstream order.
        let text = list_text(&s, 4_000);
        assert!(text.contains("{\"switch_id\":\"sw-000\",\"a\":121.5,\"b\":0}"));
        assert!(text.starts_with(
            "{\"snapshot_id\":\"abc-1\",\"age_ms\":3000,\"total\":2,\"next_offset\":null,\"fields\":"
        ));
    }

    #[test]
    fn age_uses_producer_time_then_fetch_time_and_never_goes_negative() {
        let s = parse("switch_id,a\nx,1\n").unwrap();
        assert_eq!(s.age_ms(1_250), 250);
        assert_eq!(s.age_ms(500), 0);
        let o = Origin {
            producer_ts_ms: None,
            ..origin()
        };
        let s = Snapshot::parse(b"switch_id,a\nx,1\n", o, LIMITS).unwrap();
        assert_eq!(s.age_ms(1_750), 250);
        // A 304 vouches for it again; a producer time is never overridden.
        s.confirm(1_700);
        assert_eq!(s.age_ms(1_750), 50);
        let with_ts = parse("switch_id,a\nx,1\n").unwrap();
        with_ts.confirm(1_700);
        assert_eq!(with_ts.age_ms(1_250), 250);
    }

    #[test]
    fn a_body_needs_a_header() {
        // A header alone is a table with no rows (a shard with no switches).
        assert_eq!(parse("switch_id,a\n").map(|s| s.rows()), Ok(0));
        assert_eq!(parse("").unwrap_err(), Error::Empty);
        assert_eq!(parse("\n\n").unwrap_err(), Error::Empty);
        // Bare-CR line ends make one long header line: refused, not misread.
        assert_eq!(
            parse("switch_id,a\rsw-1,5\r").unwrap_err(),
            Error::ControlInColumn { column: 2 }
        );
    }

    #[test]
    fn rejects_every_invalid_body() {
        let cases: &[(&str, Error)] = &[
            ("id,a\nx,1\n", Error::FirstColumn("id".into())),
            ("switch_id\nx\n", Error::NoMetrics),
            ("switch_id,a,\nx,1,2\n", Error::EmptyColumn { column: 3 }),
            ("switch_id,a,a\nx,1,2\n", Error::DuplicateColumn("a".into())),
            (
                "switch_id,a,switch_id\nx,1,2\n",
                Error::DuplicateColumn("switch_id".into()),
            ),
            (
                "switch_id,a\n,1\n",
                Error::EmptyId {
                    line: 2,
                    name: MATRIX_ID,
                },
            ),
            (
                "switch_id,a\nx,1\nx,2\n",
                Error::DuplicateId {
                    line: 3,
                    name: MATRIX_ID,
                    id: "x".into(),
                },
            ),
            (
                "switch_id,a\nx,NaN\n",
                Error::NotANumber {
                    line: 2,
                    column: "a".into(),
                    value: "NaN".into(),
                    labels: false,
                },
            ),
            (
                "switch_id,a\nx,inf\n",
                Error::NotANumber {
                    line: 2,
                    column: "a".into(),
                    value: "inf".into(),
                    labels: false,
                },
            ),
            (
                "switch_id,a\nx,-infinity\n",
                Error::NotANumber {
                    line: 2,
                    column: "a".into(),
                    value: "-infinity".into(),
                    labels: false,
                },
            ),
            (
                "switch_id,a\nx,1e400\n",
                Error::NotANumber {
                    line: 2,
                    column: "a".into(),
                    value: "1e400".into(),
                    labels: false,
                },
            ),
            (
                "switch_id,a\nx,12abc\n",
                Error::NotANumber {
                    line: 2,
                    column: "a".into(),
                    value: "12abc".into(),
                    labels: false,
                },
            ),
            (
                "switch_id,a\nx,1,2\n",
                Error::Csv(csv::Error::Ragged {
                    line: 2,
                    expected: 2,
                    found: 3,
                }),
            ),
            (
                "switch_id,a\nx\n",
                Error::Csv(csv::Error::Ragged {
                    line: 2,
                    expected: 2,
                    found: 1,
                }),
            ),
        ];
        for (body, want) in cases {
            assert_eq!(&parse(body).unwrap_err(), want, "{body:?}");
        }
        assert!(matches!(
            Snapshot::parse(b"switch_id,a\n\xff\xfe,1\n", origin(), LIMITS),
            Err(Error::Csv(csv::Error::NotUtf8 { line: 2 }))
        ));
    }

    #[test]
    fn row_limit_is_enforced() {
        let mut body = String::from("switch_id,a\n");
        for i in 0..11 {
            body.push_str(&format!("sw-{i},1\n"));
        }
        let small = Limits { max_rows: 10 };
        assert_eq!(
            Snapshot::parse(body.as_bytes(), origin(), small).unwrap_err(),
            Error::TooManyRows { limit: 10 }
        );
        assert!(Snapshot::parse(body.as_bytes(), origin(), Limits { max_rows: 11 }).is_ok());
    }

    #[test]
    fn blank_lines_under_a_wide_header_reserve_nothing_big() {
        // 100k columns and 1M blank lines: a rows × columns guess would
        // reserve 400 GB, and the allocation failure would abort.
        let mut body = String::from("switch_id");
        for i in 0..100_000 {
            body.push_str(&format!(",c{i}"));
        }
        body.push_str(&"\n".repeat(1_000_000));
        let limits = Limits {
            max_rows: 100_000_000,
        };
        let snap = Snapshot::parse(body.as_bytes(), origin(), limits);
        assert_eq!(snap.map(|s| s.rows()), Ok(0));
    }

    #[test]
    fn messages_clip_hostile_values() {
        let long = "9".repeat(10_000) + "x";
        let err = parse(&format!("switch_id,a\nx,{long}\n"))
            .unwrap_err()
            .to_string();
        assert!(err.len() < 200, "{err}");
    }

    #[test]
    fn a_new_column_upstream_just_appears() {
        let s = parse("switch_id,a,new_metric\nx,1,2\n").unwrap();
        assert_eq!(s.fields.last().map(String::as_str), Some("new_metric"));
        assert_eq!(s.number(0, 1), "2");
        assert_eq!(list_json(&s, 0)["items"][0]["new_metric"], 2);
    }
}
