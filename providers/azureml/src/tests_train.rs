//! The train part's bodies and readings, checked without a service: the exact job bodies of a
//! built-in, a script and a sweep; status mapping; metrics from metrics.json, MLflow and logs;
//! trials and the final job of a sweep. With `MLCTL_AZ_FAKE_PY` set, the same bodies go
//! through the fake's contract check (Microsoft's generated models of azure-ai-ml).

use crate::code::{self, CodeFiles};
use crate::metrics::{self, MlflowRun};
use crate::sweep;
use crate::trainer::{self, JobPlan, RefitPlan, Status};
use mlctl_core::builtin_job::{BuiltinJob, ScoredOn};
use mlctl_core::{DatasetVersion, Tags, TrainingRequest};
use serde_json::{Value, json};
use std::collections::BTreeMap;

const W: &str = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws";
const STORE: &str = "https://acct.blob.core.windows.net/ml/iris";

fn tags() -> Tags {
    Tags {
        project: "iris".into(),
        resource: "TrainingJob/iris-train".into(),
        fingerprint: "f1".into(),
        commit: "c0ffee".into(),
        labels: [("team".to_string(), "ml".to_string())].into(),
    }
}

fn spec(text: &str) -> mlctl_spec::TrainingJobSpec {
    serde_json::from_str(text).unwrap()
}

fn request(yaml: &str) -> TrainingRequest {
    TrainingRequest {
        job_name: "iris-iris-train-f1".into(),
        resource: "iris-train".into(),
        spec: spec(yaml),
        dataset: DatasetVersion {
            name: "iris".into(),
            fingerprint: "d1".into(),
            digest: "digest1".into(),
            uri: format!("{STORE}/objects/whole"),
            rows: 150,
            columns: vec!["x".into(), "species".into()],
            splits: [
                ("train".to_string(), format!("{STORE}/objects/tr")),
                ("test".to_string(), format!("{STORE}/objects/te")),
            ]
            .into(),
            profile_uri: None,
        },
        target_column: Some("species".into()),
        schema: None,
        fingerprint: "f1".into(),
        tags: tags(),
        split: None,
    }
}

fn target(compute: Option<&str>) -> mlctl_spec::AzuremlTarget {
    let mut t: mlctl_spec::AzuremlTarget = serde_json::from_value(json!({
        "subscription": "sub", "resourceGroup": "rg", "workspace": "ws", "storage": STORE,
    }))
    .unwrap();
    t.compute = compute.map(str::to_string);
    t
}

/// The plan `AzureTrainer::plan` makes for `req`, with the ids and URLs it would resolve.
fn plan_of(
    req: &TrainingRequest,
    name: &str,
    command: String,
    env: BTreeMap<String, String>,
) -> JobPlan {
    let place = trainer::placement(&req.spec, &target(Some("cpu-cluster")));
    let art = |what: &str| format!("{STORE}/artifacts/{name}/{what}/");
    let mut outputs: BTreeMap<String, String> = [
        ("model".to_string(), art("model")),
        ("logs".to_string(), art("logs")),
    ]
    .into();
    if req.spec.algorithm.is_none() {
        outputs.insert("output".into(), art("output"));
    }
    let mut tags = req.tags.to_map();
    tags.insert("mlctl:job".into(), name.into());
    let mut properties = trainer::JobFacts::properties(&req.spec);
    properties.insert("mlctl.fingerprint".into(), "f1".into());
    properties.insert("mlctl.dataDigest".into(), "digest1".into());
    JobPlan {
        name: name.into(),
        command,
        code_id: format!("{W}/codes/mlctl-iris-iris-train/versions/abc"),
        environment_id: format!("{W}/environments/mlctl-mlctl-0-1-0/versions/def"),
        compute_id: place.compute.map(|c| format!("{W}/computes/{c}")),
        resources: place.resources,
        inputs: trainer::parts(&req.dataset),
        outputs,
        environment: env,
        timeout: trainer::timeout(&req.spec).unwrap(),
        experiment: "iris".into(),
        display_name: "iris-train".into(),
        tags,
        properties,
    }
}

const BUILTIN: &str = r#"{"dataset": "iris", "algorithm": "logistic_regression", "hyperparameters": {"C": 1.0, "max_iter": 200},
  "compute": {"cpu": 1, "timeout": "2h", "overrides": {"azureml": {"compute": "gpu-cluster", "instanceCount": 2}}}}"#;
const SCRIPT: &str = r#"{"dataset": "iris", "command": "python train.py", "code": "src", "hyperparameters": {"lr": 0.1, "kind": "fast"},
  "metrics": [{"name": "accuracy", "regex": "acc=([0-9.]+)"}]}"#;
