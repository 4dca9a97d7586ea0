//! The shared conformance suite on the local target, one test per check (made by
//! `mlctl_conformance::conformance_tests!`). It lives with the end-to-end tests because the
//! local deployer starts the real `mlctl serve` binary.

use mlctl_conformance::{self as conformance, Fixture, Hooks};
use mlctl_core::{EndpointRequest, TrainingRequest};
use std::path::PathBuf;
use std::process::Stdio;

/// How the local target is made to fail: a script that exits non-zero, a model directory that
/// does not exist, and a `kill -9` of an endpoint's server.
struct LocalHooks {
    state: PathBuf,
}

#[async_trait::async_trait]
impl Hooks for LocalHooks {
    fn failing_training(&self, req: &TrainingRequest) -> Option<TrainingRequest> {
        let mut bad = req.clone();
        bad.spec.algorithm = None;
        bad.spec.command = Some("echo 'made to fail by the conformance suite' >&2; exit 7".into());
        Some(bad)
    }

    fn failing_deployment(&self, req: &EndpointRequest) -> Option<EndpointRequest> {
        let mut bad = req.clone();
        bad.model.artifact_uri = "/nonexistent/model/dir".into();
        Some(bad)
    }

    async fn crash_endpoint(&self, name: &str) -> bool {
        let path = self
            .state
            .join("endpoints")
            .join(name)
            .join("endpoint.json");
        let Ok(b) = std::fs::read(path) else {
            return false;
        };
        let rec: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
        let pid = rec["pid"].as_u64().unwrap_or(0);
        pid > 1
            && std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()
                .is_ok_and(|s| s.success())
    }
}

/// Stops every endpoint process of a state directory when the check ends (failed or not).
struct StopEndpoints(PathBuf);

impl Drop for StopEndpoints {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(self.0.join("endpoints")) else {
            return;
        };
        for e in entries.flatten() {
            if let Ok(rec) = std::fs::read(e.path().join("endpoint.json"))
                .map(|b| serde_json::from_slice::<serde_json::Value>(&b).unwrap_or_default())
                && let Some(pid) = rec["pid"].as_u64().filter(|p| *p > 1)
            {
                // Best effort: the group may be gone already.
                let _ = std::process::Command::new("kill")
                    .args(["-9", "--", &format!("-{pid}")])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

async fn local_setup(_check: &'static str) -> Option<conformance::Setup> {
    let fx = Fixture::new("local").expect("fixture");
    let cfg = fx.provider_config(mlctl_spec::Target::local());
    let state = cfg.state_dir();
    let stack = mlctl_provider_local::stack(&cfg, PathBuf::from(env!("CARGO_BIN_EXE_mlctl")))
        .expect("local stack");
    Some(conformance::Setup {
        fx,
        stack,
        hooks: Box::new(LocalHooks {
            state: state.clone(),
        }),
        guard: Some(Box::new(StopEndpoints(state))),
    })
}

conformance::conformance_tests! {
    setup: local_setup,
    skip: {
        apply_repairs_instance_drift: "a local endpoint is one server process, so nothing outside mlctl can change its instance count",
    },
}
