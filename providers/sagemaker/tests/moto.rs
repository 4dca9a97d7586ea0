//! The SageMaker provider against moto (S3 + SageMaker on one port): the shared conformance
//! suite and the provider's own end-to-end checks.
//!
//! Start moto with `eval "$(.ci/sagemaker-emulator.sh start)"` (sets `MLCTL_MOTO_URL`). Without
//! `MLCTL_MOTO_URL` the tests print why and pass, except under `CI=true`, where a missing
//! emulator fails them: CI must never skip silently.
//!
//! moto keeps one global state, so the tests take turns (a process-wide lock) and reset it
//! first (`POST /moto-api/reset`); each also uses its own bucket.
//!
//! # moto's fake behaviour, and what the tests do about it
//! - A training job is `Completed` at once with only `train:progress` as a metric and no
//!   artifact: [`MotoTrainer`] adds the metrics a real job would report (and nothing else), so
//!   the registry, gates and endpoints downstream have something to work with.
//! - Endpoints are `InService` at once; `UpdateEndpoint`, `CreateMonitoringSchedule`,
//!   `DeleteModelPackage(Group)` and `StopTrainingJob` answer 500. The target says
//!   `emulator: moto`, so the provider works around them; the real calls are covered by the
//!   unit tests with SDK mocks (`src/tests.rs`).

use async_trait::async_trait;
use mlctl_conformance::{self as conformance, Fixture};
use mlctl_core::{
    Capabilities, JobHandle, JobState, OpContext, ProviderError, RunRecord, Stack, Trainer,
    TrainingRequest,
};
use mlctl_provider_sagemaker::{Credentials, Options, Settings, stack_with};
use mlctl_spec::Target;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ROLE: &str = "arn:aws:iam::123456789012:role/mlctl-test";
const REGION: &str = "us-east-1";

/// moto has one global state: one test at a time.
static MOTO: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The emulator's URL, or `None` (with a note) when the tests should skip.
fn moto_url(test: &str) -> Option<String> {
    match std::env::var("MLCTL_MOTO_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().trim_end_matches('/').to_string()),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "{test}: MLCTL_MOTO_URL is not set and CI=true: the moto emulator must run in CI \
             (eval \"$(.ci/sagemaker-emulator.sh start)\")"
        ),
        _ => {
            // Straight to stderr, past the test harness's capture: a skip must be visible.
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "moto tests skipped ({test} and the rest): MLCTL_MOTO_URL is not set; start moto with: eval \"$(.ci/sagemaker-emulator.sh start)\""
                );
            });
            None
        }
    }
}