const TUNED: &str = r#"{"dataset": "iris", "algorithm": "decision_tree", "hyperparameters": {"min_samples_leaf": 1},
  "tuning": {"strategy": "random", "objective": {"metric": "accuracy", "goal": "maximize"}, "maxTrials": 6, "parallelism": 2,
    "searchSpace": {"max_depth": {"type": "int", "min": 1, "max": 6}, "criterion": {"values": ["gini", "entropy"]},
      "ccp_alpha": {"min": 0.0001, "max": 0.1, "scale": "log"}}}}"#;

fn builtin_body() -> Value {
    let req = request(BUILTIN);
    let names: Vec<String> = trainer::parts(&req.dataset).into_keys().collect();
    let cmd = trainer::builtin_command(BuiltinJob::FILE, &names, trainer::threads(&req.spec));
    trainer::command_job_body(&plan_of(&req, "iris-iris-train-f1", cmd, BTreeMap::new()))
}

#[test]
fn a_builtin_is_a_command_job_of_mlctls_own_trainer() {
    let tags = json!({
        "team": "ml", "mlctl:project": "iris", "mlctl:resource": "TrainingJob/iris-train",
        "mlctl:fingerprint": "f1", "mlctl:commit": "c0ffee", "mlctl:job": "iris-iris-train-f1",
    });
    assert_eq!(
        builtin_body(),
        json!({"properties": {
            "jobType": "Command",
            "command": "set -o pipefail; mkdir -p ${{outputs.logs}}; { mlctl __train-builtin --request request.json --model-dir ${{outputs.model}} --data test=${{inputs.test}} --data train=${{inputs.train}} --threads 1 ; } 2>&1 | tee ${{outputs.logs}}/std_log.txt",
            "codeId": format!("{W}/codes/mlctl-iris-iris-train/versions/abc"),
            "environmentId": format!("{W}/environments/mlctl-mlctl-0-1-0/versions/def"),
            "computeId": format!("{W}/computes/gpu-cluster"),
            "resources": {"instanceCount": 2},
            "inputs": {
                "test": {"jobInputType": "uri_file", "uri": format!("{STORE}/objects/te"), "mode": "ReadOnlyMount"},
                "train": {"jobInputType": "uri_file", "uri": format!("{STORE}/objects/tr"), "mode": "ReadOnlyMount"},
            },
            "outputs": {
                "logs": {"jobOutputType": "uri_folder", "uri": format!("{STORE}/artifacts/iris-iris-train-f1/logs/"), "mode": "ReadWriteMount"},
                "model": {"jobOutputType": "uri_folder", "uri": format!("{STORE}/artifacts/iris-iris-train-f1/model/"), "mode": "ReadWriteMount"},
            },
            "environmentVariables": {},
            "limits": {"jobLimitsType": "Command", "timeout": "PT7200S"},
            "experimentName": "iris",
            "displayName": "iris-train",
            "tags": tags,
            "properties": {
                "mlctl.mode": "builtin",
                "mlctl.hyperparameters": "{\"C\":1.0,\"max_iter\":200}",
                "mlctl.fingerprint": "f1",
                "mlctl.dataDigest": "digest1",
            },
        }})
    );
}

#[test]
fn a_builtins_code_holds_its_requests_scored_on_test_and_for_trials_on_validation() {
    let files =
        trainer::builtin_files(&request(TUNED), mlctl_spec::Algorithm::DecisionTree).unwrap();
    let read = |f: &str| BuiltinJob::from_json(std::str::from_utf8(&files.0[f]).unwrap()).unwrap();
    let (job, trial) = (read("request.json"), read("trial.json"));
    assert_eq!(job.scored_on, ScoredOn::Test);
    assert_eq!(trial.scored_on, ScoredOn::Validation);
    assert!(job.tuned && trial.tuned);
    assert_eq!(job.parts, vec!["test".to_string(), "train".to_string()]);
    assert_eq!(job.integers, ["max_depth".to_string()].into());
    assert_eq!(job.data_digest, "digest1");
    assert_eq!(job.commit, "c0ffee");
    // Content-versioned: the same requests, the same version; another, another.
    let again =
        trainer::builtin_files(&request(TUNED), mlctl_spec::Algorithm::DecisionTree).unwrap();
    assert_eq!(files.version(), again.version());
    let other =
        trainer::builtin_files(&request(BUILTIN), mlctl_spec::Algorithm::LogisticRegression)
            .unwrap();
    assert_ne!(files.version(), other.version());
    assert!(!other.0.contains_key("trial.json"));
}

fn script_body() -> Value {
    let req = request(SCRIPT);
    let parts = trainer::parts(&req.dataset);
    let cmd = trainer::script_command("python train.py", &parts, "iris");
    let env = trainer::script_environment(
        &req.spec.hyperparameters,
        &parts,
        trainer::threads(&req.spec),
    );
    trainer::command_job_body(&plan_of(&req, "iris-iris-train-f1", cmd, env))
}

