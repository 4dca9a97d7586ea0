//! Observed state, history and the apply lock, in `state.db`.

use crate::PROVIDER;
use crate::db::{Db, DbError, json};
use async_trait::async_trait;
use mlctl_core::error::{ErrorKind, ProviderError, Result};
use mlctl_core::secrets::{DigestKey, StoredDigestKey};
use mlctl_core::state::{HistoryEntry, LockError, LockInfo, ObservedResource, StateStore};
use mlctl_spec::ResourceId;
use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};

/// The local [`StateStore`].
#[derive(Debug, Clone)]
pub struct LocalState {
    db: Db,
}

impl LocalState {
    pub(crate) fn new(db: Db) -> Self {
        LocalState { db }
    }
}

fn insert_history(tx: &Transaction<'_>, project: &str, e: &HistoryEntry) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO history (project, resource, action, fingerprint, commit_sha, at, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![project, e.id.to_string(), e.action, e.fingerprint, e.commit, e.at, e.detail],
    )?;
    Ok(())
}

fn read_lock(conn: &rusqlite::Connection, project: &str) -> rusqlite::Result<Option<LockInfo>> {
    conn.query_row(
        "SELECT id, holder, host, pid, since, command, boot_id, process_start, heartbeat, lease_seconds FROM apply_lock WHERE project = ?1",
        [project],
        |r| {
            Ok(LockInfo {
                format_version: mlctl_core::state::FORMAT_VERSION,
                id: r.get(0)?,
                holder: r.get(1)?,
                host: r.get(2)?,
                pid: r.get::<_, i64>(3)? as u32,
                since: r.get(4)?,
                command: r.get(5)?,
                boot_id: r.get(6)?,
                process_start: r.get::<_, Option<i64>>(7)?.map(|t| t as u64),
                heartbeat: r.get(8)?,
                lease_seconds: r.get::<_, Option<i64>>(9)?.map(|t| t as u64),
            })
        },
    )
    .optional()
}

#[async_trait]
impl StateStore for LocalState {
    async fn keep_error_log(
        &self,
        _project: &str,
        id: &ResourceId,
        text: &str,
    ) -> Result<Option<String>> {
        crate::logs::keep_error(self.db.dir(), id, text).map(Some)
    }

    async fn observe(&self, project: &str) -> Result<Vec<ObservedResource>> {
        let project = project.to_string();
        let mut out = self
            .db
            .call("observe", move |c| {
                let mut st = c.prepare("SELECT record FROM resources WHERE project = ?1")?;
                let rows = st.query_map([&project], |r| r.get::<_, String>(0))?;
                let mut out = Vec::new();
                for row in rows {
                    out.push(serde_json::from_str::<ObservedResource>(&row?)?);
                }
                Ok(out)
            })
            .await?;
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn record(
        &self,
        project: &str,
        rec: &ObservedResource,
        entry: &HistoryEntry,
    ) -> Result<()> {
        let (project, mut rec, entry) = (project.to_string(), rec.clone(), entry.clone());
        // Drift is live state, found by observe; a stored copy would be stale.
        rec.drift.clear();
        self.db
            .call("record", move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.execute(
                    "INSERT INTO resources (project, resource, record, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (project, resource) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at",
                    params![project, rec.id.to_string(), json(&rec), rec.updated_at],
                )?;
                insert_history(&tx, &project, &entry)?;
                tx.commit()?;
                Ok(())
            })
            .await
    }