/// `POST /moto-api/reset`: forget every bucket, job, model and endpoint.
async fn reset(url: &str) {
    let hostport = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split('/')
        .next()
        .unwrap_or_default();
    let mut s = tokio::net::TcpStream::connect(hostport)
        .await
        .unwrap_or_else(|e| panic!("MLCTL_MOTO_URL={url} is set but moto does not answer: {e}"));
    let req = format!(
        "POST /moto-api/reset HTTP/1.1\r\nHost: {hostport}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .expect("write reset request");
    let mut reply = String::new();
    s.read_to_string(&mut reply)
        .await
        .expect("read reset reply");
    assert!(
        reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200"),
        "moto reset failed: {reply}"
    );
}

/// Settings for moto: fast polling, few retries (its 500s are permanent). Its gaps come from
/// the target's `emulator: moto`.
fn settings() -> Settings {
    Settings {
        max_attempts: 2,
        initial_backoff: Duration::from_millis(10),
        poll_interval: Duration::from_millis(20),
        ..Settings::from_env()
    }
}

fn target(url: &str, bucket: &str) -> Target {
    Target::Sagemaker(mlctl_spec::SagemakerTarget {
        region: REGION.into(),
        role_arn: ROLE.into(),
        bucket: format!("s3://{bucket}/mlctl"),
        endpoint_url: Some(url.into()),
        emulator: Some(mlctl_spec::Emulator::Moto),
        ..Default::default()
    })
}

async fn build(url: &str, fx: &Fixture, bucket: &str, settings: Settings) -> Stack {
    let options = Options {
        credentials: Some(Credentials::new("testing", "testing", None, None, "moto")),
        settings: Some(settings),
    };
    let mut stack = stack_with(&fx.provider_config(target(url, bucket)), options)
        .await
        .expect("sagemaker stack on moto");
    stack.trainer = Arc::new(MotoTrainer(stack.trainer.clone()));
    stack
}

/// A fresh moto, a fixture and a stack on bucket `bucket`; holds the moto lock while alive.
struct Env {
    url: String,
    fx: Fixture,
    stack: Stack,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

async fn env(test: &str) -> Option<Env> {
    let url = moto_url(test)?;
    let turn = MOTO.lock().await;
    reset(&url).await;
    let fx = Fixture::new("moto").expect("fixture");
    let bucket = format!("mlctl-{}", test.replace('_', "-"));
    let bucket: String = bucket.chars().take(63).collect();
    let stack = build(&url, &fx, bucket.trim_end_matches('-'), settings()).await;
    Some(Env {
        url,
        fx,
        stack,
        _turn: turn,
    })
}

/// moto completes training jobs at once with only `train:progress` as a metric; a real job on
/// the fixture's data reports accuracy and F1. This adds them to completed results that lack
/// them, and changes nothing else.
struct MotoTrainer(Arc<dyn Trainer>);

#[async_trait]
impl Trainer for MotoTrainer {
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
    async fn submit(
        &self,
        ctx: &OpContext,
        req: &TrainingRequest,
    ) -> Result<JobHandle, ProviderError> {
        self.0.submit(ctx, req).await
    }
    async fn poll(&self, ctx: &OpContext, job: &JobHandle) -> Result<JobState, ProviderError> {
        Ok(match self.0.poll(ctx, job).await? {
            JobState::Completed(mut r) => {
                r.metrics.entry("accuracy".into()).or_insert(0.96);
                r.metrics.entry("f1_macro".into()).or_insert(0.95);
                JobState::Completed(r)
            }
            other => other,
        })
    }
    async fn cancel(&self, ctx: &OpContext, job: &JobHandle) -> Result<(), ProviderError> {
        self.0.cancel(ctx, job).await
    }
    async fn update_in_place(
        &self,
        ctx: &OpContext,
        req: &mlctl_core::components::InPlaceRequest,
    ) -> Result<(), ProviderError> {
        self.0.update_in_place(ctx, req).await
    }
    async fn runs(
        &self,
        ctx: &OpContext,
        resource: Option<&str>,
    ) -> Result<Vec<RunRecord>, ProviderError> {
        self.0.runs(ctx, resource).await
    }
    async fn logs(&self, ctx: &OpContext, job: &str) -> Result<String, ProviderError> {
        self.0.logs(ctx, job).await
    }
}

/// What moto lets a test change behind mlctl's back: an endpoint's instance count, with the
/// same `UpdateEndpointWeightsAndCapacities` call a person would make.
struct MotoHooks {
    url: String,
    project: String,
}

#[async_trait]
impl conformance::Hooks for MotoHooks {
    async fn scale_endpoint(&self, name: &str, instances: u32) -> bool {
        let sm = sagemaker_client(&self.url).await;
        let Ok(list) = sm.list_endpoints().send().await else {
            return false;
        };
        let wanted = format!("{}-{name}", self.project);
        let Some(endpoint) = list
            .endpoints()
            .iter()
            .filter_map(|e| e.endpoint_name())
            .find(|n| n.starts_with(&wanted))
            .map(str::to_string)
        else {
            return false;
        };
        let Ok(desc) = sm.describe_endpoint().endpoint_name(&endpoint).send().await else {
            return false;
        };
        let Some(variant) = desc
            .production_variants()
            .first()
            .and_then(|v| v.variant_name())
        else {
            return false;
        };
        let update = aws_sdk_sagemaker::types::DesiredWeightAndCapacity::builder()
            .variant_name(variant)
            .desired_instance_count(instances as i32)
            .build();
        sm.update_endpoint_weights_and_capacities()
            .endpoint_name(&endpoint)
            .desired_weights_and_capacities(update)
            .send()
            .await
            .is_ok()
    }
}

/// The conformance suite on moto, one test per check. moto keeps one global state, so each
/// check holds the emulator's turn (`Setup::guard`) for as long as it runs.
async fn moto_setup(check: &'static str) -> Option<conformance::Setup> {
    let env = env(check).await?;
    let hooks = MotoHooks {
        url: env.url.clone(),
        project: env.fx.ctx.project.clone(),
    };
    Some(conformance::Setup {
        fx: env.fx,
        stack: env.stack,
        hooks: Box::new(hooks),
        guard: Some(Box::new(env._turn)),
    })
}

conformance::conformance_tests! {
    setup: moto_setup,
    skip: {
        trainer_failure_reports_reason: "moto completes every training job at once; a failed job is covered by the SDK-mock unit tests (src/tests.rs)",
        deployer_failure_reports_reason: "moto puts every endpoint InService at once; a rollout SageMaker rolled back is covered by the SDK-mock unit tests (src/tests.rs)",
        apply_repairs_crashed_endpoint: "a moto endpoint cannot be made unhealthy (it is InService at once and stays so); on AWS a Failed endpoint is replaced on the next apply",
        canary_without_traffic_rolls_back: "SageMaker promotes a canary when its bake ends whatever traffic it had, so its support.rs refuses `minRequests` above 0 (and a canary without `minRequests: 0`) at plan",
    },
}

/// A second stack on the same target (a fresh CI runner: no local files) sees what the first
/// one applied, and the lock the first one holds.
#[tokio::test]
async fn a_fresh_runner_reads_state_and_lock_from_s3() {
    let Some(env) = env("fresh_runner").await else {
        return;
    };
    let (stack, fx) = (&env.stack, &env.fx);
    let data = stack
        .data
        .register_dataset(&fx.ctx, &fx.dataset_request("iris", "fresh"))
        .await
        .expect("register");
    let rec = mlctl_core::ObservedResource {
        format_version: mlctl_core::state::FORMAT_VERSION,
        id: mlctl_spec::ResourceId::new(mlctl_spec::Kind::Dataset, "iris"),
        fingerprint: data.fingerprint.clone(),
        spec: serde_json::json!({"source": "data/iris.csv"}),
        commit: Fixture::commit(1),
        updated_at: "2026-01-01T00:00:00Z".into(),
        health: mlctl_core::Health::Healthy,
        outputs: serde_json::to_value(&data).expect("json"),
        inputs: Default::default(),
        last_error: None,
        drift: Vec::new(),
    };
    let entry = mlctl_core::HistoryEntry {
        format_version: mlctl_core::state::FORMAT_VERSION,
        id: rec.id.clone(),
        action: "create".into(),
        fingerprint: rec.fingerprint.clone(),
        commit: rec.commit.clone(),
        at: rec.updated_at.clone(),
        detail: "150 rows".into(),
    };
    stack
        .state
        .record(&fx.ctx.project, &rec, &entry)
        .await
        .expect("record");
    let lock = mlctl_core::LockInfo {
        format_version: mlctl_core::state::FORMAT_VERSION,
        id: "lock-1".into(),
        holder: "ci".into(),
        host: "runner-1".into(),
        pid: 1,
        since: "2026-01-01T00:00:00Z".into(),
        command: "mlctl apply".into(),
        boot_id: None,
        process_start: None,
        heartbeat: None,
        lease_seconds: None,
    };
    stack
        .state
        .lock(&fx.ctx.project, &lock)
        .await
        .expect("lock");

    let other_fx = Fixture::new("moto").expect("fixture");
    let fresh = build(&env.url, &other_fx, "mlctl-fresh-runner", settings()).await;
    assert_eq!(
        fresh.state.observe(&fx.ctx.project).await.expect("observe"),
        vec![rec.clone()]
    );
    assert_eq!(
        fresh
            .state
            .history(&fx.ctx.project, &rec.id)
            .await
            .expect("history"),
        vec![entry]
    );
    match fresh
        .state
        .lock(
            &fx.ctx.project,
            &mlctl_core::LockInfo {
                format_version: mlctl_core::state::FORMAT_VERSION,
                id: "lock-2".into(),
                ..lock.clone()
            },
        )
        .await
    {
        Err(mlctl_core::LockError::Held(holder)) => assert_eq!(holder, lock),
        other => panic!("the lock taken by the first runner must be held, got {other:?}"),
    }
    // The data itself is in S3 too: the fresh runner reads the blob.
    let blob = fresh.data.get_blob(&data.digest).await.expect("blob");
    assert_eq!(blake3::hash(&blob).to_hex().as_str(), data.digest);
}

/// Files above the multipart threshold go up in parts and come back intact.
#[tokio::test]
async fn large_datasets_upload_in_parts() {
    let Some(env) = env("multipart").await else {
        return;
    };
    let settings = Settings {
        multipart_threshold: 1 << 20,
        part_size: 5 << 20,
        ..settings()
    };
    let stack = build(&env.url, &env.fx, "mlctl-multipart", settings).await;
    let mut csv = String::from("a,b,label\n");
    let mut i = 0u64;
    while csv.len() < 11 << 20 {
        csv.push_str(&format!(
            "{},{},{}\n",
            i,
            i * 7 % 1000,
            if i.is_multiple_of(3) { "x" } else { "y" }
        ));
        i += 1;
    }
    env.fx.write("data/big.csv", &csv).expect("write");
    let mut req = env.fx.dataset_request("big", "big");
    req.spec.source = Some("data/big.csv".into());
    req.spec.schema = None;
    req.spec.split = None;
    req.spec.target = Some("label".into());
    let v = stack
        .data
        .register_dataset(&env.fx.ctx, &req)
        .await
        .expect("register a 11 MiB dataset");
    assert_eq!(v.digest, blake3::hash(csv.as_bytes()).to_hex().as_str());
    assert_eq!(v.rows, i);
    let back = stack.data.get_blob(&v.digest).await.expect("read back");
    assert!(
        back == csv.as_bytes(),
        "the multipart upload must read back byte for byte"
    );
}

/// Everything mlctl creates on SageMaker carries the four mlctl tags (read back from moto).
#[tokio::test]
async fn training_jobs_and_endpoints_are_tagged() {
    let Some(env) = env("tags").await else { return };
    let (stack, fx) = (&env.stack, &env.fx);
    let data = stack
        .data
        .register_dataset(&fx.ctx, &fx.dataset_request("iris", "tags"))
        .await
        .expect("register");
    let req = fx.training_request("tagged", "tagged", data);
    let job = stack.trainer.submit(&fx.ctx, &req).await.expect("submit");
    let sm = sagemaker_client(&env.url).await;
    let tags = sm
        .list_tags()
        .resource_arn(&job.provider_id)
        .send()
        .await
        .expect("list tags");
    let tags: std::collections::BTreeMap<_, _> = tags
        .tags()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        tags.get("mlctl:project").map(String::as_str),
        Some("conformance")
    );
    assert_eq!(
        tags.get("mlctl:resource").map(String::as_str),
        Some("TrainingJob/tagged")
    );
    assert_eq!(tags.get("mlctl:fingerprint"), Some(&req.fingerprint));
    assert_eq!(tags.get("mlctl:commit"), Some(&fx.ctx.commit));
    // Built-ins read label-first CSV channels converted from the dataset's split.
    let d = sm
        .describe_training_job()
        .training_job_name(&job.name)
        .send()
        .await
        .expect("describe");
    let channels: Vec<_> = d
        .input_data_config()
        .iter()
        .map(|c| c.channel_name().unwrap_or_default().to_string())
        .collect();
    assert_eq!(channels, ["train", "validation"]);
    let hps = d.hyper_parameters().expect("hyperparameters");
    assert_eq!(
        hps.get("predictor_type").map(String::as_str),
        Some("multiclass_classifier")
    );
    assert_eq!(hps.get("num_classes").map(String::as_str), Some("3"));
    assert!(
        d.algorithm_specification()
            .and_then(|a| a.training_image())
            .is_some_and(|i| i.ends_with("/linear-learner:1"))
    );
}

/// A SageMaker client on moto, to read back what the provider created.
async fn sagemaker_client(url: &str) -> aws_sdk_sagemaker::Client {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .load()
        .await;
    aws_sdk_sagemaker::Client::new(&sdk)
}

/// `tuning` becomes a HyperParameterTuningJob (≤ 32-character name) with the strategy,
/// objective and ranges mapped; a re-submit finds it; the result carries the best trial.
#[tokio::test]
async fn tuning_runs_as_a_hyperparameter_tuning_job() {
    let Some(env) = env("tuning").await else {
        return;
    };
    let (stack, fx) = (&env.stack, &env.fx);
    let data = stack
        .data
        .register_dataset(&fx.ctx, &fx.dataset_request("iris", "tuning"))
        .await
        .expect("register");
    let mut req = fx.training_request("iris-train", "tuning", data);
    req.spec.algorithm = Some(mlctl_spec::Algorithm::GradientBoosting);
    // The fixture's `C` is logistic regression's; XGBoost has no such hyperparameter.
    req.spec.hyperparameters = [("max_bins".to_string(), serde_json::json!(64))].into();
    req.spec.tuning = Some(mlctl_spec::Tuning {
        strategy: mlctl_spec::TuningStrategy::Bayesian,
        objective: mlctl_spec::Objective {
            metric: "accuracy".into(),
            goal: mlctl_spec::Goal::Maximize,
        },
        max_trials: Some(6),
        parallelism: Some(2),
        seed: Some(7),
        search_space: [
            (
                "learning_rate".to_string(),
                mlctl_spec::Param {
                    ty: None,
                    min: Some(0.01),
                    max: Some(0.3),
                    step: None,
                    scale: Some(mlctl_spec::Scale::Log),
                    values: None,
                },
            ),
            (
                "max_depth".to_string(),
                mlctl_spec::Param {
                    ty: Some(mlctl_spec::ParamType::Int),
                    min: Some(2.0),
                    max: Some(8.0),
                    step: None,
                    scale: None,
                    values: None,
                },
            ),
        ]
        .into(),
    });
    let job = stack
        .trainer
        .submit(&fx.ctx, &req)
        .await
        .expect("submit tuning");
    assert!(
        job.name.len() <= 32,
        "tuning job names are at most 32 characters: {}",
        job.name
    );
    assert!(
        job.provider_id.contains(":hyper-parameter-tuning-job/"),
        "{}",
        job.provider_id
    );
    assert_eq!(
        stack
            .trainer
            .submit(&fx.ctx, &req)
            .await
            .expect("re-submit"),
        job,
        "a re-run finds the tuning job"
    );

    let sm = sagemaker_client(&env.url).await;
    let d = sm
        .describe_hyper_parameter_tuning_job()
        .hyper_parameter_tuning_job_name(&job.name)
        .send()
        .await
        .expect("describe");
    let config = d.hyper_parameter_tuning_job_config().expect("config");
    assert_eq!(config.strategy().map(|s| s.as_str()), Some("Bayesian"));
    let objective = config
        .hyper_parameter_tuning_job_objective()
        .expect("objective");
    // XGBoost reports `merror` for multi-class data: maximising accuracy is minimising it.
    assert_eq!(
        (
            objective.metric_name(),
            objective.r#type().map(|t| t.as_str())
        ),
        (Some("validation:merror"), Some("Minimize"))
    );
    let ranges = config.parameter_ranges().expect("ranges");
    assert_eq!(ranges.continuous_parameter_ranges()[0].name(), Some("eta"));
    assert_eq!(
        ranges.integer_parameter_ranges()[0].name(),
        Some("max_depth")
    );
    assert_eq!(
        config
            .resource_limits()
            .and_then(|l| l.max_number_of_training_jobs()),
        Some(6)
    );
    let statics = d
        .training_job_definition()
        .and_then(|t| t.static_hyper_parameters())
        .expect("static hyperparameters");
    assert_eq!(
        statics.get("objective").map(String::as_str),
        Some("multi:softprob")
    );
    assert!(
        !statics.contains_key("eta"),
        "searched hyperparameters are not static"
    );

    // The tuning job is done: its chosen candidate is trained again, scored on the test rows.
    match stack.trainer.poll(&fx.ctx, &job).await.expect("poll") {
        JobState::Running { message, .. } => assert!(
            message
                .as_deref()
                .is_some_and(|m| m.contains("test channel")),
            "{message:?}"
        ),
        other => panic!("moto completes tuning jobs at once, then the final job runs: {other:?}"),
    }
    match stack.trainer.poll(&fx.ctx, &job).await.expect("poll") {
        JobState::Completed(r) => {
            assert_eq!(
                r.trials.len(),
                1,
                "moto lists no trials: the best one is reported"
            );
            assert_eq!(r.job_name, format!("{}-final", job.name));
            let e = r.evaluation.expect("the rows are recorded");
            assert_eq!(e.scored_on, "test");
        }
        other => panic!("the final job completes at once on moto, got {other:?}"),
    }
}

/// Script mode: the code directory is packed reproducibly into the bucket and the job runs it
/// in the framework container through SageMaker's `sagemaker_program` contract.
#[tokio::test]
async fn script_mode_uploads_the_code_and_runs_the_command() {
    let Some(env) = env("script").await else {
        return;
    };
    let (stack, fx) = (&env.stack, &env.fx);
    fx.write(
        "src/train.py",
        "import json, os\nprint(json.loads(os.environ['SM_HPS']))\n",
    )
    .expect("write");
    let data = stack
        .data
        .register_dataset(&fx.ctx, &fx.dataset_request("iris", "script"))
        .await
        .expect("register");
    let mut req = fx.training_request("script", "script", data);
    req.spec.algorithm = None;
    req.spec.command = Some("python train.py".into());
    req.spec.code = Some("src".into());
    req.spec.metrics = vec![mlctl_spec::MetricDefinition {
        name: "accuracy".into(),
        regex: "accuracy=([0-9.]+)".into(),
        goal: None,
    }];
    let job = stack.trainer.submit(&fx.ctx, &req).await.expect("submit");

    let sm = sagemaker_client(&env.url).await;
    let d = sm
        .describe_training_job()
        .training_job_name(&job.name)
        .send()
        .await
        .expect("describe");
    let hps = d.hyper_parameters().expect("hyperparameters");
    assert_eq!(
        hps.get("sagemaker_program").map(String::as_str),
        Some("\"mlctl_entry.sh\"")
    );
    assert_eq!(hps.get("C").map(String::as_str), Some("1.0"));
    let code = hps
        .get("sagemaker_submit_directory")
        .expect("code location");
    let code: String = serde_json::from_str(code).expect("JSON-encoded");
    let digest = code.rsplit('/').next().expect("digest").to_string();
    let packed = stack
        .data
        .get_blob(&digest)
        .await
        .expect("the packed code is in the bucket");
    let mut names = Vec::new();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&packed[..]));
    for e in archive.entries().expect("tar") {
        names.push(
            e.expect("entry")
                .path()
                .expect("path")
                .to_string_lossy()
                .into_owned(),
        );
    }
    assert_eq!(names, ["train.py", "mlctl_entry.sh"]);
    assert!(
        d.algorithm_specification()
            .and_then(|a| a.training_image())
            .is_some_and(|i| i.contains("sagemaker-scikit-learn")),
        "the default framework image"
    );
    // The fixture's dataset is split train/test: each part is its own channel, so the script
    // never sees the test rows in `train` (as on the local target).
    let channels: std::collections::BTreeMap<String, String> = d
        .input_data_config()
        .iter()
        .map(|c| {
            let uri = c
                .data_source()
                .and_then(|s| s.s3_data_source())
                .and_then(|s| s.s3_uri())
                .unwrap_or_default();
            (
                c.channel_name().unwrap_or_default().to_string(),
                uri.to_string(),
            )
        })
        .collect();
    assert_eq!(
        channels.keys().map(String::as_str).collect::<Vec<_>>(),
        ["test", "train"]
    );
    let s3 = s3_client(&env.url).await;
    let mut rows = std::collections::BTreeMap::new();
    for (part, uri) in &channels {
        assert!(
            uri.contains("/datasets/iris/"),
            "scripts read the data under a readable name: {uri}"
        );
        let (bucket, prefix) = uri
            .strip_prefix("s3://")
            .and_then(|r| r.split_once('/'))
            .expect("an s3 uri");
        let listed = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .send()
            .await
            .expect("list the channel");
        let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
        assert_eq!(keys.len(), 1, "one file per channel: {keys:?}");
        assert!(keys[0].ends_with(&format!("/{part}.csv")), "{keys:?}");
        let body = s3
            .get_object()
            .bucket(bucket)
            .key(keys[0])
            .send()
            .await
            .expect("get")
            .body
            .collect()
            .await
            .expect("body")
            .into_bytes();
        rows.insert(
            part.clone(),
            body.iter().filter(|b| **b == b'\n').count() - 1,
        );
    }
    assert_eq!(
        rows,
        [("test".to_string(), 30), ("train".to_string(), 120)].into(),
        "train holds the train split only"
    );
}