#[test]
fn a_script_gets_the_script_mode_contract_then_its_command() {
    let body = script_body();
    let p = &body["properties"];
    assert_eq!(
        p["command"],
        "set -o pipefail; mkdir -p ${{outputs.logs}}; { export SM_MODEL_DIR=${{outputs.model}} SM_OUTPUT_DIR=${{outputs.output}} SM_OUTPUT_DATA_DIR=${{outputs.output}}/data; mkdir -p \"$SM_OUTPUT_DATA_DIR\"; ch=\"${TMPDIR:-/tmp}/mlctl-channels\"; mkdir -p \"$ch/test\" && ln -sf ${{inputs.test}} \"$ch/test/test.csv\" && export SM_CHANNEL_TEST=\"$ch/test\"; mkdir -p \"$ch/train\" && ln -sf ${{inputs.train}} \"$ch/train/train.csv\" && export SM_CHANNEL_TRAIN=\"$ch/train\"; python train.py ; } 2>&1 | tee ${{outputs.logs}}/std_log.txt"
    );
    assert_eq!(
        p["environmentVariables"],
        json!({
            "SM_HPS": "{\"kind\":\"fast\",\"lr\":0.1}",
            "SM_HP_KIND": "fast",
            "SM_HP_LR": "0.1",
            "SM_CHANNELS": "[\"test\",\"train\"]",
            "SM_CURRENT_HOST": "algo-1",
            "SM_HOSTS": "[\"algo-1\"]",
        })
    );
    // The target's compute without an override; the default timeout is 24 h.
    assert_eq!(p["computeId"], format!("{W}/computes/cpu-cluster"));
    assert!(p.get("resources").is_none());
    assert_eq!(p["limits"]["timeout"], "PT86400S");
    assert_eq!(
        p["outputs"]["output"]["uri"],
        format!("{STORE}/artifacts/iris-iris-train-f1/output/")
    );
    assert_eq!(p["properties"]["mlctl.mode"], "script");
    assert_eq!(
        trainer::JobFacts::of(&body).metrics,
        request(SCRIPT).spec.metrics,
        "the regex metrics are read back from the job to scrape its log"
    );
}

#[test]
fn a_dataset_without_parts_is_the_train_channel_under_its_name() {
    let parts: BTreeMap<String, String> =
        [("table".to_string(), format!("{STORE}/data/iris.parquet"))].into();
    let c = trainer::script_command("python t.py", &parts, "iris");
    assert!(
        c.contains("ln -sf ${{inputs.table}} \"$ch/train/iris.parquet\" && export SM_CHANNEL_TRAIN=\"$ch/train\""),
        "{c}"
    );
    let env = trainer::script_environment(&BTreeMap::new(), &parts, Some(2));
    assert_eq!(env["SM_CHANNELS"], "[\"train\"]");
    assert_eq!(env["OMP_NUM_THREADS"], "2");
}

