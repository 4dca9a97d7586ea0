//! The local [`Trainer`]: built-in algorithms in-process, scripts as child processes, tuning
//! trials in parallel, every run tracked in `state.db`.
//!
//! # Guarantees
//! - `submit` returns at once; the job runs on a tokio task (built-ins on a blocking thread).
//! - Jobs are rows keyed by their deterministic name: a second `submit` of the same name, from
//!   this process or another, returns the same job instead of starting a second one. A job
//!   whose row says `running` but whose owning process is gone is re-run (a new attempt) by the
//!   next `submit` or `poll`; a job that failed is re-run by the next `submit`.
//! - Every job has a run (MLflow's run: params, metrics, artifacts, data and code digests,
//!   commit, duration, status, log); every tuning trial has a run whose parent is the job's.
//!
//! # Caveats
//! `cancel` of a job owned by another live process marks it failed; that process's child keeps
//! running until it ends, and its result is then ignored.

mod builtin;
mod evaluation;
mod script;

use crate::db::{Db, DbError, DbResult, json};
use crate::fsutil::io_at;
use crate::process::note;
use crate::{PROVIDER, blocking, now, unique_suffix};
use async_trait::async_trait;
use mlctl_core::components::{
    Capabilities, DatasetVersion, Evaluation, InPlaceRequest, JobHandle, JobState, OpContext,
    RunRecord, Tags, Trainer, TrainingRequest, TrainingResult, Trial,
};
use mlctl_core::error::{ErrorKind, ProviderError, Result};
use mlctl_ml::digest::{DigestCache, digest_path};
use mlctl_ml::tune;
use mlctl_spec::{TrainingJobSpec, TuningStrategy};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Hyperparameters of a run.
pub(crate) type Params = BTreeMap<String, serde_json::Value>;

/// Everything needed to (re-)run a job, stored with it so another process can take it over.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct JobRequest {
    pub job_name: String,
    pub resource: String,
    pub spec: TrainingJobSpec,
    pub dataset: DatasetVersion,
    pub target_column: Option<String>,
    /// Absent in jobs stored before column roles: every column but the target is a feature.
    #[serde(default)]
    pub schema: Option<mlctl_spec::DataSchema>,
    pub fingerprint: String,
    pub tags: Tags,
    pub project: String,
    pub project_dir: PathBuf,
    pub commit: String,
    /// The dataset's `split` (the seed and stratification of carved rows).
    #[serde(default)]
    pub split: Option<mlctl_spec::Split>,
}

impl JobRequest {
    fn mode(&self) -> &'static str {
        if self.spec.algorithm.is_some() {
            "builtin"
        } else {
            "script"
        }
    }
}

/// One training execution (the job itself, or one tuning trial).
pub(crate) struct TrialRun<'a> {
    pub job: &'a JobRequest,
    pub params: &'a Params,
    pub run_id: String,
    pub run_dir: PathBuf,
    pub log: PathBuf,
    /// Successive halving: the fraction of the full budget (training rows) for this round.
    pub budget: Option<f64>,
    /// The mlctl executable, which runs script-mode commands within their `compute` limits.
    pub mlctl: PathBuf,
    /// Which of the trials running side by side this is (0 for a single run): its share of
    /// the CPUs when `compute.cpu` pins them.
    pub slot: usize,
    /// The rows to train and score on (built-ins; script mode when tuned, as channels).
    pub rows: Option<Arc<evaluation::Rows>>,
    /// A tuning trial: scored on the validation rows, with no test rows or channel.
    pub trial: bool,
    /// Where a script-mode command is recorded while it runs ([`crate::strays`]).
    pub procs: PathBuf,
}

/// What a training execution produced.
#[derive(Debug, Clone)]
pub(crate) struct TrialOutput {
    pub metrics: BTreeMap<String, f64>,
    pub model_dir: PathBuf,
    /// The rows the metrics are on, when mlctl chose them.
    pub evaluation: Option<Evaluation>,
}

/// Jobs this process is running, by `<state dir>\0<job name>`, with their cancel switches.
static ACTIVE: LazyLock<Mutex<HashMap<String, Active>>> = LazyLock::new(Default::default);

/// A job attempt running in this process.
struct Active {
    attempt: i64,
    cancel: watch::Sender<bool>,
}

fn active() -> std::sync::MutexGuard<'static, HashMap<String, Active>> {
    ACTIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Identifies a process across pid reuse: host, pid and the process's start time.
#[derive(Debug, Clone)]
struct Owner {
    host: String,
    pid: u32,
    start: i64,
}

impl Owner {
    fn me() -> Owner {
        let host = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".into());
        Owner {
            host,
            pid: std::process::id(),
            start: process_start(std::process::id()).unwrap_or(0),
        }
    }
}

/// The start time of a live, non-zombie process (clock ticks since boot), from `/proc`.
#[cfg(target_os = "linux")]
fn process_start(pid: u32) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

#[cfg(not(target_os = "linux"))]
fn process_start(pid: u32) -> Option<i64> {
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).ok()?)?;
    rustix::process::test_kill_process(pid).is_ok().then_some(0)
}

