//! The local [`DataStore`]: blobs in the object store, dataset versions in `state.db`.
//!
//! Registering a dataset: materialise the source (a project file, an `https://` download
//! pinned by digest, or a `transform` command's output), hash it (with the digest cache, so an
//! unchanged big file is not re-read), validate it against the schema, profile it, split it,
//! and store the table, the profile and the parts as blobs. Idempotent by fingerprint: a
//! version already registered with the same fingerprint is returned without reading anything.

use crate::db::{Db, json};
use crate::fsutil::{io_at, safe_component, sniff_format};
use crate::objects::Objects;
use crate::process::{self, Shell};
use crate::{PROVIDER, blocking, now};
use async_trait::async_trait;
use mlctl_core::components::{
    Capabilities, DataStore, DatasetRequest, DatasetVersion, InPlaceRequest, OpContext,
};
use mlctl_core::error::{ErrorKind, ProviderError, Result};
use mlctl_ml::digest::{DigestCache, digest_file};
use mlctl_ml::table::{self, Table};
use mlctl_spec::{DataFormat, DatasetSpec};
use rusqlite::{OptionalExtension, params};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The local [`DataStore`].
#[derive(Clone)]
pub struct LocalDataStore {
    db: Db,
    objects: Objects,
    state_dir: PathBuf,
    digests: Arc<Mutex<DigestCache>>,
}

impl std::fmt::Debug for LocalDataStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalDataStore")
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

fn err(kind: ErrorKind, op: &str, message: impl Into<String>) -> ProviderError {
    ProviderError::new(kind, PROVIDER, op, message)
}

/// A source ready to be read: a local file and its format.
#[derive(Debug)]
struct Materialized {
    path: PathBuf,
    format: DataFormat,
    /// The digest when already known (downloads, transform outputs).
    digest: Option<String>,
}

impl LocalDataStore {
    pub(crate) fn new(db: Db, state_dir: &Path) -> Self {
        LocalDataStore {
            db,
            objects: Objects::new(state_dir),
            state_dir: state_dir.to_path_buf(),
            digests: Arc::new(Mutex::new(DigestCache::open(
                state_dir.join("cache").join("digests.json"),
            ))),
        }
    }

    async fn registered(
        &self,
        project: &str,
        name: &str,
        fingerprint: &str,
    ) -> Result<Option<DatasetVersion>> {
        let (project, name, fingerprint) = (
            project.to_string(),
            name.to_string(),
            fingerprint.to_string(),
        );
        let found = self
            .db
            .call("find dataset version", move |c| {
                let v: Option<String> = c
                    .query_row("SELECT version FROM datasets WHERE project = ?1 AND name = ?2 AND fingerprint = ?3", params![project, name, fingerprint], |r| r.get(0))
                    .optional()?;
                Ok(match v {
                    Some(v) => Some(serde_json::from_str::<DatasetVersion>(&v)?),
                    None => None,
                })
            })
            .await?;
        // Only trust the record while its blobs are still there.
        Ok(found.filter(|v| {
            std::iter::once(&v.uri)
                .chain(v.splits.values())
                .chain(v.profile_uri.iter())
                .all(|u| Path::new(u).is_file())
        }))
    }

