//! Stage 2: from parsed manifests to a validated [`Spec`], collecting every diagnostic.

use crate::de::{DeError, DeErrorKind, from_node};
use crate::diag::Diagnostic;
use crate::env;
use crate::model::*;
use crate::suggest::did_you_mean;
use crate::units;
use crate::yaml::{self, Node, ScalarType, Span, Value};
use crate::{
    Files, Kind, Loaded, Location, PROJECT_FILE, Project, Resource, ResourceId, ResourceSpec, Spec,
};
use serde::de::DeserializeOwned;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

struct Ctx {
    sources: BTreeMap<String, String>,
    diags: Vec<Diagnostic>,
    /// Resources that were written but could not be loaded; references to them are not
    /// reported as undefined (the author misspelled the definition, not the reference).
    shadows: Vec<Shadow>,
}

/// What a manifest that failed to load may have declared: `None` means "could be anything".
#[derive(Debug, Default)]
struct Shadow {
    kind: Option<Kind>,
    name: Option<String>,
}

impl Shadow {
    fn covers(&self, id: &ResourceId) -> bool {
        self.kind.is_none_or(|k| k == id.kind) && self.name.as_ref().is_none_or(|n| *n == id.name)
    }
}

impl Ctx {
    fn err(
        &mut self,
        code: &'static str,
        file: &str,
        span: Option<Span>,
        msg: impl Into<String>,
    ) -> &mut Diagnostic {
        let src = self.sources.get(file).map(String::as_str).unwrap_or("");
        self.diags
            .push(Diagnostic::error(code, file, src, span, msg));
        self.diags.last_mut().expect("just pushed")
    }

    fn hint(
        &mut self,
        code: &'static str,
        file: &str,
        span: Option<Span>,
        msg: impl Into<String>,
        hint: Option<String>,
    ) {
        let d = self.err(code, file, span, msg);
        d.hint = hint;
    }

    /// Deserializes the value of `key` in `parent` (`spec` or `metadata` of a manifest) as
    /// `T`, reporting every problem with the path of the field it is about; `None` on a
    /// fatal problem (a wrong type or a missing field).
    fn typed<T: DeserializeOwned>(
        &mut self,
        file: &str,
        parent: &Node,
        key: &str,
        what: &str,
    ) -> Option<T> {
        let node = parent.get(key)?;
        let issues = RefCell::new(Vec::new());
        let result = from_node::<T>(node, &issues);
        let issues = issues.into_inner();
        let (value, fatal) = match result {
            // Unknown fields are reported but the value is kept, so references to this
            // resource still resolve and no follow-on errors appear.
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e)),
        };
        for e in issues.into_iter().chain(fatal) {
            self.de_error(file, parent, key, what, e);
        }
        value
    }

    fn de_error(&mut self, file: &str, parent: &Node, key: &str, what: &str, e: DeError) {
        let Some(node) = parent.get(key) else { return };
        // `field` in `what`, or `what` itself when the problem is the whole value.
        let subject = |path: &[PathSeg]| {
            if path.is_empty() {
                what.to_string()
            } else {
                format!("`{}`", dotted(path))
            }
        };
        let mut span = e.span;
        let mut hint = e.hint;
        let (code, message) = match e.kind {
            DeErrorKind::UnknownField { field } => {
                let mut path = span
                    .and_then(|s| path_to(node, s, true))
                    .unwrap_or_default();
                path.pop();
                path.push(PathSeg::Key(field));
                (
                    "unknown-field",
                    format!("unknown field `{}` in {what}", dotted(&path)),
                )
            }
            DeErrorKind::MissingField { field } => {
                let path = span
                    .and_then(|s| path_to(node, s, false))
                    .unwrap_or_default();
                // Point at the key holding the incomplete mapping, not at its first entry.
                let mut full = vec![key.to_string()];
                full.extend(path.iter().map(PathSeg::to_string));
                span =
                    point_at(parent, &full.iter().map(String::as_str).collect::<Vec<_>>()).or(span);
                let mut field_path = path;
                field_path.push(PathSeg::Key(field));
                (
                    "missing-field",
                    format!("missing required field `{}` in {what}", dotted(&field_path)),
                )
            }
            DeErrorKind::UnknownValue { value } => {
                let path = span
                    .and_then(|s| path_to(node, s, false))
                    .unwrap_or_default();
                (
                    "unknown-value",
                    format!("unknown value `{value}` for {}", subject(&path)),
                )
            }
            DeErrorKind::WrongType { expected, found } => {
                let path = span
                    .and_then(|s| path_to(node, s, false))
                    .unwrap_or_default();
                let value = node.at(&path
                    .iter()
                    .map(PathSeg::to_string)
                    .collect::<Vec<_>>()
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>());
                if let Some(Node {
                    value: Value::Scalar { text, plain: false },
                    ..
                }) = value
                    && !matches!(
                        yaml::resolve_plain(text),
                        ScalarType::Str | ScalarType::Null
                    )
                {
                    hint = Some(format!(
                        "`{text}` is quoted, so it is a string; write it without quotes"
                    ));
                }
                (
                    "wrong-type",
                    format!("expected {expected} for {}, found {found}", subject(&path)),
                )
            }
            DeErrorKind::Other { message } => {
                let path = span
                    .and_then(|s| path_to(node, s, false))
                    .unwrap_or_default();
                ("bad-value", format!("{message} (in {})", subject(&path)))
            }
        };
        self.hint(code, file, span, message, hint);
    }

    fn shadowed(&self, id: &ResourceId) -> bool {
        self.shadows.iter().any(|s| s.covers(id))
    }
}

/// One step of a path into a YAML tree.
#[derive(Debug, Clone, PartialEq)]
enum PathSeg {
    Key(String),
    Index(usize),
}

impl std::fmt::Display for PathSeg {
    /// The form [`Node::at`] takes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathSeg::Key(k) => f.write_str(k),
            PathSeg::Index(i) => write!(f, "{i}"),
        }
    }
}

