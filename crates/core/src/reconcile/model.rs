//! `kind: Model`: evaluates the gates, registers a version (once per fingerprint) and promotes
//! it once it is approved: at once with `approval: auto`; with `approval: manual` it waits
//! (Progressing) until `mlctl models approve`, and a rejected version is never promoted.

use super::Applied;
use crate::apply::{Shared, output_of, tags, to_json};
use crate::components::*;
use crate::error::{ErrorKind, ProviderError, Result};
use crate::gates;
use crate::plan::DesiredResource;
use crate::retry;
use crate::state::Health;
use mlctl_spec::*;
use std::collections::BTreeMap;

/// Makes the target hold what `spec` asks for.
pub(crate) async fn reconcile(
    sh: &Shared,
    d: &DesiredResource,
    spec: &ModelSpec,
) -> Result<Applied> {
    let id = &d.resource.id;
    let versions = retry!(
        &sh.opts,
        sh.stack.registry.versions(&sh.ctx, &id.name).await
    )?;
    let want_stage = spec.stage.unwrap_or(Stage::Staging);
    let approval = spec.approval.unwrap_or(Approval::Auto);
    // Idempotent re-apply: this fingerprint is already registered.
    let existing = versions
        .iter()
        .find(|v| v.fingerprint == d.fingerprint.0)
        .cloned();
    let production = versions.iter().find(|v| v.stage == Stage::Production);
    // Said with the result when a gate could not be judged, so `apply` and `status` show it.
    let mut unjudged = None;
    let version = match (existing, &spec.mlflow, &spec.from) {
        (Some(v), _, _) => v,
        (None, Some(source), _) => import(sh, d, spec, source, approval).await?,
        (None, None, None) => {
            return Err(ProviderError::new(
                ErrorKind::Invalid,
                "mlctl",
                "register",
                format!("model `{}` has neither `from` nor `mlflow`", id.name),
            ));
        }
        (None, None, Some(from)) => {
            let job_id = ResourceId::new(Kind::TrainingJob, from.clone());
            let training: TrainingResult = output_of(sh, &job_id)?;
            // Which way each metric is better, as the training job's spec declares it.
            let job = sh
                .desired
                .get(&job_id)
                .and_then(|j| j.resource.as_training_job());
            let direction = |metric: &str| match job {
                Some(job) => metrics::direction_in(job, metric),
                None => metrics::metric(metric).map(|m| m.direction),
            };
            let baseline = gates::Baseline::among(&versions);
            let report = gates::evaluate(&spec.gates, &training.metrics, baseline, &direction)
                .on_unmeasured(training.metrics_origin.as_deref());
            // Figures no model produced are judged (so the loop runs on an emulator) but never
            // passed off as results.
            let on = training
                .metrics_origin
                .as_deref()
                .map(|o| format!(" (on metrics {o})"))
                .unwrap_or_default();
            if !report.passed() {
                let keep = production
                    .map(|p| format!("; production stays at v{}", p.version))
                    .unwrap_or_default();
                return Err(ProviderError::new(
                    ErrorKind::Invalid,
                    "mlctl",
                    "gates",
                    format!("evaluation gates failed: {report}{on}{keep}"),
                ));
            }
            if !spec.gates.is_empty() {
                sh.progress(id, format!("gates passed: {report}{on}"));
            }
            let skipped: Vec<String> = report
                .results
                .iter()
                .filter(|r| !r.evaluated)
                .map(|r| format!("`{}` maxRegression", r.metric))
                .collect();
            if !skipped.is_empty() {
                unjudged = Some(format!(
                    "no baseline: gate not evaluated ({})",
                    skipped.join(", ")
                ));
            }
            let mut lineage = BTreeMap::from([
                ("trainingJob".to_string(), training.job_name.clone()),
                ("commit".to_string(), sh.ctx.commit.clone()),
            ]);
            if let Some(run) = &training.run_id {
                lineage.insert("run".into(), run.clone());
            }
            if let Some(origin) = &training.metrics_origin {
                lineage.insert(crate::METRICS_ORIGIN.into(), origin.clone());
            }
            // The verdicts stay with the version (`mlctl models show`), "not evaluated" included.
            if !spec.gates.is_empty() {
                lineage.insert("gates".into(), report.to_string());
            }
            let req = RegisterRequest {
                model: id.name.clone(),
                training: training.clone(),
                stage: Stage::Staging,
                approval,
                description: spec.description.clone(),
                fingerprint: d.fingerprint.0.clone(),
                lineage,
                tags: tags(sh, d),
            };
            retry!(&sh.opts, sh.stack.registry.register(&sh.ctx, &req).await)?
        }
    };
    let version = if want_stage == Stage::Production && version.stage != Stage::Production {
        match version.approval {
            ApprovalStatus::PendingManualApproval => {
                let mut detail = format!(
                    "registered v{} in staging; waiting for approval: run `mlctl models approve {} {}` (or `mlctl models reject {} {}`)",
                    version.version, id.name, version.version, id.name, version.version
                );
                if let Some(u) = &unjudged {
                    detail = format!("{detail}; {u}");
                }
                return Ok(Applied::new(detail, to_json(&version), Health::Progressing));
            }
            ApprovalStatus::Rejected => {
                let keep = production
                    .map(|p| format!("; production stays at v{}", p.version))
                    .unwrap_or_default();
                return Err(ProviderError::new(
                    ErrorKind::Precondition,
                    "mlctl",
                    "promote",
                    format!(
                        "model `{}` v{} was rejected and is never deployed{keep}; to register a new version, change the training or its data and apply again",
                        id.name, version.version
                    ),
                ));
            }
            ApprovalStatus::Approved => retry!(
                &sh.opts,
                sh.stack
                    .registry
                    .set_stage(&sh.ctx, &id.name, version.version, Stage::Production)
                    .await
            )?,
        }
    } else {
        version
    };
    let mut detail = format!("v{} in {}", version.version, version.stage.as_str());
    if let Some(u) = &unjudged {
        detail = format!("{detail}; {u}");
    }
    Ok(Applied::new(detail, to_json(&version), Health::Healthy))
}

