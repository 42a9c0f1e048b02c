//! The patched tiny_http in `vendor/tiny_http`, through its public API:
//! each test pins one patch of `vendor/tiny_http/PATCHES.md` (the black-box
//! tests of the servers pin the rest).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use tiny_http::{HeadError, Limits, Refusal, read_head};

use crate::support::*;

/// `read_head` over bytes: the head, or the refusal's status and message
/// (0 for a stream that ended before a byte).
fn head(bytes: &[u8]) -> Result<tiny_http::Head, (u16, &'static str)> {
    head_within(bytes, &Limits::default())
}

fn head_within(bytes: &[u8], limits: &Limits) -> Result<tiny_http::Head, (u16, &'static str)> {
    read_head(&mut &bytes[..], limits, || {}).map_err(|e| match e {
        HeadError::Closed => (0, "closed"),
        HeadError::Refused(status, message) => (status, message),
        HeadError::Io(e) => panic!("io error from bytes: {e}"),
    })
}

#[test]
fn refusals_are_json_and_close_the_connection() {
    let r = Refusal {
        status: 431,
        message: "request headers too large",
        remote_addr: None,
        headers: &[],
    };
    let text = String::from_utf8(r.answer()).unwrap();
    assert!(text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
    assert!(text.contains("\r\nConnection: close\r\n"));
    assert!(text.ends_with("\r\n\r\n{\"error\":\"request headers too large\"}"));
}

#[test]
fn heads_with_lf_or_crlf_are_read() {
    let h = head(b"GET /x?y=1 HTTP/1.1\r\nHost: a\r\nX-A:  b \r\n\r\n").unwrap();
    assert_eq!(h.method, tiny_http::Method::Get);
    assert_eq!(h.url, "/x?y=1");
    assert_eq!(h.version, tiny_http::HTTPVersion(1, 1));
    assert_eq!(h.headers.len(), 2);
    assert_eq!(h.headers[1].value.as_str(), "b");
    assert!(head(b"\r\n\nGET / HTTP/1.0\nHost: a\n\n").is_ok());
}

#[test]
fn malformed_heads_are_400() {
    for bad in [
        &b"GET /\xff HTTP/1.1\r\n\r\n"[..],
        b"GET  / HTTP/1.1\r\n\r\n",
        b"GET /\rx HTTP/1.1\r\n\r\n",
        b"GET /health\r\n\r\n",
        b"GET / HTTP/1.1\r\nnonsense\r\n\r\n",
        b"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n",
        b"GET / HTTP/1.1\r\nA: b\x00\r\n\r\n",
        b"GET / HTTP/1.1\r\n: empty name\r\n\r\n",
        b"GET / HTTP/1.1\r\nA(b): c\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n",
        b"\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    ] {
        let status = head(bad).err().map(|e| e.0);
        assert_eq!(status, Some(400), "{:?}", String::from_utf8_lossy(bad));
    }
    assert_eq!(head(b"").err(), Some((0, "closed")));
}

#[test]
fn oversized_heads_are_414_and_431_without_reading_them_whole() {
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(9000));
    assert_eq!(head(long.as_bytes()).err().map(|e| e.0), Some(414));
    let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "b".repeat(17 * 1024));
    assert_eq!(head(big.as_bytes()).err().map(|e| e.0), Some(431));
    let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
    assert_eq!(head(many.as_bytes()).err().map(|e| e.0), Some(431));
    // An endless header line is cut off at its bound.
    let endless = Read::chain(&b"GET / HTTP/1.1\r\nX: "[..], std::io::repeat(b'a'));
    let mut source = std::io::BufReader::new(endless);
    let refused = read_head(&mut source, &Limits::default(), || {});
    assert!(matches!(refused, Err(HeadError::Refused(431, _))));
}

