//! The behaviour suite every mlctl provider must pass (object_store's pattern): async free
//! functions that take a [`Stack`] and a [`Fixture`] and panic, naming the behaviour, when the
//! provider gets it wrong. Each provider calls them from its own tests: the mock on every
//! `cargo test`, cloud providers against their emulators.
//!
//! ```no_run
//! # async fn example() {
//! use mlctl_conformance::{Fixture, NoHooks};
//! let fx = Fixture::new("test").unwrap();
//! let target = mlctl_spec::Target::mock();
//! # let build = |_cfg: &mlctl_core::ProviderConfig| -> mlctl_core::Stack { unimplemented!() };
//! let stack = build(&fx.provider_config(target)); // e.g. mlctl_provider_mock::stack(..)
//! mlctl_conformance::run_all(&stack, &fx, &NoHooks).await;
//! # }
//! ```
//!
//! Suites, so a provider opts into what it implements: [`run_state_suite`], [`run_data_suite`],
//! [`run_trainer_suite`], [`run_registry_suite`], [`run_deployer_suite`],
//! [`run_monitor_suite`], [`run_engine_suite`] (plan + apply end to end), and [`run_all`]. Or
//! call single checks, one test each, so they run in parallel on separate fixtures.
//!
//! # Assumptions
//! - The stack's target holds nothing of the fixture's project at the start, or only what an
//!   earlier run of the suite left (the engine checks destroy leftovers first). Checks use
//!   their own object names (`conf-...`), so they may share one stack, one after another.
//! - Failure injection and out-of-band changes are provider-specific: the caller supplies them
//!   through [`Hooks`]. A hook that returns `None`/`false` skips its check, with a note on
//!   stderr; nothing is failed for it.
//! - Retryable errors (throttling, timeouts, 5xx) are retried a few times by every check, as
//!   the apply engine would; anything else fails the check.

mod data;
mod deployer;
mod engine;
mod fixture;
mod monitor;
mod registry;
mod state;
mod trainer;

pub use data::{
    dataset_missing_source_fails, dataset_register_idempotent, dataset_schema_violation_fails,
    datastore_blobs,
};
pub use deployer::{deployer_failure_reports_reason, deployer_lifecycle};
pub use engine::{apply_converges, apply_isolates_failures, apply_repairs_drift};
pub use fixture::{Fixture, PROJECT, digest_path};
pub use monitor::monitor_configure_remove;
pub use registry::{registry_approval, registry_versions_and_stages};
pub use state::{lock_contention, state_roundtrip};
pub use trainer::{
    trainer_cancel, trainer_failure_reports_reason, trainer_submit_is_idempotent,
    trainer_unknown_job,
};

use async_trait::async_trait;
use mlctl_core::{
    DeployState, DeploymentHandle, EndpointRequest, JobHandle, JobState, ProviderError, Stack,
    TrainingRequest,
};
use std::fmt::Display;
use std::time::{Duration, Instant};

/// Provider-specific ways to make things go wrong, supplied by the provider's own test.
///
/// Every method defaults to "cannot do that" (`None` / `false`), which skips the check that
/// needs it.
#[async_trait]
pub trait Hooks: Send + Sync {
    /// Turns `req` into a request whose job fails when it runs (a script that exits non-zero, a
    /// resource the mock target is configured to fail, ...). Keep `job_name`: the check then
    /// submits the original `req` under that name and expects a new attempt that succeeds.
    fn failing_training(&self, _req: &TrainingRequest) -> Option<TrainingRequest> {
        None
    }

    /// Turns `req` into a request whose rollout fails. Keep `name`: the check then deploys the
    /// original `req` to the same endpoint and expects it to succeed.
    fn failing_deployment(&self, _req: &EndpointRequest) -> Option<EndpointRequest> {
        None
    }

    /// Changes endpoint `name`'s instance count behind mlctl's back; `false` when unsupported.
    async fn scale_endpoint(&self, _name: &str, _instances: u32) -> bool {
        false
    }

    /// Makes endpoint `name` unhealthy behind mlctl's back; `false` when unsupported.
    async fn crash_endpoint(&self, _name: &str) -> bool {
        false
    }
}

/// No hooks: the checks that need them are skipped.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

impl Hooks for NoHooks {}

/// Runs the StateStore checks: records and history, the apply lock.
pub async fn run_state_suite(stack: &Stack, fx: &Fixture) {
    state_roundtrip(stack, fx).await;
    lock_contention(stack, fx).await;
}

/// Runs the DataStore checks: blobs, dataset registration, bad data.
pub async fn run_data_suite(stack: &Stack, fx: &Fixture) {
    datastore_blobs(stack, fx).await;
    dataset_register_idempotent(stack, fx).await;
    dataset_missing_source_fails(stack, fx).await;
    dataset_schema_violation_fails(stack, fx).await;
}

/// Runs the Trainer checks (uses the DataStore to register the training data).
pub async fn run_trainer_suite(stack: &Stack, fx: &Fixture, hooks: &dyn Hooks) {
    trainer_submit_is_idempotent(stack, fx).await;
    trainer_failure_reports_reason(stack, fx, hooks).await;
    trainer_cancel(stack, fx).await;
    trainer_unknown_job(stack, fx).await;
}

