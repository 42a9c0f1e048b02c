//! Writing the Prometheus text exposition format (version 0.0.4), by hand.
//!
//! Both servers expose `/metrics`; this is the vocabulary they share: a
//! family's `# HELP`/`# TYPE` lines, samples with escaped label values, a
//! latency histogram with fixed buckets, and turning an arbitrary CSV column
//! name into a valid metric name. Names follow the exposition conventions
//! (`promtool check metrics` is the judge, and `make test` runs it).

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

    /// Starts a family: `kind` is gauge, counter or histogram.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let _ = writeln!(self.out, "# HELP {name} {}", help.replace('\n', " "));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
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

/// A metric name from arbitrary text: letters, digits and `_` kept,
/// everything else `_`, lower-cased, a leading digit prefixed with `_`.
pub fn sanitize(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) || out.is_empty() {
        out.insert(0, '_');
    }
    out
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
    fn families_samples_and_escapes() {
        let mut e = Exposition::new();
        e.family("fabric_x_ratio", "gauge", "A ratio.\nTwo lines.")
            .sample("fabric_x_ratio", &[("switch_id", "a\"b\\c\nd")], 0.25)
            .sample("fabric_x_ratio", &[], f64::INFINITY);
        let text = e.finish();
        assert_eq!(
            text,
            "# HELP fabric_x_ratio A ratio. Two lines.\n# TYPE fabric_x_ratio gauge\n\
             fabric_x_ratio{switch_id=\"a\\\"b\\\\c\\nd\"} 0.25\nfabric_x_ratio +Inf\n"
        );
    }

    #[test]
    fn names_are_sanitized() {
        assert_eq!(sanitize("optics-rx dBm"), "optics_rx_dbm");
        assert_eq!(sanitize("5g_links"), "_5g_links");
        assert_eq!(sanitize("é"), "_");
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
