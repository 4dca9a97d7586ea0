//! Deterministic SageMaker resource names.
//!
//! SageMaker names match `^[a-zA-Z0-9](-*[a-zA-Z0-9])*` and are unique per account and region,
//! so every name starts with the project. Names are derived from what they name (never
//! random), so a re-run finds what an earlier run created.

/// The longest name SageMaker accepts for jobs, models, endpoints and groups.
pub(crate) const MAX: usize = 63;
/// The longest hyperparameter tuning job name.
pub(crate) const MAX_TUNING: usize = 32;

/// Replaces characters SageMaker rejects with `-` and trims dashes at the ends.
pub(crate) fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if c == '-' && out.ends_with('-') {
            continue;
        }
        out.push(c);
    }
    out.trim_matches('-').to_string()
}

/// Short blake3 hex of `parts`.
pub(crate) fn hash(parts: &[&str], len: usize) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    let hex = h.finalize().to_hex();
    hex[..len.min(hex.len())].to_string()
}

/// `base` made safe and at most `max` characters: a longer name keeps its start and ends
/// with a hash of the whole, so two long names never collide.
pub(crate) fn fit(base: &str, max: usize) -> String {
    let clean = sanitize(base);
    if clean.len() <= max {
        return clean;
    }
    let suffix = hash(&[base], 8);
    let mut head: String = clean.chars().take(max - suffix.len() - 1).collect();
    while head.ends_with('-') {
        head.pop();
    }
    format!("{head}-{suffix}")
}

/// `<base>-<suffix>` in at most `max` characters, keeping `suffix` whole (it is what makes the
/// name unique: a fingerprint, a version, a hash).
pub(crate) fn with_suffix(base: &str, suffix: &str, max: usize) -> String {
    let suffix = sanitize(suffix);
    let keep = max.saturating_sub(suffix.len() + 1);
    let base = sanitize(base);
    if base.len() <= keep {
        return format!("{base}-{suffix}");
    }
    let mut head: String = base.chars().take(keep.saturating_sub(9)).collect();
    while head.ends_with('-') {
        head.pop();
    }
    format!("{head}-{}-{suffix}", hash(&[&base], 8))
}

/// The SageMaker name of a project's resource (model package group, endpoint).
pub(crate) fn resource(project: &str, name: &str) -> String {
    fit(&format!("{project}-{name}"), MAX)
}

/// A job name cut to `max`, keeping its end (the fingerprint).
pub(crate) fn job(name: &str, max: usize) -> String {
    let clean = sanitize(name);
    if clean.len() <= max {
        return clean;
    }
    match clean.rsplit_once('-') {
        Some((base, fp)) if fp.len() < max => with_suffix(base, fp, max),
        _ => fit(&clean, max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_and_short() {
        assert_eq!(sanitize("my_project.v2--x-"), "my-project-v2-x");
        assert_eq!(resource("iris", "iris"), "iris-iris");
        let long = resource(&"p".repeat(40), &"n".repeat(40));
        assert_eq!(long.len(), MAX);
        assert_ne!(
            long,
            resource(&"p".repeat(40), &format!("{}m", "n".repeat(39)))
        );
        let j = job("iris-train-0123456789ab", MAX_TUNING);
        assert_eq!(j, "iris-train-0123456789ab");
        let j = job(&format!("{}-0123456789ab", "x".repeat(50)), MAX_TUNING);
        assert!(j.len() <= MAX_TUNING && j.ends_with("-0123456789ab"), "{j}");
        let w = with_suffix(&"e".repeat(70), "v3", MAX);
        assert!(w.len() <= MAX && w.ends_with("-v3"), "{w}");
    }
}
