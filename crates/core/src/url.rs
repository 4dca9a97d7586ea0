//! Percent-encoding for the URLs mlctl builds itself (query values, path segments).

/// `s` with every byte but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`)
/// percent-encoded: safe as one query value or one path segment.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unreserved_characters_stay() {
        assert_eq!(
            percent_encode("group/pro ject~a.b_c-d 'é'*"),
            "group%2Fpro%20ject~a.b_c-d%20%27%C3%A9%27%2A"
        );
    }
}
