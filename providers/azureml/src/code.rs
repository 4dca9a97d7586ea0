//! A job's code and environment as Azure ML assets.
//!
//! Code: script mode packs the spec's `code` directory; a built-in gets a small folder with
//! its requests (`request.json`, and `trial.json` for a sweep's trials: see
//! `mlctl_core::builtin_job`). The files are versioned by content (blake3 over their paths and
//! bytes), uploaded through `startPendingUpload` (a SAS URL of the workspace's storage) and
//! registered as `codes/<name>/versions/<digest>`. A version that exists is reused: nothing
//! is uploaded twice.
//!
//! Environments: a built-in runs in the target's `image` (default [`default_image`], which has
//! `mlctl` on its PATH); script mode in the spec's `image`, else [`CURATED_SCRIPT_ENVIRONMENT`]
//! (Azure ML's curated scikit-learn environment, which has python3, pandas and scikit-learn:
//! what SageMaker's default scikit-learn image offers the same scripts). An image is
//! registered as `environments/<name>/versions/<digest of the image reference>`.
//!
//! # Caveats
//! Left out of packed code, at any depth: `.git`, `.mlctl`, `.env` files, `__pycache__`,
//! `.venv`, `node_modules`, `.ipynb_checkpoints`, `.DS_Store`. A symbolic link is followed
//! when it stays inside the code directory and refused when it leads out of it.

use crate::azure::Azure;
use crate::blob::Blob;
use mlctl_core::Tags;
use mlctl_core::error::Result;
use mlctl_core::{ErrorKind, ProviderError};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The image built-ins run in when the target names none: mlctl of this very version.
pub fn default_image() -> String {
    format!("ghcr.io/mlctl/mlctl:{}", env!("CARGO_PKG_VERSION"))
}

/// The environment script mode runs in without an `image`: Azure ML's curated scikit-learn
/// environment (python3, pandas, numpy, scikit-learn), referenced from the `azureml` registry.
pub const CURATED_SCRIPT_ENVIRONMENT: &str =
    "azureml://registries/azureml/environments/sklearn-1.5/labels/latest";

/// Files of a job's code, by `/`-joined relative path, in name order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CodeFiles(pub BTreeMap<String, Vec<u8>>);

impl CodeFiles {
    /// The content version: blake3 over every path and its bytes (32 hex characters).
    pub fn version(&self) -> String {
        let mut h = blake3::Hasher::new();
        for (path, bytes) in &self.0 {
            h.update(&(path.len() as u64).to_le_bytes());
            h.update(path.as_bytes());
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        }
        h.finalize().to_hex()[..32].to_string()
    }

    /// Writes the files under `dir` (to upload them).
    fn write_to(&self, dir: &Path) -> Result<()> {
        for (rel, bytes) in &self.0 {
            let p = dir.join(rel);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io("stage code", parent, e))?;
            }
            std::fs::write(&p, bytes).map_err(|e| io("stage code", &p, e))?;
        }
        Ok(())
    }
}

fn io(op: &str, path: &Path, e: std::io::Error) -> ProviderError {
    ProviderError::new(
        ErrorKind::Other,
        "azureml",
        op,
        format!("{}: {e}", path.display()),
    )
}

fn left_out(name: &str) -> bool {
    matches!(
        name,
        ".git"
            | ".mlctl"
            | ".env"
            | "__pycache__"
            | ".venv"
            | "node_modules"
            | ".ipynb_checkpoints"
            | ".DS_Store"
    ) || name.starts_with(".env.")
}

/// The files of a script's code directory `dir` (a single file is packed under its name).
///
/// # Errors
/// A directory that cannot be read, or a symbolic link out of it (`Invalid`, naming it).
pub fn pack_dir(dir: &Path) -> Result<CodeFiles> {
    let root = dir.canonicalize().map_err(|e| io("pack code", dir, e))?;
    let mut out = BTreeMap::new();
    if root.is_file() {
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "code".into());
        out.insert(
            name,
            std::fs::read(&root).map_err(|e| io("pack code", &root, e))?,
        );
        return Ok(CodeFiles(out));
    }
    walk(&root, &root, "", &mut vec![root.clone()], &mut out)?;
    Ok(CodeFiles(out))
}

fn walk(
    root: &Path,
    dir: &Path,
    rel: &str,
    within: &mut Vec<PathBuf>,
    out: &mut BTreeMap<String, Vec<u8>>,
) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| io("pack code", dir, e))?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if left_out(&name) {
            continue;
        }
        let path = entry.path();
        let rel_path = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        // Links are followed only within the code directory.
        let Ok(real) = path.canonicalize() else {
            continue; // a dangling link
        };
        if !real.starts_with(root) {
            return Err(ProviderError::new(
                ErrorKind::Invalid,
                "azureml",
                "pack code",
                format!(
                    "`{rel_path}` links to {}, outside the code directory; copy what it needs into the code directory",
                    real.display()
                ),
            ));
        }
        if real.is_dir() {
            if within.contains(&real) {
                return Err(ProviderError::new(
                    ErrorKind::Invalid,
                    "azureml",
                    "pack code",
                    format!("`{rel_path}` links to a directory that contains it (a loop)"),
                ));
            }
            within.push(real.clone());
            walk(root, &real, &rel_path, within, out)?;
            within.pop();
        } else {
            out.insert(
                rel_path,
                std::fs::read(&real).map_err(|e| io("pack code", &real, e))?,
            );
        }
    }
    Ok(())
}

