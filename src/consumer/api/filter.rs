//! `ListMetrics` filtering, sorting, paging and CSV output: the query
//! parameters a shell user reaches for (`fields=`, `switch_id=`,
//! `switch_prefix=`, `where=`, `sort=`, `limit=`, `offset=`, `format=` or
//! `Accept: text/csv`), parsed into a [`Filter`], checked against a
//! snapshot, and rendered per request as JSON or CSV. A request with none
//! of these parameters never comes here: it gets the snapshot's
//! pre-rendered body; one asking for the whole table as CSV gets the
//! snapshot's shared CSV. The SSE stream takes the same parameters.
//!
//! The rules, each answered 400 with `{"error":"…"}` naming the bad value
//! when broken:
//! - Every parameter at most once; any other name is refused
//!   ([`query::strict`]), so a misspelt `feilds=` cannot quietly answer
//!   with the whole table. Comma lists are split after percent-decoding
//!   (`sw-001%2Csw-003` is two ids, as most HTTP clients encode them).
//! - `fields=a,b` keeps those fields, in that order (`switch_id` always
//!   comes first; naming it is allowed and changes nothing). Unknown,
//!   repeated or empty names are refused.
//! - `switch_id=a,b` keeps those switches; ids the snapshot lacks are
//!   simply absent (`total` says how many matched). `switch_prefix=p`
//!   keeps ids starting with `p`; both together intersect.
//! - `where=<field><op><number>[,…]`, op one of `>` `>=` `<` `<=` `==`
//!   `!=`: keeps the rows where every condition holds (values compared as
//!   numbers).
//! - `sort=<field>` ascending, `sort=-<field>` descending, ties in row
//!   order; `sort=switch_id` orders by id (byte order). Without it, rows
//!   keep the upstream order.
//! - `limit` (1..=100000) and `offset` (≥ 0) page through what matched,
//!   after filtering and sorting; `total` counts the matches before
//!   paging, `next_offset` is where the next page starts (`null` on the
//!   last one).
//! - `format=csv|json` (any case), or `Accept: text/csv` without
//!   `format=json`, answers CSV: `switch_id,<fields…>` then one row per
//!   item, with `X-Total-Count` (and `X-Next-Offset` when there is a next
//!   page) for paging.

use std::cmp::Ordering;
use std::fmt;

use crate::consumer::store::fabric::Fabric;
use crate::consumer::store::snapshot::{KEYED_ID, MATRIX_ID, push_csv_cell};
use crate::consumer::store::value::Num;
use crate::csv;
use crate::http::{self, Request, Response};
use crate::json;
use crate::query;

/// The largest page a client may ask for.
pub const MAX_LIMIT: usize = 100_000;

/// Every parameter `ListMetrics` and the stream take.
pub const PARAMS: &[&str] = &[
    "fields",
    "id",
    "id_prefix",
    "switch_id",
    "switch_prefix",
    "where",
    "sort",
    "limit",
    "offset",
    "format",
];

/// Why a `ListMetrics` query was refused. Every one is a 400.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// The query string is malformed (a bad `%`-escape, not UTF-8), or
    /// names a parameter twice or one that does not exist.
    Query(query::Error),
    /// A parameter given with an empty value (`limit=`).
    Empty(&'static str),
    /// A comma list with an empty element (`fields=a,,b`); the whole value.
    EmptyElement { param: &'static str, value: String },
    /// `limit` is not an integer in 1..=[`MAX_LIMIT`].
    Limit(String),
    /// `offset` is not a non-negative integer.
    Offset(String),
    /// `format` is neither `json` nor `csv`.
    Format(String),
    /// `sort` names no field (`sort=-`).
    Sort(String),
    /// A `where` condition that is not `<field><op><number>`.
    Where(String),
    /// A name the snapshot does not have, in `fields`, `sort` or `where`.
    UnknownField { param: &'static str, name: String },
    /// A name given twice in `fields`.
    DuplicateField(String),
    /// A `where` on a text field (a label).
    WhereOnLabel(String),
    /// Both names of one parameter (`id` and `switch_id`).
    Both(&'static str, &'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Query(e) => write!(f, "{e}"),
            Error::Empty(p) => write!(f, "empty query parameter: {p}"),
            Error::EmptyElement { param, value } => {
                write!(f, "empty element in {param}: {}", clip(value))
            }
            Error::Limit(v) => write!(
                f,
                "invalid limit: {} (want an integer 1..={MAX_LIMIT})",
                clip(v)
            ),
            Error::Offset(v) => write!(
                f,
                "invalid offset: {} (want a non-negative integer)",
                clip(v)
            ),
            Error::Format(v) => write!(f, "invalid format: {} (want json or csv)", clip(v)),
            Error::Sort(v) => write!(f, "invalid sort: {} (want <field> or -<field>)", clip(v)),
            Error::Where(v) => write!(
                f,
                "invalid where: {} (want <field><op><number>, op one of > >= < <= == !=)",
                clip(v)
            ),
            Error::UnknownField {
                param: "fields",
                name,
            } => write!(f, "unknown field: {}", clip(name)),
            Error::UnknownField { param, name } => {
                write!(f, "unknown field in {param}: {}", clip(name))
            }
            Error::DuplicateField(v) => write!(f, "duplicate field: {}", clip(v)),
            Error::WhereOnLabel(v) => write!(
                f,
                "invalid where: {} is text, not a number (where compares numbers)",
                clip(v)
            ),
            Error::Both(a, b) => write!(f, "{a} and {b} are the same parameter: give one"),
        }
    }
}

impl std::error::Error for Error {}

impl From<query::Error> for Error {
    fn from(e: query::Error) -> Error {
        Error::Query(e)
    }
}

/// Untrusted text clipped for an error message.
fn clip(s: &str) -> String {
    json::clipped(s, 128)
}

/// The body format an answer is rendered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Json,
    Csv,
}