#[test]
fn compute_is_the_override_then_the_target_then_serverless() {
    let s = spec(
        r#"{"dataset": "d", "algorithm": "kmeans", "compute": {"overrides": {"azureml": {"instanceType": "Standard_DS3_v2"}}}}"#,
    );
    let p = trainer::placement(&s, &target(None));
    assert_eq!(p.compute, None);
    assert_eq!(
        p.resources,
        Some(json!({"instanceType": "Standard_DS3_v2"}))
    );
    assert_eq!(
        trainer::placement(&s, &target(Some("c1")))
            .compute
            .as_deref(),
        Some("c1")
    );
    // Serverless without a named size: the size that meets `compute`.
    let sized =
        spec(r#"{"dataset": "d", "algorithm": "kmeans", "compute": {"cpu": 4, "memory": "20Gi"}}"#);
    assert_eq!(
        trainer::placement(&sized, &target(None)).resources,
        Some(json!({"instanceType": "Standard_E4s_v3"}))
    );
    assert_eq!(
        trainer::placement(&sized, &target(Some("c1"))).resources,
        None
    );
    let o = spec(
        r#"{"dataset": "d", "algorithm": "kmeans", "compute": {"overrides": {"azureml": {"compute": "c2"}}}}"#,
    );
    assert_eq!(
        trainer::placement(&o, &target(Some("c1")))
            .compute
            .as_deref(),
        Some("c2")
    );
}

fn sweep_body() -> Value {
    let req = request(TUNED);
    let t = req.spec.tuning.clone().unwrap();
    let names: Vec<String> = trainer::parts(&req.dataset).into_keys().collect();
    let cmd = format!(
        "{}{}",
        trainer::builtin_command("trial.json", &names, None),
        sweep::trial_arguments(&t)
    );
    let plan = plan_of(&req, "iris-iris-train-f1", cmd, BTreeMap::new());
    let parts = sweep::sweep_parts(&t, Some(&plan.timeout)).unwrap();
    trainer::sweep_job_body(&plan, &parts)
}

#[test]
fn tuning_is_a_sweep_whose_trials_receive_their_values_on_the_command_line() {
    let body = sweep_body();
    let p = &body["properties"];
    assert_eq!(p["jobType"], "Sweep");
    assert_eq!(
        p["trial"]["command"],
        "set -o pipefail; mkdir -p ${{outputs.logs}}; { mlctl __train-builtin --request trial.json --model-dir ${{outputs.model}} --data test=${{inputs.test}} --data train=${{inputs.train}} --hp ccp_alpha=${{search_space.ccp_alpha}} --hp criterion=${{search_space.criterion}} --hp max_depth=${{search_space.max_depth}} ; } 2>&1 | tee ${{outputs.logs}}/std_log.txt"
    );
    assert_eq!(
        p["searchSpace"],
        json!({
            "ccp_alpha": ["loguniform", [0.0001f64.ln(), 0.1f64.ln()]],
            "criterion": ["choice", [["gini", "entropy"]]],
            "max_depth": ["quniform", [1.0, 6.0, 1]],
        })
    );
    assert_eq!(
        p["samplingAlgorithm"],
        json!({"samplingAlgorithmType": "Random", "seed": 42})
    );
    assert_eq!(
        p["objective"],
        json!({"primaryMetric": "accuracy", "goal": "Maximize"})
    );
    assert_eq!(
        p["limits"],
        json!({"jobLimitsType": "Sweep", "maxTotalTrials": 6, "maxConcurrentTrials": 2, "trialTimeout": "PT86400S"})
    );
    assert_eq!(p["inputs"]["train"]["uri"], format!("{STORE}/objects/tr"));
    assert_eq!(p["computeId"], format!("{W}/computes/cpu-cluster"));
}

#[test]
fn search_spaces_follow_the_strategy() {
    let t = |v: Value| -> mlctl_spec::Tuning { serde_json::from_value(v).unwrap() };
    let grid = t(
        json!({"strategy": "grid", "objective": {"metric": "accuracy", "goal": "maximize"}, "maxTrials": 100,
        "searchSpace": {"max_depth": {"type": "int", "min": 2, "max": 4}, "C": {"values": [0.1, 1]}}}),
    );
    assert_eq!(
        sweep::search_space(&grid).unwrap(),
        json!({"C": ["choice", [[0.1, 1]]], "max_depth": ["choice", [[2, 3, 4]]]})
    );
    assert_eq!(sweep::max_trials(&grid), 6, "a grid runs at most its size");
    assert_eq!(
        sweep::sampling_algorithm(&grid).unwrap(),
        json!({"samplingAlgorithmType": "Grid"})
    );
    let bayes = t(
        json!({"strategy": "bayesian", "objective": {"metric": "rmse", "goal": "minimize"},
        "searchSpace": {"lr": {"min": 0.001, "max": 1, "scale": "log"}}}),
    );
    let e = sweep::search_space(&bayes).unwrap_err();
    assert!(
        e.starts_with("searchSpace.lr: Azure ML's Bayesian sampling takes"),
        "{e}"
    );
    let halving = t(
        json!({"strategy": "halving", "objective": {"metric": "rmse", "goal": "minimize"},
        "searchSpace": {"lr": {"min": 0.1, "max": 1}}}),
    );
    assert!(sweep::sampling_algorithm(&halving).is_err());
    let float_grid = t(
        json!({"strategy": "grid", "objective": {"metric": "rmse", "goal": "minimize"},
        "searchSpace": {"lr": {"min": 0.1, "max": 1}}}),
    );
    assert!(
        sweep::search_space(&float_grid).is_err(),
        "a float range needs a step in grid search"
    );
}

#[test]
fn the_final_job_runs_the_chosen_values_on_the_test_rows() {
    let req = request(TUNED);
    let names: Vec<String> = trainer::parts(&req.dataset).into_keys().collect();
    let cmd = trainer::builtin_command(BuiltinJob::FILE, &names, None);
    let plan = RefitPlan {
        version: RefitPlan::VERSION,
        body: trainer::command_job_body(&plan_of(&req, "s-final", cmd, BTreeMap::new())),
        base_hyperparameters: req.spec.hyperparameters.clone(),
        search_space: vec!["criterion".into(), "max_depth".into()],
        objective: "accuracy".into(),
        script: false,
        evaluation: None,
    };
    let body = plan.body_with(
        &[
            ("criterion".to_string(), json!("gini")),
            ("max_depth".to_string(), json!(3)),
        ]
        .into(),
    );
    assert_eq!(
        body["properties"]["command"],
        "set -o pipefail; mkdir -p ${{outputs.logs}}; { mlctl __train-builtin --request request.json --model-dir ${{outputs.model}} --data test=${{inputs.test}} --data train=${{inputs.train}} --hp criterion=gini --hp max_depth=3 ; } 2>&1 | tee ${{outputs.logs}}/std_log.txt"
    );
    assert_eq!(sweep::final_job_name("s"), "s-final");

    let run = |id: &str, status: &str, acc: Option<f64>, depth: &str| MlflowRun {
        id: id.into(),
        status: status.into(),
        metrics: acc
            .map(|a| ("accuracy".to_string(), a))
            .into_iter()
            .collect(),
        params: [
            ("max_depth".to_string(), depth.to_string()),
            ("other".to_string(), "x".to_string()),
        ]
        .into(),
        ..MlflowRun::default()
    };
    let trials = trainer::trials_of(
        "s",
        &[
            run("s_1", "FINISHED", Some(0.9), "3.0"),
            run("s_0", "FAILED", None, "5"),
        ],
        &plan,
    );
    assert_eq!(trials.len(), 2);
    assert_eq!((trials[0].0.number, trials[0].1.as_str()), (1, "s_0"));
    assert_eq!(trials[0].0.status, "failed");
    assert_eq!(trials[1].0.objective, Some(0.9));
    assert_eq!(
        trials[1].0.hyperparameters,
        [("max_depth".to_string(), json!(3.0))].into()
    );
}

/// A tuned script's trial runs the wrapper with the sampled values on its command line, on
/// the `train` and `validation` channels; its final job is the plain script on `train` and
/// `test`, the chosen values in its environment as SM_HPS and SM_HP_<NAME>.
#[test]
fn a_tuned_scripts_trials_run_the_wrapper_and_its_final_job_gets_the_chosen_values() {
    let req = request(
        r#"{"dataset": "h", "command": "python3 train.py", "code": "src", "hyperparameters": {"alpha": 1.0, "solver": "auto"},
  "metrics": [{"name": "rmse", "regex": "rmse=([0-9.]+)"}],
  "tuning": {"strategy": "grid", "objective": {"metric": "rmse", "goal": "minimize"},
    "searchSpace": {"alpha": {"values": [0.1, 10.0]}, "depth": {"values": [2, 3]}}}}"#,
    );
    let tuning = req.spec.tuning.clone().unwrap();
    assert_eq!(
        sweep::script_trial_command(&tuning),
        "python3 .mlctl/trial.py --hp alpha=${{search_space.alpha}} --hp depth=${{search_space.depth}}"
    );
    assert_eq!(
        sweep::script_trial_config(&req.spec, &tuning),
        json!({
            "version": 1,
            "command": "python3 train.py",
            "hyperparameters": {"alpha": 1.0, "solver": "auto"},
            "integers": ["depth"],
            "metrics": [{"name": "rmse", "regex": "rmse=([0-9.]+)"}],
            "objective": "rmse",
        })
    );
    let last: BTreeMap<String, String> = [
        (
            "test".to_string(),
            format!("{STORE}/datasets/h/carved/b/test.csv"),
        ),
        (
            "train".to_string(),
            format!("{STORE}/datasets/h/carved/a/train.csv"),
        ),
    ]
    .into();
    let cmd = trainer::script_command("python3 train.py", &last, "h");
    let env = trainer::script_environment(&req.spec.hyperparameters, &last, None);
    let mut final_plan = plan_of(&req, "s-final", cmd, env);
    final_plan.inputs = last;
    let plan = RefitPlan {
        version: RefitPlan::VERSION,
        body: trainer::command_job_body(&final_plan),
        base_hyperparameters: req.spec.hyperparameters.clone(),
        search_space: vec!["alpha".into(), "depth".into()],
        objective: "rmse".into(),
        script: true,
        evaluation: None,
    };
    let body = plan.body_with(
        &[
            ("alpha".to_string(), json!(10.0)),
            ("depth".to_string(), json!(3)),
        ]
        .into(),
    );
    let p = &body["properties"];
    assert!(
        p["command"]
            .as_str()
            .unwrap()
            .ends_with("export SM_CHANNEL_TRAIN=\"$ch/train\"; python3 train.py ; } 2>&1 | tee ${{outputs.logs}}/std_log.txt"),
        "{}",
        p["command"]
    );
    assert_eq!(
        p["environmentVariables"]["SM_HPS"],
        "{\"alpha\":10.0,\"depth\":3,\"solver\":\"auto\"}"
    );
    assert_eq!(p["environmentVariables"]["SM_HP_ALPHA"], "10.0");
    assert_eq!(p["environmentVariables"]["SM_HP_DEPTH"], "3");
    assert_eq!(
        p["environmentVariables"]["SM_CHANNELS"],
        "[\"test\",\"train\"]"
    );
    assert_eq!(
        p["inputs"]["test"]["uri"],
        format!("{STORE}/datasets/h/carved/b/test.csv")
    );
}

