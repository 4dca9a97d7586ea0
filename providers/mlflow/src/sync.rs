//! Keeping an MLflow tracking server up to date with a target: every run the target's
//! trainer tracked, and (with `registry: mirror`) every registered model version.
//!
//! The server is never the source of anything here, and every step is keyed so that doing it
//! again changes nothing:
//! - a run is found by its tag `mlctl.runId` (mlctl's run id) and created only when absent;
//!   its params, metrics and tags are logged with fixed timestamps (MLflow drops a metric
//!   logged twice with the same key, value, timestamp and step), its artifacts are put at
//!   fixed paths, and `mlctl.synced` is set last, so a run cut off half-way (the server went
//!   away) is completed by the next sync, never duplicated;
//! - a model version is found by its tag `mlctl.version`, created only when absent, and its
//!   stage and approval tags and the aliases `champion` (the production version) and
//!   `challenger` (the newest staging version after it) follow the registry.
//!
//! A failed call was already tried twice by the [`Client`]; the sync then stops and reports
//! a warning, and the next apply's sync picks up where this one stopped.

use crate::client::{CallError, Client, str_of, tags_of};
use crate::model_dir;
use mlctl_core::components::{Artifact, TrainingResult};
use mlctl_core::components::{ModelVersion, OpContext, RunRecord, Stack, outputs};
use mlctl_spec::{Kind, ResourceSpec, Spec, Stage, Tracking, TrackingRegistry};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

/// The tag that keys a run by mlctl's run id.
pub const RUN_ID_TAG: &str = "mlctl.runId";
/// The tag set once a run is completely logged.
pub const SYNCED_TAG: &str = "mlctl.synced";
/// The tag that keys a model version by mlctl's version number.
pub const VERSION_TAG: &str = "mlctl.version";
/// The alias of the version in production.
pub const CHAMPION: &str = "champion";
/// The alias of the newest staging version newer than production.
pub const CHALLENGER: &str = "challenger";

/// MLflow's limits on one `runs/log-batch` (params, metrics, tags) and on a param's value.
const MAX_PARAMS: usize = 100;
const MAX_METRICS: usize = 1000;
const MAX_TAGS: usize = 100;
const MAX_PARAM_VALUE: usize = 6000;
const MAX_TAG_VALUE: usize = 5000;

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// The server (for messages).
    pub server: String,
    /// The experiment's name.
    pub experiment: String,
    /// Runs created or completed on the server.
    pub runs_logged: usize,
    /// Runs found there complete already.
    pub runs_present: usize,
    /// Model versions created on the server.
    pub versions_registered: usize,
    /// Aliases set or removed.
    pub aliases_changed: usize,
    /// What could not be done (the apply does not fail for it; the next sync retries).
    pub warnings: Vec<String>,
}

impl Report {
    /// One line for the apply summary.
    pub fn summary(&self) -> String {
        format!(
            "MLflow ({}, experiment `{}`): {} run(s) logged, {} already there; {} model version(s) registered, {} alias change(s).",
            self.server,
            self.experiment,
            self.runs_logged,
            self.runs_present,
            self.versions_registered,
            self.aliases_changed
        )
    }
}

/// A run as found on the server.
#[derive(Debug, Clone)]
struct Remote {
    id: String,
    artifact_uri: String,
    synced: bool,
}

/// Mirrors the target's runs and models to the tracking server `t` (with its secrets
/// resolved). Never fails: what went wrong is in [`Report::warnings`].
pub async fn sync(t: &Tracking, stack: &Stack, ctx: &OpContext, spec: &Spec) -> Report {
    let experiment = t.experiment.clone().unwrap_or_else(|| ctx.project.clone());
    let mut report = Report {
        server: without_userinfo(&t.uri),
        experiment: experiment.clone(),
        ..Report::default()
    };
    let client = match Client::new(t) {
        Ok(c) => c,
        Err(e) => {
            report.warnings.push(e.message);
            return report;
        }
    };
    if let Err(e) = Syncer::new(&client, stack, ctx, spec, t, &experiment)
        .run(&mut report)
        .await
    {
        report.warnings.push(format!(
            "{e}; the next apply logs what is missing (nothing is logged twice)"
        ));
    }
    report
}

