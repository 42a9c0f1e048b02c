//! Writing the Prometheus text exposition format (version 0.0.4), by hand.
//!
//! Both servers expose `/metrics`; this is the vocabulary they share: a
//! family's `# HELP`/`# TYPE` lines, samples with escaped label values, a
//! latency histogram with fixed buckets, and the words of an arbitrary CSV
//! column name with the ones `promtool check metrics` rejects picked out.
//! Names follow the exposition conventions (`promtool check metrics` is the
//! judge, and `make test` runs it).

use std::fmt::Write;

/// The content type scrapers expect for this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the request-latency buckets.
pub const BUCKETS: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// An exposition under construction.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Starts a family: `kind` is gauge, counter or histogram; `help` may
    /// hold any text (it is escaped).
    pub fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let _ = write!(self.out, "# HELP {name} ");
        push_help(&mut self.out, help);
        let _ = writeln!(self.out, "\n# TYPE {name} {kind}");
        self
    }

    /// One sample line.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.out.push_str(name);
        push_labels(&mut self.out, labels);
        self.out.push(' ');
        push_value(&mut self.out, value);
        self.out.push('\n');
        self
    }

    /// One sample line whose value `write` appends (already in the format).
    pub fn sample_with(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        write: impl FnOnce(&mut String),
    ) -> &mut Self {
        self.out.push_str(name);
        push_labels(&mut self.out, labels);
        self.out.push(' ');
        write(&mut self.out);
        self.out.push('\n');
        self
    }

    /// Appends text already in the format (a cached block of samples).
    pub fn raw(&mut self, text: &str) -> &mut Self {
        self.out.push_str(text);
        self
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// `{a="x",b="y"}` with values escaped; nothing for no labels.
pub fn push_labels(out: &mut String, labels: &[(&str, &str)]) {
    if labels.is_empty() {
        return;
    }
    out.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        push_label_value(out, v);
        out.push('"');
    }
    out.push('}');
}

/// A label value with `\`, `"` and line feeds escaped, as the format asks.
pub fn push_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Help text with `\\` and line feeds escaped, the only escapes the
/// format allows there, and other control characters as spaces (a column
/// name may hold any of them).
pub fn push_help(out: &mut String, help: &str) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
}

/// A sample value: shortest round-trip form, `+Inf`/`-Inf`/`NaN` spelled
/// as the format wants.
pub fn push_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        crate::json::push_f64(out, v);
    }
}

/// The words of arbitrary text as a metric name would spell them: runs of
/// ASCII letters and digits, lower-cased; everything else separates them
/// (`foo-Bar.x` → `foo`, `bar`, `x`; `é` → none).
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// The words of a column name that may be written in camel case, as UFM's
/// are (`PortXmitDataExtended`): as [`words`], each run also split where a
/// lower-case letter or digit meets a capital, and before the last capital
/// of a run of them followed by a lower-case letter (`MBOut` → `mb out`).
pub fn camel_words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for run in text.split(|c: char| !c.is_ascii_alphanumeric()) {
        let chars: Vec<char> = run.chars().collect();
        let mut word = String::new();
        for (i, &c) in chars.iter().enumerate() {
            if i > 0 && c.is_ascii_uppercase() {
                let before = chars[i - 1];
                let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
                if before.is_ascii_lowercase()
                    || before.is_ascii_digit()
                    || (before.is_ascii_uppercase() && next_lower)
                {
                    out.push(std::mem::take(&mut word));
                }
            }
            word.push(c.to_ascii_lowercase());
        }
        if !word.is_empty() {
            out.push(word);
        }
    }
    out
}

/// Unit abbreviations promtool rejects as a word of a name (`_ms`).
const ABBREVIATIONS: [&str; 14] = [
    "s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb", "pb", "m", "h", "d",
];

/// The base units promtool knows.
const BASE_UNITS: [&str; 9] = [
    "amperes", "bytes", "celsius", "grams", "joules", "meters", "metres", "seconds", "volts",
];

/// The other units promtool knows, which it rejects (`kelvin` is a base
/// unit in some versions and not in others, so it is avoided).
const OTHER_UNITS: [&str; 15] = [
    "kelvin",
    "kelvins",
    "minutes",
    "hours",
    "days",
    "weeks",
    "fahrenheit",
    "rankine",
    "inches",
    "yards",
    "miles",
    "bits",
    "calories",
    "pounds",
    "ounces",
];

/// SI and binary prefixes: a prefixed unit (`kilobytes`) is rejected too.
const PREFIXES: [&str; 18] = [
    "pico", "nano", "micro", "milli", "centi", "deci", "deca", "hecto", "kilo", "kibi", "mega",
    "mibi", "giga", "gibi", "tera", "tebi", "peta", "pebi",
];

/// Metric types: promtool rejects a name that holds its own type as a word.
const TYPES: [&str; 4] = ["counter", "gauge", "histogram", "summary"];

/// Whether `promtool check metrics` rejects a name holding `word` between
/// underscores or at its end: an abbreviated unit (`ms`, `b`), a unit that
/// is not a base unit (`bits`, `minutes`), a prefixed unit (`kilobytes`,
/// `milliseconds`) or a metric type (`gauge`).
pub fn rejected_word(word: &str) -> bool {
    let prefixed = |w: &str| {
        PREFIXES
            .iter()
            .filter_map(|p| w.strip_prefix(p))
            .any(|u| BASE_UNITS.contains(&u) || OTHER_UNITS.contains(&u))
    };
    ABBREVIATIONS.contains(&word)
        || OTHER_UNITS.contains(&word)
        || prefixed(word)
        || TYPES.contains(&word)
}

