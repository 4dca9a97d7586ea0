//! Noticing that a secret changed without keeping it: keyed digests of `${env:NAME}` values.
//!
//! A resource's fingerprint covers the *values* of the references it holds (a new endpoint
//! token redeploys; a new bucket in a hyperparameter retrains), but a value is never stored.
//! What is hashed and recorded instead is a keyed digest (blake3 in keyed mode) under the
//! target's [`DigestKey`]: 32 random bytes created on first use and kept in the target's
//! state store ([`crate::StateStore::digest_key`]). Without the key, a digest says nothing
//! about the value: no dictionary of likely tokens can be checked against it, and two targets
//! give the same token different digests. The record of a resource keeps one digest per
//! variable (`secret:NAME` among its `inputs`), so a plan says which secret changed.
//!
//! # Caveats
//! Whoever can read the target's state can read the key too, and could test guesses of a
//! weak secret against its digest; a real credential (a random token) is out of reach.

use std::collections::BTreeSet;

/// Where a secret's digest is among a resource's recorded `inputs`: `secret:NAME`.
pub const INPUT_PREFIX: &str = "secret:";

/// A target's key for secret digests. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct DigestKey([u8; 32]);

impl std::fmt::Debug for DigestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DigestKey(..)")
    }
}

/// A stored key that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the target's secret-digest key is damaged (expected 64 hex digits, found {found} characters); delete it from the target's state and apply again: every resource that reads a secret is then redeployed once"
)]
pub struct BadKey {
    /// How many characters were stored.
    pub found: usize,
}

impl DigestKey {
    /// A new random key, from the operating system's generator.
    ///
    /// # Errors
    /// The generator's own, when the system has none to give.
    pub fn generate() -> std::result::Result<DigestKey, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        Ok(DigestKey(bytes))
    }

    /// A key from its bytes (tests, and stores that keep raw bytes).
    pub fn from_bytes(bytes: [u8; 32]) -> DigestKey {
        DigestKey(bytes)
    }

    /// The key as stored: 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A key as [`DigestKey::to_hex`] stored it.
    ///
    /// # Errors
    /// [`BadKey`] when `hex` is not 64 hex digits.
    pub fn from_hex(hex: &str) -> std::result::Result<DigestKey, BadKey> {
        let hex = hex.trim();
        let bad = BadKey { found: hex.len() };
        if hex.len() != 64 || !hex.is_ascii() {
            return Err(bad);
        }
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad.clone())?;
        }
        Ok(DigestKey(bytes))
    }

    /// A key a store kept as [`DigestKey::to_hex`], read for the engine.
    ///
    /// # Errors
    /// `Other` naming `where_` (the store's file or object) when it is damaged.
    pub fn read_stored(hex: &str, where_: &str) -> crate::error::Result<DigestKey> {
        DigestKey::from_hex(hex).map_err(|e| {
            crate::error::ProviderError::new(
                crate::error::ErrorKind::Other,
                "mlctl",
                "read the secret-digest key",
                format!("{where_}: {e}"),
            )
        })
    }

    /// The keyed digest of a secret's value: hex blake3 in keyed mode.
    pub fn digest(&self, value: &str) -> String {
        blake3::keyed_hash(&self.0, value.as_bytes())
            .to_hex()
            .to_string()
    }
}

/// A target's digest key as a JSON document (mock and object-store targets keep it so).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredDigestKey {
    /// [`crate::state::FORMAT_VERSION`] when written.
    #[serde(default = "crate::state::FormatVersion::legacy")]
    pub format_version: crate::state::FormatVersion,
    /// [`DigestKey::to_hex`].
    pub key: String,
    /// RFC 3339 time it was made.
    pub created_at: String,
}

impl StoredDigestKey {
    /// A new random key, made now.
    ///
    /// # Errors
    /// `Other` when the system has no random numbers to give.
    pub fn generate() -> crate::error::Result<StoredDigestKey> {
        let key = DigestKey::generate().map_err(|e| {
            crate::error::ProviderError::new(
                crate::error::ErrorKind::Other,
                "mlctl",
                "create the secret-digest key",
                format!("the operating system gave no random bytes ({e}); nothing was stored"),
            )
        })?;
        Ok(StoredDigestKey {
            format_version: crate::state::FORMAT_VERSION,
            key: key.to_hex(),
            created_at: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        })
    }

    /// The key.
    ///
    /// # Errors
    /// `Other` naming `where_` when it is damaged.
    pub fn key(&self, where_: &str) -> crate::error::Result<DigestKey> {
        DigestKey::read_stored(&self.key, where_)
    }
}

/// The variables whose values `r` reads: every `${env:NAME}` in its resolvable fields
/// ([`mlctl_spec::env::resolvable_fields`]), the ones its component resolves
/// (`Endpoint.spec.auth.token`) included.
pub fn referenced(r: &mlctl_spec::Resource) -> BTreeSet<String> {
    let spec = serde_json::to_value(&r.spec).unwrap_or_default();
    let kind = r.id.kind.as_str();
    let mut out = BTreeSet::new();
    for field in mlctl_spec::env::resolvable_fields() {
        let Some(path) = field
            .strip_prefix(kind)
            .and_then(|f| f.strip_prefix(".spec."))
        else {
            continue;
        };
        let path: Vec<&str> = path.split('.').collect();
        collect(&spec, &path, &mut out);
    }
    out
}