    async fn forget(&self, project: &str, id: &ResourceId, entry: &HistoryEntry) -> Result<()> {
        let (project, id, entry) = (project.to_string(), id.to_string(), entry.clone());
        self.db
            .call("forget", move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.execute(
                    "DELETE FROM resources WHERE project = ?1 AND resource = ?2",
                    params![project, id],
                )?;
                insert_history(&tx, &project, &entry)?;
                tx.commit()?;
                Ok(())
            })
            .await
    }

    async fn history(&self, project: &str, id: &ResourceId) -> Result<Vec<HistoryEntry>> {
        let (project, rid) = (project.to_string(), id.clone());
        self.db
            .call("history", move |c| {
                let mut st = c.prepare(
                    "SELECT action, fingerprint, commit_sha, at, detail FROM history WHERE project = ?1 AND resource = ?2 ORDER BY seq",
                )?;
                let rows = st.query_map(params![project, rid.to_string()], |r| {
                    // History rows are columns: their format is the database's (`user_version`).
                    Ok(HistoryEntry { format_version: mlctl_core::state::FORMAT_VERSION, id: rid.clone(), action: r.get(0)?, fingerprint: r.get(1)?, commit: r.get(2)?, at: r.get(3)?, detail: r.get(4)? })
                })?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await
    }

    async fn lock(&self, project: &str, info: &LockInfo) -> std::result::Result<(), LockError> {
        let (project, info) = (project.to_string(), info.clone());
        let held = self
            .db
            .call("lock", move |c| {
                // An immediate transaction takes SQLite's write lock first, so the check and the
                // INSERT are one atomic step across processes.
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                if let Some(holder) = read_lock(&tx, &project)? {
                    return Ok(Some(holder));
                }
                tx.execute(
                    "INSERT INTO apply_lock (project, id, holder, host, pid, since, command, boot_id, process_start, heartbeat, lease_seconds) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    params![project, info.id, info.holder, info.host, info.pid as i64, info.since, info.command, info.boot_id, info.process_start.map(|t| t as i64), info.heartbeat, info.lease_seconds.map(|t| t as i64)],
                )?;
                tx.commit()?;
                Ok(None)
            })
            .await
            .map_err(LockError::Store)?;
        match held {
            Some(h) => Err(LockError::Held(h)),
            None => Ok(()),
        }
    }

    async fn unlock(&self, project: &str, id: &str, force: bool) -> Result<()> {
        let (project, id) = (project.to_string(), id.to_string());
        self.db
            .call("unlock", move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                match read_lock(&tx, &project)? {
                    None => Ok(()),
                    Some(h) if h.id == id || force => {
                        tx.execute("DELETE FROM apply_lock WHERE project = ?1", [&project])?;
                        tx.commit()?;
                        Ok(())
                    }
                    Some(h) => Err(DbError::Provider(ProviderError::new(
                        ErrorKind::Precondition,
                        PROVIDER,
                        "unlock",
                        format!("the lock is held by {h}, not by lock id {id}; use force-unlock {} if that apply is dead", h.id),
                    ))),
                }
            })
            .await
    }

    async fn lock_holder(&self, project: &str) -> Result<Option<LockInfo>> {
        let project = project.to_string();
        self.db
            .call("lock holder", move |c| Ok(read_lock(c, &project)?))
            .await
    }

    async fn swap_lock(&self, project: &str, expected: &LockInfo, new: &LockInfo) -> Result<bool> {
        let (project, expected, new) = (project.to_string(), expected.clone(), new.clone());
        self.db
            .call("swap lock", move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                match read_lock(&tx, &project)? {
                    Some(now) if now.same_lease(&expected) => {
                        tx.execute(
                            "UPDATE apply_lock SET id = ?2, holder = ?3, host = ?4, pid = ?5, since = ?6, command = ?7, boot_id = ?8, process_start = ?9, heartbeat = ?10, lease_seconds = ?11 WHERE project = ?1",
                            params![project, new.id, new.holder, new.host, new.pid as i64, new.since, new.command, new.boot_id, new.process_start.map(|t| t as i64), new.heartbeat, new.lease_seconds.map(|t| t as i64)],
                        )?;
                        tx.commit()?;
                        Ok(true)
                    }
                    _ => Ok(false),
                }
            })
            .await
    }

    async fn record_monitor_result(
        &self,
        project: &str,
        result: &mlctl_core::monitoring::MonitorResult,
    ) -> Result<()> {
        let (project, result) = (project.to_string(), result.clone());
        self.db
            .call("record monitor result", move |c| {
                c.execute(
                    "INSERT INTO monitor_results (project, monitor, at, result) VALUES (?1, ?2, ?3, ?4)",
                    params![project, result.monitor, result.at, json(&result)],
                )?;
                Ok(())
            })
            .await
    }

    async fn monitor_results(
        &self,
        project: &str,
        monitor: &str,
    ) -> Result<Vec<mlctl_core::monitoring::MonitorResult>> {
        let (project, monitor) = (project.to_string(), monitor.to_string());
        self.db
            .call("monitor results", move |c| {
                let mut st = c.prepare(
                    "SELECT result FROM monitor_results WHERE project = ?1 AND monitor = ?2 ORDER BY seq",
                )?;
                let rows = st.query_map(params![project, monitor], |r| r.get::<_, String>(0))?;
                let mut out = Vec::new();
                for text in rows {
                    out.push(serde_json::from_str(&text?)?);
                }
                Ok(out)
            })
            .await
    }

    async fn digest_key(&self) -> Result<DigestKey> {
        let fresh = StoredDigestKey::generate()?;
        let where_ = format!(
            "{} (table target_keys)",
            self.db.dir().join("state.db").display()
        );
        let stored: String = self
            .db
            .call("digest key", move |c| {
                let read = |c: &rusqlite::Connection| {
                    c.query_row(
                        "SELECT key FROM target_keys WHERE name = 'secret-digest'",
                        [],
                        |r| r.get::<_, String>(0),
                    )
                    .optional()
                };
                // Read first: once the key exists, nothing is written (a read-only state dir).
                if let Some(key) = read(c)? {
                    return Ok(key);
                }
                // Insert-if-absent and read back in one write transaction: of two processes
                // making the key at once, both read the one that was inserted first.
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.execute(
                    "INSERT OR IGNORE INTO target_keys (name, key, created_at) VALUES ('secret-digest', ?1, ?2)",
                    params![fresh.key, fresh.created_at],
                )?;
                let key = read(&tx)?.unwrap_or_default();
                tx.commit()?;
                Ok(key)
            })
            .await?;
        DigestKey::read_stored(&stored, &where_)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Separate connections, as separate processes have: of many first users, all read the
    /// key the first one inserted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_first_users_of_a_fresh_target_get_one_digest_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut handles = Vec::new();
        for _ in 0..8 {
            let state = LocalState::new(Db::open(dir.path()).unwrap());
            handles.push(tokio::spawn(async move { state.digest_key().await }));
        }
        let mut keys = Vec::new();
        for h in handles {
            keys.push(h.await.unwrap().unwrap());
        }
        assert!(keys.windows(2).all(|w| w[0] == w[1]));
        let later = LocalState::new(Db::open(dir.path()).unwrap());
        assert_eq!(later.digest_key().await.unwrap(), keys[0]);
    }
}
