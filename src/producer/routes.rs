//! data_server's routes: `GET /counters` (whole or one shard, conditional,
//! with fault injection), `GET /health` and `GET /metrics`.

use std::sync::Arc;
use std::time::Duration;

use super::metrics::{Fault, ProducerStats};
use super::shards::{self, Asked, Selection};
use super::simulator::Snapshot;
use crate::gzip;
use crate::http::{self, CSV, Request, Response};
use crate::log::{Event, Level};
use crate::server::Handler;
use crate::swap::Swap;

/// The share of `/counters` requests that `FAULT_SLOW_MS` delays.
pub const SLOW_SHARE: f64 = 0.2;

/// Deliberate misbehaviour, for testing consumers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Percent (0–100) of `/counters` requests answered 500.
    pub fail_pct: f64,
    /// Delay added to about [`SLOW_SHARE`] of `/counters` requests.
    pub slow: Duration,
}

pub struct Routes {
    cell: Arc<Swap<Snapshot>>,
    faults: Faults,
    stats: Arc<ProducerStats>,
}

impl Routes {
    pub fn new(cell: Arc<Swap<Snapshot>>, faults: Faults, stats: Arc<ProducerStats>) -> Routes {
        Routes {
            cell,
            faults,
            stats,
        }
    }

    fn counters(&self, req: &Request, asked: Option<Asked<'_>>) -> Response {
        // The snapshot this request is answered from: a sharding_field is
        // looked up in its header, and refused before any fault is
        // injected. (Before the first snapshot there is no header to look
        // in; the answer is a 503 then anyway, or an injected fault.)
        let snap = self.cell.load();
        let sel = match (asked, &snap) {
            (Some(asked), Some(snap)) => match asked.resolve(snap.columns()) {
                Ok(sel) => Some(sel),
                Err(e) => return Response::error(400, &e.to_string()),
            },
            _ => None,
        };
        let delay = if !self.faults.slow.is_zero() && fastrand::f64() < SLOW_SHARE {
            self.stats.fault_injected(Fault::Slow);
            Event::new(Level::Info, "gen.inject_fault")
                .str("kind", "slow")
                .uint("delay_ms", self.faults.slow.as_millis() as u64)
                .emit();
            self.faults.slow
        } else {
            Duration::ZERO
        };
        self.answer(req, snap.as_deref(), sel).delayed(delay)
    }

    fn answer(&self, req: &Request, snap: Option<&Snapshot>, sel: Option<Selection>) -> Response {
        if self.faults.fail_pct > 0.0 && fastrand::f64() * 100.0 < self.faults.fail_pct {
            self.stats.fault_injected(Fault::Http500);
            Event::new(Level::Info, "gen.inject_fault")
                .str("kind", "http_500")
                .emit();
            return Response::new(500)
                .header("Content-Type", http::TEXT)
                .header("Cache-Control", "no-store")
                .chunk("injected fault\n");
        }
        let Some(snap) = snap else {
            return Response::error(503, "no snapshot yet");
        };
        // A shard, cut once per snapshot; or the whole table (also for
        // num_shards=1, by index or by a field, which is the same bytes
        // under the same tags).
        let shard = sel.and_then(|sel| snap.shard(sel));
        let (body, etag, etag_gz, lazy) = match &shard {
            Some(s) => (&s.body, &s.etag, &s.etag_gz, &s.gz),
            None => (&snap.csv, &snap.etag, &snap.etag_gz, &snap.gz),
        };
        // gzip when the client takes it: deflated once per snapshot (and
        // shard).
        let gzip = gzip::accepted(req.headers_named("Accept-Encoding"))
            .then(|| lazy.get(|| [&body[..]]))
            .flatten();
        let mut resp = Response::new(200).header("Content-Type", CSV);
        let etag = match gzip {
            Some(d) => {
                resp.body = gzip::member(&[gzip::Part::Deflated(d)]);
                resp = resp.header("Content-Encoding", "gzip");
                etag_gz
            }
            None => {
                resp = resp.chunk(body.clone());
                etag
            }
        };
        // A 304 carries the body too, unsent, so that its Content-Length is
        // the representation's, as RFC 9110 asks (not 0).
        let tag = etag.trim_matches('"');
        if req
            .headers_named("If-None-Match")
            .any(|h| http::if_none_match(h, tag))
        {
            resp.status = 304;
        }
        resp.header("ETag", etag.clone())
            .header("X-Snapshot-Ts", snap.ts_ms.to_string())
            .header("Cache-Control", "no-store")
            .header("Vary", "Accept-Encoding")
    }
}

