//! The model registry: versions 1, 2, ... per model, stages, approval, lineage and the history
//! of stage changes, in `state.db`; artifacts copied to `<state_dir>/registry/<model>/<version>/`
//! so a version survives the cleanup of the run that produced it.

use crate::db::{Db, DbError, DbResult, json};
use crate::fsutil::{copy_tree, io_at, remove_tree, safe_component};
use crate::{PROVIDER, now};
use async_trait::async_trait;
use mlctl_core::components::{
    ApprovalStatus, Artifact, Capabilities, Decision, InPlaceRequest, ModelVersion, OpContext,
    RegisterRequest, Registry, StageTransition,
};
use mlctl_core::error::{ErrorKind, ProviderError, Result};
use mlctl_spec::{Approval, Stage};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The local [`Registry`].
#[derive(Debug, Clone)]
pub struct LocalRegistry {
    db: Db,
    root: PathBuf,
}

impl LocalRegistry {
    pub(crate) fn new(db: Db, state_dir: &Path) -> Self {
        LocalRegistry {
            db,
            root: state_dir.join("registry"),
        }
    }

    async fn find_fingerprint(
        &self,
        project: &str,
        model: &str,
        fingerprint: &str,
    ) -> Result<Option<ModelVersion>> {
        let (project, model, fingerprint) = (
            project.to_string(),
            model.to_string(),
            fingerprint.to_string(),
        );
        self.db
            .call("find model version", move |c| {
                find_fingerprint(c, &project, &model, &fingerprint)
            })
            .await
    }
}

fn find_fingerprint(
    c: &Connection,
    project: &str,
    model: &str,
    fingerprint: &str,
) -> DbResult<Option<ModelVersion>> {
    Ok(c.query_row(
        &format!("SELECT {VERSION_COLUMNS} FROM model_versions WHERE project = ?1 AND model = ?2 AND fingerprint = ?3"),
        params![project, model, fingerprint],
        version_from_row,
    )
    .optional()?)
}

fn stage_from(s: &str) -> Stage {
    match s {
        "production" => Stage::Production,
        "archived" => Stage::Archived,
        _ => Stage::Staging,
    }
}

const VERSION_COLUMNS: &str = "model, version, stage, approval_status, artifact_uri, metrics, fingerprint, lineage, created_at";

fn approval_from(s: &str) -> ApprovalStatus {
    match s {
        "approved" => ApprovalStatus::Approved,
        "rejected" => ApprovalStatus::Rejected,
        _ => ApprovalStatus::PendingManualApproval,
    }
}

fn version_from_row(r: &Row<'_>) -> rusqlite::Result<ModelVersion> {
    let metrics: String = r.get(5)?;
    let lineage: String = r.get(7)?;
    Ok(ModelVersion {
        model: r.get(0)?,
        version: r.get::<_, i64>(1)? as u32,
        stage: stage_from(&r.get::<_, String>(2)?),
        approval: approval_from(&r.get::<_, String>(3)?),
        artifact_uri: r.get(4)?,
        metrics: serde_json::from_str(&metrics).unwrap_or_default(),
        fingerprint: r.get(6)?,
        lineage: serde_json::from_str(&lineage).unwrap_or_default(),
        created_at: r.get(8)?,
    })
}

fn get_version(c: &Connection, project: &str, model: &str, version: u32) -> DbResult<ModelVersion> {
    c.query_row(
        &format!("SELECT {VERSION_COLUMNS} FROM model_versions WHERE project = ?1 AND model = ?2 AND version = ?3"),
        params![project, model, version as i64],
        version_from_row,
    )
    .optional()?
    .ok_or_else(|| DbError::Provider(not_found(model, version)))
}

fn not_found(model: &str, version: u32) -> ProviderError {
    ProviderError::new(
        ErrorKind::NotFound,
        PROVIDER,
        "registry",
        format!("model `{model}` has no version {version}"),
    )
}

fn transition(
    tx: &Transaction<'_>,
    project: &str,
    model: &str,
    version: u32,
    from: Option<Stage>,
    to: Stage,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO stage_transitions (project, model, version, from_stage, to_stage, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![project, model, version as i64, from.map(Stage::as_str), to.as_str(), now()],
    )?;
    Ok(())
}

