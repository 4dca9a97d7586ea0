//! The JSON Schema committed at `schema/mlctl.schema.json` (for editors) is what
//! `mlctl schema` prints, and covers every kind.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn committed_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema/mlctl.schema.json")
}

/// Fails when the spec types changed and the committed schema was not regenerated.
/// `UPDATE_SCHEMA=1 cargo test -p mlctl-spec --test schema` rewrites it.
#[test]
fn committed_schema_is_current() {
    let current = mlctl_spec::schema::json_schema();
    let path = committed_path();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &current).expect("write schema/mlctl.schema.json");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed == current {
        return;
    }
    let (line, ours, theirs) = committed
        .lines()
        .zip(current.lines())
        .enumerate()
        .find(|(_, (a, b))| a != b)
        .map(|(i, (a, b))| (i + 1, a.trim(), b.trim()))
        .unwrap_or((
            committed.lines().count().min(current.lines().count()) + 1,
            "<end>",
            "<more lines>",
        ));
    panic!(
        "schema/mlctl.schema.json is stale: the spec types changed since it was generated.\n\
         Regenerate it and commit the result:\n\n    \
         cargo run -p mlctl-cli -- schema > schema/mlctl.schema.json\n\n\
         (or: UPDATE_SCHEMA=1 cargo test -p mlctl-spec --test schema)\n\n\
         first difference, line {line}:\n  committed: {ours}\n  current:   {theirs}"
    );
}

fn schema() -> Value {
    serde_json::from_str(&mlctl_spec::schema::json_schema()).expect("the schema is JSON")
}

/// The `kind` values the schema accepts (each variant pins `kind` with a `const`).
fn kinds_in(schema: &Value) -> BTreeSet<String> {
    let mut kinds = BTreeSet::new();
    let variants = schema
        .get("oneOf")
        .or_else(|| schema.get("anyOf"))
        .and_then(Value::as_array);
    for v in variants.into_iter().flatten() {
        let kind = v.pointer("/properties/kind");
        if let Some(k) = kind.and_then(|k| k.get("const")).and_then(Value::as_str) {
            kinds.insert(k.to_string());
        }
        for k in kind
            .and_then(|k| k.get("enum"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            kinds.extend(k.as_str().map(str::to_string));
        }
    }
    kinds
}

#[test]
fn schema_covers_every_kind() {
    let schema = schema();
    let mut expected: BTreeSet<String> = mlctl_spec::Kind::ALL
        .iter()
        .map(|k| k.as_str().to_string())
        .collect();
    expected.insert("Project".into());
    assert_eq!(
        kinds_in(&schema),
        expected,
        "every manifest kind must be a variant of the schema"
    );
}

/// Every property name anywhere in the schema.
fn property_names(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = map.get("properties") {
                out.extend(props.keys().cloned());
            }
            map.values().for_each(|c| property_names(c, out));
        }
        Value::Array(items) => items.iter().for_each(|c| property_names(c, out)),
        _ => {}
    }
}

/// Keys of every mapping in a YAML tree, except under free-form maps (labels, targets,
/// hyperparameters, ...) whose keys are the user's names. Under `overrides` the keys are
/// target names, and what each holds is a partial spec, whose fields are checked.
fn keys_used(node: &mlctl_spec::Node, out: &mut BTreeSet<String>) {
    const FREE_FORM: [&str; 8] = [
        "overrides",
        "labels",
        "annotations",
        "targets",
        "hyperparameters",
        "searchSpace",
        "features",
        "components",
    ];
    if let Some(entries) = node.as_map() {
        for (k, v) in entries {
            let key = k.as_str().unwrap_or_default();
            out.insert(key.to_string());
            if FREE_FORM.contains(&key) {
                for (_, inner) in v.as_map().unwrap_or_default() {
                    keys_used(inner, out);
                }
            } else {
                keys_used(v, out);
            }
        }
    }
    for item in node.as_seq().unwrap_or_default() {
        keys_used(item, out);
    }
}

/// A cheap stand-in for validating the examples against the schema (a JSON Schema validator
/// is a heavy dependency): every field the shipped examples use is a property the schema
/// knows, so editors do not flag a working example.
#[test]
fn schema_knows_every_field_the_examples_use() {
    let mut known = BTreeSet::new();
    property_names(&schema(), &mut known);
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut used = BTreeSet::new();
    let mut files = Vec::new();
    let mut dirs = vec![examples];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read examples").flatten() {
            let p = entry.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(p);
            }
        }
    }
    assert!(!files.is_empty(), "no example manifests found");
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read example");
        for doc in mlctl_spec::yaml::parse(&text)
            .unwrap_or_else(|e| panic!("{}: {}", file.display(), e.message))
        {
            keys_used(&doc, &mut used);
        }
    }
    let unknown: Vec<&String> = used.difference(&known).collect();
    assert!(
        unknown.is_empty(),
        "fields used by examples but absent from the schema: {unknown:?}"
    );
}
