//! The invariants of the front's request-head reading (`server::head` and
//! `server::relay::canonical`), shared by the `head_parse` fuzz target and
//! the seeded property test in `tests/it/head_props.rs`.
//!
//! For any bytes: no panic; a refusal is one of the statuses the front
//! sends; an incomplete head never exceeds the bounds; a complete one is
//! re-sent in a form that parses back to the same request, that tiny_http's
//! own parsing accepts line by line, that carries no hop-by-hop header but
//! ours, and that is its own canonical form.

use fabric_telemetry::server::head::{self, Bounds, MAX_HEADER_BYTES, MAX_URI_BYTES};
use fabric_telemetry::server::relay;
use std::str::FromStr;

pub fn check_head(bytes: &[u8]) -> Result<(), String> {
    let (head, used) = match head::parse(bytes) {
        Err(r) if [400, 414, 431, 505].contains(&r.status) && !r.message.is_empty() => {
            return Ok(());
        }
        Err(r) => return Err(format!("unexpected refusal {r:?}")),
        Ok(None) if bytes.len() <= MAX_URI_BYTES + MAX_HEADER_BYTES + 8 => return Ok(()),
        Ok(None) => return Err(format!("{} bytes still incomplete", bytes.len())),
        Ok(Some(parsed)) => parsed,
    };
    if used == 0 || used > bytes.len() {
        return Err(format!("used {used} of {}", bytes.len()));
    }
    match head::parse(&bytes[..used]) {
        Ok(Some((again, n))) if again == head && n == used => {}
        other => return Err(format!("the head alone parses differently: {other:?}")),
    }
    let forwarded = match relay::canonical(&head) {
        Err((status, _)) if [400, 413, 417].contains(&status) => return Ok(()),
        Err(other) => return Err(format!("unexpected refusal {other:?}")),
        Ok(forwarded) => forwarded,
    };
    let Ok(Some((back, n))) = head::parse_within(&forwarded, Bounds::FORWARDED) else {
        return Err(format!(
            "forwarded head does not parse: {:?}",
            String::from_utf8_lossy(&forwarded)
        ));
    };
    if n != forwarded.len() {
        return Err("forwarded head has trailing bytes".into());
    }
    if (back.method, back.target, back.minor) != (head.method, head.target, head.minor) {
        return Err(format!("request line changed: {head:?} -> {back:?}"));
    }
    let text = std::str::from_utf8(&forwarded).map_err(|_| "forwarded head is not UTF-8")?;
    if !text.is_ascii() {
        return Err("forwarded head is not ASCII".into());
    }
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    if request_line.split(' ').count() != 3 {
        return Err(format!(
            "request line tiny_http would misread: {request_line:?}"
        ));
    }
    let hop_by_hop = [
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "expect",
        "upgrade",
        "te",
    ];
    let fields: Vec<&str> = lines.take_while(|l| !l.is_empty()).collect();
    // The front's own say on its connection to tiny_http (kept open for
    // HTTP/1.0 too) may close the list, once.
    let ours = ["Connection: keep-alive"];
    let fields = match fields.split_last() {
        Some((last, rest)) if ours.contains(last) => rest,
        _ => &fields[..],
    };
    for line in fields {
        if tiny_http::Header::from_str(line.trim()).is_err() {
            return Err(format!("tiny_http refuses header line {line:?}"));
        }
        let name = line.split(':').next().unwrap_or_default();
        if hop_by_hop.iter().any(|h| h.eq_ignore_ascii_case(name)) {
            return Err(format!("hop-by-hop header passed on: {line:?}"));
        }
    }
    match relay::canonical(&back) {
        Ok(again) if again == forwarded => Ok(()),
        other => Err(format!("not its own canonical form: {other:?}")),
    }
}
