//! Stage 2: from parsed manifests to a validated [`Spec`], collecting every diagnostic.
//!
//! One module per concern, so each kind's rules are in one place:
//! - [`files`]: reading manifest files and their envelopes (`apiVersion`, `kind`, `metadata`);
//! - [`project`]: the Project and its targets;
//! - [`dataset`], [`training`], [`model`], [`endpoint`], [`monitor`]: one kind each, its ranges,
//!   cross-field rules and defaults (a built-in's hyperparameters against
//!   [`crate::builtins`]);
//! - [`graph`]: references between resources (from each spec's `references()`), cycles, and
//!   rules across resources (gates and objectives against [`crate::metrics`], ports);
//! - [`secrets`]: `${env:NAME}` syntax, where it is resolved, and literal credentials in every
//!   value.
//!
//! Everything reports into one [`Ctx`], which collects every diagnostic rather than stopping
//! at the first, and says nothing twice: a file that cannot be read or parsed shadows what it
//! may define, and an unknown key that is a typo of a field silences that field's absence.
//!
//! Guarantees: time and memory grow linearly with the input. Each file's text is kept once
//! and indexed by line on the first diagnostic; every value is checked as its file is
//! parsed; errors carry their path from the deserializer; resources are found by id.

mod dataset;
mod endpoint;
mod files;
mod graph;
mod model;
mod monitor;
mod overrides;
mod project;
mod secrets;
mod training;

