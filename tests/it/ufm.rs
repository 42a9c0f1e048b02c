//! metrics_server against a scripted UFM Telemetry upstream (issue 19): no
//! `ETag`, rows per port keyed `Node_GUID:Port_Number` in either spelling,
//! 64-bit counters kept digit for digit through every answer (GetMetric,
//! ListMetrics JSON and CSV, the stream, History), empty cells as `null`,
//! text labels, a header alone, an unchanged body polled again and again,
//! the key knobs, `id=` beside `switch_id=`, and UFM's shards.
//!
//! Numbers are compared as the raw text of the answers, never through
//! `serde_json::Value` (which reads 2^53 + 1 as 2^53).

use std::net::SocketAddr;

use serde_json::{Value, json};

use crate::support::*;

/// UFM's first six columns, `/csv/xcset/...` spelling.
const HEAD: &str = "timestamp,source_id,tag,Node_GUID,port_guid,Port_Number";

/// A UFM `ib_basic_debug`-like body (reconstructed from NVIDIA's simulators
/// and plugins): switch ports with `port_guid == Node_GUID`, an HCA whose
/// port GUID is its node's + 1, a port 65 with every counter empty, empty
/// `Module_Temperature` cells, `Device_ID` in decimal. `TS` is replaced by a
/// recent time in microseconds (UFM's unit) so that the data is fresh.
const SAMPLE: &str = "\
timestamp,source_id,tag,Node_GUID,port_guid,Port_Number,Device_ID,node_description,PortXmitDataExtended,PortRcvDataExtended,PortXmitPktsExtended,PortRcvPktsExtended,PortXmitWaitExtended,PortRcvErrors,PortRcvRemotePhysicalErrors,PortXmitDiscards,Symbol_Errors,Link_Down,Module_Temperature
TS,0x248a070300ef19a0,,0x248a070300ef19a0,0x248a070300ef19a0,1,54002,MF0;ib-leaf01:MQM9700/U1,1021680,1021752,14191,14190,0,0,0,0,0,1,41
TS,0x248a070300ef19a0,,0x248a070300ef19a0,0x248a070300ef19a0,23,54002,MF0;ib-leaf01:MQM9700/U1,17602488,17603082,244479,244498,1532,0,0,0,0,0,43
TS,0x248a070300ef19a0,,0x248a070300ef19a0,0x248a070300ef19a0,36,54002,MF0;ib-leaf01:MQM9700/U1,88712355104,88709921340,1232115432,1232087761,5021873,2,0,0,0,0,
TS,0xb83fd20300a1c2e0,,0xb83fd20300a1c2e0,0xb83fd20300a1c2e0,1,54002,MF0;ib-spine01:MQM9700/U1,90211434012,90209318875,1252936583,1252901774,811204,0,0,0,0,0,47
TS,0xb83fd20300a1c2e0,,0xb83fd20300a1c2e0,0xb83fd20300a1c2e0,2,54002,MF0;ib-spine01:MQM9700/U1,0,0,0,0,0,0,0,0,0,0,
TS,0xb83fd20300a1c2e0,,0xb83fd20300a1c2e0,0xb83fd20300a1c2e0,65,54002,MF0;ib-spine01:MQM9700/U1,,,,,,,,,,,
TS,0x0c42a103007ab890,,0x0c42a103007ab890,0x0c42a103007ab890,1,4129,node001 mlx5_0,1021752,1021680,14190,14191,0,0,0,0,0,0,38
TS,0x7cfe900300292356,,0x7cfe900300292356,0x7cfe900300292356,1,4129,node002 mlx5_0,88709921340,88712355104,1232087761,1232115432,0,0,0,0,0,0,39
TS,0x946dae0300b7d4a2,,0x946dae0300b7d4a2,0x946dae0300b7d4a3,1,4129,node003 mlx5_1,90209318875,90211434012,1252901774,1252936583,2047,0,3,0,17,2,
TS,0xe41d2d030003e3b0,,0xe41d2d030003e3b0,0xe41d2d030003e3b0,36,53488,MF0;ib-legacy01:MQM8700/U1,412,388,6,6,0,0,0,0,0,0,36
";

/// The sample's row ids, in its order.
const SAMPLE_IDS: [&str; 10] = [
    "0x248a070300ef19a0:1",
    "0x248a070300ef19a0:23",
    "0x248a070300ef19a0:36",
    "0xb83fd20300a1c2e0:1",
    "0xb83fd20300a1c2e0:2",
    "0xb83fd20300a1c2e0:65",
    "0x0c42a103007ab890:1",
    "0x7cfe900300292356:1",
    "0x946dae0300b7d4a2:1",
    "0xe41d2d030003e3b0:36",
];

/// The columns UFM's dialect reads as text by default (key and labels).
const TEXT_COLUMNS: [&str; 7] = [
    "timestamp",
    "source_id",
    "tag",
    "Node_GUID",
    "port_guid",
    "Port_Number",
    "node_description",
];

fn now_us() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.unwrap().as_micros() as u64
}

fn now_ms() -> u64 {
    now_us() / 1000
}

/// [`SAMPLE`] stamped `ts` (microseconds).
fn sample(ts: u64) -> String {
    SAMPLE.replace("TS", &ts.to_string())
}

/// What UFM Telemetry answers: the body, and no `ETag` (nor any other
/// conditional or time header).
fn ufm(body: &str) -> Script {
    let mut s = Script::csv("", body);
    s.headers = vec![("Content-Type".into(), "text/plain".into())];
    s
}

/// The URL UFM serves an xcset at; the fake answers on any path.
fn ufm_url(up: &FakeUpstream) -> String {
    format!("http://{}/csv/xcset/ib_basic_debug", up.addr)
}

/// One port's line: `ts`, the node GUID as source and port GUID, an empty tag.
fn port_line(ts: u64, guid: &str, port: u32, rest: &str) -> String {
    format!("{ts},{guid},,{guid},{guid},{port},{rest}\n")
}

/// Waits for `/ready`, then returns ListMetrics.
fn ready(ms: &Proc) -> Value {
    eventually("/ready", || {
        (get(ms.addr, "/ready").status == 200).then_some(())
    });
    get(ms.addr, "/telemetry/ListMetrics").json()
}

/// The snapshot id ListMetrics serves now ("" before the first).
fn snapshot_id(ms: &Proc) -> String {
    let r = get(ms.addr, "/telemetry/ListMetrics");
    match r.status {
        200 => r.json()["snapshot_id"].as_str().unwrap().to_string(),
        _ => String::new(),
    }
}

/// Waits until the served snapshot is no longer `old`; returns the new id.
fn next_snapshot(ms: &Proc, old: &str) -> String {
    eventually(&format!("a snapshot after {old:?}"), || {
        let id = snapshot_id(ms);
        (!id.is_empty() && id != old).then_some(id)
    })
}

/// `GET path`, answered 200 (the body shown otherwise), as text.
fn ok_text(addr: SocketAddr, path: &str) -> String {
    let r = get(addr, path);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.text()
}

