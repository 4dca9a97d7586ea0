//! No input makes the spec loader panic (or overflow its stack): arbitrary text, YAML-ish
//! token soup, manifests generated from the real schema's field names, and random mutations
//! of the iris example. Every diagnostic must also render and point into its file.

mod common;

use common::{MemFiles, assert_position_in_file};
use mlctl_spec::{load, yaml};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::OnceLock;

const PROJECT: &str = "apiVersion: mlctl/v1\nkind: Project\nmetadata:\n  name: fuzz\nspec:\n  targets:\n    local: {provider: local}\n";

/// Parses `text` alone, then loads it as the project file and as a resource manifest, and
/// checks every diagnostic.
fn load_everywhere(text: &str) {
    let _ = yaml::parse(text);
    for files in [
        MemFiles::new([("mlctl.yaml", text)]),
        MemFiles::new([("mlctl.yaml", PROJECT), ("ml/x.yaml", text)]),
    ] {
        let loaded = load(&files);
        for d in &loaded.diagnostics {
            let _ = d.to_string();
            assert_position_in_file(d, &files.0);
        }
    }
}

/// Loads a whole project (the iris example, mutated) and checks every diagnostic.
fn load_project(files: &BTreeMap<String, String>) {
    let files = MemFiles(files.clone());
    let loaded = load(&files);
    for d in &loaded.diagnostics {
        let _ = d.to_string();
        assert_position_in_file(d, &files.0);
    }
}

// ---------------------------------------------------------------------------------------------
// Generators

/// Pieces YAML is made of, so random text reaches deep into the scanner and parser.
fn token_soup() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("- "),
        Just(": "),
        Just(":"),
        Just("\n"),
        Just("  "),
        Just("    "),
        Just("\t"),
        Just("["),
        Just("]"),
        Just("{"),
        Just("}"),
        Just(", "),
        Just("&a "),
        Just("*a"),
        Just("&b "),
        Just("*b"),
        Just("---\n"),
        Just("...\n"),
        Just("\""),
        Just("'"),
        Just("# c"),
        Just("|\n"),
        Just(">-\n"),
        Just("? "),
        Just("!!str "),
        Just("%YAML 1.2\n"),
        Just("\\"),
        Just("key"),
        Just("spec"),
        Just("kind: Dataset"),
        Just("name"),
        Just("1"),
        Just("-1.5e3"),
        Just(".nan"),
        Just("~"),
        Just("${env:X}"),
        Just("é"),
        Just("\u{feff}"),
        Just("\r\n"),
        Just("\0"),
    ];
    prop::collection::vec(token, 0..60).prop_map(|t| t.concat())
}

/// Every property name in the real JSON Schema: keys a manifest may use.
fn schema_keys() -> &'static [String] {
    static KEYS: OnceLock<Vec<String>> = OnceLock::new();
    KEYS.get_or_init(|| {
        fn walk(v: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
            match v {
                serde_json::Value::Object(map) => {
                    if let Some(serde_json::Value::Object(props)) = map.get("properties") {
                        out.extend(props.keys().cloned());
                    }
                    map.values().for_each(|c| walk(c, out));
                }
                serde_json::Value::Array(items) => items.iter().for_each(|c| walk(c, out)),
                _ => {}
            }
        }
        let schema: serde_json::Value =
            serde_json::from_str(&mlctl_spec::schema::json_schema()).expect("schema is JSON");
        let mut keys = std::collections::BTreeSet::new();
        walk(&schema, &mut keys);
        keys.into_iter().collect()
    })
}

/// A YAML tree to render; scalars hold their YAML text (plain or quoted).
#[derive(Debug, Clone)]
enum Tree {
    Scalar(String),
    Seq(Vec<Tree>),
    Map(Vec<(String, Tree)>),
}

