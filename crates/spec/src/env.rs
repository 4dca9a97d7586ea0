//! `${env:NAME}` references, where mlctl resolves them, and literal-credential detection.
//!
//! Secrets and per-environment values are written as `${env:NAME}` and resolved at apply time,
//! never stored or printed, in the fields [`resolvable_fields`] lists and nowhere else (the
//! validator rejects a reference anywhere else). A literal that looks like a cloud credential
//! is an error.

/// The fields where mlctl resolves `${env:NAME}`: `Kind.path.to.field`, with `*` for any one
/// key (a target's name, a hyperparameter's name). The validator rejects a reference in any
/// other field, and the engine resolves exactly these, so the two read this one list.
///
/// - `Project.spec.targets.*.*`: every string setting of a target (`region`, `roleArn`,
///   `bucket`, `root`, ...; see [`crate::Target::settings_mut`]);
/// - `Project.spec.targets.*.tracking.*`: the tracking server's `uri`, `token`, `username`,
///   `password` and `experiment`;
/// - `Dataset.spec.source`: where the data is;
/// - `TrainingJob.spec.image`: the container image of a script-mode job;
/// - `TrainingJob.spec.hyperparameters.*`: a hyperparameter given as a string;
/// - `Endpoint.spec.auth.token`: the bearer token (always a reference);
/// - `Endpoint.spec.capture.destination`: where captured requests go;
/// - `Monitor.spec.onBreach.notify.webhook`: the webhook URL (always a reference).
///
/// Commands (`command` anywhere) are run by a shell, which reads `$NAME` itself.
pub fn resolvable_fields() -> &'static [&'static str] {
    &[
        "Project.spec.targets.*.*",
        "Project.spec.targets.*.tracking.*",
        "Dataset.spec.source",
        "TrainingJob.spec.image",
        "TrainingJob.spec.hyperparameters.*",
        "Endpoint.spec.auth.token",
        "Endpoint.spec.capture.destination",
        "Monitor.spec.onBreach.notify.webhook",
    ]
}

/// Whether `${env:NAME}` is resolved in the field at `path` (from the manifest's root, e.g.
/// `["spec", "source"]`) of a manifest of kind `kind` (`Project`, `Dataset`, ...).
pub fn is_resolvable<S: AsRef<str>>(kind: &str, path: &[S]) -> bool {
    resolvable_fields().iter().any(|field| {
        let mut segs = field.split('.');
        segs.next() == Some(kind) && {
            let pattern: Vec<&str> = segs.collect();
            pattern.len() == path.len()
                && pattern
                    .iter()
                    .zip(path)
                    .all(|(p, s)| *p == "*" || *p == s.as_ref())
        }
    })
}

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
    credentials(value).first().map(|(_, what)| *what)
}

/// `text` with everything that looks like a credential replaced by `*` (one per character,
/// so a caret under the value still lines up). For diagnostics, which must never echo a
/// secret, whatever check they come from.
pub fn redact(text: &str) -> std::borrow::Cow<'_, str> {
    let found = credentials(text);
    if found.is_empty() {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (range, _) in found {
        // Overlapping finds (a key inside a connection string) merge into one masked run.
        let start = range.start.max(last);
        if start >= range.end {
            continue;
        }
        out.push_str(&text[last..start]);
        out.extend(text[start..range.end].chars().map(|_| '*'));
        last = range.end;
    }
    out.push_str(&text[last..]);
    out.into()
}

/// Maximal runs of characters matching `keep`, with their byte offsets.
fn words(text: &str, keep: impl Fn(char) -> bool) -> impl Iterator<Item = (usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (keep(c), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, &text[s..i]));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, &text[s..]));
    }
    out.into_iter()
}