/// The end of the JSON string starting at `b[i]` (a `"`), past its quote.
fn string_end(b: &[u8], i: usize) -> usize {
    assert_eq!(b[i], b'"');
    let mut j = i + 1;
    while b[j] != b'"' {
        j += if b[j] == b'\\' { 2 } else { 1 };
    }
    j + 1
}

/// The items of a ListMetrics body (or stream event) as written: each
/// item's keys, in order, with each value's raw text (strings keep their
/// quotes). The body is also checked to be JSON.
fn raw_items(body: &str) -> Vec<Vec<(String, String)>> {
    serde_json::from_str::<Value>(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    let b = body.as_bytes();
    let mut i = body.find("\"items\":[").expect("no items") + 9;
    let mut items = Vec::new();
    loop {
        match b[i] {
            b']' => return items,
            b',' => i += 1,
            b'{' => {
                i += 1;
                let mut item = Vec::new();
                while b[i] != b'}' {
                    if b[i] == b',' {
                        i += 1;
                    }
                    let end = string_end(b, i);
                    let key: String = serde_json::from_str(&body[i..end]).unwrap();
                    assert_eq!(b[end], b':', "{body}");
                    let from = end + 1;
                    i = match b[from] {
                        b'"' => string_end(b, from),
                        _ => {
                            from + b[from..]
                                .iter()
                                .position(|&c| c == b',' || c == b'}')
                                .unwrap()
                        }
                    };
                    item.push((key, body[from..i].to_string()));
                }
                i += 1;
                items.push(item);
            }
            c => panic!("unexpected {:?} at {i} in {body}", c as char),
        }
    }
}

/// The raw text of `field` in each item, in order (panics if one lacks it).
fn column_of(items: &[Vec<(String, String)>], field: &str) -> Vec<String> {
    items
        .iter()
        .map(|item| {
            item.iter()
                .find(|(k, _)| k == field)
                .unwrap_or_else(|| panic!("no {field} in {item:?}"))
                .1
                .clone()
        })
        .collect()
}

/// The `id` of each item, unquoted.
fn ids_of(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            i["id"]
                .as_str()
                .unwrap_or_else(|| panic!("no id: {i}"))
                .to_string()
        })
        .collect()
}

/// The ids ListMetrics answers `query` with.
fn ids_for(ms: &Proc, query: &str) -> Vec<String> {
    let text = ok_text(ms.addr, &format!("/telemetry/ListMetrics?{query}"));
    ids_of(&serde_json::from_str(&text).unwrap())
}

/// CSV records (RFC 4180 quoting; `\r` outside quotes ignored).
fn csv_records(text: &str) -> Vec<Vec<String>> {
    let (mut out, mut rec, mut cell) = (Vec::new(), Vec::new(), String::new());
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    cell.push('"');
                }
                '"' => quoted = false,
                c => cell.push(c),
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            ',' => rec.push(std::mem::take(&mut cell)),
            '\n' => {
                rec.push(std::mem::take(&mut cell));
                out.push(std::mem::take(&mut rec));
            }
            '\r' => {}
            c => cell.push(c),
        }
    }
    assert!(!quoted, "unclosed quote in {text:?}");
    if !cell.is_empty() || !rec.is_empty() {
        rec.push(cell);
        out.push(rec);
    }
    out
}

/// The cells of `column` in a CSV answer, one per data row.
fn csv_column(text: &str, column: &str) -> Vec<String> {
    let records = csv_records(text);
    let at = records[0]
        .iter()
        .position(|c| c == column)
        .unwrap_or_else(|| panic!("no {column} in {text}"));
    records[1..].iter().map(|r| r[at].clone()).collect()
}

/// The first event of `/telemetry/stream?query`, read off a raw socket:
/// its id and its `data:` text.
fn first_event(addr: SocketAddr, query: &str) -> (String, String) {
    let (head, mut events) = stream_events(addr, query, "", 1);
    assert!(head.starts_with("HTTP/1.1 200"), "{query}: {head}");
    events.swap_remove(0)
}

/// A History body's points: each time and the value's raw text.
fn raw_points(body: &str) -> Vec<(u64, String)> {
    serde_json::from_str::<Value>(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    let from = body.find("\"points\":[").expect("no points") + 10;
    let inner = &body[from..body.rfind("]}").unwrap()];
    if inner.is_empty() {
        return Vec::new();
    }
    let inner = inner.strip_prefix('[').unwrap().strip_suffix(']').unwrap();
    inner
        .split("],[")
        .map(|p| {
            let (ts, v) = p.split_once(',').unwrap();
            (ts.parse().unwrap(), v.to_string())
        })
        .collect()
}

/// History of `id`'s `metric`, as raw points.
fn history(ms: &Proc, id: &str, metric: &str) -> Vec<(u64, String)> {
    raw_points(&ok_text(
        ms.addr,
        &format!("/telemetry/History?id={id}&metric={metric}"),
    ))
}

/// GetMetric's `value` for `id` × `metric`, as written.
fn get_metric_raw(ms: &Proc, id: &str, metric: &str) -> String {
    let text = ok_text(
        ms.addr,
        &format!("/telemetry/GetMetric?id={id}&metric={metric}"),
    );
    let head = format!("{{\"id\":{},\"metric\":\"{metric}\",\"value\":", json!(id));
    let rest = text
        .strip_prefix(&head)
        .unwrap_or_else(|| panic!("{text} does not start {head}"));
    rest[..rest.find(",\"snapshot_id\":").unwrap()].to_string()
}

/// A name lowercased with everything but letters and digits dropped, so
/// that a Prometheus family matches its column however it is spelt
/// (`fabric_module_temperature`, `..._total`).
fn squash(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The sample lines of `/metrics` in a family of `column`'s.
fn samples_of<'a>(metrics: &'a str, column: &str) -> Vec<&'a str> {
    let want = squash(column);
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter(|l| squash(l.split(['{', ' ']).next().unwrap()).contains(&want))
        .collect()
}

/// True if a sample line is for port `port` of node `guid`: the GUID's
/// digits in a label, and the port as the end of the id or a label.
fn is_port(line: &str, guid: &str, port: u32) -> bool {
    let labels = line.split('}').next().unwrap();
    let digits = guid.trim_start_matches("0x");
    labels.contains(digits)
        && (labels.contains(&format!(":{port}\"")) || labels.contains(&format!("=\"{port}\"")))
}

/// The JSON an item of [`SAMPLE`]-like `header`/`line` should be: text
/// columns as strings, values as written, empty values `null`.
fn expected_item(header: &str, line: &str, id: &str) -> Vec<(String, String)> {
    let mut item = vec![("id".to_string(), json!(id).to_string())];
    for (col, cell) in header.split(',').zip(line.split(',')) {
        let text = TEXT_COLUMNS.iter().any(|t| t.eq_ignore_ascii_case(col))
            || col.eq_ignore_ascii_case("port_num");
        let raw = match (text, cell) {
            (true, c) => json!(c).to_string(),
            (false, "") => "null".to_string(),
            (false, c) => c.to_string(),
        };
        item.push((col.to_string(), raw));
    }
    item
}

