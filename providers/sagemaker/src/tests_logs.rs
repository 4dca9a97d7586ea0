//! Runs and logs against SDK mocks: CloudWatch Logs' pagination (GetLogEvents repeats its
//! `nextForwardToken` at the end of a stream), several instances merged in time order, the
//! bounds, failures that carry the end of their log, and the runs SageMaker's Search finds.
//! moto's training jobs write no log, so `tests/moto.rs` writes one itself.

use crate::aws::Features;
use crate::tests::{JOB, JOB_ARN, aws_with_logs, ctx, no_log_group, sm_error};
use crate::{SageMakerDeployer, SageMakerTrainer};
use aws_sdk_cloudwatchlogs::Client as Logs;
use aws_sdk_cloudwatchlogs::operation::describe_log_streams::DescribeLogStreamsOutput;
use aws_sdk_cloudwatchlogs::operation::get_log_events::GetLogEventsOutput;
use aws_sdk_cloudwatchlogs::types::{LogStream, OutputLogEvent};
use aws_sdk_sagemaker::Client as Sm;
use aws_sdk_sagemaker::operation::describe_hyper_parameter_tuning_job::DescribeHyperParameterTuningJobOutput;
use aws_sdk_sagemaker::operation::describe_training_job::DescribeTrainingJobOutput;
use aws_sdk_sagemaker::operation::list_training_jobs_for_hyper_parameter_tuning_job::ListTrainingJobsForHyperParameterTuningJobOutput;
use aws_sdk_sagemaker::operation::search::SearchOutput;
use aws_sdk_sagemaker::primitives::DateTime;
use aws_sdk_sagemaker::types::{
    HyperParameterTrainingJobSummary, HyperParameterTuningJobStatus, MetricData, ModelArtifacts,
    SearchRecord, Tag, TrainingJob, TrainingJobStatus,
};
use aws_smithy_mocks::{Rule, mock};
use mlctl_core::{
    DeployState, Deployer, DeploymentHandle, ErrorKind, JobHandle, JobState, Trainer,
};

const GROUP: &str = "/aws/sagemaker/TrainingJobs";

fn events(page: &[(i64, &str)], forward: &str) -> GetLogEventsOutput {
    GetLogEventsOutput::builder()
        .set_events(Some(
            page.iter()
                .map(|(t, m)| OutputLogEvent::builder().timestamp(*t).message(*m).build())
                .collect(),
        ))
        .next_forward_token(forward)
        .next_backward_token("b/0")
        .build()
}

/// The page of `stream` that GetLogEvents returns for `token` (`None`: the first read).
fn page(stream: &'static str, token: Option<&'static str>, out: GetLogEventsOutput) -> Rule {
    mock!(Logs::get_log_events)
        .match_requests(move |r| {
            r.log_group_name() == Some(GROUP)
                && r.log_stream_name() == Some(stream)
                && r.start_from_head() == Some(true)
                && r.next_token() == token
        })
        .then_output(move || out.clone())
}

