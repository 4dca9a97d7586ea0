//! Training on Azure ML: command jobs (script mode, and mlctl's built-ins run by mlctl's own
//! trainer, `mlctl __train-builtin`, in the target's `image`), and sweep jobs for tuning
//! (`crate::sweep`).
//!
//! # Guarantees
//! - Job names are the engine's deterministic names, made Azure ML names; `submit` looks the
//!   name up first, so a re-run finds the job running (or finished) instead of starting a
//!   second one. A failed or canceled job is retried under `<name>-r2`, `<name>-r3`, ...
//! - A job reads the dataset parts as `uri_file` inputs (their https blob URLs) and writes its
//!   model to the `uri_folder` output `model` at `artifacts/<job>/model/` in the target's
//!   storage, and its log (stdout and stderr) to `artifacts/<job>/logs/std_log.txt`.
//! - Built-ins train exactly as on the local target (same rows, fit, artifact and metrics).
//!   Script mode gets the SageMaker/local contract: `SM_MODEL_DIR`, `SM_CHANNEL_<PART>` (a
//!   directory holding `<part>.csv`), `SM_HPS`, `SM_HP_<NAME>`, `SM_OUTPUT_DIR`,
//!   `SM_OUTPUT_DATA_DIR`, then the user's command in its code directory.
//! - Metrics: `metrics.json` of the model output (and, for scripts, of the `output` folder and
//!   its `data/`), over the job's MLflow run, plus a script's regex `metrics` scraped from its
//!   log (`crate::metrics`).
//!
//! # Caveats
//! A dataset part's URI that is not http(s) is taken as a blob name in the target's storage.

use crate::azure::Azure;
use crate::code::{self, CodeFiles};
use crate::metrics::{self, MlflowRun};
use crate::sweep;
use async_trait::async_trait;
use mlctl_core::builtin_job::{BuiltinJob, ScoredOn};
use mlctl_core::components::InPlaceRequest;
use mlctl_core::error::Result;
use mlctl_core::support::{FieldRules, Refusal, Support};
use mlctl_core::{
    Capabilities, ErrorKind, Evaluation, JobHandle, JobState, OpContext, ProviderError, RunRecord,
    Tags, Trainer, TrainingRequest, TrainingResult, Trial,
};
use mlctl_spec::{Algorithm, AzuremlTarget, TrainingJobSpec, TuningStrategy};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Attempts of one job name before giving up (`<name>`, `<name>-r2`, ...).
const MAX_ATTEMPTS: u32 = 20;
/// The longest log `logs` returns; a longer one is cut to its end.
const MAX_LOG: usize = 1 << 20;
/// Lines of the log quoted in a failure.
const TAIL_LINES: usize = 20;

fn err(kind: ErrorKind, op: &str, message: impl Into<String>) -> ProviderError {
    ProviderError::new(kind, "azureml", op, message)
}

/// The [`Trainer`] of an Azure ML target.
pub struct AzureTrainer {
    az: Arc<Azure>,
}

impl AzureTrainer {
    pub(crate) fn new(az: Arc<Azure>) -> Self {
        AzureTrainer { az }
    }
}

// ---------------------------------------------------------------------------------------------
// Job bodies (pure)

/// Where a job runs: a named compute (`computeId`) or serverless (`resources`).
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// The compute's name, when the job runs on one.
    pub compute: Option<String>,
    /// `resources` (`instanceType`, `instanceCount`), when given.
    pub resources: Option<Value>,
}

/// `overrides.azureml.compute`, else the target's `compute`, else serverless with
/// `overrides.azureml.instanceType`, or the VM size that meets `compute` (`vms::choose`), or
/// Azure ML's default.
pub fn placement(spec: &TrainingJobSpec, target: &AzuremlTarget) -> Placement {
    let o = spec
        .compute
        .as_ref()
        .and_then(|c| c.overrides.as_ref())
        .and_then(|o| o.azureml.as_ref());
    let compute = o
        .and_then(|o| o.compute.clone())
        .or_else(|| target.compute.clone());
    let mut resources = serde_json::Map::new();
    if let Some(t) = o.and_then(|o| o.instance_type.as_ref()) {
        resources.insert("instanceType".into(), json!(t));
    } else if compute.is_none() {
        // Serverless: the VM size that meets `compute` (cpu, memory, gpu); plan refused a
        // `compute` no size meets.
        let need = crate::vms::Need::of(spec);
        if need.any()
            && let Some(vm) = crate::vms::choose(&need)
        {
            resources.insert("instanceType".into(), json!(vm.name));
        }
    }
    if let Some(n) = o.and_then(|o| o.instance_count) {
        resources.insert("instanceCount".into(), json!(n));
    }
    Placement {
        compute,
        resources: (!resources.is_empty()).then_some(Value::Object(resources)),
    }
}

/// `compute.timeout` (default 24 h) as an ISO 8601 duration (`PT7200S`).
pub fn timeout(spec: &TrainingJobSpec) -> Result<String> {
    let secs = match spec.compute.as_ref().and_then(|c| c.timeout.as_deref()) {
        Some(t) => mlctl_spec::units::parse_duration(t)
            .map_err(|e| {
                err(
                    ErrorKind::Invalid,
                    "training",
                    format!("compute.timeout: {e}"),
                )
            })?
            .as_secs()
            .max(1),
        None => 24 * 3600,
    };
    Ok(format!("PT{secs}S"))
}

/// Threads for `compute.cpu`: `ceil(cpu)`, as the local target gives a built-in.
pub fn threads(spec: &TrainingJobSpec) -> Option<u32> {
    spec.compute
        .as_ref()
        .and_then(|c| c.cpu)
        .filter(|c| *c > 0.0)
        .map(|c| c.ceil() as u32)
}

/// The thread-pool variables the usual numeric libraries read, set for a script.
const THREAD_VARS: [&str; 6] = [
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "RAYON_NUM_THREADS",
];

/// A word for `bash`, single-quoted unless it is plain.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The dataset parts a job reads, by input name: the split parts, or `table`.
pub fn parts(dataset: &mlctl_core::DatasetVersion) -> BTreeMap<String, String> {
    if dataset.splits.is_empty() {
        [(BuiltinJob::TABLE.to_string(), dataset.uri.clone())].into()
    } else {
        dataset.splits.clone()
    }
}

/// The command's output of its log: everything it prints goes to the `logs` output too.
fn logged(command: &str) -> String {
    format!(
        "set -o pipefail; mkdir -p ${{{{outputs.logs}}}}; {{ {command} ; }} 2>&1 | tee ${{{{outputs.logs}}}}/std_log.txt"
    )
}

/// The command of a built-in: `mlctl __train-builtin` on request `file`, each part an input.
pub fn builtin_command(file: &str, parts: &[String], threads: Option<u32>) -> String {
    let mut c =
        format!("mlctl __train-builtin --request {file} --model-dir ${{{{outputs.model}}}}");
    for p in parts {
        c.push_str(&format!(" --data {p}=${{{{inputs.{p}}}}}"));
    }
    if let Some(n) = threads {
        c.push_str(&format!(" --threads {n}"));
    }
    c
}

