//! Bearer-token authentication: one shared secret that a client sends as
//! `Authorization: Bearer <token>` and a server checks. Also [`Basic`]: the
//! HTTP Basic credentials metrics_server's poller may send upstream (UFM's
//! REST wants them), with the base64 they are sent in.
//!
//! The token comes from a literal value or from a file (so it need not sit in
//! the process's environment or command line). It is kept out of everything
//! a person might read: [`Token`]'s `Debug` does not print it, and no error
//! from [`load`] quotes it or a file's content. [`Token::verify`] compares in
//! constant time, so how long a wrong guess takes says nothing about how much
//! of it was right.

use std::fmt;
use std::hint::black_box;

use crate::http::Response;

/// The longest token we accept, in bytes. A file longer than this is not a
/// token (and is not read to its end: think `/dev/zero`).
pub const MAX_LEN: usize = 4096;

/// The realm named in the `WWW-Authenticate` header of a 401.
pub const REALM: &str = "fabric-telemetry";

/// A bearer token: a non-empty run of visible ASCII (0x21..=0x7e) bytes.
#[derive(Clone)]
pub struct Token {
    // Validated visible ASCII, so it is always valid UTF-8.
    secret: String,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Reads the token from `value` (a literal) or from the file at `file`.
///
/// Neither set means authentication is off (`Ok(None)`). Both set, an empty
/// token, a file that cannot be read, a token longer than [`MAX_LEN`] or one
/// with a byte outside visible ASCII are errors. A file's trailing newline and
/// other trailing whitespace are dropped; a literal is taken as it is. Error
/// messages name the source but never quote the token or the file's content.
pub fn load(value: Option<&str>, file: Option<&str>) -> Result<Option<Token>, String> {
    match (value, file) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => {
            Err("auth token: give either a value or a file, not both".to_string())
        }
        (Some(v), None) => validate(v.as_bytes(), "auth token").map(Some),
        (None, Some(path)) => {
            let bytes = read_capped(path, "auth token file")?;
            let trimmed = trim_end_ascii_whitespace(&bytes);
            validate(trimmed, &format!("auth token file {path}")).map(Some)
        }
    }
}

/// Reads at most [`MAX_LEN`] + 1 bytes of `path` (one more than a secret may
/// hold, so an over-long file is noticed without reading all of it). Errors
/// start with `what` and the path.
fn read_capped(path: &str, what: &str) -> Result<Vec<u8>, String> {
    crate::config::read_at_most(path, MAX_LEN as u64 + 1).map_err(|e| format!("{what} {path}: {e}"))
}

fn trim_end_ascii_whitespace(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    &bytes[..end]
}

/// Checks a candidate token; `source` names where it came from in errors.
fn validate(bytes: &[u8], source: &str) -> Result<Token, String> {
    if bytes.is_empty() {
        return Err(format!("{source}: is empty"));
    }
    if bytes.len() > MAX_LEN {
        return Err(format!("{source}: longer than {MAX_LEN} bytes"));
    }
    if !bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(format!(
            "{source}: may only hold visible ASCII characters (no spaces, control characters or non-ASCII)"
        ));
    }
    // Visible ASCII is valid UTF-8; the fallback is never taken.
    let secret = String::from_utf8(bytes.to_vec()).map_err(|_| format!("{source}: not ASCII"))?;
    Ok(Token { secret })
}

impl Token {
    /// True if `authorization` (the `Authorization` header's value, if sent)
    /// is `Bearer <token>` with this token. The scheme is matched in any case
    /// and may be followed by one or more spaces; the token comparison takes
    /// the same time wherever the first wrong byte is.
    pub fn verify(&self, authorization: Option<&str>) -> bool {
        let Some(header) = authorization else {
            return false;
        };
        let header = header.trim_matches([' ', '\t']);
        // "Bearer" is ASCII, so byte 6 is a char boundary whenever the value
        // is long enough; `get` also refuses a multibyte char across it.
        let (Some(scheme), Some(rest)) = (header.get(..6), header.get(6..)) else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("bearer") || !rest.starts_with(' ') {
            return false;
        }
        let candidate = rest.trim_start_matches(' ');
        constant_time_eq(candidate.as_bytes(), self.secret.as_bytes())
    }

