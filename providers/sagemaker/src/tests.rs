//! Unit tests against SDK mocks (aws-smithy-mocks): what moto cannot show (failed jobs,
//! throttling, SageMaker's silent rollbacks, in-progress jobs) and the calls it does not
//! implement (UpdateEndpoint, tags on model packages, monitoring schedules, deletes, stops).
//! No network: every request is answered by a rule, and an unexpected request panics.

use crate::aws::{Aws, Features, Settings};
use crate::{SageMakerDeployer, SageMakerMonitorSink, SageMakerRegistry, SageMakerTrainer};
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output;
use aws_sdk_s3::operation::put_object::PutObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sagemaker::Client as Sm;
use aws_sdk_sagemaker::operation::add_tags::AddTagsOutput;
use aws_sdk_sagemaker::operation::create_endpoint_config::CreateEndpointConfigOutput;
use aws_sdk_sagemaker::operation::create_model::CreateModelOutput;
use aws_sdk_sagemaker::operation::create_model_package::CreateModelPackageOutput;
use aws_sdk_sagemaker::operation::create_monitoring_schedule::CreateMonitoringScheduleOutput;
use aws_sdk_sagemaker::operation::create_training_job::CreateTrainingJobOutput;
use aws_sdk_sagemaker::operation::delete_model_package::DeleteModelPackageOutput;
use aws_sdk_sagemaker::operation::delete_model_package_group::DeleteModelPackageGroupOutput;
use aws_sdk_sagemaker::operation::delete_monitoring_schedule::DeleteMonitoringScheduleOutput;
use aws_sdk_sagemaker::operation::describe_endpoint::DescribeEndpointOutput;
use aws_sdk_sagemaker::operation::describe_model_package::DescribeModelPackageOutput;
use aws_sdk_sagemaker::operation::describe_model_package_group::DescribeModelPackageGroupOutput;
use aws_sdk_sagemaker::operation::describe_monitoring_schedule::DescribeMonitoringScheduleOutput;
use aws_sdk_sagemaker::operation::describe_training_job::DescribeTrainingJobOutput;
use aws_sdk_sagemaker::operation::list_model_packages::ListModelPackagesOutput;
use aws_sdk_sagemaker::operation::list_tags::ListTagsOutput;
use aws_sdk_sagemaker::operation::stop_training_job::StopTrainingJobOutput;
use aws_sdk_sagemaker::operation::update_endpoint::UpdateEndpointOutput;
use aws_sdk_sagemaker::operation::update_model_package::UpdateModelPackageOutput;
use aws_sdk_sagemaker::operation::update_monitoring_schedule::UpdateMonitoringScheduleOutput;
use aws_sdk_sagemaker::types::{
    AlgorithmSpecification, EndpointStatus as SmStatus, InferenceSpecification, MetricData,
    ModelApprovalStatus, ModelArtifacts, ModelPackageContainerDefinition, ModelPackageSummary,
    ProductionVariantSummary, SecondaryStatus, Tag, TrafficRoutingConfigType, TrainingJobStatus,
};
use aws_smithy_mocks::{MockResponseInterceptor, Rule, RuleMode, create_mock_http_client, mock};
use mlctl_core::{
    ApprovalStatus, DatasetVersion, Decision, DeployState, Deployer, DeploymentHandle,
    EndpointRequest, EndpointStatus, ErrorKind, Health, JobHandle, JobState, ModelVersion,
    MonitorRequest, MonitorSink, OpContext, RegisterRequest, Registry, Tags, Trainer,
    TrainingRequest, TrainingResult, Variant,
};
use mlctl_spec::{
    Algorithm, Approval, EndpointSpec, MonitorSpec, Rollback, Stage, Strategy, StrategyType,
    TrainingJobSpec,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

pub(crate) const ROLE: &str = "arn:aws:iam::123456789012:role/mlctl";
pub(crate) const JOB: &str = "proj-train-0123456789ab";
pub(crate) const JOB_ARN: &str =
    "arn:aws:sagemaker:us-east-1:123456789012:training-job/proj-train-0123456789ab";

pub(crate) fn ctx() -> OpContext {
    OpContext {
        project: "proj".into(),
        project_dir: std::env::temp_dir(),
        target: "staging".into(),
        commit: "c0ffee".into(),
    }
}

pub(crate) fn tags(resource: &str) -> Tags {
    Tags {
        project: "proj".into(),
        resource: resource.into(),
        fingerprint: "f1ng3rpr1nt".into(),
        commit: "c0ffee".into(),
        labels: Default::default(),
    }
}

fn interceptor(rules: &[&Rule]) -> MockResponseInterceptor {
    rules.iter().fold(
        MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny),
        |i, r| i.with_rule(r),
    )
}

/// A provider connection whose clients answer from `s3` and `sm` rules only (CloudWatch
/// finds no alarms and accepts every change).
pub(crate) fn aws(s3: &[&Rule], sm: &[&Rule], features: Features) -> Arc<Aws> {
    aws_with_cw(s3, sm, &[&no_alarms(), &alarms_deleted()], features)
}

fn no_alarms() -> Rule {
    mock!(aws_sdk_cloudwatch::Client::describe_alarms)
        .sequence()
        .output(|| {
            aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsOutput::builder().build()
        })
        .repeatedly()
        .build()
}

fn alarms_deleted() -> Rule {
    mock!(aws_sdk_cloudwatch::Client::delete_alarms)
        .sequence()
        .output(|| {
            aws_sdk_cloudwatch::operation::delete_alarms::DeleteAlarmsOutput::builder().build()
        })
        .repeatedly()
        .build()
}

/// [`aws`] with CloudWatch answering from `cw` rules.
fn aws_with_cw(s3: &[&Rule], sm: &[&Rule], cw: &[&Rule], features: Features) -> Arc<Aws> {
    aws_with_all(s3, sm, cw, &[&no_log_group()], features)
}

/// CloudWatch Logs without SageMaker's log group (no job wrote a log yet).
pub(crate) fn no_log_group() -> Rule {
    mock!(aws_sdk_cloudwatchlogs::Client::describe_log_streams)
        .sequence()
        .http_status(
            400,
            sm_error(
                "ResourceNotFoundException",
                "The specified log group does not exist.",
            ),
        )
        .repeatedly()
        .build()
}

/// [`aws`] with CloudWatch Logs answering from `logs` rules.
pub(crate) fn aws_with_logs(
    s3: &[&Rule],
    sm: &[&Rule],
    logs: &[&Rule],
    features: Features,
) -> Arc<Aws> {
    aws_with_all(s3, sm, &[&no_alarms(), &alarms_deleted()], logs, features)
}

fn aws_with_all(
    s3: &[&Rule],
    sm: &[&Rule],
    cw: &[&Rule],
    logs: &[&Rule],
    features: Features,
) -> Arc<Aws> {
    let creds = aws_sdk_s3::config::Credentials::new("AKIDTEST", "secret", None, None, "test");
    let retry = aws_sdk_s3::config::retry::RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(1));
    let s3_conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(creds.clone())
        .retry_config(retry.clone())
        .http_client(create_mock_http_client())
        .interceptor(interceptor(s3))
        .build();
    let sm_conf = aws_sdk_sagemaker::Config::builder()
        .behavior_version(aws_sdk_sagemaker::config::BehaviorVersion::latest())
        .region(aws_sdk_sagemaker::config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .retry_config(retry)
        .http_client(create_mock_http_client())
        .interceptor(interceptor(sm))
        .build();
    let cw_conf = aws_sdk_cloudwatch::Config::builder()
        .behavior_version(aws_sdk_cloudwatch::config::BehaviorVersion::latest())
        .region(aws_sdk_cloudwatch::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "AKIDTEST", "secret", None, None, "test",
        ))
        .retry_config(
            aws_sdk_cloudwatch::config::retry::RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(1)),
        )
        .http_client(create_mock_http_client())
        .interceptor(interceptor(cw))
        .build();
    let logs_conf = aws_sdk_cloudwatchlogs::Config::builder()
        .behavior_version(aws_sdk_cloudwatchlogs::config::BehaviorVersion::latest())
        .region(aws_sdk_cloudwatchlogs::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "AKIDTEST", "secret", None, None, "test",
        ))
        .retry_config(
            aws_sdk_cloudwatchlogs::config::retry::RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(1)),
        )
        .http_client(create_mock_http_client())
        .interceptor(interceptor(logs))
        .build();
    Arc::new(Aws {
        s3: aws_sdk_s3::Client::from_conf(s3_conf),
        sm: aws_sdk_sagemaker::Client::from_conf(sm_conf),
        cw: aws_sdk_cloudwatch::Client::from_conf(cw_conf),
        logs: aws_sdk_cloudwatchlogs::Client::from_conf(logs_conf),
        bucket: "bkt".into(),
        prefix: "p".into(),
        role_arn: ROLE.into(),
        region: "us-east-1".into(),
        endpoint_url: None,
        settings: Settings {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            poll_interval: Duration::from_millis(1),
            multipart_threshold: 64 << 20,
            part_size: 16 << 20,
            max_s3_source: crate::aws::DEFAULT_MAX_S3_SOURCE,
        },
        features,
    })
}

/// S3's answer for a key that does not exist, to every GetObject.
fn no_such_key() -> Rule {
    mock!(aws_sdk_s3::Client::get_object)
        .sequence()
        .http_status(
            404,
            Some("<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>".into()),
        )
        .repeatedly()
        .build()
}

/// An AWS JSON-protocol error body (what SageMaker sends).
pub(crate) fn sm_error(code: &str, message: &str) -> Option<String> {
    Some(serde_json::json!({"__type": code, "message": message}).to_string())
}

fn training_spec() -> TrainingJobSpec {
    TrainingJobSpec {
        dataset: "iris".into(),
        algorithm: Some(Algorithm::LogisticRegression),
        command: None,
        code: None,
        image: None,
        hyperparameters: BTreeMap::from([("C".to_string(), serde_json::json!(1.0))]),
        metrics: Vec::new(),
        tuning: None,
        compute: None,
    }
}

