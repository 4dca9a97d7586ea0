//! Behaviour of the local target through the component traits, on temporary directories.

use mlctl_core::components::*;
use mlctl_core::error::ErrorKind;
use mlctl_core::state::{HistoryEntry, LockError, LockInfo, ObservedResource};
use mlctl_core::{Health, Stack};
use mlctl_spec::{
    Approval, Column, ColumnType, DataSchema, DatasetSpec, Kind, ResourceId, Split, Stage, Target,
    TrainingJobSpec,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A project directory and the local stack over its `.mlctl/local`.
struct Project {
    dir: tempfile::TempDir,
    stack: Stack,
    ctx: OpContext,
}

impl Project {
    fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        let stack = stack_for(dir.path());
        let ctx = OpContext {
            project: "demo".into(),
            project_dir: dir.path().to_path_buf(),
            target: "local".into(),
            commit: "c0ffee".into(),
        };
        Project { dir, stack, ctx }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    fn tags(&self, resource: &str, fp: &str) -> Tags {
        Tags {
            project: "demo".into(),
            resource: resource.into(),
            fingerprint: fp.into(),
            commit: "c0ffee".into(),
            labels: Default::default(),
        }
    }

    async fn dataset(
        &self,
        name: &str,
        spec: DatasetSpec,
        fp: &str,
    ) -> mlctl_core::error::Result<DatasetVersion> {
        let req = DatasetRequest {
            name: name.into(),
            spec,
            fingerprint: fp.into(),
            tags: self.tags(&format!("Dataset/{name}"), fp),
            inputs: BTreeMap::new(),
            source_version: None,
        };
        self.stack.data.register_dataset(&self.ctx, &req).await
    }

    fn training(
        &self,
        job: &str,
        spec: TrainingJobSpec,
        dataset: DatasetVersion,
    ) -> TrainingRequest {
        TrainingRequest {
            job_name: job.into(),
            resource: "train".into(),
            spec,
            dataset,
            target_column: Some("y".into()),
            schema: None,
            fingerprint: format!("fp-{job}"),
            tags: self.tags("TrainingJob/train", job),
            split: None,
        }
    }

    async fn wait(&self, h: &JobHandle) -> JobState {
        for _ in 0..600 {
            match self.stack.trainer.poll(&self.ctx, h).await.unwrap() {
                JobState::Pending | JobState::Running { .. } => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                done => return done,
            }
        }
        panic!("job {} did not finish", h.name);
    }
}

fn stack_for(dir: &Path) -> Stack {
    let cfg = ProviderConfig {
        project: "demo".into(),
        project_dir: dir.to_path_buf(),
        target_name: "local".into(),
        target: Target::local(),
    };
    mlctl_provider_local::stack(&cfg, PathBuf::from("mlctl")).unwrap()
}

fn csv_spec(source: &str) -> DatasetSpec {
    DatasetSpec {
        source: Some(source.into()),
        format: None,
        digest: None,
        target: Some("y".into()),
        schema: None,
        split: None,
        transform: None,
        limits: None,
    }
}

fn script(command: &str) -> TrainingJobSpec {
    TrainingJobSpec {
        dataset: "data".into(),
        algorithm: None,
        command: Some(command.into()),
        code: None,
        image: None,
        hyperparameters: BTreeMap::new(),
        metrics: Vec::new(),
        tuning: None,
        compute: None,
    }
}

/// A small regression table: y = 2x + 1 with a category.
fn table_csv(rows: usize) -> String {
    let mut s = String::from("x,kind,y\n");
    for i in 0..rows {
        let x = i as f64 / 10.0;
        s.push_str(&format!(
            "{x},{},{}\n",
            if i % 2 == 0 { "a" } else { "b" },
            2.0 * x + 1.0
        ));
    }
    s
}

#[tokio::test]
async fn schema_violations_report_column_rule_and_example_rows() {
    let p = Project::new();
    p.write("data/t.csv", "x,kind,y\n1,a,1\n-5,a,2\n3,zzz,3\n4,b,\n");
    let col = |name: &str, ty, min, categories: Option<Vec<&str>>| Column {
        name: name.into(),
        ty,
        min,
        max: None,
        categories: categories.map(|c| c.into_iter().map(String::from).collect()),
        nullable: None,
        role: None,
    };
    let mut spec = csv_spec("data/t.csv");
    spec.schema = Some(DataSchema {
        columns: vec![
            col("x", ColumnType::Float, Some(0.0), None),
            col("kind", ColumnType::Category, None, Some(vec!["a", "b"])),
            col("y", ColumnType::Float, None, None),
        ],
        min_rows: Some(10),
        max_missing_fraction: None,
        allow_extra_columns: None,
    });
    let err = p.dataset("t", spec, "fp1").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid, "{err}");
    let m = &err.message;
    for want in [
        "column `x` [min]",
        // Rows say the file line, header counted, and the data row.
        "line 3 of data/t.csv (data row 2): \"-5\"",
        "column `kind` [categories]",
        "line 4 of data/t.csv (data row 3): \"zzz\"",
        "column `y` [nullable]",
        "line 5 of data/t.csv (data row 4): (missing)",
        "[minRows]",
    ] {
        assert!(m.contains(want), "missing {want:?} in:\n{m}");
    }
}

