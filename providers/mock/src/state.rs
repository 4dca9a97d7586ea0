//! Observed state, history and the apply lock, per project.

use crate::store::{io_err, key};
use crate::{Mock, Result, err};
use async_trait::async_trait;
use mlctl_core::secrets::{DigestKey, StoredDigestKey};
use mlctl_core::{ErrorKind, HistoryEntry, LockError, LockInfo, ObservedResource, StateStore};
use mlctl_spec::ResourceId;
use std::fs;
use std::io;

fn project_dir(project: &str) -> String {
    format!("projects/{}", key(project))
}

fn resource_file(id: &ResourceId) -> String {
    // `key` never produces `.`, so `<Kind>.<name>` cannot collide.
    format!("{}.{}", id.kind.as_str(), key(&id.name))
}

fn record_path(project: &str, id: &ResourceId) -> String {
    format!(
        "{}/resources/{}.json",
        project_dir(project),
        resource_file(id)
    )
}

fn monitor_results_path(project: &str, monitor: &str) -> String {
    format!(
        "{}/monitor-results/{}.jsonl",
        project_dir(project),
        key(monitor)
    )
}

fn history_path(project: &str, id: &ResourceId) -> String {
    format!(
        "{}/history/{}.jsonl",
        project_dir(project),
        resource_file(id)
    )
}

/// The target's key for secret digests (one for every project on the target).
const DIGEST_KEY: &str = "digest-key.json";

fn lock_path(project: &str) -> String {
    format!("{}/lock.json", project_dir(project))
}

#[async_trait]
impl StateStore for Mock {
    async fn observe(&self, project: &str) -> Result<Vec<ObservedResource>> {
        self.pause().await;
        let store = self.store();
        let mut out = Vec::new();
        for rel in store.list("observe", &format!("{}/resources", project_dir(project)))? {
            if let Some(rec) = store.read::<ObservedResource>("observe", &rel)? {
                out.push(rec);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn record(
        &self,
        project: &str,
        rec: &ObservedResource,
        entry: &HistoryEntry,
    ) -> Result<()> {
        self.pause().await;
        let store = self.store();
        let mut rec = rec.clone();
        rec.drift.clear(); // live drift is computed by observe, never stored
        // One lock per resource keeps the record and its history in the same order.
        store.locked("record", &history_path(project, &rec.id), || {
            store.write("record", &record_path(project, &rec.id), &rec)?;
            store.append("record", &history_path(project, &rec.id), entry)
        })
    }

    async fn forget(&self, project: &str, id: &ResourceId, entry: &HistoryEntry) -> Result<()> {
        self.pause().await;
        let store = self.store();
        store.locked("forget", &history_path(project, id), || {
            store.remove("forget", &record_path(project, id))?;
            store.append("forget", &history_path(project, id), entry)
        })
    }

    async fn history(&self, project: &str, id: &ResourceId) -> Result<Vec<HistoryEntry>> {
        self.pause().await;
        self.store().read_log("history", &history_path(project, id))
    }

    async fn lock(&self, project: &str, info: &LockInfo) -> std::result::Result<(), LockError> {
        self.pause().await;
        let store = self.store();
        let rel = lock_path(project);
        let path = store.path(&rel);
        let op = "lock";
        let bytes = serde_json::to_vec_pretty(info)
            .map_err(|e| LockError::Store(err(ErrorKind::Other, op, e.to_string())))?;
        // Write the whole lock file under a private name, then link it into place: the link
        // fails when the lock exists (like O_EXCL) and nobody ever sees a half-written lock.
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp_rel = format!(
            "{}/.lock.{}.{seq}.tmp",
            project_dir(project),
            std::process::id()
        );
        store
            .write_bytes(op, &tmp_rel, &bytes)
            .map_err(LockError::Store)?;
        let tmp = store.path(&tmp_rel);
        for _ in 0..5 {
            let linked = match fs::hard_link(&tmp, &path) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                    // File systems without hard links: O_EXCL create, then write.
                    fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&path)
                        .and_then(|mut f| io::Write::write_all(&mut f, &bytes))
                }
                other => other,
            };
            match linked {
                Ok(()) => {
                    let _ = fs::remove_file(&tmp);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    match store.read::<LockInfo>(op, &rel) {
                        Ok(Some(holder)) => {
                            let _ = fs::remove_file(&tmp);
                            return Err(LockError::Held(holder));
                        }
                        // Released between our attempt and our read: try again.
                        Ok(None) => continue,
                        Err(e) => {
                            let _ = fs::remove_file(&tmp);
                            return Err(LockError::Store(e));
                        }
                    }
                }
                Err(e) => {
                    let _ = fs::remove_file(&tmp);
                    return Err(LockError::Store(io_err(op, &path, e)));
                }
            }
        }
        let _ = fs::remove_file(&tmp);
        Err(LockError::Store(err(
            ErrorKind::Transient,
            op,
            format!("the apply lock of project `{project}` kept changing hands; try again"),
        )))
    }

