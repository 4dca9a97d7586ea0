//! Blob Storage: the target's `storage` container, through the official `azure_storage_blob`.
//!
//! Names are relative to the container; [`Blob::key`] puts a name under the target's prefix.
//! Requests are authorised by an Entra ID token (scope `https://storage.azure.com/.default`,
//! the role "Storage Blob Data Contributor" on the container) or by the target's SAS token,
//! appended to every request URL by the SDK. The SAS never reaches a message: every URL in
//! an error is cut before its query, and the token itself is masked wherever it appears.
//!
//! Conditions are the SDK's own options: a create is `If-None-Match: *` (a blob already there
//! answers 409 `BlobAlreadyExists`, or 412), and replacing or deleting what was read is
//! `If-Match: <ETag>` (412 when it changed, 404 when it is gone). That is what the apply lock
//! rests on, so no lease is needed: a lease would have to be renewed every 60 s at most,
//! while the lock's own heartbeat is what mlctl already keeps.
//!
//! Blobs above [`Settings::block_threshold`] are uploaded as blocks of
//! [`Settings::block_size`] (Put Block, then Put Block List with the conditions); a file is
//! read one block at a time, never whole.

use crate::azure::Settings;
use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, Etag, RequestContent, StatusCode, Url};
use azure_core::http::{ExponentialRetryOptions, RetryOptions};
use azure_storage_blob::models::{
    BlobClientDeleteOptions, BlobContainerClientListBlobsOptions, BlockBlobClientUploadOptions,
    BlockLookupList,
};
use azure_storage_blob::{BlobContainerClient, BlobContainerClientOptions};
use futures::TryStreamExt;
use mlctl_core::error::Result;
use mlctl_core::objectstore::{Created, ObjectStore};
use mlctl_core::{ErrorKind, ProviderError};
use std::num::NonZero;
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PROVIDER: &str = "azureml";

/// The Azurite SAS signer of the integration tests, for the tests below that need Azurite.
#[cfg(test)]
#[path = "../tests/common/sas.rs"]
#[allow(dead_code)] // shared with the integration tests, which use all of it
mod test_sas;

/// How blob requests are authorised.
#[derive(Clone)]
pub enum BlobAuth {
    /// A SAS token (`sv=...&sig=...`, with or without the leading `?`), for the container or
    /// the account.
    Sas(String),
    /// Entra ID tokens; needs an https storage URL.
    Token(Arc<dyn TokenCredential>),
}

impl std::fmt::Debug for BlobAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlobAuth::Sas(_) => f.write_str("Sas(..)"),
            BlobAuth::Token(_) => f.write_str("Token(..)"),
        }
    }
}

/// Where a `storage` URL points: the container's URL and the prefix inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageUrl {
    /// `scheme://host[:port][/account]/container`, no query.
    pub container_url: Url,
    /// The container's name.
    pub container: String,
    /// The path under the container, without leading or trailing `/` (empty for none).
    pub prefix: String,
}

