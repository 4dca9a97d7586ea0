//! Observed state, history and the apply lock, all kept in the target itself.
//!
//! A fresh CI runner with no local files can plan against a cloud target because everything
//! the plan needs is read back from the target through a [`StateStore`].

use crate::error::Result;
use async_trait::async_trait;
use mlctl_spec::ResourceId;
use serde::{Deserialize, Serialize};

/// The format version of a record persisted in a target: the core's records
/// ([`ObservedResource`], [`HistoryEntry`], [`LockInfo`]) and each provider's own. A record
/// written before versions existed reads as 1; a new record gets [`FORMAT_VERSION`]. Readers
/// refuse records newer than they know ([`check_format`]) rather than misread them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FormatVersion(pub u32);

impl FormatVersion {
    /// What a record without a version is.
    pub fn legacy() -> FormatVersion {
        FormatVersion(1)
    }
}

impl Default for FormatVersion {
    fn default() -> FormatVersion {
        FORMAT_VERSION
    }
}

/// The format this mlctl writes, and the newest it reads.
pub const FORMAT_VERSION: FormatVersion = FormatVersion(1);

/// Refuses a record written in a newer format than this mlctl reads.
///
/// # Errors
/// `NotSupported`, naming the record and both versions.
pub fn check_format(what: &str, version: FormatVersion) -> Result<()> {
    let FormatVersion(version) = version;
    let FormatVersion(newest) = FORMAT_VERSION;
    if version > newest {
        return Err(crate::error::ProviderError::new(
            crate::error::ErrorKind::NotSupported,
            "mlctl",
            "read state",
            format!(
                "{what} was written by a newer mlctl (state format {version}; this one reads up to {newest}); upgrade mlctl"
            ),
        ));
    }
    Ok(())
}

/// [`check_format`] on a JSON record, before it is read as its type (whose fields a newer
/// format may have changed): its `formatVersion`, or 1 when it has none.
///
/// # Errors
/// See [`check_format`].
pub fn check_format_json(what: &str, json: &[u8]) -> Result<()> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Peek {
        #[serde(default = "FormatVersion::legacy")]
        format_version: FormatVersion,
    }
    match serde_json::from_slice::<Peek>(json) {
        Ok(p) => check_format(what, p.format_version),
        // Not an object: the caller's own parse reports it.
        Err(_) => Ok(()),
    }
}

/// How a resource is doing (Argo CD's health).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Working as applied.
    Healthy,
    /// Still converging (training, rolling out).
    Progressing,
    /// Exists but not working as applied (crashed endpoint, breached monitor).
    Degraded,
    /// The last apply failed.
    Failed,
    /// Not known.
    #[default]
    Unknown,
}

impl Health {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Progressing => "progressing",
            Health::Degraded => "degraded",
            Health::Failed => "failed",
            Health::Unknown => "unknown",
        }
    }
}

/// What the target holds for one resource: the last successful apply, and the last failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservedResource {
    /// [`FORMAT_VERSION`] when written.
    #[serde(default = "FormatVersion::legacy")]
    pub format_version: FormatVersion,
    /// Address.
    pub id: ResourceId,
    /// Fingerprint of the last successful apply (empty when it never succeeded).
    pub fingerprint: String,
    /// The canonical spec that was applied (for field diffs).
    pub spec: serde_json::Value,
    /// Commit of the last successful apply.
    pub commit: String,
    /// RFC 3339 time of the last change.
    pub updated_at: String,
    /// Health as recorded (the engine refreshes endpoints' from the deployer).
    pub health: Health,
    /// Kind-specific results: DatasetVersion, TrainingResult, ModelVersion, EndpointStatus, MonitorStatus.
    pub outputs: serde_json::Value,
    /// What the fingerprint was made of: content digests by path, input fingerprints by
    /// address. Lets a plan say *why* a fingerprint changed.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub inputs: std::collections::BTreeMap<String, String>,
    /// The last failed attempt, when it is newer than the last success and the resource was
    /// not found up to date since (an apply that finds it so drops the error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<FailedAttempt>,
    /// Differences between what was applied and what is live (filled by observe; a state store
    /// never stores it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<String>,
}

