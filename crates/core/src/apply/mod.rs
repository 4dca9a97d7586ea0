//! The apply engine: walks a plan in dependency order and makes the target match. This module
//! is the scheduler and the recorder; each kind's lifecycle is in `reconcile/<kind>.rs`, the
//! error policy in `apply/policy.rs` ([`crate::retry!`]), waiting for long operations in
//! `apply/poll.rs`.
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
//! The lock is taken by the caller ([`crate::state::Lock::acquire`]); the engine assumes it
//! is held.

mod policy;
pub(crate) mod poll;

use crate::components::*;
use crate::error::{ErrorKind, ProviderError, Result};
use crate::plan::{Action, Change, Desired, DesiredResource, Plan};
use crate::reconcile;
use crate::retry;
use crate::state::{FailedAttempt, Health, HistoryEntry, ObservedResource};
use mlctl_spec::ResourceId;
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
    /// Set when the apply lock was lost while held ([`crate::state::Lock::lost`]): nothing
    /// more is started, what runs finishes.
    pub lock_lost: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// Reads the `mlflow:` sources of imported Models (none: such a Model fails to apply,
    /// saying so).
    pub importer: Option<Arc<dyn crate::components::ModelImporter>>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            concurrency: 4,
            poll_interval: None,
            retries: 5,
            retry_base: Duration::from_millis(200),
            timeout: Duration::from_secs(24 * 3600),
            lock_lost: None,
            importer: None,
        }
    }
}

/// How one resource ended.
#[must_use]
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
#[must_use]
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

pub(crate) struct Shared {
    pub(crate) stack: Stack,
    pub(crate) ctx: OpContext,
    pub(crate) opts: ApplyOptions,
    reporter: Arc<dyn Reporter>,
    /// Every resource's recorded result, updated as resources are applied (dependants read
    /// their inputs' results here).
    outputs: Mutex<BTreeMap<ResourceId, serde_json::Value>>,
    observed: BTreeMap<ResourceId, ObservedResource>,
    pub(crate) desired: Desired,
}

