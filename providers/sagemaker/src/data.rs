//! Content-addressed blobs and dataset versions on S3.
//!
//! Blobs live at `objects/<blake3>` under the target's prefix and are never overwritten (an
//! existing key is skipped after a HeadObject). A dataset version is a JSON record at
//! `.mlctl/datasets/<project>/<name>/<fingerprint>.json` (with the Dataset's tags: S3 objects
//! take only 10); registering the same fingerprint again returns that record without reading
//! the data.
//!
//! A project file, an `s3://` object and a transform's output (written by its Processing job,
//! `transform.rs`) are checked the same way (digest pin, schema, target column, split): an
//! object is streamed to a temporary file first, up to
//! [`crate::aws::Settings::max_s3_source`], and stored content-addressed like a project file.

use crate::aws::{Aws, parse_s3_uri};
use crate::error::{aws_err, provider_err};
use async_trait::async_trait;
use mlctl_core::error::Result;
use mlctl_core::{
    Capabilities, DataStore, DatasetRequest, DatasetVersion, ErrorKind, OpContext, ProviderError,
    components::InPlaceRequest,
};
use mlctl_spec::DataFormat;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

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

/// A dataset version as recorded on S3: the version, and the tags of the Dataset that
/// registered it (its blobs are S3 objects, which take only 10 tags).
#[derive(Debug, Serialize, Deserialize)]
struct StoredVersion {
    #[serde(flatten)]
    version: DatasetVersion,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    tags: BTreeMap<String, String>,
}

/// An `s3://` source read into a temporary file.
struct Fetched {
    bucket: String,
    key: String,
    /// The ETag of the version that was read: the copy is made of that version only.
    etag: Option<String>,
    size: u64,
    file: tempfile::NamedTempFile,
}

