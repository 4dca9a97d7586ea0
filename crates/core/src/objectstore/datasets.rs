//! Content-addressed blobs and dataset versions in an [`ObjectStore`]: what a cloud target's
//! `DataStore` does once the table is on this machine.
//!
//! Blobs live at `objects/<blake3>` under the target's prefix and are never overwritten (an
//! existing key is skipped). A dataset version is a JSON record at
//! `.mlctl/datasets/<project>/<name>/<fingerprint>.json`, with the Dataset's tags (objects
//! take few tags, or none); registering the same fingerprint again returns that record
//! without reading the data. How the table reaches this machine and the store (a project
//! file, a remote object, a transform's output) is the target's own business.

use super::{ObjectStore, get_json, put_json};
use crate::components::InPlaceRequest;
use crate::error::Result;
use crate::{DatasetRequest, DatasetVersion, ErrorKind, ProviderError};
use mlctl_spec::DataFormat;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The key of a blob.
pub fn blob_key(store: &(impl ObjectStore + ?Sized), digest: &str) -> String {
    store.key(&format!("objects/{digest}"))
}

/// Stores bytes content-addressed (skipped when the blob is there); returns the digest.
pub async fn put_blob(
    store: &(impl ObjectStore + ?Sized),
    bytes: Vec<u8>,
    content_type: &str,
) -> Result<String> {
    let digest = blake3::hash(&bytes).to_hex().to_string();
    let key = blob_key(store, &digest);
    if !store.exists(&key).await? {
        store.put(&key, bytes, content_type).await?;
    }
    Ok(digest)
}

/// The bytes of a blob; NotFound when it is not there.
pub async fn get_blob(store: &(impl ObjectStore + ?Sized), digest: &str) -> Result<Vec<u8>> {
    check_digest(store.provider(), digest)?;
    let key = blob_key(store, digest);
    store.get(&key).await?.ok_or_else(|| {
        ProviderError::new(
            ErrorKind::NotFound,
            store.provider(),
            "get blob",
            format!("no blob {digest} in {}", store.uri(&key)),
        )
    })
}

/// Whether a blob is there.
pub async fn has_blob(store: &(impl ObjectStore + ?Sized), digest: &str) -> Result<bool> {
    check_digest(store.provider(), digest)?;
    store.exists(&blob_key(store, digest)).await
}

/// Refuses anything but a blake3 digest, so a digest never names another key.
pub fn check_digest(provider: &str, digest: &str) -> Result<()> {
    if digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(ProviderError::new(
            ErrorKind::Invalid,
            provider,
            "blob",
            format!("`{digest}` is not a blake3 digest (64 hex digits)"),
        ))
    }
}

/// The key of a dataset version's record.
pub fn version_key(
    store: &(impl ObjectStore + ?Sized),
    project: &str,
    name: &str,
    fingerprint: &str,
) -> String {
    store.key(&format!(
        ".mlctl/datasets/{project}/{name}/{fingerprint}.json"
    ))
}