/// The command of a script: the channels and output folders of the script-mode contract,
/// then the user's command.
pub fn script_command(user: &str, parts: &BTreeMap<String, String>, dataset: &str) -> String {
    let mut c = String::from(
        "export SM_MODEL_DIR=${{outputs.model}} SM_OUTPUT_DIR=${{outputs.output}} SM_OUTPUT_DATA_DIR=${{outputs.output}}/data; mkdir -p \"$SM_OUTPUT_DATA_DIR\"; ch=\"${TMPDIR:-/tmp}/mlctl-channels\"",
    );
    for (part, uri) in parts {
        // A dataset without parts is the `train` channel, under the dataset's name.
        let (channel, file) = if part == BuiltinJob::TABLE {
            let ext = uri
                .rsplit('/')
                .next()
                .and_then(|n| n.rsplit_once('.'))
                .map(|(_, e)| e)
                .filter(|e| matches!(*e, "csv" | "parquet"))
                .unwrap_or("csv");
            ("train".to_string(), format!("{dataset}.{ext}"))
        } else {
            (part.clone(), format!("{part}.csv"))
        };
        let var = format!(
            "SM_CHANNEL_{}",
            channel.to_ascii_uppercase().replace('-', "_")
        );
        c.push_str(&format!(
            "; mkdir -p \"$ch/{channel}\" && ln -sf ${{{{inputs.{part}}}}} \"$ch/{channel}/{}\" && export {var}=\"$ch/{channel}\"",
            shell_quote(&file).trim_matches('\'')
        ));
    }
    c.push_str("; ");
    c.push_str(user);
    c
}

/// `SM_HPS` (JSON) and `SM_HP_<NAME>` (text; JSON for what is not a string).
pub fn hp_environment(hyperparameters: &BTreeMap<String, Value>) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert(
        "SM_HPS".to_string(),
        serde_json::to_string(hyperparameters).unwrap_or_default(),
    );
    for (k, v) in hyperparameters {
        let text = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        env.insert(
            format!("SM_HP_{}", k.to_ascii_uppercase().replace('-', "_")),
            text,
        );
    }
    env
}

/// A script's environment: `SM_HPS` (JSON), `SM_HP_<NAME>` and `SM_CHANNELS`, and the thread
/// variables for `compute.cpu`.
pub fn script_environment(
    hyperparameters: &BTreeMap<String, Value>,
    parts: &BTreeMap<String, String>,
    threads: Option<u32>,
) -> BTreeMap<String, String> {
    let mut env = hp_environment(hyperparameters);
    let channels: Vec<&str> = parts
        .keys()
        .map(|p| {
            if p == BuiltinJob::TABLE {
                "train"
            } else {
                p.as_str()
            }
        })
        .collect();
    env.insert(
        "SM_CHANNELS".to_string(),
        serde_json::to_string(&channels).unwrap_or_default(),
    );
    env.insert("SM_CURRENT_HOST".to_string(), "algo-1".to_string());
    env.insert("SM_HOSTS".to_string(), "[\"algo-1\"]".to_string());
    if let Some(n) = threads {
        for v in THREAD_VARS {
            env.insert(v.to_string(), n.to_string());
        }
    }
    env
}

/// Everything a command job (or a sweep's trial) is given, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPlan {
    /// The job's name.
    pub name: String,
    /// The command, without the log redirection.
    pub command: String,
    /// ARM id of the code version.
    pub code_id: String,
    /// ARM id of the environment version (or a registry reference).
    pub environment_id: String,
    /// ARM id of the compute, or none (serverless).
    pub compute_id: Option<String>,
    /// `resources`.
    pub resources: Option<Value>,
    /// Input name -> https URL of a `uri_file`.
    pub inputs: BTreeMap<String, String>,
    /// Output name -> https URL of a `uri_folder` (`model`, `logs`, `output`).
    pub outputs: BTreeMap<String, String>,
    /// `environmentVariables`.
    pub environment: BTreeMap<String, String>,
    /// ISO 8601.
    pub timeout: String,
    /// The project.
    pub experiment: String,
    /// The TrainingJob's name.
    pub display_name: String,
    /// Azure tags.
    pub tags: BTreeMap<String, String>,
    /// Azure properties (`mlctl.*`), kept with the job.
    pub properties: BTreeMap<String, String>,
}

fn inputs_json(inputs: &BTreeMap<String, String>) -> Value {
    Value::Object(
        inputs
            .iter()
            .map(|(k, uri)| {
                (
                    k.clone(),
                    json!({"jobInputType": "uri_file", "uri": uri, "mode": "ReadOnlyMount"}),
                )
            })
            .collect(),
    )
}

fn outputs_json(outputs: &BTreeMap<String, String>) -> Value {
    Value::Object(
        outputs
            .iter()
            .map(|(k, uri)| {
                (
                    k.clone(),
                    json!({"jobOutputType": "uri_folder", "uri": uri, "mode": "ReadWriteMount"}),
                )
            })
            .collect(),
    )
}

/// `PUT jobs/<name>` of a command job.
pub fn command_job_body(p: &JobPlan) -> Value {
    let mut props = json!({
        "jobType": "Command",
        "command": logged(&p.command),
        "codeId": p.code_id,
        "environmentId": p.environment_id,
        "inputs": inputs_json(&p.inputs),
        "outputs": outputs_json(&p.outputs),
        "environmentVariables": p.environment,
        "limits": {"jobLimitsType": "Command", "timeout": p.timeout},
        "experimentName": p.experiment,
        "displayName": p.display_name,
        "tags": p.tags,
        "properties": p.properties,
    });
    if let Some(c) = &p.compute_id {
        props["computeId"] = json!(c);
    }
    if let Some(r) = &p.resources {
        props["resources"] = r.clone();
    }
    json!({"properties": props})
}

/// `PUT jobs/<name>` of a sweep whose trials run `trial` (its command already has the
/// `${{search_space.*}}` arguments); `parts` from [`sweep::sweep_parts`].
pub fn sweep_job_body(trial: &JobPlan, parts: &Value) -> Value {
    let mut t = json!({
        "command": logged(&trial.command),
        "codeId": trial.code_id,
        "environmentId": trial.environment_id,
        "environmentVariables": trial.environment,
    });
    if let Some(r) = &trial.resources {
        t["resources"] = r.clone();
    }
    let mut props = json!({
        "jobType": "Sweep",
        "trial": t,
        "searchSpace": parts["searchSpace"],
        "samplingAlgorithm": parts["samplingAlgorithm"],
        "objective": parts["objective"],
        "limits": parts["limits"],
        "inputs": inputs_json(&trial.inputs),
        "outputs": outputs_json(&trial.outputs),
        "experimentName": trial.experiment,
        "displayName": trial.display_name,
        "tags": trial.tags,
        "properties": trial.properties,
    });
    if let Some(c) = &trial.compute_id {
        props["computeId"] = json!(c);
    }
    json!({"properties": props})
}

// ---------------------------------------------------------------------------------------------
// Status

/// Where an Azure ML job is, in mlctl's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Accepted, not running yet.
    Pending(String),
    /// Running (or finishing).
    Running(String),
    /// Completed.
    Completed,
    /// Failed.
    Failed,
    /// Canceled (`CancelRequested` is still [`Status::Running`]).
    Canceled,
}

/// Maps `properties.status`.
pub fn status(s: &str) -> Status {
    match s {
        "NotStarted" | "Starting" | "Provisioning" | "Preparing" | "Queued" => {
            Status::Pending(s.to_string())
        }
        "Completed" => Status::Completed,
        "Failed" => Status::Failed,
        "Canceled" => Status::Canceled,
        "Running" | "Finalizing" | "CancelRequested" => Status::Running(s.to_string()),
        // NotResponding, Paused, Unknown: not over, and nothing mlctl can do about it.
        other => Status::Running(format!("Azure ML reports the job as {other}")),
    }
}

fn job_status(job: &Value) -> Status {
    status(
        job.pointer("/properties/status")
            .and_then(Value::as_str)
            .unwrap_or("NotStarted"),
    )
}

fn is_sweep(job: &Value) -> bool {
    job.pointer("/properties/jobType").and_then(Value::as_str) == Some("Sweep")
}

