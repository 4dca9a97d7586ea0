//! MLflow's model registry as the target's Registry component (`tracking.registry: source`):
//! versions, stages, approvals and stage history live on the tracking server, where a team's
//! MLflow UI and clients read and change them, and mlctl reads them back on every plan.
//!
//! | mlctl | MLflow |
//! |---|---|
//! | model | registered model (tags `mlctl.project`, `mlctl.target`: a model another target made is refused) |
//! | version N | model version N (MLflow numbers them), tagged `mlctl.version`, `mlctl.fingerprint`, `mlctl.approval`, `mlctl.stage`, `mlctl.metrics`, `mlctl.lineage`, `mlctl.createdAt` |
//! | production | the alias `champion` (moving it in MLflow's UI is a promotion mlctl follows); the previous one is tagged `archived` |
//! | stage history | registered-model tags `mlctl.transition.<seq>` |
//! | files | uploaded to a registration run of the experiment (`registry/<model>/v<N>/`, an MLflow model directory for a portable model), and kept on this machine under the target's state directory, where the target's endpoints read them |
//!
//! The files being on this machine is why only the local and mock targets take it: their
//! deployers serve from a path (the validator refuses it elsewhere).

use crate::client::{CallError, Client, tags_of};
use mlctl_core::components::*;
use mlctl_core::error::{ErrorKind, ProviderError, Result};
use mlctl_core::support::FieldRules;
use mlctl_spec::Stage;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;

const PROVIDER: &str = "mlflow";
const CHAMPION: &str = crate::sync::CHAMPION;

/// The registry on a tracking server.
pub struct MlflowRegistry {
    client: Client,
    experiment: String,
    /// Where versions' files are kept on this machine: `<dir>/<model>/<version>/`.
    cache: PathBuf,
    fields: FieldRules,
    server: String,
}

impl MlflowRegistry {
    /// A registry on `tracking` (secrets resolved), logging registrations to `experiment`,
    /// keeping files under `cache`, declaring `fields` (the target's own registry's).
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(
        tracking: &mlctl_spec::Tracking,
        experiment: &str,
        cache: PathBuf,
        fields: FieldRules,
    ) -> Result<MlflowRegistry> {
        let client = Client::new(tracking).map_err(|e| fail("connect", e))?;
        Ok(MlflowRegistry {
            server: client.base().to_string(),
            client,
            experiment: experiment.to_string(),
            cache,
            fields,
        })
    }
}

