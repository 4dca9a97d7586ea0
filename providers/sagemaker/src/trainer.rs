//! Training on SageMaker: script mode in a framework container, mlctl's built-ins mapped to
//! SageMaker's built-in algorithms, and hyperparameter tuning jobs.
//!
//! # Guarantees
//! - Job names are the engine's deterministic names (project, resource, fingerprint), cut to
//!   SageMaker's limits; `submit` looks the name up first, so a re-run finds the job already
//!   running (or finished) instead of starting a second one.
//! - Everything the job reads is content-addressed in the target's bucket: the packed code
//!   (`objects/<blake3>`), the dataset, and the CSV channels built for built-in algorithms.
//!
//! # Caveats
//! Built-in algorithms read CSV with the label first and no header: the dataset is
//! downloaded once, converted (categorical labels become class indices, sorted by name; the
//! features encoded by mlctl's preprocessing, fitted on the training part: see
//! `preprocessing`) and split 80/20 into `train` and `validation` channels (or the dataset's
//! own parts), so SageMaker reports held-out metrics.

use crate::aws::{Aws, parse_s3_uri, sm_tags};
use crate::builtins::{DataFacts, Shape, Translate};
use crate::data::put_blob;
use crate::error::{aws_err, is_not_found, provider_err};
use crate::images::{algorithm_image, default_framework_image, supported_algorithms};
use crate::names;
use crate::tuning::{Range, num, param_range};
use async_trait::async_trait;
use aws_sdk_sagemaker::operation::describe_hyper_parameter_tuning_job::DescribeHyperParameterTuningJobOutput;
use aws_sdk_sagemaker::operation::describe_training_job::DescribeTrainingJobOutput;
use aws_sdk_sagemaker::types::{
    AlgorithmSpecification, Channel, DataSource, HyperParameterAlgorithmSpecification,
    HyperParameterTrainingJobDefinition, HyperParameterTuningJobConfig,
    HyperParameterTuningJobObjective, HyperParameterTuningJobObjectiveType,
    HyperParameterTuningJobStatus, HyperParameterTuningJobStrategyType, MetricDefinition,
    OutputDataConfig, ParameterRanges, ResourceConfig, ResourceLimits, S3DataDistribution,
    S3DataSource, S3DataType, SecondaryStatus, StoppingCondition, TrainingInputMode,
    TrainingInstanceType, TrainingJobStatus,
};
use mlctl_core::error::Result;
use mlctl_core::{
    Capabilities, ErrorKind, JobHandle, JobState, OpContext, ProviderError, Trainer,
    TrainingRequest, TrainingResult, Trial, components::InPlaceRequest,
};
use mlctl_spec::{Algorithm, Goal, TrainingJobSpec, TuningStrategy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The entry script put into the packed code: SageMaker's script mode runs it.
pub(crate) const ENTRY: &str = "mlctl_entry.sh";
/// SageMaker's longest training run: 28 days.
const MAX_RUNTIME: u64 = 28 * 24 * 3600;

/// The [`Trainer`] of a SageMaker target.
pub struct SageMakerTrainer {
    aws: Arc<Aws>,
}

/// What a SageMaker job is asked to do: the parts shared by a training job and a tuning job's
/// training definition.
struct JobDefinition {
    image: String,
    hyperparameters: BTreeMap<String, String>,
    metric_definitions: Vec<MetricDefinition>,
    channels: Vec<Channel>,
    output: OutputDataConfig,
    resources: ResourceConfig,
    stopping: StoppingCondition,
    spot: bool,
    /// For built-ins: how mlctl hyperparameter names translate (tuning ranges use it).
    builtin: Option<Builtin>,
    /// A tuned script's final job: trials get `channels`, the chosen candidate this plan.
    refit: Option<crate::refit::RefitPlan>,
}

/// A built-in algorithm with the facts of its converted data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Prepared {
    train_uri: String,
    validation_uri: String,
    /// Class names by index (empty for regression and clustering).
    classes: Vec<String>,
    feature_dim: usize,
    train_rows: usize,
    /// Whether the label is a class (classification) rather than a number.
    classification: bool,
    /// `s3://` URI of the fitted preprocessor the channels are encoded with
    /// (`preprocessing::StoredPreprocessor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    preprocessor: Option<String>,
}

#[derive(Debug, Clone)]
struct Builtin {
    algorithm: Algorithm,
    data: Prepared,
}

impl SageMakerTrainer {
    pub(crate) fn new(aws: Arc<Aws>) -> Self {
        SageMakerTrainer { aws }
    }

    /// Finds a training job by name (`None` when SageMaker does not know it).
    async fn find_training(&self, name: &str) -> Result<Option<DescribeTrainingJobOutput>> {
        match self
            .aws
            .sm
            .describe_training_job()
            .training_job_name(name)
            .send()
            .await
        {
            Ok(d) => Ok(Some(d)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(aws_err("DescribeTrainingJob", e)),
        }
    }

    /// Finds a tuning job by name: its ARN and whether it failed or was stopped.
    async fn find_tuning(&self, name: &str) -> Result<Option<(String, bool)>> {
        match self
            .aws
            .sm
            .describe_hyper_parameter_tuning_job()
            .hyper_parameter_tuning_job_name(name)
            .send()
            .await
        {
            Ok(d) => Ok(Some((
                d.hyper_parameter_tuning_job_arn()
                    .unwrap_or_default()
                    .to_string(),
                matches!(
                    d.hyper_parameter_tuning_job_status(),
                    Some(
                        HyperParameterTuningJobStatus::Failed
                            | HyperParameterTuningJobStatus::Stopped
                    )
                ),
            ))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(aws_err("DescribeHyperParameterTuningJob", e)),
        }
    }

    async fn definition(&self, ctx: &OpContext, req: &TrainingRequest) -> Result<JobDefinition> {
        let spec = &req.spec;
        let sm = spec
            .compute
            .as_ref()
            .and_then(|c| c.overrides.as_ref())
            .and_then(|o| o.sagemaker.clone())
            .unwrap_or_default();
        let max_runtime = spec
            .compute
            .as_ref()
            .and_then(|c| c.timeout.as_deref())
            .map(|t| {
                mlctl_spec::units::parse_duration(t)
                    .map_err(|e| provider_err(ErrorKind::Invalid, "CreateTrainingJob", e))
            })
            .transpose()?
            .map(|d| d.as_secs().clamp(1, MAX_RUNTIME))
            .unwrap_or(24 * 3600);
        let spot = sm.spot.unwrap_or(false);
        let mut stopping = StoppingCondition::builder().max_runtime_in_seconds(max_runtime as i32);
        if spot {
            stopping = stopping.max_wait_time_in_seconds(
                (max_runtime * 2).min(MAX_RUNTIME).max(max_runtime) as i32,
            );
        }
        let instance = crate::instances::training_instance(spec.compute.as_ref()).map_err(|m| {
            provider_err(
                ErrorKind::Invalid,
                "CreateTrainingJob",
                format!("training job `{}`: {m}", req.resource),
            )
        })?;
        let resources = ResourceConfig::builder()
            .instance_type(TrainingInstanceType::from(instance.as_str()))
            .instance_count(sm.instance_count.unwrap_or(1).max(1) as i32)
            .volume_size_in_gb(sm.volume_size_gb.unwrap_or(30).max(1) as i32)
            .build();
        let output = OutputDataConfig::builder()
            .s3_output_path(
                self.aws
                    .uri(&self.aws.key(&format!("artifacts/{}", req.resource))),
            )
            .build();

        match (&spec.algorithm, &spec.command) {
            (Some(algorithm), _) => {
                let image = algorithm_image(*algorithm, &self.aws.region)
                    .map_err(|m| provider_err(ErrorKind::NotSupported, "CreateTrainingJob", m))?
                    .ok_or_else(|| {
                        provider_err(
                            ErrorKind::NotSupported,
                            "CreateTrainingJob",
                            format!(
                                "no SageMaker `{}` image is known for region {}",
                                algorithm.as_str(),
                                self.aws.region
                            ),
                        )
                    })?;
                // Tuned, the trials' channels are train and validation, and the chosen
                // candidate's final job gets train and the test rows (crate::refit).
                let (data, refit) = if spec.tuning.is_some() {
                    let (data, plan) = self.prepare_tuned_builtin(req, *algorithm).await?;
                    (data, Some(plan))
                } else {
                    (self.prepare_builtin(ctx, req, *algorithm).await?, None)
                };
                let hyperparameters =
                    builtin_hyperparameters(*algorithm, &spec.hyperparameters, &data).map_err(
                        |m| {
                            provider_err(
                                ErrorKind::Invalid,
                                "CreateTrainingJob",
                                format!("training job `{}`: hyperparameters: {m}", req.resource),
                            )
                        },
                    )?;
                let validation_channel = if *algorithm == Algorithm::Kmeans {
                    "test"
                } else {
                    "validation"
                };
                let channels = vec![
                    csv_channel("train", &data.train_uri),
                    csv_channel(validation_channel, &data.validation_uri),
                ];
                Ok(JobDefinition {
                    image,
                    hyperparameters,
                    metric_definitions: Vec::new(),
                    channels,
                    output,
                    resources,
                    stopping: stopping.build(),
                    spot,
                    builtin: Some(Builtin {
                        algorithm: *algorithm,
                        data,
                    }),
                    refit,
                })
            }
            (None, Some(command)) => {
                let image = match &spec.image {
                    Some(i) => i.clone(),
                    None => default_framework_image(&self.aws.region).ok_or_else(|| {
                        provider_err(ErrorKind::Invalid, "CreateTrainingJob", format!("no default training image is known for region {}: set `image:` on the TrainingJob", self.aws.region))
                    })?,
                };
                let code_dir = spec.code.as_ref().map(|c| ctx.project_dir.join(c));
                let cmd = command.clone();
                let packed =
                    tokio::task::spawn_blocking(move || pack_code(code_dir.as_deref(), &cmd))
                        .await
                        .map_err(|e| {
                            provider_err(ErrorKind::Other, "pack code", e.to_string())
                        })??;
                let digest = put_blob(&self.aws, packed, "application/gzip").await?;
                let code_uri = self.aws.uri(&crate::data::blob_key(&self.aws, &digest));
                let mut hyperparameters: BTreeMap<String, String> = spec
                    .hyperparameters
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_string()))
                    .collect();
                // The framework containers read these JSON-encoded, as the SageMaker Python SDK writes them.
                hyperparameters.insert("sagemaker_program".into(), json_str(ENTRY));
                hyperparameters.insert("sagemaker_submit_directory".into(), json_str(&code_uri));
                hyperparameters.insert("sagemaker_region".into(), json_str(&self.aws.region));
                hyperparameters.insert("sagemaker_container_log_level".into(), "20".into());
                // As on the local target: tuned, trials see `train` and `validation` and the
                // chosen candidate is trained again with `train` and `test` (crate::refit);
                // untuned, a split dataset gives one channel per part (the script never sees
                // the test rows in `train`), else the whole table is `train`.
                let mut channels = Vec::new();
                let mut refit = None;
                if spec.tuning.is_some() {
                    let (trials, plan) = self.tuned_channels(req).await?;
                    for (part, uri) in &trials {
                        channels.push(plain_channel(part, uri));
                    }
                    refit = Some(plan);
                } else if req.dataset.splits.is_empty() {
                    let file = format!("{}.csv", names::sanitize(&req.dataset.name));
                    let uri = self
                        .named_copy(
                            &req.dataset.uri,
                            &req.dataset.name,
                            &req.dataset.digest,
                            &file,
                        )
                        .await?;
                    channels.push(plain_channel("train", &uri));
                } else {
                    for (part, uri) in &req.dataset.splits {
                        let digest = uri.rsplit('/').next().unwrap_or_default();
                        let uri = self
                            .named_copy(uri, &req.dataset.name, digest, &format!("{part}.csv"))
                            .await?;
                        channels.push(plain_channel(part, &uri));
                    }
                }
                let metric_definitions = spec
                    .metrics
                    .iter()
                    .map(|m| {
                        MetricDefinition::builder()
                            .name(&m.name)
                            .regex(&m.regex)
                            .build()
                    })
                    .collect();
                Ok(JobDefinition {
                    image,
                    hyperparameters,
                    metric_definitions,
                    channels,
                    output,
                    resources,
                    stopping: stopping.build(),
                    spot,
                    builtin: None,
                    refit,
                })
            }
            (None, None) => Err(provider_err(
                ErrorKind::Invalid,
                "CreateTrainingJob",
                format!(
                    "training job `{}` sets neither `algorithm` nor `command`",
                    req.resource
                ),
            )),
        }
    }