/// `bucket/key` for CopyObject's `x-amz-copy-source`, which S3 reads URL-encoded: every byte
/// but unreserved characters and `/` is percent-encoded, so a key with a space, `+`, `%` or
/// non-ASCII names the object it is.
fn copy_source(bucket: &str, key: &str) -> String {
    let mut out = String::with_capacity(bucket.len() + key.len() + 1);
    for b in bucket
        .bytes()
        .chain(std::iter::once(b'/'))
        .chain(key.bytes())
    {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// S3 copies one object in one request up to 5 GiB; larger ones are uploaded in parts.
const COPY_LIMIT: u64 = 5 << 30;

impl S3DataStore {
    /// Streams an `s3://` source object to a temporary file (never whole in memory), refusing
    /// one larger than [`crate::aws::Settings::max_s3_source`].
    async fn fetch_source(&self, req: &DatasetRequest, source: &str) -> Result<Fetched> {
        let op = "register dataset";
        let name = &req.name;
        let (bucket, key) = parse_s3_uri(source)
            .filter(|(_, k)| !k.is_empty() && !source.ends_with('/'))
            .ok_or_else(|| {
                provider_err(
                    ErrorKind::Invalid,
                    op,
                    format!("dataset `{name}`: `{source}` names no object; point `source` at one CSV or Parquet object (s3://bucket/path/data.csv)"),
                )
            })?;
        // Exactly the version the plan saw: that VersionId, or the object only while it has
        // that ETag.
        let planned = req.source_version.as_deref();
        let mut get = self.aws.s3.get_object().bucket(&bucket).key(&key);
        if let Some(v) = planned.and_then(|p| p.strip_prefix("version-id ")) {
            get = get.version_id(v);
        } else if let Some(etag) = planned.and_then(|p| p.strip_prefix("etag ")) {
            get = get.if_match(etag);
        }
        let out = match get.send().await {
            Ok(o) => o,
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => {
                return Err(provider_err(
                    ErrorKind::Precondition,
                    op,
                    format!(
                        "dataset `{name}`: {source} changed since the plan (the plan saw {}); run `mlctl plan` again to see the new data",
                        planned.unwrap_or_default()
                    ),
                ));
            }
            Err(e)
                if e.as_service_error().is_some_and(|se| se.is_no_such_key())
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) =>
            {
                return Err(provider_err(
                    ErrorKind::NotFound,
                    op,
                    format!(
                        "dataset `{name}`: {source} does not exist (a prefix of several files is not read: point `source` at one CSV or Parquet object)"
                    ),
                ));
            }
            Err(e) => return Err(aws_err("GetObject", e)),
        };
        let size = out.content_length().unwrap_or(0).max(0) as u64;
        let etag = out.e_tag().map(str::to_string);
        let cap = self.aws.settings.max_s3_source;
        let too_big = |size: u64| {
            provider_err(
                ErrorKind::Invalid,
                op,
                format!(
                    "dataset `{name}`: {source} is {}, more than the {} mlctl reads to check a dataset (digest, schema, split); raise MLCTL_SM_MAX_S3_SOURCE_MB, or register a smaller file",
                    mib(size),
                    mib(cap)
                ),
            )
        };
        if size > cap {
            return Err(too_big(size));
        }
        let suffix = Path::new(&key)
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        let file = tempfile::Builder::new()
            .prefix("mlctl-s3-source-")
            .suffix(&suffix)
            .tempfile()
            .map_err(|e| ProviderError::io("sagemaker", op, e))?;
        let mut writer = tokio::fs::File::from_std(
            file.reopen()
                .map_err(|e| ProviderError::io("sagemaker", op, e))?,
        );
        let mut body = out.body;
        let mut read = 0u64;
        while let Some(chunk) = body.try_next().await.map_err(|e| {
            provider_err(
                ErrorKind::Transient,
                "GetObject",
                format!("reading {source}: {e}"),
            )
        })? {
            read += chunk.len() as u64;
            if read > cap {
                return Err(too_big(read));
            }
            writer
                .write_all(&chunk)
                .await
                .map_err(|e| ProviderError::io("sagemaker", op, e))?;
        }
        writer
            .flush()
            .await
            .map_err(|e| ProviderError::io("sagemaker", op, e))?;
        Ok(Fetched {
            bucket,
            key,
            etag,
            size: read,
            file,
        })
    }
}

fn mib(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b => format!("{b} bytes"),
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
    let limits = mlctl_ml::table::ReadLimits::of(req.spec.limits.as_ref());
    let table = mlctl_ml::table::read_limited(path, format, limits)
        .map_err(|e| provider_err(ErrorKind::Invalid, op, format!("dataset `{name}`: {e}")))?;
    if let Some(schema) = &req.spec.schema {
        let report = mlctl_ml::validate::validate(&table, schema).in_file(source.to_string());
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
                mlctl_spec::suggest::list(table.names())
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
            fields: crate::support::field_rules(),
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
            // The transform's output, written by its Processing job to the job's output
            // prefix, is then read and checked as an s3:// source is.
            (None, Some(t)) => crate::transform::run(&self.aws, ctx, req, t).await?,
            (None, None) => {
                return Err(provider_err(
                    ErrorKind::Invalid,
                    "register dataset",
                    format!("dataset `{}` has no `source`", req.name),
                ));
            }
        };
        if source.contains("://") && !source.starts_with("s3://") {
            return Err(provider_err(
                ErrorKind::NotSupported,
                "register dataset",
                format!(
                    "dataset `{}`: the sagemaker target reads project files and s3:// sources, not `{source}`",
                    req.name
                ),
            ));
        }
        // An s3:// object is read (streamed to a temporary file) and checked exactly as a
        // project file is; what is kept is a content-addressed copy, so the version never
        // changes under a training job when the source object does.
        let fetched = if source.starts_with("s3://") {
            Some(self.fetch_source(req, &source).await?)
        } else {
            None
        };
        let path: PathBuf = match &fetched {
            Some(f) => f.file.path().to_path_buf(),
            None => ctx.project_dir.join(&source),
        };
        let format = req
            .spec
            .format
            .or_else(|| mlctl_ml::table::format_from_path(Path::new(&source)))
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
            match &fetched {
                Some(f) if f.size < COPY_LIMIT => {
                    // Only the version that was checked: if the object changed since, the
                    // copy is refused (412) rather than storing other bytes under this digest.
                    let copied = self
                        .aws
                        .s3
                        .copy_object()
                        .bucket(&self.aws.bucket)
                        .key(&key)
                        .copy_source(copy_source(&f.bucket, &f.key))
                        .set_copy_source_if_match(f.etag.clone())
                        .content_type(content_type)
                        .send()
                        .await;
                    match copied {
                        Ok(_) => {}
                        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => {
                            return Err(provider_err(
                                ErrorKind::Transient,
                                "register dataset",
                                format!(
                                    "dataset `{}`: {source} changed while mlctl was checking it; apply again to check the new version",
                                    req.name
                                ),
                            ));
                        }
                        Err(e) => return Err(aws_err("CopyObject", e)),
                    }
                }
                _ => self.aws.upload_file(&path, &key, content_type).await?,
            }
        }
        let profile = put_blob(&self.aws, checked.profile, "application/json").await?;
        let mut splits = BTreeMap::new();
        for (part, bytes) in checked.splits {
            let digest = put_blob(&self.aws, bytes, "text/csv").await?;
            splits.insert(part, self.aws.uri(&blob_key(&self.aws, &digest)));
        }
        let version = DatasetVersion {
            name: req.name.clone(),
            fingerprint: req.fingerprint.clone(),
            digest: checked.digest,
            uri: self.aws.uri(&key),
            rows: checked.rows,
            columns: checked.columns,
            splits,
            profile_uri: Some(self.aws.uri(&blob_key(&self.aws, &profile))),
        };
        // S3 objects take only 10 tags: the Dataset's tags (mlctl's and its labels) are kept
        // with the version instead.
        let stored = StoredVersion {
            version,
            tags: req.tags.to_map(),
        };
        self.aws.put_json(&record, &stored).await?;
        Ok(stored.version)
    }

    async fn read_profile(
        &self,
        _ctx: &OpContext,
        version: &DatasetVersion,
    ) -> Result<Option<Vec<u8>>> {
        let Some(uri) = &version.profile_uri else {
            return Ok(None);
        };
        let Some((bucket, key)) = crate::aws::parse_s3_uri(uri) else {
            return Err(provider_err(
                ErrorKind::Invalid,
                "read profile",
                format!(
                    "the profile of dataset `{}` is at `{uri}`, not an s3:// URI",
                    version.name
                ),
            ));
        };
        match self.aws.get_from(&bucket, &key).await? {
            Some(b) => Ok(Some(b)),
            None => Err(provider_err(
                ErrorKind::NotFound,
                "read profile",
                format!(
                    "the profile of dataset `{}` ({uri}) is gone; apply the dataset again",
                    version.name
                ),
            )),
        }
    }

    async fn update_in_place(&self, ctx: &OpContext, req: &InPlaceRequest) -> Result<()> {
        let record = self.version_key(&ctx.project, &req.name, &req.fingerprint);
        let Some(mut stored) = self.aws.get_json::<StoredVersion>(&record).await? else {
            return Err(provider_err(
                ErrorKind::NotFound,
                "update dataset tags",
                format!(
                    "dataset `{}` has no version {} on S3 any more; run `mlctl apply` with a change that registers it again",
                    req.name,
                    &req.fingerprint[..req.fingerprint.len().min(12)]
                ),
            ));
        };
        stored.tags = req.tags.to_map();
        self.aws.put_json(&record, &stored).await
    }

    async fn source_version(&self, _ctx: &OpContext, source: &str) -> Result<String> {
        let op = "source version";
        let Some((bucket, key)) = parse_s3_uri(source).filter(|(_, k)| !k.is_empty()) else {
            return Err(provider_err(
                ErrorKind::NotSupported,
                op,
                format!(
                    "the sagemaker target reads project files and s3:// objects, not `{source}`"
                ),
            ));
        };
        match self
            .aws
            .s3
            .head_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
        {
            // A versioned bucket names the version; otherwise the ETag changes with the
            // content.
            Ok(h) => match (h.version_id().filter(|v| *v != "null"), h.e_tag()) {
                (Some(v), _) => Ok(format!("version-id {v}")),
                (None, Some(etag)) => Ok(format!("etag {etag}")),
                (None, None) => Err(provider_err(
                    ErrorKind::Invalid,
                    op,
                    format!(
                        "{source} has neither a VersionId nor an ETag; pin its content with `digest:` in the Dataset"
                    ),
                )),
            },
            Err(e)
                if e.as_service_error().is_some_and(|se| se.is_not_found())
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) =>
            {
                Err(provider_err(
                    ErrorKind::NotFound,
                    op,
                    format!("{source} does not exist; point `source` at one CSV or Parquet object"),
                ))
            }
            Err(e) => Err(aws_err("HeadObject", e)),
        }
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

#[cfg(test)]
mod tests {
    use super::copy_source;

    #[test]
    fn copy_sources_are_url_encoded_except_the_slashes() {
        assert_eq!(copy_source("b", "data/iris.csv"), "b/data/iris.csv");
        assert_eq!(
            copy_source("b", "my data/a+b%c é.csv"),
            "b/my%20data/a%2Bb%25c%20%C3%A9.csv"
        );
    }
}
