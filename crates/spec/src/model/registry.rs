//! `kind: Model`: a registered, versioned model.

use super::*;

/// `kind: Model` — a registered, versioned model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ModelSpec {
    /// The TrainingJob that produces it.
    pub from: String,
    /// Checks a new version must pass to be registered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<Gate>,
    /// The stage a new version goes to (default `staging`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
    /// `auto` (default) promotes at once; `manual` waits for `mlctl models approve`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// Shown in the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A gate on one metric: `min`, `max`, and/or `maxRegression` against production.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Gate {
    /// Metric name (on the held-out split).
    pub metric: String,
    /// The metric must be at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The metric must be at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Not worse than the baseline by more than this (absolute): the version in production
    /// for this Model, else its newest approved version. With neither, the gate is not
    /// evaluated (and says so), unless `requireBaseline` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_regression: Option<f64>,
    /// Refuse a new version when `maxRegression` has no baseline to compare against (default
    /// false: the first version is registered with "no baseline: gate not evaluated").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_baseline: Option<bool>,
}

/// Registry stages.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, PartialOrd, Ord, Hash,
)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Registered, not serving production traffic.
    Staging,
    /// The version endpoints serve.
    Production,
    /// Retired.
    Archived,
}

impl Stage {
    /// The name used in YAML and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Staging => "staging",
            Stage::Production => "production",
            Stage::Archived => "archived",
        }
    }
}

/// Approval policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Approval {
    /// Promote when the gates pass.
    Auto,
    /// Wait for a person.
    Manual,
}

impl ModelSpec {
    /// Fields of this kind (under `spec`) that change what it carries, not what it produces:
    /// a change to one updates the resource in place and never registers a new version. Every other field
    /// is part of the fingerprint. (`metadata.labels` is in place on every kind.)
    pub const IN_PLACE: &'static [&'static str] = &["description"];

    /// Fields (under `spec`) a resource's `overrides.<target>` may set: how a target judges
    /// and releases a version (stricter gates in prod, manual approval, the stage).
    pub const OVERRIDABLE: &'static [&'static str] = &["gates", "stage", "approval", "description"];

    /// The training job whose result it registers.
    pub fn references(&self) -> Vec<Reference> {
        vec![Reference::to(
            crate::Kind::TrainingJob,
            &self.from,
            &["from"],
            true,
        )]
    }

    /// A Model reads no files of its own.
    pub fn content_inputs(&self) -> Vec<ContentInput> {
        Vec::new()
    }
}
