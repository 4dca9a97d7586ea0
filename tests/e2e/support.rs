//! Honoured or refused: what each target does with every field, through the CLI.

use crate::common::*;

/// `docs/support-matrix.md` is what `mlctl support-matrix` prints, every field of the spec is
/// declared by every provider, and each cell says honoured, simulated, refused or n/a.
/// `UPDATE_SUPPORT_MATRIX=1` rewrites the file.
#[test]
fn support_matrix_is_current_and_every_field_is_declared() {
    let run = Run::from(mlctl().arg("support-matrix").output().expect("run mlctl")).expect_code(0);
    assert!(
        !run.stdout.contains("undeclared"),
        "every provider must declare every field (honoured, refused or n/a); undeclared:\n{}",
        run.stdout
            .lines()
            .filter(|l| l.contains("undeclared"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for line in run.stdout.lines().filter(|l| l.starts_with("| `")) {
        for cell in line.split('|').skip(2).filter(|c| !c.trim().is_empty()) {
            let word = cell.trim().split('<').next().unwrap_or("");
            assert!(
                ["honoured", "simulated", "refused", "n/a"].contains(&word),
                "cell `{cell}` in `{line}` says neither honoured, simulated, refused nor n/a"
            );
        }
    }
    let path = repo_root().join("docs/support-matrix.md");
    if std::env::var_os("UPDATE_SUPPORT_MATRIX").is_some() {
        std::fs::write(&path, &run.stdout).expect("write docs/support-matrix.md");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == run.stdout,
        "docs/support-matrix.md is stale: a provider's declarations changed.\n\
         Regenerate it and commit the result:\n\n    \
         UPDATE_SUPPORT_MATRIX=1 cargo test -p mlctl-cli --test e2e support_matrix\n"
    );
}

/// A spec the local target cannot fully honour: every refused field is listed at once, at
/// its position, with what to do; plan exits 1 and nothing is created.
#[test]
fn plan_refuses_every_field_the_target_cannot_honour_before_creating_anything() {
    let p = TestProject::example_in_git("iris");
    p.replace(
        "ml/endpoint.yaml",
        "      maxP99LatencyMs: 100\n",
        "      maxP99LatencyMs: 100\n      alarms: [p99-high]\n",
    );
    p.replace("ml/train.yaml", "    cpu: 1\n", "    cpu: 1\n    gpu: 1\n");
    p.commit_all("ask for what local cannot do");
    for verb in [&["plan"][..], &["apply", "--auto-approve"], &["reconcile"]] {
        let run = p.mlctl(verb).expect_code(1);
        let expected_alarm = "\
error[refused-by-target]: target `local` (local) does not honour `strategy.rollback.alarms` of Endpoint/iris: CloudWatch alarms exist on SageMaker only
  --> ml/endpoint.yaml:16:15
   |
16 |       alarms: [p99-high]
   |               ^^^^^^^^^^
   = help: use `maxErrorRate` and `maxP99LatencyMs`, which the local target judges itself
";
        let expected_gpu = "\
error[refused-by-target]: target `local` (local) does not honour `compute.gpu` of TrainingJob/iris-train: the local target runs without GPUs
  --> ml/train.yaml:13:10
   |
13 |     gpu: 1
   |          ^
   = help: remove `compute.gpu` for local targets, or train on a sagemaker target
";
        assert!(
            run.stderr.contains(expected_alarm),
            "{verb:?}:\n{}",
            run.stderr
        );
        assert!(
            run.stderr.contains(expected_gpu),
            "{verb:?}:\n{}",
            run.stderr
        );
        assert!(
            run.stderr
                .contains("error: target `local` does not honour 2 fields (the spec at"),
            "{}",
            run.stderr
        );
        assert!(
            !p.path().join(".mlctl/local/objects").exists()
                || std::fs::read_dir(p.path().join(".mlctl/local/objects"))
                    .map(|d| d.count() == 0)
                    .unwrap_or(true),
            "nothing may be stored when plan refuses"
        );
    }
    // The same refusals without a git revision or an open target.
    let run = p.mlctl(&["validate", "--target", "local"]).expect_code(1);
    assert!(
        run.stderr.contains("strategy.rollback.alarms"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("compute.gpu"), "{}", run.stderr);
}

/// `validate --target` needs no credentials: a SageMaker target whose `${env:...}` values
/// are unset still says which fields it refuses.
#[test]
fn validate_target_lists_a_cloud_targets_refusals_without_credentials() {
    let p = TestProject::example("iris");
    p.replace(
        "ml/endpoint.yaml",
        "  capture:\n",
        "  auth:\n    token: ${env:IRIS_TOKEN}\n  capture:\n",
    );
    let run = Run::from(
        mlctl()
            .args(["validate", "--target", "staging", "-o", "json"])
            .current_dir(p.path())
            .env_remove("MLCTL_SM_ROLE")
            .env_remove("MLCTL_SM_BUCKET")
            .output()
            .expect("run mlctl"),
    )
    .expect_code(1);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let refused: Vec<String> = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["code"] == "refused-by-target")
        .map(|d| d["message"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        refused
            .iter()
            .any(|m| m.contains("`auth.token` of Endpoint/iris") && m.contains("SigV4")),
        "{refused:#?}"
    );
    assert_eq!(v["valid"], false);
    // The local target honours all of it.
    p.mlctl(&["validate", "--target", "local"]).expect_code(0);
}

/// A project label that AWS cannot take as a tag is refused once, at the project's own
/// `metadata.labels` in `mlctl.yaml`, not once per resource that would inherit it.
#[test]
fn a_project_label_the_target_cannot_tag_is_refused_at_the_project() {
    let p = TestProject::example("iris");
    p.replace(
        "mlctl.yaml",
        "    team: ml-platform\n",
        "    aws:team: ml-platform\n",
    );
    let run = Run::from(
        mlctl()
            .args(["validate", "--target", "staging", "-o", "json"])
            .current_dir(p.path())
            .env_remove("MLCTL_SM_ROLE")
            .env_remove("MLCTL_SM_BUCKET")
            .output()
            .expect("run mlctl"),
    )
    .expect_code(1);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let refused: Vec<&serde_json::Value> = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["code"] == "refused-by-target")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:#?}");
    let d = refused[0];
    let message = d["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("`metadata.labels` of Project/iris") && message.contains("aws:"),
        "{d:#?}"
    );
    assert_eq!(d["file"], "mlctl.yaml", "{d:#?}");
    assert_eq!(d["line"], 6, "{d:#?}");
    // The local target takes any label.
    p.mlctl(&["validate", "--target", "local"]).expect_code(0);
}

/// `${env:NAME}` in a field where mlctl resolves it (here a dataset's `source`): an unset
/// variable stops plan at its position; set, the target reads the value while the state keeps
/// the reference.
#[test]
fn env_references_in_resource_fields_are_resolved_for_the_target_and_never_stored() {
    let p = TestProject::example_in_git("iris");
    p.replace(
        "ml/data.yaml",
        "source: data/iris.csv",
        "source: ${env:IRIS_DATA}",
    );
    p.replace(
        "ml/data.yaml",
        "  target: species\n",
        "  format: csv\n  target: species\n",
    );
    // The value has a name of its own, so the records can be searched for it.
    std::fs::copy(
        p.path().join("data/iris.csv"),
        p.path().join("data/iris-from-env-7c1.csv"),
    )
    .unwrap();
    p.commit_all("data from the environment");
    let run = Run::from(
        mlctl()
            .args(["plan", "--target", "test"])
            .current_dir(p.path())
            .env_remove("IRIS_DATA")
            .output()
            .unwrap(),
    )
    .expect_code(1);
    assert!(
        run.stderr.contains("error[env-unset]: `source` of Dataset/iris: environment variable `IRIS_DATA` is not set"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--> ml/data.yaml:"), "{}", run.stderr);
    let run = Run::from(
        mlctl()
            .args(["reconcile", "--target", "test"])
            .current_dir(p.path())
            .env("IRIS_DATA", "data/iris-from-env-7c1.csv")
            .output()
            .unwrap(),
    )
    .expect_code(0);
    assert!(run.stdout.contains("Apply complete!"), "{}", run.stdout);
    // The target's record keeps the reference, and the plan is stable.
    let mut records = String::new();
    let mut dirs = vec![p.path().join(".mlctl/test")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                dirs.push(e.path());
            } else if e.path().to_string_lossy().contains("/resources/") {
                records.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
    }
    assert!(records.contains("${env:IRIS_DATA}"), "{records}");
    assert!(!records.contains("iris-from-env-7c1"), "{records}");
    let plan = Run::from(
        mlctl()
            .args(["plan", "--target", "test", "--detailed-exitcode"])
            .current_dir(p.path())
            .env("IRIS_DATA", "data/iris-from-env-7c1.csv")
            .output()
            .unwrap(),
    );
    plan.expect_code(0);
}

/// An unset variable and a refused field are both reported by one plan, with one summary, so
/// a user fixes everything in one go.
#[test]
fn every_reason_a_plan_stops_is_reported_at_once() {
    let p = TestProject::example_in_git("iris");
    p.replace(
        "ml/data.yaml",
        "source: data/iris.csv",
        "source: ${env:IRIS_DATA}",
    );
    p.replace(
        "ml/data.yaml",
        "  target: species\n",
        "  format: csv\n  target: species\n",
    );
    p.replace("ml/train.yaml", "  compute:\n", "  compute:\n    gpu: 1\n");
    p.commit_all("two reasons to stop");
    let run = Run::from(
        mlctl()
            .args(["plan"])
            .current_dir(p.path())
            .env_remove("IRIS_DATA")
            .output()
            .unwrap(),
    )
    .expect_code(1);
    assert!(run.stderr.contains("error[env-unset]"), "{}", run.stderr);
    assert!(
        run.stderr.contains("error[refused-by-target]") && run.stderr.contains("`compute.gpu`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(
            "error: 1 environment reference cannot be resolved; target `local` does not honour 1 field (the spec at"
        ),
        "{}",
        run.stderr
    );
}