struct Syncer<'a> {
    client: &'a Client,
    stack: &'a Stack,
    ctx: &'a OpContext,
    spec: &'a Spec,
    tracking: &'a Tracking,
    experiment: &'a str,
}

/// A step that failed, with what it was doing.
struct StepError(String);

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn step(what: impl Fn() -> String) -> impl FnOnce(CallError) -> StepError {
    move |e| StepError(format!("MLflow: cannot {}: {e}", what()))
}

impl<'a> Syncer<'a> {
    fn new(
        client: &'a Client,
        stack: &'a Stack,
        ctx: &'a OpContext,
        spec: &'a Spec,
        tracking: &'a Tracking,
        experiment: &'a str,
    ) -> Self {
        Syncer {
            client,
            stack,
            ctx,
            spec,
            tracking,
            experiment,
        }
    }

    async fn run(&self, report: &mut Report) -> Result<(), StepError> {
        let experiment_id = self.experiment_id().await?;
        let mut remote = self.remote_runs(&experiment_id).await?;
        let runs = if self.stack.trainer.capabilities().runs {
            self.stack
                .trainer
                .runs(self.ctx, None)
                .await
                .map_err(|e| StepError(format!("cannot read the target's runs: {e}")))?
        } else {
            Vec::new()
        };
        let fingerprints = self.job_fingerprints().await;
        // Parents before their trials, so a trial can name its parent's MLflow run.
        let mut ordered: Vec<&RunRecord> = runs.iter().filter(|r| r.parent.is_none()).collect();
        ordered.extend(runs.iter().filter(|r| r.parent.is_some()));
        for run in ordered {
            // A run still going is logged once it has finished.
            if run.status == "running" {
                continue;
            }
            match remote.get(&run.id) {
                Some(r) if r.synced => report.runs_present += 1,
                found => {
                    let found = found.cloned();
                    let parent = run
                        .parent
                        .as_ref()
                        .and_then(|p| remote.get(p))
                        .map(|p| p.id.clone());
                    let logged = self
                        .log_run(
                            &experiment_id,
                            run,
                            found,
                            parent,
                            fingerprints.get(&run.id),
                        )
                        .await?;
                    remote.insert(run.id.clone(), logged);
                    report.runs_logged += 1;
                }
            }
        }
        // With `registry: source` the server is the registry itself: nothing to mirror.
        if self.tracking.registry_mode() == TrackingRegistry::Mirror {
            for r in &self.spec.resources {
                if let ResourceSpec::Model(m) = &r.spec {
                    self.mirror_model(
                        &experiment_id,
                        &r.id.name,
                        m.description.as_deref(),
                        &mut remote,
                        report,
                    )
                    .await?;
                }
            }
        }
        Ok(())
    }

    /// The experiment's id, made when it does not exist.
    async fn experiment_id(&self) -> Result<String, StepError> {
        let name = self.experiment;
        self.client
            .experiment_id(name, &self.ctx.project)
            .await
            .map_err(step(|| format!("read experiment `{name}`")))
    }

