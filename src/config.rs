//! The knob machinery both binaries share: flags, environment, defaults,
//! `--help`, `--version` and validation.
//!
//! Each binary describes its knobs once, as a table of [`Knob`]s (see
//! `producer::config` and `consumer::config`); this module reads the command
//! line and the environment against that table (a flag beats the environment,
//! which beats the default), renders `--help` from the same table so the two
//! cannot drift, and turns every bad value into an [`Error`] that names the
//! knob. The binaries exit 2 with that one line; nothing here panics.

use std::fmt;
use std::str::FromStr;

/// One configuration knob: its environment name, its flag (without `--`),
/// its default as text (empty for "unset") and a one-line description.
#[derive(Debug)]
pub struct Knob {
    pub env: &'static str,
    pub flag: &'static str,
    pub default: &'static str,
    pub help: &'static str,
}

/// A usage error: what `main` prints before exiting with code 2.
#[derive(Debug, PartialEq)]
pub enum Error {
    /// A `--flag` that is not in the knob table.
    UnknownFlag(String),
    /// A flag given last with no value after it.
    MissingValue(String),
    /// An argument that is not a flag.
    Unexpected(String),
    /// A value that does not parse or is out of range.
    Invalid {
        knob: String,
        value: String,
        expected: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnknownFlag(flag) => write!(f, "unknown flag {flag} (see --help)"),
            Error::MissingValue(flag) => write!(f, "flag --{flag} needs a value"),
            Error::Unexpected(arg) => write!(f, "unexpected argument {arg:?} (see --help)"),
            Error::Invalid {
                knob,
                value,
                expected,
            } => write!(f, "invalid {knob} {value:?}: expected {expected}"),
        }
    }
}

impl std::error::Error for Error {}