fn training_request() -> TrainingRequest {
    TrainingRequest {
        job_name: JOB.into(),
        resource: "train".into(),
        spec: training_spec(),
        dataset: DatasetVersion {
            name: "iris".into(),
            fingerprint: "dsfp".into(),
            digest: "d".repeat(64),
            uri: format!("s3://bkt/p/objects/{}", "d".repeat(64)),
            rows: 150,
            columns: vec!["a".into(), "species".into()],
            splits: BTreeMap::new(),
            profile_uri: None,
        },
        target_column: Some("species".into()),
        schema: None,
        fingerprint: "f1ng3rpr1nt".into(),
        tags: tags("TrainingJob/train"),
        split: None,
    }
}

fn job_output(status: TrainingJobStatus) -> DescribeTrainingJobOutput {
    DescribeTrainingJobOutput::builder()
        .training_job_name(JOB)
        .training_job_arn(JOB_ARN)
        .training_job_status(status)
        .secondary_status(SecondaryStatus::Training)
        .training_start_time(aws_sdk_sagemaker::primitives::DateTime::from_secs(
            1_700_000_000,
        ))
        .build()
}

fn completed_job() -> DescribeTrainingJobOutput {
    DescribeTrainingJobOutput::builder()
        .training_job_name(JOB)
        .training_job_arn(JOB_ARN)
        .training_job_status(TrainingJobStatus::Completed)
        .secondary_status(SecondaryStatus::Completed)
        .model_artifacts(
            ModelArtifacts::builder()
                .s3_model_artifacts("s3://bkt/p/artifacts/train/job/output/model.tar.gz")
                .build(),
        )
        .final_metric_data_list(
            MetricData::builder()
                .metric_name("validation:multiclass_accuracy")
                .value(0.95)
                .build(),
        )
        .final_metric_data_list(
            MetricData::builder()
                .metric_name("validation:macro_f_beta")
                .value(0.94)
                .build(),
        )
        .algorithm_specification(
            AlgorithmSpecification::builder()
                .training_image("382416733822.dkr.ecr.us-east-1.amazonaws.com/linear-learner:1")
                .build(),
        )
        .hyper_parameters("predictor_type", "multiclass_classifier")
        .build()
}

// ---------------------------------------------------------------------------------------------
// Training

#[tokio::test]
async fn a_failed_training_job_reports_sagemakers_reason() {
    let describe = mock!(Sm::describe_training_job)
        .match_requests(|r| r.training_job_name() == Some(JOB))
        .then_output(|| {
            DescribeTrainingJobOutput::builder()
                .training_job_name(JOB)
                .training_job_arn(JOB_ARN)
                .training_job_status(TrainingJobStatus::Failed)
                .secondary_status(SecondaryStatus::Failed)
                .failure_reason("AlgorithmError: ExecuteUserScriptError: ValueError: could not convert string to float: 'setosa'")
                .build()
        });
    let trainer = SageMakerTrainer::new(aws(&[], &[&describe], Features::AWS));
    let state = trainer
        .poll(
            &ctx(),
            &JobHandle {
                name: JOB.into(),
                provider_id: JOB_ARN.into(),
            },
        )
        .await
        .expect("poll");
    match state {
        JobState::Failed { reason } => assert!(
            reason.contains("could not convert string to float: 'setosa'"),
            "{reason}"
        ),
        other => panic!("a failed job must poll as Failed with SageMaker's reason, got {other:?}"),
    }
}

#[tokio::test]
async fn throttling_is_retried_then_succeeds() {
    let describe = mock!(Sm::describe_training_job)
        .sequence()
        .http_status(400, sm_error("ThrottlingException", "Rate exceeded"))
        .times(2)
        .output(completed_job)
        .build();
    let trainer = SageMakerTrainer::new(aws(&[], &[&describe], Features::AWS));
    let state = trainer
        .poll(
            &ctx(),
            &JobHandle {
                name: JOB.into(),
                provider_id: JOB_ARN.into(),
            },
        )
        .await
        .expect("throttling must be ridden out");
    assert_eq!(
        describe.num_calls(),
        3,
        "two throttled attempts, then the answer"
    );
    match state {
        JobState::Completed(r) => {
            assert_eq!(r.metrics["accuracy"], 0.95f32 as f64);
            assert_eq!(r.metrics["f1_macro"], 0.94f32 as f64);
            assert_eq!(
                r.artifact_uri,
                "s3://bkt/p/artifacts/train/job/output/model.tar.gz"
            );
            assert_eq!(
                r.hyperparameters["predictor_type"],
                serde_json::json!("multiclass_classifier")
            );
        }
        other => panic!("expected Completed, got {other:?}"),
    }
}

#[tokio::test]
async fn throttling_that_outlasts_the_retries_is_a_retryable_error() {
    let describe = mock!(Sm::describe_training_job)
        .sequence()
        .http_status(400, sm_error("ThrottlingException", "Rate exceeded"))
        .repeatedly()
        .build();
    let trainer = SageMakerTrainer::new(aws(&[], &[&describe], Features::AWS));
    let err = trainer
        .poll(
            &ctx(),
            &JobHandle {
                name: JOB.into(),
                provider_id: JOB_ARN.into(),
            },
        )
        .await
        .expect_err("still throttled");
    assert_eq!(err.kind, ErrorKind::Throttled);
    assert!(
        err.is_retryable(),
        "the engine retries it with its own backoff"
    );
    assert!(
        err.message.contains("ThrottlingException") && err.message.contains("Rate exceeded"),
        "{err}"
    );
    assert_eq!(describe.num_calls(), 3, "the SDK's max attempts");
}

#[tokio::test]
async fn permanent_errors_keep_the_aws_code_and_message() {
    let describe = mock!(Sm::describe_training_job)
        .sequence()
        .http_status(
            400,
            sm_error(
                "AccessDeniedException",
                "User is not authorized to perform: sagemaker:DescribeTrainingJob",
            ),
        )
        .build();
    let trainer = SageMakerTrainer::new(aws(&[], &[&describe], Features::AWS));
    let err = trainer
        .poll(
            &ctx(),
            &JobHandle {
                name: JOB.into(),
                provider_id: JOB_ARN.into(),
            },
        )
        .await
        .expect_err("denied");
    assert_eq!(err.kind, ErrorKind::PermissionDenied);
    assert!(!err.is_retryable());
    assert!(
        err.message
            .contains("AccessDeniedException: User is not authorized"),
        "{err}"
    );
    assert_eq!(err.operation, "DescribeTrainingJob");
    assert_eq!(describe.num_calls(), 1, "a permanent error is not retried");
}

#[tokio::test]
async fn a_rerun_finds_the_job_in_progress_instead_of_starting_another() {
    let describe = mock!(Sm::describe_training_job)
        .match_requests(|r| r.training_job_name() == Some(JOB))
        .sequence()
        .output(|| job_output(TrainingJobStatus::InProgress))
        .repeatedly()
        .build();
    let create = mock!(Sm::create_training_job).then_output(|| {
        CreateTrainingJobOutput::builder()
            .training_job_arn("arn:second")
            .build()
    });
    let trainer = SageMakerTrainer::new(aws(&[], &[&describe, &create], Features::AWS));
    let req = training_request();
    for _ in 0..2 {
        let handle = trainer.submit(&ctx(), &req).await.expect("submit");
        assert_eq!(
            handle,
            JobHandle {
                name: JOB.into(),
                provider_id: JOB_ARN.into()
            }
        );
    }
    assert_eq!(
        create.num_calls(),
        0,
        "a job with that name runs already: no second CreateTrainingJob"
    );
    match trainer
        .poll(
            &ctx(),
            &JobHandle {
                name: JOB.into(),
                provider_id: JOB_ARN.into(),
            },
        )
        .await
        .expect("poll")
    {
        JobState::Running { message, .. } => assert_eq!(message.as_deref(), Some("Training")),
        other => panic!("expected Running, got {other:?}"),
    }
}

#[tokio::test]
async fn a_failed_job_is_retried_under_the_next_attempt_name_with_tags() {
    let retry_name = format!("{JOB}-r2");
    let describe_failed = mock!(Sm::describe_training_job)
        .match_requests(|r| r.training_job_name() == Some(JOB))
        .then_output(|| job_output(TrainingJobStatus::Failed));
    let rn = retry_name.clone();
    let describe_retry = mock!(Sm::describe_training_job)
        .match_requests(move |r| r.training_job_name() == Some(rn.as_str()))
        .sequence()
        .http_status(
            400,
            sm_error("ValidationException", "Requested resource not found."),
        )
        .build();
    // The built-in's converted channels were prepared by an earlier attempt.
    let prepared = mock!(aws_sdk_s3::Client::get_object).match_requests(|r| r.key().is_some_and(|k| k.contains("/.mlctl/training-data/"))).then_output(|| {
        let json = serde_json::json!({"trainUri": "s3://bkt/p/objects/t", "validationUri": "s3://bkt/p/objects/v", "classes": ["a", "b", "c"], "featureDim": 4, "trainRows": 120, "classification": true});
        GetObjectOutput::builder().body(ByteStream::from(json.to_string().into_bytes())).build()
    });
    let rn = retry_name.clone();
    let create = mock!(Sm::create_training_job)
        .match_requests(move |r| {
            let tags: HashMap<&str, &str> = r
                .tags()
                .iter()
                .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))
                .collect();
            let hps = r.hyper_parameters().cloned().unwrap_or_default();
            let channels: Vec<_> = r
                .input_data_config()
                .iter()
                .map(|c| {
                    (
                        c.channel_name().unwrap_or_default(),
                        c.content_type().unwrap_or_default(),
                    )
                })
                .collect();
            r.training_job_name() == Some(rn.as_str())
                && r.role_arn() == Some(ROLE)
                && tags.get("mlctl:project") == Some(&"proj")
                && tags.get("mlctl:resource") == Some(&"TrainingJob/train")
                && tags.get("mlctl:fingerprint") == Some(&"f1ng3rpr1nt")
                && tags.get("mlctl:commit") == Some(&"c0ffee")
                && hps.get("predictor_type").map(String::as_str) == Some("multiclass_classifier")
                && hps.get("num_classes").map(String::as_str) == Some("3")
                && hps.get("feature_dim").map(String::as_str) == Some("4")
                && channels == [("train", "text/csv"), ("validation", "text/csv")]
                && r.algorithm_specification().and_then(|a| a.training_image())
                    == Some("382416733822.dkr.ecr.us-east-1.amazonaws.com/linear-learner:1")
        })
        .then_output(|| {
            CreateTrainingJobOutput::builder()
                .training_job_arn("arn:aws:sagemaker:us-east-1:123456789012:training-job/retry")
                .build()
        });
    let trainer = SageMakerTrainer::new(aws(
        &[&prepared],
        &[&describe_failed, &describe_retry, &create],
        Features::AWS,
    ));
    let handle = trainer
        .submit(&ctx(), &training_request())
        .await
        .expect("submit");
    assert_eq!(handle.name, retry_name);
    assert_eq!(
        create.num_calls(),
        1,
        "one CreateTrainingJob, for the second attempt, with the expected request"
    );
}