    async fn materialize(&self, ctx: &OpContext, req: &DatasetRequest) -> Result<Materialized> {
        let spec = &req.spec;
        if let Some(t) = &spec.transform {
            return self.transform(ctx, req, t).await;
        }
        let Some(source) = spec.source.as_deref() else {
            return Err(err(
                ErrorKind::Invalid,
                "register dataset",
                format!(
                    "dataset `{}` has neither `source` nor `transform`",
                    req.name
                ),
            ));
        };
        if let Some((scheme, _)) = source.split_once("://") {
            return match scheme {
                "https" => {
                    self.download(source, spec, req.source_version.as_deref())
                        .await
                }
                "http" if crate::support::is_loopback_http(source) => {
                    self.download(source, spec, req.source_version.as_deref())
                        .await
                }
                "s3" => Err(err(
                    ErrorKind::NotSupported,
                    "register dataset",
                    format!(
                        "dataset `{}`: s3:// sources are read by sagemaker targets; the local target reads project files and https:// URLs",
                        req.name
                    ),
                )),
                "az" => Err(err(
                    ErrorKind::NotSupported,
                    "register dataset",
                    format!(
                        "dataset `{}`: az:// sources are read by azureml targets; the local target reads project files and https:// URLs",
                        req.name
                    ),
                )),
                other => Err(err(
                    ErrorKind::NotSupported,
                    "register dataset",
                    format!(
                        "dataset `{}`: {other}:// sources are not supported; use a project file or an https:// URL",
                        req.name
                    ),
                )),
            };
        }
        // Symlinks followed: a link out of the project is refused, not read.
        let path = crate::fsutil::resolve_in_project(
            &ctx.project_dir,
            source,
            &format!("dataset `{}`", req.name),
            "source",
        )?;
        if !path.is_file() {
            return Err(err(
                ErrorKind::NotFound,
                "register dataset",
                format!(
                    "dataset `{}`: source {} is not a file (relative to the project directory {})",
                    req.name,
                    source,
                    ctx.project_dir.display()
                ),
            ));
        }
        let format = spec
            .format
            .or_else(|| table::format_from_path(&path))
            .unwrap_or_else(|| sniff_format(&path));
        Ok(Materialized {
            path,
            format,
            digest: None,
        })
    }

    /// Downloads an `https://` source: a pinned digest already in the store is not fetched
    /// again.
    ///
    /// `planned` is the version the plan saw ([`http_version`]): a server that now answers
    /// with another is refused, so what is registered is what the fingerprint names.
    async fn download(
        &self,
        url: &str,
        spec: &DatasetSpec,
        planned: Option<&str>,
    ) -> Result<Materialized> {
        let format = spec
            .format
            .or_else(|| table::format_from_path(url.split(['?', '#']).next().unwrap_or(url)))
            .unwrap_or(DataFormat::Csv);
        if let Some(pinned) = &spec.digest
            && self.objects.exists(pinned)?
        {
            return Ok(Materialized {
                path: self.objects.path(pinned)?,
                format,
                digest: Some(pinned.clone()),
            });
        }
        // Unpinned, the URL is read again: the plan saw a new version upstream (its ETag or
        // Last-Modified is in the fingerprint), so the last download is not it.
        let tmp = self.objects.temp_path("download")?;
        let (digest, bytes, version) = fetch(url, &tmp).await?;
        if let Some(planned) = planned
            && version.as_deref() != Some(planned)
        {
            let _ = std::fs::remove_file(&tmp);
            return Err(err(
                ErrorKind::Precondition,
                "download",
                format!(
                    "{} changed since the plan (the plan saw {planned}, the download has {}); run `mlctl plan` again to see the new data",
                    shown(url),
                    version.as_deref().unwrap_or("no version")
                ),
            ));
        }
        if let Some(want) = &spec.digest
            && want != &digest
        {
            let _ = std::fs::remove_file(&tmp);
            return Err(err(
                ErrorKind::Invalid,
                "download",
                format!(
                    "{url} has digest {digest}, but the spec pins {want}; update `digest:` if the new content is intended"
                ),
            ));
        }
        let path = self.objects.adopt(&tmp, &digest)?;
        let (url_owned, d) = (url.to_string(), digest.clone());
        self.db
            .call("record download", move |c| {
                c.execute(
                    "INSERT INTO downloads (url, digest, bytes, fetched_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (url) DO UPDATE SET digest = excluded.digest, bytes = excluded.bytes, fetched_at = excluded.fetched_at",
                    params![url_owned, d, bytes as i64, now()],
                )?;
                Ok(())
            })
            .await?;
        Ok(Materialized {
            path,
            format,
            digest: Some(digest),
        })
    }

