//! Observed state, history and the apply lock, all kept in the target itself.
//!
//! A fresh CI runner with no local files can plan against a cloud target because everything
//! the plan needs is read back from the target through a [`StateStore`].

use crate::error::Result;
use async_trait::async_trait;
use mlctl_spec::ResourceId;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
    /// When the holder last renewed the lock (RFC 3339, the holder's clock). A live holder
    /// renews it every [`LOCK_RENEW_EVERY`]; `None` for a lock from an mlctl without leases,
    /// which never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<String>,
    /// How long after its last heartbeat the lock holds without a renewal: after that its
    /// holder is taken to be gone, wherever it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_seconds: Option<u64>,
}

/// How long a lock holds without a renewal ([`LockInfo::lease_seconds`] of a new lock).
pub const LOCK_LEASE: Duration = Duration::from_secs(120);

/// How often the holder of a lock renews it: six renewals fit in a lease, so a few lost to a
/// slow store or a busy machine never let it expire.
pub const LOCK_RENEW_EVERY: Duration = Duration::from_secs(20);

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
            since: now_rfc3339(),
            command,
            boot_id: crate::host::boot_id(),
            process_start: crate::host::process_start(pid),
            heartbeat: Some(now_rfc3339()),
            lease_seconds: Some(LOCK_LEASE.as_secs()),
        }
    }

    /// Why the holder is known to be gone, if it is: it ran on this host in this boot and its
    /// process has ended, or its lease expired (it has not renewed the lock for longer than
    /// [`LockInfo::lease_seconds`], wherever it ran).
    pub fn holder_gone(&self) -> Option<String> {
        crate::host::provably_gone(
            &self.host,
            self.boot_id.as_deref(),
            self.pid,
            self.process_start,
        )
        .or_else(|| self.lease_expired(time::OffsetDateTime::now_utc()))
    }

    /// Why the lease has expired at `now`, if it has. A lock without a heartbeat or lease
    /// (an older mlctl's) never expires.
    pub fn lease_expired(&self, now: time::OffsetDateTime) -> Option<String> {
        use time::format_description::well_known::Rfc3339;
        let beat = time::OffsetDateTime::parse(self.heartbeat.as_deref()?, &Rfc3339).ok()?;
        let lease = time::Duration::seconds(i64::try_from(self.lease_seconds?).ok()?);
        let silent = now - beat;
        (silent > lease).then(|| {
            format!(
                "its lease expired: no heartbeat for {} s, more than its lease of {} s (last heartbeat {})",
                silent.whole_seconds(),
                lease.whole_seconds(),
                self.heartbeat.as_deref().unwrap_or_default()
            )
        })
    }

    /// Whether `other` is this very lock as it was read: the same id and heartbeat.
    pub fn same_lease(&self, other: &LockInfo) -> bool {
        self.id == other.id && self.heartbeat == other.heartbeat
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
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
    /// Replaces the lock with `new` if it is still `expected` ([`LockInfo::same_lease`]: the
    /// same id and heartbeat); `Ok(false)` when it is not (released, renewed or taken by
    /// someone else meanwhile). A holder renews its lease with it, and a takeover replaces an
    /// expired or dead holder's lock with it.
    ///
    /// # Contract
    /// Atomic compare-and-swap (an SQLite transaction, a put conditional on the object's
    /// ETag): of racing swaps from the same `expected` exactly one succeeds, and a free lock
    /// is never taken by a swap. Checked by `lock_lease`.
    async fn swap_lock(&self, project: &str, expected: &LockInfo, new: &LockInfo) -> Result<bool>;
    /// The target's key for secret digests ([`crate::secrets`]): 32 random bytes, made on
    /// first use and kept in the target, for every project on it.
    ///
    /// # Contract
    /// Made once: every later call, from this process or any other sharing the target,
    /// returns the same key, also when the first callers race (a conditional write, an
    /// SQLite transaction: the loser reads the winner's key). Checked by
    /// `digest_key_is_made_once`.
    async fn digest_key(&self) -> Result<crate::secrets::DigestKey>;
    /// Appends one evaluation of a monitor to its time series.
    ///
    /// # Contract
    /// Appends never overwrite (concurrent writers lose nothing), and
    /// [`StateStore::monitor_results`] returns it after every earlier one. Checked by
    /// `monitor_results_roundtrip`.
    async fn record_monitor_result(
        &self,
        project: &str,
        result: &crate::monitoring::MonitorResult,
    ) -> Result<()>;
    /// A monitor's evaluations, oldest first (empty for one never evaluated).
    ///
    /// # Contract
    /// In the order they were recorded; another monitor's are never among them. Checked by
    /// `monitor_results_roundtrip`.
    async fn monitor_results(
        &self,
        project: &str,
        monitor: &str,
    ) -> Result<Vec<crate::monitoring::MonitorResult>>;
}