    /// Gives a content-addressed table a readable file name (`file`) with a server-side copy
    /// under `datasets/<name>/<digest>/`, so scripts see `/opt/ml/input/data/<channel>/<file>`;
    /// returns that prefix (one object under it: the channel).
    async fn named_copy(&self, uri: &str, name: &str, digest: &str, file: &str) -> Result<String> {
        let Some((bucket, key)) = parse_s3_uri(uri) else {
            return Err(provider_err(
                ErrorKind::Invalid,
                "CreateTrainingJob",
                format!("dataset `{name}` is at `{uri}`; SageMaker reads s3:// only"),
            ));
        };
        if bucket != self.aws.bucket || !key.contains("/objects/") && !key.starts_with("objects/") {
            // Data outside mlctl's store is read where it is.
            return Ok(uri.to_string());
        }
        let dest = self.aws.key(&format!("datasets/{name}/{digest}/{file}"));
        if !self.aws.exists(&dest).await? {
            self.aws
                .s3
                .copy_object()
                .bucket(&self.aws.bucket)
                .key(&dest)
                .copy_source(format!("{bucket}/{key}"))
                .send()
                .await
                .map_err(|e| aws_err("CopyObject", e))?;
        }
        Ok(self
            .aws
            .uri(&self.aws.key(&format!("datasets/{name}/{digest}/"))))
    }

    /// Converts the dataset for a built-in algorithm (once per dataset, algorithm and label).
    async fn prepare_builtin(
        &self,
        ctx: &OpContext,
        req: &TrainingRequest,
        algorithm: Algorithm,
    ) -> Result<Prepared> {
        let supervised = algorithm != Algorithm::Kmeans;
        let label = if supervised {
            Some(req.target_column.clone().ok_or_else(|| {
                provider_err(
                    ErrorKind::Invalid,
                    "CreateTrainingJob",
                    format!(
                        "`{}` needs a label: set `target` on dataset `{}`",
                        algorithm.as_str(),
                        req.dataset.name
                    ),
                )
            })?)
        } else {
            None
        };
        let kind = if supervised {
            "supervised"
        } else {
            "unsupervised"
        };
        // The dataset's own train/held-out split when it has one, else the whole table.
        let splits = &req.dataset.splits;
        let sources: Vec<String> = match (
            splits.get("train"),
            splits.get("validation").or_else(|| splits.get("test")),
        ) {
            (Some(train), Some(held_out)) => vec![train.clone(), held_out.clone()],
            _ => vec![req.dataset.uri.clone()],
        };
        // The encoding depends on the schema (roles, categories, types): it is part of the id.
        // `features:v2`: channels encoded by mlctl's preprocessing (records made before it
        // held raw numeric columns and are not reused).
        let schema_key = format!(
            "features:v2:{}",
            req.schema
                .as_ref()
                .map(|s| serde_json::to_string(s).unwrap_or_default())
                .unwrap_or_default()
        );
        let mut id_parts: Vec<&str> = vec![kind, label.as_deref().unwrap_or("")];
        id_parts.extend(sources.iter().map(String::as_str));
        id_parts.push(&schema_key);
        let id = names::hash(&id_parts, 32);
        let record = self
            .aws
            .key(&format!(".mlctl/training-data/{}/{id}.json", ctx.project));
        if let Some(p) = self.aws.get_json::<Prepared>(&record).await? {
            return Ok(p);
        }
        let mut parts = Vec::new();
        for uri in &sources {
            let (bucket, key) = parse_s3_uri(uri).ok_or_else(|| {
                provider_err(
                    ErrorKind::Invalid,
                    "CreateTrainingJob",
                    format!("dataset `{}` is at `{uri}`, not on S3", req.dataset.name),
                )
            })?;
            let bytes = self.aws.get_from(&bucket, &key).await?.ok_or_else(|| {
                provider_err(
                    ErrorKind::NotFound,
                    "CreateTrainingJob",
                    format!("dataset `{}`: {uri} does not exist", req.dataset.name),
                )
            })?;
            parts.push(bytes);
        }
        let seed = req.dataset.digest.clone();
        let schema = req.schema.clone();
        let converted = tokio::task::spawn_blocking(move || {
            convert_for_builtin(&parts, label.as_deref(), schema.as_ref(), &seed)
        })
        .await
        .map_err(|e| provider_err(ErrorKind::Other, "convert dataset", e.to_string()))?
        .map_err(|m| {
            provider_err(
                ErrorKind::Invalid,
                "CreateTrainingJob",
                format!(
                    "dataset `{}` for `{}`: {m}",
                    req.dataset.name,
                    algorithm.as_str()
                ),
            )
        })?;
        let train = put_blob(&self.aws, converted.train, "text/csv").await?;
        let validation = put_blob(&self.aws, converted.validation, "text/csv").await?;
        let stored = crate::preprocessing::StoredPreprocessor::of(&converted.preprocessor);
        let preprocessor = put_blob(&self.aws, stored.to_json(), "application/json").await?;
        let prepared = Prepared {
            preprocessor: Some(
                self.aws
                    .uri(&crate::data::blob_key(&self.aws, &preprocessor)),
            ),
            train_uri: self.aws.uri(&crate::data::blob_key(&self.aws, &train)),
            validation_uri: self.aws.uri(&crate::data::blob_key(&self.aws, &validation)),
            classes: converted.classes,
            feature_dim: converted.feature_dim,
            train_rows: converted.train_rows,
            classification: converted.classification,
        };
        self.aws.put_json(&record, &prepared).await?;
        Ok(prepared)
    }

    /// The rows of a tuned job (`mlctl_core::evaluation`, as on the local target): what
    /// trials train on and are compared on, and the test rows only the chosen one meets.
    async fn held_out_rows(&self, req: &TrainingRequest) -> Result<mlctl_core::evaluation::Rows> {
        let fetch = |uri: String| async move {
            let (bucket, key) = parse_s3_uri(&uri).ok_or_else(|| {
                provider_err(
                    ErrorKind::Invalid,
                    "CreateHyperParameterTuningJob",
                    format!("dataset `{}` is at `{uri}`, not on S3", req.dataset.name),
                )
            })?;
            self.aws.get_from(&bucket, &key).await?.ok_or_else(|| {
                provider_err(
                    ErrorKind::NotFound,
                    "CreateHyperParameterTuningJob",
                    format!("dataset `{}`: {uri} does not exist", req.dataset.name),
                )
            })
        };
        let stored = mlctl_core::evaluation::StoredParts::fetch(&req.dataset, fetch).await?;
        let (split, digest) = (req.split.clone(), req.dataset.digest.clone());
        tokio::task::spawn_blocking(move || {
            let parts = stored.read()?;
            mlctl_core::evaluation::rows(parts, split.as_ref(), &digest, true)
        })
        .await
        .map_err(|e| provider_err(ErrorKind::Other, "split dataset", e.to_string()))?
        .map_err(|m| bad_tuning_data(req, m))
    }

    /// A tuned built-in's channels, encoded as [`prepare_builtin`](Self::prepare_builtin)
    /// does with one preprocessor fitted on the train rows: the trials' `train` and
    /// `validation`, and for the chosen candidate's final job `train` and the test rows
    /// under the channel the algorithm scores (`validation`; k-means: `test`).
    async fn prepare_tuned_builtin(
        &self,
        req: &TrainingRequest,
        algorithm: Algorithm,
    ) -> Result<(Prepared, crate::refit::RefitPlan)> {
        let label = if algorithm == Algorithm::Kmeans {
            None
        } else {
            Some(req.target_column.clone().ok_or_else(|| {
                provider_err(
                    ErrorKind::Invalid,
                    "CreateHyperParameterTuningJob",
                    format!(
                        "`{}` needs a label: set `target` on dataset `{}`",
                        algorithm.as_str(),
                        req.dataset.name
                    ),
                )
            })?)
        };
        let rows = self.held_out_rows(req).await?;
        let (seed, schema) = (req.dataset.digest.clone(), req.schema.clone());
        let (trials, last, evaluation) = tokio::task::spawn_blocking(move || {
            let validation = rows
                .validation
                .clone()
                .ok_or_else(|| "a tuned job needs validation rows".to_string())?;
            let trials = convert_tables(
                &[rows.train.clone(), validation],
                label.as_deref(),
                schema.as_ref(),
                &seed,
            )?;
            let last = convert_tables(
                &[rows.train.clone(), rows.test.clone()],
                label.as_deref(),
                schema.as_ref(),
                &seed,
            )?;
            if last.classes != trials.classes {
                let only: Vec<&String> = last
                    .classes
                    .iter()
                    .filter(|c| !trials.classes.contains(c))
                    .collect();
                return Err(format!(
                    "the test rows hold classes the train and validation rows do not ({}); stratify the split by the label (`split.stratify`) or give more rows",
                    only.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
                ));
            }
            Ok((trials, last, rows.record))
        })
        .await
        .map_err(|e| provider_err(ErrorKind::Other, "convert dataset", e.to_string()))?
        .map_err(|m| {
            provider_err(
                ErrorKind::Invalid,
                "CreateHyperParameterTuningJob",
                format!("dataset `{}` for `{}`: {m}", req.dataset.name, algorithm.as_str()),
            )
        })?;
        let blob = |d: &str| self.aws.uri(&crate::data::blob_key(&self.aws, d));
        let train = put_blob(&self.aws, trials.train, "text/csv").await?;
        let validation = put_blob(&self.aws, trials.validation, "text/csv").await?;
        let test = put_blob(&self.aws, last.validation, "text/csv").await?;
        let stored = crate::preprocessing::StoredPreprocessor::of(&trials.preprocessor);
        let preprocessor = put_blob(&self.aws, stored.to_json(), "application/json").await?;
        let prepared = Prepared {
            preprocessor: Some(blob(&preprocessor)),
            train_uri: blob(&train),
            validation_uri: blob(&validation),
            classes: trials.classes,
            feature_dim: trials.feature_dim,
            train_rows: trials.train_rows,
            classification: trials.classification,
        };
        let scored = if algorithm == Algorithm::Kmeans {
            "test"
        } else {
            "validation"
        };
        let plan = crate::refit::RefitPlan {
            channels: BTreeMap::from([
                ("train".to_string(), blob(&train)),
                (scored.to_string(), blob(&test)),
            ]),
            content_type: Some("text/csv".into()),
            evaluation,
            tags: Vec::new(),
        };
        Ok((prepared, plan))
    }