    /// The experiment's runs that mlctl logged, by mlctl's run id.
    async fn remote_runs(&self, experiment_id: &str) -> Result<HashMap<String, Remote>, StepError> {
        let mut out = HashMap::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({
                "experiment_ids": [experiment_id],
                "filter": format!("tags.`{RUN_ID_TAG}` != ''"),
                "max_results": 1000,
            });
            if let Some(t) = &token {
                body["page_token"] = json!(t);
            }
            let page = self
                .client
                .post("runs/search", &body)
                .await
                .map_err(step(|| "list the experiment's runs".to_string()))?;
            for run in page["runs"].as_array().into_iter().flatten() {
                let tags = tags_of(&run["data"]["tags"]);
                let Some(mlctl_id) = tags.get(RUN_ID_TAG) else {
                    continue;
                };
                out.insert(
                    mlctl_id.clone(),
                    Remote {
                        id: str_of(&run["info"]["run_id"]),
                        artifact_uri: str_of(&run["info"]["artifact_uri"]),
                        synced: tags.get(SYNCED_TAG).is_some_and(|v| v == "true"),
                    },
                );
            }
            match page["next_page_token"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    /// The fingerprint of the TrainingJob each run id was applied for, from the target's
    /// records (the current one of each job).
    async fn job_fingerprints(&self) -> HashMap<String, String> {
        let Ok(observed) = self.stack.state.observe(&self.ctx.project).await else {
            return HashMap::new();
        };
        observed
            .iter()
            .filter(|o| o.id.kind == Kind::TrainingJob)
            .filter_map(|o| {
                let result: TrainingResult = outputs(o)?;
                Some((result.run_id?, o.fingerprint.clone()))
            })
            .collect()
    }

    /// Creates (or completes) the MLflow run of `run`.
    async fn log_run(
        &self,
        experiment_id: &str,
        run: &RunRecord,
        found: Option<Remote>,
        parent: Option<String>,
        fingerprint: Option<&String>,
    ) -> Result<Remote, StepError> {
        let start = millis(&run.started_at);
        let end = start + (run.duration_secs.max(0.0) * 1000.0).round() as i64;
        let mut tags: Vec<(String, String)> = vec![
            (RUN_ID_TAG.into(), run.id.clone()),
            ("mlctl.project".into(), self.ctx.project.clone()),
            ("mlctl.target".into(), self.ctx.target.clone()),
            (
                "mlctl.resource".into(),
                format!("TrainingJob/{}", run.resource),
            ),
            ("mlctl.job".into(), run.job_name.clone()),
            ("mlctl.commit".into(), run.commit.clone()),
            ("mlctl.dataDigest".into(), run.data_digest.clone()),
            ("mlflow.source.git.commit".into(), run.commit.clone()),
            ("mlflow.source.type".into(), "JOB".into()),
            (
                "mlflow.source.name".into(),
                format!("mlctl TrainingJob/{}", run.resource),
            ),
        ];
        if let Some(f) = fingerprint {
            tags.push(("mlctl.fingerprint".into(), f.clone()));
        }
        if let Some(c) = &run.code_digest {
            tags.push(("mlctl.codeDigest".into(), c.clone()));
        }
        if let Some(p) = &parent {
            tags.push(("mlflow.parentRunId".into(), p.clone()));
        }
        if let Some(e) = &run.evaluation {
            tags.push(("mlctl.scoredOn".into(), e.scored_on.clone()));
        }
        let remote = match found {
            Some(r) => r,
            None => {
                let body = json!({
                    "experiment_id": experiment_id,
                    "run_name": run.job_name,
                    "start_time": start,
                    "tags": [{"key": RUN_ID_TAG, "value": run.id}],
                });
                let v = self
                    .client
                    .post("runs/create", &body)
                    .await
                    .map_err(step(|| format!("create the run of `{}`", run.id)))?;
                Remote {
                    id: str_of(&v["run"]["info"]["run_id"]),
                    artifact_uri: str_of(&v["run"]["info"]["artifact_uri"]),
                    synced: false,
                }
            }
        };
        let params: Vec<(String, String)> = run
            .params
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), truncate(&text, MAX_PARAM_VALUE))
            })
            .collect();
        let metrics: Vec<(&String, f64)> = run
            .metrics
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(k, v)| (k, *v))
            .collect();
        let tags: Vec<(String, String)> = tags
            .into_iter()
            .map(|(k, v)| (k, truncate(&v, MAX_TAG_VALUE)))
            .collect();
        let rounds = params
            .len()
            .div_ceil(MAX_PARAMS)
            .max(metrics.len().div_ceil(MAX_METRICS))
            .max(tags.len().div_ceil(MAX_TAGS))
            .max(1);
        for i in 0..rounds {
            let chunk = |n: usize| i * n..((i + 1) * n);
            let body = json!({
                "run_id": remote.id,
                "params": slice(&params, chunk(MAX_PARAMS)).iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
                "metrics": slice(&metrics, chunk(MAX_METRICS)).iter().map(|(k, v)| json!({"key": k, "value": v, "timestamp": end, "step": 0})).collect::<Vec<_>>(),
                "tags": slice(&tags, chunk(MAX_TAGS)).iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
            });
            self.client
                .post("runs/log-batch", &body)
                .await
                .map_err(step(|| {
                    format!("log the params and metrics of run `{}`", run.id)
                }))?;
        }
        let record = serde_json::to_vec_pretty(run).unwrap_or_default();
        self.client
            .put_artifact(&remote.artifact_uri, "mlctl/run.json", record)
            .await
            .map_err(step(|| format!("upload the artifacts of run `{}`", run.id)))?;
        let status = if run.status == "failed" {
            "FAILED"
        } else {
            "FINISHED"
        };
        self.client
            .post(
                "runs/update",
                &json!({"run_id": remote.id, "status": status, "end_time": end}),
            )
            .await
            .map_err(step(|| format!("finish run `{}`", run.id)))?;
        self.set_run_tag(&remote.id, SYNCED_TAG, "true").await?;
        Ok(Remote {
            synced: true,
            ..remote
        })
    }

    async fn set_run_tag(&self, run: &str, key: &str, value: &str) -> Result<(), StepError> {
        self.client
            .post(
                "runs/set-tag",
                &json!({"run_id": run, "key": key, "value": value}),
            )
            .await
            .map(|_| ())
            .map_err(step(|| format!("tag run `{run}`")))
    }

    /// Mirrors one Model's versions, their stage and approval, and the aliases.
    async fn mirror_model(
        &self,
        experiment_id: &str,
        name: &str,
        description: Option<&str>,
        remote_runs: &mut HashMap<String, Remote>,
        report: &mut Report,
    ) -> Result<(), StepError> {
        let versions = self
            .stack
            .registry
            .versions(self.ctx, name)
            .await
            .map_err(|e| StepError(format!("cannot read model `{name}` from the registry: {e}")))?;
        if versions.is_empty() {
            return Ok(());
        }
        let registered = match self
            .client
            .get("registered-models/get", &[("name", name)])
            .await
        {
            Ok(v) => v["registered_model"].clone(),
            Err(e) if e.not_found() => {
                let body = json!({
                    "name": name,
                    "description": description.unwrap_or_default(),
                    "tags": [
                        {"key": "mlctl.project", "value": self.ctx.project},
                        {"key": "mlctl.target", "value": self.ctx.target},
                    ],
                });
                match self.client.post("registered-models/create", &body).await {
                    Ok(v) => v["registered_model"].clone(),
                    Err(e) if e.already_exists() => json!({}),
                    Err(e) => return Err(step(|| format!("register model `{name}`"))(e)),
                }
            }
            Err(e) => return Err(step(|| format!("read registered model `{name}`"))(e)),
        };
        if registered.get("name").is_some() {
            let tags = tags_of(&registered["tags"]);
            let owner = (tags.get("mlctl.project"), tags.get("mlctl.target"));
            if owner != (Some(&self.ctx.project), Some(&self.ctx.target)) {
                let whose = match owner {
                    (Some(p), Some(t)) => format!("target `{t}` of project `{p}`"),
                    _ => "no mlctl target (it has no mlctl.project and mlctl.target tags)".into(),
                };
                report.warnings.push(format!(
                    "MLflow: registered model `{name}` on the server belongs to {whose}, so mlctl leaves it alone; give this target its own tracking server or experiment namespace, or delete or rename that model on the server"
                ));
                return Ok(());
            }
        }
        if let Some(d) = description
            && registered.get("description").and_then(Value::as_str) != Some(d)
            && registered.get("name").is_some()
        {
            self.client
                .patch(
                    "registered-models/update",
                    &json!({"name": name, "description": d}),
                )
                .await
                .map_err(step(|| format!("describe model `{name}`")))?;
        }
        let mut mirrored = self.remote_versions(name).await?;
        for v in &versions {
            let tags = version_tags(v);
            match mirrored.get(&v.version) {
                Some((_, remote_tags)) => {
                    for (k, value) in &tags {
                        if remote_tags.get(k) != Some(value) {
                            let body = json!({"name": name, "version": mirrored[&v.version].0, "key": k, "value": value});
                            self.client
                                .post("model-versions/set-tag", &body)
                                .await
                                .map_err(step(|| format!("tag model `{name}` v{}", v.version)))?;
                        }
                    }
                }
                None => {
                    let number = self
                        .register_version(experiment_id, v, description, &tags, remote_runs)
                        .await?;
                    mirrored.insert(v.version, (number, tags.into_iter().collect()));
                    report.versions_registered += 1;
                }
            }
        }
        // The aliases follow the registry's stages.
        let production = versions.iter().find(|v| v.stage == Stage::Production);
        let challenger = versions
            .iter()
            .filter(|v| {
                v.stage == Stage::Staging
                    && !matches!(v.approval, mlctl_core::components::ApprovalStatus::Rejected)
            })
            .filter(|v| production.is_none_or(|p| v.version > p.version))
            .max_by_key(|v| v.version);
        let current: BTreeMap<String, String> = registered["aliases"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| (str_of(&a["alias"]), str_of(&a["version"])))
            .collect();
        for (alias, wanted) in [(CHAMPION, production), (CHALLENGER, challenger)] {
            let wanted = wanted
                .and_then(|v| mirrored.get(&v.version))
                .map(|m| m.0.clone());
            if current.get(alias) == wanted.as_ref() {
                continue;
            }
            let result = match &wanted {
                Some(number) => {
                    self.client
                        .post(
                            "registered-models/alias",
                            &json!({"name": name, "alias": alias, "version": number}),
                        )
                        .await
                }
                None => {
                    self.client
                        .delete(
                            "registered-models/alias",
                            &json!({"name": name, "alias": alias}),
                        )
                        .await
                }
            };
            match result {
                Ok(_) => report.aliases_changed += 1,
                Err(e) if wanted.is_none() && e.not_found() => {}
                Err(e) => return Err(step(|| format!("set alias `{alias}` of model `{name}`"))(e)),
            }
        }
        Ok(())
    }

    /// The server's versions of `name` that mlctl registered: mlctl's number to MLflow's
    /// number and tags.
    async fn remote_versions(
        &self,
        name: &str,
    ) -> Result<BTreeMap<u32, (String, BTreeMap<String, String>)>, StepError> {
        let mut out = BTreeMap::new();
        let mut token: Option<String> = None;
        let filter = format!("name='{}'", name.replace('\'', "\\'"));
        loop {
            let mut query = vec![("filter", filter.as_str()), ("max_results", "200")];
            if let Some(t) = &token {
                query.push(("page_token", t.as_str()));
            }
            let page = self
                .client
                .get("model-versions/search", &query)
                .await
                .map_err(step(|| format!("list the versions of model `{name}`")))?;
            for mv in page["model_versions"].as_array().into_iter().flatten() {
                let tags = tags_of(&mv["tags"]);
                if let Some(n) = tags.get(VERSION_TAG).and_then(|n| n.parse::<u32>().ok()) {
                    out.insert(n, (str_of(&mv["version"]), tags));
                }
            }
            match page["next_page_token"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    /// Creates the MLflow version of `v`, its files uploaded to the run that trained it (or,
    /// for a version without one on the server, a run of its own), and returns its number.
    async fn register_version(
        &self,
        experiment_id: &str,
        v: &ModelVersion,
        description: Option<&str>,
        tags: &[(String, String)],
        remote_runs: &mut HashMap<String, Remote>,
    ) -> Result<String, StepError> {
        let name = &v.model;
        let run_key = v
            .lineage
            .get("run")
            .filter(|r| remote_runs.contains_key(*r))
            .cloned()
            .unwrap_or_else(|| format!("registration:{name}:v{}", v.version));
        let run = match remote_runs.get(&run_key) {
            Some(r) => r.clone(),
            None => {
                let body = json!({
                    "experiment_id": experiment_id,
                    "run_name": format!("{name}-v{}", v.version),
                    "start_time": millis(&v.created_at),
                    "tags": [
                        {"key": RUN_ID_TAG, "value": run_key},
                        {"key": "mlctl.project", "value": self.ctx.project},
                        {"key": "mlctl.resource", "value": format!("Model/{name}")},
                    ],
                });
                let created = self
                    .client
                    .post("runs/create", &body)
                    .await
                    .map_err(step(|| {
                        format!("create the run of model `{name}` v{}", v.version)
                    }))?;
                let r = Remote {
                    id: str_of(&created["run"]["info"]["run_id"]),
                    artifact_uri: str_of(&created["run"]["info"]["artifact_uri"]),
                    synced: false,
                };
                self.client
                    .post(
                        "runs/update",
                        &json!({"run_id": r.id, "status": "FINISHED", "end_time": millis(&v.created_at)}),
                    )
                    .await
                    .map_err(step(|| format!("finish the run of model `{name}` v{}", v.version)))?;
                self.set_run_tag(&r.id, SYNCED_TAG, "true").await?;
                remote_runs.insert(
                    run_key.clone(),
                    Remote {
                        synced: true,
                        ..r.clone()
                    },
                );
                r
            }
        };
        let dir = format!("registry/{name}/v{}", v.version);
        let source = if self.stack.registry.capabilities().artifacts {
            let files = self
                .stack
                .registry
                .read_artifact(self.ctx, v)
                .await
                .map_err(|e| {
                    StepError(format!(
                        "cannot read model `{name}` v{} from the registry: {e}",
                        v.version
                    ))
                })?;
            self.upload_model(&run.artifact_uri, &dir, &files, v)
                .await?;
            format!("{}/{dir}", run.artifact_uri.trim_end_matches('/'))
        } else {
            // A registry that cannot hand out its files: the version points at the run, and
            // mlctl's own URI is in its tags.
            run.artifact_uri.clone()
        };
        let body = json!({
            "name": name,
            "source": source,
            "run_id": run.id,
            "description": description.unwrap_or_default(),
            "tags": tags.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
        });
        let created = self
            .client
            .post("model-versions/create", &body)
            .await
            .map_err(step(|| format!("register model `{name}` v{}", v.version)))?;
        Ok(str_of(&created["model_version"]["version"]))
    }

    /// Uploads a version's files, as an MLflow model directory when it is an mlctl model
    /// (else as they are), under `dir` of the run's artifacts.
    async fn upload_model(
        &self,
        artifact_uri: &str,
        dir: &str,
        files: &Artifact,
        v: &ModelVersion,
    ) -> Result<(), StepError> {
        // A version that is not an mlctl model (an import) goes up as it is.
        let tree = model_dir::of_version(files, v).unwrap_or_else(|_| files.clone());
        for (path, bytes) in tree.files {
            self.client
                .put_artifact(artifact_uri, &format!("{dir}/{path}"), bytes)
                .await
                .map_err(step(|| {
                    format!("upload model `{}` v{}", v.model, v.version)
                }))?;
        }
        Ok(())
    }
}

/// The tags a mirrored version carries: mlctl's number, stage, approval, fingerprint, and
/// its lineage as `mlctl.lineage.<key>`.
fn version_tags(v: &ModelVersion) -> Vec<(String, String)> {
    let mut tags = vec![
        (VERSION_TAG.to_string(), v.version.to_string()),
        ("mlctl.stage".into(), v.stage.as_str().to_string()),
        ("mlctl.approval".into(), v.approval.as_str().to_string()),
        ("mlctl.fingerprint".into(), v.fingerprint.clone()),
        ("mlctl.artifactUri".into(), v.artifact_uri.clone()),
    ];
    for (k, value) in &v.lineage {
        tags.push((format!("mlctl.lineage.{k}"), truncate(value, MAX_TAG_VALUE)));
    }
    tags
}

/// A URL without `user:password@`, for messages.
fn without_userinfo(uri: &str) -> String {
    match uri.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => uri.to_string(),
            }
        }
        None => uri.to_string(),
    }
}

