//! Test support: spawn the real binaries on port 0, read their NDJSON logs,
//! speak raw HTTP to them, and play a scriptable fake upstream.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const DATA_SERVER: &str = env!("CARGO_BIN_EXE_data_server");
pub const METRICS_SERVER: &str = env!("CARGO_BIN_EXE_metrics_server");

/// How long any awaited condition may take before a test fails.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// Lines a child printed, shared with the thread that reads them.
#[derive(Default)]
struct Lines {
    lines: Mutex<Vec<String>>,
    grew: Condvar,
}

/// A running binary, killed on drop.
pub struct Proc {
    child: Child,
    cmdline: String,
    stdout: Arc<Lines>,
    stderr: Arc<Lines>,
    readers: Vec<JoinHandle<()>>,
    pub addr: SocketAddr,
}

fn pump(stream: impl Read + Send + 'static, sink: Arc<Lines>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            sink.lines.lock().unwrap().push(line);
            sink.grew.notify_all();
        }
    })
}

/// Starts `bin` with only the given environment (no knob leaks in from the
/// shell running the tests) and these flags; does not wait for anything.
pub fn spawn_raw(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let cmdline = format!(
        "{} {} {}",
        env.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        bin,
        args.join(" ")
    );
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {cmdline}: {e}"));
    let stdout = Arc::new(Lines::default());
    let stderr = Arc::new(Lines::default());
    let readers = vec![
        pump(child.stdout.take().unwrap(), stdout.clone()),
        pump(child.stderr.take().unwrap(), stderr.clone()),
    ];
    Proc {
        child,
        cmdline,
        stdout,
        stderr,
        readers,
        addr: "0.0.0.0:0".parse().unwrap(),
    }
}

/// Starts `bin` on 127.0.0.1 port 0 and waits for its `startup` line.
pub fn spawn(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut all = vec!["--host", "127.0.0.1", "--port", "0"];
    all.extend_from_slice(args);
    let mut p = spawn_raw(bin, &all, env);
    let startup = p.wait_log(|v| v["event"] == "startup");
    p.addr = startup["addr"].as_str().unwrap().parse().unwrap();
    p
}

/// A data_server with a fast tick unless `args` say otherwise.
pub fn data_server(args: &[&str]) -> Proc {
    spawn(DATA_SERVER, args, &[])
}

/// A metrics_server polling `upstream` every 50 ms, backing off at most
/// 200 ms and with a 300 ms breaker cooldown, unless `args` say otherwise.
pub fn metrics_server(upstream: &str, args: &[&str]) -> Proc {
    metrics_server_of("--upstream-url", upstream, args)
}

/// [`metrics_server`] with its upstream given by `flag` (`--upstream-url`,
/// or `--upstream-urls` and a comma list).
pub fn metrics_server_of(flag: &str, upstream: &str, args: &[&str]) -> Proc {
    let mut all = vec![
        flag,
        upstream,
        "--poll-ms",
        "50",
        "--poll-backoff-max-ms",
        "200",
        "--breaker-cooldown-ms",
        "300",
    ];
    all.extend_from_slice(args);
    spawn(METRICS_SERVER, &all, &[])
}

impl Proc {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Every stdout line so far, parsed (a line that is not JSON fails the test).
    pub fn logs(&self) -> Vec<Value> {
        let lines = self.stdout.lines.lock().unwrap().clone();
        lines
            .iter()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| self.fail(&format!("stdout line is not JSON ({e}): {l}")))
            })
            .collect()
    }

    /// Waits for a log line matching `pred`.
    pub fn wait_log(&self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        let mut seen = 0;
        let mut lines = self.stdout.lines.lock().unwrap();
        loop {
            for line in &lines[seen..] {
                if let Ok(v) = serde_json::from_str::<Value>(line) {
                    if pred(&v) {
                        return v;
                    }
                }
            }
            seen = lines.len();
            let now = Instant::now();
            if now >= deadline {
                drop(lines);
                self.fail("the awaited log line never came");
            }
            lines = self
                .stdout
                .grew
                .wait_timeout(lines, deadline - now)
                .unwrap()
                .0;
        }
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lines.lock().unwrap().join("\n")
    }

    /// Fails the test with everything needed to reproduce it.
    pub fn fail(&self, why: &str) -> ! {
        let out = self.stdout.lines.lock().unwrap();
        let tail = out[out.len().saturating_sub(20)..].join("\n");
        panic!(
            "{why}\ncommand: {}\nstderr:\n{}\nlast stdout:\n{tail}",
            self.cmdline,
            self.stderr_text()
        );
    }

    /// Sends a signal (by number) to the process.
    pub fn signal(&self, sig: i32) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit and for its output to be read.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                return status;
            }
            if Instant::now() > deadline {
                self.fail("the process did not exit");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A number from the process's /proc status (`Threads`, `VmRSS` in kB).
    fn status_field(&self, field: &str) -> usize {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|n| n.split_whitespace().next()?.parse().ok())
            .unwrap()
    }

    /// The process's thread count, from /proc.
    pub fn threads(&self) -> usize {
        self.status_field("Threads")
    }

    /// The process's resident memory in kB, from /proc.
    pub fn rss_kb(&self) -> usize {
        self.status_field("VmRSS")
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `f` until it returns `Some`, failing after [`PATIENCE`].
pub fn eventually<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    eventually_within(what, PATIENCE, f)
}