#[tokio::test]
async fn cancel_stops_the_job() {
    let stop = mock!(Sm::stop_training_job)
        .match_requests(|r| r.training_job_name() == Some(JOB))
        .then_output(|| StopTrainingJobOutput::builder().build());
    let trainer = SageMakerTrainer::new(aws(&[], &[&stop], Features::AWS));
    trainer
        .cancel(
            &ctx(),
            &JobHandle {
                name: JOB.into(),
                provider_id: JOB_ARN.into(),
            },
        )
        .await
        .expect("cancel");
    assert_eq!(stop.num_calls(), 1);
}

#[tokio::test]
async fn decision_trees_have_no_sagemaker_builtin() {
    let mut req = training_request();
    req.spec.algorithm = Some(Algorithm::DecisionTree);
    // No CreateTrainingJob: the job name is looked up first, then the mapping fails.
    let describe = mock!(Sm::describe_training_job)
        .sequence()
        .http_status(
            400,
            sm_error("ValidationException", "Requested resource not found."),
        )
        .build();
    let trainer = SageMakerTrainer::new(aws(&[], &[&describe], Features::AWS));
    let err = trainer.submit(&ctx(), &req).await.expect_err("no mapping");
    assert_eq!(err.kind, ErrorKind::NotSupported);
    assert!(
        err.message.contains("decision_tree")
            && err.message.contains("logistic_regression")
            && err.message.contains("script mode"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Endpoints

fn endpoint_output(status: SmStatus, config: &str, version: u32) -> DescribeEndpointOutput {
    DescribeEndpointOutput::builder()
        .endpoint_name("proj-iris")
        .endpoint_arn("arn:aws:sagemaker:us-east-1:123456789012:endpoint/proj-iris")
        .endpoint_config_name(config)
        .endpoint_status(status)
        .production_variants(
            ProductionVariantSummary::builder()
                .variant_name(format!("v{version}"))
                .current_weight(1.0)
                .current_instance_count(2)
                .build(),
        )
        .build()
}

fn model_tag() -> Rule {
    mock!(Sm::list_tags)
        .sequence()
        .output(|| {
            ListTagsOutput::builder()
                .tags(Tag::builder().key("mlctl:model").value("iris").build())
                .build()
        })
        .repeatedly()
        .build()
}

#[tokio::test]
async fn an_update_sagemaker_rolled_back_is_reported_as_rolled_back() {
    let describe = mock!(Sm::describe_endpoint)
        .sequence()
        .output(|| {
            let mut out = endpoint_output(SmStatus::RollingBack, "proj-iris-cnew", 2);
            out.failure_reason =
                Some("CloudWatch alarm p99-high went into ALARM during the bake".into());
            out
        })
        .output(|| endpoint_output(SmStatus::InService, "proj-iris-cold", 1))
        .build();
    let tags = model_tag();
    let deployer = SageMakerDeployer::new(aws(&[], &[&describe, &tags], Features::AWS));
    let handle = DeploymentHandle {
        endpoint: "iris".into(),
        id: "proj-iris-cnew".into(),
    };
    match deployer.poll(&ctx(), &handle).await.expect("poll") {
        DeployState::InProgress { message } => assert!(
            message.contains("rolling back") && message.contains("p99-high"),
            "{message}"
        ),
        other => panic!("a rollback in progress is still in progress, got {other:?}"),
    }
    match deployer.poll(&ctx(), &handle).await.expect("poll") {
        DeployState::RolledBack { reason, status } => {
            assert!(
                reason.contains("proj-iris-cold") && reason.contains("proj-iris-cnew"),
                "{reason}"
            );
            assert_eq!(
                status.variants,
                vec![Variant {
                    model: "iris".into(),
                    version: 1,
                    weight: 100
                }]
            );
            assert_eq!(status.health, Health::Healthy);
            assert_eq!(status.instances, 2);
        }
        other => panic!("an endpoint that ended on another config was rolled back, got {other:?}"),
    }
}

fn model_version(version: u32) -> ModelVersion {
    ModelVersion {
        model: "iris".into(),
        version,
        stage: Stage::Production,
        approval: mlctl_core::ApprovalStatus::Approved,
        artifact_uri: "s3://bkt/p/artifacts/model.tar.gz".into(),
        metrics: BTreeMap::new(),
        fingerprint: "mfp".into(),
        lineage: BTreeMap::new(),
        created_at: String::new(),
    }
}

fn canary_request() -> EndpointRequest {
    EndpointRequest {
        name: "iris".into(),
        spec: EndpointSpec {
            model: "iris".into(),
            version: None,
            strategy: Some(Strategy {
                ty: StrategyType::Canary,
                percent: Some(10),
                bake_time: Some("30s".into()),
                min_requests: Some(0),
                max_bake_time: None,
                rollback: Some(Rollback {
                    max_error_rate: None,
                    max_p99_latency_ms: None,
                    alarms: vec!["p99-high".into()],
                }),
            }),
            instances: Some(2),
            port: None,
            capture: Some(mlctl_spec::Capture {
                sampling_percent: 50.0,
                destination: None,
            }),
            auth: None,
            serve: None,
            compute: None,
            enforce: None,
            server: None,
        },
        model: model_version(2),
        fingerprint: "efp".into(),
        tags: tags("Endpoint/iris"),
    }
}

pub(crate) fn not_found(what: &str) -> Option<String> {
    sm_error("ValidationException", &format!("Could not find {what}."))
}

#[tokio::test]
async fn update_endpoint_rolls_out_with_the_canary_deployment_config() {
    let packages = mock!(Sm::list_model_packages)
        .match_requests(|r| r.model_package_group_name() == Some("proj-iris"))
        .then_output(|| {
            ListModelPackagesOutput::builder()
                .model_package_summary_list(
                    ModelPackageSummary::builder()
                        .model_package_version(2)
                        .model_package_arn("arn:pkg/proj-iris/2")
                        .build(),
                )
                .build()
        });
    let package = mock!(Sm::describe_model_package).then_output(|| {
        DescribeModelPackageOutput::builder()
            .inference_specification(
                InferenceSpecification::builder()
                    .containers(
                        ModelPackageContainerDefinition::builder()
                            .image("img:1")
                            .model_data_url("s3://bkt/p/artifacts/v2.tar.gz")
                            .build(),
                    )
                    .build(),
            )
            .build()
    });
    let describe_model = mock!(Sm::describe_model)
        .sequence()
        .http_status(400, not_found("model"))
        .build();
    let create_model = mock!(Sm::create_model)
        .match_requests(|r| {
            r.execution_role_arn() == Some(ROLE)
                && r.primary_container().and_then(|c| c.model_data_url())
                    == Some("s3://bkt/p/artifacts/v2.tar.gz")
                && r.model_name()
                    .is_some_and(|n| n.starts_with("proj-iris-v2-"))
                && r.tags()
                    .iter()
                    .any(|t| t.key() == Some("mlctl:model") && t.value() == Some("iris"))
        })
        .then_output(|| CreateModelOutput::builder().build());
    let describe_config = mock!(Sm::describe_endpoint_config)
        .sequence()
        .http_status(400, not_found("endpoint configuration"))
        .build();
    let create_config = mock!(Sm::create_endpoint_config)
        .match_requests(|r| {
            let v = &r.production_variants()[0];
            let capture = r.data_capture_config();
            v.variant_name() == Some("v2")
                && v.initial_instance_count() == Some(2)
                && capture.and_then(|c| c.initial_sampling_percentage()) == Some(50)
                && capture.and_then(|c| c.destination_s3_uri())
                    == Some("s3://bkt/p/capture/proj-iris")
        })
        .then_output(|| CreateEndpointConfigOutput::builder().build());
    let describe = mock!(Sm::describe_endpoint)
        .then_output(|| endpoint_output(SmStatus::InService, "proj-iris-cold", 1));
    let update = mock!(Sm::update_endpoint)
        .match_requests(|r| {
            let policy = r
                .deployment_config()
                .and_then(|d| d.blue_green_update_policy());
            let routing = policy.and_then(|p| p.traffic_routing_configuration());
            let alarms: Vec<_> = r
                .deployment_config()
                .and_then(|d| d.auto_rollback_configuration())
                .map(|a| a.alarms().iter().filter_map(|x| x.alarm_name()).collect())
                .unwrap_or_default();
            r.endpoint_name() == Some("proj-iris")
                && r.endpoint_config_name()
                    .is_some_and(|c| c.starts_with("proj-iris-c") && c != "proj-iris-cold")
                && routing.and_then(|t| t.r#type()) == Some(&TrafficRoutingConfigType::Canary)
                && routing
                    .and_then(|t| t.canary_size())
                    .and_then(|s| s.value())
                    == Some(10)
                && routing.and_then(|t| t.wait_interval_in_seconds()) == Some(30)
                && alarms == ["p99-high"]
        })
        .then_output(|| UpdateEndpointOutput::builder().build());
    let add_tags = mock!(Sm::add_tags)
        .match_requests(|r| {
            r.tags()
                .iter()
                .any(|t| t.key() == Some("mlctl:version") && t.value() == Some("2"))
        })
        .then_output(|| AddTagsOutput::builder().build());
    let deployer = SageMakerDeployer::new(aws(
        &[],
        &[
            &packages,
            &package,
            &describe_model,
            &create_model,
            &describe_config,
            &create_config,
            &describe,
            &update,
            &add_tags,
        ],
        Features::AWS,
    ));
    let handle = deployer
        .deploy(&ctx(), &canary_request())
        .await
        .expect("deploy");
    assert_eq!(handle.endpoint, "iris");
    assert!(handle.id.starts_with("proj-iris-c"), "{}", handle.id);
    for (rule, what) in [
        (&create_model, "CreateModel"),
        (&create_config, "CreateEndpointConfig"),
        (&update, "UpdateEndpoint"),
        (&add_tags, "AddTags"),
    ] {
        assert_eq!(
            rule.num_calls(),
            1,
            "{what} must be called once with the expected request"
        );
    }

    // SageMaker bakes the canary, then serves the new config: the rollout is done.
    let (id1, id2) = (handle.id.clone(), handle.id.clone());
    let rollout = mock!(Sm::describe_endpoint)
        .sequence()
        .output(move || endpoint_output(SmStatus::Updating, &id1, 1))
        .output(move || endpoint_output(SmStatus::InService, &id2, 2))
        .build();
    let tags = model_tag();
    let deployer = SageMakerDeployer::new(aws(&[], &[&rollout, &tags], Features::AWS));
    assert!(matches!(
        deployer.poll(&ctx(), &handle).await.expect("poll"),
        DeployState::InProgress { .. }
    ));
    match deployer.poll(&ctx(), &handle).await.expect("poll") {
        DeployState::Done(EndpointStatus {
            variants,
            health,
            url,
            ..
        }) => {
            assert_eq!(
                variants,
                vec![Variant {
                    model: "iris".into(),
                    version: 2,
                    weight: 100
                }]
            );
            assert_eq!(health, Health::Healthy);
            assert_eq!(
                url.as_deref(),
                Some(
                    "https://runtime.sagemaker.us-east-1.amazonaws.com/endpoints/proj-iris/invocations"
                )
            );
        }
        other => panic!("expected Done, got {other:?}"),
    }
}

/// `maxErrorRate` and `maxP99LatencyMs` become CloudWatch alarms on the new variant (metric
/// math on 5XX errors per invocation; p99 ModelLatency in microseconds), tagged like the
/// endpoint, named in the rollout's AutoRollbackConfiguration with the user's alarms; the
/// old variant's alarm is deleted.
#[tokio::test]
async fn rollback_thresholds_become_alarms_the_canary_rolls_back_on() {
    let packages = mock!(Sm::list_model_packages)
        .match_requests(|r| r.model_package_group_name() == Some("proj-iris"))
        .then_output(|| {
            ListModelPackagesOutput::builder()
                .model_package_summary_list(
                    ModelPackageSummary::builder()
                        .model_package_version(2)
                        .model_package_arn("arn:pkg/proj-iris/2")
                        .build(),
                )
                .build()
        });
    let package = mock!(Sm::describe_model_package).then_output(|| {
        DescribeModelPackageOutput::builder()
            .inference_specification(
                InferenceSpecification::builder()
                    .containers(
                        ModelPackageContainerDefinition::builder()
                            .image("img:1")
                            .model_data_url("s3://bkt/p/artifacts/v2.tar.gz")
                            .build(),
                    )
                    .build(),
            )
            .build()
    });
    let describe_model = mock!(Sm::describe_model)
        .sequence()
        .http_status(400, not_found("model"))
        .build();
    let create_model = mock!(Sm::create_model)
        .match_requests(|r| {
            r.execution_role_arn() == Some(ROLE)
                && r.primary_container().and_then(|c| c.model_data_url())
                    == Some("s3://bkt/p/artifacts/v2.tar.gz")
                && r.model_name()
                    .is_some_and(|n| n.starts_with("proj-iris-v2-"))
                && r.tags()
                    .iter()
                    .any(|t| t.key() == Some("mlctl:model") && t.value() == Some("iris"))
        })
        .then_output(|| CreateModelOutput::builder().build());
    let describe_config = mock!(Sm::describe_endpoint_config)
        .sequence()
        .http_status(400, not_found("endpoint configuration"))
        .build();
    let create_config = mock!(Sm::create_endpoint_config)
        .match_requests(|r| r.production_variants()[0].volume_size_in_gb() == Some(64))
        .then_output(|| CreateEndpointConfigOutput::builder().build());
    let describe = mock!(Sm::describe_endpoint)
        .then_output(|| endpoint_output(SmStatus::InService, "proj-iris-cold", 1));
    let wanted = [
        "p99-high",
        "proj-iris-v2-mlctl-error-rate",
        "proj-iris-v2-mlctl-p99-latency",
    ];
    let update = mock!(Sm::update_endpoint)
        .match_requests(move |r| {
            let alarms: Vec<_> = r
                .deployment_config()
                .and_then(|d| d.auto_rollback_configuration())
                .map(|a| a.alarms().iter().filter_map(|x| x.alarm_name()).collect())
                .unwrap_or_default();
            alarms == wanted
        })
        .then_output(|| UpdateEndpointOutput::builder().build());
    let add_tags = mock!(Sm::add_tags).then_output(|| AddTagsOutput::builder().build());
    use aws_sdk_cloudwatch::Client as Cw;
    use aws_sdk_cloudwatch::types::MetricAlarm;
    let labelled = |tags: &[aws_sdk_cloudwatch::types::Tag]| {
        let t: HashMap<&str, &str> = tags
            .iter()
            .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))
            .collect();
        t.get("team") == Some(&"ml-platform")
            && t.get("mlctl:resource") == Some(&"Endpoint/iris")
            && t.get("mlctl:version") == Some(&"2")
    };
    let error_rate = mock!(Cw::put_metric_alarm)
        .match_requests(move |r| {
            fn dims(q: &aws_sdk_cloudwatch::types::MetricDataQuery) -> Vec<(&str, &str)> {
                q.metric_stat()
                    .and_then(|m| m.metric())
                    .map(|m| {
                        m.dimensions()
                            .iter()
                            .map(|d| (d.name().unwrap_or_default(), d.value().unwrap_or_default()))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            }
            let m = r.metrics();
            r.alarm_name() == Some("proj-iris-v2-mlctl-error-rate")
                && r.threshold() == Some(0.05)
                && m.len() == 3
                && m[0]
                    .metric_stat()
                    .and_then(|s| s.metric())
                    .and_then(|m| m.metric_name())
                    == Some("Invocation5XXErrors")
                && m[1]
                    .metric_stat()
                    .and_then(|s| s.metric())
                    .and_then(|m| m.metric_name())
                    == Some("Invocations")
                && dims(&m[0]) == [("EndpointName", "proj-iris"), ("VariantName", "v2")]
                && m[0]
                    .metric_stat()
                    .and_then(|s| s.metric())
                    .and_then(|m| m.namespace())
                    == Some("AWS/SageMaker")
                && m[2].expression() == Some("IF(invocations > 0, errors / invocations, 0)")
                && m[2].return_data() == Some(true)
                && labelled(r.tags())
        })
        .then_output(|| {
            aws_sdk_cloudwatch::operation::put_metric_alarm::PutMetricAlarmOutput::builder().build()
        });
    let latency = mock!(Cw::put_metric_alarm)
        .match_requests(move |r| {
            r.alarm_name() == Some("proj-iris-v2-mlctl-p99-latency")
                && r.metric_name() == Some("ModelLatency")
                && r.namespace() == Some("AWS/SageMaker")
                && r.extended_statistic() == Some("p99")
                && r.threshold() == Some(250_000.0)
                && r.dimensions().len() == 2
                && labelled(r.tags())
        })
        .then_output(|| {
            aws_sdk_cloudwatch::operation::put_metric_alarm::PutMetricAlarmOutput::builder().build()
        });
    let alarm = |name: &str| {
        MetricAlarm::builder()
            .alarm_name(name)
            .alarm_arn(format!(
                "arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}"
            ))
            .build()
    };
    let by_name = mock!(Cw::describe_alarms)
        .match_requests(|r| !r.alarm_names().is_empty())
        .then_output(move || {
            aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsOutput::builder()
                .metric_alarms(alarm("proj-iris-v2-mlctl-error-rate"))
                .metric_alarms(alarm("proj-iris-v2-mlctl-p99-latency"))
                .build()
        });
    let by_prefix = mock!(Cw::describe_alarms)
        .match_requests(|r| r.alarm_name_prefix() == Some("proj-iris-v"))
        .then_output(move || {
            aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsOutput::builder()
                .metric_alarms(alarm("proj-iris-v1-mlctl-error-rate"))
                .metric_alarms(alarm("proj-iris-v2-mlctl-error-rate"))
                .metric_alarms(alarm("proj-iris-v2-mlctl-p99-latency"))
                .build()
        });
    let tag = mock!(Cw::tag_resource)
        .match_requests(move |r| labelled(r.tags()))
        .sequence()
        .output(|| {
            aws_sdk_cloudwatch::operation::tag_resource::TagResourceOutput::builder().build()
        })
        .times(2)
        .build();
    let delete_stale = mock!(Cw::delete_alarms)
        .match_requests(|r| r.alarm_names() == ["proj-iris-v1-mlctl-error-rate"])
        .then_output(|| {
            aws_sdk_cloudwatch::operation::delete_alarms::DeleteAlarmsOutput::builder().build()
        });
    let deployer = SageMakerDeployer::new(aws_with_cw(
        &[],
        &[
            &packages,
            &package,
            &describe_model,
            &create_model,
            &describe_config,
            &create_config,
            &describe,
            &update,
            &add_tags,
        ],
        &[
            &error_rate,
            &latency,
            &by_name,
            &by_prefix,
            &tag,
            &delete_stale,
        ],
        Features::AWS,
    ));
    let mut req = canary_request();
    if let Some(rb) = req.spec.strategy.as_mut().and_then(|s| s.rollback.as_mut()) {
        rb.max_error_rate = Some(0.05);
        rb.max_p99_latency_ms = Some(250.0);
    }
    req.spec.compute = Some(mlctl_spec::Compute {
        overrides: Some(mlctl_spec::ComputeOverrides {
            sagemaker: Some(mlctl_spec::SagemakerCompute {
                volume_size_gb: Some(64),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    req.tags.labels.insert("team".into(), "ml-platform".into());
    deployer.deploy(&ctx(), &req).await.expect("deploy");
    for (rule, what) in [
        (&error_rate, "PutMetricAlarm (error rate)"),
        (&latency, "PutMetricAlarm (p99 latency)"),
        (&delete_stale, "DeleteAlarms of the old variant's alarm"),
        (&create_config, "CreateEndpointConfig with VolumeSizeInGB"),
        (&update, "UpdateEndpoint naming every alarm"),
    ] {
        assert_eq!(
            rule.num_calls(),
            1,
            "{what} must be called once with the expected request"
        );
    }
    assert_eq!(
        tag.num_calls(),
        2,
        "both alarms tagged again (PutMetricAlarm keeps old tags)"
    );
}

/// Deleting an endpoint deletes its alarms.
#[tokio::test]
async fn deleting_an_endpoint_deletes_its_alarms() {
    use aws_sdk_cloudwatch::Client as Cw;
    let delete = mock!(Sm::delete_endpoint).then_output(|| {
        aws_sdk_sagemaker::operation::delete_endpoint::DeleteEndpointOutput::builder().build()
    });
    let configs = mock!(Sm::list_endpoint_configs).then_output(|| {
        aws_sdk_sagemaker::operation::list_endpoint_configs::ListEndpointConfigsOutput::builder()
            .build()
    });
    let models = mock!(Sm::list_models).then_output(|| {
        aws_sdk_sagemaker::operation::list_models::ListModelsOutput::builder().build()
    });
    let listed = mock!(Cw::describe_alarms).then_output(|| {
        aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsOutput::builder()
            .metric_alarms(
                aws_sdk_cloudwatch::types::MetricAlarm::builder()
                    .alarm_name("proj-iris-v3-mlctl-p99-latency")
                    .build(),
            )
            .metric_alarms(
                aws_sdk_cloudwatch::types::MetricAlarm::builder()
                    .alarm_name("proj-iris-v3-someone-elses")
                    .build(),
            )
            .build()
    });
    let gone = mock!(Cw::delete_alarms)
        .match_requests(|r| r.alarm_names() == ["proj-iris-v3-mlctl-p99-latency"])
        .then_output(|| {
            aws_sdk_cloudwatch::operation::delete_alarms::DeleteAlarmsOutput::builder().build()
        });
    let deployer = SageMakerDeployer::new(aws_with_cw(
        &[],
        &[&delete, &configs, &models],
        &[&listed, &gone],
        Features::AWS,
    ));
    deployer.delete(&ctx(), "iris").await.expect("delete");
    assert_eq!(
        gone.num_calls(),
        1,
        "only mlctl's alarm of the endpoint is deleted"
    );
}

// ---------------------------------------------------------------------------------------------
// Registry

fn register_request() -> RegisterRequest {
    RegisterRequest {
        model: "iris".into(),
        training: TrainingResult {
            job_name: JOB.into(),
            artifact_uri: "s3://bkt/p/artifacts/model.tar.gz".into(),
            metrics: BTreeMap::from([("accuracy".to_string(), 0.95)]),
            hyperparameters: BTreeMap::new(),
            trials: Vec::new(),
            run_id: None,
            duration_secs: 1.0,
            evaluation: None,
            metrics_origin: None,
        },
        stage: Stage::Staging,
        approval: Approval::Manual,
        description: Some("iris classifier".into()),
        fingerprint: "mfp".into(),
        lineage: BTreeMap::from([
            ("trainingJob".to_string(), JOB.to_string()),
            ("commit".to_string(), "c0ffee".to_string()),
        ]),
        tags: tags("Model/iris"),
    }
}

#[tokio::test]
async fn model_packages_are_created_tagged_with_lineage_and_fingerprint() {
    let group = mock!(Sm::describe_model_package_group)
        .then_output(|| DescribeModelPackageGroupOutput::builder().build());
    let list =
        mock!(Sm::list_model_packages).then_output(|| ListModelPackagesOutput::builder().build());
    let job = mock!(Sm::describe_training_job).then_output(completed_job);
    let create = mock!(Sm::create_model_package)
        .match_requests(|r| {
            let tags: HashMap<&str, &str> = r
                .tags()
                .iter()
                .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))
                .collect();
            let meta = r
                .customer_metadata_properties()
                .cloned()
                .unwrap_or_default();
            r.model_package_group_name() == Some("proj-iris")
                && tags.get("team") == Some(&"ml-platform")
                && r.model_approval_status() == Some(&ModelApprovalStatus::PendingManualApproval)
                && r.client_token().is_some()
                && tags.get("mlctl:project") == Some(&"proj")
                && tags.get("mlctl:resource") == Some(&"Model/iris")
                && tags.get("mlctl:fingerprint") == Some(&"f1ng3rpr1nt")
                && tags.get("mlctl:commit") == Some(&"c0ffee")
                && meta.get("mlctl:fingerprint").map(String::as_str) == Some("mfp")
                && meta.get("mlctl:stage").map(String::as_str) == Some("staging")
                && meta.get("mlctl:registryFormat").map(String::as_str) == Some("2")
                && meta.get("lineage:commit").map(String::as_str) == Some("c0ffee")
                && meta.get("metric:accuracy").map(String::as_str) == Some("0.95")
                && r.inference_specification()
                    .and_then(|s| s.containers().first())
                    .and_then(|c| c.image())
                    == Some("382416733822.dkr.ecr.us-east-1.amazonaws.com/linear-learner:1")
        })
        .then_output(|| {
            CreateModelPackageOutput::builder()
                .model_package_arn("arn:pkg/proj-iris/1")
                .build()
        });
    let describe = mock!(Sm::describe_model_package).then_output(|| {
        DescribeModelPackageOutput::builder()
            .model_package_arn("arn:pkg/proj-iris/1")
            .model_package_version(1)
            .model_approval_status(ModelApprovalStatus::PendingManualApproval)
            .customer_metadata_properties("mlctl:fingerprint", "mfp")
            .customer_metadata_properties("mlctl:stage", "staging")
            .customer_metadata_properties("mlctl:registryFormat", "2")
            .customer_metadata_properties("metric:accuracy", "0.95")
            .customer_metadata_properties("lineage:commit", "c0ffee")
            .inference_specification(
                InferenceSpecification::builder()
                    .containers(
                        ModelPackageContainerDefinition::builder()
                            .image("img")
                            .model_data_url("s3://bkt/p/artifacts/model.tar.gz")
                            .build(),
                    )
                    .build(),
            )
            .build()
    });
    let put = mock!(aws_sdk_s3::Client::put_object)
        .sequence()
        .output(|| PutObjectOutput::builder().build())
        .repeatedly()
        .build();
    let registry = SageMakerRegistry::new(aws(
        &[&put, &no_such_key()],
        &[&group, &list, &job, &create, &describe],
        Features::AWS,
    ));
    let mut req = register_request();
    req.tags.labels.insert("team".into(), "ml-platform".into());
    let v = registry.register(&ctx(), &req).await.expect("register");
    assert_eq!(
        create.num_calls(),
        1,
        "CreateModelPackage with mlctl's tags and metadata"
    );
    assert_eq!(
        (v.version, v.stage, v.approval),
        (1, Stage::Staging, ApprovalStatus::PendingManualApproval)
    );
    assert_eq!(v.metrics, BTreeMap::from([("accuracy".to_string(), 0.95)]));
    assert_eq!(v.lineage.get("commit").map(String::as_str), Some("c0ffee"));
    assert_eq!(
        put.num_calls(),
        2,
        "the metrics file and the stage history entry"
    );
}

#[tokio::test]
async fn deleting_a_model_deletes_its_packages_and_group() {
    let list = mock!(Sm::list_model_packages).then_output(|| {
        ListModelPackagesOutput::builder()
            .model_package_summary_list(
                ModelPackageSummary::builder()
                    .model_package_arn("arn:pkg/proj-iris/1")
                    .build(),
            )
            .model_package_summary_list(
                ModelPackageSummary::builder()
                    .model_package_arn("arn:pkg/proj-iris/2")
                    .build(),
            )
            .build()
    });
    let describe = mock!(Sm::describe_model_package)
        .sequence()
        .output(|| {
            DescribeModelPackageOutput::builder()
                .model_package_arn("arn:pkg/proj-iris/1")
                .model_package_version(1)
                .build()
        })
        .output(|| {
            DescribeModelPackageOutput::builder()
                .model_package_arn("arn:pkg/proj-iris/2")
                .model_package_version(2)
                .build()
        })
        .build();
    let delete = mock!(Sm::delete_model_package)
        .sequence()
        .output(|| DeleteModelPackageOutput::builder().build())
        .times(2)
        .build();
    let delete_group = mock!(Sm::delete_model_package_group)
        .match_requests(|r| r.model_package_group_name() == Some("proj-iris"))
        .then_output(|| DeleteModelPackageGroupOutput::builder().build());
    let listing = mock!(aws_sdk_s3::Client::list_objects_v2)
        .then_output(|| ListObjectsV2Output::builder().build());
    let registry = SageMakerRegistry::new(aws(
        &[&listing],
        &[&list, &describe, &delete, &delete_group],
        Features::AWS,
    ));
    registry.delete_model(&ctx(), "iris").await.expect("delete");
    assert_eq!((delete.num_calls(), delete_group.num_calls()), (2, 1));
}

/// A package of group `proj-iris` as DescribeModelPackage returns it, in mlctl's current
/// format: the approval in `ModelApprovalStatus`, the stage in the metadata.
fn package(version: i32, status: ModelApprovalStatus, stage: &str) -> DescribeModelPackageOutput {
    DescribeModelPackageOutput::builder()
        .model_package_arn(format!("arn:pkg/proj-iris/{version}"))
        .model_package_version(version)
        .model_approval_status(status)
        .customer_metadata_properties("mlctl:fingerprint", format!("mfp{version}"))
        .customer_metadata_properties("mlctl:stage", stage)
        .customer_metadata_properties("mlctl:registryFormat", "2")
        .build()
}

fn one_package_listed(version: i32) -> Rule {
    mock!(Sm::list_model_packages).then_output(move || {
        ListModelPackagesOutput::builder()
            .model_package_summary_list(
                ModelPackageSummary::builder()
                    .model_package_arn(format!("arn:pkg/proj-iris/{version}"))
                    .build(),
            )
            .build()
    })
}

/// The `UpdateModelPackage` mlctl must send for a decision: the status SageMaker shows in
/// Studio, the stage untouched, the rest of the metadata kept.
fn update_to(status: ModelApprovalStatus) -> Rule {
    mock!(Sm::update_model_package)
        .match_requests(move |r| {
            let meta = r
                .customer_metadata_properties()
                .cloned()
                .unwrap_or_default();
            r.model_package_arn() == Some("arn:pkg/proj-iris/1")
                && r.model_approval_status() == Some(&status)
                && meta.get("mlctl:stage").map(String::as_str) == Some("staging")
                && meta.get("mlctl:fingerprint").map(String::as_str) == Some("mfp1")
                && meta.get("mlctl:registryFormat").map(String::as_str) == Some("2")
        })
        .then_output(|| UpdateModelPackageOutput::builder().build())
}

#[tokio::test]
async fn approving_a_pending_package_sets_model_approval_status_approved() {
    let list = one_package_listed(1);
    let describe = mock!(Sm::describe_model_package)
        .then_output(|| package(1, ModelApprovalStatus::PendingManualApproval, "staging"));
    let update = update_to(ModelApprovalStatus::Approved);
    let registry = SageMakerRegistry::new(aws(&[], &[&list, &describe, &update], Features::AWS));
    let v = registry
        .decide(&ctx(), "iris", 1, Decision::Approve)
        .await
        .expect("approve");
    assert_eq!(update.num_calls(), 1, "UpdateModelPackage(Approved)");
    assert_eq!(
        (v.version, v.stage, v.approval),
        (1, Stage::Staging, ApprovalStatus::Approved)
    );
}

#[tokio::test]
async fn rejecting_a_pending_package_sets_model_approval_status_rejected() {
    let list = one_package_listed(1);
    let describe = mock!(Sm::describe_model_package)
        .then_output(|| package(1, ModelApprovalStatus::PendingManualApproval, "staging"));
    let update = update_to(ModelApprovalStatus::Rejected);
    let registry = SageMakerRegistry::new(aws(&[], &[&list, &describe, &update], Features::AWS));
    let v = registry
        .decide(&ctx(), "iris", 1, Decision::Reject)
        .await
        .expect("reject");
    assert_eq!(update.num_calls(), 1, "UpdateModelPackage(Rejected)");
    assert_eq!(v.approval, ApprovalStatus::Rejected);
}

#[tokio::test]
async fn a_rejected_package_is_read_back_rejected_and_cannot_be_approved_or_promoted() {
    let list = mock!(Sm::list_model_packages)
        .match_requests(|r| r.model_package_group_name() == Some("proj-iris"))
        .then_output(|| {
            ListModelPackagesOutput::builder()
                .model_package_summary_list(
                    ModelPackageSummary::builder()
                        .model_package_arn("arn:pkg/proj-iris/1")
                        .build(),
                )
                .build()
        });
    // Rejected in SageMaker Studio: mlctl reads SageMaker's word.
    let describe = mock!(Sm::describe_model_package)
        .then_output(|| package(1, ModelApprovalStatus::Rejected, "staging"));
    let registry = SageMakerRegistry::new(aws(&[], &[&list, &describe], Features::AWS));
    let vs = registry.versions(&ctx(), "iris").await.expect("versions");
    assert_eq!(
        vs.iter()
            .map(|v| (v.version, v.approval))
            .collect::<Vec<_>>(),
        vec![(1, ApprovalStatus::Rejected)]
    );
    let err = registry
        .decide(&ctx(), "iris", 1, Decision::Approve)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Precondition);
    assert!(err.message.contains("was rejected"), "{err}");
    let err = registry
        .set_stage(&ctx(), "iris", 1, Stage::Production)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Precondition);
}

#[tokio::test]
async fn a_package_approved_in_studio_reads_back_approved() {
    let list = one_package_listed(1);
    let describe = mock!(Sm::describe_model_package)
        .then_output(|| package(1, ModelApprovalStatus::Approved, "staging"));
    let registry = SageMakerRegistry::new(aws(&[], &[&list, &describe], Features::AWS));
    let vs = registry.versions(&ctx(), "iris").await.expect("versions");
    assert_eq!(
        vs.iter()
            .map(|v| (v.version, v.stage, v.approval))
            .collect::<Vec<_>>(),
        vec![(1, Stage::Staging, ApprovalStatus::Approved)]
    );
}

#[tokio::test]
async fn a_package_from_before_the_approval_mapping_reads_its_approval_from_metadata() {
    let list = one_package_listed(1);
    // The old mapping: staging was PendingManualApproval whatever the approval.
    let describe = mock!(Sm::describe_model_package).then_output(|| {
        DescribeModelPackageOutput::builder()
            .model_package_arn("arn:pkg/proj-iris/1")
            .model_package_version(1)
            .model_approval_status(ModelApprovalStatus::PendingManualApproval)
            .customer_metadata_properties("mlctl:stage", "staging")
            .customer_metadata_properties("mlctl:approved", "true")
            .build()
    });
    let registry = SageMakerRegistry::new(aws(&[], &[&list, &describe], Features::AWS));
    let vs = registry.versions(&ctx(), "iris").await.expect("versions");
    assert_eq!(vs[0].approval, ApprovalStatus::Approved);
}

#[test]
fn approvals_map_to_model_approval_statuses_and_back() {
    use crate::registry::{approval_of, status_of};
    for (approval, status) in [
        (ApprovalStatus::Approved, ModelApprovalStatus::Approved),
        (
            ApprovalStatus::PendingManualApproval,
            ModelApprovalStatus::PendingManualApproval,
        ),
        (ApprovalStatus::Rejected, ModelApprovalStatus::Rejected),
    ] {
        assert_eq!(status_of(approval), status);
        assert_eq!(approval_of(Some(&status)), approval);
    }
    assert_eq!(approval_of(None), ApprovalStatus::PendingManualApproval);
}

// ---------------------------------------------------------------------------------------------
// Monitoring

fn monitor_request() -> MonitorRequest {
    MonitorRequest {
        name: "iris-drift".into(),
        spec: MonitorSpec {
            endpoint: "iris".into(),
            baseline: None,
            drift: None,
            quality: None,
            slo: None,
            schedule: Some("every 1h".into()),
            min_samples: None,
            on_breach: None,
        },
        endpoint: EndpointStatus {
            name: "iris".into(),
            url: None,
            health: Health::Healthy,
            variants: Vec::new(),
            instances: 1,
            message: None,
        },
        baseline: None,
        fingerprint: "monfp".into(),
        tags: tags("Monitor/iris-drift"),
    }
}

#[tokio::test]
async fn monitors_create_then_update_a_monitoring_schedule() {
    let missing = mock!(Sm::describe_monitoring_schedule)
        .sequence()
        .http_status(
            400,
            sm_error(
                "ResourceNotFound",
                "Monitoring schedule proj-iris-drift not found",
            ),
        )
        .build();
    let exists = mock!(Sm::describe_monitoring_schedule)
        .then_output(|| DescribeMonitoringScheduleOutput::builder().build());
    let create = mock!(Sm::create_monitoring_schedule)
        .match_requests(|r| {
            let config = r.monitoring_schedule_config();
            let job = config.and_then(|c| c.monitoring_job_definition());
            r.monitoring_schedule_name() == Some("proj-iris-drift")
                && config.and_then(|c| c.schedule_config()).and_then(|s| s.schedule_expression()) == Some("cron(0 * ? * * *)")
                && job.map(|j| j.monitoring_inputs()[0].endpoint_input().and_then(|e| e.endpoint_name()) == Some("proj-iris")).unwrap_or(false)
                && job.and_then(|j| j.monitoring_app_specification()).and_then(|a| a.image_uri())
                    == Some("156813124566.dkr.ecr.us-east-1.amazonaws.com/sagemaker-model-monitor-analyzer")
                && job.and_then(|j| j.role_arn()) == Some(ROLE)
                && r.tags().iter().any(|t| t.key() == Some("mlctl:resource") && t.value() == Some("Monitor/iris-drift"))
        })
        .then_output(|| CreateMonitoringScheduleOutput::builder().monitoring_schedule_arn("arn:ms").build());
    let update = mock!(Sm::update_monitoring_schedule)
        .then_output(|| UpdateMonitoringScheduleOutput::builder().build());
    let delete = mock!(Sm::delete_monitoring_schedule)
        .then_output(|| DeleteMonitoringScheduleOutput::builder().build());
    let put = mock!(aws_sdk_s3::Client::put_object)
        .sequence()
        .output(|| PutObjectOutput::builder().build())
        .repeatedly()
        .build();
    let delete_record = mock!(aws_sdk_s3::Client::delete_object)
        .match_requests(|r| r.key() == Some("p/.mlctl/monitors/proj/iris-drift.json"))
        .then_output(|| {
            aws_sdk_s3::operation::delete_object::DeleteObjectOutput::builder().build()
        });
    let sink = SageMakerMonitorSink::new(aws(
        &[&put, &delete_record],
        &[&missing, &exists, &create, &update, &delete],
        Features::AWS,
    ));
    let status = sink
        .configure(&ctx(), &monitor_request())
        .await
        .expect("configure");
    assert_eq!(
        (
            status.name.as_str(),
            status.endpoint.as_str(),
            status.schedule.as_str()
        ),
        ("iris-drift", "iris", "every 1h")
    );
    assert_eq!(
        create.num_calls(),
        1,
        "CreateMonitoringSchedule with the expected request"
    );
    let again = sink
        .configure(&ctx(), &monitor_request())
        .await
        .expect("configure again");
    assert_eq!(again, status);
    assert_eq!(
        (create.num_calls(), update.num_calls()),
        (1, 1),
        "an existing schedule is updated, not created twice"
    );
    sink.remove(&ctx(), "iris-drift").await.expect("remove");
    assert_eq!((delete.num_calls(), delete_record.num_calls()), (1, 1));
}

#[tokio::test]
async fn sub_hourly_monitors_are_rejected_before_any_call() {
    let sink = SageMakerMonitorSink::new(aws(&[], &[], Features::AWS));
    let mut req = monitor_request();
    req.spec.schedule = Some("every 10m".into());
    let err = sink
        .configure(&ctx(), &req)
        .await
        .expect_err("SageMaker runs monitors hourly at most");
    assert_eq!(err.kind, ErrorKind::Invalid);
    assert!(err.message.contains("every 10m"), "{err}");
}

#[tokio::test]
async fn rollback_to_a_live_variant_moves_the_traffic_with_weights() {
    let two_variants = |w1: f32, w2: f32| {
        DescribeEndpointOutput::builder()
            .endpoint_name("proj-iris")
            .endpoint_arn("arn:aws:sagemaker:us-east-1:123456789012:endpoint/proj-iris")
            .endpoint_config_name("proj-iris-cab")
            .endpoint_status(SmStatus::InService)
            .production_variants(
                ProductionVariantSummary::builder()
                    .variant_name("v1")
                    .current_weight(w1)
                    .current_instance_count(1)
                    .build(),
            )
            .production_variants(
                ProductionVariantSummary::builder()
                    .variant_name("v2")
                    .current_weight(w2)
                    .current_instance_count(1)
                    .build(),
            )
            .build()
    };
    let describe = mock!(Sm::describe_endpoint)
        .sequence()
        .output(move || two_variants(0.1, 0.9))
        .output(move || two_variants(1.0, 0.0))
        .build();
    let weights = mock!(Sm::update_endpoint_weights_and_capacities)
        .match_requests(|r| {
            let w: Vec<_> = r.desired_weights_and_capacities().iter().map(|d| (d.variant_name().unwrap_or_default(), d.desired_weight())).collect();
            r.endpoint_name() == Some("proj-iris") && w == [("v1", Some(1.0)), ("v2", Some(0.0))]
        })
        .then_output(|| aws_sdk_sagemaker::operation::update_endpoint_weights_and_capacities::UpdateEndpointWeightsAndCapacitiesOutput::builder().build());
    let tags = model_tag();
    let deployer = SageMakerDeployer::new(aws(&[], &[&describe, &weights, &tags], Features::AWS));
    let status = deployer
        .rollback(&ctx(), "iris", &model_version(1))
        .await
        .expect("rollback");
    assert_eq!(
        weights.num_calls(),
        1,
        "one UpdateEndpointWeightsAndCapacities, no redeploy"
    );
    assert_eq!(
        status.variants,
        vec![
            Variant {
                model: "iris".into(),
                version: 1,
                weight: 100
            },
            Variant {
                model: "iris".into(),
                version: 2,
                weight: 0
            }
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// One feature pipeline: mlctl's preprocessing in front of a built-in

const PREPROCESSOR_URI: &str = "s3://bkt/p/objects/pre";

/// A stored preprocessor: a text category and a number with missing values.
fn stored_preprocessor() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "format": "mlctl-preprocessor",
        "formatVersion": 1,
        "features": [
            {"name": "plan", "type": "category", "categories": ["basic", "pro"], "nullable": false, "fill": 0.0, "storage": "category"},
            {"name": "tenure", "type": "float", "nullable": true, "fill": 3.5, "storage": "float"},
        ],
    }))
    .unwrap()
}

fn blob_uri(bytes: &[u8]) -> String {
    format!("s3://bkt/p/objects/{}", blake3::hash(bytes).to_hex())
}

/// The registry finds the job's preprocessor and registers an inference pipeline: the
/// scikit-learn image running mlctl's script (content-addressed, as packed code is) with the
/// preprocessor as its model data, then the algorithm; the package's metadata names it.
#[tokio::test]
async fn a_builtin_is_registered_as_a_pipeline_behind_its_preprocessing() {
    let group = mock!(Sm::describe_model_package_group)
        .then_output(|| DescribeModelPackageGroupOutput::builder().build());
    let list =
        mock!(Sm::list_model_packages).then_output(|| ListModelPackagesOutput::builder().build());
    let job = mock!(Sm::describe_training_job).then_output(completed_job);
    let record = mock!(aws_sdk_s3::Client::get_object)
        .match_requests(|r| r.key() == Some(&format!("p/.mlctl/preprocessors/proj/{JOB}.json")))
        .then_output(|| {
            let json = serde_json::json!({"formatVersion": 1, "preprocessor": PREPROCESSOR_URI});
            GetObjectOutput::builder()
                .body(ByteStream::from(json.to_string().into_bytes()))
                .build()
        });
    let pre = mock!(aws_sdk_s3::Client::get_object)
        .match_requests(|r| r.key() == Some("p/objects/pre"))
        .then_output(|| {
            GetObjectOutput::builder()
                .body(ByteStream::from(stored_preprocessor()))
                .build()
        });
    // Both packed blobs are new: HEAD says so, then they are put.
    let head = mock!(aws_sdk_s3::Client::head_object)
        .sequence()
        .http_status(404, None)
        .repeatedly()
        .build();
    let put = mock!(aws_sdk_s3::Client::put_object)
        .sequence()
        .output(|| PutObjectOutput::builder().build())
        .repeatedly()
        .build();
    let model_tar =
        crate::preprocessing::tar_gz(&[(crate::preprocessing::FILE, &stored_preprocessor())])
            .unwrap();
    let script_tar = crate::preprocessing::tar_gz(&[(
        crate::preprocessing::SCRIPT_NAME,
        crate::preprocessing::SCRIPT.as_bytes(),
    )])
    .unwrap();
    let (model_uri, script_uri) = (blob_uri(&model_tar), blob_uri(&script_tar));
    let create = mock!(Sm::create_model_package)
        .match_requests(move |r| {
            let containers = r
                .inference_specification()
                .map(|s| s.containers())
                .unwrap_or_default();
            let meta = r
                .customer_metadata_properties()
                .cloned()
                .unwrap_or_default();
            let Some((first, last)) = containers.first().zip(containers.last()) else {
                return false;
            };
            let env = first.environment().cloned().unwrap_or_default();
            containers.len() == 2
                && first.image()
                    == Some("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3")
                && first.model_data_url() == Some(model_uri.as_str())
                && env.get("SAGEMAKER_PROGRAM").map(String::as_str) == Some("mlctl_preprocess.py")
                && env.get("SAGEMAKER_SUBMIT_DIRECTORY") == Some(&script_uri)
                && env.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT").map(String::as_str)
                    == Some("text/csv")
                && env.get("MLCTL_PREPROCESSOR").map(String::as_str) == Some("preprocessor.json")
                && last.image()
                    == Some("382416733822.dkr.ecr.us-east-1.amazonaws.com/linear-learner:1")
                && last.model_data_url() == Some("s3://bkt/p/artifacts/model.tar.gz")
                && meta.get("lineage:preprocessor").map(String::as_str) == Some(PREPROCESSOR_URI)
        })
        .then_output(|| {
            CreateModelPackageOutput::builder()
                .model_package_arn("arn:pkg/proj-iris/1")
                .build()
        });
    let describe = mock!(Sm::describe_model_package).then_output(|| {
        DescribeModelPackageOutput::builder()
            .model_package_arn("arn:pkg/proj-iris/1")
            .model_package_version(1)
            .model_approval_status(ModelApprovalStatus::PendingManualApproval)
            .customer_metadata_properties("mlctl:registryFormat", "2")
            .customer_metadata_properties("lineage:preprocessor", PREPROCESSOR_URI)
            .inference_specification(pipeline())
            .build()
    });
    let registry = SageMakerRegistry::new(aws(
        &[&record, &pre, &head, &put],
        &[&group, &list, &job, &create, &describe],
        Features::AWS,
    ));
    let v = registry
        .register(&ctx(), &register_request())
        .await
        .expect("register");
    assert_eq!(
        create.num_calls(),
        1,
        "CreateModelPackage with the pipeline"
    );
    // The version's artifact is the algorithm's (the last container's); `models show` finds
    // the preprocessor.
    assert_eq!(v.artifact_uri, "s3://bkt/p/artifacts/v2.tar.gz");
    assert_eq!(
        v.lineage.get("preprocessor").map(String::as_str),
        Some(PREPROCESSOR_URI)
    );
    // The two packed blobs, the metrics file and the stage history entry.
    assert_eq!(put.num_calls(), 4);
}

/// A package's inference pipeline: mlctl's preprocessing, then the algorithm.
fn pipeline() -> InferenceSpecification {
    InferenceSpecification::builder()
        .containers(
            ModelPackageContainerDefinition::builder()
                .image("sklearn:1")
                .model_data_url("s3://bkt/p/objects/premodel")
                .environment("SAGEMAKER_PROGRAM", "mlctl_preprocess.py")
                .environment("MLCTL_PREPROCESSOR", "preprocessor.json")
                .build(),
        )
        .containers(
            ModelPackageContainerDefinition::builder()
                .image("linear-learner:1")
                .model_data_url("s3://bkt/p/artifacts/v2.tar.gz")
                .build(),
        )
        .build()
}

fn one_container() -> InferenceSpecification {
    InferenceSpecification::builder()
        .containers(
            ModelPackageContainerDefinition::builder()
                .image("script:1")
                .model_data_url("s3://bkt/p/artifacts/v2.tar.gz")
                .build(),
        )
        .build()
}

fn package_rules(spec: fn() -> InferenceSpecification) -> (Rule, Rule) {
    let packages = mock!(Sm::list_model_packages)
        .match_requests(|r| r.model_package_group_name() == Some("proj-iris"))
        .then_output(|| {
            ListModelPackagesOutput::builder()
                .model_package_summary_list(
                    ModelPackageSummary::builder()
                        .model_package_version(2)
                        .model_package_arn("arn:pkg/proj-iris/2")
                        .build(),
                )
                .build()
        });
    let package = mock!(Sm::describe_model_package).then_output(move || {
        DescribeModelPackageOutput::builder()
            .inference_specification(spec())
            .build()
    });
    (packages, package)
}

fn new_endpoint_request(enforce: Option<mlctl_spec::Enforce>) -> EndpointRequest {
    let mut req = canary_request();
    req.spec.strategy = None;
    req.spec.capture = None;
    req.spec.enforce = enforce;
    req
}

/// A pipeline version becomes a SageMaker model with `Containers` in order, the
/// preprocessing told the endpoint's `enforce` (strict when unwritten, as on local); the
/// endpoint records it for rollbacks.
#[tokio::test]
async fn a_pipeline_version_is_deployed_with_containers_and_the_endpoints_enforce() {
    for (enforce, want, tag) in [
        (None, "strict", "default"),
        (Some(mlctl_spec::Enforce::Strict), "strict", "strict"),
        (Some(mlctl_spec::Enforce::Off), "off", "off"),
    ] {
        let (packages, package) = package_rules(pipeline);
        let describe_model = mock!(Sm::describe_model)
            .sequence()
            .http_status(400, not_found("model"))
            .build();
        let create_model = mock!(Sm::create_model)
            .match_requests(move |r| {
                let c = r.containers();
                let env = c
                    .first()
                    .and_then(|c| c.environment())
                    .cloned()
                    .unwrap_or_default();
                r.primary_container().is_none()
                    && c.len() == 2
                    && c[0].image() == Some("sklearn:1")
                    && c[0].model_data_url() == Some("s3://bkt/p/objects/premodel")
                    && env.get("MLCTL_ENFORCE").map(String::as_str) == Some(want)
                    && env.get("SAGEMAKER_PROGRAM").map(String::as_str)
                        == Some("mlctl_preprocess.py")
                    && c[1].image() == Some("linear-learner:1")
                    && c[1].model_data_url() == Some("s3://bkt/p/artifacts/v2.tar.gz")
                    && c[1].environment().is_none()
                    && r.model_name()
                        .is_some_and(|n| n.starts_with("proj-iris-v2-"))
            })
            .then_output(|| CreateModelOutput::builder().build());
        let describe_config = mock!(Sm::describe_endpoint_config)
            .sequence()
            .http_status(400, not_found("endpoint configuration"))
            .build();
        let create_config = mock!(Sm::create_endpoint_config)
            .then_output(|| CreateEndpointConfigOutput::builder().build());
        let describe = mock!(Sm::describe_endpoint)
            .sequence()
            .http_status(400, not_found("endpoint"))
            .build();
        let create = mock!(Sm::create_endpoint)
            .match_requests(move |r| {
                r.tags()
                    .iter()
                    .any(|t| t.key() == Some("mlctl:enforce") && t.value() == Some(tag))
            })
            .then_output(|| {
                aws_sdk_sagemaker::operation::create_endpoint::CreateEndpointOutput::builder()
                    .build()
            });
        let deployer = SageMakerDeployer::new(aws(
            &[],
            &[
                &packages,
                &package,
                &describe_model,
                &create_model,
                &describe_config,
                &create_config,
                &describe,
                &create,
            ],
            Features::AWS,
        ));
        deployer
            .deploy(&ctx(), &new_endpoint_request(enforce))
            .await
            .expect("deploy");
        assert_eq!(create_model.num_calls(), 1, "{enforce:?}: CreateModel");
        assert_eq!(create.num_calls(), 1, "{enforce:?}: CreateEndpoint");
    }
}

/// What nothing on SageMaker would honour fails before any model is made: `warn` in front
/// of a pipeline, and a written `strict` for a version served by its own container alone.
#[tokio::test]
async fn enforcement_nothing_would_honour_is_refused_before_create_model() {
    for (spec, enforce, want) in [
        (
            pipeline as fn() -> InferenceSpecification,
            mlctl_spec::Enforce::Warn,
            "`enforce: warn` cannot be honoured",
        ),
        (
            one_container,
            mlctl_spec::Enforce::Strict,
            "knows no mlctl signature",
        ),
    ] {
        let (packages, package) = package_rules(spec);
        let deployer = SageMakerDeployer::new(aws(&[], &[&packages, &package], Features::AWS));
        let err = deployer
            .deploy(&ctx(), &new_endpoint_request(Some(enforce)))
            .await
            .expect_err("refused");
        assert_eq!(err.kind, ErrorKind::NotSupported);
        assert!(err.message.contains(want), "{err}");
    }
}

// ---------------------------------------------------------------------------------------------
// A tuned script's chosen candidate, trained again on train + test (crate::refit)

const TUNING: &str = "proj-train-0123456789ab";
const TUNING_ARN: &str =
    "arn:aws:sagemaker:us-east-1:123456789012:hyper-parameter-tuning-job/proj-train-0123456789ab";

fn completed_tuning() -> aws_sdk_sagemaker::operation::describe_hyper_parameter_tuning_job::DescribeHyperParameterTuningJobOutput{
    use aws_sdk_sagemaker::types::{
        HyperParameterAlgorithmSpecification, HyperParameterTrainingJobDefinition,
        HyperParameterTrainingJobSummary, HyperParameterTuningJobStatus, MetricDefinition,
        OutputDataConfig, ResourceConfig, StoppingCondition, TrainingInputMode,
        TrainingInstanceType,
    };
    aws_sdk_sagemaker::operation::describe_hyper_parameter_tuning_job::DescribeHyperParameterTuningJobOutput::builder()
        .hyper_parameter_tuning_job_name(TUNING)
        .hyper_parameter_tuning_job_arn(TUNING_ARN)
        .hyper_parameter_tuning_job_status(HyperParameterTuningJobStatus::Completed)
        .training_job_definition(
            HyperParameterTrainingJobDefinition::builder()
                .algorithm_specification(
                    HyperParameterAlgorithmSpecification::builder()
                        .training_image("framework:1")
                        .training_input_mode(TrainingInputMode::File)
                        .metric_definitions(
                            MetricDefinition::builder()
                                .name("rmse")
                                .regex("rmse=([0-9.]+)")
                                .build(),
                        )
                        .build(),
                )
                .role_arn(ROLE)
                .static_hyper_parameters("sagemaker_program", "\"mlctl_entry.sh\"")
                .output_data_config(OutputDataConfig::builder().s3_output_path("s3://bkt/p/artifacts/train").build())
                .resource_config(
                    ResourceConfig::builder()
                        .instance_type(TrainingInstanceType::MlM5Large)
                        .instance_count(1)
                        .volume_size_in_gb(30)
                        .build(),
                )
                .stopping_condition(StoppingCondition::builder().max_runtime_in_seconds(600).build())
                .build(),
        )
        .best_training_job(
            HyperParameterTrainingJobSummary::builder()
                .training_job_name(format!("{TUNING}-003-abc"))
                .tuned_hyper_parameters("alpha", "10.0")
                .build(),
        )
        .build()
}

fn refit_plan() -> String {
    serde_json::json!({
        "channels": {"test": "s3://bkt/p/datasets/housing/d1/", "train": "s3://bkt/p/datasets/housing/d0/"},
        "evaluation": {"dataDigest": "dd", "trainRows": 64, "validationRows": 16, "validationFrom": "carved: 20% of the rest of the table, seed 42", "testRows": 20, "testFrom": "carved: 20% of the table, seed 42", "seed": 42, "scoredOn": "test"},
        "tags": [["mlctl:project", "proj"]]
    })
    .to_string()
}

/// Trials of a tuned script compare candidates on validation rows; the metrics its gates
/// judge come from the chosen candidate trained again with `train` and `test`.
#[tokio::test]
async fn a_tuned_script_trains_its_chosen_candidate_again_on_the_test_channel() {
    let tuning = mock!(Sm::describe_hyper_parameter_tuning_job).then_output(completed_tuning);
    let plan = mock!(aws_sdk_s3::Client::get_object)
        .match_requests(|r| {
            r.key()
                .is_some_and(|k| k.ends_with(&format!(".mlctl/refit/{TUNING}.json")))
        })
        .then_output(|| {
            GetObjectOutput::builder()
                .body(ByteStream::from(refit_plan().into_bytes()))
                .build()
        });
    let final_name = format!("{TUNING}-final");
    let fname = final_name.clone();
    let describe_final = mock!(Sm::describe_training_job)
        .match_requests(move |r| r.training_job_name() == Some(fname.as_str()))
        .sequence()
        .http_status(400, not_found("training job"))
        .output(move || {
            DescribeTrainingJobOutput::builder()
                .training_job_name(format!("{TUNING}-final"))
                .training_job_arn(JOB_ARN)
                .training_job_status(TrainingJobStatus::Completed)
                .secondary_status(SecondaryStatus::Completed)
                .hyper_parameters("sagemaker_program", "\"mlctl_entry.sh\"")
                .hyper_parameters("alpha", "10.0")
                .final_metric_data_list(
                    MetricData::builder().metric_name("rmse").value(3.5).build(),
                )
                .build()
        })
        .build();
    let fname = final_name.clone();
    let create = mock!(Sm::create_training_job)
        .match_requests(move |r| {
            let channels: Vec<(&str, &str)> = r
                .input_data_config()
                .iter()
                .map(|c| {
                    (
                        c.channel_name().unwrap_or_default(),
                        c.data_source()
                            .and_then(|d| d.s3_data_source())
                            .and_then(|s| s.s3_uri())
                            .unwrap_or_default(),
                    )
                })
                .collect();
            let hps = r.hyper_parameters().cloned().unwrap_or_default();
            r.training_job_name() == Some(fname.as_str())
                && channels
                    == [
                        ("test", "s3://bkt/p/datasets/housing/d1/"),
                        ("train", "s3://bkt/p/datasets/housing/d0/"),
                    ]
                && hps.get("alpha").map(String::as_str) == Some("10.0")
                && hps.contains_key("sagemaker_program")
                && r.algorithm_specification().is_some_and(|a| {
                    a.training_image() == Some("framework:1") && a.metric_definitions().len() == 1
                })
                && r.tags().iter().any(|t| t.key() == Some("mlctl:project"))
        })
        .then_output(|| {
            CreateTrainingJobOutput::builder()
                .training_job_arn(JOB_ARN)
                .build()
        });
    let trials = mock!(Sm::list_training_jobs_for_hyper_parameter_tuning_job).then_output(|| {
        aws_sdk_sagemaker::operation::list_training_jobs_for_hyper_parameter_tuning_job::ListTrainingJobsForHyperParameterTuningJobOutput::builder()
            .set_training_job_summaries(Some(Vec::new()))
            .build()
    });
    let missing = no_such_key();
    let trainer = SageMakerTrainer::new(aws(
        &[&plan, &missing],
        &[&tuning, &describe_final, &create, &trials],
        Features::AWS,
    ));
    let handle = JobHandle {
        name: TUNING.into(),
        provider_id: TUNING_ARN.into(),
    };
    match trainer.poll(&ctx(), &handle).await.expect("poll") {
        JobState::Running { message, .. } => assert!(
            message
                .as_deref()
                .is_some_and(|m| m.contains("test channel")),
            "{message:?}"
        ),
        other => panic!("the final job runs first, got {other:?}"),
    }
    assert_eq!(create.num_calls(), 1, "one final job, started once");
    match trainer.poll(&ctx(), &handle).await.expect("poll") {
        JobState::Completed(r) => {
            assert_eq!(r.metrics["rmse"], 3.5f32 as f64);
            assert_eq!(r.hyperparameters["alpha"], serde_json::json!(10.0));
            let e = r.evaluation.expect("the rows are recorded");
            assert_eq!((e.scored_on.as_str(), e.test_rows), ("test", 20));
        }
        other => panic!("expected Completed, got {other:?}"),
    }
    assert_eq!(create.num_calls(), 1, "a later poll finds the final job");
}
