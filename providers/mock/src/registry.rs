//! The model registry: versions 1, 2, ... per model, one production version at a time, and
//! every stage change kept.

use crate::store::key;
use crate::{Mock, Result, err, now};
use async_trait::async_trait;
use mlctl_core::components::{Artifact, DataStore};
use mlctl_core::{
    ApprovalStatus, Capabilities, Decision, ErrorKind, ModelVersion, OpContext, RegisterRequest,
    Registry, StageTransition, Tags, components::InPlaceRequest,
};
use mlctl_spec::Stage;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `format` of a bundle manifest: an artifact of several files promoted to the mock.
const BUNDLE_FORMAT: &str = "mlctl-mock-bundle/v1";

/// An artifact stored by `store_artifact`: each file's blob digest, by path.
#[derive(Debug, Serialize, Deserialize)]
struct Bundle {
    format: String,
    files: BTreeMap<String, String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModelRecord {
    /// Format of this record (`mlctl_core::state::FORMAT_VERSION` when written).
    #[serde(default = "mlctl_core::state::FormatVersion::legacy")]
    format_version: mlctl_core::state::FormatVersion,
    versions: Vec<ModelVersion>,
    stages: Vec<StageTransition>,
    /// Tags and description per version.
    tags: BTreeMap<u32, Tags>,
    descriptions: BTreeMap<u32, String>,
}

impl ModelRecord {
    /// Moves `version` to `stage`, archiving the production version it replaces.
    fn move_to(&mut self, model: &str, version: u32, stage: Stage) {
        let at = now();
        if stage == Stage::Production {
            for v in self
                .versions
                .iter_mut()
                .filter(|v| v.stage == Stage::Production && v.version != version)
            {
                self.stages.push(StageTransition {
                    model: model.into(),
                    version: v.version,
                    from: Some(v.stage),
                    to: Stage::Archived,
                    at: at.clone(),
                });
                v.stage = Stage::Archived;
            }
        }
        if let Some(v) = self.versions.iter_mut().find(|v| v.version == version)
            && v.stage != stage
        {
            self.stages.push(StageTransition {
                model: model.into(),
                version,
                from: Some(v.stage),
                to: stage,
                at,
            });
            v.stage = stage;
        }
    }

    fn find(&self, op: &str, model: &str, version: u32) -> Result<usize> {
        self.versions
            .iter()
            .position(|v| v.version == version)
            .ok_or_else(|| {
                let have: Vec<String> = self
                    .versions
                    .iter()
                    .map(|v| format!("v{}", v.version))
                    .collect();
                err(
                    ErrorKind::NotFound,
                    op,
                    format!(
                        "model `{model}` has no version {version} on the mock target (it has {})",
                        if have.is_empty() {
                            "none".into()
                        } else {
                            have.join(", ")
                        }
                    ),
                )
            })
    }
}

fn model_path(model: &str) -> String {
    format!("models/{}.json", key(model))
}

fn not_registered(op: &str, model: &str) -> mlctl_core::ProviderError {
    err(
        ErrorKind::NotFound,
        op,
        format!("model `{model}` is not registered on the mock target"),
    )
}

#[async_trait]
impl Registry for Mock {
    fn capabilities(&self) -> Capabilities {
        Mock::capabilities(self)
    }

    /// A `mock://objects/<digest>` artifact is a blob: a bundle manifest
    /// ([`BUNDLE_FORMAT`], what `store_artifact` writes) or a mock-trained model, which is
    /// the file `mock-model.json`. A path is read from this machine (a local artifact
    /// registered by a mixed stack).
    async fn read_artifact(&self, _ctx: &OpContext, version: &ModelVersion) -> Result<Artifact> {
        let op = "read_artifact";
        self.enter(op).await?;
        let Some(digest) = version.artifact_uri.strip_prefix("mock://objects/") else {
            return Artifact::read_path(
                crate::PROVIDER,
                std::path::Path::new(&version.artifact_uri),
            );
        };
        let bytes = self.get_blob(digest).await?;
        let Ok(bundle) = serde_json::from_slice::<Bundle>(&bytes) else {
            return Ok(Artifact {
                files: BTreeMap::from([("mock-model.json".to_string(), bytes)]),
            });
        };
        if bundle.format != BUNDLE_FORMAT {
            return Ok(Artifact {
                files: BTreeMap::from([("mock-model.json".to_string(), bytes)]),
            });
        }
        let mut files = BTreeMap::new();
        for (path, digest) in bundle.files {
            files.insert(path, self.get_blob(&digest).await?);
        }
        Ok(Artifact { files })
    }