impl StorageUrl {
    /// Parses `https://ACCOUNT.blob.core.windows.net/CONTAINER[/prefix]`, or the path-style
    /// form of emulators and IP endpoints, `http://127.0.0.1:10000/ACCOUNT/CONTAINER[/prefix]`
    /// (a host that is an IP address or `localhost` takes the account as the first segment,
    /// as the Azure SDKs do).
    ///
    /// # Errors
    /// `Invalid`, naming what to write instead: not http(s), a query (a SAS belongs in `sas:
    /// ${env:NAME}`), no container.
    pub fn parse(storage: &str) -> Result<StorageUrl> {
        let bad = |why: &str| {
            crate::invalid(
                "storage",
                format!(
                    "`storage: {}` {why}; write the container URL, e.g. https://ACCOUNT.blob.core.windows.net/CONTAINER/optional/prefix",
                    redact(storage, None)
                ),
            )
        };
        let url = Url::parse(storage.trim()).map_err(|e| bad(&format!("is not a URL ({e})")))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(bad("is not an https URL"));
        }
        if url.query().is_some() {
            return Err(crate::invalid(
                "storage",
                "`storage` carries a query (a SAS token?): put the container URL in `storage` and the token in `sas: ${env:NAME}`, so it never lands in git",
            ));
        }
        let host = url.host_str().unwrap_or_default();
        let path_style = host == "localhost"
            || host.parse::<std::net::IpAddr>().is_ok()
            || host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok();
        let mut segments: Vec<String> = url
            .path_segments()
            .map(|s| s.filter(|p| !p.is_empty()).map(decode).collect())
            .unwrap_or_default();
        let account = if path_style {
            if segments.is_empty() {
                return Err(bad(
                    "names no account (path-style URLs are /ACCOUNT/CONTAINER)",
                ));
            }
            Some(segments.remove(0))
        } else {
            None
        };
        if segments.is_empty() {
            return Err(bad("names no container"));
        }
        let container = segments.remove(0);
        let mut container_url = url.clone();
        container_url.set_fragment(None);
        {
            let mut path = container_url
                .path_segments_mut()
                .map_err(|_| bad("cannot be a base URL"))?;
            path.clear();
            if let Some(account) = &account {
                path.push(account);
            }
            path.push(&container);
        }
        Ok(StorageUrl {
            container_url,
            container,
            prefix: segments.join("/"),
        })
    }
}

