//! The model registry on SageMaker: a ModelPackageGroup per Model, a ModelPackage per version.
//!
//! A package's `ModelApprovalStatus` is the version's approval, in SageMaker's own words, so
//! a decision taken in SageMaker Studio (or by a pipeline) is what mlctl reads back, and one
//! taken with `mlctl models approve`/`reject` is what Studio shows:
//!
//! | mlctl | ModelApprovalStatus |
//! |---|---|
//! | `approval: auto`, or approved | `Approved` |
//! | `approval: manual`, not decided yet | `PendingManualApproval` |
//! | rejected (never deployed) | `Rejected` |
//!
//! The stage (staging, production, archived), the fingerprint, lineage and metrics are kept in
//! the package's `CustomerMetadataProperties` (`mlctl:*`, `lineage:*`, `metric:*`), so a fresh
//! runner reads everything back from SageMaker. All metrics are also written as a JSON file in
//! S3 and linked as the package's model-quality statistics. Stage changes are appended under
//! `.mlctl/registry/<project>/<model>/stages/`.
//!
//! Packages written before this mapping (no `mlctl:registryFormat`) kept the stage in the
//! status (production `Approved`, staging `PendingManualApproval`, archived `Rejected`) and
//! the approval in `mlctl:approved`; they are read that way, and rewritten in the new one the
//! next time their stage or approval changes.

use crate::aws::{Aws, sm_tags};
use crate::error::{aws_err, is_not_found, provider_err};
use crate::names;
use crate::store::bounded;
use async_trait::async_trait;
use aws_sdk_sagemaker::operation::describe_model_package::DescribeModelPackageOutput;
use aws_sdk_sagemaker::types::{
    InferenceSpecification, MetricsSource, ModelApprovalStatus, ModelMetrics,
    ModelPackageContainerDefinition, ModelPackageSortBy, ModelQuality, SortOrder,
};
use mlctl_core::error::Result;
use mlctl_core::{
    ApprovalStatus, Capabilities, Decision, ErrorKind, ModelVersion, OpContext, RegisterRequest,
    Registry, StageTransition, components::InPlaceRequest,
};
use mlctl_spec::Stage;
use std::collections::HashMap;
use std::sync::Arc;

const FINGERPRINT: &str = "mlctl:fingerprint";
const STAGE: &str = "mlctl:stage";
const APPROVED: &str = "mlctl:approved";
/// `2`: the approval is the package's `ModelApprovalStatus` (see the module doc).
const FORMAT: &str = "mlctl:registryFormat";
const FORMAT_2: &str = "2";
/// A description changed after registration (SageMaker cannot change a package's own).
const DESCRIPTION: &str = "mlctl:description";
const DELETED: &str = "mlctl:deleted";
const METRICS_FILE: &str = "mlctl:metricsFile";
/// SageMaker allows 50 metadata entries per package.
const MAX_METADATA: usize = 50;

/// The [`Registry`] of a SageMaker target.
pub struct SageMakerRegistry {
    aws: Arc<Aws>,
}

/// A package as mlctl sees it.
struct Package {
    arn: String,
    version: ModelVersion,
    metadata: HashMap<String, String>,
    deleted: bool,
}

/// The package status that says `approval`.
pub(crate) fn status_of(approval: ApprovalStatus) -> ModelApprovalStatus {
    match approval {
        ApprovalStatus::Approved => ModelApprovalStatus::Approved,
        ApprovalStatus::PendingManualApproval => ModelApprovalStatus::PendingManualApproval,
        ApprovalStatus::Rejected => ModelApprovalStatus::Rejected,
    }
}

/// The approval a package status says (a status SageMaker adds later reads as pending: it
/// is not an approval).
pub(crate) fn approval_of(status: Option<&ModelApprovalStatus>) -> ApprovalStatus {
    match status {
        Some(ModelApprovalStatus::Approved) => ApprovalStatus::Approved,
        Some(ModelApprovalStatus::Rejected) => ApprovalStatus::Rejected,
        _ => ApprovalStatus::PendingManualApproval,
    }
}

