//! Hand-written JSON output for the hot and pre-rendered paths.
//!
//! Log lines, error bodies and the pre-rendered snapshot bodies are built by
//! appending to a `String`; these helpers do the two things that must be exactly
//! right there: escaping a string, and deciding whether a number token taken
//! from the CSV can be copied into JSON verbatim.

use std::fmt::Write;

/// Appends `s` as a JSON string literal (quotes included) to `out`.
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f | 0x7f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            out.push_str(&format!("\\u{:04x}", b));
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Returns `s` as a JSON string literal.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_str(&mut out, s);
    out
}

/// `{"error":"<msg>"}`: the body of every error answer.
pub fn error_body(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len() + 12);
    out.push_str("{\"error\":");
    push_str(&mut out, msg);
    out.push('}');
    out
}

/// Shortens untrusted text before it is echoed in an error or a log line, so a
/// hostile request cannot make us write megabytes back. Cuts on a char boundary.
pub fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Untrusted text for an error message: at most `max` bytes, and `…` when
/// something was cut.
pub fn clipped(s: &str, max: usize) -> String {
    let c = clip(s, max);
    if c.len() < s.len() {
        format!("{c}…")
    } else {
        c.to_string()
    }
}

/// True if `s` is a number literal exactly as JSON (RFC 8259) spells one:
/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
pub fn is_number_literal(s: &str) -> bool {
    let b = s.as_bytes();
    // The index after the run of digits starting at `i`.
    let digits = |i: usize| i + b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut i = usize::from(b.first() == Some(&b'-'));
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(i),
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        let end = digits(i + 1);
        if end == i + 1 {
            return false;
        }
        i = end;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let end = digits(i);
        if end == i {
            return false;
        }
        i = end;
    }
    i == b.len()
}

/// Appends a finite `f64` in the shortest form that reads back to the same
/// value (`0.5`, `1e+300`, `3`). Non-finite values, which the callers never
/// pass, become `null` rather than invalid JSON.
pub fn push_f64(out: &mut String, v: f64) {
    match serde_json::Number::from_f64(v) {
        Some(n) => {
            // Written in place: this runs once per value of a big table.
            let start = out.len();
            let _ = write!(out, "{n}");
            // serde_json spells integral floats as `3.0`; the contract says `3`.
            if out[start..].ends_with(".0") {
                out.truncate(out.len() - 2);
            }
        }
        None => out.push_str("null"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_strings() {
        assert_eq!(string("plain"), "\"plain\"");
        assert_eq!(string("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(string("l1\nl2\t\r"), r#""l1\nl2\t\r""#);
        assert_eq!(string("\u{1}\u{7f}é"), "\"\\u0001\\u007fé\"");
        let v: serde_json::Value = serde_json::from_str(&string("x\u{0}\"\\y")).unwrap();
        assert_eq!(v, "x\u{0}\"\\y");
    }

    #[test]
    fn number_literals() {
        for ok in ["0", "-0", "121.5", "1e5", "1E-5", "-3.25e+10", "10"] {
            assert!(is_number_literal(ok), "{ok}");
        }
        for bad in [
            "", "-", "01", "+1", ".5", "1.", "1e", "0x10", "NaN", "inf", "1 ", "1.5.5",
        ] {
            assert!(!is_number_literal(bad), "{bad}");
        }
    }

    #[test]
    fn floats_are_shortest() {
        for (v, s) in [
            (0.5, "0.5"),
            (3.0, "3"),
            (-0.25, "-0.25"),
            (1e300, "1e+300"),
            (15187500000.0, "15187500000"),
            (-0.0, "-0"),
        ] {
            let mut out = String::from("x:");
            push_f64(&mut out, v);
            assert_eq!(out, format!("x:{s}"));
        }
    }

    #[test]
    fn clip_respects_char_boundaries() {
        assert_eq!(clip("héllo", 2), "h");
        assert_eq!(clip("abc", 10), "abc");
    }

    #[test]
    fn error_body_is_json() {
        let v: serde_json::Value = serde_json::from_str(&error_body("bad \"x\"")).unwrap();
        assert_eq!(v["error"], "bad \"x\"");
    }
}
