//! Shards by a field: with `sharding_field`, a row goes to shard
//! `fnv1a64(cell) mod N`, where the cell is the row's field in that column,
//! its CSV text unquoted. Rows with the same cell always share a shard,
//! wherever they are in the table, so the rows of one key (one switch's
//! ports, keyed by its node GUID) stay together, and a key keeps its shard
//! as the table grows or reorders.
//!
//! A [`Partition`] groups a table's rows by shard for one column and one N.
//! Making it reads every row's cell once, as the project's CSV codec reads
//! it (a row without quotes is split at its commas, which reads the same);
//! the N shards are then cut from it as cheaply as index shards are, each
//! O(its rows). At a million switches that reading takes about 50 ms
//! (`switch_id`; a tick's rendering takes 400), once per snapshot.

use std::borrow::Cow;

use crate::csv;

/// The FNV-1a 64-bit offset basis.
const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// The FNV 64-bit prime.
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64 bits, of `bytes`: stable across processes and builds (std's
/// hasher is not), and what NVIDIA UFM Telemetry shards by.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// The shard of a row whose cell is `cell`, among `n` (`n` of 0 counts as
/// 1).
pub fn shard_of(cell: &str, n: u16) -> u16 {
    let n = u64::from(n.max(1));
    // Below n, which is a u16.
    (fnv1a64(cell.as_bytes()) % n) as u16
}

/// FNV-1a 64 of the text of `record`'s field in column `col`, unquoted,
/// as the CSV codec reads it (an empty text if the record does not read or
/// is shorter). `fields` is scratch space, reused from row to row.
///
/// A record without a quote (every row of the simulator's table) is split
/// at its commas directly, which reads as the codec would, several times
/// faster: the CSV is text, so its bytes are UTF-8, and only a quote or a
/// byte order mark at a record's start changes what the codec reads.
fn cell_hash<'a>(record: &'a [u8], col: usize, fields: &mut Vec<Cow<'a, str>>) -> u64 {
    if !record.contains(&b'"') && !record.starts_with("\u{feff}".as_bytes()) {
        let line = match record.strip_suffix(b"\n") {
            Some(l) => l.strip_suffix(b"\r").unwrap_or(l),
            None => record,
        };
        return fnv1a64(line.split(|&b| b == b',').nth(col).unwrap_or_default());
    }
    let read = csv::Reader::new(record)
        .and_then(|mut r| r.read_record(fields))
        .unwrap_or(false);
    let cell = fields.get(col).filter(|_| read).map_or("", |c| c.as_ref());
    fnv1a64(cell.as_bytes())
}

/// The rows of one table grouped by shard, for one column and one `n`.
#[derive(Debug)]
pub struct Partition {
    /// Row indices, shard 0's first, each shard's in table order. A table
    /// has fewer than 2^32 rows (`DATA_SWITCHES` is at most a million).
    rows: Box<[u32]>,
    /// Shard `k`'s rows are `rows[starts[k]..starts[k + 1]]`.
    starts: Box<[u32]>,
}

impl Partition {
    /// Groups the rows of `csv`, whose lines end at `ends` (header first,
    /// see [`super::simulator::Table::ends`]), by the shard among `n` of
    /// their cell in column `col`. A row that does not read as CSV, or has
    /// no such column, counts as an empty cell.
    pub fn new(csv: &[u8], ends: &[usize], col: usize, n: u16) -> Partition {
        let n = n.max(1);
        let mut fields: Vec<Cow<'_, str>> = Vec::new();
        let shards: Vec<u16> = ends
            .windows(2)
            .map(|w| {
                let record = csv.get(w[0]..w[1]).unwrap_or_default();
                let hash = cell_hash(record, col, &mut fields);
                // Below n, which is a u16.
                (hash % u64::from(n)) as u16
            })
            .collect();
        let n = usize::from(n);
        // A counting sort: stable, so each shard's rows keep table order.
        let mut starts = vec![0u32; n + 1];
        for &s in &shards {
            starts[usize::from(s) + 1] += 1;
        }
        for k in 0..n {
            starts[k + 1] += starts[k];
        }
        let mut next = starts.clone();
        let mut rows = vec![0u32; shards.len()];
        for (i, &s) in shards.iter().enumerate() {
            let at = &mut next[usize::from(s)];
            rows[*at as usize] = i as u32;
            *at += 1;
        }
        Partition {
            rows: rows.into_boxed_slice(),
            starts: starts.into_boxed_slice(),
        }
    }

    /// Shard `k`'s row indices, in table order (none for `k >= n`).
    pub fn rows(&self, k: u16) -> &[u32] {
        let k = usize::from(k);
        match (self.starts.get(k), self.starts.get(k + 1)) {
            (Some(&a), Some(&b)) => self.rows.get(a as usize..b as usize).unwrap_or_default(),
            _ => &[],
        }
    }