fn streams(names: &[&'static str]) -> Rule {
    let names: Vec<&'static str> = names.to_vec();
    mock!(Logs::describe_log_streams)
        .match_requests(|r| {
            r.log_group_name() == Some(GROUP)
                && r.log_stream_name_prefix() == Some(&format!("{JOB}/"))
        })
        .then_output(move || {
            DescribeLogStreamsOutput::builder()
                .set_log_streams(Some(
                    names
                        .iter()
                        .map(|n| LogStream::builder().log_stream_name(*n).build())
                        .collect(),
                ))
                .build()
        })
}

fn training_job(status: TrainingJobStatus) -> Rule {
    mock!(Sm::describe_training_job)
        .match_requests(|r| r.training_job_name() == Some(JOB))
        .sequence()
        .output(move || {
            DescribeTrainingJobOutput::builder()
                .training_job_name(JOB)
                .training_job_arn(JOB_ARN)
                .training_job_status(status.clone())
                .failure_reason("AlgorithmError: ExecuteUserScriptError: exit code 1")
                .build()
        })
        .repeatedly()
        .build()
}

fn handle() -> JobHandle {
    JobHandle {
        name: JOB.into(),
        provider_id: JOB_ARN.into(),
    }
}

const ALGO1: &str = "proj-train-0123456789ab/algo-1-1700000000";
const ALGO2: &str = "proj-train-0123456789ab/algo-2-1700000000";

#[tokio::test]
async fn a_log_is_every_stream_read_to_its_repeated_token_merged_in_time_order() {
    let listed = streams(&[ALGO2, ALGO1]);
    // algo-1: two pages, then the end (the token comes back unchanged).
    let a1 = page(ALGO1, None, events(&[(1, "a1\n"), (3, "a3")], "f/1"));
    let a2 = page(ALGO1, Some("f/1"), events(&[(5, "a5")], "f/2"));
    let a_end = page(ALGO1, Some("f/2"), events(&[], "f/2"));
    let b1 = page(ALGO2, None, events(&[(2, "b2"), (4, "b4")], "g/1"));
    let b_end = page(ALGO2, Some("g/1"), events(&[], "g/1"));
    let job = training_job(TrainingJobStatus::Completed);
    let trainer = SageMakerTrainer::new(aws_with_logs(
        &[],
        &[&job],
        &[&listed, &a1, &a2, &a_end, &b1, &b_end],
        Features::AWS,
    ));
    let log = trainer.logs(&ctx(), JOB).await.expect("logs");
    assert_eq!(
        log, "[algo-1] a1\n[algo-2] b2\n[algo-1] a3\n[algo-2] b4\n[algo-1] a5\n",
        "two instances: each line says which one wrote it"
    );
    for (rule, name) in [
        (&a1, "a1"),
        (&a2, "a2"),
        (&a_end, "a_end"),
        (&b1, "b1"),
        (&b_end, "b_end"),
    ] {
        assert_eq!(
            rule.num_calls(),
            1,
            "{name}: every page is read once, none after the end"
        );
    }
}

#[tokio::test]
async fn one_instance_is_shown_without_a_prefix() {
    let listed = streams(&[ALGO1]);
    let a1 = page(
        ALGO1,
        None,
        events(&[(1, "epoch 1"), (2, "epoch 2")], "f/1"),
    );
    let a_end = page(ALGO1, Some("f/1"), events(&[], "f/1"));
    let job = training_job(TrainingJobStatus::Completed);
    let trainer = SageMakerTrainer::new(aws_with_logs(
        &[],
        &[&job],
        &[&listed, &a1, &a_end],
        Features::AWS,
    ));
    assert_eq!(
        trainer.logs(&ctx(), JOB).await.expect("logs"),
        "epoch 1\nepoch 2\n"
    );
}

#[tokio::test]
async fn a_long_log_keeps_its_last_lines_and_says_how_much_was_cut() {
    let first: Vec<String> = (1..=6_000).map(|i| format!("line {i}")).collect();
    let second: Vec<String> = (6_001..=12_000).map(|i| format!("line {i}")).collect();
    // Line `n` written at time `n`.
    fn as_events(lines: &[String]) -> Vec<(i64, &str)> {
        lines
            .iter()
            .map(|l| (l[5..].parse().expect("line n"), l.as_str()))
            .collect()
    }
    let listed = streams(&[ALGO1]);
    let p1 = page(ALGO1, None, events(&as_events(&first), "f/1"));
    let p2 = page(ALGO1, Some("f/1"), events(&as_events(&second), "f/2"));
    let end = page(ALGO1, Some("f/2"), events(&[], "f/2"));
    let job = training_job(TrainingJobStatus::Completed);
    let trainer = SageMakerTrainer::new(aws_with_logs(
        &[],
        &[&job],
        &[&listed, &p1, &p2, &end],
        Features::AWS,
    ));
    let log = trainer.logs(&ctx(), JOB).await.expect("logs");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 10_001, "the note and the last 10,000 lines");
    assert!(
        lines[0].starts_with("[... 2000 earlier lines (")
            && lines[0].contains("not shown; the whole log is in CloudWatch Logs group /aws/sagemaker/TrainingJobs, streams proj-train-0123456789ab/*"),
        "{}",
        lines[0]
    );
    assert_eq!(lines[1], "line 2001");
    assert_eq!(lines[10_000], "line 12000");
}

