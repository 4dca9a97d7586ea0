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
use mlctl_core::{EndpointRequest, TrainingRequest};
use mlctl_provider_azureml::{Options, Settings, stack_with};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
struct Clean(Arc<fake::FakeArm>);

/// What the fake lets a check do behind mlctl's back, as Azure or a person would: a job whose
/// command exits non-zero (the fake runs jobs for real), a deployment whose operation ends
/// Failed (as Azure's does when the container does not start), a deployment Azure marks Failed
/// after it served, and one scaled by hand.
struct FakeHooks {
    fake: Arc<fake::FakeArm>,
    /// The failing deployment is injected once: the suite asks for it twice (a probe first).
    armed: AtomicBool,
}

/// The deployments of endpoint `name` (the Azure name has the project's prefix and a hash).
fn deployments_of(name: &str) -> String {
    format!(
        "onlineEndpoints/[^/]*{}[^/]*/deployments/",
        regex::escape(name)
    )
}

#[async_trait::async_trait]
impl conformance::Hooks for FakeHooks {
    fn failing_training(&self, req: &TrainingRequest) -> Option<TrainingRequest> {
        let mut bad = req.clone();
        bad.spec.algorithm = None;
        bad.spec.command = Some("echo 'made to fail by the conformance suite' >&2; exit 7".into());
        Some(bad)
    }

    fn failing_deployment(&self, req: &EndpointRequest) -> Option<EndpointRequest> {
        if !self.armed.swap(true, Ordering::SeqCst) {
            self.fake.fail_operation(
                r"(?i)^PUT .*/onlineEndpoints/[^/]+/deployments/[^/]+$",
                "ResourceNotReady",
                "User container has crashed or terminated (made to fail by the conformance suite)",
            );
        }
        Some(req.clone())
    }

    async fn scale_endpoint(&self, name: &str, instances: u32) -> bool {
        self.fake
            .set_state(&deployments_of(name), json!({"capacity": instances}))
            > 0
    }

    async fn crash_endpoint(&self, name: &str) -> bool {
        self.fake.set_state(
            &deployments_of(name),
            json!({"provisioningState": "Failed"}),
        ) > 0
    }
}

impl Drop for Clean {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.0.assert_contract_clean();
        }
    }
}

async fn azure_setup(check: &'static str) -> Option<conformance::Setup> {
    let fake = Arc::new(fake::FakeArm::start()?);
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
        hooks: Box::new(FakeHooks {
            fake: fake.clone(),
            armed: AtomicBool::new(false),
        }),
        guard: Some(Box::new(Clean(fake))),
    })
}

conformance::conformance_tests! {
    setup: azure_setup,
}
