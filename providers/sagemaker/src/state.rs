//! Observed state, history and the apply lock as objects in the target's bucket, so a fresh
//! CI runner plans against SageMaker with no local files.
//!
//! - record: `.mlctl/state/<project>/<Kind>/<name>.json`
//! - history: `.mlctl/state/<project>/history/<Kind>/<name>/<time>-<n>.json` (one object per
//!   entry: appends never rewrite, so concurrent writers cannot lose entries)
//! - lock: `.mlctl/lock/<project>.json`, created with `If-None-Match: *` (S3's conditional
//!   write: exactly one of two racing writers gets it; the other gets 412 and reads the holder).
//!   Renewing its lease and taking it over are puts with `If-Match` on the ETag read, and
//!   releasing it a delete with `If-Match`, so a lock that changed hands meanwhile is never
//!   overwritten or deleted.

use crate::aws::Aws;
use crate::error::provider_err;
use crate::store::{Created, bounded, to_json};
use async_trait::async_trait;
use mlctl_core::error::Result;
use mlctl_core::secrets::{DigestKey, StoredDigestKey};
use mlctl_core::{ErrorKind, HistoryEntry, LockError, LockInfo, ObservedResource, StateStore};
use mlctl_spec::{Kind, ResourceId};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The [`StateStore`] of a SageMaker target.
pub struct S3StateStore {
    aws: Arc<Aws>,
}

impl S3StateStore {
    pub(crate) fn new(aws: Arc<Aws>) -> Self {
        S3StateStore { aws }
    }

    fn dir(&self, project: &str) -> String {
        self.aws.key(&format!(".mlctl/state/{project}"))
    }

    fn record_key(&self, project: &str, id: &ResourceId) -> String {
        format!(
            "{}/{}/{}.json",
            self.dir(project),
            id.kind.as_str(),
            id.name
        )
    }

    fn history_dir(&self, project: &str, id: &ResourceId) -> String {
        format!(
            "{}/history/{}/{}/",
            self.dir(project),
            id.kind.as_str(),
            id.name
        )
    }

    fn monitor_results_dir(&self, project: &str, monitor: &str) -> String {
        format!("{}/monitor-results/{monitor}/", self.dir(project))
    }

    fn lock_key(&self, project: &str) -> String {
        self.aws.key(&format!(".mlctl/lock/{project}.json"))
    }

    async fn append(&self, project: &str, entry: &HistoryEntry) -> Result<()> {
        let key = format!(
            "{}{}.json",
            self.history_dir(project, &entry.id),
            history_stamp()
        );
        self.aws.put_json(&key, entry).await
    }
}

/// `<UTC time to the nanosecond>-<process counter>-<pid>`: sorts by time, never collides.
fn history_stamp() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year][month][day]T[hour][minute][second].[subsecond digits:9]Z"
    );
    let ts = now.format(&fmt).unwrap_or_default();
    format!(
        "{ts}-{:06}-{}",
        N.fetch_add(1, Ordering::Relaxed),
        std::process::id()
    )
}

#[async_trait]
impl StateStore for S3StateStore {
    async fn observe(&self, project: &str) -> Result<Vec<ObservedResource>> {
        let mut keys = Vec::new();
        for kind in Kind::ALL {
            let dir = format!("{}/{}/", self.dir(project), kind.as_str());
            keys.extend(
                self.aws
                    .list(&dir)
                    .await?
                    .into_iter()
                    .filter(|k| k.ends_with(".json") && !k[dir.len()..].contains('/')),
            );
        }
        let aws = self.aws.clone();
        let records = bounded(keys, 16, move |key: String| {
            let aws = aws.clone();
            async move { aws.get_json::<ObservedResource>(&key).await }
        })
        .await?;
        Ok(records.into_iter().flatten().collect())
    }

    async fn record(
        &self,
        project: &str,
        rec: &ObservedResource,
        entry: &HistoryEntry,
    ) -> Result<()> {
        let mut rec = rec.clone();
        // Drift is computed by observe, never stored.
        rec.drift.clear();
        self.aws
            .put_json(&self.record_key(project, &rec.id), &rec)
            .await?;
        self.append(project, entry).await
    }

    async fn forget(&self, project: &str, id: &ResourceId, entry: &HistoryEntry) -> Result<()> {
        self.aws.delete(&self.record_key(project, id)).await?;
        self.append(project, entry).await
    }

