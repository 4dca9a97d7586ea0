//! The model registry on Azure ML: a model container per Model (`models/<project>-<model>`),
//! a model version per registered version (`models/<project>-<model>/versions/<n>`).
//!
//! What mlctl keeps where, so that a fresh runner (and Azure ML studio) reads it back:
//!
//! | mlctl | the model version |
//! |---|---|
//! | artifact | `modelUri` (the https URL of the artifact folder in `storage`), `modelType: custom_model` |
//! | stage | `stage`: `Staging`, `Production`, `Archived` (another value, such as studio's `Development`, reads as staging) |
//! | approval | tag `mlctl:approval`: `Approved`, `PendingManualApproval`, `Rejected` (tags stay writable; asset properties do not) |
//! | fingerprint, commit, training job, metrics, lineage | `properties`: `mlctl.fingerprint`, `mlctl.commit`, `mlctl.trainingJob`, `mlctl.metric.<name>`, `mlctl.lineage.<key>` (written once, at registration) |
//! | labels, mlctl's tags | `tags` (`mlctl_core::Tags::to_map`), on the container too |
//! | description | `description`, on the container too |
//!
//! The version's `jobName` links it to its training job in studio when the artifact was
//! written by a job of this workspace. Stage changes are appended as blobs under
//! `.mlctl/registry/<project>/<model>/stages/` in the target's storage (Azure ML keeps no
//! history of a version's stage).

use crate::azure::Azure;
use async_trait::async_trait;
use mlctl_core::components::{Artifact, InPlaceRequest};
use mlctl_core::error::Result;
use mlctl_core::support::{FieldRules, Support};
use mlctl_core::{
    ApprovalStatus, Capabilities, Decision, ErrorKind, ModelVersion, OpContext, ProviderError,
    RegisterRequest, Registry, StageTransition, Tags,
};
use mlctl_spec::{Kind, Stage};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

const APPROVAL: &str = "mlctl:approval";
const DECIDED_AT: &str = "mlctl:decidedAt";
const MODEL: &str = "mlctl:model";
const FINGERPRINT: &str = "mlctl.fingerprint";
const COMMIT: &str = "mlctl.commit";
const TRAINING_JOB: &str = "mlctl.trainingJob";
const CREATED_AT: &str = "mlctl.createdAt";
const METRIC: &str = "mlctl.metric.";
const LINEAGE: &str = "mlctl.lineage.";
/// `1`: the layout of the module doc.
const FORMAT: &str = "mlctl.registryFormat";
const FORMAT_1: &str = "1";
/// The longest model name Azure ML takes.
const MAX_NAME: usize = 255;
/// The fields of a model version's `properties` that a PUT may send (read-only ones, such as
/// `provisioningState`, are dropped from what was read).
const WRITABLE: [&str; 9] = [
    "description",
    "tags",
    "properties",
    "modelType",
    "modelUri",
    "stage",
    "jobName",
    "flavors",
    "isArchived",
];

/// The [`Registry`] of an azureml target.
pub struct AzureRegistry {
    az: Arc<Azure>,
}

/// The Azure ML model name of `model` in `project`: `<project>-<model>`, with what Azure
/// ML rejects made `-`, a long one ending with a hash of the whole. The deployer refers to
/// versions by [`model_id`].
pub(crate) fn model_name(project: &str, model: &str) -> String {
    let raw = format!("{project}-{model}");
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let clean = clean.trim_start_matches(['-', '_', '.']).to_string();
    if clean.len() <= MAX_NAME {
        return clean;
    }
    let hash = blake3::hash(raw.as_bytes()).to_hex();
    format!("{}-{}", &clean[..MAX_NAME - 9], &hash[..8])
}

/// The workspace-relative path of a model version.
pub(crate) fn version_path(project: &str, model: &str, version: u32) -> String {
    format!("models/{}/versions/{version}", model_name(project, model))
}

fn stage_word(stage: Stage) -> &'static str {
    match stage {
        Stage::Staging => "Staging",
        Stage::Production => "Production",
        Stage::Archived => "Archived",
    }
}

fn stage_of(word: Option<&str>) -> Stage {
    match word.map(str::to_ascii_lowercase).as_deref() {
        Some("production") => Stage::Production,
        Some("archived") => Stage::Archived,
        _ => Stage::Staging,
    }
}

