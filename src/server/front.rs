//! The front door: what every request passes before a route sees it, and
//! what every answer gets on its way out. Shared by both servers, with the
//! knobs that tune it.
//!
//! Heads over their bounds never get this far (see `head` and `relay`).
//! In order: the per-client rate limit (429 with `Retry-After`), the
//! in-flight cap (503), then the bearer token (401). Answers then get the
//! request's `X-Request-Id`, and `Connection: close` when the front asked
//! for it (the client did, or its connection has served
//! `KEEPALIVE_REQUESTS`). When a knob is off its check costs one branch.

use std::time::{Duration, Instant};

use crate::auth::{self, Token};
use crate::config::{Error, Knob, Values};
use crate::http::{Request, Response};
use crate::ratelimit::{self, Inflight, InflightGuard, RateLimiter};

pub static KNOBS: &[Knob] = &[
    Knob {
        env: "MAX_CONNECTIONS",
        flag: "max-connections",
        default: "1024",
        help: "Client connections open at once, 16 to 1000000; beyond, new ones get 503 at once.",
    },
    Knob {
        env: "IDLE_TIMEOUT_MS",
        flag: "idle-timeout-ms",
        default: "15000",
        help: "A connection silent (or not reading) this long is closed, and a request head must arrive within it; 100 to 3600000.",
    },
    Knob {
        env: "KEEPALIVE_REQUESTS",
        flag: "keepalive-requests",
        default: "100",
        help: "Requests one connection may make before it is asked to reconnect, 1 to 1000000000.",
    },
    Knob {
        env: "RATE_LIMIT_RPS",
        flag: "rate-limit-rps",
        default: "0",
        help: "Requests per second per client IP (IPv6: per /64) before 429; 0 = off.",
    },
    Knob {
        env: "RATE_LIMIT_BURST",
        flag: "rate-limit-burst",
        default: "0",
        help: "Requests a client may make at once above its rate; 0 = the rate, rounded up.",
    },
    Knob {
        env: "MAX_INFLIGHT",
        flag: "max-inflight",
        default: "0",
        help: "Requests handled at once before 503 for the excess; 0 = off.",
    },
];

/// The front's knobs, validated.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub keepalive_requests: u32,
    pub rate_rps: f64,
    pub rate_burst: u32,
    pub max_inflight: usize,
}

impl Default for Limits {
    /// The defaults of [`KNOBS`].
    fn default() -> Limits {
        Limits {
            max_connections: 1024,
            idle_timeout: Duration::from_millis(15_000),
            keepalive_requests: 100,
            rate_rps: 0.0,
            rate_burst: 0,
            max_inflight: 0,
        }
    }
}

impl Limits {
    pub fn from_values(v: &Values) -> Result<Limits, Error> {
        Ok(Limits {
            max_connections: v.number("MAX_CONNECTIONS", 16, 1_000_000)?,
            idle_timeout: Duration::from_millis(v.number("IDLE_TIMEOUT_MS", 100, 3_600_000)?),
            keepalive_requests: v.number("KEEPALIVE_REQUESTS", 1, 1_000_000_000)?,
            rate_rps: v.number("RATE_LIMIT_RPS", 0.0, 1e9)?,
            rate_burst: v.number("RATE_LIMIT_BURST", 0, 1_000_000_000)?,
            max_inflight: v.number("MAX_INFLIGHT", 0, 1_000_000)?,
        })
    }
}

/// Who may reach which paths.
#[derive(Debug, Default)]
pub struct Access {
    /// Required on every path but `open_paths` when set.
    pub token: Option<Token>,
    /// Paths served without a token (liveness, readiness).
    pub open_paths: &'static [&'static str],
}

/// The front's state, shared by every worker.
pub struct Front {
    limits: Limits,
    access: Access,
    rate: Option<RateLimiter>,
    inflight: Option<Inflight>,
}

/// Why a request was stopped at the door, and the answer it gets.
pub struct Refusal {
    pub response: Response,
    /// The connection should end (the request may not have been read whole).
    pub close: bool,
}

