//! The fabric the API serves: the snapshots of every upstream (shard),
//! composed into one table.
//!
//! With one upstream the fabric is its snapshot, byte for byte. With
//! several (`UPSTREAM_URLS`), it is rebuilt whenever a shard swaps, and the
//! rebuild reuses what the unchanged shards already have: their parsed
//! values, indexes and pre-rendered (and deflated) `ListMetrics` items are
//! shared, not copied, so only the changed shard was parsed and rendered.
//! The rules:
//!
//! - Items: shards in `UPSTREAM_URLS` order, each shard's rows in its order.
//! - Fields: the union, in order of first appearance. A shard lacking a
//!   field has `null` there (its items are then rendered again for the
//!   union's layout, once per snapshot of that shard and union).
//! - A switch id two shards both send belongs to the earlier one; the later
//!   one's row is hidden and counted as a conflict of the later shard.
//! - `snapshot_id`: with one upstream, its own; else a hash of every
//!   shard's snapshot id, so it changes when any of them does.
//! - Age: a row's is its shard's; the fabric's is its oldest shard's.
//!
//! Rows are numbered across the shards, hidden rows skipped: row `r` is in
//! the part whose `first` is the greatest not above `r`.

use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::{Arc, OnceLock};

use super::snapshot::{CSV_TAG_SUFFIX, Cells, Kind, MATRIX_ID, Snapshot};
use super::value::Num;
use crate::csv;
use crate::gzip::{self, Deflated, Part as GzPart, TAG_SUFFIX as GZ};
use crate::http::Chunk;
use crate::json;

/// One shard's snapshot as a part of the fabric.
pub struct Part {
    /// Its upstream's index in `UPSTREAM_URLS`.
    pub shard: usize,
    pub snap: Arc<Snapshot>,
    /// The fabric row of its first visible row.
    first: usize,
    /// Its visible rows, when some are hidden by an earlier shard's.
    visible: Option<Arc<Vec<u32>>>,
    /// Its hidden rows, each with a shard that has its id earlier.
    hidden: Arc<Vec<(u32, usize)>>,
    /// Its hidden rows, counted once each.
    conflicts: usize,
    /// Fabric column → its column, when its fields are not the fabric's.
    layout: Option<Arc<Vec<Option<u32>>>>,
    /// Its items and CSV rows in the fabric's layout, when they differ
    /// from its own (a layout or hidden rows).
    relaid: Option<Arc<Relaid>>,
}

/// A part's items and CSV rows rendered for the fabric.
struct Relaid {
    items: Vec<Arc<str>>,
    items_gz: gzip::Lazy,
    csv_rows: OnceLock<Vec<Arc<str>>>,
    csv_rows_gz: gzip::Lazy,
}

impl Part {
    /// Its visible rows.
    pub fn rows(&self) -> usize {
        self.visible.as_ref().map_or(self.snap.rows(), |v| v.len())
    }

    /// Ids it sent that an earlier shard has.
    pub fn conflicts(&self) -> usize {
        self.conflicts
    }

    /// Its row `r` (counted among its visible rows) in its snapshot.
    fn snap_row(&self, r: usize) -> usize {
        match &self.visible {
            Some(v) => v.get(r).map_or(usize::MAX, |&x| x as usize),
            None => r,
        }
    }

    fn items(&self) -> &[Arc<str>] {
        match &self.relaid {
            Some(r) => &r.items,
            None => self.snap.items(),
        }
    }

    fn items_gz(&self) -> Option<&Deflated> {
        match &self.relaid {
            Some(r) => r.items_gz.get(|| r.items.iter().map(|p| p.as_bytes())),
            None => self.snap.items_gz(),
        }
    }

    fn csv_rows(&self) -> &[Arc<str>] {
        match &self.relaid {
            Some(r) => r.csv_rows.get_or_init(|| {
                let rows = (0..self.rows()).map(|i| self.snap_row(i));
                self.snap
                    .render_csv_rows(self.layout.as_deref().map(|l| &l[..]), rows)
            }),
            None => self.snap.csv_rows(),
        }
    }

