//! metrics_server's knobs: the table `--help` is rendered from, and `Config`.

use std::time::Duration;

use super::api::metrics::Counters;
use super::poll::dialect::Rules;
use super::poll::tls::{CaFile, UpstreamTls};
use super::poll::upstream::{Resilience, UpstreamAuth, UpstreamClient};
use super::store::history::MAX_SNAPSHOTS;
use crate::auth::{Basic, BasicError, Token};
use crate::config::{Error, Knob, Spec, Values};
use crate::log::Level;
use crate::server::front::Limits;

pub static KNOBS: &[Knob] = &[
    Knob {
        env: "METRICS_HOST",
        flag: "host",
        default: "0.0.0.0",
        help: "Address to listen on (IP or host name).",
    },
    Knob {
        env: "METRICS_PORT",
        flag: "port",
        default: "8080",
        help: "Port to listen on; 0 picks a free one (see the startup log line).",
    },
    Knob {
        env: "UPSTREAM_URL",
        flag: "upstream-url",
        default: "http://127.0.0.1:9001/counters",
        help: "The data_server /counters URL to poll (http:// or https://).",
    },
    Knob {
        env: "UPSTREAM_URLS",
        flag: "upstream-urls",
        default: "",
        help: "Several data_server URLs (shards, comma-separated, 1 to 256) composed into one fabric; instead of UPSTREAM_URL.",
    },
    Knob {
        env: "UPSTREAM_KEY",
        flag: "upstream-key",
        default: "",
        help: "Columns (comma-separated) whose cells, joined with ':', are a row's id; unset: switch_id first, or UFM's Node_GUID,Port_Number (node_guid,port_num).",
    },
    Knob {
        env: "UPSTREAM_LABELS",
        flag: "upstream-labels",
        default: "",
        help: "Text columns (comma-separated) kept as strings in keyed rows; unset: whichever of timestamp, source_id, tag, node_guid, port_guid, node_description are present.",
    },
    Knob {
        env: "COUNTER_COLUMNS",
        flag: "counter-columns",
        default: "*Extended,*Counter,*Errors,*_total",
        help: "Globs (comma-separated, * any run, any case) naming the value columns of keyed rows that /metrics types as counters (_total); the others are gauges.",
    },
    Knob {
        env: "POLL_MS",
        flag: "poll-ms",
        default: "1500",
        help: "Milliseconds between polls, start to start, 10 to 86400000.",
    },
    Knob {
        env: "POLL_BACKOFF_MAX_MS",
        flag: "poll-backoff-max-ms",
        default: "30000",
        help: "Longest wait after failed polls (random up to min(this, POLL_MS x 2^failures)), 10 to 86400000.",
    },
    Knob {
        env: "BREAKER_FAILURES",
        flag: "breaker-failures",
        default: "5",
        help: "Consecutive failed polls that open the circuit breaker, 1 to 1000000.",
    },
    Knob {
        env: "BREAKER_COOLDOWN_MS",
        flag: "breaker-cooldown-ms",
        default: "10000",
        help: "How long an open breaker sends nothing upstream before one probe, 10 to 86400000.",
    },
    Knob {
        env: "MAX_STALE_MS",
        flag: "max-stale-ms",
        default: "0",
        help: "Data older than this is answered 503 \"data stale\" instead; 0 = serve any age.",
    },
    Knob {
        env: "READY_MAX_AGE_MS",
        flag: "ready-max-age-ms",
        default: "60000",
        help: "GET /ready is 200 only while the data is at most this old, 1 to 86400000.",
    },
    Knob {
        env: "UPSTREAM_TIMEOUT_MS",
        flag: "upstream-timeout-ms",
        default: "5000",
        help: "Longest a whole poll (connect, request, body) may take, 10 to 3600000.",
    },
    Knob {
        env: "UPSTREAM_MAX_BYTES",
        flag: "upstream-max-bytes",
        default: "268435456",
        help: "Largest upstream body accepted, 1024 to 17179869184.",
    },
    Knob {
        env: "UPSTREAM_MAX_ROWS",
        flag: "upstream-max-rows",
        default: "1000000",
        help: "Most switches (rows) accepted from upstream, 1 to 100000000.",
    },
    Knob {
        env: "STREAM_MAX_SUBSCRIBERS",
        flag: "stream-max-subscribers",
        default: "64",
        help: "Clients on GET /telemetry/stream at once before 503, 0 to 100000.",
    },
    Knob {
        env: "HISTORY_SNAPSHOTS",
        flag: "history-snapshots",
        default: "60",
        help: "Snapshots of every switch x metric kept for GET /telemetry/History, 0 (off) to 1440; 4 bytes a value each (100k switches x 8 metrics x 60 = 192 MB).",
    },
    Knob {
        env: "METRICS_AUTH_TOKEN",
        flag: "auth-token",
        default: "",
        help: "Bearer token every endpoint but /health and /ready requires (unset: open).",
    },
    Knob {
        env: "METRICS_AUTH_TOKEN_FILE",
        flag: "auth-token-file",
        default: "",
        help: "File holding that token instead (trailing newline ignored).",
    },
    Knob {
        env: "UPSTREAM_AUTH_TOKEN",
        flag: "upstream-auth-token",
        default: "",
        help: "Bearer token the poller sends upstream (data_server's DATA_AUTH_TOKEN).",
    },
    Knob {
        env: "UPSTREAM_AUTH_TOKEN_FILE",
        flag: "upstream-auth-token-file",
        default: "",
        help: "File holding that token instead.",
    },
    Knob {
        env: "UPSTREAM_CA_FILE",
        flag: "upstream-ca-file",
        default: "",
        help: "PEM file of the CA certificates https:// upstreams are checked against (unset: the Mozilla roots built in).",
    },
    Knob {
        env: "UPSTREAM_INSECURE_SKIP_VERIFY",
        flag: "upstream-insecure-skip-verify",
        default: "false",
        help: "true: accept any certificate from https:// upstreams (lab setups only; a WARN at start and in /stats).",
    },
    Knob {
        env: "UPSTREAM_BASIC_AUTH_USER",
        flag: "upstream-basic-auth-user",
        default: "",
        help: "User of the HTTP Basic credentials the poller sends upstream (no ':'); with UPSTREAM_BASIC_AUTH_PASSWORD_FILE.",
    },
    Knob {
        env: "UPSTREAM_BASIC_AUTH_PASSWORD_FILE",
        flag: "upstream-basic-auth-password-file",
        default: "",
        help: "File holding that user's password, read once at start (one trailing newline ignored).",
    },
    Knob {
        env: "LOG_LEVEL",
        flag: "log-level",
        default: "INFO",
        help: "DEBUG, INFO, WARN or ERROR (any case). DEBUG adds one line per request and per 304 poll.",
    },
];

