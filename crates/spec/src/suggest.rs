//! "Did you mean" suggestions.

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

#[cfg(test)]
mod tests {
    use super::*;
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
