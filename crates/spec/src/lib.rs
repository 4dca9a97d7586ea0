//! mlctl-spec: YAML manifests to a typed, validated [`Spec`], with a position for every node.
//!
//! Loading goes in two stages. Stage 1 parses YAML into position-keeping nodes ([`yaml`]) and
//! deserializes each manifest's `spec` into the typed structs of [`model`] ([`de`]). Stage 2
//! ([`validate`]) resolves references by name, checks ranges and cross-field rules, and fills
//! defaults. Both stages collect every problem as a [`Diagnostic`]; a spec with any error
//! diagnostic is not returned.
//!
//! This crate does no I/O of its own: files come through the [`Files`] trait, implemented over
//! a directory ([`DirFiles`]) here and over a git revision in `mlctl-git`; both decode with
//! [`decode_utf8`].
//!
//! The lists other crates share with the validator live here, once each: the built-ins'
//! hyperparameters ([`builtins`]), the metrics they report ([`metrics`]), the drift methods
//! and their defaults ([`DriftMethod`], documented by [`drift`]), and the fields where
//! `${env:NAME}` is resolved ([`env::resolvable_fields`]).

pub mod builtins;
pub mod de;
pub mod diag;
pub mod drift;
pub mod env;
pub mod metrics;
pub mod model;
pub mod quality;
pub mod schema;
pub mod suggest;
pub mod text;
pub mod units;
pub mod validate;
pub mod yaml;

pub use diag::{Diagnostic, Severity};
pub use model::*;
pub use text::{InvalidUtf8, decode_utf8};
pub use yaml::{Node, Span};

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The file name of a project's root manifest.
pub const PROJECT_FILE: &str = "mlctl.yaml";

/// Read access to a project's files, by `/`-separated path relative to the project directory.
pub trait Files {
    /// The text of a file; `Ok(None)` when it does not exist.
    ///
    /// Decode with [`decode_utf8`] and return its error converted to an `io::Error`: the
    /// loader then reports a file that is not UTF-8 at the line and column of its first bad
    /// byte. A leading byte-order mark may be left in; the loader skips it.
    fn read(&self, path: &str) -> std::io::Result<Option<String>>;
    /// Every file under `dir` (recursively), as paths relative to the project, sorted.
    /// `Ok(None)` when `dir` is not a directory.
    fn list(&self, dir: &str) -> std::io::Result<Option<Vec<String>>>;
}

/// [`Files`] over a directory on disk.
#[derive(Debug, Clone)]
pub struct DirFiles {
    root: PathBuf,
    /// `root` with its links resolved, the first time a path is checked.
    real_root: std::sync::OnceLock<Option<PathBuf>>,
}

impl DirFiles {
    /// Files under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirFiles {
            root: root.into(),
            real_root: std::sync::OnceLock::new(),
        }
    }
}

impl DirFiles {
    /// Refuses a path that resolves (symlinks followed) outside the project directory.
    fn inside(&self, asked: &str, p: &Path) -> std::io::Result<()> {
        let root = self.real_root.get_or_init(|| self.root.canonicalize().ok());
        let (Some(root), Ok(real)) = (root, p.canonicalize()) else {
            // Missing: the caller reports it as absent.
            return Ok(());
        };
        if real.starts_with(root) {
            Ok(())
        } else {
            Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{asked} leads outside the project directory (to {}); keep what the spec reads inside the project",
                    real.display()
                ),
            ))
        }
    }
}

