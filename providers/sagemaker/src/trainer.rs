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
//! downloaded once, converted (categorical labels become class indices, sorted by name) and
//! split 80/20 into `train` and `validation` channels, so SageMaker reports held-out metrics.

use crate::aws::{Aws, parse_s3_uri, sm_tags};
use crate::builtins::{DataFacts, Shape, Translate};
use crate::data::put_blob;
use crate::error::{aws_err, is_not_found, provider_err};
use crate::images::{algorithm_image, default_framework_image, supported_algorithms};
use crate::names;
use crate::tuning::{Range, num, param_range};
use async_trait::async_trait;
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
use std::io::Write;
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
                let data = self.prepare_builtin(ctx, req, *algorithm).await?;
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
                // As on the local target: a split dataset gives one channel per part (the
                // script never sees the test rows in `train`), else the whole table is `train`.
                let mut channels = Vec::new();
                if req.dataset.splits.is_empty() {
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
        // With a schema, only its `role: feature` columns are features (ids, ignored and
        // undeclared columns are left out of the converted data).
        let features: Option<Vec<String>> = req.schema.as_ref().map(|s| {
            s.columns
                .iter()
                .filter(|c| c.role() == mlctl_spec::ColumnRole::Feature)
                .filter(|c| Some(&c.name) != label.as_ref())
                .map(|c| c.name.clone())
                .collect()
        });
        let features_key = features
            .as_ref()
            .map(|f| format!("features:{}", f.join(",")));
        let mut id_parts: Vec<&str> = vec![kind, label.as_deref().unwrap_or("")];
        id_parts.extend(sources.iter().map(String::as_str));
        id_parts.extend(features_key.as_deref());
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
        let converted = tokio::task::spawn_blocking(move || {
            convert_for_builtin(&parts, label.as_deref(), features.as_deref(), &seed)
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
        let prepared = Prepared {
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

    async fn submit_training(
        &self,
        ctx: &OpContext,
        req: &TrainingRequest,
        name: &str,
    ) -> Result<JobHandle> {
        let def = self.definition(ctx, req).await?;
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
            Some(TrainingJobStatus::Completed) => JobState::Completed(training_result(&d)),
            Some(TrainingJobStatus::Failed) => JobState::Failed {
                reason: d
                    .failure_reason()
                    .unwrap_or("SageMaker gave no reason")
                    .to_string(),
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
                    reason: d
                        .failure_reason()
                        .unwrap_or("SageMaker gave no reason")
                        .to_string(),
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
            },
        };
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
        result.trials = if self.aws.features.list_tuning_trials {
            self.trials(name).await?
        } else {
            Vec::new()
        };
        if result.trials.is_empty() {
            result.trials.push(Trial {
                number: 1,
                hyperparameters: result.hyperparameters.clone(),
                objective: best
                    .and_then(|b| b.final_hyper_parameter_tuning_job_objective_metric())
                    .and_then(|m| m.value())
                    .map(f64::from),
                status: "completed".into(),
            });
        }
        Ok(JobState::Completed(result))
    }

    async fn trials(&self, tuning_job: &str) -> Result<Vec<Trial>> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .aws
                .sm
                .list_training_jobs_for_hyper_parameter_tuning_job()
                .hyper_parameter_tuning_job_name(tuning_job)
                .set_next_token(token)
                .max_results(100)
                .send()
                .await
                .map_err(|e| aws_err("ListTrainingJobsForHyperParameterTuningJob", e))?;
            for s in page.training_job_summaries() {
                out.push((
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
                ));
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
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

    async fn poll(&self, _ctx: &OpContext, job: &JobHandle) -> Result<JobState> {
        if is_tuning(job) {
            self.poll_tuning(&job.name).await
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
}

// ---------------------------------------------------------------------------------------------
// Results

/// Reads a finished job into mlctl's result.
fn training_result(d: &DescribeTrainingJobOutput) -> TrainingResult {
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
        metrics: normalize_metrics(&raw),
        hyperparameters,
        trials: Vec::new(),
        run_id: d.training_job_arn().map(str::to_string),
        duration_secs: duration,
        evaluation: None,
    }
}

/// SageMaker's metric names (`validation:multiclass_accuracy`) plus the plain names mlctl's
/// gates use (`accuracy`), preferring validation over test over train values.
pub(crate) fn normalize_metrics(raw: &[(String, f64)]) -> BTreeMap<String, f64> {
    let mut out: BTreeMap<String, f64> = raw.iter().cloned().collect();
    let plain_given: Vec<String> = raw
        .iter()
        .filter(|(k, _)| !k.contains(':'))
        .map(|(k, _)| k.clone())
        .collect();
    for channel in ["train:", "test:", "validation:"] {
        for (k, v) in raw {
            let Some(name) = k.strip_prefix(channel) else {
                continue;
            };
            let plain = match name {
                "multiclass_accuracy" | "binary_classification_accuracy" => "accuracy",
                "macro_f_beta" => "f1_macro",
                "binary_f_beta" => "f1",
                other => other,
            };
            if !plain_given.iter().any(|p| p == plain) {
                out.insert(plain.to_string(), *v);
            }
        }
    }
    if !out.contains_key("accuracy")
        && let Some(err) = out.get("merror").or_else(|| out.get("error")).copied()
    {
        out.insert("accuracy".into(), 1.0 - err);
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
struct Converted {
    train: Vec<u8>,
    validation: Vec<u8>,
    classes: Vec<String>,
    feature_dim: usize,
    train_rows: usize,
    classification: bool,
}

/// Builds label-first, header-less CSV (SageMaker's built-in format) from the dataset's
/// train and held-out parts; a single table is split 80/20 by a hash of each row's index and
/// `seed` (deterministic: the same data gives the same split). Class labels are numbered by
/// sorted name across all parts.
fn convert_for_builtin(
    parts: &[Vec<u8>],
    label: Option<&str>,
    only: Option<&[String]>,
    seed: &str,
) -> std::result::Result<Converted, String> {
    use mlctl_ml::table::{ColumnData, Table};
    let read = |bytes: &[u8]| -> std::result::Result<Table, String> {
        let parquet = bytes.starts_with(b"PAR1");
        let mut tmp = tempfile::Builder::new()
            .suffix(if parquet { ".parquet" } else { ".csv" })
            .tempfile()
            .map_err(|e| e.to_string())?;
        tmp.write_all(bytes).map_err(|e| e.to_string())?;
        tmp.flush().map_err(|e| e.to_string())?;
        let format = if parquet {
            mlctl_spec::DataFormat::Parquet
        } else {
            mlctl_spec::DataFormat::Csv
        };
        mlctl_ml::table::read(tmp.path(), format).map_err(|e| e.to_string())
    };
    let tables = parts
        .iter()
        .map(|p| read(p))
        .collect::<std::result::Result<Vec<_>, _>>()?;
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
        for t in &tables {
            if let Some(col) = label_col(t)? {
                classes.extend((0..col.len()).map(|r| col.string_at(r).unwrap_or_default()));
            }
        }
        classes.sort();
        classes.dedup();
    }
    let mut non_numeric = Vec::new();
    let features: Vec<String> = first
        .columns()
        .filter(|(name, _)| Some(*name) != label)
        .filter(|(name, _)| only.is_none_or(|o| o.iter().any(|f| f == name)))
        .filter_map(|(name, col)| match col {
            ColumnData::Str(_) => {
                non_numeric.push(name.to_string());
                None
            }
            _ => Some(name.to_string()),
        })
        .collect();
    if !non_numeric.is_empty() {
        return Err(format!(
            "SageMaker's built-in algorithms take numeric features; {} {} text. Encode {} in a transform, or use script mode",
            non_numeric.join(", "),
            if non_numeric.len() == 1 { "is" } else { "are" },
            if non_numeric.len() == 1 { "it" } else { "them" }
        ));
    }
    if features.is_empty() {
        return Err("has no feature columns".into());
    }
    let line = |t: &Table,
                lab: &Option<ColumnData>,
                r: usize|
     -> std::result::Result<String, String> {
        let mut cells: Vec<String> = Vec::with_capacity(features.len() + 1);
        if let Some(col) = lab {
            let y = if classification {
                let text = col.string_at(r).unwrap_or_default();
                classes.binary_search(&text).unwrap_or(0) as f64
            } else {
                col.f64_at(r)
            };
            cells.push(num(y));
        }
        for f in &features {
            let col = t
                .column(f)
                .ok_or_else(|| format!("a split part lacks column `{f}`"))?;
            let v = match col {
                ColumnData::Bool(b) => b[r].map(|b| if b { 1.0 } else { 0.0 }).unwrap_or(f64::NAN),
                other => other.f64_at(r),
            };
            cells.push(if v.is_nan() {
                String::new()
            } else {
                format!("{v}")
            });
        }
        Ok(cells.join(",") + "\n")
    };
    let mut train = String::new();
    let mut validation = String::new();
    let mut train_rows = 0;
    for (i, t) in tables.iter().enumerate() {
        let lab = label_col(t)?;
        for r in 0..t.n_rows() {
            let held_out = if tables.len() > 1 {
                i > 0
            } else {
                u64::from_str_radix(&names::hash(&[seed, &r.to_string()], 8), 16)
                    .unwrap_or(0)
                    .is_multiple_of(5)
            };
            let text = line(t, &lab, r)?;
            if held_out {
                validation.push_str(&text);
            } else {
                train.push_str(&text);
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
        feature_dim: features.len(),
        train_rows,
        classification,
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
    fn metrics_get_plain_names() {
        let m = normalize_metrics(&[
            ("train:multiclass_accuracy".into(), 0.99),
            ("validation:multiclass_accuracy".into(), 0.95),
            ("validation:macro_f_beta".into(), 0.9),
        ]);
        assert_eq!(m["accuracy"], 0.95);
        assert_eq!(m["f1_macro"], 0.9);
        assert_eq!(m["validation:multiclass_accuracy"], 0.95);
        let m = normalize_metrics(&[("validation:merror".into(), 0.25)]);
        assert_eq!(m["accuracy"], 0.75);
        // A script's own plain metric wins over a channel-prefixed one.
        let m = normalize_metrics(&[
            ("accuracy".into(), 0.5),
            ("validation:accuracy".into(), 0.7),
        ]);
        assert_eq!(m["accuracy"], 0.5);
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
        let err = convert_for_builtin(&[b"name,y\nx,1\nz,2\n".to_vec()], Some("y"), None, "s")
            .err()
            .unwrap();
        assert!(
            err.contains("numeric features") && err.contains("name"),
            "{err}"
        );
        // A text id column that is not a feature is left out instead of refused.
        let c = convert_for_builtin(
            &[b"name,x,y\nx,1,1\nz,2,2\n".to_vec()],
            Some("y"),
            Some(&["x".to_string()]),
            "s",
        )
        .unwrap();
        assert_eq!(c.feature_dim, 1);
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
