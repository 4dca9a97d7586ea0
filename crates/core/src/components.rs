//! The component traits a provider implements, and the data that crosses them.
//!
//! A target is a stack of components (ZenML's idea): [`DataStore`], [`Trainer`], [`Registry`],
//! [`Deployer`], [`MonitorSink`], plus the [`StateStore`] that keeps observed state and the
//! apply lock in the target itself. A provider supplies some or all of them; a target may mix
//! providers. The apply engine ([`crate::apply`]) knows the lifecycle of each kind and calls
//! these; it never names a concrete provider.
//!
//! # Contract (every component)
//! - Calls are idempotent by name or fingerprint: asking twice for the same thing returns the
//!   existing thing rather than creating a second one. Submitting the name of a failed or
//!   cancelled job starts a new attempt under that name (so a re-run converges).
//! - Deletes succeed when there is nothing to delete (`delete_dataset`, `delete_model`,
//!   `Deployer::delete`, `MonitorSink::remove`, unlocking a free lock).
//! - Everything created carries the [`Tags`] it was given.
//! - Errors are [`crate::ProviderError`]s that say whether a retry can help.

use crate::error::Result;
use crate::state::{Health, ObservedResource};
use async_trait::async_trait;
use mlctl_spec::{
    Algorithm, Approval, DataSchema, DatasetSpec, EndpointSpec, MonitorSpec, Stage, StrategyType,
    TrainingJobSpec, TuningStrategy,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What a component can do, so the engine and the CLI never discover `NotSupported` at run
/// time: they ask here first. Each component fills in the part that concerns it and leaves the
/// rest at its default (nothing supported).
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    /// Which spec fields of its kind (the Dataset's for a data store, ...) the component
    /// honours or refuses; see [`crate::support`]. A field it does not declare is refused.
    pub fields: crate::support::FieldRules,
    /// Trainer: the built-in algorithms it runs.
    pub algorithms: Vec<Algorithm>,
    /// Trainer: whether script mode (`command` + `code`) runs.
    pub script_mode: bool,
    /// Trainer: the tuning strategies it runs (empty: no tuning).
    pub tuning_strategies: Vec<TuningStrategy>,
    /// Trainer: whether `cancel` stops a running job (an emulator may only pretend).
    pub cancel: bool,
    /// Trainer: whether `runs` lists tracked runs.
    pub runs: bool,
    /// Trainer: whether `logs` returns a job's log.
    pub logs: bool,
    /// Registry: whether `stage_history` is kept.
    pub stage_history: bool,
    /// Registry: whether `read_artifact` and `store_artifact` work, so versions can be
    /// promoted from and to this registry (`mlctl promote`).
    pub artifacts: bool,
    /// Deployer: the rollout strategies it carries out.
    pub strategies: Vec<StrategyType>,
    /// Monitor sink: whether `status` reads a monitor back from the target (otherwise the
    /// engine can only trust its own record).
    pub monitor_status: bool,
    /// How often long operations should be polled (zero: the engine's default).
    pub poll_interval: Duration,
    /// What a user should know before applying to this target, shown with every plan (an
    /// emulator's gaps, say). Never a substitute for refusing a field it cannot honour.
    pub notes: Vec<String>,
}

/// Tags put on every resource mlctl creates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tags {
    /// Project name.
    pub project: String,
    /// `Kind/name`.
    pub resource: String,
    /// The resource's fingerprint.
    pub fingerprint: String,
    /// The commit SHA the spec came from.
    pub commit: String,
    /// The user's labels: the project's `metadata.labels` and the resource's (which win).
    /// Keys never start with `mlctl:`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Tags {
    /// As key/value pairs (SageMaker/Azure tag style): mlctl's own under the `mlctl:` prefix,
    /// and the labels as written.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let mut map = self.labels.clone();
        map.extend([
            ("mlctl:project".to_string(), self.project.clone()),
            ("mlctl:resource".to_string(), self.resource.clone()),
            ("mlctl:fingerprint".to_string(), self.fingerprint.clone()),
            ("mlctl:commit".to_string(), self.commit.clone()),
        ]);
        map
    }
}

/// Context of one operation.
#[derive(Debug, Clone)]
pub struct OpContext {
    /// Project name.
    pub project: String,
    /// The project directory on this machine (data and code paths are relative to it).
    pub project_dir: PathBuf,
    /// The target's name.
    pub target: String,
    /// The commit being applied.
    pub commit: String,
}

/// Updating, where it stands, what a resource carries but does not depend on: its tags (the
/// labels) and, for a model, its description. Nothing is read, trained, registered or
/// deployed: the fingerprint did not change.
#[derive(Debug, Clone)]
pub struct InPlaceRequest {
    /// `metadata.name`.
    pub name: String,
    /// The fingerprint of what exists (unchanged).
    pub fingerprint: String,
    /// What the last apply recorded for it: the kind's [`DatasetVersion`], [`TrainingResult`],
    /// [`ModelVersion`], [`EndpointStatus`] or [`MonitorStatus`].
    pub outputs: serde_json::Value,
    /// The tags it carries from now on.
    pub tags: Tags,
    /// Labels it carried before and no longer does: their tags are removed.
    pub removed_labels: Vec<String>,
    /// A Model's description (`None` for other kinds, or when it has none).
    pub description: Option<String>,
}

impl InPlaceRequest {
    /// The recorded result, typed; `Invalid` when the record is not of that kind.
    ///
    /// # Errors
    /// `Precondition` when the record holds no such result (apply the resource in full first).
    pub fn outputs_as<T: for<'de> Deserialize<'de>>(&self, provider: &str) -> Result<T> {
        serde_json::from_value(self.outputs.clone()).map_err(|e| {
            crate::error::ProviderError::new(
                crate::error::ErrorKind::Precondition,
                provider.to_string(),
                "update in place",
                format!(
                    "`{}` has no usable record of its last apply ({e}); run `mlctl apply` with a change that rebuilds it",
                    self.name
                ),
            )
        })
    }
}