/// Metadata values allow letters, digits, spaces and `_ . : / = + - @`, up to 256 characters.
fn meta_value(v: &str) -> String {
    v.chars()
        .map(|c| {
            if c.is_alphanumeric() || " _.:/=+-@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(256)
        .collect()
}

fn meta_key(v: &str) -> String {
    meta_value(v).chars().take(128).collect()
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Reads a package; `None` for what is not a version mlctl can use.
fn to_package(model: &str, d: &DescribeModelPackageOutput) -> Option<Package> {
    let metadata: HashMap<String, String> = d
        .customer_metadata_properties()
        .cloned()
        .unwrap_or_default();
    let status = d.model_approval_status();
    let stage = match metadata.get(STAGE).map(String::as_str) {
        Some("production") => Stage::Production,
        Some("archived") => Stage::Archived,
        Some("staging") => Stage::Staging,
        _ => match status {
            Some(ModelApprovalStatus::Approved) => Stage::Production,
            Some(ModelApprovalStatus::Rejected) => Stage::Archived,
            _ => Stage::Staging,
        },
    };
    let approval = if metadata.get(FORMAT).is_some_and(|f| f == FORMAT_2) {
        approval_of(status)
    } else {
        // Written before the status carried the approval.
        match metadata.get(APPROVED).map(String::as_str) {
            Some("true") => ApprovalStatus::Approved,
            Some(_) => ApprovalStatus::PendingManualApproval,
            None if status == Some(&ModelApprovalStatus::Approved) => ApprovalStatus::Approved,
            None => ApprovalStatus::PendingManualApproval,
        }
    };
    let metrics = metadata
        .iter()
        .filter_map(|(k, v)| {
            Some((
                k.strip_prefix("metric:")?.to_string(),
                v.parse::<f64>().ok()?,
            ))
        })
        .collect();
    let lineage = metadata
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("lineage:")?.to_string(), v.clone())))
        .collect();
    // The algorithm's container is the last one (an inference pipeline puts mlctl's
    // preprocessing in front of it).
    let artifact_uri = d
        .inference_specification()
        .and_then(|s| s.containers().last())
        .and_then(|c| c.model_data_url())
        .unwrap_or_default()
        .to_string();
    let created_at = d
        .creation_time()
        .and_then(|t| {
            t.fmt(aws_sdk_sagemaker::primitives::DateTimeFormat::DateTime)
                .ok()
        })
        .unwrap_or_default();
    Some(Package {
        arn: d.model_package_arn()?.to_string(),
        deleted: metadata.get(DELETED).is_some_and(|v| v == "true"),
        version: ModelVersion {
            model: model.to_string(),
            version: d.model_package_version()?.max(0) as u32,
            stage,
            approval,
            artifact_uri,
            metrics,
            fingerprint: metadata.get(FINGERPRINT).cloned().unwrap_or_default(),
            lineage,
            created_at,
        },
        metadata,
    })
}

impl SageMakerRegistry {
    pub(crate) fn new(aws: Arc<Aws>) -> Self {
        SageMakerRegistry { aws }
    }

    fn dir(&self, project: &str, model: &str) -> String {
        self.aws.key(&format!(".mlctl/registry/{project}/{model}/"))
    }

    /// Every package of a model (deleted ones included), oldest first.
    async fn packages(&self, project: &str, model: &str) -> Result<Vec<Package>> {
        let group = names::resource(project, model);
        let mut arns = Vec::new();
        let mut pages = self
            .aws
            .sm
            .list_model_packages()
            .model_package_group_name(&group)
            .sort_by(ModelPackageSortBy::CreationTime)
            .sort_order(SortOrder::Ascending)
            .max_results(100)
            .into_paginator()
            .send();
        while let Some(res) = pages.next().await {
            let page = match res {
                Ok(p) => p,
                Err(e) if is_not_found(&e) => return Ok(Vec::new()),
                Err(e) => return Err(aws_err("ListModelPackages", e)),
            };
            arns.extend(
                page.model_package_summary_list()
                    .iter()
                    .filter_map(|s| s.model_package_arn().map(str::to_string)),
            );
        }
        let aws = self.aws.clone();
        let described = bounded(arns, 8, move |arn: String| {
            let aws = aws.clone();
            async move {
                aws.sm
                    .describe_model_package()
                    .model_package_name(arn)
                    .send()
                    .await
                    .map_err(|e| aws_err("DescribeModelPackage", e))
            }
        })
        .await?;
        let mut out: Vec<Package> = described
            .iter()
            .filter_map(|d| to_package(model, d))
            .collect();
        out.sort_by_key(|p| p.version.version);
        Ok(out)
    }

