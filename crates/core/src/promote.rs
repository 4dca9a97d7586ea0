//! `mlctl promote`: a registered version moves from one target to the next as the same bytes.
//!
//! The CLI reads the version and its artifact from the source target ([`choose_version`],
//! [`Registry::read_artifact`]), checks that the destination's spec trains the same model
//! ([`check_same_model`]), and calls [`promote`] on the destination, which stores the files,
//! registers them under the destination's policy, reads them back and compares digests, and
//! records the TrainingJob and the Model in the destination's state store as if an apply had
//! made them there (Terraform's `import`). The next plan on the destination then trains
//! nothing: it deploys the promoted version where the spec says.
//!
//! # Which fields feed which fingerprint
//! - The destination's records carry the destination's own fingerprints, computed from its
//!   spec (its `overrides` merged): a TrainingJob's `compute` is in them, so changing it on
//!   the destination later retrains there, as on any target.
//! - Whether a version *is* the model the destination's spec trains is decided by the model
//!   identity ([`model_identity`]): the TrainingJob's fingerprinted spec without
//!   [`mlctl_spec::TrainingJobSpec::IDENTITY_EXCLUDES`] (`compute`), its data and code
//!   digests and its inputs' fingerprints. Secret digests (keyed per target) and a monitor's
//!   retrain request are left out. Hyperparameters, algorithm, code, data and tuning are in
//!   it: a version trained with other hyperparameters is refused.
//! - The Model's gates, stage and approval are the destination's: its gates judge the
//!   version's metrics against its own baseline, and with `approval: manual` the version waits
//!   for a reviewer there.

use crate::components::*;
use crate::error::{ErrorKind, ProviderError, Result};
use crate::fingerprint::deterministic_name;
use crate::gates;
use crate::plan::{Desired, DesiredResource};
use crate::state::{Health, HistoryEntry, ObservedResource};
use mlctl_spec::{Approval, Kind, ResourceId, Stage, metrics};
use std::collections::BTreeMap;

/// Lineage keys a promotion adds to the version it registers.
pub mod lineage {
    /// The target it was promoted from.
    pub const FROM: &str = "promotedFrom";
    /// Its version number there.
    pub const FROM_VERSION: &str = "promotedFromVersion";
    /// The artifact's digest ([`crate::components::Artifact::digest`]), as computed on both
    /// sides.
    pub const DIGEST: &str = "artifactDigest";
    /// When (RFC 3339).
    pub const AT: &str = "promotedAt";
}

fn refuse(kind: ErrorKind, message: String) -> ProviderError {
    ProviderError::new(kind, "mlctl", "promote", message)
}

/// The version to promote: `asked`, or the source's production version, else its newest
/// approved one.
///
/// # Errors
/// `NotFound` when the model or the version is not registered; `Precondition` for a rejected
/// or unapproved version, with the command that decides.
pub fn choose_version(
    versions: &[ModelVersion],
    asked: Option<u32>,
    model: &str,
    target: &str,
) -> Result<ModelVersion> {
    if versions.is_empty() {
        return Err(refuse(
            ErrorKind::NotFound,
            format!(
                "model `{model}` has no version on target `{target}`; run `mlctl apply -t {target}` to train and register one first"
            ),
        ));
    }
    let v = match asked {
        Some(n) => versions.iter().find(|v| v.version == n).ok_or_else(|| {
            let have: Vec<String> = versions.iter().map(|v| format!("v{}", v.version)).collect();
            refuse(
                ErrorKind::NotFound,
                format!(
                    "model `{model}` has no v{n} on target `{target}`; it has {}",
                    mlctl_spec::suggest::list(&have)
                ),
            )
        })?,
        None => versions
            .iter()
            .find(|v| v.stage == Stage::Production)
            .or_else(|| {
                versions
                    .iter()
                    .rev()
                    .find(|v| v.approved() && v.stage != Stage::Archived)
            })
            .ok_or_else(|| {
                refuse(
                    ErrorKind::Precondition,
                    format!(
                        "model `{model}` has no version in production or approved on target `{target}`; approve one (`mlctl models approve {model} N -t {target}`) or name it: `mlctl promote {model}:N`"
                    ),
                )
            })?,
    };
    match v.approval {
        ApprovalStatus::Approved => Ok(v.clone()),
        ApprovalStatus::Rejected => Err(refuse(
            ErrorKind::Precondition,
            format!(
                "model `{model}` v{} was rejected on target `{target}` and is never promoted; promote another version, or train a new one",
                v.version
            ),
        )),
        ApprovalStatus::PendingManualApproval => Err(refuse(
            ErrorKind::Precondition,
            format!(
                "model `{model}` v{n} is waiting for approval on target `{target}`; approve it there first: `mlctl models approve {model} {n} -t {target}`",
                n = v.version
            ),
        )),
    }
}

