//! `ListMetrics` filtering, paging and CSV over a real socket, used the way
//! a shell script would: `curl '…?format=csv&fields=…' | awk -F, …`.

use crate::support::*;

const CSV: &str = "switch_id,bandwidth_gbps,cpu_util_pct,packet_errors\n\
    sw-000,121.5,34.1,0\n\
    sw-001,118.30,36.5,12\n\
    \"core,1\",99,71.25,3\n\
    sw-010,100,50,1\n\
    leaf-7,80.0,12,0\n";

/// A metrics_server serving the upstream's first snapshot, tagged `tag`
/// upstream, and that snapshot's id (`<tag>-<body hash>`).
fn serving(up: &FakeUpstream, tag: &str) -> (Proc, String) {
    let ms = metrics_server(&up.url(), &[]);
    let id = eventually("the first snapshot", || {
        let r = get(ms.addr, "/telemetry/ListMetrics");
        (r.status == 200).then(|| r.json()["snapshot_id"].clone())
    });
    assert!(id_of_tag(&id, tag), "{id}");
    (ms, id.as_str().unwrap().to_string())
}

/// What `awk -F, 'NR>1 && $1 ~ /^sw-/ {print $1, $3}'` prints: the CSV body
/// split on bare commas, as awk does (our ids here need no quoting).
fn awk_columns(body: &str, cols: &[usize]) -> Vec<String> {
    body.lines()
        .skip(1)
        .filter(|l| l.starts_with("sw-"))
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            cols.iter().map(|&c| f[c]).collect::<Vec<_>>().join(" ")
        })
        .collect()
}

