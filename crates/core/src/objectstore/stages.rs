//! A model's stage history in a bucket or container: one object per change, under
//! `<dir>stages/<unix nanoseconds, 24 digits>-v<version>.json`, so changes are appended without
//! rewriting anything and list in the order they happened. The SageMaker and Azure ML
//! registries keep it this way (their services keep no such history).

use super::{ObjectStore, bounded, get_json, put_json};
use crate::components::StageTransition;
use crate::error::Result;
use std::sync::Arc;

/// The key of a change of `version` made now.
fn key(dir: &str, version: u32) -> String {
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    format!("{dir}stages/{stamp:024}-v{version}.json")
}

/// Appends a change to the history kept under `dir` (ending in `/`).
pub async fn record(
    store: &(impl ObjectStore + ?Sized),
    dir: &str,
    change: &StageTransition,
) -> Result<()> {
    put_json(store, &key(dir, change.version), change).await
}

/// The history kept under `dir`, oldest first (empty when there is none).
pub async fn history<S: ObjectStore + ?Sized + 'static>(
    store: Arc<S>,
    dir: &str,
) -> Result<Vec<StageTransition>> {
    let keys = store.list(&format!("{dir}stages/")).await?;
    let all = bounded(keys, 16, move |key: String| {
        let store = store.clone();
        async move { get_json::<StageTransition>(store.as_ref(), &key).await }
    })
    .await?;
    Ok(all.into_iter().flatten().collect())
}