#[tokio::test]
async fn datasets_are_stored_split_profiled_and_idempotent() {
    let p = Project::new();
    p.write("data/t.csv", &table_csv(100));
    let mut spec = csv_spec("data/t.csv");
    spec.split = Some(Split {
        train: 0.7,
        validation: Some(0.1),
        test: None,
        seed: Some(1),
        stratify: Some("kind".into()),
    });
    let v = p.dataset("t", spec.clone(), "fp1").await.unwrap();
    assert_eq!(v.rows, 100);
    assert_eq!(v.columns, vec!["x", "kind", "y"]);
    assert_eq!(
        v.digest,
        blake3::hash(table_csv(100).as_bytes()).to_hex().to_string()
    );
    assert!(
        v.uri
            .ends_with(&format!("objects/{}/{}", &v.digest[..2], v.digest)),
        "{}",
        v.uri
    );
    assert_eq!(std::fs::read_to_string(&v.uri).unwrap(), table_csv(100));
    let lines = |u: &String| std::fs::read_to_string(u).unwrap().lines().count() - 1;
    assert_eq!(
        (
            lines(&v.splits["train"]),
            lines(&v.splits["validation"]),
            lines(&v.splits["test"])
        ),
        (70, 10, 20)
    );
    let profile: serde_json::Value =
        serde_json::from_slice(&std::fs::read(v.profile_uri.as_ref().unwrap()).unwrap()).unwrap();
    assert_eq!(profile["rows"], 100);
    assert!(p.stack.data.has_blob(&v.digest).await.unwrap());
    // Same fingerprint: the same version, without reading the (now changed) source.
    p.write("data/t.csv", "garbage");
    assert_eq!(p.dataset("t", spec.clone(), "fp1").await.unwrap(), v);
    // Another stack on the same directory sees it too.
    let other = stack_for(p.path());
    let req = DatasetRequest {
        name: "t".into(),
        spec,
        fingerprint: "fp1".into(),
        tags: p.tags("Dataset/t", "fp1"),
        inputs: BTreeMap::new(),
        source_version: None,
    };
    assert_eq!(other.data.register_dataset(&p.ctx, &req).await.unwrap(), v);
}

#[tokio::test]
async fn blobs_round_trip() {
    let p = Project::new();
    let d = p.stack.data.put_blob(b"abc".to_vec()).await.unwrap();
    assert_eq!(p.stack.data.get_blob(&d).await.unwrap(), b"abc");
    assert!(p.stack.data.has_blob(&d).await.unwrap());
    assert!(!p.stack.data.has_blob(&"1".repeat(64)).await.unwrap());
    assert_eq!(
        p.stack
            .data
            .get_blob(&"1".repeat(64))
            .await
            .unwrap_err()
            .kind,
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn cloud_sources_name_the_targets_that_read_them() {
    let p = Project::new();
    let err = p
        .dataset("t", csv_spec("s3://bucket/t.csv"), "fp")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotSupported);
    assert!(err.message.contains("sagemaker"), "{err}");
    let err = p
        .dataset("t", csv_spec("az://c/t.csv"), "fp")
        .await
        .unwrap_err();
    assert!(err.message.contains("azureml"), "{err}");
    let err = p
        .dataset("t", csv_spec("data/none.csv"), "fp")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
}

#[tokio::test]
async fn transforms_get_their_inputs_and_failures_show_stderr() {
    let p = Project::new();
    p.write("data/t.csv", &table_csv(20));
    let raw = p
        .dataset("raw-data", csv_spec("data/t.csv"), "fp-raw")
        .await
        .unwrap();
    let transform = |command: &str| DatasetSpec {
        source: None,
        format: None,
        digest: None,
        target: Some("y".into()),
        schema: None,
        split: None,
        transform: Some(mlctl_spec::Transform {
            command: command.into(),
            inputs: vec!["raw-data".into()],
            code: None,
            output: None,
            image: None,
        }),
        limits: None,
    };
    let req = |spec, fp: &str| DatasetRequest {
        name: "clean".into(),
        spec,
        fingerprint: fp.into(),
        tags: p.tags("Dataset/clean", fp),
        inputs: BTreeMap::from([("raw-data".to_string(), raw.clone())]),
        source_version: None,
    };
    let v = p
        .stack
        .data
        .register_dataset(
            &p.ctx,
            &req(
                transform("head -n 6 \"$MLCTL_INPUT_RAW_DATA\" > \"$MLCTL_OUTPUT\""),
                "fp-clean",
            ),
        )
        .await
        .unwrap();
    assert_eq!(v.rows, 5);
    let err = p
        .stack
        .data
        .register_dataset(
            &p.ctx,
            &req(transform("echo bad input >&2; exit 4"), "fp-bad"),
        )
        .await
        .unwrap_err();
    assert!(
        err.message.contains("exited with code 4") && err.message.contains("bad input"),
        "{err}"
    );
}

#[tokio::test]
async fn a_failing_script_reports_exit_code_and_stderr() {
    let p = Project::new();
    p.write("data/t.csv", &table_csv(10));
    let ds = p
        .dataset("data", csv_spec("data/t.csv"), "fp")
        .await
        .unwrap();
    let req = p.training(
        "job-fail",
        script("echo starting; echo 'Traceback: boom' >&2; exit 3"),
        ds,
    );
    let h = p.stack.trainer.submit(&p.ctx, &req).await.unwrap();
    match p.wait(&h).await {
        JobState::Failed { reason } => {
            assert!(reason.contains("exited with code 3"), "{reason}");
            assert!(reason.contains("Traceback: boom"), "{reason}");
        }
        other => panic!("expected failure, got {other:?}"),
    }
    let logs = p.stack.trainer.logs(&p.ctx, "job-fail").await.unwrap();
    assert!(
        logs.contains("starting") && logs.contains("Traceback: boom"),
        "{logs}"
    );
    let runs = p.stack.trainer.runs(&p.ctx, Some("train")).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, "failed");
}