    /// Runs a `transform` command with its inputs materialised as files.
    async fn transform(
        &self,
        ctx: &OpContext,
        req: &DatasetRequest,
        t: &mlctl_spec::Transform,
    ) -> Result<Materialized> {
        let op = "transform";
        let what = format!("dataset `{}`", req.name);
        // The code is part of the fingerprint; it must be the project's own.
        if let Some(code) = &t.code {
            crate::fsutil::resolve_in_project(&ctx.project_dir, code, &what, "transform.code")?;
        }
        let output_name = mlctl_core::transform::output_name(t, &what)
            .map_err(|m| err(ErrorKind::Invalid, op, m))?;
        let short = &req.fingerprint[..req.fingerprint.len().min(12)];
        let work = self.state_dir.join("work").join(&req.name).join(short);
        let inputs_dir = work.join("inputs");
        let out_dir = work.join("output");
        crate::fsutil::remove_tree(&work)?;
        for d in [&inputs_dir, &out_dir] {
            std::fs::create_dir_all(d).map_err(|e| io_at("create transform directory", d, e))?;
        }
        let mut inputs = Vec::new();
        for name in &t.inputs {
            let Some(input) = req.inputs.get(name) else {
                return Err(err(
                    ErrorKind::Precondition,
                    op,
                    format!(
                        "dataset `{}`: input `{name}` has no registered version; apply it first",
                        req.name
                    ),
                ));
            };
            let src = PathBuf::from(&input.uri);
            let file = inputs_dir.join(mlctl_core::transform::input_file(name, sniff_format(&src)));
            // A copy, not a link: a command that writes to its input must not corrupt the store.
            std::fs::copy(&src, &file)
                .map_err(|e| io_at("materialise transform input", &src, e))?;
            inputs.push((name.clone(), file.to_string_lossy().into_owned()));
        }
        let output = out_dir.join(&output_name);
        if let Some(parent) = output.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| io_at("create transform directory", parent, e))?;
        }
        let env = mlctl_core::transform::variables(
            &req.name,
            &inputs,
            &out_dir.to_string_lossy(),
            &output_name,
        );
        let shell = Shell {
            command: t.command.clone(),
            cwd: ctx.project_dir.clone(),
            env,
            log: work.join("transform.log"),
            limits: None,
            recorded: Some((
                self.state_dir.join("procs"),
                format!("transform of Dataset/{}", req.name),
            )),
        };
        let (_keep, rx) = tokio::sync::watch::channel(false);
        let exit = process::run(&shell, |_, _| {}, rx).await?;
        if !exit.success() {
            return Err(err(
                ErrorKind::Failed,
                op,
                format!(
                    "dataset `{}`: {} (log: {})",
                    req.name,
                    exit.describe(&format!("transform `{}`", t.command)),
                    shell.log.display()
                ),
            ));
        }
        if output.exists() {
            // The command may have left a link there: what is read must be its own output.
            crate::fsutil::resolve_inside(
                &out_dir,
                "the transform's output directory",
                &output_name,
                &what,
                "transform.output",
            )?;
        }
        if !output.is_file() {
            return Err(err(
                ErrorKind::Failed,
                op,
                format!(
                    "dataset `{}`: transform `{}` succeeded but did not write $MLCTL_OUTPUT ({})",
                    req.name,
                    t.command,
                    output.display()
                ),
            ));
        }
        let format = req
            .spec
            .format
            .or_else(|| table::format_from_path(&output))
            .unwrap_or_else(|| sniff_format(&output));
        Ok(Materialized {
            path: output,
            format,
            digest: None,
        })
    }
}

pub(crate) use mlctl_core::transform::env_name;

/// `url` without the user and password it may carry, for messages (never stored or printed).
pub(crate) fn shown(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_string(),
    }
}

/// The HTTP client that reads remote sources (HEAD for their version, GET for their bytes).
fn http_client(op: &str) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("mlctl/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| {
            err(
                ErrorKind::Other,
                op,
                format!("cannot build an HTTP client: {e}"),
            )
        })
}

/// The version of an `https://` source, from a HEAD request: its ETag, or else its
/// Last-Modified. A server that sends neither cannot say when the data changes, so the
/// Dataset must pin `digest:`.
async fn http_version(url: &str) -> Result<String> {
    let op = "check source version";
    let client = http_client(op)?;
    let resp = client.head(url).send().await.map_err(|e| {
        err(
            ErrorKind::Transient,
            op,
            format!("{}: {}", shown(url), e.without_url()),
        )
    })?;
    let status = resp.status();
    if !status.is_success() {
        return Err(err(
            status_kind(status),
            op,
            format!("{}: HTTP {status}", shown(url)),
        ));
    }
    if let Some(version) = version_of(resp.headers()) {
        return Ok(version);
    }
    Err(err(
        ErrorKind::Invalid,
        op,
        format!(
            "{} sends neither an ETag nor a Last-Modified header, so mlctl cannot tell when its data changes; pin the content with `digest:` in the Dataset (the blake3 of the file, e.g. from `b3sum`; a wrong pin is refused at apply with the digest it found)",
            shown(url)
        ),
    ))
}