/// A comparison in a `where` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Op {
    /// The operators, two-character ones first so that `>=` is not read
    /// as `>` followed by `=5`.
    const ALL: [(&'static str, Op); 6] = [
        (">=", Op::Ge),
        ("<=", Op::Le),
        ("==", Op::Eq),
        ("!=", Op::Ne),
        (">", Op::Gt),
        ("<", Op::Lt),
    ];

    /// True if `value op bound`, compared exactly; never for a value that
    /// is not a number (`null`, text, missing).
    fn holds(self, value: Num, bound: Num) -> bool {
        let Some(o) = value.cmp_exact(bound) else {
            return false;
        };
        match self {
            Op::Gt => o.is_gt(),
            Op::Ge => o.is_ge(),
            Op::Lt => o.is_lt(),
            Op::Le => o.is_le(),
            Op::Eq => o.is_eq(),
            Op::Ne => o.is_ne(),
        }
    }
}

/// One `where` condition: `field op value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: String,
    pub op: Op,
    pub value: Num,
}

impl Condition {
    /// Reads `<field><op><number>`: the field runs up to the first
    /// operator character, the number is finite.
    fn parse(text: &str) -> Result<Condition, Error> {
        let bad = || Error::Where(text.to_string());
        let at = text
            .find(['<', '>', '=', '!'])
            .filter(|&i| i > 0)
            .ok_or_else(bad)?;
        let (field, rest) = text.split_at(at);
        let (op, number) = Op::ALL
            .iter()
            .find_map(|(s, op)| rest.strip_prefix(s).map(|n| (*op, n)))
            .ok_or_else(bad)?;
        let value = Some(Num::of(number))
            .filter(|v| v.is_some() && !number.starts_with('"'))
            .ok_or_else(bad)?;
        Ok(Condition {
            field: field.to_string(),
            op,
            value,
        })
    }
}

/// What `sort` asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Sort {
    /// A field name, or the id (`switch_id` or `id`).
    pub key: String,
    pub descending: bool,
}

/// What a `ListMetrics` request asks for. `None` means "not given".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Fields to keep, in order (the id is dropped when the table is
    /// known).
    pub fields: Option<Vec<String>>,
    /// Exact ids to keep (`id=`, or its original name `switch_id=`).
    pub switch_ids: Option<Vec<String>>,
    /// `id_prefix=`, or `switch_prefix=`.
    pub switch_prefix: Option<String>,
    /// Conditions every row kept meets.
    pub conditions: Option<Vec<Condition>>,
    pub sort: Option<Sort>,
    pub limit: Option<usize>,
    pub offset: Option<usize>,
    pub format: Format,
}

impl Filter {
    /// Reads the query string and `Accept` header of `req`.
    pub fn from_request(req: &Request) -> Result<Filter, Error> {
        let (mut filter, format) = Filter::read(&req.query)?;
        filter.format = match format {
            Some(f) => f,
            None if accepts_csv(req.headers_named("Accept")) => Format::Csv,
            None => Format::Json,
        };
        Ok(filter)
    }

    /// Reads a query string (the format defaults to JSON).
    pub fn parse(query: &str) -> Result<Filter, Error> {
        let (mut filter, format) = Filter::read(query)?;
        filter.format = format.unwrap_or_default();
        Ok(filter)
    }

