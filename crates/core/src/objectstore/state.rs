//! Observed state, history and the apply lock as objects in a target's bucket or container,
//! so a fresh CI runner plans against the target with no local files.
//!
//! - record: `.mlctl/state/<project>/<Kind>/<name>.json`
//! - history: `.mlctl/state/<project>/history/<Kind>/<name>/<time>-<n>.json` (one object per
//!   entry: appends never rewrite, so concurrent writers cannot lose entries)
//! - lock: `.mlctl/lock/<project>.json`, created with `If-None-Match: *` (a conditional write:
//!   exactly one of two racing writers gets it; the other reads the holder). Renewing its
//!   lease and taking it over are puts with `If-Match` on the ETag read, and releasing it a
//!   delete with `If-Match`, so a lock that changed hands meanwhile is never overwritten or
//!   deleted.

use super::{Created, ObjectStore, append_stamp, bounded, get_json, get_json_tagged, put_json};
use crate::error::Result;
use crate::secrets::{DigestKey, StoredDigestKey};
use crate::{ErrorKind, HistoryEntry, LockError, LockInfo, ObservedResource, ProviderError};
use crate::{StateStore, monitoring::MonitorResult};
use async_trait::async_trait;
use mlctl_spec::{Kind, ResourceId};
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// Largest error text kept by [`StateStore::keep_error_log`]; longer ones are cut, saying so.
pub const MAX_ERROR_LOG: usize = 1 << 20;

/// The [`StateStore`] of a target whose state lives in an [`ObjectStore`].
pub struct ObjectStateStore {
    store: Arc<dyn ObjectStore>,
    keep_error_logs: bool,
}

impl ObjectStateStore {
    /// State in `store`, under its prefix. Full error texts are not kept (see
    /// [`ObjectStateStore::keeping_error_logs`]).
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        ObjectStateStore {
            store,
            keep_error_logs: false,
        }
    }

    /// Keeps the full text of long errors at
    /// `.mlctl/state/<project>/error-logs/<Kind>-<name>.log` (one per resource, replaced).
    #[must_use]
    pub fn keeping_error_logs(mut self) -> Self {
        self.keep_error_logs = true;
        self
    }

    fn dir(&self, project: &str) -> String {
        self.store.key(&format!(".mlctl/state/{project}"))
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
        self.store.key(&format!(".mlctl/lock/{project}.json"))
    }

    fn err(&self, kind: ErrorKind, op: &str, message: String) -> ProviderError {
        ProviderError::new(kind, self.store.provider(), op, message)
    }

    async fn append(&self, project: &str, entry: &HistoryEntry) -> Result<()> {
        let key = format!(
            "{}{}.json",
            self.history_dir(project, &entry.id),
            append_stamp()
        );
        put_json(&*self.store, &key, entry).await
    }

    /// Every record under `keys`, read 16 at a time, in key order.
    async fn read_all<T: DeserializeOwned + Send + 'static>(
        &self,
        keys: Vec<String>,
    ) -> Result<Vec<T>> {
        let store = self.store.clone();
        let records = bounded(keys, 16, move |key: String| {
            let store = store.clone();
            async move { get_json::<T>(&*store, &key).await }
        })
        .await?;
        Ok(records.into_iter().flatten().collect())
    }

    fn to_json<T: serde::Serialize>(&self, value: &T) -> Result<Vec<u8>> {
        super::to_json(self.store.provider(), value)
    }
}

#[async_trait]
impl StateStore for ObjectStateStore {
    async fn keep_error_log(
        &self,
        project: &str,
        id: &ResourceId,
        text: &str,
    ) -> Result<Option<String>> {
        if !self.keep_error_logs {
            return Ok(None);
        }
        // Names are validated (no `/`); the kind/name separator becomes `-`.
        let key = format!(
            "{}/error-logs/{}.log",
            self.dir(project),
            id.to_string().replace(['/', '\\'], "-")
        );
        let shown = mlctl_spec::suggest::clip(text, MAX_ERROR_LOG);
        self.store
            .put(
                &key,
                shown.into_owned().into_bytes(),
                "text/plain; charset=utf-8",
            )
            .await?;
        Ok(Some(self.store.uri(&key)))
    }

    async fn observe(&self, project: &str) -> Result<Vec<ObservedResource>> {
        let mut keys = Vec::new();
        for kind in Kind::ALL {
            let dir = format!("{}/{}/", self.dir(project), kind.as_str());
            keys.extend(
                self.store
                    .list(&dir)
                    .await?
                    .into_iter()
                    .filter(|k| k.ends_with(".json") && !k[dir.len()..].contains('/')),
            );
        }
        self.read_all(keys).await
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
        put_json(&*self.store, &self.record_key(project, &rec.id), &rec).await?;
        self.append(project, entry).await
    }

