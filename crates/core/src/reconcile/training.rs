//! `kind: TrainingJob`: submits a job under its deterministic name (so a re-run finds the job
//! it started before) and polls it to the end; past the spec's `compute.timeout` the job is
//! cancelled.

use super::Applied;
use crate::apply::poll::{Poll, PollOutcome, poll_until, timeout_of};
use crate::apply::{Shared, output_of, tags, to_json};
use crate::components::*;
use crate::error::{ErrorKind, ProviderError, Result};
use crate::fingerprint::deterministic_name;
use crate::plan::DesiredResource;
use crate::retry;
use crate::state::Health;
use mlctl_spec::{Kind, ResourceId, TrainingJobSpec};
use std::collections::BTreeMap;

/// Runs the job (or finds it) and waits for its result.
pub(crate) async fn reconcile(
    sh: &Shared,
    d: &DesiredResource,
    spec: &TrainingJobSpec,
) -> Result<Applied> {
    let id = &d.resource.id;
    let ds_id = ResourceId::new(Kind::Dataset, spec.dataset.clone());
    let dataset: DatasetVersion = output_of(sh, &ds_id)?;
    let ds_spec = sh.desired.get(&ds_id).and_then(|d| d.resource.as_dataset());
    let target_column = ds_spec.and_then(|ds| ds.target.clone());
    let split = ds_spec.and_then(|ds| ds.split.clone());
    let schema = ds_spec.and_then(|ds| ds.schema.clone());
    let job_name = deterministic_name(&sh.ctx.project, &id.name, &d.fingerprint, 63);
    let req = TrainingRequest {
        job_name,
        resource: id.name.clone(),
        // The request holds the values of `${env:...}` references; the spec keeps them.
        spec: crate::env::resolved(mlctl_spec::Kind::TrainingJob, spec)?,
        dataset,
        target_column,
        schema,
        fingerprint: d.fingerprint.0.clone(),
        tags: tags(sh, d),
        split,
    };
    let trainer = &sh.stack.trainer;
    let handle = retry!(&sh.opts, trainer.submit(&sh.ctx, &req).await)?;
    sh.progress(id, format!("training job {} submitted", handle.name));
    let timeout = timeout_of(sh, spec.compute.as_ref());
    let outcome = poll_until(sh, id, &trainer.capabilities(), timeout, || async {
        Ok(
            match retry!(&sh.opts, trainer.poll(&sh.ctx, &handle).await)? {
                JobState::Completed(result) => Poll::Ready(Ok(result)),
                JobState::Failed { reason } => Poll::Ready(Err(reason)),
                JobState::Running {
                    progress: Some(p),
                    message,
                } => Poll::Pending(format!(
                    "running {:.0}% {}",
                    p * 100.0,
                    message.unwrap_or_default()
                )),
                JobState::Running { message, .. } => {
                    Poll::Pending(format!("running {}", message.unwrap_or_default()))
                }
                JobState::Pending => Poll::Pending("pending".into()),
            },
        )
    })
    .await?;
    let failed = |kind: ErrorKind, message: String| {
        ProviderError::new(kind, sh.stack.provider.clone(), "training", message)
    };
    match outcome {
        PollOutcome::Ready(Ok(result)) => {
            let detail = format!(
                "job {} completed; {}",
                handle.name,
                show_metrics(&result.metrics)
            );
            Ok(Applied::new(detail, to_json(&result), Health::Healthy))
        }
        PollOutcome::Ready(Err(reason)) => Err(failed(
            ErrorKind::Failed,
            format!("training job {} failed: {reason}", handle.name),
        )),
        PollOutcome::TimedOut => {
            let stopped = if !trainer.capabilities().cancel {
                "this target cannot stop it, so it may still be running".to_string()
            } else {
                match retry!(&sh.opts, trainer.cancel(&sh.ctx, &handle).await) {
                    Ok(()) => "it was stopped".to_string(),
                    Err(e) => format!("stopping it failed: {e}"),
                }
            };
            Err(failed(
                ErrorKind::Timeout,
                format!(
                    "training job {} did not finish within {:?}; {stopped}",
                    handle.name, timeout
                ),
            ))
        }
    }
}

fn show_metrics(m: &BTreeMap<String, f64>) -> String {
    m.iter()
        .take(4)
        .map(|(k, v)| format!("{k}={v:.4}"))
        .collect::<Vec<_>>()
        .join(" ")
}