#[test]
fn both_header_spellings_are_ports_keyed_by_guid_and_port() {
    let ts = now_us() - 2_000_000;
    let xcset = sample(ts);
    // `/csv/metrics` spells the key in lowercase.
    let metrics =
        xcset
            .replacen("Node_GUID", "node_guid", 1)
            .replacen("Port_Number", "port_num", 1);
    let servers: Vec<(String, FakeUpstream, Proc)> = [xcset, metrics]
        .into_iter()
        .map(|body| {
            let up = FakeUpstream::start(ufm(&body));
            let ms = metrics_server(&ufm_url(&up), &[]);
            (body, up, ms)
        })
        .collect();
    for (body, up, ms) in &servers {
        let v = ready(ms);
        let header = body.lines().next().unwrap();
        assert_eq!(v["total"], 10);
        assert_eq!(ids_of(&v), SAMPLE_IDS);
        assert_eq!(
            v["fields"],
            json!(header.split(',').collect::<Vec<_>>()),
            "every column is a field, the key's too"
        );
        // Without an ETag our id is a hash of the body.
        let id = v["snapshot_id"].as_str().unwrap();
        assert!(
            id.len() == 18
                && id.starts_with("h-")
                && id[2..].bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
        // Every item as the CSV wrote it: keys and labels as strings,
        // counters digit for digit, empty cells null; `id` first, no
        // `switch_id`.
        let text = ok_text(ms.addr, "/telemetry/ListMetrics");
        let items = raw_items(&text);
        for ((item, line), id) in items.iter().zip(body.lines().skip(1)).zip(SAMPLE_IDS) {
            assert_eq!(item, &expected_item(header, line, id), "{header}");
        }
        assert!(!text.contains("switch_id"), "{text}");
        // GetMetric names the row `id`.
        let g = ok_text(
            ms.addr,
            "/telemetry/GetMetric?id=0x946dae0300b7d4a2:1&metric=PortRcvDataExtended",
        );
        assert!(
            g.starts_with("{\"id\":\"0x946dae0300b7d4a2:1\",\"metric\":\"PortRcvDataExtended\",\"value\":90211434012,\"snapshot_id\":"),
            "{g}"
        );
        // The data's time is the rows' `timestamp` (µs), not the fetch.
        let r = get(
            ms.addr,
            "/telemetry/GetMetric?id=0x946dae0300b7d4a2:1&metric=Link_Down",
        );
        let age: u64 = r.header("x-data-age-ms").unwrap().parse().unwrap();
        let since = now_ms() - ts / 1000;
        assert!(age >= 2_000 && age <= since, "{age} (data {since} ms old)");
        // UFM sends no ETag; neither does the poller ask with one.
        assert_eq!(up.last_if_none_match(), None);
    }
}

/// 64-bit edges, in an order where a float comparison would tie 2^53 with
/// 2^53 + 1 and 2^64 − 2 with 2^64 − 1 and keep the wrong one first.
const EDGES: [(u32, &str); 8] = [
    (1, "0"),
    (2, "9007199254740993"),
    (3, "9007199254740992"),
    (4, "9223372036854775808"),
    (5, "18446744073709551614"),
    (6, "18446744073709551615"),
    (7, "-9223372036854775808"),
    (8, ""),
];

const EDGE_GUID: &str = "0x0c42a1030077e800";

/// The same numbers spelt as JSON would not (a sign, leading zeros), and
/// how they must come back.
const SPELLED: [(&str, &str); 8] = [
    ("+0", "0"),
    ("+9007199254740993", "9007199254740993"),
    ("009007199254740992", "9007199254740992"),
    ("+9223372036854775808", "9223372036854775808"),
    ("018446744073709551614", "18446744073709551614"),
    ("+18446744073709551615", "18446744073709551615"),
    ("-0009223372036854775808", "-9223372036854775808"),
    ("", "null"),
];

fn edge_id(port: u32) -> String {
    format!("{EDGE_GUID}:{port}")
}

/// A server reading the [`EDGES`] in `PortXmitDataExtended` and
/// [`SPELLED`] in `PortRcvDataExtended`, ready.
fn edge_server() -> (FakeUpstream, Proc, u64) {
    let ts = now_us() - 1_000_000;
    let mut body = format!("{HEAD},node_description,PortXmitDataExtended,PortRcvDataExtended\n");
    for ((port, edge), (spelled, _)) in EDGES.iter().zip(SPELLED) {
        body.push_str(&port_line(
            ts,
            EDGE_GUID,
            *port,
            &format!("leaf-01 HCA-1,{edge},{spelled}"),
        ));
    }
    let up = FakeUpstream::start(ufm(&body));
    let ms = metrics_server(&ufm_url(&up), &[]);
    ready(&ms);
    (up, ms, ts)
}

#[test]
fn u64_edges_come_back_digit_for_digit_from_every_answer() {
    let (_up, ms, ts) = edge_server();
    let json_edge = |e: &str| if e.is_empty() { "null" } else { e }.to_string();
    let want_json: Vec<String> = EDGES.iter().map(|(_, e)| json_edge(e)).collect();
    let want_csv: Vec<String> = EDGES.iter().map(|(_, e)| e.to_string()).collect();
    let want_spelled: Vec<String> = SPELLED.iter().map(|(_, c)| c.to_string()).collect();
    let col = "PortXmitDataExtended";
    // GetMetric and History.
    for (port, edge) in EDGES {
        let id = edge_id(port);
        assert_eq!(get_metric_raw(&ms, &id, col), json_edge(edge), "{id}");
        let points = history(&ms, &id, col);
        match edge {
            "" => assert!(
                points.iter().all(|(_, v)| v == "null"),
                "{id}: a null cell has no value in History: {points:?}"
            ),
            _ => assert_eq!(points, [(ts / 1000, edge.to_string())], "{id}"),
        }
    }
    // ListMetrics JSON: the body prepared once per snapshot, and the one
    // rendered per request (fields=), and the stream (both ways too).
    let whole = raw_items(&ok_text(ms.addr, "/telemetry/ListMetrics"));
    assert_eq!(column_of(&whole, col), want_json);
    assert_eq!(column_of(&whole, "PortRcvDataExtended"), want_spelled);
    let picked = raw_items(&ok_text(
        ms.addr,
        "/telemetry/ListMetrics?fields=PortXmitDataExtended,PortRcvDataExtended",
    ));
    assert_eq!(column_of(&picked, col), want_json);
    assert_eq!(column_of(&picked, "PortRcvDataExtended"), want_spelled);
    for query in ["", "fields=PortXmitDataExtended"] {
        let (id, data) = first_event(ms.addr, query);
        assert_eq!(id, snapshot_id(&ms), "{query}");
        assert_eq!(column_of(&raw_items(&data), col), want_json, "{query}");
    }
    // ListMetrics CSV: the shared whole table, and a rendered one.
    for query in ["format=csv", "format=csv&fields=PortXmitDataExtended"] {
        let csv = ok_text(ms.addr, &format!("/telemetry/ListMetrics?{query}"));
        assert_eq!(csv_column(&csv, col), want_csv, "{query}");
        assert_eq!(
            csv_column(&csv, "id"),
            EDGES.iter().map(|(p, _)| edge_id(*p)).collect::<Vec<_>>()
        );
    }
    let csv = ok_text(ms.addr, "/telemetry/ListMetrics?format=csv");
    let spelled_csv: Vec<String> = want_spelled
        .iter()
        .map(|s| if s == "null" { "" } else { s }.to_string())
        .collect();
    assert_eq!(csv_column(&csv, "PortRcvDataExtended"), spelled_csv);
    // A sign or leading zeros are no reason to round: 2^53 + 1 is found.
    assert_eq!(
        get_metric_raw(&ms, &edge_id(2), "PortRcvDataExtended"),
        "9007199254740993"
    );
    assert_eq!(
        ids_for(&ms, "where=PortRcvDataExtended==9007199254740993"),
        [edge_id(2)]
    );
}

#[test]
fn where_and_sort_compare_counters_as_integers() {
    let (_up, ms, _) = edge_server();
    let ports = |ps: &[u32]| ps.iter().map(|p| edge_id(*p)).collect::<Vec<_>>();
    for (query, want) in [
        (
            "where=PortXmitDataExtended>9007199254740992",
            ports(&[2, 4, 5, 6]),
        ),
        (
            "where=PortXmitDataExtended>=9007199254740993",
            ports(&[2, 4, 5, 6]),
        ),
        ("where=PortXmitDataExtended==9007199254740992", ports(&[3])),
        ("where=PortXmitDataExtended==9007199254740993", ports(&[2])),
        (
            "where=PortXmitDataExtended<=9007199254740992",
            ports(&[1, 3, 7]),
        ),
        (
            "where=PortXmitDataExtended>18446744073709551614",
            ports(&[6]),
        ),
        (
            "where=PortXmitDataExtended==18446744073709551615",
            ports(&[6]),
        ),
        ("where=PortXmitDataExtended<0", ports(&[7])),
        (
            "where=PortXmitDataExtended<-9223372036854775807",
            ports(&[7]),
        ),
        // A null matches no condition, not even !=.
        (
            "where=PortXmitDataExtended!=1",
            ports(&[1, 2, 3, 4, 5, 6, 7]),
        ),
        (
            "where=PortXmitDataExtended>-1e300",
            ports(&[1, 2, 3, 4, 5, 6, 7]),
        ),
        (
            "where=PortXmitDataExtended>9007199254740992.5",
            ports(&[2, 4, 5, 6]),
        ),
        // Exact, both ways; nulls last either way.
        (
            "sort=-PortXmitDataExtended",
            ports(&[6, 5, 4, 2, 3, 1, 7, 8]),
        ),
        (
            "sort=PortXmitDataExtended",
            ports(&[7, 1, 3, 2, 4, 5, 6, 8]),
        ),
        (
            "sort=PortXmitDataExtended&limit=3&offset=5",
            ports(&[5, 6, 8]),
        ),
        (
            "sort=-PortXmitDataExtended&where=PortXmitDataExtended>=0",
            ports(&[6, 5, 4, 2, 3, 1]),
        ),
    ] {
        assert_eq!(ids_for(&ms, query), want, "{query}");
    }
    // The same order in CSV and on the stream.
    let csv = ok_text(
        ms.addr,
        "/telemetry/ListMetrics?format=csv&sort=-PortXmitDataExtended",
    );
    assert_eq!(csv_column(&csv, "id"), ports(&[6, 5, 4, 2, 3, 1, 7, 8]));
    let (_, data) = first_event(
        ms.addr,
        "sort=PortXmitDataExtended&fields=PortXmitDataExtended",
    );
    assert_eq!(
        column_of(&raw_items(&data), "id"),
        ports(&[7, 1, 3, 2, 4, 5, 6, 8])
            .iter()
            .map(|i| json!(i).to_string())
            .collect::<Vec<_>>()
    );
    // Text (a label, a key column, the timestamp) is no number to compare.
    for field in ["node_description", "Port_Number", "timestamp"] {
        for path in ["/telemetry/ListMetrics", "/telemetry/stream"] {
            let r = get(ms.addr, &format!("{path}?where={field}>1"));
            assert_eq!(r.status, 400, "{path} {field}");
            assert_eq!(
                r.json()["error"],
                format!("invalid where: {field} is text, not a number (where compares numbers)")
            );
        }
    }
}

#[test]
fn an_empty_cell_is_null_in_json_empty_in_csv_and_no_sample() {
    let up = FakeUpstream::start(ufm(&sample(now_us())));
    let ms = metrics_server(&ufm_url(&up), &[]);
    ready(&ms);
    let spine65 = "0xb83fd20300a1c2e0:65";
    // Port 65 has every counter empty; node003 no temperature.
    for metric in ["PortXmitDataExtended", "Link_Down", "Module_Temperature"] {
        assert_eq!(get_metric_raw(&ms, spine65, metric), "null", "{metric}");
    }
    assert_eq!(
        get_metric_raw(&ms, "0x946dae0300b7d4a2:1", "Module_Temperature"),
        "null"
    );
    let csv = ok_text(ms.addr, "/telemetry/ListMetrics?format=csv");
    let records = csv_records(&csv);
    let row = records.iter().find(|r| r[0] == spine65).unwrap();
    let counters = &row[9..];
    assert!(
        counters.len() == 11 && counters.iter().all(String::is_empty),
        "{row:?}"
    );
    assert_eq!(
        csv_column(&csv, "Module_Temperature"),
        ["41", "43", "", "47", "", "", "38", "39", "", "36"]
    );
    // where never holds for a null; sort puts nulls last both ways.
    let all_warm = ids_for(&ms, "where=Module_Temperature>-1000");
    assert_eq!(all_warm.len(), 6, "{all_warm:?}");
    assert_eq!(ids_for(&ms, "where=Module_Temperature!=0").len(), 6);
    let nulls = [SAMPLE_IDS[2], SAMPLE_IDS[4], SAMPLE_IDS[5], SAMPLE_IDS[8]];
    let up_order = [9, 6, 7, 0, 1, 3].map(|i| SAMPLE_IDS[i]);
    let down_order = [3, 1, 0, 7, 6, 9].map(|i| SAMPLE_IDS[i]);
    let sorted = ids_for(&ms, "sort=Module_Temperature");
    assert_eq!(sorted[..6], up_order);
    assert_eq!(sorted[6..], nulls);
    let sorted = ids_for(&ms, "sort=-Module_Temperature");
    assert_eq!(sorted[..6], down_order);
    assert_eq!(sorted[6..], nulls);
    // Prometheus: no sample for a null cell, one for a number beside it.
    let metrics = ok_text(ms.addr, "/metrics");
    let temps = samples_of(&metrics, "Module_Temperature");
    let xmit = samples_of(&metrics, "PortXmitDataExtended");
    let has = |lines: &[&str], guid: &str, port: u32| lines.iter().any(|l| is_port(l, guid, port));
    assert!(has(&temps, "0x7cfe900300292356", 1), "{metrics}");
    assert!(!has(&temps, "0x946dae0300b7d4a2", 1), "{metrics}");
    assert!(has(&xmit, "0xb83fd20300a1c2e0", 1), "{metrics}");
    assert!(has(&xmit, "0xb83fd20300a1c2e0", 2), "{metrics}");
    assert!(!has(&xmit, "0xb83fd20300a1c2e0", 65), "{metrics}");
    assert!(
        !xmit
            .iter()
            .any(|l| l.ends_with(" null") || l.ends_with(" "))
    );
}

#[test]
fn text_labels_stay_text_and_fields_may_name_them() {
    let ts = now_us();
    let descriptions = [
        "leaf-01 HCA-1, rack 3",
        "say \"hi\", ok",
        "MF0;ib-leaf01:MQM9700/U1",
        "",
        "  padded  ",
    ];
    let quoted = |d: &str| format!("\"{}\"", d.replace('"', "\"\""));
    let mut body = format!("{HEAD},node_description,PortXmitDataExtended\n");
    for (i, d) in descriptions.iter().enumerate() {
        let cell = if d.contains([',', '"']) {
            quoted(d)
        } else {
            d.to_string()
        };
        body.push_str(&port_line(
            ts,
            EDGE_GUID,
            i as u32 + 1,
            &format!("{cell},{}", 5 + i),
        ));
    }
    let up = FakeUpstream::start(ufm(&body));
    let ms = metrics_server(&ufm_url(&up), &[]);
    let v = ready(&ms);
    let got: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["node_description"].as_str().unwrap())
        .collect();
    assert_eq!(got, descriptions);
    assert_eq!(v["items"][0]["Port_Number"], "1");
    assert_eq!(v["items"][0]["timestamp"], ts.to_string());
    // fields= names a label: those fields, in that order, after the id.
    let picked = ok_text(
        ms.addr,
        "/telemetry/ListMetrics?fields=node_description,PortXmitDataExtended",
    );
    for (i, item) in raw_items(&picked).iter().enumerate() {
        assert_eq!(
            item,
            &[
                ("id".to_string(), json!(edge_id(i as u32 + 1)).to_string()),
                (
                    "node_description".to_string(),
                    json!(descriptions[i]).to_string()
                ),
                ("PortXmitDataExtended".to_string(), (5 + i).to_string()),
            ]
        );
    }
    let csv = ok_text(
        ms.addr,
        "/telemetry/ListMetrics?format=csv&fields=node_description,PortXmitDataExtended",
    );
    assert!(
        csv.starts_with("id,node_description,PortXmitDataExtended\n"),
        "{csv}"
    );
    assert!(csv.contains(",\"leaf-01 HCA-1, rack 3\",5\n"), "{csv}");
    assert!(csv.contains(",\"say \"\"hi\"\", ok\",6\n"), "{csv}");
    let records = csv_records(&csv);
    for (i, d) in descriptions.iter().enumerate() {
        assert_eq!(records[i + 1][1], *d, "{csv}");
    }
    // The whole table as CSV reads back as the upstream wrote it.
    let whole = csv_records(&ok_text(ms.addr, "/telemetry/ListMetrics?format=csv"));
    let sent = csv_records(&body);
    assert_eq!(whole[0][1..], sent[0]);
    for (back, sent) in whole[1..].iter().zip(&sent[1..]) {
        assert_eq!(back[1..], sent[..]);
    }
    // On the stream, and from GetMetric; History keeps values only.
    let (_, data) = first_event(ms.addr, "fields=node_description&id=0x0c42a1030077e800:2");
    assert_eq!(
        raw_items(&data),
        [vec![
            ("id".to_string(), "\"0x0c42a1030077e800:2\"".to_string()),
            (
                "node_description".to_string(),
                json!(descriptions[1]).to_string()
            ),
        ]]
    );
    assert_eq!(
        get_metric_raw(&ms, "0x0c42a1030077e800:1", "node_description"),
        json!(descriptions[0]).to_string()
    );
    let r = get(
        ms.addr,
        "/telemetry/History?id=0x0c42a1030077e800:1&metric=node_description",
    );
    assert_eq!(r.status, 400, "{}", r.text());
}