fn slice<T>(items: &[T], range: std::ops::Range<usize>) -> &[T] {
    let end = range.end.min(items.len());
    let start = range.start.min(end);
    &items[start..end]
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s[..cut].to_string()
}

/// An RFC 3339 time as milliseconds since the epoch (0 when it does not parse).
fn millis(rfc3339: &str) -> i64 {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_is_named_without_its_credentials() {
        assert_eq!(
            without_userinfo("https://bob:s3cret@mlflow.example/x@y"),
            "https://mlflow.example/x@y"
        );
        assert_eq!(
            without_userinfo("http://127.0.0.1:5000"),
            "http://127.0.0.1:5000"
        );
    }

    #[test]
    fn batches_never_exceed_mlflows_limits() {
        let items: Vec<u32> = (0..250).collect();
        assert_eq!(slice(&items, 0..100).len(), 100);
        assert_eq!(slice(&items, 200..300), &items[200..]);
        assert!(slice(&items, 300..400).is_empty());
    }

    #[test]
    fn times_are_milliseconds_and_long_values_are_cut_at_a_character() {
        assert_eq!(millis("1970-01-01T00:00:01.5Z"), 1500);
        assert_eq!(millis("not a time"), 0);
        assert_eq!(truncate("ééé", 3), "é");
    }
}