// ---------------------------------------------------------------------------------------------

/// Registering a dataset version.
#[derive(Debug, Clone)]
pub struct DatasetRequest {
    /// `metadata.name`.
    pub name: String,
    /// The spec (defaults applied).
    pub spec: DatasetSpec,
    /// Its fingerprint.
    pub fingerprint: String,
    /// Tags.
    pub tags: Tags,
    /// Versions of the datasets a `transform` reads, by name.
    pub inputs: BTreeMap<String, DatasetVersion>,
    /// The version of a remote `source` the plan saw ([`DataStore::source_version`]; `None`
    /// for project files and pinned digests): the store reads that version or fails, so the
    /// data registered is the data the fingerprint names.
    pub source_version: Option<String>,
}

/// A registered dataset version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetVersion {
    /// Dataset name.
    pub name: String,
    /// Fingerprint of the spec + content.
    pub fingerprint: String,
    /// blake3 digest of the content.
    pub digest: String,
    /// Where the whole table is stored (provider URI).
    pub uri: String,
    /// Row count.
    pub rows: u64,
    /// Column names.
    pub columns: Vec<String>,
    /// Split parts (`train`, `validation`, `test`) to their URIs.
    #[serde(default)]
    pub splits: BTreeMap<String, String>,
    /// The stored profile (drift baseline), if any.
    #[serde(default)]
    pub profile_uri: Option<String>,
}

/// Content-addressed blobs and dataset versions.
#[async_trait]
pub trait DataStore: Send + Sync {
    /// What this store can do.
    fn capabilities(&self) -> Capabilities;
    /// Stores bytes under their blake3 digest; returns the digest (hex).
    ///
    /// # Contract
    /// Atomic (no reader sees part of a blob); putting the same bytes again stores nothing new
    /// and returns the same digest. Checked by `datastore_blobs`.
    async fn put_blob(&self, bytes: Vec<u8>) -> Result<String>;
    /// Reads a blob.
    ///
    /// # Contract
    /// Returns exactly the bytes put; an unknown digest is `NotFound`. Checked by
    /// `datastore_blobs`.
    async fn get_blob(&self, digest: &str) -> Result<Vec<u8>>;
    /// Whether a blob exists.
    ///
    /// # Contract
    /// `false` (not an error) for an unknown digest. Checked by `datastore_blobs`.
    async fn has_blob(&self, digest: &str) -> Result<bool>;
    /// Reads, checks and stores a dataset version.
    ///
    /// # Contract
    /// - The data is read: digest, rows, columns and the split parts come back.
    /// - The same fingerprint returns the same version; a new fingerprint a new one.
    /// - A missing source or data that breaks the schema is a permanent error (`Invalid` or
    ///   `NotFound`, never retryable) naming the file or the column.
    ///
    /// Checked by `dataset_register_idempotent`, `dataset_missing_source_fails`,
    /// `dataset_schema_violation_fails`.
    async fn register_dataset(
        &self,
        ctx: &OpContext,
        req: &DatasetRequest,
    ) -> Result<DatasetVersion>;
    /// The version of a remote `source` (`s3://`, `https://`) as this store would read it
    /// now, called at plan time for a Dataset that pins no `digest:`: an S3 VersionId or ETag,
    /// an HTTP ETag or Last-Modified. It goes into the fingerprint, so a change upstream reads
    /// the data again and retrains what depends on it.
    ///
    /// # Contract
    /// - Reads no content; the same object gives the same version, a changed one another.
    /// - A source whose changes cannot be told (an HTTP server that sends neither ETag nor
    ///   Last-Modified) is `Invalid`, saying to pin `digest:`; a scheme the store does not
    ///   read is `NotSupported`.
    ///
    /// Checked by the e2e tests `http_source_retrains_when_its_etag_or_last_modified_changes` and
    /// `s3_source_retrains_when_the_object_changes_and_labels_retag_in_place`.
    async fn source_version(&self, ctx: &OpContext, source: &str) -> Result<String>;
    /// Removes a dataset's registration (blobs may be kept for other versions).
    ///
    /// # Contract
    /// Deleting an unknown or already deleted dataset succeeds. Checked by
    /// `dataset_register_idempotent`.
    async fn delete_dataset(&self, ctx: &OpContext, name: &str) -> Result<()>;
    /// Updates the tags of the registered version with `req.fingerprint`.
    ///
    /// # Contract
    /// Afterwards what the last apply made for this resource carries `req.tags` (and none of
    /// `req.removed_labels`); nothing is read again. Checked by the e2e test
    /// `labels_update_in_place_without_retraining`.
    async fn update_in_place(&self, ctx: &OpContext, req: &InPlaceRequest) -> Result<()>;
    /// The stored profile of a dataset version (`DatasetVersion::profile_uri`: the JSON of
    /// `mlctl_ml::profile::Profile`), the baseline a Monitor judges live traffic against.
    ///
    /// # Contract
    /// The bytes stored when the version was registered; `None` for a version registered
    /// without a profile. Checked by `dataset_register_idempotent`.
    async fn read_profile(
        &self,
        ctx: &OpContext,
        version: &DatasetVersion,
    ) -> Result<Option<Vec<u8>>>;
}

// ---------------------------------------------------------------------------------------------

/// Submitting a training job.
#[derive(Debug, Clone)]
pub struct TrainingRequest {
    /// Deterministic job name (from project, resource and fingerprint).
    pub job_name: String,
    /// `metadata.name` of the TrainingJob.
    pub resource: String,
    /// The spec.
    pub spec: TrainingJobSpec,
    /// The dataset version to train on.
    pub dataset: DatasetVersion,
    /// The dataset's label column, if any.
    pub target_column: Option<String>,
    /// The dataset's schema, if it has one: column roles (what a built-in trains on),
    /// categories and the signature the model carries.
    pub schema: Option<DataSchema>,
    /// Fingerprint.
    pub fingerprint: String,
    /// Tags.
    pub tags: Tags,
    /// The dataset's `split` (seed and stratification), which rows a trainer carves for
    /// validation or testing follow when the dataset has no such part.
    pub split: Option<mlctl_spec::Split>,
}

