//! `kind: TrainingJob`: a model artifact and metrics, with tuning and compute.

use super::*;

/// `kind: TrainingJob` — produces a model artifact and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TrainingJobSpec {
    /// The Dataset to train on.
    pub dataset: String,
    /// A built-in algorithm (exclusive with `command`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<Algorithm>,
    /// Script mode: the command to run (exclusive with `algorithm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Script mode: the code directory (relative to the project), packed and fingerprinted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Script mode: container image for cloud targets (default: a framework image per region).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Hyperparameters passed to the algorithm or script (`SM_HPS`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hyperparameters: BTreeMap<String, serde_json::Value>,
    /// Script mode: metrics read from stdout with regexes (SageMaker MetricDefinitions style).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricDefinition>,
    /// Hyperparameter search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<Tuning>,
    /// Resources to run on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute: Option<Compute>,
}

/// Built-in algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Ordinary least squares (ridge with `l2`).
    LinearRegression,
    /// Multinomial logistic regression (`C`, `max_iter`).
    LogisticRegression,
    /// CART decision tree, classification or regression (`max_depth`, `min_samples_leaf`).
    DecisionTree,
    /// Random forest (`n_estimators`, `max_depth`, `max_features`).
    RandomForest,
    /// Gradient-boosted trees (`n_estimators`, `learning_rate`, `max_depth`).
    GradientBoosting,
    /// k-means clustering (`k`, `max_iter`).
    Kmeans,
}

impl Algorithm {
    /// Every built-in, by YAML name.
    pub const ALL: [(&'static str, Algorithm); 6] = [
        ("linear_regression", Algorithm::LinearRegression),
        ("logistic_regression", Algorithm::LogisticRegression),
        ("decision_tree", Algorithm::DecisionTree),
        ("random_forest", Algorithm::RandomForest),
        ("gradient_boosting", Algorithm::GradientBoosting),
        ("kmeans", Algorithm::Kmeans),
    ];

    /// The name used in YAML.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, a)| *a == self)
            .map(|(n, _)| *n)
            .unwrap_or("unknown")
    }
}

/// A metric scraped from a training script's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetricDefinition {
    /// Metric name.
    pub name: String,
    /// Regex with one capture group for the value.
    pub regex: String,
    /// Whether larger (`maximize`) or smaller (`minimize`) values are better: what a
    /// `maxRegression` gate compares by. Required unless the name is in the published metric
    /// vocabulary (docs/metrics.md), whose direction it then must agree with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<Goal>,
}

/// Hyperparameter tuning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Tuning {
    /// Search strategy.
    pub strategy: TuningStrategy,
    /// What to optimise.
    pub objective: Objective,
    /// Largest number of trials (default 10; grid search caps at the grid size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_trials: Option<u32>,
    /// Trials run at once (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u32>,
    /// Seed for random search (default 42).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Parameters to search, by hyperparameter name.
    pub search_space: BTreeMap<String, Param>,
}

/// Tuning strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TuningStrategy {
    /// Every combination (numeric ranges need `step` or `values`).
    Grid,
    /// Random samples.
    Random,
    /// Successive halving (Hyperband's inner loop).
    Halving,
    /// Bayesian optimisation (cloud targets; random on local).
    Bayesian,
}

impl TuningStrategy {
    /// Every strategy.
    pub const ALL: [TuningStrategy; 4] = [
        TuningStrategy::Grid,
        TuningStrategy::Random,
        TuningStrategy::Halving,
        TuningStrategy::Bayesian,
    ];

    /// The name used in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            TuningStrategy::Grid => "grid",
            TuningStrategy::Random => "random",
            TuningStrategy::Halving => "halving",
            TuningStrategy::Bayesian => "bayesian",
        }
    }
}

/// The metric a tuning job optimises.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Objective {
    /// Metric name, e.g. `accuracy`.
    pub metric: String,
    /// `maximize` or `minimize`.
    pub goal: Goal,
}

/// Optimisation direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Goal {
    /// Larger is better.
    Maximize,
    /// Smaller is better.
    Minimize,
}

/// One searched hyperparameter: a range (`min`/`max`, optional `step` and `scale`) or `values`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Param {
    /// `float`, `int` or `categorical` (default: categorical with `values`, float otherwise).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub ty: Option<ParamType>,
    /// Lower bound (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Upper bound (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Grid step for ranges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<f64>,
    /// `linear` (default) or `log`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<Scale>,
    /// Explicit values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<serde_json::Value>>,
}

/// Parameter types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// Continuous.
    Float,
    /// Integer.
    Int,
    /// One of `values`.
    Categorical,
}

/// Sampling scale of a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    /// Uniform.
    Linear,
    /// Log-uniform (min must be > 0).
    Log,
}

/// Compute resources, with per-provider overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Compute {
    /// CPU cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// Memory, e.g. `4Gi`, `512Mi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<u32>,
    /// Longest run time, e.g. `2h` (default 24h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Per-provider settings that win over the generic ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<ComputeOverrides>,
}

/// Provider-specific compute settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ComputeOverrides {
    /// SageMaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sagemaker: Option<SagemakerCompute>,
    /// Azure ML.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azureml: Option<AzuremlCompute>,
    /// Local.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalCompute>,
}

/// SageMaker compute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SagemakerCompute {
    /// e.g. `ml.m5.large`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// Instances (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_count: Option<u32>,
    /// Volume size in GB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_size_gb: Option<u32>,
    /// Managed spot training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spot: Option<bool>,
}

/// Azure ML compute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AzuremlCompute {
    /// Compute cluster name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute: Option<String>,
    /// VM size, e.g. `Standard_DS3_v2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// Instances (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_count: Option<u32>,
}

/// Local compute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LocalCompute {
    /// Worker threads for built-ins (default: all cores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u32>,
}

impl TrainingJobSpec {
    /// Whether training chooses something on validation rows: tuning compares candidates
    /// there, and early stopping (`early_stopping_rounds`) picks the round. Such a job gets
    /// validation rows (the split's, or carved from train), and the test rows stay held out.
    pub fn selects_on_validation(&self) -> bool {
        self.tuning.is_some() || crate::builtins::stops_early(&self.hyperparameters)
    }

    /// Fields of this kind (under `spec`) that change what it carries, not what it produces:
    /// a change to one updates the resource in place and never retrains. Every other field
    /// is part of the fingerprint. (`metadata.labels` is in place on every kind.)
    pub const IN_PLACE: &'static [&'static str] = &[];

    /// Fields (under `spec`) a resource's `overrides.<target>` may set: where and how fast it
    /// runs, never what it learns. They are in this target's fingerprint (a change retrains
    /// here) but not in [`TrainingJobSpec::IDENTITY_EXCLUDES`]'s model identity, so a version
    /// trained on one target is the same model for another whose `compute` differs.
    pub const OVERRIDABLE: &'static [&'static str] = &["compute"];

    /// What the model identity of a job leaves out (`mlctl promote` compares identities):
    /// the fields that may differ per target.
    pub const IDENTITY_EXCLUDES: &'static [&'static str] = Self::OVERRIDABLE;

    /// The dataset it trains on.
    pub fn references(&self) -> Vec<Reference> {
        vec![Reference::to(
            crate::Kind::Dataset,
            &self.dataset,
            &["dataset"],
            true,
        )]
    }

    /// Script mode's code directory.
    pub fn content_inputs(&self) -> Vec<ContentInput> {
        self.code
            .iter()
            .map(|c| ContentInput::new(ContentRole::Code, c, &["code"]))
            .collect()
    }
}
