//! MLflow models in: a Model's `mlflow:` source (a directory in the project, or a `runs:/` or
//! `models:/` URI on the target's tracking server) read into the files the registry keeps.
//!
//! - `serve: native`: a scikit-learn model is converted exactly into mlctl's portable model by
//!   `python/sklearn_to_mlctl.py`, run with `python3` (the Python that has the model's
//!   libraries: scikit-learn, and mlflow or cloudpickle to unpickle it); a model it cannot
//!   represent exactly is refused, saying to serve it with `pyfunc`.
//! - `serve: pyfunc`: the MLflow model directory as it is, served by `mlflow models serve`
//!   through the Endpoint's `serve.command`.

use crate::client::Client;
use mlctl_core::components::{Artifact, ImportedModel, ModelImporter, OpContext};
use mlctl_core::error::{ErrorKind, ProviderError, Result};
use mlctl_spec::{MlflowModel, MlflowServe, Tracking};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The converter (`sklearn_to_mlctl.py`), written to a temporary directory and run there.
pub const SKLEARN_CONVERTER: &str = include_str!("../python/sklearn_to_mlctl.py");

/// The converter's exit status for a model it cannot represent exactly.
const NOT_NATIVE: i32 = 3;

/// The most bytes an imported model may have (files are held in memory on their way to the
/// registry).
const MAX_MODEL_BYTES: u64 = 2 << 30;

/// Reads `mlflow:` sources: from the project, or from `tracking` (the target's server, its
/// secrets resolved) for a URI.
#[derive(Debug, Clone)]
pub struct Importer {
    tracking: Option<Tracking>,
    python: String,
}

impl Importer {
    /// An importer reading URIs from `tracking` (none: a URI source is refused) and running
    /// the converter with `python` (`python3` on the PATH mlctl runs with, by default).
    pub fn new(tracking: Option<Tracking>, python: Option<String>) -> Importer {
        Importer {
            tracking,
            python: python.unwrap_or_else(|| "python3".into()),
        }
    }
}

fn invalid(model: &str, message: String) -> ProviderError {
    ProviderError::new(
        ErrorKind::Invalid,
        "mlflow",
        "import",
        format!("model `{model}`: {message}"),
    )
}