#[test]
fn versions_past_1_1_are_505_right_after_the_request_line() {
    for line in [
        "GET / HTTP/2.0",
        "PRI * HTTP/2.0",
        "GET / HTTP/9.9",
        "GET / HTTP/0.9",
    ] {
        // Nothing after the request line: refused before any header is read.
        let bytes = format!("{line}\r\n");
        assert_eq!(
            head(bytes.as_bytes()).err().map(|e| e.0),
            Some(505),
            "{line}"
        );
    }
    assert_eq!(
        head(b"GET / HTTP/1.x\r\n\r\n").err().map(|e| e.0),
        Some(400)
    );
    assert_eq!(
        head(b"GET / http/1.1\r\n\r\n").err().map(|e| e.0),
        Some(400)
    );
}

/// A tiny_http server on port 0 with `limits`, answering every request
/// with `ok` from one worker thread of the queue.
fn serve(limits: Limits) -> (SocketAddr, std::sync::Arc<tiny_http::Server>) {
    serve_with(limits, |rq| {
        let _ = rq.respond(tiny_http::Response::from_string("ok"));
    })
}

/// A tiny_http server on port 0 with `limits`, whose one worker thread
/// passes every request to `answer`.
fn serve_with(
    limits: Limits,
    answer: impl Fn(tiny_http::Request) + Send + 'static,
) -> (SocketAddr, std::sync::Arc<tiny_http::Server>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server =
        std::sync::Arc::new(tiny_http::Server::with_limits(listener, None, limits).unwrap());
    let worker = server.clone();
    std::thread::spawn(move || {
        for rq in worker.incoming_requests() {
            answer(rq);
        }
    });
    (addr, server)
}

/// Reads until the peer closes or `within` passes; what came, and when the
/// stream ended (None: still open).
fn read_until_closed(s: &mut TcpStream, within: Duration) -> (Vec<u8>, Option<Duration>) {
    let t = Instant::now();
    let mut out = Vec::new();
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    while t.elapsed() < within {
        let mut buf = [0u8; 4096];
        match s.read(&mut buf) {
            Ok(0) => return (out, Some(t.elapsed())),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (out, Some(t.elapsed())),
        }
    }
    (out, None)
}

#[test]
fn idle_connections_close_and_slow_heads_get_408() {
    let (addr, _server) = serve(Limits {
        idle_timeout: Some(Duration::from_millis(300)),
        head_timeout: Some(Duration::from_millis(600)),
        ..Limits::default()
    });
    // Silent: closed without a word after the idle timeout.
    let mut silent = TcpStream::connect(addr).unwrap();
    let (said, closed) = read_until_closed(&mut silent, Duration::from_secs(5));
    assert!(said.is_empty());
    let closed = closed.expect("closed");
    assert!(closed >= Duration::from_millis(250), "{closed:?}");
    // Trickled: each byte within the idle timeout, the head not within its
    // deadline.
    let mut slow = TcpStream::connect(addr).unwrap();
    let t = Instant::now();
    let mut answer = Vec::new();
    for b in b"GET / HTTP/1.1\r\nX-Slow: ".iter().cycle() {
        if slow.write_all(&[*b]).is_err() || t.elapsed() > Duration::from_secs(5) {
            break;
        }
        let (got, closed) = read_until_closed(&mut slow, Duration::from_millis(100));
        answer.extend(got);
        if closed.is_some() {
            break;
        }
    }
    let r = parse_reply(&answer).expect("an answer");
    assert_eq!(r.status, 408);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
}

/// Statuses of `check_framing` for a head with these extra header lines.
fn framing(extra: &str, limits: &Limits) -> u16 {
    let bytes = format!("POST / HTTP/1.1\r\n{extra}\r\n");
    let head = head_within(bytes.as_bytes(), limits).unwrap();
    match tiny_http::check_framing(&head, limits) {
        Ok(()) => 200,
        Err(HeadError::Refused(status, _)) => status,
        Err(e) => panic!("{e:?}"),
    }
}

