//! The front door: what every request passes before a route sees it, and
//! what every answer gets on its way out. Shared by both servers, with the
//! knobs that tune it.
//!
//! Heads over their bounds never get this far (tiny_http refuses them).
//! In order: the per-client rate limit (429 with `Retry-After`), the
//! in-flight cap (503), then the bearer token (401). When a knob is off its
//! check costs one branch. The connection knobs (caps, idle timeout,
//! keep-alive) are enforced by tiny_http itself.

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
        env: "MAX_CONNECTIONS_PER_IP",
        flag: "max-connections-per-ip",
        default: "0",
        help: "Client connections open at once from one address (IPv6: one /64); beyond, 503; 0 = off.",
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
        default: "1000",
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

/// The HTTP knobs (the connection ones tiny_http enforces), validated.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    /// 0 = no cap per address.
    pub max_connections_per_ip: usize,
    pub idle_timeout: Duration,
    pub keepalive_requests: u32,
    pub rate_rps: f64,
    pub rate_burst: u32,
    pub max_inflight: usize,
}

impl Limits {
    pub fn from_values(v: &Values) -> Result<Limits, Error> {
        Ok(Limits {
            max_connections: v.number("MAX_CONNECTIONS", 16, 1_000_000)?,
            max_connections_per_ip: v.number("MAX_CONNECTIONS_PER_IP", 0, 1_000_000)?,
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

/// The front door's state, shared by every connection's thread.
pub struct Front {
    limits: Limits,
    access: Access,
    rate: Option<RateLimiter>,
    inflight: Option<Inflight>,
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
    /// gives the answer that refuses it.
    pub fn admit(&self, req: &Request, now: Instant) -> Result<Option<InflightGuard>, Response> {
        if let (Some(rate), Some(remote)) = (&self.rate, req.remote) {
            if let Err(wait) = rate.check(remote.ip(), now) {
                return Err(Response::error(429, "rate limit exceeded")
                    .header("Retry-After", ratelimit::retry_after_secs(wait).to_string()));
            }
        }
        let guard = match self.inflight.as_ref().map(Inflight::try_enter) {
            Some(None) => {
                return Err(
                    Response::error(503, "server busy, try again").header("Retry-After", "1")
                );
            }
            Some(guard) => guard,
            None => None,
        };
        if let Some(token) = &self.access.token {
            let open = self.access.open_paths.contains(&req.path.as_str());
            if !open && !token.verify(req.header("Authorization")) {
                return Err(auth::unauthorized());
            }
        }
        Ok(guard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Values;

    /// The defaults of [`KNOBS`].
    fn defaults() -> Limits {
        Limits::from_values(&Values::defaults(KNOBS)).unwrap()
    }

    fn req(path: &str) -> Request {
        let mut r = Request::get(path);
        r.remote = Some("10.0.0.1:40000".parse().unwrap());
        r.id = "rid".into();
        r
    }

    fn status(front: &Front, r: &Request) -> u16 {
        match front.admit(r, Instant::now()) {
            Ok(_) => 200,
            Err(refusal) => refusal.status,
        }
    }

    #[test]
    fn rate_limit_answers_429_with_retry_after() {
        let limits = Limits {
            rate_rps: 1.0,
            rate_burst: 2,
            ..defaults()
        };
        let front = Front::new(limits, Access::default());
        let now = Instant::now();
        let r = req("/health");
        assert!(front.admit(&r, now).is_ok());
        assert!(front.admit(&r, now).is_ok());
        let refusal = front.admit(&r, now).err().unwrap();
        assert_eq!(refusal.status, 429);
        assert_eq!(refusal.header_value("retry-after"), Some("1"));
        let mut other = req("/health");
        other.remote = Some("10.0.0.2:1".parse().unwrap());
        assert!(front.admit(&other, now).is_ok(), "limits are per client");
    }

    #[test]
    fn inflight_cap_sheds_the_excess() {
        let limits = Limits {
            max_inflight: 1,
            ..defaults()
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
        let front = Front::new(defaults(), access);
        assert_eq!(status(&front, &req("/stats")), 401);
        assert_eq!(status(&front, &req("/health")), 200);
        let good = req("/stats").with_header("Authorization", "Bearer s3cret-token");
        assert_eq!(status(&front, &good), 200);
        let bad = req("/stats").with_header("Authorization", "Bearer s3cret-tokeN");
        assert_eq!(status(&front, &bad), 401);
    }
}