/// The rows a run was trained, compared and scored on, so a metric can be traced to its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation {
    /// blake3 digest of the dataset version.
    pub data_digest: String,
    /// Rows trained on.
    pub train_rows: u64,
    /// Rows tuning candidates were compared on (tuned jobs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_rows: Option<u64>,
    /// Where the validation rows came from: `validation split` or how they were carved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_from: Option<String>,
    /// Rows the held-out (test) metrics were scored on.
    pub test_rows: u64,
    /// Where the test rows came from: `test split` or how they were carved.
    pub test_from: String,
    /// The seed of every carve and shuffle.
    pub seed: u64,
    /// Which rows this run's `metrics` are on: `test` (what gates judge) or `validation` (a
    /// tuning trial's, what candidates are compared by).
    pub scored_on: String,
    /// How early stopping ended on the validation rows, when it was on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<mlctl_ml::algo::boosting::EarlyStopping>,
    /// Global feature importance of the model: gain, and permutation on the rows its
    /// metrics are on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub importance: Vec<mlctl_ml::importance::Importance>,
}

/// A submitted job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobHandle {
    /// Job name.
    pub name: String,
    /// Provider's id (ARN, run id, ...).
    pub provider_id: String,
}

/// One tuning trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trial {
    /// Trial number (1-based).
    pub number: u32,
    /// Hyperparameters tried.
    pub hyperparameters: BTreeMap<String, serde_json::Value>,
    /// Objective value, if it finished.
    pub objective: Option<f64>,
    /// `completed` or `failed`.
    pub status: String,
}

/// A finished training job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainingResult {
    /// Job name.
    pub job_name: String,
    /// Where the model artifact is.
    pub artifact_uri: String,
    /// Metrics on the held-out split.
    pub metrics: BTreeMap<String, f64>,
    /// The hyperparameters used (the best trial's when tuned).
    #[serde(default)]
    pub hyperparameters: BTreeMap<String, serde_json::Value>,
    /// Tuning trials, if tuned.
    #[serde(default)]
    pub trials: Vec<Trial>,
    /// The tracking run id.
    #[serde(default)]
    pub run_id: Option<String>,
    /// Wall time.
    #[serde(default)]
    pub duration_secs: f64,
    /// The rows `metrics` were scored on, when the trainer reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<Box<Evaluation>>,
    /// Where `metrics` come from when no model was scored: an emulator's or a simulator's
    /// made-up figures (`emulated by moto: ...`). `None`: measured by the training run. Kept
    /// with the registered version (lineage [`METRICS_ORIGIN`]) and shown beside the metrics
    /// everywhere, so such figures are never read as real results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_origin: Option<String>,
}

/// The lineage key of a model version whose metrics were not measured (see
/// [`TrainingResult::metrics_origin`]).
pub const METRICS_ORIGIN: &str = "metricsOrigin";

/// Where a job is.
#[derive(Debug, Clone, PartialEq)]
pub enum JobState {
    /// Accepted, not started.
    Pending,
    /// Running.
    Running {
        /// 0..1 when known.
        progress: Option<f32>,
        /// What it is doing.
        message: Option<String>,
    },
    /// Done.
    Completed(TrainingResult),
    /// Failed, with the reason (exit code and last lines of stderr for scripts).
    Failed {
        /// Why.
        reason: String,
    },
}

/// Runs training jobs.
#[async_trait]
pub trait Trainer: Send + Sync {
    /// What this trainer can do.
    fn capabilities(&self) -> Capabilities;
    /// Starts a job, or finds the existing job with the same name.
    ///
    /// # Contract
    /// - Never starts a second job for a name, also when called concurrently; after the job
    ///   completed it returns that job and its result, without training again.
    /// - A name whose last attempt failed or was cancelled starts a new attempt, so a re-run
    ///   after the cause is fixed converges.
    ///
    /// Checked by `trainer_submit_is_idempotent`, `trainer_failure_reports_reason`.
    async fn submit(&self, ctx: &OpContext, req: &TrainingRequest) -> Result<JobHandle>;
    /// Reads a job's state.
    ///
    /// # Contract
    /// A completed job has metrics and an artifact; a failed one a non-empty reason; a job
    /// never submitted is `NotFound`. Checked by `trainer_submit_is_idempotent`,
    /// `trainer_failure_reports_reason`, `trainer_unknown_job`.
    async fn poll(&self, ctx: &OpContext, job: &JobHandle) -> Result<JobState>;
    /// Stops a job.
    ///
    /// # Contract
    /// Accepted for a running job, which then ends (failed, or completed if it won the race);
    /// only called when [`Capabilities::cancel`] is set. Checked by `trainer_cancel`.
    async fn cancel(&self, ctx: &OpContext, job: &JobHandle) -> Result<()>;
    /// Updates the tags of the job recorded in `req.outputs` (a [`TrainingResult`]).
    ///
    /// # Contract
    /// Afterwards what the last apply made for this resource carries `req.tags` (and none of
    /// `req.removed_labels`); nothing is trained. Checked by the e2e test
    /// `labels_update_in_place_without_retraining`.
    async fn update_in_place(&self, ctx: &OpContext, req: &InPlaceRequest) -> Result<()>;
    /// Tracked runs (one per job, one per tuning trial), oldest first; `resource` filters by
    /// TrainingJob name. Only called when [`Capabilities::runs`] is set.
    ///
    /// # Contract
    /// A job submitted many times has one run, `completed` once the job is. Checked by
    /// `trainer_submit_is_idempotent`.
    async fn runs(&self, _ctx: &OpContext, _resource: Option<&str>) -> Result<Vec<RunRecord>> {
        Err(crate::error::ProviderError::new(
            crate::error::ErrorKind::NotSupported,
            "trainer",
            "runs",
            "this trainer does not track runs",
        ))
    }
    /// The log of a job (stdout and stderr interleaved). Only called when
    /// [`Capabilities::logs`] is set. A long log may be cut to its end; the text then says
    /// so in its first line, with how much was cut and where the whole log is. `job` is a job
    /// name ([`RunRecord::job_name`]).
    async fn logs(&self, _ctx: &OpContext, _job: &str) -> Result<String> {
        Err(crate::error::ProviderError::new(
            crate::error::ErrorKind::NotSupported,
            "trainer",
            "logs",
            "this trainer does not keep logs",
        ))
    }
}