/// An Azure ML asset name from mlctl names: letters, digits, `-` and `_`, at most 255
/// characters, starting with a letter or digit.
pub fn asset_name(parts: &[&str]) -> String {
    let joined = parts.join("-");
    let mut s: String = joined
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        s.insert(0, 'x');
    }
    s.truncate(255);
    s
}

/// The body of a code container (`PUT codes/<name>`).
pub fn code_container_body(description: &str, tags: &Tags) -> Value {
    json!({"properties": {"description": description, "tags": tags.to_map()}})
}

/// The body of a code version (`PUT codes/<name>/versions/<v>`): where its files are.
pub fn code_version_body(blob_uri: &str, tags: &Tags) -> Value {
    json!({"properties": {"codeUri": blob_uri, "tags": tags.to_map()}})
}

/// The body of `startPendingUpload`.
pub fn pending_upload_body() -> Value {
    json!({"pendingUploadType": "TemporaryBlobReference"})
}

/// `(blobUri, sasUri)` of a `startPendingUpload` answer.
///
/// # Errors
/// An answer without them.
pub fn pending_upload_urls(answer: &Value) -> Result<(String, String)> {
    let r = answer.get("blobReferenceForConsumption");
    let blob = r.and_then(|r| r.get("blobUri")).and_then(Value::as_str);
    let sas = r
        .and_then(|r| r.pointer("/credential/sasUri"))
        .and_then(Value::as_str);
    match (blob, sas) {
        (Some(b), Some(s)) => Ok((b.to_string(), s.to_string())),
        _ => Err(ProviderError::new(
            ErrorKind::Other,
            "azureml",
            "startPendingUpload",
            "Azure ML answered without `blobReferenceForConsumption.blobUri` and `.credential.sasUri`",
        )),
    }
}

/// The body of an environment version: the image it runs.
pub fn environment_version_body(image: &str, tags: &Tags) -> Value {
    json!({"properties": {
        "image": image,
        "description": format!("{image}, registered by mlctl"),
        "tags": tags.to_map(),
    }})
}

/// Registers `files` as code `name` (unless that version exists); returns the ARM id of the
/// version, what a job's `codeId` takes.
///
/// # Errors
/// ARM's and the upload's errors.
pub(crate) async fn ensure_code(
    az: &Azure,
    name: &str,
    files: &CodeFiles,
    description: &str,
    tags: &Tags,
) -> Result<String> {
    let version = files.version();
    let path = format!("codes/{name}/versions/{version}");
    if az.arm.get(&path).await?.is_some() {
        return Ok(az.arm.id(&path));
    }
    let answer = az
        .arm
        .post(
            &format!("{path}/startPendingUpload"),
            &pending_upload_body(),
        )
        .await?;
    let (blob_uri, sas_uri) = pending_upload_urls(&answer)?;
    let staged = tempfile_dir()?;
    files.write_to(staged.path())?;
    Blob::upload_dir_to_sas(&sas_uri, staged.path()).await?;
    az.arm
        .put(
            &format!("codes/{name}"),
            &code_container_body(description, tags),
        )
        .await?;
    az.arm
        .put(&path, &code_version_body(&blob_uri, tags))
        .await?;
    Ok(az.arm.id(&path))
}

/// The `environmentId` of a job running `image` (registered unless it is): a registry
/// reference (`azureml://...`) is taken as it is.
///
/// # Errors
/// ARM's errors.
pub(crate) async fn ensure_environment(az: &Azure, image: &str, tags: &Tags) -> Result<String> {
    if image.starts_with("azureml://") {
        return Ok(image.to_string());
    }
    let name = asset_name(&["mlctl", image.rsplit('/').next().unwrap_or(image)]);
    let version = blake3::hash(image.as_bytes()).to_hex()[..16].to_string();
    let path = format!("environments/{name}/versions/{version}");
    if az.arm.get(&path).await?.is_none() {
        az.arm
            .put(
                &format!("environments/{name}"),
                &json!({"properties": {"description": "images of mlctl jobs", "tags": tags.to_map()}}),
            )
            .await?;
        az.arm
            .put(&path, &environment_version_body(image, tags))
            .await?;
    }
    Ok(az.arm.id(&path))
}

fn tempfile_dir() -> Result<TempDir> {
    TempDir::new()
}

/// A temporary directory removed on drop (the staged code).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir> {
        let p = std::env::temp_dir().join(format!(
            "mlctl-az-code-{}-{}",
            std::process::id(),
            time::OffsetDateTime::now_utc().unix_timestamp_nanos()
        ));
        std::fs::create_dir_all(&p).map_err(|e| io("stage code", &p, e))?;
        Ok(TempDir(p))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
