//! Content-addressed blobs and dataset versions.

use crate::store::key;
use crate::{Mock, Result, err, now};
use async_trait::async_trait;
use mlctl_core::{
    Capabilities, DataStore, DatasetRequest, DatasetVersion, ErrorKind, OpContext, Tags,
    components::InPlaceRequest,
};
use mlctl_spec::DataFormat;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where a blob lives, relative to the state directory.
pub(crate) fn blob_path(digest: &str) -> String {
    // Unchecked digests (from a URI) must not panic or escape the directory.
    format!(
        "objects/{}/{}",
        digest.get(..2).unwrap_or("__"),
        crate::store::key(digest)
    )
}

/// The URI of a blob.
pub(crate) fn blob_uri(digest: &str) -> String {
    format!("mock://objects/{digest}")
}

fn check_digest(op: &str, digest: &str) -> Result<()> {
    if digest.len() == 64
        && digest
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        Ok(())
    } else {
        Err(err(
            ErrorKind::Invalid,
            op,
            format!("`{digest}` is not a blob digest (64 lowercase hex digits of blake3)"),
        ))
    }
}

impl Mock {
    /// Stores bytes under their digest unless already there (shared by the trainer's artifacts).
    pub(crate) fn store_blob(&self, op: &str, bytes: &[u8]) -> Result<String> {
        let digest = blake3::hash(bytes).to_hex().to_string();
        let rel = blob_path(&digest);
        if !self.store().path(&rel).exists() {
            self.store().write_bytes(op, &rel, bytes)?;
        }
        Ok(digest)
    }
}

/// Every registered version of one dataset.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DatasetRecord {
    /// Format of this record (`mlctl_core::state::FORMAT_VERSION` when written).
    #[serde(default = "mlctl_core::state::FormatVersion::legacy")]
    format_version: mlctl_core::state::FormatVersion,
    versions: Vec<RegisteredVersion>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegisteredVersion {
    version: DatasetVersion,
    tags: Tags,
    registered_at: String,
}

fn dataset_path(name: &str) -> String {
    format!("datasets/{}.json", key(name))
}