/// The apply lock of a target, held for the duration of an apply.
///
/// While it is held, a task renews its lease every [`LOCK_RENEW_EVERY`], so a holder that
/// stops renewing (killed, or its machine gone) loses it after [`LOCK_LEASE`] and the next
/// apply anywhere takes over. If a renewal finds the lock taken by someone else (this process
/// stalled longer than its lease), [`Lock::lost`] says so from then on: the engine starts
/// nothing more and [`Lock::release`] fails, so the apply ends with an error.
pub struct Lock {
    stack: crate::components::Stack,
    project: String,
    info: LockInfo,
    taken_over: Option<(LockInfo, String)>,
    lost: Arc<AtomicBool>,
    lost_to: Arc<std::sync::Mutex<Option<String>>>,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

impl Lock {
    /// Takes the lock or says who holds it.
    ///
    /// A lock whose holder is known to be gone is taken over, and [`Lock::taken_over`] says
    /// whose and why: its holder ran on this host in this boot and its process has ended (an
    /// apply killed with SIGKILL), or its lease expired (it has not renewed the lock for
    /// longer than its lease, wherever it ran). A live holder's lock is never taken; one this
    /// machine cannot judge (a lock without a lease from another host) is released only by
    /// `force-unlock`.
    ///
    /// The takeover is one compare-and-swap ([`StateStore::swap_lock`]) from the lock as it
    /// was read: of two processes recovering at once exactly one wins, and a holder that
    /// renewed meanwhile keeps its lock.
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
                if !stack
                    .state
                    .swap_lock(project, &holder, &info)
                    .await
                    .map_err(LockError::Store)?
                {
                    // Someone else recovered first, or the holder renewed or released it.
                    return match stack.state.lock_holder(project).await {
                        Ok(Some(now)) => Err(LockError::Held(now)),
                        Ok(None) => Box::pin(Self::acquire(stack, project, info)).await,
                        Err(e) => Err(LockError::Store(e)),
                    };
                }
                Some((holder, why))
            }
            Err(e) => return Err(e),
        };
        let lost = Arc::new(AtomicBool::new(false));
        let lost_to = Arc::new(std::sync::Mutex::new(None));
        let renewer = info.lease_seconds.is_some().then(|| {
            tokio::spawn(renew(
                stack.clone(),
                project.to_string(),
                info.clone(),
                lost.clone(),
                lost_to.clone(),
            ))
        });
        Ok(Lock {
            stack: stack.clone(),
            project: project.to_string(),
            info,
            taken_over,
            lost,
            lost_to,
            renewer,
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

    /// Set once a renewal found the lock taken by someone else; the engine reads it
    /// ([`crate::apply::ApplyOptions::lock_lost`]).
    pub fn lost(&self) -> Arc<AtomicBool> {
        self.lost.clone()
    }

    /// Releases the lock.
    ///
    /// # Errors
    /// When the lock was lost while held (saying to whom), or the store fails.
    pub async fn release(mut self) -> Result<()> {
        if let Some(r) = self.renewer.take() {
            r.abort();
            let _ = r.await;
        }
        if self.lost.load(Ordering::SeqCst) {
            let to = self
                .lost_to
                .lock()
                .ok()
                .and_then(|l| l.clone())
                .unwrap_or_else(|| "someone else".into());
            return Err(crate::error::ProviderError::new(
                crate::error::ErrorKind::Precondition,
                "mlctl",
                "lock",
                format!(
                    "the apply lock was lost while this apply held it: this process did not renew its lease for longer than {} s, and {to} took it over; what this apply did is recorded, so run plan again to see where things stand",
                    self.info.lease_seconds.unwrap_or_default()
                ),
            ));
        }
        self.stack
            .state
            .unlock(&self.project, &self.info.id, false)
            .await
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
    }
}

/// Renews the lease of `held` every [`LOCK_RENEW_EVERY`] until aborted, or until the lock
/// turns out to be someone else's (then `lost` is set). A failed renewal (the store did not
/// answer) is tried again on the next tick: the lease outlasts several.
async fn renew(
    stack: crate::components::Stack,
    project: String,
    mut held: LockInfo,
    lost: Arc<AtomicBool>,
    lost_to: Arc<std::sync::Mutex<Option<String>>>,
) {
    loop {
        tokio::time::sleep(LOCK_RENEW_EVERY).await;
        let next = LockInfo {
            heartbeat: Some(now_rfc3339()),
            ..held.clone()
        };
        match stack.state.swap_lock(&project, &held, &next).await {
            Ok(true) => held = next,
            Ok(false) => {
                let now = match stack.state.lock_holder(&project).await {
                    Ok(now) => now,
                    Err(_) => continue,
                };
                // Still our id: an earlier renewal landed though its answer was lost. Ids
                // are random per apply, so nobody else holds a lock with ours.
                if let Some(h) = &now
                    && h.id == held.id
                {
                    held = h.clone();
                    continue;
                }
                let who = now.map_or("nobody (it was released)".to_string(), |h| h.to_string());
                eprintln!(
                    "mlctl: the apply lock of project `{project}` was lost to {who}; nothing more is started"
                );
                if let Ok(mut l) = lost_to.lock() {
                    *l = Some(who);
                }
                lost.store(true, Ordering::SeqCst);
                return;
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn a_lease_expires_only_after_its_length_without_a_heartbeat() {
        use time::macros::datetime;
        let lock = LockInfo {
            heartbeat: Some("2026-12-01T10:00:00Z".into()),
            lease_seconds: Some(120),
            ..LockInfo::for_this_process("x".into(), "mlctl apply".into())
        };
        assert_eq!(lock.lease_expired(datetime!(2026-12-01 10:02:00 UTC)), None);
        let why = lock
            .lease_expired(datetime!(2026-12-01 10:02:01 UTC))
            .unwrap();
        assert_eq!(
            why,
            "its lease expired: no heartbeat for 121 s, more than its lease of 120 s (last heartbeat 2026-12-01T10:00:00Z)"
        );
        // Without a heartbeat or a lease (an older mlctl's lock) it never expires.
        let legacy = LockInfo {
            heartbeat: None,
            ..lock.clone()
        };
        assert_eq!(legacy.lease_expired(datetime!(2030-01-01 0:00 UTC)), None);
        let no_lease = LockInfo {
            lease_seconds: None,
            ..lock
        };
        assert_eq!(no_lease.lease_expired(datetime!(2030-01-01 0:00 UTC)), None);
    }

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