/// Scalars that exercise the checks: numbers at the edges, units, schedules, env references,
/// names, enum values, credential shapes, and quoted random text.
fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        prop::sample::select(vec![
            "0",
            "1",
            "-1",
            "0.5",
            "1.5",
            "-0.0",
            "1e400",
            ".nan",
            ".inf",
            "-.inf",
            "0x1F",
            "0o17",
            "99999999999999999999",
            "true",
            "false",
            "null",
            "~",
            "\"\"",
            "iris",
            "iris-train",
            "irs",
            "species",
            "Iris_X",
            "local",
            "mock",
            "sagemaker",
            "azureml",
            "canary",
            "blue-green",
            "all-at-once",
            "logistic_regression",
            "kmeans",
            "psi",
            "production",
            "archived",
            "random",
            "grid",
            "log",
            "maximize",
            "csv",
            "float",
            "category",
            "10m",
            "30s",
            "1h30m",
            "99999999999999999999d",
            "4Gi",
            "4GB",
            "every 1h",
            "every 1s",
            "\"0 * * * *\"",
            "\"61 * * * *\"",
            "\"*/0 * * * *\"",
            "${env:X}",
            "${env:}",
            "\"${foo\"",
            "s3://b/p",
            "gs://b",
            "/abs",
            "../up",
            "data/x.csv",
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "\"(\"",
            "\"\\\\(?\"",
            "\"rmse=([0-9.]+)\"",
        ])
        .prop_map(str::to_string),
        any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(schema_keys().to_vec()),
        1 => "[a-zA-Z_][a-zA-Z0-9_]{0,10}",
    ]
}

fn tree() -> impl Strategy<Value = Tree> {
    scalar()
        .prop_map(Tree::Scalar)
        .prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Tree::Seq),
                prop::collection::vec((key(), inner), 0..6).prop_map(Tree::Map),
            ]
        })
}

/// Renders a tree as YAML; `flow` picks, per collection, block or flow style.
fn render(tree: &Tree, indent: usize, flow: &mut impl Iterator<Item = bool>, out: &mut String) {
    let pad = " ".repeat(indent);
    match tree {
        Tree::Scalar(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Tree::Seq(items) if items.is_empty() => out.push_str("[]\n"),
        Tree::Map(entries) if entries.is_empty() => out.push_str("{}\n"),
        _ if flow.next().unwrap_or(false) => {
            out.push_str(&inline(tree));
            out.push('\n');
        }
        Tree::Seq(items) => {
            out.push('\n');
            for item in items {
                out.push_str(&pad);
                out.push_str("- ");
                render(item, indent + 2, flow, out);
            }
        }
        Tree::Map(entries) => {
            out.push('\n');
            for (k, v) in entries {
                out.push_str(&format!("{pad}{k}: "));
                render(v, indent + 2, flow, out);
            }
        }
    }
}

fn inline(tree: &Tree) -> String {
    match tree {
        Tree::Scalar(s) => s.clone(),
        Tree::Seq(items) => format!(
            "[{}]",
            items.iter().map(inline).collect::<Vec<_>>().join(", ")
        ),
        Tree::Map(entries) => {
            format!(
                "{{{}}}",
                entries
                    .iter()
                    .map(|(k, v)| format!("{k}: {}", inline(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    }
}

/// A manifest: a mostly valid envelope around a generated spec.
fn manifest() -> impl Strategy<Value = String> {
    let kind = prop::sample::select(vec![
        "Dataset",
        "TrainingJob",
        "Model",
        "Endpoint",
        "Monitor",
        "Project",
        "Datset",
    ]);
    let name = prop::sample::select(vec!["iris", "iris-train", "Bad_Name", ""]);
    (kind, name, tree(), any::<u64>()).prop_map(|(kind, name, spec, style)| {
        let mut flow = (0..64).map(move |i| style >> i & 1 == 1);
        let mut out =
            format!("apiVersion: mlctl/v1\nkind: {kind}\nmetadata:\n  name: {name}\nspec: ");
        render(&spec, 2, &mut flow, &mut out);
        out
    })
}

/// The iris example as trees, by file.
fn iris() -> &'static BTreeMap<String, Vec<Tree>> {
    static IRIS: OnceLock<BTreeMap<String, Vec<Tree>>> = OnceLock::new();
    IRIS.get_or_init(|| {
        fn to_tree(node: &mlctl_spec::Node) -> Tree {
            match &node.value {
                yaml::Value::Scalar { text, plain: true }
                    if !text.is_empty() && !text.contains([':', '#', '\n']) =>
                {
                    Tree::Scalar(text.clone())
                }
                yaml::Value::Scalar { text, .. } => {
                    Tree::Scalar(serde_json::to_string(text).unwrap_or_default())
                }
                yaml::Value::Seq(items) => Tree::Seq(items.iter().map(to_tree).collect()),
                yaml::Value::Map(entries) => Tree::Map(
                    entries
                        .iter()
                        .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), to_tree(v)))
                        .collect(),
                ),
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/iris");
        let mut files = BTreeMap::new();
        for rel in [
            "mlctl.yaml",
            "ml/data.yaml",
            "ml/train.yaml",
            "ml/model.yaml",
            "ml/endpoint.yaml",
        ] {
            let text = std::fs::read_to_string(root.join(rel)).expect("iris example");
            let docs = yaml::parse(&text).expect("iris example parses");
            files.insert(rel.to_string(), docs.iter().map(to_tree).collect());
        }
        files
    })
}

/// One change to a tree: at the `at`-th node (modulo the node count) replace the value,
/// delete the entry, or add an entry.
#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, Tree),
    Delete(usize),
    Insert(usize, String, Tree),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), tree()).prop_map(|(at, t)| Mutation::Replace(at, t)),
        2 => any::<usize>().prop_map(Mutation::Delete),
        2 => (any::<usize>(), key(), tree()).prop_map(|(at, k, t)| Mutation::Insert(at, k, t)),
    ]
}

