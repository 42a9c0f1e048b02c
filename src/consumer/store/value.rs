//! A cell's value as `where=` and `sort=` compare it: exactly.
//!
//! Cells are kept as the JSON the CSV spelled (see `snapshot`). Counters
//! are 64-bit integers, and a float has 53 bits of mantissa: read as `f64`,
//! 2^53 + 1 equals 2^53 and a filter on a counter near 2^64 lies. So an
//! integer literal is compared as an integer (`i128` holds every `u64` and
//! `i64`), a decimal as `f64`, and an integer against a decimal exactly
//! (the float's integer part, then its fraction). `null` (an empty cell)
//! and text (a label) are not numbers: no condition holds for them, and a
//! sort puts them last.

use std::cmp::Ordering;

/// A cell read for comparing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    /// An integer literal (no point, no exponent) that fits `i128`.
    Int(i128),
    /// Any other finite number.
    Float(f64),
    /// `null`, a string, or nothing: not a number.
    None,
}

impl Num {
    /// Reads a cell's JSON spelling (or a `where` bound's text).
    pub fn of(text: &str) -> Num {
        let t = text;
        let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(i) = t.parse::<i128>() {
                return Num::Int(i);
            }
        }
        match t.parse::<f64>() {
            Ok(f) if f.is_finite() && !t.is_empty() && !t.starts_with('"') => Num::Float(f),
            _ => Num::None,
        }
    }

    /// True for a number.
    pub fn is_some(self) -> bool {
        !matches!(self, Num::None)
    }

    /// The exact order of two numbers; `None` if either is not one.
    pub fn cmp_exact(self, other: Num) -> Option<Ordering> {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
            (Num::Float(a), Num::Float(b)) => a.partial_cmp(&b),
            (Num::Int(a), Num::Float(b)) => Some(int_vs_float(a, b)),
            (Num::Float(a), Num::Int(b)) => Some(int_vs_float(b, a).reverse()),
            _ => None,
        }
    }
}

/// `i` against `f` (finite), exactly: every `f64` of magnitude below 2^127
/// has an integer part that `i128` holds exactly.
fn int_vs_float(i: i128, f: f64) -> Ordering {
    const LIMIT: f64 = 1.7014118346046923e38; // 2^127
    if f >= LIMIT {
        return Ordering::Less;
    }
    if f < -LIMIT {
        return Ordering::Greater;
    }
    let whole = f.floor();
    match i.cmp(&(whole as i128)) {
        Ordering::Equal if f > whole => Ordering::Less,
        o => o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(a: &str, b: &str) -> Option<Ordering> {
        Num::of(a).cmp_exact(Num::of(b))
    }

    #[test]
    fn integers_compare_exactly_past_two_to_the_53() {
        use Ordering::*;
        assert_eq!(cmp("9007199254740993", "9007199254740992"), Some(Greater));
        assert_eq!(
            cmp("18446744073709551615", "18446744073709551614"),
            Some(Greater)
        );
        assert_eq!(
            cmp("-9223372036854775808", "9223372036854775807"),
            Some(Less)
        );
        assert_eq!(
            cmp("18446744073709551615", "18446744073709551615"),
            Some(Equal)
        );
        // As floats these two are the same number.
        assert_eq!(9007199254740993f64, 9007199254740992f64);
    }

    #[test]
    fn integers_against_decimals_are_exact() {
        use Ordering::*;
        assert_eq!(cmp("5", "5.5"), Some(Less));
        assert_eq!(cmp("6", "5.5"), Some(Greater));
        assert_eq!(cmp("5", "5.0"), Some(Equal));
        assert_eq!(cmp("-5", "-5.5"), Some(Greater));
        assert_eq!(cmp("-6", "-5.5"), Some(Less));
        assert_eq!(cmp("9007199254740993", "9007199254740992.0"), Some(Greater));
        assert_eq!(cmp("18446744073709551615", "1e300"), Some(Less));
        assert_eq!(cmp("-18446744073709551615", "-1e300"), Some(Greater));
        assert_eq!(cmp("1e3", "1000"), Some(Equal));
    }

    #[test]
    fn null_and_text_are_not_numbers() {
        assert_eq!(Num::of("null"), Num::None);
        assert_eq!(Num::of("\"12\""), Num::None);
        assert_eq!(Num::of(""), Num::None);
        assert_eq!(Num::of("nan"), Num::None);
        assert_eq!(Num::of("inf"), Num::None);
        assert_eq!(cmp("null", "1"), None);
        assert_eq!(Num::of("-0"), Num::Int(0));
        assert_eq!(Num::of("121.50"), Num::Float(121.5));
    }
}
