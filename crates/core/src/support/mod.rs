//! Honoured or refused: which spec fields a target acts on, checked before anything is created.
//!
//! Every leaf field of the spec (as the JSON Schema lists them, [`fields::leaf_fields`]) is,
//! for each target, either acted on or refused at plan time with its position and what to do
//! instead; nothing is accepted and ignored. Each component declares the fields of its kind in
//! its [`Capabilities::fields`](crate::Capabilities::fields) (the data store for Datasets, the
//! trainer for TrainingJobs, ...); fields the engine itself acts on for every target (gates,
//! references, timeouts) are declared once in [`engine`]. [`check`] walks the fields a spec
//! actually writes and returns every refusal at once; a field nobody declares is refused too.
//!
//! The Project's own fields that reach a target (its `metadata.labels`, which become tags of
//! every resource) are checked once, by [`FieldRules::with_project`] checks, at their place in
//! `mlctl.yaml`.
//!
//! The same declarations generate `docs/support-matrix.md` (field x provider), so the table
//! cannot drift from what plan enforces.

pub mod engine;
pub mod fields;

use mlctl_spec::{Kind, Location, Node, Resource, ResourceId, Spec};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Why a target does not do what a field asks, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What the target cannot do, in the user's words.
    pub why: String,
    /// What to do instead (remove the field, another value, another target).
    pub instead: String,
}

impl Refusal {
    /// A refusal.
    pub fn new(why: impl Into<String>, instead: impl Into<String>) -> Refusal {
        Refusal {
            why: why.into(),
            instead: instead.into(),
        }
    }
}

/// A check of a field's value (with the resource it is in, and the whole spec for what that
/// resource refers to) that refuses what the target cannot do; `None` means honoured.
pub type ValueCheck = Arc<dyn Fn(&Spec, &Resource, &Node) -> Option<Refusal> + Send + Sync>;

