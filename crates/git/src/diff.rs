//! The semantic difference between two specs: which resources were added, removed or changed,
//! and which fields, compared on their canonical JSON (so comments, key order and quoting in
//! the YAML never show up).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use mlctl_spec::{ResourceId, Spec};
use serde::Serialize;
use serde_json::Value;

/// The difference between two specs. [`Display`](fmt::Display) renders it for people;
/// [`Serialize`] gives the same data as JSON.
///
/// Every list is sorted by resource id (kind in dependency order, then name).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SpecDiff {
    /// Field changes of the Project itself (targets, default target, manifests, labels), with
    /// paths relative to the project (`targets.staging.region`).
    pub project: Vec<FieldChange>,
    /// Resources only in the new spec.
    pub added: Vec<ResourceId>,
    /// Resources only in the old spec.
    pub removed: Vec<ResourceId>,
    /// Resources in both whose canonical form differs.
    pub changed: Vec<ResourceChange>,
}

/// One resource that exists on both sides and differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceChange {
    /// Which resource.
    pub id: ResourceId,
    /// Its changed fields, sorted by path; never empty.
    pub changes: Vec<FieldChange>,
}

/// One changed field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    /// Dotted path into the resource's canonical form, list items as `[i]`, keys that are not
    /// plain identifiers as `["key"]`: `spec.hyperparameters.C`, `spec.gates[2].min`,
    /// `labels["app.kubernetes.io/name"]`.
    pub path: String,
    /// The old value; `None` when the field was absent (or null).
    pub old: Option<Value>,
    /// The new value; `None` when the field is now absent (or null).
    pub new: Option<Value>,
}

impl SpecDiff {
    /// True when the two specs ask for the same thing.
    pub fn is_empty(&self) -> bool {
        self.project.is_empty()
            && self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
    }

    /// `2 added, 1 changed, 1 removed` (resources; a changed project counts as changed).
    pub fn summary(&self) -> String {
        let changed = self.changed.len() + usize::from(!self.project.is_empty());
        format!(
            "{} added, {} changed, {} removed",
            self.added.len(),
            changed,
            self.removed.len()
        )
    }
}

/// Compares two specs resource by resource on their canonical JSON.
///
/// # Guarantees
/// A resource is in `changed` exactly when its [`canonical`](mlctl_spec::Resource::canonical)
/// form differs, which is what its fingerprint hashes: a comment-only or key-order-only edit
/// gives an empty diff. A JSON `null` and an absent field are the same.
pub fn spec_diff(old: &Spec, new: &Spec) -> SpecDiff {
    let mut diff = SpecDiff::default();
    diff_value(
        &mut String::new(),
        Some(&project_json(old)),
        Some(&project_json(new)),
        &mut diff.project,
    );

    let old_by_id: BTreeMap<&ResourceId, _> = old.resources.iter().map(|r| (&r.id, r)).collect();
    let new_by_id: BTreeMap<&ResourceId, _> = new.resources.iter().map(|r| (&r.id, r)).collect();
    let ids: BTreeSet<&ResourceId> = old_by_id.keys().chain(new_by_id.keys()).copied().collect();
    for id in ids {
        match (old_by_id.get(id), new_by_id.get(id)) {
            (Some(_), None) => diff.removed.push(id.clone()),
            (None, Some(_)) => diff.added.push(id.clone()),
            (Some(a), Some(b)) => {
                let mut changes = Vec::new();
                diff_value(
                    &mut String::new(),
                    Some(&a.canonical()),
                    Some(&b.canonical()),
                    &mut changes,
                );
                if !changes.is_empty() {
                    diff.changed.push(ResourceChange {
                        id: id.clone(),
                        changes,
                    });
                }
            }
            (None, None) => {}
        }
    }
    diff
}

/// The project's desired state as JSON (the Project is not a resource, so has no canonical
/// form of its own).
fn project_json(spec: &Spec) -> Value {
    let p = &spec.project;
    let mut v = serde_json::json!({
        "name": p.name,
        "labels": p.labels,
        "manifests": p.manifests,
        "defaultTarget": p.default_target,
        "targets": p.targets,
    });
    mlctl_spec::sort_keys(&mut v);
    v
}