    /// A tuned script's channels: the trials' (`train`, `validation`) and the final job's
    /// plan (`train`, `test`), each a CSV under `datasets/<name>/<digest>/` so a script sees
    /// `/opt/ml/input/data/<channel>/<channel>.csv`, as on the local target.
    async fn tuned_channels(
        &self,
        req: &TrainingRequest,
    ) -> Result<(Vec<(String, String)>, crate::refit::RefitPlan)> {
        let rows = self.held_out_rows(req).await?;
        let parts = tokio::task::spawn_blocking(move || {
            let csv = |part: &str, t: &mlctl_ml::Table| csv_bytes(t).map(|b| (part.to_string(), b));
            let mut out = vec![csv("train", &rows.train)?, csv("test", &rows.test)?];
            if let Some(v) = &rows.validation {
                out.push(csv("validation", v)?);
            }
            Ok::<_, String>((out, rows.record))
        })
        .await
        .map_err(|e| provider_err(ErrorKind::Other, "split dataset", e.to_string()))?
        .map_err(|m| bad_tuning_data(req, m))?;
        let (files, evaluation) = parts;
        let mut uris = BTreeMap::new();
        for (part, bytes) in files {
            let digest = put_blob(&self.aws, bytes, "text/csv").await?;
            let blob = self.aws.uri(&crate::data::blob_key(&self.aws, &digest));
            let uri = self
                .named_copy(&blob, &req.dataset.name, &digest, &format!("{part}.csv"))
                .await?;
            uris.insert(part, uri);
        }
        let channel = |part: &str| uris.get(part).map(|u| (part.to_string(), u.clone()));
        let trials = [channel("train"), channel("validation")]
            .into_iter()
            .flatten()
            .collect();
        let plan = crate::refit::RefitPlan {
            channels: [channel("train"), channel("test")]
                .into_iter()
                .flatten()
                .collect(),
            content_type: None,
            evaluation,
            tags: Vec::new(),
        };
        Ok((trials, plan))
    }

    /// Records the preprocessor a built-in job's channels were encoded with under the job's
    /// name, where the registry looks for it (`preprocessing::JobRecord`).
    async fn record_preprocessor(
        &self,
        ctx: &OpContext,
        job: &str,
        builtin: Option<&Builtin>,
    ) -> Result<()> {
        let Some(uri) = builtin.and_then(|b| b.data.preprocessor.clone()) else {
            return Ok(());
        };
        let record = crate::preprocessing::JobRecord {
            format_version: mlctl_core::state::FORMAT_VERSION,
            preprocessor: uri,
        };
        self.aws
            .put_json(
                &crate::preprocessing::record_key(&self.aws, &ctx.project, job),
                &record,
            )
            .await
    }

    /// A tuning job's best trial trained with what the tuning job did: its record is copied
    /// under the trial's name, which is what the training result names.
    async fn record_best_trial(&self, ctx: &OpContext, tuning: &str, best: &str) -> Result<()> {
        if best.is_empty() || best == tuning {
            return Ok(());
        }
        let from = crate::preprocessing::record_key(&self.aws, &ctx.project, tuning);
        let Some(record) = self
            .aws
            .get_json::<crate::preprocessing::JobRecord>(&from)
            .await?
        else {
            return Ok(());
        };
        self.aws
            .put_json(
                &crate::preprocessing::record_key(&self.aws, &ctx.project, best),
                &record,
            )
            .await
    }

    async fn submit_training(
        &self,
        ctx: &OpContext,
        req: &TrainingRequest,
        name: &str,
    ) -> Result<JobHandle> {
        let def = self.definition(ctx, req).await?;
        self.record_preprocessor(ctx, name, def.builtin.as_ref())
            .await?;
        let algorithm = AlgorithmSpecification::builder()
            .training_image(&def.image)
            .training_input_mode(TrainingInputMode::File)
            .set_metric_definitions(
                (!def.metric_definitions.is_empty()).then_some(def.metric_definitions),
            )
            .build();
        let res = self
            .aws
            .sm
            .create_training_job()
            .training_job_name(name)
            .role_arn(&self.aws.role_arn)
            .algorithm_specification(algorithm)
            .set_hyper_parameters(Some(def.hyperparameters.into_iter().collect()))
            .set_input_data_config(Some(def.channels))
            .output_data_config(def.output)
            .resource_config(def.resources)
            .stopping_condition(def.stopping)
            .enable_managed_spot_training(def.spot)
            .set_tags(Some(sm_tags(
                &req.tags,
                &[("mlctl:dataset", &req.dataset.digest)],
            )))
            .send()
            .await;
        let err = match res {
            Ok(out) => {
                return Ok(JobHandle {
                    name: name.to_string(),
                    provider_id: out.training_job_arn().unwrap_or_default().to_string(),
                });
            }
            Err(e) => aws_err("CreateTrainingJob", e),
        };
        if err.kind != ErrorKind::AlreadyExists {
            return Err(err);
        }
        // Another runner created it between our lookup and our create.
        match self.find_training(name).await? {
            Some(d) => Ok(JobHandle {
                name: name.to_string(),
                provider_id: d.training_job_arn().unwrap_or_default().to_string(),
            }),
            None => Err(provider_err(
                ErrorKind::Transient,
                "CreateTrainingJob",
                format!("training job {name} exists but cannot be read yet"),
            )),
        }
    }

