//! Monitors and captured endpoint data.

use crate::store::{Store, key};
use crate::{Mock, Result, now};
use async_trait::async_trait;
use mlctl_core::{
    Capabilities, Health, MonitorRequest, MonitorSink, MonitorStatus, OpContext, Tags,
    components::InPlaceRequest,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MonitorRecord {
    /// Format of this record (`mlctl_core::state::FORMAT_VERSION` when written).
    #[serde(default = "mlctl_core::state::FormatVersion::legacy")]
    format_version: mlctl_core::state::FormatVersion,
    status: MonitorStatus,
    fingerprint: String,
    tags: Tags,
    spec: mlctl_spec::MonitorSpec,
    baseline: Option<String>,
    updated_at: String,
}

fn monitor_path(name: &str) -> String {
    format!("monitors/{}.json", key(name))
}

fn capture_path(endpoint: &str) -> String {
    format!("captured/{}.jsonl", key(endpoint))
}

pub(crate) fn append_capture(
    store: &Store,
    endpoint: &str,
    record: &serde_json::Value,
) -> Result<()> {
    let rel = capture_path(endpoint);
    store.locked("capture", &rel, || store.append("capture", &rel, record))
}

#[async_trait]
impl MonitorSink for Mock {
    fn capabilities(&self) -> Capabilities {
        Mock::capabilities(self)
    }

    async fn configure(&self, _ctx: &OpContext, req: &MonitorRequest) -> Result<MonitorStatus> {
        let op = "configure";
        self.enter(op).await?;
        self.store().update(
            op,
            &monitor_path(&req.name),
            |rec: &mut Option<MonitorRecord>| {
                let status = MonitorStatus {
                    name: req.name.clone(),
                    endpoint: req.endpoint.name.clone(),
                    schedule: req
                        .spec
                        .schedule
                        .clone()
                        .unwrap_or_else(|| "every 1h".into()),
                    health: Health::Healthy,
                };
                *rec = Some(MonitorRecord {
                    format_version: Default::default(),
                    status: status.clone(),
                    fingerprint: req.fingerprint.clone(),
                    tags: req.tags.clone(),
                    spec: req.spec.clone(),
                    baseline: req.baseline.as_ref().map(|b| b.uri.clone()),
                    updated_at: match rec {
                        Some(old) if old.fingerprint == req.fingerprint && old.status == status => {
                            old.updated_at.clone()
                        }
                        _ => now(),
                    },
                });
                Ok(status)
            },
        )
    }

    async fn captured(
        &self,
        _ctx: &OpContext,
        endpoint: &str,
        limit: usize,
    ) -> Result<Vec<serde_json::Value>> {
        self.enter("captured").await?;
        let mut all: Vec<serde_json::Value> =
            self.store().read_log("captured", &capture_path(endpoint))?;
        let skip = all.len().saturating_sub(limit);
        Ok(all.split_off(skip))
    }

    async fn update_in_place(&self, _ctx: &OpContext, req: &InPlaceRequest) -> Result<()> {
        self.enter("update_in_place").await?;
        let op = "update monitor tags";
        self.store().update(
            op,
            &monitor_path(&req.name),
            |rec: &mut Option<MonitorRecord>| {
                let rec = rec
                    .as_mut()
                    .ok_or_else(|| crate::gone(op, format!("monitor `{}`", req.name)))?;
                rec.tags = req.tags.clone();
                Ok(())
            },
        )
    }

    async fn remove(&self, _ctx: &OpContext, name: &str) -> Result<()> {
        self.enter("remove_monitor").await?;
        self.store()
            .remove("remove_monitor", &monitor_path(name))
            .map(|_| ())
    }
}