/// ARM's error of a failed job (`properties.error`), when it gives one.
pub fn job_error(job: &Value) -> Option<String> {
    let e = job.pointer("/properties/error")?;
    let message = e.get("message").and_then(Value::as_str).unwrap_or("");
    Some(match e.get("code").and_then(Value::as_str) {
        Some(code) if !message.is_empty() => format!("{code}: {message}"),
        Some(code) => code.to_string(),
        None => message.to_string(),
    })
    .filter(|s| !s.is_empty())
}

/// The last `n` lines of a log.
pub fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// An Azure ML job name: letters, digits, `-` and `_`, starting with a letter or digit.
pub fn job_name(name: &str) -> String {
    code::asset_name(&[name])
}

fn attempt_name(base: &str, attempt: u32) -> String {
    if attempt <= 1 {
        base.to_string()
    } else {
        format!("{base}-r{attempt}")
    }
}

// ---------------------------------------------------------------------------------------------
// Submitting

impl AzureTrainer {
    fn artifacts(&self, job: &str, what: &str) -> String {
        self.az
            .blob
            .url(&self.az.blob.key(&format!("artifacts/{job}/{what}/")))
    }

    fn input_url(&self, uri: &str) -> String {
        if uri.starts_with("https://") || uri.starts_with("http://") {
            uri.to_string()
        } else {
            self.az.blob.url(uri)
        }
    }

    fn image(&self, spec: &TrainingJobSpec) -> String {
        if spec.algorithm.is_some() {
            self.az
                .target
                .image
                .clone()
                .unwrap_or_else(code::default_image)
        } else {
            spec.image
                .clone()
                .unwrap_or_else(|| code::CURATED_SCRIPT_ENVIRONMENT.to_string())
        }
    }

    /// The plan of a job named `name` for `req`, its code uploaded and environment
    /// registered; a sweep's trial plan when `req` is tuned.
    async fn plan(
        &self,
        ctx: &OpContext,
        req: &TrainingRequest,
        name: &str,
        tuned: Option<&TunedRows>,
    ) -> Result<JobPlan> {
        let spec = &req.spec;
        let parts = tuned.map_or_else(|| parts(&req.dataset), |t| t.trial.clone());
        let threads = threads(spec);
        let mut tags = req.tags.to_map();
        tags.insert("mlctl:job".into(), name.to_string());
        let code_name = code::asset_name(&["mlctl", &ctx.project, &req.resource]);
        let (files, command, environment) = match spec.algorithm {
            Some(algorithm) => {
                let files = builtin_files(req, algorithm)?;
                let names: Vec<String> = parts.keys().cloned().collect();
                let command = match &spec.tuning {
                    Some(t) => format!(
                        "{}{}",
                        builtin_command("trial.json", &names, threads),
                        sweep::trial_arguments(t)
                    ),
                    None => builtin_command(BuiltinJob::FILE, &names, threads),
                };
                (files, command, BTreeMap::new())
            }
            None => {
                let Some(user) = &spec.command else {
                    return Err(err(
                        ErrorKind::Invalid,
                        "training",
                        format!(
                            "TrainingJob `{}` has neither `algorithm` nor `command`",
                            req.resource
                        ),
                    ));
                };
                let mut files = match &spec.code {
                    Some(dir) => {
                        let path = ctx.project_dir.join(dir);
                        tokio::task::spawn_blocking(move || code::pack_dir(&path))
                            .await
                            .map_err(|e| err(ErrorKind::Other, "pack code", e.to_string()))??
                    }
                    None => CodeFiles::default(),
                };
                let command = match (&spec.tuning, tuned) {
                    // A trial: the wrapper exports the sampled values, runs the command and
                    // logs its metrics to the trial's MLflow run (`crate::sweep`).
                    (Some(t), Some(_)) => {
                        files.0.insert(
                            sweep::TRIAL_WRAPPER_PATH.into(),
                            sweep::TRIAL_WRAPPER.as_bytes().to_vec(),
                        );
                        let config =
                            serde_json::to_vec_pretty(&sweep::script_trial_config(spec, t))
                                .map_err(|e| err(ErrorKind::Other, "training", e.to_string()))?;
                        files.0.insert(sweep::TRIAL_CONFIG_PATH.into(), config);
                        script_command(&sweep::script_trial_command(t), &parts, &req.dataset.name)
                    }
                    _ => script_command(user, &parts, &req.dataset.name),
                };
                let env = script_environment(&spec.hyperparameters, &parts, threads);
                (files, command, env)
            }
        };
        let mut files = files;
        if files.0.is_empty() {
            // Azure ML registers no empty code; a script without `code` runs in this folder.
            files.0.insert(
                ".mlctl-code".into(),
                b"code of an mlctl job without a `code` directory\n".to_vec(),
            );
        }
        let code_id = code::ensure_code(
            &self.az,
            &code_name,
            &files,
            &format!(
                "code of TrainingJob {} (project {})",
                req.resource, ctx.project
            ),
            &req.tags,
        )
        .await?;
        let environment_id =
            code::ensure_environment(&self.az, &self.image(spec), &req.tags).await?;
        let place = placement(spec, &self.az.target);
        let mut outputs: BTreeMap<String, String> = [
            ("model".to_string(), self.artifacts(name, "model")),
            ("logs".to_string(), self.artifacts(name, "logs")),
        ]
        .into();
        if spec.algorithm.is_none() {
            outputs.insert("output".into(), self.artifacts(name, "output"));
        }
        Ok(JobPlan {
            name: name.to_string(),
            command,
            code_id,
            environment_id,
            compute_id: place
                .compute
                .map(|c| self.az.arm.id(&format!("computes/{c}"))),
            resources: place.resources,
            inputs: parts
                .iter()
                .map(|(k, v)| (k.clone(), self.input_url(v)))
                .collect(),
            outputs,
            environment,
            timeout: timeout(spec)?,
            experiment: ctx.project.clone(),
            display_name: req.resource.clone(),
            tags,
            properties: {
                let mut p = JobFacts::properties(spec);
                p.insert("mlctl.fingerprint".into(), req.fingerprint.clone());
                p.insert("mlctl.dataDigest".into(), req.dataset.digest.clone());
                p
            },
        })
    }

    async fn create(&self, ctx: &OpContext, req: &TrainingRequest, name: &str) -> Result<()> {
        let tuned = match (&req.spec.tuning, req.spec.algorithm) {
            (Some(_), None) => Some(self.tuned_script_rows(req).await?),
            _ => None,
        };
        let plan = self.plan(ctx, req, name, tuned.as_ref()).await?;
        let body = match &req.spec.tuning {
            None => command_job_body(&plan),
            Some(t) => {
                let parts = sweep::sweep_parts(t, Some(&plan.timeout))
                    .map_err(|e| err(ErrorKind::Invalid, "sweep", e))?;
                // The final job: the chosen values on `request.json` (scored on test rows).
                let final_name = sweep::final_job_name(name);
                let mut final_plan = plan.clone();
                final_plan.name = final_name.clone();
                final_plan.outputs = [
                    ("model".to_string(), self.artifacts(&final_name, "model")),
                    ("logs".to_string(), self.artifacts(&final_name, "logs")),
                ]
                .into();
                match (&tuned, &req.spec.command) {
                    // A script: the plain command on `train` and `test`, the chosen values in
                    // its environment (`RefitPlan::body_with`).
                    (Some(rows), Some(user)) => {
                        final_plan.command = script_command(user, &rows.last, &req.dataset.name);
                        final_plan.inputs = rows.last.clone();
                        final_plan.environment = script_environment(
                            &req.spec.hyperparameters,
                            &rows.last,
                            threads(&req.spec),
                        );
                        final_plan
                            .outputs
                            .insert("output".into(), self.artifacts(&final_name, "output"));
                    }
                    _ => {
                        final_plan.command = builtin_command(
                            BuiltinJob::FILE,
                            &plan.inputs.keys().cloned().collect::<Vec<_>>(),
                            threads(&req.spec),
                        );
                    }
                }
                final_plan
                    .tags
                    .insert("mlctl:job".into(), final_name.clone());
                final_plan
                    .tags
                    .insert("mlctl:sweep".into(), name.to_string());
                let refit = RefitPlan {
                    version: RefitPlan::VERSION,
                    body: command_job_body(&final_plan),
                    base_hyperparameters: req.spec.hyperparameters.clone(),
                    search_space: t.search_space.keys().cloned().collect(),
                    objective: t.objective.metric.clone(),
                    script: tuned.is_some(),
                    evaluation: tuned.map(|rows| rows.evaluation),
                };
                self.az
                    .blob
                    .put(
                        &refit_key(&self.az, name),
                        serde_json::to_vec(&refit).unwrap_or_default(),
                        "application/json",
                    )
                    .await?;
                sweep_job_body(&plan, &parts)
            }
        };
        self.az.arm.put(&format!("jobs/{name}"), &body).await?;
        Ok(())
    }
}