    fn csv_rows_gz(&self) -> Option<&Deflated> {
        match &self.relaid {
            Some(r) => r
                .csv_rows_gz
                .get(|| self.csv_rows().iter().map(|p| p.as_bytes())),
            None => self.snap.csv_rows_gz(),
        }
    }
}

/// The values of one fabric row.
#[derive(Clone, Copy)]
pub struct FabricCells<'a> {
    cells: Cells<'a>,
    layout: Option<&'a [Option<u32>]>,
    width: usize,
}

impl<'a> FabricCells<'a> {
    /// The value of fabric column `col` spelled as JSON; `null` where the
    /// row's shard lacks the field.
    pub fn get(&self, col: usize) -> &'a str {
        match self.layout {
            None => self.cells.get(col),
            Some(l) => match l.get(col).copied().flatten() {
                Some(c) => self.cells.get(c as usize),
                None => "null",
            },
        }
    }

    /// True if the row's shard has fabric column `col` (its value may
    /// still be `null`: an empty cell).
    pub fn has(&self, col: usize) -> bool {
        match self.layout {
            None => col < self.width,
            Some(l) => l.get(col).copied().flatten().is_some(),
        }
    }

    /// Every value, in fabric column order.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        let cells = *self;
        (0..self.width).map(move |c| cells.get(c))
    }
}

/// The composed table the API serves.
pub struct Fabric {
    id: String,
    /// `"<id>"`, `"<id>-csv"`, and both with `-gz`: the `ETag`s.
    pub etag: String,
    pub csv_etag: String,
    pub etag_gz: String,
    pub csv_etag_gz: String,
    /// The union of the shards' fields, in order of first appearance.
    pub fields: Vec<String>,
    /// What each field holds (as the first shard with it says).
    pub kinds: Vec<Kind>,
    /// What the id is called (the first shard's: `switch_id` or `id`).
    pub id_name: &'static str,
    column_of: HashMap<String, u32>,
    parts: Vec<Part>,
    rows: usize,
    /// `{"snapshot_id":"…","age_ms":`
    list_head: Arc<[u8]>,
    /// `,"fields":[…],"items":[`
    list_fields: Arc<[u8]>,
    /// `switch_id,<fields…>\n`
    csv_header: Arc<[u8]>,
    head_gz: gzip::Lazy,
    fields_gz: gzip::Lazy,
    csv_header_gz: gzip::Lazy,
    /// With one upstream, everything after the age, and the whole CSV,
    /// each deflated as one segment (the same bytes as before shards).
    whole_gz: gzip::Lazy,
    whole_csv_gz: gzip::Lazy,
}

impl From<Snapshot> for Fabric {
    fn from(snap: Snapshot) -> Fabric {
        Fabric::compose(&[Some(Arc::new(snap))], None)
    }
}

