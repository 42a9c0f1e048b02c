//! The fabric simulator: N switches whose 8 metrics take a bounded random
//! walk, rendered once per tick into the CSV body `/counters` serves.
//!
//! Each switch keeps its own state, so values move smoothly from tick to tick
//! instead of being fresh noise. Real-valued metrics reflect off their bounds
//! (percentages stay in 0–100) and are written with one decimal; the two
//! counters (`packet_errors`, `egress_drops_per_s`) are non-negative integers
//! driven by the switch's buffer occupancy, as drops are on a real switch.
//! A seed makes the whole sequence reproducible.

use std::fmt::Write;
use std::sync::Arc;

use super::shards::{Cache, Selection, Shard, Source};

/// The CSV header, in the contract's column order.
pub const COLUMNS: [&str; 9] = [
    "switch_id",
    "bandwidth_gbps",
    "latency_us",
    "packet_errors",
    "cpu_util_pct",
    "mem_util_pct",
    "buffer_occupancy_pct",
    "egress_drops_per_s",
    "temperature_c",
];

/// A walk's range, where new switches start, and its largest step per tick.
struct Walk {
    lo: f64,
    hi: f64,
    start: (f64, f64),
    step: f64,
}

// Indices into `Switch::walks`.
const BANDWIDTH: usize = 0;
const LATENCY: usize = 1;
const CPU: usize = 2;
const MEM: usize = 3;
const BUFFER: usize = 4;
const TEMP: usize = 5;
const ERROR_RATE: usize = 6;

const WALKS: [Walk; 7] = [
    Walk {
        lo: 0.0,
        hi: 400.0,
        start: (60.0, 240.0),
        step: 8.0,
    },
    Walk {
        lo: 0.5,
        hi: 200.0,
        start: (4.0, 20.0),
        step: 1.5,
    },
    Walk {
        lo: 0.0,
        hi: 100.0,
        start: (15.0, 60.0),
        step: 3.0,
    },
    Walk {
        lo: 0.0,
        hi: 100.0,
        start: (35.0, 75.0),
        step: 2.0,
    },
    Walk {
        lo: 0.0,
        hi: 100.0,
        start: (5.0, 50.0),
        step: 5.0,
    },
    Walk {
        lo: 20.0,
        hi: 95.0,
        start: (38.0, 55.0),
        step: 0.8,
    },
    // The latent rate behind packet_errors, in errors per tick.
    Walk {
        lo: 0.0,
        hi: 6.0,
        start: (0.0, 1.5),
        step: 0.4,
    },
];

/// Share of switches with a bad link: the only ones whose `packet_errors`
/// ever grow, as on a real fabric, where most ports count no errors.
const FLAKY_SHARE: f64 = 0.05;

/// Chance per tick that a bad link has a burst of errors.
const BURST_CHANCE: f64 = 0.1;

struct Switch {
    walks: [f64; WALKS.len()],
    /// Cumulative, like a port's error counter: it never goes down.
    packet_errors: u64,
    flaky: bool,
    egress_drops: u64,
}

/// The rendered CSV and where each of its lines ends.
pub struct Table {
    pub csv: String,
    /// `ends[0]` is the end of the header line, `ends[i + 1]` the end of
    /// row `i` (after its `\n`): row `i` is `csv[ends[i]..ends[i + 1]]`.
    pub ends: Vec<usize>,
}

/// One generated snapshot, immutable once built.
#[derive(Debug)]
pub struct Snapshot {
    /// Unique across ticks and restarts (see `Generator`).
    pub id: String,
    /// `"<id>"`: the `ETag` header value, quoted once here.
    pub etag: String,
    /// Epoch milliseconds when the snapshot was taken.
    pub ts_ms: u64,
    /// The whole `/counters` body.
    pub csv: Arc<[u8]>,
    pub rows: usize,
    /// `"<id>-gz"`: the `ETag` of the gzip form.
    pub etag_gz: String,
    /// The body deflated, when first asked for.
    pub gz: crate::gzip::Lazy,
    /// Where each line of `csv` ends (see [`Table::ends`]): what shards
    /// are cut along.
    ends: Box<[usize]>,
    /// The header's column names, read from `csv`: what `sharding_field`
    /// may name.
    columns: Box<[String]>,
    /// The shards cut so far, each once (see [`super::shards`]).
    shards: Cache,
}

impl Snapshot {
    /// A snapshot of `table` taken at `ts_ms`, named `id`.
    pub fn new(id: String, ts_ms: u64, table: Table) -> Snapshot {
        let Table { csv, ends } = table;
        let columns = header(csv.as_bytes().get(..ends.first().copied().unwrap_or(0)));
        Snapshot {
            etag: format!("\"{id}\""),
            etag_gz: format!("\"{id}{}\"", crate::gzip::TAG_SUFFIX),
            id,
            ts_ms,
            csv: Arc::from(csv.into_bytes()),
            rows: ends.len().saturating_sub(1),
            gz: crate::gzip::Lazy::default(),
            ends: ends.into_boxed_slice(),
            columns,
            shards: Cache::default(),
        }
    }