fn status_kind(status: reqwest::StatusCode) -> ErrorKind {
    if status.is_server_error() || status.as_u16() == 429 {
        ErrorKind::Transient
    } else if status.as_u16() == 404 {
        ErrorKind::NotFound
    } else if status.as_u16() == 401 || status.as_u16() == 403 {
        ErrorKind::PermissionDenied
    } else {
        ErrorKind::Invalid
    }
}

/// The version an HTTP response names: its ETag, or else its Last-Modified.
fn version_of(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let get = |name| {
        headers
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
    };
    get(reqwest::header::ETAG)
        .map(|e| format!("etag {e}"))
        .or_else(|| get(reqwest::header::LAST_MODIFIED).map(|m| format!("last-modified {m}")))
}

/// Streams `url` into `dest`, hashing as it goes; returns (digest, bytes, the response's
/// version).
async fn fetch(url: &str, dest: &Path) -> Result<(String, u64, Option<String>)> {
    use tokio::io::AsyncWriteExt;
    let op = "download";
    let client = http_client(op)?;
    let transient = |e: reqwest::Error| {
        err(
            ErrorKind::Transient,
            op,
            format!("{}: {}", shown(url), e.without_url()),
        )
    };
    let mut resp = client.get(url).send().await.map_err(transient)?;
    let status = resp.status();
    if !status.is_success() {
        let kind = if status.is_server_error() || status.as_u16() == 429 {
            ErrorKind::Transient
        } else if status.as_u16() == 404 {
            ErrorKind::NotFound
        } else if status.as_u16() == 401 || status.as_u16() == 403 {
            ErrorKind::PermissionDenied
        } else {
            ErrorKind::Invalid
        };
        return Err(err(kind, op, format!("{}: HTTP {status}", shown(url))));
    }
    let version = version_of(resp.headers());
    let mut file = tokio::fs::File::create(dest)
        .await
        .map_err(|e| io_at(op, dest, e))?;
    let mut hasher = blake3::Hasher::new();
    let mut bytes = 0u64;
    while let Some(chunk) = resp.chunk().await.map_err(transient)? {
        hasher.update(&chunk);
        bytes += chunk.len() as u64;
        file.write_all(&chunk)
            .await
            .map_err(|e| io_at(op, dest, e))?;
    }
    file.sync_data().await.map_err(|e| io_at(op, dest, e))?;
    Ok((hasher.finalize().to_hex().to_string(), bytes, version))
}