/// A tuned script's rows (`mlctl_core::evaluation`) as CSV blobs, channel -> https URL: the
/// trials' (`train`, `validation`) and the final job's (`train`, `test`).
#[derive(Debug, Clone)]
struct TunedRows {
    trial: BTreeMap<String, String>,
    last: BTreeMap<String, String>,
    evaluation: Evaluation,
}

impl AzureTrainer {
    /// The bytes of dataset part `uri` (a blob of the target's storage).
    async fn part_bytes(&self, req: &TrainingRequest, uri: String) -> Result<Vec<u8>> {
        let op = "carve tuning rows";
        let url = self.input_url(&uri);
        let Some(key) = self.az.blob.key_of_url(&url) else {
            return Err(err(
                ErrorKind::Invalid,
                op,
                format!(
                    "dataset `{}` is at {url}, outside the target's storage, so mlctl cannot carve the tuning's validation rows from it; register the dataset on this target",
                    req.dataset.name
                ),
            ));
        };
        self.az.blob.get(&key).await?.ok_or_else(|| {
            err(
                ErrorKind::NotFound,
                op,
                format!("dataset `{}`: {url} does not exist", req.dataset.name),
            )
        })
    }

    /// Carves a tuned script's rows as every target does and uploads them (once: a blob is
    /// named by its content).
    async fn tuned_script_rows(&self, req: &TrainingRequest) -> Result<TunedRows> {
        let stored = mlctl_core::evaluation::StoredParts::fetch(&req.dataset, |uri| {
            self.part_bytes(req, uri)
        })
        .await?;
        let (split, digest) = (req.split.clone(), req.dataset.digest.clone());
        let carved = tokio::task::spawn_blocking(move || {
            let parts = stored.read()?;
            let rows = mlctl_core::evaluation::rows(parts, split.as_ref(), &digest, true)?;
            let csv =
                |t: &mlctl_ml::Table| mlctl_ml::table::csv_bytes(t).map_err(|e| e.to_string());
            let mut files = vec![("train", csv(&rows.train)?), ("test", csv(&rows.test)?)];
            if let Some(v) = &rows.validation {
                files.push(("validation", csv(v)?));
            }
            Ok::<_, String>((files, rows.record))
        })
        .await
        .map_err(|e| err(ErrorKind::Other, "carve tuning rows", e.to_string()))?
        .map_err(|why| {
            err(
                ErrorKind::Invalid,
                "carve tuning rows",
                format!("dataset `{}`: {why}", req.dataset.name),
            )
        })?;
        let (files, evaluation) = carved;
        let mut urls = BTreeMap::new();
        for (part, bytes) in files {
            let hash = blake3::hash(&bytes).to_hex();
            let key = self.az.blob.key(&format!(
                "datasets/{}/carved/{}/{part}.csv",
                req.dataset.name,
                &hash[..32]
            ));
            if !self.az.blob.exists(&key).await? {
                self.az.blob.put(&key, bytes, "text/csv").await?;
            }
            urls.insert(part.to_string(), self.az.blob.url(&key));
        }
        let pick = |names: [&str; 2]| -> BTreeMap<String, String> {
            names
                .iter()
                .filter_map(|n| urls.get(*n).map(|u| (n.to_string(), u.clone())))
                .collect()
        };
        Ok(TunedRows {
            trial: pick(["train", "validation"]),
            last: pick(["train", "test"]),
            evaluation,
        })
    }
}

/// The requests of a built-in's code folder: `request.json` (scored on the held-out test
/// rows) and, when tuned, `trial.json` (a trial, scored on validation rows).
pub fn builtin_files(req: &TrainingRequest, algorithm: Algorithm) -> Result<CodeFiles> {
    let tuned = req.spec.tuning.is_some();
    let job = BuiltinJob {
        version: BuiltinJob::VERSION,
        job_name: req.job_name.clone(),
        resource: req.resource.clone(),
        algorithm,
        hyperparameters: req.spec.hyperparameters.clone(),
        integers: req
            .spec
            .tuning
            .as_ref()
            .map(sweep::integer_params)
            .unwrap_or_default(),
        target_column: req.target_column.clone(),
        schema: req.schema.clone(),
        split: req.split.clone(),
        dataset: req.dataset.name.clone(),
        data_digest: req.dataset.digest.clone(),
        commit: req.tags.commit.clone(),
        parts: parts(&req.dataset).into_keys().collect(),
        tuned,
        scored_on: ScoredOn::Test,
    };
    let text = |j: &BuiltinJob| {
        serde_json::to_vec_pretty(j)
            .map_err(|e| err(ErrorKind::Other, "training", format!("request: {e}")))
    };
    let mut files = BTreeMap::new();
    files.insert(BuiltinJob::FILE.to_string(), text(&job)?);
    if tuned {
        let trial = BuiltinJob {
            scored_on: ScoredOn::Validation,
            ..job
        };
        files.insert("trial.json".to_string(), text(&trial)?);
    }
    Ok(CodeFiles(files))
}

/// What a sweep's final job needs, kept at `.mlctl/refit/<sweep>.json` before the sweep is
/// created, so polling needs nothing else.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefitPlan {
    /// [`RefitPlan::VERSION`].
    pub version: u32,
    /// The final command job's body, its command without the chosen values.
    pub body: Value,
    /// The TrainingJob's own hyperparameters (the chosen values win).
    pub base_hyperparameters: BTreeMap<String, Value>,
    /// The searched names.
    pub search_space: Vec<String>,
    /// The objective metric.
    pub objective: String,
    /// Whether the final job is a script (the chosen values go to its environment, not its
    /// command line).
    #[serde(default)]
    pub script: bool,
    /// The rows a tuned script's jobs were given (a built-in records its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<Evaluation>,
}

impl RefitPlan {
    /// The format's version.
    pub const VERSION: u32 = 1;

    /// The final job's body with the chosen `values` on its command.
    pub fn body_with(&self, values: &BTreeMap<String, Value>) -> Value {
        let mut body = self.body.clone();
        if self.script {
            let mut hps = self.base_hyperparameters.clone();
            hps.extend(values.clone());
            if let Some(Value::Object(env)) = body.pointer_mut("/properties/environmentVariables") {
                env.retain(|k, _| !k.starts_with("SM_HP"));
                for (k, v) in hp_environment(&hps) {
                    env.insert(k, Value::String(v));
                }
            }
            return body;
        }
        if let Some(Value::String(c)) = body.pointer_mut("/properties/command") {
            // The command is `... ; { mlctl __train-builtin ... ; } 2>&1 | tee ...`.
            let args = sweep::chosen_arguments(values);
            *c = c.replacen(" ; }", &format!("{args} ; }}"), 1);
        }
        body
    }
}

