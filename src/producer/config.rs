//! data_server's knobs: the table `--help` is rendered from, and `Config`.

use std::time::Duration;

use crate::auth::Token;
use crate::config::{Error, Knob, Spec, Values};
use crate::log::Level;
use crate::server::front::Limits;

pub static KNOBS: &[Knob] = &[
    Knob {
        env: "DATA_HOST",
        flag: "host",
        default: "0.0.0.0",
        help: "Address to listen on (IP or host name).",
    },
    Knob {
        env: "DATA_PORT",
        flag: "port",
        default: "9001",
        help: "Port to listen on; 0 picks a free one (see the startup log line).",
    },
    Knob {
        env: "DATA_SWITCHES",
        flag: "switches",
        default: "64",
        help: "Switches simulated, 1 to 1000000.",
    },
    Knob {
        env: "DATA_INTERVAL_SEC",
        flag: "interval-sec",
        default: "10",
        help: "Seconds between snapshots (fractions allowed), 0.01 to 86400.",
    },
    Knob {
        env: "DATA_SEED",
        flag: "seed",
        default: "",
        help: "Seed that makes the simulated values reproducible (unset: random).",
    },
    Knob {
        env: "FAULT_500_PCT",
        flag: "fault-500-pct",
        default: "0",
        help: "Percent of /counters requests answered 500, 0 to 100.",
    },
    Knob {
        env: "FAULT_SLOW_MS",
        flag: "fault-slow-ms",
        default: "0",
        help: "Extra delay in ms added to about 20% of /counters requests, 0 to 600000.",
    },
    Knob {
        env: "DATA_AUTH_TOKEN",
        flag: "auth-token",
        default: "",
        help: "Bearer token /counters and /metrics require (unset: open). /health stays open.",
    },
    Knob {
        env: "DATA_AUTH_TOKEN_FILE",
        flag: "auth-token-file",
        default: "",
        help: "File holding that token instead (trailing newline ignored).",
    },
    Knob {
        env: "LOG_LEVEL",
        flag: "log-level",
        default: "INFO",
        help: "DEBUG, INFO, WARN or ERROR (any case). DEBUG adds one line per request.",
    },
];

/// data_server's configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub switches: usize,
    pub interval: Duration,
    pub seed: Option<u64>,
    pub fault_500_pct: f64,
    pub fault_slow: Duration,
    pub log_level: Level,
    pub auth_token: Option<Token>,
    pub front: Limits,
    /// The listener's certificate, when it speaks TLS.
    pub tls: Option<std::sync::Arc<crate::server::tls::Certs>>,
}

impl Config {
    fn build(v: &Values) -> Result<Config, Error> {
        Ok(Config {
            host: v.host("DATA_HOST")?,
            port: v.number("DATA_PORT", 0, u16::MAX)?,
            switches: v.number("DATA_SWITCHES", 1, 1_000_000)?,
            interval: Duration::from_secs_f64(v.number("DATA_INTERVAL_SEC", 0.01, 86_400.0)?),
            seed: v.optional_number("DATA_SEED", 0, u64::MAX)?,
            fault_500_pct: v.number("FAULT_500_PCT", 0.0, 100.0)?,
            fault_slow: Duration::from_millis(v.number("FAULT_SLOW_MS", 0, 600_000)?),
            log_level: v.level("LOG_LEVEL")?,
            auth_token: v.token("DATA_AUTH_TOKEN", "DATA_AUTH_TOKEN_FILE")?,
            front: Limits::from_values(v)?,
            tls: crate::server::tls::from_values(v)?,
        })
    }
}

pub const SPEC: Spec<Config> = Spec {
    bin: "data_server",
    about: "Simulates a switch fabric and serves its latest counters as CSV at GET /counters.",
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
        assert_eq!((c.host.as_str(), c.port, c.switches), ("0.0.0.0", 9001, 64));
        assert_eq!(c.interval, Duration::from_secs(10));
        assert_eq!(
            (c.seed, c.fault_500_pct, c.fault_slow),
            (None, 0.0, Duration::ZERO)
        );
        assert_eq!(c.log_level, Level::Info);
    }

    #[test]
    fn reads_env_and_flags() {
        let c = resolve(
            &["--switches", "1200", "--fault-500-pct=12.5"],
            &[
                ("DATA_INTERVAL_SEC", "0.5"),
                ("DATA_SEED", "7"),
                ("DATA_SWITCHES", "3"),
            ],
        )
        .unwrap();
        assert_eq!(c.switches, 1200);
        assert_eq!(c.interval, Duration::from_millis(500));
        assert_eq!(c.seed, Some(7));
        assert_eq!(c.fault_500_pct, 12.5);
    }

    #[test]
    fn rejects_out_of_range_values() {
        for (k, v) in [
            ("DATA_SWITCHES", "0"),
            ("DATA_SWITCHES", "1000001"),
            ("DATA_INTERVAL_SEC", "0"),
            ("DATA_INTERVAL_SEC", "-1"),
            ("DATA_INTERVAL_SEC", "inf"),
            ("FAULT_500_PCT", "101"),
            ("FAULT_SLOW_MS", "-5"),
            ("DATA_PORT", "65536"),
            ("DATA_SEED", "-1"),
            ("DATA_HOST", "no such host.invalid"),
        ] {
            let err = resolve(&[], &[(k, v)]).unwrap_err().to_string();
            assert!(err.contains(k), "{k}={v}: {err}");
        }
    }
}
