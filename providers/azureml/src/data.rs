//! Content-addressed blobs and dataset versions on Blob Storage, each version also an Azure
//! ML data asset.
//!
//! The layout and the checks (digest pin, schema, target column, profile, split) are the
//! shared ones of `mlctl_core::objectstore::datasets`, as on S3. A dataset reads a project
//! file or an `az://CONTAINER/path` blob of the target's storage account (streamed to a
//! temporary file, up to [`MAX_SOURCE`], exactly the version the plan saw by its ETag), and
//! keeps a content-addressed copy, so the version never changes under a job.
//!
//! # The data-asset seam
//! A registered version is also `PUT data/<project>-<name>` (a `uri_file` container) and
//! `PUT data/<project>-<name>/versions/<fingerprint[..12]>` (`dataUri` the table's https URL,
//! the Dataset's tags), so the Azure ML studio and a fresh runner see it. That goes through
//! the stack's [`Arm`]; a store built with [`AzureDataStore::blob_only`] (the Azurite tests,
//! which have no ARM) skips it. The asset is registered before the version's record is
//! written, so a recorded version always has its asset.

use crate::arm::Arm;
use crate::azure::{Azure, Features, Settings};
use crate::blob::Blob;
use async_trait::async_trait;
use mlctl_core::components::InPlaceRequest;
use mlctl_core::error::Result;
use mlctl_core::objectstore::datasets;
use mlctl_core::support::{FieldRules, Support};
use mlctl_core::{
    Capabilities, DataStore, DatasetRequest, DatasetVersion, ErrorKind, OpContext, ProviderError,
};
use mlctl_spec::DataFormat;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const PROVIDER: &str = "azureml";

/// The largest `az://` source mlctl reads to check a dataset (2 GiB).
pub const MAX_SOURCE: u64 = 2 << 30;

/// The [`DataStore`] of an azureml target.
pub struct AzureDataStore {
    blob: Arc<Blob>,
    /// Where versions are registered as data assets; `None` for [`AzureDataStore::blob_only`].
    az: Option<Arc<Azure>>,
    settings: Settings,
    features: Features,
}

impl AzureDataStore {
    /// The data store of a stack: blobs in the target's `storage`, versions registered as
    /// data assets in its workspace.
    pub(crate) fn new(az: Arc<Azure>) -> Self {
        AzureDataStore {
            blob: az.blob.clone(),
            settings: az.settings.clone(),
            features: az.features,
            az: Some(az),
        }
    }

    /// Blob Storage only, no data assets: for tests against Azurite, which has no ARM.
    pub(crate) fn blob_only(blob: Arc<Blob>, settings: Settings) -> Self {
        AzureDataStore {
            blob,
            az: None,
            settings,
            features: Features::AZURE,
        }
    }

    fn arm(&self) -> Option<&Arm> {
        self.az.as_ref().map(|az| &az.arm)
    }

    fn err(&self, kind: ErrorKind, op: &str, message: String) -> ProviderError {
        ProviderError::new(kind, PROVIDER, op, message)
    }

    /// `az://CONTAINER/path` as the container's [`Blob`] and the blob's name.
    fn source_blob(&self, name: &str, source: &str) -> Result<(Blob, String)> {
        let rest = source.strip_prefix("az://").unwrap_or_default();
        match rest.split_once('/') {
            Some((container, path))
                if !container.is_empty() && !path.is_empty() && !path.ends_with('/') =>
            {
                Ok((self.blob.in_container(container)?, path.to_string()))
            }
            _ => Err(self.err(
                ErrorKind::Invalid,
                "register dataset",
                format!(
                    "dataset `{name}`: `{source}` names no blob; write az://CONTAINER/path/data.csv (a container of the target's storage account, one CSV or Parquet blob)"
                ),
            )),
        }
    }

    /// Streams an `az://` source to a temporary file, the version the plan saw.
    async fn fetch_source(
        &self,
        req: &DatasetRequest,
        source: &str,
    ) -> Result<(tempfile::NamedTempFile, u64)> {
        let op = "register dataset";
        let name = &req.name;
        let (container, key) = self.source_blob(name, source)?;
        let suffix = Path::new(&key)
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        let file = tempfile::Builder::new()
            .prefix("mlctl-az-source-")
            .suffix(&suffix)
            .tempfile()
            .map_err(|e| ProviderError::io(PROVIDER, op, e))?;
        let planned = req
            .source_version
            .as_deref()
            .and_then(|v| v.strip_prefix("etag "));
        match container
            .download_to_file(&key, file.path(), MAX_SOURCE, planned)
            .await
        {
            Ok(Some((size, _))) => Ok((file, size)),
            Ok(None) => Err(self.err(
                ErrorKind::NotFound,
                op,
                format!("dataset `{name}`: {source} does not exist (a folder is not read: point `source` at one CSV or Parquet blob)"),
            )),
            Err(e) if e.kind == ErrorKind::Precondition => Err(self.err(
                ErrorKind::Precondition,
                op,
                format!(
                    "dataset `{name}`: {source} changed since the plan (the plan saw {}); run `mlctl plan` again to see the new data",
                    req.source_version.as_deref().unwrap_or_default()
                ),
            )),
            Err(e) => Err(e),
        }
    }