#[tokio::test]
async fn resubmitting_a_job_name_returns_the_same_job() {
    let p = Project::new();
    p.write("data/t.csv", &table_csv(10));
    let ds = p
        .dataset("data", csv_spec("data/t.csv"), "fp")
        .await
        .unwrap();
    let mut spec = script("sleep 0.3; echo 'score=1.5'");
    spec.metrics = vec![mlctl_spec::MetricDefinition {
        name: "score".into(),
        regex: r"score=([0-9.]+)".into(),
        goal: Some(mlctl_spec::Goal::Maximize),
    }];
    let req = p.training("job-once", spec, ds);
    let a = p.stack.trainer.submit(&p.ctx, &req).await.unwrap();
    let b = p.stack.trainer.submit(&p.ctx, &req).await.unwrap();
    // And from another stack (another process would do the same through state.db).
    let c = stack_for(p.path())
        .trainer
        .submit(&p.ctx, &req)
        .await
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(a, c);
    let JobState::Completed(r) = p.wait(&a).await else {
        panic!("job failed")
    };
    assert_eq!(r.metrics["score"], 1.5);
    // After completion, too: the finished job, not a new one.
    assert_eq!(p.stack.trainer.submit(&p.ctx, &req).await.unwrap(), a);
    assert!(matches!(p.wait(&a).await, JobState::Completed(_)));
    assert_eq!(
        p.stack.trainer.runs(&p.ctx, None).await.unwrap().len(),
        1,
        "the script ran once"
    );
}

