//! metrics_server's `/metrics`: the fabric, a Prometheus family per CSV
//! column, and the server's own health.
//!
//! Each CSV column is its own family (summing over columns means nothing,
//! so they never share one), with a sample per switch labelled `switch_id`.
//! The name is `fabric_` and the column's words ([`prometheus::words`]:
//! lower-cased ASCII letters and digits, anything else separates), and then:
//!
//! - a unit suffix is brought to the base unit the conventions ask for:
//!   `_gbps` → `_bytes_per_second` (× 1.25e8), `_us` → `_seconds`,
//!   `_pct` → `_ratio` (0–1), `_c` → `_celsius`, `_per_s` → `_per_second`;
//! - a column of [`COUNTERS`] (`packet_errors`) is a counter, `_total`
//!   appended: `fabric_packet_errors_total`;
//! - any other column is a gauge as sent: `foo-Bar.x` → `fabric_foo_bar_x`.
//!
//! Any text is a column name upstream may send, so the words are escaped
//! until `promtool check metrics` has nothing to say and no name can be one
//! of ours ([`family_of`]):
//!
//! 1. A word promtool rejects ([`prometheus::rejected_word`]: `ms`, `bits`,
//!    `kilobytes`, `gauge`, …) is joined to the word before it:
//!    `rtt_ms` → `fabric_rttms`.
//! 2. Our own families (both servers') all start `fabric_<w>_` or are
//!    `fabric_<w>` for a word `w` of [`OWN_WORDS`] (`poll`, `snapshot`,
//!    `http`, …). A column whose first word is one of them, or
//!    [`ESCAPE`] itself, gets [`ESCAPE`] put before it
//!    (`poll_duration_us` → `fabric_column_poll_duration_seconds`); a first
//!    word that rule 1 rejects is joined to it (`ms` → `fabric_columnms`);
//!    no words at all (`é`) is `fabric_column`. So no column family, nor any sample name
//!    of one, is in our namespace: a collision is impossible, not checked.
//! 3. A gauge may not end like a counter or a histogram's samples (`_total`,
//!    `_created`, `_bucket`, `_count`, `_sum`): `_value` is appended
//!    (`rx_total` → `fabric_rx_total_value`).
//! 4. Columns that come out with the same name (`foo-bar`, `Foo_Bar`) are
//!    numbered in column order: the first keeps the name, the next takes
//!    `_2` before the unit (`fabric_foo_bar_2`, `fabric_x_2_seconds`), or
//!    the next number still free.
//!
//! That fabric block depends on the snapshot only, and it can be big: some
//! 460 bytes a switch, 46 MB at 100k switches, twice the snapshot itself.
//! So it is rendered when a scrape asks for it, in one pass over the rows,
//! as shared pieces that the answer sends without copying. A block up to
//! [`KEEP_MAX_BYTES`] (some 18k switches) is kept while its snapshot is
//! current, for the next scrape; a bigger one is rendered for each scrape
//! and freed once sent, so a large fleet does not keep a second copy of its
//! data between scrapes (Prometheus scrapes every 15 s or more, so a scrape
//! usually finds a new snapshot anyway).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};

use crate::consumer::store::State;
use crate::consumer::store::fabric::Fabric;
use crate::consumer::store::figures::{ENDPOINTS, KINDS, PollFigures};
use crate::consumer::store::pieces::{PIECE_BYTES, Pieces};
use crate::consumer::store::snapshot::{Kind, MATRIX_ID};
use crate::gzip::{self, Deflated, Part};
use crate::http::Chunk;
use crate::prometheus::{self, Exposition};

/// Fabric blocks up to this size are kept for their snapshot's life.
pub const KEEP_MAX_BYTES: usize = 8 << 20;

/// A rendered fabric block: its text, in pieces.
type Block = Vec<Arc<[u8]>>;

/// The fabric block of the snapshot last scraped, if it is small enough
/// to keep.
pub struct FabricCache {
    keep_max: usize,
    /// Which value columns of keyed rows are counters.
    counters: Counters,
    /// The snapshot it renders (compared by address; the `Weak` keeps the
    /// address from being reused) and the block.
    kept: Mutex<Option<(Weak<Fabric>, Block)>>,
    /// The block of the snapshot last scraped with gzip, deflated: kept
    /// whatever its size (a tenth of the text), so each snapshot's block is
    /// deflated once however many gzip scrapes there are.
    deflated: Mutex<Option<(Weak<Fabric>, Arc<Deflated>)>>,
}

impl Default for FabricCache {
    fn default() -> FabricCache {
        FabricCache::new(KEEP_MAX_BYTES)
    }
}

impl FabricCache {
    /// A cache keeping blocks up to `keep_max` bytes.
    pub fn new(keep_max: usize) -> FabricCache {
        FabricCache {
            keep_max,
            counters: Counters::default(),
            kept: Mutex::new(None),
            deflated: Mutex::new(None),
        }
    }

    /// The same, typing keyed rows' columns as `counters` says.
    pub fn with_counters(mut self, counters: Counters) -> FabricCache {
        self.counters = counters;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Weak<Fabric>, Block)>> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The fabric block of `snap`: the kept one if it renders `snap`, else
    /// rendered now (with no lock held) and kept if it is small enough.
    pub fn block(&self, snap: &Arc<Fabric>) -> Block {
        if let Some((of, block)) = &*self.lock() {
            if std::ptr::eq(of.as_ptr(), Arc::as_ptr(snap)) {
                return block.clone();
            }
        }
        let block: Block = render_fabric_with(snap, &self.counters)
            .into_iter()
            .map(Arc::<[u8]>::from)
            .collect();
        let size: usize = block.iter().map(|p| p.len()).sum();
        // An old block goes either way: kept blocks are of the current data.
        *self.lock() = (size <= self.keep_max).then(|| (Arc::downgrade(snap), block.clone()));
        block
    }

    /// The fabric block of `snap` deflated: the kept one if it is of
    /// `snap`, else deflated now (no lock held) and kept. `None` only if
    /// the compressor fails.
    pub fn deflated(&self, snap: &Arc<Fabric>) -> Option<Arc<Deflated>> {
        let lock = || self.deflated.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((of, d)) = &*lock() {
            if std::ptr::eq(of.as_ptr(), Arc::as_ptr(snap)) {
                return Some(d.clone());
            }
        }
        let block = self.block(snap);
        let d = Arc::new(Deflated::new(block.iter().map(|p| &p[..]))?);
        *lock() = Some((Arc::downgrade(snap), d.clone()));
        Some(d)
    }
}