/// `strategy.rollback.maxErrorRate`, `gates[0].min`: a path as users write it.
fn dotted(path: &[PathSeg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            PathSeg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            PathSeg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The path from `root` to the node at `span`: to a mapping key when `key` is true (the path
/// then ends with that key), else to a value (`root` itself gives an empty path).
fn path_to(root: &Node, span: Span, key: bool) -> Option<Vec<PathSeg>> {
    if !key && root.span == span {
        return Some(Vec::new());
    }
    let step = |seg: PathSeg, child: &Node| -> Option<Vec<PathSeg>> {
        let mut rest = path_to(child, span, key)?;
        rest.insert(0, seg);
        Some(rest)
    };
    match &root.value {
        Value::Scalar { .. } => None,
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| step(PathSeg::Index(i), item)),
        Value::Map(entries) => entries.iter().find_map(|(k, v)| {
            let name = PathSeg::Key(k.as_str().unwrap_or_default().to_string());
            if key && k.span == span {
                return Some(vec![name]);
            }
            step(name, v)
        }),
    }
}

/// Where to point for a problem with the node at `path` under `root`. A block mapping or list
/// spans many lines and starts at its first entry, so the key that holds it is pointed at
/// instead; anything else (a scalar, a one-line `[...]` or `{...}`) is pointed at directly.
fn point_at(root: &Node, path: &[&str]) -> Option<Span> {
    let node = root.at(path)?;
    if let (Some((last, parent_path)), Value::Map(_) | Value::Seq(_)) =
        (path.split_last(), &node.value)
        && let Some(key) = root.at(parent_path).and_then(|p| p.key(last))
        && node.span.line > key.span.line
    {
        return Some(key.span);
    }
    Some(node.span)
}

/// A manifest document after envelope checks.
struct Doc {
    file: String,
    node: Arc<Node>,
    /// `None` for the Project.
    kind: Option<Kind>,
    metadata: Metadata,
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
}

pub(crate) fn load(files: &dyn Files) -> Loaded {
    let mut ctx = Ctx {
        sources: BTreeMap::new(),
        diags: Vec::new(),
        shadows: Vec::new(),
    };
    let project = load_project(files, &mut ctx);
    let mut docs = Vec::new();
    if let Some(project) = &project {
        for path in manifest_files(files, &project.manifests, &mut ctx) {
            docs.extend(parse_file(files, &path, &mut ctx, false));
        }
    }
    let resources = resources_from(docs, &mut ctx);
    let resources = match &project {
        Some(p) => check_graph(resources, p, &mut ctx),
        None => resources,
    };
    check_literals(&mut ctx, &resources);
    ctx.diags
        .sort_by(|a, b| (a.file.as_str(), a.span).cmp(&(b.file.as_str(), b.span)));
    // No diagnostic may echo a secret, whichever check wrote it (a bucket check quoting the
    // value, a syntax error on the secret's line): mask credential shapes everywhere.
    for d in &mut ctx.diags {
        d.message = env::redact(&d.message).into_owned();
        d.hint = d.hint.as_deref().map(|h| env::redact(h).into_owned());
        d.source_line = d
            .source_line
            .as_deref()
            .map(|l| env::redact(l).into_owned());
    }
    let ok = !ctx.diags.iter().any(Diagnostic::is_error);
    let spec = match project {
        Some(project) if ok => Some(Spec {
            project,
            resources,
            sources: ctx.sources,
        }),
        _ => None,
    };
    Loaded {
        spec,
        diagnostics: ctx.diags,
    }
}

fn read(files: &dyn Files, path: &str, ctx: &mut Ctx) -> Option<String> {
    match files.read(path) {
        Ok(Some(text)) => {
            ctx.sources.insert(path.to_string(), text.clone());
            Some(text)
        }
        Ok(None) => None,
        Err(e) => {
            ctx.err("io", path, None, format!("cannot read {path}: {e}"));
            None
        }
    }
}

fn parse_file(files: &dyn Files, path: &str, ctx: &mut Ctx, is_project_file: bool) -> Vec<Doc> {
    const ENVELOPE: [&str; 4] = ["apiVersion", "kind", "metadata", "spec"];
    let Some(text) = read(files, path, ctx) else {
        return Vec::new();
    };
    let nodes = match yaml::parse(&text) {
        Ok(nodes) => nodes,
        Err(e) => {
            let (code, message) = if e.message.starts_with("duplicate key") {
                ("duplicate-key", e.message)
            } else {
                ("yaml-syntax", format!("invalid YAML: {}", e.message))
            };
            let hint = e.hint.unwrap_or_else(|| {
                "the YAML parser stopped here; the mistake is on this line or just before it".into()
            });
            ctx.hint(code, path, Some(e.span), message, Some(hint));
            // What this file declares is unknown: any reference may be to it.
            ctx.shadows.push(Shadow::default());
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for node in nodes {
        if node.as_map().is_none() {
            ctx.err(
                "not-a-manifest",
                path,
                Some(node.span),
                format!("expected a manifest (a mapping with apiVersion, kind, metadata, spec), found {}", node.type_name()),
            );
            continue;
        }
        let declared_name = node
            .at(&["metadata", "name"])
            .and_then(Node::as_str)
            .map(str::to_string);
        // Envelope checks, each independent so all are reported. An unknown key that is a
        // typo of a required one (`specs`) is reported once, not also as a missing field.
        let mut fine = true;
        let mut typo_of = BTreeSet::new();
        for (k, _) in node.as_map().unwrap_or_default() {
            let key = k.as_str().unwrap_or_default();
            if !ENVELOPE.contains(&key) {
                let suggestion = did_you_mean(key, ENVELOPE);
                typo_of.extend(suggestion);
                let hint = match suggestion {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "a manifest has apiVersion, kind, metadata and spec".into(),
                };
                ctx.hint(
                    "unknown-field",
                    path,
                    Some(k.span),
                    format!("unknown field `{key}` in manifest"),
                    Some(hint),
                );
                fine = false;
            }
        }
        let missing = |field: &str| node.get(field).is_none() && !typo_of.contains(field);
        match node.get("apiVersion") {
            None => {
                if missing("apiVersion") {
                    ctx.err(
                        "missing-field",
                        path,
                        Some(node.span),
                        "missing required field `apiVersion` in manifest",
                    )
                    .hint = Some(format!("add `apiVersion: {API_VERSION}` as the first line"));
                }
                fine = false;
            }
            Some(v) if v.as_str() != Some(API_VERSION) => {
                ctx.err(
                    "bad-api-version",
                    path,
                    Some(v.span),
                    format!("unsupported apiVersion `{}`", v.as_str().unwrap_or("?")),
                )
                .hint = Some(format!("this mlctl reads `apiVersion: {API_VERSION}`"));
                fine = false;
            }
            _ => {}
        }
        let kind_node = node.get("kind");
        let kind_str = kind_node.and_then(Node::as_str).unwrap_or("");
        let kind = if kind_str == "Project" {
            if !is_project_file {
                ctx.err(
                    "misplaced-project",
                    path,
                    kind_node.map(|n| n.span),
                    "a Project manifest belongs in mlctl.yaml, not among resource manifests",
                )
                .hint =
                    Some("move it to mlctl.yaml at the project root, or delete this copy".into());
                continue;
            }
            None
        } else {
            match Kind::parse(kind_str) {
                Some(k) if !is_project_file => Some(k),
                Some(k) => {
                    ctx.err(
                        "misplaced-resource",
                        path,
                        kind_node.map(|n| n.span),
                        format!("{PROJECT_FILE} holds only the Project; put the {kind_str} in a manifest directory"),
                    )
                    .hint = Some("move it to a file under a directory listed in spec.manifests (default `ml/`)".into());
                    ctx.shadows.push(Shadow {
                        kind: Some(k),
                        name: declared_name,
                    });
                    continue;
                }
                None => {
                    let names = [
                        "Project",
                        "Dataset",
                        "TrainingJob",
                        "Model",
                        "Endpoint",
                        "Monitor",
                    ];
                    if kind_node.is_some() {
                        let hint = match did_you_mean(kind_str, names) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => format!("kinds are: {}", names.join(", ")),
                        };
                        let span = kind_node.map(|n| n.span);
                        ctx.hint(
                            "unknown-kind",
                            path,
                            span,
                            format!("unknown kind `{kind_str}`"),
                            Some(hint),
                        );
                    } else if missing("kind") {
                        let hint = format!("add `kind:` with one of: {}", names.join(", "));
                        ctx.hint(
                            "missing-field",
                            path,
                            Some(node.span),
                            "missing required field `kind` in manifest",
                            Some(hint),
                        );
                    }
                    ctx.shadows.push(Shadow {
                        kind: None,
                        name: declared_name,
                    });
                    continue;
                }
            }
        };
        let shadow = Shadow {
            kind,
            name: declared_name,
        };
        if node.get("metadata").is_none() {
            if missing("metadata") {
                ctx.err(
                    "missing-field",
                    path,
                    Some(node.span),
                    "missing required field `metadata` in manifest",
                )
                .hint = Some("add `metadata: {name: ...}`".into());
            }
            ctx.shadows.push(shadow);
            continue;
        }
        let Some(metadata) = ctx.typed::<Metadata>(path, &node, "metadata", "metadata") else {
            ctx.shadows.push(shadow);
            continue;
        };
        if !valid_name(&metadata.name) {
            let span = node.at(&["metadata", "name"]).map(|n| n.span);
            ctx.err("bad-name", path, span, format!("invalid name `{}`", metadata.name)).hint = Some(
                "names use lowercase letters, digits and `-`, start with a letter, and are at most 63 characters".into(),
            );
            fine = false;
        }
        if node.get("spec").is_none() {
            if missing("spec") {
                ctx.err(
                    "missing-field",
                    path,
                    Some(node.span),
                    "missing required field `spec` in manifest",
                )
                .hint = Some("add the `spec:` mapping for this kind".into());
            }
            fine = false;
        }
        if !fine {
            ctx.shadows.push(shadow);
            continue;
        }
        out.push(Doc {
            file: path.to_string(),
            node: Arc::new(node),
            kind,
            metadata,
        });
    }
    out
}

fn load_project(files: &dyn Files, ctx: &mut Ctx) -> Option<Project> {
    if matches!(files.read(PROJECT_FILE), Ok(None)) {
        ctx.err(
            "no-project",
            PROJECT_FILE,
            None,
            format!("no {PROJECT_FILE} in the project directory"),
        )
        .hint = Some("run `mlctl init DIR` to scaffold a project, or pass --project DIR".into());
        return None;
    }
    let mut docs = parse_file(files, PROJECT_FILE, ctx, true);
    if docs.len() != 1 {
        if docs.len() > 1 {
            let span = docs[1].node.span;
            ctx.err(
                "many-projects",
                PROJECT_FILE,
                Some(span),
                format!("{PROJECT_FILE} must hold exactly one Project manifest"),
            );
        } else if !ctx.diags.iter().any(|d| d.file == PROJECT_FILE) {
            ctx.err(
                "no-project",
                PROJECT_FILE,
                None,
                format!("{PROJECT_FILE} holds no Project manifest"),
            )
            .hint = Some("start it with `apiVersion: mlctl/v1` and `kind: Project`".into());
        }
        return None;
    }
    let doc = docs.remove(0);
    let name = doc.metadata.name.clone();
    let spec_node = doc.node.get("spec")?;
    let spec: ProjectSpec = ctx.typed(PROJECT_FILE, &doc.node, "spec", "Project spec")?;
    let manifests = spec
        .manifests
        .clone()
        .unwrap_or_else(|| vec!["ml/".to_string()]);
    let mut targets = spec.targets.clone();
    for (tname, target) in &spec.targets {
        let tnode = spec_node.at(&["targets", tname]).unwrap_or(spec_node);
        let key_span = spec_node
            .get("targets")
            .and_then(|t| t.key(tname))
            .map(|k| k.span);
        check_target(ctx, tname, target, tnode, key_span);
    }
    if targets.is_empty() {
        targets.insert(
            "local".into(),
            Target {
                provider: "local".into(),
                ..Target::default()
            },
        );
    }
    let default_target = match &spec.default_target {
        Some(t) => {
            if !targets.contains_key(t) {
                let span = spec_node.get("defaultTarget").map(|n| n.span);
                let known: Vec<&str> = targets.keys().map(String::as_str).collect();
                let hint = match did_you_mean(t, known.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`? defined targets: {}", known.join(", ")),
                    None => format!("defined targets: {}", known.join(", ")),
                };
                ctx.hint(
                    "unknown-target",
                    PROJECT_FILE,
                    span,
                    format!("default target `{t}` is not defined"),
                    Some(hint),
                );
            }
            t.clone()
        }
        None if targets.contains_key("local") || targets.len() != 1 => "local".to_string(),
        None => targets.keys().next().cloned().unwrap_or_default(),
    };
    if !valid_name(&name) {
        return None;
    }
    Some(Project {
        name,
        labels: doc.metadata.labels,
        manifests,
        default_target,
        targets,
    })
}

const PROVIDERS: [&str; 4] = ["local", "mock", "sagemaker", "azureml"];

/// The YAML name of a strategy type.
fn strategy_name(ty: StrategyType) -> &'static str {
    match ty {
        StrategyType::AllAtOnce => "all-at-once",
        StrategyType::Canary => "canary",
        StrategyType::BlueGreen => "blue-green",
    }
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Checks one target: a known provider, the fields it needs, none it does not take.
/// `key_span` is where the target's name is written.
fn check_target(ctx: &mut Ctx, name: &str, t: &Target, node: &Node, key_span: Option<Span>) {
    let span_of = |f: &str| node.get(f).map(|n| n.span).or(Some(node.span));
    let provider = match t.provider.as_str() {
        "local" => ProviderKind::Local,
        "mock" => ProviderKind::Mock,
        "sagemaker" => ProviderKind::Sagemaker,
        "azureml" => ProviderKind::Azureml,
        other => {
            let hint = match did_you_mean(other, PROVIDERS) {
                Some(s) => format!(
                    "did you mean `{s}`? providers are: {}",
                    PROVIDERS.join(", ")
                ),
                None => format!("providers are: {}", PROVIDERS.join(", ")),
            };
            ctx.hint(
                "unknown-provider",
                PROJECT_FILE,
                span_of("provider"),
                format!("unknown provider `{other}` for target `{name}`"),
                Some(hint),
            );
            return;
        }
    };
    let (required, allowed): (&[&str], &[&str]) = match provider {
        ProviderKind::Local => (&[], &["root", "components"]),
        ProviderKind::Mock => (&[], &["root", "latency", "faults", "components"]),
        ProviderKind::Sagemaker => (
            &["region", "roleArn", "bucket"],
            &[
                "region",
                "roleArn",
                "bucket",
                "endpointUrl",
                "components",
                "root",
            ],
        ),
        ProviderKind::Azureml => (
            &["subscription", "resourceGroup", "workspace", "storage"],
            &[
                "subscription",
                "resourceGroup",
                "workspace",
                "storage",
                "endpointUrl",
                "components",
                "root",
            ],
        ),
    };
    // Keys that are no Target field at all were reported by serde (with a "did you mean");
    // a required field they are a typo of is not reported again as missing.
    const TARGET_FIELDS: [&str; 13] = [
        "provider",
        "root",
        "region",
        "roleArn",
        "bucket",
        "endpointUrl",
        "subscription",
        "resourceGroup",
        "workspace",
        "storage",
        "latency",
        "faults",
        "components",
    ];
    let unknown_keys: Vec<&str> = node
        .as_map()
        .unwrap_or_default()
        .iter()
        .filter_map(|(k, _)| k.as_str())
        .filter(|k| !TARGET_FIELDS.contains(k))
        .collect();
    let typo_of: Vec<&str> = unknown_keys
        .iter()
        .filter_map(|k| did_you_mean(k, required.iter().copied()))
        .collect();
    let missing: Vec<String> = required
        .iter()
        .filter(|f| node.get(f).is_none_or(Node::is_null) && !typo_of.contains(f))
        .map(|f| format!("`{f}`"))
        .collect();
    if !missing.is_empty() {
        let fields = if missing.len() == 1 {
            "field"
        } else {
            "fields"
        };
        ctx.err(
            "missing-field",
            PROJECT_FILE,
            key_span.or(Some(node.span)),
            format!(
                "target `{name}` (provider {}) is missing required {fields} {}",
                provider.as_str(),
                and_list(&missing)
            ),
        )
        .hint = Some(format!(
            "{} targets need {}; write account values as `${{env:NAME}}`",
            provider.as_str(),
            and_list(
                &required
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
            )
        ));
    }
    for (k, _) in node.as_map().unwrap_or_default() {
        let key = k.as_str().unwrap_or_default();
        if key != "provider" && !allowed.contains(&key) && !unknown_keys.contains(&key) {
            ctx.err(
                "field-not-for-provider",
                PROJECT_FILE,
                Some(k.span),
                format!(
                    "field `{key}` does not apply to provider `{}` (target `{name}`)",
                    provider.as_str()
                ),
            )
            .hint = Some(format!(
                "{} targets take: provider, {}",
                provider.as_str(),
                allowed.join(", ")
            ));
        }
    }
    if let Some(b) = &t.bucket
        && !b.starts_with("s3://")
        && !b.starts_with("${env:")
    {
        ctx.err(
            "bad-value",
            PROJECT_FILE,
            span_of("bucket"),
            format!("bucket `{b}` is not an s3:// URL"),
        )
        .hint = Some("write `s3://bucket/prefix`".into());
    }
    if let Some(l) = &t.latency
        && let Err(e) = units::parse_duration(l)
    {
        ctx.err("bad-value", PROJECT_FILE, span_of("latency"), e);
    }
    if let Some(c) = &t.components {
        let cnode = node.get("components").unwrap_or(node);
        for comp in c.keys() {
            const COMPONENTS: [&str; 5] = [
                "dataStore",
                "trainer",
                "registry",
                "deployer",
                "monitorSink",
            ];
            if !COMPONENTS.contains(&comp.as_str()) {
                let hint = did_you_mean(comp, COMPONENTS)
                    .map(|s| format!("did you mean `{s}`?"))
                    .unwrap_or(format!("components are: {}", COMPONENTS.join(", ")));
                ctx.hint(
                    "unknown-field",
                    PROJECT_FILE,
                    cnode.key(comp).map(|n| n.span),
                    format!("unknown component `{comp}` in target `{name}`"),
                    Some(hint),
                );
            }
        }
    }
}

/// Where `entry` is written in mlctl.yaml's `spec.manifests`.
fn manifest_entry_span(ctx: &Ctx, entry: &str) -> Option<Span> {
    let docs = yaml::parse(ctx.sources.get(PROJECT_FILE)?).ok()?;
    let list = docs.first()?.at(&["spec", "manifests"])?;
    list.as_seq()?
        .iter()
        .find(|n| n.as_str() == Some(entry))
        .map(|n| n.span)
}

/// The capture groups of a regex: `(` not escaped, not in a `[...]` class, and not `(?...)`
/// unless named (`(?P<x>` or `(?<x>`).
fn capture_groups(regex: &str) -> usize {
    let chars: Vec<char> = regex.chars().collect();
    let (mut i, mut count, mut in_class) = (0, 0, false);
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1,
            ']' if in_class => in_class = false,
            _ if in_class => {}
            '[' => {
                in_class = true;
                // `[]...]` and `[^]...]`: a `]` first in a class is literal.
                if chars.get(i + 1) == Some(&'^') {
                    i += 1;
                }
                if chars.get(i + 1) == Some(&']') {
                    i += 1;
                }
            }
            '(' => {
                let named = match (chars.get(i + 2), chars.get(i + 3)) {
                    (Some('P'), Some('<')) => true,
                    (Some('<'), next) => !matches!(next, Some('=' | '!')),
                    _ => false,
                };
                if chars.get(i + 1) != Some(&'?') || named {
                    count += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    count
}

fn manifest_files(files: &dyn Files, manifests: &[String], ctx: &mut Ctx) -> Vec<String> {
    let mut out = BTreeSet::new();
    for m in manifests {
        let dir = m.trim_end_matches('/');
        match files.list(dir) {
            Ok(Some(list)) => out.extend(
                list.into_iter()
                    .filter(|f| f.ends_with(".yaml") || f.ends_with(".yml")),
            ),
            Ok(None) => match files.read(dir) {
                Ok(Some(_)) => {
                    out.insert(dir.to_string());
                }
                _ => {
                    let span = manifest_entry_span(ctx, m);
                    ctx.err(
                        "missing-manifests",
                        PROJECT_FILE,
                        span,
                        format!("manifest path `{m}` does not exist"),
                    )
                    .hint = Some("create it, or fix spec.manifests in mlctl.yaml".into());
                }
            },
            Err(e) => {
                ctx.err("io", PROJECT_FILE, None, format!("cannot list {m}: {e}"));
            }
        }
    }
    out.into_iter().collect()
}

fn resources_from(docs: Vec<Doc>, ctx: &mut Ctx) -> Vec<Resource> {
    let mut out: Vec<Resource> = Vec::new();
    for doc in docs {
        let Some(kind) = doc.kind else { continue };
        let what = format!("{kind} spec");
        let (file, node) = (doc.file.as_str(), doc.node.as_ref());
        let spec = match kind {
            Kind::Dataset => ctx
                .typed::<DatasetSpec>(file, node, "spec", &what)
                .map(ResourceSpec::Dataset),
            Kind::TrainingJob => ctx
                .typed::<TrainingJobSpec>(file, node, "spec", &what)
                .map(ResourceSpec::TrainingJob),
            Kind::Model => ctx
                .typed::<ModelSpec>(file, node, "spec", &what)
                .map(ResourceSpec::Model),
            Kind::Endpoint => ctx
                .typed::<EndpointSpec>(file, node, "spec", &what)
                .map(ResourceSpec::Endpoint),
            Kind::Monitor => ctx
                .typed::<MonitorSpec>(file, node, "spec", &what)
                .map(ResourceSpec::Monitor),
        };
        let id = ResourceId::new(kind, doc.metadata.name.clone());
        let name_span = |n: &Node| {
            n.at(&["metadata", "name"])
                .map(|n| n.span)
                .unwrap_or(n.span)
        };
        if let Some(first) = out.iter().find(|r| r.id == id) {
            let first_at = name_span(&first.node);
            let first_loc = format!("{}:{}:{}", first.location.file, first_at.line, first_at.col);
            ctx.err(
                "duplicate-name",
                file,
                Some(name_span(node)),
                format!("{kind} `{}` is defined twice", id.name),
            )
            .hint = Some(format!(
                "first defined at {first_loc}; names must be unique per kind, so rename one of them"
            ));
            continue;
        }
        let Some(spec) = spec else {
            ctx.shadows.push(Shadow {
                kind: Some(kind),
                name: Some(id.name),
            });
            continue;
        };
        let location = Location {
            file: doc.file.clone(),
            span: doc.node.span,
        };
        let mut r = Resource {
            id,
            metadata: doc.metadata,
            spec,
            location,
            node: doc.node.clone(),
            depends_on: Vec::new(),
        };
        check_resource(ctx, &mut r);
        out.push(r);
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// Checks ranges and cross-field rules of one resource and applies defaults.
fn check_resource(ctx: &mut Ctx, r: &mut Resource) {
    let file = r.location.file.clone();
    let node = r.node.clone();
    let at = |path: &[&str]| -> Option<Span> {
        let mut full = vec!["spec"];
        full.extend_from_slice(path);
        // The closest node that exists, so a missing field points at its parent.
        (0..=full.len())
            .rev()
            .find_map(|n| point_at(&node, &full[..n]))
    };
    match &mut r.spec {
        ResourceSpec::Dataset(d) => {
            match (&d.source, &d.transform) {
                (None, None) => {
                    ctx.err("missing-field", &file, at(&[]), format!("dataset `{}` needs a `source` or a `transform`", r.id.name))
                        .hint = Some("set `source: data/file.csv` (or s3://, az://, https://), or derive it with `transform`".into());
                }
                (Some(_), Some(_)) => {
                    ctx.err(
                        "conflicting-fields",
                        &file,
                        at(&["transform"]),
                        "`source` and `transform` cannot both be set",
                    )
                    .hint = Some(
                        "a derived dataset's source is its transform's output; remove `source`"
                            .into(),
                    );
                }
                _ => {}
            }
            if let Some(src) = &d.source {
                let known = ["s3://", "az://", "https://", "http://", "gs://"];
                if src.contains("://") && !known.iter().any(|p| src.starts_with(p)) {
                    ctx.err(
                        "bad-value",
                        &file,
                        at(&["source"]),
                        format!("unsupported source scheme in `{src}`"),
                    )
                    .hint = Some("sources are project paths, s3://, az:// or https:// URLs".into());
                } else if src.starts_with("gs://") {
                    ctx.err(
                        "bad-value",
                        &file,
                        at(&["source"]),
                        "gs:// sources are not supported yet",
                    )
                    .hint =
                        Some("copy the data to a project path, s3://, az:// or https://".into());
                } else if !src.contains("://")
                    && (src.starts_with('/') || src.split('/').any(|p| p == ".."))
                {
                    ctx.err("bad-value", &file, at(&["source"]), format!("source `{src}` is outside the project"))
                        .hint = Some("use a path relative to the project directory, so the spec in git is reproducible".into());
                }
                if d.format.is_none() {
                    let lower = src.to_ascii_lowercase();
                    if lower.ends_with(".parquet") || lower.ends_with(".pq") {
                        d.format = Some(DataFormat::Parquet);
                    } else if lower.ends_with(".csv") || lower.ends_with(".csv.gz") {
                        d.format = Some(DataFormat::Csv);
                    } else {
                        ctx.err(
                            "missing-field",
                            &file,
                            at(&["source"]),
                            format!("cannot tell the format of `{src}` from its name"),
                        )
                        .hint = Some("add `format: csv` or `format: parquet`".into());
                    }
                }
            } else if d.format.is_none() {
                d.format = Some(DataFormat::Csv);
            }
            if let Some(digest) = &d.digest
                && (digest.len() != 64 || !digest.chars().all(|c| c.is_ascii_hexdigit()))
            {
                ctx.err(
                    "bad-value",
                    &file,
                    at(&["digest"]),
                    "digest must be a 64-character blake3 hex digest",
                )
                .hint = Some("run `mlctl data digest FILE` to compute it".into());
            }
            let columns: Vec<String> = d
                .schema
                .as_ref()
                .map(|s| s.columns.iter().map(|c| c.name.clone()).collect())
                .unwrap_or_default();
            if let Some(schema) = &d.schema {
                let mut seen = BTreeSet::new();
                for (i, c) in schema.columns.iter().enumerate() {
                    let idx = i.to_string();
                    if !seen.insert(c.name.as_str()) {
                        ctx.err(
                            "duplicate-name",
                            &file,
                            at(&["schema", "columns", &idx, "name"]),
                            format!("column `{}` is declared twice", c.name),
                        );
                    }
                    if let (Some(lo), Some(hi)) = (c.min, c.max)
                        && lo > hi
                    {
                        ctx.err(
                            "out-of-range",
                            &file,
                            at(&["schema", "columns", &idx, "min"]),
                            format!("column `{}`: min {lo} is greater than max {hi}", c.name),
                        );
                    }
                    if (c.min.is_some() || c.max.is_some())
                        && !matches!(c.ty, ColumnType::Float | ColumnType::Int)
                    {
                        ctx.err(
                            "conflicting-fields",
                            &file,
                            at(&["schema", "columns", &idx, "min"]),
                            format!(
                                "column `{}`: min/max apply to float and int columns only",
                                c.name
                            ),
                        );
                    }
                    match (&c.categories, c.ty) {
                        (Some(_), ty) if ty != ColumnType::Category => {
                            ctx.err("conflicting-fields", &file, at(&["schema", "columns", &idx, "categories"]), format!("column `{}`: categories apply to `type: category` columns only", c.name));
                        }
                        (Some(cats), _) if cats.is_empty() => {
                            ctx.err(
                                "out-of-range",
                                &file,
                                at(&["schema", "columns", &idx, "categories"]),
                                format!("column `{}`: categories list is empty", c.name),
                            );
                        }
                        _ => {}
                    }
                }
                if let Some(f) = schema.max_missing_fraction
                    && !(0.0..=1.0).contains(&f)
                {
                    ctx.err(
                        "out-of-range",
                        &file,
                        at(&["schema", "maxMissingFraction"]),
                        format!("maxMissingFraction must be between 0 and 1, got {f}"),
                    );
                }
            }
            let check_column = |ctx: &mut Ctx, col: &str, path: &[&str], what: &str| {
                if !columns.is_empty() && !columns.iter().any(|c| c == col) {
                    let hint = match did_you_mean(col, columns.iter().map(String::as_str)) {
                        Some(s) => format!("did you mean `{s}`? columns: {}", columns.join(", ")),
                        None => format!("columns: {}", columns.join(", ")),
                    };
                    ctx.hint(
                        "unknown-column",
                        &file,
                        at(path),
                        format!("{what} column `{col}` is not in the schema"),
                        Some(hint),
                    );
                }
            };
            if let Some(t) = &d.target {
                check_column(ctx, t, &["target"], "target");
            }
            if let Some(split) = &mut d.split {
                let parts = [
                    ("train", Some(split.train)),
                    ("validation", split.validation),
                    ("test", split.test),
                ];
                let mut bad = false;
                for (name, v) in parts {
                    if let Some(v) = v
                        && (!(0.0..=1.0).contains(&v) || v.is_nan())
                    {
                        ctx.err(
                            "out-of-range",
                            &file,
                            at(&["split", name]),
                            format!("split.{name} must be between 0 and 1, got {v}"),
                        );
                        bad = true;
                    }
                }
                if split.train <= 0.0 && !bad {
                    ctx.err(
                        "out-of-range",
                        &file,
                        at(&["split", "train"]),
                        "split.train must be greater than 0",
                    );
                    bad = true;
                }
                let val = split.validation.unwrap_or(0.0);
                if !bad {
                    match split.test {
                        Some(test) => {
                            let sum = split.train + val + test;
                            if (sum - 1.0).abs() > 1e-9 {
                                ctx.err(
                                    "out-of-range",
                                    &file,
                                    at(&["split"]),
                                    format!("split ratios must sum to 1, got {}", trim_float(sum)),
                                )
                                .hint = Some(format!(
                                    "train {} + validation {} + test {} = {}",
                                    split.train,
                                    val,
                                    test,
                                    trim_float(sum)
                                ));
                            }
                        }
                        None => {
                            let rest = 1.0 - split.train - val;
                            if rest < -1e-9 {
                                ctx.err(
                                    "out-of-range",
                                    &file,
                                    at(&["split"]),
                                    format!(
                                        "split ratios must sum to 1, got {}",
                                        trim_float(split.train + val)
                                    ),
                                );
                            } else {
                                split.test = Some((rest * 1e9).round() / 1e9);
                            }
                        }
                    }
                }
                split.seed.get_or_insert(42);
                if let Some(s) = split.stratify.clone() {
                    check_column(ctx, &s, &["split", "stratify"], "stratify");
                }
            }
            if let Some(t) = &d.transform {
                if t.command.trim().is_empty() {
                    ctx.err(
                        "bad-value",
                        &file,
                        at(&["transform", "command"]),
                        "transform.command is empty",
                    );
                }
                for (i, input) in t.inputs.iter().enumerate() {
                    r.depends_on
                        .push(ResourceId::new(Kind::Dataset, input.clone()));
                    let _ = i;
                }
            }
        }
        ResourceSpec::TrainingJob(t) => {
            r.depends_on
                .push(ResourceId::new(Kind::Dataset, t.dataset.clone()));
            match (&t.algorithm, &t.command) {
                (None, None) => {
                    ctx.err(
                        "missing-field",
                        &file,
                        at(&[]),
                        format!(
                            "training job `{}` needs an `algorithm` or a `command`",
                            r.id.name
                        ),
                    )
                    .hint = Some(format!(
                        "built-ins: {}; or script mode: `command: python train.py` with `code: train/`",
                        Algorithm::ALL.map(|a| a.0).join(", ")
                    ));
                }
                (Some(_), Some(_)) => {
                    ctx.err(
                        "conflicting-fields",
                        &file,
                        at(&["command"]),
                        "`algorithm` and `command` cannot both be set",
                    )
                    .hint = Some(
                        "use `algorithm` for a built-in, or `command` (+ `code`) for script mode"
                            .into(),
                    );
                }
                _ => {}
            }
            if t.algorithm.is_some() {
                for f in ["code", "image"] {
                    if node.at(&["spec", f]).is_some() {
                        ctx.err(
                            "conflicting-fields",
                            &file,
                            at(&[f]),
                            format!("`{f}` applies to script mode (`command`) only"),
                        );
                    }
                }
                if !t.metrics.is_empty() {
                    ctx.err("conflicting-fields", &file, at(&["metrics"]), "`metrics` regexes apply to script mode only; built-ins report their metrics themselves");
                }
            }
            if let Some(code) = &t.code
                && (code.starts_with('/') || code.split('/').any(|p| p == ".."))
            {
                ctx.err(
                    "bad-value",
                    &file,
                    at(&["code"]),
                    format!("code `{code}` is outside the project"),
                );
            }
            for (i, m) in t.metrics.iter().enumerate() {
                if capture_groups(&m.regex) != 1 {
                    ctx.err("bad-value", &file, at(&["metrics", &i.to_string(), "regex"]), format!("metric `{}`: the regex must have exactly one capture group for the value", m.name))
                        .hint = Some("e.g. `regex: 'rmse=([0-9.]+)'`".into());
                }
            }
            if let Some(tuning) = &mut t.tuning {
                check_tuning(ctx, &file, &at, tuning);
            }
            if let Some(c) = &t.compute {
                check_compute(ctx, &file, &at, c);
            }
        }
        ResourceSpec::Model(m) => {
            r.depends_on
                .push(ResourceId::new(Kind::TrainingJob, m.from.clone()));
            for (i, g) in m.gates.iter().enumerate() {
                let idx = i.to_string();
                if g.min.is_none() && g.max.is_none() && g.max_regression.is_none() {
                    ctx.err(
                        "missing-field",
                        &file,
                        at(&["gates", &idx]),
                        format!("gate on `{}` has no threshold", g.metric),
                    )
                    .hint = Some("add `min`, `max` or `maxRegression`".into());
                }
                if let (Some(lo), Some(hi)) = (g.min, g.max)
                    && lo > hi
                {
                    ctx.err(
                        "out-of-range",
                        &file,
                        at(&["gates", &idx, "min"]),
                        format!("gate on `{}`: min {lo} is greater than max {hi}", g.metric),
                    );
                }
                if let Some(reg) = g.max_regression
                    && reg < 0.0
                {
                    ctx.err(
                        "out-of-range",
                        &file,
                        at(&["gates", &idx, "maxRegression"]),
                        format!(
                            "gate on `{}`: maxRegression must be at least 0, got {reg}",
                            g.metric
                        ),
                    );
                }
            }
            if m.stage == Some(Stage::Archived) {
                ctx.err(
                    "bad-value",
                    &file,
                    at(&["stage"]),
                    "a new model version cannot go straight to `archived`",
                )
                .hint = Some("use `staging` or `production`".into());
            }
            m.stage.get_or_insert(Stage::Staging);
            m.approval.get_or_insert(Approval::Auto);
        }
        ResourceSpec::Endpoint(e) => {
            r.depends_on
                .push(ResourceId::new(Kind::Model, e.model.clone()));
            if let Some(n) = e.instances
                && n < 1
            {
                ctx.err(
                    "out-of-range",
                    &file,
                    at(&["instances"]),
                    format!("instances must be at least 1, got {n}"),
                );
            }
            e.instances.get_or_insert(1);
            if e.version == Some(0) {
                ctx.err(
                    "out-of-range",
                    &file,
                    at(&["version"]),
                    "registry versions start at 1",
                );
            }
            if let Some(s) = &e.strategy {
                match s.ty {
                    StrategyType::Canary => match s.percent {
                        None => {
                            ctx.err("missing-field", &file, at(&["strategy"]), "a canary strategy needs `percent`")
                                .hint = Some("e.g. `percent: 10` sends 10% of traffic to the new version during the bake".into());
                        }
                        Some(p) if !(1..=99).contains(&p) => {
                            ctx.err(
                                "out-of-range",
                                &file,
                                at(&["strategy", "percent"]),
                                format!("canary percent must be between 1 and 99, got {p}"),
                            )
                            .hint = Some("a canary sends part of the traffic to the new version; to switch all of it at once, use `type: all-at-once`".into());
                        }
                        _ => {}
                    },
                    _ => {
                        if s.percent.is_some() {
                            ctx.err(
                                "conflicting-fields",
                                &file,
                                at(&["strategy", "percent"]),
                                format!(
                                    "`percent` applies to the canary strategy only, not to `{}`",
                                    strategy_name(s.ty)
                                ),
                            )
                            .hint = Some("remove `percent`, or use `type: canary`".into());
                        }
                    }
                }
                if let Some(b) = &s.bake_time {
                    if let Err(msg) = units::parse_duration(b) {
                        ctx.err("bad-value", &file, at(&["strategy", "bakeTime"]), msg);
                    }
                } else if s.ty == StrategyType::AllAtOnce && s.rollback.is_some() {
                    ctx.err("conflicting-fields", &file, at(&["strategy", "rollback"]), "automatic rollback needs a bake: use `canary` or `blue-green` with `bakeTime`");
                }
                if let Some(rb) = &s.rollback {
                    if let Some(er) = rb.max_error_rate
                        && !(0.0..=1.0).contains(&er)
                    {
                        ctx.err(
                            "out-of-range",
                            &file,
                            at(&["strategy", "rollback", "maxErrorRate"]),
                            format!("maxErrorRate must be between 0 and 1, got {er}"),
                        );
                    }
                    if let Some(l) = rb.max_p99_latency_ms
                        && l <= 0.0
                    {
                        ctx.err(
                            "out-of-range",
                            &file,
                            at(&["strategy", "rollback", "maxP99LatencyMs"]),
                            format!("maxP99LatencyMs must be greater than 0, got {l}"),
                        );
                    }
                }
            }
            if let Some(c) = &e.capture
                && !(0.0..=100.0).contains(&c.sampling_percent)
            {
                ctx.err(
                    "out-of-range",
                    &file,
                    at(&["capture", "samplingPercent"]),
                    format!(
                        "samplingPercent must be between 0 and 100, got {}",
                        c.sampling_percent
                    ),
                );
            }
            if let Some(a) = &e.auth
                && !env::is_single_reference(&a.token)
            {
                ctx.err("literal-secret", &file, at(&["auth", "token"]), "auth.token must be an environment reference, not a literal")
                        .hint = Some("write `token: ${env:MY_ENDPOINT_TOKEN}` and export the variable where mlctl runs".into());
            }
            if let Some(c) = &e.compute {
                check_compute(ctx, &file, &at, c);
            }
        }
        ResourceSpec::Monitor(m) => {
            r.depends_on
                .push(ResourceId::new(Kind::Endpoint, m.endpoint.clone()));
            if let Some(b) = &m.baseline {
                r.depends_on.push(ResourceId::new(Kind::Dataset, b.clone()));
            }
            if let Some(s) = &m.schedule
                && let Err(msg) = units::parse_schedule(s)
            {
                ctx.err("bad-value", &file, at(&["schedule"]), msg);
            }
            m.schedule.get_or_insert_with(|| "every 1h".into());
            m.min_samples.get_or_insert(100);
            if let Some(d) = &m.drift {
                if d.threshold < 0.0 {
                    ctx.err(
                        "out-of-range",
                        &file,
                        at(&["drift", "threshold"]),
                        format!("drift threshold must be at least 0, got {}", d.threshold),
                    );
                }
                for (feat, fd) in &d.features {
                    if let Some(t) = fd.threshold
                        && t < 0.0
                    {
                        ctx.err(
                            "out-of-range",
                            &file,
                            at(&["drift", "features", feat, "threshold"]),
                            format!("drift threshold for `{feat}` must be at least 0, got {t}"),
                        );
                    }
                }
            }
            if let Some(slo) = &m.slo
                && let Some(er) = slo.max_error_rate
                && !(0.0..=1.0).contains(&er)
            {
                ctx.err(
                    "out-of-range",
                    &file,
                    at(&["slo", "maxErrorRate"]),
                    format!("maxErrorRate must be between 0 and 1, got {er}"),
                );
            }
            if m.drift.is_none() && m.slo.is_none() {
                ctx.err(
                    "missing-field",
                    &file,
                    at(&[]),
                    format!("monitor `{}` checks nothing", r.id.name),
                )
                .hint = Some("add `drift` and/or `slo`".into());
            }
            if let Some(ob) = &m.on_breach
                && let Some(n) = &ob.notify
                && !env::is_single_reference(&n.webhook)
            {
                ctx.err(
                    "literal-secret",
                    &file,
                    at(&["onBreach", "notify", "webhook"]),
                    "onBreach.notify.webhook must be an environment reference, not a literal URL",
                )
                .hint =
                    Some("webhook URLs carry tokens: write `webhook: ${env:ALERT_WEBHOOK}`".into());
            }
        }
    }
    r.depends_on.sort();
    r.depends_on.dedup();
}

fn trim_float(f: f64) -> String {
    let s = format!("{:.6}", f);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn check_tuning(
    ctx: &mut Ctx,
    file: &str,
    at: &dyn Fn(&[&str]) -> Option<Span>,
    tuning: &mut Tuning,
) {
    if let Some(0) = tuning.max_trials {
        ctx.err(
            "out-of-range",
            file,
            at(&["tuning", "maxTrials"]),
            "maxTrials must be at least 1",
        );
    }
    if let Some(0) = tuning.parallelism {
        ctx.err(
            "out-of-range",
            file,
            at(&["tuning", "parallelism"]),
            "parallelism must be at least 1",
        );
    }
    if tuning.search_space.is_empty() {
        ctx.err("missing-field", file, at(&["tuning", "searchSpace"]), "tuning.searchSpace is empty")
            .hint = Some("name at least one hyperparameter to search, e.g. `C: {min: 0.01, max: 10, scale: log}`".into());
    }
    for (name, p) in &tuning.search_space {
        let path = ["tuning", "searchSpace", name.as_str()];
        match (&p.values, p.min, p.max) {
            (Some(v), None, None) => {
                if v.is_empty() {
                    ctx.err(
                        "out-of-range",
                        file,
                        at(&path),
                        format!("search space `{name}`: values is empty"),
                    );
                }
            }
            (Some(_), _, _) => {
                ctx.err(
                    "conflicting-fields",
                    file,
                    at(&path),
                    format!("search space `{name}`: give `values` or `min`/`max`, not both"),
                );
            }
            (None, Some(lo), Some(hi)) => {
                if lo >= hi {
                    ctx.err(
                        "out-of-range",
                        file,
                        at(&path),
                        format!("search space `{name}`: min {lo} must be less than max {hi}"),
                    );
                }
                if p.scale == Some(Scale::Log) && lo <= 0.0 {
                    ctx.err(
                        "out-of-range",
                        file,
                        at(&path),
                        format!("search space `{name}`: a log scale needs min > 0, got {lo}"),
                    );
                }
                if tuning.strategy == TuningStrategy::Grid
                    && p.step.is_none()
                    && p.ty != Some(ParamType::Int)
                {
                    ctx.err("missing-field", file, at(&path), format!("search space `{name}`: a grid over a float range needs `step` (or `values`)"));
                }
                if let Some(s) = p.step
                    && s <= 0.0
                {
                    ctx.err(
                        "out-of-range",
                        file,
                        at(&path),
                        format!("search space `{name}`: step must be greater than 0"),
                    );
                }
            }
            _ => {
                ctx.err(
                    "missing-field",
                    file,
                    at(&path),
                    format!("search space `{name}` needs `values` or both `min` and `max`"),
                );
            }
        }
        if p.ty == Some(ParamType::Categorical) && p.values.is_none() {
            ctx.err(
                "missing-field",
                file,
                at(&path),
                format!("search space `{name}`: categorical parameters need `values`"),
            );
        }
    }
    tuning.max_trials.get_or_insert(10);
    tuning.parallelism.get_or_insert(1);
    tuning.seed.get_or_insert(42);
}

fn check_compute(ctx: &mut Ctx, file: &str, at: &dyn Fn(&[&str]) -> Option<Span>, c: &Compute) {
    if let Some(cpu) = c.cpu
        && cpu <= 0.0
    {
        ctx.err(
            "out-of-range",
            file,
            at(&["compute", "cpu"]),
            format!("compute.cpu must be greater than 0, got {cpu}"),
        );
    }
    if let Some(m) = &c.memory
        && let Err(e) = units::parse_memory(m)
    {
        ctx.err("bad-value", file, at(&["compute", "memory"]), e);
    }
    if let Some(t) = &c.timeout
        && let Err(e) = units::parse_duration(t)
    {
        ctx.err("bad-value", file, at(&["compute", "timeout"]), e);
    }
}

/// References, cycles and target-independent cross-resource checks.
fn check_graph(resources: Vec<Resource>, _project: &Project, ctx: &mut Ctx) -> Vec<Resource> {
    let names = |kind: Kind| -> Vec<String> {
        resources
            .iter()
            .filter(|r| r.id.kind == kind)
            .map(|r| r.id.name.clone())
            .collect()
    };
    for r in &resources {
        let refs: Vec<(ResourceId, Vec<String>)> = match &r.spec {
            ResourceSpec::Dataset(d) => d
                .transform
                .iter()
                .flat_map(|t| {
                    t.inputs.iter().enumerate().map(|(i, n)| {
                        (
                            ResourceId::new(Kind::Dataset, n.clone()),
                            vec!["transform".into(), "inputs".into(), i.to_string()],
                        )
                    })
                })
                .collect(),
            ResourceSpec::TrainingJob(t) => vec![(
                ResourceId::new(Kind::Dataset, t.dataset.clone()),
                vec!["dataset".into()],
            )],
            ResourceSpec::Model(m) => vec![(
                ResourceId::new(Kind::TrainingJob, m.from.clone()),
                vec!["from".into()],
            )],
            ResourceSpec::Endpoint(e) => vec![(
                ResourceId::new(Kind::Model, e.model.clone()),
                vec!["model".into()],
            )],
            ResourceSpec::Monitor(m) => {
                let mut v = vec![(
                    ResourceId::new(Kind::Endpoint, m.endpoint.clone()),
                    vec!["endpoint".to_string()],
                )];
                if let Some(b) = &m.baseline {
                    v.push((
                        ResourceId::new(Kind::Dataset, b.clone()),
                        vec!["baseline".into()],
                    ));
                }
                if let Some(t) = m.on_breach.as_ref().and_then(|o| o.retrain.clone()) {
                    v.push((
                        ResourceId::new(Kind::TrainingJob, t),
                        vec!["onBreach".into(), "retrain".into()],
                    ));
                }
                v
            }
        };
        for (target, path) in refs {
            if resources.iter().any(|x| x.id == target) || ctx.shadowed(&target) {
                continue;
            }
            let mut full = vec!["spec"];
            full.extend(path.iter().map(String::as_str));
            let span = r.node.at(&full).map(|n| n.span);
            let defined = names(target.kind);
            let list = if defined.is_empty() {
                "none".to_string()
            } else {
                defined.join(", ")
            };
            let mut d = Diagnostic::error(
                "unknown-reference",
                &r.location.file,
                ctx.sources
                    .get(&r.location.file)
                    .map(String::as_str)
                    .unwrap_or(""),
                span,
                format!(
                    "{} `{}` is not defined; defined {}: {}",
                    target.kind.noun(),
                    target.name,
                    target.kind.plural(),
                    list
                ),
            );
            if let Some(s) = did_you_mean(&target.name, defined.iter().map(String::as_str)) {
                d.hint = Some(format!("did you mean `{s}`?"));
            }
            ctx.diags.push(d);
        }
        // Cross-resource checks that need the referenced resource.
        if let ResourceSpec::TrainingJob(t) = &r.spec
            && let Some(ds) = resources
                .iter()
                .find(|x| x.id == ResourceId::new(Kind::Dataset, t.dataset.clone()))
                .and_then(Resource::as_dataset)
        {
            let supervised = !matches!(t.algorithm, Some(Algorithm::Kmeans) | None);
            if supervised && ds.target.is_none() {
                let span = r.node.at(&["spec", "algorithm"]).map(|n| n.span);
                let ds_at = resources
                    .iter()
                    .find(|x| x.id.kind == Kind::Dataset && x.id.name == t.dataset)
                    .map(|x| x.location.file.clone())
                    .unwrap_or_default();
                ctx.err(
                    "missing-field",
                    &r.location.file,
                    span,
                    format!(
                        "algorithm `{}` needs a label column, but dataset `{}` has no `target`",
                        t.algorithm.map(Algorithm::as_str).unwrap_or(""),
                        t.dataset
                    ),
                )
                .hint = Some(format!(
                    "add `target: <label column>` to dataset `{}` in {ds_at}, or use `kmeans`, which needs no labels",
                    t.dataset
                ));
            }
        }
    }
    // Cycles can only form through dataset transforms; each is reported once, at the
    // dataset it was entered from, pointing at the input that closes it.
    for cycle in find_cycles(&resources) {
        let (Some(first), Some(next)) = (cycle.first(), cycle.get(1)) else {
            continue;
        };
        let Some(r) = resources
            .iter()
            .find(|r| r.id.kind == Kind::Dataset && &r.id.name == first)
        else {
            continue;
        };
        let index = r
            .as_dataset()
            .and_then(|d| d.transform.as_ref())
            .and_then(|t| t.inputs.iter().position(|i| i == next));
        let span = match index {
            Some(i) => r
                .node
                .at(&["spec", "transform", "inputs", &i.to_string()])
                .map(|n| n.span),
            None => point_at(&r.node, &["spec", "transform", "inputs"]),
        };
        ctx.err("cycle", &r.location.file, span, format!("dataset transforms form a cycle: {}", cycle.join(" -> "))).hint =
            Some("each dataset's transform reads the next one; a transform cannot read its own output, directly or through other datasets".into());
    }
    resources
}

/// Every cycle among dataset transforms, each once, as `a -> b -> ... -> a` where each
/// dataset reads the next. Depth-first search with three colours: linear in the graph.
fn find_cycles(resources: &[Resource]) -> Vec<Vec<String>> {
    let inputs: BTreeMap<&str, Vec<&str>> = resources
        .iter()
        .filter_map(|r| Some((r.id.name.as_str(), r.as_dataset()?)))
        .map(|(name, d)| {
            (
                name,
                d.transform
                    .iter()
                    .flat_map(|t| t.inputs.iter().map(String::as_str))
                    .collect(),
            )
        })
        .collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Colour {
        New,
        OnPath,
        Done,
    }
    fn visit<'a>(
        name: &'a str,
        inputs: &BTreeMap<&'a str, Vec<&'a str>>,
        colour: &mut BTreeMap<&'a str, Colour>,
        path: &mut Vec<&'a str>,
        cycles: &mut Vec<Vec<String>>,
    ) {
        colour.insert(name, Colour::OnPath);
        path.push(name);
        for &next in inputs.get(name).into_iter().flatten() {
            match colour.get(next).copied() {
                Some(Colour::New) => visit(next, inputs, colour, path, cycles),
                Some(Colour::OnPath) => {
                    let from = path.iter().position(|n| *n == next).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        path[from..].iter().map(|n| n.to_string()).collect();
                    cycle.push(next.to_string());
                    cycles.push(cycle);
                }
                // Done, or not a dataset (reported as an unknown reference).
                _ => {}
            }
        }
        path.pop();
        colour.insert(name, Colour::Done);
    }
    let mut colour: BTreeMap<&str, Colour> = inputs.keys().map(|k| (*k, Colour::New)).collect();
    let mut cycles = Vec::new();
    for name in inputs.keys() {
        if colour.get(name) == Some(&Colour::New) {
            visit(name, &inputs, &mut colour, &mut Vec::new(), &mut cycles);
        }
    }
    cycles
}

/// Every string value in every file: env reference syntax and literal credentials.
fn check_literals(ctx: &mut Ctx, _resources: &[Resource]) {
    let files: Vec<(String, String)> = ctx
        .sources
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (file, text) in files {
        let Ok(docs) = yaml::parse(&text) else {
            continue;
        };
        for doc in &docs {
            let mut found = Vec::new();
            doc.walk(&mut Vec::new(), &mut |path, node| {
                let Some(s) = node.as_str() else { return };
                // Commands are shell: `${MLCTL_OUTPUT}` there is the shell's, not mlctl's.
                let is_command = path.last().is_some_and(|k| k == "command");
                match env::references(s) {
                    Err(e) if !is_command => found.push(("bad-env-reference", node.span, e.to_string(), None)),
                    _ => {
                        if let Some(what) = env::looks_like_credential(s) {
                            found.push((
                                "literal-secret",
                                node.span,
                                format!("this value looks like {what}; secrets must not be written in the spec"),
                                Some("remove it from the file (and from git history), rotate it, and write `${env:NAME}` instead".to_string()),
                            ));
                        }
                    }
                }
            });
            for (code, span, msg, hint) in found {
                ctx.hint(code, &file, Some(span), msg, hint);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_capture_groups() {
        assert_eq!(capture_groups(r"rmse=([0-9.]+)"), 1);
        assert_eq!(capture_groups(r"(?:loss|rmse)=([0-9.]+)"), 1);
        assert_eq!(capture_groups(r"\(?x=([0-9]+)"), 1);
        assert_eq!(capture_groups(r"(?P<v>[0-9]+)"), 1);
        assert_eq!(capture_groups(r"(?<v>[0-9]+) (?<=a)"), 1);
        assert_eq!(capture_groups(r"[(]x=([0-9]+)"), 1);
        assert_eq!(capture_groups(r"[]()]"), 0);
        assert_eq!(capture_groups(r"(a)(b)"), 2);
        assert_eq!(capture_groups(r"\(?"), 0);
    }
}