#[tokio::test]
async fn a_job_whose_process_died_is_run_again() {
    let p = Project::new();
    p.write("data/t.csv", &table_csv(10));
    let ds = p
        .dataset("data", csv_spec("data/t.csv"), "fp")
        .await
        .unwrap();
    let req = p.training("job-orphan", script("echo done"), ds);
    // Leave a `running` row owned by a process that has exited.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let db = rusqlite::Connection::open(p.path().join(".mlctl/local/state.db")).unwrap();
    let request = serde_json::json!({
        "job_name": "job-orphan", "resource": "train", "spec": req.spec, "dataset": req.dataset, "target_column": "y",
        "fingerprint": "fp", "tags": req.tags, "project": "demo", "project_dir": p.path(), "commit": "c0ffee"
    });
    db.execute(
        "INSERT INTO jobs (name, project, resource, fingerprint, mode, status, request, owner_host, owner_pid, owner_start, attempt, submitted_at)
         VALUES ('job-orphan', 'demo', 'train', 'fp', 'script', 'running', ?1, ?2, ?3, 0, 1, 'then')",
        rusqlite::params![request.to_string(), hostname::get().unwrap().to_string_lossy(), dead_pid],
    )
    .unwrap();
    let h = JobHandle {
        name: "job-orphan".into(),
        provider_id: "job-orphan".into(),
    };
    match p.stack.trainer.poll(&p.ctx, &h).await.unwrap() {
        JobState::Running { message, .. } => {
            assert!(message.unwrap().contains("restarted"), "poll re-runs it")
        }
        other => panic!("expected a restart, got {other:?}"),
    }
    assert!(matches!(p.wait(&h).await, JobState::Completed(_)));
    let attempt: i64 = db
        .query_row(
            "SELECT attempt FROM jobs WHERE name = 'job-orphan'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(attempt, 2);
}

#[tokio::test]
async fn tuning_runs_every_trial_and_picks_the_best() {
    let p = Project::new();
    p.write("data/t.csv", &table_csv(10));
    let ds = p
        .dataset("data", csv_spec("data/t.csv"), "fp")
        .await
        .unwrap();
    // The score peaks at x = 3.
    let mut spec = script(
        r#"echo "score=$(( 10 - (SM_HP_X - 3) * (SM_HP_X - 3) ))"; echo "test_channel=${SM_CHANNEL_TEST:+1}0"; echo "validation_channel=${SM_CHANNEL_VALIDATION:+1}0""#,
    );
    let metric = |name: &str| mlctl_spec::MetricDefinition {
        name: name.into(),
        regex: format!(r"{name}=(-?[0-9]+)"),
        goal: Some(mlctl_spec::Goal::Maximize),
    };
    spec.metrics = vec![
        metric("score"),
        metric("test_channel"),
        metric("validation_channel"),
    ];
    spec.tuning = Some(mlctl_spec::Tuning {
        strategy: mlctl_spec::TuningStrategy::Grid,
        objective: mlctl_spec::Objective {
            metric: "score".into(),
            goal: mlctl_spec::Goal::Maximize,
        },
        max_trials: Some(10),
        parallelism: Some(3),
        seed: None,
        search_space: BTreeMap::from([(
            "x".to_string(),
            mlctl_spec::Param {
                ty: Some(mlctl_spec::ParamType::Int),
                min: Some(0.0),
                max: Some(5.0),
                step: None,
                scale: None,
                values: None,
            },
        )]),
    });
    let h = p
        .stack
        .trainer
        .submit(&p.ctx, &p.training("job-tune", spec, ds))
        .await
        .unwrap();
    let JobState::Completed(r) = p.wait(&h).await else {
        panic!("tuning failed")
    };
    assert_eq!(r.trials.len(), 6);
    assert_eq!(r.hyperparameters["x"], 3);
    assert_eq!(r.metrics["score"], 10.0);
    assert!(r.trials.iter().all(|t| t.status == "completed"));
    let runs = p.stack.trainer.runs(&p.ctx, Some("train")).await.unwrap();
    assert_eq!(runs.len(), 7, "the job's run and one per trial");
    let parent = r.run_id.unwrap();
    assert_eq!(
        runs.iter()
            .filter(|r| r.parent.as_deref() == Some(parent.as_str()))
            .count(),
        6
    );
    let logs = p.stack.trainer.logs(&p.ctx, "job-tune").await.unwrap();
    assert!(logs.contains("best trial"), "{logs}");
    // Trials see train and validation; only the chosen candidate's run sees test (`10` is
    // a channel that is there, `0` one that is not).
    for t in runs.iter().filter(|r| r.parent.is_some()) {
        assert_eq!(t.metrics["test_channel"], 0.0, "{t:?}");
        assert_eq!(t.metrics["validation_channel"], 10.0, "{t:?}");
        assert_eq!(t.evaluation.as_ref().unwrap().scored_on, "validation");
    }
    assert_eq!(r.metrics["test_channel"], 10.0, "{:?}", r.metrics);
    assert_eq!(r.metrics["validation_channel"], 0.0, "{:?}", r.metrics);
    let e = r.evaluation.expect("the rows are recorded");
    assert_eq!(e.scored_on, "test");
    assert_eq!(
        (e.train_rows, e.validation_rows, e.test_rows),
        (6, Some(2), 2)
    );
    assert!(e.test_from.starts_with("carved: 20% of the table"), "{e:?}");
}

/// Rows where the two candidates disagree: a depth-1 tree learns the rule `x > 0`; a deep
/// tree also memorises six flipped training labels. The validation rows follow the rule at
/// exactly those six points, so the shallow tree wins there (1.0 against 0.5); the test rows
/// are the training rows, flips included, so the deep tree would win on them (1.0 against
/// 0.85). Selecting on the test split picks the deep tree; mlctl must pick the shallow one and
/// report its held-out test accuracy, 0.85.
#[tokio::test]
async fn tuning_selects_on_validation_and_scores_only_the_chosen_model_on_test() {
    let p = Project::new();
    let flipped = [-15, -10, -5, 5, 10, 15];
    let label = |x: i32, flip: bool| if (x > 0) != flip { "pos" } else { "neg" };
    let mut train = String::from("x,y\n");
    for x in -20..20 {
        train.push_str(&format!("{x},{}\n", label(x, flipped.contains(&x))));
    }
    let mut validation = String::from("x,y\n");
    for x in flipped.iter().chain(&[-18, -12, 2, 8, 12, 18]) {
        validation.push_str(&format!("{x},{}\n", label(*x, false)));
    }
    let train_path = p.write("data/train.csv", &train);
    let validation_path = p.write("data/validation.csv", &validation);
    let test_path = p.write("data/test.csv", &train);
    let mut ds = p
        .dataset("data", csv_spec("data/train.csv"), "fp")
        .await
        .unwrap();
    ds.splits = BTreeMap::from([
        (
            "train".to_string(),
            train_path.to_string_lossy().into_owned(),
        ),
        (
            "validation".to_string(),
            validation_path.to_string_lossy().into_owned(),
        ),
        ("test".to_string(), test_path.to_string_lossy().into_owned()),
    ]);
    let mut spec = builtin(mlctl_spec::Algorithm::DecisionTree, serde_json::json!({}));
    spec.tuning = Some(mlctl_spec::Tuning {
        strategy: mlctl_spec::TuningStrategy::Grid,
        objective: mlctl_spec::Objective {
            metric: "accuracy".into(),
            goal: mlctl_spec::Goal::Maximize,
        },
        max_trials: None,
        parallelism: Some(2),
        seed: None,
        search_space: BTreeMap::from([(
            "max_depth".to_string(),
            mlctl_spec::Param {
                ty: Some(mlctl_spec::ParamType::Int),
                min: None,
                max: None,
                step: None,
                scale: None,
                values: Some(vec![1.into(), 10.into()]),
            },
        )]),
    });
    let h = p
        .stack
        .trainer
        .submit(&p.ctx, &p.training("job-leak", spec, ds))
        .await
        .unwrap();
    let JobState::Completed(r) = p.wait(&h).await else {
        panic!(
            "{}",
            p.stack.trainer.logs(&p.ctx, "job-leak").await.unwrap()
        )
    };
    let objective = |depth: i64| {
        r.trials
            .iter()
            .find(|t| t.hyperparameters["max_depth"] == depth)
            .and_then(|t| t.objective)
    };
    // Trials are compared on validation rows.
    assert_eq!(objective(1), Some(1.0), "{:?}", r.trials);
    assert_eq!(objective(10), Some(0.5), "{:?}", r.trials);
    // The validation winner, scored once on the held-out test rows.
    assert_eq!(r.hyperparameters["max_depth"], 1);
    assert_eq!(r.metrics["accuracy"], 0.85, "{:?}", r.metrics);
    let model = mlctl_ml::PortableModel::load(&r.artifact_uri).unwrap();
    assert_eq!(model.manifest().metrics, r.metrics);
    let e = r.evaluation.expect("the rows are recorded");
    assert_eq!(
        (e.train_rows, e.validation_rows, e.test_rows),
        (40, Some(12), 40)
    );
    assert_eq!(
        (e.validation_from.as_deref(), e.test_from.as_str()),
        (Some("validation split"), "test split")
    );
}

#[tokio::test]
async fn script_mode_end_to_end_with_python() {
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "python3 is required when CI=true"
        );
        eprintln!("SKIPPED: python3 is not installed; script mode end to end needs it");
        return;
    }
    let p = Project::new();
    p.write("data/t.csv", &table_csv(50));
    let mut dspec = csv_spec("data/t.csv");
    dspec.split = Some(Split {
        train: 0.8,
        validation: None,
        test: Some(0.2),
        seed: None,
        stratify: None,
    });
    let ds = p.dataset("data", dspec, "fp").await.unwrap();
    p.write(
        "src/train.py",
        r#"
import csv, json, os, sys
env = os.environ
hps = json.loads(env["SM_HPS"])
assert hps["alpha"] == 0.5 and env["SM_HP_ALPHA"] == "0.5", (hps, env["SM_HP_ALPHA"])
with open(os.path.join(env["SM_INPUT_CONFIG_DIR"], "hyperparameters.json")) as f:
    assert json.load(f) == {"alpha": "0.5", "name": "m"}
assert json.loads(env["SM_CHANNELS"]) == ["test", "train"]
assert os.path.basename(os.getcwd()) == "code" and os.path.exists("helper.txt")
rows = list(csv.DictReader(open(os.path.join(env["SM_CHANNEL_TRAIN"], "train.csv"))))
test = list(csv.DictReader(open(os.path.join(env["SM_CHANNEL_TEST"], "test.csv"))))
target = env["MLCTL_TARGET_COLUMN"]
mean = sum(float(r[target]) for r in rows) / len(rows)
rmse = (sum((float(r[target]) - mean) ** 2 for r in test) / len(test)) ** 0.5
with open(os.path.join(env["SM_MODEL_DIR"], "model.json"), "w") as f:
    json.dump({"mean": mean}, f)
with open(os.path.join(env["SM_MODEL_DIR"], "metrics.json"), "w") as f:
    json.dump({"n_train": len(rows)}, f)
print(f"rmse={rmse:.6f}")
print("progress to stderr", file=sys.stderr)
"#,
    );
    p.write("src/helper.txt", "x");
    let mut spec = script("python3 train.py");
    spec.code = Some("src".into());
    spec.hyperparameters = BTreeMap::from([
        ("alpha".to_string(), serde_json::json!(0.5)),
        ("name".to_string(), serde_json::json!("m")),
    ]);
    spec.metrics = vec![mlctl_spec::MetricDefinition {
        name: "rmse".into(),
        regex: r"rmse=([0-9.]+)".into(),
        goal: None,
    }];
    let h = p
        .stack
        .trainer
        .submit(&p.ctx, &p.training("job-py", spec, ds.clone()))
        .await
        .unwrap();
    let r = match p.wait(&h).await {
        JobState::Completed(r) => r,
        other => panic!(
            "{other:?}\nlogs:\n{}",
            p.stack.trainer.logs(&p.ctx, "job-py").await.unwrap()
        ),
    };
    assert!(r.metrics["rmse"] > 0.0);
    assert_eq!(r.metrics["n_train"], 40.0);
    let model = Path::new(&r.artifact_uri);
    assert!(model.is_absolute() && model.join("model.json").is_file());
    let runs = p.stack.trainer.runs(&p.ctx, None).await.unwrap();
    assert_eq!(runs[0].data_digest, ds.digest);
    assert!(runs[0].code_digest.is_some());
    assert_eq!(runs[0].commit, "c0ffee");
    assert_eq!(runs[0].status, "completed");
    assert!(
        p.stack
            .trainer
            .logs(&p.ctx, "job-py")
            .await
            .unwrap()
            .contains("progress to stderr")
    );

    // Register it: the artifact is copied into the registry and outlives the run directory.
    let reg = RegisterRequest {
        model: "m".into(),
        training: r.clone(),
        stage: Stage::Staging,
        approval: Approval::Auto,
        description: None,
        fingerprint: "model-fp".into(),
        lineage: BTreeMap::new(),
        tags: p.tags("Model/m", "model-fp"),
    };
    let v = p.stack.registry.register(&p.ctx, &reg).await.unwrap();
    assert_eq!(v.version, 1);
    assert!(
        v.artifact_uri.ends_with("registry/m/1"),
        "{}",
        v.artifact_uri
    );
    std::fs::remove_dir_all(model).unwrap();
    assert!(Path::new(&v.artifact_uri).join("model.json").is_file());
    assert_eq!(v.lineage["datasetDigest"], ds.digest);
    assert_eq!(v.lineage["commit"], "c0ffee");
    assert_eq!(v.lineage["run"], r.run_id.unwrap());
}

