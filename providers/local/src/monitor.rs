//! Local monitoring: monitor configs under `<state_dir>/monitors/`, and the endpoints' captured
//! requests (mlcap or JSON-lines files written by each of the endpoint's server processes under
//! `<state_dir>/endpoints/<name>/capture/<pid>/`, or the spec's `capture.destination`; see
//! `mlctl_serve::capture` and [`crate::deployer::capture_dir`]).

use async_trait::async_trait;
use mlctl_core::error::{ErrorKind, ProviderError, Result};
use mlctl_core::*;
use serde::{Deserialize, Serialize};
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

/// The last `limit` records of the capture files in `dir`, oldest first. Each server process
/// writes its own files (`mlctl_serve::capture::capture_streams`); their records are merged by
/// time, newest last. Either capture format is read; a torn last line or block while a server
/// writes is skipped. [`stream_captured`] gives the same records without holding them.
pub fn read_captured(dir: &Path, limit: usize) -> std::io::Result<Vec<serde_json::Value>> {
    let mut out: Vec<serde_json::Value> = Vec::new();
    mlctl_serve::capture::for_each_newest(dir, limit, |v| out.push(v))?;
    // RFC 3339 times in one format (UTC, microseconds) order as text; the sort is stable, so
    // one writer's records keep their order.
    out.sort_by(|a, b| a["time"].as_str().cmp(&b["time"].as_str()));
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

    async fn update_in_place(&self, _ctx: &OpContext, req: &InPlaceRequest) -> Result<()> {
        let op = "update monitor tags";
        let path = self.path(&req.name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(crate::gone(op, format!("monitor `{}`", req.name)));
            }
            Err(e) => return Err(ProviderError::io("local", op, e)),
        };
        mlctl_core::state::check_format_json(&path.display().to_string(), &bytes)?;
        let mut stored: StoredMonitor = serde_json::from_slice(&bytes).map_err(|e| {
            ProviderError::new(
                ErrorKind::Other,
                "local",
                op,
                format!("{}: {e}", path.display()),
            )
        })?;
        stored.tags = req.tags.clone();
        let write = || -> std::io::Result<()> {
            let tmp = path.with_extension("json.tmp");
            std::fs::write(&tmp, serde_json::to_vec_pretty(&stored)?)?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| ProviderError::io("local", op, e))
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

    async fn for_each_captured(
        &self,
        _ctx: &OpContext,
        endpoint: &str,
        limit: usize,
        each: &mut (dyn FnMut(serde_json::Value) + Send),
    ) -> Result<u64> {
        let dir = crate::deployer::capture_dir(&self.state_dir, endpoint);
        // Read and handed over on this thread: each record is freed by the thread that
        // allocated it (across threads, glibc's allocator spent more than the reading).
        let read = || mlctl_serve::capture::for_each_newest(&dir, limit, each);
        let flavor = tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor());
        let read = if flavor.is_ok_and(|f| f == tokio::runtime::RuntimeFlavor::MultiThread) {
            tokio::task::block_in_place(read)
        } else {
            read()
        };
        read.map_err(|e| ProviderError::io("local", "read capture", e))
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
    use mlctl_core::{MonitorSink, OpContext};

    #[test]
    fn merges_the_files_of_every_server_process_by_time() {
        let dir = tempfile::tempdir().unwrap();
        let line = |n: u32, t: &str| format!("{{\"n\":{n},\"time\":\"2025-06-01T12:00:{t}Z\"}}\n");
        // Before per-process files: the directory itself.
        std::fs::write(dir.path().join("capture.jsonl"), line(1, "00.000001")).unwrap();
        std::fs::create_dir_all(dir.path().join("100")).unwrap();
        std::fs::create_dir_all(dir.path().join("200")).unwrap();
        std::fs::write(
            dir.path().join("100/capture-000000000000001.jsonl"),
            line(2, "01.000000"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("100/capture.jsonl"),
            line(4, "03.000000") + &line(6, "05.000000"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("200/capture.jsonl"),
            line(3, "02.000000") + &line(5, "04.000000") + "{\"torn",
        )
        .unwrap();
        let n = |v: Vec<serde_json::Value>| {
            v.iter()
                .map(|x| x["n"].as_u64().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            n(read_captured(dir.path(), 100).unwrap()),
            vec![1, 2, 3, 4, 5, 6]
        );
        assert_eq!(n(read_captured(dir.path(), 3).unwrap()), vec![4, 5, 6]);
    }

    #[test]
    fn records_tied_at_the_oldest_kept_time_are_the_last_written() {
        let dir = tempfile::tempdir().unwrap();
        let line = |n: u32, t: &str| format!("{{\"n\":{n},\"time\":\"2025-06-01T12:00:{t}Z\"}}\n");
        std::fs::write(
            dir.path().join("capture.jsonl"),
            line(1, "00.000000")
                + &line(2, "01.000000")
                + &line(3, "01.000000")
                + &line(4, "01.000000"),
        )
        .unwrap();
        let n = |v: Vec<serde_json::Value>| {
            v.iter()
                .map(|x| x["n"].as_u64().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(n(read_captured(dir.path(), 2).unwrap()), vec![3, 4]);
        assert_eq!(n(read_captured(dir.path(), 3).unwrap()), vec![2, 3, 4]);
        // Streamed by the sink, the same records.
        let sink = super::LocalMonitorSink {
            state_dir: dir.path().to_path_buf(),
        };
        let capture = crate::deployer::capture_dir(dir.path(), "e");
        std::fs::create_dir_all(&capture).unwrap();
        std::fs::rename(
            dir.path().join("capture.jsonl"),
            capture.join("capture.jsonl"),
        )
        .unwrap();
        let ctx = OpContext {
            project: "p".into(),
            project_dir: dir.path().to_path_buf(),
            target: "local".into(),
            commit: String::new(),
        };
        let mut got = Vec::new();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let given = rt
            .block_on(sink.for_each_captured(&ctx, "e", 3, &mut |v| got.push(v)))
            .unwrap();
        assert_eq!((given, n(got)), (3, vec![2, 3, 4]));
    }

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
