//! Small JSON writing helpers for the hot path (no intermediate `Value`).

use std::fmt::Write as _;

/// A number as JSON text: integers without a fraction (`2`, not `2.0`), others shortest.
pub fn number_text(x: f64) -> String {
    let mut s = String::new();
    push_number(&mut s, x);
    s
}

/// Appends a number as JSON (`null` when not finite).
#[inline]
pub fn push_number(out: &mut String, x: f64) {
    if !x.is_finite() {
        out.push_str("null");
    } else if x.fract() == 0.0 && x.abs() < 1e15 {
        out.push_str(itoa::Buffer::new().format(x as i64));
    } else {
        out.push_str(ryu::Buffer::new().format_finite(x));
    }
}

/// Appends a string as a JSON string literal.
pub fn push_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A string as a JSON string literal.
pub fn string_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_string(&mut out, s);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_and_strings() {
        assert_eq!(super::number_text(2.0), "2");
        assert_eq!(super::number_text(-0.5), "-0.5");
        assert_eq!(super::number_text(f64::NAN), "null");
        assert_eq!(
            super::string_literal("a\"b\\\n\u{1}"),
            r#""a\"b\\\n\u0001""#
        );
    }
}