#[test]
fn a_header_alone_is_an_empty_fabric() {
    let header = format!("{HEAD},PortXmitDataExtended,Module_Temperature\n");
    let up = FakeUpstream::start(ufm(&header));
    let ms = metrics_server(&ufm_url(&up), &[]);
    let v = ready(&ms);
    assert_eq!(v["total"], 0);
    assert_eq!(v["items"], json!([]));
    assert_eq!(
        v["fields"],
        json!(header.trim_end().split(',').collect::<Vec<_>>())
    );
    // No timestamp cell: the data's time is the fetch.
    assert!(v["age_ms"].as_u64().unwrap() < 10_000, "{v}");
    assert_eq!(
        ok_text(ms.addr, "/telemetry/ListMetrics?format=csv"),
        format!("id,{header}")
    );
    let r = get(
        ms.addr,
        "/telemetry/GetMetric?id=0x0c42a1030077e800:1&metric=PortXmitDataExtended",
    );
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (404, Some("unknown id: 0x0c42a1030077e800:1"))
    );
    let stats = get(ms.addr, "/stats").json();
    assert_eq!(stats["snapshot"]["switches"], 0);
    assert_eq!(stats["poll"]["errors"], 0);
    // Rows later are a new snapshot.
    let empty = snapshot_id(&ms);
    let body = format!(
        "{header}{}",
        port_line(now_us(), EDGE_GUID, 1, "18446744073709551615,")
    );
    up.set(ufm(&body));
    next_snapshot(&ms, &empty);
    assert_eq!(
        get_metric_raw(&ms, &edge_id(1), "PortXmitDataExtended"),
        "18446744073709551615"
    );
}