/// A tracked training run (MLflow's run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    /// Run id.
    pub id: String,
    /// The job it belongs to.
    pub job_name: String,
    /// TrainingJob name.
    pub resource: String,
    /// `running`, `completed`, `failed`.
    pub status: String,
    /// Hyperparameters.
    pub params: BTreeMap<String, serde_json::Value>,
    /// Metrics.
    pub metrics: BTreeMap<String, f64>,
    /// Artifact URIs.
    pub artifacts: Vec<String>,
    /// Dataset digest.
    pub data_digest: String,
    /// Code digest (script mode).
    #[serde(default)]
    pub code_digest: Option<String>,
    /// Commit.
    pub commit: String,
    /// RFC 3339.
    pub started_at: String,
    /// Wall time.
    pub duration_secs: f64,
    /// The parent run, for tuning trials.
    #[serde(default)]
    pub parent: Option<String>,
    /// The rows it was trained and scored on, when the trainer reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<Evaluation>,
}

/// A stage change in the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageTransition {
    /// Model.
    pub model: String,
    /// Version.
    pub version: u32,
    /// Stage before.
    pub from: Option<Stage>,
    /// Stage after.
    pub to: Stage,
    /// RFC 3339.
    pub at: String,
}

// ---------------------------------------------------------------------------------------------

/// Where a version stands with its reviewers: SageMaker's `ModelApprovalStatus` vocabulary.
///
/// A version registered with `approval: auto` is [`Approved`](ApprovalStatus::Approved) at
/// once; with `approval: manual` it is
/// [`PendingManualApproval`](ApprovalStatus::PendingManualApproval) until `mlctl models
/// approve` or `mlctl models reject`. Only an approved version goes to production or is
/// deployed; a rejected one never is (a later version can still be approved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "camelCase")]
pub enum ApprovalStatus {
    /// Registered with manual approval; nobody has decided yet.
    PendingManualApproval,
    /// May go to production and be deployed.
    Approved,
    /// Never deployed.
    Rejected,
}

impl ApprovalStatus {
    /// `pendingManualApproval`, `approved`, `rejected` (as in JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::PendingManualApproval => "pendingManualApproval",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Rejected => "rejected",
        }
    }

    /// The status a new version starts with under `approval`.
    pub fn initial(approval: Approval) -> ApprovalStatus {
        match approval {
            Approval::Auto => ApprovalStatus::Approved,
            Approval::Manual => ApprovalStatus::PendingManualApproval,
        }
    }
}

/// A reviewer's decision on a version (`mlctl models approve` / `reject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Let it go to production.
    Approve,
    /// Never deploy it.
    Reject,
}

impl Decision {
    /// The status the version has after the decision.
    pub fn status(self) -> ApprovalStatus {
        match self {
            Decision::Approve => ApprovalStatus::Approved,
            Decision::Reject => ApprovalStatus::Rejected,
        }
    }
}

/// A model version in the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    from = "wire::ModelVersionWire",
    into = "wire::ModelVersionWire"
)]
pub struct ModelVersion {
    /// Model name.
    pub model: String,
    /// 1, 2, ...
    pub version: u32,
    /// Stage.
    pub stage: Stage,
    /// Whether reviewers let it go to production (JSON `approvalStatus`; records written
    /// before it existed have only `approved`, read as approved or pending).
    pub approval: ApprovalStatus,
    /// Where the artifact is.
    pub artifact_uri: String,
    /// Metrics at registration.
    pub metrics: BTreeMap<String, f64>,
    /// Fingerprint of the Model resource that registered it.
    pub fingerprint: String,
    /// Lineage: run, dataset digest, commit, ...
    pub lineage: BTreeMap<String, String>,
    /// RFC 3339.
    pub created_at: String,
}

impl ModelVersion {
    /// Whether it may go to production and be deployed.
    pub fn approved(&self) -> bool {
        self.approval == ApprovalStatus::Approved
    }

    /// Refuses a decision the registry must not record, the same on every provider:
    /// approving a rejected version (a rejected version is never deployed: register a new
    /// one) and rejecting the production version (promote or roll back first). Deciding
    /// what is already decided is harmless.
    ///
    /// # Errors
    /// `Precondition`, saying what to do instead.
    pub fn check_decision(&self, provider: &str, decision: Decision) -> Result<()> {
        let (model, version) = (&self.model, self.version);
        let refuse = |message: String| {
            Err(crate::error::ProviderError::new(
                crate::error::ErrorKind::Precondition,
                provider,
                "approval",
                message,
            ))
        };
        match decision {
            Decision::Approve if self.approval == ApprovalStatus::Rejected => refuse(format!(
                "model `{model}` v{version} was rejected, and a rejected version is never deployed; register a new version (change the training or its data) and approve that one"
            )),
            Decision::Reject if self.stage == Stage::Production => refuse(format!(
                "model `{model}` v{version} is in production and cannot be rejected; promote another version first (or roll the endpoint back with `mlctl rollback`)"
            )),
            _ => Ok(()),
        }
    }

