//! The shared conformance suite (`crates/conformance`) on a whole azureml stack: the fake ARM
//! server (`fake/`, every request body checked against Microsoft's models, jobs run for real)
//! in front of Azurite (Blob Storage, SAS signatures checked). One fake per check, on a free
//! port, and a container of the check's own, so checks run side by side.
//!
//! Needs `MLCTL_AZURITE_URL` and `MLCTL_AZ_FAKE_PY` (see `tests/azurite.rs` and
//! `fake/README.md`); without them the checks say why and pass, except under `CI=true`.

mod common;
#[path = "common/fake.rs"]
mod fake;

use mlctl_conformance::{self as conformance, Fixture};
use mlctl_provider_azureml::{Options, Settings, stack_with};
use std::time::Duration;

fn settings() -> Settings {
    Settings {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
        poll_interval: Duration::from_millis(50),
        ..Settings::from_env()
    }
}

/// Checks the fake's contract log when the check is over (a check that passed with a body
/// Azure would refuse proves nothing).
struct Clean(fake::FakeArm);

impl Drop for Clean {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.0.assert_contract_clean();
        }
    }
}

async fn azure_setup(check: &'static str) -> Option<conformance::Setup> {
    let fake = fake::FakeArm::start()?;
    let container = common::container(fake.blob_url(), check).await;
    let fx = Fixture::new("azureml").expect("fixture");
    let mut target = fake.target(
        &format!("ws-{}", &check[..check.len().min(20)]),
        &container,
        "mlctl",
    );
    if let mlctl_spec::Target::Azureml(t) = &mut target {
        t.sas = Some(common::sas::azurite_sas());
    }
    let stack = stack_with(
        &fx.provider_config(target),
        Options {
            credential: None,
            settings: Some(settings()),
        },
    )
    .await
    .expect("azureml stack on the fake");
    Some(conformance::Setup {
        fx,
        stack,
        hooks: Box::new(conformance::NoHooks),
        guard: Some(Box::new(Clean(fake))),
    })
}

conformance::conformance_tests! {
    setup: azure_setup,
    skip: {
        dataset_transform_is_its_commands_output: "the azureml target refuses Dataset transforms at plan (not built yet)",
        canary_without_traffic_rolls_back: "the azureml target reads no Azure Monitor metrics, so it refuses `minRequests` above 0 at plan",
        trainer_failure_reports_reason: "not wired yet: the fake runs jobs for real and can fail one, but this suite's failing-job hook is not written for azureml",
        deployer_failure_reports_reason: "not wired yet: the fake can end a deployment's operation Failed (FakeArm::fail_operation); the hook is not written, src/tests_deploy.rs covers a failed deployment",
        apply_repairs_crashed_endpoint: "not wired yet: no hook makes a deployment on the fake unhealthy behind mlctl's back",
        apply_repairs_instance_drift: "not wired yet: no hook changes a deployment's capacity on the fake behind mlctl's back",
    },
}
