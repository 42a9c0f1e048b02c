//! The poller: one thread that fetches the upstream CSV every period with
//! `If-None-Match`, validates it, and swaps a new snapshot into the store.
//!
//! A 304 confirms the current snapshot; a 200 is parsed with no lock held and
//! swapped in whole. Anything else (no connection, a timeout, a 5xx, a body
//! too large or not valid) is counted and logged as `poll.error`, and the
//! last good snapshot stays in place: bad upstream data never replaces good.

use std::fmt;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::breaker::{Breaker, Transition, backoff};
use super::dialect::Rules;
use super::tls;
use super::upstream::{Resilience, UpstreamAuth, UpstreamClient};
use crate::clock;
use crate::consumer::store::State;
use crate::consumer::store::snapshot::{self, Limits, Origin, Snapshot};
use crate::json;
use crate::lifecycle::Stop;
use crate::log::{Event, Level};

/// Why a poll failed.
#[derive(Debug)]
pub enum PollError {
    /// No connection: refused, unreachable, or the host name did not resolve.
    Connect(String),
    /// No complete answer within `UPSTREAM_TIMEOUT_MS`.
    Timeout,
    /// An answer other than 200 or 304, with what its body said (the
    /// `error` of a JSON body, or its first line; cleaned and clipped).
    Status(u16, Option<String>),
    /// A 304 although we hold no snapshot it could refer to.
    UnexpectedNotModified,
    /// A body larger than `UPSTREAM_MAX_BYTES`.
    TooLarge(u64),
    /// A body that is not a valid snapshot.
    Invalid(snapshot::Error),
    /// Any other transport failure (a reset mid-body, a protocol error).
    Transport(String),
    /// The TLS handshake or a TLS record failed: an untrusted, expired or
    /// misnamed certificate, or an upstream that does not speak TLS.
    Tls(String),
}

impl PollError {
    /// A short, stable name for the kind of failure (one of `store::figures::KINDS`).
    pub fn kind(&self) -> &'static str {
        match self {
            PollError::Connect(_) => "connect",
            PollError::Timeout => "timeout",
            PollError::Status(..) | PollError::UnexpectedNotModified => "http_status",
            PollError::TooLarge(_) => "body_too_large",
            PollError::Invalid(_) => "invalid_csv",
            PollError::Transport(_) => "transport",
            PollError::Tls(_) => "tls",
        }
    }
}

impl fmt::Display for PollError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PollError::Connect(e) => write!(f, "connect: {e}"),
            PollError::Timeout => write!(f, "timeout: no complete answer in time"),
            PollError::Status(s @ 300..=399, _) => write!(
                f,
                "http: upstream answered {s} (redirects are not followed: poll the target URL)"
            ),
            PollError::Status(s, None) => write!(f, "http: upstream answered {s}"),
            PollError::Status(s, Some(said)) => {
                write!(f, "http: upstream answered {s}: {said}")
            }
            PollError::UnexpectedNotModified => write!(f, "http: 304 before any snapshot"),
            PollError::TooLarge(n) => write!(f, "body: larger than {n} bytes"),
            PollError::Invalid(e) => write!(f, "{e}"),
            PollError::Transport(e) => write!(f, "transport: {e}"),
            PollError::Tls(e) => write!(f, "tls: {e}"),
        }
    }
}

impl std::error::Error for PollError {}

impl From<ureq::Error> for PollError {
    fn from(e: ureq::Error) -> PollError {
        use std::io::ErrorKind as K;
        if let Some(reason) = tls::failure(&e) {
            return PollError::Tls(reason);
        }
        match e {
            ureq::Error::Timeout(_) => PollError::Timeout,
            ureq::Error::HostNotFound => PollError::Connect("host not found".into()),
            ureq::Error::ConnectionFailed => PollError::Connect("connection failed".into()),
            ureq::Error::BodyExceedsLimit(n) => PollError::TooLarge(n),
            ureq::Error::Io(io) => match io.kind() {
                K::TimedOut | K::WouldBlock => PollError::Timeout,
                K::ConnectionRefused
                | K::AddrNotAvailable
                | K::HostUnreachable
                | K::NetworkUnreachable => PollError::Connect(io.to_string()),
                _ => PollError::Transport(io.to_string()),
            },
            other => PollError::Transport(other.to_string()),
        }
    }
}