fn internal(op: &str, message: impl Into<String>) -> ProviderError {
    ProviderError::new(ErrorKind::Other, PROVIDER, op, message)
}

/// The local [`Trainer`].
#[derive(Clone)]
pub struct LocalTrainer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LocalTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTrainer")
            .field("state_dir", &self.inner.state_dir)
            .finish_non_exhaustive()
    }
}

struct Inner {
    db: Db,
    state_dir: PathBuf,
    me: Owner,
    code_digests: Mutex<DigestCache>,
    /// The mlctl executable (`mlctl __limit` applies a job's compute limits).
    mlctl: PathBuf,
}

/// A tracked run's directory and log.
#[derive(Debug, Clone)]
struct RunHandle {
    id: String,
    dir: PathBuf,
    log: PathBuf,
}

/// How a run ended: its output and the params it used, or why it failed.
enum RunEnd<'a> {
    Completed(&'a TrialOutput, &'a Params),
    Failed(String),
}

/// What `submit`/`poll` decided about a job row.
enum Claim {
    /// Leave it: finished, or running in a live process.
    Existing,
    /// Run it (again) as this attempt; it is already registered as active in this process.
    Start(i64, Box<JobRequest>, watch::Receiver<bool>),
}

impl Inner {
    fn key(&self, job: &str) -> String {
        format!("{}\0{job}", self.state_dir.display())
    }

    fn owner_alive(&self, host: &str, pid: i64, start: i64, job: &str) -> bool {
        if host != self.me.host {
            // Another machine sharing the directory: nothing to check it with.
            return true;
        }
        if pid == self.me.pid as i64 {
            return active().contains_key(&self.key(job));
        }
        match process_start(pid as u32) {
            None => false,
            Some(s) => start == 0 || s == 0 || s == start,
        }
    }

