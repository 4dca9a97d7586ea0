//! The shared conformance suite against the mock target, one test per check (each on its own
//! fixture and state directory, so they run in parallel), plus the whole suite under
//! throttling and latency.

use async_trait::async_trait;
use mlctl_conformance::{self as conformance, Fixture, Hooks};
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

/// Every check of the suite on a fresh mock target; the mock can inject every fault and
/// out-of-band change the suite asks for, so it skips none.
async fn conformance_setup(_check: &'static str) -> Option<conformance::Setup> {
    let (fx, stack, hooks) = mock();
    Some(conformance::Setup {
        fx,
        stack,
        hooks: Box::new(hooks),
        guard: None,
    })
}

conformance::conformance_tests! {
    setup: conformance_setup,
}

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
    conformance::run_all(&stack, &fx, &hooks, &[]).await;
}