/// Runs the Registry checks (trains one job for a real artifact).
pub async fn run_registry_suite(stack: &Stack, fx: &Fixture) {
    registry_versions_and_stages(stack, fx).await;
    registry_approval(stack, fx).await;
}

/// Runs the Deployer checks (trains and registers first).
pub async fn run_deployer_suite(stack: &Stack, fx: &Fixture, hooks: &dyn Hooks) {
    deployer_lifecycle(stack, fx).await;
    deployer_failure_reports_reason(stack, fx, hooks).await;
}

/// Runs the MonitorSink checks (deploys an endpoint first).
pub async fn run_monitor_suite(stack: &Stack, fx: &Fixture) {
    monitor_configure_remove(stack, fx).await;
}

/// Runs plan + apply end to end on the fixture project: create, no-op re-plan, replace on a
/// hyperparameter change, failure isolation, drift repair, destroy.
pub async fn run_engine_suite(stack: &Stack, fx: &Fixture, hooks: &dyn Hooks) {
    apply_converges(stack, fx).await;
    apply_isolates_failures(stack, fx).await;
    apply_repairs_drift(stack, fx, hooks).await;
}

/// Every check, suite by suite.
pub async fn run_all(stack: &Stack, fx: &Fixture, hooks: &dyn Hooks) {
    run_state_suite(stack, fx).await;
    run_data_suite(stack, fx).await;
    run_trainer_suite(stack, fx, hooks).await;
    run_registry_suite(stack, fx).await;
    run_deployer_suite(stack, fx, hooks).await;
    run_monitor_suite(stack, fx).await;
    run_engine_suite(stack, fx, hooks).await;
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the checks.

/// One running check: failures name it, the provider, and the behaviour that broke.
pub(crate) struct Check {
    name: &'static str,
    provider: String,
}

impl Check {
    pub(crate) fn new(name: &'static str, stack: &Stack) -> Check {
        Check {
            name,
            provider: stack.provider.clone(),
        }
    }

    #[track_caller]
    pub(crate) fn fail(&self, behaviour: impl Display) -> ! {
        panic!(
            "conformance check `{}` failed on provider `{}`: {behaviour}",
            self.name, self.provider
        )
    }

    #[track_caller]
    pub(crate) fn ensure(&self, cond: bool, behaviour: impl Display) {
        if !cond {
            self.fail(behaviour)
        }
    }

    #[track_caller]
    pub(crate) fn ok<T>(&self, r: Result<T, ProviderError>, behaviour: impl Display) -> T {
        match r {
            Ok(v) => v,
            Err(e) => self.fail(format_args!(
                "{behaviour}: unexpected error: {e} (kind {:?})",
                e.kind
            )),
        }
    }

    pub(crate) fn skip(&self, why: impl Display) {
        eprintln!(
            "conformance check `{}` skipped on provider `{}`: {why}",
            self.name, self.provider
        );
    }
}

/// Evaluates a component call, retrying retryable errors a few times; the `Result` after that.
macro_rules! attempt {
    ($call:expr) => {{
        let mut tries = 0u32;
        loop {
            match $call {
                Err(e) if e.is_retryable() && tries < 8 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(10u64 << tries.min(6)))
                        .await;
                }
                other => break other,
            }
        }
    }};
}
pub(crate) use attempt;

/// Like [`attempt!`], failing the check on an error: `call!(check, "what it does", expr)`.
macro_rules! call {
    ($c:expr, $what:expr, $call:expr) => {{
        let r = $crate::attempt!($call);
        $c.ok(r, $what)
    }};
}
pub(crate) use call;

fn poll_every(d: Duration) -> Duration {
    if d.is_zero() {
        Duration::from_millis(200)
    } else {
        d.max(Duration::from_millis(5))
    }
}

/// Polls a job until it completes or fails.
pub(crate) async fn wait_job(c: &Check, stack: &Stack, fx: &Fixture, job: &JobHandle) -> JobState {
    let every = poll_every(stack.trainer.capabilities().poll_interval);
    let t0 = Instant::now();
    loop {
        match call!(
            c,
            format!("polling training job {}", job.name),
            stack.trainer.poll(&fx.ctx, job).await
        ) {
            s @ (JobState::Completed(_) | JobState::Failed { .. }) => return s,
            s if t0.elapsed() > fx.timeout => c.fail(format!(
                "training job {} did not finish within {:?} (last state {s:?})",
                job.name, fx.timeout
            )),
            _ => tokio::time::sleep(every).await,
        }
    }
}

/// Polls a rollout until it is no longer in progress.
pub(crate) async fn wait_rollout(
    c: &Check,
    stack: &Stack,
    fx: &Fixture,
    handle: &DeploymentHandle,
) -> DeployState {
    let every = poll_every(stack.deployer.capabilities().poll_interval);
    let t0 = Instant::now();
    loop {
        match call!(
            c,
            format!(
                "polling rollout {} of endpoint {}",
                handle.id, handle.endpoint
            ),
            stack.deployer.poll(&fx.ctx, handle).await
        ) {
            DeployState::InProgress { message } if t0.elapsed() > fx.timeout => c.fail(format!(
                "rollout {} of endpoint {} did not finish within {:?} (last: {message})",
                handle.id, handle.endpoint, fx.timeout
            )),
            DeployState::InProgress { .. } => tokio::time::sleep(every).await,
            s => return s,
        }
    }
}