#[test]
fn an_unchanged_body_is_no_new_snapshot_however_often_it_comes() {
    // The newest timestamp (the second row's) is 5 s old.
    let ts = now_us() - 5_000_000;
    let body = |v: u64| {
        format!(
            "{HEAD},PortXmitDataExtended\n{}{}",
            port_line(ts - 1_000_000, EDGE_GUID, 1, "9007199254740993"),
            port_line(ts, EDGE_GUID, 2, &v.to_string())
        )
    };
    let up = FakeUpstream::start(ufm(&body(7)));
    let ms = metrics_server(&ufm_url(&up), &["--poll-ms", "20", "--log-level", "debug"]);
    ready(&ms);
    let first = snapshot_id(&ms);
    let age = |ms: &Proc| -> u64 {
        let r = get(
            ms.addr,
            &format!(
                "/telemetry/GetMetric?id={}&metric=PortXmitDataExtended",
                edge_id(1)
            ),
        );
        r.header("x-data-age-ms").unwrap().parse().unwrap()
    };
    let age0 = age(&ms);
    assert!(
        (5_000..60_000).contains(&age0),
        "{age0}: from the data's time"
    );
    let id1 = edge_id(1);
    assert_eq!(
        history(&ms, &id1, "PortXmitDataExtended"),
        [(ts / 1000, "9007199254740993".to_string())]
    );
    // A hundred polls of the same body.
    let stats = eventually("100 unchanged polls", || {
        let s = get(ms.addr, "/stats").json();
        (s["poll"]["unchanged_200"].as_u64() >= Some(100)).then_some(s)
    });
    let run = ms.wait_log(|v| v["event"] == "poll.run" && v["unchanged"] == true);
    assert_eq!(
        (run["status"].as_u64(), run["level"].as_str()),
        (Some(200), Some("DEBUG"))
    );
    assert_eq!(run["snapshot_id"], first.as_str());
    assert_eq!(stats["poll"]["updated_200"], 1);
    assert_eq!(stats["poll"]["not_modified_304"], 0);
    assert_eq!(stats["poll"]["errors"], 0);
    assert_eq!(stats["history"]["entries"], 1);
    assert_eq!(snapshot_id(&ms), first);
    assert_eq!(history(&ms, &id1, "PortXmitDataExtended").len(), 1);
    let new_snapshot_logs = ms
        .logs()
        .iter()
        .filter(|v| v["event"] == "poll.run" && v["unchanged"] != true && v["status"] == 200)
        .count();
    assert_eq!(new_snapshot_logs, 1);
    // The age kept growing from the data's time; a client's tag still holds.
    let age1 = age(&ms);
    assert!(age1 >= age0 + 1_500, "{age0} then {age1}");
    let tag = format!("\"{first}\"");
    let r = get_with(
        ms.addr,
        "/telemetry/ListMetrics",
        &[("If-None-Match", &tag)],
    );
    assert_eq!(r.status, 304);
    assert_eq!(
        up.last_if_none_match(),
        None,
        "UFM is never asked with a tag"
    );
    // A changed body is a new snapshot and a new point.
    up.set(ufm(&body(8)));
    let second = next_snapshot(&ms, &first);
    assert_eq!(history(&ms, &edge_id(2), "PortXmitDataExtended").len(), 2);
    assert_eq!(get(ms.addr, "/stats").json()["poll"]["updated_200"], 2);
    assert_ne!(second, first);
    // Unchanged means "as the last body taken", not "seen once before".
    up.set(ufm(&body(7)));
    next_snapshot(&ms, &second);
    let points = history(&ms, &edge_id(2), "PortXmitDataExtended");
    let values: Vec<&str> = points.iter().map(|p| p.1.as_str()).collect();
    assert_eq!(values, ["7", "8", "7"]);
    assert_eq!(get(ms.addr, "/stats").json()["poll"]["updated_200"], 3);
}