/// The first `max` bytes of the file at `path` (all of it if shorter): a
/// file a knob names is read with a bound, so that `/dev/zero` or a huge
/// file is noticed without being read whole. Callers read one byte more
/// than they accept to tell "too long" apart.
pub fn read_at_most(path: impl AsRef<std::path::Path>, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(max)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Origin {
    Flag,
    Env,
    Default,
}

/// The raw text of every knob after flags and environment were applied.
#[derive(Debug)]
pub struct Values {
    knobs: Vec<&'static Knob>,
    raw: Vec<(String, Origin)>,
}

impl Values {
    /// Every knob of `knobs` at its default.
    #[cfg(test)]
    pub(crate) fn defaults(knobs: &'static [Knob]) -> Values {
        Values {
            knobs: knobs.iter().collect(),
            raw: knobs
                .iter()
                .map(|k| (k.default.to_string(), Origin::Default))
                .collect(),
        }
    }
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Cli<T> {
    /// Run with this configuration.
    Run(T),
    /// Print this text (help or version) on stdout and exit 0.
    Print(String),
    /// `--probe URL`: GET it and exit 0 on a 2xx, 1 otherwise — a health
    /// check for images with no HTTP client of their own.
    Probe(String),
}

/// Everything needed to turn a command line into a `Config`.
pub struct Spec<T> {
    pub bin: &'static str,
    pub about: &'static str,
    /// Groups of knobs (the binary's own, then shared ones such as the HTTP
    /// layer's), listed in this order by `--help`.
    pub knobs: &'static [&'static [Knob]],
    pub build: fn(&Values) -> Result<T, Error>,
}

impl<T> Spec<T> {
    fn all(&self) -> impl Iterator<Item = &'static Knob> + use<T> {
        self.knobs.iter().flat_map(|group| group.iter())
    }

    /// Resolves `args` (without the program name) and the environment given
    /// by `env` against the knob table.
    pub fn resolve<I>(&self, args: I, env: &dyn Fn(&str) -> Option<String>) -> Result<Cli<T>, Error>
    where
        I: IntoIterator<Item = String>,
    {
        let knobs: Vec<&'static Knob> = self.all().collect();
        let mut raw: Vec<(String, Origin)> = knobs
            .iter()
            .map(|k| match env(k.env) {
                // An empty variable counts as unset, so `KNOB=` in a .env file
                // keeps the default.
                Some(v) if !v.is_empty() => (v, Origin::Env),
                _ => (k.default.to_string(), Origin::Default),
            })
            .collect();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "-h" | "--help" => return Ok(Cli::Print(self.help())),
                "-V" | "--version" => {
                    return Ok(Cli::Print(format!("{} {}\n", self.bin, crate::VERSION)));
                }
                "--probe" => {
                    return match args.next() {
                        Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                            Ok(Cli::Probe(url))
                        }
                        Some(url) if !url.starts_with("--") => Err(Error::Invalid {
                            knob: "--probe".into(),
                            value: url,
                            expected: "an http:// or https:// URL".into(),
                        }),
                        _ => Err(Error::MissingValue("probe".into())),
                    };
                }
                _ => {}
            }
            let Some(flag) = arg.strip_prefix("--") else {
                return Err(Error::Unexpected(arg));
            };
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (flag, None),
            };
            let Some(i) = knobs.iter().position(|k| k.flag == name) else {
                return Err(Error::UnknownFlag(format!("--{name}")));
            };
            let value = match inline {
                Some(v) => v,
                // `--port --log-level debug` lacks a port; it does not mean
                // a port called "--log-level".
                None => match args.next() {
                    Some(v) if !v.starts_with("--") => v,
                    _ => return Err(Error::MissingValue(name.to_string())),
                },
            };
            raw[i] = (value, Origin::Flag);
        }
        let values = Values { knobs, raw };
        (self.build)(&values).map(Cli::Run)
    }

    /// Resolves against string slices: what unit tests want.
    #[cfg(test)]
    pub(crate) fn resolve_strs(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Cli<T>, Error> {
        let lookup = |name: &str| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        self.resolve(args.iter().map(|s| s.to_string()), &lookup)
    }

    /// Like [`Spec::resolve_strs`], for a command line that must configure
    /// (not print help): what the binaries' config tests want.
    #[cfg(test)]
    pub(crate) fn config_strs(&self, args: &[&str], env: &[(&str, &str)]) -> Result<T, Error> {
        match self.resolve_strs(args, env)? {
            Cli::Run(c) => Ok(c),
            Cli::Print(text) | Cli::Probe(text) => panic!("did not configure: {text}"),
        }
    }

    /// Reads the process's arguments and environment; prints help, version
    /// or a usage error and exits as the contract says (0 or 2).
    pub fn from_process(&self) -> T {
        let env = |name: &str| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
        match self.resolve(std::env::args().skip(1), &env) {
            Ok(Cli::Run(cfg)) => cfg,
            Ok(Cli::Print(text)) => {
                print!("{text}");
                std::process::exit(0);
            }
            Ok(Cli::Probe(url)) => std::process::exit(probe(&url)),
            Err(e) => {
                eprintln!("{}: {e}", self.bin);
                std::process::exit(2);
            }
        }
    }

    /// The `--help` text, generated from the knob table.
    pub fn help(&self) -> String {
        let mut out = format!(
            "{} {}\n{}\n\nUsage: {} [--FLAG VALUE | --FLAG=VALUE]...\n\n\
             Every knob is a flag and an environment variable; a flag beats the\n\
             environment, the environment beats the default. An empty variable\n\
             counts as unset.\n\n",
            self.bin,
            crate::VERSION,
            self.about,
            self.bin
        );
        // Columns as wide as the longest flag and variable name.
        let flag_w = self
            .all()
            .map(|k| k.flag.len() + 2)
            .max()
            .unwrap_or(0)
            .max(13);
        let env_w = self.all().map(|k| k.env.len()).max().unwrap_or(0);
        out.push_str(&format!(
            "  {:<flag_w$} {:<env_w$} DEFAULT\n",
            "FLAG", "ENV"
        ));
        for k in self.all() {
            let default = if k.default.is_empty() {
                "(unset)"
            } else {
                k.default
            };
            let flag = format!("--{}", k.flag);
            out.push_str(&format!(
                "  {flag:<flag_w$} {:<env_w$} {default}\n      {}\n",
                k.env, k.help
            ));
        }
        for (flag, what) in [
            ("-h, --help", "print this help"),
            ("-V, --version", "print the version"),
            (
                "--probe URL",
                "GET URL, exit 0 on 2xx else 1 (container health checks; https:// unverified)",
            ),
        ] {
            out.push_str(&format!("  {flag:<flag_w$} {what}\n"));
        }
        out
    }
}

/// GETs `url` within 2 s: 0 on a 2xx answer, 1 otherwise (one line on
/// stderr says why). An `https://` URL is probed without checking the
/// certificate: the probe asks a server on its own host whether it
/// answers, sends nothing secret, and a lab certificate rarely names
/// 127.0.0.1.
fn probe(url: &str) -> i32 {
    let tls = ureq::tls::TlsConfig::builder()
        .disable_verification(url.starts_with("https://"))
        .build();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(2)))
        .http_status_as_error(false)
        .tls_config(tls)
        .build()
        .into();
    match agent.get(url).call() {
        Ok(resp) if resp.status().is_success() => 0,
        Ok(resp) => {
            eprintln!("probe: {url} answered {}", resp.status().as_u16());
            1
        }
        Err(e) => {
            eprintln!("probe: {url}: {e}");
            1
        }
    }
}