impl Fabric {
    /// The fabric of `shards` (in `UPSTREAM_URLS` order; `None` for one
    /// that has no snapshot yet), reusing what `prev` (the fabric it
    /// replaces) built for shards whose snapshot has not changed.
    pub fn compose(shards: &[Option<Arc<Snapshot>>], prev: Option<&Fabric>) -> Fabric {
        let present: Vec<(usize, &Arc<Snapshot>)> = shards
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
            .collect();
        let mut fields: Vec<String> = Vec::new();
        let mut kinds: Vec<Kind> = Vec::new();
        let mut column_of: HashMap<String, u32> = HashMap::new();
        for (_, snap) in &present {
            for (f, kind) in snap.fields.iter().zip(&snap.kinds) {
                if !column_of.contains_key(f) {
                    column_of.insert(f.clone(), fields.len() as u32);
                    fields.push(f.clone());
                    kinds.push(*kind);
                }
            }
        }
        let id_name = present.first().map_or(MATRIX_ID, |(_, s)| s.id_name);
        let prev_part =
            |shard: usize| prev.and_then(|p| p.parts.iter().find(|part| part.shard == shard));
        // What changed since `prev`: conflicts are looked for only between
        // a changed shard and the others; those between unchanged shards
        // are what they were.
        let changed: Vec<bool> = present
            .iter()
            .map(|(i, snap)| !prev_part(*i).is_some_and(|p| Arc::ptr_eq(&p.snap, snap)))
            .collect();
        let mut hidden: Vec<Vec<(u32, usize)>> = present
            .iter()
            .enumerate()
            .map(|(k, (i, _))| match (changed[k], prev_part(*i)) {
                (false, Some(p)) => p
                    .hidden
                    .iter()
                    .filter(|(_, by)| {
                        // Kept only while the shard that had it first is
                        // unchanged and still here.
                        present
                            .iter()
                            .position(|(j, _)| j == by)
                            .is_some_and(|pos| !changed[pos])
                    })
                    .copied()
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
        for (c, (_, csnap)) in present.iter().enumerate().filter(|(c, _)| changed[*c]) {
            for (k, (_, ksnap)) in present.iter().enumerate().filter(|(k, _)| *k != c) {
                // Pairs of two changed shards are done once, from the earlier.
                if changed[k] && k < c {
                    continue;
                }
                let (early, late) = if k < c { (k, c) } else { (c, k) };
                let (esnap, lsnap) = if k < c {
                    (ksnap, csnap)
                } else {
                    (csnap, ksnap)
                };
                let by = present[early].0;
                for (_, late_row) in shared_ids(esnap, lsnap) {
                    hidden[late].push((late_row, by));
                }
            }
        }
        let mut parts = Vec::with_capacity(present.len());
        let mut first = 0;
        for (k, (shard, snap)) in present.iter().enumerate() {
            // Every (row, shard) pair is kept, so that a row two earlier
            // shards both have stays hidden when one of them changes.
            let mut h = std::mem::take(&mut hidden[k]);
            h.sort_unstable();
            h.dedup();
            let mut rows_hidden: Vec<usize> = h.iter().map(|(r, _)| *r as usize).collect();
            rows_hidden.dedup();
            let layout = (snap.fields != fields).then(|| {
                Arc::new(
                    fields
                        .iter()
                        .map(|f| snap.fields.iter().position(|g| g == f).map(|c| c as u32))
                        .collect::<Vec<_>>(),
                )
            });
            let conflicts = rows_hidden.len();
            let visible = (!h.is_empty()).then(|| {
                let mut hid = rows_hidden.iter().copied().peekable();
                Arc::new(
                    (0..snap.rows())
                        .filter(|r| {
                            if hid.peek() == Some(r) {
                                hid.next();
                                false
                            } else {
                                true
                            }
                        })
                        .map(|r| r as u32)
                        .collect::<Vec<u32>>(),
                )
            });
            // Rendered again only when this shard's items differ from its
            // own and `prev` has no such rendering of this very snapshot.
            let relaid = (layout.is_some() || visible.is_some()).then(|| {
                let reuse = prev_part(*shard).filter(|p| {
                    Arc::ptr_eq(&p.snap, snap)
                        && p.layout.as_deref() == layout.as_deref()
                        && p.visible.as_deref() == visible.as_deref()
                });
                match reuse.and_then(|p| p.relaid.clone()) {
                    Some(r) => r,
                    None => {
                        let rows: Box<dyn Iterator<Item = usize>> = match &visible {
                            Some(v) => Box::new(v.iter().map(|&r| r as usize)),
                            None => Box::new(0..snap.rows()),
                        };
                        let own: Vec<Option<u32>> =
                            (0..snap.fields.len() as u32).map(Some).collect();
                        let layout = layout.as_deref().map_or(&own[..], |l| &l[..]);
                        Arc::new(Relaid {
                            items: snap.render_items(&fields, layout, rows),
                            items_gz: gzip::Lazy::default(),
                            csv_rows: OnceLock::new(),
                            csv_rows_gz: gzip::Lazy::default(),
                        })
                    }
                }
            });
            let part = Part {
                shard: *shard,
                snap: (*snap).clone(),
                first,
                visible,
                hidden: Arc::new(h),
                conflicts,
                layout,
                relaid,
            };
            first += part.rows();
            parts.push(part);
        }
        let id = match (shards.len(), present.first()) {
            (1, Some((_, snap))) => snap.id().to_string(),
            _ => {
                let mut h = Fnv::default();
                for s in shards {
                    h.write(s.as_ref().map_or("", |s| s.id()).as_bytes());
                    h.write(&[0]);
                }
                format!("f-{:016x}", h.finish())
            }
        };
        let mut head = String::from("{\"snapshot_id\":");
        json::push_str(&mut head, &id);
        head.push_str(",\"age_ms\":");
        let mut list_fields = String::from(",\"fields\":[");
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                list_fields.push(',');
            }
            json::push_str(&mut list_fields, f);
        }
        list_fields.push_str("],\"items\":[");
        let mut csv_header = String::from(id_name);
        for f in &fields {
            csv_header.push(',');
            csv::push_field(&mut csv_header, f);
        }
        csv_header.push('\n');
        Fabric {
            etag: format!("\"{id}\""),
            csv_etag: format!("\"{id}{CSV_TAG_SUFFIX}\""),
            etag_gz: format!("\"{id}{GZ}\""),
            csv_etag_gz: format!("\"{id}{CSV_TAG_SUFFIX}{GZ}\""),
            id,
            fields,
            kinds,
            id_name,
            column_of,
            parts,
            rows: first,
            list_head: Arc::from(head.into_bytes()),
            list_fields: Arc::from(list_fields.into_bytes()),
            csv_header: Arc::from(csv_header.into_bytes()),
            head_gz: gzip::Lazy::default(),
            fields_gz: gzip::Lazy::default(),
            csv_header_gz: gzip::Lazy::default(),
            whole_gz: gzip::Lazy::default(),
            whole_csv_gz: gzip::Lazy::default(),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The shards it holds, in order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Visible rows, every shard together.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The index in [`Fabric::parts`] of the part holding `row`.
    pub fn part_of(&self, row: usize) -> usize {
        self.parts
            .partition_point(|p| p.first <= row)
            .saturating_sub(1)
    }

    /// The part and snapshot row of fabric row `row`.
    fn locate(&self, row: usize) -> (&Part, usize) {
        let part = &self.parts[self.part_of(row).min(self.parts.len().saturating_sub(1))];
        (part, part.snap_row(row.saturating_sub(part.first)))
    }

    pub fn switch_id(&self, row: usize) -> &str {
        if self.parts.is_empty() {
            return "";
        }
        let (part, r) = self.locate(row);
        part.snap.switch_id(r)
    }

    /// Every visible switch id, in row order.
    pub fn switch_ids(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.rows).map(|r| self.switch_id(r))
    }

    /// The row of `switch_id`: in the first shard that has it.
    pub fn row(&self, switch_id: &str) -> Option<usize> {
        for part in &self.parts {
            let Some(r) = part.snap.row(switch_id) else {
                continue;
            };
            return match &part.visible {
                None => Some(part.first + r),
                Some(v) => v.binary_search(&(r as u32)).ok().map(|i| part.first + i),
            };
        }
        None
    }

    pub fn column(&self, name: &str) -> Option<usize> {
        self.column_of.get(name).map(|&c| c as usize)
    }

    /// The values of `row`.
    pub fn cells(&self, row: usize) -> FabricCells<'_> {
        if self.parts.is_empty() {
            return FabricCells {
                cells: Cells::default(),
                layout: None,
                width: self.fields.len(),
            };
        }
        let (part, r) = self.locate(row);
        FabricCells {
            cells: part.snap.cells(r),
            layout: part.layout.as_deref().map(|l| &l[..]),
            width: self.fields.len(),
        }
    }