/// Everything after materialisation, on a blocking thread.
fn check_and_store(
    objects: &Objects,
    digests: &Mutex<DigestCache>,
    req: &DatasetRequest,
    src: Materialized,
) -> Result<DatasetVersion> {
    let op = "register dataset";
    let digest = match src.digest {
        Some(d) => d,
        None => {
            let mut cache = digests.lock().unwrap_or_else(|p| p.into_inner());
            let d = digest_file(&src.path, Some(&mut cache))
                .map_err(|e| io_at("hash dataset", &src.path, e))?;
            // A cache that cannot be saved only costs a re-read next time.
            let _ = cache.save();
            d
        }
    };
    if let Some(want) = &req.spec.digest
        && want != &digest
    {
        return Err(err(
            ErrorKind::Invalid,
            op,
            format!(
                "dataset `{}` has digest {digest}, but the spec pins {want}",
                req.name
            ),
        ));
    }
    let limits = table::ReadLimits::of(req.spec.limits.as_ref());
    let table = table::read_limited(&src.path, src.format, limits).map_err(|e| {
        err(
            ErrorKind::Invalid,
            op,
            format!("dataset `{}`: {e}", req.name),
        )
    })?;
    if let Some(schema) = &req.spec.schema {
        let report = mlctl_ml::validate::validate(&table, schema).in_file(
            req.spec
                .source
                .clone()
                .unwrap_or_else(|| src.path.display().to_string()),
        );
        if !report.ok {
            return Err(err(
                ErrorKind::Invalid,
                "validate dataset",
                format!("dataset `{}` ({}): {report}", req.name, src.path.display()),
            ));
        }
    }
    if let Some(target) = &req.spec.target
        && table.column(target).is_none()
    {
        return Err(err(
            ErrorKind::Invalid,
            op,
            format!(
                "dataset `{}`: target column `{target}` is not in the data (columns: {})",
                req.name,
                mlctl_spec::suggest::list(table.names())
            ),
        ));
    }
    let stored = objects.put_file(&src.path, &digest)?;
    let profile = mlctl_ml::profile::profile(&table);
    let profile_digest = objects.put_bytes(json(&profile).as_bytes())?;
    let mut splits = BTreeMap::new();
    if let Some(split) = &req.spec.split {
        let parts = mlctl_ml::split::split(&table, split).map_err(|e| {
            err(
                ErrorKind::Invalid,
                "split dataset",
                format!("dataset `{}`: {e}", req.name),
            )
        })?;
        for (name, part) in [
            ("train", &parts.train),
            ("validation", &parts.validation),
            ("test", &parts.test),
        ] {
            if part.n_rows() == 0 {
                continue;
            }
            splits.insert(
                name.to_string(),
                store_table(objects, part)?.to_string_lossy().into_owned(),
            );
        }
    }
    Ok(DatasetVersion {
        name: req.name.clone(),
        fingerprint: req.fingerprint.clone(),
        digest,
        uri: stored.to_string_lossy().into_owned(),
        rows: table.n_rows() as u64,
        columns: table.names().to_vec(),
        splits,
        profile_uri: Some(
            objects
                .path(&profile_digest)?
                .to_string_lossy()
                .into_owned(),
        ),
    })
}

/// Writes a table as CSV into the store; returns its blob path.
pub(crate) fn store_table(objects: &Objects, t: &Table) -> Result<PathBuf> {
    let tmp = objects.temp_path("part")?;
    table::write_csv(t, &tmp).map_err(|e| err(ErrorKind::Other, "write split", e.to_string()))?;
    let digest = digest_file(&tmp, None).map_err(|e| io_at("hash split", &tmp, e))?;
    objects.adopt(&tmp, &digest)
}