impl Values {
    fn slot(&self, env: &str) -> (&Knob, &str) {
        let i = self
            .knobs
            .iter()
            .position(|k| k.env == env)
            .unwrap_or_else(|| panic!("knob {env} is not in the table")); // a programming error
        (self.knobs[i], self.raw[i].0.as_str())
    }

    /// The knob's text, or `None` when it is unset (empty default, no override).
    pub fn get(&self, env: &str) -> Option<&str> {
        let (_, v) = self.slot(env);
        (!v.is_empty()).then_some(v)
    }

    /// The knob's text, unset being the empty string.
    pub fn text(&self, env: &str) -> String {
        self.get(env).unwrap_or_default().to_string()
    }

    /// An [`Error::Invalid`] naming the knob by environment name and flag.
    pub fn invalid(&self, env: &str, expected: impl Into<String>) -> Error {
        let (knob, value) = self.slot(env);
        Error::Invalid {
            knob: format!("{} (--{})", knob.env, knob.flag),
            value: value.to_string(),
            expected: expected.into(),
        }
    }

    /// Parses the knob as a number within `min..=max`.
    pub fn number<T>(&self, env: &str, min: T, max: T) -> Result<T, Error>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
    {
        let expected = || format!("a number from {min} to {max}");
        let (_, raw) = self.slot(env);
        let v: T = raw
            .trim()
            .parse()
            .map_err(|_| self.invalid(env, expected()))?;
        // `!(a <= b)` rather than `a > b` so that NaN is rejected too.
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        let out_of_range = !(min <= v && v <= max);
        if out_of_range {
            return Err(self.invalid(env, expected()));
        }
        Ok(v)
    }

    /// Parses an optional knob (unset → `None`) as a number within `min..=max`.
    pub fn optional_number<T>(&self, env: &str, min: T, max: T) -> Result<Option<T>, Error>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
    {
        match self.get(env) {
            None => Ok(None),
            Some(_) => self.number(env, min, max).map(Some),
        }
    }

