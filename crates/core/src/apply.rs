//! The apply engine: walks a plan in dependency order and makes the target match.
//!
//! # Guarantees
//! - Independent branches run concurrently (bounded by [`ApplyOptions::concurrency`]).
//! - A failure stops only its dependants; everything else is applied and recorded.
//! - Every step is idempotent: names come from fingerprints, so a re-run after a crash finds
//!   the job or version already there instead of starting a second one.
//! - Retryable errors (throttling, timeouts, 5xx) are retried with backoff; others fail the
//!   resource at once (the error policy, as in kube-rs).
//!
//! # Caveats
//! The lock is taken by the caller ([`Lock::acquire`]); the engine assumes it is held.

use crate::components::*;
use crate::error::{ErrorKind, ProviderError, Result};
use crate::fingerprint::{Fingerprint, deterministic_name};
use crate::gates;
use crate::plan::{Action, Change, Desired, DesiredResource, Plan};
use crate::state::{FailedAttempt, Health, HistoryEntry, LockError, LockInfo, ObservedResource};
use mlctl_spec::{Approval, Kind, ResourceId, ResourceSpec, Stage};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Knobs of an apply.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Resources applied at once.
    pub concurrency: usize,
    /// Poll interval for long operations (default: the component's capability).
    pub poll_interval: Option<Duration>,
    /// Retries of a retryable error.
    pub retries: u32,
    /// First retry delay (doubles each time).
    pub retry_base: Duration,
    /// Longest wait for one training job or rollout when the spec sets no timeout.
    pub timeout: Duration,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            concurrency: 4,
            poll_interval: None,
            retries: 5,
            retry_base: Duration::from_millis(200),
            timeout: Duration::from_secs(24 * 3600),
        }
    }
}

/// How one resource ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "kebab-case")]
pub enum Outcome {
    /// Nothing was needed.
    NoOp,
    /// Applied; detail for the user (model version, endpoint URL, ...).
    Applied(String),
    /// Failed with this message.
    Failed(String),
    /// Not attempted because a dependency failed.
    Skipped(String),
}

/// Progress of an apply, for the CLI to display.
#[derive(Debug, Clone)]
pub enum ApplyEvent {
    /// Work on a resource started.
    Started {
        /// Which.
        id: ResourceId,
        /// What.
        action: Action,
    },
    /// A long operation moved.
    Progress {
        /// Which.
        id: ResourceId,
        /// What is happening.
        message: String,
    },
    /// A resource is done.
    Finished {
        /// Which.
        id: ResourceId,
        /// How it ended.
        outcome: Outcome,
        /// How long it took.
        elapsed: Duration,
    },
}

/// Receives [`ApplyEvent`]s.
pub trait Reporter: Send + Sync {
    /// One event.
    fn event(&self, event: ApplyEvent);
}

/// A reporter that drops everything.
pub struct Silent;
impl Reporter for Silent {
    fn event(&self, _event: ApplyEvent) {}
}

/// The result of an apply.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ApplyReport {
    /// Per resource, in plan order.
    pub results: Vec<(ResourceId, Outcome)>,
}

impl ApplyReport {
    /// Whether any resource failed or was skipped.
    pub fn failed(&self) -> bool {
        self.results
            .iter()
            .any(|(_, o)| matches!(o, Outcome::Failed(_) | Outcome::Skipped(_)))
    }
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Evaluates a component call until it succeeds, fails permanently, or runs out of retries
/// (the error policy). A macro rather than a function taking an async closure, so the futures
/// stay `Send` for tokio.
#[macro_export]
macro_rules! retry {
    ($opts:expr, $call:expr) => {{
        let opts: &$crate::apply::ApplyOptions = $opts;
        let mut delay = opts.retry_base;
        let mut attempt = 0;
        loop {
            match $call {
                Err(e)
                    if $crate::error::ProviderError::is_retryable(&e) && attempt < opts.retries =>
                {
                    attempt += 1;
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(30));
                }
                other => break other,
            }
        }
    }};
}

