//! Seeded property tests, no sockets: thousands of hostile requests through
//! both servers' route handlers, and mutated CSV bodies through
//! `Snapshot::parse`. The properties are the fuzz targets' (`fuzz/src/checks.rs`,
//! shared here so the two never drift apart); `scripts/fuzz.sh` explores the
//! same ground without a time limit.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fabric_telemetry::http::{Request, Response};
use fabric_telemetry::server::Handler;

#[path = "../../fuzz/src/checks.rs"]
#[allow(dead_code)]
mod checks;

use checks::Servers;

const SEED: u64 = 0x5eed_f00d;
const REQUESTS: usize = 10_000;
const BODIES: usize = 3_000;

/// Characters a hostile client likes: escapes, separators, controls, quotes,
/// multi-byte text, and the things our parsers look for.
const NASTY: &[&str] = &[
    "%",
    "%2",
    "%zz",
    "%00",
    "%0d%0a",
    "%ff",
    "%C3%A9",
    "%E2%9C%93",
    "+",
    "&",
    "=",
    "?",
    "#",
    "/",
    "..",
    "\\",
    "\"",
    "'",
    ",",
    ";",
    " ",
    "\t",
    "\r",
    "\n",
    "\r\n",
    "\u{0}",
    "\u{1}",
    "\u{7f}",
    "é",
    "✓",
    "\u{feff}",
    "\u{fffd}",
    "W/",
    "*",
    "sw-000",
    "switch_id",
    "metric",
    "GET",
];

