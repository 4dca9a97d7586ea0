//! Content-addressed blobs and dataset versions on S3.
//!
//! Blobs live at `objects/<blake3>` under the target's prefix and are never overwritten (an
//! existing key is skipped after a HeadObject). A dataset version is a JSON record at
//! `.mlctl/datasets/<project>/<name>/<fingerprint>.json`; registering the same fingerprint
//! again returns that record without reading the data.

use crate::aws::{Aws, parse_s3_uri};
use crate::error::{aws_err, provider_err};
use async_trait::async_trait;
use mlctl_core::error::Result;
use mlctl_core::{
    Capabilities, DataStore, DatasetRequest, DatasetVersion, ErrorKind, OpContext, ProviderError,
};
use mlctl_spec::DataFormat;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The [`DataStore`] of a SageMaker target.
pub struct S3DataStore {
    aws: Arc<Aws>,
}

impl S3DataStore {
    pub(crate) fn new(aws: Arc<Aws>) -> Self {
        S3DataStore { aws }
    }

    fn version_key(&self, project: &str, name: &str, fingerprint: &str) -> String {
        self.aws.key(&format!(
            ".mlctl/datasets/{project}/{name}/{fingerprint}.json"
        ))
    }
}

/// The key of a blob.
pub(crate) fn blob_key(aws: &Aws, digest: &str) -> String {
    aws.key(&format!("objects/{digest}"))
}

/// Stores bytes content-addressed; returns the digest.
pub(crate) async fn put_blob(aws: &Aws, bytes: Vec<u8>, content_type: &str) -> Result<String> {
    let digest = blake3::hash(&bytes).to_hex().to_string();
    let key = blob_key(aws, &digest);
    if !aws.exists(&key).await? {
        aws.put(&key, bytes, content_type).await?;
    }
    Ok(digest)
}

fn check_digest(digest: &str) -> Result<()> {
    if digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(provider_err(
            ErrorKind::Invalid,
            "blob",
            format!("`{digest}` is not a blake3 digest (64 hex digits)"),
        ))
    }
}

/// A local table, read and checked.
struct Checked {
    digest: String,
    rows: u64,
    columns: Vec<String>,
    /// The profile (drift baseline) as JSON.
    profile: Vec<u8>,
    /// Split parts as CSV, by name (`train`, `validation`, `test`).
    splits: Vec<(String, Vec<u8>)>,
}