    /// Refuses promoting a version to production unless it is approved.
    ///
    /// # Errors
    /// `Precondition`, with the command that decides.
    pub fn check_promotion(&self, provider: &str, stage: Stage) -> Result<()> {
        if stage != Stage::Production || self.approved() {
            return Ok(());
        }
        let (model, version) = (&self.model, self.version);
        let message = match self.approval {
            ApprovalStatus::Rejected => format!(
                "model `{model}` v{version} was rejected and cannot go to production; register a new version"
            ),
            _ => format!(
                "model `{model}` v{version} is waiting for approval and cannot go to production yet: run `mlctl models approve {model} {version}`"
            ),
        };
        Err(crate::error::ProviderError::new(
            crate::error::ErrorKind::Precondition,
            provider,
            "set stage",
            message,
        ))
    }
}

mod wire {
    //! [`ModelVersion`](super::ModelVersion) as stored: `approvalStatus`, and `approved` as
    //! well, so records stay readable by an mlctl that knows only `approved`.
    use super::*;

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct ModelVersionWire {
        model: String,
        version: u32,
        stage: Stage,
        #[serde(default)]
        approved: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        approval_status: Option<ApprovalStatus>,
        artifact_uri: String,
        metrics: BTreeMap<String, f64>,
        fingerprint: String,
        #[serde(default)]
        lineage: BTreeMap<String, String>,
        created_at: String,
    }

    impl From<ModelVersionWire> for ModelVersion {
        fn from(w: ModelVersionWire) -> ModelVersion {
            let approval = w.approval_status.unwrap_or(if w.approved {
                ApprovalStatus::Approved
            } else {
                ApprovalStatus::PendingManualApproval
            });
            ModelVersion {
                model: w.model,
                version: w.version,
                stage: w.stage,
                approval,
                artifact_uri: w.artifact_uri,
                metrics: w.metrics,
                fingerprint: w.fingerprint,
                lineage: w.lineage,
                created_at: w.created_at,
            }
        }
    }

    impl From<ModelVersion> for ModelVersionWire {
        fn from(v: ModelVersion) -> ModelVersionWire {
            ModelVersionWire {
                approved: v.approved(),
                approval_status: Some(v.approval),
                model: v.model,
                version: v.version,
                stage: v.stage,
                artifact_uri: v.artifact_uri,
                metrics: v.metrics,
                fingerprint: v.fingerprint,
                lineage: v.lineage,
                created_at: v.created_at,
            }
        }
    }
}

/// The files of a model version's artifact, by `/`-separated path relative to it: what
/// `mlctl promote` copies from one target's registry to another's.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Artifact {
    /// Path to bytes.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Artifact {
    /// `blake3:<hex>` over every file's path and bytes (each length-prefixed, in path order):
    /// the same files give the same digest wherever they are stored, and a renamed, changed,
    /// added or missing file another.
    pub fn digest(&self) -> String {
        let mut h = blake3::Hasher::new();
        for (path, bytes) in &self.files {
            h.update(&(path.len() as u64).to_le_bytes());
            h.update(path.as_bytes());
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        }
        format!("blake3:{}", h.finalize().to_hex())
    }

    /// Total size in bytes.
    pub fn size(&self) -> u64 {
        self.files.values().map(|b| b.len() as u64).sum()
    }

    /// Reads a directory (every file under it) or a single file (under its name).
    ///
    /// # Errors
    /// `NotFound` when `path` does not exist; `Other` when it cannot be read.
    pub fn read_path(provider: &str, path: &std::path::Path) -> Result<Artifact> {
        let fail = |kind, e: std::io::Error, p: &std::path::Path| {
            crate::error::ProviderError::new(
                kind,
                provider,
                "read artifact",
                format!("{}: {e}", p.display()),
            )
        };
        let meta = std::fs::metadata(path).map_err(|e| {
            let kind = if e.kind() == std::io::ErrorKind::NotFound {
                crate::error::ErrorKind::NotFound
            } else {
                crate::error::ErrorKind::Other
            };
            fail(kind, e, path)
        })?;
        let mut files = BTreeMap::new();
        if meta.is_file() {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into());
            let bytes =
                std::fs::read(path).map_err(|e| fail(crate::error::ErrorKind::Other, e, path))?;
            files.insert(name, bytes);
            return Ok(Artifact { files });
        }
        let mut stack = vec![path.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir)
                .map_err(|e| fail(crate::error::ErrorKind::Other, e, &dir))?;
            for entry in entries {
                let entry = entry.map_err(|e| fail(crate::error::ErrorKind::Other, e, &dir))?;
                let p = entry.path();
                let ty = entry
                    .file_type()
                    .map_err(|e| fail(crate::error::ErrorKind::Other, e, &p))?;
                if ty.is_dir() {
                    stack.push(p);
                } else if ty.is_file() {
                    let rel = p
                        .strip_prefix(path)
                        .unwrap_or(&p)
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/");
                    let bytes = std::fs::read(&p)
                        .map_err(|e| fail(crate::error::ErrorKind::Other, e, &p))?;
                    files.insert(rel, bytes);
                }
            }
        }
        Ok(Artifact { files })
    }

    /// Writes the files under `dir` (created), refusing a path that would leave it.
    ///
    /// # Errors
    /// `Invalid` for a path with `..`, an absolute one or an empty one; `Other` when a file
    /// cannot be written.
    pub fn write_to(&self, provider: &str, dir: &std::path::Path) -> Result<()> {
        for (rel, bytes) in &self.files {
            let parts: Vec<&str> = rel.split('/').collect();
            if rel.is_empty()
                || parts
                    .iter()
                    .any(|p| p.is_empty() || *p == "." || *p == ".." || p.contains('\\'))
            {
                return Err(crate::error::ProviderError::new(
                    crate::error::ErrorKind::Invalid,
                    provider,
                    "store artifact",
                    format!(
                        "artifact path `{}` is not a relative path inside the artifact",
                        mlctl_spec::suggest::clip(rel, 200)
                    ),
                ));
            }
            let dest = parts.iter().fold(dir.to_path_buf(), |p, c| p.join(c));
            let write = || -> std::io::Result<()> {
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&dest, bytes)
            };
            write().map_err(|e| {
                crate::error::ProviderError::new(
                    crate::error::ErrorKind::Other,
                    provider,
                    "store artifact",
                    format!("{}: {e}", dest.display()),
                )
            })?;
        }
        Ok(())
    }
}

