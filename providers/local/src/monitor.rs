//! Local monitoring: monitor configs under `<state_dir>/monitors/`, and the endpoints' captured
//! requests (JSON lines written by the endpoint's server under
//! `<state_dir>/endpoints/<name>/capture/`, see `mlctl_serve::capture`).

use async_trait::async_trait;
use mlctl_core::error::{ErrorKind, ProviderError, Result};
use mlctl_core::*;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// Keeps monitor configs under `state_dir/monitors` and reads capture files of endpoints.
pub struct LocalMonitorSink {
    /// The target's state directory.
    pub state_dir: PathBuf,
}

/// A stored monitor configuration (`monitors/<name>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredMonitor {
    /// Format of this record (`mlctl_core::state::FORMAT_VERSION` when written).
    #[serde(default = "mlctl_core::state::FormatVersion::legacy")]
    pub format_version: mlctl_core::state::FormatVersion,
    /// Monitor name.
    pub name: String,
    /// The endpoint watched.
    pub endpoint: String,
    /// The spec as applied.
    pub spec: mlctl_spec::MonitorSpec,
    /// The baseline dataset version, if any.
    pub baseline: Option<DatasetVersion>,
    /// Fingerprint.
    pub fingerprint: String,
    /// Tags.
    pub tags: Tags,
    /// Where the endpoint's capture files are.
    pub capture_dir: PathBuf,
}

impl LocalMonitorSink {
    /// A sink over `state_dir`.
    pub fn new(state_dir: PathBuf) -> Self {
        LocalMonitorSink { state_dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.state_dir.join("monitors").join(format!("{name}.json"))
    }

    /// A stored monitor (`None` when not configured).
    pub fn stored(&self, name: &str) -> Result<Option<StoredMonitor>> {
        let path = self.path(name);
        match std::fs::read(&path) {
            Ok(b) => {
                mlctl_core::state::check_format_json(&path.display().to_string(), &b)?;
                serde_json::from_slice(&b).map(Some).map_err(|e| {
                    ProviderError::new(
                        ErrorKind::Other,
                        "local",
                        "read monitor",
                        format!("{}: {e}", path.display()),
                    )
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ProviderError::io("local", "read monitor", e)),
        }
    }
}

fn schedule_of(spec: &mlctl_spec::MonitorSpec) -> String {
    spec.schedule.clone().unwrap_or_else(|| "every 1h".into())
}

/// The last `limit` records of the capture files in `dir`, oldest first. Lines that are not
/// JSON (a torn last line while the server writes) are skipped.
pub fn read_captured(dir: &Path, limit: usize) -> std::io::Result<Vec<serde_json::Value>> {
    let mut out: Vec<serde_json::Value> = Vec::new();
    // Newest file first, until we have enough.
    for file in mlctl_serve::capture::capture_files(dir).iter().rev() {
        if out.len() >= limit {
            break;
        }
        let f = match std::fs::File::open(file) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let mut lines: Vec<serde_json::Value> = BufReader::new(f)
            .lines()
            .map_while(|l| l.ok())
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect();
        let keep = (limit - out.len()).min(lines.len());
        let mut tail = lines.split_off(lines.len() - keep);
        tail.append(&mut out);
        out = tail;
    }
    Ok(out)
}

#[async_trait]
impl MonitorSink for LocalMonitorSink {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            fields: crate::support::field_rules(),
            ..Capabilities::default()
        }
    }

    async fn configure(&self, _ctx: &OpContext, req: &MonitorRequest) -> Result<MonitorStatus> {
        let stored = StoredMonitor {
            format_version: Default::default(),
            name: req.name.clone(),
            endpoint: req.endpoint.name.clone(),
            spec: req.spec.clone(),
            baseline: req.baseline.clone(),
            fingerprint: req.fingerprint.clone(),
            tags: req.tags.clone(),
            capture_dir: crate::deployer::capture_dir(&self.state_dir, &req.endpoint.name),
        };
        let path = self.path(&req.name);
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
            let tmp = path.with_extension("json.tmp");
            std::fs::write(&tmp, serde_json::to_vec_pretty(&stored)?)?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| ProviderError::io("local", "configure monitor", e))?;
        Ok(MonitorStatus {
            name: req.name.clone(),
            endpoint: req.endpoint.name.clone(),
            schedule: schedule_of(&req.spec),
            health: Health::Healthy,
        })
    }

    async fn captured(
        &self,
        _ctx: &OpContext,
        endpoint: &str,
        limit: usize,
    ) -> Result<Vec<serde_json::Value>> {
        let dir = crate::deployer::capture_dir(&self.state_dir, endpoint);
        tokio::task::spawn_blocking(move || read_captured(&dir, limit))
            .await
            .map_err(|e| {
                ProviderError::new(ErrorKind::Other, "local", "read capture", e.to_string())
            })?
            .map_err(|e| ProviderError::io("local", "read capture", e))
    }

    async fn remove(&self, _ctx: &OpContext, name: &str) -> Result<()> {
        match std::fs::remove_file(self.path(name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ProviderError::io("local", "remove monitor", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::read_captured;

    #[test]
    fn reads_the_newest_records_across_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("capture-000000000000001.jsonl"),
            "{\"n\":1}\n{\"n\":2}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("capture-000000000000002.jsonl"),
            "{\"n\":3}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("capture.jsonl"),
            "{\"n\":4}\n{\"n\":5}\n{\"n\":6, \"torn",
        )
        .unwrap();
        let n = |v: Vec<serde_json::Value>| {
            v.iter()
                .map(|x| x["n"].as_u64().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(n(read_captured(dir.path(), 3).unwrap()), vec![3, 4, 5]);
        assert_eq!(
            n(read_captured(dir.path(), 100).unwrap()),
            vec![1, 2, 3, 4, 5]
        );
        assert_eq!(n(read_captured(dir.path(), 0).unwrap()), Vec::<u64>::new());
        assert!(
            read_captured(&dir.path().join("none"), 5)
                .unwrap()
                .is_empty()
        );
    }
}