#[test]
fn job_statuses_map_to_mlctls() {
    for s in [
        "NotStarted",
        "Starting",
        "Provisioning",
        "Preparing",
        "Queued",
    ] {
        assert_eq!(trainer::status(s), Status::Pending(s.into()));
    }
    for s in ["Running", "Finalizing", "CancelRequested"] {
        assert_eq!(trainer::status(s), Status::Running(s.into()));
    }
    assert_eq!(trainer::status("Completed"), Status::Completed);
    assert_eq!(trainer::status("Failed"), Status::Failed);
    assert_eq!(trainer::status("Canceled"), Status::Canceled);
    assert_eq!(
        trainer::status("NotResponding"),
        Status::Running("Azure ML reports the job as NotResponding".into())
    );
    let failed = json!({"properties": {"status": "Failed", "error": {"code": "UserError", "message": "exit 1"}}});
    assert_eq!(
        trainer::job_error(&failed).as_deref(),
        Some("UserError: exit 1")
    );
    assert_eq!(trainer::tail("a\nb\nc\n", 2), "b\nc");
}

#[test]
fn mlflow_runs_give_each_metrics_last_step_and_metrics_json_wins() {
    let run = metrics::parse_run(&json!({
        "info": {"run_id": "j1", "status": "FINISHED", "start_time": 1000, "end_time": 3500},
        "data": {
            "metrics": [
                {"key": "loss", "value": 0.9, "step": 0, "timestamp": 5},
                {"key": "loss", "value": 0.2, "step": 9, "timestamp": 1},
                {"key": "test_accuracy", "value": 0.8, "step": 0, "timestamp": 1},
                {"key": "validation_f1_macro", "value": 0.7, "step": 0, "timestamp": 1},
                {"key": "test_f1_macro", "value": 0.75, "step": 0, "timestamp": 1},
                {"key": "rmse", "value": 3.0, "step": 0, "timestamp": 1},
            ],
            "params": [{"key": "lr", "value": "0.1"}],
            "tags": [{"key": "mlflow.parentRunId", "value": "s"}],
        }
    }));
    assert_eq!(run.id, "j1");
    assert_eq!(run.metrics["loss"], 0.2, "the highest step wins");
    assert_eq!(run.params["lr"], "0.1");
    assert_eq!(run.tags["mlflow.parentRunId"], "s");
    assert_eq!((run.start_time, run.end_time), (Some(1000), Some(3500)));

    let file =
        metrics::parse_metrics_json(br#"{"rmse": 2.5, "by": {"class": 1}, "note": "x"}"#).unwrap();
    assert_eq!(
        file,
        [("rmse".to_string(), 2.5), ("by.class".to_string(), 1.0)].into()
    );
    let merged = metrics::merge(&file, &run.metrics);
    assert_eq!(merged["rmse"], 2.5, "metrics.json wins over MLflow");
    assert_eq!(
        merged["accuracy"], 0.8,
        "a channel prefix gives the vocabulary name"
    );
    assert_eq!(
        merged["f1_macro"], 0.75,
        "test rows win over validation rows"
    );
    assert!(!merged.contains_key("loss") || merged["loss"] == 0.2);
    assert!(metrics::parse_metrics_json(b"[1]").is_err());

    let re = vec![(
        "accuracy".to_string(),
        regex::Regex::new("acc=([0-9.]+)").unwrap(),
    )];
    assert_eq!(
        metrics::scrape("acc=0.5\nnoise\nacc=0.75\n", &re)["accuracy"],
        0.75
    );
}

#[test]
fn tracking_calls_are_mlflows_rest_api() {
    assert_eq!(
        metrics::run_url("https://h/mlflow/v1.0/x", "a b"),
        "https://h/mlflow/v1.0/x/api/2.0/mlflow/runs/get?run_id=a%20b"
    );
    assert_eq!(
        metrics::trials_search_body("7", "s", None),
        json!({"experiment_ids": ["7"], "filter": "tags.mlflow.parentRunId = 's'", "max_results": 1000})
    );
}

#[test]
fn a_long_log_is_cut_to_its_end_and_says_so() {
    let log = "x".repeat(10) + "tail";
    let cut = trainer::cut_log(&log, 4, "https://s/artifacts/j/logs/");
    assert_eq!(
        cut,
        "[mlctl: the first 10 bytes of this log are cut; the whole log is https://s/artifacts/j/logs/std_log.txt]\ntail"
    );
    assert_eq!(trainer::cut_log("short", 100, ""), "short");
}

#[test]
fn retagging_keeps_the_job_and_replaces_its_labels() {
    let job = json!({"id": "x", "name": "j", "properties": {
        "jobType": "Command", "command": "c", "status": "Completed",
        "tags": {"old": "1", "team": "a", "mlctl:project": "iris"},
    }});
    let mut t = tags();
    t.labels = [("team".to_string(), "b".to_string())].into();
    let body = trainer::retagged(&job, &t, &["old".into()]);
    let p = &body["properties"];
    assert!(p.get("status").is_none());
    assert_eq!(p["command"], "c");
    assert_eq!(p["tags"]["team"], "b");
    assert!(p["tags"].get("old").is_none());
    assert_eq!(p["tags"]["mlctl:commit"], "c0ffee");
}

#[test]
fn code_is_packed_without_secrets_and_versioned_by_content() {
    let dir = tempdir();
    std::fs::create_dir_all(dir.join("pkg/__pycache__")).unwrap();
    std::fs::create_dir_all(dir.join(".git")).unwrap();
    std::fs::write(dir.join("train.py"), "print(1)").unwrap();
    std::fs::write(dir.join("pkg/m.py"), "x = 1").unwrap();
    std::fs::write(dir.join("pkg/__pycache__/m.pyc"), "junk").unwrap();
    std::fs::write(dir.join(".env"), "SECRET=1").unwrap();
    std::fs::write(dir.join(".git/config"), "x").unwrap();
    let files = code::pack_dir(&dir).unwrap();
    assert_eq!(files.0.keys().collect::<Vec<_>>(), ["pkg/m.py", "train.py"]);
    let v = files.version();
    std::fs::write(dir.join("train.py"), "print(2)").unwrap();
    assert_ne!(code::pack_dir(&dir).unwrap().version(), v);
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("/etc", dir.join("out")).unwrap();
        let e = code::pack_dir(&dir).unwrap_err();
        assert!(
            e.message.contains("outside the code directory"),
            "{}",
            e.message
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        code::asset_name(&["mlctl", "my proj", "a.b"]),
        "mlctl-my-proj-a-b"
    );
    assert_eq!(CodeFiles::default().version().len(), 32);
    assert_eq!(
        code::pending_upload_urls(&json!({"blobReferenceForConsumption": {"blobUri": "https://b/c", "credential": {"credentialType": "SAS", "sasUri": "https://b/c?sig"}}})).unwrap(),
        ("https://b/c".to_string(), "https://b/c?sig".to_string())
    );
}

fn tempdir() -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!(
        "mlctl-az-train-test-{}-{}",
        std::process::id(),
        time::OffsetDateTime::now_utc().unix_timestamp_nanos()
    ));
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// Every body above through the fake's contract check (azure-ai-ml's generated models).
#[test]
fn the_bodies_pass_azure_mls_own_models() {
    let Some(python) = std::env::var("MLCTL_AZ_FAKE_PY")
        .ok()
        .filter(|s| !s.is_empty())
    else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "MLCTL_AZ_FAKE_PY is not set (run `.ci/azureml-fake.sh env`)"
        );
        eprintln!(
            "skipped: MLCTL_AZ_FAKE_PY is not set, so the bodies are not checked against azure-ai-ml's models (`.ci/azureml-fake.sh env`)"
        );
        return;
    };
    let fake = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fake");
    assert!(
        fake.join("contract.py").exists(),
        "{} has no contract.py",
        fake.display()
    );
    let tags = tags();
    let bodies = json!([
        ["PUT", "jobs/a", builtin_body()],
        ["PUT", "jobs/b", script_body()],
        ["PUT", "jobs/c", sweep_body()],
        ["PUT", "codes/n", code::code_container_body("d", &tags)],
        [
            "PUT",
            "codes/n/versions/1",
            code::code_version_body("https://b/c", &tags)
        ],
        [
            "POST",
            "codes/n/versions/1/startPendingUpload",
            code::pending_upload_body()
        ],
        [
            "PUT",
            "environments/e/versions/1",
            code::environment_version_body("img:1", &tags)
        ],
    ]);
    let script = r#"
