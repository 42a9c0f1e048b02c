//! The CSV codec: an RFC 4180 reader that validates as it goes, and a writer
//! that quotes only when it must.
//!
//! The reader borrows from the input: an unquoted field, and a quoted one
//! without doubled quotes, come back as `&str` slices of the body, so a
//! 100k-row snapshot is read without an allocation per cell. It accepts `\n`
//! and `\r\n` line ends, skips blank lines and a leading UTF-8 byte order
//! mark, and rejects what a careless producer might send: bytes that are not
//! UTF-8, a quote inside an unquoted field, text after a closing quote, a
//! quote left open, and a row whose field count differs from the header's.

use std::borrow::Cow;
use std::fmt;

/// Why a body is not acceptable CSV. `line` is 1-based.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// The body is not UTF-8.
    NotUtf8 { line: usize },
    /// A `"` inside a field that did not start with one.
    BareQuote { line: usize },
    /// Something other than `,` or a line end right after a closing quote.
    AfterQuote { line: usize },
    /// The body ended inside a quoted field.
    UnclosedQuote { line: usize },
    /// A row with a different number of fields from the header.
    Ragged {
        line: usize,
        expected: usize,
        found: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotUtf8 { line } => write!(f, "csv: line {line}: not UTF-8"),
            Error::BareQuote { line } => {
                write!(f, "csv: line {line}: quote inside an unquoted field")
            }
            Error::AfterQuote { line } => {
                write!(f, "csv: line {line}: text after a closing quote")
            }
            Error::UnclosedQuote { line } => {
                write!(f, "csv: line {line}: quoted field never closed")
            }
            Error::Ragged {
                line,
                expected,
                found,
            } => write!(
                f,
                "csv: line {line}: {found} fields where the header has {expected}"
            ),
        }
    }
}

impl std::error::Error for Error {}

/// Reads records one at a time from a whole body held in memory.
pub struct Reader<'a> {
    text: &'a str,
    pos: usize,
    /// The line the cursor is on.
    cursor_line: usize,
    /// The line on which the record most recently returned started.
    record_line: usize,
    width: Option<usize>,
}

