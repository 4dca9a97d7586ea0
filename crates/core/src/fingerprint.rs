//! Fingerprints: what a resource asks for, hashed.
//!
//! Fingerprint = blake3 over the kind, the canonical spec (typed, defaults applied, sorted
//! keys: a YAML comment, key order or quoting changes nothing), the fingerprints of its inputs,
//! the content digests of the files it reads (data, code), and the keyed digests of the secrets
//! it reads (`${env:NAME}` values, [`crate::secrets`]). Same fingerprint = nothing to do.
//!
//! Only what changes a result is hashed ([`mlctl_spec::Resource::fingerprinted`]): labels and
//! each kind's `IN_PLACE` fields (a Model's `description`) are left out, so changing one is an
//! in-place update of tags and descriptions, never a retraining, a new version or a redeploy.

use mlctl_spec::Resource;
use std::collections::BTreeMap;

/// Version of the fingerprint scheme; bump it to invalidate every fingerprint on purpose.
const SCHEME: &str = "mlctl-fingerprint-v1";

/// A resource's fingerprint (hex blake3).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Fingerprint(pub String);

impl Fingerprint {
    /// The first 12 hex digits, for names and messages.
    pub fn short(&self) -> &str {
        &self.0[..self.0.len().min(12)]
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Computes a fingerprint.
///
/// `inputs` are the fingerprints of the resources this one depends on (by address), `digests`
/// the content digests of the files it reads (its spec's `content_inputs()`, by path), and
/// `secrets` the keyed digests of the `${env:NAME}` values it reads, by variable
/// ([`crate::secrets`]): never a value. A resource that reads none keeps the fingerprint it
/// had before secrets were fingerprinted.
pub fn compute(
    r: &Resource,
    inputs: &BTreeMap<String, Fingerprint>,
    digests: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, String>,
) -> Fingerprint {
    let mut h = blake3::Hasher::new();
    let mut field = |name: &str, value: &str| {
        h.update(&(name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(&(value.len() as u64).to_le_bytes());
        h.update(value.as_bytes());
    };
    field("scheme", SCHEME);
    field("id", &r.id.to_string());
    field(
        "spec",
        &serde_json::to_string(&r.fingerprinted()).unwrap_or_default(),
    );
    for (id, fp) in inputs {
        field(&format!("input:{id}"), &fp.0);
    }
    for (path, digest) in digests {
        field(&format!("content:{path}"), digest);
    }
    for (name, digest) in secrets {
        field(&format!("{}{name}", crate::secrets::INPUT_PREFIX), digest);
    }
    Fingerprint(h.finalize().to_hex().to_string())
}

/// A deterministic name for something created from a resource: `<project>-<name>-<fp12>`,
/// cut to `max_len` (SageMaker allows 63) while keeping the fingerprint.
pub fn deterministic_name(project: &str, name: &str, fp: &Fingerprint, max_len: usize) -> String {
    let suffix = format!("-{}", fp.short());
    let mut base = format!("{project}-{name}");
    let keep = max_len.saturating_sub(suffix.len());
    if base.len() > keep {
        base.truncate(keep);
        while base.ends_with('-') {
            base.pop();
        }
    }
    format!("{base}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_the_fingerprint() {
        let fp = Fingerprint("0123456789abcdef".repeat(4));
        assert_eq!(
            deterministic_name("iris", "train", &fp, 63),
            "iris-train-0123456789ab"
        );
        let long = deterministic_name(&"p".repeat(40), &"n".repeat(40), &fp, 63);
        assert_eq!(long.len(), 63);
        assert!(long.ends_with("-0123456789ab"));
    }
}