/// An S3 client on moto, to read back what the provider stored.
async fn s3_client(url: &str) -> aws_sdk_s3::Client {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .load()
        .await;
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    )
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read example") {
        let entry = entry.expect("entry");
        let dest = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).expect("copy");
        }
    }
}

/// `examples/iris` on a sagemaker target: plan, apply, a re-plan with nothing to do (read back
/// from S3 and SageMaker alone), then destroy.
#[tokio::test]
async fn examples_iris_applies_replans_clean_and_destroys() {
    use mlctl_core::apply::{self, ApplyOptions, Silent};
    use mlctl_core::plan::{self, Desired, PlanOptions};
    let Some(env) = env("iris").await else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/iris"),
        dir.path(),
    );
    let loaded = mlctl_spec::load(&mlctl_spec::DirFiles::new(dir.path()));
    let errors: Vec<String> = loaded.errors().map(|d| d.message.clone()).collect();
    let spec = loaded
        .spec
        .unwrap_or_else(|| panic!("examples/iris must validate: {errors:?}"));
    let commit = Fixture::commit(1);
    let desired = Desired::new(&spec, &commit, &|rel: &str| {
        conformance::digest_path(&dir.path().join(rel)).map_err(Into::into)
    })
    .expect("fingerprints");
    let cfg = mlctl_core::ProviderConfig {
        project: spec.project.name.clone(),
        project_dir: dir.path().to_path_buf(),
        target_name: "staging".into(),
        target: target(&env.url, "mlctl-iris"),
    };
    let options = Options {
        credentials: Some(Credentials::new("testing", "testing", None, None, "moto")),
        settings: Some(settings()),
    };
    let mut stack = stack_with(&cfg, options).await.expect("stack");
    stack.trainer = Arc::new(MotoTrainer(stack.trainer.clone()));
    let ctx = OpContext {
        project: cfg.project.clone(),
        project_dir: cfg.project_dir.clone(),
        target: "staging".into(),
        commit: commit.clone(),
    };
    let opts = ApplyOptions {
        retry_base: Duration::from_millis(10),
        timeout: Duration::from_secs(120),
        ..ApplyOptions::default()
    };

    let observed = mlctl_core::observe(&stack, &ctx, &opts)
        .await
        .expect("observe");
    let p = plan::plan(&desired, &observed, "staging", PlanOptions::default());
    assert_eq!(p.actions().count(), 5, "everything is created");
    let report = apply::apply(
        &stack,
        &ctx,
        &desired,
        &p,
        &observed,
        &opts,
        Arc::new(Silent),
    )
    .await;
    assert!(!report.failed(), "apply: {:?}", report.results);

    // A fresh stack (a new CI runner) sees no changes.
    let fresh = {
        let options = Options {
            credentials: Some(Credentials::new("testing", "testing", None, None, "moto")),
            settings: Some(settings()),
        };
        let mut s = stack_with(&cfg, options).await.expect("stack");
        s.trainer = Arc::new(MotoTrainer(s.trainer.clone()));
        s
    };
    let observed = mlctl_core::observe(&fresh, &ctx, &opts)
        .await
        .expect("observe");
    assert!(
        observed.iter().all(|o| o.drift.is_empty()),
        "no drift right after apply: {observed:?}"
    );
    let p = plan::plan(&desired, &observed, "staging", PlanOptions::default());
    let pending: Vec<String> = p
        .actions()
        .map(|c| format!("{} {:?} {:?}", c.id, c.action, c.reasons))
        .collect();
    assert!(pending.is_empty(), "re-plan must be empty, got {pending:?}");
    let live = fresh
        .deployer
        .status(&ctx, "iris")
        .await
        .expect("status")
        .expect("the endpoint exists");
    assert_eq!(live.variants.len(), 1);
    assert_eq!(live.health, mlctl_core::Health::Healthy);

    let empty = Desired {
        project: ctx.project.clone(),
        commit: Fixture::commit(2),
        labels: Default::default(),
        resources: Vec::new(),
    };
    let p = plan::plan(
        &empty,
        &observed,
        "staging",
        PlanOptions {
            prune: false,
            destroy: true,
        },
    );
    let report = apply::apply(&fresh, &ctx, &empty, &p, &observed, &opts, Arc::new(Silent)).await;
    assert!(!report.failed(), "destroy: {:?}", report.results);
    assert!(
        mlctl_core::observe(&fresh, &ctx, &opts)
            .await
            .expect("observe")
            .is_empty(),
        "destroy leaves nothing recorded"
    );
    assert!(
        fresh
            .deployer
            .status(&ctx, "iris")
            .await
            .expect("status")
            .is_none(),
        "the endpoint is gone"
    );
    assert!(
        fresh
            .registry
            .versions(&ctx, "iris")
            .await
            .expect("versions")
            .is_empty(),
        "the model is gone"
    );
}

