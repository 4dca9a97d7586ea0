//! The shared conformance suite against the mock target, one test per check (each on its own
//! fixture and state directory, so they run in parallel), plus the whole suite under
//! throttling and latency.

use async_trait::async_trait;
use mlctl_conformance::{self as conformance, Fixture, Hooks, NoHooks};
use mlctl_core::{EndpointRequest, Stack, TrainingRequest};
use mlctl_spec::{Faults, MockTarget, Target};
use std::path::PathBuf;

#[path = "conformance/faults.rs"]
mod faults;

/// The TrainingJob name the conformance stacks are configured to fail.
const FAILING_JOB: &str = "conf-made-to-fail";

fn faults() -> Faults {
    Faults {
        fail_training: vec![FAILING_JOB.into()],
        ..Faults::default()
    }
}

fn setup(faults: Faults, latency: Option<&str>) -> (Fixture, Stack, MockHooks) {
    let fx = Fixture::new("test").expect("fixture");
    let target = Target::Mock(MockTarget {
        faults: Some(faults),
        latency: latency.map(str::to_string),
        ..MockTarget::default()
    });
    let cfg = fx.provider_config(target);
    let stack = mlctl_provider_mock::stack(&cfg).expect("mock stack");
    let hooks = MockHooks {
        state_dir: cfg.state_dir(),
    };
    (fx, stack, hooks)
}

fn mock() -> (Fixture, Stack, MockHooks) {
    setup(faults(), None)
}

/// How the mock makes things fail: a job name its target config lists in `failTraining`, a
/// model artifact that does not exist, and the out-of-band tamper functions.
struct MockHooks {
    state_dir: PathBuf,
}

#[async_trait]
impl Hooks for MockHooks {
    fn failing_training(&self, req: &TrainingRequest) -> Option<TrainingRequest> {
        Some(TrainingRequest {
            resource: FAILING_JOB.into(),
            ..req.clone()
        })
    }

    fn failing_deployment(&self, req: &EndpointRequest) -> Option<EndpointRequest> {
        // A model whose artifact is not in the store cannot be served.
        let mut bad = req.clone();
        bad.model.artifact_uri = format!("mock://objects/{}", "0".repeat(64));
        Some(bad)
    }

    async fn scale_endpoint(&self, name: &str, instances: u32) -> bool {
        mlctl_provider_mock::tamper_endpoint(&self.state_dir, name, instances)
            .expect("tamper_endpoint");
        true
    }

    async fn crash_endpoint(&self, name: &str) -> bool {
        mlctl_provider_mock::crash_endpoint(&self.state_dir, name).expect("crash_endpoint");
        true
    }
}

macro_rules! checks {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let (fx, stack, _hooks) = mock();
            conformance::$name(&stack, &fx).await;
        }
    )*};
}

macro_rules! hooked_checks {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let (fx, stack, hooks) = mock();
            conformance::$name(&stack, &fx, &hooks).await;
        }
    )*};
}

checks!(
    state_roundtrip,
    lock_contention,
    datastore_blobs,
    dataset_register_idempotent,
    dataset_missing_source_fails,
    dataset_schema_violation_fails,
    trainer_submit_is_idempotent,
    trainer_cancel,
    trainer_unknown_job,
    registry_versions_and_stages,
    registry_approval,
    deployer_lifecycle,
    monitor_configure_remove,
    apply_converges,
    apply_isolates_failures,
);

hooked_checks!(
    trainer_failure_reports_reason,
    deployer_failure_reports_reason,
    apply_repairs_drift
);

/// Everything at once on one stack, with every call throttled twice and slowed down: the
/// checks and the engine must ride out retryable errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_suite_under_throttling_and_latency() {
    let (fx, stack, hooks) = setup(
        Faults {
            throttle: Some(2),
            ..faults()
        },
        Some("1ms"),
    );
    conformance::run_all(&stack, &fx, &hooks).await;
}

/// The suite runs without hooks too (the hooked checks skip).
#[tokio::test]
async fn suite_without_hooks_skips_what_it_cannot_inject() {
    let (fx, stack, _) = mock();
    conformance::run_trainer_suite(&stack, &fx, &NoHooks).await;
    conformance::run_deployer_suite(&stack, &fx, &NoHooks).await;
}