    async fn submit_tuning(
        &self,
        ctx: &OpContext,
        req: &TrainingRequest,
        name: &str,
    ) -> Result<JobHandle> {
        let Some(tuning) = &req.spec.tuning else {
            return Err(provider_err(
                ErrorKind::Other,
                "CreateHyperParameterTuningJob",
                "no tuning section",
            ));
        };
        let def = self.definition(ctx, req).await?;
        // Before the tuning job exists, so whoever polls it can train the chosen candidate.
        if let Some(plan) = &def.refit {
            let plan = crate::refit::RefitPlan {
                tags: crate::aws::tag_pairs(&req.tags, &[("mlctl:dataset", &req.dataset.digest)]),
                ..plan.clone()
            };
            self.aws
                .put_json(&crate::refit::plan_key(&self.aws, name), &plan)
                .await?;
        }
        self.record_preprocessor(ctx, name, def.builtin.as_ref())
            .await?;
        let script_mode = def.builtin.is_none();
        let (objective_metric, goal) = objective(&req.spec, def.builtin.as_ref())?;
        let mut ranges = ParameterRanges::builder();
        let mut searched = Vec::new();
        for (hp, param) in &tuning.search_space {
            let invalid = |m: String| {
                provider_err(
                    ErrorKind::Invalid,
                    "CreateHyperParameterTuningJob",
                    format!("searchSpace.{hp}: {m}"),
                )
            };
            let (sm_name, translate, facts) = match &def.builtin {
                Some(b) => {
                    let (sm, t) = crate::builtins::resolve(b.algorithm, hp)
                        .map_err(|(why, instead)| invalid(format!("{why} ({instead})")))?;
                    (sm, t, b.data.facts())
                }
                None => (
                    hp.clone(),
                    Translate::Same,
                    DataFacts {
                        rows: 0,
                        features: 0,
                    },
                ),
            };
            searched.push(sm_name.clone());
            match param_range(
                hp,
                &sm_name,
                param,
                tuning.strategy,
                translate,
                facts,
                script_mode,
            )
            .map_err(invalid)?
            {
                Range::Categorical(r) => ranges = ranges.categorical_parameter_ranges(r),
                Range::Integer(r) => ranges = ranges.integer_parameter_ranges(r),
                Range::Continuous(r) => ranges = ranges.continuous_parameter_ranges(r),
            }
        }
        let strategy = match tuning.strategy {
            TuningStrategy::Grid => HyperParameterTuningJobStrategyType::Grid,
            TuningStrategy::Random => HyperParameterTuningJobStrategyType::Random,
            TuningStrategy::Halving => HyperParameterTuningJobStrategyType::Hyperband,
            TuningStrategy::Bayesian => HyperParameterTuningJobStrategyType::Bayesian,
        };
        let mut limits = ResourceLimits::builder()
            .max_parallel_training_jobs(tuning.parallelism.unwrap_or(1).max(1) as i32);
        if tuning.strategy != TuningStrategy::Grid {
            // Grid search runs the whole grid; SageMaker rejects a job count with it.
            limits =
                limits.max_number_of_training_jobs(tuning.max_trials.unwrap_or(10).max(1) as i32);
        }
        let config = HyperParameterTuningJobConfig::builder()
            .strategy(strategy)
            .hyper_parameter_tuning_job_objective(
                HyperParameterTuningJobObjective::builder()
                    .r#type(match goal {
                        Goal::Maximize => HyperParameterTuningJobObjectiveType::Maximize,
                        Goal::Minimize => HyperParameterTuningJobObjectiveType::Minimize,
                    })
                    .metric_name(objective_metric)
                    .build(),
            )
            .resource_limits(limits.build())
            .parameter_ranges(ranges.build())
            .set_random_seed(tuning.seed.map(|s| (s % i32::MAX as u64) as i32))
            .build();
        let static_hps: std::collections::HashMap<String, String> = def
            .hyperparameters
            .into_iter()
            .filter(|(k, _)| !searched.contains(k))
            .collect();
        let training = HyperParameterTrainingJobDefinition::builder()
            .algorithm_specification(
                HyperParameterAlgorithmSpecification::builder()
                    .training_image(&def.image)
                    .training_input_mode(TrainingInputMode::File)
                    .set_metric_definitions(
                        (!def.metric_definitions.is_empty()).then_some(def.metric_definitions),
                    )
                    .build(),
            )
            .role_arn(&self.aws.role_arn)
            .set_static_hyper_parameters(Some(static_hps))
            .set_input_data_config(Some(def.channels))
            .output_data_config(def.output)
            .resource_config(def.resources)
            .stopping_condition(def.stopping)
            .enable_managed_spot_training(def.spot)
            .build();
        let res = self
            .aws
            .sm
            .create_hyper_parameter_tuning_job()
            .hyper_parameter_tuning_job_name(name)
            .hyper_parameter_tuning_job_config(config)
            .training_job_definition(training)
            .set_tags(Some(sm_tags(
                &req.tags,
                &[("mlctl:dataset", &req.dataset.digest)],
            )))
            .send()
            .await
            .map_err(|e| aws_err("CreateHyperParameterTuningJob", e))?;
        Ok(JobHandle {
            name: name.to_string(),
            provider_id: res
                .hyper_parameter_tuning_job_arn()
                .unwrap_or_default()
                .to_string(),
        })
    }

    async fn poll_training(&self, name: &str) -> Result<JobState> {
        let d = self.find_training(name).await?.ok_or_else(|| {
            provider_err(
                ErrorKind::NotFound,
                "DescribeTrainingJob",
                format!("training job {name} does not exist"),
            )
        })?;
        Ok(match d.training_job_status() {
            Some(TrainingJobStatus::Completed) => {
                let mut result = training_result(&d);
                result.metrics_origin = self.aws.features.metrics_origin();
                JobState::Completed(result)
            }
            Some(TrainingJobStatus::Failed) => JobState::Failed {
                reason: format!(
                    "{}{}",
                    d.failure_reason().unwrap_or("SageMaker gave no reason"),
                    crate::logs::failure_context(
                        &self.aws,
                        crate::logs::LogSource::TrainingJob(name)
                    )
                    .await
                ),
            },
            Some(TrainingJobStatus::Stopped) => JobState::Failed {
                reason: format!(
                    "the job was stopped{}",
                    d.failure_reason()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ),
            },
            _ => {
                let status = d
                    .secondary_status()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default();
                let detail = d
                    .secondary_status_transitions()
                    .last()
                    .and_then(|t| t.status_message())
                    .unwrap_or_default();
                if matches!(d.secondary_status(), Some(SecondaryStatus::Starting) | None)
                    && d.training_start_time().is_none()
                {
                    JobState::Pending
                } else {
                    JobState::Running {
                        progress: None,
                        message: Some(format!("{status} {detail}").trim().to_string()),
                    }
                }
            }
        })
    }

    async fn poll_tuning(&self, name: &str) -> Result<JobState> {
        let d = self
            .aws
            .sm
            .describe_hyper_parameter_tuning_job()
            .hyper_parameter_tuning_job_name(name)
            .send()
            .await
            .map_err(|e| aws_err("DescribeHyperParameterTuningJob", e))?;
        let counters = d.training_job_status_counters();
        let done = counters
            .map(|c| {
                c.completed().unwrap_or(0)
                    + c.non_retryable_error().unwrap_or(0)
                    + c.stopped().unwrap_or(0)
            })
            .unwrap_or(0);
        let max = d
            .hyper_parameter_tuning_job_config()
            .and_then(|c| c.resource_limits())
            .and_then(|l| l.max_number_of_training_jobs())
            .unwrap_or(0);
        match d.hyper_parameter_tuning_job_status() {
            Some(HyperParameterTuningJobStatus::Completed) => {}
            Some(HyperParameterTuningJobStatus::Failed) => {
                return Ok(JobState::Failed {
                    reason: format!(
                        "{}{}",
                        d.failure_reason().unwrap_or("SageMaker gave no reason"),
                        crate::runs::failed_trial_context(&self.aws, name).await
                    ),
                });
            }
            Some(HyperParameterTuningJobStatus::Stopped) => {
                return Ok(JobState::Failed {
                    reason: "the tuning job was stopped".into(),
                });
            }
            _ => {
                let progress = (max > 0).then(|| (done as f32 / max as f32).min(1.0));
                return Ok(JobState::Running {
                    progress,
                    message: Some(format!("{done} of {max} trials done")),
                });
            }
        }
        let best = d.best_training_job();
        if let Some(plan) = self
            .aws
            .get_json::<crate::refit::RefitPlan>(&crate::refit::plan_key(&self.aws, name))
            .await?
        {
            return self.poll_refit(name, &d, plan).await;
        }
        let best_name = best
            .and_then(|b| b.training_job_name())
            .unwrap_or_default()
            .to_string();
        let mut result = match self.find_training(&best_name).await? {
            Some(job) => training_result(&job),
            // Emulators name a placeholder best job that does not exist.
            None => TrainingResult {
                job_name: best_name.clone(),
                artifact_uri: String::new(),
                metrics: BTreeMap::new(),
                hyperparameters: BTreeMap::new(),
                trials: Vec::new(),
                run_id: best.and_then(|b| b.training_job_arn()).map(str::to_string),
                duration_secs: 0.0,
                evaluation: None,
                metrics_origin: None,
            },
        };
        result.metrics_origin = self.aws.features.metrics_origin();
        if let Some(obj) = best.and_then(|b| b.final_hyper_parameter_tuning_job_objective_metric())
        {
            result
                .metrics
                .entry(obj.metric_name().unwrap_or("objective").to_string())
                .or_insert(obj.value().unwrap_or(f32::NAN) as f64);
        }
        if let Some(tuned) = best.and_then(|b| b.tuned_hyper_parameters()) {
            for (k, v) in tuned {
                result.hyperparameters.insert(k.clone(), decode_hp(v));
            }
        }
        result.trials = self
            .trials_or_best(name, &d, &result.hyperparameters)
            .await?;
        Ok(JobState::Completed(result))
    }

    /// The trials of tuning job `name`, or the best one alone where they cannot be listed.
    async fn trials_or_best(
        &self,
        name: &str,
        d: &DescribeHyperParameterTuningJobOutput,
        best_hps: &BTreeMap<String, serde_json::Value>,
    ) -> Result<Vec<Trial>> {
        let mut trials = if self.aws.features.list_tuning_trials {
            self.trials(name).await?
        } else {
            Vec::new()
        };
        if trials.is_empty() {
            trials.push(Trial {
                number: 1,
                hyperparameters: best_hps.clone(),
                objective: d
                    .best_training_job()
                    .and_then(|b| b.final_hyper_parameter_tuning_job_objective_metric())
                    .and_then(|m| m.value())
                    .map(f64::from),
                status: "completed".into(),
            });
        }
        Ok(trials)
    }

    /// A completed tuning job with a refit plan: its chosen candidate's final job, started
    /// when missing, and its result once it completes (crate::refit).
    async fn poll_refit(
        &self,
        tuning: &str,
        d: &DescribeHyperParameterTuningJobOutput,
        plan: crate::refit::RefitPlan,
    ) -> Result<JobState> {
        let final_name = crate::refit::job_name(tuning);
        let running = || JobState::Running {
            progress: None,
            message: Some(crate::refit::RUNNING.into()),
        };
        let Some(f) = self.find_training(&final_name).await? else {
            self.submit_refit(&final_name, d, &plan).await?;
            return Ok(running());
        };
        match f.training_job_status() {
            Some(TrainingJobStatus::Completed) => {
                let mut result = training_result(&f);
                result.metrics_origin = self.aws.features.metrics_origin();
                result.evaluation = Some(Box::new(plan.evaluation));
                result.trials = self
                    .trials_or_best(tuning, d, &result.hyperparameters)
                    .await?;
                Ok(JobState::Completed(result))
            }
            Some(TrainingJobStatus::Failed | TrainingJobStatus::Stopped) => Ok(JobState::Failed {
                reason: format!(
                    "the tuning job chose a candidate, but its final training job {final_name} (train and test channels) failed: {}",
                    f.failure_reason().unwrap_or("SageMaker gave no reason")
                ),
            }),
            _ => Ok(running()),
        }
    }

    /// Starts the chosen candidate's final job: the tuning job's own training definition,
    /// the best trial's hyperparameters, the plan's channels and tags.
    async fn submit_refit(
        &self,
        final_name: &str,
        d: &DescribeHyperParameterTuningJobOutput,
        plan: &crate::refit::RefitPlan,
    ) -> Result<()> {
        let def = d.training_job_definition().ok_or_else(|| {
            provider_err(
                ErrorKind::Other,
                "DescribeHyperParameterTuningJob",
                "the tuning job has no training definition to train its chosen candidate with",
            )
        })?;
        let spec = def.algorithm_specification();
        let metric_definitions: Vec<MetricDefinition> = spec
            .map(|s| s.metric_definitions().to_vec())
            .unwrap_or_default();
        let algorithm = AlgorithmSpecification::builder()
            .set_training_image(spec.and_then(|s| s.training_image()).map(str::to_string))
            .training_input_mode(TrainingInputMode::File)
            .set_metric_definitions((!metric_definitions.is_empty()).then_some(metric_definitions))
            .build();
        let mut hps = def.static_hyper_parameters().cloned().unwrap_or_default();
        if let Some(tuned) = d
            .best_training_job()
            .and_then(|b| b.tuned_hyper_parameters())
        {
            hps.extend(tuned.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let channels: Vec<Channel> = plan
            .channels
            .iter()
            .map(|(part, uri)| match plan.content_type.as_deref() {
                Some("text/csv") => csv_channel(part, uri),
                _ => plain_channel(part, uri),
            })
            .collect();
        let tags = plan
            .tags
            .iter()
            .map(|(k, v)| {
                aws_sdk_sagemaker::types::Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
            })
            .collect();
        let res = self
            .aws
            .sm
            .create_training_job()
            .training_job_name(final_name)
            .role_arn(def.role_arn().unwrap_or(&self.aws.role_arn))
            .algorithm_specification(algorithm)
            .set_hyper_parameters(Some(hps))
            .set_input_data_config(Some(channels))
            .set_output_data_config(def.output_data_config().cloned())
            .set_resource_config(def.resource_config().cloned())
            .set_stopping_condition(def.stopping_condition().cloned())
            .set_enable_managed_spot_training(def.enable_managed_spot_training())
            .set_tags(Some(tags))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) => {
                let err = aws_err("CreateTrainingJob", e);
                // Another runner started it between our lookup and our create.
                if err.kind == ErrorKind::AlreadyExists {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    async fn trials(&self, tuning_job: &str) -> Result<Vec<Trial>> {
        let summaries = self
            .aws
            .sm
            .list_training_jobs_for_hyper_parameter_tuning_job()
            .hyper_parameter_tuning_job_name(tuning_job)
            .max_results(100)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| aws_err("ListTrainingJobsForHyperParameterTuningJob", e))?;
        let mut out: Vec<(i64, Trial)> = summaries
            .iter()
            .map(|s| {
                (
                    s.creation_time().map(|t| t.secs()).unwrap_or(0),
                    Trial {
                        number: 0,
                        hyperparameters: s
                            .tuned_hyper_parameters()
                            .map(|m| m.iter().map(|(k, v)| (k.clone(), decode_hp(v))).collect())
                            .unwrap_or_default(),
                        objective: s
                            .final_hyper_parameter_tuning_job_objective_metric()
                            .and_then(|m| m.value())
                            .map(f64::from),
                        status: if s.training_job_status() == Some(&TrainingJobStatus::Completed) {
                            "completed".into()
                        } else {
                            "failed".into()
                        },
                    },
                )
            })
            .collect();
        out.sort_by_key(|(t, _)| *t);
        Ok(out
            .into_iter()
            .enumerate()
            .map(|(i, (_, mut t))| {
                t.number = i as u32 + 1;
                t
            })
            .collect())
    }
}

/// Attempts of one job before submit gives up.
const MAX_ATTEMPTS: u32 = 20;

/// The name of a job's `attempt`-th try: the name itself, then `<name>-r2`, `<name>-r3`, ...
fn attempt_name(base: &str, attempt: u32, max: usize) -> String {
    if attempt <= 1 {
        base.to_string()
    } else {
        names::with_suffix(base, &format!("r{attempt}"), max)
    }
}

fn is_tuning(job: &JobHandle) -> bool {
    job.provider_id.contains(":hyper-parameter-tuning-job/")
}

#[async_trait]
impl Trainer for SageMakerTrainer {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            fields: crate::support::field_rules(),
            algorithms: supported_algorithms(),
            script_mode: true,
            tuning_strategies: TuningStrategy::ALL.to_vec(),
            cancel: self.aws.features.stop_jobs,
            runs: true,
            logs: true,
            poll_interval: self.aws.settings.poll_interval,
            notes: self.aws.features.notes(),
            ..Capabilities::default()
        }
    }

    async fn submit(&self, ctx: &OpContext, req: &TrainingRequest) -> Result<JobHandle> {
        // SageMaker never frees a job name, so a job that failed is retried under the next
        // attempt name (`<name>-r2`, ...): a re-run after the cause is fixed starts a new job,
        // and a re-run while one runs finds it.
        let tuned = req.spec.tuning.is_some();
        let max = if tuned { names::MAX_TUNING } else { names::MAX };
        let base = names::job(&req.job_name, max);
        for attempt in 1..=MAX_ATTEMPTS {
            let name = attempt_name(&base, attempt, max);
            let existing = if tuned {
                self.find_tuning(&name).await?
            } else {
                self.find_training(&name).await?.map(|d| {
                    let failed = matches!(
                        d.training_job_status(),
                        Some(TrainingJobStatus::Failed | TrainingJobStatus::Stopped)
                    );
                    (d.training_job_arn().unwrap_or_default().to_string(), failed)
                })
            };
            match existing {
                Some((_, true)) => continue,
                Some((arn, false)) => {
                    return Ok(JobHandle {
                        name,
                        provider_id: arn,
                    });
                }
                None if tuned => return self.submit_tuning(ctx, req, &name).await,
                None => return self.submit_training(ctx, req, &name).await,
            }
        }
        Err(provider_err(
            ErrorKind::Failed,
            "CreateTrainingJob",
            format!(
                "training job {base} failed {MAX_ATTEMPTS} times; fix the cause and change the TrainingJob (a new fingerprint gets a new name)"
            ),
        ))
    }

    async fn poll(&self, ctx: &OpContext, job: &JobHandle) -> Result<JobState> {
        if is_tuning(job) {
            let state = self.poll_tuning(&job.name).await?;
            if let JobState::Completed(result) = &state {
                self.record_best_trial(ctx, &job.name, &result.job_name)
                    .await?;
            }
            Ok(state)
        } else {
            self.poll_training(&job.name).await
        }
    }

    async fn update_in_place(&self, _ctx: &OpContext, req: &InPlaceRequest) -> Result<()> {
        let result: TrainingResult = req.outputs_as("sagemaker")?;
        let name = &result.job_name;
        let arn = match self.find_training(name).await? {
            Some(d) => d.training_job_arn().map(str::to_string),
            None => self.find_tuning(name).await?.map(|(arn, _)| arn),
        };
        let Some(arn) = arn.filter(|a| !a.is_empty()) else {
            return Err(provider_err(
                ErrorKind::NotFound,
                "update job tags",
                format!(
                    "training job {name} is not on SageMaker any more; run `mlctl apply` with a change that trains it again"
                ),
            ));
        };
        self.aws.retag(&arn, &req.tags, &req.removed_labels).await
    }

    async fn cancel(&self, _ctx: &OpContext, job: &JobHandle) -> Result<()> {
        if !self.aws.features.stop_jobs {
            return Ok(());
        }
        let stop_training = |name: String| async move {
            let res = self
                .aws
                .sm
                .stop_training_job()
                .training_job_name(&name)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| aws_err("StopTrainingJob", e));
            match res {
                Err(e) if matches!(e.kind, ErrorKind::Invalid | ErrorKind::NotFound) => Ok(()),
                other => other,
            }
        };
        if is_tuning(job) {
            // A tuned job's chosen candidate may already be in its final job.
            stop_training(crate::refit::job_name(&job.name)).await?;
        }
        let res = if is_tuning(job) {
            self.aws
                .sm
                .stop_hyper_parameter_tuning_job()
                .hyper_parameter_tuning_job_name(&job.name)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| aws_err("StopHyperParameterTuningJob", e))
        } else {
            self.aws
                .sm
                .stop_training_job()
                .training_job_name(&job.name)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| aws_err("StopTrainingJob", e))
        };
        match res {
            // Already finished or gone: nothing to stop.
            Err(e) if matches!(e.kind, ErrorKind::Invalid | ErrorKind::NotFound) => Ok(()),
            other => other,
        }
    }

    async fn runs(
        &self,
        ctx: &OpContext,
        resource: Option<&str>,
    ) -> Result<Vec<mlctl_core::RunRecord>> {
        crate::runs::list(&self.aws, &ctx.project, resource).await
    }

    async fn logs(&self, _ctx: &OpContext, job: &str) -> Result<String> {
        crate::runs::job_log(&self.aws, job).await
    }
}