/// An `s3://` source (its key with a space and a `+`, which the copy must encode) is read and
/// checked exactly as a project file: digest, schema, target,
/// split parts uploaded, a content-addressed copy; a pinned digest that differs, a schema
/// violation and an object above the size cap fail with what to do. The version's record on
/// S3 keeps the Dataset's tags (S3 objects take only 10).
#[tokio::test]
async fn s3_sources_are_read_and_checked_like_project_files() {
    let Some(env) = env("s3_source").await else {
        return;
    };
    let (stack, fx) = (&env.stack, &env.fx);
    let bucket = "mlctl-s3-source";
    let s3 = s3_client(&env.url).await;
    let csv = std::fs::read_to_string(fx.dir().join("data/iris.csv")).expect("fixture data");
    s3.put_object()
        .bucket(bucket)
        .key("raw data/iris+v1.csv")
        .body(csv.clone().into_bytes().into())
        .send()
        .await
        .expect("put the source object");
    let mut req = fx.dataset_request("iris", "s3");
    req.spec.source = Some(format!("s3://{bucket}/raw data/iris+v1.csv"));
    req.tags.labels.insert("team".into(), "ml-platform".into());
    let v = stack
        .data
        .register_dataset(&fx.ctx, &req)
        .await
        .expect("register an s3:// source");
    assert_eq!(v.digest, blake3::hash(csv.as_bytes()).to_hex().as_str());
    assert_eq!(v.rows, 150);
    assert!(
        v.uri.ends_with(&format!("/objects/{}", v.digest)),
        "{}",
        v.uri
    );
    assert_eq!(
        v.splits.keys().map(String::as_str).collect::<Vec<_>>(),
        ["test", "train"]
    );
    assert!(v.profile_uri.is_some());
    let record = s3
        .get_object()
        .bucket(bucket)
        .key(format!(
            "mlctl/.mlctl/datasets/{}/iris/{}.json",
            fx.ctx.project, req.fingerprint
        ))
        .send()
        .await
        .expect("the version's record")
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes();
    let record: serde_json::Value = serde_json::from_slice(&record).expect("json");
    assert_eq!(record["tags"]["team"], "ml-platform");
    assert_eq!(record["tags"]["mlctl:resource"], "Dataset/iris");
    assert_eq!(record["digest"], v.digest.as_str());

    // A pinned digest that differs, and a schema the data breaks.
    let mut pinned = fx.dataset_request("iris", "s3-pinned");
    pinned.spec.source = req.spec.source.clone();
    pinned.spec.digest = Some("0".repeat(64));
    let err = stack
        .data
        .register_dataset(&fx.ctx, &pinned)
        .await
        .expect_err("the digest differs");
    assert!(err.message.contains("pins"), "{err}");
    let mut strict = fx.dataset_request("iris", "s3-strict");
    strict.spec.source = req.spec.source.clone();
    if let Some(schema) = strict.spec.schema.as_mut() {
        schema.min_rows = Some(1000);
    }
    let err = stack
        .data
        .register_dataset(&fx.ctx, &strict)
        .await
        .expect_err("too few rows");
    assert_eq!(err.kind, mlctl_core::ErrorKind::Invalid);
    assert!(
        err.message
            .contains("s3://mlctl-s3-source/raw data/iris+v1.csv"),
        "{err}"
    );

    // Above the cap: refused before it is read, saying how to raise it.
    let small = Settings {
        max_s3_source: 1024,
        ..settings()
    };
    let capped = build(&env.url, fx, bucket, small).await;
    let mut big = fx.dataset_request("iris", "s3-big");
    big.spec.source = req.spec.source.clone();
    let err = capped
        .data
        .register_dataset(&fx.ctx, &big)
        .await
        .expect_err("above the cap");
    assert!(
        err.message.contains("MLCTL_SM_MAX_S3_SOURCE_MB") && err.message.contains("1024 bytes"),
        "{err}"
    );
    // A missing object says so.
    let mut missing = fx.dataset_request("iris", "s3-missing");
    missing.spec.source = Some(format!("s3://{bucket}/raw/nope.csv"));
    let err = stack
        .data
        .register_dataset(&fx.ctx, &missing)
        .await
        .expect_err("missing");
    assert_eq!(err.kind, mlctl_core::ErrorKind::NotFound);
}