/// A failed apply of a resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedAttempt {
    /// The fingerprint that was being applied.
    pub fingerprint: String,
    /// Commit.
    pub commit: String,
    /// What went wrong.
    pub message: String,
    /// RFC 3339.
    pub at: String,
}

/// One entry of a resource's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// [`FORMAT_VERSION`] when written.
    #[serde(default = "FormatVersion::legacy")]
    pub format_version: FormatVersion,
    /// Address.
    pub id: ResourceId,
    /// `create`, `update`, `replace`, `delete`, `rollback`, `failed`, `resolved` (a last
    /// error dropped because a later plan found the resource up to date).
    pub action: String,
    /// Fingerprint applied.
    pub fingerprint: String,
    /// Commit.
    pub commit: String,
    /// RFC 3339.
    pub at: String,
    /// Outcome detail (model version, error message, ...).
    pub detail: String,
}

/// Who holds the apply lock of a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockInfo {
    /// [`FORMAT_VERSION`] when written.
    #[serde(default = "FormatVersion::legacy")]
    pub format_version: FormatVersion,
    /// Random id, for `mlctl force-unlock ID`.
    pub id: String,
    /// User name.
    pub holder: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// RFC 3339 time it was taken.
    pub since: String,
    /// The command line.
    pub command: String,
    /// The holder's machine boot (`host::boot_id`), so a lock from before a reboot, or a pid
    /// reused since, is never taken for the holder's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// The holder process's start time (`host::process_start`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_start: Option<u64>,
}

impl LockInfo {
    /// A lock for this process: `id` and the command line; who, where and since when filled in.
    pub fn for_this_process(id: String, command: String) -> LockInfo {
        let pid = std::process::id();
        LockInfo {
            format_version: FORMAT_VERSION,
            id,
            holder: std::env::var("USER")
                .or_else(|_| std::env::var("USERNAME"))
                .unwrap_or_else(|_| "unknown".into()),
            host: crate::host::host_name(),
            pid,
            since: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            command,
            boot_id: crate::host::boot_id(),
            process_start: crate::host::process_start(pid),
        }
    }

    /// Why the holder is provably gone (same host and boot, its process ended), if it is.
    pub fn holder_gone(&self) -> Option<String> {
        crate::host::provably_gone(
            &self.host,
            self.boot_id.as_deref(),
            self.pid,
            self.process_start,
        )
    }
}

impl std::fmt::Display for LockInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}@{} (pid {}) since {} running `{}` [lock id {}]",
            self.holder, self.host, self.pid, self.since, self.command, self.id
        )
    }
}

/// Lock failures.
#[derive(Debug, Clone, PartialEq)]
pub enum LockError {
    /// Someone else holds it.
    Held(LockInfo),
    /// The store failed.
    Store(crate::error::ProviderError),
}