fn collect(v: &serde_json::Value, path: &[&str], out: &mut BTreeSet<String>) {
    match path.split_first() {
        None => {
            if let Some(s) = v.as_str() {
                // A malformed reference is the validator's to report; it names nothing here.
                out.extend(
                    mlctl_spec::env::references(s)
                        .unwrap_or_default()
                        .into_iter()
                        .map(str::to_string),
                );
            }
        }
        Some((&"*", rest)) => {
            if let Some(map) = v.as_object() {
                for child in map.values() {
                    collect(child, rest, out);
                }
            }
        }
        Some((key, rest)) => {
            if let Some(child) = v.get(*key) {
                collect(child, rest, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> DigestKey {
        DigestKey::from_bytes([byte; 32])
    }

    #[test]
    fn the_same_value_under_the_same_key_has_the_same_digest() {
        assert_eq!(key(1).digest("token-a"), key(1).digest("token-a"));
        assert_ne!(key(1).digest("token-a"), key(1).digest("token-b"));
    }

    #[test]
    fn another_key_gives_another_digest() {
        assert_ne!(key(1).digest("token-a"), key(2).digest("token-a"));
        let (a, b) = (
            DigestKey::generate().unwrap(),
            DigestKey::generate().unwrap(),
        );
        assert_ne!(a, b, "two generated keys are different");
        assert_ne!(a.digest("token-a"), b.digest("token-a"));
    }

    #[test]
    fn a_digest_never_is_nor_contains_the_value() {
        let k = key(7);
        // Hex-looking values too, which a hex digest could contain by accident of encoding.
        for value in ["s3cr3t-Tok3n", "abc", "0123456789abcdef", "", "a"] {
            let d = k.digest(value);
            assert_eq!(d.len(), 64, "{d}");
            assert_ne!(d, value);
            if value.len() >= 3 {
                assert!(!d.contains(value), "{d} contains {value}");
            }
            // Not the unkeyed hash either: that one anyone can compute from a guess.
            assert_ne!(d, blake3::hash(value.as_bytes()).to_hex().to_string());
        }
    }

    #[test]
    fn a_key_reads_back_as_stored_and_a_damaged_one_says_what_to_do() {
        let k = DigestKey::generate().unwrap();
        assert_eq!(DigestKey::from_hex(&k.to_hex()).unwrap(), k);
        let e = DigestKey::from_hex("abc").unwrap_err();
        assert!(e.to_string().contains("found 3 characters"), "{e}");
        assert!(e.to_string().contains("delete it"), "{e}");
        assert!(DigestKey::from_hex(&"zz".repeat(32)).is_err());
        assert_eq!(format!("{k:?}"), "DigestKey(..)");
    }

    struct Mem(Vec<(&'static str, &'static str)>);
    impl mlctl_spec::Files for Mem {
        fn read(&self, path: &str) -> std::io::Result<Option<String>> {
            Ok(self
                .0
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, t)| t.to_string()))
        }
        fn list(&self, dir: &str) -> std::io::Result<Option<Vec<String>>> {
            let prefix = format!("{}/", dir.trim_end_matches('/'));
            Ok(Some(
                self.0
                    .iter()
                    .filter(|(p, _)| p.starts_with(&prefix))
                    .map(|(p, _)| p.to_string())
                    .collect(),
            ))
        }
    }

    #[test]
    fn references_are_found_in_every_resolvable_field_of_the_resource() {
        let files = Mem(vec![
            (
                "mlctl.yaml",
                "apiVersion: mlctl/v1\nkind: Project\nmetadata: {name: p}\nspec: {}\n",
            ),
            (
                "ml/all.yaml",
                "apiVersion: mlctl/v1\nkind: Dataset\nmetadata: {name: d}\nspec: {source: 'data/${env:D_FILE}', format: csv, target: species}\n---\n\
                 apiVersion: mlctl/v1\nkind: TrainingJob\nmetadata: {name: j}\nspec: {dataset: d, command: python3 train.py, hyperparameters: {C: 1.0, tag: '${env:J_TAG}'}}\n---\n\
                 apiVersion: mlctl/v1\nkind: Model\nmetadata: {name: m}\nspec: {from: j}\n---\n\
                 apiVersion: mlctl/v1\nkind: Endpoint\nmetadata: {name: e}\nspec: {model: m, auth: {token: '${env:E_TOKEN}'}, capture: {samplingPercent: 5, destination: 'out/${env:E_DIR}'}}\n",
            ),
        ]);
        let loaded = mlctl_spec::load(&files);
        let spec = loaded
            .spec
            .unwrap_or_else(|| panic!("{:?}", loaded.diagnostics));
        let names = |kind, name: &str| -> Vec<String> {
            let r = spec
                .get(&mlctl_spec::ResourceId::new(kind, name))
                .expect("resource");
            referenced(r).into_iter().collect()
        };
        use mlctl_spec::Kind;
        assert_eq!(names(Kind::Endpoint, "e"), ["E_DIR", "E_TOKEN"]);
        assert_eq!(names(Kind::Dataset, "d"), ["D_FILE"]);
        assert_eq!(names(Kind::TrainingJob, "j"), ["J_TAG"]);
        assert!(names(Kind::Model, "m").is_empty());
    }
}
