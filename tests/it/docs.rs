//! Docs that cannot drift: every `curl` example in README.md and
//! docs/API.md runs against real servers, and what the docs say it prints
//! is what it prints.
//!
//! The convention the docs follow (docs/ARCHITECTURE.md repeats it):
//! - In a ```` ```sh ```` block, a line starting with `curl ` (or a shell
//!   assignment `name=$(curl …)`) is a command; a trailing `\` continues it.
//!   Other lines (`make run`, comments) are not run.
//! - `# ` lines right after a command, up to a blank line or the next
//!   command, are its output, line for line; `…` in them stands for any
//!   text. A command with no output lines must exit 0 (`pipefail` on).
//! - `127.0.0.1:8080` is metrics_server and `127.0.0.1:9001` data_server;
//!   the test points them at servers of its own. Commands of one block run
//!   in one shell, in order, so a variable set by one is seen by the next.
//! - `<!-- env: NAME=value … -->` just before a block starts that block's
//!   servers with those knobs (a token, say). `UPSTREAM=ufm` among them
//!   points that metrics_server at a scripted UFM Telemetry endpoint
//!   serving [`UFM_CSV`] (no ETag, its `timestamp` the time of the test).

use std::process::Command;

use crate::support::*;

/// What the scripted UFM Telemetry endpoint serves (`{ts}`: now, in µs):
/// UFM's `xcset` header, a port near 2^64, one past 2^53, a down port
/// (empty cells) and a port with symbol errors.
const UFM_CSV: &str = "timestamp,source_id,tag,Node_GUID,port_guid,Port_Number,PortXmitDataExtended,PortRcvDataExtended,SymbolErrorCounterExtended,LinkDownedCounterExtended,Module_Temperature,node_description
{ts},0x0c42a1030077e800,,0x0c42a1030077e800,0x0c42a1030077e800,1,18446744073709551615,85554128244,0,1,45.5,leaf-01
{ts},0x0c42a1030077e800,,0x0c42a1030077e800,0x0c42a1030077e800,2,9007199254740993,12,,,,leaf-01
{ts},0x0c42a1030077e900,,0x0c42a1030077e900,0x0c42a1030077e900,1,734003200,734003100,3,0,51.0,spine-01
";

/// One runnable command and the output the docs show for it.
#[derive(Debug)]
struct Example {
    /// Where it is, for failure messages.
    at: String,
    command: String,
    output: Vec<String>,
}

/// A code block's examples and the knobs its servers need.
#[derive(Debug)]
struct Block {
    env: Vec<(String, String)>,
    examples: Vec<Example>,
}