fn fail(op: &str, e: CallError) -> ProviderError {
    let kind = match e.status {
        _ if e.not_found() => ErrorKind::NotFound,
        None => ErrorKind::Transient,
        Some(429) => ErrorKind::Throttled,
        Some(s) if s >= 500 => ErrorKind::Transient,
        _ => ErrorKind::Invalid,
    };
    ProviderError::new(kind, PROVIDER, op, e.to_string())
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl MlflowRegistry {
    /// The registered model, or `None`; refused when another target made it.
    async fn registered(&self, ctx: &OpContext, model: &str) -> Result<Option<Value>> {
        match self
            .client
            .get("registered-models/get", &[("name", model)])
            .await
        {
            Ok(v) => {
                let m = v["registered_model"].clone();
                let tags = tags_of(&m["tags"]);
                if (tags.get("mlctl.project"), tags.get("mlctl.target"))
                    != (Some(&ctx.project), Some(&ctx.target))
                {
                    return Err(ProviderError::new(
                        ErrorKind::Precondition,
                        PROVIDER,
                        "read model",
                        format!(
                            "registered model `{model}` on {} was not made by target `{}` of project `{}`; rename it there, or name the Model differently",
                            self.server, ctx.target, ctx.project
                        ),
                    ));
                }
                Ok(Some(m))
            }
            Err(e) if e.not_found() => Ok(None),
            Err(e) => Err(fail("read model", e)),
        }
    }

    /// Every mlctl version of `model`, with MLflow's tags, oldest first.
    async fn raw_versions(
        &self,
        model: &str,
    ) -> Result<Vec<(u32, BTreeMap<String, String>, Value)>> {
        let filter = format!("name='{}'", model.replace('\'', "\\'"));
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = vec![("filter", filter.as_str()), ("max_results", "200")];
            if let Some(t) = &token {
                q.push(("page_token", t.as_str()));
            }
            let page = self
                .client
                .get("model-versions/search", &q)
                .await
                .map_err(|e| fail("list versions", e))?;
            for mv in page["model_versions"].as_array().into_iter().flatten() {
                let tags = tags_of(&mv["tags"]);
                let Some(n) = mv["version"].as_str().and_then(|v| v.parse::<u32>().ok()) else {
                    continue;
                };
                if tags.contains_key("mlctl.fingerprint") {
                    out.push((n, tags, mv.clone()));
                }
            }
            match page["next_page_token"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        out.sort_by_key(|(n, _, _)| *n);
        Ok(out)
    }

    fn version_of(
        &self,
        model: &str,
        n: u32,
        tags: &BTreeMap<String, String>,
        champion: Option<u32>,
    ) -> ModelVersion {
        let stage = if champion == Some(n) {
            Stage::Production
        } else {
            match tags.get("mlctl.stage").map(String::as_str) {
                // Production is the alias: a version whose alias moved on is archived.
                Some("archived") | Some("production") => Stage::Archived,
                _ => Stage::Staging,
            }
        };
        let approval = match tags.get("mlctl.approval").map(String::as_str) {
            Some("approved") => ApprovalStatus::Approved,
            Some("rejected") => ApprovalStatus::Rejected,
            _ => ApprovalStatus::PendingManualApproval,
        };
        ModelVersion {
            model: model.to_string(),
            version: n,
            stage,
            approval,
            artifact_uri: self.dir(model, n).display().to_string(),
            metrics: tags
                .get("mlctl.metrics")
                .and_then(|m| serde_json::from_str(m).ok())
                .unwrap_or_default(),
            fingerprint: tags.get("mlctl.fingerprint").cloned().unwrap_or_default(),
            lineage: tags
                .get("mlctl.lineage")
                .and_then(|m| serde_json::from_str(m).ok())
                .unwrap_or_default(),
            created_at: tags.get("mlctl.createdAt").cloned().unwrap_or_default(),
        }
    }

    fn dir(&self, model: &str, n: u32) -> PathBuf {
        self.cache.join(model).join(n.to_string())
    }

    fn champion(registered: &Value) -> Option<u32> {
        registered["aliases"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["alias"] == CHAMPION)
            .and_then(|a| a["version"].as_str().and_then(|v| v.parse().ok()))
    }

    /// The versions as mlctl reads them, each one's files on this machine.
    async fn read_all(&self, ctx: &OpContext, model: &str) -> Result<Vec<ModelVersion>> {
        let Some(registered) = self.registered(ctx, model).await? else {
            return Ok(Vec::new());
        };
        let champion = Self::champion(&registered);
        let mut out = Vec::new();
        for (n, tags, raw) in self.raw_versions(model).await? {
            self.ensure_files(model, n, &raw).await?;
            out.push(self.version_of(model, n, &tags, champion));
        }
        Ok(out)
    }

    /// Downloads a version's files into its directory on this machine when absent.
    async fn ensure_files(&self, model: &str, n: u32, raw: &Value) -> Result<()> {
        let dir = self.dir(model, n);
        if dir.join(".complete").exists() {
            return Ok(());
        }
        let source = raw["source"].as_str().unwrap_or_default();
        let mut pending = vec![String::new()];
        let tmp = self.cache.join(model).join(format!(".{n}.partial"));
        let _ = std::fs::remove_dir_all(&tmp);
        while let Some(d) = pending.pop() {
            for (path, is_dir) in self
                .client
                .list_artifacts(source, &d)
                .await
                .map_err(|e| fail("download version", e))?
            {
                if is_dir {
                    pending.push(path);
                    continue;
                }
                // The MLflow model directory keeps the portable model under `model/`.
                let Some(rel) = path.strip_prefix("model/") else {
                    continue;
                };
                let bytes = self
                    .client
                    .get_artifact(source, &path)
                    .await
                    .map_err(|e| fail("download version", e))?;
                let dest = tmp.join(rel);
                std::fs::create_dir_all(dest.parent().unwrap_or(&tmp))
                    .map_err(io("download version"))?;
                std::fs::write(&dest, bytes).map_err(io("download version"))?;
            }
        }
        std::fs::create_dir_all(&tmp).map_err(io("download version"))?;
        std::fs::write(tmp.join(".complete"), b"").map_err(io("download version"))?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&tmp, &dir).map_err(io("download version"))?;
        Ok(())
    }

    async fn find(&self, ctx: &OpContext, model: &str, version: u32) -> Result<ModelVersion> {
        self.read_all(ctx, model)
            .await?
            .into_iter()
            .find(|v| v.version == version)
            .ok_or_else(|| {
                ProviderError::new(
                    ErrorKind::NotFound,
                    PROVIDER,
                    "read version",
                    format!(
                        "model `{model}` has no version {version} on {}",
                        self.server
                    ),
                )
            })
    }

    async fn set_tag(&self, model: &str, version: u32, key: &str, value: &str) -> Result<()> {
        self.client
            .post(
                "model-versions/set-tag",
                &json!({"name": model, "version": version.to_string(), "key": key, "value": value}),
            )
            .await
            .map(|_| ())
            .map_err(|e| fail("tag version", e))
    }

    async fn record_transition(&self, model: &str, t: &StageTransition) -> Result<()> {
        let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
        self.client
            .post(
                "registered-models/set-tag",
                &json!({"name": model, "key": format!("mlctl.transition.{nanos:024}"), "value": serde_json::to_string(t).unwrap_or_default()}),
            )
            .await
            .map(|_| ())
            .map_err(|e| fail("record stage history", e))
    }

    async fn experiment_id(&self, ctx: &OpContext) -> Result<String> {
        self.client
            .experiment_id(&self.experiment, &ctx.project)
            .await
            .map_err(|e| fail("read experiment", e))
    }
}

fn io(op: &'static str) -> impl Fn(std::io::Error) -> ProviderError {
    move |e| ProviderError::new(ErrorKind::Transient, PROVIDER, op, e.to_string())
}

#[async_trait::async_trait]
impl Registry for MlflowRegistry {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            fields: self.fields.clone(),
            stage_history: true,
            artifacts: true,
            ..Capabilities::default()
        }
    }

    async fn versions(&self, ctx: &OpContext, model: &str) -> Result<Vec<ModelVersion>> {
        self.read_all(ctx, model).await
    }

    async fn register(&self, ctx: &OpContext, req: &RegisterRequest) -> Result<ModelVersion> {
        let model = &req.model;
        if let Some(v) = self
            .read_all(ctx, model)
            .await?
            .into_iter()
            .find(|v| v.fingerprint == req.fingerprint)
        {
            return Ok(v);
        }
        let source = &req.training.artifact_uri;
        if source.contains("://") {
            return Err(ProviderError::new(
                ErrorKind::NotSupported,
                PROVIDER,
                "register",
                format!(
                    "MLflow as the registry takes files on this machine, and this version's are at {source}"
                ),
            ));
        }
        let files = Artifact::read_path(PROVIDER, std::path::Path::new(source))?;
        if self.registered(ctx, model).await?.is_none() {
            let body = json!({
                "name": model,
                "description": req.description.clone().unwrap_or_default(),
                "tags": [
                    {"key": "mlctl.project", "value": ctx.project},
                    {"key": "mlctl.target", "value": ctx.target},
                ],
            });
            match self.client.post("registered-models/create", &body).await {
                Ok(_) => {}
                Err(e) if e.already_exists() => {}
                Err(e) => return Err(fail("register model", e)),
            }
        }
        // The files go to a registration run of their own.
        let experiment = self.experiment_id(ctx).await?;
        let run = self
            .client
            .post(
                "runs/create",
                &json!({"experiment_id": experiment, "run_name": format!("register-{model}"), "start_time": (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64, "tags": [
                    {"key": "mlctl.resource", "value": format!("Model/{model}")},
                    {"key": "mlctl.fingerprint", "value": req.fingerprint},
                ]}),
            )
            .await
            .map_err(|e| fail("register", e))?;
        let run_id = run["run"]["info"]["run_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let artifact_uri = run["run"]["info"]["artifact_uri"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let created = now();
        let provisional = ModelVersion {
            model: model.clone(),
            version: 0,
            stage: req.stage,
            approval: ApprovalStatus::initial(req.approval),
            artifact_uri: String::new(),
            metrics: req.training.metrics.clone(),
            fingerprint: req.fingerprint.clone(),
            lineage: req.lineage.clone(),
            created_at: created.clone(),
        };
        let tree =
            crate::model_dir::of_version(&files, &provisional).unwrap_or_else(|_| Artifact {
                files: files
                    .files
                    .iter()
                    .map(|(k, v)| (format!("model/{k}"), v.clone()))
                    .collect(),
            });
        let dir = format!("registry/{model}");
        for (path, bytes) in &tree.files {
            self.client
                .put_artifact(&artifact_uri, &format!("{dir}/{path}"), bytes.clone())
                .await
                .map_err(|e| fail("upload version", e))?;
        }
        let _ = self
            .client
            .post(
                "runs/update",
                &json!({"run_id": run_id, "status": "FINISHED"}),
            )
            .await;
        let mut lineage = req.lineage.clone();
        lineage.insert("trainedArtifact".into(), source.clone());
        let approval = ApprovalStatus::initial(req.approval);
        let mut tags = vec![
            ("mlctl.fingerprint".to_string(), req.fingerprint.clone()),
            ("mlctl.approval".into(), approval.as_str().into()),
            ("mlctl.stage".into(), "staging".into()),
            (
                "mlctl.metrics".into(),
                serde_json::to_string(&req.training.metrics).unwrap_or_default(),
            ),
            (
                "mlctl.lineage".into(),
                serde_json::to_string(&lineage).unwrap_or_default(),
            ),
            ("mlctl.createdAt".into(), created),
        ];
        tags.extend(req.tags.to_map());
        let created = self
            .client
            .post(
                "model-versions/create",
                &json!({
                    "name": model,
                    "source": format!("{}/{dir}", artifact_uri.trim_end_matches('/')),
                    "run_id": run_id,
                    "description": req.description.clone().unwrap_or_default(),
                    "tags": tags.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
                }),
            )
            .await
            .map_err(|e| fail("register", e))?;
        let n: u32 = created["model_version"]["version"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or_default();
        self.set_tag(model, n, "mlctl.version", &n.to_string())
            .await?;
        let v = self.find(ctx, model, n).await?;
        self.record_transition(
            model,
            &StageTransition {
                model: model.clone(),
                version: n,
                from: None,
                to: Stage::Staging,
                at: now(),
            },
        )
        .await?;
        Ok(v)
    }

    async fn set_stage(
        &self,
        ctx: &OpContext,
        model: &str,
        version: u32,
        stage: Stage,
    ) -> Result<ModelVersion> {
        let all = self.read_all(ctx, model).await?;
        let Some(v) = all.iter().find(|v| v.version == version).cloned() else {
            return Err(ProviderError::new(
                ErrorKind::NotFound,
                PROVIDER,
                "set stage",
                format!(
                    "model `{model}` has no version {version} on {}",
                    self.server
                ),
            ));
        };
        v.check_promotion(PROVIDER, stage)?;
        if v.stage == stage {
            return Ok(v);
        }
        if stage == Stage::Production {
            if let Some(prev) = all.iter().find(|p| p.stage == Stage::Production) {
                self.set_tag(model, prev.version, "mlctl.stage", "archived")
                    .await?;
                self.record_transition(
                    model,
                    &StageTransition {
                        model: model.into(),
                        version: prev.version,
                        from: Some(Stage::Production),
                        to: Stage::Archived,
                        at: now(),
                    },
                )
                .await?;
            }
            self.client
                .post(
                    "registered-models/alias",
                    &json!({"name": model, "alias": CHAMPION, "version": version.to_string()}),
                )
                .await
                .map_err(|e| fail("set stage", e))?;
            self.set_tag(model, version, "mlctl.stage", "production")
                .await?;
        } else {
            if v.stage == Stage::Production {
                self.client
                    .delete(
                        "registered-models/alias",
                        &json!({"name": model, "alias": CHAMPION}),
                    )
                    .await
                    .map_err(|e| fail("set stage", e))?;
            }
            self.set_tag(model, version, "mlctl.stage", stage.as_str())
                .await?;
        }
        self.record_transition(
            model,
            &StageTransition {
                model: model.into(),
                version,
                from: Some(v.stage),
                to: stage,
                at: now(),
            },
        )
        .await?;
        self.find(ctx, model, version).await
    }

    async fn decide(
        &self,
        ctx: &OpContext,
        model: &str,
        version: u32,
        decision: Decision,
    ) -> Result<ModelVersion> {
        let v = self.find(ctx, model, version).await?;
        v.check_decision(PROVIDER, decision)?;
        self.set_tag(model, version, "mlctl.approval", decision.status().as_str())
            .await?;
        self.find(ctx, model, version).await
    }

    async fn delete_model(&self, ctx: &OpContext, model: &str) -> Result<()> {
        if self.registered(ctx, model).await?.is_some() {
            match self
                .client
                .delete("registered-models/delete", &json!({"name": model}))
                .await
            {
                Ok(_) => {}
                Err(e) if e.not_found() => {}
                Err(e) => return Err(fail("delete model", e)),
            }
        }
        let _ = std::fs::remove_dir_all(self.cache.join(model));
        Ok(())
    }

    async fn update_in_place(&self, ctx: &OpContext, req: &InPlaceRequest) -> Result<()> {
        let version: ModelVersion = req.outputs_as(PROVIDER)?;
        self.find(ctx, &req.name, version.version).await?;
        let description = req.description.clone().unwrap_or_default();
        self.client
            .patch(
                "registered-models/update",
                &json!({"name": req.name, "description": description}),
            )
            .await
            .map_err(|e| fail("update model", e))?;
        self.client
            .patch("model-versions/update", &json!({"name": req.name, "version": version.version.to_string(), "description": description}))
            .await
            .map_err(|e| fail("update model", e))?;
        for (k, v) in req.tags.to_map() {
            self.set_tag(&req.name, version.version, &k, &v).await?;
        }
        for k in &req.removed_labels {
            let _ = self
                .client
                .delete(
                    "model-versions/delete-tag",
                    &json!({"name": req.name, "version": version.version.to_string(), "key": k}),
                )
                .await;
        }
        Ok(())
    }

    async fn read_artifact(&self, ctx: &OpContext, version: &ModelVersion) -> Result<Artifact> {
        let v = self.find(ctx, &version.model, version.version).await?;
        let mut a = Artifact::read_path(PROVIDER, std::path::Path::new(&v.artifact_uri))?;
        a.files.remove(".complete");
        Ok(a)
    }

    async fn store_artifact(
        &self,
        _ctx: &OpContext,
        model: &str,
        artifact: &Artifact,
    ) -> Result<String> {
        let hex = artifact.digest().trim_start_matches("blake3:").to_string();
        let dest = self.cache.join(model).join(format!(".stored-{hex}"));
        for (path, bytes) in &artifact.files {
            if path.split('/').any(|s| s == ".." || s.is_empty()) {
                return Err(ProviderError::new(
                    ErrorKind::Invalid,
                    PROVIDER,
                    "store artifact",
                    format!("`{path}` is outside the model"),
                ));
            }
            let file = dest.join(path);
            std::fs::create_dir_all(file.parent().unwrap_or(&dest))
                .map_err(io("store artifact"))?;
            std::fs::write(&file, bytes).map_err(io("store artifact"))?;
        }
        Ok(dest.display().to_string())
    }

    async fn stage_history(&self, ctx: &OpContext, model: &str) -> Result<Vec<StageTransition>> {
        let Some(registered) = self.registered(ctx, model).await? else {
            return Ok(Vec::new());
        };
        let tags = tags_of(&registered["tags"]);
        Ok(tags
            .iter()
            .filter(|(k, _)| k.starts_with("mlctl.transition."))
            .filter_map(|(_, v)| serde_json::from_str(v).ok())
            .collect())
    }
}