/// Registers an imported MLflow model: its files (converted, or as they are) stored through
/// the registry, the source and flavour kept as lineage. There are no gates to judge: the
/// validator refuses them on an imported model.
async fn import(
    sh: &Shared,
    d: &DesiredResource,
    spec: &ModelSpec,
    source: &MlflowModel,
    approval: Approval,
) -> Result<ModelVersion> {
    let id = &d.resource.id;
    let importer = sh.opts.importer.as_ref().ok_or_else(|| {
        ProviderError::new(
            ErrorKind::NotSupported,
            "mlctl",
            "import",
            format!(
                "model `{}` imports an MLflow model, and this apply has no importer (run it with the mlctl CLI)",
                id.name
            ),
        )
    })?;
    let imported = importer.import(&sh.ctx, &id.name, source).await?;
    sh.progress(id, imported.summary.clone());
    let uri = retry!(
        &sh.opts,
        sh.stack
            .registry
            .store_artifact(&sh.ctx, &id.name, &imported.files)
            .await
    )?;
    let mut lineage = imported.lineage.clone();
    lineage.insert("commit".into(), sh.ctx.commit.clone());
    let req = RegisterRequest {
        model: id.name.clone(),
        training: TrainingResult {
            job_name: format!("import-{}", id.name),
            artifact_uri: uri,
            metrics: imported.metrics.clone(),
            hyperparameters: BTreeMap::new(),
            trials: Vec::new(),
            run_id: None,
            duration_secs: 0.0,
            evaluation: None,
            metrics_origin: None,
        },
        stage: Stage::Staging,
        approval,
        description: spec.description.clone(),
        fingerprint: d.fingerprint.0.clone(),
        lineage,
        tags: tags(sh, d),
    };
    retry!(&sh.opts, sh.stack.registry.register(&sh.ctx, &req).await)
}

/// Deletes the model and its versions from the registry.
pub(crate) async fn delete(sh: &Shared, name: &str) -> Result<()> {
    retry!(
        &sh.opts,
        sh.stack.registry.delete_model(&sh.ctx, name).await
    )
}