/// metrics_server's configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    /// What to poll: one URL (`UPSTREAM_URL`) or the shards (`UPSTREAM_URLS`).
    pub upstream_urls: Vec<String>,
    pub poll: Duration,
    pub resilience: Resilience,
    pub max_stale: Option<Duration>,
    pub ready_max_age: Duration,
    pub stream_max_subscribers: usize,
    /// Entries of history per shard (`HISTORY_SNAPSHOTS`; 0: off).
    pub history_snapshots: usize,
    pub log_level: Level,
    pub auth_token: Option<Token>,
    /// How the pollers reach their upstreams: TLS and credentials.
    pub upstream: UpstreamClient,
    /// Which value columns of keyed rows `/metrics` types as counters.
    pub counters: Counters,
    pub front: Limits,
    /// The listener's certificate, when it speaks TLS.
    pub tls: Option<std::sync::Arc<crate::server::tls::Certs>>,
}

impl Config {
    fn build(v: &Values) -> Result<Config, Error> {
        Ok(Config {
            host: v.host("METRICS_HOST")?,
            port: v.number("METRICS_PORT", 0, u16::MAX)?,
            upstream_urls: upstream_urls(v)?,
            poll: Duration::from_millis(v.number("POLL_MS", 10, 86_400_000)?),
            resilience: Resilience {
                backoff_max: ms(v.number("POLL_BACKOFF_MAX_MS", 10, 86_400_000)?),
                breaker_failures: v.number("BREAKER_FAILURES", 1, 1_000_000)?,
                breaker_cooldown: ms(v.number("BREAKER_COOLDOWN_MS", 10, 86_400_000)?),
                timeout: ms(v.number("UPSTREAM_TIMEOUT_MS", 10, 3_600_000)?),
                max_bytes: v.number("UPSTREAM_MAX_BYTES", 1024, 16 << 30)?,
                max_rows: v.number("UPSTREAM_MAX_ROWS", 1, 100_000_000)?,
            },
            max_stale: match v.number("MAX_STALE_MS", 0, 86_400_000)? {
                0 => None,
                n => Some(ms(n)),
            },
            ready_max_age: ms(v.number("READY_MAX_AGE_MS", 1, 86_400_000)?),
            stream_max_subscribers: v.number("STREAM_MAX_SUBSCRIBERS", 0, 100_000)?,
            history_snapshots: v.number("HISTORY_SNAPSHOTS", 0, MAX_SNAPSHOTS)?,
            log_level: v.level("LOG_LEVEL")?,
            auth_token: v.token("METRICS_AUTH_TOKEN", "METRICS_AUTH_TOKEN_FILE")?,
            upstream: UpstreamClient {
                tls: upstream_tls(v)?,
                auth: upstream_auth(v)?,
                dialect: Rules {
                    key: columns(v, "UPSTREAM_KEY")?,
                    labels: columns(v, "UPSTREAM_LABELS")?,
                },
            },
            counters: Counters(columns(v, "COUNTER_COLUMNS")?.unwrap_or_default()),
            front: Limits::from_values(v)?,
            tls: crate::server::tls::from_values(v)?,
        })
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `UPSTREAM_CA_FILE`, read and checked now, and
/// `UPSTREAM_INSECURE_SKIP_VERIFY`; not both, which would contradict.
fn upstream_tls(v: &Values) -> Result<UpstreamTls, Error> {
    let insecure_skip_verify = v.bool("UPSTREAM_INSECURE_SKIP_VERIFY")?;
    let Some(path) = v.get("UPSTREAM_CA_FILE") else {
        return Ok(UpstreamTls {
            ca_file: None,
            insecure_skip_verify,
        });
    };
    if insecure_skip_verify {
        return Err(v.invalid(
            "UPSTREAM_INSECURE_SKIP_VERIFY",
            "false with UPSTREAM_CA_FILE set (trust that CA, or skip verification, not both)",
        ));
    }
    let ca_file = CaFile::load(path).map_err(|why| v.invalid("UPSTREAM_CA_FILE", why))?;
    Ok(UpstreamTls {
        ca_file: Some(ca_file),
        insecure_skip_verify,
    })
}

/// The bearer token (`UPSTREAM_AUTH_TOKEN` or its file) or the Basic
/// credentials (`UPSTREAM_BASIC_AUTH_USER` and `_PASSWORD_FILE`, both or
/// neither), not both: each is an `Authorization` header.
fn upstream_auth(v: &Values) -> Result<Option<UpstreamAuth>, Error> {
    let token = v.token("UPSTREAM_AUTH_TOKEN", "UPSTREAM_AUTH_TOKEN_FILE")?;
    let basic = basic_auth(v)?;
    match (token, basic) {
        (Some(_), Some(_)) => Err(v.invalid(
            "UPSTREAM_BASIC_AUTH_USER",
            "unset while UPSTREAM_AUTH_TOKEN is set (one Authorization header: a token or Basic credentials)",
        )),
        (Some(t), None) => Ok(Some(UpstreamAuth::Bearer(t))),
        (None, Some(b)) => Ok(Some(UpstreamAuth::Basic(b))),
        (None, None) => Ok(None),
    }
}

/// `UPSTREAM_BASIC_AUTH_USER` with the password its file holds. The
/// password is never echoed: an error names the file's knob and says why.
fn basic_auth(v: &Values) -> Result<Option<Basic>, Error> {
    const USER: &str = "UPSTREAM_BASIC_AUTH_USER";
    const FILE: &str = "UPSTREAM_BASIC_AUTH_PASSWORD_FILE";
    let (user, path) = match (v.get(USER), v.get(FILE)) {
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(v.invalid(FILE, format!("a password file, as {USER} is set")));
        }
        (None, Some(_)) => {
            return Err(v.invalid(USER, format!("a user name, as {FILE} is set")));
        }
        (Some(user), Some(path)) => (user, path),
    };
    let password = crate::auth::read_password(path).map_err(|why| v.invalid_secret(FILE, why))?;
    Basic::new(user, &password).map(Some).map_err(|e| match e {
        BasicError::User(why) => v.invalid(USER, why),
        BasicError::Password(why) => v.invalid_secret(FILE, format!("password file {path}: {why}")),
    })
}

/// The most upstreams one metrics_server composes.
pub const MAX_UPSTREAMS: usize = 256;

/// `UPSTREAM_URLS` split, or `UPSTREAM_URL` alone; never both.
/// A comma list of column names (`UPSTREAM_KEY`, `UPSTREAM_LABELS`):
/// `None` when unset; every name non-empty, without control characters,
/// and given once.
fn columns(v: &Values, knob: &str) -> Result<Option<Vec<String>>, Error> {
    let Some(list) = v.get(knob).filter(|l| !l.trim().is_empty()) else {
        return Ok(None);
    };
    let mut names: Vec<String> = Vec::new();
    for name in list.split(',').map(str::trim) {
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(v.invalid(knob, "column names, comma-separated, none empty"));
        }
        if names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            return Err(v.invalid(knob, format!("each column once ({name} is named twice)")));
        }
        names.push(name.to_string());
    }
    if names.len() > MAX_COLUMNS {
        return Err(v.invalid(knob, format!("at most {MAX_COLUMNS} columns")));
    }
    Ok(Some(names))
}