fn is_command(line: &str) -> bool {
    let l = line.trim_start();
    l.starts_with("curl ")
        || l.split_once("=$(curl ")
            .is_some_and(|(name, _)| name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

/// Every `sh` block of `text` (from `file`) with at least one command.
fn blocks(file: &str, text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() != "```sh" {
            i += 1;
            continue;
        }
        let env = i
            .checked_sub(1)
            .and_then(|p| lines[p].trim().strip_prefix("<!-- env:"))
            .and_then(|s| s.strip_suffix("-->"))
            .map(|s| {
                s.split_whitespace()
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let mut examples: Vec<Example> = Vec::new();
        let mut in_output = false;
        i += 1;
        while i < lines.len() && lines[i].trim() != "```" {
            let line = lines[i];
            if is_command(line) {
                let at = format!("{file}:{}", i + 1);
                let mut command = line.to_string();
                while command.ends_with('\\') && i + 1 < lines.len() {
                    command.pop();
                    i += 1;
                    command.push_str(lines[i].trim_start());
                }
                examples.push(Example {
                    at,
                    command,
                    output: Vec::new(),
                });
                in_output = true;
            } else if in_output && (line.starts_with("# ") || line == "#") {
                if let Some(e) = examples.last_mut() {
                    e.output.push(line.get(2..).unwrap_or("").to_string());
                }
            } else {
                in_output = false;
            }
            i += 1;
        }
        if !examples.is_empty() {
            out.push(Block { env, examples });
        }
        i += 1;
    }
    out
}

/// True if `text` matches `pattern`, where `…` stands for any text.
fn matches(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('…').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// Runs one block's commands in one shell against `ms` and `ds`.
fn run(block: &Block, ms: &Proc, ds: &Proc) -> Vec<String> {
    // No example may hang the test: every curl gets a time limit.
    let mut script =
        String::from("set -o pipefail\ncurl() { command curl --max-time 10 \"$@\"; }\n");
    for (n, e) in block.examples.iter().enumerate() {
        let command = e
            .command
            .replace("127.0.0.1:8080", &ms.addr.to_string())
            .replace("127.0.0.1:9001", &ds.addr.to_string());
        script.push_str(&format!(
            "echo '@@start {n}'\n{command}\necho \"@@end {n} $?\"\n"
        ));
    }
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("bash");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut failures = Vec::new();
    for (n, e) in block.examples.iter().enumerate() {
        let start = format!("@@start {n}\n");
        let Some(from) = text.find(&start) else {
            failures.push(format!("{}: never ran: {}", e.at, e.command));
            continue;
        };
        let body = &text[from + start.len()..];
        let end_tag = format!("@@end {n} ");
        let Some(to) = body.find(&end_tag) else {
            failures.push(format!("{}: did not finish: {}", e.at, e.command));
            continue;
        };
        let printed: Vec<&str> = body[..to].lines().collect();
        let status = body[to + end_tag.len()..].lines().next().unwrap_or("");
        let ok = if e.output.is_empty() {
            status == "0"
        } else {
            printed.len() == e.output.len()
                && printed.iter().zip(&e.output).all(|(p, w)| matches(w, p))
        };
        if !ok {
            failures.push(format!(
                "{}: {}\n  docs say:\n    {}\n  it printed (exit {status}):\n    {}",
                e.at,
                e.command,
                e.output.join("\n    "),
                printed.join("\n    ")
            ));
        }
    }
    failures
}

#[test]
fn the_matcher_and_the_parser_follow_the_convention() {
    assert!(matches("{\"ok\":true}", "{\"ok\":true}"));
    assert!(matches("a…c", "abbbc") && matches("…", "") && matches("a…", "ab"));
    assert!(matches("x…y…z", "x1y2z") && !matches("x…y…z", "x1z"));
    assert!(!matches("ab", "abc") && !matches("a…c", "ab"));
    let text = "intro\n<!-- env: A=1 B=2 -->\n```sh\nmake run\n\
                curl -s x \\\n  -H y\n# out1\n# out2\n\n# a comment\n\
                t=$(curl -s z)\ncurl w\n```\n```sh\nmake test\n```\n";
    let b = blocks("f", text);
    assert_eq!(b.len(), 1);
    assert_eq!(
        b[0].env,
        [("A".into(), "1".into()), ("B".into(), "2".into())]
    );
    let e = &b[0].examples;
    assert_eq!(e.len(), 3);
    assert_eq!(
        (e[0].command.as_str(), e[0].at.as_str()),
        ("curl -s x -H y", "f:5")
    );
    assert_eq!(e[0].output, ["out1", "out2"]);
    assert!(e[1].output.is_empty() && e[2].command == "curl w");
}

#[test]
fn every_curl_example_in_the_docs_does_what_it_says() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut all = Vec::new();
    for file in ["README.md", "docs/API.md"] {
        let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        all.extend(blocks(file, &text));
    }
    let commands: usize = all.iter().map(|b| b.examples.len()).sum();
    assert!(commands >= 20, "only {commands} examples found");
    // A producer that does not tick during the test, so tags stay put.
    let ds = data_server(&["--switches", "64", "--interval-sec", "3600"]);
    let upstream = format!("http://{}/counters", ds.addr);
    let mut failures = Vec::new();
    let mut servers: Vec<(Vec<(String, String)>, Proc)> = Vec::new();
    let mut ufms: Vec<FakeUpstream> = Vec::new();
    for block in &all {
        if !servers.iter().any(|(env, _)| *env == block.env) {
            let mut env: Vec<(&str, &str)> = block
                .env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let ufm_url;
            if let Some(i) = env
                .iter()
                .position(|(k, v)| *k == "UPSTREAM" && *v == "ufm")
            {
                env.remove(i);
                let ts = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_micros();
                let body = UFM_CSV.replace("{ts}", &ts.to_string());
                let up = FakeUpstream::start(Script::csv("", &body));
                ufm_url = format!("http://{}/csv/xcset/ib_basic_debug", up.addr);
                env.push(("UPSTREAM_URL", &ufm_url));
                ufms.push(up);
            } else {
                env.push(("UPSTREAM_URL", &upstream));
            }
            let ms = spawn(METRICS_SERVER, &["--poll-ms", "200"], &env);
            let token = block.env.iter().find(|(k, _)| k == "METRICS_AUTH_TOKEN");
            let auth = token
                .map(|(_, t)| format!("Bearer {t}"))
                .unwrap_or_default();
            eventually("a snapshot", || {
                let r = get_with(ms.addr, "/ready", &[("Authorization", &auth)]);
                (r.status == 200).then_some(())
            });
            servers.push((block.env.clone(), ms));
        }
        let ms = &servers.iter().find(|(env, _)| *env == block.env).unwrap().1;
        failures.extend(run(block, ms, &ds));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
