//! The Grafana dashboard (`deploy/grafana/fabric-telemetry.json`) asks only
//! for metrics the servers really export: every `fabric_*` name in every
//! panel query must be a family with a `# TYPE` line in a live `/metrics`,
//! used as its type allows, and every `{{label}}` a legend shows must be a
//! label those samples carry. A renamed metric fails here, not on a wall
//! screen full of "No data".

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::support::*;

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/grafana/fabric-telemetry.json"
);

/// What one or more `/metrics` pages declare: family → type, and sample
/// name → the label names seen on its samples.
#[derive(Default)]
struct Exposition {
    types: BTreeMap<String, String>,
    samples: BTreeMap<String, BTreeSet<String>>,
}

impl Exposition {
    /// Reads the Prometheus text format (0.0.4): `# TYPE` lines and sample
    /// lines; label values may hold escaped quotes, commas and braces.
    fn add(&mut self, text: &str) {
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut words = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (words.next(), words.next()) {
                    self.types.insert(name.to_string(), kind.to_string());
                }
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            let labels = self.samples.entry(line[..end].to_string()).or_default();
            if line[end..].starts_with('{') {
                labels.extend(label_names(&line[end + 1..]));
            }
        }
    }

    /// The family and type a name in a query refers to: the name itself, or
    /// for `_bucket`/`_sum`/`_count` the histogram (or summary) it belongs to.
    fn family(&self, name: &str) -> Option<(String, String)> {
        if let Some(kind) = self.types.get(name) {
            return Some((name.to_string(), kind.clone()));
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            let Some(base) = name.strip_suffix(suffix) else {
                continue;
            };
            match self.types.get(base).map(String::as_str) {
                Some("histogram") => return Some((base.to_string(), "histogram".into())),
                Some("summary") if suffix != "_bucket" => {
                    return Some((base.to_string(), "summary".into()));
                }
                _ => {}
            }
        }
        None
    }
}

