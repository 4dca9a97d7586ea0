//! S3 object helpers over the target's bucket: JSON records, conditional puts, listings and
//! multipart uploads.

use crate::aws::Aws;
use crate::error::{aws_err, provider_err};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use mlctl_core::error::Result;
use mlctl_core::objectstore::ObjectStore;
use mlctl_core::{ErrorKind, ProviderError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;

/// What a conditional put asks of the object there.
enum Condition<'a> {
    /// Nothing is at the key.
    Absent,
    /// The object there has this ETag.
    Match(&'a str),
}

/// Outcome of a put that must not overwrite: `AlreadyThere` on HTTP 412, or 409 for a
/// concurrent writer.
pub(crate) use mlctl_core::objectstore::Created;
pub(crate) use mlctl_core::objectstore::bounded;

impl Aws {
    /// Reads an object; `None` when it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.get_from(&self.bucket, key).await
    }

    /// Reads an object of any bucket; `None` when it does not exist.
    pub async fn get_from(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>> {
        match self.s3.get_object().bucket(bucket).key(key).send().await {
            Ok(out) => {
                let bytes = out.body.collect().await.map_err(|e| {
                    provider_err(
                        ErrorKind::Transient,
                        "GetObject",
                        format!("reading s3://{bucket}/{key}: {e}"),
                    )
                })?;
                Ok(Some(bytes.into_bytes().to_vec()))
            }
            Err(e) if e.as_service_error().is_some_and(|se| se.is_no_such_key()) => Ok(None),
            Err(e) => Err(aws_err("GetObject", e)),
        }
    }

    /// Reads a JSON object; `None` when it does not exist.
    pub async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.get(key).await? {
            None => Ok(None),
            Some(bytes) => self.record(key, &bytes).map(Some),
        }
    }

    /// The mlctl record in the bytes of the object at `key` (its format version checked).
    fn record<T: DeserializeOwned>(&self, key: &str, bytes: &[u8]) -> Result<T> {
        mlctl_core::objectstore::parse_record("sagemaker", &self.uri(key), bytes)
    }

    /// Writes an object.
    pub async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<()> {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| aws_err("PutObject", e))?;
        Ok(())
    }

    /// Writes a JSON object.
    pub async fn put_json<T: Serialize>(&self, key: &str, value: &T) -> Result<()> {
        self.put(key, to_json(value)?, "application/json").await
    }

    /// Writes an object only if nothing is at `key` (`If-None-Match: *`).
    pub async fn put_if_absent(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<Created> {
        Ok(
            if self
                .put_conditional(key, bytes, content_type, Condition::Absent)
                .await?
            {
                Created::Yes
            } else {
                Created::AlreadyThere
            },
        )
    }

    /// Writes an object if `condition` holds; `false` when it does not (HTTP 412, 409 for a
    /// concurrent writer, or 404 for an `If-Match` on an object that is gone).
    async fn put_conditional(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
        condition: Condition<'_>,
    ) -> Result<bool> {
        let put = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type);
        let put = match condition {
            Condition::Absent => put.if_none_match("*"),
            Condition::Match(etag) => put.if_match(etag),
        };
        match put.body(ByteStream::from(bytes)).send().await {
            Ok(_) => Ok(true),
            Err(e) if precondition_failed(&e) => Ok(false),
            Err(e) => Err(aws_err("PutObject", e)),
        }
    }

    /// Reads an object with its ETag, for a write conditional on it; `None` when it does not
    /// exist.
    pub async fn get_tagged(&self, key: &str) -> Result<Option<(Vec<u8>, String)>> {
        let bucket = &self.bucket;
        let out = match self.s3.get_object().bucket(bucket).key(key).send().await {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|se| se.is_no_such_key()) => {
                return Ok(None);
            }
            Err(e) => return Err(aws_err("GetObject", e)),
        };
        let etag = out.e_tag().unwrap_or_default().to_string();
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| {
                provider_err(
                    ErrorKind::Transient,
                    "GetObject",
                    format!("reading s3://{bucket}/{key}: {e}"),
                )
            })?
            .into_bytes();
        Ok(Some((bytes.to_vec(), etag)))
    }

    /// Overwrites an object only if it is still the one with `etag` (`If-Match`); `false`
    /// when it changed or is gone.
    pub async fn put_if_match(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
        etag: &str,
    ) -> Result<bool> {
        self.put_conditional(key, bytes, content_type, Condition::Match(etag))
            .await
    }

    /// Deletes an object only if it is still the one with `etag` (`If-Match`); `false` when
    /// it changed or is gone.
    pub async fn delete_if_match(&self, key: &str, etag: &str) -> Result<bool> {
        let res = self
            .s3
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .if_match(etag)
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if precondition_failed(&e) => Ok(false),
            Err(e) => Err(aws_err("DeleteObject", e)),
        }
    }

    /// Whether an object exists.
    pub async fn exists(&self, key: &str) -> Result<bool> {
        match self
            .s3
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error().is_some_and(|se| se.is_not_found())
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) =>
            {
                Ok(false)
            }
            Err(e) => Err(aws_err("HeadObject", e)),
        }
    }

    /// Deletes an object (a missing one is fine).
    pub async fn delete(&self, key: &str) -> Result<()> {
        self.s3
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| aws_err("DeleteObject", e))?;
        Ok(())
    }

    /// Every key under `prefix`, in key order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.list_in(&self.bucket, prefix).await
    }

    /// Every key under `prefix` of any bucket, in key order.
    pub async fn list_in(&self, bucket: &str, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .s3
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| aws_err("ListObjectsV2", e))?;
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
            match out.next_continuation_token() {
                Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// Uploads a local file to `key`, in parts when it is larger than the multipart threshold.
    pub async fn upload_file(&self, path: &Path, key: &str, content_type: &str) -> Result<()> {
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| ProviderError::io("sagemaker", "upload", e))?
            .len();
        if size <= self.settings.multipart_threshold {
            let body = ByteStream::from_path(path).await.map_err(|e| {
                provider_err(
                    ErrorKind::Other,
                    "PutObject",
                    format!("{}: {e}", path.display()),
                )
            })?;
            self.s3
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_type(content_type)
                .body(body)
                .send()
                .await
                .map_err(|e| aws_err("PutObject", e))?;
            return Ok(());
        }
        let upload = self
            .s3
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .send()
            .await
            .map_err(|e| aws_err("CreateMultipartUpload", e))?;
        let upload_id = upload
            .upload_id()
            .ok_or_else(|| {
                provider_err(
                    ErrorKind::Other,
                    "CreateMultipartUpload",
                    "S3 returned no upload id",
                )
            })?
            .to_string();
        match self.upload_parts(path, key, &upload_id, size).await {
            Ok(()) => Ok(()),
            Err(e) => {
                // Leave no half upload behind (it would be billed until a lifecycle rule runs).
                let _ = self
                    .s3
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                Err(e)
            }
        }
    }

    async fn upload_parts(&self, path: &Path, key: &str, upload_id: &str, size: u64) -> Result<()> {
        // S3 allows 10,000 parts: grow the part size for very large files.
        let part_size = self
            .settings
            .part_size
            .max(size.div_ceil(10_000))
            .max(5 << 20);
        let mut parts = Vec::new();
        let mut offset = 0u64;
        let mut number = 1i32;
        while offset < size {
            let len = part_size.min(size - offset);
            let body = ByteStream::read_from()
                .path(path)
                .offset(offset)
                .length(Length::Exact(len))
                .build()
                .await
                .map_err(|e| {
                    provider_err(
                        ErrorKind::Other,
                        "UploadPart",
                        format!("{}: {e}", path.display()),
                    )
                })?;
            let out = self
                .s3
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .body(body)
                .send()
                .await
                .map_err(|e| aws_err("UploadPart", e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag().map(str::to_string))
                    .build(),
            );
            offset += len;
            number += 1;
        }
        self.s3
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| aws_err("CompleteMultipartUpload", e))?;
        Ok(())
    }
}

