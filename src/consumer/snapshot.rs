//! One validated upstream snapshot, with everything the API needs to answer
//! from it prepared once, when it is built.
//!
//! Building reads the CSV once: it checks the header (first column
//! `switch_id`, no empty or duplicate names), checks every row (a non-empty,
//! unique switch id; every value a finite number), indexes switch → row and
//! metric → column, keeps each value's JSON spelling (the CSV's own text when
//! it already is a JSON number, so `121.5` stays `121.5` and `0` stays `0`),
//! and renders the `ListMetrics` body. A request then only looks things up
//! and writes the small part that changes (the age).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::csv;
use crate::http::Chunk;
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
    /// A header and no rows: an upstream with no switches is broken, not
    /// news, and must not replace the table we have.
    NoRows,
    /// A column name given twice.
    DuplicateColumn(String),
    /// More rows than [`Limits::max_rows`].
    TooManyRows { limit: usize },
    /// A row whose `switch_id` is empty.
    EmptySwitchId { line: usize },
    /// A `switch_id` seen on an earlier row.
    DuplicateSwitchId { line: usize, id: String },
    /// A value that is not a finite number.
    NotANumber {
        line: usize,
        column: String,
        value: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Csv(e) => write!(f, "{e}"),
            Error::Empty => write!(f, "csv: empty body"),
            Error::FirstColumn(c) => {
                write!(f, "csv: first column is {c:?}, expected \"switch_id\"")
            }
            Error::NoMetrics => write!(f, "csv: no metric columns"),
            Error::EmptyColumn { column } => write!(f, "csv: column {column} has no name"),
            Error::ControlInColumn { column } => {
                write!(
                    f,
                    "csv: column {column} has a control character in its name"
                )
            }
            Error::NoRows => write!(f, "csv: a header but no rows"),
            Error::DuplicateColumn(c) => write!(f, "csv: duplicate column {c:?}"),
            Error::TooManyRows { limit } => write!(f, "csv: more than {limit} rows"),
            Error::EmptySwitchId { line } => write!(f, "csv: line {line}: empty switch_id"),
            Error::DuplicateSwitchId { line, id } => {
                write!(f, "csv: line {line}: duplicate switch_id {id:?}")
            }
            Error::NotANumber {
                line,
                column,
                value,
            } => write!(
                f,
                "csv: line {line}: {column} is {value:?}, not a finite number"
            ),
        }
    }
}

impl std::error::Error for Error {}