/// A request to `url` that failed, as a [`PollError`]. An answer whose head
/// does not parse as HTTP, from an `http://` URL, is most likely a TLS
/// server's alert: the reason says so (the kind stays `transport`).
fn call_error(e: ureq::Error, url: &str) -> PollError {
    let text = e.to_string();
    if url.starts_with("http://") && text.starts_with("protocol: http parse fail") {
        return PollError::Transport(format!(
            "{text} (not HTTP: if the upstream speaks TLS, poll its https:// URL)"
        ));
    }
    e.into()
}

/// The most an error answer's body is read for [`said`].
const SAID_MAX_BYTES: u64 = 1024;

/// What an error answer's body says, for the log: the `error` member of a
/// JSON body (ours, and most APIs'), else its first line; at most 160
/// bytes of printable text. Upstream text is untrusted.
fn said(response: &mut ureq::http::Response<ureq::Body>) -> Option<String> {
    let mut body = Vec::new();
    let reader = response.body_mut().as_reader();
    std::io::Read::read_to_end(&mut std::io::Read::take(reader, SAID_MAX_BYTES), &mut body).ok()?;
    let text = String::from_utf8_lossy(&body);
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| text.lines().next().unwrap_or("").to_string());
    let clean: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let clean = clean.trim();
    (!clean.is_empty()).then(|| json::clipped(clean, 160))
}

/// What a successful poll did.
#[derive(Debug)]
pub enum Outcome {
    /// 304: the current snapshot is still current.
    NotModified,
    /// 200 with the very body the current snapshot was built from (an
    /// upstream without entity tags, like UFM Telemetry): nothing new, no
    /// new snapshot; its age keeps counting from the data's time.
    Unchanged { bytes: usize, fetch: Duration },
    /// 200: a new snapshot was swapped in.
    Updated {
        rows: usize,
        bytes: usize,
        /// The request and the body's transfer, not counting `queued`.
        fetch: Duration,
        /// Waiting for a turn to read and parse (other upstreams' bodies).
        queued: Duration,
        parse: Duration,
    },
}

pub struct Poller {
    agent: ureq::Agent,
    /// Its upstream's index in `UPSTREAM_URLS` (0 for `UPSTREAM_URL`).
    shard: usize,
    url: String,
    period: Duration,
    resilience: Resilience,
    state: Arc<State>,
    /// The `ETag` of the snapshot we hold, exactly as received.
    etag: Option<String>,
    /// The hash of the body the snapshot we hold was built from, and the
    /// `X-Snapshot-Ts` and `ETag` it came with: the same again is no news.
    /// (A new tag on the same body is a new snapshot: our id is the
    /// upstream's tag and the body's hash, whatever we held before.)
    held: Option<(u64, Option<u64>, Option<String>)>,
    /// How its header's columns are read.
    dialect: Rules,
    /// `Authorization` to send upstream, if it wants a token or Basic
    /// credentials. A secret: it goes into the request and nowhere else.
    authorization: Option<String>,
}

