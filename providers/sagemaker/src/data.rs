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
use mlctl_core::objectstore::datasets;
use mlctl_core::{
    Capabilities, DataStore, DatasetRequest, DatasetVersion, ErrorKind, OpContext, ProviderError,
    components::InPlaceRequest,
};
use mlctl_spec::DataFormat;
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
}

/// The key of a blob.
pub(crate) fn blob_key(aws: &Aws, digest: &str) -> String {
    datasets::blob_key(aws, digest)
}

/// Stores bytes content-addressed; returns the digest.
pub(crate) async fn put_blob(aws: &Aws, bytes: Vec<u8>, content_type: &str) -> Result<String> {
    datasets::put_blob(aws, bytes, content_type).await
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
        datasets::get_blob(&*self.aws, digest).await
    }

    async fn has_blob(&self, digest: &str) -> Result<bool> {
        datasets::has_blob(&*self.aws, digest).await
    }

    async fn register_dataset(
        &self,
        ctx: &OpContext,
        req: &DatasetRequest,
    ) -> Result<DatasetVersion> {
        if let Some(existing) = datasets::registered(&*self.aws, &ctx.project, req).await? {
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
        let checked =
            datasets::check_table_blocking("sagemaker", &path, format, req, &source).await?;
        let key = blob_key(&self.aws, &checked.digest);
        if !self.aws.exists(&key).await? {
            let content_type = datasets::table_content_type(format);
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
        // S3 objects take only 10 tags: the Dataset's tags (mlctl's and its labels) are kept
        // with the version instead.
        datasets::record_version(&*self.aws, &ctx.project, req, checked, &key).await
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
        datasets::update_tags(&*self.aws, &ctx.project, req)
            .await
            .map(|_| ())
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
        datasets::delete_versions(&*self.aws, &ctx.project, name).await
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
