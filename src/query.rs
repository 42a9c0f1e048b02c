//! Query-string parsing: `a=1&b=x%20y` into decoded name/value pairs.
//!
//! Form-style decoding (`+` is a space, `%XX` a byte) with the result checked
//! to be UTF-8. A malformed escape or non-UTF-8 bytes is an [`Error`] that the
//! routes answer with 400; nothing here panics on any input.

use std::borrow::Cow;
use std::fmt;

/// Why a query string cannot be read.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// The decoded bytes are not UTF-8.
    NotUtf8,
    /// A parameter the endpoint does not take (decoded, clipped), and the
    /// ones it does.
    Unknown(String, &'static [&'static str]),
    /// A parameter given more than once.
    Repeated(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadEscape => write!(f, "malformed query string: bad %-escape"),
            Error::NotUtf8 => write!(f, "malformed query string: not UTF-8"),
            Error::Unknown(name, []) => {
                write!(
                    f,
                    "unknown query parameter: {name} (this endpoint takes none)"
                )
            }
            Error::Unknown(name, known) => write!(
                f,
                "unknown query parameter: {name} (want one of {})",
                known.join(", ")
            ),
            Error::Repeated(name) => write!(f, "repeated query parameter: {name}"),
        }
    }
}

impl std::error::Error for Error {}

/// Decodes one component: `+` → space, `%XX` → byte; borrows when there is
/// nothing to decode.
pub fn decode(s: &str) -> Result<Cow<'_, str>, Error> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Ok(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|&b| hex(b));
                let lo = bytes.get(i + 2).and_then(|&b| hex(b));
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(Error::BadEscape);
                };
                out.push(hi << 4 | lo);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| Error::NotUtf8)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A decoded `name=value` pair (borrowed when nothing needed decoding).
pub type Pair<'a> = (Cow<'a, str>, Cow<'a, str>);

/// All `name=value` pairs in order; a pair without `=` has an empty value and
/// empty pairs (`a=1&&b=2`) are skipped.
pub fn pairs(query: &str) -> Result<Vec<Pair<'_>>, Error> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

/// The pairs of `query` for an endpoint that takes the parameters `known`:
/// each name known and given at most once, else an error naming it (a
/// misspelt `feilds=` must not quietly answer as if it were absent).
/// Names are matched exactly; values are decoded but not interpreted.
pub fn strict<'a>(
    query: &'a str,
    known: &'static [&'static str],
) -> Result<Vec<(&'static str, Cow<'a, str>)>, Error> {
    let mut out: Vec<(&'static str, Cow<'a, str>)> = Vec::new();
    for (name, value) in pairs(query)? {
        if name.is_empty() && value.is_empty() {
            continue; // a stray `=`, as stray `&`s are
        }
        let Some(&known_name) = known.iter().find(|k| **k == name) else {
            let mut clipped: String = name.chars().take(64).collect();
            if clipped.len() < name.len() {
                clipped.push('…');
            }
            return Err(Error::Unknown(clipped, known));
        };
        if out.iter().any(|(k, _)| *k == known_name) {
            return Err(Error::Repeated(known_name));
        }
        out.push((known_name, value));
    }
    Ok(out)
}

/// The first value of `name`, decoded. The whole query is checked, so a bad
/// escape anywhere is an error even if `name` itself is fine.
pub fn param<'a>(query: &'a str, name: &str) -> Result<Option<Cow<'a, str>>, Error> {
    Ok(pairs(query)?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_form_encoding() {
        assert_eq!(decode("sw-000").unwrap(), "sw-000");
        assert_eq!(decode("a+b%20c%2Fd").unwrap(), "a b c/d");
        assert_eq!(decode("%C3%A9").unwrap(), "é");
        assert_eq!(decode("%").unwrap_err(), Error::BadEscape);
        assert_eq!(decode("%4").unwrap_err(), Error::BadEscape);
        assert_eq!(decode("%zz").unwrap_err(), Error::BadEscape);
        assert_eq!(decode("%ff").unwrap_err(), Error::NotUtf8);
    }

    #[test]
    fn finds_the_first_value() {
        let q = "metric=cpu_util_pct&switch_id=sw-001&switch_id=sw-002&flag";
        assert_eq!(param(q, "switch_id").unwrap().as_deref(), Some("sw-001"));
        assert_eq!(param(q, "flag").unwrap().as_deref(), Some(""));
        assert_eq!(param(q, "nope").unwrap(), None);
        assert_eq!(param("", "x").unwrap(), None);
        assert_eq!(param("a=%zz&x=1", "x").unwrap_err(), Error::BadEscape);
        assert_eq!(param("sw%5Fid=1", "sw_id").unwrap().as_deref(), Some("1"));
    }

    #[test]
    fn strict_refuses_unknown_and_repeated_names() {
        const KNOWN: &[&str] = &["switch_id", "metric"];
        let got = strict("metric=a%2Cb&switch_id=sw-1&&=&", KNOWN).unwrap();
        assert_eq!(
            got,
            [("metric", "a,b".into()), ("switch_id", "sw-1".into())]
        );
        assert!(strict("", KNOWN).unwrap().is_empty());
        let err = |q: &str, known| strict(q, known).unwrap_err().to_string();
        assert_eq!(
            err("feilds=a", KNOWN),
            "unknown query parameter: feilds (want one of switch_id, metric)"
        );
        assert_eq!(
            err("x", &[]),
            "unknown query parameter: x (this endpoint takes none)"
        );
        assert_eq!(
            err("metric=a&switch_id=b&metric=a", KNOWN),
            "repeated query parameter: metric"
        );
        // Names are decoded before they are looked up, and clipped after.
        assert!(strict("switch%5Fid=1", KNOWN).is_ok());
        assert_eq!(
            err("Metric=1", KNOWN),
            "unknown query parameter: Metric (want one of switch_id, metric)"
        );
        let long = "n".repeat(500);
        assert!(err(&long, &[]).len() < 120);
        assert_eq!(
            err("a=%zz&b=1", &[]),
            "malformed query string: bad %-escape"
        );
    }

    #[test]
    fn never_panics_on_random_input() {
        let mut rng = fastrand::Rng::with_seed(3);
        let alphabet = ['%', '+', '&', '=', 'a', 'F', '9', 'é', '\u{0}'];
        for _ in 0..20_000 {
            let s: String = (0..rng.usize(0..16))
                .map(|_| alphabet[rng.usize(0..alphabet.len())])
                .collect();
            let _ = pairs(&s);
        }
    }
}