#[test]
fn a_text_cell_in_a_value_column_is_refused_unless_it_is_a_label() {
    let ts = now_us();
    let rows = |second: &str| {
        format!(
            "{HEAD},Device_ID,PortXmitDataExtended\n{}{}",
            port_line(ts, EDGE_GUID, 1, "4129,1"),
            port_line(ts, EDGE_GUID, 2, &format!("{second},2"))
        )
    };
    let up = FakeUpstream::start(ufm(&rows("4129")));
    let ms = metrics_server(&ufm_url(&up), &[]);
    ready(&ms);
    let good = snapshot_id(&ms);
    assert_eq!(get_metric_raw(&ms, &edge_id(2), "Device_ID"), "4129");
    let bad = rows("MT4123");
    up.set(ufm(&bad));
    let err = ms.wait_log(|v| v["event"] == "poll.error");
    assert_eq!(err["kind"], "invalid_csv", "{err}");
    let reason = err["reason"].as_str().unwrap();
    for part in ["line 3", "Device_ID", "\"MT4123\"", "UPSTREAM_LABELS"] {
        assert!(reason.contains(part), "{reason} lacks {part}");
    }
    // The last good snapshot stays.
    assert_eq!(snapshot_id(&ms), good);
    assert_eq!(get_metric_raw(&ms, &edge_id(2), "Device_ID"), "4129");
    let stats = get(ms.addr, "/stats").json();
    assert!(stats["poll"]["errors_by_kind"]["invalid_csv"].as_u64() >= Some(1));
    // Named a label, it is text. UPSTREAM_LABELS replaces UFM's list: here
    // without timestamp, which becomes a value (and no longer the data's
    // time).
    let labelled = spawn(
        METRICS_SERVER,
        &["--upstream-url", &ufm_url(&up), "--poll-ms", "50"],
        &[("UPSTREAM_LABELS", "source_id,tag,port_guid,Device_ID")],
    );
    let v = ready(&labelled);
    assert_eq!(v["items"][0]["Device_ID"], "4129");
    assert_eq!(v["items"][1]["Device_ID"], "MT4123");
    let items = raw_items(&ok_text(labelled.addr, "/telemetry/ListMetrics"));
    assert_eq!(
        column_of(&items, "timestamp"),
        [ts.to_string(), ts.to_string()]
    );
    assert!(v["age_ms"].as_u64().unwrap() < 10_000, "{v}");
    let r = get(labelled.addr, "/telemetry/ListMetrics?where=Device_ID>1");
    assert_eq!(r.status, 400);
}

fn run(bin: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    run_to_end(bin, args, env)
}