use crate::de::{DeError, DeErrorKind, PathSeg, from_node};
use crate::diag::Diagnostic;
use crate::yaml::{self, Node, ScalarType, Span, Value};
use crate::{Files, Kind, Loaded, ResourceId, Spec};
use serde::de::DeserializeOwned;
use std::cell::{OnceCell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub(crate) struct Ctx {
    /// Every file read, by path: kept once, and indexed by line on the first diagnostic.
    sources: BTreeMap<String, Source>,
    diags: Vec<Diagnostic>,
    /// Diagnostics of the walk over every value ([`secrets`]), which runs as each file is
    /// parsed but is reported after the checks of the fields themselves at the same place.
    value_diags: Vec<Diagnostic>,
    /// Resources that were written but could not be loaded; references to them are not
    /// reported as undefined (the author misspelled the definition, not the reference).
    shadows: Vec<Shadow>,
    /// Per resource, the fields (paths under `spec`, as [`Node::at`] takes them) that an
    /// unknown key is likely a typo of: a check that would report such a field as missing
    /// stays silent, since the unknown-field error already says what to fix.
    typos: HashMap<ResourceId, BTreeSet<Vec<String>>>,
    /// The typos found by the last [`Ctx::typed_node`].
    last_typos: BTreeSet<Vec<String>>,
    /// The resource whose rules are being checked, for [`Ctx::mistyped`].
    current: Option<ResourceId>,
    /// The targets `overrides` may name, and the one being loaded for.
    override_targets: overrides::Targets,
}

/// A file's text and, once a diagnostic needs it, where each line starts.
struct Source {
    text: String,
    line_starts: OnceCell<Vec<usize>>,
}

impl Source {
    fn new(text: String) -> Self {
        Source {
            text,
            line_starts: OnceCell::new(),
        }
    }

    /// Line `n` (1-based) as `str::lines` gives it, without scanning the text each time.
    fn line(&self, n: usize) -> Option<&str> {
        let starts = self.line_starts.get_or_init(|| {
            std::iter::once(0)
                .chain(self.text.match_indices('\n').map(|(i, _)| i + 1))
                .collect()
        });
        let start = *starts.get(n.checked_sub(1)?)?;
        if start >= self.text.len() {
            return None;
        }
        let end = starts
            .get(n)
            .map_or(self.text.len(), |next| next.saturating_sub(1));
        let line = &self.text[start..end];
        Some(line.strip_suffix('\r').unwrap_or(line))
    }
}

/// What a manifest that failed to load may have declared: `None` means "could be anything".
#[derive(Debug, Default)]
struct Shadow {
    kind: Option<Kind>,
    name: Option<String>,
}

/// Every [`Shadow`], indexed so a reference is checked against them in constant time.
#[derive(Default)]
struct Shadows(std::collections::HashSet<(Option<Kind>, Option<String>)>);

impl Shadows {
    fn new(shadows: &[Shadow]) -> Self {
        Shadows(shadows.iter().map(|s| (s.kind, s.name.clone())).collect())
    }

    /// Whether a manifest that failed to load may have declared `id`.
    fn cover(&self, id: &ResourceId) -> bool {
        let name = Some(id.name.clone());
        [
            (Some(id.kind), name.clone()),
            (Some(id.kind), None),
            (None, name),
            (None, None),
        ]
        .iter()
        .any(|k| self.0.contains(k))
    }
}

impl Ctx {
    fn new() -> Self {
        Ctx {
            sources: BTreeMap::new(),
            diags: Vec::new(),
            value_diags: Vec::new(),
            shadows: Vec::new(),
            typos: HashMap::new(),
            last_typos: BTreeSet::new(),
            current: None,
            override_targets: overrides::Targets::default(),
        }
    }

    /// The text of a file read so far.
    fn source(&self, file: &str) -> Option<&str> {
        self.sources.get(file).map(|s| s.text.as_str())
    }

    /// An error at `span` of `file`, with its source line, not yet reported.
    fn diagnostic(
        &self,
        code: &'static str,
        file: &str,
        span: Option<Span>,
        msg: impl Into<String>,
    ) -> Diagnostic {
        let line = span.and_then(|s| self.sources.get(file)?.line(s.line));
        Diagnostic::error_on_line(code, file, line, span, msg)
    }

    fn err(
        &mut self,
        code: &'static str,
        file: &str,
        span: Option<Span>,
        msg: impl Into<String>,
    ) -> &mut Diagnostic {
        let d = self.diagnostic(code, file, span, msg);
        self.diags.push(d);
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

    /// Whether an unknown key of the resource being checked is likely a typo of the field at
    /// `path` (under `spec`): then its absence is not reported again.
    fn mistyped(&self, path: &[&str]) -> bool {
        self.current
            .as_ref()
            .is_some_and(|id| self.mistyped_in(id, path))
    }

    /// [`Ctx::mistyped`] for a given resource.
    fn mistyped_in(&self, id: &ResourceId, path: &[&str]) -> bool {
        self.typos.get(id).is_some_and(|t| {
            let key: Vec<String> = path.iter().map(|s| s.to_string()).collect();
            t.contains(&key)
        })
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
    /// (by its path under `node`) that lacks a required field. The fields unknown keys are
    /// likely typos of are left in `last_typos`.
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
        self.last_typos = issues
            .iter()
            .filter_map(|e| match &e.kind {
                DeErrorKind::UnknownField {
                    suggestion: Some(s),
                    ..
                } => {
                    let mut p: Vec<String> = e.path.iter().map(PathSeg::to_string).collect();
                    p.pop();
                    p.push(s.to_string());
                    Some(p)
                }
                _ => None,
            })
            .collect();
        let (value, fatal) = match result {
            // Unknown fields are reported but the value is kept, so references to this
            // resource still resolve and no follow-on errors appear.
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e)),
        };
        // A required field that an unknown key is a typo of was reported with that key.
        let fatal = fatal.filter(|e| match &e.kind {
            DeErrorKind::MissingField { field } => {
                let mut p: Vec<String> = e.path.iter().map(PathSeg::to_string).collect();
                p.push(field.clone());
                !self.last_typos.contains(&p)
            }
            _ => true,
        });
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
        let path = e.path.into_vec();
        let (code, message) = match e.kind {
            DeErrorKind::UnknownField { .. } => (
                "unknown-field",
                format!("unknown field `{}` in {what}", dotted(&path)),
            ),
            DeErrorKind::MissingField { field } => {
                let at: Vec<String> = path.iter().map(PathSeg::to_string).collect();
                span = holder(&at).or(span);
                let mut field_path = path;
                field_path.push(PathSeg::Key(field));
                (
                    "missing-field",
                    format!("missing required field `{}` in {what}", dotted(&field_path)),
                )
            }
            DeErrorKind::UnknownValue { value } => (
                "unknown-value",
                format!("unknown value `{value}` for {}", subject(&path)),
            ),
            DeErrorKind::WrongType { expected, found } => {
                let segs: Vec<String> = path.iter().map(PathSeg::to_string).collect();
                let value = node.at(&segs.iter().map(String::as_str).collect::<Vec<_>>());
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
                ("bad-value", format!("{message} (in {})", subject(&path)))
            }
        };
        self.hint(code, file, span, message, hint);
    }

    /// The shadows so far, indexed (call once all files are read).
    fn shadow_index(&self) -> Shadows {
        Shadows::new(&self.shadows)
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

pub(crate) fn load(files: &dyn Files, target: Option<&str>) -> Loaded {
    let mut ctx = Ctx::new();
    let project = project::load_project(files, &mut ctx);
    if let Some(p) = &project {
        ctx.override_targets = overrides::Targets {
            defined: p.targets.keys().cloned().collect(),
            selected: Some(target.unwrap_or(&p.default_target).to_string()),
        };
    }
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
    let value_diags = std::mem::take(&mut ctx.value_diags);
    ctx.diags.extend(value_diags);
    ctx.diags
        .sort_by(|a, b| (a.file.as_str(), a.span).cmp(&(b.file.as_str(), b.span)));
    // No diagnostic may echo a secret, whichever check wrote it (a bucket check quoting the
    // value, a syntax error on the secret's line): mask credential shapes everywhere (source
    // lines are masked when the diagnostic is made, before a long one is cut to a window).
    // Nor may one grow with the input: messages and hints are capped.
    for d in &mut ctx.diags {
        d.bound();
    }
    let ok = !ctx.diags.iter().any(Diagnostic::is_error);
    let spec = match project {
        Some(project) if ok => Some(Spec {
            project,
            resources,
            sources: ctx
                .sources
                .into_iter()
                .map(|(path, s)| (path, s.text))
                .collect(),
        }),
        _ => None,
    };
    Loaded {
        spec,
        diagnostics: ctx.diags,
    }
}

/// `a`, `a and b`, `a, b and c` (for the few fields of one mapping).
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", crate::suggest::list(init)),
    }
}

/// A float as a person writes it: `0.3`, not `0.30000000000000004`.
fn trim_float(f: f64) -> String {
    let s = format!("{:.6}", f);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line index gives exactly what `str::lines` gives, without rescanning the text.
    #[test]
    fn indexed_lines_are_str_lines() {
        for text in [
            "",
            "a",
            "a\n",
            "a\nb",
            "a\r\nb\r\n",
            "\n\nx\n",
            "é\nü\r\n\r\nz",
        ] {
            let src = Source::new(text.to_string());
            let expected: Vec<&str> = text.lines().collect();
            let got: Vec<&str> = (1..=expected.len() + 1)
                .filter_map(|n| src.line(n))
                .collect();
            assert_eq!(got, expected, "{text:?}");
            assert_eq!(src.line(0), None);
        }
    }
}