/// Registering a version.
#[derive(Debug, Clone)]
pub struct RegisterRequest {
    /// Model name.
    pub model: String,
    /// The training result it comes from.
    pub training: TrainingResult,
    /// Stage to register in (staging; the engine promotes).
    pub stage: Stage,
    /// Approval policy.
    pub approval: Approval,
    /// Description.
    pub description: Option<String>,
    /// Fingerprint.
    pub fingerprint: String,
    /// Lineage.
    pub lineage: BTreeMap<String, String>,
    /// Tags.
    pub tags: Tags,
}

/// Versions, stages, lineage.
#[async_trait]
pub trait Registry: Send + Sync {
    /// What this registry can do.
    fn capabilities(&self) -> Capabilities;
    /// All versions of a model, oldest first.
    ///
    /// # Contract
    /// Empty (not an error) when the model does not exist or was deleted. Checked by
    /// `registry_versions_and_stages`.
    async fn versions(&self, ctx: &OpContext, model: &str) -> Result<Vec<ModelVersion>>;
    /// Registers a version.
    ///
    /// # Contract
    /// A fingerprint registered before returns that version as is (approval status
    /// included); a new fingerprint gets the next version number, with
    /// [`ApprovalStatus::initial`] of the request's approval. Checked by
    /// `registry_versions_and_stages`, `registry_approval`.
    async fn register(&self, ctx: &OpContext, req: &RegisterRequest) -> Result<ModelVersion>;
    /// Moves a version to a stage.
    ///
    /// # Contract
    /// Promoting to production archives the previous production version; promoting the
    /// production version again changes nothing; an unknown version is `NotFound`; a version
    /// that is not approved is refused by [`ModelVersion::check_promotion`]. Checked by
    /// `registry_versions_and_stages`, `registry_approval`.
    async fn set_stage(
        &self,
        ctx: &OpContext,
        model: &str,
        version: u32,
        stage: Stage,
    ) -> Result<ModelVersion>;
    /// Records a reviewer's decision on a version: [`Decision::Approve`] makes it
    /// `Approved`, [`Decision::Reject`] makes it `Rejected`, and returns the version.
    ///
    /// # Contract
    /// Deciding the same twice is harmless; an unknown version is `NotFound`; what
    /// [`ModelVersion::check_decision`] refuses (approving a rejected version, rejecting the
    /// production one) is refused with its error and changes nothing; `versions` reads the
    /// decision back. A version that is not approved cannot go to production
    /// ([`ModelVersion::check_promotion`] in `set_stage`). Checked by `registry_approval`.
    async fn decide(
        &self,
        ctx: &OpContext,
        model: &str,
        version: u32,
        decision: Decision,
    ) -> Result<ModelVersion>;
    /// Deletes a model and its versions.
    ///
    /// # Contract
    /// Deleting an unknown model succeeds; afterwards `versions` is empty. Checked by
    /// `registry_versions_and_stages`.
    async fn delete_model(&self, ctx: &OpContext, model: &str) -> Result<()>;
    /// Updates the tags and description of the version recorded in `req.outputs` (a
    /// [`ModelVersion`]).
    ///
    /// # Contract
    /// Afterwards what the last apply made for this resource carries `req.tags` (and none of
    /// `req.removed_labels`) and `req.description`; nothing is registered. Checked by the e2e test
    /// `labels_update_in_place_without_retraining`.
    async fn update_in_place(&self, ctx: &OpContext, req: &InPlaceRequest) -> Result<()>;
    /// Every file of a version's artifact (its model directory: the model, its signature,
    /// metadata), as the registry serves it. Only called when [`Capabilities::artifacts`]
    /// is set.
    ///
    /// # Contract
    /// The bytes stored for the version, by path relative to the artifact; an artifact that
    /// is one file is that file under its name. A version whose artifact is gone is
    /// `NotFound`. Checked by `registry_artifacts_roundtrip`.
    async fn read_artifact(&self, _ctx: &OpContext, _version: &ModelVersion) -> Result<Artifact> {
        Err(crate::error::ProviderError::new(
            crate::error::ErrorKind::NotSupported,
            "registry",
            "read_artifact",
            "this registry cannot hand out the files of a version",
        ))
    }
    /// Stores an artifact that comes from another target where this registry's versions
    /// keep theirs, and returns its URI: what [`RegisterRequest::training`]'s `artifact_uri`
    /// is set to when the version is registered. Only called when [`Capabilities::artifacts`]
    /// is set.
    ///
    /// # Contract
    /// Storing the same files again is harmless; a version registered from the URI reads
    /// back exactly these files with [`Registry::read_artifact`]. Checked by
    /// `registry_artifacts_roundtrip`.
    async fn store_artifact(
        &self,
        _ctx: &OpContext,
        _model: &str,
        _artifact: &Artifact,
    ) -> Result<String> {
        Err(crate::error::ProviderError::new(
            crate::error::ErrorKind::NotSupported,
            "registry",
            "store_artifact",
            "this registry cannot take the files of a version from another target",
        ))
    }
    /// Every stage change of a model, oldest first ("which version was in production when").
    /// Only called when [`Capabilities::stage_history`] is set.
    ///
    /// # Contract
    /// Each promotion and the archiving it causes appear once, in order. Checked by
    /// `registry_versions_and_stages`.
    async fn stage_history(&self, _ctx: &OpContext, _model: &str) -> Result<Vec<StageTransition>> {
        Err(crate::error::ProviderError::new(
            crate::error::ErrorKind::NotSupported,
            "registry",
            "stage_history",
            "this registry keeps no stage history",
        ))
    }
}

// ---------------------------------------------------------------------------------------------

