//! The shared conformance suite on the local target, one test per check (made by
//! `mlctl_conformance::conformance_tests!`). It lives with the end-to-end tests because the
//! local deployer starts the real `mlctl serve` binary.

use crate::common::{alive, endpoint_pids, kill_endpoints};
use mlctl_conformance::{self as conformance, Fixture, Hooks};
use mlctl_core::{EndpointRequest, TrainingRequest};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// How the local target is made to fail: a script that exits non-zero, a model directory that
/// does not exist, a `kill -9` of an endpoint's servers; and how its instance count is changed
/// behind mlctl's back: servers killed, or started by hand from the endpoint's `server.json`.
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

    async fn scale_endpoint(&self, name: &str, instances: u32) -> bool {
        let dir = self.state.join("endpoints").join(name);
        let mut running: Vec<u32> = endpoint_pids(&dir)
            .into_iter()
            .filter(|p| alive(*p))
            .collect();
        while running.len() > instances as usize {
            let pid = running.pop().unwrap_or_default();
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        let Ok(control) = std::fs::read_to_string(dir.join("control.token")) else {
            return false;
        };
        let rec: serde_json::Value = std::fs::read(dir.join("endpoint.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let mut started = Vec::new();
        while running.len() + started.len() < instances as usize {
            // What a person would run: another server from the endpoint's own config.
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_mlctl"));
            cmd.args(["serve", "--config"])
                .arg(dir.join("server.json"))
                .args(["--token-env", "MLCTL_SERVE_TOKEN"])
                .env("MLCTL_CONTROL_TOKEN", control.trim())
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if let Some(var) = rec["authRef"]
                .as_str()
                .and_then(|r| r.strip_prefix("${env:"))
                .and_then(|r| r.strip_suffix('}'))
            {
                cmd.env("MLCTL_SERVE_TOKEN", std::env::var(var).unwrap_or_default());
            }
            // Its own group, so the guard's group kill stops it like mlctl's own.
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
            let Ok(mut child) = cmd.spawn() else {
                return false;
            };
            started.push(child.id());
            std::thread::spawn(move || {
                let _ = child.wait();
            });
        }
        // Ready once announced (bounded, generous).
        let t0 = std::time::Instant::now();
        while !started
            .iter()
            .all(|pid| dir.join("instances").join(format!("{pid}.json")).exists())
        {
            if t0.elapsed() > std::time::Duration::from_secs(300)
                || !started.iter().all(|p| alive(*p))
            {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        true
    }

    async fn crash_endpoint(&self, name: &str) -> bool {
        let pids = endpoint_pids(&self.state.join("endpoints").join(name));
        !pids.is_empty()
            && pids.iter().all(|pid| {
                Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status()
                    .is_ok_and(|s| s.success())
            })
    }
}

/// Stops every endpoint process of a state directory when the check ends (failed or not).
struct StopEndpoints(PathBuf);

impl Drop for StopEndpoints {
    fn drop(&mut self) {
        kill_endpoints(&self.0);
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
}

/// The registry checks, and a whole apply, on the local target whose Registry is a real
/// MLflow server's (`tracking.registry: source`): what `mlctl_provider_mlflow::MlflowRegistry`
/// promises is what every registry promises.
mod mlflow_registry {
    use super::*;

    fn setup(url: String) -> (Fixture, mlctl_core::Stack, StopEndpoints) {
        let fx = Fixture::new("local").expect("fixture");
        let cfg = fx.provider_config(mlctl_spec::Target::local());
        let state = cfg.state_dir();
        let mut stack =
            mlctl_provider_local::stack(&cfg, PathBuf::from(env!("CARGO_BIN_EXE_mlctl")))
                .expect("local stack");
        let tracking = mlctl_spec::Tracking {
            provider: mlctl_spec::TrackingProvider::Mlflow,
            uri: url,
            token: None,
            username: None,
            password: None,
            experiment: None,
            registry: Some(mlctl_spec::TrackingRegistry::Source),
        };
        let registry = mlctl_provider_mlflow::MlflowRegistry::new(
            &tracking,
            &fx.unique("conformance"),
            state.join("mlflow-registry"),
            stack.registry.capabilities().fields,
        )
        .expect("mlflow registry");
        stack.registry = std::sync::Arc::new(registry);
        (fx, stack, StopEndpoints(state))
    }

    macro_rules! on_mlflow {
        ($($check:ident),*) => {$(
            #[test]
            fn $check() {
                let Some(m) = crate::mlflow::mlflow_env(stringify!($check)) else { return };
                let (fx, stack, _stop) = setup(m.url);
                conformance::__runtime().block_on(conformance::$check(&stack, &fx));
            }
        )*};
    }

    // Each check makes models of its own names on the shared server.
    on_mlflow!(
        registry_versions_and_stages,
        registry_approval,
        registry_artifacts_roundtrip
    );

    /// A whole apply (the fixture's model is `iris`, which another test owns on the shared
    /// server): on a server of its own.
    #[test]
    fn apply_converges() {
        let Some(m) = crate::mlflow::mlflow_env("apply_converges") else {
            return;
        };
        let data = tempfile::tempdir().unwrap();
        let mut server = crate::mlflow::Server::new(&m.bin, data.path());
        server.start();
        let (fx, stack, _stop) = setup(server.url());
        conformance::__runtime().block_on(conformance::apply_converges(&stack, &fx));
    }
}