    /// The filter and the `format` given, if any.
    fn read(query: &str) -> Result<(Filter, Option<Format>), Error> {
        let mut filter = Filter::default();
        let mut format: Option<Format> = None;
        let pairs = query::strict(query, PARAMS)?;
        for (a, b) in [("id", "switch_id"), ("id_prefix", "switch_prefix")] {
            if pairs.iter().any(|(n, _)| *n == a) && pairs.iter().any(|(n, _)| *n == b) {
                return Err(Error::Both(a, b));
            }
        }
        for (name, value) in pairs {
            if value.is_empty() {
                return Err(Error::Empty(name));
            }
            match name {
                "fields" => filter.fields = Some(split_list("fields", &value)?),
                "id" | "switch_id" => filter.switch_ids = Some(split_list(name, &value)?),
                "id_prefix" | "switch_prefix" => filter.switch_prefix = Some(value.into_owned()),
                "where" => {
                    let list = split_list("where", &value)?;
                    let conditions = list.iter().map(|c| Condition::parse(c));
                    filter.conditions = Some(conditions.collect::<Result<_, _>>()?);
                }
                "sort" => {
                    let (descending, key) = match value.strip_prefix('-') {
                        Some(key) => (true, key),
                        None => (false, &*value),
                    };
                    if key.is_empty() {
                        return Err(Error::Sort(value.into_owned()));
                    }
                    let key = key.to_string();
                    filter.sort = Some(Sort { key, descending });
                }
                "limit" => {
                    let limit = uint(&value)
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| Error::Limit(value.to_string()))?;
                    filter.limit = Some(limit);
                }
                "offset" => {
                    let offset = uint(&value).ok_or_else(|| Error::Offset(value.to_string()))?;
                    filter.offset = Some(offset);
                }
                _ => {
                    format = Some(if value.eq_ignore_ascii_case("json") {
                        Format::Json
                    } else if value.eq_ignore_ascii_case("csv") {
                        Format::Csv
                    } else {
                        return Err(Error::Format(value.into_owned()));
                    });
                }
            }
        }
        Ok((filter, format))
    }

    /// True if no filter, sort or paging parameter was given: the answer is
    /// the whole table, which is pre-rendered.
    pub fn is_whole_table(&self) -> bool {
        self.fields.is_none()
            && self.switch_ids.is_none()
            && self.switch_prefix.is_none()
            && self.conditions.is_none()
            && self.sort.is_none()
            && self.limit.is_none()
            && self.offset.is_none()
    }

    /// Checks the filter against `snap` and picks the page it asks for,
    /// leaving out the rows of the parts `skip` marks (stale shards).
    pub fn select(&self, snap: &Fabric, skip: &[bool]) -> Result<Page, Error> {
        let column = |param: &'static str, name: &str| {
            snap.column(name).ok_or_else(|| Error::UnknownField {
                param,
                name: name.to_string(),
            })
        };
        let columns = match &self.fields {
            None => (0..snap.fields.len()).collect(),
            Some(names) => {
                let mut taken = vec![false; snap.fields.len()];
                let mut columns = Vec::with_capacity(names.len());
                // The id always comes first; naming it changes nothing.
                for name in names.iter().filter(|n| !is_id(snap, n)) {
                    let col = column("fields", name)?;
                    if std::mem::replace(&mut taken[col], true) {
                        return Err(Error::DuplicateField(name.clone()));
                    }
                    columns.push(col);
                }
                columns
            }
        };
        let conditions = match &self.conditions {
            None => Vec::new(),
            Some(list) => list
                .iter()
                .map(|c| {
                    let col = column("where", &c.field)?;
                    if snap.kinds.get(col).is_some_and(|k| k.is_text()) {
                        return Err(Error::WhereOnLabel(c.field.clone()));
                    }
                    Ok((col, c.op, c.value))
                })
                .collect::<Result<Vec<_>, Error>>()?,
        };
        // The sort column; `None` inside for the switch id.
        let sort = match &self.sort {
            None => None,
            Some(s) if is_id(snap, &s.key) => Some((None, s.descending)),
            Some(s) => Some((Some(column("sort", &s.key)?), s.descending)),
        };
        let prefix = self.switch_prefix.as_deref();
        let skipping = skip.iter().any(|&s| s);
        let keep = |row: usize| {
            !(skipping && skip.get(snap.part_of(row)).copied().unwrap_or(false))
                && prefix.is_none_or(|p| snap.switch_id(row).starts_with(p))
                && conditions
                    .iter()
                    .all(|&(col, op, bound)| op.holds(snap.value(row, col), bound))
        };
        let candidates: Box<dyn Iterator<Item = usize>> = match &self.switch_ids {
            None => Box::new(0..snap.rows()),
            Some(ids) => {
                let mut rows: Vec<usize> = ids.iter().filter_map(|id| snap.row(id)).collect();
                rows.sort_unstable();
                rows.dedup();
                Box::new(rows.into_iter())
            }
        };
        let offset = self.offset.unwrap_or(0);
        let end = self.limit.map_or(usize::MAX, |l| offset.saturating_add(l));
        let mut page = Page {
            columns,
            rows: Vec::new(),
            total: 0,
            next_offset: None,
        };
        match sort {
            // Upstream order: count the matches, keep the page's.
            None => {
                for row in candidates.filter(|&r| keep(r)) {
                    if (offset..end).contains(&page.total) {
                        page.rows.push(row);
                    }
                    page.total += 1;
                }
            }
            Some((key, descending)) => {
                let mut rows: Vec<usize> = candidates.filter(|&r| keep(r)).collect();
                sort_rows(snap, &mut rows, key, descending);
                page.total = rows.len();
                let end = end.min(rows.len());
                if offset < end {
                    page.rows = rows[offset..end].to_vec();
                }
            }
        }
        if end < page.total {
            page.next_offset = Some(end);
        }
        Ok(page)
    }

    /// The whole answer (status, Content-Type, body; the caller adds the
    /// data headers) for `snap` at `now_ms`, leaving out the parts `skip`
    /// marks; a JSON answer ends with `tail` (`"missing_shards"`, or "").
    pub fn render(
        &self,
        snap: &Fabric,
        now_ms: u64,
        skip: &[bool],
        tail: &str,
    ) -> Result<Response, Error> {
        if self.is_whole_table() && self.format == Format::Csv {
            let mut resp = Response::new(200)
                .header("Content-Type", http::CSV)
                .header("X-Total-Count", snap.served_rows(skip).to_string());
            resp.body = snap.csv_table(skip);
            return Ok(resp);
        }
        let page = self.select(snap, skip)?;
        Ok(match self.format {
            Format::Json => {
                let age = snap.served_age_ms(now_ms, skip);
                Response::json(200, page.json(snap, age, tail))
            }
            Format::Csv => {
                let mut resp = Response::new(200)
                    .header("Content-Type", http::CSV)
                    .header("X-Total-Count", page.total.to_string());
                if let Some(next) = page.next_offset {
                    resp = resp.header("X-Next-Offset", next.to_string());
                }
                resp.chunk(page.csv(snap))
            }
        })
    }
}