fn result_with_artifact(p: &Project, name: &str, acc: f64) -> TrainingResult {
    let dir = p.path().join("artifacts").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.bin"), name).unwrap();
    TrainingResult {
        job_name: name.into(),
        artifact_uri: dir.to_string_lossy().into_owned(),
        metrics: BTreeMap::from([("accuracy".to_string(), acc)]),
        hyperparameters: BTreeMap::new(),
        trials: Vec::new(),
        run_id: None,
        duration_secs: 0.1,
        evaluation: None,
        metrics_origin: None,
    }
}

#[tokio::test]
async fn registry_versions_stages_approval_and_history() {
    let p = Project::new();
    let reg = |name: &str, approval| RegisterRequest {
        model: "clf".into(),
        training: result_with_artifact(&p, name, 0.9),
        stage: Stage::Staging,
        approval,
        description: Some("a classifier".into()),
        fingerprint: format!("fp-{name}"),
        lineage: BTreeMap::from([("trainingJob".to_string(), name.to_string())]),
        tags: p.tags("Model/clf", name),
    };
    let r = &p.stack.registry;
    assert!(r.versions(&p.ctx, "clf").await.unwrap().is_empty());
    let v1 = r.register(&p.ctx, &reg("a", Approval::Auto)).await.unwrap();
    assert_eq!(
        (v1.version, v1.stage, v1.approved()),
        (1, Stage::Staging, true)
    );
    // Idempotent by fingerprint.
    assert_eq!(
        r.register(&p.ctx, &reg("a", Approval::Auto)).await.unwrap(),
        v1
    );
    r.set_stage(&p.ctx, "clf", 1, Stage::Production)
        .await
        .unwrap();
    let v2 = r
        .register(&p.ctx, &reg("b", Approval::Manual))
        .await
        .unwrap();
    assert_eq!((v2.version, v2.approved()), (2, false));
    let err = r
        .set_stage(&p.ctx, "clf", 2, Stage::Production)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Precondition);
    assert!(err.message.contains("mlctl models approve clf 2"), "{err}");
    assert!(
        r.decide(&p.ctx, "clf", 2, mlctl_core::Decision::Approve)
            .await
            .unwrap()
            .approved()
    );
    let v2 = r
        .set_stage(&p.ctx, "clf", 2, Stage::Production)
        .await
        .unwrap();
    assert_eq!(v2.stage, Stage::Production);
    let all = r.versions(&p.ctx, "clf").await.unwrap();
    assert_eq!(
        all.iter().map(|v| (v.version, v.stage)).collect::<Vec<_>>(),
        vec![(1, Stage::Archived), (2, Stage::Production)]
    );
    assert_eq!(
        std::fs::read_to_string(Path::new(&all[1].artifact_uri).join("model.bin")).unwrap(),
        "b"
    );
    let h: Vec<(u32, Option<Stage>, Stage)> = r
        .stage_history(&p.ctx, "clf")
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.version, t.from, t.to))
        .collect();
    assert_eq!(
        h,
        vec![
            (1, None, Stage::Staging),
            (1, Some(Stage::Staging), Stage::Production),
            (2, None, Stage::Staging),
            (1, Some(Stage::Production), Stage::Archived),
            (2, Some(Stage::Staging), Stage::Production),
        ]
    );
    assert_eq!(
        r.decide(&p.ctx, "clf", 9, mlctl_core::Decision::Approve)
            .await
            .unwrap_err()
            .kind,
        ErrorKind::NotFound
    );
    r.delete_model(&p.ctx, "clf").await.unwrap();
    assert!(r.versions(&p.ctx, "clf").await.unwrap().is_empty());
    assert!(!p.path().join(".mlctl/local/registry/clf").exists());
}