/// The model identity of a TrainingJob (hex blake3): what it learns from, without where and
/// how fast it runs. See the module docs for what is in it.
pub fn model_identity(d: &DesiredResource) -> String {
    let mut spec = d.resource.fingerprinted();
    if let Some(s) = spec.get_mut("spec").and_then(|s| s.as_object_mut()) {
        for field in mlctl_spec::TrainingJobSpec::IDENTITY_EXCLUDES {
            s.remove(*field);
        }
    }
    let mut h = blake3::Hasher::new();
    let mut field = |name: &str, value: &str| {
        h.update(&(name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(&(value.len() as u64).to_le_bytes());
        h.update(value.as_bytes());
    };
    field("identity", "mlctl-model-identity-v1");
    field("id", &d.resource.id.to_string());
    field("spec", &serde_json::to_string(&spec).unwrap_or_default());
    for (k, v) in identity_inputs(d) {
        field(k, v);
    }
    h.finalize().to_hex().to_string()
}

fn identity_inputs(d: &DesiredResource) -> impl Iterator<Item = (&String, &String)> {
    d.inputs.iter().filter(|(k, _)| {
        !k.starts_with(crate::secrets::INPUT_PREFIX) && k.as_str() != crate::plan::RETRAIN_INPUT
    })
}

/// The Model `model` and the TrainingJob it registers, in `desired`.
fn model_and_job<'a>(
    desired: &'a Desired,
    model: &str,
    target: &str,
) -> Result<(&'a DesiredResource, &'a DesiredResource)> {
    let m = desired
        .get(&ResourceId::new(Kind::Model, model))
        .ok_or_else(|| {
            let names: Vec<&str> = desired
                .resources
                .iter()
                .filter(|r| r.resource.id.kind == Kind::Model)
                .map(|r| r.resource.id.name.as_str())
                .collect();
            refuse(
                ErrorKind::NotFound,
                format!(
                    "the spec has no Model `{model}` for target `{target}`; models: {}",
                    mlctl_spec::suggest::list(&names)
                ),
            )
        })?;
    let Some(from) = m.resource.as_model().and_then(|s| s.from.clone()) else {
        return Err(refuse(
            ErrorKind::Precondition,
            format!(
                "Model `{model}` is imported from MLflow (`mlflow:`), not trained: every target's apply imports the same files, so there is nothing to promote; apply the destination"
            ),
        ));
    };
    let job = desired
        .get(&ResourceId::new(Kind::TrainingJob, from.clone()))
        .ok_or_else(|| {
            refuse(
                ErrorKind::NotFound,
                format!("the spec has no TrainingJob `{from}` (Model `{model}` registers it)"),
            )
        })?;
    Ok((m, job))
}

/// Refuses a promotion whose version is not the model the destination's spec trains: the
/// version must come from the job the source's spec describes at this revision (by its
/// deterministic name, or the source's record of that job), and the two targets' jobs must
/// have the same [`model_identity`].
///
/// # Errors
/// `Precondition`, saying which revision trained the version or which inputs differ.
pub fn check_same_model(
    from: (&str, &Desired, &[ObservedResource]),
    to: (&str, &Desired),
    version: &ModelVersion,
) -> Result<()> {
    let (from_target, from_desired, from_observed) = from;
    let (to_target, to_desired) = to;
    let model = &version.model;
    let (_, a_job) = model_and_job(from_desired, model, from_target)?;
    let (_, b_job) = model_and_job(to_desired, model, to_target)?;
    let trained_by = version
        .lineage
        .get("trainingJob")
        .cloned()
        .unwrap_or_default();
    let expected = deterministic_name(
        &from_desired.project,
        &a_job.resource.id.name,
        &a_job.fingerprint,
        63,
    );
    let recorded = from_observed
        .iter()
        .find(|o| o.id == a_job.resource.id && o.fingerprint == a_job.fingerprint.0)
        .and_then(outputs::<TrainingResult>)
        .map(|t| t.job_name);
    if trained_by.is_empty() || (trained_by != expected && recorded.as_deref() != Some(&trained_by))
    {
        let commit = version
            .lineage
            .get("commit")
            .map(|c| c[..c.len().min(12)].to_string());
        let rev = commit
            .as_deref()
            .map(|c| format!(", or pass `--rev {c}` (the commit that trained it) to promote it with that spec"))
            .unwrap_or_default();
        return Err(refuse(
            ErrorKind::Precondition,
            format!(
                "{model} v{} on target `{from_target}` was not trained by the spec at commit {} ({} on `{from_target}` would be job {expected}, v{} came from {}); apply the spec to `{from_target}` and promote the version it registers{rev}",
                version.version,
                &from_desired.commit[..from_desired.commit.len().min(12)],
                a_job.resource.id,
                version.version,
                if trained_by.is_empty() {
                    "an unknown job".to_string()
                } else {
                    format!("job {trained_by}")
                },
            ),
        ));
    }
    if model_identity(a_job) != model_identity(b_job) {
        let a: BTreeMap<_, _> = identity_inputs(a_job).collect();
        let b: BTreeMap<_, _> = identity_inputs(b_job).collect();
        let mut differ: Vec<String> = a
            .keys()
            .chain(b.keys())
            .filter(|k| a.get(*k) != b.get(*k))
            .map(|k| k.to_string())
            .collect();
        differ.dedup();
        if differ.is_empty() {
            differ.push("its spec".into());
        }
        return Err(refuse(
            ErrorKind::Precondition,
            format!(
                "{} trains a different model on `{to_target}` than on `{from_target}` ({} differ); a promoted version must be what the destination's spec trains: make the two the same (only `compute` may differ per target)",
                b_job.resource.id,
                mlctl_spec::suggest::list(&differ)
            ),
        ));
    }
    Ok(())
}

/// What is promoted: the source's version, its files, and what the source recorded of the job
/// that trained it (hyperparameters, the rows it was scored on), when it has that record.
#[derive(Debug, Clone)]
pub struct Source {
    /// The source target's name.
    pub target: String,
    /// The version as the source's registry has it.
    pub version: ModelVersion,
    /// Its files.
    pub artifact: Artifact,
    /// The source's record of the training job, if it matches the version.
    pub training: Option<TrainingResult>,
}

/// The outcome of [`promote`].
#[derive(Debug, Clone)]
#[must_use]
pub struct Promoted {
    /// The version in the destination's registry.
    pub version: ModelVersion,
    /// The digest computed on both sides.
    pub digest: String,
    /// It had been promoted before: nothing was copied, registered or recorded.
    pub already: bool,
    /// The destination's Model requires manual approval and the version waits for it.
    pub pending: bool,
    /// What the destination's state store now records (the TrainingJob and the Model).
    pub recorded: Vec<ResourceId>,
}

/// Promotes `source` into the destination `stack` whose spec is `desired` and whose recorded
/// state is `observed`: stores the files, registers them under the destination's Model (its
/// gates, approval and stage), reads them back and compares digests, and records the Model
/// and its TrainingJob there with the destination's fingerprints. Call it holding the
/// destination's lock; [`check_same_model`] first.
///
/// # Guarantees
/// Idempotent: promoting the same version again registers nothing and returns it with
/// `already`. A version whose bytes read back differ is rejected in the destination's
/// registry, so it is never deployed.
///
/// # Errors
/// `Precondition` when the destination already records another version for this spec or its
/// gates refuse the version, `Failed` when the digests differ, and the components' errors.
pub async fn promote(
    stack: &Stack,
    ctx: &OpContext,
    desired: &Desired,
    observed: &[ObservedResource],
    source: &Source,
) -> Result<Promoted> {
    let v = &source.version;
    let model = v.model.clone();
    let to = &ctx.target;
    let (m, job) = model_and_job(desired, &model, to)?;
    let spec = m.resource.as_model().cloned().ok_or_else(|| {
        refuse(
            ErrorKind::Invalid,
            format!("{} is not a Model", m.resource.id),
        )
    })?;
    if !stack.registry.capabilities().artifacts {
        return Err(refuse(
            ErrorKind::NotSupported,
            format!(
                "the registry of target `{to}` ({}) cannot take artifacts from another target",
                stack.provider
            ),
        ));
    }
    let digest = source.artifact.digest();
    let record_of = |id: &ResourceId| observed.iter().find(|o| &o.id == id);
    // Already up to date here: by this promotion (idempotent), or by something else.
    if let (Some(mo), Some(jo)) = (record_of(&m.resource.id), record_of(&job.resource.id))
        && mo.fingerprint == m.fingerprint.0
        && jo.fingerprint == job.fingerprint.0
        && let Some(here) = outputs::<ModelVersion>(mo)
    {
        if here.lineage.get(lineage::DIGEST) == Some(&digest) {
            return Ok(Promoted {
                pending: here.approval == ApprovalStatus::PendingManualApproval,
                version: here,
                digest,
                already: true,
                recorded: Vec::new(),
            });
        }
        return Err(refuse(
            ErrorKind::Precondition,
            format!(
                "target `{to}` already has {} v{} for the spec at this commit ({}), and its artifact is not {} v{} on `{}`; nothing was promoted: `{to}` already has what this spec trains. Promote after a change to the spec (whose new version `{}` trains), or deploy what `{to}` has",
                m.resource.id,
                here.version,
                match (
                    here.lineage.get(lineage::FROM),
                    here.lineage.get(lineage::FROM_VERSION)
                ) {
                    (Some(t), Some(n)) => format!("promoted from `{t}` v{n}"),
                    _ => "trained there".to_string(),
                },
                model,
                v.version,
                source.target,
                source.target,
            ),
        ));
    }
    let versions = stack.registry.versions(ctx, &model).await?;
    let existing = versions
        .iter()
        .find(|x| x.fingerprint == m.fingerprint.0)
        .cloned();
    let uri = stack
        .registry
        .store_artifact(ctx, &model, &source.artifact)
        .await?;
    let training = TrainingResult {
        job_name: v.lineage.get("trainingJob").cloned().unwrap_or_default(),
        artifact_uri: uri,
        metrics: v.metrics.clone(),
        hyperparameters: source
            .training
            .as_ref()
            .map(|t| t.hyperparameters.clone())
            .unwrap_or_default(),
        trials: Vec::new(),
        run_id: v.lineage.get("run").cloned(),
        duration_secs: 0.0,
        evaluation: source.training.as_ref().and_then(|t| t.evaluation.clone()),
        metrics_origin: v.lineage.get(crate::METRICS_ORIGIN).cloned(),
    };
    let registered = match existing {
        Some(x) if x.lineage.get(lineage::DIGEST) == Some(&digest) => x,
        Some(x) => {
            return Err(refuse(
                ErrorKind::Precondition,
                format!(
                    "target `{to}` has registered {model} v{} for this spec already, with other bytes than {} v{} on `{}`; nothing was promoted",
                    x.version, model, v.version, source.target
                ),
            ));
        }
        None => {
            let direction = |metric: &str| match job.resource.as_training_job() {
                Some(j) => metrics::direction_in(j, metric),
                None => metrics::metric(metric).map(|m| m.direction),
            };
            let report = gates::evaluate(
                &spec.gates,
                &v.metrics,
                gates::Baseline::among(&versions),
                &direction,
            );
            if !report.passed() {
                return Err(refuse(
                    ErrorKind::Invalid,
                    format!(
                        "the gates of {} on target `{to}` refuse {model} v{} from `{}`: {report}; nothing was promoted",
                        m.resource.id, v.version, source.target
                    ),
                ));
            }
            let mut lin = v.lineage.clone();
            lin.insert(lineage::FROM.into(), source.target.clone());
            lin.insert(lineage::FROM_VERSION.into(), v.version.to_string());
            lin.insert(lineage::DIGEST.into(), digest.clone());
            lin.insert(lineage::AT.into(), now());
            if !spec.gates.is_empty() {
                lin.insert("gates".into(), report.to_string());
            } else {
                lin.remove("gates");
            }
            let mut labels = desired.labels.clone();
            labels.extend(m.resource.metadata.labels.clone());
            let req = RegisterRequest {
                model: model.clone(),
                training: training.clone(),
                stage: Stage::Staging,
                approval: spec.approval.unwrap_or(Approval::Auto),
                description: spec.description.clone(),
                fingerprint: m.fingerprint.0.clone(),
                lineage: lin,
                tags: Tags {
                    project: ctx.project.clone(),
                    resource: m.resource.id.to_string(),
                    fingerprint: m.fingerprint.0.clone(),
                    commit: ctx.commit.clone(),
                    labels,
                },
            };
            stack.registry.register(ctx, &req).await?
        }
    };
    // Verified on arrival: the files as the destination's registry serves them.
    let arrived = stack
        .registry
        .read_artifact(ctx, &registered)
        .await?
        .digest();
    if arrived != digest {
        let rejected = stack
            .registry
            .decide(ctx, &model, registered.version, Decision::Reject)
            .await
            .map(|_| "it was rejected there, so it is never deployed".to_string())
            .unwrap_or_else(|e| format!("rejecting it failed ({e}): reject it with `mlctl models reject {model} {} -t {to}`", registered.version));
        return Err(ProviderError::new(
            ErrorKind::Failed,
            "mlctl",
            "promote",
            format!(
                "{model} v{} on target `{to}` does not hold the bytes of v{} on `{}` (digest {arrived}, expected {digest}); {rejected}",
                registered.version, v.version, source.target
            ),
        ));
    }
    let want = spec.stage.unwrap_or(Stage::Staging);
    let pending = registered.approval == ApprovalStatus::PendingManualApproval;
    let registered = if want == Stage::Production
        && registered.approved()
        && registered.stage != Stage::Production
    {
        stack
            .registry
            .set_stage(ctx, &model, registered.version, Stage::Production)
            .await?
    } else {
        registered
    };
    // As an apply on this target would have recorded them, with this target's fingerprints.
    let detail = format!(
        "promoted from `{}` v{} ({digest})",
        source.target, v.version
    );
    let job_detail = format!("imported with {model} v{}: {detail}", registered.version);
    let model_detail = format!(
        "v{} in {}; {detail}{}",
        registered.version,
        registered.stage.as_str(),
        if pending {
            format!(
                "; waiting for approval: run `mlctl models approve {model} {} -t {to}`",
                registered.version
            )
        } else {
            String::new()
        }
    );
    let health = if pending && want == Stage::Production {
        Health::Progressing
    } else {
        Health::Healthy
    };
    let recorded = vec![job.resource.id.clone(), m.resource.id.clone()];
    for (d, outputs, health, detail) in [
        (
            job,
            serde_json::to_value(&training).unwrap_or_default(),
            Health::Healthy,
            job_detail,
        ),
        (
            m,
            serde_json::to_value(&registered).unwrap_or_default(),
            health,
            model_detail,
        ),
    ] {
        let rec = ObservedResource {
            format_version: Default::default(),
            id: d.resource.id.clone(),
            fingerprint: d.fingerprint.0.clone(),
            spec: d.canonical.clone(),
            commit: desired.commit.clone(),
            updated_at: now(),
            health,
            outputs,
            inputs: d.inputs.clone(),
            last_error: None,
            drift: Vec::new(),
        };
        let entry = HistoryEntry {
            format_version: Default::default(),
            id: d.resource.id.clone(),
            action: "promote".into(),
            fingerprint: d.fingerprint.0.clone(),
            commit: desired.commit.clone(),
            at: now(),
            detail,
        };
        stack.state.record(&ctx.project, &rec, &entry).await?;
    }
    Ok(Promoted {
        version: registered,
        digest,
        already: false,
        pending,
        recorded,
    })
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(n: u32, stage: Stage, approval: ApprovalStatus) -> ModelVersion {
        ModelVersion {
            model: "iris".into(),
            version: n,
            stage,
            approval,
            artifact_uri: String::new(),
            metrics: BTreeMap::new(),
            fingerprint: format!("fp{n}"),
            lineage: BTreeMap::new(),
            created_at: String::new(),
        }
    }

    #[test]
    fn the_default_version_is_production_else_the_newest_approved() {
        use ApprovalStatus::*;
        let vs = [
            version(1, Stage::Archived, Approved),
            version(2, Stage::Production, Approved),
            version(3, Stage::Staging, Approved),
            version(4, Stage::Staging, PendingManualApproval),
        ];
        assert_eq!(choose_version(&vs, None, "iris", "dev").unwrap().version, 2);
        assert_eq!(
            choose_version(&vs[2..], None, "iris", "dev")
                .unwrap()
                .version,
            3
        );
        assert_eq!(
            choose_version(&vs, Some(3), "iris", "dev").unwrap().version,
            3
        );
        let e = choose_version(&vs, Some(4), "iris", "dev").unwrap_err();
        assert!(
            e.message.contains("mlctl models approve iris 4 -t dev"),
            "{e}"
        );
        let e = choose_version(&vs, Some(9), "iris", "dev").unwrap_err();
        assert!(
            e.message.contains("v1, v2, v3 and v4") || e.message.contains("v1"),
            "{e}"
        );
        let rejected = [version(1, Stage::Staging, Rejected)];
        let e = choose_version(&rejected, Some(1), "iris", "dev").unwrap_err();
        assert!(e.message.contains("was rejected"), "{e}");
        assert!(choose_version(&rejected, None, "iris", "dev").is_err());
    }

    #[test]
    fn an_artifact_digest_names_paths_and_bytes() {
        let a = Artifact {
            files: BTreeMap::from([("model.json".to_string(), b"{}".to_vec())]),
        };
        let mut renamed = a.clone();
        renamed.files = BTreeMap::from([("model2.json".to_string(), b"{}".to_vec())]);
        let mut changed = a.clone();
        changed.files.insert("model.json".into(), b"{ }".to_vec());
        assert!(a.digest().starts_with("blake3:"));
        assert_eq!(a.digest(), a.clone().digest());
        assert_ne!(a.digest(), renamed.digest());
        assert_ne!(a.digest(), changed.digest());
    }
}