fn refit_key(az: &Azure, sweep: &str) -> String {
    az.blob.key(&format!(".mlctl/refit/{sweep}.json"))
}

// ---------------------------------------------------------------------------------------------
// Results

impl AzureTrainer {
    async fn job(&self, name: &str) -> Result<Option<Value>> {
        self.az.arm.get(&format!("jobs/{name}")).await
    }

    async fn tracking(&self) -> Result<String> {
        self.az.arm.mlflow_base().await
    }

    async fn log_of(&self, job: &str) -> Result<Option<String>> {
        Ok(self
            .az
            .blob
            .get(
                &self
                    .az
                    .blob
                    .key(&format!("artifacts/{job}/logs/std_log.txt")),
            )
            .await?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    async fn failure(&self, name: &str, job: &Value, canceled: bool) -> String {
        if canceled {
            return format!("Azure ML job {name} was canceled");
        }
        let mut reason = format!("Azure ML job {name} failed");
        if let Some(e) = job_error(job) {
            reason.push_str(&format!(": {e}"));
        }
        if let Ok(Some(log)) = self.log_of(name).await {
            let t = tail(&log, TAIL_LINES);
            if !t.is_empty() && !reason.contains(&t) {
                reason.push_str(&format!("\nlast lines of its log:\n{t}"));
            }
        }
        reason
    }

    /// The result of completed command job `name`.
    async fn command_result(&self, name: &str, facts: &JobFacts) -> Result<TrainingResult> {
        let key = |rel: &str| self.az.blob.key(&format!("artifacts/{name}/{rel}"));
        let mut from_file = BTreeMap::new();
        let files: &[&str] = if facts.builtin {
            &["model/metrics.json"]
        } else {
            &[
                "model/metrics.json",
                "output/metrics.json",
                "output/data/metrics.json",
            ]
        };
        for f in files {
            if let Some(bytes) = self.az.blob.get(&key(f)).await? {
                let m = metrics::parse_metrics_json(&bytes)
                    .map_err(|e| err(ErrorKind::Failed, "training", format!("job {name}: {e}")))?;
                from_file.extend(m);
            }
        }
        if facts.builtin && from_file.is_empty() {
            return Err(err(
                ErrorKind::Failed,
                "training",
                format!(
                    "Azure ML job {name} completed without metrics.json in its model output ({}); its image may not be mlctl's (the target's `image`)",
                    self.artifacts(name, "model")
                ),
            ));
        }
        let evaluation = match self.az.blob.get(&key("model/evaluation.json")).await? {
            Some(b) => serde_json::from_slice::<Evaluation>(&b).ok().map(Box::new),
            None => None,
        };
        let run = match self.tracking().await {
            Ok(t) => metrics::read_run(&self.az.arm, &t, name).await,
            Err(e) => Err(e),
        };
        let run = match run {
            Ok(r) => r.unwrap_or_default(),
            // A built-in's metrics are in its metrics.json: the tracking API is a second
            // source it does not need.
            Err(_) if facts.builtin => MlflowRun::default(),
            Err(e) => return Err(e),
        };
        let mut all = metrics::merge(&from_file, &run.metrics);
        if !facts.builtin && !facts.metrics.is_empty() {
            let regexes = facts
                .metrics
                .iter()
                .map(|m| {
                    regex::Regex::new(&m.regex)
                        .map(|r| (m.name.clone(), r))
                        .map_err(|e| {
                            err(
                                ErrorKind::Invalid,
                                "training",
                                format!("metrics `{}`: {e}", m.name),
                            )
                        })
                })
                .collect::<Result<Vec<_>>>()?;
            if let Some(log) = self.log_of(name).await? {
                for (k, v) in metrics::scrape(&log, &regexes) {
                    all.entry(k).or_insert(v);
                }
            }
        }
        let duration_secs = match (run.start_time, run.end_time) {
            (Some(s), Some(e)) if e >= s => (e - s) as f64 / 1000.0,
            _ => 0.0,
        };
        Ok(TrainingResult {
            job_name: name.to_string(),
            artifact_uri: self.artifacts(name, "model"),
            metrics: all,
            hyperparameters: facts.hyperparameters.clone(),
            trials: Vec::new(),
            run_id: Some(name.to_string()),
            duration_secs,
            evaluation,
            metrics_origin: None,
        })
    }

    async fn poll_command(&self, name: &str, job: &Value) -> Result<JobState> {
        Ok(match job_status(job) {
            Status::Pending(_) => JobState::Pending,
            Status::Running(s) => JobState::Running {
                progress: None,
                message: Some(s),
            },
            Status::Completed => {
                JobState::Completed(self.command_result(name, &JobFacts::of(job)).await?)
            }
            Status::Failed => JobState::Failed {
                reason: self.failure(name, job, false).await,
            },
            Status::Canceled => JobState::Failed {
                reason: self.failure(name, job, true).await,
            },
        })
    }

    async fn trials(
        &self,
        ctx: &OpContext,
        sweep: &str,
        plan: &RefitPlan,
    ) -> Result<Vec<(Trial, String)>> {
        let tracking = self.tracking().await?;
        let runs = metrics::trial_runs(&self.az.arm, &tracking, &ctx.project, sweep).await?;
        Ok(trials_of(sweep, &runs, plan))
    }

    async fn poll_sweep(&self, ctx: &OpContext, name: &str, job: &Value) -> Result<JobState> {
        match job_status(job) {
            Status::Completed => {}
            Status::Pending(_) => return Ok(JobState::Pending),
            Status::Running(s) => {
                return Ok(JobState::Running {
                    progress: None,
                    message: Some(format!("sweep {s}")),
                });
            }
            Status::Failed => {
                return Ok(JobState::Failed {
                    reason: self.failure(name, job, false).await,
                });
            }
            Status::Canceled => {
                return Ok(JobState::Failed {
                    reason: self.failure(name, job, true).await,
                });
            }
        }
        let Some(best) = job
            .pointer("/properties/properties/best_child_run_id")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            return Ok(JobState::Failed {
                reason: format!(
                    "sweep {name} completed without naming a best trial (`best_child_run_id`)"
                ),
            });
        };
        let plan: RefitPlan = match self.az.blob.get(&refit_key(&self.az, name)).await? {
            Some(b) => serde_json::from_slice(&b).map_err(|e| {
                err(
                    ErrorKind::Failed,
                    "sweep",
                    format!("the refit plan of sweep {name} is unreadable: {e}"),
                )
            })?,
            None => {
                return Ok(JobState::Failed {
                    reason: format!(
                        "sweep {name} has no refit plan (.mlctl/refit/{name}.json); apply again to start a new sweep"
                    ),
                });
            }
        };
        let trials = self.trials(ctx, name, &plan).await?;
        let final_name = sweep::final_job_name(name);
        let chosen = match trials.iter().find(|(_, id)| *id == best) {
            Some((t, _)) if !t.hyperparameters.is_empty() => t.hyperparameters.clone(),
            _ => self.best_values(&best, &plan).await?,
        };
        let Some(final_job) = self.job(&final_name).await? else {
            self.az
                .arm
                .put(&format!("jobs/{final_name}"), &plan.body_with(&chosen))
                .await?;
            return Ok(JobState::Running {
                progress: None,
                message: Some(sweep::RUNNING_FINAL.into()),
            });
        };
        match self.poll_command(&final_name, &final_job).await? {
            JobState::Completed(mut result) => {
                let mut hps = plan.base_hyperparameters.clone();
                hps.extend(chosen);
                result.hyperparameters = hps;
                if result.evaluation.is_none() {
                    result.evaluation = plan.evaluation.clone().map(Box::new);
                }
                result.trials = trials.into_iter().map(|(t, _)| t).collect();
                Ok(JobState::Completed(result))
            }
            JobState::Failed { reason } => Ok(JobState::Failed {
                reason: format!(
                    "sweep {name} chose trial {best}, whose final job failed: {reason}"
                ),
            }),
            JobState::Running { .. } | JobState::Pending => Ok(JobState::Running {
                progress: None,
                message: Some(sweep::RUNNING_FINAL.into()),
            }),
        }
    }

    /// The sampled values of trial `best`, from its job's `hyperparameters` property.
    async fn best_values(&self, best: &str, plan: &RefitPlan) -> Result<BTreeMap<String, Value>> {
        let job = self.job(best).await?.ok_or_else(|| {
            err(
                ErrorKind::Failed,
                "sweep",
                format!("the best trial {best} is not among the workspace's jobs"),
            )
        })?;
        let text = job
            .pointer("/properties/properties/hyperparameters")
            .and_then(Value::as_str)
            .unwrap_or("{}");
        let v: BTreeMap<String, Value> = serde_json::from_str(text).unwrap_or_default();
        Ok(v.into_iter()
            .filter(|(k, _)| plan.search_space.contains(k))
            .map(|(k, v)| match v {
                Value::String(s) => (k, sweep::decode_value(&s)),
                other => (k, other),
            })
            .collect())
    }
}

/// The trials of sweep `sweep` from their MLflow runs, in trial order, with their run ids.
pub fn trials_of(sweep: &str, runs: &[MlflowRun], plan: &RefitPlan) -> Vec<(Trial, String)> {
    let mut out: Vec<(Trial, String)> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let hyperparameters = r
                .params
                .iter()
                .filter(|(k, _)| plan.search_space.contains(k))
                .map(|(k, v)| (k.clone(), sweep::decode_value(v)))
                .collect();
            (
                Trial {
                    number: sweep::trial_number(sweep, &r.id).unwrap_or(i as u32 + 1),
                    hyperparameters,
                    objective: r.metrics.get(&plan.objective).copied(),
                    status: if r.status == "FINISHED" {
                        "completed"
                    } else {
                        "failed"
                    }
                    .into(),
                },
                r.id.clone(),
            )
        })
        .collect();
    out.sort_by_key(|(t, _)| t.number);
    out
}