    /// `Bearer <token>`: the `Authorization` value a client sends.
    pub fn header_value(&self) -> String {
        format!("Bearer {}", self.secret)
    }
}

/// Compares two byte strings without stopping early: every byte position up
/// to the longer length is visited and the differences are OR-ed together,
/// so the time depends only on the lengths, never on where they first differ.
/// `black_box` keeps the optimiser from turning the fold into an early exit.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..len {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff = black_box(diff | (x ^ y));
    }
    diff == 0
}

/// HTTP Basic credentials a client sends (RFC 7617), kept as the
/// `Authorization` value they make. Like [`Token`], its `Debug` prints
/// nothing of it and no error from [`Basic::new`] quotes the password.
#[derive(Clone)]
pub struct Basic {
    // `Basic <base64(user:password)>`: the secret itself, encoded.
    header: String,
}

impl fmt::Debug for Basic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Basic(<redacted>)")
    }
}

impl Basic {
    /// Credentials of `user` (no `:` nor control characters, at most
    /// [`MAX_LEN`] bytes) and `password` (no control characters, not empty,
    /// at most [`MAX_LEN`] bytes; any other bytes, sent as they are). An
    /// error says which of the two is wrong, and never quotes the password.
    pub fn new(user: &str, password: &[u8]) -> Result<Basic, BasicError> {
        if user.is_empty() || user.len() > MAX_LEN {
            return Err(BasicError::User(format!("1 to {MAX_LEN} bytes")));
        }
        if user.contains(':') || user.chars().any(char::is_control) {
            return Err(BasicError::User("no ':' nor control characters".into()));
        }
        if password.is_empty() {
            return Err(BasicError::Password("is empty".into()));
        }
        if password.len() > MAX_LEN {
            return Err(BasicError::Password(format!("longer than {MAX_LEN} bytes")));
        }
        if password.iter().any(|&b| b < 0x20 || b == 0x7f) {
            return Err(BasicError::Password(
                "may not hold control characters".into(),
            ));
        }
        let mut pair = Vec::with_capacity(user.len() + 1 + password.len());
        pair.extend_from_slice(user.as_bytes());
        pair.push(b':');
        pair.extend_from_slice(password);
        Ok(Basic {
            header: format!("Basic {}", base64(&pair)),
        })
    }

    /// `Basic <base64(user:password)>`: the `Authorization` value to send.
    pub fn header_value(&self) -> String {
        self.header.clone()
    }
}

/// What is wrong with [`Basic`] credentials, in a few words.
#[derive(Debug, PartialEq)]
pub enum BasicError {
    /// The user name (which may be shown).
    User(String),
    /// The password (whose value never is).
    Password(String),
}

/// Reads a password file for [`Basic::new`]: at most [`MAX_LEN`] + 1
/// bytes, one trailing newline (`\n` or `\r\n`) dropped, nothing else
/// trimmed. Errors name the path, never the content.
pub fn read_password(path: &str) -> Result<Vec<u8>, String> {
    let mut bytes = read_capped(path, "password file")?;
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    Ok(bytes)
}

