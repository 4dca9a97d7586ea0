//! The behaviour suite every mlctl provider must pass (object_store's pattern): async free
//! functions that take a [`Stack`] and a [`Fixture`] and panic, naming the behaviour, when the
//! provider gets it wrong.
//!
//! The suite owns its list of checks ([`CHECKS`]). A provider's tests call
//! [`conformance_tests!`] once, which makes one `#[test]` per check, each on its own fixture so
//! they run in parallel. A provider skips a check only by naming it with a reason; the test is
//! then `#[ignore]`d with that reason, so `cargo test` prints the skip:
//!
//! ```ignore
//! async fn setup(check: &'static str) -> Option<mlctl_conformance::Setup> { ... }
//!
//! mlctl_conformance::conformance_tests! {
//!     setup: setup,
//!     skip: {
//!         apply_repairs_instance_drift: "endpoints run one process per instance; ...",
//!     },
//! }
//! ```
//!
//! A check added to the suite runs on every provider at once; a skip of a name that is not a
//! check is a compile error.
//!
//! # Assumptions
//! - The stack's target holds nothing of the fixture's project at the start, or only what an
//!   earlier run of the suite left (the engine checks destroy leftovers first). Checks use
//!   their own object names (`conf-...`), so they may share one stack, one after another.
//! - Failure injection and out-of-band changes are provider-specific: the caller supplies them
//!   through [`Hooks`]. A check whose hook the provider lacks fails; skip it instead.
//! - What a component may lack is read from its `capabilities()` (run tracking, stage
//!   history), never discovered from a `NotSupported` error.
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
    dataset_transform_is_its_commands_output, datastore_blobs,
};
pub use deployer::{
    canary_without_traffic_rolls_back, deployer_failure_reports_reason, deployer_lifecycle,
};
pub use engine::{
    apply_converges, apply_isolates_failures, apply_repairs_crashed_endpoint,
    apply_repairs_instance_drift,
};
pub use fixture::{Fixture, PROJECT, digest_path};
pub use monitor::monitor_configure_remove;
pub use registry::{registry_approval, registry_artifacts_roundtrip, registry_versions_and_stages};
pub use state::{
    digest_key_is_made_once, lock_contention, lock_lease, lock_takeover, monitor_results_roundtrip,
    state_roundtrip,
};
pub use trainer::{
    trainer_cancel, trainer_failure_reports_reason, trainer_submit_is_idempotent,
    trainer_unknown_job,
};

#[doc(hidden)]
pub use tokio as __tokio;

use async_trait::async_trait;
use mlctl_core::{
    DeployState, DeploymentHandle, EndpointRequest, JobHandle, JobState, ProviderError, Stack,
    TrainingRequest,
};
use std::fmt::Display;
use std::time::{Duration, Instant};