#[tokio::test]
async fn a_failed_training_job_carries_the_last_lines_of_its_log() {
    let lines: Vec<String> = (1..=30).map(|i| format!("Traceback line {i}")).collect();
    let evs: Vec<(i64, &str)> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| (i as i64, l.as_str()))
        .collect();
    let listed = streams(&[ALGO1]);
    let p1 = page(ALGO1, None, events(&evs, "f/1"));
    let end = page(ALGO1, Some("f/1"), events(&[], "f/1"));
    let job = training_job(TrainingJobStatus::Failed);
    let trainer = SageMakerTrainer::new(aws_with_logs(
        &[],
        &[&job],
        &[&listed, &p1, &end],
        Features::AWS,
    ));
    let JobState::Failed { reason } = trainer.poll(&ctx(), &handle()).await.expect("poll") else {
        panic!("a failed job polls as Failed");
    };
    assert!(reason.starts_with("AlgorithmError: ExecuteUserScriptError: exit code 1\nlast 20 lines of its log (CloudWatch Logs group /aws/sagemaker/TrainingJobs, streams proj-train-0123456789ab/*):\n  Traceback line 11\n"), "{reason}");
    assert!(reason.ends_with("\n  Traceback line 30"), "{reason}");
    assert!(!reason.contains("Traceback line 10\n"), "{reason}");
}

#[tokio::test]
async fn a_failed_job_without_a_log_says_where_it_looked() {
    let job = training_job(TrainingJobStatus::Failed);
    let trainer = SageMakerTrainer::new(aws_with_logs(
        &[],
        &[&job],
        &[&no_log_group()],
        Features::AWS,
    ));
    let JobState::Failed { reason } = trainer.poll(&ctx(), &handle()).await.expect("poll") else {
        panic!("a failed job polls as Failed");
    };
    assert_eq!(
        reason,
        "AlgorithmError: ExecuteUserScriptError: exit code 1\nno log was found in CloudWatch Logs group /aws/sagemaker/TrainingJobs, streams proj-train-0123456789ab/* (a job that never started its container writes none)"
    );
    // The same for `logs`: a note, not an error.
    assert!(
        trainer
            .logs(&ctx(), JOB)
            .await
            .expect("logs")
            .starts_with("[no log was found in CloudWatch Logs group /aws/sagemaker/TrainingJobs")
    );
}

