//! Tracked runs on SageMaker: every training job mlctl started for a project (tuning trials
//! included) is a run, found with SageMaker's Search by the job's `mlctl:project` tag; a
//! run's log is its training job's log in CloudWatch Logs (`logs.rs`).
//!
//! # Guarantees
//! - One run per SageMaker training job, oldest first; a failed job retried under its next
//!   attempt name (`<name>-r2`) is a second run, as it is a second job on SageMaker.
//! - A tuning trial is a run whose `parent` is its tuning job (SageMaker copies the tuning
//!   job's tags onto the training jobs it launches).
//!
//! # Caveats
//! Only the project tag is sent as a Search filter (moto evaluates no filter after a tag
//! filter); the resource filter is applied here.

use crate::aws::Aws;
use crate::error::{aws_err, is_not_found, provider_err};
use crate::logs::{self, Bound, LogSource};
use aws_sdk_sagemaker::primitives::DateTimeFormat;
use aws_sdk_sagemaker::types::{
    Filter, Operator, ResourceType, SearchExpression, SortOrder, TrainingJob,
    TrainingJobSortByOptions, TrainingJobStatus,
};
use mlctl_core::error::Result;
use mlctl_core::{ErrorKind, RunRecord};

/// The runs of `project`, oldest first; `resource` keeps only one TrainingJob's.
///
/// # Errors
/// What SageMaker's Search answers (access denied, ...).
pub(crate) async fn list(
    aws: &Aws,
    project: &str,
    resource: Option<&str>,
) -> Result<Vec<RunRecord>> {
    let records = aws
        .sm
        .search()
        .resource(ResourceType::TrainingJob)
        .search_expression(
            SearchExpression::builder()
                .filters(
                    Filter::builder()
                        .name("Tags.mlctl:project")
                        .operator(Operator::Equals)
                        .value(project)
                        .build(),
                )
                .build(),
        )
        .max_results(100)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| aws_err("Search", e))?;
    let want = resource.map(|r| format!("TrainingJob/{r}"));
    let mut runs: Vec<(i64, RunRecord)> = records
        .iter()
        .filter_map(|r| r.training_job())
        .filter(|j| tag(j, "mlctl:project") == Some(project))
        .filter(|j| {
            want.as_deref()
                .is_none_or(|w| tag(j, "mlctl:resource") == Some(w))
        })
        .map(|j| {
            (
                j.creation_time()
                    .map(|t| t.to_millis().unwrap_or(0))
                    .unwrap_or(0),
                run_record(j),
            )
        })
        .collect();
    runs.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
    Ok(runs.into_iter().map(|(_, r)| r).collect())
}

fn tag<'a>(job: &'a TrainingJob, key: &str) -> Option<&'a str> {
    job.tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

/// A training job as a run: its name is the run id (what the console and CloudWatch Logs
/// show), its hyperparameters without SageMaker's own, its metrics as the trainer reports them.
fn run_record(j: &TrainingJob) -> RunRecord {
    let name = j.training_job_name().unwrap_or_default().to_string();
    let raw: Vec<(String, f64)> = j
        .final_metric_data_list()
        .iter()
        .filter_map(|m| Some((m.metric_name()?.to_string(), m.value()? as f64)))
        .collect();
    let status = match j.training_job_status() {
        Some(TrainingJobStatus::Completed) => "completed",
        Some(TrainingJobStatus::Failed | TrainingJobStatus::Stopped) => "failed",
        _ => "running",
    };
    let duration = match (j.training_start_time(), j.training_end_time()) {
        (Some(a), Some(b)) => (b.as_secs_f64() - a.as_secs_f64()).max(0.0),
        _ => j.training_time_in_seconds().unwrap_or(0) as f64,
    };
    RunRecord {
        id: name.clone(),
        job_name: name,
        resource: tag(j, "mlctl:resource")
            .map(|r| r.strip_prefix("TrainingJob/").unwrap_or(r).to_string())
            .unwrap_or_default(),
        status: status.into(),
        params: j
            .hyper_parameters()
            .map(|hps| {
                hps.iter()
                    .filter(|(k, _)| !k.starts_with("sagemaker_"))
                    .map(|(k, v)| {
                        let v = serde_json::from_str(v)
                            .unwrap_or_else(|_| serde_json::Value::String(v.clone()));
                        (k.clone(), v)
                    })
                    .collect()
            })
            .unwrap_or_default(),
        metrics: {
            let no_hps = std::collections::HashMap::new();
            let hps = j.hyper_parameters().unwrap_or(&no_hps);
            crate::trainer::normalize_metrics(&raw, crate::trainer::Reporter::of(hps))
        },
        artifacts: j
            .model_artifacts()
            .and_then(|a| a.s3_model_artifacts())
            .filter(|a| !a.is_empty())
            .map(|a| vec![a.to_string()])
            .unwrap_or_default(),
        data_digest: tag(j, "mlctl:dataset").unwrap_or_default().to_string(),
        code_digest: None,
        commit: tag(j, "mlctl:commit").unwrap_or_default().to_string(),
        started_at: j
            .creation_time()
            .and_then(|t| t.fmt(DateTimeFormat::DateTime).ok())
            .unwrap_or_default(),
        duration_secs: duration,
        parent: j
            .tuning_job_arn()
            .and_then(|a| a.rsplit_once(":hyper-parameter-tuning-job/"))
            .map(|(_, n)| n.to_string()),
        evaluation: None,
    }
}

