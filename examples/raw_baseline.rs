//! The benchmark's yardstick (`scripts/bench.py`): the least an HTTP/1.1
//! server on plain std threads can do. One thread per connection,
//! keep-alive, TCP_NODELAY, and every request answered with the same bytes,
//! read once from a file holding a complete raw response (status line,
//! headers with Content-Length, blank line, body).
//!
//! ```sh
//! cargo run --release --example raw_baseline -- --port 0 --response FILE
//! ```
//!
//! A request with `Connection: close` (or an HTTP/1.0 one) gets the same
//! bytes with `Connection: close\r\n` added as the last header, then the
//! connection is closed; any `Connection` header in the file is dropped so
//! the keep-alive answer is honest too. A request head over 16 KiB, or one
//! declaring a body, ends its connection unanswered (no benchmark sends one).
//! Prints `{"event":"startup","addr":"127.0.0.1:PORT"}` once bound.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

const MAX_HEAD: usize = 16 * 1024;

struct Answers {
    keep_alive: Vec<u8>,
    close: Vec<u8>,
}

fn usage(why: &str) -> ! {
    eprintln!("raw_baseline: {why}\nusage: raw_baseline [--host IP] --port PORT --response FILE");
    std::process::exit(2);
}

/// Both answers from the file: its `Connection` header (if any) removed,
/// then `Connection: close` appended to the head for the close variant.
fn answers(raw: &[u8]) -> Result<Answers, String> {
    let end = find(raw, b"\r\n\r\n").ok_or("the response file has no blank line after its head")?;
    let (head, body) = (&raw[..end + 2], &raw[end + 2..]); // head keeps its last CRLF
    let mut kept = Vec::with_capacity(head.len() + 20);
    for (i, line) in head.split_inclusive(|&b| b == b'\n').enumerate() {
        if i > 0 && line.to_ascii_lowercase().starts_with(b"connection:") {
            continue;
        }
        kept.extend_from_slice(line);
    }
    let mut close = kept.clone();
    close.extend_from_slice(b"Connection: close\r\n");
    close.extend_from_slice(body);
    kept.extend_from_slice(body);
    Ok(Answers {
        keep_alive: kept,
        close,
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// What the client asked of the connection: `None` if it must end
/// unanswered, else `Some(close)`.
fn wants_close(head: &[u8]) -> Option<bool> {
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split("\r\n");
    let mut close = lines.next()?.ends_with("HTTP/1.0");
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("connection") {
            let has = |t: &str| value.split(',').any(|v| v.trim().eq_ignore_ascii_case(t));
            close = has("close") || (close && !has("keep-alive"));
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || (name.eq_ignore_ascii_case("content-length") && value != "0")
        {
            return None;
        }
    }
    Some(close)
}

/// Answers requests on one connection until it ends, asks to close, or errs.
fn serve(mut conn: TcpStream, answers: &Answers) -> io::Result<()> {
    conn.set_nodelay(true)?;
    let mut buf = vec![0u8; MAX_HEAD];
    let mut filled = 0;
    loop {
        // Every complete head already buffered (pipelining), then read more.
        while let Some(end) = find(&buf[..filled], b"\r\n\r\n") {
            let Some(close) = wants_close(&buf[..end]) else {
                return Ok(());
            };
            conn.write_all(if close {
                &answers.close
            } else {
                &answers.keep_alive
            })?;
            if close {
                return Ok(());
            }
            buf.copy_within(end + 4..filled, 0);
            filled -= end + 4;
        }
        if filled == buf.len() {
            return Ok(()); // a head over MAX_HEAD
        }
        match conn.read(&mut buf[filled..])? {
            0 => return Ok(()),
            n => filled += n,
        }
    }
}

fn main() {
    let (mut host, mut port, mut file) = ("127.0.0.1".to_string(), None, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--host" => host = value(),
            "--port" => {
                port = Some(
                    value()
                        .parse::<u16>()
                        .unwrap_or_else(|_| usage("bad --port")),
                )
            }
            "--response" => file = Some(value()),
            _ => usage(&format!("unknown argument {flag}")),
        }
    }
    let (Some(port), Some(file)) = (port, file) else {
        usage("--port and --response are required")
    };
    let raw = std::fs::read(&file).unwrap_or_else(|e| usage(&format!("cannot read {file}: {e}")));
    let answers = Arc::new(answers(&raw).unwrap_or_else(|e| usage(&e)));
    let listener = TcpListener::bind((host.as_str(), port)).unwrap_or_else(|e| {
        eprintln!("raw_baseline: cannot listen on {host}:{port}: {e}");
        std::process::exit(1);
    });
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    println!(r#"{{"event":"startup","service":"raw_baseline","addr":"{addr}"}}"#);
    let _ = io::stdout().flush();
    for conn in listener.incoming() {
        let Ok(conn) = conn else {
            // e.g. out of descriptors: skip it, without spinning
            std::thread::sleep(std::time::Duration::from_millis(10));
            continue;
        };
        let answers = Arc::clone(&answers);
        let _ = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || serve(conn, &answers));
    }
}