/// Polls `f` until it returns `Some`, failing after `patience`.
pub fn eventually_within<T>(what: &str, patience: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends raw bytes, reads until the server closes, and parses the answer.
pub fn raw(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(request).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse_reply(&buf)
        .unwrap_or_else(|| panic!("unparsable answer: {:?}", String::from_utf8_lossy(&buf)))
}

/// A connection to `addr` whose reads give up after [`PATIENCE`].
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s
}

/// `n` keep-alive connections held open, each proven served (so the
/// server counts each one): a `GET /health` answered 200 on every one.
pub fn hold_served(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = connect(addr);
            s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            assert_eq!(read_reply(&mut s).status, 200);
            s
        })
        .collect()
}

/// Reads one answer with a Content-Length from a connection that stays open;
/// `None` if the connection ends first.
pub fn try_read_reply(s: &mut TcpStream) -> Option<Reply> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(r) = parse_reply(&buf) {
            let want: usize = r
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if r.body.len() >= want {
                return Some(r);
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads one answer with a Content-Length from a connection that stays open.
pub fn read_reply(s: &mut TcpStream) -> Reply {
    try_read_reply(s).unwrap_or_else(|| panic!("the connection ended before a whole answer"))
}

/// Parses one HTTP/1.1 answer with a Content-Length (or none) from `buf`.
pub fn parse_reply(mut buf: &[u8]) -> Option<Reply> {
    // Interim 1xx answers are skipped, as clients do.
    while buf.starts_with(b"HTTP/1.1 1") {
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
        buf = &buf[end + 4..];
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Some(Reply {
        status,
        headers,
        body: buf[end + 4..].to_vec(),
    })
}

/// The `switch_id` of every item of a `ListMetrics` document, in order.
pub fn item_ids(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["switch_id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `id` is the snapshot id metrics_server derives from an
/// upstream's tag `tag` (its `ETag` without quotes or `W/`): `<tag>-` and
/// then exactly 16 lower-case hex digits (the body's XXH64). With `tag`
/// `"h"`, the id of a body that came without a usable `ETag`.
pub fn id_of_tag(id: &Value, tag: &str) -> bool {
    id.as_str()
        .and_then(|id| id.strip_prefix(tag))
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|hex| {
            hex.len() == 16 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
}

/// `GET path` with extra headers, on a fresh connection.
pub fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    raw(addr, req.as_bytes())
}

pub fn get(addr: SocketAddr, path: &str) -> Reply {
    get_with(addr, path, &[])
}

pub fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    raw(addr, req.as_bytes())
}

/// What the fake upstream answers; change it while it runs.
#[derive(Debug, Clone)]
pub struct Script {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delay: Duration,
}

impl Script {
    pub fn csv(etag: &str, body: &str) -> Script {
        let mut headers = vec![("Content-Type".to_string(), "text/csv".to_string())];
        if !etag.is_empty() {
            headers.push(("ETag".to_string(), etag.to_string()));
        }
        Script {
            status: 200,
            headers,
            body: body.as_bytes().to_vec(),
            delay: Duration::ZERO,
        }
    }

    pub fn status(status: u16) -> Script {
        Script {
            status,
            headers: Vec::new(),
            body: b"nope\n".to_vec(),
            delay: Duration::ZERO,
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Script {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// Header lists of the requests a fake upstream received.
type Seen = Arc<Mutex<Vec<Vec<(String, String)>>>>;

/// A connection a fake upstream answers on: the socket itself, or a TLS
/// session over it.
pub trait Conn: Read + Write + Send {}

impl<T: Read + Write + Send> Conn for T {}

/// Turns an accepted socket into the connection the fake speaks over
/// (`None` drops it: a TLS handshake that failed).
pub type Wrap = Arc<dyn Fn(TcpStream) -> Option<Box<dyn Conn>> + Send + Sync>;

/// A scriptable upstream on 127.0.0.1:0 that records the requests it gets.
/// Answers 304 when `If-None-Match` equals the script's ETag verbatim.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    /// `http`, or `https` when it speaks TLS.
    scheme: &'static str,
    script: Arc<Mutex<Script>>,
    seen: Seen,
    arrivals: Arc<Mutex<Vec<Instant>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeUpstream {
    /// A plain-HTTP fake.
    pub fn start(script: Script) -> FakeUpstream {
        FakeUpstream::start_with("http", script, Arc::new(|s| Some(Box::new(s))))
    }

    /// A fake that speaks over what `wrap` makes of each socket, with
    /// `scheme` in its URL.
    pub fn start_with(scheme: &'static str, script: Script, wrap: Wrap) -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(script));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (script, seen, stop) = (script.clone(), seen.clone(), stop.clone());
            let arrivals = arrivals.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    arrivals.lock().unwrap().push(Instant::now());
                    let (script, seen, stop) = (script.clone(), seen.clone(), stop.clone());
                    let wrap = wrap.clone();
                    std::thread::spawn(move || serve_one(conn, &wrap, &script, &seen, &stop));
                }
            })
        };
        FakeUpstream {
            addr,
            scheme,
            script,
            seen,
            arrivals,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("{}://{}/counters", self.scheme, self.addr)
    }

    pub fn set(&self, script: Script) {
        *self.script.lock().unwrap() = script;
    }

    /// When each connection arrived (the poller makes one per poll here).
    pub fn arrivals(&self) -> Vec<Instant> {
        self.arrivals.lock().unwrap().clone()
    }

    /// Header lists of every request received so far.
    pub fn requests(&self) -> Vec<Vec<(String, String)>> {
        self.seen.lock().unwrap().clone()
    }

    /// The `If-None-Match` of the latest request (None if absent).
    pub fn last_if_none_match(&self) -> Option<String> {
        self.requests().last().and_then(|h| {
            h.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("if-none-match"))
                .map(|(_, v)| v.clone())
        })
    }
}

fn serve_one(sock: TcpStream, wrap: &Wrap, script: &Mutex<Script>, seen: &Seen, stop: &AtomicBool) {
    sock.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let raw = sock.try_clone();
    let Some(mut conn) = wrap(sock) else { return };
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let headers: Vec<(String, String)> = head
        .split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let inm = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("if-none-match"))
        .map(|(_, v)| v.clone());
    seen.lock().unwrap().push(headers);
    let s = script.lock().unwrap().clone();
    let deadline = Instant::now() + s.delay;
    while Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let etag = s
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("etag"))
        .map(|(_, v)| v.clone());
    let not_modified = s.status == 200 && inm.is_some() && inm == etag;
    let status = if not_modified { 304 } else { s.status };
    let mut out = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
    for (n, v) in &s.headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    let body: &[u8] = if not_modified { b"" } else { &s.body };
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let _ = conn.write_all(out.as_bytes());
    let _ = conn.write_all(body);
    let _ = conn.flush();
    if let Ok(raw) = raw {
        let _ = raw.shutdown(Shutdown::Both);
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs `bin` to its end with only `env` (nothing inherited): exit code,
/// stdout, stderr.
pub fn run_to_end(bin: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = std::process::Command::new(bin)
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Opens `/telemetry/stream?query` (with `extra` header lines, each ending
/// in CRLF) and reads until `n` events with an `id:` and a `data:` line
/// came; returns the answer's head and each event's id and data. Fails
/// after [`PATIENCE`] or if the stream ends first.
pub fn stream_events(
    addr: SocketAddr,
    query: &str,
    extra: &str,
    n: usize,
) -> (String, Vec<(String, String)>) {
    let mut s = connect(addr);
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let path = match query {
        "" => "/telemetry/stream".to_string(),
        q => format!("/telemetry/stream?{q}"),
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let mut events: Vec<&str> = body.split("\n\n").collect();
            events.pop(); // Not yet ended by a blank line.
            let found: Vec<(String, String)> = events
                .iter()
                .filter_map(|e| {
                    let id = e.lines().find_map(|l| l.strip_prefix("id: "))?;
                    let data = e.lines().find_map(|l| l.strip_prefix("data: "))?;
                    Some((id.to_string(), data.to_string()))
                })
                .collect();
            if found.len() >= n {
                return (head.to_string(), found);
            }
        }
        assert!(
            Instant::now() < deadline,
            "stream {query:?} stalled: {text}"
        );
        let got = s.read(&mut chunk).unwrap_or(0);
        assert!(got > 0, "stream {query:?} ended: {text}");
        buf.extend_from_slice(&chunk[..got]);
    }
}