// ---------------------------------------------------------------------------------------------

#[async_trait]
impl Trainer for AzureTrainer {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            fields: field_rules(self.az.target.compute.is_some()),
            algorithms: Algorithm::ALL.iter().map(|(_, a)| *a).collect(),
            script_mode: true,
            tuning_strategies: vec![
                TuningStrategy::Grid,
                TuningStrategy::Random,
                TuningStrategy::Bayesian,
            ],
            cancel: true,
            runs: true,
            logs: true,
            poll_interval: self.az.settings.poll_interval,
            notes: self.az.features.notes(),
            ..Capabilities::default()
        }
    }

    async fn submit(&self, ctx: &OpContext, req: &TrainingRequest) -> Result<JobHandle> {
        let base = job_name(&req.job_name);
        for attempt in 1..=MAX_ATTEMPTS {
            let name = attempt_name(&base, attempt);
            let Some(job) = self.job(&name).await? else {
                if let Err(e) = self.create(ctx, req, &name).await {
                    // Another apply created it between the GET and the PUT: that one job
                    // is this one.
                    if self.job(&name).await.ok().flatten().is_none() {
                        return Err(e);
                    }
                }
                return Ok(JobHandle {
                    provider_id: self.az.arm.id(&format!("jobs/{name}")),
                    name,
                });
            };
            let failed = match job_status(&job) {
                Status::Failed | Status::Canceled => true,
                // A sweep whose final job failed failed as a whole.
                Status::Completed if is_sweep(&job) => self
                    .job(&sweep::final_job_name(&name))
                    .await?
                    .is_some_and(|f| matches!(job_status(&f), Status::Failed | Status::Canceled)),
                _ => false,
            };
            if !failed {
                return Ok(JobHandle {
                    provider_id: self.az.arm.id(&format!("jobs/{name}")),
                    name,
                });
            }
        }
        Err(err(
            ErrorKind::Failed,
            "submit job",
            format!(
                "Azure ML job {base} failed {MAX_ATTEMPTS} times; fix the cause and change the TrainingJob (a new fingerprint gets a new name)"
            ),
        ))
    }

    async fn poll(&self, ctx: &OpContext, job: &JobHandle) -> Result<JobState> {
        let Some(found) = self.job(&job.name).await? else {
            return Err(err(
                ErrorKind::NotFound,
                "poll job",
                format!("Azure ML has no job {}", job.name),
            ));
        };
        if is_sweep(&found) {
            self.poll_sweep(ctx, &job.name, &found).await
        } else {
            self.poll_command(&job.name, &found).await
        }
    }

    async fn cancel(&self, _ctx: &OpContext, job: &JobHandle) -> Result<()> {
        let cancel = |name: String| async move {
            match self
                .az
                .arm
                .post(&format!("jobs/{name}/cancel"), &json!({}))
                .await
            {
                Ok(_) => Ok(()),
                // Gone, or already over: nothing to stop.
                Err(e)
                    if matches!(
                        e.kind,
                        ErrorKind::NotFound | ErrorKind::Invalid | ErrorKind::Precondition
                    ) =>
                {
                    Ok(())
                }
                Err(e) => Err(e),
            }
        };
        cancel(sweep::final_job_name(&job.name)).await?;
        cancel(job.name.clone()).await
    }

    async fn update_in_place(&self, _ctx: &OpContext, req: &InPlaceRequest) -> Result<()> {
        let result: TrainingResult = req.outputs_as("azureml")?;
        let mut names = vec![result.job_name.clone()];
        if let Some(sweep) = result.job_name.strip_suffix("-final") {
            names.push(sweep.to_string());
        }
        for name in names {
            let Some(job) = self.job(&name).await? else {
                return Err(err(
                    ErrorKind::NotFound,
                    "update job tags",
                    format!(
                        "Azure ML job {name} is gone; run `mlctl apply` with a change that trains it again"
                    ),
                ));
            };
            let body = retagged(&job, &req.tags, &req.removed_labels);
            self.az.arm.put(&format!("jobs/{name}"), &body).await?;
        }
        Ok(())
    }

    async fn runs(&self, ctx: &OpContext, resource: Option<&str>) -> Result<Vec<RunRecord>> {
        let jobs = self.az.arm.list("jobs").await?;
        let tracking = self.tracking().await.ok();
        let mut by_run: BTreeMap<String, MlflowRun> = BTreeMap::new();
        if let Some(t) = &tracking {
            for j in &jobs {
                if let Some(name) = j.get("name").and_then(Value::as_str)
                    && is_sweep(j)
                {
                    for r in metrics::trial_runs(&self.az.arm, t, &ctx.project, name)
                        .await
                        .unwrap_or_default()
                    {
                        by_run.insert(r.id.clone(), r);
                    }
                }
            }
        }
        let mut out = Vec::new();
        for j in &jobs {
            let tags = j
                .pointer("/properties/tags")
                .cloned()
                .unwrap_or(Value::Null);
            let tag = |k: &str| {
                tags.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            if tag("mlctl:project") != ctx.project {
                continue;
            }
            let res = tag("mlctl:resource");
            let res = res.strip_prefix("TrainingJob/").unwrap_or(&res).to_string();
            if resource.is_some_and(|r| r != res) {
                continue;
            }
            let Some(name) = j.get("name").and_then(Value::as_str) else {
                continue;
            };
            let run = match &tracking {
                Some(t) => metrics::read_run(&self.az.arm, t, name)
                    .await
                    .ok()
                    .flatten(),
                None => None,
            }
            .unwrap_or_default();
            let started = j
                .pointer("/systemData/createdAt")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            out.push(run_record(j, name, &res, &run, None, &started));
            if is_sweep(j) {
                for r in by_run
                    .values()
                    .filter(|r| r.tags.get("mlflow.parentRunId").map(String::as_str) == Some(name))
                {
                    out.push(run_record(
                        j,
                        &r.id,
                        &res,
                        r,
                        Some(name.to_string()),
                        &started,
                    ));
                }
            }
        }
        out.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    async fn logs(&self, _ctx: &OpContext, job: &str) -> Result<String> {
        let Some(log) = self.log_of(job).await? else {
            return Err(err(
                ErrorKind::NotFound,
                "job log",
                format!(
                    "no log of Azure ML job {job} (yet) at artifacts/{job}/logs/std_log.txt in the target's storage"
                ),
            ));
        };
        Ok(cut_log(&log, MAX_LOG, &self.artifacts(job, "logs")))
    }
}

/// A log of at most `max` bytes: its end, with a first line saying what was cut and where
/// the whole log is.
pub fn cut_log(log: &str, max: usize, whole: &str) -> String {
    if log.len() <= max {
        return log.to_string();
    }
    let mut start = log.len() - max;
    while !log.is_char_boundary(start) {
        start += 1;
    }
    format!(
        "[mlctl: the first {start} bytes of this log are cut; the whole log is {whole}std_log.txt]\n{}",
        &log[start..]
    )
}

/// What reading a job's result needs, kept in its `properties` (`mlctl.*`) when submitted.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobFacts {
    /// A built-in (its metrics are mlctl's own, in metrics.json).
    pub builtin: bool,
    /// A script's regex metrics.
    pub metrics: Vec<mlctl_spec::MetricDefinition>,
    /// The hyperparameters it ran with.
    pub hyperparameters: BTreeMap<String, Value>,
}