#[test]
fn body_framing_is_checked_before_a_byte_of_it_is_read() {
    let bounded = Limits {
        max_body: Some(1024),
        ..Limits::default()
    };
    let open = Limits::default();
    for (extra, want_bounded, want_open) in [
        ("", 200, 200),
        ("Content-Length: 12\r\n", 200, 200),
        ("Content-Length: 12\r\nContent-Length: 12\r\n", 200, 200),
        ("Content-Length: 12\r\nContent-Length: 13\r\n", 400, 400),
        ("Content-Length: 12, 12\r\n", 400, 400),
        ("Content-Length: -1\r\n", 400, 400),
        ("Content-Length: abc\r\n", 400, 400),
        ("Content-Length: 1025\r\n", 413, 200),
        ("Content-Length: 99999999999999999999999\r\n", 413, 200),
        ("Transfer-Encoding: chunked\r\n", 413, 200),
        (
            "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
            400,
            400,
        ),
        ("Expect: 100-continue\r\nContent-Length: 3\r\n", 200, 200),
        ("Expect: teapot\r\n", 417, 417),
    ] {
        assert_eq!(framing(extra, &bounded), want_bounded, "bounded: {extra:?}");
        assert_eq!(framing(extra, &open), want_open, "open: {extra:?}");
    }
}

#[test]
fn a_huge_declared_body_is_drained_not_allocated() {
    // No max_body: the server answers without reading the body, and
    // dropping the request drains it through a small buffer (0.12
    // allocated the declared length, and the process aborted).
    let (addr, _server) = serve(Limits::default());
    let mut s = connect(addr);
    s.write_all(b"POST / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\nabc")
        .unwrap();
    assert_eq!(read_reply(&mut s).status, 200);
    drop(s);
    let mut s = connect(addr);
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_reply(&mut s).status, 200);
}

#[test]
fn a_small_body_after_100_continue_is_read_with_the_head() {
    let (addr, _server) = serve(Limits::default());
    let mut s = connect(addr);
    s.write_all(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
        .unwrap();
    let mut interim = [0u8; 25];
    s.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"abcGET / HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_reply(&mut s).status, 200);
    assert_eq!(read_reply(&mut s).status, 200);
}

#[test]
fn a_burst_of_keepalive_clients_is_never_stranded() {
    // 0.12's pool queued a connection whenever it counted an idle thread,
    // counting threads already woken for earlier connections: in a burst,
    // connections queued behind keep-alive ones that never end.
    let (addr, _server) = serve(Limits::default());
    let clients = 64;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(clients));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let t = Instant::now();
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
                let answered = try_read_reply(&mut s).map(|r| r.status);
                // Held open (keep-alive) until every client has its answer.
                (answered, t.elapsed(), s)
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let late: Vec<_> = results
        .iter()
        .filter(|(status, took, _)| *status != Some(200) || *took > Duration::from_secs(1))
        .map(|(status, took, _)| (*status, *took))
        .collect();
    assert!(
        late.is_empty(),
        "{} of {clients} late or unanswered: {late:?}",
        late.len()
    );
}

#[test]
fn running_out_of_descriptors_does_not_end_the_accept_thread() {
    // In a child process of this test binary, with a low descriptor limit.
    const CHILD: &str = "TINY_PATCHES_EMFILE_CHILD";
    const NAME: &str = "tiny_patches::running_out_of_descriptors_does_not_end_the_accept_thread";
    if std::env::var_os(CHILD).is_some() {
        return accept_through_emfile();
    }
    let script = format!("ulimit -n 64 && exec \"$0\" --exact {NAME} --test-threads 1 --nocapture");
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .arg(std::env::current_exe().unwrap())
        .env(CHILD, "1")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.contains("1 passed"), "{said}");
}

/// Fills the descriptor table with clients until accept() fails, frees
/// them, and expects the server to serve again.
fn accept_through_emfile() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let failures = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = failures.clone();
    let (addr, _server) = serve(Limits {
        on_accept_error: Some(std::sync::Arc::new(move |_, _| {
            seen.fetch_add(1, Ordering::SeqCst);
        })),
        ..Limits::default()
    });
    let mut held = Vec::new();
    while held.len() < 500 {
        match TcpStream::connect(addr) {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
    }
    eventually("an accept error", || {
        (failures.load(Ordering::SeqCst) > 0).then_some(())
    });
    drop(held);
    eventually("served again", || {
        let mut s = TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").ok()?;
        (try_read_reply(&mut s)?.status == 200).then_some(())
    });
}