    async fn forget(&self, project: &str, id: &ResourceId, entry: &HistoryEntry) -> Result<()> {
        self.store.delete(&self.record_key(project, id)).await?;
        self.append(project, entry).await
    }

    async fn history(&self, project: &str, id: &ResourceId) -> Result<Vec<HistoryEntry>> {
        let keys = self.store.list(&self.history_dir(project, id)).await?;
        self.read_all(keys).await
    }

    async fn lock(&self, project: &str, info: &LockInfo) -> std::result::Result<(), LockError> {
        let key = self.lock_key(project);
        let body = self.to_json(info).map_err(LockError::Store)?;
        // Two tries: the holder may release between our failed put and our read.
        for _ in 0..2 {
            match self
                .store
                .put_if_absent(&key, body.clone(), "application/json")
                .await
                .map_err(LockError::Store)?
            {
                Created::Yes => return Ok(()),
                Created::AlreadyThere => {
                    if let Some(holder) = get_json::<LockInfo>(&*self.store, &key)
                        .await
                        .map_err(LockError::Store)?
                    {
                        return Err(LockError::Held(holder));
                    }
                }
            }
        }
        Err(LockError::Store(self.err(
            ErrorKind::Precondition,
            "lock",
            format!(
                "the lock {} keeps changing hands; try again",
                self.store.uri(&key)
            ),
        )))
    }

    async fn unlock(&self, project: &str, id: &str, force: bool) -> Result<()> {
        let key = self.lock_key(project);
        match get_json_tagged::<LockInfo>(&*self.store, &key).await? {
            None => Ok(()),
            Some(_) if force => self.store.delete(&key).await,
            // Conditional on what was read: a lock taken over meanwhile is not deleted.
            Some((holder, etag)) if holder.id == id => {
                self.store.delete_if_match(&key, &etag).await.map(|_| ())
            }
            Some((holder, _)) => Err(self.err(
                ErrorKind::Precondition,
                "unlock",
                format!("the lock is held by {holder}, not by lock id {id}"),
            )),
        }
    }

    async fn lock_holder(&self, project: &str) -> Result<Option<LockInfo>> {
        get_json::<LockInfo>(&*self.store, &self.lock_key(project)).await
    }

    async fn swap_lock(&self, project: &str, expected: &LockInfo, new: &LockInfo) -> Result<bool> {
        let key = self.lock_key(project);
        match get_json_tagged::<LockInfo>(&*self.store, &key).await? {
            // Conditional on the ETag read: of two swaps from the same lock one lands.
            Some((now, etag)) if now.same_lease(expected) => {
                self.store
                    .put_if_match(&key, self.to_json(new)?, "application/json", &etag)
                    .await
            }
            _ => Ok(false),
        }
    }

    async fn record_monitor_result(&self, project: &str, result: &MonitorResult) -> Result<()> {
        // One object per result, like history: appends never rewrite.
        let key = format!(
            "{}{}.json",
            self.monitor_results_dir(project, &result.monitor),
            append_stamp()
        );
        put_json(&*self.store, &key, result).await
    }

    async fn monitor_results(&self, project: &str, monitor: &str) -> Result<Vec<MonitorResult>> {
        let keys = self
            .store
            .list(&self.monitor_results_dir(project, monitor))
            .await?;
        self.read_all(keys).await
    }

    async fn digest_key(&self) -> Result<DigestKey> {
        let key = self.store.key(".mlctl/digest-key.json");
        let where_ = self.store.uri(&key);
        // Read first: a plan with read-only credentials needs no write once the key exists.
        if let Some(k) = get_json::<StoredDigestKey>(&*self.store, &key).await? {
            return k.key(&where_);
        }
        // Of two first users, one creates it and the other reads that one.
        let fresh = StoredDigestKey::generate()?;
        self.store
            .put_if_absent(&key, self.to_json(&fresh)?, "application/json")
            .await?;
        match get_json::<StoredDigestKey>(&*self.store, &key).await? {
            Some(k) => k.key(&where_),
            None => Err(self.err(
                ErrorKind::Other,
                "digest key",
                format!(
                    "{where_} is missing right after it was written; check the store's lifecycle rules"
                ),
            )),
        }
    }
}