/// Moves a version to `stage` inside `tx`; promoting to production archives the current one.
fn move_to_stage(
    tx: &Transaction<'_>,
    project: &str,
    model: &str,
    version: u32,
    stage: Stage,
) -> DbResult<()> {
    let current = get_version(tx, project, model, version)?;
    if current.stage == stage {
        return Ok(());
    }
    current.check_promotion(PROVIDER, stage)?;
    if stage == Stage::Production {
        let mut st = tx.prepare("SELECT version FROM model_versions WHERE project = ?1 AND model = ?2 AND stage = 'production' AND version != ?3")?;
        let previous: Vec<i64> = st
            .query_map(params![project, model, version as i64], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for v in previous {
            tx.execute("UPDATE model_versions SET stage = 'archived' WHERE project = ?1 AND model = ?2 AND version = ?3", params![project, model, v])?;
            transition(
                tx,
                project,
                model,
                v as u32,
                Some(Stage::Production),
                Stage::Archived,
            )?;
        }
    }
    tx.execute(
        "UPDATE model_versions SET stage = ?4 WHERE project = ?1 AND model = ?2 AND version = ?3",
        params![project, model, version as i64, stage.as_str()],
    )?;
    transition(tx, project, model, version, Some(current.stage), stage)?;
    Ok(())
}

/// Lineage the trainer recorded for a run: data and code digests.
fn run_lineage(c: &Connection, run: &str) -> rusqlite::Result<BTreeMap<String, String>> {
    let row = c
        .query_row(
            "SELECT data_digest, code_digest, job_name FROM runs WHERE id = ?1",
            [run],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, String>(2)?,
                ))
            },
        )
        .optional()?;
    let mut out = BTreeMap::new();
    if let Some((data, code, job)) = row {
        out.insert("datasetDigest".to_string(), data);
        if let Some(code) = code {
            out.insert("codeDigest".to_string(), code);
        }
        out.insert("trainingJob".to_string(), job);
    }
    Ok(out)
}