#[tokio::test]
async fn a_log_that_cannot_be_read_does_not_hide_the_failure() {
    let denied = mock!(Logs::describe_log_streams)
        .sequence()
        .http_status(
            400,
            sm_error(
                "AccessDeniedException",
                "not authorized to perform: logs:DescribeLogStreams",
            ),
        )
        .repeatedly()
        .build();
    let job = training_job(TrainingJobStatus::Failed);
    let trainer = SageMakerTrainer::new(aws_with_logs(&[], &[&job], &[&denied], Features::AWS));
    let JobState::Failed { reason } = trainer.poll(&ctx(), &handle()).await.expect("poll") else {
        panic!("a failed job polls as Failed");
    };
    assert!(
        reason.starts_with("AlgorithmError: ExecuteUserScriptError: exit code 1\nits log could not be read from CloudWatch Logs group /aws/sagemaker/TrainingJobs")
            && reason.contains("logs:DescribeLogStreams"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_failed_tuning_job_shows_its_last_failed_trial_and_that_trials_log() {
    let tuning_arn =
        "arn:aws:sagemaker:us-east-1:123456789012:hyper-parameter-tuning-job/proj-tune-01";
    let describe = mock!(Sm::describe_hyper_parameter_tuning_job).then_output(|| {
        DescribeHyperParameterTuningJobOutput::builder()
            .hyper_parameter_tuning_job_name("proj-tune-01")
            .hyper_parameter_tuning_job_status(HyperParameterTuningJobStatus::Failed)
            .failure_reason("All training jobs failed.")
            .build()
    });
    let trials = mock!(Sm::list_training_jobs_for_hyper_parameter_tuning_job)
        .match_requests(|r| r.status_equals() == Some(&TrainingJobStatus::Failed))
        .then_output(|| {
            ListTrainingJobsForHyperParameterTuningJobOutput::builder()
                .training_job_summaries(
                    HyperParameterTrainingJobSummary::builder()
                        .training_job_name(JOB)
                        .training_job_arn(JOB_ARN)
                        .training_job_status(TrainingJobStatus::Failed)
                        .failure_reason("AlgorithmError: out of memory")
                        .creation_time(DateTime::from_secs(1))
                        .set_tuned_hyper_parameters(Some(Default::default()))
                        .build(),
                )
                .build()
        });
    let listed = streams(&[ALGO1]);
    let p1 = page(ALGO1, None, events(&[(1, "MemoryError")], "f/1"));
    let end = page(ALGO1, Some("f/1"), events(&[], "f/1"));
    let trainer = SageMakerTrainer::new(aws_with_logs(
        &[],
        &[&describe, &trials],
        &[&listed, &p1, &end],
        Features::AWS,
    ));
    let tuning = JobHandle {
        name: "proj-tune-01".into(),
        provider_id: tuning_arn.into(),
    };
    let JobState::Failed { reason } = trainer.poll(&ctx(), &tuning).await.expect("poll") else {
        panic!("a failed tuning job polls as Failed");
    };
    assert_eq!(
        reason,
        "All training jobs failed.\nthe last failed trial, proj-train-0123456789ab: AlgorithmError: out of memory\nlast 1 line of its log (CloudWatch Logs group /aws/sagemaker/TrainingJobs, streams proj-train-0123456789ab/*):\n  MemoryError"
    );
}

#[tokio::test]
async fn logs_of_a_job_sagemaker_does_not_know_are_not_found() {
    let none = mock!(Sm::describe_training_job)
        .sequence()
        .http_status(
            400,
            sm_error("ValidationException", "Requested resource not found."),
        )
        .build();
    let no_tuning = mock!(Sm::describe_hyper_parameter_tuning_job)
        .sequence()
        .http_status(
            400,
            sm_error(
                "ResourceNotFound",
                "Amazon SageMaker can't find a tuning job",
            ),
        )
        .build();
    let trainer =
        SageMakerTrainer::new(aws_with_logs(&[], &[&none, &no_tuning], &[], Features::AWS));
    let err = trainer
        .logs(&ctx(), "proj-nope")
        .await
        .expect_err("unknown job");
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert!(err.to_string().contains("`mlctl runs list`"), "{err}");
}

fn search_record(name: &str, resource: &str, secs: i64, tuning: Option<&str>) -> SearchRecord {
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
    SearchRecord::builder()
        .training_job(
            TrainingJob::builder()
                .training_job_name(name)
                .training_job_arn(format!(
                    "arn:aws:sagemaker:us-east-1:123456789012:training-job/{name}"
                ))
                .set_tuning_job_arn(tuning.map(|t| {
                    format!(
                        "arn:aws:sagemaker:us-east-1:123456789012:hyper-parameter-tuning-job/{t}"
                    )
                }))
                .training_job_status(TrainingJobStatus::Completed)
                .creation_time(DateTime::from_secs(secs))
                .training_start_time(DateTime::from_secs(secs))
                .training_end_time(DateTime::from_secs(secs + 90))
                .hyper_parameters("max_depth", "6")
                .hyper_parameters("sagemaker_program", "\"mlctl_entry.sh\"")
                .final_metric_data_list(
                    MetricData::builder()
                        .metric_name("validation:accuracy")
                        .value(0.9)
                        .build(),
                )
                .model_artifacts(
                    ModelArtifacts::builder()
                        .s3_model_artifacts(format!("s3://bkt/p/artifacts/{name}/model.tar.gz"))
                        .build(),
                )
                .tags(tag("mlctl:project", "proj"))
                .tags(tag("mlctl:resource", &format!("TrainingJob/{resource}")))
                .tags(tag("mlctl:commit", "c0ffee"))
                .tags(tag("mlctl:dataset", "d1g3st"))
                .build(),
        )
        .build()
}

#[tokio::test]
async fn runs_are_the_projects_training_jobs_oldest_first_across_search_pages() {
    let first = mock!(Sm::search)
        .match_requests(|r| r.next_token().is_none())
        .then_output(|| {
            SearchOutput::builder()
                .results(search_record("proj-train-b", "train", 200, None))
                .results(search_record("proj-other-a", "other", 50, None))
                .next_token("page2")
                .build()
        });
    let second = mock!(Sm::search)
        .match_requests(|r| {
            r.next_token() == Some("page2")
                && r.search_expression().is_some_and(|e| {
                    e.filters().iter().any(|f| {
                        f.name() == Some("Tags.mlctl:project") && f.value() == Some("proj")
                    })
                })
        })
        .then_output(|| {
            SearchOutput::builder()
                .results(search_record(
                    "proj-train-a",
                    "train",
                    100,
                    Some("proj-tune"),
                ))
                .build()
        });
    let trainer = SageMakerTrainer::new(aws_with_logs(&[], &[&first, &second], &[], Features::AWS));
    let runs = trainer.runs(&ctx(), Some("train")).await.expect("runs");
    let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        vec!["proj-train-a", "proj-train-b"],
        "only `train`'s, oldest first"
    );
    let r = &runs[0];
    assert_eq!(r.job_name, "proj-train-a");
    assert_eq!(r.resource, "train");
    assert_eq!(r.status, "completed");
    assert_eq!(
        r.parent.as_deref(),
        Some("proj-tune"),
        "a trial names its tuning job"
    );
    assert_eq!(r.commit, "c0ffee");
    assert_eq!(r.data_digest, "d1g3st");
    assert_eq!(r.duration_secs, 90.0);
    assert_eq!(r.started_at, "1970-01-01T00:01:40Z");
    assert_eq!(
        r.params.keys().collect::<Vec<_>>(),
        vec!["max_depth"],
        "SageMaker's own hyperparameters are not the run's"
    );
    assert_eq!(r.params["max_depth"], serde_json::json!(6));
    assert!(
        r.metrics.contains_key("validation:accuracy"),
        "{:?}",
        r.metrics
    );
    assert_eq!(
        r.artifacts,
        vec!["s3://bkt/p/artifacts/proj-train-a/model.tar.gz"]
    );
    assert_eq!(runs[1].parent, None);
}

#[tokio::test]
async fn a_failed_endpoint_carries_the_end_of_the_streams_written_last() {
    let describe = mock!(Sm::describe_endpoint).then_output(|| {
        aws_sdk_sagemaker::operation::describe_endpoint::DescribeEndpointOutput::builder()
            .endpoint_name("proj-iris")
            .endpoint_arn("arn:aws:sagemaker:us-east-1:123456789012:endpoint/proj-iris")
            .endpoint_config_name("proj-iris-c1")
            .endpoint_status(aws_sdk_sagemaker::types::EndpointStatus::Failed)
            .failure_reason("The primary container for production variant v1 did not pass the ping health check.")
            .build()
    });
    let group = "/aws/sagemaker/Endpoints/proj-iris";
    let listed = mock!(Logs::describe_log_streams)
        .match_requests(move |r| {
            r.log_group_name() == Some(group)
                && r.order_by() == Some(&aws_sdk_cloudwatchlogs::types::OrderBy::LastEventTime)
                && r.descending() == Some(true)
        })
        .then_output(|| {
            DescribeLogStreamsOutput::builder()
                .log_streams(LogStream::builder().log_stream_name("v1/i-0abc").build())
                .build()
        });
    // One call from the end: no paging through an endpoint's whole history.
    let end = mock!(Logs::get_log_events)
        .match_requests(move |r| {
            r.log_group_name() == Some(group)
                && r.log_stream_name() == Some("v1/i-0abc")
                && r.start_from_head() == Some(false)
                && r.limit() == Some(20)
        })
        .then_output(|| {
            events(
                &[
                    (1, "Traceback (most recent call last):"),
                    (2, "ModuleNotFoundError: No module named 'sklearn'"),
                ],
                "f/1",
            )
        });
    let deployer = SageMakerDeployer::new(aws_with_logs(
        &[],
        &[&describe],
        &[&listed, &end],
        Features::AWS,
    ));
    let handle = DeploymentHandle {
        endpoint: "iris".into(),
        id: "proj-iris-c1".into(),
    };
    let DeployState::Failed { reason } = deployer.poll(&ctx(), &handle).await.expect("poll") else {
        panic!("a failed endpoint polls as Failed");
    };
    assert_eq!(
        reason,
        "endpoint proj-iris is Failed: The primary container for production variant v1 did not pass the ping health check.\nlast 2 lines of its log (CloudWatch Logs group /aws/sagemaker/Endpoints/proj-iris):\n  Traceback (most recent call last):\n  ModuleNotFoundError: No module named 'sklearn'"
    );
    assert_eq!(end.num_calls(), 1);
}