import json, sys
import contract
failed = []
for method, path, body in json.load(sys.stdin):
    v = contract.check_route(method, "/" + path, body)
    if v is None:
        failed.append(f"{method} {path}: no route in contract.ROUTES")
    else:
        failed += [f"{method} {path}: {x}" for x in v]
print("\n".join(failed))
sys.exit(1 if failed else 0)
"#;
    use std::io::Write;
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .env("PYTHONPATH", &fake)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(bodies.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "contract violations:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The refusals of a TrainingJob (`spec` lines under `spec:`) on an azureml target, as
/// `field: why (instead)`; the dataset's own fields are another part's.
fn refusals(spec: &str) -> Vec<String> {
    use mlctl_core::support::{TargetSupport, check};
    let dir = tempfile::tempdir().unwrap();
    let project = "apiVersion: mlctl/v1\nkind: Project\nmetadata:\n  name: p\nspec:\n  targets:\n    az:\n      provider: azureml\n      subscription: s\n      resourceGroup: rg\n      workspace: ws\n      storage: https://a.blob.core.windows.net/ml\n";
    std::fs::write(dir.path().join("mlctl.yaml"), project).unwrap();
    std::fs::create_dir_all(dir.path().join("ml")).unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("data/iris.csv"), "a,species\n1,x\n").unwrap();
    std::fs::write(
        dir.path().join("ml/all.yaml"),
        format!("apiVersion: mlctl/v1\nkind: Dataset\nmetadata:\n  name: iris\nspec:\n  source: data/iris.csv\n  target: species\n---\napiVersion: mlctl/v1\nkind: TrainingJob\nmetadata:\n  name: t\nspec:\n  dataset: iris\n{spec}"),
    )
    .unwrap();
    let loaded = mlctl_spec::load(&mlctl_spec::DirFiles::new(dir.path()));
    let errors: Vec<String> = loaded
        .errors()
        .map(|d| format!("spec: {}", d.message))
        .collect();
    let Some(spec) = loaded.spec else {
        return errors;
    };
    let ts = TargetSupport::new(
        mlctl_spec::Kind::ALL.map(|k| (k, "azureml".to_string(), trainer::field_rules(false))),
    );
    check(&spec, &ts)
        .into_iter()
        .filter(|r| r.subject.starts_with("TrainingJob/"))
        .map(|r| format!("{}: {} ({})", r.field, r.refusal.why, r.refusal.instead))
        .collect()
}