#[async_trait]
impl Registry for LocalRegistry {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            fields: crate::support::field_rules(),
            stage_history: true,
            artifacts: true,
            ..Capabilities::default()
        }
    }

    async fn read_artifact(&self, _ctx: &OpContext, version: &ModelVersion) -> Result<Artifact> {
        if version.artifact_uri.contains("://") {
            return Err(ProviderError::new(
                ErrorKind::NotSupported,
                PROVIDER,
                "read artifact",
                format!(
                    "{} v{} keeps its artifact at {}, which the local registry does not read",
                    version.model, version.version, version.artifact_uri
                ),
            ));
        }
        let path = PathBuf::from(&version.artifact_uri);
        crate::blocking("read model artifact", move || {
            Artifact::read_path(PROVIDER, &path)
        })
        .await
    }

    /// Into `registry/<model>/.promoted-<digest>/`, from where `register` copies it into the
    /// version's directory as it copies a training run's.
    async fn store_artifact(
        &self,
        _ctx: &OpContext,
        model: &str,
        artifact: &Artifact,
    ) -> Result<String> {
        safe_component("model", model)?;
        let digest = artifact.digest();
        let hex = digest.trim_start_matches("blake3:").to_string();
        let dest = self.root.join(model).join(format!(".promoted-{hex}"));
        let staging = self.root.join(model).join(format!(
            ".incoming-{}-{}",
            std::process::id(),
            crate::unique_suffix()
        ));
        let artifact = artifact.clone();
        let (dest2, staging2) = (dest.clone(), staging.clone());
        crate::blocking("store model artifact", move || {
            if dest2.exists() {
                // Content-addressed: what is there is these files (the caller reads back).
                return Ok(());
            }
            artifact.write_to(PROVIDER, &staging2)?;
            match std::fs::rename(&staging2, &dest2) {
                Ok(()) => Ok(()),
                Err(_) if dest2.exists() => remove_tree(&staging2),
                Err(e) => Err(io_at("store model artifact", &dest2, e)),
            }
        })
        .await?;
        Ok(dest.to_string_lossy().into_owned())
    }

    async fn update_in_place(&self, ctx: &OpContext, req: &InPlaceRequest) -> Result<()> {
        let op = "update model tags";
        let version: ModelVersion = req.outputs_as(PROVIDER)?;
        let (project, model, v, tags, description) = (
            ctx.project.clone(),
            req.name.clone(),
            version.version,
            json(&req.tags.to_map()),
            req.description.clone(),
        );
        let n = self
            .db
            .call(op, move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let n = tx.execute(
                    "UPDATE model_versions SET tags = ?4, description = ?5 WHERE project = ?1 AND model = ?2 AND version = ?3",
                    params![project, model, v, tags, description],
                )?;
                tx.execute(
                    "UPDATE models SET description = ?3 WHERE project = ?1 AND name = ?2",
                    params![project, model, description],
                )?;
                tx.commit()?;
                Ok(n)
            })
            .await?;
        if n == 0 {
            return Err(crate::gone(
                op,
                format!("model `{}` v{}", req.name, version.version),
            ));
        }
        Ok(())
    }

    async fn versions(&self, ctx: &OpContext, model: &str) -> Result<Vec<ModelVersion>> {
        let (project, model) = (ctx.project.clone(), model.to_string());
        self.db
            .call("list versions", move |c| {
                let mut st = c.prepare(&format!("SELECT {VERSION_COLUMNS} FROM model_versions WHERE project = ?1 AND model = ?2 ORDER BY version"))?;
                Ok(st.query_map(params![project, model], version_from_row)?.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await
    }

    async fn register(&self, ctx: &OpContext, req: &RegisterRequest) -> Result<ModelVersion> {
        safe_component("model", &req.model)?;
        // Idempotent: the same fingerprint is the same version.
        if let Some(v) = self
            .find_fingerprint(&ctx.project, &req.model, &req.fingerprint)
            .await?
        {
            return Ok(v);
        }
        // Copy the artifact outside any transaction, into a staging directory that is renamed
        // to the version number once the number is allocated.
        let source = PathBuf::from(&req.training.artifact_uri);
        let local = !req.training.artifact_uri.contains("://");
        let model_dir = self.root.join(&req.model);
        let staging = model_dir.join(format!(
            ".incoming-{}-{}",
            std::process::id(),
            crate::unique_suffix()
        ));
        if local {
            if !source.exists() {
                return Err(ProviderError::new(
                    ErrorKind::NotFound,
                    PROVIDER,
                    "register model version",
                    format!(
                        "the training artifact {} does not exist (was the run directory removed?)",
                        source.display()
                    ),
                ));
            }
            let (src, dest) = (
                source.clone(),
                if source.is_dir() {
                    staging.clone()
                } else {
                    staging.join(source.file_name().unwrap_or_default())
                },
            );
            crate::blocking("copy model artifact", move || {
                copy_tree(&src, &dest, &|_| false)
            })
            .await?;
        }
        let (project, req2, commit, staging2) = (
            ctx.project.clone(),
            req.clone(),
            ctx.commit.clone(),
            staging.clone(),
        );
        let result = self
            .db
            .call("register model version", move |c| {
                let (req, staging) = (req2, staging2);
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                if let Some(v) = find_fingerprint(&tx, &project, &req.model, &req.fingerprint)? {
                    let _ = remove_tree(&staging);
                    return Ok(v);
                }
                tx.execute(
                    "INSERT INTO models (project, name, description, created_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (project, name) DO UPDATE SET description = COALESCE(excluded.description, models.description)",
                    params![project, req.model, req.description, now()],
                )?;
                let version: i64 = tx.query_row(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM model_versions WHERE project = ?1 AND model = ?2",
                    params![project, req.model],
                    |r| r.get(0),
                )?;
                let artifact_uri = if local {
                    let dest = model_dir.join(version.to_string());
                    remove_tree(&dest)?;
                    std::fs::rename(&staging, &dest).map_err(|e| io_at("store model artifact", &dest, e))?;
                    let dest = if source.is_dir() { dest } else { dest.join(source.file_name().unwrap_or_default()) };
                    dest.to_string_lossy().into_owned()
                } else {
                    req.training.artifact_uri.clone()
                };
                let mut lineage = run_lineage(&tx, req.training.run_id.as_deref().unwrap_or(""))?;
                lineage.insert("trainingJob".into(), req.training.job_name.clone());
                lineage.insert("commit".into(), commit.clone());
                if local {
                    lineage.insert("trainedArtifact".into(), req.training.artifact_uri.clone());
                }
                if let Some(run) = &req.training.run_id {
                    lineage.insert("run".into(), run.clone());
                }
                lineage.extend(req.lineage.clone());
                let approval = match req.approval {
                    Approval::Auto => "auto",
                    Approval::Manual => "manual",
                };
                let initial = if req.stage == Stage::Production { Stage::Staging } else { req.stage };
                tx.execute(
                    "INSERT INTO model_versions (project, model, version, stage, approval, approved, approval_status, artifact_uri, metrics, fingerprint, lineage, tags, description, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                    params![
                        project,
                        req.model,
                        version,
                        initial.as_str(),
                        approval,
                        (req.approval == Approval::Auto) as i64,
                        ApprovalStatus::initial(req.approval).as_str(),
                        artifact_uri,
                        json(&req.training.metrics),
                        req.fingerprint,
                        json(&lineage),
                        json(&req.tags.to_map()),
                        req.description,
                        now()
                    ],
                )?;
                transition(&tx, &project, &req.model, version as u32, None, initial)?;
                if req.stage == Stage::Production {
                    move_to_stage(&tx, &project, &req.model, version as u32, Stage::Production)?;
                }
                let v = get_version(&tx, &project, &req.model, version as u32)?;
                tx.commit()?;
                Ok(v)
            })
            .await;
        if result.is_err() {
            let _ = remove_tree(&staging);
        }
        result
    }

    async fn set_stage(
        &self,
        ctx: &OpContext,
        model: &str,
        version: u32,
        stage: Stage,
    ) -> Result<ModelVersion> {
        let (project, model) = (ctx.project.clone(), model.to_string());
        self.db
            .call("set stage", move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                move_to_stage(&tx, &project, &model, version, stage)?;
                let v = get_version(&tx, &project, &model, version)?;
                tx.commit()?;
                Ok(v)
            })
            .await
    }

    async fn decide(
        &self,
        ctx: &OpContext,
        model: &str,
        version: u32,
        decision: Decision,
    ) -> Result<ModelVersion> {
        let (project, model) = (ctx.project.clone(), model.to_string());
        self.db
            .call("record an approval decision", move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let current = get_version(&tx, &project, &model, version)?;
                current.check_decision(PROVIDER, decision)?;
                let status = decision.status();
                tx.execute(
                    "UPDATE model_versions SET approval_status = ?4, approved = ?5 WHERE project = ?1 AND model = ?2 AND version = ?3",
                    params![project, model, version as i64, status.as_str(), (status == ApprovalStatus::Approved) as i64],
                )?;
                let v = get_version(&tx, &project, &model, version)?;
                tx.commit()?;
                Ok(v)
            })
            .await
    }

    async fn delete_model(&self, ctx: &OpContext, model: &str) -> Result<()> {
        safe_component("model", model)?;
        let (project, model_name) = (ctx.project.clone(), model.to_string());
        self.db
            .call("delete model", move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.execute(
                    "DELETE FROM model_versions WHERE project = ?1 AND model = ?2",
                    params![project, model_name],
                )?;
                tx.execute(
                    "DELETE FROM stage_transitions WHERE project = ?1 AND model = ?2",
                    params![project, model_name],
                )?;
                tx.execute(
                    "DELETE FROM models WHERE project = ?1 AND name = ?2",
                    params![project, model_name],
                )?;
                tx.commit()?;
                Ok(())
            })
            .await?;
        remove_tree(&self.root.join(model))
    }

    async fn stage_history(&self, ctx: &OpContext, model: &str) -> Result<Vec<StageTransition>> {
        let (project, model) = (ctx.project.clone(), model.to_string());
        self.db
            .call("stage history", move |c| {
                let mut st = c.prepare("SELECT model, version, from_stage, to_stage, at FROM stage_transitions WHERE project = ?1 AND model = ?2 ORDER BY seq")?;
                let rows = st.query_map(params![project, model], |r| {
                    Ok(StageTransition {
                        model: r.get(0)?,
                        version: r.get::<_, i64>(1)? as u32,
                        from: r.get::<_, Option<String>>(2)?.as_deref().map(stage_from),
                        to: stage_from(&r.get::<_, String>(3)?),
                        at: r.get(4)?,
                    })
                })?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await
    }
}