impl Handler for Routes {
    fn handle(&self, req: &Request) -> Response {
        let known = matches!(req.path.as_str(), "/counters" | "/health" | "/metrics");
        if !known {
            return Response::unknown_path(&req.path);
        }
        if !req.is_read() {
            return Response::method_not_allowed(&req.method);
        }
        // Only /counters takes parameters (a shard, maybe by a field): a
        // stray one is a mistake.
        let known = if req.path == "/counters" {
            shards::PARAMS
        } else {
            &[]
        };
        let pairs = match crate::query::strict(&req.query, known) {
            Ok(pairs) => pairs,
            Err(e) => return Response::error(400, &e.to_string()),
        };
        match req.path.as_str() {
            "/counters" => match shards::parse(&pairs) {
                Ok(asked) => self.counters(req, asked),
                Err(e) => Response::error(400, &e.to_string()),
            },
            "/metrics" => {
                let page = self.stats.render();
                let resp = Response::new(200)
                    .header("Content-Type", crate::prometheus::CONTENT_TYPE)
                    .header("Vary", "Accept-Encoding");
                // A page of a few kilobytes, all of it this request's.
                match gzip::accepted(req.headers_named("Accept-Encoding"))
                    .then(|| gzip::compress(page.as_bytes()))
                    .flatten()
                {
                    Some(body) => {
                        let mut resp = resp.header("Content-Encoding", "gzip");
                        resp.body = body;
                        resp
                    }
                    None => resp.chunk(page),
                }
            }
            _ => Response::json(200, "{\"ok\":true}"),
        }
    }