fn count(tree: &Tree) -> usize {
    1 + match tree {
        Tree::Scalar(_) => 0,
        Tree::Seq(items) => items.iter().map(count).sum(),
        Tree::Map(entries) => entries.iter().map(|(_, v)| count(v)).sum(),
    }
}

/// Applies `m` to the node numbered `*at` in pre-order; returns true once applied.
fn apply(tree: &mut Tree, at: &mut usize, m: &Mutation) -> bool {
    if *at == 0 {
        match m {
            Mutation::Replace(_, t) => *tree = t.clone(),
            Mutation::Delete(_) => match tree {
                Tree::Seq(items) => {
                    items.pop();
                }
                Tree::Map(entries) => {
                    entries.pop();
                }
                Tree::Scalar(s) => s.clear(),
            },
            Mutation::Insert(_, k, t) => match tree {
                Tree::Seq(items) => items.push(t.clone()),
                Tree::Map(entries) => entries.push((k.clone(), t.clone())),
                Tree::Scalar(_) => *tree = Tree::Map(vec![(k.clone(), t.clone())]),
            },
        }
        return true;
    }
    *at -= 1;
    match tree {
        Tree::Scalar(_) => false,
        Tree::Seq(items) => items.iter_mut().any(|c| apply(c, at, m)),
        Tree::Map(entries) => entries.iter_mut().any(|(_, c)| apply(c, at, m)),
    }
}

fn mutated_iris() -> impl Strategy<Value = BTreeMap<String, String>> {
    (prop::collection::vec(mutation(), 1..4), any::<u64>()).prop_map(|(mutations, style)| {
        let mut files: Vec<(String, Vec<Tree>)> =
            iris().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let total: usize = files
            .iter()
            .flat_map(|(_, docs)| docs.iter().map(count))
            .sum();
        for m in &mutations {
            let (Mutation::Replace(at, _) | Mutation::Delete(at) | Mutation::Insert(at, ..)) = m;
            let mut at = at % total.max(1);
            'files: for (_, docs) in &mut files {
                for doc in docs {
                    if apply(doc, &mut at, m) {
                        break 'files;
                    }
                }
            }
        }
        let mut flow = (0..64)
            .map(move |i| style >> i & 1 == 1)
            .chain(std::iter::repeat(false));
        files
            .into_iter()
            .map(|(path, docs)| {
                let text = docs
                    .iter()
                    .map(|d| {
                        let mut out = String::new();
                        render(d, 0, &mut flow, &mut out);
                        out.trim_start_matches('\n').to_string()
                    })
                    .collect::<Vec<_>>()
                    .join("---\n");
                (path, text)
            })
            .collect()
    })
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text(text in any::<String>()) {
        load_everywhere(&text);
    }

    #[test]
    fn yaml_token_soup(text in token_soup()) {
        load_everywhere(&text);
    }

    #[test]
    fn manifests_from_the_schema(text in manifest()) {
        load_everywhere(&text);
    }

    #[test]
    fn mutated_iris_example(files in mutated_iris()) {
        load_project(&files);
    }
}