/// One model version serving part of an endpoint's traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Variant {
    /// Model name.
    pub model: String,
    /// Registry version.
    pub version: u32,
    /// Traffic weight in percent.
    pub weight: u32,
}

/// The live state of an endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStatus {
    /// Endpoint name.
    pub name: String,
    /// Where to call it.
    pub url: Option<String>,
    /// Health.
    pub health: Health,
    /// Versions serving traffic.
    pub variants: Vec<Variant>,
    /// Instance count.
    pub instances: u32,
    /// Detail (why degraded, rollout step, ...).
    #[serde(default)]
    pub message: Option<String>,
}

/// Deploying a model version to an endpoint.
#[derive(Debug, Clone)]
pub struct EndpointRequest {
    /// Endpoint name.
    pub name: String,
    /// The spec.
    pub spec: EndpointSpec,
    /// The version to roll out.
    pub model: ModelVersion,
    /// Fingerprint.
    pub fingerprint: String,
    /// Tags.
    pub tags: Tags,
}

/// A rollout in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentHandle {
    /// Endpoint name.
    pub endpoint: String,
    /// Provider's id of this rollout.
    pub id: String,
}

/// Where a rollout is.
#[derive(Debug, Clone, PartialEq)]
pub enum DeployState {
    /// Still rolling out (canary baking, instances starting).
    InProgress {
        /// What it is doing.
        message: String,
    },
    /// Done and serving.
    Done(EndpointStatus),
    /// Rolled back automatically; the old version serves.
    RolledBack {
        /// Why.
        reason: String,
        /// What serves now.
        status: EndpointStatus,
    },
    /// Failed.
    Failed {
        /// Why.
        reason: String,
    },
}

/// Endpoints, traffic, health.
#[async_trait]
pub trait Deployer: Send + Sync {
    /// What this deployer can do.
    fn capabilities(&self) -> Capabilities;
    /// Starts a rollout (create or update) with the spec's strategy.
    ///
    /// # Contract
    /// - Deploying what already serves changes nothing (and repairs traffic or capacity
    ///   moved by hand, or a crashed endpoint).
    /// - Deploying a new version to a live endpoint updates it with the spec's strategy.
    /// - After a failed rollout, deploying a good request to the same endpoint succeeds.
    ///
    /// Checked by `deployer_lifecycle`, `deployer_failure_reports_reason`,
    /// `apply_repairs_instance_drift`, `apply_repairs_crashed_endpoint`.
    async fn deploy(&self, ctx: &OpContext, req: &EndpointRequest) -> Result<DeploymentHandle>;
    /// Reads a rollout's state.
    ///
    /// # Contract
    /// - A rollout ends `Done` with the live status, or `Failed`/`RolledBack` with a non-empty
    ///   reason. Checked by `deployer_lifecycle`, `deployer_failure_reports_reason`.
    /// - A canary is promoted only after its new version served `minRequests` requests within
    ///   the rollback thresholds ([`crate::bake::judge`]); one that did not by `maxBakeTime`
    ///   ends `RolledBack`, saying how many it had, with the old version serving all traffic.
    ///   A deployer that cannot count them refuses the fields in its `support.rs`. Checked by
    ///   `canary_without_traffic_rolls_back`.
    async fn poll(&self, ctx: &OpContext, handle: &DeploymentHandle) -> Result<DeployState>;
    /// The live state of an endpoint.
    ///
    /// # Contract
    /// `None` (not an error) when it does not exist; what serves, how many instances and
    /// the health as they are now, including changes made outside mlctl. Checked by
    /// `deployer_lifecycle`, `apply_repairs_instance_drift`, `apply_repairs_crashed_endpoint`.
    async fn status(&self, ctx: &OpContext, name: &str) -> Result<Option<EndpointStatus>>;
    /// Puts a previous version back (manual rollback).
    ///
    /// # Contract
    /// Afterwards that version serves all traffic. Checked by `deployer_lifecycle`.
    async fn rollback(
        &self,
        ctx: &OpContext,
        name: &str,
        to: &ModelVersion,
    ) -> Result<EndpointStatus>;
    /// Deletes an endpoint.
    ///
    /// # Contract
    /// Deleting an unknown endpoint succeeds; afterwards `status` is `None`. Checked by
    /// `deployer_lifecycle`.
    async fn delete(&self, ctx: &OpContext, name: &str) -> Result<()>;
    /// Updates the tags of endpoint `req.name` and of what serves it.
    ///
    /// # Contract
    /// Afterwards what the last apply made for this resource carries `req.tags` (and none of
    /// `req.removed_labels`); nothing is deployed or restarted. Checked by the e2e test
    /// `labels_update_in_place_without_retraining`.
    async fn update_in_place(&self, ctx: &OpContext, req: &InPlaceRequest) -> Result<()>;
}

// ---------------------------------------------------------------------------------------------

/// Configuring a monitor.
#[derive(Debug, Clone)]
pub struct MonitorRequest {
    /// Monitor name.
    pub name: String,
    /// The spec.
    pub spec: MonitorSpec,
    /// The endpoint watched.
    pub endpoint: EndpointStatus,
    /// The baseline dataset.
    pub baseline: Option<DatasetVersion>,
    /// Fingerprint.
    pub fingerprint: String,
    /// Tags.
    pub tags: Tags,
}

/// A configured monitor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MonitorStatus {
    /// Monitor name.
    pub name: String,
    /// Endpoint watched.
    pub endpoint: String,
    /// Schedule as configured.
    pub schedule: String,
    /// Health (breached = degraded).
    pub health: Health,
}