    /// The header's column names, in order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Shard `sel` of the table, cut on first use and cached within bounds
    /// (see [`Cache`]); `None` when `sel` is the whole table (one shard,
    /// by index or by a field), which is served as it is, under the
    /// snapshot's own tags.
    pub fn shard(&self, sel: Selection) -> Option<Arc<Shard>> {
        if sel.n == 1 {
            return None;
        }
        let src = Source {
            id: &self.id,
            csv: &self.csv,
            ends: &self.ends,
            columns: &self.columns,
        };
        Some(self.shards.get(src, sel))
    }

    /// The body as one gzip member (deflated once, on first use).
    pub fn gzip_body(&self) -> Option<Vec<crate::http::Chunk>> {
        let d = self.gz.get(|| [&self.csv[..]])?;
        Some(crate::gzip::member(&[crate::gzip::Part::Deflated(d)]))
    }
}

/// The state of every simulated switch.
pub struct Simulator {
    rng: fastrand::Rng,
    switches: Vec<Switch>,
}

impl Simulator {
    /// `n` switches, seeded for reproducibility when `seed` is given.
    pub fn new(n: usize, seed: Option<u64>) -> Simulator {
        let mut rng = seed.map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
        let switches = (0..n)
            .map(|_| {
                let mut walks = [0.0; WALKS.len()];
                for (v, w) in walks.iter_mut().zip(&WALKS) {
                    *v = w.start.0 + rng.f64() * (w.start.1 - w.start.0);
                }
                Switch {
                    walks,
                    packet_errors: 0,
                    flaky: rng.f64() < FLAKY_SHARE,
                    egress_drops: 0,
                }
            })
            .collect();
        Simulator { rng, switches }
    }

    /// Advances every switch by one tick.
    pub fn step(&mut self) {
        let rng = &mut self.rng;
        for sw in &mut self.switches {
            for (v, w) in sw.walks.iter_mut().zip(&WALKS) {
                *v = reflect(*v + (rng.f64() * 2.0 - 1.0) * w.step, w.lo, w.hi);
            }
            // Hot switches run hotter: temperature leans towards CPU load.
            let target = 35.0 + sw.walks[CPU] * 0.45;
            sw.walks[TEMP] = reflect(
                sw.walks[TEMP] + (target - sw.walks[TEMP]) * 0.05,
                20.0,
                95.0,
            );
            // A burst on a bad link: more errors while its latent rate is high.
            if sw.flaky && rng.f64() < BURST_CHANCE {
                sw.packet_errors += 1 + (sw.walks[ERROR_RATE] * 40.0 * rng.f64()) as u64;
            }
            let buffer = sw.walks[BUFFER];
            sw.egress_drops = if buffer > 70.0 {
                ((buffer - 70.0) * 40.0 * (0.5 + rng.f64())).round() as u64
            } else {
                u64::from(rng.u8(..) < 8)
            };
        }
    }

    /// Renders the CSV body: the header line, then one row per switch.
    pub fn render_csv(&self) -> String {
        self.render().csv
    }

    /// Renders the CSV body and notes where each line ends, so that shards
    /// can be cut from it without reading it again.
    pub fn render(&self) -> Table {
        let mut out = String::with_capacity(100 + self.switches.len() * 64);
        let mut ends = Vec::with_capacity(self.switches.len() + 1);
        crate::csv::push_record(&mut out, &COLUMNS);
        ends.push(out.len());
        for (i, sw) in self.switches.iter().enumerate() {
            // At least three digits, never more padding: a switch keeps its
            // id as the fleet grows (sw-999, then sw-1000).
            let _ = write!(out, "sw-{i:03}");
            for (value, integer) in [
                (sw.walks[BANDWIDTH], None),
                (sw.walks[LATENCY], None),
                (0.0, Some(sw.packet_errors)),
                (sw.walks[CPU], None),
                (sw.walks[MEM], None),
                (sw.walks[BUFFER], None),
                (0.0, Some(sw.egress_drops)),
                (sw.walks[TEMP], None),
            ] {
                out.push(',');
                match integer {
                    Some(n) => {
                        let _ = write!(out, "{n}");
                    }
                    None => push_one_decimal(&mut out, value),
                }
            }
            out.push('\n');
            ends.push(out.len());
        }
        Table { csv: out, ends }
    }

    pub fn len(&self) -> usize {
        self.switches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.switches.is_empty()
    }
}

/// The column names of a header line, read with the CSV codec (none if it
/// does not read).
fn header(line: Option<&[u8]>) -> Box<[String]> {
    let mut fields = Vec::new();
    let read = crate::csv::Reader::new(line.unwrap_or_default())
        .and_then(|mut r| r.read_record(&mut fields))
        .unwrap_or(false);
    if !read {
        return Box::default();
    }
    fields.iter().map(|f| f.to_string()).collect()
}