    /// Each file as a blob, and a bundle manifest naming them, whose blob is the artifact.
    async fn store_artifact(
        &self,
        _ctx: &OpContext,
        _model: &str,
        artifact: &Artifact,
    ) -> Result<String> {
        let op = "store_artifact";
        self.enter(op).await?;
        let mut files = BTreeMap::new();
        for (path, bytes) in &artifact.files {
            files.insert(path.clone(), self.store_blob(op, bytes)?);
        }
        let manifest = serde_json::to_vec_pretty(&Bundle {
            format: BUNDLE_FORMAT.to_string(),
            files,
        })
        .map_err(|e| err(ErrorKind::Other, op, e.to_string()))?;
        Ok(crate::data::blob_uri(&self.store_blob(op, &manifest)?))
    }

    async fn versions(&self, _ctx: &OpContext, model: &str) -> Result<Vec<ModelVersion>> {
        self.enter("versions").await?;
        Ok(self
            .store()
            .read::<ModelRecord>("versions", &model_path(model))?
            .map(|r| r.versions)
            .unwrap_or_default())
    }

    async fn register(&self, _ctx: &OpContext, req: &RegisterRequest) -> Result<ModelVersion> {
        let op = "register";
        self.enter(op).await?;
        self.store().update(
            op,
            &model_path(&req.model),
            |rec: &mut Option<ModelRecord>| {
                let rec = rec.get_or_insert_with(ModelRecord::default);
                if let Some(v) = rec
                    .versions
                    .iter()
                    .find(|v| v.fingerprint == req.fingerprint)
                {
                    return Ok(v.clone());
                }
                let version = rec.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1;
                let at = now();
                rec.versions.push(ModelVersion {
                    model: req.model.clone(),
                    version,
                    stage: Stage::Staging,
                    approval: ApprovalStatus::initial(req.approval),
                    artifact_uri: req.training.artifact_uri.clone(),
                    metrics: req.training.metrics.clone(),
                    fingerprint: req.fingerprint.clone(),
                    lineage: req.lineage.clone(),
                    created_at: at.clone(),
                });
                rec.stages.push(StageTransition {
                    model: req.model.clone(),
                    version,
                    from: None,
                    to: Stage::Staging,
                    at,
                });
                rec.tags.insert(version, req.tags.clone());
                if let Some(d) = &req.description {
                    rec.descriptions.insert(version, d.clone());
                }
                if req.stage != Stage::Staging {
                    rec.move_to(&req.model, version, req.stage);
                }
                let i = rec.find(op, &req.model, version)?;
                Ok(rec.versions[i].clone())
            },
        )
    }

    async fn set_stage(
        &self,
        _ctx: &OpContext,
        model: &str,
        version: u32,
        stage: Stage,
    ) -> Result<ModelVersion> {
        let op = "set_stage";
        self.enter(op).await?;
        self.store()
            .update(op, &model_path(model), |rec: &mut Option<ModelRecord>| {
                let rec = rec.as_mut().ok_or_else(|| not_registered(op, model))?;
                let i = rec.find(op, model, version)?;
                rec.versions[i].check_promotion(crate::PROVIDER, stage)?;
                rec.move_to(model, version, stage);
                Ok(rec.versions[i].clone())
            })
    }

    async fn decide(
        &self,
        _ctx: &OpContext,
        model: &str,
        version: u32,
        decision: Decision,
    ) -> Result<ModelVersion> {
        let op = "decide";
        self.enter(op).await?;
        self.store()
            .update(op, &model_path(model), |rec: &mut Option<ModelRecord>| {
                let rec = rec.as_mut().ok_or_else(|| not_registered(op, model))?;
                let i = rec.find(op, model, version)?;
                rec.versions[i].check_decision(crate::PROVIDER, decision)?;
                rec.versions[i].approval = decision.status();
                Ok(rec.versions[i].clone())
            })
    }

    async fn update_in_place(&self, _ctx: &OpContext, req: &InPlaceRequest) -> Result<()> {
        self.enter("update_in_place").await?;
        let op = "update model tags";
        let version: ModelVersion = req.outputs_as(crate::PROVIDER)?;
        self.store().update(
            op,
            &model_path(&req.name),
            |rec: &mut Option<ModelRecord>| {
                let rec = rec
                    .as_mut()
                    .filter(|r| r.versions.iter().any(|v| v.version == version.version))
                    .ok_or_else(|| {
                        crate::gone(op, format!("model `{}` v{}", req.name, version.version))
                    })?;
                rec.tags.insert(version.version, req.tags.clone());
                match &req.description {
                    Some(d) => rec.descriptions.insert(version.version, d.clone()),
                    None => rec.descriptions.remove(&version.version),
                };
                Ok(())
            },
        )
    }

    async fn delete_model(&self, _ctx: &OpContext, model: &str) -> Result<()> {
        self.enter("delete_model").await?;
        self.store()
            .remove("delete_model", &model_path(model))
            .map(|_| ())
    }

    async fn stage_history(&self, _ctx: &OpContext, model: &str) -> Result<Vec<StageTransition>> {
        self.enter("stage_history").await?;
        Ok(self
            .store()
            .read::<ModelRecord>("stage_history", &model_path(model))?
            .map(|r| r.stages)
            .unwrap_or_default())
    }
}