    fn observe(&self, req: &Request, status: u16, _elapsed: Duration) {
        if req.path == "/counters" {
            self.stats.counters_answered(status);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Chunk;
    use crate::producer::Generator;

    fn routes(faults: Faults) -> (Routes, Generator) {
        let g = Generator::new(3, Some(1), Duration::from_secs(60));
        (Routes::new(g.cell(), faults, g.stats()), g)
    }

    #[test]
    fn parameters_are_refused_on_every_endpoint() {
        let (r, _g) = routes(Faults::default());
        for target in ["/counters?x=1", "/health?_=2", "/metrics?a&a"] {
            let resp = r.handle(&Request::get(target));
            assert_eq!(resp.status, 400, "{target}");
            let body = String::from_utf8(resp.body_bytes()).unwrap();
            assert!(body.contains("unknown query parameter"), "{body}");
        }
    }

    #[test]
    fn counters_takes_a_shard_and_refuses_a_bad_one() {
        let (r, _g) = routes(Faults {
            fail_pct: 100.0,
            slow: Duration::ZERO,
        });
        for (target, want) in [
            (
                "/counters?x=1",
                "unknown query parameter: x (want one of num_shards, shard, sharding_field)",
            ),
            (
                "/counters?sharding_field=switch_id",
                "missing query parameter: num_shards (sharding_field goes with num_shards and shard)",
            ),
            (
                "/counters?num_shards=2&shard=0&sharding_field=",
                "invalid sharding_field: empty (want a column of the header)",
            ),
            (
                "/counters?num_shards=2&shard=0&sharding_field=sw%22id",
                "unknown sharding_field: sw\"id (want one of switch_id, bandwidth_gbps, \
                 latency_us, packet_errors, cpu_util_pct, mem_util_pct, \
                 buffer_occupancy_pct, egress_drops_per_s, temperature_c)",
            ),
            (
                "/counters?num_shards=2&shard=0&sharding_field=a&sharding_field=a",
                "repeated query parameter: sharding_field",
            ),
            (
                "/counters?shard=1",
                "missing query parameter: num_shards (num_shards and shard go together)",
            ),
            (
                "/counters?num_shards=1025&shard=0",
                "invalid num_shards: 1025 (want an integer 1..=1024)",
            ),
            (
                "/counters?num_shards=4&shard=5",
                "invalid shard: 5 (want an integer 0..=3 for num_shards=4)",
            ),
        ] {
            // Refused before any fault is injected.
            let resp = r.handle(&Request::get(target));
            assert_eq!(resp.status, 400, "{target}");
            assert_eq!(resp.header_value("content-type"), Some(http::JSON));
            let body = String::from_utf8(resp.body_bytes()).unwrap();
            assert_eq!(body, crate::json::error_body(want), "{target}");
        }
    }

    #[test]
    fn a_shard_is_served_shared_with_its_own_tag() {
        let (r, mut g) = routes(Faults::default());
        let snap = g.cell().load().unwrap();
        let get = |target: &str, inm: &str| {
            let mut req = Request::get(target);
            if !inm.is_empty() {
                req = req.with_header("If-None-Match", inm);
            }
            r.handle(&req)
        };
        let resp = get("/counters?num_shards=2&shard=1", "");
        assert_eq!(resp.status, 200);
        let tag = format!("\"{}-s1of2\"", snap.id);
        assert_eq!(resp.header_value("etag"), Some(tag.as_str()));
        for (name, value) in [
            ("content-type", CSV),
            ("cache-control", "no-store"),
            ("vary", "Accept-Encoding"),
        ] {
            assert_eq!(resp.header_value(name), Some(value), "{name}");
        }
        assert_eq!(
            resp.header_value("x-snapshot-ts"),
            Some(snap.ts_ms.to_string().as_str())
        );
        let body = String::from_utf8(resp.body_bytes()).unwrap();
        let whole = String::from_utf8(snap.csv.to_vec()).unwrap();
        let lines: Vec<&str> = body.lines().collect();
        assert_eq!(
            lines,
            [whole.lines().next().unwrap(), whole.lines().nth(2).unwrap()]
        );
        // The body is cut once and shared by every request for the shard.
        let (a, b) = (resp.body, get("/counters?shard=1&num_shards=2", "").body);
        assert!(
            matches!((&a[0], &b[0]), (Chunk::Shared(x), Chunk::Shared(y)) if Arc::ptr_eq(x, y))
        );
        // Its own tag: 304 for it, 200 for the other shard's or the table's.
        assert_eq!(get("/counters?num_shards=2&shard=1", &tag).status, 304);
        assert_eq!(get("/counters?num_shards=2&shard=0", &tag).status, 200);
        assert_eq!(
            get("/counters?num_shards=2&shard=1", &snap.etag).status,
            200
        );
        assert_eq!(get("/counters", &tag).status, 200);
        // One shard of one is the whole table, under the table's tags.
        let one = get("/counters?num_shards=1&shard=0", &snap.etag);
        assert_eq!(one.status, 304);
        assert_eq!(one.body_bytes(), &snap.csv[..]);
        assert_eq!(one.header_value("etag"), Some(snap.etag.as_str()));
        // In gzip: its own tag, with -gz.
        let gz = r.handle(
            &Request::get("/counters?num_shards=2&shard=1").with_header("Accept-Encoding", "gzip"),
        );
        let tag_gz = format!("\"{}-s1of2-gz\"", snap.id);
        assert_eq!(gz.header_value("etag"), Some(tag_gz.as_str()));
        assert_eq!(gz.header_value("content-encoding"), Some("gzip"));
        // The next tick: a new tag for the shard.
        g.tick();
        let next = get("/counters?num_shards=2&shard=1", &tag);
        assert_eq!(next.status, 200);
        assert_ne!(next.header_value("etag"), Some(tag.as_str()));
    }

    #[test]
    fn a_shard_by_a_field_is_served_shared_with_its_own_tag() {
        let g = Generator::new(40, Some(1), Duration::from_secs(60));
        let r = Routes::new(g.cell(), Faults::default(), g.stats());
        let snap = g.cell().load().unwrap();
        let get = |target: &str, inm: &str| {
            let mut req = Request::get(target);
            if !inm.is_empty() {
                req = req.with_header("If-None-Match", inm);
            }
            r.handle(&req)
        };
        let path = "/counters?num_shards=4&shard=2&sharding_field=switch_id";
        let resp = get(path, "");
        assert_eq!(resp.status, 200);
        let tag = format!("\"{}-s2of4-by-switch_id\"", snap.id);
        assert_eq!(resp.header_value("etag"), Some(tag.as_str()));
        assert_eq!(resp.header_value("content-type"), Some(CSV));
        // The rows whose switch_id hashes to 2 (sw-000's does), in order.
        let body = String::from_utf8(resp.body_bytes()).unwrap();
        let whole = String::from_utf8(snap.csv.to_vec()).unwrap();
        let want: Vec<&str> = whole
            .lines()
            .skip(1)
            .filter(|l| {
                let id = l.split(',').next().unwrap();
                super::super::partition::shard_of(id, 4) == 2
            })
            .collect();
        assert!(want[0].starts_with("sw-000,"));
        assert_eq!(body.lines().next(), whole.lines().next());
        assert_eq!(body.lines().skip(1).collect::<Vec<_>>(), want);
        // Shared, and its own tag: 304 for it, not for the index shard's.
        let (a, b) = (resp.body, get(path, "").body);
        assert!(
            matches!((&a[0], &b[0]), (Chunk::Shared(x), Chunk::Shared(y)) if Arc::ptr_eq(x, y))
        );
        assert_eq!(get(path, &tag).status, 304);
        let index_tag = format!("\"{}-s2of4\"", snap.id);
        assert_eq!(get(path, &index_tag).status, 200);
        assert_eq!(get("/counters?num_shards=4&shard=2", &tag).status, 200);
        // One shard of one by a field is the whole table, under its tag.
        let one = get(
            "/counters?num_shards=1&shard=0&sharding_field=switch_id",
            &snap.etag,
        );
        assert_eq!(one.status, 304);
        assert_eq!(one.body_bytes(), &snap.csv[..]);
        // gzip: -gz after the field.
        let gz = r.handle(&Request::get(path).with_header("Accept-Encoding", "gzip"));
        let tag_gz = format!("\"{}-s2of4-by-switch_id-gz\"", snap.id);
        assert_eq!(gz.header_value("etag"), Some(tag_gz.as_str()));
    }

    #[test]
    fn an_unknown_sharding_field_is_refused_before_any_fault() {
        let (r, _g) = routes(Faults {
            fail_pct: 100.0,
            slow: Duration::from_secs(5),
        });
        let resp = r.handle(&Request::get(
            "/counters?num_shards=2&shard=0&sharding_field=port_guid",
        ));
        assert_eq!(resp.status, 400);
        assert!(resp.delay.is_zero());
        let body = String::from_utf8(resp.body_bytes()).unwrap();
        assert!(
            body.starts_with(
                "{\"error\":\"unknown sharding_field: port_guid (want one of switch_id, "
            ),
            "{body}"
        );
        // A known one goes on to the fault.
        let resp = r.handle(&Request::get(
            "/counters?num_shards=2&shard=0&sharding_field=switch_id",
        ));
        assert_eq!(resp.status, 500);
    }

    #[test]
    fn counters_in_gzip_is_deflated_once_with_its_own_tag() {
        use std::io::Read;
        let (r, g) = routes(Faults::default());
        let snap = g.cell().load().unwrap();
        let gz = |inm: &str| {
            let mut req = Request::get("/counters").with_header("Accept-Encoding", "gzip");
            if !inm.is_empty() {
                req = req.with_header("If-None-Match", inm);
            }
            r.handle(&req)
        };
        let resp = gz("");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header_value("content-encoding"), Some("gzip"));
        assert_eq!(resp.header_value("vary"), Some("Accept-Encoding"));
        let tag = format!("\"{}-gz\"", snap.id);
        assert_eq!(resp.header_value("etag"), Some(tag.as_str()));
        let mut csv = Vec::new();
        flate2::read::GzDecoder::new(&resp.body_bytes()[..])
            .read_to_end(&mut csv)
            .unwrap();
        assert_eq!(csv, &snap.csv[..]);
        assert_eq!(gz(&tag).status, 304);
        assert_eq!(gz(&snap.etag).status, 200);
        // The deflated body is the snapshot's, shared by every request.
        let (a, b) = (gz("").body, gz("").body);
        assert!(
            matches!((&a[1], &b[1]), (Chunk::Shared(x), Chunk::Shared(y)) if Arc::ptr_eq(x, y))
        );
        // Without Accept-Encoding: the plain body and tag.
        let plain = r.handle(&Request::get("/counters"));
        assert_eq!(plain.header_value("content-encoding"), None);
        assert_eq!(plain.header_value("etag"), Some(snap.etag.as_str()));
    }

    #[test]
    fn counters_serves_the_csv_with_its_headers() {
        let (r, g) = routes(Faults::default());
        let snap = g.cell().load().unwrap();
        let resp = r.handle(&Request::get("/counters"));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header_value("content-type"), Some(CSV));
        assert_eq!(resp.header_value("etag"), Some(snap.etag.as_str()));
        assert_eq!(
            resp.header_value("x-snapshot-ts"),
            Some(snap.ts_ms.to_string().as_str())
        );
        assert_eq!(resp.header_value("cache-control"), Some("no-store"));
        let body = String::from_utf8(resp.body_bytes()).unwrap();
        assert!(body.starts_with("switch_id,bandwidth_gbps,"));
        assert_eq!(body.lines().count(), 4);
    }

