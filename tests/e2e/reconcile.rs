//! plan / apply / reconcile on the mock target, in temporary git repositories built from
//! `examples/iris`.

use crate::common::*;
use std::process::Stdio;

/// The iris example on its mock target (`test`), committed.
fn iris_on_mock() -> TestProject {
    let p = TestProject::example_in_git("iris");
    std::fs::write(p.path().join(".gitignore"), ".mlctl/\nplan.json\n").unwrap();
    p.commit_all("ignore plan files");
    p
}

#[test]
fn first_apply_creates_everything_then_nothing_to_do() {
    let p = iris_on_mock();
    let plan = p
        .mlctl(&["plan", "--target", "test", "--detailed-exitcode"])
        .expect_code(2);
    insta::assert_snapshot!("first_plan", redact(&plan.stdout));
    let apply = p.mlctl(&["reconcile", "--target", "test"]).expect_code(0);
    assert!(
        apply
            .stdout
            .contains("Apply complete! Resources: 5 added, 0 changed, 0 destroyed."),
        "{}",
        apply.stdout
    );
    let again = p
        .mlctl(&["plan", "--target", "test", "--detailed-exitcode"])
        .expect_code(0);
    assert!(again.stdout.starts_with("No changes."), "{}", again.stdout);
    let status = p
        .mlctl(&["status", "--target", "test", "-o", "json"])
        .expect_code(0);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    for r in status["resources"].as_array().unwrap() {
        assert_eq!(r["sync"], "synced", "{r}");
        // A monitor is as healthy as its last evaluation, and none ran yet.
        let health = if r["resource"] == "Monitor/iris-drift" {
            "unknown"
        } else {
            "healthy"
        };
        assert_eq!(r["health"], health, "{r}");
    }
}

#[test]
fn hyperparameter_change_replans_the_job_and_its_dependants_only() {
    let p = iris_on_mock();
    p.mlctl(&["reconcile", "--target", "test"]).expect_code(0);
    p.replace("ml/train.yaml", "C: 1.0", "C: 0.5");
    p.commit_all("lower C");
    let plan = p
        .mlctl(&["plan", "--target", "test", "--detailed-exitcode"])
        .expect_code(2);
    insta::assert_snapshot!("hyperparameter_change", redact(&plan.stdout));
    assert!(
        !plan.stdout.contains("Dataset/iris"),
        "the dataset must be left alone:\n{}",
        plan.stdout
    );
    let apply = p.mlctl(&["reconcile", "--target", "test"]).expect_code(0);
    assert!(
        apply
            .stdout
            .contains("Resources: 1 added, 3 changed, 1 destroyed."),
        "{}",
        apply.stdout
    );
    p.mlctl(&["plan", "--target", "test", "--detailed-exitcode"])
        .expect_code(0);
    // The model registry has a second version; the first is archived.
    let models = p
        .mlctl(&["models", "list", "--target", "test", "-o", "json"])
        .expect_code(0);
    let models: serde_json::Value = serde_json::from_str(&models.stdout).unwrap();
    let stages: Vec<(u64, String)> = models
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap(),
                v["stage"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        stages,
        vec![(1, "archived".to_string()), (2, "production".to_string())]
    );
}