/// The user's labels are on everything the provider creates (training job, model package
/// group, SageMaker model, endpoint config, endpoint, alarms), and an endpoint's rollback
/// thresholds are CloudWatch alarms on its variant that go when the endpoint goes. (Tags on
/// model packages are covered by the SDK-mock tests: moto answers 500 to them.)
#[tokio::test]
async fn labels_are_on_everything_and_thresholds_are_alarms() {
    let Some(env) = env("labels").await else {
        return;
    };
    let (stack, fx) = (&env.stack, &env.fx);
    let label = |mut t: mlctl_core::Tags| {
        t.labels.insert("team".into(), "ml-platform".into());
        t
    };
    let data = stack
        .data
        .register_dataset(&fx.ctx, &fx.dataset_request("iris", "labels"))
        .await
        .expect("register");
    let mut train = fx.training_request("iris-train", "labels", data);
    train.tags = label(train.tags);
    let job = stack.trainer.submit(&fx.ctx, &train).await.expect("submit");
    let JobState::Completed(result) = stack.trainer.poll(&fx.ctx, &job).await.expect("poll") else {
        panic!("moto completes jobs at once");
    };
    let register = mlctl_core::RegisterRequest {
        model: "iris".into(),
        training: result,
        stage: mlctl_spec::Stage::Production,
        approval: mlctl_spec::Approval::Auto,
        description: None,
        fingerprint: fx.fingerprint("labels-model"),
        lineage: Default::default(),
        tags: label(fx.tags("Model/iris", &fx.fingerprint("labels-model"))),
    };
    let version = stack
        .registry
        .register(&fx.ctx, &register)
        .await
        .expect("register the model");
    let mut deploy = fx.endpoint_request("iris", "labels", version);
    deploy.tags = label(deploy.tags);
    deploy.spec.strategy = Some(mlctl_spec::Strategy {
        ty: mlctl_spec::StrategyType::Canary,
        percent: Some(10),
        bake_time: Some("30s".into()),
        min_requests: Some(0),
        max_bake_time: None,
        rollback: Some(mlctl_spec::Rollback {
            max_error_rate: Some(0.05),
            max_p99_latency_ms: Some(100.0),
            alarms: Vec::new(),
        }),
    });
    stack
        .deployer
        .deploy(&fx.ctx, &deploy)
        .await
        .expect("deploy");

    let sm = sagemaker_client(&env.url).await;
    let tags_of = |arn: String| {
        let sm = sm.clone();
        async move {
            sm.list_tags()
                .resource_arn(&arn)
                .send()
                .await
                .unwrap_or_else(|e| panic!("list tags of {arn}: {e:?}"))
                .tags()
                .iter()
                .map(|t| {
                    (
                        t.key().unwrap_or_default().to_string(),
                        t.value().unwrap_or_default().to_string(),
                    )
                })
                .collect::<std::collections::BTreeMap<_, _>>()
        }
    };
    let endpoint = sm
        .describe_endpoint()
        .endpoint_name("conformance-iris")
        .send()
        .await
        .expect("endpoint");
    let config = sm
        .describe_endpoint_config()
        .endpoint_config_name(endpoint.endpoint_config_name().unwrap_or_default())
        .send()
        .await
        .expect("config");
    let model = sm
        .describe_model()
        .model_name(
            config.production_variants()[0]
                .model_name()
                .unwrap_or_default(),
        )
        .send()
        .await
        .expect("model");
    let group = sm
        .describe_model_package_group()
        .model_package_group_name("conformance-iris")
        .send()
        .await
        .expect("group");
    for (what, arn) in [
        ("training job", job.provider_id.clone()),
        (
            "model package group",
            group
                .model_package_group_arn()
                .unwrap_or_default()
                .to_string(),
        ),
        ("model", model.model_arn().unwrap_or_default().to_string()),
        (
            "endpoint config",
            config.endpoint_config_arn().unwrap_or_default().to_string(),
        ),
        (
            "endpoint",
            endpoint.endpoint_arn().unwrap_or_default().to_string(),
        ),
    ] {
        let tags = tags_of(arn).await;
        assert_eq!(
            tags.get("team").map(String::as_str),
            Some("ml-platform"),
            "{what}: {tags:?}"
        );
        assert!(tags.contains_key("mlctl:fingerprint"), "{what}: {tags:?}");
    }

    let cw = cloudwatch_client(&env.url).await;
    let alarms = cw
        .describe_alarms()
        .alarm_name_prefix("conformance-iris-")
        .send()
        .await
        .expect("describe alarms");
    let by_name: std::collections::BTreeMap<&str, &aws_sdk_cloudwatch::types::MetricAlarm> = alarms
        .metric_alarms()
        .iter()
        .map(|a| (a.alarm_name().unwrap_or_default(), a))
        .collect();
    assert_eq!(
        by_name.keys().copied().collect::<Vec<_>>(),
        [
            "conformance-iris-v1-mlctl-error-rate",
            "conformance-iris-v1-mlctl-p99-latency"
        ]
    );
    let latency = by_name["conformance-iris-v1-mlctl-p99-latency"];
    assert_eq!(
        (
            latency.metric_name(),
            latency.extended_statistic(),
            latency.threshold()
        ),
        (Some("ModelLatency"), Some("p99"), Some(100_000.0)),
        "p99 in microseconds"
    );
    let rate = by_name["conformance-iris-v1-mlctl-error-rate"];
    assert_eq!(rate.threshold(), Some(0.05));
    assert_eq!(rate.metrics().len(), 3, "metric math: errors / invocations");
    for a in by_name.values() {
        let tags = cw
            .list_tags_for_resource()
            .resource_arn(a.alarm_arn().unwrap_or_default())
            .send()
            .await
            .expect("alarm tags");
        assert!(
            tags.tags()
                .iter()
                .any(|t| t.key() == Some("team") && t.value() == Some("ml-platform")),
            "{tags:?}"
        );
    }

    // Thresholds removed: the alarms go on the next deploy. Put back: they return; the
    // endpoint deleted: they go with it.
    let mut plain = deploy.clone();
    plain.spec.strategy = None;
    stack
        .deployer
        .deploy(&fx.ctx, &plain)
        .await
        .expect("deploy without thresholds");
    let count = |cw: aws_sdk_cloudwatch::Client| async move {
        cw.describe_alarms()
            .alarm_name_prefix("conformance-iris-")
            .send()
            .await
            .expect("describe alarms")
            .metric_alarms()
            .len()
    };
    assert_eq!(
        count(cw.clone()).await,
        0,
        "removed thresholds leave no alarm"
    );
    stack
        .deployer
        .deploy(&fx.ctx, &deploy)
        .await
        .expect("deploy again");
    assert_eq!(count(cw.clone()).await, 2);
    stack
        .deployer
        .delete(&fx.ctx, "iris")
        .await
        .expect("delete");
    assert_eq!(
        count(cw.clone()).await,
        0,
        "the endpoint's alarms go with it"
    );
}