    /// The value at (`row`, `column`) spelled as JSON (`null` where its
    /// shard lacks the field).
    pub fn number(&self, row: usize, column: usize) -> &str {
        self.cells(row).get(column)
    }

    /// The value at (`row`, `column`) as a float (NaN where it has none).
    pub fn value(&self, row: usize, column: usize) -> Num {
        Num::of(self.number(row, column))
    }

    /// How old the oldest shard's data is at `now_ms`.
    pub fn age_ms(&self, now_ms: u64) -> u64 {
        self.parts
            .iter()
            .map(|p| p.snap.age_ms(now_ms))
            .max()
            .unwrap_or(0)
    }

    /// The producer's time of the data, when there is one shard.
    pub fn producer_ts_ms(&self) -> Option<u64> {
        match &self.parts[..] {
            [one] => one.snap.producer_ts_ms(),
            _ => None,
        }
    }

    /// The whole `ListMetrics` body at `now_ms`, leaving out the parts
    /// `skip` marks (stale shards) and ending with `tail` (the
    /// `"missing_shards"` member, or nothing): every shared piece as it is.
    pub fn list_body(&self, now_ms: u64, skip: &[bool], tail: &str) -> Vec<Chunk> {
        let mut body = vec![
            Chunk::Shared(self.list_head.clone()),
            Chunk::Owned(self.counts(now_ms, skip).into_bytes()),
            Chunk::Shared(self.list_fields.clone()),
        ];
        let mut first = true;
        for part in self.served(skip) {
            if !first {
                body.push(Chunk::Static(b","));
            }
            first = false;
            body.extend(
                part.items()
                    .iter()
                    .map(|p| Chunk::Shared(Arc::<[u8]>::from(p.clone()))),
            );
        }
        body.push(Chunk::Owned(format!("]{tail}}}").into_bytes()));
        body
    }