/// Captured data and monitoring schedules.
#[async_trait]
pub trait MonitorSink: Send + Sync {
    /// What this sink can do.
    fn capabilities(&self) -> Capabilities;
    /// Creates or updates a monitor.
    ///
    /// # Contract
    /// Configuring the same monitor again is idempotent. Checked by
    /// `monitor_configure_remove`.
    async fn configure(&self, ctx: &OpContext, req: &MonitorRequest) -> Result<MonitorStatus>;
    /// Captured records of an endpoint (newest last, at most `limit`).
    async fn captured(
        &self,
        ctx: &OpContext,
        endpoint: &str,
        limit: usize,
    ) -> Result<Vec<serde_json::Value>>;
    /// The records [`MonitorSink::captured`] gives, each handed to `each` and dropped, in no
    /// particular order: what a monitor run reads, so a sink that can stream its capture
    /// never holds the window (a million records) in memory. Returns how many were given.
    /// The default reads them all with `captured` first.
    async fn for_each_captured(
        &self,
        ctx: &OpContext,
        endpoint: &str,
        limit: usize,
        each: &mut (dyn FnMut(serde_json::Value) + Send),
    ) -> Result<u64> {
        let records = self.captured(ctx, endpoint, limit).await?;
        let n = records.len() as u64;
        for r in records {
            each(r);
        }
        Ok(n)
    }
    /// The SLO figures of `endpoint` from `from` to `to` as its own metrics give them, for a
    /// sink whose capture lacks each request's status and latency; `None` (the default):
    /// the SLOs are judged on the captured records. Only the figures `slo` bounds need be
    /// read (a latency left `None` is "not measured" only when `slo` bounds it).
    async fn endpoint_metrics(
        &self,
        _ctx: &OpContext,
        _endpoint: &str,
        _slo: &mlctl_spec::Slo,
        _from: time::OffsetDateTime,
        _to: time::OffsetDateTime,
    ) -> Result<Option<crate::monitoring::slo::Measured>> {
        Ok(None)
    }
    /// Removes a monitor.
    ///
    /// # Contract
    /// Succeeds when there is nothing to remove. Checked by `monitor_configure_remove`.
    async fn remove(&self, ctx: &OpContext, name: &str) -> Result<()>;
    /// Updates the tags of monitor `req.name`.
    ///
    /// # Contract
    /// Afterwards what the last apply made for this resource carries `req.tags` (and none of
    /// `req.removed_labels`); nothing is reconfigured. Checked by the e2e test
    /// `labels_update_in_place_without_retraining`.
    async fn update_in_place(&self, ctx: &OpContext, req: &InPlaceRequest) -> Result<()>;
    /// The live state of a monitor (`None` when it does not exist). Only called when
    /// [`Capabilities::monitor_status`] is set; otherwise the engine trusts its own record.
    async fn status(&self, _ctx: &OpContext, _name: &str) -> Result<Option<MonitorStatus>> {
        Err(crate::error::ProviderError::new(
            crate::error::ErrorKind::NotSupported,
            "monitor",
            "status",
            "this monitor sink cannot read monitors back",
        ))
    }
}

// ---------------------------------------------------------------------------------------------

/// A model made elsewhere, as [`ModelImporter::import`] hands it to the engine to register.
#[derive(Debug, Clone, Default)]
pub struct ImportedModel {
    /// Its files, as the registry is to keep them: an mlctl portable model (`model.json`
    /// among them) when it was converted, else the MLflow model directory as it is.
    pub files: Artifact,
    /// Metrics that came with it (an MLflow run's), kept with the version.
    pub metrics: BTreeMap<String, f64>,
    /// Where it came from (`importedFrom`, the source, its flavour, ...), kept as lineage.
    pub lineage: BTreeMap<String, String>,
    /// One line for the apply's progress ("converted sklearn RandomForestClassifier").
    pub summary: String,
}

/// Reads and, where the spec asks, converts a Model's `mlflow:` source. The CLI gives one to
/// the engine ([`crate::apply::ApplyOptions::importer`]); the engine stores the files through
/// the target's registry ([`Registry::store_artifact`]) and registers them, so every target
/// takes imported models the same way.
#[async_trait]
pub trait ModelImporter: Send + Sync + std::fmt::Debug {
    /// The files of `spec` (a project path is relative to [`OpContext::project_dir`]).
    ///
    /// # Errors
    /// The source cannot be read, or `serve: native` asks for a model mlctl cannot represent
    /// exactly (`Invalid`, saying to serve it with `pyfunc`).
    async fn import(
        &self,
        ctx: &OpContext,
        model: &str,
        spec: &mlctl_spec::MlflowModel,
    ) -> Result<ImportedModel>;
}

pub use crate::state::StateStore;

/// A target: the components mlctl applies a spec with.
#[derive(Clone)]
pub struct Stack {
    /// The provider name (for messages); mixed stacks list each.
    pub provider: String,
    /// Data.
    pub data: Arc<dyn DataStore>,
    /// Training.
    pub trainer: Arc<dyn Trainer>,
    /// Registry.
    pub registry: Arc<dyn Registry>,
    /// Serving.
    pub deployer: Arc<dyn Deployer>,
    /// Monitoring.
    pub monitor: Arc<dyn MonitorSink>,
    /// Observed state and the lock.
    pub state: Arc<dyn StateStore>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

/// Reads an observed resource's outputs as `T` (the engine stores each kind's result there).
pub fn outputs<T: for<'de> Deserialize<'de>>(o: &ObservedResource) -> Option<T> {
    serde_json::from_value(o.outputs.clone()).ok()
}

/// What a provider needs to build its [`Stack`] for a target.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Project name.
    pub project: String,
    /// The project directory on this machine.
    pub project_dir: PathBuf,
    /// Target name.
    pub target_name: String,
    /// The target's settings, with every `${env:NAME}` already resolved.
    pub target: mlctl_spec::Target,
}

impl ProviderConfig {
    /// The state directory for file-based providers: `root:` from the target (relative to the
    /// project) or `.mlctl/<target>` in the project.
    pub fn state_dir(&self) -> PathBuf {
        match self.target.root() {
            Some(root) => {
                let p = PathBuf::from(root);
                if p.is_absolute() {
                    p
                } else {
                    self.project_dir.join(p)
                }
            }
            None => self.project_dir.join(".mlctl").join(&self.target_name),
        }
    }
}
