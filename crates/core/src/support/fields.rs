//! The spec's leaf fields, read from its JSON Schema, and the fields a resource writes.
//!
//! A field path names a leaf of one kind's manifest: `Endpoint.spec.auth.token`,
//! `Dataset.spec.schema.columns[].min` (`[]`: any item of a list),
//! `Monitor.spec.drift.features.*.method` (`*`: any key of a map the user names), and
//! free-form maps are leaves themselves (`TrainingJob.spec.hyperparameters`,
//! `Dataset.metadata.labels`). The Project's fields are `Project.spec...`; a target's fields
//! are per provider (`Project.spec.targets.*.region`).

use mlctl_spec::{Node, Resource, Span};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::OnceLock;

struct Tree {
    leaves: Vec<String>,
    /// Every path that leads to a leaf (leaves included), for walking YAML.
    known: BTreeSet<String>,
}

fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| {
        let schema: Value =
            serde_json::from_str(&mlctl_spec::schema::json_schema()).unwrap_or(Value::Null);
        let defs = schema.get("$defs").cloned().unwrap_or(Value::Null);
        let mut leaves = BTreeSet::new();
        for variant in schema
            .get("oneOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(kind) = variant
                .pointer("/properties/kind/const")
                .and_then(Value::as_str)
            else {
                continue;
            };
            walk(variant, &defs, kind, &mut leaves, 0);
        }
        let mut known = BTreeSet::new();
        for leaf in &leaves {
            for (i, c) in leaf.char_indices() {
                if c == '.' || c == '[' {
                    known.insert(leaf[..i].to_string());
                }
            }
            known.insert(leaf.clone());
        }
        Tree {
            leaves: leaves.into_iter().collect(),
            known,
        }
    })
}

fn resolve<'a>(mut v: &'a Value, defs: &'a Value) -> &'a Value {
    while let Some(r) = v.get("$ref").and_then(Value::as_str) {
        match r.rsplit('/').next().and_then(|name| defs.get(name)) {
            Some(target) => v = target,
            None => break,
        }
    }
    v
}

fn has_properties(v: &Value, defs: &Value) -> bool {
    let v = resolve(v, defs);
    v.get("properties").is_some()
        || ["anyOf", "oneOf"].iter().any(|k| {
            v.get(k)
                .and_then(Value::as_array)
                .is_some_and(|alts| alts.iter().any(|a| has_properties(a, defs)))
        })
}

fn walk(v: &Value, defs: &Value, path: &str, out: &mut BTreeSet<String>, depth: usize) {
    let v = resolve(v, defs);
    if depth > 16 {
        out.insert(path.to_string());
        return;
    }
    // Alternatives: `Option<T>` (T or null), enums (one `const` each) and tagged unions
    // (targets by provider). Only alternatives with properties lead further.
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = v.get(key).and_then(Value::as_array) {
            let structured: Vec<&Value> = alts.iter().filter(|a| has_properties(a, defs)).collect();
            if structured.is_empty() {
                out.insert(path.to_string());
            } else {
                for a in structured {
                    walk(a, defs, path, out, depth + 1);
                }
            }
            return;
        }
    }
    if let Some(props) = v.get("properties").and_then(Value::as_object) {
        for (k, child) in props {
            walk(child, defs, &format!("{path}.{k}"), out, depth + 1);
        }
        return;
    }
    if let Some(items) = v.get("items")
        && has_properties(items, defs)
    {
        walk(items, defs, &format!("{path}[]"), out, depth + 1);
        return;
    }
    if let Some(values) = v.get("additionalProperties")
        && values.is_object()
        && has_properties(values, defs)
    {
        walk(values, defs, &format!("{path}.*"), out, depth + 1);
        return;
    }
    out.insert(path.to_string());
}

/// Every leaf field of the spec, sorted.
pub fn leaf_fields() -> &'static [String] {
    &tree().leaves
}