fn reflect(v: f64, lo: f64, hi: f64) -> f64 {
    let v = if v < lo { lo + (lo - v) } else { v };
    let v = if v > hi { hi - (v - hi) } else { v };
    v.clamp(lo, hi)
}

/// Writes a non-negative value with exactly one decimal (`121.5`, `0.0`).
fn push_one_decimal(out: &mut String, v: f64) {
    let tenths = (v.max(0.0) * 10.0).round() as u64;
    let _ = write!(out, "{}.{}", tenths / 10, tenths % 10);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(csv: &str) -> Vec<Vec<String>> {
        csv.lines()
            .map(|l| l.split(',').map(str::to_string).collect())
            .collect()
    }

    #[test]
    fn ids_have_three_digits_at_least_and_never_change_with_the_fleet() {
        let r = rows(&Simulator::new(1200, Some(1)).render_csv());
        assert_eq!(r[0], COLUMNS);
        assert_eq!(r.len(), 1201);
        for (i, id) in [
            (0, "sw-000"),
            (63, "sw-063"),
            (999, "sw-999"),
            (1000, "sw-1000"),
        ] {
            assert_eq!(r[i + 1][0], id);
        }
        assert_eq!(r[1200][0], "sw-1199");
        let small = rows(&Simulator::new(64, Some(1)).render_csv());
        assert_eq!(
            small[64][0], "sw-063",
            "the same id at 64 switches as at 1200"
        );
    }

    #[test]
    fn packet_errors_only_grow_and_only_on_a_few_links() {
        let mut sim = Simulator::new(1000, Some(3));
        let errors = |sim: &Simulator| -> Vec<u64> {
            rows(&sim.render_csv())[1..]
                .iter()
                .map(|r| r[3].parse().unwrap())
                .collect()
        };
        let mut prev = errors(&sim);
        assert!(prev.iter().all(|&e| e == 0), "a fresh producer counts none");
        for _ in 0..200 {
            sim.step();
            let cur = errors(&sim);
            assert!(
                cur.iter().zip(&prev).all(|(c, p)| c >= p),
                "a counter never goes down"
            );
            prev = cur;
        }
        let with_errors = prev.iter().filter(|&&e| e > 0).count();
        assert!(
            (10..=120).contains(&with_errors),
            "{with_errors} of 1000 switches have errors"
        );
        assert!(prev.iter().any(|&e| e > 100), "bursts add up");
    }

    #[test]
    fn same_seed_same_values() {
        let (mut a, mut b) = (Simulator::new(50, Some(9)), Simulator::new(50, Some(9)));
        for _ in 0..5 {
            a.step();
            b.step();
        }
        assert_eq!(a.render_csv(), b.render_csv());
        let mut c = Simulator::new(50, Some(10));
        c.step();
        assert_ne!(a.render_csv(), c.render_csv());
    }

    #[test]
    fn values_stay_plausible_and_move_smoothly() {
        let mut sim = Simulator::new(200, Some(5));
        let mut prev = rows(&sim.render_csv());
        for _ in 0..300 {
            sim.step();
            let cur = rows(&sim.render_csv());
            for (row, before) in cur.iter().zip(&prev).skip(1) {
                assert_eq!(row.len(), 9);
                for (col, (v, p)) in row.iter().zip(before).enumerate().skip(1) {
                    let x: f64 = v.parse().unwrap();
                    assert!(x.is_finite() && x >= 0.0, "{v}");
                    let name = COLUMNS[col];
                    if name.ends_with("_pct") {
                        assert!(x <= 100.0, "{name}={v}");
                    }
                    if name == "packet_errors" || name == "egress_drops_per_s" {
                        assert!(!v.contains('.'), "{name}={v} is an integer");
                    } else {
                        assert_eq!(v.split('.').nth(1).map(str::len), Some(1), "{v}");
                        let step = p.parse::<f64>().unwrap() - x;
                        assert!(step.abs() <= 8.05, "{name} jumped {p} -> {v}");
                    }
                }
            }
            prev = cur;
        }
    }

    #[test]
    fn a_snapshot_knows_its_header() {
        let snap = Snapshot::new("s".into(), 0, Simulator::new(3, Some(1)).render());
        assert_eq!(snap.columns(), COLUMNS);
        let table = Table {
            csv: "\"port guid\",\"a,b\"\nx,1\n".into(),
            ends: vec![18, 22],
        };
        let snap = Snapshot::new("s".into(), 0, table);
        assert_eq!(snap.columns(), ["port guid", "a,b"]);
        let empty = Snapshot::new(
            "s".into(),
            0,
            Table {
                csv: String::new(),
                ends: vec![0],
            },
        );
        assert!(empty.columns().is_empty());
    }

    #[test]
    fn one_decimal_formatting() {
        for (v, s) in [
            (121.54, "121.5"),
            (0.04, "0.0"),
            (99.96, "100.0"),
            (7.0, "7.0"),
        ] {
            let mut out = String::new();
            push_one_decimal(&mut out, v);
            assert_eq!(out, s);
        }
    }
}