impl Files for DirFiles {
    fn read(&self, path: &str) -> std::io::Result<Option<String>> {
        let p = self.root.join(path);
        self.inside(path, &p)?;
        match std::fs::read(&p) {
            Ok(bytes) => Ok(Some(decode_utf8(path, bytes)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn list(&self, dir: &str) -> std::io::Result<Option<Vec<String>>> {
        let base = self.root.join(dir);
        if !base.is_dir() {
            return Ok(None);
        }
        self.inside(dir, &base)?;
        let mut out = Vec::new();
        let mut stack = vec![base];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d)? {
                let entry = entry?;
                let p = entry.path();
                // Links are listed, not walked: reading one checks where it leads.
                if entry.file_type()?.is_dir() {
                    stack.push(p);
                } else if let Ok(rel) = p.strip_prefix(&self.root) {
                    out.push(rel_string(rel));
                }
            }
        }
        out.sort();
        Ok(Some(out))
    }
}

fn rel_string(p: &Path) -> String {
    p.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// The kinds of resources (the Project is not a resource).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Kind {
    /// A versioned table.
    Dataset,
    /// Produces a model.
    TrainingJob,
    /// A registered model.
    Model,
    /// A live deployment.
    Endpoint,
    /// Checks an endpoint.
    Monitor,
}

impl Kind {
    /// All kinds, in dependency order.
    pub const ALL: [Kind; 5] = [
        Kind::Dataset,
        Kind::TrainingJob,
        Kind::Model,
        Kind::Endpoint,
        Kind::Monitor,
    ];

    /// The `kind:` value in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Dataset => "Dataset",
            Kind::TrainingJob => "TrainingJob",
            Kind::Model => "Model",
            Kind::Endpoint => "Endpoint",
            Kind::Monitor => "Monitor",
        }
    }

    /// Parses a `kind:` value.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The fields under `spec` that a manifest's `overrides.<target>` may set for one target
    /// ([`DatasetSpec::OVERRIDABLE`], ...): the one list the validator refuses others by and
    /// the model identity `mlctl promote` compares leaves out.
    pub fn overridable_fields(self) -> &'static [&'static str] {
        match self {
            Kind::Dataset => DatasetSpec::OVERRIDABLE,
            Kind::TrainingJob => TrainingJobSpec::OVERRIDABLE,
            Kind::Model => ModelSpec::OVERRIDABLE,
            Kind::Endpoint => EndpointSpec::OVERRIDABLE,
            Kind::Monitor => MonitorSpec::OVERRIDABLE,
        }
    }

    /// Lowercase plural for messages ("datasets").
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Dataset => "datasets",
            Kind::TrainingJob => "training jobs",
            Kind::Model => "models",
            Kind::Endpoint => "endpoints",
            Kind::Monitor => "monitors",
        }
    }

    /// Lowercase singular for messages ("training job").
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Dataset => "dataset",
            Kind::TrainingJob => "training job",
            Kind::Model => "model",
            Kind::Endpoint => "endpoint",
            Kind::Monitor => "monitor",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A resource's address: `Kind/name`, unique within a project.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ResourceId {
    /// Its kind.
    pub kind: Kind,
    /// Its `metadata.name`.
    pub name: String,
}

impl ResourceId {
    /// A new id.
    pub fn new(kind: Kind, name: impl Into<String>) -> Self {
        ResourceId {
            kind,
            name: name.into(),
        }
    }

    /// Parses `Kind/name`.
    pub fn parse(s: &str) -> Option<Self> {
        let (k, n) = s.split_once('/')?;
        let kind = Kind::ALL
            .into_iter()
            .find(|x| x.as_str().eq_ignore_ascii_case(k))?;
        (!n.is_empty()).then(|| ResourceId::new(kind, n))
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// The body of a resource, by kind.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)]
pub enum ResourceSpec {
    /// See [`DatasetSpec`].
    Dataset(DatasetSpec),
    /// See [`TrainingJobSpec`].
    TrainingJob(TrainingJobSpec),
    /// See [`ModelSpec`].
    Model(ModelSpec),
    /// See [`EndpointSpec`].
    Endpoint(EndpointSpec),
    /// See [`MonitorSpec`].
    Monitor(MonitorSpec),
}

/// Where something was written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    /// File relative to the project.
    pub file: String,
    /// Position in the file.
    pub span: Span,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.span.line, self.span.col)
    }
}