/// The envelope fields every manifest has; the spec loader acts on them for every target.
pub const ENVELOPE: [&str; 3] = ["apiVersion", "kind", "metadata.name"];

/// Every leaf field `r` writes, with its node, in source order: what a target must honour or
/// refuse for this resource. Defaults the validator filled in are not written, so they are not
/// here.
pub fn written(r: &Resource) -> Vec<(String, &Node)> {
    let known = &tree().known;
    let kind = r.id.kind.as_str();
    let mut out = Vec::new();
    for part in ["metadata", "spec"] {
        if let Some(node) = r.node.get(part) {
            collect(node, &format!("{kind}.{part}"), known, &mut out);
        }
    }
    out.retain(|(p, _)| {
        !ENVELOPE
            .iter()
            .any(|e| p.strip_prefix(kind).and_then(|p| p.strip_prefix('.')) == Some(e))
    });
    out
}

fn collect<'a>(
    node: &'a Node,
    path: &str,
    known: &BTreeSet<String>,
    out: &mut Vec<(String, &'a Node)>,
) {
    if tree()
        .leaves
        .binary_search_by(|l| l.as_str().cmp(path))
        .is_ok()
    {
        out.push((path.to_string(), node));
        return;
    }
    if let Some(entries) = node.as_map() {
        for (k, v) in entries {
            let key = k.as_str().unwrap_or_default();
            let named = format!("{path}.{key}");
            let any = format!("{path}.*");
            if known.contains(&named) {
                collect(v, &named, known, out);
            } else if known.contains(&any) {
                collect(v, &any, known, out);
            }
        }
    } else if let Some(items) = node.as_seq() {
        let item = format!("{path}[]");
        if known.contains(&item) {
            for i in items {
                collect(i, &item, known, out);
            }
        }
    }
}

/// `strategy.rollback.maxErrorRate` for `Endpoint.spec.strategy.rollback.maxErrorRate`: the
/// field as users write it (without the kind, and without `spec.`).
pub fn user_path(path: &str) -> String {
    let rest = path.split_once('.').map(|(_, r)| r).unwrap_or(path);
    rest.strip_prefix("spec.").unwrap_or(rest).to_string()
}

/// The span of the key that holds `node` somewhere under `root`, when `node` is a block
/// mapping or list (which starts at its first entry, a line below its key).
pub fn key_span(root: &Node, node: &Node) -> Option<Span> {
    if node.as_map().is_none() && node.as_seq().is_none() {
        return Some(node.span);
    }
    fn find(n: &Node, target: &Node) -> Option<Span> {
        if let Some(entries) = n.as_map() {
            for (k, v) in entries {
                if std::ptr::eq(v, target) {
                    // A one-line `[...]` or `{...}` is pointed at directly.
                    return Some(if k.span.line < v.span.line {
                        k.span
                    } else {
                        v.span
                    });
                }
                if let Some(s) = find(v, target) {
                    return Some(s);
                }
            }
        }
        for i in n.as_seq().unwrap_or_default() {
            if let Some(s) = find(i, target) {
                return Some(s);
            }
        }
        None
    }
    find(root, node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_cover_each_kind_and_name_lists_and_maps() {
        let leaves = leaf_fields();
        for f in [
            "Dataset.spec.source",
            "Dataset.spec.schema.columns[].min",
            "TrainingJob.spec.hyperparameters",
            "TrainingJob.spec.tuning.searchSpace.*.step",
            "Endpoint.spec.strategy.rollback.maxErrorRate",
            "Monitor.spec.drift.features.*.method",
            "Endpoint.metadata.labels",
            "Project.spec.targets.*.region",
        ] {
            assert!(leaves.iter().any(|l| l == f), "{f} missing from {leaves:?}");
        }
        assert!(!leaves.iter().any(|l| l == "Endpoint.spec.strategy"));
        assert_eq!(user_path("Endpoint.spec.auth.token"), "auth.token");
        assert_eq!(user_path("Model.metadata.labels"), "metadata.labels");
    }
}
