//! `${env:NAME}` in resource fields: resolved when a request is built, never stored.
//!
//! The validator accepts a reference only in the fields `mlctl_spec::env::resolvable_fields`
//! lists (one list). The spec, its fingerprint and what the target records keep the
//! reference; the request a component receives holds the value. [`unset`] finds, before
//! anything is created, every reference whose variable is missing.
//!
//! `Endpoint.spec.auth.token` is left to the deployer, which keeps the reference to restart a
//! server later and must never store the token itself; `Monitor.spec.onBreach.notify.webhook`
//! to `mlctl monitor run`, which resolves it when it notifies.

use crate::error::{ErrorKind, ProviderError, Result};
use crate::support::fields;
use mlctl_spec::env::EnvRefError;
use mlctl_spec::{Kind, Location, Node, Spec};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Resolved by the component that uses them (see the module docs). A monitor's webhook is
/// resolved by `mlctl monitor run` when it notifies: a monitor sink keeps its spec, which
/// must never hold the URL (it carries a token).
const LEFT_TO_PROVIDERS: [&str; 2] = [
    "Endpoint.spec.auth.token",
    "Monitor.spec.onBreach.notify.webhook",
];

/// The resolvable fields of `kind`, as paths under `spec` (`*` for any key).
fn patterns(kind: Kind) -> Vec<Vec<&'static str>> {
    mlctl_spec::env::resolvable_fields()
        .iter()
        .filter(|f| !LEFT_TO_PROVIDERS.contains(f))
        .filter_map(|f| f.strip_prefix(kind.as_str())?.strip_prefix(".spec."))
        .map(|f| f.split('.').collect())
        .collect()
}

/// Resolves the references in `v` at `path` (a pattern), in place.
fn resolve_at(
    v: &mut serde_json::Value,
    path: &[&str],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> std::result::Result<(), EnvRefError> {
    match path.split_first() {
        None => {
            if let serde_json::Value::String(s) = v {
                *s = mlctl_spec::env::resolve(s, lookup)?;
            }
            Ok(())
        }
        Some((&"*", rest)) => match v {
            serde_json::Value::Object(map) => map
                .values_mut()
                .try_for_each(|child| resolve_at(child, rest, lookup)),
            _ => Ok(()),
        },
        Some((key, rest)) => match v.get_mut(*key) {
            Some(child) => resolve_at(child, rest, lookup),
            None => Ok(()),
        },
    }
}

/// `spec` (of a resource of `kind`) with every `${env:NAME}` its resolvable fields hold
/// replaced by the variable's value, read with `lookup`.
///
/// # Errors
/// `Invalid` naming the variable when one is unset (plan reports these first, see [`unset`]).
pub fn resolved_with<T: Serialize + DeserializeOwned>(
    kind: Kind,
    spec: &T,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<T> {
    let invalid = |m: String| ProviderError::new(ErrorKind::Invalid, "mlctl", "resolve", m);
    let mut v = serde_json::to_value(spec).map_err(|e| invalid(e.to_string()))?;
    for p in patterns(kind) {
        resolve_at(&mut v, &p, lookup)
            .map_err(|e| invalid(format!("{kind} `{}`: {e}", p.join("."))))?;
    }
    serde_json::from_value(v).map_err(|e| invalid(e.to_string()))
}

/// [`resolved_with`] from this process's environment.
///
/// # Errors
/// See [`resolved_with`].
pub fn resolved<T: Serialize + DeserializeOwned>(kind: Kind, spec: &T) -> Result<T> {
    resolved_with(kind, spec, &|n| std::env::var(n).ok())
}

/// A `${env:NAME}` whose variable is not set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unset {
    /// Where the reference is written.
    pub location: Location,
    /// The field, as users write it (`source`, `hyperparameters.bucket`).
    pub field: String,
    /// The resource.
    pub id: mlctl_spec::ResourceId,
    /// What is wrong (names the variable).
    pub error: EnvRefError,
}

/// Every reference in a resolvable field of `spec` whose variable `lookup` does not know,
/// at its position.
pub fn unset(spec: &Spec, lookup: &dyn Fn(&str) -> Option<String>) -> Vec<Unset> {
    let mut out = Vec::new();
    for r in &spec.resources {
        let kind = r.id.kind.as_str();
        for (path, node) in fields::written(r) {
            let Some(rest) = path
                .strip_prefix(kind)
                .and_then(|p| p.strip_prefix(".spec."))
            else {
                continue;
            };
            if LEFT_TO_PROVIDERS.contains(&path.as_str()) {
                continue;
            }
            let mut check = |segs: Vec<String>, n: &Node| {
                let mut full = vec!["spec".to_string()];
                full.extend(segs.iter().cloned());
                if !mlctl_spec::env::is_resolvable(kind, &full) {
                    return;
                }
                let Some(s) = n.as_str() else { return };
                if let Err(error) = mlctl_spec::env::resolve(s, lookup) {
                    out.push(Unset {
                        location: Location {
                            file: r.location.file.clone(),
                            span: n.span,
                        },
                        field: segs.join("."),
                        id: r.id.clone(),
                        error,
                    });
                }
            };
            let segs: Vec<String> = rest.split('.').map(str::to_string).collect();
            match node.as_map() {
                // A free-form map (hyperparameters): each value is a field of its own.
                Some(entries) => {
                    for (k, v) in entries {
                        let mut s = segs.clone();
                        s.push(k.as_str().unwrap_or_default().to_string());
                        check(s, v);
                    }
                }
                None => check(segs, node),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_in_resolvable_fields_are_resolved_and_nothing_else() {
        let spec: mlctl_spec::TrainingJobSpec = serde_json::from_value(serde_json::json!({
            "dataset": "d",
            "command": "python train.py --out ${env:NOT_RESOLVED_HERE}",
            "image": "${env:REGISTRY}/train:1",
            "hyperparameters": {"bucket": "s3://${env:BUCKET}/x", "n": 3}
        }))
        .unwrap();
        let lookup = |n: &str| match n {
            "REGISTRY" => Some("123.dkr.ecr".to_string()),
            "BUCKET" => Some("acme".to_string()),
            _ => None,
        };
        let r = resolved_with(Kind::TrainingJob, &spec, &lookup).unwrap();
        assert_eq!(r.image.as_deref(), Some("123.dkr.ecr/train:1"));
        assert_eq!(r.hyperparameters["bucket"], "s3://acme/x");
        assert_eq!(r.hyperparameters["n"], 3);
        assert_eq!(
            r.command.as_deref(),
            Some("python train.py --out ${env:NOT_RESOLVED_HERE}")
        );
        let e = resolved_with(Kind::TrainingJob, &spec, &|_| None).unwrap_err();
        assert!(e.message.contains("`REGISTRY` is not set"), "{e}");
    }
}