// ---------------------------------------------------------------------------------------------
// Results

/// Reads a finished job into mlctl's result.
fn training_result(d: &DescribeTrainingJobOutput) -> TrainingResult {
    let no_hps = std::collections::HashMap::new();
    let reporter = Reporter::of(d.hyper_parameters().unwrap_or(&no_hps));
    let raw: Vec<(String, f64)> = d
        .final_metric_data_list()
        .iter()
        .filter_map(|m| Some((m.metric_name()?.to_string(), m.value()? as f64)))
        .collect();
    let hyperparameters = d
        .hyper_parameters()
        .map(|hps| {
            hps.iter()
                .filter(|(k, _)| !k.starts_with("sagemaker_"))
                .map(|(k, v)| (k.clone(), decode_hp(v)))
                .collect()
        })
        .unwrap_or_default();
    let duration = match (d.training_start_time(), d.training_end_time()) {
        (Some(a), Some(b)) => (b.as_secs_f64() - a.as_secs_f64()).max(0.0),
        _ => d.training_time_in_seconds().unwrap_or(0) as f64,
    };
    TrainingResult {
        job_name: d.training_job_name().unwrap_or_default().to_string(),
        artifact_uri: d
            .model_artifacts()
            .and_then(|a| a.s3_model_artifacts())
            .unwrap_or_default()
            .to_string(),
        metrics: normalize_metrics(&raw, reporter),
        hyperparameters,
        trials: Vec::new(),
        run_id: d.training_job_arn().map(str::to_string),
        duration_secs: duration,
        evaluation: None,
        metrics_origin: None,
    }
}

/// How a job's metrics are named: a script's as it writes them, a built-in's in SageMaker's
/// words, which [`normalize_metrics`] puts into the metric vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reporter<'a> {
    /// Script mode: its own `metrics`, channel prefixes stripped and nothing renamed.
    Script,
    /// A built-in algorithm, with the hyperparameters SageMaker ran it with (SageMaker's
    /// names: `predictor_type`, `loss`, `f_beta`), which decide what some metrics measure.
    Builtin(&'a std::collections::HashMap<String, String>),
}

impl<'a> Reporter<'a> {
    /// Who named the metrics of a job SageMaker ran with `hps`: a script (script mode's
    /// `sagemaker_program`), else the built-in.
    pub(crate) fn of(hps: &'a std::collections::HashMap<String, String>) -> Self {
        if hps.contains_key("sagemaker_program") {
            Reporter::Script
        } else {
            Reporter::Builtin(hps)
        }
    }
}

/// SageMaker's metric names (`validation:auc`) plus the names gates and objectives use,
/// preferring validation over test over train values. For a built-in these are the metric
/// vocabulary's (docs/metrics.md): `accuracy` (also 1 - `error` or `merror`), `roc_auc`
/// (`auc`, `roc_auc_score`), `log_loss` (`logloss`, `mlogloss`, and linear-learner's
/// `objective_loss` with its default classification loss), `f1_macro`, `precision_macro` and
/// `recall_macro` (`macro_f_beta` with beta 1, `macro_precision`, `macro_recall`), `rmse`,
/// `mse`, `mae` (`absolute_loss`) and `inertia` (k-means' `test:ssd`).
pub(crate) fn normalize_metrics(raw: &[(String, f64)], by: Reporter<'_>) -> BTreeMap<String, f64> {
    let mut out: BTreeMap<String, f64> = raw.iter().cloned().collect();
    let plain_given: Vec<String> = raw
        .iter()
        .filter(|(k, _)| !k.contains(':'))
        .map(|(k, _)| k.clone())
        .collect();
    let hp = |k: &str| match by {
        Reporter::Builtin(hps) => hps.get(k).map(|v| v.trim_matches('"').to_string()),
        Reporter::Script => None,
    };
    let classifier = matches!(
        hp("predictor_type").as_deref(),
        Some("binary_classifier" | "multiclass_classifier")
    );
    let default_loss =
        hp("loss").is_none_or(|l| matches!(l.as_str(), "auto" | "logistic" | "softmax_loss"));
    let beta_one = hp("f_beta").is_none_or(|b| b.parse::<f64>() == Ok(1.0));
    for channel in ["train:", "test:", "validation:"] {
        for (k, v) in raw {
            let Some(name) = k.strip_prefix(channel) else {
                continue;
            };
            let (plain, value) = match (by, name) {
                (Reporter::Script, other) => (other, *v),
                (_, "multiclass_accuracy" | "binary_classification_accuracy") => ("accuracy", *v),
                (_, "error" | "merror") => ("accuracy", 1.0 - *v),
                (_, "auc" | "roc_auc_score") => ("roc_auc", *v),
                (_, "logloss" | "mlogloss") => ("log_loss", *v),
                (_, "objective_loss") if classifier && default_loss => ("log_loss", *v),
                (_, "macro_f_beta") if beta_one => ("f1_macro", *v),
                (_, "macro_precision") => ("precision_macro", *v),
                (_, "macro_recall") => ("recall_macro", *v),
                (_, "absolute_loss") => ("mae", *v),
                (_, "ssd") if channel == "test:" => ("inertia", *v),
                (_, other) => (other, *v),
            };
            if !plain_given.iter().any(|p| p == plain) {
                out.insert(plain.to_string(), value);
            }
        }
    }
    out
}

/// A hyperparameter value as JSON: numbers and JSON-encoded strings decode; anything else is text.
fn decode_hp(v: &str) -> serde_json::Value {
    serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_string()))
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

// ---------------------------------------------------------------------------------------------
// Built-in algorithms

fn csv_channel(name: &str, uri: &str) -> Channel {
    Channel::builder()
        .channel_name(name)
        .content_type("text/csv")
        .data_source(DataSource::builder().s3_data_source(s3_source(uri)).build())
        .build()
}

fn plain_channel(name: &str, uri: &str) -> Channel {
    Channel::builder()
        .channel_name(name)
        .data_source(DataSource::builder().s3_data_source(s3_source(uri)).build())
        .build()
}

fn s3_source(uri: &str) -> S3DataSource {
    S3DataSource::builder()
        .s3_data_type(S3DataType::S3Prefix)
        .s3_uri(uri)
        .s3_data_distribution_type(S3DataDistribution::FullyReplicated)
        .build()
}

impl Prepared {
    fn facts(&self) -> DataFacts {
        DataFacts {
            rows: self.train_rows,
            features: self.feature_dim,
        }
    }

    fn shape(&self, algorithm: Algorithm) -> Shape {
        crate::builtins::shape_of(algorithm, self.classification, self.classes.len())
    }
}

