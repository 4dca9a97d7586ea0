//! The typed spec: one struct per YAML mapping, mirroring the manifests field by field.
//!
//! These structs are what serde reads (stage 1, "raw") and, once [`crate::validate`] has checked
//! them, resolved references and filled defaults, what the rest of mlctl reads (stage 2). Field
//! names on the wire are camelCase; unknown fields are errors; optional fields are `Option`s
//! with their defaults documented here and applied by accessor methods.

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
// Project

/// `kind: Project` — the root of a project, in `mlctl.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProjectSpec {
    /// Files or directories (relative to the project) holding the resource manifests. Default `[ml/]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifests: Option<Vec<String>>,
    /// The target used when `--target` is not given. Default: the only target, or `local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_target: Option<String>,
    /// Named targets to apply the spec to.
    #[serde(default)]
    pub targets: BTreeMap<String, Target>,
}

/// Which provider implements a target.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Embedded: state under `.mlctl/`, training in-process or as child processes, endpoints on 127.0.0.1.
    Local,
    /// Deterministic in-file target for tests and dry runs, with injectable faults.
    Mock,
    /// AWS SageMaker + S3.
    Sagemaker,
    /// Azure Machine Learning + Blob Storage.
    Azureml,
}

impl ProviderKind {
    /// The name used in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Local => "local",
            ProviderKind::Mock => "mock",
            ProviderKind::Sagemaker => "sagemaker",
            ProviderKind::Azureml => "azureml",
        }
    }
}

/// A target: where a spec is applied. Fields beyond `provider` depend on the provider; the
/// validator checks that each provider gets the fields it needs and no field it does not know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Target {
    /// `local`, `mock`, `sagemaker` or `azureml`.
    #[schemars(extend("enum" = ["local", "mock", "sagemaker", "azureml"]))]
    pub provider: String,
    /// local, mock: state directory (default `.mlctl/<target>` in the project).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// sagemaker: AWS region (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// sagemaker: execution role ARN (required), usually `${env:...}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// sagemaker: `s3://bucket/prefix` for data, code and artifacts (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// sagemaker, azureml: override the service endpoint (emulators, VPC endpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// azureml: subscription id (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription: Option<String>,
    /// azureml: resource group (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_group: Option<String>,
    /// azureml: workspace name (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// azureml: blob container URL for data (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// mock: simulated latency of each operation, e.g. `50ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<String>,
    /// mock: injected faults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<Faults>,
    /// Components taken from another target (a stack may mix providers), e.g. `{deployer: local}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<BTreeMap<String, String>>,
}

/// Faults injected by the mock provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Faults {
    /// Fail the training job of these resources (names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fail_training: Vec<String>,
    /// Fail the Nth training job submitted on this target (1-based, counted across runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_nth_training_job: Option<u32>,
    /// Fail the deployment of these endpoints (names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fail_deployment: Vec<String>,
    /// Answer the first N calls of every operation with a throttling error (retryable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<u32>,
    /// Make operations on these resources time out (names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeout: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Dataset

/// `kind: Dataset` — a versioned table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DatasetSpec {
    /// Where the data is: a path relative to the project, `s3://`, `az://` or `https://`.
    /// Not allowed with `transform` (the transform's output is the source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// `csv` or `parquet`; default from the source's extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<DataFormat>,
    /// Expected blake3 digest of a remote source (pins an `https://` download).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The label column (supervised learning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Columns and rules the data must satisfy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<DataSchema>,
    /// Train/validation/test split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
    /// Derive this dataset from others with a command (like a DVC stage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<Transform>,
}

/// File formats for tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DataFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// Apache Parquet.
    Parquet,
}

/// The declared shape of a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DataSchema {
    /// Columns, in order.
    pub columns: Vec<Column>,
    /// Fewest rows accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_rows: Option<u64>,
    /// Largest fraction of missing cells per column (0..1). Default 0 for non-nullable columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_missing_fraction: Option<f64>,
    /// Whether columns not listed are allowed (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_extra_columns: Option<bool>,
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Column {
    /// Column name as in the file header.
    pub name: String,
    /// Value type.
    #[serde(rename = "type")]
    pub ty: ColumnType,
    /// Smallest allowed value (numbers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest allowed value (numbers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Allowed values (categories).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<String>>,
    /// Whether missing values are allowed (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nullable: Option<bool>,
}

/// Column value types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// 64-bit float.
    Float,
    /// 64-bit integer.
    Int,
    /// true/false.
    Bool,
    /// One of a fixed set of strings.
    Category,
    /// Free text.
    String,
}

/// How rows are split into train / validation / test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Split {
    /// Fraction of rows for training.
    #[schemars(range(min = 0, max = 1))]
    pub train: f64,
    /// Fraction for validation (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1))]
    pub validation: Option<f64>,
    /// Fraction for testing (default: the rest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1))]
    pub test: Option<f64>,
    /// Random seed (default 42): the same seed gives the same split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Keep class proportions of this column in every part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stratify: Option<String>,
}