/// The first words after `fabric_` of every family of our own, both
/// servers': a column family never starts with one (rule 2 of the module
/// doc). A new family of ours must start with one of these; a test holds
/// both servers to it.
pub const OWN_WORDS: [&str; 11] = [
    "build", "breaker", "http", "poll", "polls", "producer", "snapshot", "tls", "upstream",
    "uptime", ESCAPE,
];

/// The word put before a column's words to keep it out of our namespace.
pub const ESCAPE: &str = "column";

/// Columns (their words joined by `_`) that are cumulative counts: counters.
pub const COUNTERS: [&str; 1] = ["packet_errors"];

/// Which value columns of keyed rows are counters, by name (the
/// `COUNTER_COLUMNS` globs; `*` matches any run, case is ignored).
#[derive(Debug, Clone, PartialEq)]
pub struct Counters(pub Vec<String>);

/// UFM's counters: `PortXmitDataExtended`, `SymbolErrorCounter`,
/// `PortRcvErrors`, and the Prometheus convention's `_total`.
pub const DEFAULT_COUNTERS: [&str; 4] = ["*Extended", "*Counter", "*Errors", "*_total"];

impl Default for Counters {
    fn default() -> Counters {
        Counters(DEFAULT_COUNTERS.iter().map(|g| g.to_string()).collect())
    }
}

impl Counters {
    /// True if a glob matches all of `column`.
    pub fn matches(&self, column: &str) -> bool {
        self.0.iter().any(|g| glob(g.as_bytes(), column.as_bytes()))
    }
}

/// True if `pattern` (`*` any run, else one character, ASCII case
/// ignored) matches all of `text`. Backtracks to the last `*` only, so it
/// runs in O(pattern × text) at worst.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p].eq_ignore_ascii_case(&text[t]) {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// The family of keyed rows' labels (UFM's ports): one sample of 1 per
/// row, labelled with its key columns and its labels (the `_info`
/// pattern), to join onto the value families with `group_left`.
pub const INFO_FAMILY: &str = "fabric_port_info";

/// Unit suffixes (as words), what replaces them, the unit for the help
/// text, and how to bring a value to it.
const UNITS: [(&[&str], &str, &str, Scale); 5] = [
    (
        &["gbps"],
        "_bytes_per_second",
        "in bytes per second (sent in Gbit/s)",
        Scale::Factor(1.25e8),
    ),
    (
        &["us"],
        "_seconds",
        "in seconds (sent in microseconds)",
        Scale::Pow10(-6),
    ),
    (
        &["pct"],
        "_ratio",
        "as a 0-1 ratio (sent in percent)",
        Scale::Pow10(-2),
    ),
    (&["c"], "_celsius", "in degrees Celsius", Scale::Same),
    (&["per", "s"], "_per_second", "per second", Scale::Same),
];

/// How one CSV column is exported.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// `fabric_` and the column's words, escaped: the name up to where a
    /// number goes when another column took the name first.
    pub stem: String,
    /// The rest of the name: a unit (`_seconds`), `_total` for a counter,
    /// `_value` for a gauge that would end like a counter, or nothing.
    pub tail: &'static str,
    /// `gauge` or `counter`.
    pub kind: &'static str,
    /// What the values are, for the help text.
    pub what: &'static str,
    pub scale: Scale,
}

impl Family {
    /// The family's name, numbered `n` when `n` > 1 (rule 4).
    pub fn name(&self, n: usize) -> String {
        if n > 1 {
            format!("{}_{n}{}", self.stem, self.tail)
        } else {
            format!("{}{}", self.stem, self.tail)
        }
    }
}

/// How `column` of the matrix is exported, by the rules of the module doc
/// (all but the numbering, which depends on the other columns).
pub fn family_of(column: &str) -> Family {
    let words = prometheus::words(column);
    let counter = COUNTERS.contains(&words.join("_").as_str());
    family_of_words(words, counter)
}

/// How value `column` of keyed rows (UFM's) is exported: its words split
/// in camel case too (`PortXmitDataExtended` → `port_xmit_data_extended`),
/// a counter when `counters` says so (its last word `total` dropped before
/// `_total` goes on), else as [`family_of`].
pub fn keyed_family_of(column: &str, counters: &Counters) -> Family {
    let mut words = prometheus::camel_words(column);
    let counter = counters.matches(column);
    if counter && words.len() > 1 && words.last().is_some_and(|w| w == "total") {
        words.pop();
    }
    family_of_words(words, counter)
}

fn family_of_words(words: Vec<String>, counter: bool) -> Family {
    if counter {
        return Family {
            stem: stem(&words),
            tail: "_total",
            kind: "counter",
            what: "a count that only grows",
            scale: Scale::Same,
        };
    }
    for (suffix, tail, what, scale) in UNITS {
        let Some(split) = words.len().checked_sub(suffix.len()).filter(|&n| n > 0) else {
            continue;
        };
        if words[split..].iter().zip(suffix).all(|(w, s)| w == s) {
            return Family {
                stem: stem(&words[..split]),
                tail,
                kind: "gauge",
                what,
                scale,
            };
        }
    }
    let stem = stem(&words);
    let last = stem.rsplit('_').next().unwrap_or_default();
    Family {
        tail: if prometheus::counter_or_sample_suffix(last) {
            "_value"
        } else {
            ""
        },
        stem,
        kind: "gauge",
        what: "as sent",
        scale: Scale::Same,
    }
}

/// `fabric_` and `words` escaped by rules 1 and 2 of the module doc.
fn stem(words: &[String]) -> String {
    let mut out: Vec<String> = Vec::with_capacity(words.len() + 1);
    for word in words {
        out.push(word.clone());
        // Joining two words may make another rejected one (`kilo_bits`).
        while let [.., before, last] = out.as_mut_slice() {
            if !prometheus::rejected_word(last) {
                break;
            }
            before.push_str(last);
            out.pop();
        }
    }
    match out.first_mut() {
        None => out.push(ESCAPE.to_string()),
        Some(first) if prometheus::rejected_word(first) => first.insert_str(0, ESCAPE),
        Some(first) if OWN_WORDS.contains(&first.as_str()) => out.insert(0, ESCAPE.to_string()),
        Some(_) => {}
    }
    format!("fabric_{}", out.join("_"))
}

/// How a column's value becomes its base unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    /// Already in it.
    Same,
    /// Times ten to this power: written as the CSV's own decimal text with
    /// an exponent (`14.1` µs → `14.1e-6`), which scrapers read exactly,
    /// instead of a computed `1.4099999999999999e-5`.
    Pow10(i32),
    /// Times this factor, computed (Gbit/s → bytes/s: × 1.25e8).
    Factor(f64),
}