/// Whether a gauge's name may not end in `_word`: the suffixes of
/// counters (`_total`, `_created`) and of histogram and summary samples
/// (`_bucket`, `_count`, `_sum`).
pub fn counter_or_sample_suffix(word: &str) -> bool {
    matches!(word, "total" | "created" | "bucket" | "count" | "sum")
}

/// A cumulative latency histogram over [`BUCKETS`].
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, seconds: f64) {
        if let Some(i) = BUCKETS.iter().position(|&b| seconds <= b) {
            self.counts[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }

    /// The `_bucket` (cumulative), `_sum` and `_count` samples of `name`.
    pub fn write(&self, exp: &mut Exposition, name: &str, labels: &[(&str, &str)]) {
        let bucket = format!("{name}_bucket");
        let bounds: Vec<String> = BUCKETS.iter().map(|b| b.to_string()).collect();
        let mut cumulative = 0;
        for (i, le) in bounds
            .iter()
            .map(String::as_str)
            .chain(["+Inf"])
            .enumerate()
        {
            cumulative = if i < BUCKETS.len() {
                cumulative + self.counts[i]
            } else {
                self.count
            };
            let mut with_le = labels.to_vec();
            with_le.push(("le", le));
            exp.sample(&bucket, &with_le, cumulative as f64);
        }
        exp.sample(&format!("{name}_sum"), labels, self.sum);
        exp.sample(&format!("{name}_count"), labels, self.count as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_case_names_split_into_words() {
        assert_eq!(
            camel_words("PortXmitDataExtended"),
            ["port", "xmit", "data", "extended"]
        );
        assert_eq!(
            camel_words("Infiniband_MBOut_u_Gb"),
            ["infiniband", "mb", "out", "u", "gb"]
        );
        assert_eq!(camel_words("hist0_u_count"), ["hist0", "u", "count"]);
        assert_eq!(camel_words("Symbol_BER"), ["symbol", "ber"]);
        assert_eq!(camel_words("port2Rate"), ["port2", "rate"]);
        assert_eq!(camel_words("snake_case"), words("snake_case"));
        assert!(camel_words("é-").is_empty());
    }

    #[test]
    fn families_samples_and_escapes() {
        let mut e = Exposition::new();
        e.family("fabric_x_ratio", "gauge", "A ratio.\nTwo lines.")
            .sample("fabric_x_ratio", &[("switch_id", "a\"b\\c\nd")], 0.25)
            .sample("fabric_x_ratio", &[], f64::INFINITY);
        let text = e.finish();
        assert_eq!(
            text,
            "# HELP fabric_x_ratio A ratio.\\nTwo lines.\n# TYPE fabric_x_ratio gauge\n\
             fabric_x_ratio{switch_id=\"a\\\"b\\\\c\\nd\"} 0.25\nfabric_x_ratio +Inf\n"
        );
        let mut e = Exposition::new();
        e.family("fabric_y", "gauge", "Column C:\\x\r.");
        assert_eq!(
            e.finish(),
            "# HELP fabric_y Column C:\\\\x .\n# TYPE fabric_y gauge\n"
        );
    }

    #[test]
    fn names_are_split_into_words() {
        assert_eq!(words("optics-rx dBm"), ["optics", "rx", "dbm"]);
        assert_eq!(words("__5g__links_"), ["5g", "links"]);
        assert_eq!(words("foo-Bar.x"), ["foo", "bar", "x"]);
        assert!(words("é -").is_empty());
    }

    #[test]
    fn words_promtool_rejects() {
        for w in [
            "ms",
            "s",
            "us",
            "b",
            "bits",
            "minutes",
            "kilobytes",
            "milliseconds",
            "megabits",
            "gauge",
            "counter",
            "kelvin",
        ] {
            assert!(rejected_word(w), "{w}");
        }
        for w in [
            "seconds",
            "bytes",
            "celsius",
            "ratio",
            "per",
            "second",
            "rpm",
            "dbm",
            "kilo",
            "thermometers",
            "total",
        ] {
            assert!(!rejected_word(w), "{w}");
        }
        assert!(counter_or_sample_suffix("total") && counter_or_sample_suffix("bucket"));
        assert!(!counter_or_sample_suffix("errors"));
    }

    #[test]
    fn histograms_are_cumulative() {
        let mut h = Histogram::default();
        for s in [0.00005, 0.0003, 0.0003, 0.2, 5.0] {
            h.observe(s);
        }
        let mut e = Exposition::new();
        h.write(&mut e, "lat_seconds", &[("endpoint", "/x")]);
        let text = e.finish();
        assert!(text.contains("lat_seconds_bucket{endpoint=\"/x\",le=\"0.0001\"} 1\n"));
        assert!(text.contains("lat_seconds_bucket{endpoint=\"/x\",le=\"0.0005\"} 3\n"));
        assert!(text.contains("lat_seconds_bucket{endpoint=\"/x\",le=\"1\"} 4\n"));
        assert!(text.contains("lat_seconds_bucket{endpoint=\"/x\",le=\"+Inf\"} 5\n"));
        assert!(text.contains("lat_seconds_count{endpoint=\"/x\"} 5\n"));
    }
}
