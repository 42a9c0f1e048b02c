//! Seeded property test of the front's request-head reading: mutated heads
//! through `server::head::parse` and the canonical form handed to
//! tiny_http, checked by the same invariants as the `head_parse` fuzz
//! target (`fuzz/src/head_checks.rs`). Fixed seed: a failure reproduces.

#[path = "../../fuzz/src/head_checks.rs"]
mod head_checks;

const SEEDS: &[&[u8]] = &[
    b"GET /telemetry/GetMetric?switch_id=sw-001&metric=cpu_util_pct HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
    b"POST /stats HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\nConnection: keep-alive\r\n\r\nabc",
    b"GET http://h/x HTTP/1.1\nTransfer-Encoding: chunked\n\n",
    b"\r\nHEAD /health HTTP/1.1\r\nX-Request-Id: abc\r\nX-Fabric-Front: x\r\nConnection: Upgrade, close\r\nUpgrade: h2c\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
];

const PIECES: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r",
    b" ",
    b"\t",
    b":",
    b"HTTP/1.1",
    b"HTTP/2.0",
    b"Content-Length: 5",
    b"Content-Length: 99999999999",
    b"Transfer-Encoding: chunked",
    b"Expect: x",
    b"Connection: close",
    b"X-Fabric-Peer: 1.2.3.4:5",
    b"\x00",
    b"\xff",
    b"http://",
    b"*",
];

fn mutate(rng: &mut fastrand::Rng, head: &mut Vec<u8>) {
    for _ in 0..rng.usize(1..4) {
        let at = rng.usize(..=head.len());
        match rng.u8(..5) {
            0 if !head.is_empty() => {
                let end = (at + rng.usize(1..8)).min(head.len());
                head.drain(at.min(end)..end);
            }
            1 => head.insert(at, rng.u8(..)),
            2 => {
                let piece = PIECES[rng.usize(..PIECES.len())];
                head.splice(at..at, piece.iter().copied());
            }
            3 if !head.is_empty() => {
                let i = rng.usize(..head.len());
                head[i] = rng.u8(..);
            }
            _ => {
                let piece = [b'a'].repeat(rng.usize(..20_000));
                head.splice(at..at, piece);
            }
        }
    }
}

/// Which way the front went with some bytes: to count that every way is
/// exercised (a generator that never reaches a branch proves nothing).
fn outcome(bytes: &[u8]) -> String {
    use fabric_telemetry::server::{head, relay};
    match head::parse(bytes) {
        Err(r) => format!("refused {}", r.status),
        Ok(None) => "incomplete".into(),
        Ok(Some((h, _))) => match relay::canonical(&h) {
            Ok(_) => "forwarded".into(),
            Err((status, _)) => format!("refused {status}"),
        },
    }
}

#[test]
fn mutated_heads_keep_the_front_invariants() {
    let mut rng = fastrand::Rng::with_seed(4);
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for case in 0..20_000 {
        let mut head = SEEDS[case % SEEDS.len()].to_vec();
        mutate(&mut rng, &mut head);
        // Every prefix too, as a head arrives in pieces.
        let cut = rng.usize(..=head.len());
        for bytes in [&head[..], &head[..cut]] {
            if let Err(why) = head_checks::check_head(bytes) {
                panic!("case {case}: {why}\n{:?}", String::from_utf8_lossy(bytes));
            }
            *seen.entry(outcome(bytes)).or_default() += 1;
        }
    }
    for way in [
        "forwarded",
        "incomplete",
        "refused 400",
        "refused 413",
        "refused 414",
        "refused 417",
        "refused 431",
        "refused 505",
    ] {
        assert!(seen.get(way).copied().unwrap_or(0) >= 20, "{way}: {seen:?}");
    }
}
