//! Training jobs: deterministic names, a fixed number of polls to finish, hash-derived metrics.

use crate::data::blob_uri;
use crate::store::key;
use crate::{Mock, Result, err, now};
use async_trait::async_trait;
use mlctl_core::{
    Capabilities, DatasetVersion, ErrorKind, JobHandle, JobState, OpContext, RunRecord, Tags,
    Trainer, TrainingRequest, TrainingResult, Trial, components::InPlaceRequest,
};
use mlctl_spec::{Algorithm, Goal, Param, ParamType, Scale, TrainingJobSpec};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

type Hyperparameters = BTreeMap<String, Value>;
type Metrics = BTreeMap<String, f64>;

/// A job finishes (completes or fails) on this poll.
pub(crate) const POLLS_TO_FINISH: u32 = 3;

/// Trials run for a tuning job when the spec gives no `maxTrials`, and the most ever run.
const DEFAULT_TRIALS: u32 = 10;
const MAX_TRIALS: u32 = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Running,
    Completed,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobRecord {
    /// Format of this record (`mlctl_core::state::FORMAT_VERSION` when written).
    #[serde(default = "mlctl_core::state::FormatVersion::legacy")]
    format_version: mlctl_core::state::FormatVersion,
    name: String,
    provider_id: String,
    resource: String,
    fingerprint: String,
    spec: TrainingJobSpec,
    dataset: DatasetVersion,
    target_column: Option<String>,
    tags: Tags,
    commit: String,
    /// 1 for the first submission; a failed or cancelled job submitted again gets a new attempt.
    attempt: u32,
    /// This job was the Nth submitted to the target (for `failNthTrainingJob`).
    submission: u64,
    submitted_at: String,
    submitted_unix_ms: u64,
    polls: u32,
    status: Status,
    /// The failure decided at submission by an injected fault.
    injected_failure: Option<String>,
    result: Option<TrainingResult>,
    failure: Option<String>,
    /// One run per attempt, then the tuning trials of the last attempt.
    runs: Vec<RunRecord>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Counters {
    /// Format of this record (`mlctl_core::state::FORMAT_VERSION` when written).
    #[serde(default = "mlctl_core::state::FormatVersion::legacy")]
    format_version: mlctl_core::state::FormatVersion,
    submitted: u64,
}

fn job_path(name: &str) -> String {
    format!("jobs/{}.json", key(name))
}

const COUNTERS: &str = "jobs/.counters";

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A number in `0..1` fixed by `parts` (blake3 of them, the first 8 bytes as a fraction).
fn unit(parts: &[&str]) -> f64 {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    let bytes = h.finalize();
    let n = u64::from_le_bytes(bytes.as_bytes()[..8].try_into().unwrap_or([0; 8]));
    (n >> 11) as f64 / (1u64 << 53) as f64
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Metrics for a job with these hyperparameters: stable for the same inputs, different when a
/// hyperparameter changes.
/// What the mock's metrics are (`TrainingResult::metrics_origin`).
pub(crate) const SIMULATED: &str =
    "simulated by the mock target: derived from a hash of the job, not measured on data";

fn metrics_for(
    spec: &TrainingJobSpec,
    fingerprint: &str,
    hps: &BTreeMap<String, Value>,
) -> BTreeMap<String, f64> {
    let hps = serde_json::to_string(hps).unwrap_or_default();
    let u = |name: &str| unit(&["mlctl-mock-metrics-v1", fingerprint, &hps, name]);
    let mut m = BTreeMap::new();
    match spec.algorithm {
        Some(Algorithm::LinearRegression) => {
            let rmse = 0.3 + 0.2 * u("rmse");
            m.insert("rmse".into(), rmse);
            m.insert("mae".into(), rmse * (0.75 + 0.1 * u("mae")));
            m.insert("r2".into(), 0.85 + 0.1 * u("r2"));
        }
        Some(Algorithm::Kmeans) => {
            m.insert("inertia".into(), 50.0 + 30.0 * u("inertia"));
            m.insert("silhouette".into(), 0.5 + 0.2 * u("silhouette"));
        }
        _ => {
            // Narrower than a 2-point regression gate on purpose (see the crate docs).
            let accuracy = 0.95 + 0.02 * u("accuracy");
            m.insert("accuracy".into(), accuracy);
            m.insert("f1_macro".into(), accuracy - 0.01 * u("f1_macro"));
            m.insert(
                "precision_macro".into(),
                accuracy - 0.01 * u("precision_macro"),
            );
            m.insert("recall_macro".into(), accuracy - 0.01 * u("recall_macro"));
            m.insert(
                "log_loss".into(),
                0.05 + 3.0 * (1.0 - accuracy) + 0.02 * u("log_loss"),
            );
        }
    }
    for def in &spec.metrics {
        m.entry(def.name.clone()).or_insert_with(|| u(&def.name));
    }
    m.into_iter().map(|(k, v)| (k, round4(v))).collect()
}

/// The value trial `number` tries for one searched hyperparameter.
fn sample(param: &Param, parts: &[&str]) -> Value {
    let u = unit(parts);
    if let Some(values) = param.values.as_ref().filter(|v| !v.is_empty()) {
        return values[((u * values.len() as f64) as usize).min(values.len() - 1)].clone();
    }
    let (lo, hi) = (param.min.unwrap_or(0.0), param.max.unwrap_or(1.0));
    let mut x = match param.scale {
        Some(Scale::Log) if lo > 0.0 && hi > 0.0 => (lo.ln() + u * (hi.ln() - lo.ln())).exp(),
        _ => lo + u * (hi - lo),
    };
    if let Some(step) = param.step.filter(|s| *s > 0.0) {
        x = (lo + ((x - lo) / step).round() * step).clamp(lo.min(hi), hi.max(lo));
    }
    match param.ty {
        Some(ParamType::Int) => Value::from(x.round() as i64),
        _ => serde_json::Number::from_f64(round4(x))
            .map(Value::Number)
            .unwrap_or(Value::Null),
    }
}

impl JobRecord {
    fn handle(&self) -> JobHandle {
        JobHandle {
            name: self.name.clone(),
            provider_id: self.provider_id.clone(),
        }
    }

    fn run_id(&self) -> String {
        format!("{}-run{}", self.name, self.attempt)
    }

    /// The job's state; `hangs` when the target's `timeout` fault names its resource now.
    fn state(&self, hangs: bool) -> JobState {
        match self.status {
            Status::Completed => match &self.result {
                Some(r) => JobState::Completed(r.clone()),
                None => JobState::Failed {
                    reason: "the mock job record has no result".into(),
                },
            },
            Status::Failed => JobState::Failed {
                reason: self.failure.clone().unwrap_or_else(|| "failed".into()),
            },
            Status::Cancelled => JobState::Failed {
                reason: format!("training job {} was cancelled", self.name),
            },
            Status::Running if hangs => JobState::Running {
                progress: None,
                message: Some(
                    "waiting for training capacity (mock `timeout` fault: this job never finishes)"
                        .into(),
                ),
            },
            Status::Running if self.polls == 0 => JobState::Pending,
            Status::Running => JobState::Running {
                progress: Some(self.polls as f32 / POLLS_TO_FINISH as f32),
                message: Some(format!("epoch {}/{}", self.polls, POLLS_TO_FINISH)),
            },
        }
    }

    fn finish_run(&mut self, status: &str, metrics: BTreeMap<String, f64>, artifacts: Vec<String>) {
        let duration = unix_ms().saturating_sub(self.submitted_unix_ms) as f64 / 1000.0;
        let id = self.run_id();
        if let Some(run) = self.runs.iter_mut().rev().find(|r| r.id == id) {
            run.status = status.to_string();
            run.metrics = metrics;
            run.artifacts = artifacts;
            run.duration_secs = duration;
        }
    }

    /// Trains (pretends to): metrics, the best trial when tuned, and the artifact's content.
    fn train(&mut self) -> (TrainingResult, Vec<u8>) {
        let mut hyperparameters = self.spec.hyperparameters.clone();
        let mut trials = Vec::new();
        let mut metrics = metrics_for(&self.spec, &self.fingerprint, &hyperparameters);
        if let Some(tuning) = &self.spec.tuning {
            let count = tuning
                .max_trials
                .unwrap_or(DEFAULT_TRIALS)
                .clamp(1, MAX_TRIALS);
            let seed = tuning.seed.unwrap_or(42).to_string();
            let better = |a: f64, b: f64| {
                if tuning.objective.goal == Goal::Minimize {
                    a < b
                } else {
                    a > b
                }
            };
            // (objective, hyperparameters, metrics) of the best trial so far.
            let mut best: Option<(f64, Hyperparameters, Metrics)> = None;
            let parent = self.run_id();
            for number in 1..=count {
                let mut hps = self.spec.hyperparameters.clone();
                for (name, param) in &tuning.search_space {
                    hps.insert(
                        name.clone(),
                        sample(
                            param,
                            &["mlctl-mock-trial-v1", &seed, &number.to_string(), name],
                        ),
                    );
                }
                let mut m = metrics_for(&self.spec, &self.fingerprint, &hps);
                let metric = &tuning.objective.metric;
                let objective = *m
                    .entry(metric.clone())
                    .or_insert_with(|| round4(unit(&[&self.fingerprint, metric])));
                self.runs.push(RunRecord {
                    id: format!("{parent}-trial{number}"),
                    job_name: self.name.clone(),
                    resource: self.resource.clone(),
                    status: "completed".into(),
                    params: hps.clone(),
                    metrics: m.clone(),
                    artifacts: Vec::new(),
                    data_digest: self.dataset.digest.clone(),
                    code_digest: None,
                    commit: self.commit.clone(),
                    started_at: self.submitted_at.clone(),
                    duration_secs: 0.0,
                    parent: Some(parent.clone()),
                    evaluation: None,
                });
                trials.push(Trial {
                    number,
                    hyperparameters: hps.clone(),
                    objective: Some(objective),
                    status: "completed".into(),
                });
                if best.as_ref().is_none_or(|(b, _, _)| better(objective, *b)) {
                    best = Some((objective, hps, m));
                }
            }
            if let Some((_, hps, m)) = best {
                hyperparameters = hps;
                metrics = m;
            }
        }
        let model = serde_json::json!({
            "format": "mlctl-mock-model/v1",
            "job": self.name,
            "resource": self.resource,
            "algorithm": self.spec.algorithm.map(Algorithm::as_str),
            "command": self.spec.command,
            "hyperparameters": hyperparameters,
            "targetColumn": self.target_column,
            "columns": self.dataset.columns,
            "dataDigest": self.dataset.digest,
            "metrics": metrics,
        });
        let bytes = serde_json::to_vec_pretty(&model).unwrap_or_default();
        let digest = blake3::hash(&bytes).to_hex().to_string();
        let result = TrainingResult {
            job_name: self.name.clone(),
            artifact_uri: blob_uri(&digest),
            metrics,
            hyperparameters,
            trials,
            run_id: Some(self.run_id()),
            duration_secs: unix_ms().saturating_sub(self.submitted_unix_ms) as f64 / 1000.0,
            evaluation: None,
            metrics_origin: Some(SIMULATED.into()),
        };
        (result, bytes)
    }
}

#[async_trait]
impl Trainer for Mock {
    fn capabilities(&self) -> Capabilities {
        Mock::capabilities(self)
    }

    async fn submit(&self, ctx: &OpContext, req: &TrainingRequest) -> Result<JobHandle> {
        let op = "submit";
        self.enter(op).await?;
        if req.spec.algorithm.is_none() && req.spec.command.is_none() {
            return Err(err(
                ErrorKind::Invalid,
                op,
                format!(
                    "training job `{}` has neither `algorithm` nor `command`",
                    req.resource
                ),
            ));
        }
        let store = self.store();
        let faults = self.faults();
        // One lock for all jobs: the submission counter and the job are one decision.
        // Lock order: "jobs", then the job's own lock (poll and cancel take only the latter).
        store.locked(op, "jobs", || {
            store.update(op, &job_path(&req.job_name), |rec: &mut Option<JobRecord>| {
            if let Some(job) = rec.as_ref().filter(|j| !matches!(j.status, Status::Failed | Status::Cancelled)) {
                return Ok(job.handle());
            }
            let previous = rec.take();
            let mut counters: Counters = store.read(op, COUNTERS)?.unwrap_or_default();
            counters.submitted += 1;
            let n = counters.submitted;
            store.write(op, COUNTERS, &counters)?;
            let injected_failure = if faults.fail_training.iter().any(|r| r == &req.resource) {
                Some(format!("injected fault: the mock target's faults.failTraining lists `{}`", req.resource))
            } else if faults.fail_nth_training_job.is_some_and(|nth| u64::from(nth) == n) {
                Some(format!("injected fault: this is training job #{n} submitted to the mock target, and faults.failNthTrainingJob is {n}"))
            } else {
                None
            };
            let attempt = previous.as_ref().map_or(1, |p| p.attempt + 1);
            let mut runs = previous.map(|p| p.runs).unwrap_or_default();
            let submitted_at = now();
            let run = RunRecord {
                id: format!("{}-run{attempt}", req.job_name),
                job_name: req.job_name.clone(),
                resource: req.resource.clone(),
                status: "running".into(),
                params: req.spec.hyperparameters.clone(),
                metrics: BTreeMap::new(),
                artifacts: Vec::new(),
                data_digest: req.dataset.digest.clone(),
                code_digest: req.spec.code.as_ref().map(|c| blake3::hash(c.as_bytes()).to_hex().to_string()),
                commit: ctx.commit.clone(),
                started_at: submitted_at.clone(),
                duration_secs: 0.0,
                parent: None,
                evaluation: None,
            };
            runs.push(run);
            let job = JobRecord {
                format_version: Default::default(),
                name: req.job_name.clone(),
                provider_id: format!("mock-job-{n}"),
                resource: req.resource.clone(),
                fingerprint: req.fingerprint.clone(),
                spec: req.spec.clone(),
                dataset: req.dataset.clone(),
                target_column: req.target_column.clone(),
                tags: req.tags.clone(),
                commit: ctx.commit.clone(),
                attempt,
                submission: n,
                submitted_at,
                submitted_unix_ms: unix_ms(),
                polls: 0,
                status: Status::Running,
                injected_failure,
                result: None,
                failure: None,
                runs,
            };
            let handle = job.handle();
            *rec = Some(job);
            Ok(handle)
            })
        })
    }

    async fn poll(&self, _ctx: &OpContext, job: &JobHandle) -> Result<JobState> {
        let op = "poll_job";
        self.enter(op).await?;
        self.store()
            .update(op, &job_path(&job.name), |rec: &mut Option<JobRecord>| {
                let Some(j) = rec.as_mut() else {
                    return Err(err(
                        ErrorKind::NotFound,
                        op,
                        format!(
                            "training job {} does not exist on the mock target",
                            job.name
                        ),
                    ));
                };
                // The fault is read from the current target config, not frozen at submission, so a
                // job left running by a killed process finishes once the fault is removed.
                let hangs = self.faults().timeout.iter().any(|r| r == &j.resource);
                if j.status != Status::Running || hangs {
                    return Ok(j.state(hangs));
                }
                j.polls += 1;
                if j.polls >= POLLS_TO_FINISH {
                    if let Some(reason) = j.injected_failure.clone() {
                        j.status = Status::Failed;
                        j.failure = Some(reason);
                        j.finish_run("failed", BTreeMap::new(), Vec::new());
                    } else {
                        let (result, artifact) = j.train();
                        self.store_blob(op, &artifact)?;
                        j.finish_run(
                            "completed",
                            result.metrics.clone(),
                            vec![result.artifact_uri.clone()],
                        );
                        j.status = Status::Completed;
                        j.result = Some(result);
                    }
                }
                Ok(j.state(false))
            })
    }

    async fn update_in_place(&self, _ctx: &OpContext, req: &InPlaceRequest) -> Result<()> {
        self.enter("update_in_place").await?;
        let op = "update job tags";
        let result: TrainingResult = req.outputs_as(crate::PROVIDER)?;
        self.store().update(
            op,
            &job_path(&result.job_name),
            |rec: &mut Option<JobRecord>| {
                let rec = rec
                    .as_mut()
                    .ok_or_else(|| crate::gone(op, format!("training job {}", result.job_name)))?;
                rec.tags = req.tags.clone();
                Ok(())
            },
        )
    }

    async fn cancel(&self, _ctx: &OpContext, job: &JobHandle) -> Result<()> {
        let op = "cancel";
        self.enter(op).await?;
        self.store()
            .update(op, &job_path(&job.name), |rec: &mut Option<JobRecord>| {
                let Some(j) = rec.as_mut() else {
                    return Err(err(
                        ErrorKind::NotFound,
                        op,
                        format!(
                            "training job {} does not exist on the mock target",
                            job.name
                        ),
                    ));
                };
                if j.status == Status::Running {
                    j.status = Status::Cancelled;
                    j.finish_run("failed", BTreeMap::new(), Vec::new());
                }
                Ok(())
            })
    }

    async fn runs(&self, _ctx: &OpContext, resource: Option<&str>) -> Result<Vec<RunRecord>> {
        let op = "runs";
        self.enter(op).await?;
        let mut jobs: Vec<JobRecord> = Vec::new();
        for rel in self.store().list(op, "jobs")? {
            if let Some(j) = self.store().read::<JobRecord>(op, &rel)?
                && resource.is_none_or(|r| r == j.resource)
            {
                jobs.push(j);
            }
        }
        jobs.sort_by_key(|j| j.submission);
        Ok(jobs.into_iter().flat_map(|j| j.runs).collect())
    }

    async fn logs(&self, _ctx: &OpContext, job: &str) -> Result<String> {
        let op = "logs";
        self.enter(op).await?;
        let Some(j) = self.store().read::<JobRecord>(op, &job_path(job))? else {
            return Err(err(
                ErrorKind::NotFound,
                op,
                format!("training job {job} does not exist on the mock target"),
            ));
        };
        let mut out = format!(
            "[mock] training job {} (attempt {}) for {} on dataset {} ({} rows, digest {})\n",
            j.name,
            j.attempt,
            j.resource,
            j.dataset.name,
            j.dataset.rows,
            &j.dataset.digest[..j.dataset.digest.len().min(12)]
        );
        for p in 1..=j.polls.min(POLLS_TO_FINISH) {
            out.push_str(&format!("[mock] epoch {p}/{POLLS_TO_FINISH}\n"));
        }
        match (&j.status, &j.result) {
            (Status::Completed, Some(r)) => {
                let m: Vec<String> = r.metrics.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push_str(&format!("[mock] completed: {}\n", m.join(" ")));
            }
            (Status::Failed, _) => out.push_str(&format!(
                "[mock] failed: {}\n",
                j.failure.clone().unwrap_or_default()
            )),
            (Status::Cancelled, _) => out.push_str("[mock] cancelled\n"),
            _ => {}
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(hps: &[(&str, Value)]) -> TrainingJobSpec {
        serde_json::from_value(serde_json::json!({
            "dataset": "iris",
            "algorithm": "logistic_regression",
            "hyperparameters": hps.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<serde_json::Map<_, _>>(),
        }))
        .unwrap()
    }

    #[test]
    fn metrics_are_stable_in_range_and_follow_hyperparameters() {
        let a = spec(&[("C", 1.0.into())]);
        let b = spec(&[("C", 0.5.into())]);
        let ma = metrics_for(&a, "fp", &a.hyperparameters);
        assert_eq!(ma, metrics_for(&a, "fp", &a.hyperparameters));
        assert_ne!(ma, metrics_for(&b, "fp", &b.hyperparameters));
        for fp in ["a", "b", "c", "d", "e", "f"] {
            let m = metrics_for(&a, fp, &a.hyperparameters);
            assert!((0.95..=0.97).contains(&m["accuracy"]), "{m:?}");
            assert!(m["f1_macro"] >= 0.85 && m["log_loss"] > 0.0, "{m:?}");
        }
    }

    #[test]
    fn sampling_respects_types_ranges_and_values() {
        let p: Param =
            serde_json::from_value(serde_json::json!({"type": "int", "min": 2, "max": 8})).unwrap();
        for i in 0..20 {
            let v = sample(&p, &[&i.to_string()]).as_i64().unwrap();
            assert!((2..=8).contains(&v));
        }
        let p: Param = serde_json::from_value(serde_json::json!({"values": ["a", "b"]})).unwrap();
        assert!(matches!(sample(&p, &["x"]).as_str(), Some("a" | "b")));
        let p: Param =
            serde_json::from_value(serde_json::json!({"min": 0.001, "max": 10, "scale": "log"}))
                .unwrap();
        let v = sample(&p, &["y"]).as_f64().unwrap();
        assert!((0.001..=10.0).contains(&v));
    }
}