/// SageMaker hyperparameters of a built-in: mlctl's names translated and SageMaker's own
/// passed through (both from `builtins::HYPERPARAMETERS`), over the values the data dictates
/// (feature_dim, classes).
///
/// # Errors
/// A name or value the table refuses (plan refuses them first).
fn builtin_hyperparameters(
    algorithm: Algorithm,
    user: &BTreeMap<String, serde_json::Value>,
    data: &Prepared,
) -> std::result::Result<BTreeMap<String, String>, String> {
    let mut hps = BTreeMap::new();
    let k = data.classes.len();
    let shape = data.shape(algorithm);
    match algorithm {
        Algorithm::LinearRegression | Algorithm::LogisticRegression => {
            let predictor = match shape {
                Shape::Regression => "regressor",
                Shape::Multiclass => "multiclass_classifier",
                _ => "binary_classifier",
            };
            hps.insert("predictor_type".into(), predictor.to_string());
            if predictor == "multiclass_classifier" {
                hps.insert("num_classes".into(), k.to_string());
            }
            hps.insert("feature_dim".into(), data.feature_dim.to_string());
            hps.insert(
                "mini_batch_size".into(),
                data.train_rows.clamp(1, 1000).to_string(),
            );
        }
        Algorithm::GradientBoosting | Algorithm::RandomForest => {
            let objective = match shape {
                Shape::Binary => "binary:logistic",
                Shape::Multiclass => "multi:softprob",
                _ => "reg:squarederror",
            };
            hps.insert("objective".into(), objective.into());
            hps.insert(
                "eval_metric".into(),
                crate::builtins::xgboost_default_metrics(shape).into(),
            );
            if shape == Shape::Multiclass {
                hps.insert("num_class".into(), k.to_string());
            }
            if algorithm == Algorithm::RandomForest {
                // XGBoost's random-forest mode: one round of many parallel trees, no shrinkage.
                hps.insert("num_round".into(), "1".into());
                hps.insert("num_parallel_tree".into(), "100".into());
                hps.insert("eta".into(), "1".into());
                hps.insert("subsample".into(), "0.8".into());
                hps.insert("colsample_bynode".into(), "0.8".into());
            } else {
                hps.insert("num_round".into(), "100".into());
            }
        }
        Algorithm::Kmeans => {
            hps.insert("feature_dim".into(), data.feature_dim.to_string());
            hps.insert(
                "mini_batch_size".into(),
                data.train_rows.clamp(1, 5000).to_string(),
            );
            hps.insert("k".into(), "8".into());
            // Both of the metrics mlctl maps (`msd`, `ssd`); SageMaker reports only msd by default.
            hps.insert("eval_metrics".into(), r#"["msd","ssd"]"#.into());
        }
        Algorithm::DecisionTree => {}
    }
    for (name, value) in user {
        let (sm, t) = crate::builtins::resolve(algorithm, name)
            .map_err(|(why, instead)| format!("{why} ({instead})"))?;
        let text = t
            .apply_value(value, data.facts())
            .map_err(|e| format!("`{name}` {e}"))?;
        hps.insert(sm, text);
    }
    // XGBoost uses `max_bin` with its histogram method only.
    if hps.contains_key("max_bin") && !user.contains_key("tree_method") {
        hps.entry("tree_method".into())
            .or_insert_with(|| "hist".into());
    }
    Ok(hps)
}

/// The SageMaker objective metric of a tuning job, and its goal (`builtins::objective` for
/// built-ins; one of `metrics` in script mode).
fn objective(spec: &TrainingJobSpec, builtin: Option<&Builtin>) -> Result<(String, Goal)> {
    let Some(tuning) = &spec.tuning else {
        return Err(provider_err(
            ErrorKind::Other,
            "CreateHyperParameterTuningJob",
            "no tuning section",
        ));
    };
    let metric = tuning.objective.metric.as_str();
    let goal = tuning.objective.goal;
    let Some(b) = builtin else {
        if spec.metrics.iter().any(|m| m.name == metric) {
            return Ok((metric.to_string(), goal));
        }
        return Err(provider_err(
            ErrorKind::Invalid,
            "CreateHyperParameterTuningJob",
            format!(
                "the tuning objective `{metric}` must be one of the job's `metrics` (SageMaker reads it from the log with that regex)"
            ),
        ));
    };
    let shape = b.data.shape(b.algorithm);
    crate::builtins::objective(b.algorithm, shape, metric, goal, &spec.hyperparameters).ok_or_else(
        || {
            provider_err(
                ErrorKind::Invalid,
                "CreateHyperParameterTuningJob",
                format!(
                    "SageMaker's `{}` cannot optimise `{metric}` for this data; it optimises {}",
                    b.algorithm.as_str(),
                    crate::builtins::objectives(b.algorithm, shape, &spec.hyperparameters)
                        .join(", ")
                ),
            )
        },
    )
}

/// CSV channels for a built-in algorithm.
pub(crate) struct Converted {
    pub(crate) train: Vec<u8>,
    pub(crate) validation: Vec<u8>,
    pub(crate) classes: Vec<String>,
    pub(crate) feature_dim: usize,
    pub(crate) train_rows: usize,
    pub(crate) classification: bool,
    /// Fitted on the training rows; what the channels are encoded with.
    pub(crate) preprocessor: mlctl_ml::preprocess::Preprocessor,
}

/// A tuned job's dataset that cannot be split or written as channels, said of the dataset.
fn bad_tuning_data(req: &TrainingRequest, why: String) -> ProviderError {
    provider_err(
        ErrorKind::Invalid,
        "CreateHyperParameterTuningJob",
        format!("dataset `{}`: {why}", req.dataset.name),
    )
}

/// A table from a dataset file's bytes (CSV, or Parquet by its magic number).
fn table_from_bytes(bytes: &[u8]) -> std::result::Result<mlctl_ml::Table, String> {
    mlctl_ml::table::read_bytes_sniffed(bytes).map_err(|e| e.to_string())
}

/// A table as CSV with a header, as the local target writes a channel.
fn csv_bytes(t: &mlctl_ml::Table) -> std::result::Result<Vec<u8>, String> {
    mlctl_ml::table::csv_bytes(t).map_err(|e| e.to_string())
}

/// Builds label-first, header-less CSV (SageMaker's built-in format) from the dataset's
/// train and held-out parts; a single table is split 80/20 by a hash of each row's index and
/// `seed` (deterministic: the same data gives the same split). Class labels are numbered by
/// sorted name across all parts.
///
/// The features are mlctl's own preprocessing, as the local trainer fits it
/// (`Preprocessor::fit_schema` on the training rows only, with the Dataset's schema): only
/// `role: feature` columns, a column with `categories` (text or int) one-hot over exactly
/// those, a text column one-hot over the categories seen in training, and a missing number
/// filled with the training mean. The encoded values are written by
/// [`crate::preprocessing::csv_number`], as the preprocessing container writes them.
pub(crate) fn convert_for_builtin(
    parts: &[Vec<u8>],
    label: Option<&str>,
    schema: Option<&mlctl_spec::DataSchema>,
    seed: &str,
) -> std::result::Result<Converted, String> {
    let tables = parts
        .iter()
        .map(|p| table_from_bytes(p))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    convert_tables(&tables, label, schema, seed)
}

/// [`convert_for_builtin`] on tables already read.
pub(crate) fn convert_tables(
    tables: &[mlctl_ml::Table],
    label: Option<&str>,
    schema: Option<&mlctl_spec::DataSchema>,
    seed: &str,
) -> std::result::Result<Converted, String> {
    use mlctl_ml::preprocess::{EncodeError, Preprocessor};
    use mlctl_ml::table::{ColumnData, Table};
    let Some(first) = tables.first() else {
        return Err("has no data".into());
    };
    let rows: usize = tables.iter().map(Table::n_rows).sum();
    if rows < 2 {
        return Err(format!("has {rows} rows; training needs at least 2"));
    }
    let label_col = |t: &'_ Table| -> std::result::Result<Option<ColumnData>, String> {
        match label {
            None => Ok(None),
            Some(name) => t.column(name).cloned().map(Some).ok_or_else(|| {
                format!(
                    "no label column `{name}` (columns: {})",
                    mlctl_spec::suggest::list(t.names())
                )
            }),
        }
    };
    let classification = matches!(
        label_col(first)?,
        Some(ColumnData::Str(_) | ColumnData::Bool(_))
    );
    let mut classes: Vec<String> = Vec::new();
    if classification {
        for t in tables {
            if let Some(col) = label_col(t)? {
                classes.extend((0..col.len()).map(|r| col.string_at(r).unwrap_or_default()));
            }
        }
        classes.sort();
        classes.dedup();
    }
    // Which rows of each part are held out: the later parts, or a seeded fifth of one table.
    let held_out: Vec<Vec<bool>> = tables
        .iter()
        .enumerate()
        .map(|(i, t)| {
            (0..t.n_rows())
                .map(|r| {
                    if tables.len() > 1 {
                        i > 0
                    } else {
                        u64::from_str_radix(&names::hash(&[seed, &r.to_string()], 8), 16)
                            .unwrap_or(0)
                            .is_multiple_of(5)
                    }
                })
                .collect()
        })
        .collect();
    // Fitted on the training rows only, as the local trainer fits it (tiny tables whose
    // training rows are all held out fit on the first row, which both channels then hold).
    let train_idx: Vec<usize> = (0..first.n_rows()).filter(|&r| !held_out[0][r]).collect();
    let fit_on = if train_idx.is_empty() {
        first.take(&[0])
    } else {
        first.take(&train_idx)
    };
    let pre = Preprocessor::fit_schema(&fit_on, label, schema);
    let width = pre.encoded_width();
    if width == 0 {
        return Err("has no feature columns".into());
    }
    let explain = |part: usize, e: EncodeError| -> String {
        let which = if tables.len() > 1 && part > 0 {
            "the held-out part"
        } else {
            "the table"
        };
        let hint = match &e {
            EncodeError::UnknownCategory { .. } => {
                ". A held-out row has a category no training row has: declare the column's `categories` in the Dataset's schema"
            }
            EncodeError::Missing { .. } => {
                ". A held-out row misses a value where no training row does: declare the column `nullable`, or fill it in the data"
            }
            _ => "",
        };
        format!("{which}: {e}{hint}")
    };
    let mut train = String::new();
    let mut validation = String::new();
    let mut train_rows = 0;
    let mut encoded = vec![0.0; width];
    for (i, t) in tables.iter().enumerate() {
        let lab = label_col(t)?;
        let raw = pre.raw_matrix(t).map_err(|e| explain(i, e))?;
        let w = pre.features.len();
        for r in 0..t.n_rows() {
            let mut line = String::new();
            if let Some(col) = &lab {
                let y = if classification {
                    let text = col.string_at(r).unwrap_or_default();
                    classes.binary_search(&text).unwrap_or(0) as f64
                } else {
                    col.f64_at(r)
                };
                if y.is_nan() {
                    return Err(format!(
                        "the label `{}` is missing in row {r}",
                        label.unwrap_or_default()
                    ));
                }
                line.push_str(&num(y));
                line.push(',');
            }
            pre.encode_raw_row(&raw[r * w..(r + 1) * w], &mut encoded);
            crate::preprocessing::push_encoded(&mut line, &encoded);
            if held_out[i][r] {
                validation.push_str(&line);
            } else {
                train.push_str(&line);
                train_rows += 1;
            }
        }
    }
    // Both channels must hold data; tiny tables put their first row in both.
    if validation.is_empty() || train.is_empty() {
        let first = train
            .lines()
            .next()
            .or_else(|| validation.lines().next())
            .unwrap_or_default()
            .to_string()
            + "\n";
        if validation.is_empty() {
            validation = first;
        } else {
            train = first;
            train_rows = 1;
        }
    }
    Ok(Converted {
        train: train.into_bytes(),
        validation: validation.into_bytes(),
        classes,
        feature_dim: width,
        train_rows,
        classification,
        preprocessor: pre,
    })
}