    #[test]
    fn conditional_get_gives_304_until_the_next_tick() {
        let (r, mut g) = routes(Faults::default());
        let snap = g.cell().load().unwrap();
        for inm in [
            snap.etag.clone(),
            format!("W/{}", snap.etag),
            "*".into(),
            format!("\"x\", {}", snap.etag),
        ] {
            let resp = r.handle(&Request::get("/counters").with_header("If-None-Match", &inm));
            assert_eq!(resp.status, 304, "{inm}");
            assert_eq!(resp.header_value("etag"), Some(snap.etag.as_str()));
            assert!(resp.header_value("x-snapshot-ts").is_some());
        }
        // Sent on two lines, the header is still one list.
        let two_lines = Request::get("/counters")
            .with_header("If-None-Match", "\"old\"")
            .with_header("If-None-Match", &snap.etag);
        let resp = r.handle(&two_lines);
        assert_eq!(resp.status, 304);
        assert_eq!(
            resp.body_len(),
            snap.csv.len(),
            "Content-Length of the 200, body unsent"
        );
        g.tick();
        let resp = r.handle(&Request::get("/counters").with_header("If-None-Match", &snap.etag));
        assert_eq!(resp.status, 200);
        assert_ne!(resp.header_value("etag"), Some(snap.etag.as_str()));
    }