impl<'a> Reader<'a> {
    /// Checks that `body` is UTF-8 and strips a byte order mark.
    pub fn new(body: &'a [u8]) -> Result<Reader<'a>, Error> {
        let text = match std::str::from_utf8(body) {
            Ok(t) => t,
            Err(e) => {
                let line = 1 + body[..e.valid_up_to()]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count();
                return Err(Error::NotUtf8 { line });
            }
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        Ok(Reader {
            text,
            pos: 0,
            cursor_line: 1,
            record_line: 0,
            width: None,
        })
    }

    /// The 1-based line on which the record most recently returned started.
    pub fn line(&self) -> usize {
        self.record_line
    }

    /// Reads the next record into `fields` (cleared first). Returns `false`
    /// at the end of the body. The first record fixes the width every later
    /// one must have.
    pub fn read_record(&mut self, fields: &mut Vec<Cow<'a, str>>) -> Result<bool, Error> {
        fields.clear();
        let bytes = self.text.as_bytes();
        // Skip blank lines (and count them).
        loop {
            match bytes.get(self.pos) {
                None => return Ok(false),
                Some(b'\n') => {
                    self.pos += 1;
                    self.cursor_line += 1;
                }
                Some(b'\r') if bytes.get(self.pos + 1) == Some(&b'\n') => {
                    self.pos += 2;
                    self.cursor_line += 1;
                }
                Some(_) => break,
            }
        }
        let start_line = self.cursor_line;
        loop {
            let (field, end) = self.read_field(start_line)?;
            fields.push(field);
            match end {
                FieldEnd::Comma => continue,
                FieldEnd::Line | FieldEnd::Eof => break,
            }
        }
        self.record_line = start_line;
        let width = *self.width.get_or_insert(fields.len());
        if fields.len() != width {
            return Err(Error::Ragged {
                line: start_line,
                expected: width,
                found: fields.len(),
            });
        }
        Ok(true)
    }

    fn read_field(&mut self, start_line: usize) -> Result<(Cow<'a, str>, FieldEnd), Error> {
        let text = self.text;
        let bytes = text.as_bytes();
        if bytes.get(self.pos) != Some(&b'"') {
            // An unquoted field ends at the next comma or line end; a quote
            // in it is an error. One tight scan: this runs for every cell.
            let start = self.pos;
            let rest = bytes.get(start..).unwrap_or_default();
            let i = start
                + rest
                    .iter()
                    .position(|&b| matches!(b, b',' | b'\n' | b'"'))
                    .unwrap_or(rest.len());
            return match bytes.get(i) {
                None => {
                    self.pos = i;
                    Ok((Cow::Borrowed(&text[start..i]), FieldEnd::Eof))
                }
                Some(b',') => {
                    self.pos = i + 1;
                    Ok((Cow::Borrowed(&text[start..i]), FieldEnd::Comma))
                }
                Some(b'\n') => {
                    let end = if i > start && bytes[i - 1] == b'\r' {
                        i - 1
                    } else {
                        i
                    };
                    self.pos = i + 1;
                    self.cursor_line += 1;
                    Ok((Cow::Borrowed(&text[start..end]), FieldEnd::Line))
                }
                Some(_) => Err(Error::BareQuote {
                    line: self.cursor_line,
                }),
            };
        }
        // A quoted field: runs to the next lone quote; `""` is one quote.
        let start = self.pos + 1;
        let mut i = start;
        let mut owned: Option<String> = None;
        let mut seg = start;
        loop {
            match bytes.get(i) {
                None => return Err(Error::UnclosedQuote { line: start_line }),
                Some(b'"') if bytes.get(i + 1) == Some(&b'"') => {
                    let buf = owned.get_or_insert_with(String::new);
                    buf.push_str(&text[seg..=i]);
                    i += 2;
                    seg = i;
                }
                Some(b'"') => break,
                Some(b'\n') => {
                    self.cursor_line += 1;
                    i += 1;
                }
                Some(_) => i += 1,
            }
        }
        let field = match owned {
            Some(mut buf) => {
                buf.push_str(&text[seg..i]);
                Cow::Owned(buf)
            }
            None => Cow::Borrowed(&text[start..i]),
        };
        let after = i + 1;
        let end = match bytes.get(after) {
            None => {
                self.pos = after;
                FieldEnd::Eof
            }
            Some(b',') => {
                self.pos = after + 1;
                FieldEnd::Comma
            }
            Some(b'\n') => {
                self.pos = after + 1;
                self.cursor_line += 1;
                FieldEnd::Line
            }
            Some(b'\r') if bytes.get(after + 1) == Some(&b'\n') => {
                self.pos = after + 2;
                self.cursor_line += 1;
                FieldEnd::Line
            }
            Some(_) => {
                return Err(Error::AfterQuote {
                    line: self.cursor_line,
                });
            }
        };
        Ok((field, end))
    }
}

enum FieldEnd {
    Comma,
    Line,
    Eof,
}

/// True if `field` must be quoted to survive a round trip.
fn needs_quotes(field: &str) -> bool {
    // A leading U+FEFF would be read back as a byte order mark.
    field.starts_with('\u{feff}')
        || field
            .bytes()
            .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
}

/// Appends `field` to `out`, quoted (with inner quotes doubled) only if it
/// holds a comma, a quote or a line break.
pub fn push_field(out: &mut String, field: &str) {
    if !needs_quotes(field) {
        out.push_str(field);
        return;
    }
    out.push('"');
    for (i, part) in field.split('"').enumerate() {
        if i > 0 {
            out.push_str("\"\"");
        }
        out.push_str(part);
    }
    out.push('"');
}

/// Appends one record and its `\n` line end to `out`.
pub fn push_record<S: AsRef<str>>(out: &mut String, fields: &[S]) {
    // A lone empty field would be a blank line, which readers skip.
    if let [only] = fields {
        if only.as_ref().is_empty() {
            out.push_str("\"\"\n");
            return;
        }
    }
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_field(out, f.as_ref());
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(body: &[u8]) -> Result<Vec<Vec<String>>, Error> {
        let mut r = Reader::new(body)?;
        let mut rows = Vec::new();
        let mut fields = Vec::new();
        while r.read_record(&mut fields)? {
            rows.push(fields.iter().map(|f| f.to_string()).collect());
        }
        Ok(rows)
    }

    #[test]
    fn plain_rows_with_either_line_end() {
        for body in [
            "a,b\n1,2\n3,4\n",
            "a,b\r\n1,2\r\n3,4",
            "\u{feff}a,b\n1,2\n\n3,4\n\n",
        ] {
            assert_eq!(
                read_all(body.as_bytes()).unwrap(),
                vec![vec!["a", "b"], vec!["1", "2"], vec!["3", "4"]],
                "{body:?}"
            );
        }
    }

    #[test]
    fn quoted_fields() {
        let rows =
            read_all(b"id,v\n\"a,b\",1\n\"say \"\"hi\"\"\",2\n\"two\nlines\",3\n\"\",4\n").unwrap();
        assert_eq!(rows[1], vec!["a,b", "1"]);
        assert_eq!(rows[2], vec!["say \"hi\"", "2"]);
        assert_eq!(rows[3], vec!["two\nlines", "3"]);
        assert_eq!(rows[4], vec!["", "4"]);
    }

    #[test]
    fn borrowed_unless_quotes_are_doubled() {
        let mut r = Reader::new(b"\"x\",\"a\"\"b\",c").unwrap();
        let mut f = Vec::new();
        assert!(r.read_record(&mut f).unwrap());
        assert!(matches!(f[0], Cow::Borrowed("x")));
        assert!(matches!(f[1], Cow::Owned(_)));
        assert!(matches!(f[2], Cow::Borrowed("c")));
    }

    #[test]
    fn empty_fields_and_trailing_comma() {
        let rows = read_all(b"a,b,c\n,,\n").unwrap();
        assert_eq!(rows[1], vec!["", "", ""]);
    }

    #[test]
    fn ragged_rows_name_their_line() {
        assert_eq!(
            read_all(b"a,b\n1,2\n3\n").unwrap_err(),
            Error::Ragged {
                line: 3,
                expected: 2,
                found: 1
            }
        );
        assert_eq!(
            read_all(b"a,b\n\"x\ny\",2\n1,2,3\n").unwrap_err(),
            Error::Ragged {
                line: 4,
                expected: 2,
                found: 3
            }
        );
    }

    #[test]
    fn quote_errors() {
        assert_eq!(
            read_all(b"a,b\n1,x\"y\n").unwrap_err(),
            Error::BareQuote { line: 2 }
        );
        assert_eq!(
            read_all(b"a,b\n\"x\"y,1\n").unwrap_err(),
            Error::AfterQuote { line: 2 }
        );
        assert_eq!(
            read_all(b"a,b\n\"never closed,1\n").unwrap_err(),
            Error::UnclosedQuote { line: 2 }
        );
    }

    #[test]
    fn garbage_bytes_are_not_utf8() {
        assert_eq!(
            read_all(b"a,b\n1,2\n\xff\xfe,\x00\n").unwrap_err(),
            Error::NotUtf8 { line: 3 }
        );
        assert!(read_all(b"").unwrap().is_empty());
        assert!(read_all(b"\n\r\n\n").unwrap().is_empty());
    }

    #[test]
    fn writer_round_trips_through_reader() {
        let tricky = [
            "plain",
            "",
            "a,b",
            "q\"uote",
            "line\nbreak",
            "cr\r",
            " spaced ",
            "\"",
            "é✓",
        ];
        let mut out = String::new();
        push_record(&mut out, &tricky);
        push_record(&mut out, &tricky);
        let rows = read_all(out.as_bytes()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0], tricky);
        assert_eq!(rows[1], tricky);
        let mut plain = String::new();
        push_record(&mut plain, &["sw-000", "1.5"]);
        assert_eq!(plain, "sw-000,1.5\n");
        // Two edge cases: a record of one empty field, a leading BOM char.
        let mut edge = String::new();
        push_record(&mut edge, &[""]);
        push_record(&mut edge, &["\u{feff}x"]);
        let rows = read_all(format!("\u{feff}x\n{edge}").as_bytes()).unwrap();
        assert_eq!(rows, vec![vec!["x"], vec![""], vec!["\u{feff}x"]]);
    }

    #[test]
    fn never_panics_on_random_bytes() {
        let mut rng = fastrand::Rng::with_seed(7);
        let alphabet = b"ab,\"\r\n1.\xff";
        for _ in 0..20_000 {
            let len = rng.usize(0..40);
            let body: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.usize(0..alphabet.len())])
                .collect();
            if let Ok(mut r) = Reader::new(&body) {
                let mut f = Vec::new();
                let mut n = 0;
                while let Ok(true) = r.read_record(&mut f) {
                    n += 1;
                    assert!(n <= body.len() + 1, "no progress on {body:?}");
                }
            }
        }
    }
}
