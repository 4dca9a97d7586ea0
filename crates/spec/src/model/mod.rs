//! The typed spec: one struct per YAML mapping, mirroring the manifests field by field.
//!
//! These structs are what serde reads (stage 1, "raw") and, once [`crate::validate`] has checked
//! them, resolved references and filled defaults, what the rest of mlctl reads (stage 2). Field
//! names on the wire are camelCase; unknown fields are errors; optional fields are `Option`s
//! with their defaults documented here and applied by accessor methods.
//!
//! One module per kind, each holding that kind's types and the lists derived from them (the
//! references it makes, the files it reads); the envelope and metadata live here.

mod dataset;
mod endpoint;
mod monitor;
mod project;
mod registry;
mod training;

pub use dataset::*;
pub use endpoint::*;
pub use monitor::*;
pub use project::*;
pub use registry::*;
pub use training::*;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The only API version so far.
pub const API_VERSION: &str = "mlctl/v1";

/// Names and labels of a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    /// Unique per kind within a project: lowercase letters, digits and `-`, starting with a letter.
    #[schemars(regex(pattern = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"), length(max = 63))]
    pub name: String,
    /// Free-form labels, copied onto every resource mlctl creates as tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Free-form notes; never part of a fingerprint.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

// ---------------------------------------------------------------------------------------------
// Envelopes (for the JSON Schema)

/// A manifest as written in YAML: `apiVersion`, `kind`, `metadata`, `spec`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Envelope<S> {
    /// Always `mlctl/v1`.
    #[schemars(extend("const" = "mlctl/v1"))]
    pub api_version: String,
    /// Name and labels.
    pub metadata: Metadata,
    /// The kind-specific body.
    pub spec: S,
    /// Per target, a partial `spec` merged into this one when that target is planned or
    /// applied: mappings merge key by key, any other value (a list included) replaces the
    /// one in `spec`, and `null` removes it. Only some fields may differ per target (a
    /// TrainingJob's `compute`, a Model's `gates`, an Endpoint's `instances`, a Monitor's
    /// thresholds: `docs/environments.md`); the Project has none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
}

/// One mlctl manifest, chosen by `kind`: the Project (in `mlctl.yaml`) or a resource (under `ml/`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind")]
#[allow(clippy::large_enum_variant)]
pub enum AnyManifest {
    /// The project file.
    Project(Envelope<ProjectSpec>),
    /// A dataset.
    Dataset(Envelope<DatasetSpec>),
    /// A training job.
    TrainingJob(Envelope<TrainingJobSpec>),
    /// A registered model.
    Model(Envelope<ModelSpec>),
    /// An endpoint.
    Endpoint(Envelope<EndpointSpec>),
    /// A monitor.
    Monitor(Envelope<MonitorSpec>),
}

// ---------------------------------------------------------------------------------------------
// What a resource reads: references by name and files by path

/// A reference by name from one resource to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The resource named.
    pub target: crate::ResourceId,
    /// Where the name is written, under `spec` (as [`crate::Node::at`] takes it).
    pub path: Vec<String>,
    /// Whether the named resource must be applied first (an edge of the apply graph). A
    /// Monitor's `onBreach.retrain` names a job it may re-run, not one it needs.
    pub orders: bool,
}

impl Reference {
    fn to(kind: crate::Kind, name: &str, path: &[&str], orders: bool) -> Reference {
        Reference {
            target: crate::ResourceId::new(kind, name),
            path: path.iter().map(|s| s.to_string()).collect(),
            orders,
        }
    }
}

/// What a file read by a resource is to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ContentRole {
    /// A dataset source.
    Data,
    /// Code: a script-mode code dir, transform code, serving code.
    Code,
    /// A model directory made elsewhere (an imported MLflow model).
    Model,
}

impl ContentRole {
    /// `data` or `code`, as fingerprint inputs are keyed.
    pub fn as_str(self) -> &'static str {
        match self {
            ContentRole::Data => "data",
            ContentRole::Code => "code",
            ContentRole::Model => "model",
        }
    }
}

/// A project file or directory a resource reads, whose content is part of its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentInput {
    /// Data or code.
    pub role: ContentRole,
    /// Project-relative path, as written.
    pub path: String,
    /// The field that names it, under `spec`.
    pub field: Vec<String>,
}

impl ContentInput {
    fn new(role: ContentRole, path: &str, field: &[&str]) -> ContentInput {
        ContentInput {
            role,
            path: path.to_string(),
            field: field.iter().map(|s| s.to_string()).collect(),
        }
    }
}