    /// [`Fabric::list_body`] as one gzip member: each piece deflated once
    /// (the shards' items with their snapshots), the age stored.
    pub fn list_body_gzip(&self, now_ms: u64, skip: &[bool], tail: &str) -> Option<Vec<Chunk>> {
        let head = self.head_gz.get(|| [&self.list_head[..]])?;
        let counts = self.counts(now_ms, skip);
        // One upstream, nothing left out: the rest is one segment, as it was
        // before shards. With several, each shard's items are a segment of
        // their own, deflated once per snapshot of that shard.
        if self.parts.len() == 1 && tail.is_empty() && !skip.iter().any(|&s| s) {
            let rest = self.whole_gz.get(|| {
                std::iter::once(&self.list_fields[..])
                    .chain(self.parts.iter().enumerate().flat_map(|(i, p)| {
                        let comma: &[u8] = if i > 0 { b"," } else { b"" };
                        std::iter::once(comma).chain(p.items().iter().map(|x| x.as_bytes()))
                    }))
                    .chain(std::iter::once(&b"]}"[..]))
            })?;
            return Some(gzip::member(&[
                GzPart::Deflated(head),
                GzPart::Stored(counts.as_bytes()),
                GzPart::Deflated(rest),
            ]));
        }
        let fields = self.fields_gz.get(|| [&self.list_fields[..]])?;
        let close = format!("]{tail}}}");
        let mut parts = vec![
            GzPart::Deflated(head),
            GzPart::Stored(counts.as_bytes()),
            GzPart::Deflated(fields),
        ];
        let mut first = true;
        for part in self.served(skip) {
            if !first {
                parts.push(GzPart::Stored(b","));
            }
            first = false;
            parts.push(GzPart::Deflated(part.items_gz()?));
        }
        parts.push(GzPart::Stored(close.as_bytes()));
        Some(gzip::member(&parts))
    }

    /// The whole table as CSV (`switch_id,<fields…>`, then a line per row),
    /// leaving out the parts `skip` marks.
    pub fn csv_table(&self, skip: &[bool]) -> Vec<Chunk> {
        let mut body = vec![Chunk::Shared(self.csv_header.clone())];
        for part in self.served(skip) {
            body.extend(
                part.csv_rows()
                    .iter()
                    .map(|p| Chunk::Shared(Arc::<[u8]>::from(p.clone()))),
            );
        }
        body
    }

    /// [`Fabric::csv_table`] as one gzip member.
    pub fn csv_table_gzip(&self, skip: &[bool]) -> Option<Vec<Chunk>> {
        // One upstream, nothing left out: one segment, as before shards.
        if let ([part], false) = (&self.parts[..], skip.iter().any(|&s| s)) {
            let whole = self.whole_csv_gz.get(|| {
                std::iter::once(&self.csv_header[..])
                    .chain(part.csv_rows().iter().map(|p| p.as_bytes()))
            })?;
            return Some(gzip::member(&[GzPart::Deflated(whole)]));
        }
        let header = self.csv_header_gz.get(|| [&self.csv_header[..]])?;
        let mut parts = vec![GzPart::Deflated(header)];
        for part in self.served(skip) {
            parts.push(GzPart::Deflated(part.csv_rows_gz()?));
        }
        Some(gzip::member(&parts))
    }