    #[test]
    fn fault_injection_answers_500_with_a_text_body() {
        let (r, _g) = routes(Faults {
            fail_pct: 100.0,
            slow: Duration::ZERO,
        });
        let resp = r.handle(&Request::get("/counters"));
        assert_eq!(resp.status, 500);
        assert_eq!(resp.header_value("content-type"), Some(http::TEXT));
        // Faults touch /counters only.
        assert_eq!(r.handle(&Request::get("/health")).status, 200);
    }

    #[test]
    fn slow_fault_delays_about_a_fifth() {
        let slow = Duration::from_millis(30);
        let (r, _g) = routes(Faults {
            fail_pct: 0.0,
            slow,
        });
        let mut delayed = 0;
        for _ in 0..2000 {
            let resp = r.handle(&Request::get("/counters"));
            assert_eq!(resp.status, 200);
            assert!(resp.delay.is_zero() || resp.delay == slow);
            delayed += usize::from(resp.delay == slow);
        }
        // Binomial(2000, 0.2): mean 400, sd 18; this band is ±5.6 sd.
        assert!((300..=500).contains(&delayed), "{delayed}");
        assert!(r.handle(&Request::get("/health")).delay.is_zero());
    }

    #[test]
    fn unknown_paths_and_methods() {
        let (r, _g) = routes(Faults::default());
        assert_eq!(r.handle(&Request::get("/nope")).status, 404);
        let resp = r.handle(&Request::new("POST", "/counters"));
        assert_eq!(resp.status, 405);
        assert_eq!(resp.header_value("allow"), Some("GET, HEAD"));
        assert_eq!(r.handle(&Request::new("HEAD", "/counters")).status, 200);
        let health = r.handle(&Request::get("/health"));
        assert_eq!(health.body_bytes(), b"{\"ok\":true}");
    }
}
