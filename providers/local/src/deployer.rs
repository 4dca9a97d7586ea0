//! Local endpoints: supervised `mlctl serve` processes on 127.0.0.1.
//! (Placeholder: the serving work replaces this.)

use async_trait::async_trait;
use mlctl_core::error::{ErrorKind, ProviderError, Result};
use mlctl_core::*;
use std::path::PathBuf;

/// Runs endpoints as child processes of `serve_exe` (the `mlctl` binary).
pub struct LocalDeployer {
    /// Where endpoint state (pid, port, logs, capture) lives.
    pub state_dir: PathBuf,
    /// The `mlctl` executable used to serve.
    pub serve_exe: PathBuf,
}

impl LocalDeployer {
    /// A deployer keeping its state under `state_dir/endpoints`.
    pub fn new(state_dir: PathBuf, serve_exe: PathBuf) -> Self {
        LocalDeployer { state_dir, serve_exe }
    }
}

fn unsupported(op: &str) -> ProviderError {
    ProviderError::new(ErrorKind::NotSupported, "local", op, "local endpoints are not implemented yet")
}

#[async_trait]
impl Deployer for LocalDeployer {
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    async fn deploy(&self, _ctx: &OpContext, _req: &EndpointRequest) -> Result<DeploymentHandle> {
        Err(unsupported("deploy"))
    }
    async fn poll(&self, _ctx: &OpContext, _h: &DeploymentHandle) -> Result<DeployState> {
        Err(unsupported("poll"))
    }
    async fn status(&self, _ctx: &OpContext, _name: &str) -> Result<Option<EndpointStatus>> {
        Ok(None)
    }
    async fn rollback(&self, _ctx: &OpContext, _name: &str, _to: &ModelVersion) -> Result<EndpointStatus> {
        Err(unsupported("rollback"))
    }
    async fn delete(&self, _ctx: &OpContext, _name: &str) -> Result<()> {
        Ok(())
    }
}