#[test]
fn the_iris_example_trains_here_and_what_azure_ml_cannot_do_is_refused_once() {
    let iris = "  algorithm: logistic_regression\n  hyperparameters: {C: 1.0, max_iter: 200}\n  compute:\n    cpu: 1\n    overrides:\n      sagemaker: {instanceType: ml.m5.large}\n      azureml: {compute: cpu-cluster}\n";
    assert_eq!(refusals(iris), Vec::<String>::new());
    let tuned = "  algorithm: decision_tree\n  tuning:\n    strategy: bayesian\n    objective: {metric: accuracy, goal: maximize}\n    searchSpace:\n      max_depth: {type: int, min: 1, max: 8, scale: log}\n      min_samples_leaf: {values: [1, 2]}\n";
    let got = refusals(tuned);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].contains(
            "`max_depth` cannot be searched by an Azure ML sweep: Azure ML's Bayesian sampling"
        ),
        "{}",
        got[0]
    );
    let script = "  command: python t.py\n  code: src\n  image: python:3.12\n  tuning:\n    strategy: random\n    objective: {metric: accuracy, goal: maximize}\n    searchSpace:\n      lr: {min: 0.1, max: 1}\n";
    assert_eq!(
        refusals(script),
        Vec::<String>::new(),
        "a script is tuned too"
    );
    // Serverless: mlctl chooses a VM size that meets `compute`.
    assert_eq!(
        refusals("  algorithm: kmeans\n  compute: {memory: 4Gi, gpu: 1}\n"),
        Vec::<String>::new()
    );
    // None meets it, a named one is too small, or one mlctl does not know.
    let got = refusals("  algorithm: kmeans\n  compute: {cpu: 200, memory: 4Gi}\n");
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].starts_with("compute.cpu: no Azure VM size"),
        "{}",
        got[0]
    );
    let got = refusals(
        "  algorithm: kmeans\n  compute:\n    cpu: 4\n    memory: 8Gi\n    overrides: {azureml: {instanceType: Standard_DS2_v2}}\n",
    );
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(got[0].contains("4 vCPUs (it has 2)"), "{}", got[0]);
    assert!(
        got[1].contains("8.0 GiB (it has 7 GiB)") && got[1].contains("Standard_"),
        "{}",
        got[1]
    );
    let got = refusals(
        "  algorithm: kmeans\n  compute:\n    memory: 8Gi\n    overrides: {azureml: {instanceType: Standard_X9}}\n",
    );
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].starts_with("compute.memory: mlctl does not know"),
        "{}",
        got[0]
    );
    // On a cluster, the VM is the cluster's: memory and gpu are refused, cpu is threads.
    let got = refusals(
        "  algorithm: kmeans\n  compute:\n    cpu: 2\n    memory: 4Gi\n    gpu: 1\n    overrides: {azureml: {compute: gpu-cluster}}\n",
    );
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(
        got.iter().all(|g| g.contains("compute cluster")),
        "{got:#?}"
    );
    let got = refusals(
        "  algorithm: kmeans\n  tuning:\n    strategy: halving\n    objective: {metric: inertia, goal: minimize}\n    searchSpace:\n      k: {values: [2, 3]}\n",
    );
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].starts_with("tuning.strategy: successive halving"),
        "{}",
        got[0]
    );
}