fn pick<'a, T: ?Sized>(rng: &mut fastrand::Rng, xs: &'a [&'a T]) -> &'a T {
    xs[rng.usize(..xs.len())]
}

/// Random text: any chars, biased towards [`NASTY`] pieces and ASCII.
fn junk(rng: &mut fastrand::Rng, max_len: usize) -> String {
    let mut s = String::new();
    let len = rng.usize(0..=max_len);
    while s.len() < len {
        match rng.u8(0..10) {
            0..=3 => s.push_str(pick(rng, NASTY)),
            4..=7 => s.push(rng.u8(0x20..0x7f) as char),
            8 => s.push(rng.u8(0..0x20) as char),
            _ => s.push(rng.char(..)),
        }
    }
    s
}

/// A value that is occasionally enormous.
fn maybe_huge(rng: &mut fastrand::Rng, s: String) -> String {
    if rng.u8(0..40) == 0 {
        s.repeat(1 + 64 * 1024 / (s.len() + 1))
    } else {
        s
    }
}

fn method(rng: &mut fastrand::Rng) -> String {
    const METHODS: &[&str] = &[
        "GET",
        "GET",
        "GET",
        "HEAD",
        "POST",
        "PUT",
        "DELETE",
        "PATCH",
        "OPTIONS",
        "TRACE",
        "CONNECT",
        "get",
        "Get",
        "",
        " GET",
        "GET ",
        "G\u{0}ET",
        "\u{1f600}",
    ];
    match rng.u8(0..10) {
        0 => {
            let m = junk(rng, 12);
            maybe_huge(rng, m)
        }
        1 | 2 => pick(rng, METHODS).to_string(),
        3 => "HEAD".to_string(),
        _ => "GET".to_string(),
    }
}

fn path(rng: &mut fastrand::Rng) -> String {
    // GetMetric 6/16, History 2/16, ListMetrics 2/16, /counters 4/16.
    const PATHS: &[&str] = &[
        "/telemetry/GetMetric",
        "/telemetry/GetMetric",
        "/telemetry/GetMetric",
        "/telemetry/GetMetric",
        "/telemetry/GetMetric",
        "/telemetry/GetMetric",
        "/telemetry/History",
        "/telemetry/History",
        "/telemetry/ListMetrics",
        "/telemetry/ListMetrics",
        "/stats",
        "/health",
        "/counters",
        "/counters",
        "/counters",
        "/counters",
    ];
    let known = pick(rng, PATHS).to_string();
    match rng.u8(0..16) {
        0 => {
            let p = junk(rng, 40);
            maybe_huge(rng, p)
        }
        1 => format!("{known}/"),
        2 => known.to_uppercase(),
        3 => format!("/{known}"),
        4 => format!("{known}{}", pick(rng, NASTY)),
        5 => known.replace('/', "%2F"),
        _ => known,
    }
}

/// Form-encodes `s`, or sometimes leaves it raw.
fn component(rng: &mut fastrand::Rng, s: &str) -> String {
    if rng.bool() {
        checks::encode(s)
    } else {
        s.to_string()
    }
}

/// A `num_shards`/`shard` pair, mostly valid (for a 3-switch table: some
/// shards empty), sometimes one of the two alone or out of range, and
/// sometimes with a `sharding_field`.
fn shard_pair(rng: &mut fastrand::Rng, pairs: &mut Vec<String>) {
    let (n, k) = if rng.u8(0..4) > 0 {
        let n = pick(rng, &["1", "2", "3", "4", "16"]);
        let k = rng.u16(0..n.parse::<u16>().unwrap_or(1)).to_string();
        (n.to_string(), k)
    } else {
        let n = pick(
            rng,
            &["0", "1025", "4", "-1", "+2", "x", "", "99999999", "007"],
        );
        let k = pick(rng, &["0", "1", "4", "5", "-0", " 1", "", "y", "00"]);
        (n.to_string(), k.to_string())
    };
    let by = match rng.u8(0..10) {
        0 => return pairs.push(format!("num_shards={n}")),
        1 => return pairs.push(format!("shard={k}")),
        // Sometimes by a field, a column or not one (no draw of its own,
        // so the rest of the seeded run stays as it was).
        8 => Some("Switch_ID"),
        9 => Some("switch_id"),
        _ => None,
    };
    pairs.push(format!("num_shards={}", component(rng, &n)));
    pairs.push(format!("shard={}", component(rng, &k)));
    if rng.bool() {
        let last = pairs.len() - 1;
        pairs.swap(last - 1, last);
    }
    if let Some(field) = by {
        pairs.push(format!("sharding_field={field}"));
    }
}

fn query(rng: &mut fastrand::Rng, path: &str, switches: &[&str], metrics: &[&str]) -> String {
    if rng.u8(0..10) == 0 {
        let q = junk(rng, 60);
        return maybe_huge(rng, q);
    }
    let mut pairs = Vec::new();
    let sharded = path == "/counters" && rng.u8(0..4) == 0;
    if sharded {
        shard_pair(rng, &mut pairs);
    }
    if rng.u8(0..3) == 0 {
        // A plausible request: both parameters, in either order, first.
        let switch = pick(rng, switches);
        let metric = pick(rng, metrics);
        pairs.push(format!("switch_id={}", component(rng, switch)));
        pairs.push(format!("metric={}", component(rng, metric)));
        if rng.bool() {
            pairs.swap(0, 1);
        }
    }
    // Often nothing more, so that strict endpoints see clean queries too.
    let extra = if rng.bool() || (sharded && rng.bool()) {
        0
    } else {
        rng.usize(1..5)
    };
    for _ in 0..extra {
        let name = match rng.u8(0..11) {
            10 => pick(rng, &["num_shards", "shard"]).to_string(),
            0..=2 => "switch_id".to_string(),
            3..=4 => "metric".to_string(),
            5 => pick(rng, &["sort", "where", "fields", "limit", "format"]).to_string(),
            6 => {
                let n = junk(rng, 8);
                component(rng, &n)
            }
            _ => pick(
                rng,
                &["switch_id", "metric", "Switch_ID", "switch%5Fid", ""],
            )
            .to_string(),
        };
        let value = match rng.u8(0..10) {
            0..=2 => {
                let v = pick(rng, switches);
                component(rng, v)
            }
            8 => {
                let sign = pick(rng, &["", "-"]);
                let v = format!("{sign}{}", pick(rng, metrics));
                component(rng, &v)
            }
            9 => {
                let op = pick(rng, &[">", ">=", "<", "<=", "==", "!=", "="]);
                let v = format!("{}{op}{}", pick(rng, metrics), rng.i32(-5..50));
                component(rng, &v)
            }
            3..=5 => {
                let v = pick(rng, metrics);
                component(rng, v)
            }
            6 => {
                let v = junk(rng, 16);
                let v = component(rng, &v);
                maybe_huge(rng, v)
            }
            _ => String::new(),
        };
        pairs.push(match rng.u8(0..10) {
            0 => name,
            1 => format!("{name}={value}={value}"),
            _ => format!("{name}={value}"),
        });
    }
    let sep = if rng.u8(0..8) == 0 { "&&" } else { "&" };
    pairs.join(sep)
}

fn headers(rng: &mut fastrand::Rng, etag: &str, id: &str) -> Vec<(String, String)> {
    let n = if rng.u8(0..20) == 0 {
        rng.usize(50..200)
    } else {
        rng.usize(0..4)
    };
    (0..n)
        .map(|_| {
            let name = match rng.u8(0..6) {
                0..=2 => {
                    pick(rng, &["If-None-Match", "if-none-match", "IF-NONE-MATCH"]).to_string()
                }
                3 => junk(rng, 12),
                _ => pick(
                    rng,
                    &["Host", "Accept", "Content-Length", "X-Request-Id", ""],
                )
                .to_string(),
            };
            let value = match rng.u8(0..10) {
                0 => etag.to_string(),
                1 => format!("W/{etag}"),
                2 => format!("\"old\", {etag}"),
                3 => "*".to_string(),
                4 => id.to_string(),
                5 => format!("\"{id}-x\""),
                6 => format!("\"{id}-s{}of2\"", rng.u8(0..2)),
                _ => {
                    let v = junk(rng, 24);
                    maybe_huge(rng, v)
                }
            };
            (name, value)
        })
        .collect()
}

#[test]
fn hostile_requests_get_well_formed_answers() {
    let started = Instant::now();
    let servers = Servers::new();
    let snap = servers
        .consumer_state
        .store
        .load()
        .expect("the fixture snapshot");
    let switches: Vec<&str> = snap.switch_ids().chain(["sw-999", "SW-000"]).collect();
    let metrics: Vec<&str> = snap
        .fields
        .iter()
        .map(String::as_str)
        .chain(["nope", "switch_id"])
        .collect();
    let psnap = servers
        .producer_cell
        .load()
        .expect("the generator's snapshot");
    let mut rng = fastrand::Rng::with_seed(SEED);
    let mut seen: BTreeMap<(String, u16), usize> = BTreeMap::new();
    for i in 0..REQUESTS {
        let path = path(&mut rng);
        let req = Request {
            method: method(&mut rng),
            query: query(&mut rng, &path, &switches, &metrics),
            path,
            headers: headers(&mut rng, &psnap.etag, &psnap.id),
            ..Request::default()
        };
        let elapsed = Duration::from_micros(rng.u64(0..5_000_000));
        if let Err(why) = servers.check(&req, elapsed) {
            panic!("request #{i} (seed {SEED:#x}): {why}\n{req:?}");
        }
        // Tally what the data answers were, to show the generator reaches them.
        let known = ["/telemetry/GetMetric", "/telemetry/History", "/counters"]
            .contains(&req.path.as_str());
        let status = servers.consumer.handle(&req).status;
        if req.path != "/counters" {
            *seen
                .entry((
                    if known {
                        req.path.clone()
                    } else {
                        "other".into()
                    },
                    status,
                ))
                .or_default() += 1;
        } else {
            let status = servers.producer.handle(&req).status;
            *seen.entry((req.path.clone(), status)).or_default() += 1;
            if req.query.contains("shard") {
                *seen.entry(("/counters?shard".into(), status)).or_default() += 1;
            }
        }
    }
    // A generator that never reaches an answer cannot find a bug in it.
    for (what, status, at_least) in [
        ("/telemetry/GetMetric", 200, 100),
        ("/telemetry/GetMetric", 400, 100),
        ("/telemetry/GetMetric", 404, 100),
        ("/telemetry/GetMetric", 405, 100),
        ("/telemetry/History", 200, 30),
        ("/telemetry/History", 304, 3),
        ("/telemetry/History", 400, 50),
        ("/telemetry/History", 404, 30),
        ("/counters", 200, 100),
        ("/counters", 304, 100),
        ("/counters", 405, 100),
        ("/counters?shard", 200, 50),
        ("/counters?shard", 304, 5),
        ("/counters?shard", 400, 50),
        ("other", 404, 100),
    ] {
        let n = seen.get(&(what.to_string(), status)).copied().unwrap_or(0);
        assert!(
            n >= at_least,
            "only {n} {what} answers were {status}; seen: {seen:?}"
        );
    }
    // /stats rendered with what `observe` recorded is still JSON.
    let stats = servers.consumer.handle(&Request::get("/stats"));
    let v: serde_json::Value = serde_json::from_slice(&stats.body_bytes()).expect("/stats JSON");
    assert!(
        v["endpoints"]["/telemetry/GetMetric"]["count"].as_u64() > Some(100),
        "{v}"
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "{REQUESTS} requests took {took:?}"
    );
}

/// One random edit of a CSV body.
fn mutate(rng: &mut fastrand::Rng, body: &mut Vec<u8>) {
    const BYTES: &[u8] = b",\"\n\r\0\xff\xfe e.-+0123456789xNIi";
    let at = |rng: &mut fastrand::Rng, body: &Vec<u8>| rng.usize(0..=body.len());
    let lines = |body: &Vec<u8>| -> Vec<Vec<u8>> {
        body.split_inclusive(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect()
    };
    match rng.u8(0..10) {
        0 if !body.is_empty() => {
            let i = rng.usize(..body.len());
            body[i] ^= 1 << rng.u8(0..8);
        }
        1 if !body.is_empty() => {
            let i = rng.usize(..body.len());
            body[i] = BYTES[rng.usize(..BYTES.len())];
        }
        2 => body.truncate(at(rng, body)),
        3 => {
            let i = at(rng, body);
            body.insert(i, b'"');
        }
        4 | 5 => {
            let mut ls = lines(body);
            if !ls.is_empty() {
                let i = rng.usize(..ls.len());
                let copy = ls[i].clone();
                match rng.u8(0..3) {
                    0 => ls.insert(rng.usize(..=ls.len()), copy),
                    1 => drop(ls.remove(i)),
                    _ => {
                        let j = rng.usize(..ls.len());
                        ls.swap(i, j);
                    }
                }
                *body = ls.concat();
            }
        }
        6 => {
            const PIECES: &[&[u8]] = &[
                b"NaN",
                b"inf",
                b"1e400",
                b"-0",
                b"1e-400",
                b".5",
                b"\xef\xbb\xbf",
                b"\r",
                b"\"\"",
                b",",
                b"switch_id",
                b"0e99999999999999999999",
            ];
            let piece = pick(rng, PIECES);
            let i = at(rng, body);
            body.splice(i..i, piece.iter().copied());
        }
        7 => {
            let i = at(rng, body);
            let n = rng.usize(0..=(body.len() - i).min(8));
            body.drain(i..i + n);
        }
        _ => {
            // Replace one field with another line's field, or with junk.
            let i = at(rng, body);
            let junk = junk(rng, 6);
            body.splice(i..i, junk.bytes());
        }
    }
}

#[test]
fn mutated_ufm_bodies_never_panic_the_dialects() {
    let base = checks::UFM_FIXTURE_CSV.as_bytes();
    let mut rng = fastrand::Rng::with_seed(SEED);
    let mut accepted = 0;
    for i in 0..BODIES {
        let mut body = base.to_vec();
        for _ in 0..rng.usize(1..=4) {
            mutate(&mut rng, &mut body);
        }
        if let Err(why) = checks::check_dialects(&body) {
            let shown = String::from_utf8_lossy(&body).into_owned();
            panic!("body #{i} (seed {SEED:#x}): dialects: {why}\n{shown:?}");
        }
        let rules = fabric_telemetry::consumer::poll::dialect::Rules::default();
        let limits = fabric_telemetry::consumer::store::snapshot::Limits { max_rows: 100 };
        let origin = fabric_telemetry::consumer::store::snapshot::Origin::default();
        let parsed = fabric_telemetry::consumer::Snapshot::parse_as(&body, origin, limits, |h| {
            rules.layout(h)
        });
        accepted += usize::from(parsed.is_ok());
    }
    // Mutations must leave many bodies whole, or they test only refusals.
    assert!(
        accepted > BODIES / 10,
        "only {accepted} of {BODIES} accepted"
    );
}

#[test]
fn mutated_csv_bodies_never_panic_and_accepted_ones_render_json() {
    let started = Instant::now();
    let servers = Servers::new();
    let producer_csv = servers
        .producer_cell
        .load()
        .expect("a snapshot")
        .csv
        .to_vec();
    let bases: [&[u8]; 2] = [checks::FIXTURE_CSV.as_bytes(), &producer_csv];
    // The unmutated bodies are accepted, or every "accepted" below is moot.
    for base in bases {
        checks::check_csv_reader(base).unwrap();
        assert!(checks::check_snapshot_parse(base).unwrap().is_some());
    }
    let mut rng = fastrand::Rng::with_seed(SEED);
    let (mut accepted, mut refused) = (0, 0);
    for i in 0..BODIES {
        let mut body = bases[i % 2].to_vec();
        for _ in 0..rng.usize(1..=4) {
            mutate(&mut rng, &mut body);
        }
        let shown = || String::from_utf8_lossy(&body).into_owned();
        if let Err(why) = checks::check_csv_reader(&body) {
            panic!(
                "body #{i} (seed {SEED:#x}): csv::Reader: {why}\n{:?}",
                shown()
            );
        }
        match checks::check_snapshot_parse(&body) {
            Ok(Some(_)) => accepted += 1,
            Ok(None) => refused += 1,
            Err(why) => panic!(
                "body #{i} (seed {SEED:#x}): Snapshot::parse: {why}\n{:?}",
                shown()
            ),
        }
    }
    // Both outcomes must be common, or the mutations test nothing.
    assert!(
        accepted > BODIES / 10,
        "only {accepted} of {BODIES} mutated bodies accepted"
    );
    assert!(
        refused > BODIES / 10,
        "only {refused} of {BODIES} mutated bodies refused"
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "{BODIES} bodies took {took:?}"
    );
}

/// The checks themselves catch what they claim to: each of these answers
/// breaks one property and must be refused.
#[test]
fn the_checks_refuse_malformed_answers() {
    let ok = || Response::json(200, "{\"ok\":true}");
    assert_eq!(checks::check_response(&ok(), true), Ok(()));
    let bad = [
        Response::new(600),
        Response::new(99),
        ok().header("X-Bad", "a\r\nInjected: 1"),
        ok().header("X-Bad", "caf\u{e9}"),
        ok().header("X-Bad", " padded"),
        ok().header("Bad Name", "x"),
        ok().header("Content-Type", "text/plain"),
        Response::json(200, "{\"ok\":tru"),
        Response::json(404, "{\"message\":\"nope\"}"),
        Response::json(400, "{\"error\":\"\"}"),
        Response::new(404)
            .header("Content-Type", "text/plain")
            .chunk("nope"),
        Response::new(200).chunk("untyped"),
        Response::error(405, "method not allowed: PUT"),
        Response::error(405, "method not allowed: PUT").header("Allow", "GET"),
        Response::error(404, &"x".repeat(checks::MAX_ERROR_BODY)),
    ];
    for resp in bad {
        assert!(
            checks::check_response(&resp, true).is_err(),
            "{resp:?} passed"
        );
    }
    // An oracle check: a 404 where the contract asks for 200 is refused.
    let servers = Servers::new();
    let snap = servers.consumer_state.store.load().unwrap();
    let req = Request::get("/telemetry/GetMetric?switch_id=sw-000&metric=cpu_util_pct");
    let wrong = Response::error(404, "unknown switch_id: sw-000");
    assert!(checks::check_consumer(&req, &wrong, Some(&snap)).is_err());
    let right = servers.consumer.handle(&req);
    assert_eq!(checks::check_consumer(&req, &right, Some(&snap)), Ok(()));
    // History: the newest point must be the snapshot's, spelled as it is.
    let req = Request::get("/telemetry/History?switch_id=sw-001&metric=bandwidth_gbps");
    let right = servers.consumer.handle(&req);
    assert_eq!(checks::check_consumer(&req, &right, Some(&snap)), Ok(()));
    let text = String::from_utf8(right.body_bytes()).unwrap();
    assert!(text.ends_with(",118.30]]}"), "{text}");
    for body in [
        text.replace(",118.30]", ",118.3]"),
        text.replace("[[", "[[1,").replace(",118.30]", "]"),
        "{\"switch_id\":\"sw-001\",\"metric\":\"bandwidth_gbps\",\"points\":[]}".into(),
    ] {
        let mut wrong = Response::json(200, body);
        wrong.headers = right.headers.clone();
        assert!(
            checks::check_consumer(&req, &wrong, Some(&snap)).is_err(),
            "{wrong:?}"
        );
    }
}