    /// Parses a yes/no knob: `true`, `false`, `1`, `0`, `yes`, `no`, `on`
    /// or `off`, in any case.
    pub fn bool(&self, env: &str) -> Result<bool, Error> {
        let (_, raw) = self.slot(env);
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(self.invalid(env, "true or false")),
        }
    }

    /// Parses a log level knob.
    pub fn level(&self, env: &str) -> Result<crate::log::Level, Error> {
        let (_, raw) = self.slot(env);
        crate::log::Level::parse(raw.trim())
            .ok_or_else(|| self.invalid(env, "one of DEBUG, INFO, WARN, ERROR"))
    }

    /// Checks a listen host: an IP address or a name that resolves.
    pub fn host(&self, env: &str) -> Result<String, Error> {
        use std::net::ToSocketAddrs;
        let host = self.text(env);
        let resolves = (host.as_str(), 0u16)
            .to_socket_addrs()
            .map(|mut a| a.next().is_some())
            .unwrap_or(false);
        if host.is_empty() || !resolves {
            return Err(self.invalid(env, "an IP address or a resolvable host name"));
        }
        Ok(host)
    }

    /// A bearer token given literally (`env`) or by file (`file_env`).
    pub fn token(&self, env: &str, file_env: &str) -> Result<Option<crate::auth::Token>, Error> {
        crate::auth::load(self.get(env), self.get(file_env)).map_err(|why| {
            let knob = if self.get(file_env).is_some() {
                file_env
            } else {
                env
            };
            self.invalid_secret(knob, why)
        })
    }

    /// Like [`Values::invalid`], for a knob that holds or leads to a
    /// secret: the value is never echoed (`"…"` stands for it).
    pub fn invalid_secret(&self, env: &str, expected: impl Into<String>) -> Error {
        let (k, _) = self.slot(env);
        Error::Invalid {
            knob: format!("{} (--{})", k.env, k.flag),
            value: "…".into(),
            expected: expected.into(),
        }
    }

    /// True if the value came from a flag or the environment, not the default.
    pub fn is_set(&self, env: &str) -> bool {
        let i = self.knobs.iter().position(|k| k.env == env);
        i.is_some_and(|i| self.raw[i].1 != Origin::Default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static KNOBS: &[Knob] = &[
        Knob {
            env: "T_PORT",
            flag: "port",
            default: "9001",
            help: "listen port",
        },
        Knob {
            env: "T_RATIO",
            flag: "ratio",
            default: "0.5",
            help: "a ratio",
        },
        Knob {
            env: "T_SEED",
            flag: "seed",
            default: "",
            help: "optional seed",
        },
        Knob {
            env: "T_LEVEL",
            flag: "log-level",
            default: "INFO",
            help: "log level",
        },
    ];

    #[derive(Debug, PartialEq)]
    struct Cfg {
        port: u16,
        ratio: f64,
        seed: Option<u64>,
        level: crate::log::Level,
    }

    fn build(v: &Values) -> Result<Cfg, Error> {
        Ok(Cfg {
            port: v.number("T_PORT", 0, u16::MAX)?,
            ratio: v.number("T_RATIO", 0.0, 1.0)?,
            seed: v.optional_number("T_SEED", 0, u64::MAX)?,
            level: v.level("T_LEVEL")?,
        })
    }

    const SPEC: Spec<Cfg> = Spec {
        bin: "t",
        about: "a test",
        knobs: &[KNOBS],
        build,
    };

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Cli<Cfg>, Error> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        SPEC.resolve(args.iter().map(|s| s.to_string()), &lookup)
    }

    fn cfg(args: &[&str], env: &[(&str, &str)]) -> Cfg {
        match run(args, env) {
            Ok(Cli::Run(c)) => c,
            other => panic!("expected a config, got {other:?}"),
        }
    }

    #[test]
    fn defaults_apply() {
        let c = cfg(&[], &[]);
        assert_eq!(c.port, 9001);
        assert_eq!(c.ratio, 0.5);
        assert_eq!(c.seed, None);
        assert_eq!(c.level, crate::log::Level::Info);
    }

    #[test]
    fn flag_beats_env_beats_default() {
        assert_eq!(cfg(&[], &[("T_PORT", "7000")]).port, 7000);
        assert_eq!(cfg(&["--port", "7001"], &[("T_PORT", "7000")]).port, 7001);
        assert_eq!(cfg(&["--port=7002"], &[("T_PORT", "7000")]).port, 7002);
        assert_eq!(cfg(&["--seed", "42"], &[]).seed, Some(42));
        assert_eq!(
            cfg(&[], &[("T_LEVEL", "debug")]).level,
            crate::log::Level::Debug
        );
    }

    #[test]
    fn empty_env_counts_as_unset() {
        assert_eq!(cfg(&[], &[("T_PORT", "")]).port, 9001);
        assert_eq!(cfg(&[], &[("T_SEED", "")]).seed, None);
    }

    #[test]
    fn bad_values_name_the_knob() {
        let e = run(&[], &[("T_PORT", "abc")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid T_PORT (--port) \"abc\": expected a number from 0 to 65535"
        );
        for (args, env) in [
            (vec!["--port", "70000"], vec![]),
            (vec!["--port", "-1"], vec![]),
            (vec![], vec![("T_RATIO", "NaN")]),
            (vec![], vec![("T_RATIO", "1.5")]),
            (vec!["--seed", "x"], vec![]),
            (vec!["--log-level", "loud"], vec![]),
        ] {
            match run(&args, &env) {
                Err(Error::Invalid { .. }) => {}
                other => panic!("{args:?} {env:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn usage_errors() {
        assert_eq!(
            run(&["--nope", "1"], &[]).unwrap_err(),
            Error::UnknownFlag("--nope".into())
        );
        assert_eq!(
            run(&["--port"], &[]).unwrap_err(),
            Error::MissingValue("port".into())
        );
        assert_eq!(
            run(&["--port", "--log-level", "debug"], &[]).unwrap_err(),
            Error::MissingValue("port".into())
        );
        // A negative number is still a value (and then out of range).
        assert!(matches!(
            run(&["--port", "-1"], &[]),
            Err(Error::Invalid { .. })
        ));
        assert_eq!(
            run(&["stray"], &[]).unwrap_err(),
            Error::Unexpected("stray".into())
        );
    }

    #[test]
    fn help_lists_every_knob_and_version_prints() {
        let Ok(Cli::Print(help)) = run(&["--help"], &[]) else {
            panic!("no help")
        };
        for k in KNOBS {
            assert!(help.contains(k.env) && help.contains(&format!("--{}", k.flag)));
            assert!(help.contains(k.help));
        }
        let Ok(Cli::Print(v)) = run(&["-V"], &[]) else {
            panic!("no version")
        };
        assert_eq!(v, format!("t {}\n", crate::VERSION));
        // Help wins even after a bad flag value would have failed.
        assert!(matches!(
            run(&["--port", "x", "--help"], &[]),
            Ok(Cli::Print(_))
        ));
    }
}