impl Mock {
    /// Reads the dataset's content and describes the version it makes; `ran` is the output
    /// of its transform when the mock ran it ([`Mock::run_transform`]).
    fn read_dataset(
        &self,
        ctx: &OpContext,
        req: &DatasetRequest,
        ran: Option<Ran>,
    ) -> Result<DatasetVersion> {
        let op = "register_dataset";
        let spec = &req.spec;
        let declared: Vec<String> = spec
            .schema
            .as_ref()
            .map(|s| s.columns.iter().map(|c| c.name.clone()).collect())
            .unwrap_or_default();
        let mut profile_uri = None;
        let (digest, uri, rows, columns) = match (&spec.transform, &spec.source, ran) {
            (Some(_), _, Some(ran)) => {
                let c = self.check_table(req, &ran.bytes, ran.format, &ran.shown)?;
                profile_uri = Some(c.profile_uri);
                (c.digest.clone(), blob_uri(&c.digest), c.rows, c.columns)
            }
            (Some(t), _, None) => {
                // Nothing to run (an input is remote data the mock records but never
                // fetches): the derived table is named by what went in.
                let mut h = blake3::Hasher::new();
                h.update(b"mlctl-mock-transform-v1\n");
                h.update(t.command.as_bytes());
                for (name, v) in &req.inputs {
                    h.update(format!("\n{name}={}", v.digest).as_bytes());
                }
                let digest = h.finalize().to_hex().to_string();
                let first = req.inputs.values().next();
                let columns = if declared.is_empty() {
                    first.map(|v| v.columns.clone()).unwrap_or_default()
                } else {
                    declared.clone()
                };
                (
                    digest.clone(),
                    format!("mock://datasets/{}/{}", req.name, &digest[..12]),
                    first.map_or(0, |v| v.rows),
                    columns,
                )
            }
            (None, Some(src), _) if src.contains("://") => {
                // Remote data is recorded, not downloaded.
                let digest = spec
                    .digest
                    .clone()
                    .unwrap_or_else(|| blake3::hash(src.as_bytes()).to_hex().to_string());
                (digest, src.clone(), 0, declared.clone())
            }
            (None, Some(src), _) => {
                let path = ctx.project_dir.join(src);
                let limits = mlctl_ml::table::ReadLimits::of(spec.limits.as_ref());
                if let Ok(meta) = std::fs::metadata(&path) {
                    limits
                        .check_size(std::path::Path::new(src), meta.len())
                        .map_err(|e| {
                            err(
                                ErrorKind::Invalid,
                                op,
                                format!("dataset `{}`: {e}", req.name),
                            )
                        })?;
                }
                let bytes = std::fs::read(&path).map_err(|e| {
                    let kind = if e.kind() == std::io::ErrorKind::NotFound {
                        ErrorKind::NotFound
                    } else {
                        ErrorKind::Other
                    };
                    err(
                        kind,
                        op,
                        format!(
                            "dataset `{}`: cannot read source `{src}` ({}): {e}",
                            req.name,
                            path.display()
                        ),
                    )
                })?;
                let format = spec.format.unwrap_or(if src.ends_with(".parquet") {
                    DataFormat::Parquet
                } else {
                    DataFormat::Csv
                });
                let c = self.check_table(req, &bytes, format, src)?;
                profile_uri = Some(c.profile_uri);
                (c.digest.clone(), blob_uri(&c.digest), c.rows, c.columns)
            }
            (None, None, _) => {
                return Err(err(
                    ErrorKind::Invalid,
                    op,
                    format!(
                        "dataset `{}` has neither `source` nor `transform`",
                        req.name
                    ),
                ));
            }
        };
        let missing: Vec<&String> = declared.iter().filter(|c| !columns.contains(c)).collect();
        if !missing.is_empty() && !columns.is_empty() {
            return Err(err(
                ErrorKind::Invalid,
                op,
                format!(
                    "dataset `{}`: column(s) {} declared in the schema are not in the data (it has {})",
                    req.name,
                    mlctl_spec::suggest::list(missing.iter().map(|c| format!("`{c}`"))),
                    mlctl_spec::suggest::list(&columns)
                ),
            ));
        }
        // Rows are 0 when the mock cannot count them (Parquet, remote data).
        if let Some(min) = spec.schema.as_ref().and_then(|s| s.min_rows)
            && rows < min
            && rows > 0
        {
            return Err(err(
                ErrorKind::Invalid,
                op,
                format!(
                    "dataset `{}` has {rows} rows; the schema asks for at least {min}",
                    req.name
                ),
            ));
        }
        let mut splits = BTreeMap::new();
        if let Some(split) = &spec.split {
            let validation = split.validation.unwrap_or(0.0);
            let test = split
                .test
                .unwrap_or((1.0 - split.train - validation).max(0.0));
            for (part, share) in [
                ("train", split.train),
                ("validation", validation),
                ("test", test),
            ] {
                if share > 0.0 {
                    splits.insert(part.to_string(), format!("{uri}#{part}"));
                }
            }
        }
        Ok(DatasetVersion {
            name: req.name.clone(),
            fingerprint: req.fingerprint.clone(),
            digest,
            uri,
            rows,
            columns,
            splits,
            profile_uri,
        })
    }
}

/// A transform's output, written by its command.
pub(crate) struct Ran {
    bytes: Vec<u8>,
    format: DataFormat,
    /// Where it was, for messages.
    shown: String,
}

/// A table read and checked, its bytes and profile stored.
struct Checked {
    digest: String,
    rows: u64,
    columns: Vec<String>,
    profile_uri: String,
}

impl Mock {
    /// Reads `bytes` as every target reads a dataset (limits, schema, target column) and
    /// stores them and their profile as blobs.
    fn check_table(
        &self,
        req: &DatasetRequest,
        bytes: &[u8],
        format: DataFormat,
        shown: &str,
    ) -> Result<Checked> {
        let op = "register_dataset";
        let spec = &req.spec;
        let limits = mlctl_ml::table::ReadLimits::of(spec.limits.as_ref());
        // The data is read and checked as every target checks it, so a dry run on the
        // mock fails where a real apply would.
        let table =
            mlctl_ml::table::read_bytes_limited(bytes, format, shown, limits).map_err(|e| {
                err(
                    ErrorKind::Invalid,
                    op,
                    format!("dataset `{}`: {e}", req.name),
                )
            })?;
        if let Some(schema) = &spec.schema {
            let report = mlctl_ml::validate::validate(&table, schema).in_file(shown.to_string());
            if !report.ok {
                return Err(err(
                    ErrorKind::Invalid,
                    "validate dataset",
                    format!("dataset `{}` ({shown}): {report}", req.name),
                ));
            }
        }
        if let Some(target) = &spec.target
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
        let digest = self.store_blob(op, bytes)?;
        // The profile a Monitor's baseline is, as every target stores it.
        let profile = serde_json::to_vec(&mlctl_ml::profile::profile(&table))
            .map_err(|e| err(ErrorKind::Other, op, e.to_string()))?;
        Ok(Checked {
            digest,
            rows: table.n_rows() as u64,
            columns: table.names().to_vec(),
            profile_uri: blob_uri(&self.store_blob(op, &profile)?),
        })
    }