#[test]
fn csv_for_shell_pipelines() {
    let up = FakeUpstream::start(
        Script::csv("\"v1\"", CSV).with_header("X-Snapshot-Ts", "1000000000000"),
    );
    let (ms, id) = serving(&up, "v1");
    let r = get(
        ms.addr,
        "/telemetry/ListMetrics?format=csv&fields=cpu_util_pct,packet_errors",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    // The CSV form has a tag of its own (the JSON one is `"<id>"`).
    assert_eq!(r.header("etag"), Some(format!("\"{id}-csv\"").as_str()));
    let age: u64 = r.header("x-data-age-ms").unwrap().parse().unwrap();
    assert!(age > 700_000_000_000, "{age}");
    let body = r.text();
    assert_eq!(
        body,
        "switch_id,cpu_util_pct,packet_errors\n\
         sw-000,34.1,0\nsw-001,36.5,12\n\"core,1\",71.25,3\nsw-010,50,1\nleaf-7,12,0\n"
    );
    assert_eq!(
        awk_columns(&body, &[0, 2]),
        ["sw-000 0", "sw-001 12", "sw-010 1"]
    );
    // The same with `Accept: text/csv`; numbers spelled as the upstream did.
    let r = get_with(
        ms.addr,
        "/telemetry/ListMetrics?switch_prefix=sw-0&fields=bandwidth_gbps",
        &[("Accept", "text/csv")],
    );
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(
        r.text(),
        "switch_id,bandwidth_gbps\nsw-000,121.5\nsw-001,118.30\nsw-010,100\n"
    );
    assert_eq!(r.header("x-total-count"), Some("3"));
    // The whole table as CSV is the upstream's own body.
    let r = get_with(ms.addr, "/telemetry/ListMetrics", &[("Accept", "text/csv")]);
    assert_eq!(r.text(), CSV);
    // `format=json` wins over Accept.
    let r = get_with(
        ms.addr,
        "/telemetry/ListMetrics?format=json",
        &[("Accept", "text/csv")],
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
}

#[test]
fn filters_and_pages_in_json() {
    let up = FakeUpstream::start(Script::csv("\"v2\"", CSV));
    let (ms, id) = serving(&up, "v2");
    let starts = format!("{{\"snapshot_id\":\"{id}\",\"age_ms\":");
    // The default answer says total and next_offset too.
    let plain = get(ms.addr, "/telemetry/ListMetrics").text();
    assert!(plain.starts_with(&starts), "{plain}");
    assert!(
        plain.contains(",\"total\":5,\"next_offset\":null,\"fields\":"),
        "{plain}"
    );
    // Walk every page of the sw- switches, two at a time.
    let mut seen = Vec::new();
    let mut offset = Some(0);
    while let Some(at) = offset {
        let r = get(
            ms.addr,
            &format!(
                "/telemetry/ListMetrics?switch_prefix=sw-&limit=2&offset={at}&fields=packet_errors"
            ),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let text = r.text();
        let head = text.split(",\"fields\"").next().unwrap();
        assert!(
            head.starts_with(&starts) && head.contains(",\"total\":3,\"next_offset\":"),
            "{text}"
        );
        let v = r.json();
        assert_eq!(v["fields"], serde_json::json!(["packet_errors"]));
        for item in v["items"].as_array().unwrap() {
            assert_eq!(item.as_object().unwrap().len(), 2, "{item}");
            seen.push(item["switch_id"].as_str().unwrap().to_string());
        }
        offset = v["next_offset"].as_u64();
    }
    assert_eq!(seen, ["sw-000", "sw-001", "sw-010"]);
    // Exact ids: upstream order, unknown ones simply absent.
    let v = get(
        ms.addr,
        "/telemetry/ListMetrics?switch_id=sw-010%2Cleaf-7,sw-999",
    )
    .json();
    assert_eq!(v["total"], 2);
    assert_eq!(v["next_offset"], serde_json::Value::Null);
    let ids: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["switch_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["sw-010", "leaf-7"]);
}

#[test]
fn top_n_and_value_filters_for_scripts() {
    let up = FakeUpstream::start(Script::csv("\"v4\"", CSV));
    let (ms, _) = serving(&up, "v4");
    let ids = item_ids;
    // The three busiest switches, busiest first.
    let v = get(
        ms.addr,
        "/telemetry/ListMetrics?sort=-cpu_util_pct&limit=3&fields=cpu_util_pct",
    )
    .json();
    assert_eq!(ids(&v), ["core,1", "sw-010", "sw-001"]);
    assert_eq!(
        (v["total"].as_u64(), v["next_offset"].as_u64()),
        (Some(5), Some(3))
    );
    // Switches with errors and a busy CPU, as curl sends it unencoded.
    let v = get(
        ms.addr,
        "/telemetry/ListMetrics?where=packet_errors>0,cpu_util_pct>=50&sort=switch_id",
    )
    .json();
    assert_eq!(ids(&v), ["core,1", "sw-010"]);
    assert_eq!(v["total"], 2);
    // As Python's requests encodes it, in CSV for awk.
    let r = get(
        ms.addr,
        "/telemetry/ListMetrics?where=packet_errors%3D%3D0&fields=bandwidth_gbps&format=CSV",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        "switch_id,bandwidth_gbps\nsw-000,121.5\nleaf-7,80.0\n"
    );
    assert_eq!(r.header("x-total-count"), Some("2"));
    // Ascending ties keep row order; paging applies after the sort.
    let v = get(
        ms.addr,
        "/telemetry/ListMetrics?sort=packet_errors&offset=1&limit=2",
    )
    .json();
    assert_eq!(ids(&v), ["leaf-7", "sw-010"]);
}

#[test]
fn bad_parameters_fail_curl_f_and_explain() {
    let up = FakeUpstream::start(Script::csv("\"v3\"", CSV));
    let (ms, _) = serving(&up, "v3");
    for (query, msg) in [
        ("fields=cpu_util_pct,nope", "unknown field: nope"),
        (
            "fields=cpu_util_pct,,packet_errors",
            "empty element in fields: cpu_util_pct,,packet_errors",
        ),
        ("limit=0", "invalid limit: 0 (want an integer 1..=100000)"),
        (
            "limit=100001",
            "invalid limit: 100001 (want an integer 1..=100000)",
        ),
        (
            "offset=-1",
            "invalid offset: -1 (want a non-negative integer)",
        ),
        ("format=xml", "invalid format: xml (want json or csv)"),
        ("format=csv&fields=nope", "unknown field: nope"),
        (
            "feilds=cpu_util_pct",
            "unknown query parameter: feilds (want one of fields, id, id_prefix, \
             switch_id, switch_prefix, where, sort, limit, offset, format)",
        ),
        ("limit=5&limit=6", "repeated query parameter: limit"),
        ("sort=-nope", "unknown field in sort: nope"),
        ("where=nope<3", "unknown field in where: nope"),
        (
            "where=cpu_util_pct=3",
            "invalid where: cpu_util_pct=3 (want <field><op><number>, op one of > >= < <= == !=)",
        ),
    ] {
        let r = get(ms.addr, &format!("/telemetry/ListMetrics?{query}"));
        assert_eq!(r.status, 400, "{query}");
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "{query}"
        );
        assert_eq!(r.json(), serde_json::json!({ "error": msg }), "{query}");
    }
}

#[test]
fn no_snapshot_yet_is_503_for_filtered_and_csv_requests() {
    let up = FakeUpstream::start(Script::status(500));
    let ms = metrics_server(&up.url(), &[]);
    ms.wait_log(|v| v["event"] == "poll.error");
    for path in [
        "/telemetry/ListMetrics?format=csv",
        "/telemetry/ListMetrics?fields=x&limit=5",
    ] {
        let r = get(ms.addr, path);
        assert_eq!(r.status, 503, "{path}");
        assert_eq!(r.json(), serde_json::json!({"error": "no snapshot yet"}));
    }
}