    /// Registers the version `fingerprint` of dataset `name`, the table at `uri`, as a data
    /// asset of the workspace (skipped without ARM). PUT is idempotent: registering again
    /// replaces the tags.
    async fn register_asset(
        &self,
        ctx: &OpContext,
        name: &str,
        fingerprint: &str,
        uri: &str,
        tags: &mlctl_core::Tags,
    ) -> Result<()> {
        let Some(arm) = self.arm() else {
            return Ok(());
        };
        let (container, version) = asset_paths(&ctx.project, name, fingerprint);
        let tags = tags.to_map();
        let description = format!("mlctl dataset `{name}` of project `{}`", ctx.project);
        arm.put(
            &container,
            &json!({"properties": {
                "dataType": "uri_file",
                "description": description,
                "tags": tags,
            }}),
        )
        .await?;
        arm.put(
            &version,
            &json!({"properties": {
                "dataType": "uri_file",
                "dataUri": uri,
                "description": description,
                "tags": tags,
            }}),
        )
        .await?;
        Ok(())
    }
}

/// The ARM paths of a dataset's data asset and of one version of it.
pub(crate) fn asset_paths(project: &str, name: &str, fingerprint: &str) -> (String, String) {
    let container = format!("data/{project}-{name}");
    let version = &fingerprint[..fingerprint.len().min(12)];
    let path = format!("{container}/versions/{version}");
    (container, path)
}