#[async_trait::async_trait]
impl ModelImporter for Importer {
    async fn import(
        &self,
        ctx: &OpContext,
        model: &str,
        spec: &MlflowModel,
    ) -> Result<ImportedModel> {
        let mut lineage = BTreeMap::from([
            ("importedFrom".to_string(), "mlflow".to_string()),
            ("mlflowSource".to_string(), spec.source().to_string()),
        ]);
        let (files, metrics) = match (&spec.path, &spec.uri) {
            (Some(path), _) => (
                read_dir(model, &ctx.project_dir.join(path))?,
                BTreeMap::new(),
            ),
            (None, Some(uri)) => self.download(model, uri, &mut lineage).await?,
            (None, None) => return Err(invalid(model, "`mlflow` has no `path` or `uri`".into())),
        };
        let mlmodel = files
            .files
            .get("MLmodel")
            .ok_or_else(|| {
                invalid(
                    model,
                    format!(
                        "`{}` is not an MLflow model: it has no MLmodel file",
                        spec.source()
                    ),
                )
            })
            .and_then(|b| {
                let text = String::from_utf8_lossy(b);
                mlctl_spec::yaml::parse(&text)
                    .ok()
                    .and_then(|docs| docs.first().map(|d| d.to_json()))
                    .ok_or_else(|| invalid(model, "its MLmodel file is not YAML".into()))
            })?;
        let flavors: Vec<String> = mlmodel["flavors"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        lineage.insert("mlflowFlavors".into(), flavors.join(","));
        if let Some(v) = mlmodel["mlflow_version"].as_str() {
            lineage.insert("mlflowVersion".into(), v.to_string());
        }
        match spec.serve_mode() {
            MlflowServe::Pyfunc => {
                if !flavors.iter().any(|f| f == "python_function") {
                    return Err(invalid(
                        model,
                        format!(
                            "`serve: pyfunc` needs the python_function flavour, and this model has {}",
                            flavors.join(", ")
                        ),
                    ));
                }
                lineage.insert("servedAs".into(), "pyfunc".into());
                let summary = format!(
                    "imported MLflow model {} as a python_function ({} files)",
                    spec.source(),
                    files.files.len()
                );
                Ok(ImportedModel {
                    files,
                    metrics,
                    lineage,
                    summary,
                })
            }
            MlflowServe::Native => {
                if !flavors.iter().any(|f| f == "sklearn") {
                    return Err(invalid(
                        model,
                        format!(
                            "only scikit-learn models convert into mlctl's portable model, and this one has the flavours {}; import it with `serve: pyfunc`",
                            flavors.join(", ")
                        ),
                    ));
                }
                let (converted, summary) = self.convert(model, &files).await?;
                lineage.insert("servedAs".into(), "native".into());
                for key in ["algorithm", "sklearnClass"] {
                    if let Some(v) = summary.get(key).and_then(Value::as_str) {
                        lineage.insert(key.to_string(), v.to_string());
                    }
                }
                let summary = format!(
                    "converted the scikit-learn model {} into mlctl's portable model ({})",
                    spec.source(),
                    summary["algorithm"].as_str().unwrap_or("?")
                );
                Ok(ImportedModel {
                    files: converted,
                    metrics,
                    lineage,
                    summary,
                })
            }
        }
    }
}

/// The artifact URI of an MLflow 3 logged model (`m-...`).
async fn logged_model_uri(client: &Client, id: &str) -> Result<String, crate::client::CallError> {
    let v = client
        .get(
            &format!("logged-models/{}", mlctl_core::url::percent_encode(id)),
            &[],
        )
        .await?;
    Ok(v["model"]["info"]["artifact_uri"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

impl Importer {
    /// Where `runs:/RUN/PATH` is: under the run's artifacts, or (MLflow 3, where `log_model`
    /// keeps a model apart from its run) the logged model of that run and name.
    async fn run_path(
        &self,
        client: &Client,
        run: &str,
        path: &str,
    ) -> Result<String, crate::client::CallError> {
        let info = client.get("runs/get", &[("run_id", run)]).await?;
        let base = info["run"]["info"]["artifact_uri"]
            .as_str()
            .unwrap_or_default();
        let under_run = format!("{}/{}", base.trim_end_matches('/'), path.trim_matches('/'));
        if !client
            .list_artifacts(&under_run, "")
            .await
            .unwrap_or_default()
            .is_empty()
        {
            return Ok(under_run);
        }
        let experiment = info["run"]["info"]["experiment_id"]
            .as_str()
            .unwrap_or_default();
        let filter = format!(
            "source_run_id = '{}' AND name = '{}'",
            run.replace('\'', ""),
            path.trim_matches('/').replace('\'', "")
        );
        let found = client
            .post(
                "logged-models/search",
                &serde_json::json!({"experiment_ids": [experiment], "filter": filter, "max_results": 1}),
            )
            .await?;
        match found["models"][0]["info"]["artifact_uri"].as_str() {
            Some(u) => Ok(u.to_string()),
            None => Ok(under_run),
        }
    }

    /// Runs the converter on `files` (an MLflow sklearn model): the portable model's files,
    /// and the converter's summary line.
    async fn convert(&self, model: &str, files: &Artifact) -> Result<(Artifact, Value)> {
        let work = tempdir(model)?;
        let src = work.join("mlflow");
        write_tree(model, &src, files)?;
        let script = work.join("sklearn_to_mlctl.py");
        let out = work.join("mlctl");
        std::fs::write(&script, SKLEARN_CONVERTER)
            .map_err(|e| invalid(model, format!("cannot write the converter: {e}")))?;
        let run = tokio::process::Command::new(&self.python)
            .arg(&script)
            .arg(&src)
            .arg(&out)
            .env_clear()
            .envs(mlctl_core::transform::child_env())
            .output()
            .await;
        let result = match run {
            Err(e) => Err(invalid(
                model,
                format!(
                    "cannot run `{}` to convert the scikit-learn model: {e}; install Python 3 with the model's libraries (scikit-learn, mlflow), or import it with `serve: pyfunc`",
                    self.python
                ),
            )),
            Ok(o) if o.status.success() => {
                let summary: Value = String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .last()
                    .and_then(|l| serde_json::from_str(l).ok())
                    .unwrap_or(Value::Null);
                read_dir(model, &out).map(|a| (a, summary))
            }
            Ok(o) => {
                let stderr = String::from_utf8_lossy(&o.stderr);
                let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                let message = mlctl_spec::suggest::clip(&tail.join("\n"), 2000).into_owned();
                Err(if o.status.code() == Some(NOT_NATIVE) {
                    ProviderError::new(
                        ErrorKind::Invalid,
                        "mlflow",
                        "import",
                        format!("model `{model}`: {message} (`mlflow.serve: pyfunc`)"),
                    )
                } else {
                    invalid(
                        model,
                        format!(
                            "converting the scikit-learn model failed: {message}; `{}` needs the model's libraries (its requirements.txt)",
                            self.python
                        ),
                    )
                })
            }
        };
        let _ = std::fs::remove_dir_all(&work);
        result
    }

    /// The files of a model on the tracking server, and the metrics of the run it came from.
    async fn download(
        &self,
        model: &str,
        uri: &str,
        lineage: &mut BTreeMap<String, String>,
    ) -> Result<(Artifact, BTreeMap<String, f64>)> {
        let tracking = self.tracking.as_ref().ok_or_else(|| {
            invalid(
                model,
                format!(
                    "`{uri}` is on a tracking server, and this target has no `tracking:`; add `tracking: {{provider: mlflow, uri: ...}}` to the target, or copy the model into the project and use `path`"
                ),
            )
        })?;
        let client = Client::new(tracking).map_err(|e| invalid(model, e.message))?;
        let fail = |what: &str, e: crate::client::CallError| {
            ProviderError::new(
                if e.not_found() {
                    ErrorKind::NotFound
                } else {
                    ErrorKind::Transient
                },
                "mlflow",
                "import",
                format!("model `{model}`: cannot {what}: {e}"),
            )
        };
        // runs:/RUN/PATH, or models:/NAME/N through its version's source (a run's path, an
        // MLflow 3 logged model `models:/m-...`, or an artifact URI).
        let (run_id, source) = if let Some(rest) = uri.strip_prefix("runs:/") {
            let (run, path) = rest.split_once('/').unwrap_or((rest, ""));
            (
                run.to_string(),
                self.run_path(&client, run, path)
                    .await
                    .map_err(|e| fail(&format!("find `{uri}`"), e))?,
            )
        } else {
            let rest = uri.trim_start_matches("models:/");
            let (name, version) = rest.rsplit_once('/').unwrap_or((rest, ""));
            let mv = client
                .get(
                    "model-versions/get",
                    &[("name", name), ("version", version)],
                )
                .await
                .map_err(|e| fail(&format!("read model `{name}` version {version}"), e))?;
            let mv = &mv["model_version"];
            let source = mv["source"].as_str().unwrap_or_default().to_string();
            let run_id = mv["run_id"].as_str().unwrap_or_default().to_string();
            let source = if let Some(rest) = source.strip_prefix("runs:/") {
                let (run, path) = rest.split_once('/').unwrap_or((rest, ""));
                self.run_path(&client, run, path)
                    .await
                    .map_err(|e| fail(&format!("find `{source}`"), e))?
            } else if let Some(id) = source.strip_prefix("models:/") {
                logged_model_uri(&client, id)
                    .await
                    .map_err(|e| fail(&format!("find logged model `{id}`"), e))?
            } else {
                source
            };
            (run_id, source)
        };
        lineage.insert("mlflowArtifacts".into(), source.clone());
        let mut metrics = BTreeMap::new();
        if !run_id.is_empty() {
            lineage.insert("mlflowRunId".into(), run_id.clone());
            if let Ok(info) = client.get("runs/get", &[("run_id", &run_id)]).await {
                for m in info["run"]["data"]["metrics"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    if let (Some(k), Some(v)) = (m["key"].as_str(), m["value"].as_f64()) {
                        metrics.insert(k.to_string(), v);
                    }
                }
            }
        }
        let mut files = BTreeMap::new();
        let mut total = 0u64;
        let mut pending = vec![String::new()];
        while let Some(dir) = pending.pop() {
            let listing = client
                .list_artifacts(&source, &dir)
                .await
                .map_err(|e| fail(&format!("list the files of `{uri}`"), e))?;
            for (path, is_dir) in listing {
                if is_dir {
                    pending.push(path);
                    continue;
                }
                let bytes = client
                    .get_artifact(&source, &path)
                    .await
                    .map_err(|e| fail(&format!("download `{path}` of `{uri}`"), e))?;
                total += bytes.len() as u64;
                if total > MAX_MODEL_BYTES {
                    return Err(invalid(
                        model,
                        format!("`{uri}` is larger than {} GiB", MAX_MODEL_BYTES >> 30),
                    ));
                }
                files.insert(path, bytes);
            }
        }
        if files.is_empty() {
            return Err(invalid(model, format!("`{uri}` holds no files")));
        }
        Ok((Artifact { files }, metrics))
    }
}

/// Every file under `dir`, by `/`-separated path (links are refused: a model directory is
/// plain files).
fn read_dir(model: &str, dir: &Path) -> Result<Artifact> {
    let mut files = BTreeMap::new();
    let mut total = 0u64;
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        let entries = std::fs::read_dir(dir.join(&rel)).map_err(|e| {
            invalid(
                model,
                format!("cannot read {}: {e}", dir.join(&rel).display()),
            )
        })?;
        for entry in entries {
            let entry =
                entry.map_err(|e| invalid(model, format!("cannot read {}: {e}", dir.display())))?;
            let kind = entry.file_type().map_err(|e| {
                invalid(
                    model,
                    format!("cannot read {}: {e}", entry.path().display()),
                )
            })?;
            let path = rel.join(entry.file_name());
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let bytes = std::fs::read(entry.path()).map_err(|e| {
                    invalid(
                        model,
                        format!("cannot read {}: {e}", entry.path().display()),
                    )
                })?;
                total += bytes.len() as u64;
                if total > MAX_MODEL_BYTES {
                    return Err(invalid(
                        model,
                        format!(
                            "{} is larger than {} GiB",
                            dir.display(),
                            MAX_MODEL_BYTES >> 30
                        ),
                    ));
                }
                let key = path
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                files.insert(key, bytes);
            } else {
                return Err(invalid(
                    model,
                    format!(
                        "{} is a link; a model directory must hold plain files",
                        entry.path().display()
                    ),
                ));
            }
        }
    }
    Ok(Artifact { files })
}

fn write_tree(model: &str, root: &Path, files: &Artifact) -> Result<()> {
    for (path, bytes) in &files.files {
        if path.split('/').any(|seg| seg == ".." || seg.is_empty()) {
            return Err(invalid(
                model,
                format!("the model holds a file outside it: `{path}`"),
            ));
        }
        let dest = root.join(path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| invalid(model, format!("cannot write {}: {e}", parent.display())))?;
        }
        std::fs::write(&dest, bytes)
            .map_err(|e| invalid(model, format!("cannot write {}: {e}", dest.display())))?;
    }
    Ok(())
}

fn tempdir(model: &str) -> Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("mlctl-import-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| invalid(model, format!("cannot make {}: {e}", dir.display())))?;
    Ok(dir)
}
