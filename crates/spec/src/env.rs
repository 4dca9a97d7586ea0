//! `${env:NAME}` references and literal-credential detection.
//!
//! Secrets and per-environment values are written as `${env:NAME}` and resolved at apply time,
//! never stored or printed. A literal that looks like a cloud credential is an error.

/// A problem with a value's env references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvRefError {
    /// `${...}` that is not `${env:NAME}`.
    Malformed(String),
    /// `${env:NAME}` whose variable is unset (at apply time).
    Unset(String),
}

impl std::fmt::Display for EnvRefError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvRefError::Malformed(s) => write!(
                f,
                "`{s}` is not a valid reference; write `${{env:NAME}}` with NAME made of A-Z, 0-9 and _"
            ),
            EnvRefError::Unset(n) => write!(
                f,
                "environment variable `{n}` is not set; export it before running mlctl (the spec reads it as `${{env:{n}}}`)"
            ),
        }
    }
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !n.starts_with(|c: char| c.is_ascii_digit())
}

/// Splits a value into literal text and `${env:NAME}` references; checks the syntax.
pub fn references(value: &str) -> Result<Vec<&str>, EnvRefError> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(EnvRefError::Malformed(rest[start..].to_string()));
        };
        let inner = &after[..end];
        match inner.strip_prefix("env:") {
            Some(name) if valid_name(name) => out.push(name),
            _ => return Err(EnvRefError::Malformed(format!("${{{inner}}}"))),
        }
        rest = &after[end + 1..];
    }
    Ok(out)
}

/// Whether the whole value is exactly one `${env:NAME}` reference.
pub fn is_single_reference(value: &str) -> bool {
    value.starts_with("${env:")
        && value.ends_with('}')
        && references(value).map(|r| r.len() == 1).unwrap_or(false)
        && value.matches("${").count() == 1
}

/// Resolves every reference with `lookup` (normally `std::env::var`).
pub fn resolve(
    value: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, EnvRefError> {
    references(value)?;
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${env:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 6..];
        let end = after.find('}').unwrap_or(after.len());
        let name = &after[..end];
        out.push_str(&lookup(name).ok_or_else(|| EnvRefError::Unset(name.to_string()))?);
        rest = after.get(end + 1..).unwrap_or("");
    }
    out.push_str(rest);
    Ok(out)
}

/// What kind of credential a literal looks like, if any.
pub fn looks_like_credential(value: &str) -> Option<&'static str> {
    let v = value.trim();
    let b64 = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
    // AWS access key id: AKIA/ASIA + 16 upper-case letters or digits.
    for word in v.split(|c: char| !c.is_ascii_alphanumeric()) {
        if word.len() == 20
            && (word.starts_with("AKIA") || word.starts_with("ASIA"))
            && word
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            return Some("an AWS access key id");
        }
    }
    // AWS secret access key: 40 base64 characters mixing cases and digits.
    for word in v.split(|c: char| !b64(c)) {
        if word.len() == 40
            && word.chars().any(|c| c.is_ascii_uppercase())
            && word.chars().any(|c| c.is_ascii_lowercase())
            && word.chars().any(|c| c.is_ascii_digit())
        {
            return Some("an AWS secret access key");
        }
    }
    // Azure storage account key: 86 base64 characters + "==".
    for word in v.split(|c: char| !(b64(c) || c == '=')) {
        if word.len() == 88 && word.ends_with("==") && word[..86].chars().all(b64) {
            return Some("an Azure storage account key");
        }
    }
    let lower = v.to_ascii_lowercase();
    if lower.contains("accountkey=")
        || lower.contains("sharedaccesssignature=")
        || lower.contains("&sig=")
        || lower.contains("?sig=")
    {
        return Some("an Azure connection string or SAS token");
    }
    if lower.starts_with("-----begin") && lower.contains("private key") {
        return Some("a private key");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_and_resolution() {
        assert_eq!(
            references("a ${env:X_1} b ${env:Y}").unwrap(),
            vec!["X_1", "Y"]
        );
        assert!(references("${env:}").is_err());
        assert!(references("${foo}").is_err());
        assert!(references("${env:A").is_err());
        assert!(is_single_reference("${env:TOKEN}"));
        assert!(!is_single_reference("Bearer ${env:TOKEN}"));
        let got = resolve("s3://${env:B}/x", |n| {
            (n == "B").then(|| "bucket".to_string())
        })
        .unwrap();
        assert_eq!(got, "s3://bucket/x");
        assert_eq!(
            resolve("${env:NOPE}", |_| None),
            Err(EnvRefError::Unset("NOPE".into()))
        );
    }

    #[test]
    fn credential_shapes() {
        assert!(looks_like_credential("AKIAIOSFODNN7EXAMPLE").is_some());
        assert!(looks_like_credential("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY").is_some());
        let azure = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
        assert!(looks_like_credential(azure).is_some());
        assert!(looks_like_credential("0123456789abcdef0123456789abcdef01234567").is_none());
        assert!(looks_like_credential("arn:aws:iam::123456789012:role/SageMakerRole").is_none());
        assert!(looks_like_credential("logistic_regression").is_none());
    }
}