    /// Rows the parts not in `skip` hold.
    pub fn served_rows(&self, skip: &[bool]) -> usize {
        self.served(skip).map(Part::rows).sum()
    }

    fn served<'a>(&'a self, skip: &'a [bool]) -> impl Iterator<Item = &'a Part> + 'a {
        self.parts
            .iter()
            .enumerate()
            .filter(move |(i, _)| !skip.get(*i).copied().unwrap_or(false))
            .map(|(_, p)| p)
    }

    /// How old the oldest shard not in `skip` is at `now_ms`.
    pub fn served_age_ms(&self, now_ms: u64, skip: &[bool]) -> u64 {
        self.served(skip)
            .map(|p| p.snap.age_ms(now_ms))
            .max()
            .unwrap_or(0)
    }

    /// What follows `"age_ms":`: the age of the served shards, then what a
    /// page of every served row says (all of them, no next page).
    fn counts(&self, now_ms: u64, skip: &[bool]) -> String {
        let age = self.served_age_ms(now_ms, skip);
        format!(
            "{age},\"total\":{},\"next_offset\":null",
            self.served_rows(skip)
        )
    }
}

/// The rows of `a` and `b` holding the same switch id, as (a's, b's): the
/// two sorted hash lists merged, equal hashes checked id by id.
fn shared_ids(a: &Snapshot, b: &Snapshot) -> Vec<(u32, u32)> {
    let (ha, hb) = (a.id_hashes(), b.id_hashes());
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < ha.len() && j < hb.len() {
        match ha[i].0.cmp(&hb[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                let h = ha[i].0;
                let end_a = i + ha[i..].iter().take_while(|x| x.0 == h).count();
                let end_b = j + hb[j..].iter().take_while(|x| x.0 == h).count();
                for &(_, ra) in &ha[i..end_a] {
                    for &(_, rb) in &hb[j..end_b] {
                        if a.switch_id(ra as usize) == b.switch_id(rb as usize) {
                            out.push((ra, rb));
                        }
                    }
                }
                (i, j) = (end_a, end_b);
            }
        }
    }
    out
}