/// Every part of `text` that looks like a credential (byte ranges, in order), with what it
/// looks like.
fn credentials(text: &str) -> Vec<(std::ops::Range<usize>, &'static str)> {
    let b64 = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
    let mut found = Vec::new();
    // AWS access key id: AKIA/ASIA + 16 upper-case letters or digits.
    for (at, word) in words(text, |c| c.is_ascii_alphanumeric()) {
        if word.len() == 20
            && (word.starts_with("AKIA") || word.starts_with("ASIA"))
            && word
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            found.push((at..at + word.len(), "an AWS access key id"));
        }
    }
    // AWS secret access key: 40 base64 characters mixing cases and digits.
    for (at, word) in words(text, b64) {
        if word.len() == 40
            && word.chars().any(|c| c.is_ascii_uppercase())
            && word.chars().any(|c| c.is_ascii_lowercase())
            && word.chars().any(|c| c.is_ascii_digit())
        {
            found.push((at..at + word.len(), "an AWS secret access key"));
        }
    }
    // Azure storage account key: 86 base64 characters + "==".
    for (at, word) in words(text, |c| b64(c) || c == '=') {
        if word.len() == 88 && word.ends_with("==") && word[..86].chars().all(b64) {
            found.push((at..at + word.len(), "an Azure storage account key"));
        }
    }
    // Azure connection strings and SAS tokens: the secret is the value after the marker.
    let lower = text.to_ascii_lowercase();
    for marker in ["accountkey=", "sharedaccesssignature=", "&sig=", "?sig="] {
        let mut from = 0;
        while let Some(i) = lower[from..].find(marker) {
            let start = from + i + marker.len();
            let end = text[start..]
                .find([';', '&', ' ', '"', '\''])
                .map_or(text.len(), |e| start + e);
            if end > start {
                found.push((start..end, "an Azure connection string or SAS token"));
            }
            from = start;
        }
    }
    // A literal written under a key that only ever holds a secret (`token:`, `password:`):
    // whatever its shape, it is masked (the spec refuses it, and must not echo it saying so).
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let indent = body.len() - body.trim_start().len();
        let key_at = indent
            + if body.trim_start().starts_with("- ") {
                2
            } else {
                0
            };
        for key in ["token:", "password:"] {
            if body[key_at..].starts_with(key) {
                let after = key_at + key.len();
                let value = body[after..].trim();
                if !value.is_empty() && !value.starts_with("${env:") {
                    let start = line_start
                        + after
                        + (body[after..].len() - body[after..].trim_start().len());
                    found.push((start..start + value.len(), "a literal token or password"));
                }
            }
        }
        line_start += line.len();
    }
    if lower.trim_start().starts_with("-----begin") && lower.contains("private key") {
        // The armour line itself is not secret; the base64 lines after it are.
        let body = text.find('\n').map_or(text.len(), |i| i + 1);
        let end = lower.find("-----end").unwrap_or(text.len()).max(body);
        found.push((body..end, "a private key"));
    }
    found.sort_by_key(|(r, _)| (r.start, std::cmp::Reverse(r.end)));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_literal_under_a_secret_key_is_masked_whatever_its_shape() {
        assert_eq!(
            redact("        token: abc123 \n  password: ${env:P}\n- password: hunter2"),
            "        token: ****** \n  password: ${env:P}\n- password: *******"
        );
        assert_eq!(redact("tokens: 3"), "tokens: 3");
    }

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
    fn resolvable_positions() {
        assert!(is_resolvable("Dataset", &["spec", "source"]));
        assert!(is_resolvable(
            "Project",
            &["spec", "targets", "aws", "roleArn"]
        ));
        assert!(is_resolvable(
            "TrainingJob",
            &["spec", "hyperparameters", "lr"]
        ));
        assert!(!is_resolvable("TrainingJob", &["spec", "hyperparameters"]));
        assert!(!is_resolvable("Dataset", &["metadata", "name"]));
        assert!(!is_resolvable("Model", &["spec", "source"]));
        assert!(!is_resolvable(
            "Project",
            &["spec", "targets", "aws", "components", "trainer"]
        ));
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
        assert!(
            looks_like_credential(
                "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----\n"
            )
            .is_some()
        );
    }

    #[test]
    fn redaction_masks_only_the_secret() {
        assert_eq!(
            redact("bucket: AKIAIOSFODNN7EXAMPLE # x"),
            "bucket: ******************** # x"
        );
        assert_eq!(redact("no secrets here"), "no secrets here");
        assert_eq!(
            redact("AccountName=a;AccountKey=abc/def==;EndpointSuffix=x"),
            "AccountName=a;AccountKey=*********;EndpointSuffix=x"
        );
        assert_eq!(
            redact("https://a.blob/c?sv=1&sig=XyZ%3D&se=2"),
            "https://a.blob/c?sv=1&sig=******&se=2"
        );
        // Multi-byte text around a secret keeps its characters.
        assert_eq!(
            redact("é AKIAIOSFODNN7EXAMPLE é"),
            "é ******************** é"
        );
    }
}