/// True if `name` names the table's id: its own name, or the other one
/// (`switch_id` for `id` and back) when no field is called that.
fn is_id(snap: &Fabric, name: &str) -> bool {
    name == snap.id_name || (matches!(name, MATRIX_ID | KEYED_ID) && snap.column(name).is_none())
}

/// Sorts `rows` (in row order) by the column `key` (`None`: the id),
/// stably, so ties keep row order either way. Numbers compare exactly
/// (integers as integers); a label sorts as text; a `null`, or a field
/// the row's shard lacks, comes last either way.
fn sort_rows(snap: &Fabric, rows: &mut Vec<usize>, key: Option<usize>, descending: bool) {
    let directed = |o: Ordering| if descending { o.reverse() } else { o };
    match key {
        None => rows.sort_by(|&a, &b| directed(snap.switch_id(a).cmp(snap.switch_id(b)))),
        Some(col) if snap.kinds.get(col).is_some_and(|k| k.is_text()) => {
            let missing = |r: usize| matches!(snap.number(r, col), "" | "null");
            rows.sort_by(|&a, &b| match (missing(a), missing(b)) {
                (false, false) => directed(snap.number(a, col).cmp(snap.number(b, col))),
                (x, y) => x.cmp(&y),
            });
        }
        Some(col) => {
            // Each value read once.
            let mut keyed: Vec<(Num, usize)> =
                rows.iter().map(|&r| (snap.value(r, col), r)).collect();
            keyed.sort_by(|a, b| match (a.0.is_some(), b.0.is_some()) {
                (true, true) => directed(a.0.cmp_exact(b.0).unwrap_or(Ordering::Equal)),
                (x, y) => y.cmp(&x),
            });
            *rows = keyed.into_iter().map(|(_, r)| r).collect();
        }
    }
}

/// The elements of a decoded comma list, refusing an empty one.
fn split_list(param: &'static str, value: &str) -> Result<Vec<String>, Error> {
    let out: Vec<String> = value.split(',').map(str::to_string).collect();
    if out.iter().any(String::is_empty) {
        return Err(Error::EmptyElement {
            param,
            value: value.to_string(),
        });
    }
    Ok(out)
}

/// Plain decimal digits (no sign, no spaces) as a `usize`.
fn uint(s: &str) -> Option<usize> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// True if `Accept` prefers CSV: `text/csv` with q > 0, above any
/// `application/json` and at least as high as any wildcard. A plain
/// `*/*` (curl's default) or no header at all means JSON.
fn accepts_csv<'a>(headers: impl Iterator<Item = &'a str>) -> bool {
    let (mut csv, mut json, mut wild) = (0.0f32, 0.0f32, 0.0f32);
    for range in headers.flat_map(|h| h.split(',')) {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim();
        let mut q = 1.0f32;
        for p in parts {
            let Some((k, v)) = p.split_once('=') else {
                continue;
            };
            if k.trim().eq_ignore_ascii_case("q") {
                q = v
                    .trim()
                    .parse()
                    .ok()
                    .filter(|q: &f32| (0.0..=1.0).contains(q))
                    .unwrap_or(0.0);
            }
        }
        let slot = if media.eq_ignore_ascii_case("text/csv") {
            &mut csv
        } else if media.eq_ignore_ascii_case("application/json") {
            &mut json
        } else if media == "*/*" || media.eq_ignore_ascii_case("text/*") {
            &mut wild
        } else {
            continue;
        };
        *slot = slot.max(q);
    }
    csv > 0.0 && csv > json && csv >= wild
}

/// The rows and columns one request selected.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Snapshot columns, in the order asked for.
    pub columns: Vec<usize>,
    /// Snapshot rows on this page, in upstream order.
    pub rows: Vec<usize>,
    /// Rows that matched before paging.
    pub total: usize,
    /// Where the next page starts, if there are more rows.
    pub next_offset: Option<usize>,
}