#[tokio::test]
async fn the_lock_is_exclusive_across_stacks_on_one_directory() {
    let p = Project::new();
    let other = stack_for(p.path());
    let info = |id: &str| LockInfo {
        format_version: mlctl_core::state::FORMAT_VERSION,
        id: id.into(),
        holder: "me".into(),
        host: "h".into(),
        pid: 1,
        since: "now".into(),
        command: "mlctl apply".into(),
        boot_id: None,
        process_start: None,
        heartbeat: None,
        lease_seconds: None,
    };
    p.stack.state.lock("demo", &info("one")).await.unwrap();
    match other.state.lock("demo", &info("two")).await {
        Err(LockError::Held(h)) => assert_eq!(h.id, "one"),
        other => panic!("expected the lock to be held, got {other:?}"),
    }
    // Another project in the same directory has its own lock.
    other.state.lock("elsewhere", &info("three")).await.unwrap();
    assert_eq!(
        other.state.lock_holder("demo").await.unwrap().unwrap().id,
        "one"
    );
    // Only the holder (or force) releases it.
    assert_eq!(
        other
            .state
            .unlock("demo", "two", false)
            .await
            .unwrap_err()
            .kind,
        ErrorKind::Precondition
    );
    other.state.unlock("demo", "two", true).await.unwrap();
    assert!(p.stack.state.lock_holder("demo").await.unwrap().is_none());
    other.state.lock("demo", &info("two")).await.unwrap();
    other.state.unlock("demo", "two", false).await.unwrap();

    // Many stacks racing: exactly one wins.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..8 {
        let s = stack_for(p.path());
        set.spawn(async move { s.state.lock("race", &info(&format!("r{i}"))).await.is_ok() });
    }
    let mut winners = 0;
    while let Some(r) = set.join_next().await {
        winners += r.unwrap() as usize;
    }
    assert_eq!(winners, 1);
}