#[test]
fn the_key_knobs_key_anything_and_refuse_what_cannot_be_keyed() {
    // Bad values: exit 2 at start, one line naming the knob.
    for (args, env, knob) in [
        (&[][..], &[("UPSTREAM_KEY", "a,,b")][..], "UPSTREAM_KEY"),
        (&[], &[("UPSTREAM_KEY", "a,a")], "UPSTREAM_KEY"),
        (
            &[],
            &[("UPSTREAM_KEY", "Node_GUID,node_guid")],
            "UPSTREAM_KEY",
        ),
        (&[], &[("UPSTREAM_KEY", ",")], "UPSTREAM_KEY"),
        (&["--upstream-key", "a,"], &[], "UPSTREAM_KEY"),
        (&[], &[("UPSTREAM_LABELS", "x,,y")], "UPSTREAM_LABELS"),
        (&["--upstream-labels", "tag,tag"], &[], "UPSTREAM_LABELS"),
    ] {
        let (code, out, err) = run(METRICS_SERVER, args, env);
        assert_eq!(code, 2, "{args:?} {env:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains(knob), "{err} should name {knob}");
        assert!(!err.contains("panicked") && out.is_empty(), "{err}");
    }
    // Keyed by port GUID: the HCA whose port GUID is its node's + 1. The
    // node GUID, no longer a key, is text only when named a label.
    let up = FakeUpstream::start(ufm(&sample(now_us())));
    let by_port = metrics_server(
        &ufm_url(&up),
        &[
            "--upstream-key",
            "port_guid,Port_Number",
            "--upstream-labels",
            "timestamp,source_id,tag,Node_GUID,node_description",
        ],
    );
    let v = ready(&by_port);
    assert_eq!(ids_of(&v)[8], "0x946dae0300b7d4a3:1");
    assert_eq!(
        get_metric_raw(&by_port, "0x946dae0300b7d4a3:1", "PortXmitDataExtended"),
        "90209318875"
    );
    let r = get(
        by_port.addr,
        "/telemetry/GetMetric?id=0x946dae0300b7d4a2:1&metric=PortXmitDataExtended",
    );
    assert_eq!(r.json()["error"], "unknown id: 0x946dae0300b7d4a2:1");
    // A key column missing: invalid_csv naming it, from the first body...
    let none = spawn(
        METRICS_SERVER,
        &["--upstream-url", &ufm_url(&up), "--poll-ms", "50"],
        &[("UPSTREAM_KEY", "rack,Port_Number")],
    );
    let err = none.wait_log(|v| v["event"] == "poll.error");
    assert_eq!(err["kind"], "invalid_csv", "{err}");
    assert_eq!(
        err["reason"],
        "csv: key column \"rack\" is not in the header"
    );
    assert_eq!(get(none.addr, "/ready").status, 503);
    // ...and from a later one, the last good snapshot kept.
    let good = snapshot_id(&by_port);
    let without = sample(now_us()).replace("port_guid", "portguid");
    up.set(ufm(&without));
    let err = by_port.wait_log(|v| v["event"] == "poll.error");
    assert_eq!(err["kind"], "invalid_csv", "{err}");
    assert_eq!(
        err["reason"],
        "csv: key column \"port_guid\" is not in the header"
    );
    assert_eq!(snapshot_id(&by_port), good);
}

#[test]
fn id_and_switch_id_are_one_parameter_and_errors_name_what_was_sent() {
    let up = FakeUpstream::start(ufm(&sample(now_us())));
    let ms = metrics_server(&ufm_url(&up), &[]);
    ready(&ms);
    let leaf = &SAMPLE_IDS[..3];
    for (path, q, error) in [
        (
            "ListMetrics",
            "id=a&switch_id=a",
            "id and switch_id are the same parameter: give one",
        ),
        (
            "ListMetrics",
            "id_prefix=0x&switch_prefix=0x",
            "id_prefix and switch_prefix are the same parameter: give one",
        ),
        (
            "stream",
            "switch_id=a&id=a",
            "id and switch_id are the same parameter: give one",
        ),
        (
            "GetMetric",
            "id=a&switch_id=a&metric=Link_Down",
            "id and switch_id are the same parameter: give one",
        ),
        (
            "History",
            "id=a&switch_id=a&metric=Link_Down",
            "id and switch_id are the same parameter: give one",
        ),
        ("ListMetrics", "id=a&id=b", "repeated query parameter: id"),
        (
            "GetMetric",
            "metric=Link_Down",
            "missing query parameter: switch_id",
        ),
        (
            "GetMetric",
            "id=&metric=Link_Down",
            "missing query parameter: id",
        ),
    ] {
        let r = get(ms.addr, &format!("/telemetry/{path}?{q}"));
        assert_eq!(r.status, 400, "{path}?{q}: {}", r.text());
        let got = r.json()["error"].as_str().unwrap().to_string();
        assert!(got.contains(error), "{path}?{q}: {got}");
    }
    for (path, q, error) in [
        (
            "GetMetric",
            "id=0xdead:1&metric=Link_Down",
            "unknown id: 0xdead:1",
        ),
        (
            "History",
            "id=0xdead:1&metric=Link_Down",
            "unknown id: 0xdead:1",
        ),
        (
            "GetMetric",
            "switch_id=0xdead:1&metric=Link_Down",
            "unknown switch_id: 0xdead:1",
        ),
        (
            "GetMetric",
            "id=0x248a070300ef19a0:1&metric=Link_Up",
            "unknown metric: Link_Up",
        ),
    ] {
        let r = get(ms.addr, &format!("/telemetry/{path}?{q}"));
        assert_eq!(
            (r.status, r.json()["error"].as_str()),
            (404, Some(error)),
            "{q}"
        );
    }
    // Either name selects rows, in the upstream's order.
    for q in [
        "id=0x946dae0300b7d4a2:1,0x248a070300ef19a0:23",
        "switch_id=0x946dae0300b7d4a2:1,0x248a070300ef19a0:23",
        "id=0x946dae0300b7d4a2%3A1%2C0x248a070300ef19a0%3A23",
    ] {
        assert_eq!(ids_for(&ms, q), [SAMPLE_IDS[1], SAMPLE_IDS[8]], "{q}");
    }
    for q in [
        "id_prefix=0x248a070300ef19a0:",
        "switch_prefix=0x248a070300ef19a0",
    ] {
        assert_eq!(ids_for(&ms, q), leaf, "{q}");
    }
    assert_eq!(
        get_metric_raw(&ms, SAMPLE_IDS[2], "PortXmitWaitExtended"),
        "5021873"
    );
    let (_, data) = first_event(ms.addr, "id_prefix=0x248a070300ef19a0:&fields=Link_Down");
    assert_eq!(
        column_of(&raw_items(&data), "id"),
        leaf.iter()
            .map(|i| json!(i).to_string())
            .collect::<Vec<_>>()
    );
    let r = get(
        ms.addr,
        "/telemetry/History?switch_id=0x248a070300ef19a0:1&metric=Link_Down",
    );
    assert!(
        r.text().starts_with("{\"id\":\"0x248a070300ef19a0:1\""),
        "{}",
        r.text()
    );
}

#[test]
fn ufm_shards_compose_into_one_fabric() {
    let ts = now_us();
    let body = sample(ts);
    let mut lines: Vec<&str> = body.lines().collect();
    let header = lines.remove(0);
    // UFM shards by port_guid: a switch's ports stay together.
    let (even, odd): (Vec<&str>, Vec<&str>) = lines.into_iter().partition(|l| {
        ["0x248a07", "0x0c42a1", "0x946dae"]
            .iter()
            .any(|g| l.contains(g))
    });
    let shard = |rows: &[&str]| format!("{header}\n{}\n", rows.join("\n"));
    let ups = [
        FakeUpstream::start(ufm(&shard(&even))),
        FakeUpstream::start(ufm(&shard(&odd))),
    ];
    let urls: Vec<String> = ups
        .iter()
        .enumerate()
        .map(|(k, up)| {
            format!(
                "http://{}/csv/xcset/ib_basic_debug?num_shards=2&shard={k}&sharding_field=port_guid",
                up.addr
            )
        })
        .collect();
    let ms = metrics_server_of("--upstream-urls", &urls.join(","), &[]);
    let v = ready(&ms);
    let want: Vec<String> = even
        .iter()
        .chain(&odd)
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            format!("{}:{}", cells[3], cells[5])
        })
        .collect();
    assert_eq!(ids_of(&v), want);
    assert_eq!(v["total"], 10);
    assert!(v["snapshot_id"].as_str().unwrap().starts_with("f-"), "{v}");
    assert!(v.get("missing_shards").is_none(), "{v}");
    let stats = get(ms.addr, "/stats").json();
    for (k, url) in urls.iter().enumerate() {
        assert_eq!(stats["shards"][k]["url"], url.as_str());
        assert!(
            stats["shards"][k]["snapshot_id"]
                .as_str()
                .unwrap()
                .starts_with("h-")
        );
    }
    // Rows of either shard, by id, with every answer.
    assert_eq!(
        get_metric_raw(&ms, "0xb83fd20300a1c2e0:1", "PortXmitDataExtended"),
        "90211434012"
    );
    assert_eq!(
        get_metric_raw(&ms, "0x946dae0300b7d4a2:1", "PortXmitWaitExtended"),
        "2047"
    );
    // One shard moves on (a 64-bit counter), the other is unchanged.
    let before = snapshot_id(&ms);
    let moved: Vec<String> = odd
        .iter()
        .map(|l| l.replace(",90211434012,", ",18446744073709551615,"))
        .collect();
    let moved: Vec<&str> = moved.iter().map(String::as_str).collect();
    ups[1].set(ufm(&shard(&moved)));
    next_snapshot(&ms, &before);
    assert_eq!(
        get_metric_raw(&ms, "0xb83fd20300a1c2e0:1", "PortXmitDataExtended"),
        "18446744073709551615"
    );
    assert_eq!(
        history(&ms, "0xb83fd20300a1c2e0:1", "PortXmitDataExtended"),
        [
            (ts / 1000, "90211434012".to_string()),
            (ts / 1000, "18446744073709551615".to_string())
        ]
    );
    assert_eq!(
        history(&ms, "0x248a070300ef19a0:36", "PortXmitDataExtended"),
        [(ts / 1000, "88712355104".to_string())]
    );
    let csv = ok_text(
        ms.addr,
        "/telemetry/ListMetrics?format=csv&id_prefix=0xb83fd20300a1c2e0:",
    );
    assert_eq!(
        csv_column(&csv, "PortXmitDataExtended"),
        ["18446744073709551615", "0", ""]
    );
}