    async fn unlock(&self, project: &str, id: &str, force: bool) -> Result<()> {
        self.pause().await;
        let store = self.store();
        let rel = lock_path(project);
        // The file lock makes read-then-remove atomic against another unlock.
        store.locked("unlock", &rel, || match store.read::<LockInfo>("unlock", &rel)? {
            None => Ok(()),
            Some(holder) if force || holder.id == id => store.remove("unlock", &rel).map(|_| ()),
            Some(holder) => Err(err(
                ErrorKind::Precondition,
                "unlock",
                format!("the apply lock of project `{project}` is held by {holder}, not by lock id {id}; release it with `mlctl force-unlock {}`", holder.id),
            )),
        })
    }

    async fn lock_holder(&self, project: &str) -> Result<Option<LockInfo>> {
        self.pause().await;
        self.store().read("lock holder", &lock_path(project))
    }

    async fn swap_lock(&self, project: &str, expected: &LockInfo, new: &LockInfo) -> Result<bool> {
        self.pause().await;
        let store = self.store();
        let rel = lock_path(project);
        // Under the same file lock as `unlock`; the write replaces the file in one rename.
        store.locked("swap lock", &rel, || {
            match store.read::<LockInfo>("swap lock", &rel)? {
                Some(now) if now.same_lease(expected) => {
                    store.write("swap lock", &rel, new)?;
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
    }

    async fn record_monitor_result(
        &self,
        project: &str,
        result: &mlctl_core::monitoring::MonitorResult,
    ) -> Result<()> {
        self.pause().await;
        self.store().append(
            "record monitor result",
            &monitor_results_path(project, &result.monitor),
            result,
        )
    }

    async fn monitor_results(
        &self,
        project: &str,
        monitor: &str,
    ) -> Result<Vec<mlctl_core::monitoring::MonitorResult>> {
        self.pause().await;
        self.store()
            .read_log("monitor results", &monitor_results_path(project, monitor))
    }

    async fn digest_key(&self) -> Result<DigestKey> {
        self.pause().await;
        let store = self.store();
        let where_ = store.path(DIGEST_KEY).display().to_string();
        if let Some(k) = store.read::<StoredDigestKey>("digest key", DIGEST_KEY)? {
            return k.key(&where_);
        }
        // Made and read under the document's lock: racing first users read the same key.
        let stored = store.update(
            "digest key",
            DIGEST_KEY,
            |k: &mut Option<StoredDigestKey>| {
                if k.is_none() {
                    *k = Some(StoredDigestKey::generate()?);
                }
                Ok(k.clone())
            },
        )?;
        match stored {
            Some(k) => k.key(&where_),
            None => Err(err(
                ErrorKind::Other,
                "digest key",
                format!("{where_} was not written; check that the directory is writable"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlctl_spec::Faults;
    use std::time::Duration;

    fn info(id: &str) -> LockInfo {
        LockInfo {
            format_version: mlctl_core::state::FORMAT_VERSION,
            id: id.into(),
            holder: "ci".into(),
            host: "h".into(),
            pid: 1,
            since: "t".into(),
            command: "mlctl apply".into(),
            boot_id: None,
            process_start: None,
            heartbeat: None,
            lease_seconds: None,
        }
    }

    #[tokio::test]
    async fn only_one_of_many_racing_targets_gets_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let mut handles = Vec::new();
        for i in 0..8 {
            // A separate Mock per contender: nothing shared in memory, like separate processes.
            let m = Mock::new(dir.path().into(), Faults::default(), Duration::ZERO);
            handles.push(std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(m.lock("p", &info(&format!("id{i}")))).is_ok()
            }));
        }
        let winners = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|w| *w)
            .count();
        assert_eq!(winners, 1);
        let m = Mock::new(dir.path().into(), Faults::default(), Duration::ZERO);
        assert!(m.lock_holder("p").await.unwrap().is_some());
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("projects/p"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            leftovers,
            vec![std::ffi::OsString::from("lock.json")],
            "temp files are cleaned up"
        );
    }

    #[tokio::test]
    async fn unlock_by_someone_else_says_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mock::new(dir.path().into(), Faults::default(), Duration::ZERO);
        m.lock("p", &info("a")).await.unwrap();
        let e = m.unlock("p", "b", false).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Precondition);
        assert!(
            e.message.contains("ci@h") && e.message.contains("mlctl force-unlock a"),
            "{e}"
        );
        m.unlock("p", "b", true).await.unwrap();
        assert_eq!(m.lock_holder("p").await.unwrap(), None);
    }
}