fn approval_word(a: ApprovalStatus) -> &'static str {
    match a {
        ApprovalStatus::Approved => "Approved",
        ApprovalStatus::PendingManualApproval => "PendingManualApproval",
        ApprovalStatus::Rejected => "Rejected",
    }
}

/// A version with no `mlctl:approval` tag (registered outside mlctl) is pending: it is not
/// an approval.
fn approval_of(word: Option<&str>) -> ApprovalStatus {
    match word {
        Some("Approved") => ApprovalStatus::Approved,
        Some("Rejected") => ApprovalStatus::Rejected,
        _ => ApprovalStatus::PendingManualApproval,
    }
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn strings(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// The tags of a container or version: mlctl's and the labels, plus `extra` (the
/// approval and its time on a version).
fn tags_of(tags: &Tags, model: &str, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut map = tags.to_map();
    map.insert(MODEL.to_string(), model.to_string());
    for (k, v) in extra {
        map.insert((*k).to_string(), (*v).to_string());
    }
    map
}

/// `PUT models/{name}`: the model container.
pub(crate) fn container_body(
    model: &str,
    project: &str,
    tags: &Tags,
    description: Option<&str>,
) -> Value {
    let description = description
        .map(str::to_string)
        .unwrap_or_else(|| format!("mlctl model `{model}` of project `{project}`"));
    json!({"properties": {"description": description, "tags": tags_of(tags, model, &[])}})
}

/// `PUT models/{name}/versions/{n}` of a new version; `job` names the training job when it
/// ran in this workspace.
pub(crate) fn version_body(
    req: &RegisterRequest,
    commit: &str,
    job: Option<&str>,
    created_at: &str,
) -> Value {
    let approval = ApprovalStatus::initial(req.approval);
    let mut properties: BTreeMap<String, String> = BTreeMap::from([
        (FORMAT.to_string(), FORMAT_1.to_string()),
        (FINGERPRINT.to_string(), req.fingerprint.clone()),
        (COMMIT.to_string(), commit.to_string()),
        (TRAINING_JOB.to_string(), req.training.job_name.clone()),
        (CREATED_AT.to_string(), created_at.to_string()),
    ]);
    for (k, v) in &req.training.metrics {
        // JSON has no NaN or infinity; a metric that is neither a number nor kept.
        if v.is_finite() {
            properties.insert(format!("{METRIC}{k}"), format!("{v}"));
        }
    }
    for (k, v) in &req.lineage {
        properties.insert(format!("{LINEAGE}{k}"), v.clone());
    }
    let mut p = Map::new();
    p.insert("modelType".into(), json!("custom_model"));
    p.insert("modelUri".into(), json!(req.training.artifact_uri));
    p.insert("stage".into(), json!(stage_word(req.stage)));
    if let Some(d) = &req.description {
        p.insert("description".into(), json!(d));
    }
    if let Some(job) = job {
        p.insert("jobName".into(), json!(job));
    }
    p.insert(
        "tags".into(),
        json!(tags_of(
            &req.tags,
            &req.model,
            &[(APPROVAL, approval_word(approval))]
        )),
    );
    p.insert("properties".into(), json!(properties));
    json!({ "properties": p })
}

/// A model version as read, with what a PUT of it again needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Read {
    pub version: ModelVersion,
    /// The writable part of its `properties`.
    pub properties: Map<String, Value>,
}

impl Read {
    fn tags(&self) -> BTreeMap<String, String> {
        strings(self.properties.get("tags"))
    }

    /// The body that writes this version again with `stage`, and `tags` as its tags.
    fn body(&self, stage: Stage, tags: BTreeMap<String, String>) -> Value {
        let mut p = self.properties.clone();
        p.insert("stage".into(), json!(stage_word(stage)));
        p.insert("tags".into(), json!(tags));
        json!({ "properties": p })
    }
}

/// A model version resource of `model`; `None` when its name is not a version number.
pub(crate) fn parse_version(model: &str, v: &Value) -> Option<Read> {
    let number: u32 = v.get("name")?.as_str()?.trim().parse().ok()?;
    let props = v.get("properties")?.as_object()?;
    let tags = strings(props.get("tags"));
    let meta = strings(props.get("properties"));
    let metrics = meta
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(METRIC)?.to_string(), v.parse::<f64>().ok()?)))
        .collect();
    let lineage = meta
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(LINEAGE)?.to_string(), v.clone())))
        .collect();
    // mlctl's own record first: the same in a PUT's answer and in every later read.
    let created_at = meta
        .get(CREATED_AT)
        .cloned()
        .or_else(|| {
            v.pointer("/systemData/createdAt")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default();
    let writable = props
        .iter()
        .filter(|(k, _)| WRITABLE.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Some(Read {
        version: ModelVersion {
            model: model.to_string(),
            version: number,
            stage: stage_of(props.get("stage").and_then(Value::as_str)),
            approval: approval_of(tags.get(APPROVAL).map(String::as_str)),
            artifact_uri: props
                .get("modelUri")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            metrics,
            fingerprint: meta.get(FINGERPRINT).cloned().unwrap_or_default(),
            lineage,
            created_at,
        },
        properties: writable,
    })
}

/// The number of a new version: after the highest listed and after the highest the
/// container says was ever used (Azure ML may keep a deleted version's number in its
/// `latestVersion`, `nextVersion`).
pub(crate) fn next_version(listed: u32, container: &Value) -> u32 {
    let read = |field: &str| {
        container
            .pointer(&format!("/properties/{field}"))
            .and_then(Value::as_str)
            .and_then(|v| v.trim().parse::<u32>().ok())
    };
    (listed.max(read("latestVersion").unwrap_or(0)) + 1).max(read("nextVersion").unwrap_or(0))
}

fn not_found(model: &str, version: u32) -> ProviderError {
    ProviderError::new(
        ErrorKind::NotFound,
        "azureml",
        "model version",
        format!(
            "model `{model}` has no version {version}; `mlctl models list {model}` shows those it has"
        ),
    )
}

impl AzureRegistry {
    pub(crate) fn new(az: Arc<Azure>) -> Self {
        AzureRegistry { az }
    }

    fn dir(&self, project: &str, model: &str) -> String {
        self.az
            .blob
            .key(&format!(".mlctl/registry/{project}/{model}/"))
    }

    /// Every version of a model, oldest first (archived ones in studio included).
    async fn read_all(&self, project: &str, model: &str) -> Result<Vec<Read>> {
        let path = format!(
            "models/{}/versions?listViewType=All",
            model_name(project, model)
        );
        let mut out: Vec<Read> = self
            .az
            .arm
            .list(&path)
            .await?
            .iter()
            .filter_map(|v| parse_version(model, v))
            .collect();
        out.sort_by_key(|r| r.version.version);
        Ok(out)
    }

    async fn find(&self, project: &str, model: &str, version: u32) -> Result<(Vec<Read>, usize)> {
        let all = self.read_all(project, model).await?;
        let i = all
            .iter()
            .position(|r| r.version.version == version)
            .ok_or_else(|| not_found(model, version))?;
        Ok((all, i))
    }

    async fn write(&self, project: &str, r: &Read, body: &Value) -> Result<ModelVersion> {
        let path = version_path(project, &r.version.model, r.version.version);
        let v = self.az.arm.put(&path, body).await?;
        parse_version(&r.version.model, &v)
            .map(|r| r.version)
            .ok_or_else(|| {
                ProviderError::new(
                    ErrorKind::Other,
                    "azureml",
                    format!("PUT {path}"),
                    "the service answered with something that is not a model version",
                )
            })
    }

    async fn set(&self, project: &str, r: &Read, stage: Stage) -> Result<ModelVersion> {
        self.write(project, r, &r.body(stage, r.tags())).await
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
        mlctl_core::objectstore::stages::record(
            self.az.blob.as_ref(),
            &self.dir(project, model),
            &t,
        )
        .await
    }

    /// The training job's name when its artifact was written by a job of this workspace
    /// (under `artifacts/<job>/`), so studio links the version to it.
    fn own_job<'a>(&self, req: &'a RegisterRequest) -> Option<&'a str> {
        let job = req.training.job_name.as_str();
        if job.is_empty() {
            return None;
        }
        let prefix = self
            .az
            .blob
            .url(&self.az.blob.key(&format!("artifacts/{job}/")));
        req.training
            .artifact_uri
            .starts_with(&prefix)
            .then_some(job)
    }

    fn artifact_key(&self, version: &ModelVersion) -> Result<String> {
        self.az.blob.key_of_url(&version.artifact_uri).ok_or_else(|| {
            ProviderError::new(
                ErrorKind::NotSupported,
                "azureml",
                "read artifact",
                format!(
                    "{} v{} keeps its artifact at `{}`, outside the target's storage (`{}`); mlctl reads artifacts only from there",
                    version.model,
                    version.version,
                    mlctl_spec::suggest::clip(&version.artifact_uri, 300),
                    self.az.target.storage
                ),
            )
        })
    }
}