/// Reads the target's state and refreshes it with live status (endpoint health and drift).
pub async fn observe(
    stack: &Stack,
    ctx: &OpContext,
    opts: &ApplyOptions,
) -> Result<Vec<ObservedResource>> {
    let mut observed = retry!(opts, stack.state.observe(&ctx.project).await)?;
    for o in observed
        .iter_mut()
        .filter(|o| o.id.kind == Kind::Endpoint && !o.fingerprint.is_empty())
    {
        let recorded: Option<EndpointStatus> = outputs(o);
        let live = retry!(opts, stack.deployer.status(ctx, &o.id.name).await)?;
        match (live, recorded) {
            (None, _) => {
                o.health = Health::Degraded;
                o.drift.push(format!(
                    "endpoint `{}` no longer exists on the target (deleted outside mlctl?)",
                    o.id.name
                ));
            }
            (Some(live), recorded) => {
                if live.health != Health::Healthy {
                    o.health = live.health;
                    if let serde_json::Value::Object(map) = &mut o.outputs {
                        map.insert(
                            "message".into(),
                            live.message.clone().unwrap_or_default().into(),
                        );
                    }
                }
                if let Some(rec) = recorded {
                    if rec.variants != live.variants {
                        o.drift.push(format!(
                            "serving versions changed outside mlctl: {} -> {}",
                            show_variants(&rec.variants),
                            show_variants(&live.variants)
                        ));
                    }
                    if rec.instances != live.instances {
                        o.drift.push(format!(
                            "instances changed outside mlctl: {} -> {}",
                            rec.instances, live.instances
                        ));
                    }
                }
            }
        }
    }
    for o in observed
        .iter_mut()
        .filter(|o| o.id.kind == Kind::Monitor && !o.fingerprint.is_empty())
    {
        match stack.monitor.status(ctx, &o.id.name).await {
            Ok(None) => {
                o.health = Health::Degraded;
                o.drift.push(format!(
                    "monitor `{}` no longer exists on the target (deleted outside mlctl?)",
                    o.id.name
                ));
            }
            Ok(Some(live)) if live.health != Health::Healthy => o.health = live.health,
            Ok(Some(_)) => {}
            // A sink that cannot read monitors back: trust the record.
            Err(e) if e.kind == ErrorKind::NotSupported => {}
            Err(e) => return Err(e),
        }
    }
    Ok(observed)
}

