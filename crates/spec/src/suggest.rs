//! "Did you mean" suggestions, and lists of valid values short enough to read.

/// Edit distance between two strings (case-insensitive), counting characters.
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The closest candidate when it is close enough to be a plausible typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (distance(word, c), c))
        .filter(|(d, c)| {
            *d <= limit
                || c.to_lowercase() == word.to_lowercase()
                || (word.len() >= 4 && c.starts_with(word))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The hint for a name that is not among `known`: `did you mean `x`? {what}: a, b, c` when one
/// is close, else `{what}: a, b, c` (bounded by [`list`]).
pub fn hint_among(word: &str, known: &[&str], what: &str) -> String {
    match did_you_mean(word, known.iter().copied()) {
        Some(s) => format!("did you mean `{s}`? {what}: {}", list(known)),
        None => format!("{what}: {}", list(known)),
    }
}

/// The most values [`list`] writes out; the rest are counted.
pub const MAX_LISTED: usize = 10;

/// `a, b, c`: the values comma-separated, or the first [`MAX_LISTED`] of them and a count
/// (`a, b, ... j and 3,987 more`). Every message or hint that lists a set of values (defined
/// names, columns, valid fields, providers) goes through this, so none grows with the set.
pub fn list<S: AsRef<str>>(values: impl IntoIterator<Item = S>) -> String {
    let mut out = String::new();
    let mut more = 0usize;
    for (i, v) in values.into_iter().enumerate() {
        if i < MAX_LISTED {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&quote(v.as_ref()));
        } else {
            more += 1;
        }
    }
    if more > 0 {
        out.push_str(&format!(" and {} more", thousands(more)));
    }
    out
}

/// The most bytes of one user value (a cell, a column name, a file's line) a message quotes;
/// the rest is cut by [`clip`].
pub const MAX_QUOTED: usize = 200;

/// `text` when it has at most `max` bytes, else its first `max` bytes (cut at a character
/// boundary) and `… (value truncated: 10,485,760 bytes)`. Every message that quotes user data
/// goes through this (or [`quote`]), so none grows with the data.
pub fn clip(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    std::borrow::Cow::Owned(format!(
        "{}… (value truncated: {} bytes)",
        &text[..cut],
        thousands(text.len())
    ))
}

/// [`clip`] at [`MAX_QUOTED`] bytes.
pub fn quote(text: &str) -> std::borrow::Cow<'_, str> {
    clip(text, MAX_QUOTED)
}

/// `3987` as `3,987`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lists_are_cut_and_counted() {
        assert_eq!(list(["a", "b"]), "a, b");
        assert_eq!(list(Vec::<String>::new()), "");
        let many: Vec<String> = (0..3997).map(|i| format!("c{i}")).collect();
        assert_eq!(
            list(&many),
            "c0, c1, c2, c3, c4, c5, c6, c7, c8, c9 and 3,987 more"
        );
        assert_eq!(thousands(1_234_567), "1,234,567");
        let long = "é".repeat(300);
        let shown = list([long.as_str()]);
        assert!(shown.ends_with("… (value truncated: 600 bytes)"), "{shown}");
        assert!(shown.len() < MAX_QUOTED + 40);
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "abc… (value truncated: 4 bytes)");
        assert_eq!(thousands(999), "999");
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("hyperparameter", ["dataset", "hyperparameters", "tuning"]),
            Some("hyperparameters")
        );
        assert_eq!(did_you_mean("irs", ["iris"]), Some("iris"));
        assert_eq!(did_you_mean("zzzzzz", ["iris"]), None);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