// ---------------------------------------------------------------------------------------------
// Script mode

/// Packs the code directory as a reproducible tar.gz (sorted entries, zero times and owners:
/// the same code gives the same bytes and so the same blob), plus the entry script that runs
/// the TrainingJob's `command`.
///
/// # Guarantees
/// - Nothing from outside the code directory is packed: a symbolic link is followed only when
///   it resolves inside the directory; one that points outside (or nowhere) fails, naming the
///   link and its target.
/// - `.git`, `.mlctl`, `.env` and `.env.*` (secrets, history, mlctl's own state) are left out
///   at any depth, as are caches (`__pycache__`, `.venv`, `node_modules`, `.DS_Store`).
pub(crate) fn pack_code(dir: Option<&Path>, command: &str) -> Result<Vec<u8>> {
    let entry = format!(
        "#!/bin/sh\n# Written by mlctl: SageMaker script mode runs this in the code directory.\n# Hyperparameters are in $SM_HPS, data in $SM_CHANNEL_<NAME>, the model goes to $SM_MODEL_DIR.\nexec {command}\n"
    );
    pack(dir, "", ENTRY, &entry)
}

/// [`pack_code`]'s archive, with the code under the relative path `at` (the whole archive's
/// root when empty; a file is packed as `at` itself) and `entry` as the file `entry_name`.
pub(crate) fn pack(dir: Option<&Path>, at: &str, entry_name: &str, entry: &str) -> Result<Vec<u8>> {
    let io = |what: &Path, e: std::io::Error| {
        let mut err = ProviderError::io("sagemaker", "pack code", e);
        err.message = format!("{}: {}", what.display(), err.message);
        err
    };
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    if let Some(dir) = dir {
        if dir.is_file() {
            let name = if at.is_empty() {
                dir.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            } else {
                at.to_string()
            };
            files.push((name, dir.to_path_buf()));
        } else {
            let root = dir.canonicalize().map_err(|e| io(dir, e))?;
            let mut within = vec![root.clone()];
            collect(dir, &root, "", &mut within, &mut files)?;
            if !at.is_empty() {
                for (rel, _) in &mut files {
                    *rel = format!("{at}/{rel}");
                }
            }
        }
    }
    files.sort();
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let add =
        |tar: &mut tar::Builder<_>, path: &str, mode: u32, data: &[u8]| -> std::io::Result<()> {
            let mut h = tar::Header::new_ustar();
            h.set_path(path)?;
            h.set_size(data.len() as u64);
            h.set_mode(mode);
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            tar.append(&h, data)
        };
    for (rel, path) in &files {
        let data = std::fs::read(path).map_err(|e| io(path, e))?;
        let mode = if is_executable(path) { 0o755 } else { 0o644 };
        add(&mut tar, rel, mode, &data).map_err(|e| io(path, e))?;
    }
    let packed = add(&mut tar, entry_name, 0o755, entry.as_bytes())
        .and_then(|()| tar.into_inner())
        .and_then(|gz| gz.finish());
    packed.map_err(|e| io(Path::new(entry_name), e))
}

/// Whether a file or directory name is left out of the packed code (see [`pack_code`]): the
/// same names the local target leaves out when it copies code.
fn left_out(name: &str) -> bool {
    matches!(
        name,
        ".git"
            | ".mlctl"
            | ".env"
            | "__pycache__"
            | ".venv"
            | "node_modules"
            | ".ipynb_checkpoints"
            | ".DS_Store"
    ) || name.starts_with(".env.")
}