/// The log of a training job, or of every trial of a tuning job (each under a header),
/// bounded ([`logs::WHOLE`] in all). A job without a log says where it was looked for.
///
/// # Errors
/// `NotFound` when SageMaker knows no training or tuning job of that name; what CloudWatch
/// Logs answers otherwise.
pub(crate) async fn job_log(aws: &Aws, job: &str) -> Result<String> {
    match aws
        .sm
        .describe_training_job()
        .training_job_name(job)
        .send()
        .await
    {
        Ok(_) => return one_log(aws, job, logs::WHOLE).await,
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(aws_err("DescribeTrainingJob", e)),
    }
    let tuning = match aws
        .sm
        .describe_hyper_parameter_tuning_job()
        .hyper_parameter_tuning_job_name(job)
        .send()
        .await
    {
        Ok(d) => d,
        Err(e) if is_not_found(&e) => {
            return Err(provider_err(
                ErrorKind::NotFound,
                "logs",
                format!(
                    "SageMaker has no training or tuning job `{job}`; `mlctl runs list` shows the runs and their jobs"
                ),
            ));
        }
        Err(e) => return Err(aws_err("DescribeHyperParameterTuningJob", e)),
    };
    let trials: Vec<(String, String)> = if aws.features.list_tuning_trials {
        aws.sm
            .list_training_jobs_for_hyper_parameter_tuning_job()
            .hyper_parameter_tuning_job_name(job)
            .sort_by(TrainingJobSortByOptions::CreationTime)
            .sort_order(SortOrder::Ascending)
            .max_results(100)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| aws_err("ListTrainingJobsForHyperParameterTuningJob", e))?
            .iter()
            .map(|s| {
                (
                    s.training_job_name().unwrap_or_default().to_string(),
                    s.training_job_status()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                )
            })
            .collect()
    } else {
        // Without the trial list, the best trial is the one SageMaker names.
        tuning
            .best_training_job()
            .and_then(|b| b.training_job_name())
            .map(|n| (n.to_string(), "best".to_string()))
            .into_iter()
            .collect()
    };
    if trials.is_empty() {
        return Ok(format!(
            "[tuning job {job} has no trials yet, so no log in {}]\n",
            logs::TRAINING_GROUP
        ));
    }
    let n = trials.len();
    let share = Bound {
        lines: (logs::WHOLE.lines / n).max(50),
        bytes: (logs::WHOLE.bytes / n).max(16 << 10),
    };
    let mut out = String::new();
    for (name, status) in trials {
        out.push_str(&format!("== trial {name} ({status}) ==\n"));
        out.push_str(&one_log(aws, &name, share).await?);
    }
    Ok(out)
}

async fn one_log(aws: &Aws, job: &str, bound: Bound) -> Result<String> {
    let source = LogSource::TrainingJob(job);
    Ok(match logs::read(aws, source, bound).await? {
        Some(tail) => tail.render(),
        None => format!(
            "[no log was found in {} ({})]\n",
            source.location(),
            source.why_none()
        ),
    })
}

/// What a failed tuning job's message adds: its last failed trial, with SageMaker's reason
/// and the end of that trial's log. Empty when the trials cannot be listed (moto) or none
/// failed.
pub(crate) async fn failed_trial_context(aws: &Aws, tuning_job: &str) -> String {
    if !aws.features.list_tuning_trials {
        return String::new();
    }
    let res = aws
        .sm
        .list_training_jobs_for_hyper_parameter_tuning_job()
        .hyper_parameter_tuning_job_name(tuning_job)
        .status_equals(TrainingJobStatus::Failed)
        .sort_by(TrainingJobSortByOptions::CreationTime)
        .sort_order(SortOrder::Descending)
        .max_results(1)
        .send()
        .await;
    let page = match res {
        Ok(p) => p,
        Err(e) => {
            return format!(
                "\nits failed trials could not be listed: {}",
                aws_err("ListTrainingJobsForHyperParameterTuningJob", e)
            );
        }
    };
    let Some(trial) = page
        .training_job_summaries()
        .first()
        .and_then(|s| Some((s.training_job_name()?, s.failure_reason())))
    else {
        return String::new();
    };
    let (name, reason) = trial;
    format!(
        "\nthe last failed trial, {name}: {}{}",
        reason.unwrap_or("SageMaker gave no reason"),
        logs::failure_context(aws, LogSource::TrainingJob(name)).await
    )
}