/// A CloudWatch client on moto.
async fn cloudwatch_client(url: &str) -> aws_sdk_cloudwatch::Client {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .load()
        .await;
    aws_sdk_cloudwatch::Client::new(&sdk)
}

/// A CloudWatch Logs client on moto.
async fn logs_client(url: &str) -> aws_sdk_cloudwatchlogs::Client {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .load()
        .await;
    aws_sdk_cloudwatchlogs::Client::new(&sdk)
}

/// A training job is a run found by its project tag, and its log is read from CloudWatch
/// Logs on the same endpoint as SageMaker. moto's jobs write no log, so the test writes what
/// a two-instance job's containers would: one stream per instance, more lines than one
/// GetLogEvents page, so the reading pages to the end.
#[tokio::test]
async fn runs_are_training_jobs_and_their_logs_come_from_cloudwatch_logs() {
    let Some(env) = env("runs_logs").await else {
        return;
    };
    let (stack, fx) = (&env.stack, &env.fx);
    let data = stack
        .data
        .register_dataset(&fx.ctx, &fx.dataset_request("iris", "logs"))
        .await
        .expect("register");
    let job = stack
        .trainer
        .submit(&fx.ctx, &fx.training_request("logged", "logged", data))
        .await
        .expect("submit");
    let runs = stack
        .trainer
        .runs(&fx.ctx, Some("logged"))
        .await
        .expect("runs");
    assert_eq!(
        runs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [job.name.as_str()],
        "one run, named as the training job"
    );
    assert_eq!(runs[0].resource, "logged");
    assert_eq!(runs[0].commit, fx.ctx.commit);

    let before = stack.trainer.logs(&fx.ctx, &job.name).await.expect("logs");
    assert!(
        before.starts_with(&format!(
            "[no log was found in CloudWatch Logs group /aws/sagemaker/TrainingJobs, streams {}/*",
            job.name
        )),
        "{before}"
    );

    let logs = logs_client(&env.url).await;
    let group = "/aws/sagemaker/TrainingJobs";
    let _ = logs.create_log_group().log_group_name(group).send().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for (instance, offset, count) in [("algo-1", 0, 10_050), ("algo-2", 1, 2)] {
        let stream = format!("{}/{instance}-1700000000", job.name);
        logs.create_log_stream()
            .log_group_name(group)
            .log_stream_name(&stream)
            .send()
            .await
            .expect("create stream");
        let events: Vec<_> = (0..count)
            .map(|i| {
                aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                    .timestamp(now + 2 * i + offset)
                    .message(format!("{instance} line {i}"))
                    .build()
                    .expect("event")
            })
            .collect();
        for chunk in events.chunks(5_000) {
            logs.put_log_events()
                .log_group_name(group)
                .log_stream_name(&stream)
                .set_log_events(Some(chunk.to_vec()))
                .send()
                .await
                .expect("put events");
        }
    }
    let log = stack.trainer.logs(&fx.ctx, &job.name).await.expect("logs");
    let lines: Vec<&str> = log.lines().collect();
    assert!(
        lines[0].starts_with("[... 52 earlier lines (")
            && lines[0]
                .contains("the whole log is in CloudWatch Logs group /aws/sagemaker/TrainingJobs"),
        "10,052 lines, the last 10,000 shown: {}",
        lines[0]
    );
    assert_eq!(lines.len(), 10_001);
    assert_eq!(lines[10_000], "[algo-1] algo-1 line 10049");
    // algo-2's two lines were written at times 1 and 3, among algo-1's first: cut with them,
    // so the kept part starts at algo-1's line 50.
    assert_eq!(lines[1], "[algo-1] algo-1 line 50");
}