    /// Runs a transform's command as the local target does (`mlctl_core::transform`: the
    /// inputs as files, the project directory, a scrubbed environment) and returns what it
    /// wrote; `None` when there is nothing to run it on (an input is remote data, which the
    /// mock records but never fetches).
    async fn run_transform(
        &self,
        ctx: &OpContext,
        req: &DatasetRequest,
        t: &mlctl_spec::Transform,
    ) -> Result<Option<Ran>> {
        let op = "transform";
        let what = format!("dataset `{}`", req.name);
        let mut blobs = Vec::new();
        for name in &t.inputs {
            let Some(v) = req.inputs.get(name) else {
                return Err(err(
                    ErrorKind::Precondition,
                    op,
                    format!("{what}: input `{name}` has no registered version; apply it first"),
                ));
            };
            match v.uri.strip_prefix("mock://objects/") {
                Some(digest) if check_digest(op, digest).is_ok() => {
                    blobs.push((name.clone(), self.store().path(&blob_path(digest))));
                }
                _ => return Ok(None),
            }
        }
        let output = mlctl_core::transform::output_name(t, &what)
            .map_err(|m| err(ErrorKind::Invalid, op, m))?;
        let io = |p: &std::path::Path, e: std::io::Error| crate::store::io_err(op, p, e);
        let work = self.store().path(&format!(
            "work/{}/{}",
            key(&req.name),
            &req.fingerprint[..req.fingerprint.len().min(12)]
        ));
        if work.exists() {
            std::fs::remove_dir_all(&work).map_err(|e| io(&work, e))?;
        }
        let (inputs_dir, out_dir) = (work.join("inputs"), work.join("output"));
        for d in [&inputs_dir, &out_dir] {
            std::fs::create_dir_all(d).map_err(|e| io(d, e))?;
        }
        let mut inputs = Vec::new();
        for (name, blob) in blobs {
            let bytes = std::fs::read(&blob).map_err(|e| io(&blob, e))?;
            let file = inputs_dir.join(mlctl_core::transform::input_file(
                &name,
                mlctl_core::transform::sniff(&bytes),
            ));
            std::fs::write(&file, &bytes).map_err(|e| io(&file, e))?;
            inputs.push((name, file.to_string_lossy().into_owned()));
        }
        let out_file = out_dir.join(&output);
        if let Some(parent) = out_file.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        let log = work.join("transform.log");
        let exit = mlctl_core::transform::run(&mlctl_core::transform::Command {
            command: t.command.clone(),
            cwd: ctx.project_dir.clone(),
            env: mlctl_core::transform::variables(
                &req.name,
                &inputs,
                &out_dir.to_string_lossy(),
                &output,
            ),
            log: log.clone(),
        })
        .await
        .map_err(|e| io(&ctx.project_dir, e))?;
        if !exit.success() {
            return Err(err(
                ErrorKind::Failed,
                op,
                format!(
                    "{what}: {} (log: {})",
                    exit.describe(&format!("transform `{}`", t.command)),
                    log.display()
                ),
            ));
        }
        // A link left there is not the command's own output.
        if !std::fs::symlink_metadata(&out_file).is_ok_and(|m| m.is_file()) {
            return Err(err(
                ErrorKind::Failed,
                op,
                format!(
                    "{what}: transform `{}` succeeded but did not write $MLCTL_OUTPUT ({})",
                    t.command,
                    out_file.display()
                ),
            ));
        }
        let bytes = std::fs::read(&out_file).map_err(|e| io(&out_file, e))?;
        let format = req.spec.format.unwrap_or_else(|| {
            mlctl_ml::table::format_from_path(&out_file)
                .unwrap_or_else(|| mlctl_core::transform::sniff(&bytes))
        });
        Ok(Some(Ran {
            bytes,
            format,
            shown: out_file.display().to_string(),
        }))
    }
}

#[async_trait]
impl DataStore for Mock {
    fn capabilities(&self) -> Capabilities {
        Mock::capabilities(self)
    }