fn decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
            && let Ok(b) = u8::from_str_radix(&segment[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The target's container (and prefix), authorised by an Entra ID token or a SAS.
pub struct Blob {
    client: BlobContainerClient,
    at: StorageUrl,
    /// The SAS as given, to mask it should a message ever carry it.
    sas: Option<String>,
    /// To reach another container of the account the same way ([`Blob::in_container`]).
    auth: BlobAuth,
    settings: Settings,
    block_threshold: u64,
    block_size: u64,
}

impl Blob {
    /// The container and prefix of `storage_url`, authorised by `auth`; retries (429, 5xx,
    /// connection errors) as [`Settings`] says. Makes no request.
    ///
    /// # Errors
    /// `Invalid` for a URL [`StorageUrl::parse`] refuses, or a token credential with an http
    /// URL (tokens go over https only).
    pub fn connect(storage_url: &str, auth: BlobAuth, settings: &Settings) -> Result<Blob> {
        let at = StorageUrl::parse(storage_url)?;
        let mut url = at.container_url.clone();
        let kept = auth.clone();
        let (credential, sas) = match auth {
            BlobAuth::Sas(token) => {
                let token = token.trim().trim_start_matches('?').to_string();
                if token.is_empty() {
                    return Err(crate::invalid(
                        "storage",
                        "the target's `sas` is empty; set the variable it names to a SAS token for the container (sv=...&sig=...)",
                    ));
                }
                url.set_query(Some(&token));
                (None, Some(token))
            }
            BlobAuth::Token(credential) => {
                if url.scheme() != "https" {
                    return Err(crate::invalid(
                        "storage",
                        format!(
                            "`storage: {}` is http: Entra ID tokens are sent over https only; use https, or a SAS token (`sas: ${{env:NAME}}`) for an emulator",
                            at.container_url
                        ),
                    ));
                }
                (Some(credential), None)
            }
        };
        let options = BlobContainerClientOptions {
            client_options: client_options(settings),
            ..Default::default()
        };
        let client = BlobContainerClient::new(url, credential, Some(options))
            .map_err(|e| blob_err("connect", at.container_url.as_str(), sas.as_deref(), e))?;
        Ok(Blob {
            client,
            at,
            sas,
            auth: kept,
            settings: settings.clone(),
            block_threshold: settings.block_threshold.max(1),
            block_size: settings.block_size.max(1),
        })
    }

    /// Another container of the same account, with the same authorisation and no prefix
    /// (an `az://CONTAINER/path` source). A SAS made for one container is refused by the
    /// others (403, with a hint).
    pub fn in_container(&self, container: &str) -> Result<Blob> {
        let mut url = self.at.container_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop().push(container);
        }
        Blob::connect(url.as_str(), self.auth.clone(), &self.settings)
    }

    /// The container's name (the last segment of its URL).
    pub fn container_name(&self) -> String {
        self.at
            .container_url
            .path_segments()
            .and_then(|mut s| s.next_back().map(str::to_string))
            .unwrap_or_default()
    }

    /// The name of `rel` under the target's prefix.
    pub fn key(&self, rel: &str) -> String {
        if self.at.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.at.prefix)
        }
    }

    /// The https URL of a blob (a data asset's, a job input's or output's `uri`), without
    /// any SAS. A name ending in `/` gives a folder URL.
    pub fn url(&self, key: &str) -> String {
        let mut url = self.at.container_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.extend(key.split('/'));
        }
        url.to_string()
    }

    /// The blob name of an https URL inside the container, as [`Blob::url`] made it (a
    /// model version's `modelUri`, say); `None` for a URL elsewhere.
    pub fn key_of_url(&self, url: &str) -> Option<String> {
        let url = Url::parse(url).ok()?;
        let base = &self.at.container_url;
        if url.scheme() != base.scheme()
            || url.host_str() != base.host_str()
            || url.port_or_known_default() != base.port_or_known_default()
        {
            return None;
        }
        let mut base_segments: Vec<&str> = base.path_segments()?.collect();
        if base_segments.last() == Some(&"") {
            base_segments.pop();
        }
        let segments: Vec<&str> = url.path_segments()?.collect();
        if segments.len() <= base_segments.len()
            || segments[..base_segments.len()] != base_segments[..]
        {
            return None;
        }
        let key: Vec<String> = segments[base_segments.len()..]
            .iter()
            .map(|s| decode(s))
            .collect();
        Some(key.join("/"))
    }

    fn err(&self, op: &str, key: &str, e: azure_core::Error) -> ProviderError {
        blob_err(op, &self.url(key), self.sas.as_deref(), e)
    }

    /// The bytes of a blob; `None` when it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.get_tagged(key).await?.map(|(bytes, _)| bytes))
    }

    /// The bytes of a blob and its ETag; `None` when it does not exist.
    pub async fn get_tagged(&self, key: &str) -> Result<Option<(Vec<u8>, String)>> {
        let blob = self.client.blob_client(key);
        let res = match blob.download(None).await {
            Ok(r) => r,
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => return Ok(None),
            Err(e) => return Err(self.err("get blob", key, e)),
        };
        let etag = res
            .properties
            .etag
            .as_ref()
            .map(|e| e.to_string())
            .unwrap_or_default();
        let bytes = res
            .body
            .collect()
            .await
            .map_err(|e| self.err("get blob", key, e))?;
        Ok(Some((bytes.to_vec(), etag)))
    }

    /// Streams a blob to a file (never whole in memory), refusing one larger than `cap`
    /// bytes; returns its size and ETag, or `None` when it does not exist. With `if_match`,
    /// only that version is read (`Precondition` when the blob changed).
    pub async fn download_to_file(
        &self,
        key: &str,
        path: &Path,
        cap: u64,
        if_match: Option<&str>,
    ) -> Result<Option<(u64, String)>> {
        let op = "download blob";
        let blob = self.client.blob_client(key);
        let options = azure_storage_blob::models::BlobClientDownloadOptions {
            if_match: if_match.map(Etag::from),
            ..Default::default()
        };
        let res = match blob.download(Some(options)).await {
            Ok(r) => r,
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => return Ok(None),
            Err(e) => return Err(self.err(op, key, e)),
        };
        let too_big = |size: u64| {
            ProviderError::new(
                ErrorKind::Invalid,
                PROVIDER,
                op,
                format!(
                    "{} is {size} bytes, more than the {cap} mlctl reads from it",
                    self.url(key)
                ),
            )
        };
        if let Some(len) = res.properties.content_length.filter(|l| *l > cap) {
            return Err(too_big(len));
        }
        let etag = res
            .properties
            .etag
            .as_ref()
            .map(|e| e.to_string())
            .unwrap_or_default();
        let io = |e| ProviderError::io(PROVIDER, op, e);
        let mut file = tokio::fs::File::create(path).await.map_err(io)?;
        let mut body = res.body;
        let mut read = 0u64;
        while let Some(chunk) = body.try_next().await.map_err(|e| self.err(op, key, e))? {
            read += chunk.len() as u64;
            if read > cap {
                return Err(too_big(read));
            }
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
        Ok(Some((read, etag)))
    }

    /// The ETag of a blob; `None` when it does not exist.
    pub async fn etag(&self, key: &str) -> Result<Option<String>> {
        use azure_storage_blob::models::BlobClientGetPropertiesResultHeaders;
        match self.client.blob_client(key).get_properties(None).await {
            Ok(r) => Ok(Some(
                r.etag()
                    .ok()
                    .flatten()
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
            )),
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => Ok(None),
            Err(e) => Err(self.err("blob properties", key, e)),
        }
    }

    /// Writes a blob (replacing it), in blocks when large.
    pub async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<()> {
        self.put_with(key, bytes, content_type, Condition::None)
            .await
            .map(|_| ())
    }

    /// Writes a blob if `condition` holds; `false` when it does not (409, 412, or 404 for an
    /// `If-Match` on a blob that is gone).
    async fn put_with(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
        condition: Condition<'_>,
    ) -> Result<bool> {
        let len = bytes.len() as u64;
        // The SDK sends one Put Blob up to `partition_size`, and blocks of that size above.
        let partition = if len > self.block_threshold {
            self.block_size
        } else {
            len.max(1)
        };
        let mut options = BlockBlobClientUploadOptions {
            blob_content_type: Some(content_type.to_string()),
            partition_size: NonZero::new(partition),
            ..Default::default()
        };
        match condition {
            Condition::None => {}
            Condition::Absent => options.if_none_match = Some(Etag::from("*")),
            Condition::Match(etag) => options.if_match = Some(Etag::from(etag)),
        }
        let content: RequestContent<azure_core::Bytes, azure_core::http::NoFormat> =
            azure_core::Bytes::from(bytes).into();
        match self
            .client
            .blob_client(key)
            .upload(content, Some(options))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if condition.failed(&e) => Ok(false),
            Err(e) => Err(self.err("put blob", key, e)),
        }
    }

    /// Uploads a file, in blocks when large (read one block at a time).
    pub async fn upload_file(&self, path: &Path, key: &str, content_type: &str) -> Result<()> {
        let op = "upload blob";
        let io = |e| ProviderError::io(PROVIDER, op, e);
        let size = tokio::fs::metadata(path).await.map_err(io)?.len();
        if size <= self.block_threshold {
            let bytes = tokio::fs::read(path).await.map_err(io)?;
            return self.put(key, bytes, content_type).await;
        }
        // A block blob holds at most 50,000 blocks: grow the block for very large files.
        let block = self.block_size.max(size.div_ceil(50_000));
        let client = self.client.blob_client(key).block_blob_client();
        let mut file = tokio::fs::File::open(path).await.map_err(io)?;
        let mut ids = Vec::new();
        let mut offset = 0u64;
        while offset < size {
            let len = block.min(size - offset);
            let mut buf = vec![0u8; len as usize];
            file.read_exact(&mut buf).await.map_err(io)?;
            // Block ids of one blob must all have the same length.
            let id = format!("mlctl-block-{:08}", ids.len()).into_bytes();
            client
                .stage_block(&id, len, azure_core::Bytes::from(buf).into(), None)
                .await
                .map_err(|e| self.err("put block", key, e))?;
            ids.push(id);
            offset += len;
        }
        let list = BlockLookupList {
            latest: Some(ids),
            ..Default::default()
        };
        let options = azure_storage_blob::models::BlockBlobClientCommitBlockListOptions {
            blob_content_type: Some(content_type.to_string()),
            ..Default::default()
        };
        let content = list
            .try_into()
            .map_err(|e| self.err("put block list", key, e))?;
        client
            .commit_block_list(content, Some(options))
            .await
            .map_err(|e| self.err("put block list", key, e))?;
        Ok(())
    }

    /// Whether a blob exists.
    pub async fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.etag(key).await?.is_some())
    }

    /// Deletes a blob; a missing one succeeds.
    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.client.blob_client(key).delete(None).await {
            Ok(_) => Ok(()),
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => Ok(()),
            Err(e) => Err(self.err("delete blob", key, e)),
        }
    }

    /// The names of the blobs under a prefix (a plain string prefix), sorted, every page.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let options = BlobContainerClientListBlobsOptions {
            prefix: (!prefix.is_empty()).then(|| prefix.to_string()),
            ..Default::default()
        };
        let mut pager = self
            .client
            .list_blobs(Some(options))
            .map_err(|e| self.err("list blobs", prefix, e))?;
        let mut names = Vec::new();
        while let Some(item) = pager
            .try_next()
            .await
            .map_err(|e| self.err("list blobs", prefix, e))?
        {
            if let Some(name) = item.name {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Uploads every file under `dir` to the container a SAS URL names (`startPendingUpload`
    /// gives one for code), keeping relative paths under the URL's path.
    pub async fn upload_dir_to_sas(sas_url: &str, dir: &Path) -> Result<()> {
        let op = "upload code";
        let shown = redact(sas_url, None);
        let url = Url::parse(sas_url).map_err(|e| {
            ProviderError::new(
                ErrorKind::Invalid,
                PROVIDER,
                op,
                format!("the upload URL {shown} is not a URL: {e}"),
            )
        })?;
        let sas = url.query().map(str::to_string);
        let mut files = Vec::new();
        collect_files(dir, dir, &mut files).map_err(|e| ProviderError::io(PROVIDER, op, e))?;
        files.sort();
        let mut bare = url.clone();
        bare.set_query(None);
        // The container and the folder in it, as for `storage` (path-style on an emulator).
        let at = StorageUrl::parse(bare.as_str()).map_err(|e| {
            ProviderError::new(
                ErrorKind::Invalid,
                PROVIDER,
                op,
                format!("the upload URL {shown}: {}", e.message),
            )
        })?;
        let mut client_url = at.container_url.clone();
        client_url.set_query(sas.as_deref());
        let client = BlobContainerClient::new(client_url, None, None)
            .map_err(|e| blob_err(op, &shown, sas.as_deref(), e))?;
        let rest: Vec<&str> = at.prefix.split('/').filter(|p| !p.is_empty()).collect();
        for rel in files {
            let name = rest
                .iter()
                .copied()
                .chain(rel.split('/'))
                .collect::<Vec<_>>()
                .join("/");
            let bytes = tokio::fs::read(dir.join(&rel))
                .await
                .map_err(|e| ProviderError::io(PROVIDER, op, e))?;
            let content: RequestContent<azure_core::Bytes, azure_core::http::NoFormat> =
                azure_core::Bytes::from(bytes).into();
            client
                .blob_client(&name)
                .upload(content, None)
                .await
                .map_err(|e| blob_err(op, &format!("{shown} ({rel})"), sas.as_deref(), e))?;
        }
        Ok(())
    }
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            collect_files(root, &path, out)?;
        } else if kind.is_file() {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            out.push(
                rel.components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/"),
            );
        }
    }
    Ok(())
}

