//! The shared conformance suite against the local target: one test per check, each on its own
//! fixture project and state directory, so they run in parallel.

use mlctl_conformance::{self as conformance, Fixture, Hooks};
use mlctl_core::{Stack, TrainingRequest};
use mlctl_spec::Target;
use std::path::PathBuf;

fn local() -> (Fixture, Stack) {
    let fx = Fixture::new("local").expect("fixture");
    let target = Target::local();
    let stack = mlctl_provider_local::stack(&fx.provider_config(target), PathBuf::from("mlctl"))
        .expect("local stack");
    (fx, stack)
}

/// How the local target makes a job fail: script mode with a command that exits non-zero.
struct LocalHooks;

impl Hooks for LocalHooks {
    fn failing_training(&self, req: &TrainingRequest) -> Option<TrainingRequest> {
        let mut bad = req.clone();
        bad.spec.algorithm = None;
        bad.spec.command = Some("echo 'made to fail by the conformance suite' >&2; exit 7".into());
        Some(bad)
    }
}

macro_rules! checks {
    ($($name:ident($($hooks:expr)?);)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (fx, stack) = local();
            conformance::$name(&stack, &fx $(, $hooks)?).await;
        }
    )*};
}

checks! {
    state_roundtrip();
    lock_contention();
    datastore_blobs();
    dataset_register_idempotent();
    dataset_missing_source_fails();
    dataset_schema_violation_fails();
    trainer_submit_is_idempotent();
    trainer_failure_reports_reason(&LocalHooks);
    trainer_cancel();
    trainer_unknown_job();
    registry_approval();
}

/// The local registry copies each version's artifact to `registry/<model>/<version>/` so it
/// outlives the run directory; lineage `trainedArtifact` keeps the original, as the suite asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_versions_and_stages() {
    let (fx, stack) = local();
    conformance::registry_versions_and_stages(&stack, &fx).await;
}