#[test]
fn the_server_can_end_a_connection_and_says_so() {
    let (addr, _server) = serve_with(
        Limits {
            keepalive_requests: Some(3),
            ..Limits::default()
        },
        |rq| {
            let mut resp = tiny_http::Response::from_string("ok");
            if rq.url() == "/bye" {
                resp.add_header(tiny_http::Header::from_bytes("Connection", "close").unwrap());
            }
            let _ = rq.respond(resp);
        },
    );
    let connection = |s: &mut TcpStream, path: &str| {
        s.write_all(format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes())
            .unwrap();
        read_reply(s).header("connection").map(str::to_string)
    };
    // The third request of a connection is its last, and says so.
    let mut s = connect(addr);
    let said: Vec<_> = (0..3).map(|_| connection(&mut s, "/")).collect();
    assert_eq!(said, [None, None, Some("close".to_string())]);
    assert_eq!(s.read(&mut [0u8; 16]).unwrap_or(0), 0, "then it ends");
    // An answer carrying `Connection: close` keeps it, and ends it.
    let mut s = connect(addr);
    assert_eq!(connection(&mut s, "/bye").as_deref(), Some("close"));
    assert_eq!(s.read(&mut [0u8; 16]).unwrap_or(0), 0, "then it ends");
    // HTTP/1.0 with keep-alive is told that it holds.
    let mut s = connect(addr);
    s.write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    assert_eq!(read_reply(&mut s).header("connection"), Some("keep-alive"));
}

#[test]
fn a_large_answer_in_pieces_does_not_wait_for_delayed_acks() {
    // A body of unknown length >= 32 KiB goes out chunked, in many small
    // writes: with Nagle on, each answer stalled 40 ms on a delayed ACK.
    let (addr, _server) = serve_with(Limits::default(), |rq| {
        let body = std::io::Cursor::new(vec![b'x'; 100_000]);
        let _ = rq.respond(tiny_http::Response::new(
            200.into(),
            vec![],
            body,
            None,
            None,
        ));
    });
    let mut s = connect(addr);
    let t = Instant::now();
    for _ in 0..25 {
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        // Read up to the last chunk's end.
        let mut got = Vec::new();
        while !got.ends_with(b"\r\n0\r\n\r\n") {
            let mut buf = [0u8; 65536];
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed early");
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got.starts_with(b"HTTP/1.1 200"));
    }
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn connections_over_a_cap_get_503_and_the_cap_frees_up() {
    for (limits, why) in [
        (
            Limits {
                max_connections: Some(3),
                ..Limits::default()
            },
            "too many connections",
        ),
        (
            Limits {
                max_connections_per_ip: Some(3),
                ..Limits::default()
            },
            "too many connections from this address",
        ),
    ] {
        let (addr, _server) = serve(limits);
        let mut held = hold_served(addr, 3);
        let over = raw(addr, b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(over.status, 503, "{why}");
        assert_eq!(over.json()["error"], why);
        assert_eq!(over.header("retry-after"), Some("1"));
        assert_eq!(over.header("connection"), Some("close"));
        held.pop();
        eventually("a place freed", || {
            let r = raw(addr, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
            (r.status == 200).then_some(())
        });
    }
}

#[test]
fn inline_handlers_run_on_the_connection_thread_and_a_panic_ends_only_its_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tiny_http::Server::serve_inline(listener, None, Limits::default(), |rq| {
        if rq.url() == "/panic" {
            panic!("handler panicked (on purpose)");
        }
        let name = std::thread::current().name().map(str::to_string);
        let _ = rq.respond(tiny_http::Response::from_string(format!("{name:?}")));
    })
    .unwrap();
    let r = raw(addr, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(server.try_recv().unwrap().is_none(), "nothing queued");
    let mut s = connect(addr);
    s.write_all(b"GET /panic HTTP/1.1\r\n\r\n").unwrap();
    // The request, dropped unanswered, says 500; then the connection ends.
    assert_eq!(read_reply(&mut s).status, 500);
    assert_eq!(s.read(&mut [0u8; 16]).unwrap_or(0), 0);
    assert_eq!(
        raw(addr, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").status,
        200
    );
}