/// Records every difference between `old` and `new` under `path`: objects and lists are
/// compared member by member, anything else (or a change of type) as a whole.
fn diff_value(
    path: &mut String,
    old: Option<&Value>,
    new: Option<&Value>,
    out: &mut Vec<FieldChange>,
) {
    let (old, new) = (present(old), present(new));
    match (old, new) {
        (None, None) => {}
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let len = path.len();
                push_key(path, key);
                diff_value(path, a.get(key), b.get(key), out);
                path.truncate(len);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) => {
            for i in 0..a.len().max(b.len()) {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                diff_value(path, a.get(i), b.get(i), out);
                path.truncate(len);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(FieldChange {
            path: path.clone(),
            old: a.cloned(),
            new: b.cloned(),
        }),
    }
}

fn present(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

fn push_key(path: &mut String, key: &str) {
    let plain = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
    } else {
        path.push('[');
        path.push_str(&Value::String(key.to_owned()).to_string());
        path.push(']');
    }
}

fn render(v: &Option<Value>) -> String {
    match v {
        Some(v) => v.to_string(),
        None => "(none)".to_owned(),
    }
}

impl fmt::Display for FieldChange {
    /// `spec.hyperparameters.C: 1.0 -> 0.5`; values as compact JSON, an absent side as `(none)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} -> {}",
            self.path,
            render(&self.old),
            render(&self.new)
        )
    }
}

impl fmt::Display for SpecDiff {
    /// One line per resource, `+` added, `-` removed, `~` changed (with its fields indented
    /// below), sorted by id; the project first when it changed. `No changes.` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("No changes.");
        }
        let mut lines: Vec<String> = Vec::new();
        if !self.project.is_empty() {
            lines.push("~ Project".to_owned());
            lines.extend(self.project.iter().map(|c| format!("    {c}")));
        }
        enum Entry<'a> {
            Added,
            Removed,
            Changed(&'a [FieldChange]),
        }
        let mut entries: Vec<(&ResourceId, Entry)> = Vec::new();
        entries.extend(self.added.iter().map(|id| (id, Entry::Added)));
        entries.extend(self.removed.iter().map(|id| (id, Entry::Removed)));
        entries.extend(
            self.changed
                .iter()
                .map(|c| (&c.id, Entry::Changed(&c.changes))),
        );
        entries.sort_by(|a, b| a.0.cmp(b.0));
        for (id, entry) in entries {
            match entry {
                Entry::Added => lines.push(format!("+ {id}")),
                Entry::Removed => lines.push(format!("- {id}")),
                Entry::Changed(changes) => {
                    lines.push(format!("~ {id}"));
                    lines.extend(changes.iter().map(|c| format!("    {c}")));
                }
            }
        }
        f.write_str(&lines.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(old: Value, new: Value, expect: &[&str]) {
        let mut out = Vec::new();
        diff_value(&mut String::new(), Some(&old), Some(&new), &mut out);
        let got: Vec<String> = out.iter().map(ToString::to_string).collect();
        assert_eq!(got, expect);
    }

    #[test]
    fn nested_fields_get_dotted_paths() {
        check(
            json!({"spec": {"hyperparameters": {"C": 1.0, "max_iter": 200}}}),
            json!({"spec": {"hyperparameters": {"C": 0.5, "max_iter": 200}}}),
            &["spec.hyperparameters.C: 1.0 -> 0.5"],
        );
    }

    #[test]
    fn lists_compare_by_index_and_report_extra_items() {
        check(
            json!({"gates": [{"min": 0.9}, {"min": 0.8}]}),
            json!({"gates": [{"min": 0.95}, {"min": 0.8}, {"min": 0.1}]}),
            &[
                "gates[0].min: 0.9 -> 0.95",
                r#"gates[2]: (none) -> {"min":0.1}"#,
            ],
        );
    }

    #[test]
    fn null_and_absent_are_the_same() {
        check(json!({"a": null, "b": 1}), json!({"b": 1}), &[]);
        check(
            json!({"a": null}),
            json!({"a": "x"}),
            &[r#"a: (none) -> "x""#],
        );
    }

    #[test]
    fn type_changes_are_whole_values_and_odd_keys_are_quoted() {
        check(
            json!({"x": {"y": 1}}),
            json!({"x": [1]}),
            &[r#"x: {"y":1} -> [1]"#],
        );
        check(
            json!({"labels": {"app.kubernetes.io/name": "a"}}),
            json!({"labels": {"app.kubernetes.io/name": "b"}}),
            &[r#"labels["app.kubernetes.io/name"]: "a" -> "b""#],
        );
        check(
            json!({"1st": 1}),
            json!({"1st": 2}),
            &[r#"["1st"]: 1 -> 2"#],
        );
    }

    #[test]
    fn empty_diff_says_so() {
        assert_eq!(SpecDiff::default().to_string(), "No changes.");
        assert!(SpecDiff::default().is_empty());
    }
}