    async fn put_blob(&self, bytes: Vec<u8>) -> Result<String> {
        self.enter("put_blob").await?;
        self.store_blob("put_blob", &bytes)
    }

    async fn get_blob(&self, digest: &str) -> Result<Vec<u8>> {
        self.enter("get_blob").await?;
        check_digest("get_blob", digest)?;
        match std::fs::read(self.store().path(&blob_path(digest))) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(err(
                ErrorKind::NotFound,
                "get_blob",
                format!(
                    "blob {digest} is not in the mock store ({})",
                    self.store().root().display()
                ),
            )),
            Err(e) => Err(crate::store::io_err(
                "get_blob",
                &self.store().path(&blob_path(digest)),
                e,
            )),
        }
    }

    async fn has_blob(&self, digest: &str) -> Result<bool> {
        self.enter("has_blob").await?;
        check_digest("has_blob", digest)?;
        Ok(self.store().path(&blob_path(digest)).exists())
    }

    async fn register_dataset(
        &self,
        ctx: &OpContext,
        req: &DatasetRequest,
    ) -> Result<DatasetVersion> {
        self.enter("register_dataset").await?;
        let rel = dataset_path(&req.name);
        // Fast path: this fingerprint is registered, nothing is read.
        if let Some(rec) = self
            .store()
            .read::<DatasetRecord>("register_dataset", &rel)?
            && let Some(v) = rec
                .versions
                .iter()
                .find(|v| v.version.fingerprint == req.fingerprint)
        {
            return Ok(v.version.clone());
        }
        let ran = match &req.spec.transform {
            Some(t) => self.run_transform(ctx, req, t).await?,
            None => None,
        };
        let version = self.read_dataset(ctx, req, ran)?;
        self.store().update(
            "register_dataset",
            &rel,
            |rec: &mut Option<DatasetRecord>| {
                let rec = rec.get_or_insert_with(DatasetRecord::default);
                // Someone registered it meanwhile: theirs wins, it is the same content.
                if let Some(v) = rec
                    .versions
                    .iter()
                    .find(|v| v.version.fingerprint == req.fingerprint)
                {
                    return Ok(v.version.clone());
                }
                rec.versions.push(RegisteredVersion {
                    version: version.clone(),
                    tags: req.tags.clone(),
                    registered_at: now(),
                });
                Ok(version)
            },
        )
    }

    async fn read_profile(
        &self,
        _ctx: &OpContext,
        version: &DatasetVersion,
    ) -> Result<Option<Vec<u8>>> {
        self.enter("read_profile").await?;
        match version
            .profile_uri
            .as_deref()
            .and_then(|u| u.strip_prefix("mock://objects/"))
        {
            Some(digest) => self.get_blob(digest).await.map(Some),
            None => Ok(None),
        }
    }

    async fn update_in_place(&self, _ctx: &OpContext, req: &InPlaceRequest) -> Result<()> {
        self.enter("update_in_place").await?;
        let op = "update dataset tags";
        self.store().update(
            op,
            &dataset_path(&req.name),
            |rec: &mut Option<DatasetRecord>| {
                let v = rec
                    .as_mut()
                    .and_then(|r| {
                        r.versions
                            .iter_mut()
                            .find(|v| v.version.fingerprint == req.fingerprint)
                    })
                    .ok_or_else(|| crate::gone(op, format!("dataset `{}`", req.name)))?;
                v.tags = req.tags.clone();
                Ok(())
            },
        )
    }

    async fn source_version(&self, _ctx: &OpContext, source: &str) -> Result<String> {
        self.enter("source_version").await?;
        // The mock reads no remote data: every URL has one simulated version.
        Ok(format!(
            "simulated {}",
            &blake3::hash(source.as_bytes()).to_hex()[..12]
        ))
    }

    async fn delete_dataset(&self, _ctx: &OpContext, name: &str) -> Result<()> {
        self.enter("delete_dataset").await?;
        // Blobs stay: other versions or models may point at them.
        self.store().update(
            "delete_dataset",
            &dataset_path(name),
            |rec: &mut Option<DatasetRecord>| {
                *rec = None;
                Ok(())
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_checked() {
        assert!(check_digest("x", &"a".repeat(64)).is_ok());
        assert_eq!(
            check_digest("x", "../etc/passwd").unwrap_err().kind,
            ErrorKind::Invalid
        );
    }
}
