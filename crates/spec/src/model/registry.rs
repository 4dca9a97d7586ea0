//! `kind: Model`: a registered, versioned model.

use super::*;

/// `kind: Model` — a registered, versioned model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ModelSpec {
    /// The TrainingJob that produces it (exclusive with `mlflow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// An existing MLflow model to register instead of one mlctl trains (exclusive with
    /// `from`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlflow: Option<MlflowModel>,
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

/// `Model.spec.mlflow`: where an MLflow model is, and how it is served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MlflowModel {
    /// An MLflow model directory in the project (with its `MLmodel` file), fingerprinted by
    /// content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A model on the target's tracking server: `runs:/RUN_ID/PATH` or `models:/NAME/VERSION`
    /// (both immutable; an alias moves, so it is refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// `native` (default): converted exactly into mlctl's portable model and served at
    /// native speed (scikit-learn linear models, trees and forests); `pyfunc`: kept as the
    /// MLflow model and served by `mlflow models serve` in the model's own environment,
    /// through the Endpoint's `serve.command`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serve: Option<MlflowServe>,
}

/// How an imported MLflow model is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MlflowServe {
    /// Converted into mlctl's portable model.
    Native,
    /// Served as MLflow serves it (python_function).
    Pyfunc,
}

impl MlflowModel {
    /// `serve`, with its default.
    pub fn serve_mode(&self) -> MlflowServe {
        self.serve.unwrap_or(MlflowServe::Native)
    }

    /// The source as written: the path or the URI.
    pub fn source(&self) -> &str {
        self.path
            .as_deref()
            .or(self.uri.as_deref())
            .unwrap_or_default()
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

    /// The training job whose result it registers (none for an imported model).
    pub fn references(&self) -> Vec<Reference> {
        self.from
            .iter()
            .map(|from| Reference::to(crate::Kind::TrainingJob, from, &["from"], true))
            .collect()
    }

    /// An imported MLflow model directory in the project.
    pub fn content_inputs(&self) -> Vec<ContentInput> {
        self.mlflow
            .iter()
            .filter_map(|m| m.path.as_deref())
            .map(|p| ContentInput::new(ContentRole::Model, p, &["mlflow", "path"]))
            .collect()
    }
}