impl From<csv::Error> for Error {
    fn from(e: csv::Error) -> Error {
        Error::Csv(e)
    }
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

/// A validated snapshot, ready to serve.
#[derive(Debug)]
pub struct Snapshot {
    pub origin: Origin,
    /// `"<id>"`, the `ETag` we answer with.
    pub etag: String,
    /// Metric names in upstream column order.
    pub fields: Vec<String>,
    /// Switch ids in upstream row order.
    pub switch_ids: Vec<Box<str>>,
    row_of: HashMap<Box<str>, u32>,
    column_of: HashMap<String, u32>,
    /// Row-major values, `rows × fields`.
    values: Vec<f64>,
    /// The JSON spelling of every value, concatenated; `number_ends[i]` is
    /// where value `i`'s text ends.
    numbers: String,
    number_ends: Vec<u32>,
    /// `{"snapshot_id":"…","age_ms":`
    list_head: Arc<[u8]>,
    /// `,"fields":[…],"items":[…]}`
    list_tail: Arc<[u8]>,
    /// Size of the CSV body this was built from.
    pub csv_bytes: usize,
    /// When the upstream last vouched for this data (fetched it, or
    /// answered 304 to it), epoch ms: the age's base when it gave no time.
    confirmed_ms: AtomicU64,
}

impl Snapshot {
    /// Validates `body` and builds the snapshot, or says what is wrong.
    pub fn parse(body: &[u8], origin: Origin, limits: Limits) -> Result<Snapshot, Error> {
        let mut reader = csv::Reader::new(body)?;
        let mut record = Vec::new();
        if !reader.read_record(&mut record)? {
            return Err(Error::Empty);
        }
        match record.first() {
            Some(first) if first == "switch_id" => {}
            first => return Err(Error::FirstColumn(clip(first.map_or("", |f| f)))),
        }
        let fields: Vec<String> = record[1..].iter().map(|f| f.to_string()).collect();
        if fields.is_empty() {
            return Err(Error::NoMetrics);
        }
        let mut column_of = HashMap::with_capacity(fields.len());
        for (i, name) in fields.iter().enumerate() {
            if name.is_empty() {
                return Err(Error::EmptyColumn { column: i + 2 });
            }
            if name.chars().any(char::is_control) {
                return Err(Error::ControlInColumn { column: i + 2 });
            }
            if name == "switch_id" || column_of.insert(name.clone(), i as u32).is_some() {
                return Err(Error::DuplicateColumn(clip(name)));
            }
        }

        // Keys are rendered once: `"name":`.
        let keys: Vec<String> = fields
            .iter()
            .map(|f| {
                let mut k = json::string(f);
                k.push(':');
                k
            })
            .collect();
        let rows_hint = (body.len() / (fields.len() * 6 + 8)).min(limits.max_rows);
        let mut switch_ids: Vec<Box<str>> = Vec::with_capacity(rows_hint);
        let mut row_of = HashMap::with_capacity(rows_hint);
        let mut values = Vec::with_capacity(rows_hint * fields.len());
        let mut numbers = String::with_capacity(body.len());
        let mut number_ends = Vec::with_capacity(rows_hint * fields.len());
        let mut tail = String::with_capacity(body.len() * 2 + 64);
        tail.push_str(",\"fields\":[");
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                tail.push(',');
            }
            json::push_str(&mut tail, f);
        }
        tail.push_str("],\"items\":[");

        while reader.read_record(&mut record)? {
            let line = reader.line();
            if switch_ids.len() == limits.max_rows {
                return Err(Error::TooManyRows {
                    limit: limits.max_rows,
                });
            }
            let id = record[0].as_ref();
            if id.is_empty() {
                return Err(Error::EmptySwitchId { line });
            }
            let row = switch_ids.len() as u32;
            if row_of.contains_key(id) {
                return Err(Error::DuplicateSwitchId { line, id: clip(id) });
            }
            if row > 0 {
                tail.push(',');
            }
            tail.push_str("{\"switch_id\":");
            json::push_str(&mut tail, id);
            for (col, text) in record[1..].iter().enumerate() {
                let text = text.trim();
                let value = match text.parse::<f64>() {
                    Ok(v) if v.is_finite() => v,
                    _ => {
                        return Err(Error::NotANumber {
                            line,
                            column: clip(&fields[col]),
                            value: clip(text),
                        });
                    }
                };
                let start = numbers.len();
                if json::is_number_literal(text) {
                    numbers.push_str(text);
                } else {
                    json::push_f64(&mut numbers, value);
                }
                tail.push(',');
                tail.push_str(&keys[col]);
                tail.push_str(&numbers[start..]);
                values.push(value);
                number_ends.push(numbers.len() as u32);
            }
            tail.push('}');
            let id: Box<str> = id.into();
            row_of.insert(id.clone(), row);
            switch_ids.push(id);
        }
        if switch_ids.is_empty() {
            return Err(Error::NoRows);
        }
        tail.push_str("]}");

        let mut head = String::from("{\"snapshot_id\":");
        json::push_str(&mut head, &origin.id);
        head.push_str(",\"age_ms\":");
        Ok(Snapshot {
            confirmed_ms: AtomicU64::new(origin.fetched_ms),
            etag: format!("\"{}\"", origin.id),
            origin,
            fields,
            switch_ids,
            row_of,
            column_of,
            values,
            numbers,
            number_ends,
            list_head: Arc::from(head.into_bytes()),
            list_tail: Arc::from(tail.into_bytes()),
            csv_bytes: body.len(),
        })
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

    pub fn rows(&self) -> usize {
        self.switch_ids.len()
    }

    /// The row of `switch_id`, if present.
    pub fn row(&self, switch_id: &str) -> Option<usize> {
        self.row_of.get(switch_id).map(|&r| r as usize)
    }