/// Standard base64 with padding (RFC 4648, section 4).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        // Up to three bytes as one 24-bit number, cut into four sextets;
        // a short chunk's missing sextets are '=' padding.
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The 401 answer for a request without a valid token.
pub fn unauthorized() -> Response {
    Response::error(401, "missing or invalid bearer token")
        .header("WWW-Authenticate", format!("Bearer realm=\"{REALM}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testutil::TempFile;

    fn token(s: &str) -> Token {
        load(Some(s), None).unwrap().unwrap()
    }

    #[test]
    fn neither_source_means_off() {
        assert!(load(None, None).unwrap().is_none());
    }

    #[test]
    fn literal_value_is_taken_as_is() {
        let t = token("s3cr3t-._~+/=");
        assert_eq!(t.header_value(), "Bearer s3cr3t-._~+/=");
    }

    #[test]
    fn file_is_trimmed_of_trailing_whitespace() {
        let f = TempFile::with("ok", b"abc123\r\n \t\n");
        let t = load(None, Some(f.path())).unwrap().unwrap();
        assert_eq!(t.header_value(), "Bearer abc123");
    }

    #[test]
    fn both_sources_is_an_error() {
        let f = TempFile::with("both", b"abc");
        let err = load(Some("abc"), Some(f.path())).unwrap_err();
        assert!(err.contains("not both"), "{err}");
    }

    #[test]
    fn empty_is_an_error() {
        assert!(load(Some(""), None).unwrap_err().contains("empty"));
        let f = TempFile::with("empty", b"\n\n  \n");
        assert!(load(None, Some(f.path())).unwrap_err().contains("empty"));
    }

    #[test]
    fn unreadable_file_names_the_path() {
        let path = "/nonexistent/fabric-auth-token";
        let err = load(None, Some(path)).unwrap_err();
        assert!(err.contains(path), "{err}");
    }

    #[test]
    fn errors_never_quote_the_content() {
        let secret = "hunter2 with space";
        let err = load(Some(secret), None).unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        let f = TempFile::with("bad", "hunter2\u{e9}\n".as_bytes());
        let err = load(None, Some(f.path())).unwrap_err();
        assert!(err.contains(f.path()), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let f = TempFile::with("binary", b"hunter2\xff\xfe");
        let err = load(None, Some(f.path())).unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn characters_outside_visible_ascii_are_refused() {
        for bad in [
            "a b",
            "a\tb",
            " ab",
            "ab\n",
            "a\u{7f}",
            "a\u{0}",
            "caf\u{e9}",
            "\u{1f512}",
        ] {
            assert!(load(Some(bad), None).is_err(), "{bad:?}");
        }
        assert!(load(Some("!~"), None).is_ok());
    }

    #[test]
    fn over_long_tokens_are_refused() {
        assert!(load(Some(&"a".repeat(MAX_LEN)), None).is_ok());
        assert!(load(Some(&"a".repeat(MAX_LEN + 1)), None).is_err());
        let f = TempFile::with("long", "a".repeat(MAX_LEN * 3).as_bytes());
        assert!(load(None, Some(f.path())).unwrap_err().contains("longer"));
    }

    #[test]
    fn debug_does_not_print_the_secret() {
        let t = token("topsecretvalue");
        let shown = format!("{t:?} {:?} {:#?}", Some(&t), t);
        assert!(!shown.contains("topsecret"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn verify_accepts_bearer_forms() {
        let t = token("abc123");
        for ok in [
            "Bearer abc123",
            "bearer abc123",
            "BEARER abc123",
            "bEaReR    abc123",
            " Bearer abc123 ",
        ] {
            assert!(t.verify(Some(ok)), "{ok:?}");
        }
        assert!(t.verify(Some(&t.header_value())));
    }

    #[test]
    fn verify_rejects_everything_else() {
        let t = token("abc123");
        for bad in [
            "",
            "Bearer",
            "Bearer ",
            "Bearerabc123",
            "Bearer\tabc123",
            "Basic abc123",
            "Token abc123",
            "abc123",
            "Bearer abc12",
            "Bearer abc1234",
            "Bearer ABC123",
            "Bearer abc123 extra",
            "Bearer abc 123",
            "Bearer xbc123",
            "Bearer abc12\u{e9}",
            "Bear\u{e9}r abc123",
        ] {
            assert!(!t.verify(Some(bad)), "{bad:?}");
        }
        assert!(!t.verify(None));
    }

    #[test]
    fn constant_time_eq_matches_plain_equality() {
        let cases: [(&[u8], &[u8]); 7] = [
            (b"", b""),
            (b"a", b""),
            (b"", b"a"),
            (b"abc", b"abc"),
            (b"abc", b"abd"),
            (b"abc", b"abc\0"),
            (b"abc\0", b"abc"),
        ];
        for (a, b) in cases {
            assert_eq!(constant_time_eq(a, b), a == b, "{a:?} {b:?}");
        }
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
        // Every sextet value, '+' and '/' included.
        assert_eq!(base64(&[0xfb, 0xff, 0xbf]), "+/+/");
        assert_eq!(base64(&[0, 0x10, 0x83]), "ABCD");
    }

    #[test]
    fn basic_is_user_colon_password_in_base64() {
        // RFC 7617's example.
        let b = Basic::new("Aladdin", b"open sesame").unwrap();
        assert_eq!(b.header_value(), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        // The password may hold ':' and non-ASCII bytes; the user, UTF-8.
        let b = Basic::new("t\u{e9}st", "a:b\u{e9}".as_bytes()).unwrap();
        assert_eq!(
            b.header_value(),
            format!("Basic {}", base64("t\u{e9}st:a:b\u{e9}".as_bytes()))
        );
    }

    #[test]
    fn basic_refuses_bad_users_and_passwords_without_quoting_them() {
        for bad in ["", "a:b", "a\tb", "a\nb", "a\u{7f}"] {
            let err = Basic::new(bad, b"pw").unwrap_err();
            assert!(matches!(err, BasicError::User(_)), "{bad:?}: {err:?}");
        }
        assert!(Basic::new(&"u".repeat(MAX_LEN + 1), b"pw").is_err());
        for bad in [
            &b""[..],
            b"hunter2\n",
            b"hunter2\r",
            b"hun\0ter2",
            b"\x7fhunter2",
        ] {
            let BasicError::Password(why) = Basic::new("u", bad).unwrap_err() else {
                panic!("{bad:?}: not a password error");
            };
            assert!(!why.contains("hunter2"), "{why}");
        }
        assert!(Basic::new("u", &[b'a'; MAX_LEN]).is_ok());
        assert!(Basic::new("u", &[b'a'; MAX_LEN + 1]).is_err());
    }

    #[test]
    fn basic_debug_does_not_print_the_credentials() {
        let b = Basic::new("admin", b"topsecretvalue").unwrap();
        let shown = format!("{b:?} {:?}", Some(&b));
        assert!(
            !shown.contains("admin") && !shown.contains("dG9wc2VjcmV0"),
            "{shown}"
        );
        assert!(shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn password_files_lose_one_trailing_newline() {
        for (content, want) in [
            (&b"pw\n"[..], &b"pw"[..]),
            (b"pw\r\n", b"pw"),
            (b"pw", b"pw"),
            (b"pw\n\n", b"pw\n"),
            (b" pw \n", b" pw "),
            (b"\n", b""),
        ] {
            let f = TempFile::with("pw", content);
            assert_eq!(read_password(f.path()).unwrap(), want, "{content:?}");
        }
        let err = read_password("/nonexistent/fabric-pw").unwrap_err();
        assert!(
            err.starts_with("password file /nonexistent/fabric-pw:"),
            "{err}"
        );
    }

    #[test]
    fn unauthorized_is_a_401_with_a_challenge() {
        let r = unauthorized();
        assert_eq!(r.status, 401);
        assert_eq!(
            r.header_value("www-authenticate"),
            Some("Bearer realm=\"fabric-telemetry\"")
        );
        assert_eq!(r.header_value("content-type"), Some(crate::http::JSON));
        assert_eq!(
            r.body_bytes(),
            br#"{"error":"missing or invalid bearer token"}"#
        );
    }
}