#[async_trait]
impl DataStore for AzureDataStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            fields: field_rules(),
            poll_interval: self.settings.poll_interval,
            notes: self.features.notes(),
            ..Capabilities::default()
        }
    }

    async fn put_blob(&self, bytes: Vec<u8>) -> Result<String> {
        datasets::put_blob(&*self.blob, bytes, "application/octet-stream").await
    }

    async fn get_blob(&self, digest: &str) -> Result<Vec<u8>> {
        datasets::get_blob(&*self.blob, digest).await
    }

    async fn has_blob(&self, digest: &str) -> Result<bool> {
        datasets::has_blob(&*self.blob, digest).await
    }

    async fn register_dataset(
        &self,
        ctx: &OpContext,
        req: &DatasetRequest,
    ) -> Result<DatasetVersion> {
        if let Some(existing) = datasets::registered(&*self.blob, &ctx.project, req).await? {
            return Ok(existing);
        }
        let op = "register dataset";
        let source = match (&req.spec.source, &req.spec.transform) {
            (Some(s), _) => s.clone(),
            (None, Some(t)) => {
                let Some(az) = &self.az else {
                    return Err(self.err(
                        ErrorKind::NotSupported,
                        op,
                        format!(
                            "dataset `{}`: this data store has no workspace to run its transform in",
                            req.name
                        ),
                    ));
                };
                // The job's output file, read back like an az:// source of the target's
                // own container.
                let key = crate::transform::run(az, ctx, req, t).await?;
                format!("az://{}/{key}", self.blob.container_name())
            }
            (None, None) => {
                return Err(self.err(
                    ErrorKind::Invalid,
                    op,
                    format!("dataset `{}` has no `source`", req.name),
                ));
            }
        };
        if source.contains("://") && !source.starts_with("az://") {
            return Err(self.err(
                ErrorKind::NotSupported,
                op,
                format!(
                    "dataset `{}`: the azureml target reads project files and az:// blobs, not `{source}`",
                    req.name
                ),
            ));
        }
        let fetched = if source.starts_with("az://") {
            Some(self.fetch_source(req, &source).await?)
        } else {
            None
        };
        let path: PathBuf = match &fetched {
            Some((f, _)) => f.path().to_path_buf(),
            None => ctx.project_dir.join(&source),
        };
        let format = req
            .spec
            .format
            .or_else(|| mlctl_ml::table::format_from_path(Path::new(&source)))
            .unwrap_or(DataFormat::Csv);
        let checked = datasets::check_table_blocking(PROVIDER, &path, format, req, &source).await?;
        let key = datasets::blob_key(&*self.blob, &checked.digest);
        if !self.blob.exists(&key).await? {
            self.blob
                .upload_file(&path, &key, datasets::table_content_type(format))
                .await?;
        }
        // The asset before the record: a recorded version always has its asset.
        self.register_asset(
            ctx,
            &req.name,
            &req.fingerprint,
            &self.blob.url(&key),
            &req.tags,
        )
        .await?;
        datasets::record_version(&*self.blob, &ctx.project, req, checked, &key).await
    }

    async fn read_profile(
        &self,
        _ctx: &OpContext,
        version: &DatasetVersion,
    ) -> Result<Option<Vec<u8>>> {
        let Some(uri) = &version.profile_uri else {
            return Ok(None);
        };
        let prefix = self.blob.url("");
        let Some(key) = uri.strip_prefix(&prefix) else {
            return Err(self.err(
                ErrorKind::Invalid,
                "read profile",
                format!(
                    "the profile of dataset `{}` is at `{uri}`, outside the target's storage {prefix}",
                    version.name
                ),
            ));
        };
        match self.blob.get(key).await? {
            Some(b) => Ok(Some(b)),
            None => Err(self.err(
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
        let version = datasets::update_tags(&*self.blob, &ctx.project, req).await?;
        self.register_asset(
            ctx,
            &req.name,
            &version.fingerprint,
            &version.uri,
            &req.tags,
        )
        .await
    }

    async fn source_version(&self, _ctx: &OpContext, source: &str) -> Result<String> {
        let op = "source version";
        if !source.starts_with("az://") {
            return Err(self.err(
                ErrorKind::NotSupported,
                op,
                format!("the azureml target reads project files and az:// blobs, not `{source}`"),
            ));
        }
        let (container, key) = self.source_blob("", source)?;
        match container.etag(&key).await? {
            Some(etag) if !etag.is_empty() => Ok(format!("etag {etag}")),
            Some(_) => Err(self.err(
                ErrorKind::Invalid,
                op,
                format!("{source} has no ETag; pin its content with `digest:` in the Dataset"),
            )),
            None => Err(self.err(
                ErrorKind::NotFound,
                op,
                format!("{source} does not exist; point `source` at one CSV or Parquet blob"),
            )),
        }
    }

    async fn delete_dataset(&self, ctx: &OpContext, name: &str) -> Result<()> {
        if let Some(arm) = self.arm() {
            let (container, _) = asset_paths(&ctx.project, name, "");
            for v in arm.list(&format!("{container}/versions")).await? {
                if let Some(version) = v.get("name").and_then(|n| n.as_str()) {
                    arm.delete(&format!("{container}/versions/{version}"))
                        .await?;
                }
            }
            arm.delete(&container).await?;
        }
        datasets::delete_versions(&*self.blob, &ctx.project, name).await
    }
}

/// What an azureml target does with each Dataset field.
pub(crate) fn field_rules() -> FieldRules {
    FieldRules::new()
        .with(
            "Dataset.metadata.labels",
            Support::honoured_as(
                "tags on the dataset's Azure ML data asset and its version, and recorded with the version on Blob Storage; a change is applied in place (the asset version is PUT again), nothing is re-read",
            ),
        )
        .with(
            "Dataset.spec.source",
            Support::check(
                "honoured for project files and az://CONTAINER/path blobs of the target's storage account (read and checked alike, up to 2 GiB, the version the plan saw by its ETag); other sources refused",
                {
                    let schemes = mlctl_core::support::source_schemes(
                        "azureml",
                        &["", "az"],
                        "copy the data into the project or to a container of the target's storage account (az://CONTAINER/path)",
                    );
                    move |spec, r, node| schemes.refuse(spec, r, node)
                },
            ),
        )
        .with("Dataset.spec.format", Support::Honoured)
        .with(
            "Dataset.spec.digest",
            Support::honoured_as("the blake3 of the data, a project file or an az:// blob alike"),
        )
        .with("Dataset.spec.target", Support::Honoured)
        .with_all("Dataset.spec.schema", Support::Honoured)
        .with_all("Dataset.spec.split", Support::Honoured)
        .with_all("Dataset.spec.limits", Support::Honoured)
        .with(
            "Dataset.spec.transform.command",
            Support::honoured_as(
                "run with `sh` as an Azure ML command job (serverless, or the target's `compute`; at most 24 h; the job's name comes from the fingerprint, so a re-run finds it), in a directory holding `transform.code` at its project path: the command sees no other project file. Its variables are the local target's (MLCTL_INPUT_<NAME>, MLCTL_OUTPUT, MLCTL_OUTPUT_DIR, MLCTL_DATASET); a failed job's error and the last lines of its log are the error",
            ),
        )
        .with(
            "Dataset.spec.transform.inputs",
            Support::honoured_as(
                "each input Dataset's stored table is a `uri_file` input, copied to .mlctl-inputs/<name>.csv (or .parquet) where the command runs, named by MLCTL_INPUT_<NAME>",
            ),
        )
        .with(
            "Dataset.spec.transform.code",
            Support::honoured_as(
                "registered as the job's code version at its project path (without `.git`, `.mlctl`, `.env` files and caches), beside the entry script",
            ),
        )
        .with(
            "Dataset.spec.transform.output",
            Support::honoured_as(
                "relative to the job's `output` folder ($MLCTL_OUTPUT_DIR), uploaded by Azure ML when the job ends to transforms/<job>/output/, then read back and registered like any dataset (digest, schema, split, limits), content-addressed; an absolute path or `..` is refused at apply",
            ),
        )
        .with(
            "Dataset.spec.transform.image",
            Support::honoured_as(
                "the job's environment: an image (registered as an environment version) or an `azureml://` environment reference; without it, Azure ML's curated sklearn-1.5 environment (python3 with pandas and scikit-learn). It must have `sh`",
            ),
        )
        .with_all("Dataset.spec.transform", Support::Honoured)
}