#[async_trait]
impl DataStore for LocalDataStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            fields: crate::support::field_rules(),
            ..Capabilities::default()
        }
    }

    async fn put_blob(&self, bytes: Vec<u8>) -> Result<String> {
        let objects = self.objects.clone();
        blocking("put blob", move || objects.put_bytes(&bytes)).await
    }

    async fn get_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let (objects, digest) = (self.objects.clone(), digest.to_string());
        blocking("get blob", move || objects.get(&digest)).await
    }

    async fn has_blob(&self, digest: &str) -> Result<bool> {
        self.objects.exists(digest)
    }

    async fn register_dataset(
        &self,
        ctx: &OpContext,
        req: &DatasetRequest,
    ) -> Result<DatasetVersion> {
        safe_component("dataset", &req.name)?;
        if let Some(v) = self
            .registered(&ctx.project, &req.name, &req.fingerprint)
            .await?
        {
            return Ok(v);
        }
        let src = self.materialize(ctx, req).await?;
        let (objects, digests, req2) = (self.objects.clone(), self.digests.clone(), req.clone());
        let version = blocking("register dataset", move || {
            check_and_store(&objects, &digests, &req2, src)
        })
        .await?;
        let (project, v, tags) = (ctx.project.clone(), version.clone(), req.tags.to_map());
        self.db
            .call("record dataset version", move |c| {
                c.execute(
                    "INSERT INTO datasets (project, name, fingerprint, digest, version, created_at, tags) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (project, name, fingerprint) DO UPDATE SET digest = excluded.digest, version = excluded.version, tags = excluded.tags",
                    params![project, v.name, v.fingerprint, v.digest, json(&v), now(), json(&tags)],
                )?;
                Ok(())
            })
            .await?;
        Ok(version)
    }

    async fn read_profile(
        &self,
        _ctx: &OpContext,
        version: &DatasetVersion,
    ) -> Result<Option<Vec<u8>>> {
        let Some(uri) = &version.profile_uri else {
            return Ok(None);
        };
        let path = std::path::PathBuf::from(uri);
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(err(
                ErrorKind::NotFound,
                "read profile",
                format!(
                    "the profile of dataset `{}` ({}) is gone from the object store; apply the dataset again (a change to it re-registers it)",
                    version.name,
                    path.display()
                ),
            )),
            Err(e) => Err(io_at("read profile", &path, e)),
        }
    }

    async fn update_in_place(&self, ctx: &OpContext, req: &InPlaceRequest) -> Result<()> {
        let (project, name, fp, tags) = (
            ctx.project.clone(),
            req.name.clone(),
            req.fingerprint.clone(),
            json(&req.tags.to_map()),
        );
        let n = self
            .db
            .call("update dataset tags", move |c| {
                Ok(c.execute(
                    "UPDATE datasets SET tags = ?4 WHERE project = ?1 AND name = ?2 AND fingerprint = ?3",
                    params![project, name, fp, tags],
                )?)
            })
            .await?;
        if n == 0 {
            return Err(crate::gone(
                "update dataset tags",
                format!("dataset `{}`", req.name),
            ));
        }
        Ok(())
    }

    async fn source_version(&self, _ctx: &OpContext, source: &str) -> Result<String> {
        match source.split_once("://").map(|(scheme, _)| scheme) {
            Some("https") => http_version(source).await,
            Some("http") if crate::support::is_loopback_http(source) => http_version(source).await,
            Some(scheme) => Err(err(
                ErrorKind::NotSupported,
                "source version",
                format!(
                    "{scheme}:// sources are not read by the local target; use a project file or an https:// URL"
                ),
            )),
            None => Err(err(
                ErrorKind::Invalid,
                "source version",
                format!("`{source}` is a project file, digested by content"),
            )),
        }
    }

    async fn delete_dataset(&self, ctx: &OpContext, name: &str) -> Result<()> {
        let (project, name) = (ctx.project.clone(), name.to_string());
        // Blobs stay: other versions, runs and registered models may point at them.
        self.db
            .call("delete dataset", move |c| {
                c.execute(
                    "DELETE FROM datasets WHERE project = ?1 AND name = ?2",
                    params![project, name],
                )?;
                Ok(())
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A one-file HTTP server on 127.0.0.1 that counts the requests it answers.
    fn serve(body: &'static str) -> (String, Arc<AtomicUsize>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/data/t.csv", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        std::thread::spawn(move || {
            // Bounded: the tests make at most a few requests.
            for stream in listener.incoming().take(8) {
                let Ok(mut s) = stream else { continue };
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (url, hits)
    }

    fn spec(url: &str, digest: Option<String>) -> DatasetSpec {
        DatasetSpec {
            source: Some(url.into()),
            format: None,
            digest,
            target: None,
            schema: None,
            split: None,
            transform: None,
            limits: None,
        }
    }

    #[tokio::test]
    async fn downloads_are_fetched_again_unless_pinned_by_digest() {
        const BODY: &str = "a,b\n1,2\n3,4\n";
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDataStore::new(Db::open(dir.path()).unwrap(), dir.path());
        let (url, hits) = serve(BODY);
        let want = blake3::hash(BODY.as_bytes()).to_hex().to_string();

        let first = store.download(&url, &spec(&url, None), None).await.unwrap();
        assert_eq!(first.digest.as_deref(), Some(want.as_str()));
        assert_eq!(std::fs::read_to_string(&first.path).unwrap(), BODY);
        assert_eq!(first.format, DataFormat::Csv);
        // Unpinned, a download happens because the plan saw a new version upstream: the URL
        // is read again, never answered from the last download.
        store.download(&url, &spec(&url, None), None).await.unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        // A pinned digest already in the store: no request.
        store
            .download(&url, &spec(&url, Some(want.clone())), None)
            .await
            .unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 2);

        // A download that is not the version the plan saw is refused, not registered.
        let err = store
            .download(&url, &spec(&url, None), Some("etag \"v1\""))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Precondition);
        assert!(err.message.contains("changed since the plan"), "{err}");

        // A pin that does not match what the server sends is refused.
        let wrong = "0".repeat(64);
        let err = store
            .download(&url, &spec(&url, Some(wrong.clone())), None)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Invalid);
        assert!(
            err.message.contains(&want) && err.message.contains(&wrong),
            "{err}"
        );
    }
}