fn show_variants(v: &[Variant]) -> String {
    if v.is_empty() {
        return "(none)".into();
    }
    v.iter()
        .map(|v| format!("{} v{} {}%", v.model, v.version, v.weight))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The apply lock of a target, held for the duration of an apply.
pub struct Lock {
    stack: Stack,
    project: String,
    info: LockInfo,
}

impl Lock {
    /// Takes the lock or says who holds it.
    pub async fn acquire(
        stack: &Stack,
        project: &str,
        info: LockInfo,
    ) -> std::result::Result<Lock, LockError> {
        stack.state.lock(project, &info).await?;
        Ok(Lock {
            stack: stack.clone(),
            project: project.to_string(),
            info,
        })
    }

    /// The lock's id.
    pub fn id(&self) -> &str {
        &self.info.id
    }

    /// Releases the lock.
    pub async fn release(self) -> Result<()> {
        self.stack
            .state
            .unlock(&self.project, &self.info.id, false)
            .await
    }
}

struct Shared {
    stack: Stack,
    ctx: OpContext,
    opts: ApplyOptions,
    reporter: Arc<dyn Reporter>,
    outputs: Mutex<BTreeMap<ResourceId, serde_json::Value>>,
    observed: BTreeMap<ResourceId, ObservedResource>,
    desired: Desired,
}

/// Applies a plan.
///
/// `desired` must be the desired state the plan was computed from; `observed` the state it
/// was computed against (the caller checks `plan.state_token` for saved plans).
pub async fn apply(
    stack: &Stack,
    ctx: &OpContext,
    desired: &Desired,
    plan: &Plan,
    observed: &[ObservedResource],
    opts: &ApplyOptions,
    reporter: Arc<dyn Reporter>,
) -> ApplyReport {
    let shared = Arc::new(Shared {
        stack: stack.clone(),
        ctx: ctx.clone(),
        opts: opts.clone(),
        reporter,
        outputs: Mutex::new(
            observed
                .iter()
                .map(|o| (o.id.clone(), o.outputs.clone()))
                .collect(),
        ),
        observed: observed.iter().map(|o| (o.id.clone(), o.clone())).collect(),
        desired: desired.clone(),
    });
    let mut results: BTreeMap<ResourceId, Outcome> = BTreeMap::new();
    let pending: Vec<&Change> = plan.changes.iter().collect();
    let mut started: BTreeSet<ResourceId> = BTreeSet::new();
    let mut running = tokio::task::JoinSet::new();
    let deps_of = |id: &ResourceId| -> Vec<ResourceId> {
        desired
            .get(id)
            .map(|d| d.resource.depends_on.clone())
            .unwrap_or_default()
    };
    // Deletes wait for the deletion of what depends on them (plan order puts those first).
    let delete_order: Vec<ResourceId> = plan
        .changes
        .iter()
        .filter(|c| c.action == Action::Delete)
        .map(|c| c.id.clone())
        .collect();
    loop {
        // Start everything whose dependencies are done.
        for c in &pending {
            if started.contains(&c.id) || running.len() >= opts.concurrency.max(1) {
                continue;
            }
            let blockers: Vec<ResourceId> = if c.action == Action::Delete {
                let pos = delete_order.iter().position(|d| d == &c.id).unwrap_or(0);
                delete_order[..pos]
                    .iter()
                    .filter(|d| d.kind > c.id.kind)
                    .cloned()
                    .collect()
            } else {
                deps_of(&c.id)
            };
            let mut ready = true;
            let mut failed_dep = None;
            for b in &blockers {
                match results.get(b) {
                    None if plan.changes.iter().any(|x| &x.id == b) => ready = false,
                    Some(Outcome::Failed(_)) | Some(Outcome::Skipped(_)) => {
                        failed_dep = Some(b.clone())
                    }
                    _ => {}
                }
            }
            if let Some(dep) = failed_dep {
                started.insert(c.id.clone());
                let outcome = Outcome::Skipped(format!("not attempted: {dep} did not apply"));
                shared.reporter.event(ApplyEvent::Finished {
                    id: c.id.clone(),
                    outcome: outcome.clone(),
                    elapsed: Duration::ZERO,
                });
                results.insert(c.id.clone(), outcome);
                continue;
            }
            if !ready {
                continue;
            }
            started.insert(c.id.clone());
            if c.action == Action::NoOp {
                results.insert(c.id.clone(), Outcome::NoOp);
                continue;
            }
            let change = (*c).clone();
            let d = desired.get(&c.id).cloned();
            let shared = shared.clone();
            running.spawn(async move {
                let t0 = Instant::now();
                shared.reporter.event(ApplyEvent::Started {
                    id: change.id.clone(),
                    action: change.action,
                });
                let outcome = run_change(&shared, &change, d.as_ref()).await;
                shared.reporter.event(ApplyEvent::Finished {
                    id: change.id.clone(),
                    outcome: outcome.clone(),
                    elapsed: t0.elapsed(),
                });
                (change.id, outcome)
            });
        }
        if results.len() == pending.len() {
            break;
        }
        match running.join_next().await {
            Some(Ok((id, outcome))) => {
                results.insert(id, outcome);
            }
            Some(Err(join_err)) => {
                // A panic in a provider: report it against whatever was running; never hang.
                let id = pending
                    .iter()
                    .find(|c| started.contains(&c.id) && !results.contains_key(&c.id))
                    .map(|c| c.id.clone());
                if let Some(id) = id {
                    results.insert(id, Outcome::Failed(format!("internal error: {join_err}")));
                }
            }
            None => {
                // Nothing running and nothing startable: whatever is left waits on nothing.
                for c in &pending {
                    results
                        .entry(c.id.clone())
                        .or_insert_with(|| Outcome::Skipped("dependencies not in plan".into()));
                }
                break;
            }
        }
    }
    ApplyReport {
        results: plan
            .changes
            .iter()
            .map(|c| (c.id.clone(), results.remove(&c.id).unwrap_or(Outcome::NoOp)))
            .collect(),
    }
}

async fn run_change(sh: &Shared, change: &Change, d: Option<&DesiredResource>) -> Outcome {
    let mut health = Health::Healthy;
    let result: Result<String> = match (change.action, d) {
        (Action::Delete, _) => delete(sh, &change.id)
            .await
            .map(|()| "destroyed".to_string()),
        (_, Some(d)) => apply_one(sh, d).await.map(|(detail, outputs, h)| {
            health = h;
            sh.outputs
                .lock()
                .expect("outputs lock")
                .insert(change.id.clone(), outputs);
            detail
        }),
        (_, None) => Err(ProviderError::new(
            ErrorKind::Other,
            "mlctl",
            "apply",
            "resource missing from desired state",
        )),
    };
    // Record the outcome in the target.
    let entry = |action: &str, detail: &str, fp: &str| HistoryEntry {
        id: change.id.clone(),
        action: action.to_string(),
        fingerprint: fp.to_string(),
        commit: sh.ctx.commit.clone(),
        at: now(),
        detail: detail.to_string(),
    };
    let d = if change.action == Action::Delete {
        None
    } else {
        d
    };
    match (result, d) {
        (Ok(detail), None) => {
            match retry!(
                &sh.opts,
                sh.stack
                    .state
                    .forget(&sh.ctx.project, &change.id, &entry("delete", &detail, ""))
                    .await
            ) {
                Ok(()) => Outcome::Applied(detail),
                Err(e) => Outcome::Failed(format!("destroyed, but recording it failed: {e}")),
            }
        }
        (Ok(detail), Some(d)) => {
            let outputs = sh
                .outputs
                .lock()
                .expect("outputs lock")
                .get(&change.id)
                .cloned()
                .unwrap_or_default();
            let rec = ObservedResource {
                id: change.id.clone(),
                fingerprint: d.fingerprint.0.clone(),
                spec: d.resource.canonical(),
                commit: sh.ctx.commit.clone(),
                updated_at: now(),
                health,
                outputs,
                inputs: d.inputs.clone(),
                last_error: None,
                drift: Vec::new(),
            };
            let action = match change.action {
                Action::Create => "create",
                Action::Replace => "replace",
                _ => "update",
            };
            match retry!(
                &sh.opts,
                sh.stack
                    .state
                    .record(
                        &sh.ctx.project,
                        &rec,
                        &entry(action, &detail, &d.fingerprint.0)
                    )
                    .await
            ) {
                Ok(()) => Outcome::Applied(detail),
                Err(e) => Outcome::Failed(format!(
                    "applied, but recording it in the target failed: {e}"
                )),
            }
        }
        (Err(e), d) => {
            let message = e.message.clone();
            let fp = d.map(|d| d.fingerprint.0.clone()).unwrap_or_default();
            let mut rec = sh
                .observed
                .get(&change.id)
                .cloned()
                .unwrap_or(ObservedResource {
                    id: change.id.clone(),
                    fingerprint: String::new(),
                    spec: serde_json::Value::Null,
                    commit: String::new(),
                    updated_at: now(),
                    health: Health::Failed,
                    outputs: serde_json::Value::Null,
                    inputs: BTreeMap::new(),
                    last_error: None,
                    drift: Vec::new(),
                });
            rec.drift.clear();
            rec.last_error = Some(FailedAttempt {
                fingerprint: fp.clone(),
                commit: sh.ctx.commit.clone(),
                message: message.clone(),
                at: now(),
            });
            if change.action != Action::Delete {
                // Best effort: the failure itself is what the user must see.
                let _ = sh
                    .stack
                    .state
                    .record(&sh.ctx.project, &rec, &entry("failed", &message, &fp))
                    .await;
            }
            Outcome::Failed(message)
        }
    }
}

fn output_of<T: for<'de> serde::Deserialize<'de>>(sh: &Shared, id: &ResourceId) -> Result<T> {
    let v = sh.outputs.lock().expect("outputs lock").get(id).cloned();
    v.and_then(|v| serde_json::from_value(v).ok())
        .ok_or_else(|| {
            ProviderError::new(
                ErrorKind::Precondition,
                "mlctl",
                "apply",
                format!("{id} has no recorded result on this target; apply it first"),
            )
        })
}

fn tags(sh: &Shared, d: &DesiredResource) -> Tags {
    Tags {
        project: sh.ctx.project.clone(),
        resource: d.resource.id.to_string(),
        fingerprint: d.fingerprint.0.clone(),
        commit: sh.ctx.commit.clone(),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

fn poll_every(sh: &Shared, caps: &Capabilities) -> Duration {
    sh.opts
        .poll_interval
        .unwrap_or(if caps.poll_interval.is_zero() {
            Duration::from_millis(500)
        } else {
            caps.poll_interval
        })
}

/// Applies one resource; returns (detail for the user, outputs to record, health).
async fn apply_one(
    sh: &Shared,
    d: &DesiredResource,
) -> Result<(String, serde_json::Value, Health)> {
    let id = &d.resource.id;
    let progress = |message: String| {
        sh.reporter.event(ApplyEvent::Progress {
            id: id.clone(),
            message,
        })
    };
    match &d.resource.spec {
        ResourceSpec::Dataset(spec) => {
            let mut inputs = BTreeMap::new();
            for dep in &d.resource.depends_on {
                inputs.insert(dep.name.clone(), output_of::<DatasetVersion>(sh, dep)?);
            }
            let req = DatasetRequest {
                name: id.name.clone(),
                spec: spec.clone(),
                fingerprint: d.fingerprint.0.clone(),
                tags: tags(sh, d),
                inputs,
            };
            let v = retry!(
                &sh.opts,
                sh.stack.data.register_dataset(&sh.ctx, &req).await
            )?;
            Ok((
                format!(
                    "{} rows, digest {}",
                    v.rows,
                    &v.digest[..v.digest.len().min(12)]
                ),
                to_json(&v),
                Health::Healthy,
            ))
        }
        ResourceSpec::TrainingJob(spec) => {
            let ds_id = ResourceId::new(Kind::Dataset, spec.dataset.clone());
            let dataset: DatasetVersion = output_of(sh, &ds_id)?;
            let target_column = sh
                .desired
                .get(&ds_id)
                .and_then(|d| d.resource.as_dataset())
                .and_then(|ds| ds.target.clone());
            let job_name = deterministic_name(&sh.ctx.project, &id.name, &d.fingerprint, 63);
            let req = TrainingRequest {
                job_name: job_name.clone(),
                resource: id.name.clone(),
                spec: spec.clone(),
                dataset,
                target_column,
                fingerprint: d.fingerprint.0.clone(),
                tags: tags(sh, d),
            };
            let handle = retry!(&sh.opts, sh.stack.trainer.submit(&sh.ctx, &req).await)?;
            progress(format!("training job {} submitted", handle.name));
            let timeout = spec
                .compute
                .as_ref()
                .and_then(|c| c.timeout.as_deref())
                .and_then(|t| mlctl_spec::units::parse_duration(t).ok())
                .unwrap_or(sh.opts.timeout);
            let every = poll_every(sh, &sh.stack.trainer.capabilities());
            let t0 = Instant::now();
            let mut last = String::new();
            loop {
                match retry!(&sh.opts, sh.stack.trainer.poll(&sh.ctx, &handle).await)? {
                    JobState::Completed(result) => {
                        let detail = format!(
                            "job {} completed; {}",
                            handle.name,
                            show_metrics(&result.metrics)
                        );
                        return Ok((detail, to_json(&result), Health::Healthy));
                    }
                    JobState::Failed { reason } => {
                        return Err(ProviderError::new(
                            ErrorKind::Failed,
                            sh.stack.provider.clone(),
                            "training",
                            format!("training job {} failed: {reason}", handle.name),
                        ));
                    }
                    JobState::Pending | JobState::Running { .. } if t0.elapsed() > timeout => {
                        let _ = sh.stack.trainer.cancel(&sh.ctx, &handle).await;
                        return Err(ProviderError::new(
                            ErrorKind::Timeout,
                            sh.stack.provider.clone(),
                            "training",
                            format!(
                                "training job {} did not finish within {:?}; it was stopped",
                                handle.name, timeout
                            ),
                        ));
                    }
                    state => {
                        let msg = match state {
                            JobState::Running {
                                progress: Some(p),
                                message,
                            } => {
                                format!("running {:.0}% {}", p * 100.0, message.unwrap_or_default())
                            }
                            JobState::Running { message, .. } => {
                                format!("running {}", message.unwrap_or_default())
                            }
                            _ => "pending".to_string(),
                        };
                        if msg != last {
                            progress(msg.trim().to_string());
                            last = msg;
                        }
                        tokio::time::sleep(every).await;
                    }
                }
            }
        }
        ResourceSpec::Model(spec) => {
            let training: TrainingResult =
                output_of(sh, &ResourceId::new(Kind::TrainingJob, spec.from.clone()))?;
            let versions = retry!(
                &sh.opts,
                sh.stack.registry.versions(&sh.ctx, &id.name).await
            )?;
            let want_stage = spec.stage.unwrap_or(Stage::Staging);
            let approval = spec.approval.unwrap_or(Approval::Auto);
            // Idempotent re-apply: this fingerprint is already registered.
            let existing = versions
                .iter()
                .find(|v| v.fingerprint == d.fingerprint.0)
                .cloned();
            let production = versions.iter().find(|v| v.stage == Stage::Production);
            let version = match existing {
                Some(v) => v,
                None => {
                    let report = gates::evaluate(&spec.gates, &training.metrics, production);
                    if !report.passed() {
                        let keep = production
                            .map(|p| format!("; production stays at v{}", p.version))
                            .unwrap_or_default();
                        return Err(ProviderError::new(
                            ErrorKind::Invalid,
                            "mlctl",
                            "gates",
                            format!("evaluation gates failed: {report}{keep}"),
                        ));
                    }
                    if !spec.gates.is_empty() {
                        progress(format!("gates passed: {report}"));
                    }
                    let mut lineage = BTreeMap::from([
                        ("trainingJob".to_string(), training.job_name.clone()),
                        ("commit".to_string(), sh.ctx.commit.clone()),
                    ]);
                    if let Some(run) = &training.run_id {
                        lineage.insert("run".into(), run.clone());
                    }
                    let req = RegisterRequest {
                        model: id.name.clone(),
                        training: training.clone(),
                        stage: Stage::Staging,
                        approval,
                        description: spec.description.clone(),
                        fingerprint: d.fingerprint.0.clone(),
                        lineage,
                        tags: tags(sh, d),
                    };
                    retry!(&sh.opts, sh.stack.registry.register(&sh.ctx, &req).await)?
                }
            };
            let version = if want_stage == Stage::Production && version.stage != Stage::Production {
                if approval == Approval::Manual && !version.approved {
                    let detail = format!(
                        "registered v{} in staging; waiting for approval: run `mlctl models approve {} {}`",
                        version.version, id.name, version.version
                    );
                    return Ok((detail, to_json(&version), Health::Progressing));
                }
                retry!(
                    &sh.opts,
                    sh.stack
                        .registry
                        .set_stage(&sh.ctx, &id.name, version.version, Stage::Production)
                        .await
                )?
            } else {
                version
            };
            Ok((
                format!("v{} in {}", version.version, version.stage.as_str()),
                to_json(&version),
                Health::Healthy,
            ))
        }
        ResourceSpec::Endpoint(spec) => {
            let model_id = ResourceId::new(Kind::Model, spec.model.clone());
            let model: ModelVersion = match spec.version {
                Some(v) => {
                    let versions = retry!(
                        &sh.opts,
                        sh.stack.registry.versions(&sh.ctx, &spec.model).await
                    )?;
                    versions
                        .into_iter()
                        .find(|x| x.version == v)
                        .ok_or_else(|| {
                            ProviderError::new(
                                ErrorKind::NotFound,
                                sh.stack.provider.clone(),
                                "deploy",
                                format!("model `{}` has no version {v}", spec.model),
                            )
                        })?
                }
                None => output_of(sh, &model_id)?,
            };
            if model.stage == Stage::Staging
                && model_needs_approval(sh, &model_id)
                && !model.approved
            {
                return Err(ProviderError::new(
                    ErrorKind::Precondition,
                    "mlctl",
                    "deploy",
                    format!(
                        "model `{}` v{} is waiting for approval; run `mlctl models approve {} {}` then apply again",
                        model.model, model.version, model.model, model.version
                    ),
                ));
            }
            let req = EndpointRequest {
                name: id.name.clone(),
                spec: spec.clone(),
                model: model.clone(),
                fingerprint: d.fingerprint.0.clone(),
                tags: tags(sh, d),
            };
            let handle = retry!(&sh.opts, sh.stack.deployer.deploy(&sh.ctx, &req).await)?;
            let every = poll_every(sh, &sh.stack.deployer.capabilities());
            let t0 = Instant::now();
            let mut last = String::new();
            loop {
                match retry!(&sh.opts, sh.stack.deployer.poll(&sh.ctx, &handle).await)? {
                    DeployState::Done(status) => {
                        let detail = format!(
                            "serving {} v{}{}",
                            model.model,
                            model.version,
                            status
                                .url
                                .as_ref()
                                .map(|u| format!(" at {u}"))
                                .unwrap_or_default()
                        );
                        return Ok((detail, to_json(&status), status.health));
                    }
                    DeployState::RolledBack { reason, status } => {
                        return Err(ProviderError::new(
                            ErrorKind::Failed,
                            sh.stack.provider.clone(),
                            "deploy",
                            format!(
                                "rollout of {} v{} was rolled back: {reason}; still serving {}",
                                model.model,
                                model.version,
                                show_variants(&status.variants)
                            ),
                        ));
                    }
                    DeployState::Failed { reason } => {
                        return Err(ProviderError::new(
                            ErrorKind::Failed,
                            sh.stack.provider.clone(),
                            "deploy",
                            format!(
                                "deployment of {} v{} failed: {reason}",
                                model.model, model.version
                            ),
                        ));
                    }
                    DeployState::InProgress { .. } if t0.elapsed() > sh.opts.timeout => {
                        return Err(ProviderError::new(
                            ErrorKind::Timeout,
                            sh.stack.provider.clone(),
                            "deploy",
                            format!("rollout did not finish within {:?}", sh.opts.timeout),
                        ));
                    }
                    DeployState::InProgress { message } => {
                        if message != last {
                            progress(message.clone());
                            last = message;
                        }
                        tokio::time::sleep(every).await;
                    }
                }
            }
        }
        ResourceSpec::Monitor(spec) => {
            let endpoint: EndpointStatus =
                output_of(sh, &ResourceId::new(Kind::Endpoint, spec.endpoint.clone()))?;
            let baseline = match &spec.baseline {
                Some(b) => Some(output_of::<DatasetVersion>(
                    sh,
                    &ResourceId::new(Kind::Dataset, b.clone()),
                )?),
                None => None,
            };
            let req = MonitorRequest {
                name: id.name.clone(),
                spec: spec.clone(),
                endpoint,
                baseline,
                fingerprint: d.fingerprint.0.clone(),
                tags: tags(sh, d),
            };
            let status = retry!(&sh.opts, sh.stack.monitor.configure(&sh.ctx, &req).await)?;
            Ok((
                format!(
                    "watching endpoint {} ({})",
                    status.endpoint, status.schedule
                ),
                to_json(&status),
                Health::Healthy,
            ))
        }
    }
}

fn model_needs_approval(sh: &Shared, model: &ResourceId) -> bool {
    sh.desired
        .get(model)
        .and_then(|d| d.resource.as_model())
        .is_some_and(|m| m.approval == Some(Approval::Manual))
}

fn show_metrics(m: &BTreeMap<String, f64>) -> String {
    m.iter()
        .take(4)
        .map(|(k, v)| format!("{k}={v:.4}"))
        .collect::<Vec<_>>()
        .join(" ")
}

async fn delete(sh: &Shared, id: &ResourceId) -> Result<()> {
    match id.kind {
        Kind::Monitor => retry!(&sh.opts, sh.stack.monitor.remove(&sh.ctx, &id.name).await),
        Kind::Endpoint => retry!(&sh.opts, sh.stack.deployer.delete(&sh.ctx, &id.name).await),
        Kind::Model => retry!(
            &sh.opts,
            sh.stack.registry.delete_model(&sh.ctx, &id.name).await
        ),
        // Finished jobs are history; their artifacts stay for lineage.
        Kind::TrainingJob => Ok(()),
        Kind::Dataset => retry!(
            &sh.opts,
            sh.stack.data.delete_dataset(&sh.ctx, &id.name).await
        ),
    }
}

/// The fingerprint of a desired resource (convenience for callers that only have a plan).
pub fn fingerprint_of(desired: &Desired, id: &ResourceId) -> Option<Fingerprint> {
    desired.get(id).map(|d| d.fingerprint.clone())
}