#[tokio::test]
async fn state_records_observe_and_history() {
    let p = Project::new();
    let id = ResourceId::new(Kind::Dataset, "iris");
    let rec = ObservedResource {
        format_version: mlctl_core::state::FORMAT_VERSION,
        id: id.clone(),
        fingerprint: "fp1".into(),
        spec: serde_json::json!({"source": "x.csv"}),
        commit: "c1".into(),
        updated_at: "t".into(),
        health: Health::Healthy,
        outputs: serde_json::json!({"rows": 3}),
        inputs: BTreeMap::new(),
        last_error: None,
        drift: Vec::new(),
    };
    let entry = |action: &str| HistoryEntry {
        format_version: mlctl_core::state::FORMAT_VERSION,
        id: id.clone(),
        action: action.into(),
        fingerprint: "fp1".into(),
        commit: "c1".into(),
        at: "t".into(),
        detail: "d".into(),
    };
    let s = &p.stack.state;
    s.record("demo", &rec, &entry("create")).await.unwrap();
    s.record("demo", &rec, &entry("update")).await.unwrap();
    assert_eq!(s.observe("demo").await.unwrap(), vec![rec.clone()]);
    assert!(s.observe("other").await.unwrap().is_empty());
    s.forget("demo", &id, &entry("delete")).await.unwrap();
    assert!(s.observe("demo").await.unwrap().is_empty());
    let h: Vec<String> = s
        .history("demo", &id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(h, vec!["create", "update", "delete"]);
}

/// Two well-separated classes: `label` is `hi` when a + b > 1.
fn classes_csv(rows: usize) -> String {
    let mut s = String::from("a,b,label\n");
    for i in 0..rows {
        let a = (i * 37 % 100) as f64 / 100.0;
        let b = (i * 61 % 100) as f64 / 100.0;
        s.push_str(&format!(
            "{a},{b},{}\n",
            if a + b > 1.0 { "hi" } else { "lo" }
        ));
    }
    s
}

fn builtin(algorithm: mlctl_spec::Algorithm, hps: serde_json::Value) -> TrainingJobSpec {
    let mut spec = script("unused");
    spec.command = None;
    spec.algorithm = Some(algorithm);
    spec.hyperparameters = serde_json::from_value(hps).unwrap();
    spec
}

#[tokio::test]
async fn builtins_train_evaluate_and_save_a_portable_model() {
    let p = Project::new();
    p.write("data/c.csv", &classes_csv(200));
    let mut dspec = csv_spec("data/c.csv");
    dspec.target = Some("label".into());
    dspec.split = Some(Split {
        train: 0.75,
        validation: None,
        test: None,
        seed: Some(3),
        stratify: Some("label".into()),
    });
    let ds = p.dataset("data", dspec, "fp").await.unwrap();
    let mut req = p.training(
        "job-logreg",
        builtin(
            mlctl_spec::Algorithm::LogisticRegression,
            serde_json::json!({"C": 10.0}),
        ),
        ds.clone(),
    );
    req.target_column = Some("label".into());
    let h = p.stack.trainer.submit(&p.ctx, &req).await.unwrap();
    let JobState::Completed(r) = p.wait(&h).await else {
        panic!(
            "{}",
            p.stack.trainer.logs(&p.ctx, "job-logreg").await.unwrap()
        )
    };
    assert!(r.metrics["accuracy"] > 0.85, "{:?}", r.metrics);
    for m in ["f1_macro", "log_loss", "roc_auc"] {
        assert!(
            r.metrics.contains_key(m),
            "{m} missing from {:?}",
            r.metrics
        );
    }
    let model = mlctl_ml::PortableModel::load(&r.artifact_uri).unwrap();
    assert_eq!(model.manifest().lineage["datasetDigest"], ds.digest);
    assert_eq!(model.manifest().lineage["run"], r.run_id.clone().unwrap());
    assert_eq!(model.manifest().metrics, r.metrics);
    assert!(
        p.stack
            .trainer
            .capabilities()
            .algorithms
            .contains(&mlctl_spec::Algorithm::RandomForest)
    );
    let logs = p.stack.trainer.logs(&p.ctx, "job-logreg").await.unwrap();
    assert!(logs.contains("held-out test rows (test split)"), "{logs}");
    let e = r.evaluation.expect("the rows are recorded");
    assert_eq!(
        (e.test_from.as_str(), e.validation_rows),
        ("test split", None)
    );
    assert_eq!(e.train_rows + e.test_rows, 200);
}

#[tokio::test]
async fn halving_tunes_a_builtin_and_records_every_trial() {
    let p = Project::new();
    p.write("data/c.csv", &classes_csv(300));
    let mut dspec = csv_spec("data/c.csv");
    dspec.target = Some("label".into());
    let ds = p.dataset("data", dspec, "fp").await.unwrap();
    let mut spec = builtin(mlctl_spec::Algorithm::DecisionTree, serde_json::json!({}));
    spec.tuning = Some(mlctl_spec::Tuning {
        strategy: mlctl_spec::TuningStrategy::Halving,
        objective: mlctl_spec::Objective {
            metric: "accuracy".into(),
            goal: mlctl_spec::Goal::Maximize,
        },
        max_trials: Some(9),
        parallelism: Some(2),
        seed: Some(1),
        search_space: BTreeMap::from([(
            "max_depth".to_string(),
            mlctl_spec::Param {
                ty: Some(mlctl_spec::ParamType::Int),
                min: Some(1.0),
                max: Some(12.0),
                step: None,
                scale: None,
                values: None,
            },
        )]),
    });
    let mut req = p.training("job-halving", spec, ds);
    req.target_column = Some("label".into());
    let h = p.stack.trainer.submit(&p.ctx, &req).await.unwrap();
    let JobState::Completed(r) = p.wait(&h).await else {
        panic!(
            "{}",
            p.stack.trainer.logs(&p.ctx, "job-halving").await.unwrap()
        )
    };
    // 9 candidates on a ninth of the rows, the best 3 on a third, the best 1 on all.
    assert_eq!(r.trials.len(), 9 + 3 + 1, "{:?}", r.trials);
    let best = r.trials.last().unwrap();
    assert_eq!(r.hyperparameters, best.hyperparameters);
    // Trials are compared on rows carved from train (the dataset has no split); the chosen
    // model's metrics are on the held-out test rows carved before that.
    let e = r.evaluation.clone().expect("the rows are recorded");
    assert_eq!(e.test_rows, 60, "{e:?}");
    assert_eq!(e.validation_rows, Some(48), "{e:?}");
    assert_eq!(e.train_rows, 192, "{e:?}");
    assert!(
        e.validation_from
            .as_deref()
            .unwrap()
            .starts_with("carved: 20% of the rest of the table, seed 42"),
        "{e:?}"
    );
    assert_eq!(p.stack.trainer.runs(&p.ctx, None).await.unwrap().len(), 14);
}