/// How a target treats one spec field.
#[derive(Clone)]
pub enum Support {
    /// Acted on.
    Honoured,
    /// Acted on, in the way the note says (for the matrix: "becomes an S3 object tag").
    HonouredAs(Cow<'static, str>),
    /// The mock target: recorded and reflected in its observed state, with nothing real behind
    /// it (what a dry run needs).
    Simulated,
    /// Never read by this target, by design (a setting for another provider); the reason says
    /// where it does apply.
    NotApplicable(Cow<'static, str>),
    /// Refused whenever it is written.
    Refused(Refusal),
    /// Honoured, except for the values `check` refuses; `note` says which, for the matrix.
    Check {
        /// "honoured for project paths and s3://; refused for https://".
        note: Cow<'static, str>,
        /// The check.
        check: ValueCheck,
    },
}

impl Support {
    /// Honoured, as `how` says.
    pub fn honoured_as(how: &'static str) -> Support {
        Support::HonouredAs(Cow::Borrowed(how))
    }

    /// A refusal whenever the field is written.
    pub fn refused(why: impl Into<String>, instead: impl Into<String>) -> Support {
        Support::Refused(Refusal::new(why, instead))
    }

    /// Not read by this target by design.
    pub fn not_applicable(why: &'static str) -> Support {
        Support::NotApplicable(Cow::Borrowed(why))
    }

    /// Honoured except where `check` refuses.
    pub fn check(
        note: impl Into<Cow<'static, str>>,
        check: impl Fn(&Spec, &Resource, &Node) -> Option<Refusal> + Send + Sync + 'static,
    ) -> Support {
        Support::Check {
            note: note.into(),
            check: Arc::new(check),
        }
    }

    /// A scalar field honoured for the values in `allowed` only; `instead` is shown with the
    /// refusal of any other value.
    pub fn one_of(allowed: Vec<&'static str>, what: &'static str, instead: String) -> Support {
        let note = format!("honoured for {}; other values refused", allowed.join(", "));
        Support::check(note, move |_, _, node| {
            let v = node.as_str()?;
            (!allowed.contains(&v)).then(|| {
                Refusal::new(
                    format!(
                        "{what} `{v}` is not available here (available: {})",
                        allowed.join(", ")
                    ),
                    instead.clone(),
                )
            })
        })
    }

    /// What this target does with the field, for the support matrix.
    pub fn describe(&self) -> String {
        match self {
            Support::Honoured => "honoured".into(),
            Support::HonouredAs(how) => format!("honoured: {how}"),
            Support::Simulated => "simulated".into(),
            Support::NotApplicable(why) => format!("n/a: {why}"),
            Support::Refused(r) => format!("refused: {} ({})", r.why, r.instead),
            Support::Check { note, .. } => note.to_string(),
        }
    }

    /// The refusal of `node` (the field as written in `r`, part of `spec`), if any.
    pub fn refuse(&self, spec: &Spec, r: &Resource, node: &Node) -> Option<Refusal> {
        match self {
            Support::Honoured
            | Support::HonouredAs(_)
            | Support::Simulated
            | Support::NotApplicable(_) => None,
            Support::Refused(refusal) => Some(refusal.clone()),
            Support::Check { check, .. } => check(spec, r, node),
        }
    }
}

impl fmt::Debug for Support {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// A check of one field of the Project (`metadata.labels`) on a target: the refusal, if any.
pub type ProjectCheck = Arc<dyn Fn(&Spec) -> Option<Refusal> + Send + Sync>;

/// The Project fields a target may check ([`FieldRules::with_project`]).
pub const PROJECT_FIELDS: [&str; 1] = ["metadata.labels"];

/// A component's declarations, by field path (`Endpoint.spec.auth.token`, see
/// [`fields::leaf_fields`]), and its checks of Project fields.
#[derive(Clone, Default)]
pub struct FieldRules {
    fields: BTreeMap<String, Support>,
    project: BTreeMap<&'static str, ProjectCheck>,
}

impl fmt::Debug for FieldRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FieldRules")
            .field("fields", &self.fields)
            .field("project", &self.project.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl FieldRules {
    /// No declarations.
    pub fn new() -> FieldRules {
        FieldRules::default()
    }

    /// Declares `field`.
    ///
    /// # Panics
    /// When `field` is not a leaf field of the spec: a declaration for a field that does not
    /// exist is a bug in the provider, found by its first test.
    #[must_use]
    pub fn with(mut self, field: &str, support: Support) -> FieldRules {
        assert!(
            fields::leaf_fields().iter().any(|f| f == field),
            "declared support for `{field}`, which is not a field of the spec"
        );
        self.fields.insert(field.to_string(), support);
        self
    }

    /// Checks a field of the Project (one of [`PROJECT_FIELDS`]) when the spec writes it: once,
    /// at its place in `mlctl.yaml`, however many resources it reaches.
    ///
    /// # Panics
    /// When `field` is not one of [`PROJECT_FIELDS`].
    #[must_use]
    pub fn with_project(
        mut self,
        field: &'static str,
        check: impl Fn(&Spec) -> Option<Refusal> + Send + Sync + 'static,
    ) -> FieldRules {
        assert!(
            PROJECT_FIELDS.contains(&field),
            "declared a check of Project `{field}`, which targets do not check"
        );
        self.project.insert(field, Arc::new(check));
        self
    }

    /// Declares every leaf field under `prefix` (e.g. `Dataset.spec.schema`) the same way,
    /// leaving alone the fields already declared here and those the engine acts on itself
    /// (declare one of those with [`FieldRules::with`] to override the engine).
    #[must_use]
    pub fn with_all(self, prefix: &str, support: Support) -> FieldRules {
        let engine = engine::rules();
        self.with_all_but(prefix, support, |f| engine.get(f).is_some())
    }

    fn with_all_but(
        mut self,
        prefix: &str,
        support: Support,
        skip: impl Fn(&str) -> bool,
    ) -> FieldRules {
        let under = format!("{prefix}.");
        let list = format!("{prefix}[]");
        let mut found = false;
        for f in fields::leaf_fields() {
            if f == prefix || f.starts_with(&under) || f.starts_with(&list) {
                found = true;
                if !skip(f) {
                    self.fields
                        .entry(f.clone())
                        .or_insert_with(|| support.clone());
                }
            }
        }
        assert!(
            found,
            "declared support under `{prefix}`, which has no fields"
        );
        self
    }

    /// [`FieldRules::with_all`] without looking at the engine's rules (for building them).
    fn with_all_own(self, prefix: &str, support: Support) -> FieldRules {
        self.with_all_but(prefix, support, |_| false)
    }

    /// These declarations and `other`'s (for a provider whose components each declare the
    /// fields of their own kinds). A field both declare keeps `other`'s.
    #[must_use]
    pub fn merged(mut self, other: FieldRules) -> FieldRules {
        self.fields.extend(other.fields);
        self.project.extend(other.project);
        self
    }

    /// The declaration of `field`, if any.
    pub fn get(&self, field: &str) -> Option<&Support> {
        self.fields.get(field)
    }

    /// Every declaration.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Support)> {
        self.fields.iter()
    }
}

/// A field of one resource, or of the Project, that the target will not honour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRefusal {
    /// Whose field: a resource (`Endpoint/iris`) or the Project (`Project/iris`).
    pub subject: String,
    /// The field as users write it: `strategy.rollback.maxErrorRate`.
    pub field: String,
    /// Where it is written.
    pub location: Location,
    /// The provider that refuses it.
    pub provider: String,
    /// Why, and what to do.
    pub refusal: Refusal,
}

/// The declarations of a whole target: one set per kind (from the component that serves it),
/// with the provider that made them.
#[derive(Debug, Clone)]
pub struct TargetSupport {
    by_kind: BTreeMap<Kind, (String, FieldRules)>,
    notes: Vec<String>,
}

impl TargetSupport {
    /// Each kind's component declarations, with the name of the provider behind it.
    pub fn new(by_kind: impl IntoIterator<Item = (Kind, String, FieldRules)>) -> TargetSupport {
        TargetSupport {
            by_kind: by_kind
                .into_iter()
                .map(|(k, p, rules)| (k, (p, rules)))
                .collect(),
            notes: Vec::new(),
        }
    }

    /// Adds the components' notes (each shown once).
    #[must_use]
    pub fn with_notes(mut self, notes: impl IntoIterator<Item = String>) -> TargetSupport {
        for n in notes {
            if !self.notes.contains(&n) {
                self.notes.push(n);
            }
        }
        self
    }

    /// What a user should know before applying to this target.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// How this target treats `field` of a resource of `kind`: the component's declaration,
    /// else the engine's, else `None` (undeclared, which [`check`] refuses).
    pub fn support(&self, kind: Kind, field: &str) -> Option<Support> {
        self.by_kind
            .get(&kind)
            .and_then(|(_, rules)| rules.get(field).cloned())
            .or_else(|| engine::rules().get(field).cloned())
    }

    /// The Project checks of every component, each (field, provider) once.
    fn project_checks(&self) -> Vec<(&'static str, String, ProjectCheck)> {
        let mut out: Vec<(&'static str, String, ProjectCheck)> = Vec::new();
        for (provider, rules) in self.by_kind.values() {
            for (field, check) in &rules.project {
                if !out.iter().any(|(f, p, _)| f == field && p == provider) {
                    out.push((field, provider.clone(), check.clone()));
                }
            }
        }
        out
    }

    fn provider(&self, kind: Kind) -> &str {
        self.by_kind
            .get(&kind)
            .map(|(p, _)| p.as_str())
            .unwrap_or("?")
    }
}

/// Whether an Endpoint serves a model through the user's own code: a `serve` command, or a
/// Model trained in script mode (no built-in `algorithm`), whose inputs mlctl cannot check.
pub fn serves_user_code(spec: &Spec, endpoint: &Resource) -> bool {
    let Some(e) = endpoint.as_endpoint() else {
        return false;
    };
    if e.serve.is_some() {
        return true;
    }
    spec.get(&ResourceId::new(Kind::Model, e.model.clone()))
        .and_then(Resource::as_model)
        .and_then(|m| m.from.as_ref())
        .and_then(|from| spec.get(&ResourceId::new(Kind::TrainingJob, from.clone())))
        .and_then(Resource::as_training_job)
        .is_some_and(|t| t.algorithm.is_none())
}

/// Every field `spec` writes that `target` will not honour, in file order: all of them at once,
/// before anything is created.
pub fn check(spec: &Spec, target: &TargetSupport) -> Vec<FieldRefusal> {
    let mut out = Vec::new();
    for r in &spec.resources {
        for (path, node) in fields::written(r) {
            let refusal = match target.support(r.id.kind, &path) {
                Some(s) => s.refuse(spec, r, node),
                None => Some(Refusal::new(
                    "this target does not say whether it honours this field",
                    "remove the field for this target, or report it: every field should be honoured or refused",
                )),
            };
            if let Some(refusal) = refusal {
                out.push(FieldRefusal {
                    subject: r.id.to_string(),
                    field: fields::user_path(&path),
                    location: Location {
                        file: r.location.file.clone(),
                        span: node_key_span(r, node),
                    },
                    provider: target.provider(r.id.kind).to_string(),
                    refusal,
                });
            }
        }
    }
    out.extend(check_project(spec, target));
    out.sort_by(|a, b| {
        (a.location.file.as_str(), a.location.span)
            .cmp(&(b.location.file.as_str(), b.location.span))
    });
    out
}

/// The refusals of the Project fields `spec` writes, each once.
fn check_project(spec: &Spec, target: &TargetSupport) -> Vec<FieldRefusal> {
    let checks = target.project_checks();
    if checks.is_empty() {
        return Vec::new();
    }
    let Some(doc) = spec
        .sources
        .get(mlctl_spec::PROJECT_FILE)
        .and_then(|text| mlctl_spec::yaml::parse(text).ok())
        .and_then(|docs| docs.into_iter().next())
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (field, provider, check) in checks {
        let path: Vec<&str> = field.split('.').collect();
        let Some(node) = doc.at(&path) else { continue };
        if let Some(refusal) = check(spec) {
            out.push(FieldRefusal {
                subject: format!("Project/{}", spec.project.name),
                field: field.to_string(),
                location: Location {
                    file: mlctl_spec::PROJECT_FILE.to_string(),
                    span: fields::key_span(&doc, node).unwrap_or(node.span),
                },
                provider,
                refusal,
            });
        }
    }
    out
}

/// Where to point for a field: its key when the value spans lines (a mapping or list).
fn node_key_span(r: &Resource, node: &Node) -> mlctl_spec::Span {
    fields::key_span(&r.node, node).unwrap_or(node.span)
}

/// The number a scalar field holds, if it is one.
pub fn number(node: &Node) -> Option<f64> {
    match node.scalar_type()? {
        mlctl_spec::yaml::ScalarType::Int(i) => Some(i as f64),
        mlctl_spec::yaml::ScalarType::Float(f) => Some(f),
        _ => None,
    }
}

/// A `source` honoured for the given schemes (`""` for a project path, else `https`, `s3`,
/// ...) and refused for any other, saying what this target does read.
pub fn source_schemes(
    target: &'static str,
    allowed: &'static [&'static str],
    instead: &'static str,
) -> Support {
    let names = |s: &&str| {
        if s.is_empty() {
            "project files".to_string()
        } else {
            format!("{s}:// URLs")
        }
    };
    let listed = allowed.iter().map(names).collect::<Vec<_>>().join(" and ");
    let note = format!("honoured for {listed}; other sources refused");
    Support::check(note, move |_, _, node| {
        let src = node.as_str()?;
        let scheme = src.split_once("://").map(|(s, _)| s).unwrap_or("");
        (!allowed.contains(&scheme)).then(|| {
            Refusal::new(
                format!(
                    "the {target} target does not read {scheme}:// sources; it reads {}",
                    allowed.iter().map(names).collect::<Vec<_>>().join(" and ")
                ),
                instead,
            )
        })
    })
}
