//! `mlctl export --format kfp`: every example's DAG as a Kubeflow Pipelines v2 pipeline, read
//! back by Kubeflow's own SDK (`tests/kfp/check.py`: `kfp.components.load_component_from_file`
//! and a strict parse into `pipeline_spec_pb2.PipelineSpec`), and `mlctl reconcile --only`,
//! which each of its steps runs.
//!
//! The SDK comes from the venv `.ci/mlflow.sh` makes (`MLCTL_MLFLOW_PY`).

use crate::common::*;
use crate::mlflow::mlflow_env;
use serde_json::Value;

/// Exports `p` for `target` and checks it with the kfp SDK: its tasks by name.
fn export_and_check(py: &str, p: &TestProject, target: &str, name: &str) -> Value {
    let out = p.path().join("pipeline.yaml");
    p.mlctl(&[
        "export",
        "--format",
        "kfp",
        "--target",
        target,
        "--repo",
        &format!("https://git.example/{name}.git"),
        "--out",
        out.to_str().unwrap(),
    ])
    .expect_code(0);
    let check = std::process::Command::new(py)
        .arg(repo_root().join("tests/kfp/check.py"))
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{name}: the kfp SDK refused the pipeline:\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    serde_json::from_slice(&check.stdout).unwrap()
}

/// The first target of a project file whose provider keeps its state in the cloud.
fn cloud_target(project: &str) -> Option<String> {
    let mut current = None;
    for line in project.lines() {
        if line.starts_with("    ") && !line.starts_with("     ") && line.trim_end().ends_with(':')
        {
            current = Some(line.trim().trim_end_matches(':').to_string());
        }
        let provider = line.trim();
        if provider == "provider: sagemaker" || provider == "provider: azureml" {
            return current;
        }
    }
    None
}

#[test]
fn every_example_exports_as_a_pipeline_the_kfp_sdk_loads_strictly() {
    let test = "every_example_exports_as_a_pipeline_the_kfp_sdk_loads_strictly";
    let Some(m) = mlflow_env(test) else { return };
    for example in ["iris", "housing", "churn", "environments"] {
        let p = TestProject::example(example);
        let project = p.read("mlctl.yaml");
        // A target whose state every step sees: a cloud one, else local state on a volume.
        let target = cloud_target(&project).unwrap_or_else(|| {
            p.replace(
                "mlctl.yaml",
                "    local:\n      provider: local\n",
                &format!(
                    "    local:\n      provider: local\n      root: /var/lib/mlctl/{example}\n"
                ),
            );
            "local".to_string()
        });
        let p = p.into_git();
        let got = export_and_check(&m.py, &p, &target, example);
        let tasks = got["tasks"].as_object().unwrap();
        // One step per resource, each depending on what the resource references.
        let resources: Vec<&str> = tasks
            .values()
            .map(|t| t["resource"].as_str().unwrap())
            .collect();
        assert!(
            resources.iter().any(|r| r.starts_with("Dataset/")),
            "{example}: {got:#}"
        );
        assert!(
            resources.iter().any(|r| r.starts_with("TrainingJob/")),
            "{example}: {got:#}"
        );
        for (name, t) in tasks {
            let resource = t["resource"].as_str().unwrap();
            assert_eq!(t["args"][4], resource, "{example} {name}");
            assert_eq!(t["args"][3], target.as_str());
            let deps = t["dependentTasks"].as_array().unwrap();
            if resource.starts_with("TrainingJob/") || resource.starts_with("Model/") {
                assert!(!deps.is_empty(), "{example}: {resource} has no dependency");
            }
            for d in deps {
                assert!(tasks.contains_key(d.as_str().unwrap()), "{example}: {d}");
            }
            // Live things always reconcile; immutable ones are cached by fingerprint.
            if resource.starts_with("Endpoint/") || resource.starts_with("Monitor/") {
                assert_eq!(t["enableCache"], false, "{example} {resource}");
            }
            if t["enableCache"] == true {
                assert_eq!(
                    t["cacheKey"].as_str().unwrap().len(),
                    64,
                    "{example} {resource}"
                );
            }
        }
    }
}

#[test]
fn the_iris_pipeline_is_one_step_per_resource_in_the_mlctl_image() {
    let p = TestProject::example_in_git("iris");
    let out = p
        .mlctl(&[
            "export",
            "--format",
            "kfp",
            "--target",
            "staging",
            "--repo",
            "https://git.example/iris.git",
            "--image",
            "registry.example/mlctl:1.2",
        ])
        .expect_code(0);
    insta::assert_snapshot!("kfp_iris_staging", redact(&out.stdout));
}

#[test]
fn a_local_target_is_refused_unless_its_state_is_on_a_volume_every_step_mounts() {
    let p = TestProject::example_in_git("iris");
    let out = p
        .mlctl(&["export", "--format", "kfp", "--target", "local"])
        .expect_code(1);
    assert!(
        out.stderr
            .contains("every Kubeflow step runs in a fresh container")
            && out.stderr.contains("absolute `root:`"),
        "{}",
        out.stderr
    );
}

#[test]
fn reconcile_only_applies_one_resource_once_what_it_needs_is_up_to_date() {
    let (p, _port) = iris_on_a_free_port("{type: all-at-once}");
    let p = p.into_git();
    let early = p
        .mlctl(&["reconcile", "--only", "TrainingJob/iris-train"])
        .expect_code(1);
    assert!(
        early
            .stderr
            .contains("TrainingJob/iris-train needs Dataset/iris, which will be created")
            && early.stderr.contains("apply it first"),
        "{}",
        early.stderr
    );
    let unknown = p
        .mlctl(&["reconcile", "--only", "Dataset/nope"])
        .expect_code(1);
    assert!(
        unknown.stderr.contains("no such resource"),
        "{}",
        unknown.stderr
    );

    let data = p
        .mlctl(&["reconcile", "--only", "Dataset/iris"])
        .expect_code(0);
    assert!(
        data.stdout.contains("Resources: 1 added"),
        "{}",
        data.stdout
    );
    let train = p
        .mlctl(&["reconcile", "--only", "TrainingJob/iris-train"])
        .expect_code(0);
    assert!(
        train.stdout.contains("Resources: 1 added"),
        "{}",
        train.stdout
    );
    let status = p.mlctl(&["status", "-o", "json"]).expect_code(0);
    let rows: Value = serde_json::from_str(&status.stdout).unwrap();
    let synced: Vec<String> = rows["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["sync"] == "synced")
        .map(|r| r["resource"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        synced,
        ["Dataset/iris", "TrainingJob/iris-train"],
        "{status:?}"
    );
    p.mlctl(&["destroy", "--auto-approve"]).expect_code(0);
}