/// A dataset version as recorded: the version, and the tags of the Dataset that registered it.
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredVersion {
    /// The version.
    #[serde(flatten)]
    pub version: DatasetVersion,
    /// The Dataset's tags (mlctl's and its labels).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// The version already registered for this request's fingerprint, if any.
pub async fn registered(
    store: &(impl ObjectStore + ?Sized),
    project: &str,
    req: &DatasetRequest,
) -> Result<Option<DatasetVersion>> {
    get_json(
        store,
        &version_key(store, project, &req.name, &req.fingerprint),
    )
    .await
}

/// A local table, read and checked.
pub struct CheckedTable {
    /// blake3 of the file.
    pub digest: String,
    /// Rows read.
    pub rows: u64,
    /// Column names.
    pub columns: Vec<String>,
    /// The profile (drift baseline) as JSON.
    pub profile: Vec<u8>,
    /// Split parts as CSV, by name (`train`, `validation`, `test`); empty parts are left out.
    pub splits: Vec<(String, Vec<u8>)>,
}

/// Hashes, reads and validates a local table (digest pin, limits, schema, target column) and
/// splits it as the spec says. Blocking: run it on a blocking thread.
pub fn check_table(
    provider: &str,
    path: &Path,
    format: DataFormat,
    req: &DatasetRequest,
    source: &str,
) -> Result<CheckedTable> {
    let op = "register dataset";
    let name = &req.name;
    let err = |kind, op: &str, message: String| ProviderError::new(kind, provider, op, message);
    let digest = mlctl_ml::digest::digest_file(path, None).map_err(|e| {
        err(
            io_kind(&e),
            op,
            format!("dataset `{name}`: cannot read {source}: {e}"),
        )
    })?;
    if let Some(want) = req.spec.digest.as_ref().filter(|w| **w != digest) {
        return Err(err(
            ErrorKind::Invalid,
            op,
            format!("dataset `{name}` has digest {digest}, but the spec pins {want}"),
        ));
    }
    let limits = mlctl_ml::table::ReadLimits::of(req.spec.limits.as_ref());
    let table = mlctl_ml::table::read_limited(path, format, limits)
        .map_err(|e| err(ErrorKind::Invalid, op, format!("dataset `{name}`: {e}")))?;
    if let Some(schema) = &req.spec.schema {
        let report = mlctl_ml::validate::validate(&table, schema).in_file(source.to_string());
        if !report.ok {
            return Err(err(
                ErrorKind::Invalid,
                "validate dataset",
                format!("dataset `{name}` ({source}): {report}"),
            ));
        }
    }
    if let Some(target) = req
        .spec
        .target
        .as_ref()
        .filter(|t| table.column(t).is_none())
    {
        return Err(err(
            ErrorKind::Invalid,
            op,
            format!(
                "dataset `{name}`: target column `{target}` is not in {source} (columns: {})",
                mlctl_spec::suggest::list(table.names())
            ),
        ));
    }
    let profile = serde_json::to_vec(&mlctl_ml::profile::profile(&table))
        .map_err(|e| err(ErrorKind::Other, op, e.to_string()))?;
    let mut splits = Vec::new();
    if let Some(split) = &req.spec.split {
        let parts = mlctl_ml::split::split(&table, split).map_err(|e| {
            err(
                ErrorKind::Invalid,
                "split dataset",
                format!("dataset `{name}`: {e}"),
            )
        })?;
        for (part, t) in [
            ("train", &parts.train),
            ("validation", &parts.validation),
            ("test", &parts.test),
        ] {
            if t.n_rows() == 0 {
                continue;
            }
            let io = |e| ProviderError::io(provider, "split dataset", e);
            let tmp = tempfile::NamedTempFile::new().map_err(io)?;
            mlctl_ml::table::write_csv(t, tmp.path())
                .map_err(|e| err(ErrorKind::Other, "split dataset", e.to_string()))?;
            let bytes = std::fs::read(tmp.path()).map_err(io)?;
            splits.push((part.to_string(), bytes));
        }
    }
    Ok(CheckedTable {
        digest,
        rows: table.n_rows() as u64,
        columns: table.names().to_vec(),
        profile,
        splits,
    })
}

/// [`check_table`] on a blocking thread.
pub async fn check_table_blocking(
    provider: &str,
    path: &Path,
    format: DataFormat,
    req: &DatasetRequest,
    source: &str,
) -> Result<CheckedTable> {
    let (provider, p, r, src) = (
        provider.to_string(),
        path.to_path_buf(),
        req.clone(),
        source.to_string(),
    );
    let prov = provider.clone();
    tokio::task::spawn_blocking(move || check_table(&prov, &p, format, &r, &src))
        .await
        .map_err(|e| {
            ProviderError::new(
                ErrorKind::Other,
                provider,
                "register dataset",
                e.to_string(),
            )
        })?
}

/// The content type a table of `format` is stored with.
pub fn table_content_type(format: DataFormat) -> &'static str {
    if format == DataFormat::Csv {
        "text/csv"
    } else {
        "application/octet-stream"
    }
}

fn io_kind(e: &std::io::Error) -> ErrorKind {
    match e.kind() {
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
        std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        _ => ErrorKind::Invalid,
    }
}

/// Stores a checked table's profile and splits content-addressed and records the version;
/// the table itself must already be at `table_key` (the blob of its digest).
pub async fn record_version(
    store: &(impl ObjectStore + ?Sized),
    project: &str,
    req: &DatasetRequest,
    checked: CheckedTable,
    table_key: &str,
) -> Result<DatasetVersion> {
    let profile = put_blob(store, checked.profile, "application/json").await?;
    let mut splits = BTreeMap::new();
    for (part, bytes) in checked.splits {
        let digest = put_blob(store, bytes, "text/csv").await?;
        splits.insert(part, store.uri(&blob_key(store, &digest)));
    }
    let version = DatasetVersion {
        name: req.name.clone(),
        fingerprint: req.fingerprint.clone(),
        digest: checked.digest,
        uri: store.uri(table_key),
        rows: checked.rows,
        columns: checked.columns,
        splits,
        profile_uri: Some(store.uri(&blob_key(store, &profile))),
    };
    let stored = StoredVersion {
        version,
        tags: req.tags.to_map(),
    };
    put_json(
        store,
        &version_key(store, project, &req.name, &req.fingerprint),
        &stored,
    )
    .await?;
    Ok(stored.version)
}

/// Replaces the tags recorded with a version (an in-place update); returns the version.
pub async fn update_tags(
    store: &(impl ObjectStore + ?Sized),
    project: &str,
    req: &InPlaceRequest,
) -> Result<DatasetVersion> {
    let record = version_key(store, project, &req.name, &req.fingerprint);
    let Some(mut stored) = get_json::<StoredVersion>(store, &record).await? else {
        return Err(ProviderError::new(
            ErrorKind::NotFound,
            store.provider(),
            "update dataset tags",
            format!(
                "dataset `{}` has no version {} in {} any more; run `mlctl apply` with a change that registers it again",
                req.name,
                &req.fingerprint[..req.fingerprint.len().min(12)],
                store.uri(&store.key(""))
            ),
        ));
    };
    stored.tags = req.tags.to_map();
    put_json(store, &record, &stored).await?;
    Ok(stored.version)
}

/// Deletes every version record of a dataset. Blobs stay: other versions and training jobs'
/// lineage point at them.
pub async fn delete_versions(
    store: &(impl ObjectStore + ?Sized),
    project: &str,
    name: &str,
) -> Result<()> {
    let dir = store.key(&format!(".mlctl/datasets/{project}/{name}/"));
    for key in store.list(&dir).await? {
        store.delete(&key).await?;
    }
    Ok(())
}