/// What the registry honours of a Model.
pub(crate) fn field_rules() -> FieldRules {
    FieldRules::new()
        .with(
            &format!("{}.metadata.labels", Kind::Model),
            Support::honoured_as(
                "tags on the model container and each version (with mlctl's own `mlctl:*` tags), changed in place without a new version",
            ),
        )
        .with(
            "Model.spec.description",
            Support::honoured_as(
                "the description of the model container and its versions, changed in place without a new version",
            ),
        )
}

#[async_trait]
impl Registry for AzureRegistry {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            fields: field_rules(),
            stage_history: true,
            artifacts: true,
            poll_interval: self.az.settings.poll_interval,
            notes: self.az.features.notes(),
            ..Capabilities::default()
        }
    }

    async fn versions(&self, ctx: &OpContext, model: &str) -> Result<Vec<ModelVersion>> {
        Ok(self
            .read_all(&ctx.project, model)
            .await?
            .into_iter()
            .map(|r| r.version)
            .collect())
    }

    async fn register(&self, ctx: &OpContext, req: &RegisterRequest) -> Result<ModelVersion> {
        let name = model_name(&ctx.project, &req.model);
        // Written each time: its tags and description follow the spec's.
        let container = self
            .az
            .arm
            .put(
                &format!("models/{name}"),
                &container_body(
                    &req.model,
                    &ctx.project,
                    &req.tags,
                    req.description.as_deref(),
                ),
            )
            .await?;
        let all = self.read_all(&ctx.project, &req.model).await?;
        if let Some(r) = all
            .iter()
            .find(|r| r.version.fingerprint == req.fingerprint)
        {
            return Ok(r.version.clone());
        }
        let listed = all.iter().map(|r| r.version.version).max().unwrap_or(0);
        let next = next_version(listed, &container);
        let commit = if req.tags.commit.is_empty() {
            ctx.commit.as_str()
        } else {
            req.tags.commit.as_str()
        };
        let body = version_body(req, commit, self.own_job(req), &now());
        let path = version_path(&ctx.project, &req.model, next);
        let v = self.az.arm.put(&path, &body).await?;
        let read = parse_version(&req.model, &v).ok_or_else(|| {
            ProviderError::new(
                ErrorKind::Other,
                "azureml",
                format!("PUT {path}"),
                "the service answered with something that is not a model version",
            )
        })?;
        self.transition(&ctx.project, &req.model, next, None, req.stage)
            .await?;
        Ok(read.version)
    }

    async fn set_stage(
        &self,
        ctx: &OpContext,
        model: &str,
        version: u32,
        stage: Stage,
    ) -> Result<ModelVersion> {
        let (all, i) = self.find(&ctx.project, model, version).await?;
        let r = &all[i];
        r.version.check_promotion("azureml", stage)?;
        if stage == Stage::Production {
            for other in all
                .iter()
                .filter(|o| o.version.version != version && o.version.stage == Stage::Production)
            {
                self.set(&ctx.project, other, Stage::Archived).await?;
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
        if r.version.stage == stage {
            return Ok(r.version.clone());
        }
        let v = self.set(&ctx.project, r, stage).await?;
        self.transition(&ctx.project, model, version, Some(r.version.stage), stage)
            .await?;
        Ok(v)
    }

    async fn decide(
        &self,
        ctx: &OpContext,
        model: &str,
        version: u32,
        decision: Decision,
    ) -> Result<ModelVersion> {
        let (all, i) = self.find(&ctx.project, model, version).await?;
        let r = &all[i];
        r.version.check_decision("azureml", decision)?;
        let status = decision.status();
        if r.version.approval == status {
            return Ok(r.version.clone());
        }
        let mut tags = r.tags();
        tags.insert(APPROVAL.into(), approval_word(status).into());
        tags.insert(DECIDED_AT.into(), now());
        self.write(&ctx.project, r, &r.body(r.version.stage, tags))
            .await
    }

    async fn delete_model(&self, ctx: &OpContext, model: &str) -> Result<()> {
        for r in self.read_all(&ctx.project, model).await? {
            self.az
                .arm
                .delete(&version_path(&ctx.project, model, r.version.version))
                .await?;
        }
        self.az
            .arm
            .delete(&format!("models/{}", model_name(&ctx.project, model)))
            .await?;
        for key in self.az.blob.list(&self.dir(&ctx.project, model)).await? {
            self.az.blob.delete(&key).await?;
        }
        Ok(())
    }

    async fn update_in_place(&self, ctx: &OpContext, req: &InPlaceRequest) -> Result<()> {
        let recorded: ModelVersion = req.outputs_as("azureml")?;
        let (all, i) = self.find(&ctx.project, &req.name, recorded.version).await?;
        let r = &all[i];
        // mlctl's own tags on the version stay (its approval); the labels are the request's.
        let kept: Vec<(String, String)> = r
            .tags()
            .into_iter()
            .filter(|(k, _)| k == APPROVAL || k == DECIDED_AT)
            .collect();
        let kept: Vec<(&str, &str)> = kept.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let tags = tags_of(&req.tags, &req.name, &kept);
        let mut body = r.body(r.version.stage, tags);
        match &req.description {
            Some(d) => body["properties"]["description"] = json!(d),
            None => {
                if let Some(p) = body["properties"].as_object_mut() {
                    p.remove("description");
                }
            }
        }
        self.write(&ctx.project, r, &body).await?;
        self.az
            .arm
            .put(
                &format!("models/{}", model_name(&ctx.project, &req.name)),
                &container_body(
                    &req.name,
                    &ctx.project,
                    &req.tags,
                    req.description.as_deref(),
                ),
            )
            .await?;
        Ok(())
    }

    /// Every blob under the version's `modelUri` folder, by path relative to it; a
    /// `modelUri` naming one blob is that file under its name.
    async fn read_artifact(&self, _ctx: &OpContext, version: &ModelVersion) -> Result<Artifact> {
        let key = self.artifact_key(version)?;
        let folder = if key.ends_with('/') {
            key.clone()
        } else {
            format!("{key}/")
        };
        let mut files = BTreeMap::new();
        for name in self.az.blob.list(&folder).await? {
            let Some(rel) = name.strip_prefix(&folder) else {
                continue;
            };
            if rel.is_empty() {
                continue;
            }
            if let Some(bytes) = self.az.blob.get(&name).await? {
                files.insert(rel.to_string(), bytes);
            }
        }
        if files.is_empty()
            && !key.ends_with('/')
            && let Some(bytes) = self.az.blob.get(&key).await?
        {
            let file = key.rsplit('/').next().unwrap_or("model").to_string();
            files.insert(file, bytes);
        }
        if files.is_empty() {
            return Err(ProviderError::new(
                ErrorKind::NotFound,
                "azureml",
                "read artifact",
                format!(
                    "the artifact of {} v{} ({}) does not exist",
                    version.model,
                    version.version,
                    mlctl_spec::suggest::clip(&version.artifact_uri, 300)
                ),
            ));
        }
        Ok(Artifact { files })
    }

    /// Under `artifacts/promoted/<project>/<model>/<digest>/` in the target's storage, file
    /// by file; the URI is that folder's URL (what a version's `modelUri` is).
    async fn store_artifact(
        &self,
        ctx: &OpContext,
        model: &str,
        artifact: &Artifact,
    ) -> Result<String> {
        let hex = artifact.digest().trim_start_matches("blake3:").to_string();
        let folder = self.az.blob.key(&format!(
            "artifacts/promoted/{}/{model}/{hex}/",
            ctx.project
        ));
        for (rel, bytes) in &artifact.files {
            let ok = !rel.is_empty()
                && rel
                    .split('/')
                    .all(|p| !p.is_empty() && p != "." && p != ".." && !p.contains('\\'));
            if !ok {
                return Err(ProviderError::new(
                    ErrorKind::Invalid,
                    "azureml",
                    "store artifact",
                    format!(
                        "artifact path `{}` is not a relative path inside the artifact",
                        mlctl_spec::suggest::clip(rel, 200)
                    ),
                ));
            }
            self.az
                .blob
                .put(
                    &format!("{folder}{rel}"),
                    bytes.clone(),
                    "application/octet-stream",
                )
                .await?;
        }
        Ok(self.az.blob.url(&folder))
    }

    async fn stage_history(&self, ctx: &OpContext, model: &str) -> Result<Vec<StageTransition>> {
        mlctl_core::objectstore::stages::history(
            self.az.blob.clone(),
            &self.dir(&ctx.project, model),
        )
        .await
    }
}
