//! data_server's routes: `GET /counters` (conditional, with fault
//! injection) and `GET /health`.

use std::sync::Arc;
use std::time::Duration;

use super::metrics::{Fault, ProducerStats};
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

    fn counters(&self, req: &Request) -> Response {
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
        self.answer(req).delayed(delay)
    }

    fn answer(&self, req: &Request) -> Response {
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
        let Some(snap) = self.cell.load() else {
            return Response::error(503, "no snapshot yet");
        };
        // gzip when the client takes it: deflated once per snapshot.
        let gzip = gzip::accepted(req.headers_named("Accept-Encoding"))
            .then(|| snap.gzip_body())
            .flatten();
        let mut resp = Response::new(200).header("Content-Type", CSV);
        let etag = match gzip {
            Some(body) => {
                resp.body = body;
                resp = resp.header("Content-Encoding", "gzip");
                &snap.etag_gz
            }
            None => {
                resp = resp.chunk(snap.csv.clone());
                &snap.etag
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
        // No endpoint here takes a parameter: a stray one is a mistake.
        if let Err(e) = crate::query::strict(&req.query, &[]) {
            return Response::error(400, &e.to_string());
        }
        match req.path.as_str() {
            "/counters" => self.counters(req),
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