#[test]
fn a_new_secret_value_is_planned_by_the_variable_name_and_the_mock_records_it() {
    let p = iris_on_mock();
    p.replace(
        "ml/endpoint.yaml",
        "  capture:\n",
        "  auth:\n    token: ${env:IRIS_TOKEN}\n  capture:\n",
    );
    p.commit_all("require a token");
    let (a, b) = (secret_value("tokenA"), secret_value("tokenB"));
    let with = |args: &[&str], token: &str| p.mlctl_with(args, &[("IRIS_TOKEN", token)]);
    with(&["reconcile", "--target", "test"], &a).expect_code(0);
    let same = with(&["plan", "--target", "test", "--detailed-exitcode"], &a).expect_code(0);
    assert!(same.stdout.starts_with("No changes."), "{}", same.stdout);
    let plan = with(&["plan", "--target", "test", "--detailed-exitcode"], &b).expect_code(2);
    insta::assert_snapshot!("secret_change", redact(&plan.stdout));
    let planned = with(&["plan", "--target", "test", "-o", "json"], &b).expect_code(0);
    let planned: serde_json::Value = serde_json::from_str(&planned.stdout).unwrap();
    let fingerprint = planned["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"]["kind"] == "Endpoint")
        .map(|c| c["fingerprint"].clone())
        .unwrap_or_else(|| panic!("{planned}"));
    let apply = with(&["reconcile", "--target", "test"], &b).expect_code(0);
    assert!(
        apply.stdout.contains("0 added, 2 changed, 0 destroyed"),
        "{}",
        apply.stdout
    );
    let after = with(&["plan", "--target", "test", "--detailed-exitcode"], &b).expect_code(0);
    assert!(after.stdout.starts_with("No changes."), "{}", after.stdout);
    // The mock rolled the endpoint out again under the new fingerprint, and kept no token.
    let record: serde_json::Value =
        serde_json::from_str(&p.read(".mlctl/test/endpoints/iris.json")).unwrap();
    assert_eq!(record["fingerprint"], fingerprint, "{record}");
    let leaks = find_leaks(
        &p.path().join(".mlctl"),
        &[("token A", a.as_str()), ("token B", b.as_str())],
    );
    assert!(leaks.is_empty(), "{leaks:#?}");
}

#[test]
fn a_comment_or_key_reorder_plans_nothing() {
    let p = iris_on_mock();
    p.mlctl(&["reconcile", "--target", "test"]).expect_code(0);
    p.replace("ml/train.yaml", "  hyperparameters:\n    C: 1.0\n    max_iter: 200\n", "  # tuned by hand\n  hyperparameters:\n    max_iter: 200   # enough for iris\n    C: 1.0\n");
    p.commit_all("comments only");
    let plan = p
        .mlctl(&["plan", "--target", "test", "--detailed-exitcode"])
        .expect_code(0);
    assert!(plan.stdout.starts_with("No changes."), "{}", plan.stdout);
}

