//! Trainer: idempotent submission, completion with metrics, failure with a reason, cancel.

use crate::{Check, Fixture, Hooks, NO_HOOK, attempt, call, wait_job};
use mlctl_core::{DatasetVersion, ErrorKind, JobHandle, JobState, Stack, TrainingResult};

/// Registers the fixture's iris table for training (idempotent, shared by checks).
pub(crate) async fn training_data(c: &Check, stack: &Stack, fx: &Fixture) -> DatasetVersion {
    let req = fx.dataset_request(&fx.unique("train-data"), "train-data");
    call!(
        c,
        "registering the training data",
        stack.data.register_dataset(&fx.ctx, &req).await
    )
}

/// Trains the fixture's job once per fixture (later calls find the finished job by name).
pub(crate) async fn trained(c: &Check, stack: &Stack, fx: &Fixture) -> TrainingResult {
    let dataset = training_data(c, stack, fx).await;
    let req = fx.training_request("conf-shared", "shared-job", dataset);
    let job = call!(
        c,
        "submitting the shared training job",
        stack.trainer.submit(&fx.ctx, &req).await
    );
    match wait_job(c, stack, fx, &job).await {
        JobState::Completed(r) => r,
        other => c.fail(format!(
            "the fixture's training job must complete, got {other:?}"
        )),
    }
}

/// Submitting the same job name twice (or concurrently) gives one job; it completes with
/// metrics and an artifact; submitting it after completion returns the finished job.
pub async fn trainer_submit_is_idempotent(stack: &Stack, fx: &Fixture) {
    let c = Check::new("trainer_submit_is_idempotent", stack);
    let dataset = training_data(&c, stack, fx).await;
    let req = fx.training_request("conf-idem", "idem-job", dataset);
    let first = call!(
        c,
        "submitting a training job",
        stack.trainer.submit(&fx.ctx, &req).await
    );
    c.ensure(
        first.name == req.job_name,
        format!(
            "the job must be named as requested ({}), got {}",
            req.job_name, first.name
        ),
    );
    let second = call!(
        c,
        "submitting the same job name again",
        stack.trainer.submit(&fx.ctx, &req).await
    );
    c.ensure(
        second == first,
        format!(
            "submitting the same job name again must return the same job: {first:?} then {second:?}"
        ),
    );
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let (trainer, ctx, req) = (stack.trainer.clone(), fx.ctx.clone(), req.clone());
        set.spawn(async move { attempt!(trainer.submit(&ctx, &req).await) });
    }
    while let Some(r) = set.join_next().await {
        let h = c.ok(
            r.unwrap_or_else(|e| c.fail(format!("submit panicked: {e}"))),
            "submitting concurrently",
        );
        c.ensure(
            h == first,
            "concurrent submissions of one job name must all return the same job",
        );
    }

    let result = match wait_job(&c, stack, fx, &first).await {
        JobState::Completed(r) => r,
        JobState::Failed { reason } => c.fail(format!(
            "the fixture's logistic regression must train, it failed: {reason}"
        )),
        _ => unreachable!("wait_job returns terminal states"),
    };
    c.ensure(
        result.job_name == first.name,
        "the result must name its job",
    );
    c.ensure(
        !result.artifact_uri.is_empty(),
        "a completed job must say where its model artifact is",
    );
    c.ensure(
        !result.metrics.is_empty(),
        "a completed job must report metrics",
    );
    c.ensure(
        result.metrics.values().all(|v| v.is_finite()),
        format!("metrics must be finite numbers, got {:?}", result.metrics),
    );
    c.ensure(
        result.metrics.contains_key("accuracy"),
        format!(
            "a classifier must report `accuracy`, got {:?}",
            result.metrics.keys().collect::<Vec<_>>()
        ),
    );

    let after = call!(
        c,
        "submitting a finished job again",
        stack.trainer.submit(&fx.ctx, &req).await
    );
    c.ensure(
        after == first,
        "submitting a completed job again must return it, not start a second",
    );
    match call!(
        c,
        "polling the job after resubmission",
        stack.trainer.poll(&fx.ctx, &after).await
    ) {
        JobState::Completed(r) => c.ensure(
            r.artifact_uri == result.artifact_uri && r.metrics == result.metrics,
            "a completed job resubmitted must keep its result (it must not train again)",
        ),
        other => c.fail(format!(
            "a completed job resubmitted must stay completed, got {other:?}"
        )),
    }

    // Run tracking is checked where the trainer says it tracks runs.
    if !stack.trainer.capabilities().runs {
        return;
    }
    match attempt!(stack.trainer.runs(&fx.ctx, Some("conf-idem")).await) {
        Ok(runs) => {
            let top: Vec<_> = runs
                .iter()
                .filter(|r| r.job_name == first.name && r.parent.is_none())
                .collect();
            c.ensure(
                top.len() == 1,
                format!(
                    "a job submitted repeatedly must have one tracked run, got {}",
                    top.len()
                ),
            );
            c.ensure(
                top[0].status == "completed",
                format!(
                    "the run of a completed job must be `completed`, got `{}`",
                    top[0].status
                ),
            );
        }
        Err(e) => c.fail(format!(
            "runs() failed although the trainer's capabilities say it tracks runs: {e}"
        )),
    }
}