/// Hashes, reads and validates a local table, and splits it as the spec says (blocking).
fn check_local(
    path: &Path,
    format: DataFormat,
    req: &DatasetRequest,
    source: &str,
) -> Result<Checked> {
    let op = "register dataset";
    let name = &req.name;
    let digest = mlctl_ml::digest::digest_file(path, None).map_err(|e| {
        provider_err(
            io_kind(&e),
            op,
            format!("dataset `{name}`: cannot read {source}: {e}"),
        )
    })?;
    if let Some(want) = req.spec.digest.as_ref().filter(|w| **w != digest) {
        return Err(provider_err(
            ErrorKind::Invalid,
            op,
            format!("dataset `{name}` has digest {digest}, but the spec pins {want}"),
        ));
    }
    let table = mlctl_ml::table::read(path, format)
        .map_err(|e| provider_err(ErrorKind::Invalid, op, format!("dataset `{name}`: {e}")))?;
    if let Some(schema) = &req.spec.schema {
        let report = mlctl_ml::validate::validate(&table, schema);
        if !report.ok {
            return Err(provider_err(
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
        return Err(provider_err(
            ErrorKind::Invalid,
            op,
            format!(
                "dataset `{name}`: target column `{target}` is not in {source} (columns: {})",
                table.names().join(", ")
            ),
        ));
    }
    let profile = serde_json::to_vec(&mlctl_ml::profile::profile(&table))
        .map_err(|e| provider_err(ErrorKind::Other, op, e.to_string()))?;
    let mut splits = Vec::new();
    if let Some(split) = &req.spec.split {
        let parts = mlctl_ml::split::split(&table, split).map_err(|e| {
            provider_err(
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
            let tmp = tempfile::NamedTempFile::new()
                .map_err(|e| ProviderError::io("sagemaker", "split dataset", e))?;
            mlctl_ml::table::write_csv(t, tmp.path())
                .map_err(|e| provider_err(ErrorKind::Other, "split dataset", e.to_string()))?;
            let bytes = std::fs::read(tmp.path())
                .map_err(|e| ProviderError::io("sagemaker", "split dataset", e))?;
            splits.push((part.to_string(), bytes));
        }
    }
    Ok(Checked {
        digest,
        rows: table.n_rows() as u64,
        columns: table.names().to_vec(),
        profile,
        splits,
    })
}

fn io_kind(e: &std::io::Error) -> ErrorKind {
    match e.kind() {
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
        std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        _ => ErrorKind::Invalid,
    }
}

#[async_trait]
impl DataStore for S3DataStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            fields: crate::support::field_rules(&self.aws.target),
            poll_interval: self.aws.settings.poll_interval,
            notes: self.aws.features.notes(),
            ..Capabilities::default()
        }
    }

    async fn put_blob(&self, bytes: Vec<u8>) -> Result<String> {
        put_blob(&self.aws, bytes, "application/octet-stream").await
    }

    async fn get_blob(&self, digest: &str) -> Result<Vec<u8>> {
        check_digest(digest)?;
        let key = blob_key(&self.aws, digest);
        self.aws.get(&key).await?.ok_or_else(|| {
            provider_err(
                ErrorKind::NotFound,
                "get blob",
                format!("no blob {digest} in s3://{}/{key}", self.aws.bucket),
            )
        })
    }

    async fn has_blob(&self, digest: &str) -> Result<bool> {
        check_digest(digest)?;
        self.aws.exists(&blob_key(&self.aws, digest)).await
    }

    async fn register_dataset(
        &self,
        ctx: &OpContext,
        req: &DatasetRequest,
    ) -> Result<DatasetVersion> {
        let record = self.version_key(&ctx.project, &req.name, &req.fingerprint);
        if let Some(existing) = self.aws.get_json::<DatasetVersion>(&record).await? {
            return Ok(existing);
        }
        let source = match (&req.spec.source, &req.spec.transform) {
            (Some(s), _) => s.clone(),
            (None, Some(_)) => {
                return Err(provider_err(
                    ErrorKind::NotSupported,
                    "register dataset",
                    format!(
                        "dataset `{}` is a transform; the sagemaker target does not run transforms yet: register it on the local target, or point `source` at its output",
                        req.name
                    ),
                ));
            }
            (None, None) => {
                return Err(provider_err(
                    ErrorKind::Invalid,
                    "register dataset",
                    format!("dataset `{}` has no `source`", req.name),
                ));
            }
        };
        let columns_from_schema = || {
            req.spec
                .schema
                .as_ref()
                .map(|s| s.columns.iter().map(|c| c.name.clone()).collect())
                .unwrap_or_default()
        };
        let version = if source.starts_with("s3://") {
            // Recorded as is: the data stays where it is and SageMaker reads it from there.
            let (bucket, key) = parse_s3_uri(&source).ok_or_else(|| {
                provider_err(
                    ErrorKind::Invalid,
                    "register dataset",
                    format!("`{source}` is not an s3:// URI"),
                )
            })?;
            let etag = match self
                .aws
                .s3
                .head_object()
                .bucket(&bucket)
                .key(&key)
                .send()
                .await
            {
                Ok(h) => h.e_tag().unwrap_or_default().trim_matches('"').to_string(),
                // A prefix (a folder of files) has no object of its own.
                Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
                    String::new()
                }
                Err(e) => return Err(aws_err("HeadObject", e)),
            };
            let digest = req
                .spec
                .digest
                .clone()
                .unwrap_or_else(|| crate::names::hash(&[&source, &etag], 64));
            DatasetVersion {
                name: req.name.clone(),
                fingerprint: req.fingerprint.clone(),
                digest,
                uri: source.clone(),
                rows: 0,
                columns: columns_from_schema(),
                splits: Default::default(),
                profile_uri: None,
            }
        } else if source.contains("://") {
            return Err(provider_err(
                ErrorKind::NotSupported,
                "register dataset",
                format!(
                    "dataset `{}`: the sagemaker target reads project files and s3:// sources, not `{source}`",
                    req.name
                ),
            ));
        } else {
            let path: PathBuf = ctx.project_dir.join(&source);
            let format = req
                .spec
                .format
                .or_else(|| mlctl_ml::table::format_from_path(&path))
                .unwrap_or(DataFormat::Csv);
            let (p, r, src) = (path.clone(), req.clone(), source.clone());
            let checked = tokio::task::spawn_blocking(move || check_local(&p, format, &r, &src))
                .await
                .map_err(|e| provider_err(ErrorKind::Other, "register dataset", e.to_string()))??;
            let key = blob_key(&self.aws, &checked.digest);
            if !self.aws.exists(&key).await? {
                let content_type = if format == DataFormat::Csv {
                    "text/csv"
                } else {
                    "application/octet-stream"
                };
                self.aws.upload_file(&path, &key, content_type).await?;
            }
            let profile = put_blob(&self.aws, checked.profile, "application/json").await?;
            let mut splits = BTreeMap::new();
            for (part, bytes) in checked.splits {
                let digest = put_blob(&self.aws, bytes, "text/csv").await?;
                splits.insert(part, self.aws.uri(&blob_key(&self.aws, &digest)));
            }
            DatasetVersion {
                name: req.name.clone(),
                fingerprint: req.fingerprint.clone(),
                digest: checked.digest,
                uri: self.aws.uri(&key),
                rows: checked.rows,
                columns: checked.columns,
                splits,
                profile_uri: Some(self.aws.uri(&blob_key(&self.aws, &profile))),
            }
        };
        self.aws.put_json(&record, &version).await?;
        Ok(version)
    }

    async fn delete_dataset(&self, ctx: &OpContext, name: &str) -> Result<()> {
        // Blobs stay: other versions and training jobs' lineage point at them.
        let dir = self
            .aws
            .key(&format!(".mlctl/datasets/{}/{name}/", ctx.project));
        for key in self.aws.list(&dir).await? {
            self.aws.delete(&key).await?;
        }
        Ok(())
    }
}