impl Poller {
    /// A poller of upstream `shard` of `state` (its URL is there), reaching
    /// it as `client` says (TLS roots, credentials).
    ///
    /// Redirects are not followed: a 3xx is a failed poll naming it, so
    /// credentials only ever go to the configured URL, and an `https://`
    /// upstream cannot send the poller to plain `http://`.
    pub fn new(
        shard: usize,
        period: Duration,
        resilience: Resilience,
        client: &UpstreamClient,
        state: Arc<State>,
    ) -> Poller {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(resilience.timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .tls_config(client.tls.config())
            .user_agent(format!("fabric-telemetry/{}", crate::VERSION))
            .build()
            .into();
        let url = state
            .shards
            .get(shard)
            .map_or(String::new(), |s| s.url.clone());
        Poller {
            agent,
            shard,
            url,
            period,
            resilience,
            state,
            etag: None,
            held: None,
            dialect: client.dialect.clone(),
            authorization: client.auth.as_ref().map(|a| a.header_value()),
        }
    }

    /// One request to the upstream, and a swap if it brought new data.
    pub fn poll_once(&mut self) -> Result<Outcome, PollError> {
        let started = Instant::now();
        let mut request = self.agent.get(&self.url);
        if let Some(tag) = &self.etag {
            request = request.header("If-None-Match", tag);
        }
        if let Some(auth) = &self.authorization {
            request = request.header("Authorization", auth);
        }
        let mut response = request.call().map_err(|e| call_error(e, &self.url))?;
        match response.status().as_u16() {
            200 => {}
            304 => {
                let Some(current) = self.current() else {
                    return Err(PollError::UnexpectedNotModified);
                };
                // A producer that restarts its tags (the original one
                // counts from 1 again) may answer 304 to a tag that now
                // names other data: its snapshot time tells. Fetch again,
                // unconditionally (once: no tag is sent this time).
                let ts = response
                    .headers()
                    .get("x-snapshot-ts")
                    .and_then(|v| v.to_str().ok())
                    .and_then(snapshot_ts_ms);
                if let (Some(tag), Some(ts)) = (self.etag.take(), ts) {
                    if Some(ts) != current.producer_ts_ms() {
                        Event::new(Level::Warn, "poll.tag_reused")
                            .str("etag", json::clip(&tag, 128))
                            .uint("held_ts_ms", current.producer_ts_ms().unwrap_or(0))
                            .uint("ts_ms", ts)
                            .emit();
                        drop(response);
                        return self.poll_once();
                    }
                    self.etag = Some(tag);
                }
                current.confirm(clock::epoch_ms());
                return Ok(Outcome::NotModified);
            }
            other => return Err(PollError::Status(other, said(&mut response))),
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let etag = header("etag");
        let producer_ts_ms = header("x-snapshot-ts").and_then(|v| snapshot_ts_ms(&v));
        // A turn before the body is read: with many upstreams answering at
        // once, the rest wait unread (the connection holds them back), so
        // at most one body per core is in memory beside the snapshots.
        let queueing = Instant::now();
        let mut permit = self.state.parse_permit();
        let queued = queueing.elapsed();
        let reader = response
            .body_mut()
            .with_config()
            .limit(self.resilience.max_bytes)
            .reader();
        std::io::Read::read_to_end(&mut { reader }, &mut permit.body)
            .map_err(|e| PollError::from(ureq::Error::from(e)))?;
        let body = &permit.body;
        let fetch = started.elapsed().saturating_sub(queued);

        // The same bytes as the snapshot we hold (and the same time and
        // tag, or still none): a 304 in all but name. Checked before any
        // parsing.
        let hash = crate::xxh64::hash(body, 0);
        let same = self
            .held
            .as_ref()
            .is_some_and(|(h, ts, tag)| (*h, *ts, tag) == (hash, producer_ts_ms, &etag));
        if same && self.current().is_some() {
            self.etag = etag;
            return Ok(Outcome::Unchanged {
                bytes: body.len(),
                fetch,
            });
        }
        let origin = Origin {
            id: snapshot_id_of(etag.as_deref(), hash),
            producer_ts_ms,
            fetched_ms: clock::epoch_ms(),
        };
        let limits = Limits {
            max_rows: self.resilience.max_rows,
        };
        let parsing = Instant::now();
        let snap = Snapshot::parse_as(body, origin, limits, |h| self.dialect.layout(h))
            .map_err(PollError::Invalid)?;
        snap.prepare();
        let parse = parsing.elapsed();
        let (rows, bytes) = (snap.rows(), body.len());
        // The turn ends, and its buffer goes back, before the swap.
        drop(permit);
        // Parsed with no lock held; the write lock is taken for the swap
        // alone, and the old snapshot dropped after it is released.
        self.state.publish(self.shard, Arc::new(snap));
        self.held = Some((hash, producer_ts_ms, etag.clone()));
        self.etag = etag;
        Ok(Outcome::Updated {
            rows,
            bytes,
            fetch,
            queued,
            parse,
        })
    }

    /// The snapshot this poller's upstream last gave.
    fn current(&self) -> Option<Arc<Snapshot>> {
        self.state
            .shards
            .get(self.shard)
            .and_then(|s| s.snap.load())
    }

    /// Polls, then records and logs the result; true on success.
    fn cycle(&mut self, failures: u32) -> bool {
        let started = Instant::now();
        let result = self.poll_once();
        let cycle = started.elapsed();
        let now = clock::epoch_ms();
        match result {
            Ok(outcome) => {
                self.state.stats.update_poll(self.shard, |p| {
                    p.last_cycle = Some(cycle);
                    p.consecutive_failures = 0;
                    p.last_success_ms = Some(now);
                    match outcome {
                        Outcome::NotModified => p.not_modified += 1,
                        Outcome::Unchanged { .. } => p.unchanged += 1,
                        Outcome::Updated { .. } => p.updated += 1,
                    }
                });
                let id = self.current().map(|s| s.id().to_string());
                let event = match outcome {
                    Outcome::NotModified => {
                        Event::new(Level::Debug, "poll.run").uint("status", 304)
                    }
                    Outcome::Unchanged { bytes, fetch } => Event::new(Level::Debug, "poll.run")
                        .uint("status", 200)
                        .bool("unchanged", true)
                        .uint("bytes", bytes as u64)
                        .ms("fetch_ms", fetch),
                    Outcome::Updated {
                        rows,
                        bytes,
                        fetch,
                        queued,
                        parse,
                    } => Event::new(Level::Info, "poll.run")
                        .uint("status", 200)
                        .uint("rows", rows as u64)
                        .uint("bytes", bytes as u64)
                        .ms("fetch_ms", fetch)
                        .ms("queue_ms", queued)
                        .ms("parse_ms", parse),
                };
                let event = match self.state.sharded() {
                    true => event.str("upstream", &self.url),
                    false => event,
                };
                event
                    .str("snapshot_id", id.as_deref().unwrap_or(""))
                    .ms("cycle_ms", cycle)
                    .emit();
                true
            }
            Err(e) => {
                let reason = e.to_string();
                self.state.stats.update_poll(self.shard, |p| {
                    p.last_cycle = Some(cycle);
                    p.failed += 1;
                    p.consecutive_failures = u64::from(failures) + 1;
                    p.count_error(e.kind());
                    p.last_error = Some(reason.clone());
                    p.last_error_ms = Some(now);
                });
                Event::new(Level::Warn, "poll.error")
                    .str("kind", e.kind())
                    .str("reason", &reason)
                    .str("url", &self.url)
                    .uint("consecutive_failures", u64::from(failures) + 1)
                    .ms("cycle_ms", cycle)
                    .emit();
                false
            }
        }
    }

    /// Polls at once, then every period (start to start) while it works;
    /// after failures, backs off with jitter and, past the threshold, lets
    /// the breaker hold polls back. Runs until `stop`.
    pub fn spawn(mut self, stop: Stop) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("poller".into())
            .spawn(move || {
                let r = self.resilience.clone();
                let mut breaker = Breaker::new(r.breaker_failures, r.breaker_cooldown);
                let mut rng = fastrand::Rng::new();
                let mut failures: u32 = 0;
                loop {
                    let started = Instant::now();
                    if let Some(t) = breaker.before_poll(started) {
                        self.log_breaker(t, failures);
                    }
                    let transition = if self.cycle(failures) {
                        failures = 0;
                        breaker.on_success()
                    } else {
                        failures = failures.saturating_add(1);
                        breaker.on_failure(failures, Instant::now())
                    };
                    if let Some(t) = transition {
                        self.log_breaker(t, failures);
                    }
                    let wait = backoff(self.period, failures, r.backoff_max, rng.f64());
                    let base = if failures == 0 {
                        started
                    } else {
                        Instant::now()
                    };
                    let next = breaker.ready_at((base + wait).max(Instant::now()));
                    let state = breaker.state();
                    self.state.stats.update_poll(self.shard, |p| {
                        p.backoff = next.saturating_duration_since(Instant::now());
                        p.breaker = state.name();
                    });
                    if stop.wait_until(next) {
                        return;
                    }
                }
            })
    }

    fn log_breaker(&self, t: Transition, failures: u32) {
        let level = if t.to == "open" {
            Level::Warn
        } else {
            Level::Info
        };
        let event = Event::new(level, "poll.breaker");
        let event = match self.state.sharded() {
            true => event.str("upstream", &self.url),
            false => event,
        };
        event
            .str("from", t.from)
            .str("to", t.to)
            .uint("consecutive_failures", u64::from(failures))
            .uint(
                "cooldown_ms",
                self.resilience.breaker_cooldown.as_millis() as u64,
            )
            .emit();
    }
}

/// The WARN lines a risky upstream setup earns at start, naming the
/// upstreams concerned: `upstream.insecure` when certificates go unchecked
/// (`UPSTREAM_INSECURE_SKIP_VERIFY`), `upstream.cleartext_credentials`
/// when Basic credentials would cross plain `http://`. Never the secret.
pub fn warn_at_start(urls: &[String], client: &UpstreamClient) {
    let of_scheme = |scheme: &str| {
        urls.iter()
            .filter(|u| u.starts_with(scheme))
            .cloned()
            .collect::<Vec<_>>()
            .join(",")
    };
    if client.tls.insecure_skip_verify {
        Event::new(Level::Warn, "upstream.insecure")
            .str("upstreams", &of_scheme("https://"))
            .str(
                "reason",
                "UPSTREAM_INSECURE_SKIP_VERIFY: any certificate is accepted, so anyone on the path can pose as the upstream",
            )
            .emit();
    }
    if let Some(auth @ UpstreamAuth::Basic(_)) = &client.auth {
        let plain = of_scheme("http://");
        if !plain.is_empty() {
            Event::new(Level::Warn, "upstream.cleartext_credentials")
                .str("upstreams", &plain)
                .str("auth", auth.scheme())
                .str(
                    "reason",
                    "Basic credentials are sent unencrypted to http:// upstreams (use https://)",
                )
                .emit();
        }
    }
}

/// The snapshot id an `ETag` names: without `W/` and quotes. `None` if it
/// is empty or holds characters we could not echo in our own `ETag`.
pub fn snapshot_id(etag: &str) -> Option<String> {
    let tag = etag.trim();
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    let tag = tag
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(tag);
    let clean = !tag.is_empty()
        && tag.len() <= 256
        && tag
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\');
    clean.then(|| tag.to_string())
}

/// Reads `X-Snapshot-Ts` as epoch milliseconds. A value that can only be
/// seconds (2001–5138 in seconds, 1970–1973 in ms) is taken as seconds;
/// anything else implausible (0, before 2000, not a number) is ignored, and
/// the age then counts from the fetch.
pub fn snapshot_ts_ms(value: &str) -> Option<u64> {
    const Y2000_MS: u64 = 946_684_800_000;
    let ts: u64 = value.trim().parse().ok()?;
    match ts {
        Y2000_MS.. => Some(ts),
        1_000_000_000..=99_999_999_999 => Some(ts * 1000),
        _ => None,
    }
}

/// Our id for a snapshot: the upstream's tag (as [`snapshot_id`] reads
/// it) and the hash of its body, `<tag>-<hash>`, or `h-<hash>` without a
/// usable tag. It changes whenever the data does, whatever the upstream's
/// tags do (a producer that restarts and counts its tags from 1 again
/// cannot make a client's `If-None-Match` match changed data), and equal
/// bodies under equal tags get equal ids, in every replica.
pub fn snapshot_id_of(etag: Option<&str>, body_hash: u64) -> String {
    match etag.and_then(snapshot_id) {
        Some(tag) => format!("{}-{body_hash:016x}", json::clip(&tag, 200)),
        None => format!("h-{body_hash:016x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_id_strips_quotes_and_weakness() {
        assert_eq!(snapshot_id("\"abc-1\"").as_deref(), Some("abc-1"));
        assert_eq!(snapshot_id("W/\"abc-1\"").as_deref(), Some("abc-1"));
        assert_eq!(snapshot_id("abc-1").as_deref(), Some("abc-1"));
        assert_eq!(snapshot_id(" \"v7\" ").as_deref(), Some("v7"));
        assert_eq!(snapshot_id("\"\""), None);
        assert_eq!(snapshot_id("\"has space\""), None);
        assert_eq!(snapshot_id("\"quo\"te\""), None);
    }

    #[test]
    fn snapshot_ts_is_milliseconds_or_plausible_seconds() {
        assert_eq!(snapshot_ts_ms("1795895999123"), Some(1_795_895_999_123));
        assert_eq!(snapshot_ts_ms(" 1795895999 "), Some(1_795_895_999_000));
        assert_eq!(snapshot_ts_ms("0"), None);
        assert_eq!(snapshot_ts_ms("1000"), None);
        assert_eq!(snapshot_ts_ms("-5"), None);
        assert_eq!(snapshot_ts_ms("soon"), None);
    }

    #[test]
    fn our_ids_follow_the_tag_and_the_body() {
        assert_eq!(snapshot_id_of(Some("\"2\""), 7), "2-0000000000000007");
        assert_eq!(snapshot_id_of(Some("W/\"2\""), 7), "2-0000000000000007");
        // A reused tag with other data is another id.
        assert_ne!(
            snapshot_id_of(Some("\"2\""), 8),
            snapshot_id_of(Some("\"2\""), 7)
        );
        assert_eq!(snapshot_id_of(None, 255), "h-00000000000000ff");
        assert_eq!(snapshot_id_of(Some("\"a b\""), 1), "h-0000000000000001");
        let long = format!("\"{}\"", "t".repeat(256));
        assert!(snapshot_id_of(Some(&long), 1).len() <= 256);
    }

    #[test]
    fn error_kinds_and_messages() {
        let e = PollError::from(ureq::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert_eq!(e.kind(), "connect");
        assert!(e.to_string().starts_with("connect: "));
        assert_eq!(
            PollError::Status(503, None).to_string(),
            "http: upstream answered 503"
        );
        assert_eq!(
            PollError::Status(401, Some("missing bearer token".into())).to_string(),
            "http: upstream answered 401: missing bearer token"
        );
        assert_eq!(
            PollError::from(ureq::Error::BodyExceedsLimit(9)).kind(),
            "body_too_large"
        );
        assert_eq!(
            PollError::Status(302, None).to_string(),
            "http: upstream answered 302 (redirects are not followed: poll the target URL)"
        );
    }

    #[test]
    fn tls_failures_are_their_own_kind() {
        use std::io::{Error, ErrorKind};
        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        // The handshake's failure, as ureq returns it.
        let e = PollError::from(ureq::Error::Io(Error::new(ErrorKind::InvalidData, unknown)));
        assert_eq!(e.kind(), "tls");
        assert_eq!(
            e.to_string(),
            "tls: invalid peer certificate: UnknownIssuer"
        );
        let e = PollError::from(ureq::Error::Rustls(rustls::Error::NoCertificatesPresented));
        assert_eq!(
            (e.kind(), e.to_string().as_str()),
            ("tls", "tls: peer sent no certificates")
        );
        let e = PollError::from(ureq::Error::Tls("Rustls invalid dns name error"));
        assert_eq!(e.kind(), "tls");
        // InvalidData that is not rustls' stays a transport failure.
        let e = PollError::from(ureq::Error::Io(Error::new(ErrorKind::InvalidData, "x")));
        assert_eq!(e.kind(), "transport");
        assert!(crate::consumer::store::figures::KINDS.contains(&"tls"));
    }
}