/// Observed state, history and the lock, stored in the target.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Keeps the full text of an error too long for state and history (which keep a summary
    /// of at most [`crate::apply::MAX_RECORDED_ERROR`] bytes) in the target's log store,
    /// replacing the resource's previous one, and says where it is, for the summary to name.
    ///
    /// # Contract
    /// What is kept is bounded (cut at a size cap, saying so); `None` (the default) when the
    /// target keeps no such log, and the summary then says the full text was not kept.
    async fn keep_error_log(
        &self,
        _project: &str,
        _id: &ResourceId,
        _text: &str,
    ) -> Result<Option<String>> {
        Ok(None)
    }
    /// Every resource the target holds for `project`.
    ///
    /// # Contract
    /// Records come back as stored, `drift` empty (live drift is found by
    /// [`crate::observe()`], never stored); another project's records never appear. Checked
    /// by `state_roundtrip`.
    async fn observe(&self, project: &str) -> Result<Vec<ObservedResource>>;
    /// Stores the record of a resource and appends a history entry.
    ///
    /// # Contract
    /// Replaces the resource's record; both writes happen or neither. Checked by
    /// `state_roundtrip`.
    async fn record(
        &self,
        project: &str,
        rec: &ObservedResource,
        entry: &HistoryEntry,
    ) -> Result<()>;
    /// Removes a resource's record and appends a history entry.
    ///
    /// # Contract
    /// The history stays; forgetting an unknown resource succeeds. Checked by
    /// `state_roundtrip`.
    async fn forget(&self, project: &str, id: &ResourceId, entry: &HistoryEntry) -> Result<()>;
    /// A resource's history, oldest first.
    ///
    /// # Contract
    /// Entries in the order they were appended; empty for an unknown resource. Checked by
    /// `state_roundtrip`.
    async fn history(&self, project: &str, id: &ResourceId) -> Result<Vec<HistoryEntry>>;
    /// Takes the apply lock, or says who holds it.
    ///
    /// # Contract
    /// Atomic across processes and machines that share the target (a conditional write, an
    /// SQLite transaction): of racing callers exactly one wins; it never waits. Checked by
    /// `lock_contention`.
    async fn lock(&self, project: &str, info: &LockInfo) -> std::result::Result<(), LockError>;
    /// Releases the lock if `id` holds it (or unconditionally with `force`).
    ///
    /// # Contract
    /// Another holder's lock is not released without `force`; unlocking a free lock
    /// succeeds. Checked by `lock_contention`.
    async fn unlock(&self, project: &str, id: &str, force: bool) -> Result<()>;
    /// The current lock holder, if any. Checked by `lock_contention`.
    async fn lock_holder(&self, project: &str) -> Result<Option<LockInfo>>;
    /// The target's key for secret digests ([`crate::secrets`]): 32 random bytes, made on
    /// first use and kept in the target, for every project on it.
    ///
    /// # Contract
    /// Made once: every later call, from this process or any other sharing the target,
    /// returns the same key, also when the first callers race (a conditional write, an
    /// SQLite transaction: the loser reads the winner's key). Checked by
    /// `digest_key_is_made_once`.
    async fn digest_key(&self) -> Result<crate::secrets::DigestKey>;
}

/// The apply lock of a target, held for the duration of an apply.
pub struct Lock {
    stack: crate::components::Stack,
    project: String,
    info: LockInfo,
    taken_over: Option<(LockInfo, String)>,
}

impl Lock {
    /// Takes the lock or says who holds it.
    ///
    /// A lock whose holder is provably gone (it ran on this host in this boot and its process
    /// has ended: an apply killed with SIGKILL) is taken over, and [`Lock::taken_over`] says
    /// whose and why. A live holder's lock, or one this machine cannot judge (another host,
    /// another boot, no `/proc`), is never taken: that is what `force-unlock` is for.
    ///
    /// The takeover releases the dead holder's lock by its id, which every store does only
    /// while that id holds it, then takes the lock as usual: of two processes recovering at
    /// once, exactly one wins and the other sees the winner as the (live) holder.
    pub async fn acquire(
        stack: &crate::components::Stack,
        project: &str,
        info: LockInfo,
    ) -> std::result::Result<Lock, LockError> {
        let taken_over = match stack.state.lock(project, &info).await {
            Ok(()) => None,
            Err(LockError::Held(holder)) => {
                let Some(why) = holder.holder_gone() else {
                    return Err(LockError::Held(holder));
                };
                // Another recoverer may have released it first and taken it: then it is
                // theirs, and `lock` below says so.
                let _ = stack.state.unlock(project, &holder.id, false).await;
                stack.state.lock(project, &info).await?;
                Some((holder, why))
            }
            Err(e) => return Err(e),
        };
        Ok(Lock {
            stack: stack.clone(),
            project: project.to_string(),
            info,
            taken_over,
        })
    }

    /// The lock this one replaced, and why its holder was known to be gone.
    pub fn taken_over(&self) -> Option<&(LockInfo, String)> {
        self.taken_over.as_ref()
    }

    /// The lock's id.
    pub fn id(&self) -> &str {
        &self.info.id
    }

    /// Releases the lock.
    pub async fn release(self) -> Result<()> {
        self.stack
            .state
            .unlock(&self.project, &self.info.id, false)
            .await
    }
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn records_without_a_version_read_as_version_1_and_newer_ones_are_refused() {
        assert!(check_format_json("r", br#"{"id": 1}"#).is_ok());
        assert!(check_format_json("r", br#"{"formatVersion": 1}"#).is_ok());
        let e = check_format_json("the record of Endpoint/iris", br#"{"formatVersion": 7}"#)
            .unwrap_err();
        assert_eq!(
            e.message,
            "the record of Endpoint/iris was written by a newer mlctl (state format 7; this one reads up to 1); upgrade mlctl"
        );
    }
}
