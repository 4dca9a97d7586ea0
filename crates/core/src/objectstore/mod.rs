//! A bucket or container that a cloud target keeps mlctl's records in, and what is written
//! once over it: the state store and apply lock ([`ObjectStateStore`]) and the bookkeeping of
//! content-addressed blobs and dataset versions ([`datasets`]).
//!
//! The S3 (SageMaker) and Blob Storage (Azure ML) targets implement [`ObjectStore`] over their
//! SDKs; everything above it is the same for both, so both keep the same layout under their
//! prefix:
//!
//! | object | what |
//! |---|---|
//! | `objects/<blake3>` | content-addressed blobs (tables, splits, profiles, packed code) |
//! | `.mlctl/datasets/<project>/<name>/<fingerprint>.json` | dataset versions |
//! | `.mlctl/state/<project>/<Kind>/<name>.json` | observed record of a resource |
//! | `.mlctl/state/<project>/history/<Kind>/<name>/<time>-<n>.json` | its history |
//! | `.mlctl/state/<project>/monitor-results/<monitor>/<time>-<n>.json` | monitor results |
//! | `.mlctl/state/<project>/error-logs/<Kind>-<name>.log` | full error texts (when kept) |
//! | `.mlctl/lock/<project>.json` | the apply lock (conditional create) |
//! | `.mlctl/digest-key.json` | the target's key for secret digests |
//!
//! # Contract of an [`ObjectStore`]
//! A put is atomic (no reader sees a partial object); conditional writes are atomic against
//! each other (of two `put_if_absent` on one key exactly one gets [`Created::Yes`]); an ETag
//! changes with every write of the object.

pub mod datasets;
pub mod stages;
mod state;
#[cfg(test)]
mod tests;

pub use state::{MAX_ERROR_LOG, ObjectStateStore};

use crate::error::Result;
use crate::{ErrorKind, ProviderError};
use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::atomic::{AtomicU64, Ordering};

/// Outcome of a put that must not overwrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// Written.
    Yes,
    /// Something already exists at the key.
    AlreadyThere,
}

/// The objects of a target's bucket or container, keys relative to the bucket (use
/// [`ObjectStore::key`] for a key under the target's prefix).
#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// The provider's name, for errors (`sagemaker`, `azureml`).
    fn provider(&self) -> &str;
    /// The key of `rel` under the target's prefix.
    fn key(&self, rel: &str) -> String;
    /// The URI a user or a job reads `key` at (`s3://bucket/key`, the blob's https URL):
    /// shown in messages, so it never carries a credential.
    fn uri(&self, key: &str) -> String;
    /// The bytes of an object; `None` when it does not exist.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// The bytes of an object with its ETag, for a write conditional on it; `None` when it
    /// does not exist.
    async fn get_tagged(&self, key: &str) -> Result<Option<(Vec<u8>, String)>>;
    /// Writes an object, replacing what is there.
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<()>;
    /// Writes an object only if nothing is at `key` (`If-None-Match: *`).
    async fn put_if_absent(&self, key: &str, bytes: Vec<u8>, content_type: &str)
    -> Result<Created>;
    /// Overwrites an object only if it is still the one with `etag` (`If-Match`); `false`
    /// when it changed or is gone.
    async fn put_if_match(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
        etag: &str,
    ) -> Result<bool>;
    /// Deletes an object only if it is still the one with `etag`; `false` when it changed or
    /// is gone.
    async fn delete_if_match(&self, key: &str, etag: &str) -> Result<bool>;
    /// Whether an object exists.
    async fn exists(&self, key: &str) -> Result<bool>;
    /// Deletes an object; a missing one succeeds.
    async fn delete(&self, key: &str) -> Result<()>;
    /// Every key under `prefix` (a plain string prefix), in key order, across every page.
    async fn list(&self, prefix: &str) -> Result<Vec<String>>;
}

/// Reads a JSON record; `None` when it does not exist.
pub async fn get_json<T: DeserializeOwned>(
    store: &(impl ObjectStore + ?Sized),
    key: &str,
) -> Result<Option<T>> {
    match store.get(key).await? {
        None => Ok(None),
        Some(bytes) => parse_record(store.provider(), &store.uri(key), &bytes).map(Some),
    }
}

/// Reads a JSON record with its ETag; `None` when it does not exist.
pub async fn get_json_tagged<T: DeserializeOwned>(
    store: &(impl ObjectStore + ?Sized),
    key: &str,
) -> Result<Option<(T, String)>> {
    match store.get_tagged(key).await? {
        None => Ok(None),
        Some((bytes, etag)) => Ok(Some((
            parse_record(store.provider(), &store.uri(key), &bytes)?,
            etag,
        ))),
    }
}

/// Writes a JSON record.
pub async fn put_json<T: Serialize>(
    store: &(impl ObjectStore + ?Sized),
    key: &str,
    value: &T,
) -> Result<()> {
    store
        .put(key, to_json(store.provider(), value)?, "application/json")
        .await
}

/// The mlctl record in `bytes`, read from `at` (its format version checked).
pub fn parse_record<T: DeserializeOwned>(provider: &str, at: &str, bytes: &[u8]) -> Result<T> {
    crate::state::check_format_json(at, bytes)?;
    serde_json::from_slice(bytes).map_err(|e| {
        ProviderError::new(
            ErrorKind::Invalid,
            provider,
            "read record",
            format!("{at} is not a valid mlctl record: {e}"),
        )
    })
}

/// Serializes a record (pretty: people read these in the console).
pub fn to_json<T: Serialize>(provider: &str, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(value)
        .map_err(|e| ProviderError::new(ErrorKind::Other, provider, "serialize", e.to_string()))
}

/// Runs `f` over `items` with at most `limit` calls at once; results in input order, or the
/// first error.
pub async fn bounded<T, R, F, Fut>(items: Vec<T>, limit: usize, f: F) -> Result<Vec<R>>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = Result<R>> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    let mut out: Vec<Option<R>> = Vec::with_capacity(items.len());
    let mut iter = items.into_iter().enumerate();
    let mut first_err = None;
    loop {
        while set.len() < limit.max(1) {
            match iter.next() {
                Some((i, item)) => {
                    out.push(None);
                    let fut = f(item);
                    set.spawn(async move { (i, fut.await) });
                }
                None => break,
            }
        }
        match set.join_next().await {
            None => break,
            Some(Ok((i, Ok(r)))) => out[i] = Some(r),
            Some(Ok((_, Err(e)))) => {
                first_err.get_or_insert(e);
            }
            Some(Err(join)) => {
                first_err.get_or_insert(ProviderError::new(
                    ErrorKind::Other,
                    "mlctl",
                    "internal",
                    join.to_string(),
                ));
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(out.into_iter().flatten().collect()),
    }
}

/// `<UTC time to the nanosecond>-<process counter>-<pid>`: the name of an appended entry,
/// which sorts by time and never collides.
pub fn append_stamp() -> String {
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