    async fn history(&self, project: &str, id: &ResourceId) -> Result<Vec<HistoryEntry>> {
        let keys = self.aws.list(&self.history_dir(project, id)).await?;
        let aws = self.aws.clone();
        let entries = bounded(keys, 16, move |key: String| {
            let aws = aws.clone();
            async move { aws.get_json::<HistoryEntry>(&key).await }
        })
        .await?;
        Ok(entries.into_iter().flatten().collect())
    }

    async fn lock(&self, project: &str, info: &LockInfo) -> std::result::Result<(), LockError> {
        let key = self.lock_key(project);
        let body = to_json(info).map_err(LockError::Store)?;
        // Two tries: the holder may release between our failed put and our read.
        for _ in 0..2 {
            match self
                .aws
                .put_if_absent(&key, body.clone(), "application/json")
                .await
                .map_err(LockError::Store)?
            {
                Created::Yes => return Ok(()),
                Created::AlreadyThere => {
                    if let Some(holder) = self
                        .aws
                        .get_json::<LockInfo>(&key)
                        .await
                        .map_err(LockError::Store)?
                    {
                        return Err(LockError::Held(holder));
                    }
                }
            }
        }
        Err(LockError::Store(provider_err(
            ErrorKind::Precondition,
            "lock",
            format!(
                "the lock s3://{}/{key} keeps changing hands; try again",
                self.aws.bucket
            ),
        )))
    }

    async fn unlock(&self, project: &str, id: &str, force: bool) -> Result<()> {
        let key = self.lock_key(project);
        match self.aws.get_json_tagged::<LockInfo>(&key).await? {
            None => Ok(()),
            Some(_) if force => self.aws.delete(&key).await,
            // Conditional on what was read: a lock taken over meanwhile is not deleted.
            Some((holder, etag)) if holder.id == id => {
                self.aws.delete_if_match(&key, &etag).await.map(|_| ())
            }
            Some((holder, _)) => Err(provider_err(
                ErrorKind::Precondition,
                "unlock",
                format!("the lock is held by {holder}, not by lock id {id}"),
            )),
        }
    }

    async fn lock_holder(&self, project: &str) -> Result<Option<LockInfo>> {
        self.aws.get_json::<LockInfo>(&self.lock_key(project)).await
    }

    async fn swap_lock(&self, project: &str, expected: &LockInfo, new: &LockInfo) -> Result<bool> {
        let key = self.lock_key(project);
        match self.aws.get_json_tagged::<LockInfo>(&key).await? {
            // Conditional on the ETag read: of two swaps from the same lock one lands.
            Some((now, etag)) if now.same_lease(expected) => {
                self.aws
                    .put_if_match(&key, to_json(new)?, "application/json", &etag)
                    .await
            }
            _ => Ok(false),
        }
    }

    async fn record_monitor_result(
        &self,
        project: &str,
        result: &mlctl_core::monitoring::MonitorResult,
    ) -> Result<()> {
        // One object per result, like history: appends never rewrite.
        let key = format!(
            "{}{}.json",
            self.monitor_results_dir(project, &result.monitor),
            history_stamp()
        );
        self.aws.put_json(&key, result).await
    }

    async fn monitor_results(
        &self,
        project: &str,
        monitor: &str,
    ) -> Result<Vec<mlctl_core::monitoring::MonitorResult>> {
        let keys = self
            .aws
            .list(&self.monitor_results_dir(project, monitor))
            .await?;
        let aws = self.aws.clone();
        let results = bounded(keys, 16, move |key: String| {
            let aws = aws.clone();
            async move {
                aws.get_json::<mlctl_core::monitoring::MonitorResult>(&key)
                    .await
            }
        })
        .await?;
        Ok(results.into_iter().flatten().collect())
    }

    async fn digest_key(&self) -> Result<DigestKey> {
        let key = self.aws.key(".mlctl/digest-key.json");
        let where_ = format!("s3://{}/{key}", self.aws.bucket);
        // Read first: a plan with read-only credentials needs no write once the key exists.
        if let Some(k) = self.aws.get_json::<StoredDigestKey>(&key).await? {
            return k.key(&where_);
        }
        // Of two first users, one creates it and the other reads that one.
        let fresh = StoredDigestKey::generate()?;
        self.aws
            .put_if_absent(&key, to_json(&fresh)?, "application/json")
            .await?;
        match self.aws.get_json::<StoredDigestKey>(&key).await? {
            Some(k) => k.key(&where_),
            None => Err(provider_err(
                ErrorKind::Other,
                "digest key",
                format!(
                    "{where_} is missing right after it was written; check the bucket's lifecycle rules"
                ),
            )),
        }
    }
}
