//! Stage 2: from parsed manifests to a validated [`Spec`], collecting every diagnostic.
//!
//! One module per concern, so each kind's rules are in one place:
//! - [`files`]: reading manifest files and their envelopes (`apiVersion`, `kind`, `metadata`);
//! - [`project`]: the Project and its targets;
//! - [`dataset`], [`training`], [`model`], [`endpoint`], [`monitor`]: one kind each, its ranges,
//!   cross-field rules and defaults;
//! - [`graph`]: references between resources (from each spec's `references()`) and cycles;
//! - [`secrets`]: `${env:NAME}` syntax and literal credentials in every value.
//!
//! Everything reports into one [`Ctx`], which collects every diagnostic rather than stopping
//! at the first.

mod dataset;
mod endpoint;
mod files;
mod graph;
mod model;
mod monitor;
mod project;
mod secrets;
mod training;

use crate::de::{DeError, DeErrorKind, from_node};
use crate::diag::Diagnostic;
use crate::env;
use crate::yaml::{self, Node, ScalarType, Span, Value};
use crate::{Files, Kind, Loaded, ResourceId, Spec};
use serde::de::DeserializeOwned;
use std::cell::RefCell;
use std::collections::BTreeMap;

pub(crate) struct Ctx {
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
        // A missing field points at the key holding the incomplete mapping, not at its
        // first entry.
        let holder = |path: &[String]| {
            let mut full = vec![key];
            full.extend(path.iter().map(String::as_str));
            point_at(parent, &full)
        };
        self.typed_node(file, node, what, &holder)
    }

    /// [`Ctx::typed`] for a node on its own; `holder` says where to point for a mapping
    /// (by its path under `node`) that lacks a required field.
    fn typed_node<T: DeserializeOwned>(
        &mut self,
        file: &str,
        node: &Node,
        what: &str,
        holder: &dyn Fn(&[String]) -> Option<Span>,
    ) -> Option<T> {
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
            self.de_error(file, node, what, e, holder);
        }
        value
    }

    fn de_error(
        &mut self,
        file: &str,
        node: &Node,
        what: &str,
        e: DeError,
        holder: &dyn Fn(&[String]) -> Option<Span>,
    ) {
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
                let at: Vec<String> = path.iter().map(PathSeg::to_string).collect();
                span = holder(&at).or(span);
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
    let project = project::load_project(files, &mut ctx);
    let mut docs = Vec::new();
    if let Some(project) = &project {
        for path in files::manifest_files(files, &project.manifests, &mut ctx) {
            docs.extend(files::parse_file(files, &path, &mut ctx, false));
        }
    }
    let resources = graph::resources_from(docs, &mut ctx);
    let resources = match &project {
        Some(_) => graph::check_graph(resources, &mut ctx),
        None => resources,
    };
    secrets::check_literals(&mut ctx);
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

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// A float as a person writes it: `0.3`, not `0.30000000000000004`.
fn trim_float(f: f64) -> String {
    let s = format!("{:.6}", f);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}