/// A job that fails ends `Failed` with a reason; submitting the job name again starts a new
/// attempt (so a re-run after the cause is fixed converges). Needs [`Hooks::failing_training`].
pub async fn trainer_failure_reports_reason(stack: &Stack, fx: &Fixture, hooks: &dyn Hooks) {
    let c = Check::new("trainer_failure_reports_reason", stack);
    let dataset = training_data(&c, stack, fx).await;
    let good = fx.training_request("conf-fail", "failing-job", dataset);
    let Some(bad) = hooks.failing_training(&good) else {
        c.fail(NO_HOOK.replace("{hook}", "failing_training"))
    };
    let job = call!(
        c,
        "submitting a job that will fail",
        stack.trainer.submit(&fx.ctx, &bad).await
    );
    match wait_job(&c, stack, fx, &job).await {
        JobState::Failed { reason } => c.ensure(
            !reason.trim().is_empty(),
            "a failed job must say why it failed",
        ),
        other => c.fail(format!("a job made to fail must end Failed, got {other:?}")),
    }
    let mut retry = good.clone();
    retry.job_name = bad.job_name.clone();
    let again = call!(
        c,
        "submitting the failed job's name again",
        stack.trainer.submit(&fx.ctx, &retry).await
    );
    match wait_job(&c, stack, fx, &again).await {
        JobState::Completed(_) => {}
        other => c.fail(format!(
            "resubmitting a failed job must start a new attempt that can succeed, got {other:?}"
        )),
    }
}

/// Cancelling a job is accepted and the job ends (failed, or completed if it won the race).
pub async fn trainer_cancel(stack: &Stack, fx: &Fixture) {
    let c = Check::new("trainer_cancel", stack);
    let dataset = training_data(&c, stack, fx).await;
    let req = fx.training_request("conf-cancel", "cancel-job", dataset);
    let job = call!(
        c,
        "submitting a job to cancel",
        stack.trainer.submit(&fx.ctx, &req).await
    );
    call!(
        c,
        "cancelling a submitted job",
        stack.trainer.cancel(&fx.ctx, &job).await
    );
    // Ends one way or the other; `wait_job` fails the check if it never does.
    let _ = wait_job(&c, stack, fx, &job).await;
    call!(
        c,
        "cancelling a finished job (must be harmless)",
        stack.trainer.cancel(&fx.ctx, &job).await
    );
}

/// Polling a job that was never submitted fails with NotFound.
pub async fn trainer_unknown_job(stack: &Stack, fx: &Fixture) {
    let c = Check::new("trainer_unknown_job", stack);
    let job = JobHandle {
        name: fx.unique("never-submitted"),
        provider_id: String::new(),
    };
    match attempt!(stack.trainer.poll(&fx.ctx, &job).await) {
        Err(e) => c.ensure(
            e.kind == ErrorKind::NotFound,
            format!(
                "polling an unknown job must fail with NotFound, got {:?}: {e}",
                e.kind
            ),
        ),
        Ok(s) => c.fail(format!(
            "polling a job never submitted must fail, got {s:?}"
        )),
    }
}