/// A derived dataset: run `command` with the inputs, read `output`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Transform {
    /// Shell command, run in the project directory with `MLCTL_INPUT_<NAME>` and `MLCTL_OUTPUT` set.
    pub command: String,
    /// Datasets read by the command.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// Code directory or file whose content is part of the fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// File the command writes (relative to its output directory), default `output.csv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// TrainingJob

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

// ---------------------------------------------------------------------------------------------
// Model

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
    /// Not worse than the current production version by more than this (absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_regression: Option<f64>,
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

// ---------------------------------------------------------------------------------------------
// Endpoint

/// `kind: Endpoint` — a live deployment of a Model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EndpointSpec {
    /// The Model to serve (its production version, or its latest when the model has no stage).
    pub model: String,
    /// Pin a registry version instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// How updates roll out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// Instances (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub instances: Option<i64>,
    /// local: port on 127.0.0.1 (default: allocated and recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Request/response capture for monitoring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<Capture>,
    /// Who may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    /// Script mode: serve with a command implementing the SageMaker inference contract.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serve: Option<ServeCommand>,
    /// Resources per instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute: Option<Compute>,
}

/// Rollout strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Strategy {
    /// `all-at-once` (default), `canary` or `blue-green`.
    #[serde(rename = "type")]
    pub ty: StrategyType,
    /// canary: percent of traffic to the new version during the bake (1..99).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 99))]
    pub percent: Option<i64>,
    /// canary, blue-green: how long to watch before shifting all traffic, e.g. `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake_time: Option<String>,
    /// Roll back automatically when these are crossed during the bake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<Rollback>,
}

/// Strategy types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyType {
    /// Replace at once.
    AllAtOnce,
    /// Shift a percentage, bake, then shift the rest.
    Canary,
    /// Start the new fleet beside the old, then switch.
    BlueGreen,
}

/// Automatic rollback thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rollback {
    /// Largest error fraction (0..1) of the new version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1))]
    pub max_error_rate: Option<f64>,
    /// Largest p99 latency in milliseconds of the new version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99_latency_ms: Option<f64>,
    /// Cloud alarms that trigger a rollback (SageMaker CloudWatch alarm names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<String>,
}

/// Data capture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Capture {
    /// Percent of requests captured (0..100).
    #[schemars(range(min = 0, max = 100))]
    pub sampling_percent: f64,
    /// Where to write (default: the target's store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
}

/// Endpoint authentication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Auth {
    /// Bearer token, always `${env:NAME}`.
    pub token: String,
}

/// Script-mode serving.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServeCommand {
    /// Command that serves `/ping` and `/invocations` on `$SAGEMAKER_BIND_TO_PORT`.
    pub command: String,
    /// Code directory (fingerprinted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Monitor

/// `kind: Monitor` — checks a live endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MonitorSpec {
    /// The Endpoint watched.
    pub endpoint: String,
    /// The Dataset whose profile is the reference (default: the training dataset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    /// Data drift checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<Drift>,
    /// Service-level objectives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<Slo>,
    /// How often: `every 1h` style or a 5-field cron expression (default `every 1h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Fewest captured rows before drift is judged (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_samples: Option<u64>,
    /// What happens on a breach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_breach: Option<OnBreach>,
}

/// Drift configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Drift {
    /// Default method for every feature.
    pub method: DriftMethod,
    /// Default threshold.
    pub threshold: f64,
    /// Per-feature overrides, by column name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub features: BTreeMap<String, FeatureDrift>,
}

/// Drift statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DriftMethod {
    /// Population stability index.
    Psi,
    /// Kolmogorov–Smirnov statistic.
    Ks,
    /// Wasserstein-1 distance (normalised by the baseline's std).
    Wasserstein,
    /// Jensen–Shannon distance.
    JensenShannon,
    /// Chi-squared test p-value (categories).
    ChiSquared,
}

/// A per-feature drift override.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FeatureDrift {
    /// Method for this feature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<DriftMethod>,
    /// Threshold for this feature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Skip this feature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore: Option<bool>,
}

/// Service-level objectives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Slo {
    /// p99 latency in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_latency_ms: Option<f64>,
    /// Largest error fraction (0..1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1))]
    pub max_error_rate: Option<f64>,
}

/// Breach actions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OnBreach {
    /// POST a JSON report to this webhook (`${env:NAME}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
    /// Retrain this TrainingJob (and what depends on it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrain: Option<String>,
    /// Make `mlctl monitor check` exit non-zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail: Option<bool>,
}

/// Webhook notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Notify {
    /// Webhook URL, always `${env:NAME}`.
    pub webhook: String,
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
