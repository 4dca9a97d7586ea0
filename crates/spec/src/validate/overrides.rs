//! Per-target overrides: a manifest's `overrides.<target>` is a partial `spec` merged into its
//! `spec` for that target, before the spec is typed and validated.
//!
//! Merge rules (JSON Merge Patch's, on YAML nodes): a mapping merges key by key, any other
//! value (a scalar, a list) replaces the one in `spec`, and `null` removes it. The merged tree
//! keeps every node's own position, so an error in a value that came from an override points
//! at the override. Only the kind's `OVERRIDABLE` fields ([`crate::Kind::overridable_fields`])
//! may be set, and only for targets the project defines.
//!
//! The selected target's overrides become the resource; every other target's are checked
//! here as well (the merged spec is typed for each), so `validate` reports a mistake in the
//! `prod` override while a developer works on `dev`.

use super::Ctx;
use crate::Kind;
use crate::model::*;
use crate::suggest::{did_you_mean, list};
use crate::yaml::{Node, Span, Value};
use std::collections::BTreeSet;

/// The targets overrides may name, and the one whose overrides are merged.
#[derive(Debug, Default, Clone)]
pub(super) struct Targets {
    /// Every target the project defines.
    pub(super) defined: Vec<String>,
    /// The target being loaded for (its overrides are merged).
    pub(super) selected: Option<String>,
}

/// `node` (a whole manifest) with `overrides` checked, the selected target's merged into
/// `spec`, and the `overrides` key gone. A problem is reported and leaves the manifest as
/// written (without `overrides`).
pub(super) fn apply(ctx: &mut Ctx, file: &str, node: Node, kind: Kind) -> Node {
    let Some(overrides) = node.get("overrides").cloned() else {
        return node;
    };
    let mut node = without_key(node, "overrides");
    let Some(entries) = overrides.as_map() else {
        if !overrides.is_null() {
            ctx.err(
                "wrong-type",
                file,
                Some(overrides.span),
                format!(
                    "expected a mapping of target names to partial specs for `overrides`, found {}",
                    overrides.type_name()
                ),
            )
            .hint = Some("write `overrides: {prod: {instances: 3}}`".into());
        }
        return node;
    };
    let targets = ctx.override_targets.clone();
    let allowed = kind.overridable_fields();
    let mut selected = None;
    for (key, patch) in entries {
        let name = key.as_str().unwrap_or_default();
        if !targets.defined.iter().any(|t| t == name) {
            let hint = match did_you_mean(name, targets.defined.iter().map(String::as_str)) {
                Some(s) => format!(
                    "did you mean `{s}`? define the target under spec.targets in mlctl.yaml, or fix the name; targets: {}",
                    list(&targets.defined)
                ),
                None => format!(
                    "define the target under spec.targets in mlctl.yaml, or fix the name; targets: {}",
                    list(&targets.defined)
                ),
            };
            ctx.hint(
                "unknown-target",
                file,
                Some(key.span),
                format!("`overrides` names target `{name}`, which the project does not define"),
                Some(hint),
            );
            continue;
        }
        let Some(fields) = patch.as_map() else {
            ctx.err(
                "wrong-type",
                file,
                Some(patch.span),
                format!(
                    "expected a partial {kind} spec (a mapping) for `overrides.{name}`, found {}",
                    patch.type_name()
                ),
            );
            continue;
        };
        let mut fine = true;
        for (field, _) in fields {
            let f = field.as_str().unwrap_or_default();
            if allowed.contains(&f) {
                continue;
            }
            fine = false;
            let mut hint = if allowed.is_empty() {
                format!("a {kind} overrides nothing per target")
            } else {
                format!("a {kind} may override: {}", list(allowed))
            };
            if let Some(s) = did_you_mean(f, allowed.iter().copied()) {
                hint = format!("did you mean `{s}`? {hint}");
            }
            hint.push_str(&format!(
                "; a field that is not per target is set once in `spec`, for every target{}",
                if kind == Kind::TrainingJob {
                    " (a model promoted between targets must be trained the same way)"
                } else {
                    ""
                }
            ));
            ctx.hint(
                "not-overridable",
                file,
                Some(field.span),
                format!(
                    "`{f}` of a {kind} cannot be overridden per target (in `overrides.{name}`)"
                ),
                Some(hint),
            );
        }
        if !fine {
            continue;
        }
        let Some(spec) = node.get("spec") else {
            continue;
        };
        let merged = merge(spec.clone(), patch.clone());
        if targets.selected.as_deref() == Some(name) {
            selected = Some(merged);
        } else {
            check_other(ctx, file, kind, &merged, patch, name);
        }
    }
    if let Some(merged) = selected {
        node = with_key(node, "spec", merged);
    }
    node
}