/// Adds the files under `dir` to `out` by their path in the code directory (`rel`, `/`-joined:
/// `dir` is `code.join(rel)`), in name order. `root` is the code directory resolved, and
/// `within` the resolved directories being walked, outermost first: a link to one of them
/// would loop, and is refused. A link to a directory elsewhere in the code directory is packed
/// under the link's name too, as the local target copies it. Dangling links are left out.
fn collect(
    code: &Path,
    root: &Path,
    rel: &str,
    within: &mut Vec<PathBuf>,
    out: &mut Vec<(String, PathBuf)>,
) -> Result<()> {
    let io = |what: &Path, e: std::io::Error| {
        let mut err = ProviderError::io("sagemaker", "pack code", e);
        err.message = format!("{}: {}", what.display(), err.message);
        err
    };
    let dir = if rel.is_empty() {
        code.to_path_buf()
    } else {
        code.join(rel)
    };
    let mut entries = std::fs::read_dir(&dir)
        .map_err(|e| io(&dir, e))?
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| io(&dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if left_out(&name) {
            continue;
        }
        let rel = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).map_err(|e| io(&path, e))?;
        let real = if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).map_err(|e| io(&path, e))?;
            match path.canonicalize() {
                Ok(resolved) if resolved.starts_with(root) => resolved,
                // Dangling: nothing to pack.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                resolved => {
                    return Err(provider_err(
                        ErrorKind::Invalid,
                        "pack code",
                        format!(
                            "code directory `{}`: `{rel}` is a symbolic link to `{}`, which is {}; mlctl packs nothing from outside the code directory. Copy what it points to into the code directory, or remove the link",
                            code.display(),
                            target.display(),
                            if resolved.is_ok() {
                                "outside the code directory"
                            } else {
                                "unreadable"
                            }
                        ),
                    ));
                }
            }
        } else {
            path.clone()
        };
        let meta = std::fs::metadata(&real).map_err(|e| io(&path, e))?;
        if meta.is_dir() {
            let canonical = real.canonicalize().map_err(|e| io(&path, e))?;
            if within.iter().any(|d| d.starts_with(&canonical)) {
                return Err(provider_err(
                    ErrorKind::Invalid,
                    "pack code",
                    format!(
                        "code directory `{}`: `{rel}` is a symbolic link to a directory it is in: packing it would never end. Remove the link",
                        code.display()
                    ),
                ));
            }
            within.push(canonical);
            let walked = collect(code, root, &rel, within, out);
            within.pop();
            walked?;
        } else if meta.is_file() {
            out.push((rel, real));
        }
    }
    Ok(())
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(not(unix))]
fn is_executable(_path: &Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_metrics_get_the_vocabulary_names() {
        let multiclass = std::collections::HashMap::from([(
            "predictor_type".to_string(),
            "multiclass_classifier".to_string(),
        )]);
        let m = normalize_metrics(
            &[
                ("train:multiclass_accuracy".into(), 0.99),
                ("validation:multiclass_accuracy".into(), 0.95),
                ("validation:macro_f_beta".into(), 0.9),
                ("validation:objective_loss".into(), 0.3),
            ],
            Reporter::Builtin(&multiclass),
        );
        assert_eq!(m["accuracy"], 0.95);
        assert_eq!(m["f1_macro"], 0.9);
        assert_eq!(m["log_loss"], 0.3);
        assert_eq!(m["validation:multiclass_accuracy"], 0.95);
        // XGBoost's names: error is 1 - accuracy, auc is the ROC AUC.
        let none = std::collections::HashMap::new();
        let m = normalize_metrics(
            &[
                ("validation:error".into(), 0.25),
                ("validation:auc".into(), 0.8),
                ("validation:logloss".into(), 0.4),
            ],
            Reporter::Builtin(&none),
        );
        assert_eq!(m["accuracy"], 0.75);
        assert_eq!(m["roc_auc"], 0.8);
        assert_eq!(m["log_loss"], 0.4);
        assert!(!m.contains_key("auc"), "{m:?}");
        // What a metric measures depends on how it was configured: a hinge loss is no log
        // loss, and an F-beta with beta 2 is no F1.
        let hinge = std::collections::HashMap::from([
            (
                "predictor_type".to_string(),
                "binary_classifier".to_string(),
            ),
            ("loss".to_string(), "hinge_loss".to_string()),
            ("f_beta".to_string(), "2".to_string()),
        ]);
        let m = normalize_metrics(
            &[
                ("validation:objective_loss".into(), 0.3),
                ("validation:macro_f_beta".into(), 0.6),
            ],
            Reporter::Builtin(&hinge),
        );
        assert!(
            !m.contains_key("log_loss") && !m.contains_key("f1_macro"),
            "{m:?}"
        );
        // k-means: the sum of squared distances on the test channel is sklearn's inertia.
        let m = normalize_metrics(&[("test:ssd".into(), 12.5)], Reporter::Builtin(&none));
        assert_eq!(m["inertia"], 12.5);
    }

    #[test]
    fn script_metrics_keep_their_names() {
        // A script's own plain metric wins over a channel-prefixed one, and nothing is renamed.
        let m = normalize_metrics(
            &[
                ("accuracy".into(), 0.5),
                ("validation:accuracy".into(), 0.7),
                ("validation:auc".into(), 0.9),
            ],
            Reporter::Script,
        );
        assert_eq!(m["accuracy"], 0.5);
        assert_eq!(m["auc"], 0.9);
        assert!(!m.contains_key("roc_auc"));
    }

    #[test]
    fn packed_code_is_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("train.py"), "print('hi')\n").unwrap();
        std::fs::create_dir(dir.path().join("lib")).unwrap();
        std::fs::write(dir.path().join("lib/util.py"), "x = 1\n").unwrap();
        std::fs::create_dir(dir.path().join("__pycache__")).unwrap();
        std::fs::write(dir.path().join("__pycache__/junk.pyc"), "junk").unwrap();
        let a = pack_code(Some(dir.path()), "python train.py").unwrap();
        let b = pack_code(Some(dir.path()), "python train.py").unwrap();
        assert_eq!(a, b);
        let mut names = Vec::new();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&a[..]));
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            names.push((
                e.path().unwrap().to_string_lossy().into_owned(),
                e.header().mode().unwrap(),
            ));
        }
        assert_eq!(
            names,
            vec![
                ("lib/util.py".into(), 0o644),
                ("train.py".into(), 0o644),
                (ENTRY.into(), 0o755)
            ]
        );
    }

    fn packed_names(packed: &[u8]) -> Vec<String> {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(packed));
        archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn packed_code_leaves_out_secrets_and_history_at_any_depth() {
        let dir = tempfile::tempdir().unwrap();
        let code = dir.path().join("src");
        for (path, text) in [
            ("train.py", "print(1)\n"),
            (".env", "AWS_SECRET_ACCESS_KEY=x\n"),
            (".env.local", "TOKEN=x\n"),
            (".envrc.py", "kept: not a dotenv file\n"),
            ("lib/.env.production", "TOKEN=y\n"),
            ("lib/util.py", "x = 1\n"),
            ("lib/.git/config", "[core]\n"),
            (".mlctl/state.db", "x"),
            ("lib/.mlctl/cache", "x"),
        ] {
            let p = code.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        // A link that stays inside the code directory is followed.
        #[cfg(unix)]
        std::os::unix::fs::symlink("lib/util.py", code.join("util_link.py")).unwrap();
        let packed = pack_code(Some(&code), "python train.py").unwrap();
        let mut want = vec![".envrc.py", "lib/util.py", "train.py"];
        if cfg!(unix) {
            want.push("util_link.py");
        }
        want.push(ENTRY);
        assert_eq!(packed_names(&packed), want);
    }

    #[cfg(unix)]
    #[test]
    fn packed_code_never_follows_a_link_out_of_the_code_dir() {
        let dir = tempfile::tempdir().unwrap();
        let code = dir.path().join("src");
        std::fs::create_dir_all(code.join("conf")).unwrap();
        std::fs::write(code.join("train.py"), "print(1)\n").unwrap();
        let outside = dir.path().join("credentials");
        std::fs::write(&outside, "secret\n").unwrap();
        std::os::unix::fs::symlink(&outside, code.join("conf/creds")).unwrap();
        let err = pack_code(Some(&code), "python train.py").unwrap_err();
        assert_eq!(err.kind, ErrorKind::Invalid);
        assert!(
            err.message.contains("`conf/creds`")
                && err.message.contains(&outside.display().to_string())
                && err.message.contains("outside the code directory")
                && err.message.contains("remove the link"),
            "{err}"
        );
        assert!(!err.message.contains("secret"), "{err}");
        // A link to a directory outside, and a dangling link, fail the same way.
        std::fs::remove_file(code.join("conf/creds")).unwrap();
        std::os::unix::fs::symlink(dir.path(), code.join("up")).unwrap();
        let err = pack_code(Some(&code), "python train.py").unwrap_err();
        assert!(err.message.contains("`up`"), "{err}");
        std::fs::remove_file(code.join("up")).unwrap();
        // A dangling link is left out, as the local target leaves it out when it copies code.
        std::os::unix::fs::symlink(dir.path().join("gone"), code.join("gone")).unwrap();
        let packed = pack_code(Some(&code), "python train.py").unwrap();
        assert!(!packed_names(&packed).contains(&"gone".to_string()));
    }

    /// A link to a directory inside the code directory packs its files under both names,
    /// whichever the directory lists first; a link to a directory it is in is refused.
    #[cfg(unix)]
    #[test]
    fn packed_code_follows_links_inside_the_code_dir_whatever_the_listing_order() {
        let dir = tempfile::tempdir().unwrap();
        let code = dir.path().join("src");
        std::fs::create_dir_all(code.join("lib")).unwrap();
        std::fs::write(code.join("lib/util.py"), "X = 1\n").unwrap();
        // One link sorts before the directory, one after.
        std::os::unix::fs::symlink(code.join("lib"), code.join("a_lib")).unwrap();
        std::os::unix::fs::symlink(code.join("lib"), code.join("z_lib")).unwrap();
        let packed = pack_code(Some(&code), "python train.py").unwrap();
        let names = packed_names(&packed);
        for want in ["a_lib/util.py", "lib/util.py", "z_lib/util.py"] {
            assert!(names.contains(&want.to_string()), "{want} not in {names:?}");
        }
        std::os::unix::fs::symlink(&code, code.join("lib/loop")).unwrap();
        let err = pack_code(Some(&code), "python train.py").unwrap_err();
        assert!(
            err.message.contains("`a_lib/loop`") && err.message.contains("never end"),
            "{err}"
        );
    }

    #[test]
    fn builtin_data_is_label_first_without_header() {
        let csv = "a,b,species\n1,2,setosa\n3,4,virginica\n5,6,setosa\n7,8,versicolor\n9,10,setosa\n11,12,virginica\n";
        let c =
            convert_for_builtin(&[csv.as_bytes().to_vec()], Some("species"), None, "seed").unwrap();
        assert_eq!(c.classes, vec!["setosa", "versicolor", "virginica"]);
        assert_eq!(c.feature_dim, 2);
        assert!(c.classification);
        let all = format!(
            "{}{}",
            String::from_utf8(c.train.clone()).unwrap(),
            String::from_utf8(c.validation.clone()).unwrap()
        );
        assert!(all.lines().any(|l| l == "0,1,2"), "{all}");
        assert!(all.lines().any(|l| l == "1,7,8"), "{all}");
        assert_eq!(
            c.train_rows,
            String::from_utf8(c.train).unwrap().lines().count()
        );
    }

    fn schema(columns: serde_json::Value) -> mlctl_spec::DataSchema {
        serde_json::from_value(serde_json::json!({ "columns": columns })).unwrap()
    }

    /// The train and held-out parts of a split dataset, as channel lines.
    fn channels(train: &str, held_out: &str, s: Option<&mlctl_spec::DataSchema>) -> Converted {
        convert_for_builtin(
            &[train.as_bytes().to_vec(), held_out.as_bytes().to_vec()],
            Some("churned"),
            s,
            "seed",
        )
        .unwrap()
    }

    fn lines(bytes: &[u8]) -> Vec<String> {
        String::from_utf8(bytes.to_vec())
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn text_and_int_categories_are_one_hot_and_missing_numbers_the_training_mean() {
        let train =
            "id,plan,region,tenure,churned\nc1,basic,2,1,no\nc2,pro,1,,yes\nc3,basic,3,5,no\n";
        let held_out = "id,plan,region,tenure,churned\nc4,pro,3,,yes\n";
        let s = schema(serde_json::json!([
            {"name": "id", "type": "string", "role": "id"},
            {"name": "plan", "type": "category"},
            {"name": "region", "type": "int", "categories": ["1", "2", "3", "4"]},
            {"name": "tenure", "type": "float", "nullable": true},
            {"name": "churned", "type": "category"},
        ]));
        let c = channels(train, held_out, Some(&s));
        // plan (basic, pro) + region (1..4) + tenure: the id is not a feature.
        assert_eq!(c.feature_dim, 2 + 4 + 1);
        assert_eq!(c.classes, vec!["no", "yes"]);
        assert_eq!(
            c.preprocessor.encoded_names(),
            vec![
                "plan=basic",
                "plan=pro",
                "region=1",
                "region=2",
                "region=3",
                "region=4",
                "tenure"
            ]
        );
        // Label (class index) first, then the encoded row; a missing tenure is the mean of
        // the training rows' tenures (1 and 5), also in the held-out part.
        assert_eq!(
            lines(&c.train),
            vec!["0,1,0,0,1,0,0,1", "1,0,1,1,0,0,0,3", "0,1,0,0,0,1,0,5"]
        );
        assert_eq!(lines(&c.validation), vec!["1,0,1,0,0,1,0,3"]);
        assert_eq!(c.train_rows, 3);
    }

    #[test]
    fn the_preprocessor_is_fitted_on_the_training_rows_only() {
        // A single table: the held-out fifth is chosen by a seeded hash; whatever it is, the
        // fill value is the mean of the rows that train, and the channels agree with it.
        let mut csv = String::from("x,y\n");
        for i in 0..20 {
            csv.push_str(&format!("{},{}\n", i, i % 2));
        }
        let c = convert_for_builtin(&[csv.into_bytes()], Some("y"), None, "seed").unwrap();
        let train: Vec<f64> = lines(&c.train)
            .iter()
            .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
            .collect();
        let mean = train.iter().sum::<f64>() / train.len() as f64;
        assert!(train.len() < 20, "some rows are held out");
        assert_eq!(c.preprocessor.features[0].fill, mean);
    }

    #[test]
    fn held_out_rows_the_training_rows_cannot_encode_are_explained() {
        let train = "plan,churned\nbasic,no\npro,yes\n";
        let held_out = "plan,churned\nenterprise,no\n";
        let err = convert_for_builtin(
            &[train.as_bytes().to_vec(), held_out.as_bytes().to_vec()],
            Some("churned"),
            None,
            "s",
        )
        .err()
        .unwrap();
        assert!(
            err.contains("held-out part")
                && err.contains("\"enterprise\"")
                && err.contains("declare the column's `categories`"),
            "{err}"
        );
        // Declared categories encode it (a category the training rows lack is all zeros
        // in training, one-hot where it appears).
        let s = schema(serde_json::json!([
            {"name": "plan", "type": "category", "categories": ["basic", "enterprise", "pro"]},
            {"name": "churned", "type": "category"},
        ]));
        let c = channels(train, held_out, Some(&s));
        assert_eq!(lines(&c.validation), vec!["0,0,1,0"]);
    }

    #[test]
    fn columns_that_are_not_features_are_left_out() {
        let s = schema(serde_json::json!([
            {"name": "name", "type": "string", "role": "id"},
            {"name": "x", "type": "int"},
            {"name": "y", "type": "int"},
        ]));
        let c = convert_for_builtin(
            &[b"name,x,extra,y\nx,1,9,1\nz,2,9,2\n".to_vec()],
            Some("y"),
            Some(&s),
            "s",
        )
        .unwrap();
        assert_eq!(c.feature_dim, 1);
        assert_eq!(c.preprocessor.encoded_names(), vec!["x"]);
    }

    #[test]
    fn builtin_hyperparameters_translate() {
        let data = Prepared {
            train_uri: String::new(),
            validation_uri: String::new(),
            classes: vec!["a".into(), "b".into(), "c".into()],
            feature_dim: 4,
            train_rows: 120,
            classification: true,
            preprocessor: None,
        };
        let user = BTreeMap::from([
            ("C".to_string(), serde_json::json!(1.0)),
            ("max_iter".to_string(), serde_json::json!(200)),
            ("fit_intercept".to_string(), serde_json::json!(false)),
        ]);
        let hps = builtin_hyperparameters(Algorithm::LogisticRegression, &user, &data).unwrap();
        assert_eq!(hps["predictor_type"], "multiclass_classifier");
        assert_eq!(hps["num_classes"], "3");
        assert_eq!(hps["feature_dim"], "4");
        assert_eq!(hps["epochs"], "200");
        assert_eq!(hps["use_bias"], "false");
        assert!((hps["wd"].parse::<f64>().unwrap() - 1.0 / 120.0).abs() < 1e-12);
        let user = BTreeMap::from([
            ("n_estimators".to_string(), serde_json::json!(50)),
            ("learning_rate".to_string(), serde_json::json!(0.1)),
            ("max_bins".to_string(), serde_json::json!(64)),
        ]);
        let hps = builtin_hyperparameters(Algorithm::GradientBoosting, &user, &data).unwrap();
        assert_eq!(
            (
                hps["num_round"].as_str(),
                hps["eta"].as_str(),
                hps["objective"].as_str(),
                hps["max_bin"].as_str(),
                hps["tree_method"].as_str(),
            ),
            ("50", "0.1", "multi:softprob", "64", "hist")
        );
        let user = BTreeMap::from([
            ("n_estimators".to_string(), serde_json::json!(50)),
            ("max_features".to_string(), serde_json::json!("sqrt")),
        ]);
        let hps = builtin_hyperparameters(Algorithm::RandomForest, &user, &data).unwrap();
        assert_eq!(
            (
                hps["num_round"].as_str(),
                hps["num_parallel_tree"].as_str(),
                hps["colsample_bynode"].as_str()
            ),
            ("1", "50", "0.5")
        );
        let user = BTreeMap::from([("n_clusters".to_string(), serde_json::json!(3))]);
        let hps = builtin_hyperparameters(Algorithm::Kmeans, &user, &data).unwrap();
        assert_eq!(hps["k"], "3");
        let user = BTreeMap::from([("min_samples_split".to_string(), serde_json::json!(4))]);
        let err = builtin_hyperparameters(Algorithm::GradientBoosting, &user, &data).unwrap_err();
        assert!(err.contains("min_samples_split"), "{err}");
    }
}