/// Label names of `a="x",b="y\"}"}` (the text after a sample's `{`).
fn label_names(mut s: &str) -> Vec<String> {
    let mut names = Vec::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if s.is_empty() || s.starts_with('}') {
            return names;
        }
        let Some(eq) = s.find('=') else { return names };
        names.push(s[..eq].trim().to_string());
        // Skip the quoted value, honouring backslash escapes.
        let mut chars = s[eq + 1..].char_indices().skip(1);
        let mut close = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    close = Some(eq + 1 + i + 1);
                    break;
                }
                _ => {}
            }
        }
        let Some(close) = close else { return names };
        s = &s[close..];
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Every `fabric_*` metric name in a PromQL expression (not inside string
/// literals, so label values and regexes do not count), each with whether it
/// is the direct argument of `rate`, `irate` or `increase`.
fn metric_names(expr: &str) -> Vec<(String, bool)> {
    let mut found = Vec::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let mut quote: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = quote {
            if c == '\\' {
                i += 1;
            } else if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        if matches!(c, '"' | '\'' | '`') {
            quote = Some(c);
            i += 1;
            continue;
        }
        if !is_ident(c) {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && is_ident(chars[i]) {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        if !word.starts_with("fabric_") {
            continue;
        }
        // Is it `rate( name`? Look back over spaces and one `(`.
        let before: String = chars[..start].iter().collect();
        let before = before.trim_end();
        let counted = before.strip_suffix('(').is_some_and(|b| {
            let b = b.trim_end();
            let func = &b[b.rfind(|c: char| !is_ident(c)).map_or(0, |p| p + 1)..];
            matches!(func, "rate" | "irate" | "increase")
        });
        found.push((word, counted));
    }
    found
}

/// Every panel of the dashboard, including those inside collapsed rows.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for p in dashboard["panels"]
        .as_array()
        .expect("dashboard has panels")
    {
        all.push(p);
        if let Some(inner) = p["panels"].as_array() {
            all.extend(inner);
        }
    }
    all
}

/// What is wrong with the dashboard's queries against `exp`, one line each.
fn problems(dashboard: &Value, exp: &Exposition) -> Vec<String> {
    let mut out = Vec::new();
    let mut ids = BTreeSet::new();
    let mut queries = 0;
    for p in panels(dashboard) {
        let title = p["title"].as_str().unwrap_or("?");
        if let Some(id) = p["id"].as_u64() {
            if !ids.insert(id) {
                out.push(format!("panel {title:?}: duplicate id {id}"));
            }
        }
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        if targets.is_empty() {
            out.push(format!("panel {title:?}: no queries"));
        }
        for t in targets {
            let Some(expr) = t["expr"].as_str() else {
                out.push(format!("panel {title:?}: a target without expr"));
                continue;
            };
            queries += 1;
            let ds = t["datasource"]["uid"]
                .as_str()
                .or(p["datasource"]["uid"].as_str());
            if ds != Some("${DS_PROMETHEUS}") {
                out.push(format!(
                    "panel {title:?}: datasource is {ds:?}, not ${{DS_PROMETHEUS}}"
                ));
            }
            let names = metric_names(expr);
            if names.is_empty() {
                out.push(format!("panel {title:?}: no fabric_* metric in {expr}"));
            }
            let mut labels = BTreeSet::new();
            for (name, counted) in &names {
                let Some((family, kind)) = exp.family(name) else {
                    out.push(format!(
                        "panel {title:?}: {name} has no `# TYPE` in /metrics ({expr})"
                    ));
                    continue;
                };
                let Some(seen) = exp.samples.get(name) else {
                    out.push(format!(
                        "panel {title:?}: {name} ({kind} {family}) has no samples"
                    ));
                    continue;
                };
                labels.extend(seen.iter().cloned());
                let rate_ok = kind == "counter" || (name != &family && kind != "gauge");
                if *counted && !rate_ok {
                    out.push(format!("panel {title:?}: rate/increase over {kind} {name}"));
                }
                if kind == "histogram" && name == &family {
                    out.push(format!(
                        "panel {title:?}: histogram {name} used without a suffix"
                    ));
                }
            }
            // Labels a legend prints must exist on the samples queried.
            let legend = t["legendFormat"].as_str().unwrap_or("");
            for part in legend.split("{{").skip(1) {
                let label = part.split("}}").next().unwrap_or("").trim();
                if !names.is_empty() && !labels.contains(label) {
                    out.push(format!(
                        "panel {title:?}: legend label {label:?} is on no sample of {expr}"
                    ));
                }
            }
        }
    }
    if queries == 0 {
        out.push("the dashboard has no queries".into());
    }
    out
}

fn scrape(p: &Proc) -> String {
    let r = get(p.addr, "/metrics");
    if r.status != 200 {
        p.fail(&format!("GET /metrics answered {}: {}", r.status, r.text()));
    }
    let ct = r.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("text/plain; version=0.0.4"),
        "GET /metrics content type {ct:?}"
    );
    r.text()
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(DASHBOARD)
        .unwrap_or_else(|e| panic!("cannot read {DASHBOARD}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"))
}

#[test]
fn the_dashboard_queries_only_metrics_the_servers_export() {
    let d = dashboard();
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    // Faults, so the error counters of both servers have samples too.
    let ds = data_server(&[
        "--switches",
        "8",
        "--interval-sec",
        "0.5",
        "--fault-500-pct",
        "40",
        "--fault-slow-ms",
        "1",
    ]);
    let ms = metrics_server(&ds.url("/counters"), &[]);
    eventually("a snapshot", || {
        (get(ms.addr, "/telemetry/ListMetrics").status == 200).then_some(())
    });
    ms.wait_log(|v| v["event"] == "poll.error");
    ds.wait_log(|v| v["event"] == "gen.inject_fault");
    // Every endpoint a latency panel shows has been asked at least once.
    let one = get(
        ms.addr,
        "/telemetry/GetMetric?switch_id=sw-000&metric=cpu_util_pct",
    );
    assert_eq!(one.status, 200, "{}", one.text());
    assert_eq!(get(ms.addr, "/stats").status, 200);

    let mut exp = Exposition::default();
    let ms_text = scrape(&ms);
    let ds_text = scrape(&ds);
    exp.add(&ms_text);
    exp.add(&ds_text);
    let found = problems(&d, &exp);
    assert!(
        found.is_empty(),
        "the dashboard does not fit the servers' /metrics:\n  {}\n\nmetrics_server /metrics:\n{ms_text}\ndata_server /metrics:\n{ds_text}",
        found.join("\n  ")
    );
}

#[test]
fn the_check_catches_a_metric_that_does_not_exist() {
    let mut exp = Exposition::default();
    exp.add(concat!(
        "# TYPE fabric_polls_total counter\n",
        "fabric_polls_total{result=\"updated\"} 3\n",
        "# TYPE fabric_upstream_up gauge\n",
        "fabric_upstream_up 1\n",
        "# TYPE fabric_http_request_duration_seconds histogram\n",
        "fabric_http_request_duration_seconds_bucket{endpoint=\"/x\",le=\"+Inf\"} 1\n",
        "fabric_http_request_duration_seconds_sum{endpoint=\"/x\"} 0.1\n",
        "fabric_http_request_duration_seconds_count{endpoint=\"/x\"} 1\n",
        "# TYPE fabric_temperature_celsius gauge\n",
        "fabric_temperature_celsius{switch_id=\"a\\\"b,c}\"} 40\n",
    ));
    let board = |expr: &str, legend: &str| {
        serde_json::json!({"schemaVersion": 39, "panels": [{"id": 1, "type": "timeseries",
            "title": "t", "datasource": {"uid": "${DS_PROMETHEUS}"},
            "targets": [{"expr": expr, "legendFormat": legend}]}]})
    };
    let fine = [
        (
            "sum by (result) (rate(fabric_polls_total[5m]))",
            "{{result}}",
        ),
        (
            "histogram_quantile(0.9, sum by (le, endpoint) (rate(fabric_http_request_duration_seconds_bucket[5m])))",
            "{{endpoint}}",
        ),
        (
            "fabric_temperature_celsius{switch_id=~\"fabric_nope\"}",
            "{{switch_id}}",
        ),
        ("fabric_upstream_up", ""),
    ];
    for (expr, legend) in fine {
        assert_eq!(
            problems(&board(expr, legend), &exp),
            Vec::<String>::new(),
            "{expr}"
        );
    }
    let wrong = [
        ("rate(fabric_polls[5m])", ""),
        ("fabric_temperature_celcius", ""),
        ("rate(fabric_upstream_up[5m])", ""),
        ("fabric_http_request_duration_seconds", ""),
        ("fabric_upstream_up_bucket", ""),
        ("sum by (kind) (fabric_polls_total)", "{{kind}}"),
        ("up", ""),
    ];
    for (expr, legend) in wrong {
        assert!(
            !problems(&board(expr, legend), &exp).is_empty(),
            "{expr} passed"
        );
    }
}
