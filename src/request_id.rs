//! Request IDs: the `X-Request-Id` a request is logged and answered under,
//! so one request can be followed from a client's log to ours.
//!
//! A client's own ID is kept when it is short and plain
//! (1..=64 of `[A-Za-z0-9._:-]`), because it is echoed in a response header
//! and written to the log: anything else (CR/LF, quotes, non-ASCII, a
//! megabyte) could split a header or forge a log field, so it is replaced
//! with a fresh random one rather than cleaned up.

/// The header a request ID travels in.
pub const HEADER: &str = "X-Request-Id";

/// The longest client-sent ID we keep.
pub const MAX_LEN: usize = 64;

/// The request's ID: the client's `X-Request-Id` (spaces and tabs around it
/// trimmed) if it is acceptable, otherwise a new one from [`generate`].
pub fn from_header(value: Option<&str>) -> String {
    match value.map(|v| v.trim_matches([' ', '\t'])) {
        Some(v) if is_acceptable(v) => v.to_string(),
        _ => generate(),
    }
}

/// A new ID: 16 lowercase hex digits (64 random bits).
pub fn generate() -> String {
    // By hand: `format!` cost more than the rest of a small request's id work.
    let n = fastrand::u64(..);
    (0..16)
        .rev()
        .map(|i| char::from(b"0123456789abcdef"[(n >> (i * 4)) as usize & 15]))
        .collect()
}

/// True if `id` is 1..=64 characters of `[A-Za-z0-9._:-]`.
fn is_acceptable(id: &str) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_generated(id: &str) -> bool {
        id.len() == 16 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }

    #[test]
    fn acceptable_ids_are_kept() {
        let longest = "a".repeat(MAX_LEN);
        for ok in [
            "a",
            "0",
            "req-42",
            "550e8400-e29b-41d4-a716-446655440000",
            "trace:span.1_2-3",
            "ABCdef.._::--",
            longest.as_str(),
        ] {
            assert_eq!(from_header(Some(ok)), ok, "{ok:?}");
        }
    }

    #[test]
    fn surrounding_spaces_are_trimmed() {
        assert_eq!(from_header(Some("  abc-1 ")), "abc-1");
        assert_eq!(from_header(Some("\tabc-1\t")), "abc-1");
    }

    #[test]
    fn other_ids_are_replaced() {
        let too_long = "a".repeat(MAX_LEN + 1);
        for bad in [
            "",
            "   ",
            "abc\r\nSet-Cookie: x=1",
            "abc\n",
            "a\rb",
            "\"quoted\"",
            "it's",
            "a b",
            "a/b",
            "a,b",
            "a;b",
            "a\u{0}b",
            "caf\u{e9}",
            "\u{1f600}",
            "{\"json\":1}",
            too_long.as_str(),
        ] {
            let id = from_header(Some(bad));
            assert!(is_generated(&id), "{bad:?} gave {id:?}");
        }
        assert!(is_generated(&from_header(None)));
    }

    #[test]
    fn generated_ids_are_16_hex_and_differ() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| generate()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| is_generated(id)), "{ids:?}");
    }
}