#[test]
fn an_injected_failure_leaves_dependants_untouched_and_a_rerun_converges() {
    let p = iris_on_mock();
    p.replace(
        "mlctl.yaml",
        "      provider: mock\n",
        "      provider: mock\n      faults:\n        failTraining: [iris-train]\n",
    );
    p.commit_all("inject a training failure");
    let run = p.mlctl(&["reconcile", "--target", "test"]).expect_code(1);
    assert!(
        run.stderr
            .contains("Apply failed: 1 failed, 3 not attempted; 1 added"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("TrainingJob/iris-train"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("not attempted: TrainingJob/iris-train did not apply"),
        "{}",
        run.stderr
    );
    let status = p
        .mlctl(&["status", "--target", "test", "-o", "json"])
        .expect_code(0);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let sync: Vec<(String, String)> = status["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["resource"].as_str().unwrap().to_string(),
                r["sync"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        sync,
        [
            ("Dataset/iris", "synced"),
            ("TrainingJob/iris-train", "missing"),
            ("Model/iris", "missing"),
            ("Endpoint/iris", "missing"),
            ("Monitor/iris-drift", "missing"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    // The plan says why the job is planned again.
    let plan = p.mlctl(&["plan", "--target", "test"]).expect_code(0);
    assert!(
        plan.stdout.contains("the last apply failed"),
        "{}",
        plan.stdout
    );

    p.replace(
        "mlctl.yaml",
        "      faults:\n        failTraining: [iris-train]\n",
        "",
    );
    p.commit_all("remove the fault");
    let run = p.mlctl(&["reconcile", "--target", "test"]).expect_code(0);
    assert!(
        run.stdout
            .contains("Resources: 4 added, 0 changed, 0 destroyed."),
        "{}",
        run.stdout
    );
    p.mlctl(&["plan", "--target", "test", "--detailed-exitcode"])
        .expect_code(0);
}

#[test]
fn a_second_apply_fails_on_the_lock_and_nothing_is_duplicated() {
    let p = iris_on_mock();
    // The first apply hangs in training (injected timeout), holding the lock.
    p.replace(
        "mlctl.yaml",
        "      provider: mock\n",
        "      provider: mock\n      faults:\n        timeout: [iris-train]\n",
    );
    p.commit_all("training never finishes");
    let mut first = mlctl()
        .args(["reconcile", "--target", "test"])
        .current_dir(p.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut held = false;
    for _ in 0..600 {
        let s = p.mlctl(&["status", "--target", "test", "-o", "json", "--allow-dirty"]);
        if s.code == 0
            && serde_json::from_str::<serde_json::Value>(&s.stdout)
                .map(|v| !v["lock"].is_null())
                .unwrap_or(false)
        {
            held = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(held, "the first apply never took the lock");
    let second = p.mlctl(&["reconcile", "--target", "test"]).expect_code(1);
    assert!(
        second.stderr.contains("target `test` is locked by"),
        "{}",
        second.stderr
    );
    assert!(
        second.stderr.contains("mlctl force-unlock"),
        "{}",
        second.stderr
    );
    let lock_id = second
        .stderr
        .split("mlctl force-unlock ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();

    // Commands that change the target by hand wait for the same lock.
    for cmd in [
        &["models", "approve", "iris", "1", "--target", "test"][..],
        &["rollback", "iris", "--target", "test"],
    ] {
        let run = p.mlctl(cmd).expect_code(1);
        assert!(
            run.stderr.contains("target `test` is locked by"),
            "{cmd:?}: {}",
            run.stderr
        );
    }

    // The first apply dies without releasing the lock. Its process is provably gone (this
    // host, this boot), so the next apply takes the lock over, says so, and needs no person.
    first.kill().unwrap();
    first.wait().unwrap();
    p.replace(
        "mlctl.yaml",
        "      faults:\n        timeout: [iris-train]\n",
        "",
    );
    p.commit_all("training works again");
    let recovered = p.mlctl(&["reconcile", "--target", "test"]).expect_code(0);
    assert!(
        recovered
            .stderr
            .contains("took over the lock of target `test`")
            && recovered.stderr.contains(&format!("lock id {lock_id}"))
            && recovered.stderr.contains("has exited"),
        "{}",
        recovered.stderr
    );
    // One dataset registration, one training job: nothing applied twice.
    let hist = p
        .mlctl(&["history", "Dataset/iris", "--target", "test", "-o", "json"])
        .expect_code(0);
    let hist: serde_json::Value = serde_json::from_str(&hist.stdout).unwrap();
    assert_eq!(
        hist.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "create")
            .count(),
        1,
        "{hist}"
    );
    let runs = p
        .mlctl(&[
            "history",
            "TrainingJob/iris-train",
            "--target",
            "test",
            "-o",
            "json",
        ])
        .expect_code(0);
    let runs: serde_json::Value = serde_json::from_str(&runs.stdout).unwrap();
    assert_eq!(
        runs.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "create")
            .count(),
        1,
        "{runs}"
    );
}

#[test]
fn a_saved_plan_applies_exactly_and_is_refused_when_the_target_moved() {
    let p = iris_on_mock();
    p.mlctl(&["plan", "--target", "test", "--out", "plan.json"])
        .expect_code(0);
    let apply = p.mlctl(&["apply", "plan.json"]).expect_code(0);
    assert!(apply.stdout.contains("5 added"), "{}", apply.stdout);

    p.replace("ml/train.yaml", "C: 1.0", "C: 2.0");
    p.commit_all("C=2");
    p.mlctl(&["plan", "--target", "test", "--out", "plan.json"])
        .expect_code(0);
    // Someone else applies first: the saved plan is stale.
    p.mlctl(&["reconcile", "--target", "test"]).expect_code(0);
    let stale = p.mlctl(&["apply", "plan.json"]).expect_code(1);
    assert!(
        stale.stderr.contains("changed since this plan was made"),
        "{}",
        stale.stderr
    );
}

#[test]
fn plan_renders_json_and_markdown_from_the_same_plan() {
    let p = iris_on_mock();
    let json = p
        .mlctl(&["plan", "--target", "test", "-o", "json"])
        .expect_code(0);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["formatVersion"], 1);
    assert_eq!(v["target"], "test");
    assert_eq!(v["changes"].as_array().unwrap().len(), 5);
    assert_eq!(
        v["changes"][0]["id"],
        serde_json::json!({"kind": "Dataset", "name": "iris"})
    );
    assert_eq!(v["changes"][0]["action"], "create");
    let md = p
        .mlctl(&["plan", "--target", "test", "-o", "markdown"])
        .expect_code(0);
    insta::assert_snapshot!("markdown_plan", redact(&md.stdout));
}

#[test]
fn a_dirty_work_tree_is_refused_unless_allowed() {
    let p = iris_on_mock();
    p.replace("ml/train.yaml", "C: 1.0", "C: 3.0");
    let run = p.mlctl(&["plan", "--target", "test"]).expect_code(1);
    assert!(run.stderr.contains("ml/train.yaml"), "{}", run.stderr);
    assert!(run.stderr.contains("--allow-dirty"), "{}", run.stderr);
    let run = p
        .mlctl(&["plan", "--target", "test", "--allow-dirty"])
        .expect_code(0);
    assert!(
        run.stdout
            .contains("TrainingJob/iris-train will be created"),
        "{}",
        run.stdout
    );
}

#[test]
fn destroy_removes_everything_in_reverse_order() {
    let p = iris_on_mock();
    p.mlctl(&["reconcile", "--target", "test"]).expect_code(0);
    let run = p
        .mlctl(&["destroy", "--target", "test", "--auto-approve"])
        .expect_code(0);
    assert!(
        run.stdout.contains("0 added, 0 changed, 5 destroyed"),
        "{}",
        run.stdout
    );
    let endpoint = run.stderr.find("Endpoint/iris").unwrap();
    let dataset = run.stderr.find("Dataset/iris").unwrap();
    assert!(endpoint < dataset, "dependants go first:\n{}", run.stderr);
    let plan = p
        .mlctl(&["plan", "--target", "test", "--detailed-exitcode"])
        .expect_code(2);
    assert!(plan.stdout.contains("Plan: 5 to add"), "{}", plan.stdout);
}

/// Tearing down reads no data: a `${env:...}` source that is no longer set does not stop it.
#[test]
fn destroy_needs_neither_the_data_nor_its_variables() {
    let p = iris_on_mock();
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
    p.commit_all("data from the environment");
    let run = |args: &[&str], data: Option<&str>| {
        let mut cmd = mlctl();
        cmd.args(args).current_dir(p.path()).env_remove("IRIS_DATA");
        if let Some(d) = data {
            cmd.env("IRIS_DATA", d);
        }
        Run::from(cmd.output().unwrap())
    };
    run(&["reconcile", "--target", "test"], Some("data/iris.csv")).expect_code(0);
    let destroyed = run(&["destroy", "--target", "test", "--auto-approve"], None).expect_code(0);
    assert!(
        destroyed.stdout.contains("0 added, 0 changed, 5 destroyed"),
        "{}\n{}",
        destroyed.stdout,
        destroyed.stderr
    );
}

#[test]
fn removed_resources_are_kept_unless_pruned() {
    let p = iris_on_mock();
    p.mlctl(&["reconcile", "--target", "test"]).expect_code(0);
    // The endpoint, and the monitor that watches it.
    std::fs::remove_file(p.path().join("ml/endpoint.yaml")).unwrap();
    std::fs::remove_file(p.path().join("ml/monitor.yaml")).unwrap();
    p.commit_all("drop the endpoint");
    let plan = p
        .mlctl(&["plan", "--target", "test", "--detailed-exitcode"])
        .expect_code(0);
    assert!(plan.stdout.contains("Endpoint/iris"), "{}", plan.stdout);
    assert!(plan.stdout.contains("--prune"), "{}", plan.stdout);
    let pruned = p
        .mlctl(&["plan", "--target", "test", "--prune", "--detailed-exitcode"])
        .expect_code(2);
    assert!(
        pruned.stdout.contains("Endpoint/iris will be destroyed"),
        "{}",
        pruned.stdout
    );
}

#[test]
fn diff_between_revisions_names_fields() {
    let p = iris_on_mock();
    p.replace("ml/train.yaml", "C: 1.0", "C: 0.25");
    p.commit_all("C");
    let run = p.mlctl(&["diff", "HEAD~1", "HEAD"]).expect_code(0);
    assert!(
        run.stdout.contains("TrainingJob/iris-train"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("hyperparameters.C"), "{}", run.stdout);
}

#[test]
fn an_unknown_target_or_an_unset_variable_is_a_clear_error() {
    let p = iris_on_mock();
    let run = p.mlctl(&["plan", "--target", "nope"]).expect_code(1);
    assert_eq!(
        run.stderr.trim(),
        "error: target `nope` is not defined in mlctl.yaml; defined targets: azure, local, staging, test"
    );
    let run = mlctl()
        .args(["plan", "--target", "staging"])
        .current_dir(p.path())
        .env_remove("MLCTL_SM_ROLE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1));
    assert_eq!(
        stderr.trim(),
        "error: target `staging`, field `roleArn`: environment variable `MLCTL_SM_ROLE` is not set; export it before running mlctl (the spec reads it as `${env:MLCTL_SM_ROLE}`)"
    );
}

/// The first version of a Model has nothing to regress from: its `maxRegression` gate says
/// "not evaluated" in apply and status instead of passing, and `requireBaseline` refuses it.
#[test]
fn a_regression_gate_without_a_baseline_is_not_evaluated_or_refuses() {
    let p = iris_on_mock();
    let apply = p.mlctl(&["reconcile", "--target", "test"]).expect_code(0);
    let said = format!("{}{}", apply.stdout, apply.stderr);
    assert!(
        said.contains("NOT EVALUATED accuracy") && said.contains("no baseline"),
        "{said}"
    );
    // The verdict stays with the version.
    let show = p
        .mlctl(&["models", "show", "iris", "--target", "test"])
        .expect_code(0);
    assert!(
        show.stdout.contains("NOT EVALUATED accuracy") && show.stdout.contains("no baseline"),
        "{}",
        show.stdout
    );
    // The mock's metrics are made up, and said to be wherever they are shown.
    assert!(
        said.contains("(on metrics simulated by the mock target"),
        "{said}"
    );
    assert!(
        show.stdout
            .contains("NOT MEASURED: simulated by the mock target"),
        "{}",
        show.stdout
    );
    let list = p
        .mlctl(&["models", "list", "--target", "test"])
        .expect_code(0);
    assert!(list.stdout.contains("(not measured)"), "{}", list.stdout);

    let p = iris_on_mock();
    p.replace(
        "ml/model.yaml",
        "maxRegression: 0.02}",
        "maxRegression: 0.02, requireBaseline: true}",
    );
    p.commit_all("require a baseline");
    let plan = p.mlctl(&["plan", "--target", "test"]).expect_code(0);
    assert!(
        plan.stdout
            .contains("with `requireBaseline` a new version is refused"),
        "{}",
        plan.stdout
    );
    let apply = p.mlctl(&["reconcile", "--target", "test"]);
    let said = format!("{}{}", apply.stdout, apply.stderr);
    assert_ne!(apply.code, 0, "{said}");
    assert!(
        said.contains("FAIL accuracy") && said.contains("`requireBaseline` is set"),
        "{said}"
    );
    let models = p
        .mlctl(&["models", "list", "--target", "test", "-o", "json"])
        .expect_code(0);
    assert!(!models.stdout.contains("\"version\""), "{}", models.stdout);
}