    /// Decides, atomically across processes, whether this process (re-)runs job `name`.
    /// `fresh` is the request of a `submit` (None from `poll`, which re-runs the stored one).
    fn claim(&self, c: &mut Connection, name: &str, fresh: Option<&JobRequest>) -> DbResult<Claim> {
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let row = tx
            .query_row("SELECT status, owner_host, owner_pid, owner_start, attempt, request FROM jobs WHERE name = ?1", [name], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?, r.get::<_, i64>(4)?, r.get::<_, String>(5)?))
            })
            .optional()?;
        let me = &self.me;
        let claim = match row {
            None => {
                let Some(req) = fresh else {
                    return Err(DbError::Provider(ProviderError::new(
                        ErrorKind::NotFound,
                        PROVIDER,
                        "poll",
                        format!("no training job `{name}` on this target"),
                    )));
                };
                tx.execute(
                    "INSERT INTO jobs (name, project, resource, fingerprint, mode, status, request, owner_host, owner_pid, owner_start, attempt, submitted_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6, ?7, ?8, ?9, 1, ?10)",
                    params![name, req.project, req.resource, req.fingerprint, req.mode(), json(req), me.host, me.pid as i64, me.start, now()],
                )?;
                Claim::Start(1, Box::new(req.clone()), self.register(name, 1))
            }
            Some((status, host, pid, start, attempt, stored)) => {
                let rerun = match status.as_str() {
                    "completed" => false,
                    "failed" => fresh.is_some(),
                    _ => !self.owner_alive(&host, pid, start, name),
                };
                if rerun {
                    let req: JobRequest = match fresh {
                        Some(r) => r.clone(),
                        None => serde_json::from_str(&stored)?,
                    };
                    tx.execute(
                        "UPDATE jobs SET status = 'running', request = ?2, result = NULL, reason = NULL, progress = NULL, message = NULL,
                         owner_host = ?3, owner_pid = ?4, owner_start = ?5, attempt = ?6, finished_at = NULL WHERE name = ?1",
                        params![name, json(&req), me.host, me.pid as i64, me.start, attempt + 1],
                    )?;
                    Claim::Start(attempt + 1, Box::new(req), self.register(name, attempt + 1))
                } else {
                    Claim::Existing
                }
            }
        };
        // Registered as active before the commit, so a concurrent submit in this process
        // never sees a `running` row without its runner.
        if let Err(e) = tx.commit() {
            if let Claim::Start(attempt, ..) = &claim {
                self.unregister(name, *attempt);
            }
            return Err(e.into());
        }
        Ok(claim)
    }

    fn register(&self, job: &str, attempt: i64) -> watch::Receiver<bool> {
        let (cancel, rx) = watch::channel(false);
        active().insert(self.key(job), Active { attempt, cancel });
        rx
    }

    /// Forgets attempt `attempt` of `job` (not a newer attempt that replaced it).
    fn unregister(&self, job: &str, attempt: i64) {
        let mut map = active();
        let key = self.key(job);
        if map.get(&key).is_some_and(|a| a.attempt == attempt) {
            map.remove(&key);
        }
    }

    /// Records a progress note on the job row (fire and forget).
    fn progress(self: &Arc<Self>, job: &str, attempt: i64, fraction: Option<f32>, message: String) {
        let (db, job) = (self.db.clone(), job.to_string());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = db
                    .call("job progress", move |c| {
                        c.execute(
                            "UPDATE jobs SET progress = COALESCE(?3, progress), message = ?4 WHERE name = ?1 AND attempt = ?2 AND status = 'running'",
                            params![job, attempt, fraction.map(f64::from), message],
                        )?;
                        Ok(())
                    })
                    .await;
            });
        }
    }

    async fn new_run(
        &self,
        job: &JobRequest,
        parent: Option<&str>,
        trial: Option<u32>,
        params: &Params,
        code_digest: Option<String>,
    ) -> Result<RunHandle> {
        let id = format!("run-{}", unique_suffix());
        let dir = self.state_dir.join("runs").join(&id);
        std::fs::create_dir_all(&dir).map_err(|e| io_at("create run directory", &dir, e))?;
        let log = dir.join("train.log");
        let (job, id2, parent, params, log2) = (
            job.clone(),
            id.clone(),
            parent.map(str::to_string),
            params.clone(),
            log.clone(),
        );
        self.db
            .call("start run", move |c| {
                c.execute(
                    "INSERT INTO runs (id, project, job_name, resource, status, params, metrics, artifacts, data_digest, code_digest, commit_sha, started_at, parent, trial, log_path)
                     VALUES (?1, ?2, ?3, ?4, 'running', ?5, '{}', '[]', ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    params![
                        id2,
                        job.project,
                        job.job_name,
                        job.resource,
                        json(&params),
                        job.dataset.digest,
                        code_digest,
                        job.commit,
                        now(),
                        parent,
                        trial.map(i64::from),
                        log2.to_string_lossy()
                    ],
                )?;
                Ok(())
            })
            .await?;
        Ok(RunHandle { id, dir, log })
    }

    async fn end_run(&self, id: &str, outcome: RunEnd<'_>, elapsed: Duration) -> Result<()> {
        self.end_run_and_job(id, outcome, elapsed, None).await
    }

    /// Ends run `id` and, in the same transaction, job `(name, attempt)` with its outcome
    /// (`completed` with the result, or `failed` with the reason): an apply killed between
    /// the two would otherwise leave a completed run under a job still `running`, which the
    /// next apply reclaims and trains a second time.
    async fn end_run_and_job(
        &self,
        id: &str,
        outcome: RunEnd<'_>,
        elapsed: Duration,
        job: Option<(&str, i64, std::result::Result<&TrainingResult, &str>)>,
    ) -> Result<()> {
        let job = job.map(|(name, attempt, outcome)| {
            let (status, result, reason) = match outcome {
                Ok(r) => ("completed", Some(json(r)), None),
                Err(e) => ("failed", None, Some(e.to_string())),
            };
            (name.to_string(), attempt, status, result, reason)
        });
        let id = id.to_string();
        let (status, metrics, artifacts, params, error, evaluation) = match outcome {
            RunEnd::Completed(out, p) => (
                "completed",
                json(&out.metrics),
                json(&[out.model_dir.to_string_lossy()]),
                Some(json(p)),
                None,
                out.evaluation.as_ref().map(json),
            ),
            RunEnd::Failed(e) => (
                "failed",
                "{}".to_string(),
                "[]".to_string(),
                None,
                Some(e),
                None,
            ),
        };
        self.db
            .call("end run", move |c| {
                let tx = c.transaction()?;
                tx.execute(
                    "UPDATE runs SET status = ?2, metrics = ?3, artifacts = ?4, params = COALESCE(?5, params), error = ?6, duration_secs = ?7, evaluation = ?8 WHERE id = ?1",
                    params![id, status, metrics, artifacts, params, error, elapsed.as_secs_f64(), evaluation],
                )?;
                if let Some((name, attempt, status, result, reason)) = job {
                    tx.execute(
                        "UPDATE jobs SET status = ?3, result = ?4, reason = ?5, progress = 1, finished_at = ?6 WHERE name = ?1 AND attempt = ?2 AND status = 'running'",
                        params![name, attempt, status, result, reason, now()],
                    )?;
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }
}

impl LocalTrainer {
    pub(crate) fn new(db: Db, state_dir: &Path, mlctl: PathBuf) -> Self {
        let state_dir =
            std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
        let code_digests = Mutex::new(DigestCache::open(
            state_dir.join("cache").join("code-digests.json"),
        ));
        LocalTrainer {
            inner: Arc::new(Inner {
                db,
                state_dir,
                me: Owner::me(),
                code_digests,
                mlctl,
            }),
        }
    }

    async fn claim(&self, name: &str, fresh: Option<JobRequest>) -> Result<()> {
        let (inner, name2) = (self.inner.clone(), name.to_string());
        let claim = self
            .inner
            .db
            .call("claim job", move |c| inner.claim(c, &name2, fresh.as_ref()))
            .await?;
        if let Claim::Start(attempt, req, cancel) = claim {
            start(self.inner.clone(), *req, attempt, cancel);
        }
        Ok(())
    }
}

/// Runs a claimed job on a tokio task.
fn start(inner: Arc<Inner>, job: JobRequest, attempt: i64, rx: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let name = job.job_name.clone();
        let task = tokio::spawn(execute(inner.clone(), Arc::new(job), attempt, rx));
        let outcome = match task.await {
            Ok(r) => r,
            Err(e) => Err(internal(
                "training",
                format!("the training task crashed: {e}"),
            )),
        };
        let (status, result, reason) = match &outcome {
            Ok(r) => ("completed", Some(json(r)), None),
            Err(e) => ("failed", None, Some(e.message.clone())),
        };
        let name2 = name.clone();
        let _ = inner
            .db
            .call("finish job", move |c| {
                c.execute(
                    "UPDATE jobs SET status = ?3, result = ?4, reason = ?5, progress = 1, finished_at = ?6 WHERE name = ?1 AND attempt = ?2 AND status = 'running'",
                    params![name2, attempt, status, result, reason, now()],
                )?;
                Ok(())
            })
            .await;
        inner.unregister(&name, attempt);
    });
}

/// Runs a job: one training, or a tuning search; tracks the runs.
async fn execute(
    inner: Arc<Inner>,
    job: Arc<JobRequest>,
    attempt: i64,
    cancel: watch::Receiver<bool>,
) -> Result<TrainingResult> {
    let t0 = Instant::now();
    let code_digest = match &job.spec.code {
        Some(code) => {
            // Resolved (symlinks followed) and kept inside the project before anything reads it.
            let path = crate::fsutil::resolve_in_project(
                &job.project_dir,
                code,
                &format!("training job `{}`", job.resource),
                "code",
            )?;
            let inner2 = inner.clone();
            Some(
                blocking("hash code", move || {
                    let mut cache = inner2
                        .code_digests
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    let d = digest_path(&path, Some(&mut cache))
                        .map_err(|e| io_at("hash code", &path, e))?;
                    let _ = cache.save();
                    Ok(d)
                })
                .await?,
            )
        }
        None => None,
    };
    let base = job.spec.hyperparameters.clone();
    let parent = inner
        .new_run(&job, None, None, &base, code_digest.clone())
        .await?;
    let (name, run_id, log) = (job.job_name.clone(), parent.id.clone(), parent.log.clone());
    inner
        .db
        .call("job run", move |c| {
            c.execute(
                "UPDATE jobs SET run_id = ?3, log_path = ?4 WHERE name = ?1 AND attempt = ?2",
                params![name, attempt, run_id, log.to_string_lossy()],
            )?;
            Ok(())
        })
        .await?;
    note(
        &parent.log,
        &format!(
            "mlctl: job {} attempt {attempt}, run {}, {} training on dataset {} ({})",
            job.job_name,
            parent.id,
            job.mode(),
            job.dataset.name,
            job.dataset.digest
        ),
    );
    let progress = {
        let (inner, name) = (inner.clone(), job.job_name.clone());
        Arc::new(move |fraction: Option<f32>, msg: String| {
            inner.progress(&name, attempt, fraction, msg)
        }) as Arc<dyn Fn(Option<f32>, String) + Send + Sync>
    };
    let outcome = async {
        let tuned = job.spec.tuning.is_some();
        // Built-ins always, script mode when tuned: mlctl decides which rows are held out.
        let rows = if job.spec.algorithm.is_some() || tuned {
            let j = job.clone();
            Some(Arc::new(
                blocking("split", move || {
                    evaluation::rows(&j, j.spec.selects_on_validation())
                })
                .await?,
            ))
        } else {
            None
        };
        if let Some(r) = &rows {
            note(&parent.log, &format!("mlctl: rows {}", json(&r.record)));
        }
        let p = progress.clone();
        let job_run = |params, rows| TrialRun {
            job: &job,
            params,
            run_id: parent.id.clone(),
            run_dir: parent.dir.clone(),
            log: parent.log.clone(),
            budget: None,
            mlctl: inner.mlctl.clone(),
            slot: 0,
            rows,
            trial: false,
            procs: inner.state_dir.join("procs"),
        };
        let Some(_) = &job.spec.tuning else {
            let out = run_trial(
                &job_run(&base, rows),
                cancel,
                Arc::new(move |m| p(None, m)),
            )
            .await?;
            return Ok((out, base.clone(), Vec::new()));
        };
        let (chosen, params, trials) = tune(
            &inner,
            &job,
            &parent,
            code_digest,
            cancel.clone(),
            progress,
            rows.clone(),
        )
        .await?;
        let Some(rows) = rows else {
            return Err(internal("tuning", "no rows were prepared"));
        };
        // Only the chosen candidate meets the test rows.
        let out = if job.spec.algorithm.is_some() {
            let (dir, log) = (parent.dir.clone(), parent.log.clone());
            blocking("held-out score", move || {
                builtin::hold_out(&rows, &chosen, &dir, &log)
            })
            .await?
        } else {
            note(
                &parent.log,
                "mlctl: training the chosen candidate again with the test channel (trials saw train and validation only)",
            );
            run_trial(
                &job_run(&params, Some(rows)),
                cancel,
                Arc::new(move |m| p(None, m)),
            )
            .await?
        };
        Ok((out, params, trials))
    }
    .await;
    let elapsed = t0.elapsed();
    match outcome {
        Ok((out, params, trials)) => {
            let result = TrainingResult {
                job_name: job.job_name.clone(),
                artifact_uri: out.model_dir.to_string_lossy().into_owned(),
                metrics: out.metrics.clone(),
                hyperparameters: params.clone(),
                trials,
                run_id: Some(parent.id.clone()),
                duration_secs: elapsed.as_secs_f64(),
                evaluation: out.evaluation.clone().map(Box::new),
                metrics_origin: None,
            };
            inner
                .end_run_and_job(
                    &parent.id,
                    RunEnd::Completed(&out, &params),
                    elapsed,
                    Some((&job.job_name, attempt, Ok(&result))),
                )
                .await?;
            note(
                &parent.log,
                &format!(
                    "mlctl: completed in {:.1}s; metrics {}",
                    elapsed.as_secs_f64(),
                    json(&out.metrics)
                ),
            );
            Ok(result)
        }
        Err(e) => {
            inner
                .end_run_and_job(
                    &parent.id,
                    RunEnd::Failed(e.message.clone()),
                    elapsed,
                    Some((&job.job_name, attempt, Err(&e.message))),
                )
                .await?;
            note(
                &parent.log,
                &format!(
                    "mlctl: failed after {:.1}s: {}",
                    elapsed.as_secs_f64(),
                    e.message
                ),
            );
            Err(e)
        }
    }
}

async fn run_trial(
    t: &TrialRun<'_>,
    cancel: watch::Receiver<bool>,
    progress: Arc<dyn Fn(String) + Send + Sync>,
) -> Result<TrialOutput> {
    if t.job.spec.algorithm.is_some() {
        let (job, params, run_dir, log, budget, mlctl, rows, trial, procs) = (
            t.job.clone(),
            t.params.clone(),
            t.run_dir.clone(),
            t.log.clone(),
            t.budget,
            t.mlctl.clone(),
            t.rows.clone(),
            t.trial,
            t.procs.clone(),
        );
        let run_id = t.run_id.clone();
        blocking("training", move || {
            let t = TrialRun {
                job: &job,
                params: &params,
                run_id,
                run_dir,
                log,
                budget,
                mlctl,
                slot: 0,
                rows,
                trial,
                procs,
            };
            builtin::run(&t, &cancel)
        })
        .await
    } else {
        script::run(t, cancel, progress).await
    }
}

/// Runs the tuning search with mlctl-ml's tuner (candidates, halving rungs, `parallelism`
/// worker threads); each trial runs as an async task on this runtime and is tracked as a
/// run whose parent is the job's. Returns the best trial's output and params, and every trial.
async fn tune(
    inner: &Arc<Inner>,
    job: &Arc<JobRequest>,
    parent: &RunHandle,
    code_digest: Option<String>,
    cancel: watch::Receiver<bool>,
    progress: Arc<dyn Fn(Option<f32>, String) + Send + Sync>,
    rows: Option<Arc<evaluation::Rows>>,
) -> Result<(TrialOutput, Params, Vec<Trial>)> {
    let t = job.spec.tuning.clone().expect("tuning");
    let invalid = |e: mlctl_ml::tune::TuneError| {
        ProviderError::new(ErrorKind::Invalid, PROVIDER, "tuning", e.to_string())
    };
    let first = tune::candidates(&t).map_err(invalid)?;
    // Halving runs further rungs whose size depends on the results; the first rung's is known.
    let total = (t.strategy != TuningStrategy::Halving).then_some(first.len());
    note(
        &parent.log,
        &format!(
            "mlctl: tuning ({:?}): {} candidates, {} at a time, objective {} ({:?})",
            t.strategy,
            first.len(),
            t.parallelism.unwrap_or(1).max(1),
            t.objective.metric,
            t.objective.goal
        ),
    );
    // Trials by (candidate id, budget bits): their run id and output.
    type Outputs = HashMap<(usize, u64), (String, std::result::Result<TrialOutput, String>)>;
    let outputs: Arc<Mutex<Outputs>> = Arc::default();
    let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // Which of the `parallelism` trials running side by side each one is: a trial takes a
    // free slot and gives it back, so pinned trials never share CPUs.
    let slots = Arc::new(Mutex::new(vec![
        false;
        t.parallelism.unwrap_or(1).max(1) as usize
    ]));
    let rt = tokio::runtime::Handle::current();
    let cancelled = cancel.clone();
    let (inner2, job2, parent2, outputs2, t2) = (
        inner.clone(),
        job.clone(),
        parent.clone(),
        outputs.clone(),
        t.clone(),
    );
    let outcome =
        blocking("tuning", move || {
            let trial =
                |c: &tune::Candidate| -> std::result::Result<BTreeMap<String, f64>, String> {
                    if *cancel.borrow() {
                        return Err("cancelled".into());
                    }
                    let mut params = job2.spec.hyperparameters.clone();
                    params.extend(c.params.clone());
                    let budget = (c.budget < 1.0).then_some(c.budget);
                    let slot = {
                        let mut taken = slots.lock().unwrap_or_else(|p| p.into_inner());
                        // The tuner runs at most `parallelism` trials at once: one is always free.
                        let free = taken.iter().position(|b| !*b).unwrap_or(0);
                        taken[free] = true;
                        free
                    };
                    let (
                        inner,
                        job,
                        parent_id,
                        parent_log,
                        code_digest,
                        cancel,
                        progress,
                        started,
                        rows,
                    ) = (
                        inner2.clone(),
                        job2.clone(),
                        parent2.id.clone(),
                        parent2.log.clone(),
                        code_digest.clone(),
                        cancel.clone(),
                        progress.clone(),
                        started.clone(),
                        rows.clone(),
                    );
                    // The trial is async (script mode streams a child's output): run it as a task on
                    // the runtime and wait here, on the tuner's worker thread.
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    rt.spawn(async move {
                        let t0 = Instant::now();
                        let outcome = async {
                            let run = inner
                                .new_run(&job, Some(&parent_id), None, &params, code_digest)
                                .await
                                .map_err(|e| (String::new(), e.message))?;
                            let t = TrialRun {
                                job: &job,
                                params: &params,
                                run_id: run.id.clone(),
                                run_dir: run.dir.clone(),
                                log: run.log.clone(),
                                budget,
                                mlctl: inner.mlctl.clone(),
                                slot,
                                rows,
                                trial: true,
                                procs: inner.state_dir.join("procs"),
                            };
                            let out = run_trial(&t, cancel, Arc::new(|_| {}))
                                .await
                                .map_err(|e| e.message);
                            let end = match &out {
                                Ok(o) => RunEnd::Completed(o, &params),
                                Err(e) => RunEnd::Failed(e.clone()),
                            };
                            let _ = inner.end_run(&run.id, end, t0.elapsed()).await;
                            let line = match &out {
                                Ok(o) => format!(
                                    "mlctl: trial run {} {} budget {} -> {}",
                                    run.id,
                                    json(&params),
                                    budget.unwrap_or(1.0),
                                    json(&o.metrics)
                                ),
                                Err(e) => {
                                    format!(
                                        "mlctl: trial run {} {} failed: {e}",
                                        run.id,
                                        json(&params)
                                    )
                                }
                            };
                            note(&parent_log, &line);
                            Ok::<_, (String, String)>((run.id, out))
                        }
                        .await;
                        let n = started.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                        let fraction = total.map(|t| n as f32 / t.max(1) as f32);
                        progress(
                            fraction,
                            match total {
                                Some(t) => format!("trial {n}/{t}"),
                                None => format!("trial {n}"),
                            },
                        );
                        let _ = tx.send(outcome);
                    });
                    let received = rx.blocking_recv();
                    slots.lock().unwrap_or_else(|p| p.into_inner())[slot] = false;
                    let (run_id, out) = received
                        .map_err(|_| "the trial task was dropped".to_string())?
                        .map_err(|(_, e)| e)?;
                    let metrics = out
                        .as_ref()
                        .map(|o| o.metrics.clone())
                        .map_err(Clone::clone);
                    outputs2
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert((c.id, c.budget.to_bits()), (run_id, out));
                    metrics
                };
            tune::run(&t2, trial).map_err(invalid)
        })
        .await?;
    if *cancelled.borrow() {
        return Err(ProviderError::new(
            ErrorKind::Failed,
            PROVIDER,
            "training",
            "cancelled",
        ));
    }
    let outputs = std::mem::take(&mut *outputs.lock().unwrap_or_else(|p| p.into_inner()));
    let mut trials = Vec::new();
    let mut numbered = Vec::new();
    for (i, tr) in outcome.trials.iter().enumerate() {
        let mut params = job.spec.hyperparameters.clone();
        params.extend(tr.candidate.params.clone());
        trials.push(Trial {
            number: i as u32 + 1,
            hyperparameters: params,
            objective: tr.score(&t.objective),
            status: if tr.error.is_none() {
                "completed"
            } else {
                "failed"
            }
            .into(),
        });
        if let Some((run, _)) = outputs.get(&(tr.candidate.id, tr.candidate.budget.to_bits())) {
            numbered.push((run.clone(), i as i64 + 1));
        }
    }
    // Number the trial runs in the tuner's order (they started in whatever order threads ran).
    inner
        .db
        .call("number trials", move |c| {
            let tx = c.transaction()?;
            for (run, n) in &numbered {
                tx.execute("UPDATE runs SET trial = ?2 WHERE id = ?1", params![run, n])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await?;
    let Some(best) = outcome.best_trial() else {
        let reasons: Vec<String> = outcome
            .trials
            .iter()
            .enumerate()
            .map(|(i, tr)| match &tr.error {
                Some(e) => format!("trial {}: {}", i + 1, e.lines().next().unwrap_or("")),
                None => format!(
                    "trial {}: no `{}` metric reported",
                    i + 1,
                    t.objective.metric
                ),
            })
            .collect();
        return Err(ProviderError::new(
            ErrorKind::Failed,
            PROVIDER,
            "tuning",
            format!(
                "no trial produced the objective `{}`:\n{}",
                t.objective.metric,
                reasons.join("\n")
            ),
        ));
    };
    let n = outcome.best.unwrap_or(0) + 1;
    let Some((run, Ok(out))) = outputs.get(&(best.candidate.id, best.candidate.budget.to_bits()))
    else {
        return Err(internal("tuning", "the best trial's output is missing"));
    };
    note(
        &parent.log,
        &format!(
            "mlctl: best trial {n} (run {run}): {} = {}",
            t.objective.metric,
            best.score(&t.objective).unwrap_or(f64::NAN)
        ),
    );
    Ok((out.clone(), trials[n - 1].hyperparameters.clone(), trials))
}

fn job_state(
    status: &str,
    result: Option<String>,
    reason: Option<String>,
    progress: Option<f64>,
    message: Option<String>,
) -> DbResult<JobState> {
    Ok(match status {
        "completed" => {
            JobState::Completed(serde_json::from_str(result.as_deref().unwrap_or("null"))?)
        }
        "failed" => JobState::Failed {
            reason: reason.unwrap_or_else(|| "failed".into()),
        },
        _ => JobState::Running {
            progress: progress.map(|p| p as f32),
            message,
        },
    })
}

fn run_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(RunRecord, String, String, String)> {
    Ok((
        RunRecord {
            id: r.get(0)?,
            job_name: r.get(1)?,
            resource: r.get(2)?,
            status: r.get(3)?,
            params: BTreeMap::new(),
            metrics: BTreeMap::new(),
            artifacts: Vec::new(),
            data_digest: r.get(7)?,
            code_digest: r.get(8)?,
            commit: r.get(9)?,
            started_at: r.get(10)?,
            duration_secs: r.get(11)?,
            parent: r.get(12)?,
            evaluation: r
                .get::<_, Option<String>>(13)?
                .and_then(|e| serde_json::from_str(&e).ok()),
        },
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

#[async_trait]
impl Trainer for LocalTrainer {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            fields: crate::support::field_rules(),
            algorithms: builtin::algorithms(),
            script_mode: true,
            tuning_strategies: crate::support::TUNING_STRATEGIES.to_vec(),
            cancel: true,
            runs: true,
            logs: true,
            poll_interval: Duration::from_millis(200),
            ..Capabilities::default()
        }
    }

    async fn submit(&self, ctx: &OpContext, req: &TrainingRequest) -> Result<JobHandle> {
        if req.spec.algorithm.is_none() && req.spec.command.is_none() {
            return Err(ProviderError::new(
                ErrorKind::Invalid,
                PROVIDER,
                "submit",
                format!(
                    "training job `{}` needs `algorithm` or `command`",
                    req.resource
                ),
            ));
        }
        if let Some(a) = req.spec.algorithm
            && !builtin::algorithms().contains(&a)
        {
            return Err(ProviderError::new(
                ErrorKind::NotSupported,
                PROVIDER,
                "submit",
                format!("the local target has no built-in `{}` yet", a.as_str()),
            ));
        }
        let job = JobRequest {
            job_name: req.job_name.clone(),
            resource: req.resource.clone(),
            spec: req.spec.clone(),
            dataset: req.dataset.clone(),
            target_column: req.target_column.clone(),
            schema: req.schema.clone(),
            fingerprint: req.fingerprint.clone(),
            tags: req.tags.clone(),
            project: ctx.project.clone(),
            project_dir: ctx.project_dir.clone(),
            commit: ctx.commit.clone(),
            split: req.split.clone(),
        };
        self.claim(&req.job_name, Some(job)).await?;
        Ok(JobHandle {
            name: req.job_name.clone(),
            provider_id: req.job_name.clone(),
        })
    }

    async fn poll(&self, _ctx: &OpContext, job: &JobHandle) -> Result<JobState> {
        let name = job.name.clone();
        let row = self
            .inner
            .db
            .call("poll", move |c| {
                Ok(c.query_row("SELECT status, result, reason, progress, message, owner_host, owner_pid, owner_start FROM jobs WHERE name = ?1", [name], |r| {
                    Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get::<_, String>(5)?, r.get::<_, i64>(6)?, r.get::<_, i64>(7)?))
                })
                .optional()?)
            })
            .await?;
        let Some((status, result, reason, progress, message, host, pid, start)) = row else {
            return Err(ProviderError::new(
                ErrorKind::NotFound,
                PROVIDER,
                "poll",
                format!("no training job `{}` on this target", job.name),
            ));
        };
        if status == "running" && !self.inner.owner_alive(&host, pid, start, &job.name) {
            // Its process died: run it again here.
            self.claim(&job.name, None).await?;
            return Ok(JobState::Running {
                progress: None,
                message: Some(format!(
                    "restarted: the process that ran it (pid {pid}) is gone"
                )),
            });
        }
        job_state(&status, result, reason, progress, message).map_err(|e| match e {
            DbError::Sql(e) => crate::db::sql_error("poll", e),
            DbError::Provider(e) => e,
        })
    }

    async fn update_in_place(&self, _ctx: &OpContext, req: &InPlaceRequest) -> Result<()> {
        let op = "update job tags";
        let result: TrainingResult = req.outputs_as(PROVIDER)?;
        let (name, tags) = (result.job_name.clone(), req.tags.clone());
        let found = self
            .inner
            .db
            .call(op, move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let request: Option<String> = tx
                    .query_row("SELECT request FROM jobs WHERE name = ?1", [&name], |r| {
                        r.get(0)
                    })
                    .optional()?;
                let Some(request) = request else {
                    return Ok(false);
                };
                let mut request: JobRequest = serde_json::from_str(&request)?;
                request.tags = tags;
                tx.execute(
                    "UPDATE jobs SET request = ?2 WHERE name = ?1",
                    params![name, crate::db::json(&request)],
                )?;
                tx.commit()?;
                Ok(true)
            })
            .await?;
        if !found {
            return Err(crate::gone(op, format!("training job {}", result.job_name)));
        }
        Ok(())
    }

    async fn cancel(&self, _ctx: &OpContext, job: &JobHandle) -> Result<()> {
        if let Some(a) = active().get(&self.inner.key(&job.name)) {
            let _ = a.cancel.send(true);
        }
        let name = job.name.clone();
        self.inner
            .db
            .call("cancel", move |c| {
                let n = c.execute(
                    "UPDATE jobs SET status = 'failed', reason = 'cancelled', finished_at = ?2 WHERE name = ?1 AND status = 'running'",
                    params![name, now()],
                )?;
                let exists: bool = n > 0 || c.query_row("SELECT 1 FROM jobs WHERE name = ?1", [&name], |_| Ok(())).optional()?.is_some();
                if !exists {
                    return Err(DbError::Provider(ProviderError::new(ErrorKind::NotFound, PROVIDER, "cancel", format!("no training job `{name}` on this target"))));
                }
                Ok(())
            })
            .await
    }

    async fn runs(&self, ctx: &OpContext, resource: Option<&str>) -> Result<Vec<RunRecord>> {
        let (project, resource) = (ctx.project.clone(), resource.map(str::to_string));
        self.inner
            .db
            .call("list runs", move |c| {
                let mut st = c.prepare(
                    "SELECT id, job_name, resource, status, params, metrics, artifacts, data_digest, code_digest, commit_sha, started_at, duration_secs, parent, evaluation
                     FROM runs WHERE project = ?1 AND (?2 IS NULL OR resource = ?2) ORDER BY seq",
                )?;
                let rows = st.query_map(params![project, resource], run_from_row)?;
                let mut out = Vec::new();
                for row in rows {
                    let (mut rec, params, metrics, artifacts) = row?;
                    rec.params = serde_json::from_str(&params)?;
                    rec.metrics = serde_json::from_str(&metrics)?;
                    rec.artifacts = serde_json::from_str(&artifacts)?;
                    out.push(rec);
                }
                Ok(out)
            })
            .await
    }

    async fn logs(&self, _ctx: &OpContext, job: &str) -> Result<String> {
        let name = job.to_string();
        // A job name, or a run id.
        let logs: Vec<(Option<String>, String)> = self
            .inner
            .db
            .call("logs", move |c| {
                let run: Option<String> = c
                    .query_row("SELECT run_id FROM jobs WHERE name = ?1", [&name], |r| {
                        r.get(0)
                    })
                    .optional()?
                    .flatten();
                let run = match run {
                    Some(r) => r,
                    None => match c
                        .query_row("SELECT id FROM runs WHERE id = ?1", [&name], |r| {
                            r.get::<_, String>(0)
                        })
                        .optional()?
                    {
                        Some(r) => r,
                        None => {
                            return Err(DbError::Provider(ProviderError::new(
                                ErrorKind::NotFound,
                                PROVIDER,
                                "logs",
                                format!("no training job or run `{name}` on this target"),
                            )));
                        }
                    },
                };
                let mut out: Vec<(Option<String>, String)> = Vec::new();
                let own: Option<String> =
                    c.query_row("SELECT log_path FROM runs WHERE id = ?1", [&run], |r| {
                        r.get(0)
                    })?;
                out.push((None, own.unwrap_or_default()));
                let mut st = c.prepare(
                    "SELECT trial, id, log_path FROM runs WHERE parent = ?1 ORDER BY trial, seq",
                )?;
                let children = st.query_map([&run], |r| {
                    Ok((
                        r.get::<_, Option<i64>>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                    ))
                })?;
                for ch in children {
                    let (trial, id, log) = ch?;
                    out.push((
                        Some(format!("trial {} (run {id})", trial.unwrap_or(0))),
                        log.unwrap_or_default(),
                    ));
                }
                Ok(out)
            })
            .await?;
        let mut text = String::new();
        for (header, path) in logs {
            if let Some(h) = header {
                text.push_str(&format!("\n==> {h} <==\n"));
            }
            text.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
        }
        Ok(text)
    }
}