/// One feature pipeline on moto: a dataset with a text category, an int category and
/// missing numbers trains a built-in on channels encoded by mlctl's preprocessing (fitted on
/// the training part), registers an inference pipeline, and deploys it as a SageMaker model
/// with `Containers` (moto takes them), the preprocessing told the endpoint's `enforce`.
#[tokio::test]
async fn builtins_train_on_text_categories_and_serve_raw_columns_through_a_pipeline() {
    let Some(env) = env("pipeline").await else {
        return;
    };
    let (stack, fx) = (&env.stack, &env.fx);
    let mut csv = String::from("customer,plan,region,tenure,churned\n");
    for i in 0..60 {
        let plan = ["basic", "pro", "team"][i % 3];
        let region = [1, 2, 3][(i / 3) % 3];
        let tenure = if i % 7 == 0 {
            String::new()
        } else {
            format!("{}", i % 11)
        };
        let churned = if i % 3 == 0 { "yes" } else { "no" };
        csv.push_str(&format!("c{i:03},{plan},{region},{tenure},{churned}\n"));
    }
    fx.write("data/churn.csv", &csv).expect("write");
    let schema: mlctl_spec::DataSchema = serde_json::from_value(serde_json::json!({"columns": [
        {"name": "customer", "type": "string", "role": "id"},
        {"name": "plan", "type": "category"},
        {"name": "region", "type": "int", "categories": ["1", "2", "3", "4"]},
        {"name": "tenure", "type": "float", "nullable": true},
        {"name": "churned", "type": "category", "categories": ["no", "yes"]},
    ]}))
    .expect("schema");
    let mut dataset = fx.dataset_request("churn", "pipeline");
    dataset.spec.source = Some("data/churn.csv".into());
    dataset.spec.target = Some("churned".into());
    dataset.spec.schema = Some(schema.clone());
    if let Some(split) = &mut dataset.spec.split {
        split.stratify = Some("churned".into());
    }
    let data = stack
        .data
        .register_dataset(&fx.ctx, &dataset)
        .await
        .expect("register the dataset");
    let mut train = fx.training_request("churn-train", "pipeline", data);
    train.target_column = Some("churned".into());
    train.schema = Some(schema);
    let job = stack.trainer.submit(&fx.ctx, &train).await.expect("submit");

    // The train channel: label first, then plan (3) + region (4) + tenure, no id, no blanks.
    let sm = sagemaker_client(&env.url).await;
    let d = sm
        .describe_training_job()
        .training_job_name(&job.name)
        .send()
        .await
        .expect("describe");
    assert_eq!(
        d.hyper_parameters()
            .and_then(|h| h.get("feature_dim"))
            .map(String::as_str),
        Some("8")
    );
    let train_uri = d
        .input_data_config()
        .iter()
        .find(|c| c.channel_name() == Some("train"))
        .and_then(|c| c.data_source())
        .and_then(|s| s.s3_data_source())
        .and_then(|s| s.s3_uri())
        .expect("train channel")
        .to_string();
    let digest = train_uri.rsplit('/').next().expect("digest").to_string();
    let channel =
        String::from_utf8(stack.data.get_blob(&digest).await.expect("channel")).expect("text");
    assert!(!channel.is_empty());
    for line in channel.lines() {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells.len(), 9, "{line}");
        assert!(cells.iter().all(|c| c.parse::<f64>().is_ok()), "{line}");
        // Exactly one plan and one region are hot.
        let hot = |r: std::ops::Range<usize>| cells[r].iter().filter(|c| **c == "1").count();
        assert_eq!((hot(1..4), hot(4..8)), (1, 1), "{line}");
    }

    let JobState::Completed(result) = stack.trainer.poll(&fx.ctx, &job).await.expect("poll") else {
        panic!("moto completes jobs at once");
    };
    let register = mlctl_core::RegisterRequest {
        model: "churn".into(),
        training: result,
        stage: mlctl_spec::Stage::Production,
        approval: mlctl_spec::Approval::Auto,
        description: None,
        fingerprint: fx.fingerprint("pipeline-model"),
        lineage: Default::default(),
        tags: fx.tags("Model/churn", &fx.fingerprint("pipeline-model")),
    };
    let version = stack
        .registry
        .register(&fx.ctx, &register)
        .await
        .expect("register the model");
    // The stored preprocessor is found from the version, and is what the channel encodes.
    let pre_uri = version
        .lineage
        .get("preprocessor")
        .expect("the version names its preprocessor")
        .clone();
    let pre_digest = pre_uri.rsplit('/').next().expect("digest").to_string();
    let stored: serde_json::Value = serde_json::from_slice(
        &stack
            .data
            .get_blob(&pre_digest)
            .await
            .expect("preprocessor"),
    )
    .expect("JSON");
    assert_eq!(stored["format"], "mlctl-preprocessor");
    let names: Vec<&str> = stored["features"]
        .as_array()
        .expect("features")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(names, ["plan", "region", "tenure"]);

    let mut deploy = fx.endpoint_request("churn", "pipeline", version);
    deploy.spec.model = "churn".into();
    deploy.spec.enforce = Some(mlctl_spec::Enforce::Strict);
    stack
        .deployer
        .deploy(&fx.ctx, &deploy)
        .await
        .expect("deploy");
    let models = sm.list_models().send().await.expect("list models");
    let name = models
        .models()
        .iter()
        .filter_map(|m| m.model_name())
        .find(|n| n.contains("churn"))
        .expect("the endpoint's model")
        .to_string();
    let m = sm
        .describe_model()
        .model_name(&name)
        .send()
        .await
        .expect("describe model");
    let containers = m.containers();
    assert_eq!(containers.len(), 2, "{m:?}");
    let env_of = |i: usize| containers[i].environment().cloned().unwrap_or_default();
    assert_eq!(
        env_of(0).get("MLCTL_ENFORCE").map(String::as_str),
        Some("strict")
    );
    assert_eq!(
        env_of(0).get("SAGEMAKER_PROGRAM").map(String::as_str),
        Some("mlctl_preprocess.py")
    );
    assert!(
        containers[0]
            .image()
            .is_some_and(|i| i.contains("sagemaker-scikit-learn"))
    );
    assert!(
        containers[1]
            .image()
            .is_some_and(|i| i.ends_with("/linear-learner:1"))
    );
    // The packed script is the provider's, content-addressed.
    let script_uri = env_of(0)
        .get("SAGEMAKER_SUBMIT_DIRECTORY")
        .expect("script location")
        .clone();
    let script_digest = script_uri.rsplit('/').next().expect("digest").to_string();
    let packed = stack
        .data
        .get_blob(&script_digest)
        .await
        .expect("packed script");
    assert_eq!(blake3::hash(&packed).to_hex().to_string(), script_digest);
}