impl Front {
    pub fn new(limits: Limits, access: Access) -> Front {
        Front {
            rate: RateLimiter::new(limits.rate_rps, limits.rate_burst),
            inflight: Inflight::new(limits.max_inflight),
            limits,
            access,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// True if a bearer token guards (some of) the paths.
    pub fn requires_token(&self) -> bool {
        self.access.token.is_some()
    }

    /// Lets a request in (holding an in-flight slot while it is handled) or
    /// says how it is refused.
    pub fn admit(&self, req: &Request, now: Instant) -> Result<Option<InflightGuard>, Refusal> {
        if let (Some(rate), Some(remote)) = (&self.rate, req.remote) {
            if let Err(wait) = rate.check(remote.ip(), now) {
                let response = Response::error(429, "rate limit exceeded")
                    .header("Retry-After", ratelimit::retry_after_secs(wait).to_string());
                return Err(Refusal {
                    response,
                    close: false,
                });
            }
        }
        let guard = match &self.inflight {
            None => None,
            Some(inflight) => match inflight.try_enter() {
                Some(guard) => Some(guard),
                None => {
                    let response =
                        Response::error(503, "server busy, try again").header("Retry-After", "1");
                    return Err(Refusal {
                        response,
                        close: false,
                    });
                }
            },
        };
        if let Some(token) = &self.access.token {
            let open = self.access.open_paths.contains(&req.path.as_str());
            if !open && !token.verify(req.header("Authorization")) {
                return Err(Refusal {
                    response: auth::unauthorized(),
                    close: false,
                });
            }
        }
        Ok(guard)
    }

    /// Adds the request id to an answer and says whether the connection
    /// should end after it: when the front asked (`Connection: close`), or
    /// when the request was refused in a way that leaves the stream in
    /// doubt (`close`).
    pub fn seal(&self, req: &Request, resp: &mut Response, close: bool) -> bool {
        resp.headers.push(("X-Request-Id", req.id.clone()));
        let asked = req
            .headers_named("Connection")
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")));
        close | asked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str) -> Request {
        let mut r = Request::get(path);
        r.remote = Some("10.0.0.1:40000".parse().unwrap());
        r.id = "rid".into();
        r
    }

    fn status(front: &Front, r: &Request) -> u16 {
        match front.admit(r, Instant::now()) {
            Ok(_) => 200,
            Err(refusal) => refusal.response.status,
        }
    }

    #[test]
    fn rate_limit_answers_429_with_retry_after() {
        let limits = Limits {
            rate_rps: 1.0,
            rate_burst: 2,
            ..Limits::default()
        };
        let front = Front::new(limits, Access::default());
        let now = Instant::now();
        let r = req("/health");
        assert!(front.admit(&r, now).is_ok());
        assert!(front.admit(&r, now).is_ok());
        let refusal = front.admit(&r, now).err().unwrap();
        assert_eq!(refusal.response.status, 429);
        assert_eq!(refusal.response.header_value("retry-after"), Some("1"));
        let mut other = req("/health");
        other.remote = Some("10.0.0.2:1".parse().unwrap());
        assert!(front.admit(&other, now).is_ok(), "limits are per client");
    }

    #[test]
    fn inflight_cap_sheds_the_excess() {
        let limits = Limits {
            max_inflight: 1,
            ..Limits::default()
        };
        let front = Front::new(limits, Access::default());
        let held = front.admit(&req("/a"), Instant::now()).ok().unwrap();
        assert_eq!(status(&front, &req("/b")), 503);
        drop(held);
        assert_eq!(status(&front, &req("/b")), 200);
    }

    #[test]
    fn token_guards_all_but_open_paths() {
        let token = auth::load(Some("s3cret-token"), None).unwrap();
        let access = Access {
            token,
            open_paths: &["/health"],
        };
        let front = Front::new(Limits::default(), access);
        assert_eq!(status(&front, &req("/stats")), 401);
        assert_eq!(status(&front, &req("/health")), 200);
        let good = req("/stats").with_header("Authorization", "Bearer s3cret-token");
        assert_eq!(status(&front, &good), 200);
        let bad = req("/stats").with_header("Authorization", "Bearer s3cret-tokeN");
        assert_eq!(status(&front, &bad), 401);
    }

    #[test]
    fn seal_adds_request_id_and_close_when_asked() {
        let front = Front::new(Limits::default(), Access::default());
        let mut resp = Response::new(200);
        assert!(!front.seal(&req("/health"), &mut resp, false));
        assert_eq!(resp.header_value("x-request-id"), Some("rid"));
        let asked = req("/health").with_header("Connection", "keep-alive, Close");
        assert!(front.seal(&asked, &mut Response::new(200), false));
        assert!(front.seal(&req("/health"), &mut Response::new(200), true));
    }
}