/// The most columns `UPSTREAM_KEY` or `UPSTREAM_LABELS` may name.
const MAX_COLUMNS: usize = 256;

fn upstream_urls(v: &Values) -> Result<Vec<String>, Error> {
    let Some(list) = v.get("UPSTREAM_URLS") else {
        return Ok(vec![upstream_url(
            v,
            "UPSTREAM_URL",
            &v.text("UPSTREAM_URL"),
        )?]);
    };
    if v.is_set("UPSTREAM_URL") {
        return Err(v.invalid(
            "UPSTREAM_URLS",
            "it or UPSTREAM_URL (--upstream-url), not both",
        ));
    }
    let urls = list
        .split(',')
        .map(|u| upstream_url(v, "UPSTREAM_URLS", u))
        .collect::<Result<Vec<_>, _>>()?;
    if urls.len() > MAX_UPSTREAMS {
        return Err(v.invalid("UPSTREAM_URLS", format!("at most {MAX_UPSTREAMS} URLs")));
    }
    Ok(urls)
}

/// An `http://` or `https://host[:port]/path` URL.
fn upstream_url(v: &Values, knob: &str, url: &str) -> Result<String, Error> {
    let url = url.trim().to_string();
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return Err(v.invalid(knob, "http:// or https:// URLs"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority_ok(authority)
        .and_then(|()| {
            ureq::http::Uri::try_from(url.as_str())
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .map_err(|why| v.invalid(knob, format!("http(s)://host[:port]/path URLs ({why})")))?;
    Ok(url)
}

/// Checks `host[:port]`: a name, an IPv4 address or a bracketed IPv6 one,
/// and a port from 1 to 65535 if one is given.
fn authority_ok(authority: &str) -> Result<(), String> {
    if authority.contains('@') {
        return Err("no user@ part".into());
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (addr, after) = v6.split_once(']').ok_or("unclosed [")?;
            addr.parse::<std::net::Ipv6Addr>()
                .map_err(|_| "bad IPv6 address")?;
            match after {
                "" => (addr, None),
                _ => (addr, Some(after.strip_prefix(':').ok_or("junk after ]")?)),
            }
        }
        None => match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let name_ok = |h: &str| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
    };
    if !name_ok(host) {
        return Err("no host".into());
    }
    match port.map(str::parse::<u16>) {
        None | Some(Ok(1..)) => Ok(()),
        Some(_) => Err("port must be 1 to 65535".into()),
    }
}

pub const SPEC: Spec<Config> = Spec {
    bin: "metrics_server",
    about: "Polls a data_server's CSV and serves the latest good snapshot as a JSON API.",
    knobs: &[
        KNOBS,
        crate::server::front::KNOBS,
        crate::server::tls::KNOBS,
    ],
    build: Config::build,
};

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(args: &[&str], env: &[(&str, &str)]) -> Result<Config, Error> {
        SPEC.config_strs(args, env)
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = resolve(&[], &[]).unwrap();
        assert_eq!((c.host.as_str(), c.port), ("0.0.0.0", 8080));
        assert_eq!(c.upstream_urls, ["http://127.0.0.1:9001/counters"]);
        assert_eq!(c.poll, Duration::from_millis(1500));
        assert_eq!(c.log_level, Level::Info);
        let r = Resilience::default();
        assert_eq!(c.resilience.backoff_max, r.backoff_max);
        assert_eq!(c.resilience.breaker_failures, r.breaker_failures);
        assert_eq!(c.resilience.breaker_cooldown, r.breaker_cooldown);
        assert_eq!(
            (c.resilience.timeout, c.resilience.max_bytes),
            (r.timeout, r.max_bytes)
        );
        assert_eq!(c.resilience.max_rows, r.max_rows);
        assert_eq!(
            (c.max_stale, c.ready_max_age),
            (None, Duration::from_secs(60))
        );
        assert_eq!(
            c.history_snapshots,
            crate::consumer::store::history::DEFAULT_SNAPSHOTS
        );
    }

    #[test]
    fn history_snapshots_range() {
        let n = |v: &str| resolve(&["--history-snapshots", v], &[]).map(|c| c.history_snapshots);
        assert_eq!(n("0").unwrap(), 0);
        assert_eq!(n("1440").unwrap(), MAX_SNAPSHOTS);
        for bad in ["1441", "-1", "x", "1.5"] {
            let err = n(bad).unwrap_err().to_string();
            assert!(err.contains("HISTORY_SNAPSHOTS"), "{bad}: {err}");
        }
        let c = resolve(&[], &[("HISTORY_SNAPSHOTS", "5")]).unwrap();
        assert_eq!(c.history_snapshots, 5);
    }

    #[test]
    fn flag_beats_env() {
        let c = resolve(
            &["--poll-ms", "250", "--log-level=debug"],
            &[
                ("POLL_MS", "100"),
                ("METRICS_PORT", "0"),
                ("UPSTREAM_URL", "http://[::1]:9/c"),
            ],
        )
        .unwrap();
        assert_eq!(c.poll, Duration::from_millis(250));
        assert_eq!(c.port, 0);
        assert_eq!(c.upstream_urls, ["http://[::1]:9/c"]);
        for ok in [
            "http://localhost/counters",
            "http://10.0.0.5:9001/c?x=1",
            "http://[::1]/c",
            "http://fab-01.example.net:80",
        ] {
            assert!(resolve(&["--upstream-url", ok], &[]).is_ok(), "{ok}");
        }
        assert_eq!(c.log_level, Level::Debug);
    }

    #[test]
    fn rejects_bad_values() {
        for (k, v) in [
            ("POLL_MS", "0"),
            ("POLL_MS", "1.5"),
            ("POLL_MS", "soon"),
            ("METRICS_PORT", "http"),
            ("UPSTREAM_URL", "ftp://example.com/counters"),
            ("UPSTREAM_URL", "https://"),
            ("UPSTREAM_URL", "https://user:pw@example.com/counters"),
            ("UPSTREAM_URL", "127.0.0.1:9001/counters"),
            ("UPSTREAM_URL", "http:///counters"),
            ("UPSTREAM_URL", "http://a b/"),
            ("UPSTREAM_URL", "http://127.0.0.1:99999/counters"),
            ("UPSTREAM_URL", "http://127.0.0.1:abc/c"),
            ("UPSTREAM_URL", "http://127.0.0.1:0/c"),
            ("UPSTREAM_URL", "http://:9001/counters"),
            ("UPSTREAM_URL", "http://[::1/c"),
            ("UPSTREAM_URL", "http://[::1]x/c"),
            ("UPSTREAM_URL", "http://user@/c"),
            ("UPSTREAM_URL", "http://user@host/c"),
            ("LOG_LEVEL", "chatty"),
            ("BREAKER_FAILURES", "0"),
            ("POLL_BACKOFF_MAX_MS", "x"),
            ("MAX_STALE_MS", "-1"),
            ("UPSTREAM_MAX_BYTES", "10"),
            ("UPSTREAM_TIMEOUT_MS", "0"),
            ("UPSTREAM_URLS", "http://a/c,"),
            ("UPSTREAM_URLS", "http://a/c,ftp://b/c"),
            ("UPSTREAM_INSECURE_SKIP_VERIFY", "maybe"),
            ("UPSTREAM_URLS", ",http://a/c"),
        ] {
            let err = resolve(&[], &[(k, v)]).unwrap_err().to_string();
            assert!(err.contains(k), "{k}={v}: {err}");
        }
    }

    use crate::testutil::TempFile;

    const CA_PEM: &[u8] = crate::consumer::poll::tls::TEST_CA_PEM.as_bytes();

    /// The one-line error resolving `env` gives.
    fn error(env: &[(&str, &str)]) -> String {
        let err = resolve(&[], env).unwrap_err().to_string();
        assert!(!err.contains('\n'), "{err}");
        err
    }

    #[test]
    fn column_knobs_are_lists_checked_at_start() {
        let c = resolve(
            &["--upstream-key", "rack, slot"],
            &[
                ("UPSTREAM_LABELS", "model,Device_ID"),
                ("COUNTER_COLUMNS", "*_drops"),
            ],
        )
        .unwrap();
        assert_eq!(
            c.upstream.dialect.key,
            Some(vec!["rack".into(), "slot".into()])
        );
        assert_eq!(
            c.upstream.dialect.labels,
            Some(vec!["model".into(), "Device_ID".into()])
        );
        assert_eq!(c.counters.0, ["*_drops"]);
        // Unset: the header decides; UFM's counters.
        let c = resolve(&[], &[]).unwrap();
        assert_eq!(c.upstream.dialect, Rules::default());
        assert_eq!(c.counters, Counters::default());
        // Set empty, as every knob: its default.
        let c = resolve(&[], &[("COUNTER_COLUMNS", "")]).unwrap();
        assert_eq!(c.counters, Counters::default());
        for (knob, value, says) in [
            ("UPSTREAM_KEY", "a,,b", "none empty"),
            ("UPSTREAM_KEY", "a,A", "A is named twice"),
            ("UPSTREAM_LABELS", "x,\u{7}y", "none empty"),
            ("COUNTER_COLUMNS", "*x,", "none empty"),
        ] {
            let err = error(&[(knob, value)]);
            assert!(
                err.contains(knob) && err.contains(says),
                "{knob}={value:?}: {err}"
            );
        }
        let many = vec!["c"; 257]
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c}{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(error(&[("UPSTREAM_LABELS", &many)]).contains("at most 256 columns"));
    }

    #[test]
    fn https_upstreams_are_accepted() {
        let c = resolve(
            &[],
            &[(
                "UPSTREAM_URLS",
                "https://ufm.example.net/counters,http://10.0.0.7:9001/c",
            )],
        )
        .unwrap();
        assert_eq!(
            c.upstream_urls,
            ["https://ufm.example.net/counters", "http://10.0.0.7:9001/c"]
        );
        let c = resolve(&["--upstream-url", "https://[::1]:8443/c"], &[]).unwrap();
        assert_eq!(c.upstream_urls, ["https://[::1]:8443/c"]);
    }

    #[test]
    fn tls_defaults_to_the_bundled_roots() {
        let c = resolve(&[], &[]).unwrap();
        assert!(c.upstream.tls.ca_file.is_none());
        assert!(!c.upstream.tls.insecure_skip_verify);
        assert_eq!(c.upstream.tls.roots(), "bundled");
        assert!(c.upstream.auth.is_none());
    }

    #[test]
    fn ca_file_is_read_at_start() {
        let ca = TempFile::with("ca.pem", CA_PEM);
        let c = resolve(&["--upstream-ca-file", ca.path()], &[]).unwrap();
        let file = c.upstream.tls.ca_file.as_ref().unwrap();
        assert_eq!((file.path.as_str(), file.len()), (ca.path(), 1));
        assert_eq!(c.upstream.tls.roots(), "file");
        for (content, why) in [
            (&b""[..], "at least one CERTIFICATE"),
            (b"not pem at all\n", "at least one CERTIFICATE"),
            (
                b"-----BEGIN CERTIFICATE-----\n%%%%\n-----END CERTIFICATE-----\n",
                "PEM: ",
            ),
        ] {
            let f = TempFile::with("bad.pem", content);
            let err = error(&[("UPSTREAM_CA_FILE", f.path())]);
            assert!(
                err.starts_with("invalid UPSTREAM_CA_FILE (--upstream-ca-file)")
                    && err.contains(why),
                "{err}"
            );
        }
        let err = error(&[("UPSTREAM_CA_FILE", "/nonexistent/ca.pem")]);
        assert!(
            err.contains("UPSTREAM_CA_FILE") && err.contains("a readable PEM file"),
            "{err}"
        );
    }

    #[test]
    fn insecure_skip_verify_is_a_bool_and_contradicts_a_ca_file() {
        for (v, want) in [
            ("true", true),
            ("TRUE", true),
            ("1", true),
            ("false", false),
            ("0", false),
        ] {
            let c = resolve(&["--upstream-insecure-skip-verify", v], &[]).unwrap();
            assert_eq!(c.upstream.tls.insecure_skip_verify, want, "{v}");
        }
        let c = resolve(&[], &[("UPSTREAM_INSECURE_SKIP_VERIFY", "true")]).unwrap();
        assert_eq!(c.upstream.tls.roots(), "none");
        let err = error(&[("UPSTREAM_INSECURE_SKIP_VERIFY", "yes please")]);
        assert!(
            err.contains("UPSTREAM_INSECURE_SKIP_VERIFY") && err.contains("true or false"),
            "{err}"
        );
        let ca = TempFile::with("ca.pem", CA_PEM);
        let err = error(&[
            ("UPSTREAM_CA_FILE", ca.path()),
            ("UPSTREAM_INSECURE_SKIP_VERIFY", "true"),
        ]);
        assert!(
            err.starts_with("invalid UPSTREAM_INSECURE_SKIP_VERIFY")
                && err.contains("UPSTREAM_CA_FILE"),
            "{err}"
        );
    }

    #[test]
    fn basic_auth_wants_both_user_and_password_file() {
        let pw = TempFile::with("pw", b"s3cr3t-pw\n");
        let c = resolve(
            &["--upstream-basic-auth-user", "ufm"],
            &[("UPSTREAM_BASIC_AUTH_PASSWORD_FILE", pw.path())],
        )
        .unwrap();
        let auth = c.upstream.auth.as_ref().unwrap();
        assert_eq!(auth.scheme(), "basic");
        assert_eq!(
            auth.header_value(),
            format!("Basic {}", crate::auth::base64(b"ufm:s3cr3t-pw"))
        );
        // Nothing of the secret in Debug.
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains(&crate::auth::base64(b"ufm:s3cr3t-pw")),
            "{shown}"
        );
        let err = error(&[("UPSTREAM_BASIC_AUTH_USER", "ufm")]);
        assert!(
            err.starts_with("invalid UPSTREAM_BASIC_AUTH_PASSWORD_FILE"),
            "{err}"
        );
        let err = error(&[("UPSTREAM_BASIC_AUTH_PASSWORD_FILE", pw.path())]);
        assert!(err.starts_with("invalid UPSTREAM_BASIC_AUTH_USER"), "{err}");
    }

    #[test]
    fn basic_auth_user_and_password_are_checked() {
        let pw = TempFile::with("pw", b"s3cr3t-pw\n");
        for user in ["a:b", "a\tb", "a\u{1b}[31m"] {
            let err = error(&[
                ("UPSTREAM_BASIC_AUTH_USER", user),
                ("UPSTREAM_BASIC_AUTH_PASSWORD_FILE", pw.path()),
            ]);
            assert!(
                err.starts_with("invalid UPSTREAM_BASIC_AUTH_USER"),
                "{user:?}: {err}"
            );
        }
        for (content, why) in [
            (&b"\n"[..], "is empty"),
            (b"", "is empty"),
            (b"s3cr3t-pw\n\n", "control characters"),
            (b"s3cr3t\tpw", "control characters"),
        ] {
            let f = TempFile::with("pw", content);
            let err = error(&[
                ("UPSTREAM_BASIC_AUTH_USER", "ufm"),
                ("UPSTREAM_BASIC_AUTH_PASSWORD_FILE", f.path()),
            ]);
            assert!(
                err.starts_with("invalid UPSTREAM_BASIC_AUTH_PASSWORD_FILE") && err.contains(why),
                "{content:?}: {err}"
            );
            assert!(!err.contains("s3cr3t"), "{err}");
        }
        let err = error(&[
            ("UPSTREAM_BASIC_AUTH_USER", "ufm"),
            ("UPSTREAM_BASIC_AUTH_PASSWORD_FILE", "/nonexistent/pw"),
        ]);
        assert!(
            err.starts_with("invalid UPSTREAM_BASIC_AUTH_PASSWORD_FILE")
                && err.contains("/nonexistent/pw"),
            "{err}"
        );
    }

    #[test]
    fn one_kind_of_upstream_credentials() {
        let pw = TempFile::with("pw", b"pw");
        let err = error(&[
            ("UPSTREAM_AUTH_TOKEN", "tok"),
            ("UPSTREAM_BASIC_AUTH_USER", "ufm"),
            ("UPSTREAM_BASIC_AUTH_PASSWORD_FILE", pw.path()),
        ]);
        assert!(
            err.starts_with("invalid UPSTREAM_BASIC_AUTH_USER")
                && err.contains("UPSTREAM_AUTH_TOKEN"),
            "{err}"
        );
        let c = resolve(&[], &[("UPSTREAM_AUTH_TOKEN", "tok")]).unwrap();
        let auth = c.upstream.auth.unwrap();
        assert_eq!(
            (auth.scheme(), auth.header_value().as_str()),
            ("bearer", "Bearer tok")
        );
    }

    #[test]
    fn upstream_urls_are_the_shards_in_order() {
        let c = resolve(
            &[
                "--upstream-urls",
                "http://a:1/c?num_shards=2&shard=0, http://b:2/c",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(
            c.upstream_urls,
            ["http://a:1/c?num_shards=2&shard=0", "http://b:2/c"]
        );
        let c = resolve(
            &[],
            &[("UPSTREAM_URLS", "http://a/c"), ("UPSTREAM_URL", "")],
        )
        .unwrap();
        assert_eq!(c.upstream_urls, ["http://a/c"]);
        // Both: one clear line, naming both knobs.
        let err = resolve(
            &["--upstream-url", "http://a/c"],
            &[("UPSTREAM_URLS", "http://b/c")],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("UPSTREAM_URLS")
                && err.contains("UPSTREAM_URL (--upstream-url), not both"),
            "{err}"
        );
        assert!(!err.contains('\n'));
        let many = vec!["http://a/c"; MAX_UPSTREAMS + 1].join(",");
        let err = resolve(&[], &[("UPSTREAM_URLS", &many)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("at most 256"), "{err}");
        let enough = vec!["http://a/c"; MAX_UPSTREAMS].join(",");
        assert_eq!(
            resolve(&[], &[("UPSTREAM_URLS", &enough)])
                .unwrap()
                .upstream_urls
                .len(),
            256
        );
    }
}