    async fn ensure_group(&self, group: &str, req: &RegisterRequest) -> Result<()> {
        match self
            .aws
            .sm
            .describe_model_package_group()
            .model_package_group_name(group)
            .send()
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(aws_err("DescribeModelPackageGroup", e)),
        }
        let res = self
            .aws
            .sm
            .create_model_package_group()
            .model_package_group_name(group)
            .model_package_group_description(req.description.clone().unwrap_or_else(|| {
                format!(
                    "mlctl model `{}` of project `{}`",
                    req.model, req.tags.project
                )
            }))
            .set_tags(Some(sm_tags(&req.tags, &[("mlctl:model", &req.model)])))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) => {
                let err = aws_err("CreateModelPackageGroup", e);
                // Created by a concurrent apply: fine.
                if err.kind == ErrorKind::AlreadyExists {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    /// The image and environment to serve a training job's artifact with.
    async fn serving_container(
        &self,
        job: &str,
    ) -> Result<(Option<String>, HashMap<String, String>)> {
        let d = match self
            .aws
            .sm
            .describe_training_job()
            .training_job_name(job)
            .send()
            .await
        {
            Ok(d) => d,
            Err(e) if is_not_found(&e) => return Ok((None, HashMap::new())),
            Err(e) => return Err(aws_err("DescribeTrainingJob", e)),
        };
        let image = d
            .algorithm_specification()
            .and_then(|a| a.training_image())
            .map(str::to_string);
        let mut env = HashMap::new();
        if let Some(hps) = d.hyper_parameters() {
            let unquote =
                |v: &String| serde_json::from_str::<String>(v).unwrap_or_else(|_| v.clone());
            if let Some(dir) = hps.get("sagemaker_submit_directory") {
                env.insert("SAGEMAKER_SUBMIT_DIRECTORY".to_string(), unquote(dir));
            }
            if let Some(region) = hps.get("sagemaker_region") {
                env.insert("SAGEMAKER_REGION".to_string(), unquote(region));
            }
        }
        Ok((image, env))
    }

    /// Writes a package's stage and approval, keeping the rest of its metadata (moto replaces
    /// the whole map on update, AWS merges: sending the whole map works with both).
    async fn update(
        &self,
        p: &Package,
        stage: Stage,
        approval: ApprovalStatus,
        extra: &[(&str, &str)],
    ) -> Result<()> {
        let mut metadata = p.metadata.clone();
        metadata.insert(STAGE.into(), stage.as_str().into());
        metadata.insert(FORMAT.into(), FORMAT_2.into());
        // For an mlctl that reads only `mlctl:approved`.
        metadata.insert(
            APPROVED.into(),
            (approval == ApprovalStatus::Approved).to_string(),
        );
        for (k, v) in extra {
            metadata.insert((*k).to_string(), meta_value(v));
        }
        self.aws
            .sm
            .update_model_package()
            .model_package_arn(&p.arn)
            .model_approval_status(status_of(approval))
            .set_customer_metadata_properties(Some(metadata))
            .send()
            .await
            .map_err(|e| aws_err("UpdateModelPackage", e))?;
        Ok(())
    }

    async fn transition(
        &self,
        project: &str,
        model: &str,
        version: u32,
        from: Option<Stage>,
        to: Stage,
    ) -> Result<()> {
        let t = StageTransition {
            model: model.to_string(),
            version,
            from,
            to,
            at: now(),
        };
        mlctl_core::objectstore::stages::record(self.aws.as_ref(), &self.dir(project, model), &t)
            .await
    }

    async fn find(
        &self,
        project: &str,
        model: &str,
        version: u32,
    ) -> Result<(Vec<Package>, usize)> {
        let all: Vec<Package> = self
            .packages(project, model)
            .await?
            .into_iter()
            .filter(|p| !p.deleted)
            .collect();
        let idx = all
            .iter()
            .position(|p| p.version.version == version)
            .ok_or_else(|| {
                provider_err(
                    ErrorKind::NotFound,
                    "DescribeModelPackage",
                    format!("model `{model}` has no version {version}"),
                )
            })?;
        Ok((all, idx))
    }
}

#[async_trait]
impl Registry for SageMakerRegistry {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            fields: crate::support::field_rules(),
            stage_history: true,
            artifacts: true,
            poll_interval: self.aws.settings.poll_interval,
            notes: self.aws.features.notes(),
            ..Capabilities::default()
        }
    }

    async fn update_in_place(&self, ctx: &OpContext, req: &InPlaceRequest) -> Result<()> {
        let version: ModelVersion = req.outputs_as("sagemaker")?;
        let (all, i) = self.find(&ctx.project, &req.name, version.version).await?;
        let p = &all[i];
        let tags = &req.tags;
        if self.aws.features.tag_model_packages {
            self.aws.retag(&p.arn, tags, &req.removed_labels).await?;
        }
        let group = names::resource(&ctx.project, &req.name);
        let group_arn = self
            .aws
            .sm
            .describe_model_package_group()
            .model_package_group_name(&group)
            .send()
            .await
            .map_err(|e| aws_err("DescribeModelPackageGroup", e))?
            .model_package_group_arn()
            .unwrap_or_default()
            .to_string();
        self.aws
            .retag(&group_arn, tags, &req.removed_labels)
            .await?;
        // SageMaker cannot change a package's own description: a changed one is kept in its
        // metadata as `mlctl:description`. The whole map is sent (moto replaces it, AWS
        // merges), and a removed description is also named for removal (AWS).
        let mut metadata = p.metadata.clone();
        let removed = match &req.description {
            Some(d) => {
                metadata.insert(DESCRIPTION.into(), meta_value(d));
                None
            }
            None => metadata
                .remove(DESCRIPTION)
                .map(|_| vec![DESCRIPTION.to_string()]),
        };
        if metadata != p.metadata {
            self.aws
                .sm
                .update_model_package()
                .model_package_arn(&p.arn)
                .set_customer_metadata_properties(Some(metadata))
                .set_customer_metadata_properties_to_remove(removed)
                .send()
                .await
                .map_err(|e| aws_err("UpdateModelPackage", e))?;
        }
        Ok(())
    }

    /// The object at the version's `artifact_uri`: a `.tar.gz` (what SageMaker training
    /// writes and `store_artifact` packs) is unpacked into its files; another object is one
    /// file under its name.
    async fn read_artifact(
        &self,
        _ctx: &OpContext,
        version: &ModelVersion,
    ) -> Result<mlctl_core::components::Artifact> {
        let op = "read artifact";
        let (bucket, key) = crate::aws::parse_s3_uri(&version.artifact_uri).ok_or_else(|| {
            provider_err(
                ErrorKind::NotSupported,
                op,
                format!(
                    "{} v{} keeps its artifact at `{}`, which is not an s3:// URI",
                    version.model, version.version, version.artifact_uri
                ),
            )
        })?;
        let bytes = self.aws.get_from(&bucket, &key).await?.ok_or_else(|| {
            provider_err(
                ErrorKind::NotFound,
                op,
                format!(
                    "the artifact of {} v{} ({}) does not exist",
                    version.model, version.version, version.artifact_uri
                ),
            )
        })?;
        if key.ends_with(".tar.gz") {
            return crate::artifacts::unpack(&bytes).map_err(|e| {
                provider_err(
                    ErrorKind::Invalid,
                    op,
                    format!("{}: {e}", version.artifact_uri),
                )
            });
        }
        let name = key.rsplit('/').next().unwrap_or("model").to_string();
        Ok(mlctl_core::components::Artifact {
            files: std::collections::BTreeMap::from([(name, bytes)]),
        })
    }

    /// Packed as `model.tar.gz` (what SageMaker serving containers read) under
    /// `artifacts/promoted/<project>/<model>/<digest>/` in the target's bucket.
    async fn store_artifact(
        &self,
        ctx: &OpContext,
        model: &str,
        artifact: &mlctl_core::components::Artifact,
    ) -> Result<String> {
        let op = "store artifact";
        let hex = artifact.digest().trim_start_matches("blake3:").to_string();
        let key = self.aws.key(&format!(
            "artifacts/promoted/{}/{model}/{hex}/model.tar.gz",
            ctx.project
        ));
        let packed = crate::artifacts::pack(artifact)
            .map_err(|e| provider_err(ErrorKind::Invalid, op, e.to_string()))?;
        self.aws.put(&key, packed, "application/gzip").await?;
        Ok(self.aws.uri(&key))
    }

    async fn versions(&self, ctx: &OpContext, model: &str) -> Result<Vec<ModelVersion>> {
        Ok(self
            .packages(&ctx.project, model)
            .await?
            .into_iter()
            .filter(|p| !p.deleted)
            .map(|p| p.version)
            .collect())
    }

    async fn register(&self, ctx: &OpContext, req: &RegisterRequest) -> Result<ModelVersion> {
        let group = names::resource(&ctx.project, &req.model);
        self.ensure_group(&group, req).await?;
        if let Some(p) = self
            .packages(&ctx.project, &req.model)
            .await?
            .into_iter()
            .find(|p| !p.deleted && p.version.fingerprint == req.fingerprint)
        {
            return Ok(p.version);
        }
        let (image, env) = self.serving_container(&req.training.job_name).await?;
        let image = image
            .or_else(|| crate::images::default_framework_image(&self.aws.region))
            .unwrap_or_default();

        // The whole record in S3 (metrics can outgrow the metadata's 50 entries).
        let metrics_key = format!(
            "{}{}.json",
            self.dir(&ctx.project, &req.model),
            req.fingerprint
        );
        // A built-in's channels were encoded by mlctl's preprocessing: serve it in front.
        let preprocessor = self
            .aws
            .get_json::<crate::preprocessing::JobRecord>(&crate::preprocessing::record_key(
                &self.aws,
                &ctx.project,
                &req.training.job_name,
            ))
            .await?
            .map(|r| r.preprocessor);
        let record = serde_json::json!({"metrics": req.training.metrics, "lineage": req.lineage, "fingerprint": req.fingerprint, "trainingJob": req.training.job_name, "preprocessor": preprocessor});
        self.aws.put_json(&metrics_key, &record).await?;

        let approval = ApprovalStatus::initial(req.approval);
        let mut metadata: HashMap<String, String> = HashMap::from([
            (FINGERPRINT.to_string(), req.fingerprint.clone()),
            (STAGE.to_string(), req.stage.as_str().to_string()),
            (FORMAT.to_string(), FORMAT_2.to_string()),
            (
                APPROVED.to_string(),
                (approval == ApprovalStatus::Approved).to_string(),
            ),
            (
                METRICS_FILE.to_string(),
                meta_value(&self.aws.uri(&metrics_key)),
            ),
        ]);
        for (k, v) in &req.lineage {
            metadata.insert(meta_key(&format!("lineage:{k}")), meta_value(v));
        }
        if let Some(uri) = &preprocessor {
            metadata.insert(
                format!("lineage:{}", crate::preprocessing::LINEAGE_KEY),
                meta_value(uri),
            );
        }
        for (k, v) in &req.training.metrics {
            if metadata.len() >= MAX_METADATA {
                break;
            }
            if v.is_finite() {
                metadata.insert(meta_key(&format!("metric:{k}")), format!("{v}"));
            }
        }
        let mut container = ModelPackageContainerDefinition::builder()
            .image(image)
            .set_environment((!env.is_empty()).then_some(env));
        if req.training.artifact_uri.starts_with("s3://") {
            container = container.model_data_url(&req.training.artifact_uri);
        }
        let mut inference = InferenceSpecification::builder();
        if let Some(uri) = &preprocessor {
            let pre = crate::preprocessing::container(&self.aws, uri).await?;
            inference = inference.containers(
                ModelPackageContainerDefinition::builder()
                    .image(pre.image)
                    .model_data_url(pre.model_data)
                    .set_environment(Some(pre.environment))
                    .build(),
            );
        }
        let inference = inference
            .containers(container.build())
            .supported_content_types("text/csv")
            .supported_content_types("application/json")
            .supported_response_mime_types("text/csv")
            .supported_response_mime_types("application/json")
            .build();
        let quality = ModelMetrics::builder()
            .model_quality(
                ModelQuality::builder()
                    .statistics(
                        MetricsSource::builder()
                            .content_type("application/json")
                            .s3_uri(self.aws.uri(&metrics_key))
                            .build(),
                    )
                    .build(),
            )
            .build();
        let out = self
            .aws
            .sm
            .create_model_package()
            .model_package_group_name(&group)
            .set_model_package_description(req.description.clone())
            .model_approval_status(status_of(approval))
            .inference_specification(inference)
            .model_metrics(quality)
            .set_customer_metadata_properties(Some(metadata))
            .set_tags(Some(sm_tags(&req.tags, &[("mlctl:model", &req.model)])))
            // Idempotency token: a retried create returns the same package.
            .client_token(names::hash(&[&group, &req.fingerprint], 32))
            .send()
            .await
            .map_err(|e| aws_err("CreateModelPackage", e))?;
        let arn = out.model_package_arn().unwrap_or_default().to_string();
        let d = self
            .aws
            .sm
            .describe_model_package()
            .model_package_name(&arn)
            .send()
            .await
            .map_err(|e| aws_err("DescribeModelPackage", e))?;
        let p = to_package(&req.model, &d).ok_or_else(|| {
            provider_err(
                ErrorKind::Other,
                "CreateModelPackage",
                format!("{arn} has no version number"),
            )
        })?;
        self.transition(&ctx.project, &req.model, p.version.version, None, req.stage)
            .await?;
        Ok(p.version)
    }

    async fn set_stage(
        &self,
        ctx: &OpContext,
        model: &str,
        version: u32,
        stage: Stage,
    ) -> Result<ModelVersion> {
        let (all, idx) = self.find(&ctx.project, model, version).await?;
        let p = &all[idx];
        p.version.check_promotion(crate::error::PROVIDER, stage)?;
        if stage == Stage::Production {
            for other in all
                .iter()
                .filter(|p| p.version.version != version && p.version.stage == Stage::Production)
            {
                self.update(other, Stage::Archived, other.version.approval, &[])
                    .await?;
                self.transition(
                    &ctx.project,
                    model,
                    other.version.version,
                    Some(Stage::Production),
                    Stage::Archived,
                )
                .await?;
            }
        }
        if p.version.stage != stage {
            self.update(p, stage, p.version.approval, &[]).await?;
            self.transition(&ctx.project, model, version, Some(p.version.stage), stage)
                .await?;
        }
        let mut v = p.version.clone();
        v.stage = stage;
        Ok(v)
    }

    async fn decide(
        &self,
        ctx: &OpContext,
        model: &str,
        version: u32,
        decision: Decision,
    ) -> Result<ModelVersion> {
        let (all, idx) = self.find(&ctx.project, model, version).await?;
        let p = &all[idx];
        p.version.check_decision(crate::error::PROVIDER, decision)?;
        let status = decision.status();
        if p.version.approval != status {
            self.update(p, p.version.stage, status, &[("mlctl:decidedAt", &now())])
                .await?;
        }
        let mut v = p.version.clone();
        v.approval = status;
        Ok(v)
    }

    async fn delete_model(&self, ctx: &OpContext, model: &str) -> Result<()> {
        let packages = self.packages(&ctx.project, model).await?;
        if self.aws.features.delete_model_packages {
            for p in &packages {
                match self
                    .aws
                    .sm
                    .delete_model_package()
                    .model_package_name(&p.arn)
                    .send()
                    .await
                {
                    Ok(_) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(aws_err("DeleteModelPackage", e)),
                }
            }
            let group = names::resource(&ctx.project, model);
            match self
                .aws
                .sm
                .delete_model_package_group()
                .model_package_group_name(&group)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(aws_err("DeleteModelPackageGroup", e)),
            }
        } else {
            for p in packages.iter().filter(|p| !p.deleted) {
                self.update(p, Stage::Archived, p.version.approval, &[(DELETED, "true")])
                    .await?;
            }
        }
        for key in self.aws.list(&self.dir(&ctx.project, model)).await? {
            self.aws.delete(&key).await?;
        }
        Ok(())
    }

    async fn stage_history(&self, ctx: &OpContext, model: &str) -> Result<Vec<StageTransition>> {
        mlctl_core::objectstore::stages::history(self.aws.clone(), &self.dir(&ctx.project, model))
            .await
    }
}