impl Shared {
    /// Reports progress of a long operation on `id`.
    pub(crate) fn progress(&self, id: &ResourceId, message: String) {
        self.reporter.event(ApplyEvent::Progress {
            id: id.clone(),
            message,
        })
    }
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
    let mut resolved: Vec<ObservedResource> = Vec::new();
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
            if opts
                .lock_lost
                .as_ref()
                .is_some_and(|l| l.load(std::sync::atomic::Ordering::SeqCst))
            {
                let outcome = Outcome::Skipped(
                    "not attempted: the apply lock was lost to another apply".into(),
                );
                shared.reporter.event(ApplyEvent::Finished {
                    id: c.id.clone(),
                    outcome: outcome.clone(),
                    elapsed: Duration::ZERO,
                });
                results.insert(c.id.clone(), outcome);
                continue;
            }
            if c.action == Action::NoOp {
                results.insert(c.id.clone(), Outcome::NoOp);
                if let Some(o) = observed_with_error(&shared, &c.id) {
                    resolved.push(o);
                }
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
    for rec in resolved {
        forget_error(&shared, rec).await;
    }
    ApplyReport {
        results: plan
            .changes
            .iter()
            .map(|c| (c.id.clone(), results.remove(&c.id).unwrap_or(Outcome::NoOp)))
            .collect(),
    }
}

/// Most bytes of an error kept in state and history (`lastError`, a `failed` entry) and
/// shown as the resource's outcome; a longer one is cut there, and its full text goes to the
/// target's log store ([`crate::state::StateStore::keep_error_log`]), which the summary names.
pub const MAX_RECORDED_ERROR: usize = 4096;

/// `message` when it fits in [`MAX_RECORDED_ERROR`] bytes, else its start, its size and where
/// the full text is (or that the target keeps none): what state, history and the outcome
/// carry, so a failure quoting megabytes of data never grows them by as much.
async fn error_summary(sh: &Shared, id: &ResourceId, message: &str) -> String {
    if message.len() <= MAX_RECORDED_ERROR {
        return message.to_string();
    }
    let kept = match sh
        .stack
        .state
        .keep_error_log(&sh.ctx.project, id, message)
        .await
    {
        Ok(Some(path)) => format!("full error: {path}"),
        Ok(None) => "the target keeps no error log, so the rest is not kept".to_string(),
        Err(e) => format!("keeping the full error failed: {}", e.message),
    };
    summarize(message, &kept)
}

/// The start of `message` and `(kept)`, within [`MAX_RECORDED_ERROR`] bytes.
fn summarize(message: &str, kept: &str) -> String {
    let kept = mlctl_spec::suggest::clip(kept, 512);
    // Room for the cut's note, the line break and the parentheses.
    let room = MAX_RECORDED_ERROR - kept.len() - 64;
    format!("{}\n({kept})", mlctl_spec::suggest::clip(message, room))
}

/// The observed record of `id` when it carries a last error.
fn observed_with_error(sh: &Shared, id: &ResourceId) -> Option<ObservedResource> {
    sh.observed
        .get(id)
        .filter(|o| o.last_error.is_some())
        .cloned()
}

/// Drops the last error of a resource the plan found up to date: whatever failed no longer
/// applies (the spec moved on, or the target healed), so status and state stop saying it.
/// Best effort, like recording a failure: the apply's outcome does not depend on it.
async fn forget_error(sh: &Shared, mut rec: ObservedResource) {
    let Some(err) = rec.last_error.take() else {
        return;
    };
    rec.drift.clear();
    let entry = HistoryEntry {
        format_version: crate::state::FORMAT_VERSION,
        id: rec.id.clone(),
        action: "resolved".into(),
        fingerprint: rec.fingerprint.clone(),
        commit: sh.ctx.commit.clone(),
        at: now(),
        detail: format!(
            "up to date; the failure of commit {} no longer applies: {}",
            &err.commit[..err.commit.len().min(7)],
            err.message
        ),
    };
    let _ = sh.stack.state.record(&sh.ctx.project, &rec, &entry).await;
}

async fn run_change(sh: &Shared, change: &Change, d: Option<&DesiredResource>) -> Outcome {
    let mut health = Health::Healthy;
    let result: Result<String> = match (change.action, d) {
        (Action::Delete, _) => reconcile::delete(sh, &change.id)
            .await
            .map(|()| "destroyed".to_string()),
        (_, Some(d)) => apply_one(sh, change, d, &mut health).await,
        (_, None) => Err(ProviderError::new(
            ErrorKind::Other,
            "mlctl",
            "apply",
            "resource missing from desired state",
        )),
    };
    // Record the outcome in the target.
    let entry = |action: &str, detail: &str, fp: &str| HistoryEntry {
        format_version: crate::state::FORMAT_VERSION,
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
                format_version: crate::state::FORMAT_VERSION,
                id: change.id.clone(),
                fingerprint: d.fingerprint.0.clone(),
                spec: d.canonical.clone(),
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
            let message = error_summary(sh, &change.id, &e.message).await;
            let fp = d.map(|d| d.fingerprint.0.clone()).unwrap_or_default();
            let mut rec = sh
                .observed
                .get(&change.id)
                .cloned()
                .unwrap_or(ObservedResource {
                    format_version: crate::state::FORMAT_VERSION,
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

/// Reconciles `d` in full, or in place when only in-place fields changed; both when a
/// resource with a label change also has drift to repair.
async fn apply_one(
    sh: &Shared,
    change: &Change,
    d: &DesiredResource,
    health: &mut Health,
) -> Result<String> {
    let observed = sh.observed.get(&change.id);
    let repair = observed.is_some_and(|o| {
        !o.drift.is_empty() || matches!(o.health, Health::Degraded | Health::Failed)
    });
    let mut detail = Vec::new();
    if !change.in_place || repair {
        let applied = reconcile::reconcile(sh, d).await?;
        *health = applied.health;
        sh.outputs
            .lock()
            .expect("outputs lock")
            .insert(change.id.clone(), applied.outputs);
        detail.push(applied.detail);
    } else if let Some(o) = observed {
        *health = o.health;
    }
    if change.in_place
        && let Some(o) = observed
    {
        let outputs = reconcile::update_in_place(sh, d, o).await?;
        if !repair {
            sh.outputs
                .lock()
                .expect("outputs lock")
                .insert(change.id.clone(), outputs);
        }
        let fields: Vec<&str> = change.diff.iter().map(|f| f.path.as_str()).collect();
        detail.push(format!(
            "updated in place ({}); nothing rebuilt",
            mlctl_spec::suggest::list(fields)
        ));
    }
    Ok(detail.join("; "))
}

pub(crate) fn output_of<T: for<'de> serde::Deserialize<'de>>(
    sh: &Shared,
    id: &ResourceId,
) -> Result<T> {
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

pub(crate) fn tags(sh: &Shared, d: &DesiredResource) -> Tags {
    let mut labels = sh.desired.labels.clone();
    labels.extend(d.resource.metadata.labels.clone());
    Tags {
        project: sh.ctx.project.clone(),
        resource: d.resource.id.to_string(),
        fingerprint: d.fingerprint.0.clone(),
        commit: sh.ctx.commit.clone(),
        labels,
    }
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 11: a 63 MB error was stored in state and history whole.
    #[test]
    fn a_recorded_error_is_a_bounded_summary_naming_where_the_rest_is() {
        let long = format!("dataset `wide`: {}", "x".repeat(10 << 20));
        let s = summarize(
            &long,
            "full error: /p/.mlctl/local/logs/Dataset-wide.error.log",
        );
        assert!(s.len() <= MAX_RECORDED_ERROR, "{}", s.len());
        assert!(s.starts_with("dataset `wide`: xxx"));
        assert!(
            s.ends_with("(value truncated: 10,485,776 bytes)\n(full error: /p/.mlctl/local/logs/Dataset-wide.error.log)"),
            "{}",
            &s[s.len() - 200..]
        );
        let s = summarize(&long, &"y".repeat(5000));
        assert!(s.len() <= MAX_RECORDED_ERROR, "{}", s.len());
    }
}