    /// Its heap bytes, about.
    pub fn bytes(&self) -> usize {
        (self.rows.len() + self.starts.len()) * std::mem::size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_is_the_published_function() {
        // Computed independently (python3: h ^= b; h *= prime mod 2^64) and
        // matching the FNV reference vectors for "", "a" and "foobar".
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(fnv1a64(b"sw-000"), 0xeda7_2eb9_3596_6c52);
        assert_eq!(fnv1a64(b"sw-000"), 17_124_707_481_102_478_418);
        assert_eq!(shard_of("sw-000", 4), 2);
        assert_eq!(shard_of("sw-000", 16), 2);
        assert_eq!(shard_of("sw-001", 16), 5);
        assert_eq!(shard_of("anything", 1), 0);
        assert_eq!(shard_of("anything", 0), 0);
    }

    fn table(text: &str) -> (Vec<u8>, Vec<usize>) {
        let mut ends = Vec::new();
        let mut at = 0;
        for line in text.split_inclusive('\n') {
            at += line.len();
            ends.push(at);
        }
        (text.as_bytes().to_vec(), ends)
    }

    #[test]
    fn groups_rows_by_the_hash_of_their_cell_in_table_order() {
        let text = "guid,port,v\n\
                    g1,1,10\n\
                    \"g2\",1,11\n\
                    g1,2,12\n\
                    \"g,3\",1,13\n\
                    g2,2,14\n\
                    \"g\"\"4\",1,15\n";
        let (csv, ends) = table(text);
        for n in [1u16, 2, 3, 7, 1024] {
            let p = Partition::new(&csv, &ends, 0, n);
            let mut all = Vec::new();
            for k in 0..n {
                let rows = p.rows(k);
                assert!(rows.windows(2).all(|w| w[0] < w[1]), "in table order");
                all.extend_from_slice(rows);
            }
            all.sort();
            assert_eq!(all, [0, 1, 2, 3, 4, 5], "every row once, n={n}");
            assert!(p.rows(n).is_empty());
            // The cell is the unquoted text: "g2" and g2 are one key, and
            // a quoted comma or quote is part of the cell.
            let home = |cell: &str| shard_of(cell, n);
            for (row, cell) in [(0, "g1"), (1, "g2"), (2, "g1"), (3, "g,3"), (4, "g2")] {
                assert!(p.rows(home(cell)).contains(&row), "row {row}, n={n}");
            }
            assert!(p.rows(home("g\"4")).contains(&5));
        }
        // Another column: the port.
        let p = Partition::new(&csv, &ends, 1, 2);
        assert!(p.rows(shard_of("1", 2)).starts_with(&[0, 1]));
        assert!(p.rows(shard_of("2", 2)).contains(&2));
        assert_eq!(p.bytes(), (6 + 3) * 4);
    }

    #[test]
    fn a_quoteless_record_hashes_as_the_codec_reads_it() {
        let codec = |record: &[u8], col: usize| {
            let mut fields = Vec::new();
            let read = csv::Reader::new(record)
                .and_then(|mut r| r.read_record(&mut fields))
                .unwrap_or(false);
            fnv1a64(
                fields
                    .get(col)
                    .filter(|_| read)
                    .map_or("", |c| c.as_ref())
                    .as_bytes(),
            )
        };
        let mut rng = fastrand::Rng::with_seed(7);
        let alphabet = ["a", "sw-0", ",", "\r", "\r\n", " ", "é", "\u{feff}", "0x1f"];
        for _ in 0..5000 {
            let mut record: String = (0..rng.usize(0..8))
                .map(|_| alphabet[rng.usize(0..alphabet.len())])
                .collect();
            // One line: line ends only at the end.
            record = record.replace('\n', "");
            if rng.bool() {
                record.push_str(if rng.bool() { "\n" } else { "\r\n" });
            }
            for col in 0..4 {
                let mut fields = Vec::new();
                assert_eq!(
                    cell_hash(record.as_bytes(), col, &mut fields),
                    codec(record.as_bytes(), col),
                    "{record:?} column {col}"
                );
            }
        }
    }

    #[test]
    fn a_row_without_the_cell_counts_as_empty() {
        let (csv, ends) = table("a,b\nx,1\n\"open\n");
        // Column 5 exists in no row; the last row does not read.
        let p = Partition::new(&csv, &ends, 5, 3);
        assert_eq!(p.rows(shard_of("", 3)), [0, 1]);
        let p = Partition::new(&csv, &ends, 0, 3);
        assert!(p.rows(shard_of("", 3)).contains(&1));
        assert!(p.rows(shard_of("x", 3)).contains(&0));
    }
}