/// One validated resource.
#[derive(Debug, Clone)]
pub struct Resource {
    /// Its address.
    pub id: ResourceId,
    /// Name, labels, annotations.
    pub metadata: Metadata,
    /// The typed body, with defaults applied.
    pub spec: ResourceSpec,
    /// Where its manifest starts.
    pub location: Location,
    /// The manifest's YAML, for positions of any field.
    pub node: Arc<Node>,
    /// Resources that must be applied before it (its ordering [`Reference`]s), sorted.
    pub depends_on: Vec<ResourceId>,
}

impl ResourceSpec {
    /// Every reference by name this spec makes: the one list both the graph (its edges are the
    /// references that order) and the validator (unknown names) read.
    pub fn references(&self) -> Vec<Reference> {
        match self {
            ResourceSpec::Dataset(s) => s.references(),
            ResourceSpec::TrainingJob(s) => s.references(),
            ResourceSpec::Model(s) => s.references(),
            ResourceSpec::Endpoint(s) => s.references(),
            ResourceSpec::Monitor(s) => s.references(),
        }
    }

    /// The fields under `spec` that update in place: the kind's `IN_PLACE` list
    /// ([`ModelSpec::IN_PLACE`], ...).
    pub fn in_place_fields(&self) -> &'static [&'static str] {
        match self {
            ResourceSpec::Dataset(_) => DatasetSpec::IN_PLACE,
            ResourceSpec::TrainingJob(_) => TrainingJobSpec::IN_PLACE,
            ResourceSpec::Model(_) => ModelSpec::IN_PLACE,
            ResourceSpec::Endpoint(_) => EndpointSpec::IN_PLACE,
            ResourceSpec::Monitor(_) => MonitorSpec::IN_PLACE,
        }
    }

    /// Every project file or directory this spec reads (fingerprinted by content).
    pub fn content_inputs(&self) -> Vec<ContentInput> {
        match self {
            ResourceSpec::Dataset(s) => s.content_inputs(),
            ResourceSpec::TrainingJob(s) => s.content_inputs(),
            ResourceSpec::Model(s) => s.content_inputs(),
            ResourceSpec::Endpoint(s) => s.content_inputs(),
            ResourceSpec::Monitor(s) => s.content_inputs(),
        }
    }
}

impl Resource {
    /// The canonical form of what this resource asks for: the typed spec plus labels, as JSON
    /// with sorted keys. Comments, key order, quoting and annotations do not appear in it.
    pub fn canonical(&self) -> serde_json::Value {
        let mut v = serde_json::json!({ "spec": self.spec, "labels": self.metadata.labels });
        sort_keys(&mut v);
        v
    }

    /// What the fingerprint hashes: [`Resource::canonical`] without the fields that update in
    /// place (`labels`, and the kind's `IN_PLACE` fields), so a label or a description never
    /// retrains, re-registers or redeploys anything.
    ///
    /// `labels` stays as an empty map rather than going away, so a resource without labels
    /// keeps the fingerprint it had before labels became in place (no retraining on upgrade).
    pub fn fingerprinted(&self) -> serde_json::Value {
        let mut v = self.canonical();
        v["labels"] = serde_json::json!({});
        if let Some(spec) = v.get_mut("spec").and_then(|s| s.as_object_mut()) {
            for field in self.spec.in_place_fields() {
                spec.remove(*field);
            }
        }
        v
    }

    /// The dataset body, if this is a Dataset.
    pub fn as_dataset(&self) -> Option<&DatasetSpec> {
        match &self.spec {
            ResourceSpec::Dataset(d) => Some(d),
            _ => None,
        }
    }
    /// The training job body, if this is a TrainingJob.
    pub fn as_training_job(&self) -> Option<&TrainingJobSpec> {
        match &self.spec {
            ResourceSpec::TrainingJob(d) => Some(d),
            _ => None,
        }
    }
    /// The model body, if this is a Model.
    pub fn as_model(&self) -> Option<&ModelSpec> {
        match &self.spec {
            ResourceSpec::Model(d) => Some(d),
            _ => None,
        }
    }
    /// The endpoint body, if this is an Endpoint.
    pub fn as_endpoint(&self) -> Option<&EndpointSpec> {
        match &self.spec {
            ResourceSpec::Endpoint(d) => Some(d),
            _ => None,
        }
    }
    /// The monitor body, if this is a Monitor.
    pub fn as_monitor(&self) -> Option<&MonitorSpec> {
        match &self.spec {
            ResourceSpec::Monitor(d) => Some(d),
            _ => None,
        }
    }
}

