//! Arbitrary requests through both servers' route handlers (no sockets).
//!
//! The input is split on 0xFF bytes (never part of UTF-8) into method, path,
//! query and up to 16 header name/value pairs, each taken as lossy UTF-8.
//! Every answer must be well-formed HTTP (status, header names and values,
//! JSON bodies, JSON errors, `Allow` on 405) and the one the contract asks
//! for (see `checks::check_consumer` / `check_producer`).

#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use fabric_telemetry::http::Request;
use fabric_telemetry_fuzz::checks::Servers;
use libfuzzer_sys::fuzz_target;

static SERVERS: OnceLock<Servers> = OnceLock::new();

fn request(data: &[u8]) -> Request {
    let mut parts = data
        .split(|&b| b == 0xff)
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let method = parts.next().unwrap_or_default();
    let path = parts.next().unwrap_or_default();
    let query = parts.next().unwrap_or_default();
    let mut headers = Vec::new();
    while let (Some(name), Some(value)) = (parts.next(), parts.next()) {
        if headers.len() == 16 {
            break;
        }
        headers.push((name, value));
    }
    Request {
        method,
        path,
        query,
        headers,
        ..Request::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let servers = SERVERS.get_or_init(Servers::new);
    let req = request(data);
    let elapsed = Duration::from_micros(data.len() as u64 * 7);
    if let Err(why) = servers.check(&req, elapsed) {
        panic!("{why}\nrequest: {req:?}");
    }
});