    /// The column of `metric`, if present.
    pub fn column(&self, metric: &str) -> Option<usize> {
        self.column_of.get(metric).map(|&c| c as usize)
    }

    /// The value at (`row`, `column`) as a float.
    pub fn value(&self, row: usize, column: usize) -> f64 {
        self.values[row * self.fields.len() + column]
    }

    /// The value at (`row`, `column`) spelled as JSON, as the CSV carried it.
    pub fn number(&self, row: usize, column: usize) -> &str {
        let i = row * self.fields.len() + column;
        let start = if i == 0 {
            0
        } else {
            self.number_ends[i - 1] as usize
        };
        &self.numbers[start..self.number_ends[i] as usize]
    }

    /// The whole `ListMetrics` body for a request at `now_ms`: two shared,
    /// pre-rendered parts around the age.
    pub fn list_body(&self, now_ms: u64) -> Vec<Chunk> {
        vec![
            Chunk::Shared(self.list_head.clone()),
            Chunk::Owned(self.age_ms(now_ms).to_string().into_bytes()),
            Chunk::Shared(self.list_tail.clone()),
        ]
    }
}

/// Untrusted text clipped for an error message.
fn clip(s: &str) -> String {
    let c = json::clip(s, 64);
    if c.len() < s.len() {
        format!("{c}…")
    } else {
        c.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn list_json(s: &Snapshot, now: u64) -> serde_json::Value {
        let bytes: Vec<u8> = s
            .list_body(now)
            .iter()
            .flat_map(|c| match c {
                Chunk::Shared(b) => b.to_vec(),
                Chunk::Owned(b) => b.clone(),
                Chunk::Static(b) => b.to_vec(),
            })
            .collect();
        serde_json::from_slice(&bytes).unwrap()
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
        assert_eq!(s.value(1, 2), -0.25);
        assert_eq!(s.etag, "\"abc-1\"");
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
        let text = String::from_utf8(
            s.list_body(4_000)
                .iter()
                .flat_map(|c| match c {
                    Chunk::Shared(b) => b.to_vec(),
                    Chunk::Owned(b) => b.clone(),
                    Chunk::Static(b) => b.to_vec(),
                })
                .collect(),
        )
        .unwrap();
        assert!(text.contains("{\"switch_id\":\"sw-000\",\"a\":121.5,\"b\":0}"));
        assert!(text.starts_with("{\"snapshot_id\":\"abc-1\",\"age_ms\":3000,\"fields\":"));
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
    fn a_body_needs_a_header_and_rows() {
        assert_eq!(parse("switch_id,a\n").unwrap_err(), Error::NoRows);
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
            ("switch_id,a\n,1\n", Error::EmptySwitchId { line: 2 }),
            (
                "switch_id,a\nx,1\nx,2\n",
                Error::DuplicateSwitchId {
                    line: 3,
                    id: "x".into(),
                },
            ),
            (
                "switch_id,a\nx,NaN\n",
                Error::NotANumber {
                    line: 2,
                    column: "a".into(),
                    value: "NaN".into(),
                },
            ),
            (
                "switch_id,a\nx,inf\n",
                Error::NotANumber {
                    line: 2,
                    column: "a".into(),
                    value: "inf".into(),
                },
            ),
            (
                "switch_id,a\nx,-infinity\n",
                Error::NotANumber {
                    line: 2,
                    column: "a".into(),
                    value: "-infinity".into(),
                },
            ),
            (
                "switch_id,a\nx,1e400\n",
                Error::NotANumber {
                    line: 2,
                    column: "a".into(),
                    value: "1e400".into(),
                },
            ),
            (
                "switch_id,a\nx,\n",
                Error::NotANumber {
                    line: 2,
                    column: "a".into(),
                    value: "".into(),
                },
            ),
            (
                "switch_id,a\nx,12abc\n",
                Error::NotANumber {
                    line: 2,
                    column: "a".into(),
                    value: "12abc".into(),
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
        assert_eq!(list_json(&s, 0)["items"][0]["new_metric"], 2);
    }
}
