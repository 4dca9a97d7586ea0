//! Local monitoring: monitor configs and the endpoints' captured data.
//! (Placeholder: the serving/monitoring work replaces this.)

use async_trait::async_trait;
use mlctl_core::error::Result;
use mlctl_core::*;
use std::path::PathBuf;

/// Keeps monitor configs under `state_dir/monitors` and reads capture files of endpoints.
pub struct LocalMonitorSink {
    /// The target's state directory.
    pub state_dir: PathBuf,
}

impl LocalMonitorSink {
    /// A sink over `state_dir`.
    pub fn new(state_dir: PathBuf) -> Self {
        LocalMonitorSink { state_dir }
    }
}

#[async_trait]
impl MonitorSink for LocalMonitorSink {
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    async fn configure(&self, _ctx: &OpContext, req: &MonitorRequest) -> Result<MonitorStatus> {
        Ok(MonitorStatus {
            name: req.name.clone(),
            endpoint: req.endpoint.name.clone(),
            schedule: req.spec.schedule.clone().unwrap_or_default(),
            health: Health::Healthy,
        })
    }
    async fn captured(&self, _ctx: &OpContext, _endpoint: &str, _limit: usize) -> Result<Vec<serde_json::Value>> {
        Ok(Vec::new())
    }
    async fn remove(&self, _ctx: &OpContext, _name: &str) -> Result<()> {
        Ok(())
    }
}