/// Recursively sorts object keys (serde_json keeps insertion order with `preserve_order`).
pub fn sort_keys(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = std::mem::take(map).into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (k, mut val) in entries {
                sort_keys(&mut val);
                map.insert(k, val);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(sort_keys),
        _ => {}
    }
}

/// The project manifest, validated.
#[derive(Debug, Clone)]
pub struct Project {
    /// `metadata.name`.
    pub name: String,
    /// Labels copied onto every resource.
    pub labels: BTreeMap<String, String>,
    /// Manifest paths (defaults applied).
    pub manifests: Vec<String>,
    /// The default target's name.
    pub default_target: String,
    /// Targets by name (an implicit `local` target when none is declared).
    pub targets: BTreeMap<String, Target>,
    /// `spec.selfHeal`: `mlctl watch` repairs out-of-band changes.
    pub self_heal: bool,
}

impl Project {
    /// The target named `name`, or the default one.
    ///
    /// # Errors
    /// [`UnknownTarget`] (which lists the defined targets) when there is no such target.
    pub fn target(&self, name: Option<&str>) -> Result<(&str, &Target), UnknownTarget> {
        let name = name.unwrap_or(&self.default_target);
        self.targets
            .get_key_value(name)
            .map(|(k, t)| (k.as_str(), t))
            .ok_or_else(|| UnknownTarget {
                name: name.to_string(),
                defined: self.targets.keys().cloned().collect(),
            })
    }
}

/// A `--target` (or component source) that the project does not define.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTarget {
    /// The name asked for.
    pub name: String,
    /// The targets the project defines.
    pub defined: Vec<String>,
}

impl fmt::Display for UnknownTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "target `{}` is not defined in {PROJECT_FILE}; defined targets: {}",
            self.name,
            suggest::list(&self.defined)
        )?;
        if let Some(s) = suggest::did_you_mean(&self.name, self.defined.iter().map(String::as_str))
        {
            write!(f, " (did you mean `{s}`?)")?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownTarget {}

/// A whole validated project.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The project.
    pub project: Project,
    /// Every resource, in a stable order (kind, then name).
    pub resources: Vec<Resource>,
    /// The text of every file read, by path (for rendering diagnostics later).
    pub sources: BTreeMap<String, String>,
}

impl Spec {
    /// Looks a resource up.
    pub fn get(&self, id: &ResourceId) -> Option<&Resource> {
        self.resources.iter().find(|r| &r.id == id)
    }

    /// Looks a resource up by kind and name.
    pub fn find(&self, kind: Kind, name: &str) -> Option<&Resource> {
        self.resources
            .iter()
            .find(|r| r.id.kind == kind && r.id.name == name)
    }
}

/// The result of loading: the spec when there was no error, and every diagnostic.
#[derive(Debug)]
pub struct Loaded {
    /// `Some` when no diagnostic is an error.
    pub spec: Option<Spec>,
    /// Errors and warnings, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    /// The errors only.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }
}

/// Loads and validates the project whose `mlctl.yaml` is at the root of `files`, as its
/// default target sees it (see [`load_for`]).
pub fn load(files: &dyn Files) -> Loaded {
    validate::load(files, None)
}

/// Loads and validates the project as target `target` sees it (`None`: the default target):
/// each manifest's `overrides.<target>` is merged into its `spec` before validation, so the
/// typed spec, the fingerprints and the plan are that target's. Every other target's
/// overrides are checked too (their targets exist, their fields may be overridden, their
/// values have the right types), so one `validate` finds a mistake in any of them. A name
/// the project does not define merges nothing (opening the target reports it).
pub fn load_for(files: &dyn Files, target: Option<&str>) -> Loaded {
    validate::load(files, target)
}