/// Appends `text`, a value spelled as JSON, in its base unit; `exponent`
/// is `e<p>` for [`Scale::Pow10`]`(p)`.
fn push_scaled(out: &mut String, text: &str, scale: Scale, exponent: &str) {
    let value = || text.parse::<f64>().unwrap_or(f64::NAN);
    match scale {
        Scale::Same => out.push_str(text),
        Scale::Pow10(_) if !text.contains(['e', 'E']) => {
            out.push_str(text);
            out.push_str(exponent);
        }
        Scale::Pow10(p) => prometheus::push_value(out, value() * 10f64.powi(p)),
        Scale::Factor(f) => prometheus::push_value(out, value() * f),
    }
}

/// A column's name as a Prometheus label name: lower case, anything but
/// letters, digits and `_` made `_`, `_` put before a leading digit, and
/// no leading `__` (reserved).
fn label_name(column: &str) -> String {
    let mut out: String = column
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    while out.starts_with("__") {
        out.remove(0);
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// The text of a cell spelled as a JSON string (a key or a label).
fn text_of(json_text: &str) -> std::borrow::Cow<'_, str> {
    match json_text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
    {
        Some(plain) if !plain.contains('\\') => plain.into(),
        _ => serde_json::from_str::<String>(json_text)
            .unwrap_or_default()
            .into(),
    }
}

/// One column's samples as they are rendered.
struct Column {
    col: usize,
    /// The family's name.
    name: String,
    scale: Scale,
    /// `e<p>` for [`Scale::Pow10`]`(p)`.
    exponent: String,
    out: Pieces,
}

/// The per-switch families of the matrix `snap` (see [`render_fabric_with`]).
pub fn render_fabric(snap: &Fabric) -> Vec<Arc<str>> {
    render_fabric_with(snap, &Counters::default())
}

/// The per-row families of `snap`, in pieces: one per value column, in
/// column order, named by [`family_of`] (the matrix: a sample per switch,
/// labelled `switch_id`) or [`keyed_family_of`] (keyed rows: labelled with
/// each key column, `node_guid` and `port_num` for UFM), numbered where
/// names meet (rule 4 of the module doc); then, for keyed rows with
/// labels, [`INFO_FAMILY`]. A `timestamp` label is left out of it: it
/// changes every snapshot and would make every row a new series. One pass
/// over the rows fills one output per column; the outputs are then joined.
pub fn render_fabric_with(snap: &Fabric, counters: &Counters) -> Vec<Arc<str>> {
    let keyed = snap.id_name != MATRIX_ID;
    let mut taken: HashSet<String> = HashSet::with_capacity(snap.fields.len() + 1);
    taken.insert(INFO_FAMILY.to_string());
    let mut columns = Vec::with_capacity(snap.fields.len());
    // The key columns' and the info's labels, named once, each name once.
    let mut label_names: HashSet<String> = HashSet::new();
    let mut name_once = |column: &str| {
        let base = label_name(column);
        let mut name = base.clone();
        let mut n = 1;
        while !label_names.insert(name.clone()) {
            n += 1;
            name = format!("{base}_{n}");
        }
        name
    };
    let kind_of = |c: usize| snap.kinds.get(c).copied().unwrap_or(Kind::Value);
    let keys: Vec<(usize, String)> = (0..snap.fields.len())
        .filter(|&c| kind_of(c) == Kind::Key)
        .map(|c| (c, name_once(&snap.fields[c])))
        .collect();
    let infos: Vec<(usize, String)> = (0..snap.fields.len())
        .filter(|&c| kind_of(c) == Kind::Label && !snap.fields[c].eq_ignore_ascii_case("timestamp"))
        .map(|c| (c, name_once(&snap.fields[c])))
        .collect();
    let values: Vec<usize> = (0..snap.fields.len())
        .filter(|&c| kind_of(c) == Kind::Value)
        .collect();
    // Each output buffers one piece: keep their sum near 2 MB.
    let piece = (PIECE_BYTES * 8 / (values.len() + 1)).clamp(16 << 10, PIECE_BYTES);
    let per = if keyed {
        let names: Vec<&str> = keys.iter().map(|(_, n)| n.as_str()).collect();
        format!("per row ({})", names.join(", "))
    } else {
        "per switch".to_string()
    };
    for &col in &values {
        let column = &snap.fields[col];
        let family = if keyed {
            keyed_family_of(column, counters)
        } else {
            family_of(column)
        };
        let mut n = 1;
        let mut name = family.name(n);
        while !taken.insert(name.clone()) {
            n += 1;
            name = family.name(n);
        }
        let mut head = Exposition::new();
        head.family(
            &name,
            family.kind,
            &format!("Upstream column \"{column}\" {per}, {}.", family.what),
        );
        let mut out = Pieces::new(piece);
        out.text().push_str(&head.finish());
        let exponent = match family.scale {
            Scale::Pow10(p) => format!("e{p}"),
            _ => String::new(),
        };
        columns.push(Column {
            col,
            name,
            scale: family.scale,
            exponent,
            out,
        });
    }
    let mut info = (keyed && !infos.is_empty()).then(|| {
        let mut head = Exposition::new();
        head.family(
            INFO_FAMILY,
            "gauge",
            &format!("Labels of each row {per}, always 1: join with group_left."),
        );
        let mut out = Pieces::new(piece);
        out.text().push_str(&head.finish());
        out
    });
    let mut label = String::new();
    for row in 0..snap.rows() {
        label.clear();
        let cells = snap.cells(row);
        if keyed {
            label.push('{');
            for (i, (c, name)) in keys.iter().enumerate() {
                if i > 0 {
                    label.push(',');
                }
                label.push_str(name);
                label.push_str("=\"");
                prometheus::push_label_value(&mut label, &text_of(cells.get(*c)));
                label.push('"');
            }
            label.push_str("} ");
        } else {
            label.push_str("{switch_id=\"");
            prometheus::push_label_value(&mut label, snap.switch_id(row));
            label.push_str("\"} ");
        }
        if let Some(out) = &mut info {
            let text = out.text();
            text.push_str(INFO_FAMILY);
            // The key's labels, then the row's own.
            text.push_str(label.trim_end().strip_suffix('}').unwrap_or(""));
            for (c, name) in &infos {
                text.push(',');
                text.push_str(name);
                text.push_str("=\"");
                prometheus::push_label_value(text, &text_of(cells.get(*c)));
                text.push('"');
            }
            text.push_str("} 1\n");
            out.cut_if_full();
        }
        for c in &mut columns {
            let value = cells.get(c.col);
            // An empty cell, or a row whose shard lacks the column, has no
            // sample.
            if value == "null" {
                continue;
            }
            let out = c.out.text();
            out.push_str(&c.name);
            out.push_str(&label);
            push_scaled(out, value, c.scale, &c.exponent);
            out.push('\n');
            c.out.cut_if_full();
        }
    }
    let mut pieces: Vec<Arc<str>> = columns.into_iter().flat_map(|c| c.out.finish()).collect();
    pieces.extend(info.into_iter().flat_map(|i| i.finish()));
    pieces
}

/// The whole `/metrics` body at `now_ms`, in chunks: our build, the
/// fabric block (shared), then the server's own health.
pub fn render(state: &State, cache: &FabricCache, now_ms: u64) -> Vec<Chunk> {
    let snap = state.store.load();
    let mut body = vec![Chunk::from(build_info())];
    if let Some(snap) = &snap {
        body.extend(cache.block(snap).into_iter().map(Chunk::Shared));
    }
    body.push(Chunk::from(own_health(state, snap.as_deref(), now_ms)));
    body
}

/// [`render`] as one gzip member: the fabric block deflated once per
/// snapshot ([`FabricCache::deflated`]), our few kilobytes around it
/// stored as they are. `None` if the compressor fails.
pub fn render_gzip(state: &State, cache: &FabricCache, now_ms: u64) -> Option<Vec<Chunk>> {
    let snap = state.store.load();
    let fabric = match &snap {
        Some(snap) => Some(cache.deflated(snap)?),
        None => None,
    };
    let head = build_info();
    let tail = own_health(state, snap.as_deref(), now_ms);
    let mut parts = vec![Part::Stored(head.as_bytes())];
    if let Some(d) = &fabric {
        parts.push(Part::Deflated(d));
    }
    parts.push(Part::Stored(tail.as_bytes()));
    Some(gzip::member(&parts))
}

/// `fabric_build_info`, which opens the page.
fn build_info() -> String {
    let mut exp = Exposition::new();
    exp.family(
        "fabric_build_info",
        "gauge",
        "Build of the running server; always 1.",
    )
    .sample(
        "fabric_build_info",
        &[("service", "metrics_server"), ("version", crate::VERSION)],
        1.0,
    );
    exp.finish()
}

/// The server's own health, which closes the page.
fn own_health(state: &State, snap: Option<&Fabric>, now_ms: u64) -> String {
    let mut exp = Exposition::new();
    exp.family(
        "fabric_http_requests_total",
        "counter",
        "Requests answered, by endpoint and status.",
    );
    let traffic = state.stats.traffic();
    for (endpoint, t) in ENDPOINTS.iter().zip(&traffic) {
        for (status, n) in &t.by_status {
            let code = status.to_string();
            exp.sample(
                "fabric_http_requests_total",
                &[("endpoint", endpoint), ("code", &code)],
                *n as f64,
            );
        }
    }
    exp.family(
        "fabric_http_request_duration_seconds",
        "histogram",
        "Time to answer a request, write included, by endpoint.",
    );
    for (endpoint, t) in ENDPOINTS.iter().zip(&traffic) {
        t.latency.write(
            &mut exp,
            "fabric_http_request_duration_seconds",
            &[("endpoint", endpoint)],
        );
    }

    // Per upstream when there are several (an `upstream` label), else as
    // one poller always was.
    let polls = state.stats.polls();
    let labelled: Vec<(Vec<(&str, &str)>, &PollFigures)> = polls
        .iter()
        .zip(&state.shards)
        .map(|(p, shard)| {
            let label = if state.sharded() {
                vec![("upstream", shard.url.as_str())]
            } else {
                Vec::new()
            };
            (label, p)
        })
        .collect();
    fn with<'a>(label: &[(&'a str, &'a str)], more: (&'a str, &'a str)) -> Vec<(&'a str, &'a str)> {
        let mut l = label.to_vec();
        l.push(more);
        l
    }
    exp.family(
        "fabric_polls_total",
        "counter",
        "Polls of the upstream, by result.",
    );
    for (label, poll) in &labelled {
        for (result, n) in [
            ("updated", poll.updated),
            ("not_modified", poll.not_modified),
            ("unchanged", poll.unchanged),
            ("error", poll.failed),
        ] {
            exp.sample(
                "fabric_polls_total",
                &with(label, ("result", result)),
                n as f64,
            );
        }
    }
    exp.family(
        "fabric_poll_errors_total",
        "counter",
        "Failed polls, by kind.",
    );
    for (label, poll) in &labelled {
        for (kind, n) in KINDS.iter().zip(poll.errors_by_kind) {
            exp.sample(
                "fabric_poll_errors_total",
                &with(label, ("kind", kind)),
                n as f64,
            );
        }
    }
    exp.family(
        "fabric_upstream_up",
        "gauge",
        "1 if the last poll succeeded, else 0.",
    );
    for (label, poll) in &labelled {
        let up = poll.consecutive_failures == 0 && poll.last_success_ms.is_some();
        exp.sample("fabric_upstream_up", label, f64::from(u8::from(up)));
    }
    exp.family(
        "fabric_breaker_open",
        "gauge",
        "1 while the circuit breaker is open or half-open.",
    );
    for (label, poll) in &labelled {
        let open = matches!(poll.breaker, "open" | "half_open");
        exp.sample("fabric_breaker_open", label, f64::from(u8::from(open)));
    }
    if labelled.iter().any(|(_, p)| p.last_cycle.is_some()) {
        exp.family(
            "fabric_poll_duration_seconds",
            "gauge",
            "Duration of the last poll cycle.",
        );
        for (label, poll) in &labelled {
            if let Some(cycle) = poll.last_cycle {
                exp.sample("fabric_poll_duration_seconds", label, cycle.as_secs_f64());
            }
        }
    }
    if let Some(snap) = snap {
        exp.family(
            "fabric_snapshot_age_seconds",
            "gauge",
            "Age of the data being served.",
        )
        .sample(
            "fabric_snapshot_age_seconds",
            &[],
            snap.age_ms(now_ms) as f64 / 1000.0,
        );
        exp.family(
            "fabric_snapshot_switches",
            "gauge",
            "Switches in the data being served.",
        )
        .sample("fabric_snapshot_switches", &[], snap.rows() as f64);
    }
    exp.family(
        "fabric_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
    )
    .sample(
        "fabric_uptime_seconds",
        &[],
        state.stats.uptime().as_secs_f64(),
    );
    if let Some(certs) = &state.listener_tls {
        certs.expose(&mut exp);
    }
    exp.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::store::snapshot::{Limits, Origin, Snapshot};
    use std::time::Duration;

    fn state() -> State {
        let state = State::default();
        let csv = "switch_id,bandwidth_gbps,latency_us,cpu_util_pct,temperature_c,egress_drops_per_s,packet_errors,fan rpm\n\
                   sw-000,121.5,11.2,34.1,46.7,3,0,9000\n\"odd\"\"id\",1,2,3,4,5,6,7\n";
        let origin = Origin {
            id: "s1".into(),
            producer_ts_ms: Some(1_000),
            fetched_ms: 1_000,
        };
        let snap = Snapshot::parse(csv.as_bytes(), origin, Limits { max_rows: 10 }).unwrap();
        state.publish(0, Arc::new(snap));
        state
    }

    fn text(body: Vec<Chunk>) -> String {
        let bytes: Vec<u8> = body.iter().flat_map(|c| c.bytes().to_vec()).collect();
        String::from_utf8(bytes).unwrap()
    }

    /// UFM-shaped rows, keyed as the UFM dialect keys them.
    fn ufm() -> Fabric {
        use crate::consumer::store::snapshot::{KEYED_ID, Layout};
        let csv = "timestamp,source_id,tag,Node_GUID,port_guid,Port_Number,PortXmitDataExtended,SymbolErrorCounterExtended,Module_Temperature,rx_total,node_description\n\
                   1709652347161873,0xa,,0x0c42a1030077e800,0x0c42a1030077e800,1,18446744073709551615,3,45.5,7,\"leaf \"\"1\"\"\"\n\
                   1709652347161873,0xa,,0x0c42a1030077e800,0x0c42a1030077e800,2,,,,,leaf 1\n";
        let origin = Origin {
            id: "u1".into(),
            producer_ts_ms: None,
            fetched_ms: 1_000,
        };
        let layout = |_: &[&str]| {
            Ok(Layout {
                id_name: KEYED_ID,
                key: vec![3, 5],
                labels: vec![0, 1, 2, 4, 10],
                time: Some(0),
            })
        };
        Snapshot::parse_as(csv.as_bytes(), origin, Limits { max_rows: 10 }, layout)
            .unwrap()
            .into()
    }

    #[test]
    fn keyed_rows_are_labelled_by_their_key_with_an_info_family() {
        let text: String = render_fabric(&ufm()).concat();
        let key = "node_guid=\"0x0c42a1030077e800\",port_number=\"1\"";
        for want in [
            "# TYPE fabric_port_xmit_data_extended_total counter\n".to_string(),
            format!("fabric_port_xmit_data_extended_total{{{key}}} 18446744073709551615\n"),
            // `counter` is a word promtool refuses: joined to the one before.
            "# TYPE fabric_symbol_errorcounter_extended_total counter\n".to_string(),
            format!("fabric_symbol_errorcounter_extended_total{{{key}}} 3\n"),
            "# TYPE fabric_module_temperature gauge\n".to_string(),
            format!("fabric_module_temperature{{{key}}} 45.5\n"),
            // `_total` is not doubled.
            format!("fabric_rx_total{{{key}}} 7\n"),
            "# TYPE fabric_port_info gauge\n".to_string(),
            format!(
                "fabric_port_info{{{key},source_id=\"0xa\",tag=\"\",port_guid=\"0x0c42a1030077e800\",node_description=\"leaf \\\"1\\\"\"}} 1\n"
            ),
        ] {
            assert!(text.contains(&want), "{want:?} missing in\n{text}");
        }
        // Empty cells have no sample; labels and the timestamp no family.
        assert!(!text.contains("port_number=\"2\"} "), "{text}");
        assert!(text.contains("port_number=\"2\",source_id"), "{text}");
        assert!(!text.contains("timestamp"), "{text}");
        assert!(!text.contains("fabric_node_description"), "{text}");
        // COUNTER_COLUMNS decides what is a counter.
        let only = Counters(vec!["Module_*".into()]);
        let text: String = render_fabric_with(&ufm(), &only).concat();
        assert!(
            text.contains("# TYPE fabric_module_temperature_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE fabric_port_xmit_data_extended gauge\n"),
            "{text}"
        );
    }

    #[test]
    fn counter_globs_match_whole_names_in_any_case() {
        let c = Counters::default();
        for yes in [
            "PortXmitDataExtended",
            "SymbolErrorCounter",
            "PortRcvErrors",
            "rx_total",
            "portrcverrors",
        ] {
            assert!(c.matches(yes), "{yes}");
        }
        for no in ["Module_Temperature", "ExtendedX", "errors_now", ""] {
            assert!(!c.matches(no), "{no}");
        }
        assert!(glob(b"a*b*c", b"aXXbYYc"));
        assert!(!glob(b"a*b*c", b"aXXbYY"));
        assert!(glob(b"*", b""));
        assert!(glob(b"**x", b"x"));
        let long = "a".repeat(10_000);
        assert!(!glob(b"*a*a*a*b", long.as_bytes()));
    }

    #[test]
    fn label_names_are_prometheus_names() {
        assert_eq!(label_name("Node_GUID"), "node_guid");
        assert_eq!(label_name("Port Number"), "port_number");
        assert_eq!(label_name("9lives"), "_9lives");
        assert_eq!(label_name("__name__"), "_name__");
        assert_eq!(label_name("é"), "_");
        assert_eq!(label_name(""), "_");
    }

    #[test]
    fn units_follow_the_conventions() {
        let name = |c: &str| family_of(c).name(1);
        assert_eq!(family_of("latency_us").scale, Scale::Pow10(-6));
        assert_eq!(family_of("bandwidth_gbps").scale, Scale::Factor(1.25e8));
        assert_eq!(name("bandwidth_gbps"), "fabric_bandwidth_bytes_per_second");
        assert_eq!(name("latency_us"), "fabric_latency_seconds");
        assert_eq!(name("cpu_util_pct"), "fabric_cpu_util_ratio");
        assert_eq!(name("temperature_c"), "fabric_temperature_celsius");
        assert_eq!(name("egress_drops_per_s"), "fabric_egress_drops_per_second");
        let errors = family_of("packet_errors");
        assert_eq!(
            (errors.name(1).as_str(), errors.kind),
            ("fabric_packet_errors_total", "counter")
        );
        assert_eq!(family_of("fan rpm").kind, "gauge");
        assert_eq!(name("foo-Bar.x"), "fabric_foo_bar_x");
    }

    #[test]
    fn hostile_names_are_escaped_by_the_documented_rules() {
        let cases = [
            // Rule 1: words promtool rejects join the word before them.
            ("rtt_ms", "fabric_rttms"),
            ("link_bits", "fabric_linkbits"),
            ("x_kilo_bits", "fabric_xkilobits"),
            ("Queue.Gauge", "fabric_queuegauge"),
            ("uptime_hours", "fabric_uptimehours"),
            ("uptime_s_total", "fabric_uptimes_total_value"),
            ("rx_mb_rate_us", "fabric_rxmb_rate_seconds"),
            // Rule 2: our namespace is out of reach.
            ("poll_duration_us", "fabric_column_poll_duration_seconds"),
            ("snapshot_age_us", "fabric_column_snapshot_age_seconds"),
            ("HTTP requests", "fabric_column_http_requests"),
            ("build_info", "fabric_column_build_info"),
            ("producer_switches", "fabric_column_producer_switches"),
            ("upstream-up", "fabric_column_upstream_up"),
            ("column", "fabric_column_column"),
            ("ms", "fabric_columnms"),
            ("m_s", "fabric_columnms"),
            ("é", "fabric_column"),
            ("---", "fabric_column"),
            ("_us", "fabric_columnus"),
            ("pollster", "fabric_pollster"),
            ("httpms", "fabric_httpms"),
            // Rule 3: a gauge does not end like a counter or a histogram.
            ("rx_total", "fabric_rx_total_value"),
            ("queue count", "fabric_queue_count_value"),
            ("x_su_m", "fabric_x_sum_value"),
            ("sum", "fabric_sum_value"),
            ("bucket_fill_pct", "fabric_bucket_fill_ratio"),
            ("errors_total_per_s", "fabric_errors_total_per_second"),
            // Digits and unicode.
            ("5g_links", "fabric_5g_links"),
            ("température_c", "fabric_temp_rature_celsius"),
            ("Packet-Errors", "fabric_packet_errors_total"),
        ];
        for (column, want) in cases {
            assert_eq!(family_of(column).name(1), want, "{column}");
        }
        assert_eq!(family_of("x_us").name(3), "fabric_x_3_seconds");
        assert_eq!(family_of("rx_total").name(2), "fabric_rx_total_2_value");
    }

    #[test]
    fn fabric_values_are_scaled_and_labels_escaped() {
        let s = state();
        let text = text(render(&s, &FabricCache::default(), 3_000));
        let has = |line: &str| assert!(text.contains(line), "{line} missing in:\n{text}");
        has("fabric_bandwidth_bytes_per_second{switch_id=\"sw-000\"} 15187500000\n");
        has("fabric_latency_seconds{switch_id=\"sw-000\"} 11.2e-6\n");
        has("fabric_cpu_util_ratio{switch_id=\"sw-000\"} 34.1e-2\n");
        has("fabric_temperature_celsius{switch_id=\"odd\\\"id\"} 4\n");
        has("# TYPE fabric_packet_errors_total counter\n");
        has("fabric_packet_errors_total{switch_id=\"sw-000\"} 0\n");
        has("# HELP fabric_fan_rpm Upstream column \"fan rpm\" per switch, as sent.\n");
        has("fabric_fan_rpm{switch_id=\"odd\\\"id\"} 7\n");
        has("fabric_snapshot_age_seconds 2\n");
        has("fabric_upstream_up 0\n");
        has("fabric_build_info{service=\"metrics_server\",version=");
    }

    #[test]
    fn upstream_columns_never_take_our_names() {
        let state = State::default();
        let csv = "switch_id,poll_duration_us,snapshot_age_us,x_us\nsw-1,1,2,3\n";
        let origin = Origin::default();
        let snap = Snapshot::parse(csv.as_bytes(), origin, Limits { max_rows: 10 }).unwrap();
        state.publish(0, Arc::new(snap));
        let text = text(render(&state, &FabricCache::default(), 0));
        assert_eq!(
            text.matches("# TYPE fabric_poll_duration_seconds ").count(),
            0,
            "no poll yet"
        );
        assert!(text.contains("fabric_column_poll_duration_seconds{switch_id=\"sw-1\"} 1e-6\n"));
        assert!(text.contains("fabric_column_snapshot_age_seconds{switch_id=\"sw-1\"} 2e-6\n"));
        assert!(text.contains("fabric_x_seconds{switch_id=\"sw-1\"} 3e-6\n"));
        assert_eq!(
            text.matches("# TYPE fabric_snapshot_age_seconds ").count(),
            1
        );
    }

    #[test]
    fn requests_and_polls_are_counted() {
        let s = state();
        s.stats
            .record_request("/telemetry/GetMetric", 200, Duration::from_micros(300));
        s.stats
            .record_request("/telemetry/GetMetric", 404, Duration::from_micros(300));
        s.stats
            .record_request("/nope", 404, Duration::from_micros(300));
        s.stats.update_poll(0, |p| {
            p.updated = 2;
            p.last_success_ms = Some(1);
        });
        let text = text(render(&s, &FabricCache::default(), 3_000));
        assert!(text.contains(
            "fabric_http_requests_total{endpoint=\"/telemetry/GetMetric\",code=\"404\"} 1\n"
        ));
        assert!(text.contains("fabric_http_requests_total{endpoint=\"other\",code=\"404\"} 1\n"));
        assert!(text.contains(
            "fabric_http_request_duration_seconds_count{endpoint=\"/telemetry/GetMetric\"} 2\n"
        ));
        assert!(text.contains("fabric_polls_total{result=\"updated\"} 2\n"));
        assert!(text.contains("fabric_upstream_up 1\n"));
        // Every family is declared exactly once.
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        let unique: std::collections::HashSet<&&str> = types.iter().collect();
        assert_eq!(types.len(), unique.len());
    }

    /// Stores a new one-switch snapshot under the current one's origin
    /// (so only its address tells it apart).
    fn store_another(s: &State) {
        let fabric = s.store.load().unwrap();
        let again = Snapshot::parse(
            b"switch_id,temperature_c\nsw-000,99\n",
            fabric.parts()[0].snap.origin.clone(),
            Limits { max_rows: 10 },
        )
        .unwrap();
        s.store.store(Arc::new(again.into()));
    }

    #[test]
    fn a_small_fabric_block_is_rendered_once_per_snapshot() {
        let s = state();
        let cache = FabricCache::default();
        let snap = s.store.load().unwrap();
        let first = cache.block(&snap);
        let second = cache.block(&snap);
        assert!(first.iter().zip(&second).all(|(a, b)| Arc::ptr_eq(a, b)));
        drop((first, second));
        assert!(Arc::ptr_eq(&cache.block(&snap)[0], &cache.block(&snap)[0]));
        // A new snapshot, even under the same id, gets its own block.
        store_another(&s);
        let t = text(render(&s, &cache, 0));
        assert!(t.contains("fabric_temperature_celsius{switch_id=\"sw-000\"} 99\n"));
        assert!(!t.contains("fabric_latency_seconds{"), "{t}");
    }

    #[test]
    fn the_gzip_page_deflates_the_fabric_once_per_snapshot() {
        use std::io::Read;
        let gunzip = |body: &[Chunk]| {
            let bytes: Vec<u8> = body.iter().flat_map(|c| c.bytes().to_vec()).collect();
            let mut out = String::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_string(&mut out)
                .unwrap();
            out
        };
        // Kept or not, the plain block: the deflated one is kept regardless.
        for keep_max in [KEEP_MAX_BYTES, 0] {
            let s = state();
            let cache = FabricCache::new(keep_max);
            let a = render_gzip(&s, &cache, 0).unwrap();
            let b = render_gzip(&s, &cache, 0).unwrap();
            match (&a[2], &b[2]) {
                (Chunk::Shared(x), Chunk::Shared(y)) => assert!(Arc::ptr_eq(x, y)),
                other => panic!("the fabric is not one shared piece: {other:?}"),
            }
            // The same page as the plain one but for the clock.
            let uptime = |t: &str| {
                t.lines()
                    .filter(|l| !l.starts_with("fabric_uptime_seconds "))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            assert_eq!(uptime(&gunzip(&a)), uptime(&text(render(&s, &cache, 0))));
            // A new snapshot is deflated anew.
            store_another(&s);
            let t = gunzip(&render_gzip(&s, &cache, 0).unwrap());
            assert!(t.contains("fabric_temperature_celsius{switch_id=\"sw-000\"} 99\n"));
            assert!(!t.contains("fabric_latency_seconds{"), "{t}");
        }
        // No snapshot yet: our own families only, still gzip.
        let empty = State::default();
        let t = gunzip(&render_gzip(&empty, &FabricCache::default(), 0).unwrap());
        assert!(t.starts_with("# HELP fabric_build_info") && t.contains("fabric_uptime_seconds "));
    }

    #[test]
    fn a_big_fabric_block_is_freed_once_sent() {
        let s = state();
        let cache = FabricCache::new(0);
        let snap = s.store.load().unwrap();
        let first = cache.block(&snap);
        let weak = Arc::downgrade(&first[0]);
        let second = cache.block(&snap);
        assert!(!Arc::ptr_eq(&first[0], &second[0]), "rendered per scrape");
        assert_eq!(first, second);
        drop(first);
        assert!(
            weak.upgrade().is_none(),
            "nothing keeps it after the scrape"
        );
        assert!(cache.lock().is_none());
    }

    #[test]
    fn a_large_fleet_renders_in_pieces_with_every_sample_whole() {
        let mut csv = String::from("switch_id,latency_us,bandwidth_gbps,packet_errors\n");
        for i in 0..20_000 {
            csv.push_str(&format!("sw-{i:05},{}.5,{},{}\n", i % 50, i % 400, i % 3));
        }
        let snap = Snapshot::parse(
            csv.as_bytes(),
            Origin::default(),
            Limits { max_rows: 20_000 },
        )
        .unwrap();
        let pieces = render_fabric(&snap.into());
        assert!(pieces.len() > 3, "{} pieces", pieces.len());
        assert!(
            pieces.iter().all(|p| p.ends_with('\n')),
            "pieces end between lines"
        );
        let all: String = pieces.iter().map(|p| &**p).collect();
        assert_eq!(all.lines().filter(|l| !l.starts_with('#')).count(), 60_000);
        assert!(all.contains("fabric_latency_seconds{switch_id=\"sw-19999\"} 49.5e-6\n"));
        assert!(
            all.contains("fabric_bandwidth_bytes_per_second{switch_id=\"sw-00399\"} 49875000000\n")
        );
        assert!(all.contains("fabric_packet_errors_total{switch_id=\"sw-00002\"} 2\n"));
        // Families stay whole, in column order.
        let families: Vec<&str> = all
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .collect();
        assert_eq!(
            families,
            [
                "fabric_latency_seconds gauge",
                "fabric_bandwidth_bytes_per_second gauge",
                "fabric_packet_errors_total counter"
            ]
        );
        let mut last = "";
        let mut changes = 0;
        for line in all.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split('{').next().unwrap();
            if name != last {
                changes += 1;
                last = name;
            }
        }
        assert_eq!(changes, 3);
    }

    /// A snapshot of `rows` switches with these columns, every value 1.
    fn snapshot_of(columns: &[String], rows: usize) -> Fabric {
        let mut csv = String::new();
        let header: Vec<&str> = std::iter::once("switch_id")
            .chain(columns.iter().map(String::as_str))
            .collect();
        crate::csv::push_record(&mut csv, &header);
        for row in 0..rows {
            let id = format!("sw-{row}");
            let cells: Vec<&str> = std::iter::once(id.as_str())
                .chain(columns.iter().map(|_| "1"))
                .collect();
            crate::csv::push_record(&mut csv, &cells);
        }
        let limits = Limits { max_rows: rows };
        Snapshot::parse(csv.as_bytes(), Origin::default(), limits)
            .unwrap()
            .into()
    }

    /// Every family our servers declare themselves, and the names of their
    /// samples (`_bucket`, `_sum`, `_count` for a histogram).
    fn own_names() -> (HashSet<String>, HashSet<String>) {
        let s = state();
        s.stats
            .record_request("/stats", 200, Duration::from_micros(300));
        s.stats.update_poll(0, |p| {
            p.last_cycle = Some(Duration::from_millis(2));
            p.last_success_ms = Some(1);
        });
        let snap = s.store.load().unwrap();
        let fabric: String = render_fabric(&snap).iter().map(|p| &**p).collect();
        let mut text = text(render(&s, &FabricCache::default(), 3_000));
        text.push_str(&crate::producer::metrics::ProducerStats::default().render());
        let declared = |t: &str| -> HashSet<String> {
            t.lines()
                .filter_map(|l| l.strip_prefix("# TYPE "))
                .filter_map(|l| l.split(' ').next())
                .map(str::to_string)
                .collect()
        };
        let sampled = |t: &str| -> HashSet<String> {
            t.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split(['{', ' ']).next())
                .map(str::to_string)
                .collect()
        };
        (
            &declared(&text) - &declared(&fabric),
            &sampled(&text) - &sampled(&fabric),
        )
    }

    #[test]
    fn our_own_families_keep_to_our_namespace() {
        let (families, samples) = own_names();
        assert!(families.len() >= 17, "{families:?}");
        assert!(samples.contains("fabric_http_request_duration_seconds_bucket"));
        for name in families.iter().chain(&samples) {
            let first = name
                .strip_prefix("fabric_")
                .and_then(|n| n.split('_').next())
                .unwrap_or_else(|| panic!("{name} is not fabric_*"));
            assert!(
                first != ESCAPE && OWN_WORDS.contains(&first),
                "{name}: add {first:?} to OWN_WORDS, or columns could take it"
            );
        }
    }

    /// Checks the fabric block `text` of `columns` columns and `rows` rows
    /// as promtool would, and against our own names; returns its families.
    fn check_fabric(text: &str, columns: usize, rows: usize) -> Vec<String> {
        let (own, own_samples) = own_names();
        let mut families: Vec<String> = Vec::new();
        let mut current: Option<(String, String, usize)> = None;
        let close = |current: &mut Option<(String, String, usize)>| {
            if let Some((name, _, n)) = current.take() {
                assert_eq!(n, rows, "{name}: {n} samples");
            }
        };
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            if let Some(help) = line.strip_prefix("# HELP ") {
                close(&mut current);
                let name = help.split(' ').next().unwrap().to_string();
                let kind = lines
                    .next()
                    .and_then(|l| l.strip_prefix(&format!("# TYPE {name} ")))
                    .unwrap_or_else(|| panic!("{name}: no TYPE after HELP"));
                assert!(!help.contains(['\n', '\r']));
                current = Some((name.clone(), kind.to_string(), 0));
                families.push(name);
                continue;
            }
            let Some((name, _, n)) = current.as_mut() else {
                panic!("a sample before any family: {line}")
            };
            let sample = line.split('{').next().unwrap();
            assert_eq!(sample, name, "{line} is not of {name}");
            *n += 1;
        }
        close(&mut current);
        assert_eq!(families.len(), columns, "a family per column");
        let unique: HashSet<&String> = families.iter().collect();
        assert_eq!(unique.len(), families.len(), "{families:?}");
        for name in &families {
            let kind = text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("# TYPE {name} ")))
                .unwrap();
            // The exposition's name syntax, and ours: snake case words.
            let words: Vec<&str> = name.split('_').collect();
            assert!(
                words.len() >= 2
                    && words[0] == "fabric"
                    && words.iter().all(|w| !w.is_empty()
                        && w.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())),
                "{name}"
            );
            // Out of our namespace, so no clash with any name of ours.
            assert!(
                !OWN_WORDS[..OWN_WORDS.len() - 1].contains(&words[1]),
                "{name}"
            );
            assert!(!own.contains(name) && !own_samples.contains(name), "{name}");
            // What promtool's lint rejects.
            assert_eq!(kind == "counter", name.ends_with("_total"), "{name} {kind}");
            for suffix in ["_bucket", "_count", "_sum", "_created"] {
                assert!(!name.ends_with(suffix), "{name}");
            }
            for word in &words {
                assert!(!prometheus::rejected_word(word), "{name}: {word}");
            }
            for word in [
                "ms",
                "us",
                "s",
                "bits",
                "kilobytes",
                "gauge",
                "counter",
                "h",
            ] {
                assert!(
                    !name.contains(&format!("_{word}_")) && !name.ends_with(&format!("_{word}")),
                    "{name}: {word}"
                );
            }
        }
        families
    }

    #[test]
    fn columns_that_read_alike_are_numbered_in_column_order() {
        let columns: Vec<String> = ["foo-bar", "Foo_Bar", "foo_bar_2", "foo.bar", "x_us", "X-us"]
            .map(String::from)
            .to_vec();
        let pieces = render_fabric(&snapshot_of(&columns, 2));
        let text: String = pieces.iter().map(|p| &**p).collect();
        let families = check_fabric(&text, columns.len(), 2);
        assert_eq!(
            families,
            [
                "fabric_foo_bar",
                "fabric_foo_bar_2",
                "fabric_foo_bar_2_2",
                "fabric_foo_bar_3",
                "fabric_x_seconds",
                "fabric_x_2_seconds"
            ]
        );
    }

    #[test]
    fn any_column_names_give_valid_unique_families_none_of_ours() {
        // Every name of ours, as a column, bare, with sample suffixes and
        // in the units that map onto it.
        let (own, own_samples) = own_names();
        let mut crafted: Vec<String> = Vec::new();
        for name in own.iter().chain(&own_samples) {
            let bare = &name["fabric_".len()..];
            crafted.push(name.clone());
            crafted.push(bare.to_string());
            for suffix in ["_bucket", "_count", "_sum", "_total", "_created", "_info"] {
                crafted.push(format!("{bare}{suffix}"));
            }
            if let Some(stem) = bare.strip_suffix("_seconds") {
                crafted.push(format!("{stem}_us"));
                crafted.push(format!("{stem}.US"));
            }
        }
        crafted.sort();
        crafted.dedup();
        let families = check_fabric(
            &render_fabric(&snapshot_of(&crafted, 2)).concat(),
            crafted.len(),
            2,
        );
        assert!(families.contains(&"fabric_column_poll_duration_seconds".to_string()));

        // Random names from hostile pieces.
        let pieces = [
            "poll",
            "polls",
            "http",
            "build",
            "info",
            "snapshot",
            "uptime",
            "upstream",
            "up",
            "breaker",
            "producer",
            "column",
            "total",
            "count",
            "sum",
            "bucket",
            "created",
            "ms",
            "us",
            "s",
            "m",
            "b",
            "bits",
            "kilobytes",
            "kilo",
            "milli",
            "seconds",
            "gauge",
            "counter",
            "kelvin",
            "gbps",
            "pct",
            "c",
            "per",
            "value",
            "2",
            "3",
            "é",
            "日本",
            "Foo",
            "BAR",
            "x",
            "packet",
            "errors",
            "Ms",
            "_",
            "",
        ];
        let separators = [
            "_", "-", ".", " ", "__", "é", "\"", ",", "\\", ":", "", "{", "}",
        ];
        let mut rng = fastrand::Rng::with_seed(12);
        for _ in 0..150 {
            let mut seen = HashSet::new();
            let mut columns = Vec::new();
            while columns.len() < 30 {
                let mut name = String::new();
                for i in 0..rng.usize(1..=5) {
                    if i > 0 {
                        name.push_str(separators[rng.usize(..separators.len())]);
                    }
                    name.push_str(pieces[rng.usize(..pieces.len())]);
                }
                if !name.is_empty() && name != "switch_id" && seen.insert(name.clone()) {
                    columns.push(name);
                }
            }
            let text = render_fabric(&snapshot_of(&columns, 3)).concat();
            check_fabric(&text, columns.len(), 3);
        }
    }
}
