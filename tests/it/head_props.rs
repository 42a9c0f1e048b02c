//! Seeded property test of request-head reading in the patched tiny_http
//! (`tiny_http::read_head` and `check_framing`, the code the servers run):
//! mutated heads checked by the same invariants as the `head_parse` fuzz
//! target (`fuzz/src/head_checks.rs`). Fixed seed: a failure reproduces.

#[path = "../../fuzz/src/head_checks.rs"]
mod head_checks;

const SEEDS: &[&[u8]] = &[
    b"GET /telemetry/GetMetric?switch_id=sw-001&metric=cpu_util_pct HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
    b"POST /stats HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\nConnection: keep-alive\r\n\r\nabc",
    b"GET http://h/x HTTP/1.1\nTransfer-Encoding: chunked\n\n",
    b"\r\nHEAD /health HTTP/1.1\r\nX-Request-Id: abc\r\nConnection: Upgrade, close\r\nUpgrade: h2c\r\n\r\n",
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

#[test]
fn mutated_heads_keep_the_head_reading_invariants() {
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
            *seen.entry(head_checks::outcome(bytes)).or_default() += 1;
        }
    }
    for way in [
        "accepted",
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