/// FNV-1a, 64 bits: a stable hash (std's differs between processes).
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::store::snapshot::{Limits, Origin};

    fn snap(id: &str, csv: &str, age_base: u64) -> Arc<Snapshot> {
        let origin = Origin {
            id: id.into(),
            producer_ts_ms: Some(age_base),
            fetched_ms: age_base,
        };
        Arc::new(Snapshot::parse(csv.as_bytes(), origin, Limits { max_rows: 100 }).unwrap())
    }

    fn text(chunks: &[Chunk]) -> String {
        String::from_utf8(chunks.iter().flat_map(|c| c.bytes().to_vec()).collect()).unwrap()
    }

    fn json(f: &Fabric, skip: &[bool], tail: &str) -> serde_json::Value {
        serde_json::from_str(&text(&f.list_body(10_000, skip, tail))).unwrap()
    }

    fn ids(f: &Fabric) -> Vec<&str> {
        f.switch_ids().collect()
    }

    #[test]
    fn one_upstream_is_its_snapshot_byte_for_byte() {
        let s = snap(
            "abc-1",
            "switch_id,a,b\nsw-000,1.50,0\nsw-001,2,1e3\n",
            9_000,
        );
        let f = Fabric::compose(&[Some(s.clone())], None);
        assert_eq!(f.id(), "abc-1");
        assert_eq!(
            (f.etag.as_str(), f.csv_etag.as_str()),
            ("\"abc-1\"", "\"abc-1-csv\"")
        );
        assert_eq!(
            text(&f.list_body(10_000, &[], "")),
            "{\"snapshot_id\":\"abc-1\",\"age_ms\":1000,\"total\":2,\"next_offset\":null,\
             \"fields\":[\"a\",\"b\"],\"items\":[{\"switch_id\":\"sw-000\",\"a\":1.50,\"b\":0},\
             {\"switch_id\":\"sw-001\",\"a\":2,\"b\":1e3}]}"
        );
        assert_eq!(
            text(&f.csv_table(&[])),
            "switch_id,a,b\nsw-000,1.50,0\nsw-001,2,1e3\n"
        );
        // The snapshot's own rendered items, not a copy.
        assert!(Arc::ptr_eq(&f.parts()[0].items()[0], &s.items()[0]));
    }

    #[test]
    fn shards_compose_in_order_with_the_union_of_fields() {
        let a = snap("a-1", "switch_id,x,y\na0,1,2\na1,3,4\n", 9_000);
        let b = snap("b-1", "switch_id,y,z\nb0,5,6\n", 8_000);
        let c = snap("c-1", "switch_id,x,y\nc0,7,8\n", 9_500);
        let f = Fabric::compose(&[Some(a.clone()), Some(b.clone()), Some(c.clone())], None);
        assert_eq!(ids(&f), ["a0", "a1", "b0", "c0"]);
        assert_eq!(f.fields, ["x", "y", "z"]);
        let v = json(&f, &[], "");
        assert_eq!(v["total"], 4);
        assert_eq!(v["age_ms"], 2_000, "the oldest shard's age");
        assert_eq!(
            v["items"][2],
            serde_json::json!({"switch_id":"b0","x":null,"y":5,"z":6})
        );
        assert_eq!(
            v["items"][0],
            serde_json::json!({"switch_id":"a0","x":1,"y":2,"z":null})
        );
        // Keys in the fabric's order for every shard.
        let body = text(&f.list_body(10_000, &[], ""));
        assert!(
            body.contains("{\"switch_id\":\"b0\",\"x\":null,\"y\":5,\"z\":6}"),
            "{body}"
        );
        assert_eq!(f.number(f.row("b0").unwrap(), 0), "null");
        assert!(!f.value(f.row("b0").unwrap(), 0).is_some());
        assert_eq!(f.number(f.row("c0").unwrap(), 1), "8");
        assert_eq!(
            text(&f.csv_table(&[])),
            "switch_id,x,y,z\na0,1,2,\na1,3,4,\nb0,,5,6\nc0,7,8,\n"
        );
        // The id: a function of the shards' ids, stable, and new when one changes.
        assert!(f.id().starts_with("f-"));
        let again = Fabric::compose(&[Some(a.clone()), Some(b.clone()), Some(c.clone())], None);
        assert_eq!(again.id(), f.id());
        let c2 = snap("c-2", "switch_id,x,y\nc0,7,9\n", 9_600);
        let g = Fabric::compose(&[Some(a), Some(b), Some(c2)], Some(&f));
        assert_ne!(g.id(), f.id());
        // Leaving a stale shard out: its rows, and its age.
        let v = json(&f, &[false, true, false], ",\"missing_shards\":[]");
        assert_eq!(v["total"], 3);
        assert_eq!(v["age_ms"], 1_000);
        assert_eq!(v["missing_shards"], serde_json::json!([]));
        assert_eq!(f.served_rows(&[true, false, true]), 1);
    }

    #[test]
    fn a_duplicate_id_belongs_to_the_earlier_shard() {
        let a = snap("a", "switch_id,v\nx,1\ny,2\n", 0);
        let b = snap("b", "switch_id,v\ny,20\nz,30\nx,10\n", 0);
        let c = snap("c", "switch_id,v\nx,100\nw,400\n", 0);
        let f = Fabric::compose(&[Some(a.clone()), Some(b.clone()), Some(c.clone())], None);
        assert_eq!(ids(&f), ["x", "y", "z", "w"]);
        assert_eq!(f.number(f.row("x").unwrap(), 0), "1");
        assert_eq!(f.number(f.row("z").unwrap(), 0), "30");
        let conflicts: Vec<usize> = f.parts().iter().map(Part::conflicts).collect();
        assert_eq!(conflicts, [0, 2, 1]);
        assert_eq!(json(&f, &[], "")["total"], 4);
        assert_eq!(
            text(&f.csv_table(&[])),
            "switch_id,v\nx,1\ny,2\nz,30\nw,400\n"
        );
        // `a` changes and drops x: b's x shows, c's x is still hidden (b has it).
        let a2 = snap("a2", "switch_id,v\ny,2\n", 0);
        let g = Fabric::compose(
            &[Some(a2.clone()), Some(b.clone()), Some(c.clone())],
            Some(&f),
        );
        assert_eq!(ids(&g), ["y", "z", "x", "w"]);
        assert_eq!(g.number(g.row("x").unwrap(), 0), "10");
        let conflicts: Vec<usize> = g.parts().iter().map(Part::conflicts).collect();
        assert_eq!(conflicts, [0, 1, 1]);
        // The same, composed from nothing: the incremental result is right.
        let h = Fabric::compose(&[Some(a2), Some(b), Some(c)], None);
        assert_eq!(ids(&h), ids(&g));
        assert_eq!(
            text(&h.list_body(0, &[], "")),
            text(&g.list_body(0, &[], ""))
        );
    }

    #[test]
    fn an_unchanged_shard_is_reused_not_rendered_again() {
        let a = snap("a", "switch_id,v,w\na0,1,2\n", 0);
        let b = snap("b", "switch_id,v\nb0,3\n", 0);
        let f = Fabric::compose(&[Some(a.clone()), Some(b.clone())], None);
        let b2 = snap("b2", "switch_id,v\nb0,4\n", 0);
        let g = Fabric::compose(&[Some(a.clone()), Some(b2)], Some(&f));
        // `a` has the fabric's fields: its own pieces, in both.
        assert!(Arc::ptr_eq(&g.parts()[0].items()[0], &a.items()[0]));
        // `b` lacks `w`: rendered again for the new snapshot only, and the
        // rendering of an unchanged one is carried over.
        let a3 = snap("a3", "switch_id,v,w\na0,5,6\n", 0);
        let h = Fabric::compose(&[Some(a3), Some(g.parts()[1].snap.clone())], Some(&g));
        assert!(Arc::ptr_eq(
            &h.parts()[1].items()[0],
            &g.parts()[1].items()[0]
        ));
        assert_eq!(
            json(&h, &[], "")["items"][1],
            serde_json::json!({"switch_id":"b0","v":4,"w":null})
        );
    }

    #[test]
    fn shards_without_data_yet_are_left_out() {
        let b = snap("b", "switch_id,v\nb0,3\n", 0);
        let f = Fabric::compose(&[None, Some(b.clone()), None], None);
        assert_eq!(ids(&f), ["b0"]);
        assert_eq!(f.parts()[0].shard, 1);
        assert!(f.id().starts_with("f-"));
        let empty = Fabric::compose(&[None, None], None);
        assert_eq!(
            (empty.rows(), empty.switch_id(0), empty.row("b0")),
            (0, "", None)
        );
    }

    #[test]
    fn gzip_of_a_composed_table_inflates_to_it() {
        use std::io::Read;
        let a = snap("a", "switch_id,v,w\na0,1,2\na1,3,4\n", 0);
        let b = snap("b", "switch_id,v\nb0,3\n", 0);
        let f = Fabric::compose(&[Some(a), Some(b)], None);
        for skip in [&[][..], &[true, false], &[false, true]] {
            let gz = text_bytes(&f.list_body_gzip(7, skip, ",\"missing_shards\":[]").unwrap());
            let mut out = String::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_string(&mut out)
                .unwrap();
            assert_eq!(out, text(&f.list_body(7, skip, ",\"missing_shards\":[]")));
            let gz = text_bytes(&f.csv_table_gzip(skip).unwrap());
            let mut out = String::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_string(&mut out)
                .unwrap();
            assert_eq!(out, text(&f.csv_table(skip)));
        }
    }

    fn text_bytes(chunks: &[Chunk]) -> Vec<u8> {
        chunks.iter().flat_map(|c| c.bytes().to_vec()).collect()
    }
}