/// The rendering above must produce the example unchanged when nothing is mutated, or the
/// mutation test would only ever see syntax errors.
#[test]
fn unmutated_iris_renders_to_a_valid_project() {
    let mut flow = std::iter::repeat(false);
    let files: BTreeMap<String, String> = iris()
        .iter()
        .map(|(path, docs)| {
            let text = docs
                .iter()
                .map(|d| {
                    let mut out = String::new();
                    render(d, 0, &mut flow, &mut out);
                    out.trim_start_matches('\n').to_string()
                })
                .collect::<Vec<_>>()
                .join("---\n");
            (path.clone(), text)
        })
        .collect();
    let loaded = load(&MemFiles(files));
    let rendered: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
    assert!(loaded.spec.is_some(), "{}", rendered.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Inputs that used to crash, or would with a naive parser

#[test]
fn deep_block_nesting_is_an_error_not_a_stack_overflow() {
    for text in [
        "- ".repeat(100_000) + "x",
        "[".repeat(100_000),
        "{a: ".repeat(10_000),
    ] {
        assert!(yaml::parse(&text).is_err());
        load_everywhere(&text);
    }
    let indented: String = (0..2_000)
        .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
        .collect();
    assert!(yaml::parse(&indented).is_err());
}

#[test]
fn plain_yaml_is_never_refused_for_its_number_of_values() {
    // 1.35 million values in 150,000 documents, no alias: more than the alias budget alone.
    let text: String = (0..150_000)
        .map(|i| format!("---\nname: d{i}\nlist: [a, b, c, d]\n"))
        .collect();
    let docs = yaml::parse(&text).expect("plain YAML parses");
    assert_eq!(docs.len(), 150_000);
    // The densest plain text, `[a,a,...]`: one value per two bytes.
    let dense = format!("[{}a]", "a,".repeat(1_500_000));
    assert!(yaml::parse(&dense).is_ok());
}

#[test]
fn alias_bombs_are_refused() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let err = yaml::parse(&text).expect_err("10^12 nodes");
    assert!(
        err.message.contains("expands to more than"),
        "{}",
        err.message
    );
    // A chain of aliases each one level deeper must not build a tree deeper than the cap.
    let mut chain = String::from("a0: &a0 [x]\n");
    for i in 1..200 {
        chain.push_str(&format!("a{i}: &a{i} [*a{}]\n", i - 1));
    }
    assert!(yaml::parse(&chain).is_err());
}

#[test]
fn huge_numbers_in_units_are_errors() {
    let train = "apiVersion: mlctl/v1\nkind: Endpoint\nmetadata: {name: e}\nspec:\n  model: m\n  strategy: {type: canary, percent: 5, bakeTime: 99999999999999999999d}\n  compute: {memory: 99999999999999999999999Gi, timeout: 18446744073709551615s18446744073709551615s}\n";
    load_everywhere(train);
}

#[test]
fn a_long_chain_of_transforms_is_walked_without_recursion() {
    // d0 <- d1 <- ... <- d{N-1}, and d0 reads d{N-1}: one cycle through every dataset. A
    // recursive walk needs a stack frame per dataset and overflows a test thread's stack.
    const N: usize = 20_000;
    let mut text = String::new();
    for i in 0..N {
        let input = (i + N - 1) % N;
        text.push_str(&format!(
            "---\napiVersion: mlctl/v1\nkind: Dataset\nmetadata: {{name: d{i}}}\nspec:\n  transform: {{command: python t.py, inputs: [d{input}], output: out/d{i}.csv}}\n"
        ));
    }
    let files = MemFiles::new([("mlctl.yaml", PROJECT), ("ml/chain.yaml", text.as_str())]);
    let loaded = load(&files);
    let cycles: Vec<_> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.message.contains("cycle"))
        .collect();
    assert_eq!(cycles.len(), 1, "{:?}", loaded.diagnostics.first());
    assert!(
        cycles[0].message.len() < 500,
        "the cycle is shown by its ends: {}",
        cycles[0].message
    );
}