/// Types `merged` (another target's spec) and reports the problems found in what its
/// override wrote: the rest is reported for the selected target already.
fn check_other(ctx: &mut Ctx, file: &str, kind: Kind, merged: &Node, patch: &Node, name: &str) {
    let mut spans = BTreeSet::new();
    collect_spans(patch, &mut spans);
    let before = ctx.diags.len();
    let what = format!("{kind} spec (overrides.{name})");
    let holder = |_: &[String]| Some(patch.span);
    match kind {
        Kind::Dataset => drop(ctx.typed_node::<DatasetSpec>(file, merged, &what, &holder)),
        Kind::TrainingJob => drop(ctx.typed_node::<TrainingJobSpec>(file, merged, &what, &holder)),
        Kind::Model => drop(ctx.typed_node::<ModelSpec>(file, merged, &what, &holder)),
        Kind::Endpoint => drop(ctx.typed_node::<EndpointSpec>(file, merged, &what, &holder)),
        Kind::Monitor => drop(ctx.typed_node::<MonitorSpec>(file, merged, &what, &holder)),
    }
    ctx.last_typos.clear();
    let found: Vec<_> = ctx.diags.drain(before..).collect();
    ctx.diags.extend(
        found
            .into_iter()
            .filter(|d| d.span.is_some_and(|s| spans.contains(&(s.line, s.col)))),
    );
}

fn collect_spans(node: &Node, out: &mut BTreeSet<(usize, usize)>) {
    let Span { line, col, .. } = node.span;
    out.insert((line, col));
    match &node.value {
        Value::Map(entries) => {
            for (k, v) in entries {
                out.insert((k.span.line, k.span.col));
                collect_spans(v, out);
            }
        }
        Value::Seq(items) => items.iter().for_each(|n| collect_spans(n, out)),
        Value::Scalar { .. } => {}
    }
}

/// JSON Merge Patch on nodes: `patch`'s mappings merge into `base`'s, anything else replaces,
/// `null` removes.
pub(super) fn merge(base: Node, patch: Node) -> Node {
    match (base.value, patch.value) {
        (Value::Map(mut entries), Value::Map(changes)) => {
            for (k, v) in changes {
                let key = k.as_str().map(str::to_string);
                let at = entries
                    .iter()
                    .position(|(ek, _)| ek.as_str().map(str::to_string) == key);
                match at {
                    Some(i) if v.is_null() => {
                        entries.remove(i);
                    }
                    Some(i) => {
                        let old = entries[i].1.clone();
                        entries[i].1 = merge(old, v);
                    }
                    None if v.is_null() => {}
                    None => entries.push((k, strip_nulls(v))),
                }
            }
            Node {
                value: Value::Map(entries),
                span: base.span,
            }
        }
        (_, value) => strip_nulls(Node {
            value,
            span: patch.span,
        }),
    }
}

/// A mapping taken whole from a patch loses its `null` members (merge-patch semantics).
fn strip_nulls(node: Node) -> Node {
    match node.value {
        Value::Map(entries) => Node {
            value: Value::Map(
                entries
                    .into_iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k, strip_nulls(v)))
                    .collect(),
            ),
            span: node.span,
        },
        value => Node {
            value,
            span: node.span,
        },
    }
}

fn without_key(node: Node, key: &str) -> Node {
    match node.value {
        Value::Map(entries) => Node {
            value: Value::Map(
                entries
                    .into_iter()
                    .filter(|(k, _)| k.as_str() != Some(key))
                    .collect(),
            ),
            span: node.span,
        },
        value => Node {
            value,
            span: node.span,
        },
    }
}

fn with_key(node: Node, key: &str, value: Node) -> Node {
    match node.value {
        Value::Map(mut entries) => {
            if let Some(e) = entries.iter_mut().find(|(k, _)| k.as_str() == Some(key)) {
                e.1 = value;
            }
            Node {
                value: Value::Map(entries),
                span: node.span,
            }
        }
        v => Node {
            value: v,
            span: node.span,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(text: &str) -> Node {
        crate::yaml::parse(text).unwrap().remove(0)
    }

    #[test]
    fn mappings_merge_lists_replace_and_null_removes() {
        let base = node("a: {x: 1, y: 2}\nl: [1, 2]\nz: 3\n");
        let patch = node("a: {y: 5, w: 6}\nl: [9]\nz: null\nn: {k: null, j: 1}\n");
        let merged = merge(base, patch);
        assert_eq!(
            merged.to_json(),
            serde_json::json!({"a": {"x": 1, "y": 5, "w": 6}, "l": [9], "n": {"j": 1}})
        );
    }

    #[test]
    fn a_merged_value_keeps_the_override_position() {
        let base = node("a: {x: 1}\n");
        let patch = node("\n\na: {x: 2}\n");
        let merged = merge(base, patch);
        assert_eq!(merged.at(&["a", "x"]).unwrap().span.line, 3);
    }
}