impl JobFacts {
    /// The `properties` entries that keep these facts.
    pub fn properties(spec: &TrainingJobSpec) -> BTreeMap<String, String> {
        let mut p = BTreeMap::new();
        p.insert(
            "mlctl.mode".to_string(),
            if spec.algorithm.is_some() {
                "builtin"
            } else {
                "script"
            }
            .to_string(),
        );
        p.insert(
            "mlctl.hyperparameters".to_string(),
            serde_json::to_string(&spec.hyperparameters).unwrap_or_default(),
        );
        if !spec.metrics.is_empty() {
            p.insert(
                "mlctl.metrics".to_string(),
                serde_json::to_string(&spec.metrics).unwrap_or_default(),
            );
        }
        p
    }

    /// The facts of a job as read back.
    pub fn of(job: &Value) -> JobFacts {
        let prop = |k: &str| {
            job.pointer("/properties/properties")
                .and_then(|p| p.get(k))
                .and_then(Value::as_str)
        };
        JobFacts {
            builtin: prop("mlctl.mode") == Some("builtin"),
            metrics: prop("mlctl.metrics")
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_default(),
            hyperparameters: prop("mlctl.hyperparameters")
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_default(),
        }
    }
}

fn run_record(
    job: &Value,
    id: &str,
    resource: &str,
    run: &MlflowRun,
    parent: Option<String>,
    started: &str,
) -> RunRecord {
    let props = job
        .pointer("/properties/properties")
        .cloned()
        .unwrap_or(Value::Null);
    let prop = |k: &str| {
        props
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let status = match (parent.is_some(), run.status.as_str()) {
        (true, "FINISHED") => "completed",
        (true, "FAILED" | "KILLED") => "failed",
        (true, _) => "running",
        (false, _) => match job_status(job) {
            Status::Completed => "completed",
            Status::Failed | Status::Canceled => "failed",
            _ => "running",
        },
    };
    RunRecord {
        id: id.to_string(),
        job_name: job
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(id)
            .to_string(),
        resource: resource.to_string(),
        status: status.into(),
        params: run
            .params
            .iter()
            .map(|(k, v)| (k.clone(), sweep::decode_value(v)))
            .collect(),
        metrics: run.metrics.clone(),
        artifacts: Vec::new(),
        data_digest: prop("mlctl.dataDigest"),
        code_digest: None,
        commit: job
            .pointer("/properties/tags/mlctl:commit")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        started_at: started.to_string(),
        duration_secs: match (run.start_time, run.end_time) {
            (Some(s), Some(e)) if e >= s => (e - s) as f64 / 1000.0,
            _ => 0.0,
        },
        parent,
        evaluation: None,
    }
}

/// A job's body for a PUT that changes only its tags: `tags` set, `removed` labels dropped,
/// what the service sets itself left out.
pub fn retagged(job: &Value, tags: &Tags, removed: &[String]) -> Value {
    let mut props = job.get("properties").cloned().unwrap_or(json!({}));
    if let Some(p) = props.as_object_mut() {
        for readonly in ["status", "services", "error", "parentJobName"] {
            p.remove(readonly);
        }
        let mut map: serde_json::Map<String, Value> = p
            .get("tags")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for r in removed {
            map.remove(r);
        }
        for (k, v) in tags.to_map() {
            map.insert(k, Value::String(v));
        }
        p.insert("tags".into(), Value::Object(map));
    }
    json!({"properties": props})
}

// ---------------------------------------------------------------------------------------------
// Support

fn training(r: &mlctl_spec::Resource) -> Option<&TrainingJobSpec> {
    r.as_training_job()
}

/// The refusal of a search parameter that a sweep cannot search, once per parameter (at its
/// first key).
fn search_param_refusal(
    _: &mlctl_spec::Spec,
    r: &mlctl_spec::Resource,
    node: &mlctl_spec::Node,
) -> Option<Refusal> {
    let tuning = training(r)?.tuning.as_ref()?;
    let space = r.node.get("spec")?.get("tuning")?.get("searchSpace")?;
    let name = space.as_map()?.iter().find_map(|(name, param)| {
        let (_, first) = param.as_map()?.first()?;
        std::ptr::eq(first, node).then(|| name.as_str()).flatten()
    })?;
    let p = tuning.search_space.get(name)?;
    sweep::expression(name, p, tuning.strategy)
        .err()
        .map(|why| {
            Refusal::new(
                format!("`{name}` cannot be searched by an Azure ML sweep: {why}"),
                "give the parameter `values` (or a `step`), or a range Azure ML's sampling takes",
            )
        })
}

/// What an Azure ML target does with each TrainingJob field.
/// Why `compute.<field>` of a TrainingJob cannot be met (see `vms`); `cluster`: the target
/// runs jobs on its `compute`.
fn vm_refusal(r: &mlctl_spec::Resource, field: &str, cluster: bool) -> Option<Refusal> {
    use crate::vms::{self, Need};
    let t = training(r)?;
    let need = Need::of(t);
    let o = t
        .compute
        .as_ref()?
        .overrides
        .as_ref()
        .and_then(|o| o.azureml.as_ref());
    if o.and_then(|o| o.compute.as_ref()).is_some() || cluster {
        return (field != "cpu").then(|| {
            Refusal::new(
                format!("on a compute cluster the job gets the cluster's VM, whose {field} plan cannot check"),
                format!("remove `{field}`, or run serverless (no `overrides.azureml.compute` and no target `compute`): mlctl then chooses a VM size with enough {field}"),
            )
        });
    }
    let known = || {
        vms::TABLE
            .iter()
            .map(|v| v.name)
            .take(6)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(name) = o.and_then(|o| o.instance_type.as_deref()) {
        let Some(vm) = vms::find(name) else {
            return (field != "cpu").then(|| {
                Refusal::new(
                    format!("mlctl does not know the {field} of VM size `{name}`"),
                    format!("remove `{field}` (the VM gives what it has), or name a size mlctl knows ({}, ... {} in all)", known(), vms::TABLE.len()),
                )
            });
        };
        let short = need.shortfall(vm);
        return short.iter().find(|(f, _)| *f == field).map(|(_, what)| {
            let better =
                vms::choose(&need).map_or(String::new(), |v| format!(" (`{}` has enough)", v.name));
            Refusal::new(
                format!("the job asks {what} of `{name}`"),
                format!(
                    "name a larger `overrides.azureml.instanceType`{better}, or lower `{field}`"
                ),
            )
        });
    }
    if vms::choose(&need).is_some() {
        return None;
    }
    // No size meets it all: the fields that alone cannot be met, else the last one given.
    let alone = |f: &str| Need {
        cpu: need.cpu.filter(|_| f == "cpu"),
        memory: need.memory.filter(|_| f == "memory"),
        gpu: need.gpu.filter(|_| f == "gpu"),
    };
    let unmeetable: Vec<&str> = ["cpu", "memory", "gpu"]
        .into_iter()
        .filter(|f| alone(f).any() && vms::choose(&alone(f)).is_none())
        .collect();
    let blamed = if unmeetable.is_empty() {
        if need.gpu.is_some() { "gpu" } else { "memory" }
    } else if unmeetable.contains(&field) {
        field
    } else {
        return None;
    };
    (blamed == field).then(|| {
        Refusal::new(
            format!("no Azure VM size mlctl knows meets this `compute` ({} sizes, up to 96 vCPUs, 880 GiB and 4 GPUs)", vms::TABLE.len()),
            format!("lower `{field}`, or name a size with `overrides.azureml.instanceType` and remove `{field}`"),
        )
    })
}

/// `cluster`: the target runs jobs on its `compute` (a cluster, whose VM plan cannot see).
pub(crate) fn field_rules(cluster: bool) -> FieldRules {
    FieldRules::new()
        .with(
            "TrainingJob.spec.algorithm",
            Support::honoured_as(
                "a command job running mlctl's own trainer (`mlctl __train-builtin`) in the target's `image` (default ghcr.io/mlctl/mlctl of this version): the same rows, fit, artifact and metrics as the local target",
            ),
        )
        .with(
            "TrainingJob.spec.command",
            Support::honoured_as(
                "a command job with the script-mode contract (SM_MODEL_DIR, SM_CHANNEL_<PART>, SM_HPS, SM_OUTPUT_DATA_DIR), run in its code directory",
            ),
        )
        .with(
            "TrainingJob.spec.code",
            Support::honoured_as(
                "registered as an Azure ML code version named by the blake3 of its files (without `.git`, `.mlctl`, `.env` files and caches; a link out of it is refused), uploaded once",
            ),
        )
        .with(
            "TrainingJob.spec.image",
            Support::honoured_as(
                "script mode: the job's environment (an image, or an `azureml://` environment reference); without it Azure ML's curated sklearn-1.5 environment (a built-in runs in the target's `image`)",
            ),
        )
        .with("TrainingJob.spec.hyperparameters", Support::Honoured)
        .with_all(
            "TrainingJob.spec.metrics",
            Support::honoured_as(
                "each regex is matched against the job's log (stdout and stderr, kept in its `logs` output), the last match winning; a name the script also writes to metrics.json or MLflow keeps that value",
            ),
        )
        .with(
            "TrainingJob.spec.tuning.strategy",
            Support::check(
                "a sweep job: grid, random and bayesian as named, its trials compared on validation rows through their MLflow runs, the best trained again on the train rows and scored on the test rows (`<sweep>-final`). A built-in's trials run mlctl's own trainer; a script's run `.mlctl/trial.py` (needs python3 in the job's environment), which passes the sampled values as SM_HPS/SM_HP_<NAME>, gives the script the channels `train` and `validation` (`train` and `test` for the final job), and logs what its `metrics` regexes and metrics.json report. Halving is refused",
                |_, r, _| {
                    let t = training(r)?;
                    let tuning = t.tuning.as_ref()?;
                    sweep::sampling_algorithm(tuning).err().map(|why| {
                        Refusal::new(
                            why,
                            "use grid, random or bayesian on Azure ML, or tune with halving on the local target",
                        )
                    })
                },
            ),
        )
        .with(
            "TrainingJob.spec.tuning.seed",
            Support::check(
                "the Random sampling's `seed`; refused with bayesian (Azure ML's Bayesian sampling takes none)",
                |_, r, _| {
                    (training(r)?.tuning.as_ref()?.strategy == TuningStrategy::Bayesian).then(|| {
                        Refusal::new(
                            "Azure ML's Bayesian sampling takes no seed",
                            "remove `seed`, or use `strategy: random`",
                        )
                    })
                },
            ),
        )
        .with_all(
            "TrainingJob.spec.tuning.searchSpace",
            Support::check(
                "a sweep search space: values and stepped ranges as `choice`, ranges as `uniform`/`quniform` (`loguniform`/`qloguniform` on a log scale, not with bayesian)",
                search_param_refusal,
            ),
        )
        .with_all("TrainingJob.spec.tuning", Support::Honoured)
        .with(
            "TrainingJob.spec.compute.cpu",
            Support::check(
                "the VM size's vCPUs on serverless compute (mlctl chooses the size: Azure ML's Standard_DS3_v2 when it is enough, else the smallest that is; a named `overrides.azureml.instanceType` is checked), and threads: a built-in trains with ceil(cpu) threads, a script gets OMP_NUM_THREADS, MKL_NUM_THREADS, ... = ceil(cpu). On a compute cluster only the threads (the VM is the cluster's)",
                move |_, r, _| vm_refusal(r, "cpu", cluster),
            ),
        )
        .with(
            "TrainingJob.spec.compute.memory",
            Support::check(
                "the VM size's memory on serverless compute, chosen or checked as for `cpu`; refused on a compute cluster, whose VM plan cannot see",
                move |_, r, _| vm_refusal(r, "memory", cluster),
            ),
        )
        .with(
            "TrainingJob.spec.compute.gpu",
            Support::check(
                "the VM size's GPUs on serverless compute (an NCasT4_v3, NCv3 or NC A100 v4 size), chosen or checked as for `cpu`; refused on a compute cluster, whose VM plan cannot see",
                move |_, r, _| vm_refusal(r, "gpu", cluster),
            ),
        )
        .with(
            "TrainingJob.spec.compute.timeout",
            Support::honoured_as("the job's `limits.timeout`; a sweep's trials and its final job each get it"),
        )
        .with(
            "TrainingJob.spec.compute.overrides.azureml.compute",
            Support::honoured_as("the job's `computeId` (winning over the target's `compute`)"),
        )
        .with(
            "TrainingJob.spec.compute.overrides.azureml.instanceType",
            Support::honoured_as("`resources.instanceType` (the VM size of serverless compute)"),
        )
        .with(
            "TrainingJob.spec.compute.overrides.azureml.instanceCount",
            Support::honoured_as("`resources.instanceCount`"),
        )
        .with_all(
            "TrainingJob.spec.compute.overrides.sagemaker",
            Support::not_applicable("SageMaker's settings"),
        )
        .with_all(
            "TrainingJob.spec.compute.overrides.local",
            Support::not_applicable("the local target's settings"),
        )
}