/// What a conditional write asks of the blob there.
#[derive(Clone, Copy)]
enum Condition<'a> {
    None,
    /// Nothing is there (`If-None-Match: *`).
    Absent,
    /// It has this ETag (`If-Match`).
    Match(&'a str),
}

impl Condition<'_> {
    /// Whether `e` says the condition did not hold: 409 (`BlobAlreadyExists`) or 412 for a
    /// create, 412 or 404 (gone) for `If-Match`.
    fn failed(&self, e: &azure_core::Error) -> bool {
        match (self, e.http_status()) {
            (Condition::None, _) => false,
            (Condition::Absent, Some(s)) => {
                s == StatusCode::Conflict || s == StatusCode::PreconditionFailed
            }
            (Condition::Match(_), Some(s)) => {
                s == StatusCode::PreconditionFailed || s == StatusCode::NotFound
            }
            _ => false,
        }
    }
}

fn client_options(settings: &Settings) -> ClientOptions {
    ClientOptions {
        retry: RetryOptions::exponential(ExponentialRetryOptions {
            initial_delay: azure_core::time::Duration::milliseconds(
                settings.initial_backoff.as_millis().min(i64::MAX as u128) as i64,
            ),
            max_retries: settings.max_attempts.saturating_sub(1),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A [`ProviderError`] for a failed blob request on `url`, with the kind the engine acts on
/// and what to do; never the SAS.
pub(crate) fn blob_err(
    op: &str,
    url: &str,
    sas: Option<&str>,
    e: azure_core::Error,
) -> ProviderError {
    use azure_core::error::ErrorKind as Az;
    let url = redact(url, sas);
    let (kind, message) = match e.kind() {
        Az::HttpResponse {
            status, error_code, ..
        } => {
            let code = error_code.as_deref().unwrap_or("no error code");
            let status_num = u16::from(*status);
            let kind = match status_num {
                401 | 403 => ErrorKind::PermissionDenied,
                404 => ErrorKind::NotFound,
                409 => ErrorKind::AlreadyExists,
                412 => ErrorKind::Precondition,
                429 => ErrorKind::Throttled,
                408 => ErrorKind::Timeout,
                500..=599 => ErrorKind::Transient,
                400..=499 => ErrorKind::Invalid,
                _ => ErrorKind::Other,
            };
            let hint = match status_num {
                401 | 403 => match sas {
                    Some(_) => {
                        "; the SAS token in the target's `sas` was refused: check that it is for this account and container, has not expired, and allows read, add, create, write, delete and list (sp=racwdl)"
                    }
                    None => {
                        "; the Entra ID identity needs the role \"Storage Blob Data Contributor\" on the storage account or container (a role assignment can take minutes to apply), or set a SAS token with `sas: ${env:NAME}`"
                    }
                },
                404 if code.contains("Container") => {
                    "; create the container, or fix the container in `storage`"
                }
                _ => "",
            };
            (kind, format!("{op} {url}: HTTP {status_num} {code}{hint}"))
        }
        Az::Connection => (
            ErrorKind::Transient,
            format!(
                "{op} {url}: cannot reach Blob Storage ({}); check the host in `storage` and the network",
                redact(&error_text(&e), sas)
            ),
        ),
        Az::Credential => (
            ErrorKind::PermissionDenied,
            format!(
                "{op} {url}: no Entra ID token for Blob Storage ({}); sign in (`az login`), set the target's `credential`, or use a SAS token (`sas: ${{env:NAME}}`)",
                redact(&error_text(&e), sas)
            ),
        ),
        Az::Io => (
            ErrorKind::Transient,
            format!("{op} {url}: {}", redact(&error_text(&e), sas)),
        ),
        _ => (
            ErrorKind::Other,
            format!("{op} {url}: {}", redact(&error_text(&e), sas)),
        ),
    };
    ProviderError::new(kind, PROVIDER, op, message)
}

/// The error and its sources on one line, bounded.
fn error_text(e: &azure_core::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    mlctl_spec::suggest::clip(&text, 2000).into_owned()
}

/// `text` with the query of every URL in it cut (`?…` becomes `?<redacted>`) and the SAS, if
/// given, masked wherever else it appears.
pub(crate) fn redact(text: &str, sas: Option<&str>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '>' | ','))
            .unwrap_or(tail.len());
        let url = &tail[..end];
        match url.find('?') {
            Some(q) => {
                out.push_str(&url[..q]);
                out.push_str("?<redacted>");
            }
            None => out.push_str(url),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    match sas
        .map(|s| s.trim_start_matches('?'))
        .filter(|s| s.len() >= 8)
    {
        Some(s) => out.replace(s, "<redacted>"),
        None => out,
    }
}

/// The container as the shared state store and dataset bookkeeping see it
/// ([`mlctl_core::objectstore`]). The conditional writes live here only: the rest of the
/// provider reads and writes through the methods above.
#[async_trait::async_trait]
impl ObjectStore for Blob {
    fn provider(&self) -> &str {
        PROVIDER
    }
    fn key(&self, rel: &str) -> String {
        Blob::key(self, rel)
    }
    fn uri(&self, key: &str) -> String {
        self.url(key)
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Blob::get(self, key).await
    }
    async fn get_tagged(&self, key: &str) -> Result<Option<(Vec<u8>, String)>> {
        Blob::get_tagged(self, key).await
    }
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<()> {
        Blob::put(self, key, bytes, content_type).await
    }
    async fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.etag(key).await?.is_some())
    }
    async fn delete(&self, key: &str) -> Result<()> {
        Blob::delete(self, key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        Blob::list(self, prefix).await
    }

    /// Writes a blob only if nothing is at `key` (`If-None-Match: *`).
    async fn put_if_absent(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<Created> {
        Ok(
            if self
                .put_with(key, bytes, content_type, Condition::Absent)
                .await?
            {
                Created::Yes
            } else {
                Created::AlreadyThere
            },
        )
    }

    /// Replaces a blob only if it still has `etag` (`If-Match`); `false` when it changed or
    /// is gone.
    async fn put_if_match(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
        etag: &str,
    ) -> Result<bool> {
        self.put_with(key, bytes, content_type, Condition::Match(etag))
            .await
    }

    /// Deletes a blob only if it still has `etag`; `false` when it changed or is gone.
    async fn delete_if_match(&self, key: &str, etag: &str) -> Result<bool> {
        let options = BlobClientDeleteOptions {
            if_match: Some(Etag::from(etag)),
            ..Default::default()
        };
        match self.client.blob_client(key).delete(Some(options)).await {
            Ok(_) => Ok(true),
            Err(e) if Condition::Match(etag).failed(&e) => Ok(false),
            Err(e) => Err(self.err("delete blob", key, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_urls_name_the_container_and_the_prefix() {
        let at = StorageUrl::parse("https://acct.blob.core.windows.net/ml/iris/v1").unwrap();
        assert_eq!(
            at.container_url.as_str(),
            "https://acct.blob.core.windows.net/ml"
        );
        assert_eq!(
            (at.container.as_str(), at.prefix.as_str()),
            ("ml", "iris/v1")
        );
        let at = StorageUrl::parse("https://acct.blob.core.windows.net/ml/").unwrap();
        assert_eq!((at.container.as_str(), at.prefix.as_str()), ("ml", ""));
    }

    #[test]
    fn emulator_urls_are_path_style() {
        let at = StorageUrl::parse("http://127.0.0.1:10000/devstoreaccount1/ml/iris").unwrap();
        assert_eq!(
            at.container_url.as_str(),
            "http://127.0.0.1:10000/devstoreaccount1/ml"
        );
        assert_eq!((at.container.as_str(), at.prefix.as_str()), ("ml", "iris"));
        let at = StorageUrl::parse("http://localhost:10000/devstoreaccount1/ml").unwrap();
        assert_eq!((at.container.as_str(), at.prefix.as_str()), ("ml", ""));
    }

    #[test]
    fn storage_urls_without_a_container_or_with_a_sas_are_refused() {
        let e = StorageUrl::parse("https://acct.blob.core.windows.net/").unwrap_err();
        assert!(e.message.contains("names no container"), "{e}");
        let e = StorageUrl::parse("http://127.0.0.1:10000/devstoreaccount1").unwrap_err();
        assert!(e.message.contains("names no container"), "{e}");
        let e =
            StorageUrl::parse("https://a.blob.core.windows.net/ml?sv=1&sig=SECRET").unwrap_err();
        assert!(e.message.contains("sas: ${env:NAME}"), "{e}");
        assert!(!e.message.contains("SECRET"), "{e}");
        let e = StorageUrl::parse("s3://bucket/x").unwrap_err();
        assert!(e.message.contains("not an https URL"), "{e}");
    }

    #[test]
    fn redaction_cuts_every_query_and_masks_the_sas() {
        let text = "error sending request for url (https://a.blob.core.windows.net/ml/x?sv=2024&sig=abc%2Bdef): reset; token sv=2024&sig=abc%2Bdef";
        let shown = redact(text, Some("sv=2024&sig=abc%2Bdef"));
        assert!(!shown.contains("sig="), "{shown}");
        assert!(
            shown.contains("https://a.blob.core.windows.net/ml/x?<redacted>"),
            "{shown}"
        );
    }

    #[test]
    fn blob_urls_keep_the_path_and_carry_no_query() {
        let settings = Settings::from_env();
        let blob = Blob::connect(
            "http://127.0.0.1:10000/devstoreaccount1/ml/iris",
            BlobAuth::Sas("?sv=2024&sig=x".into()),
            &settings,
        )
        .unwrap();
        assert_eq!(blob.key("objects/ab"), "iris/objects/ab");
        assert_eq!(
            blob.url("iris/objects/ab"),
            "http://127.0.0.1:10000/devstoreaccount1/ml/iris/objects/ab"
        );
        assert_eq!(
            blob.url("iris/artifacts/job/model/"),
            "http://127.0.0.1:10000/devstoreaccount1/ml/iris/artifacts/job/model/"
        );
    }

    #[test]
    fn tokens_are_not_sent_over_http() {
        #[derive(Debug)]
        struct NoToken;
        #[async_trait::async_trait]
        impl TokenCredential for NoToken {
            async fn get_token(
                &self,
                _scopes: &[&str],
                _options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
            ) -> azure_core::Result<azure_core::credentials::AccessToken> {
                Err(azure_core::Error::with_message(
                    azure_core::error::ErrorKind::Credential,
                    "none",
                ))
            }
        }
        let e = Blob::connect(
            "http://127.0.0.1:10000/devstoreaccount1/ml",
            BlobAuth::Token(Arc::new(NoToken)),
            &Settings::from_env(),
        )
        .err()
        .unwrap();
        assert!(e.message.contains("https only"), "{e}");
    }

    /// Azurite's account URL, or `None` after saying why the test skips (a failure under
    /// `CI=true`), as `tests/azurite.rs` does.
    fn azurite(test: &str) -> Option<String> {
        match std::env::var("MLCTL_AZURITE_URL") {
            Ok(url) if !url.trim().is_empty() => Some(url.trim().trim_end_matches('/').into()),
            _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("{test}: MLCTL_AZURITE_URL is not set and CI=true: Azurite must run in CI")
            }
            _ => {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "{test} skipped: MLCTL_AZURITE_URL is not set (eval \"$(.ci/azurite.sh start)\")"
                );
                None
            }
        }
    }

    #[tokio::test]
    async fn a_directory_goes_to_the_folder_of_an_upload_sas_url_keeping_relative_paths() {
        let Some(url) = azurite("upload_dir_to_sas") else {
            return;
        };
        let sas = super::test_sas::azurite_sas();
        let container = format!("t-upload-{}", std::process::id());
        let res = reqwest::Client::new()
            .put(format!("{url}/{container}?restype=container&{sas}"))
            .header("x-ms-version", "2021-08-06")
            .header("content-length", "0")
            .send()
            .await
            .expect("Azurite answers");
        assert!(
            matches!(res.status().as_u16(), 201 | 409),
            "create container: {}",
            res.status()
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src/pkg")).unwrap();
        std::fs::write(dir.path().join("train.py"), "print('hi')\n").unwrap();
        std::fs::write(dir.path().join("src/pkg/util.py"), "X = 1\n").unwrap();

        let upload = format!("{url}/{container}/LocalUpload/abc123?{sas}");
        Blob::upload_dir_to_sas(&upload, dir.path())
            .await
            .expect("upload");

        let blob = Blob::connect(
            &format!("{url}/{container}"),
            BlobAuth::Sas(sas.clone()),
            &Settings::from_env(),
        )
        .unwrap();
        assert_eq!(
            blob.list("LocalUpload/abc123/").await.unwrap(),
            vec![
                "LocalUpload/abc123/src/pkg/util.py".to_string(),
                "LocalUpload/abc123/train.py".to_string()
            ]
        );
        assert_eq!(
            blob.get("LocalUpload/abc123/src/pkg/util.py")
                .await
                .unwrap(),
            Some(b"X = 1\n".to_vec())
        );

        // A refused upload names the URL without its SAS.
        let forged = super::test_sas::account_sas(super::test_sas::ACCOUNT, "AAAA");
        let e = Blob::upload_dir_to_sas(&format!("{url}/{container}/x?{forged}"), dir.path())
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::PermissionDenied, "{e}");
        assert!(!e.message.contains("sig="), "{e}");
        assert!(e.message.contains("?<redacted>"), "{e}");
    }
}