impl Page {
    /// `{"snapshot_id","age_ms","total","next_offset","fields","items"}`,
    /// then `tail` (`"missing_shards"`, or nothing).
    pub fn json(&self, snap: &Fabric, age_ms: u64, tail: &str) -> String {
        let keys: Vec<String> = self
            .columns
            .iter()
            .map(|&c| {
                let mut k = json::string(&snap.fields[c]);
                k.push(':');
                k
            })
            .collect();
        let per_row = 16 + keys.iter().map(|k| k.len() + 8).sum::<usize>();
        let mut out = String::with_capacity(128 + per_row * self.rows.len());
        out.push_str("{\"snapshot_id\":");
        json::push_str(&mut out, snap.id());
        out.push_str(",\"age_ms\":");
        out.push_str(&age_ms.to_string());
        out.push_str(",\"total\":");
        out.push_str(&self.total.to_string());
        out.push_str(",\"next_offset\":");
        match self.next_offset {
            Some(n) => out.push_str(&n.to_string()),
            None => out.push_str("null"),
        }
        out.push_str(",\"fields\":[");
        for (i, &c) in self.columns.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json::push_str(&mut out, &snap.fields[c]);
        }
        out.push_str("],\"items\":[");
        for (i, &row) in self.rows.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"");
            out.push_str(snap.id_name);
            out.push_str("\":");
            json::push_str(&mut out, snap.switch_id(row));
            let cells = snap.cells(row);
            for (key, &col) in keys.iter().zip(&self.columns) {
                out.push(',');
                out.push_str(key);
                out.push_str(cells.get(col));
            }
            out.push('}');
        }
        out.push(']');
        out.push_str(tail);
        out.push('}');
        out
    }

    /// `switch_id,<fields…>` then one line per row; numbers as in JSON.
    pub fn csv(&self, snap: &Fabric) -> String {
        let mut header = Vec::with_capacity(self.columns.len() + 1);
        header.push(snap.id_name);
        header.extend(self.columns.iter().map(|&c| snap.fields[c].as_str()));
        let per_row = 16 + 8 * self.columns.len();
        let mut out = String::with_capacity(64 + per_row * self.rows.len());
        csv::push_record(&mut out, &header);
        for &row in &self.rows {
            csv::push_field(&mut out, snap.switch_id(row));
            let cells = snap.cells(row);
            for &col in &self.columns {
                out.push(',');
                // A value the row's shard lacks, or an empty one, is empty.
                push_csv_cell(&mut out, cells.get(col));
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::store::snapshot::{Limits, Origin, Snapshot};
    use serde_json::{Value, json};

    const TABLE: &str = "switch_id,a,b,c\n\
        sw-000,1.5,0,10\n\
        sw-001,2.50,1,11\n\
        \"core,1 \"\"x\"\"\",3,2,1e3\n\
        sw-010,4,3,13\n\
        leaf-1,5,4,14\n";

    fn snap() -> Fabric {
        let origin = Origin {
            id: "s-1".into(),
            producer_ts_ms: Some(1_000),
            fetched_ms: 1_000,
        };
        Snapshot::parse(TABLE.as_bytes(), origin, Limits { max_rows: 100 })
            .unwrap()
            .into()
    }

    fn ids(s: &Fabric, page: &Page) -> Vec<String> {
        page.rows
            .iter()
            .map(|&r| s.switch_id(r).to_string())
            .collect()
    }

    fn select(q: &str) -> Result<Page, Error> {
        Filter::parse(q)?.select(&snap(), &[])
    }

    fn err(q: &str) -> String {
        match select(q) {
            Err(e) => e.to_string(),
            Ok(p) => panic!("{q}: expected an error, got {p:?}"),
        }
    }

    #[test]
    fn no_parameters_is_the_whole_table() {
        for q in ["", "format=json", "format=CSV", "&&"] {
            assert!(Filter::parse(q).unwrap().is_whole_table(), "{q}");
        }
        for q in [
            "fields=a",
            "switch_id=x",
            "switch_prefix=s",
            "limit=1",
            "offset=0",
            "sort=a",
            "where=a>1",
        ] {
            assert!(!Filter::parse(q).unwrap().is_whole_table(), "{q}");
        }
        let page = select("").unwrap();
        assert_eq!(page.columns, [0, 1, 2]);
        assert_eq!(page.rows, [0, 1, 2, 3, 4]);
        assert_eq!((page.total, page.next_offset), (5, None));
    }

    #[test]
    fn fields_keep_the_order_asked_for() {
        let p = select("fields=c,a").unwrap();
        assert_eq!(p.columns, [2, 0]);
        // switch_id is always first; naming it changes nothing.
        assert_eq!(select("fields=switch_id,b").unwrap().columns, [1]);
        assert!(select("fields=switch_id").unwrap().columns.is_empty());
        // A comma list is split after decoding.
        assert_eq!(select("fields=b%2Ca").unwrap().columns, [1, 0]);
        assert_eq!(err("fields=b&fields=a"), "repeated query parameter: fields");
        assert_eq!(err("fields=a,nope"), "unknown field: nope");
        assert_eq!(err("fields=A"), "unknown field: A");
        assert_eq!(err("fields=a,,b"), "empty element in fields: a,,b");
        assert_eq!(err("fields=a,"), "empty element in fields: a,");
        assert_eq!(err("fields="), "empty query parameter: fields");
        assert_eq!(err("fields=a,b,a"), "duplicate field: a");
    }

    #[test]
    fn switch_ids_and_prefix_filter_in_row_order() {
        let s = snap();
        let p = Filter::parse("switch_id=sw-010,sw-000,nope,sw-000")
            .unwrap()
            .select(&s, &[])
            .unwrap();
        assert_eq!(ids(&s, &p), ["sw-000", "sw-010"]);
        assert_eq!(p.total, 2);
        let p = Filter::parse("switch_prefix=sw-0")
            .unwrap()
            .select(&s, &[])
            .unwrap();
        assert_eq!(ids(&s, &p), ["sw-000", "sw-001", "sw-010"]);
        // Both: the intersection.
        let p = Filter::parse("switch_id=sw-001,leaf-1,sw-010&switch_prefix=sw-")
            .unwrap()
            .select(&s, &[])
            .unwrap();
        assert_eq!(ids(&s, &p), ["sw-001", "sw-010"]);
        // Lists are split after decoding: `%2C` separates as `,` does
        // (an id holding a comma is reached by switch_prefix).
        let p = Filter::parse("switch_id=sw-010%2Csw-000").unwrap();
        assert_eq!(p.switch_ids, Some(vec!["sw-010".into(), "sw-000".into()]));
        assert_eq!(ids(&s, &p.select(&s, &[]).unwrap()), ["sw-000", "sw-010"]);
        let p = Filter::parse("switch_prefix=core%2C1")
            .unwrap()
            .select(&s, &[])
            .unwrap();
        assert_eq!(ids(&s, &p), ["core,1 \"x\""]);
        assert_eq!(
            err("switch_id=a,%zz"),
            "malformed query string: bad %-escape"
        );
        assert_eq!(err("unknown=%zz"), "malformed query string: bad %-escape");
        assert_eq!(
            err("feilds=a"),
            "unknown query parameter: feilds (want one of fields, id, id_prefix, \
             switch_id, switch_prefix, where, sort, limit, offset, format)"
        );
        assert_eq!(
            err("switch_id=a&switch_id=b"),
            "repeated query parameter: switch_id"
        );
        // Unknown ids are absent, not an error.
        let p = Filter::parse("switch_id=nope")
            .unwrap()
            .select(&s, &[])
            .unwrap();
        assert_eq!((p.rows.len(), p.total, p.next_offset), (0, 0, None));
        assert_eq!(err("switch_id=a,,b"), "empty element in switch_id: a,,b");
        assert_eq!(err("switch_id="), "empty query parameter: switch_id");
        assert_eq!(
            err("switch_prefix="),
            "empty query parameter: switch_prefix"
        );
        assert_eq!(
            err("switch_prefix=a&switch_prefix=b"),
            "repeated query parameter: switch_prefix"
        );
    }

    #[test]
    fn where_keeps_rows_meeting_every_condition() {
        let s = snap();
        let rows = |q: &str| ids(&s, &Filter::parse(q).unwrap().select(&s, &[]).unwrap());
        // a: 1.5 2.50 3 4 5; b: 0 1 2 3 4; c: 10 11 1e3 13 14
        assert_eq!(rows("where=a>3"), ["sw-010", "leaf-1"]);
        assert_eq!(rows("where=a>=3"), ["core,1 \"x\"", "sw-010", "leaf-1"]);
        assert_eq!(rows("where=a<2.5"), ["sw-000"]);
        assert_eq!(rows("where=a<=2.5"), ["sw-000", "sw-001"]);
        assert_eq!(rows("where=b==0"), ["sw-000"]);
        assert_eq!(rows("where=c==1000"), ["core,1 \"x\""]);
        assert_eq!(rows("where=b!=0,c<13"), ["sw-001"]);
        assert_eq!(rows("where=a>1,a<3"), ["sw-000", "sw-001"]);
        assert_eq!(rows("where=a>%2D1e9"), rows(""));
        // Encoded as clients do: `>=` is `%3E%3D`, the comma `%2C`.
        assert_eq!(rows("where=b%3E%3D3%2Cc%3C14"), ["sw-010"]);
        // With the other filters, and total counts what passed.
        let p = Filter::parse("where=b>0&switch_prefix=sw-&limit=1")
            .unwrap()
            .select(&s, &[])
            .unwrap();
        assert_eq!(
            (ids(&s, &p), p.total, p.next_offset),
            (vec!["sw-001".into()], 2, Some(1))
        );
        let want = "(want <field><op><number>, op one of > >= < <= == !=)";
        for bad in [
            "a", "a>", ">1", "a=1", "a=>1", "a>x", "a>1x", "a>inf", "a>NaN", "a<>1", "a>1 ",
        ] {
            let q = format!("where={}", bad.replace(' ', "%20"));
            assert_eq!(err(&q), format!("invalid where: {bad} {want}"), "{q}");
        }
        assert_eq!(err("where=a>1,,b<2"), "empty element in where: a>1,,b<2");
        assert_eq!(err("where=zz>1"), "unknown field in where: zz");
        assert_eq!(
            err("where=switch_id>1"),
            "unknown field in where: switch_id"
        );
        assert_eq!(err("where="), "empty query parameter: where");
    }

    #[test]
    fn sort_orders_before_paging_with_ties_in_row_order() {
        let s = snap();
        let page = |q: &str| Filter::parse(q).unwrap().select(&s, &[]).unwrap();
        let rows = |q: &str| ids(&s, &page(q));
        assert_eq!(
            rows("sort=-a"),
            ["leaf-1", "sw-010", "core,1 \"x\"", "sw-001", "sw-000"]
        );
        assert_eq!(rows("sort=c")[4], "core,1 \"x\"");
        assert_eq!(
            rows("sort=switch_id"),
            ["core,1 \"x\"", "leaf-1", "sw-000", "sw-001", "sw-010"]
        );
        assert_eq!(rows("sort=-switch_id")[0], "sw-010");
        // Top-N: sort, then the page; total is every match.
        let p = page("sort=-c&limit=2&fields=c");
        assert_eq!(
            (ids(&s, &p), p.total, p.next_offset),
            (vec!["core,1 \"x\"".into(), "leaf-1".into()], 5, Some(2))
        );
        let p = page("sort=a&offset=3&limit=5");
        assert_eq!(
            (ids(&s, &p), p.next_offset),
            (vec!["sw-010".into(), "leaf-1".into()], None)
        );
        assert!(page("sort=a&offset=9").rows.is_empty());
        // Ties keep row order, ascending and descending alike.
        let tied = "switch_id,v\nd,1\nb,2\nc,1\na,2\n";
        let o = Origin {
            id: "t".into(),
            producer_ts_ms: None,
            fetched_ms: 0,
        };
        let t: Fabric = Snapshot::parse(tied.as_bytes(), o, Limits { max_rows: 10 })
            .unwrap()
            .into();
        let sorted = |q: &str| ids(&t, &Filter::parse(q).unwrap().select(&t, &[]).unwrap());
        assert_eq!(sorted("sort=v"), ["d", "c", "b", "a"]);
        assert_eq!(sorted("sort=-v"), ["b", "a", "d", "c"]);
        assert_eq!(sorted("sort=-v&where=v<2"), ["d", "c"]);
        assert_eq!(err("sort=-"), "invalid sort: - (want <field> or -<field>)");
        assert_eq!(err("sort=zz"), "unknown field in sort: zz");
        assert_eq!(err("sort=-zz"), "unknown field in sort: zz");
        assert_eq!(err("sort=a&sort=b"), "repeated query parameter: sort");
    }

    #[test]
    fn paging_after_filtering() {
        let s = snap();
        let page = |q: &str| Filter::parse(q).unwrap().select(&s, &[]).unwrap();
        let p = page("limit=2");
        assert_eq!(
            (p.rows.clone(), p.total, p.next_offset),
            (vec![0, 1], 5, Some(2))
        );
        let p = page("limit=2&offset=2");
        assert_eq!((p.rows.clone(), p.next_offset), (vec![2, 3], Some(4)));
        let p = page("limit=2&offset=4");
        assert_eq!((p.rows.clone(), p.next_offset), (vec![4], None));
        let p = page("offset=3");
        assert_eq!(
            (p.rows.clone(), p.total, p.next_offset),
            (vec![3, 4], 5, None)
        );
        let p = page("offset=99&limit=5");
        assert_eq!((p.rows.len(), p.total, p.next_offset), (0, 5, None));
        let p = page("switch_prefix=sw-&limit=2&offset=1");
        assert_eq!(
            (ids(&s, &p), p.total, p.next_offset),
            (vec!["sw-001".into(), "sw-010".into()], 3, None)
        );
        let p = page("limit=100000&offset=18446744073709551615");
        assert_eq!((p.rows.len(), p.next_offset), (0, None));
        assert_eq!(page("limit=007").rows.len(), 5);
    }

    #[test]
    fn bad_paging_values_name_the_parameter_and_value() {
        for (q, msg) in [
            ("limit=0", "invalid limit: 0 (want an integer 1..=100000)"),
            (
                "limit=100001",
                "invalid limit: 100001 (want an integer 1..=100000)",
            ),
            ("limit=-1", "invalid limit: -1 (want an integer 1..=100000)"),
            (
                "limit=%2B5",
                "invalid limit: +5 (want an integer 1..=100000)",
            ),
            (
                "limit=1.5",
                "invalid limit: 1.5 (want an integer 1..=100000)",
            ),
            (
                "limit=%205",
                "invalid limit:  5 (want an integer 1..=100000)",
            ),
            ("limit=", "empty query parameter: limit"),
            ("limit=1&limit=2", "repeated query parameter: limit"),
            (
                "offset=-1",
                "invalid offset: -1 (want a non-negative integer)",
            ),
            (
                "offset=x",
                "invalid offset: x (want a non-negative integer)",
            ),
            (
                "offset=99999999999999999999999",
                "invalid offset: 99999999999999999999999 (want a non-negative integer)",
            ),
            ("offset=", "empty query parameter: offset"),
            ("format=xml", "invalid format: xml (want json or csv)"),
            ("format=XML", "invalid format: XML (want json or csv)"),
            ("format=", "empty query parameter: format"),
            ("format=csv&format=json", "repeated query parameter: format"),
            ("limit=%zz", "malformed query string: bad %-escape"),
        ] {
            assert_eq!(Filter::parse(q).unwrap_err().to_string(), msg, "{q}");
        }
        let long = "9".repeat(1_000);
        let msg = Filter::parse(&format!("limit={long}"))
            .unwrap_err()
            .to_string();
        assert!(msg.len() < 200 && msg.contains('…'), "{msg}");
    }

    #[test]
    fn format_from_query_or_accept() {
        let format = |q: &str, accept: Option<&str>| {
            let mut req = Request::get(&format!("/telemetry/ListMetrics?{q}"));
            if let Some(a) = accept {
                req = req.with_header("Accept", a);
            }
            Filter::from_request(&req).unwrap().format
        };
        assert_eq!(format("", None), Format::Json);
        assert_eq!(format("format=csv", None), Format::Csv);
        assert_eq!(format("format=CSV", None), Format::Csv);
        assert_eq!(format("format=Json", Some("text/csv")), Format::Json);
        assert_eq!(format("", Some("text/csv")), Format::Csv);
        assert_eq!(format("", Some("TEXT/CSV; charset=utf-8")), Format::Csv);
        assert_eq!(format("", Some("text/csv, */*;q=0.1")), Format::Csv);
        assert_eq!(format("", Some("text/csv, */*")), Format::Csv);
        assert_eq!(format("format=json", Some("text/csv")), Format::Json);
        assert_eq!(format("format=csv", Some("application/json")), Format::Csv);
        assert_eq!(format("", Some("*/*")), Format::Json);
        assert_eq!(format("", Some("application/json, text/csv")), Format::Json);
        assert_eq!(
            format("", Some("application/json;q=0.5, text/csv")),
            Format::Csv
        );
        assert_eq!(format("", Some("text/csv;q=0")), Format::Json);
        assert_eq!(format("", Some("text/csv;q=bogus")), Format::Json);
        assert_eq!(format("", Some("text/html,*/*;q=0.8")), Format::Json);
    }

    fn json_body(q: &str) -> (String, Value) {
        let s = snap();
        let text = Filter::parse(q)
            .unwrap()
            .select(&s, &[])
            .unwrap()
            .json(&s, 2_000, "");
        let v = serde_json::from_str(&text).unwrap();
        (text, v)
    }

    #[test]
    fn json_has_total_and_next_offset_in_key_order() {
        let (text, v) = json_body("fields=b,a&limit=1&offset=1");
        assert_eq!(
            text,
            "{\"snapshot_id\":\"s-1\",\"age_ms\":2000,\"total\":5,\"next_offset\":2,\
             \"fields\":[\"b\",\"a\"],\"items\":[{\"switch_id\":\"sw-001\",\"b\":1,\"a\":2.50}]}"
        );
        assert_eq!(v["items"][0]["a"], 2.5);
        let (text, v) = json_body("switch_id=nope");
        assert_eq!(
            v,
            json!({"snapshot_id":"s-1","age_ms":2000,"total":0,"next_offset":null,"fields":["a","b","c"],"items":[]})
        );
        assert!(text.contains("\"next_offset\":null,"));
        let (_, v) = json_body("switch_prefix=core");
        assert_eq!(
            v["items"][0],
            json!({"switch_id":"core,1 \"x\"","a":3,"b":2,"c":1e3})
        );
        assert!(json_body("switch_prefix=core").0.contains("\"c\":1e3}"));
    }

    /// Every record of a CSV body, read back with our own reader.
    fn read_csv(text: &str) -> Vec<Vec<String>> {
        let mut r = csv::Reader::new(text.as_bytes()).unwrap();
        let mut rec = Vec::new();
        let mut out = Vec::new();
        while r.read_record(&mut rec).unwrap() {
            out.push(rec.iter().map(|f| f.to_string()).collect());
        }
        out
    }

    #[test]
    fn csv_round_trips_with_json_spelling() {
        let s = snap();
        let text = Filter::parse("").unwrap().select(&s, &[]).unwrap().csv(&s);
        assert!(text.starts_with("switch_id,a,b,c\nsw-000,1.5,0,10\nsw-001,2.50,1,11\n"));
        assert!(text.contains("\n\"core,1 \"\"x\"\"\",3,2,1e3\n"), "{text}");
        // Read back, it is the upstream table itself.
        assert_eq!(read_csv(&text), read_csv(TABLE));
        let text = Filter::parse("fields=c,a&switch_prefix=sw-&limit=2")
            .unwrap()
            .select(&s, &[])
            .unwrap()
            .csv(&s);
        assert_eq!(text, "switch_id,c,a\nsw-000,10,1.5\nsw-001,11,2.50\n");
        // Nothing matched: the header alone.
        let text = Filter::parse("switch_id=nope")
            .unwrap()
            .select(&s, &[])
            .unwrap()
            .csv(&s);
        assert_eq!(text, "switch_id,a,b,c\n");
        let text = Filter::parse("fields=switch_id")
            .unwrap()
            .select(&s, &[])
            .unwrap()
            .csv(&s);
        assert_eq!(read_csv(&text).len(), 6);
        assert_eq!(read_csv(&text)[3], ["core,1 \"x\""]);
    }

    #[test]
    fn the_whole_table_as_csv_is_shared_and_the_same_as_a_page() {
        let s = snap();
        let page = Filter::parse("").unwrap().select(&s, &[]).unwrap().csv(&s);
        let first = Filter::parse("format=csv")
            .unwrap()
            .render(&s, 0, &[], "")
            .unwrap();
        assert_eq!(first.body_bytes(), page.as_bytes());
        assert_eq!(first.header_value("x-total-count"), Some("5"));
        assert_eq!(first.header_value("x-next-offset"), None);
        let again = Filter::parse("format=csv")
            .unwrap()
            .render(&s, 0, &[], "")
            .unwrap();
        assert!(http::shares_pieces(&first.body, &again.body, 2));
    }

    #[test]
    fn render_sets_content_type_and_paging_headers() {
        let s = snap();
        let resp = Filter::parse("format=csv&limit=2")
            .unwrap()
            .render(&s, 3_000, &[], "")
            .unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header_value("content-type"), Some(http::CSV));
        assert_eq!(resp.header_value("x-total-count"), Some("5"));
        assert_eq!(resp.header_value("x-next-offset"), Some("2"));
        let resp = Filter::parse("format=csv&offset=3")
            .unwrap()
            .render(&s, 3_000, &[], "")
            .unwrap();
        assert_eq!(resp.header_value("x-next-offset"), None);
        let resp = Filter::parse("limit=2")
            .unwrap()
            .render(&s, 3_000, &[], "")
            .unwrap();
        assert_eq!(resp.header_value("content-type"), Some(http::JSON));
        let e = Filter::parse("fields=zz")
            .unwrap()
            .render(&s, 3_000, &[], "")
            .unwrap_err();
        assert_eq!(
            e,
            Error::UnknownField {
                param: "fields",
                name: "zz".into()
            }
        );
    }
}