/// Seed of the property below: fixed, so a failure repeats.
const SEED: u64 = 0x0f_ab51_c0de;

/// An integer's text in −2^63..=2^64−1: edges, whole-range draws, and
/// numbers of every length.
fn integer_text(rng: &mut fastrand::Rng) -> String {
    const EDGES: [&str; 12] = [
        "0",
        "1",
        "-1",
        "9007199254740992",
        "9007199254740993",
        "-9007199254740993",
        "9223372036854775807",
        "9223372036854775808",
        "18446744073709551615",
        "18446744073709551614",
        "-9223372036854775808",
        "-9223372036854775807",
    ];
    match rng.u8(0..5) {
        0 => EDGES[rng.usize(..EDGES.len())].to_string(),
        1 => rng.u64(..).to_string(),
        2 => rng.i64(i64::MIN..0).to_string(),
        3 => {
            let digits = rng.u32(1..=20);
            let n = rng.u64(..) % 10u64.saturating_pow(digits).max(1);
            n.to_string()
        }
        _ => (u64::MAX - rng.u64(..1 << 20)).to_string(),
    }
}

#[test]
fn any_integer_text_comes_back_byte_identical() {
    const ROUNDS: usize = 6;
    const ROWS: usize = 40;
    const COLS: usize = 3;
    let mut rng = fastrand::Rng::with_seed(SEED);
    let columns = [
        "PortXmitDataExtended",
        "PortRcvDataExtended",
        "SymbolErrorCounterExtended",
    ];
    let ids: Vec<String> = (0..ROWS)
        .map(|r| {
            format!(
                "0x{:016x}:{}",
                0x0c42a1030077e800u64 + r as u64 / 4,
                r % 4 + 1
            )
        })
        .collect();
    // cells[round][row][col]: the text sent ("" for an empty cell).
    let mut cells: Vec<Vec<Vec<String>>> = Vec::new();
    let mut times = Vec::new();
    let up = FakeUpstream::start(ufm(&format!("{HEAD},{}\n", columns.join(","))));
    let ms = metrics_server(&ufm_url(&up), &["--poll-ms", "20"]);
    ready(&ms);
    let mut served = snapshot_id(&ms);
    for round in 0..ROUNDS {
        let ts = now_us() - 10_000_000 + round as u64 * 1_000;
        let mut body = format!("{HEAD},{}\n", columns.join(","));
        let mut table = Vec::new();
        for id in &ids {
            let (guid, port) = id.split_once(':').unwrap();
            let row: Vec<String> = (0..COLS)
                .map(|_| match rng.u8(0..20) {
                    0 => String::new(),
                    _ => integer_text(&mut rng),
                })
                .collect();
            // Some cells quoted, as a CSV writer may: the same number.
            let written: Vec<String> = row
                .iter()
                .map(|c| {
                    if rng.u8(0..8) == 0 {
                        format!("\"{c}\"")
                    } else {
                        c.clone()
                    }
                })
                .collect();
            body.push_str(&format!(
                "{ts},{guid},,{guid},{guid},{port},{}\n",
                written.join(",")
            ));
            table.push(row);
        }
        up.set(ufm(&body));
        served = next_snapshot(&ms, &served);
        let case = |what: &str| format!("seed {SEED:#x}, round {round}, {what}");
        let want_json = |col: usize| -> Vec<String> {
            table
                .iter()
                .map(|r| {
                    if r[col].is_empty() {
                        "null".into()
                    } else {
                        r[col].clone()
                    }
                })
                .collect()
        };
        let want_csv =
            |col: usize| -> Vec<String> { table.iter().map(|r| r[col].clone()).collect() };
        // JSON: prepared, rendered per request, streamed.
        let whole = raw_items(&ok_text(ms.addr, "/telemetry/ListMetrics"));
        let sorted = ok_text(
            ms.addr,
            "/telemetry/ListMetrics?sort=id&fields=PortXmitDataExtended,PortRcvDataExtended,SymbolErrorCounterExtended",
        );
        let sorted = raw_items(&sorted);
        let (event_id, data) = first_event(ms.addr, "");
        assert_eq!(event_id, served, "{}", case("stream id"));
        let streamed = raw_items(&data);
        let whole_csv = ok_text(ms.addr, "/telemetry/ListMetrics?format=csv");
        let picked_csv = ok_text(
            ms.addr,
            &format!(
                "/telemetry/ListMetrics?format=csv&fields={}",
                columns.join(",")
            ),
        );
        for (c, name) in columns.iter().enumerate() {
            assert_eq!(column_of(&whole, name), want_json(c), "{}", case(name));
            assert_eq!(column_of(&streamed, name), want_json(c), "{}", case(name));
            assert_eq!(csv_column(&whole_csv, name), want_csv(c), "{}", case(name));
            assert_eq!(csv_column(&picked_csv, name), want_csv(c), "{}", case(name));
            // sort=id: byte order of the ids, each value with its row.
            let mut by_id: Vec<(&String, String)> = ids.iter().zip(want_json(c)).collect();
            by_id.sort();
            let want: Vec<String> = by_id.into_iter().map(|(_, v)| v).collect();
            assert_eq!(column_of(&sorted, name), want, "{}", case(name));
        }
        // GetMetric for a few cells.
        for _ in 0..5 {
            let (r, c) = (rng.usize(..ROWS), rng.usize(..COLS));
            assert_eq!(
                get_metric_raw(&ms, &ids[r], columns[c]),
                want_json(c)[r],
                "{}",
                case("GetMetric")
            );
        }
        cells.push(table);
        times.push(ts / 1000);
    }
    // History: every round's value of every cell, in order.
    for (r, id) in ids.iter().enumerate() {
        for (c, name) in columns.iter().enumerate() {
            let got: Vec<(u64, String)> = history(&ms, id, name)
                .into_iter()
                .filter(|(_, v)| v != "null")
                .collect();
            let want: Vec<(u64, String)> = (0..ROUNDS)
                .filter(|&k| !cells[k][r][c].is_empty())
                .map(|k| (times[k], cells[k][r][c].clone()))
                .collect();
            assert_eq!(got, want, "seed {SEED:#x}: History of {id} {name}");
        }
    }
}