/// Serializes a record.
pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    mlctl_core::objectstore::to_json("sagemaker", value)
}

/// The bucket as the shared state store and dataset bookkeeping see it
/// ([`mlctl_core::objectstore`]): the methods above, under the same names.
#[async_trait::async_trait]
impl ObjectStore for Aws {
    fn provider(&self) -> &str {
        "sagemaker"
    }
    fn key(&self, rel: &str) -> String {
        Aws::key(self, rel)
    }
    fn uri(&self, key: &str) -> String {
        Aws::uri(self, key)
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Aws::get(self, key).await
    }
    async fn get_tagged(&self, key: &str) -> Result<Option<(Vec<u8>, String)>> {
        Aws::get_tagged(self, key).await
    }
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<()> {
        Aws::put(self, key, bytes, content_type).await
    }
    async fn put_if_absent(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<Created> {
        Aws::put_if_absent(self, key, bytes, content_type).await
    }
    async fn put_if_match(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
        etag: &str,
    ) -> Result<bool> {
        Aws::put_if_match(self, key, bytes, content_type, etag).await
    }
    async fn delete_if_match(&self, key: &str, etag: &str) -> Result<bool> {
        Aws::delete_if_match(self, key, etag).await
    }
    async fn exists(&self, key: &str) -> Result<bool> {
        Aws::exists(self, key).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        Aws::delete(self, key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        Aws::list(self, prefix).await
    }
}

/// Whether a conditional request failed its condition: 412, 409 for a concurrent writer, or
/// 404 for an `If-Match` on an object that is gone.
fn precondition_failed<E>(
    e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> bool {
    matches!(
        e.raw_response().map(|r| r.status().as_u16()),
        Some(412) | Some(409) | Some(404)
    )
}