/// The suite's checks, in the order [`run_all`] runs them: the one list from which
/// [`conformance_tests!`] makes a test per check for every provider. Each entry says whether
/// the check takes the provider's [`Hooks`].
#[doc(hidden)]
#[macro_export]
macro_rules! __with_checks {
    ($then:ident ! { $($args:tt)* }) => {
        $crate::$then! { $($args)* ;
            plain state_roundtrip,
            plain lock_contention,
            plain lock_takeover,
            plain lock_lease,
            plain digest_key_is_made_once,
            plain monitor_results_roundtrip,
            plain datastore_blobs,
            plain dataset_register_idempotent,
            plain dataset_missing_source_fails,
            plain dataset_schema_violation_fails,
            plain dataset_transform_is_its_commands_output,
            plain trainer_submit_is_idempotent,
            hooked trainer_failure_reports_reason,
            plain trainer_cancel,
            plain trainer_unknown_job,
            plain registry_versions_and_stages,
            plain registry_approval,
            plain registry_artifacts_roundtrip,
            plain deployer_lifecycle,
            hooked deployer_failure_reports_reason,
            plain canary_without_traffic_rolls_back,
            plain monitor_configure_remove,
            plain apply_converges,
            plain apply_isolates_failures,
            hooked apply_repairs_instance_drift,
            hooked apply_repairs_crashed_endpoint,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __check_names {
    ( ; $($kind:ident $check:ident),* $(,)?) => {
        /// Every check of the suite, by name.
        pub const CHECKS: &[&str] = &[$(stringify!($check)),*];
    };
}
__with_checks!(__check_names! {});

#[doc(hidden)]
#[macro_export]
macro_rules! __call_check {
    (plain, $check:ident, $s:ident) => {
        $crate::$check(&$s.stack, &$s.fx).await
    };
    (hooked, $check:ident, $s:ident) => {
        $crate::$check(&$s.stack, &$s.fx, &*$s.hooks).await
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __run_all {
    ($stack:ident, $fx:ident, $hooks:ident, $skip:ident ; $($kind:ident $check:ident),* $(,)?) => {{
        let s = $crate::SetupRef { stack: $stack, fx: $fx, hooks: $hooks };
        $(
            if !$skip.contains(&stringify!($check)) {
                $crate::__call_check!($kind, $check, s);
            }
        )*
    }};
}

/// Runs every check on one stack, one after another, except those named in `skip` (which a
/// caller names with its reason in [`conformance_tests!`] too).
pub async fn run_all(stack: &Stack, fx: &Fixture, hooks: &dyn Hooks, skip: &[&str]) {
    __with_checks!(__run_all! { stack, fx, hooks, skip })
}

/// A check's world, borrowed (for [`run_all`]).
#[doc(hidden)]
pub struct SetupRef<'a> {
    pub stack: &'a Stack,
    pub fx: &'a Fixture,
    pub hooks: &'a dyn Hooks,
}

/// What a provider's test gives each check: a fresh fixture, the stack under test, its hooks,
/// and anything to hold while the check runs (a turn on a shared emulator, a cleanup on drop).
pub struct Setup {
    /// The fixture project.
    pub fx: Fixture,
    /// The provider's stack over the fixture.
    pub stack: Stack,
    /// How to make things go wrong on this provider.
    pub hooks: Box<dyn Hooks>,
    /// Dropped after the check.
    pub guard: Option<Box<dyn std::any::Any + Send>>,
}

/// One `#[test]` per check of the suite for a provider: `setup` is an async fn taking the
/// check's name and returning `Option<Setup>` (`None` only where an emulator is absent outside
/// CI, after saying so on stderr). `skip` names checks the provider cannot run, each with the
/// reason, which `cargo test` prints next to the ignored test.
#[macro_export]
macro_rules! conformance_tests {
    (setup: $setup:path $(, skip: { $($skip:ident : $why:literal),* $(,)? })? $(,)?) => {
        $crate::__skips_then_tests!($setup ; () ; $($($skip : $why),*)?);
        // A skip must name a check of the suite.
        $($(const _: () = assert!(
            $crate::__is_check(stringify!($skip)),
            "`skip` names a check the suite does not have"
        );)*)?
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($setup:path ; $skips:tt ; $($kind:ident $check:ident),* $(,)?) => {
        $( $crate::__conformance_test!($setup ; $skips ; $kind $check); )*
    };
}

// One test for one check, `#[ignore]`d with its reason when the provider skips it. The skips
// arrive as a nested list `([name : "why"] ([name : "why"] ()))`; a skip is found by a
// matcher made for this check (`__pick`), whose first pattern holds the check's name.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_test {
    ($setup:path ; $skips:tt ; $kind:ident $check:ident) => {
        macro_rules! __pick {
            (([$check : $why:literal] $rest:tt)) => {
                #[test]
                #[ignore = $why]
                fn $check() {
                    $crate::__runtime().block_on(async {
                        let Some(setup) = $setup(stringify!($check)).await else {
                            return;
                        };
                        let s = setup.borrow();
                        $crate::__call_check!($kind, $check, s);
                        drop(setup);
                    });
                }
            };
            (([$other:ident : $why:literal] $rest:tt)) => {
                __pick!($rest);
            };
            (()) => {
                #[test]
                fn $check() {
                    $crate::__runtime().block_on(async {
                        let Some(setup) = $setup(stringify!($check)).await else {
                            return;
                        };
                        let s = setup.borrow();
                        $crate::__call_check!($kind, $check, s);
                        drop(setup);
                    });
                }
            };
        }
        __pick!($skips);
    };
}

// Turns a provider's flat `skip: {a: "why", b: "why"}` into the nested list, then makes the
// tests.
#[doc(hidden)]
#[macro_export]
macro_rules! __skips_then_tests {
    ($setup:path ; $acc:tt ;) => {
        $crate::__with_checks!(__conformance_tests! { $setup ; $acc });
    };
    ($setup:path ; $acc:tt ; $skip:ident : $why:literal $(, $($rest:tt)*)?) => {
        $crate::__skips_then_tests!($setup ; ([$skip : $why] $acc) ; $($($rest)*)?);
    };
}

#[doc(hidden)]
pub const fn __is_check(name: &str) -> bool {
    let mut i = 0;
    while i < CHECKS.len() {
        let (a, b) = (CHECKS[i].as_bytes(), name.as_bytes());
        if a.len() == b.len() {
            let mut j = 0;
            while j < a.len() && a[j] == b[j] {
                j += 1;
            }
            if j == a.len() {
                return true;
            }
        }
        i += 1;
    }
    false
}

/// The runtime a generated check runs on: 2 worker threads, what CI has.
#[doc(hidden)]
pub fn __runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for the check")
}

impl Setup {
    /// The parts a check reads.
    #[doc(hidden)]
    pub fn borrow(&self) -> SetupRef<'_> {
        SetupRef {
            stack: &self.stack,
            fx: &self.fx,
            hooks: &*self.hooks,
        }
    }
}

/// A check that needs a hook the provider does not implement.
pub(crate) const NO_HOOK: &str = "this provider's Hooks::{hook} answers that it cannot do this; implement the hook, or skip the check with the reason in conformance_tests!";

/// Provider-specific ways to make things go wrong, supplied by the provider's own test.
///
/// Every method defaults to "cannot do that" (`None` / `false`). A check that needs a hook the
/// provider lacks fails, naming the hook: the provider either implements it or skips that
/// check, with its reason, in [`conformance_tests!`].
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

/// No hooks: a provider using it skips the checks that need them.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

impl Hooks for NoHooks {}

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
