//! `mlctl runs show` and `mlctl runs logs`: a run's log, from the target that ran it (the
//! mock target here; SageMaker's from CloudWatch Logs in `sagemaker.rs`).

use crate::common::*;

#[test]
fn runs_show_ends_with_the_log_and_runs_logs_prints_it_whole_or_its_tail() {
    let p = TestProject::example_in_git("iris");
    p.mlctl(&["apply", "--auto-approve", "--target", "test"])
        .expect_code(0);
    let list = p
        .mlctl(&["runs", "list", "--target", "test", "-o", "json"])
        .expect_code(0);
    let runs: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    let id = runs[0]["id"].as_str().expect("a run").to_string();

    let whole = p
        .mlctl(&["runs", "logs", &id, "--target", "test"])
        .expect_code(0);
    let lines: Vec<&str> = whole.stdout.lines().collect();
    assert!(
        lines.len() > 2 && lines[0].starts_with("[mock] training job "),
        "{}",
        whole.stdout
    );

    let show = p
        .mlctl(&["runs", "show", &id, "--target", "test"])
        .expect_code(0);
    let shown: String = lines.iter().map(|l| format!("    {l}\n")).collect();
    assert!(
        show.stdout.ends_with(&format!("  log:\n{shown}")),
        "a short log is shown whole, after the run's details:\n{}",
        show.stdout
    );

    let tail = p
        .mlctl(&["runs", "logs", &id, "--target", "test", "--tail", "1"])
        .expect_code(0);
    assert_eq!(tail.stdout, format!("{}\n", lines[lines.len() - 1]));

    let unknown = p
        .mlctl(&["runs", "logs", "zzzz-no-such-run", "--target", "test"])
        .expect_code(1);
    assert!(
        unknown
            .stderr
            .contains("no run with id `zzzz-no-such-run`; `mlctl runs list` shows them"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn an_early_stopped_boosting_run_records_its_rounds_and_feature_importance() {
    let p = TestProject::example("iris");
    p.write(
        "ml/train.yaml",
        "apiVersion: mlctl/v1
kind: TrainingJob
metadata:
  name: iris-train
spec:
  dataset: iris
  algorithm: gradient_boosting
  hyperparameters:
    n_estimators: 400
    learning_rate: 0.5
    early_stopping_rounds: 5
",
    );
    let p = p.into_git();
    p.mlctl(&["apply", "--auto-approve", "--target", "local"])
        .expect_code(0);
    let list = p
        .mlctl(&["runs", "list", "--target", "local", "-o", "json"])
        .expect_code(0);
    let runs: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    let id = runs[0]["id"].as_str().expect("a run").to_string();
    let json = p
        .mlctl(&["runs", "show", &id, "--target", "local", "-o", "json"])
        .expect_code(0);
    let run: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let e = &run["evaluation"];
    // The round was chosen on validation rows carved from train, never on the test rows.
    assert!(e["validationRows"].as_u64().unwrap() > 0, "{e}");
    assert!(e["testRows"].as_u64().unwrap() > 0, "{e}");
    let es = &e["earlyStopping"];
    let (best, trained) = (
        es["bestRound"].as_u64().unwrap(),
        es["roundsTrained"].as_u64().unwrap(),
    );
    assert!(best >= 1 && trained < 400 && trained <= best + 5, "{es}");
    let importance = e["importance"].as_array().unwrap();
    assert_eq!(importance.len(), 4, "{e}");
    assert!(
        importance
            .iter()
            .all(|i| i["gain"].is_f64() && i["permutation"].is_f64())
    );
    assert!(
        importance[0]["feature"]
            .as_str()
            .unwrap()
            .starts_with("petal"),
        "a petal measure decides iris: {e}"
    );

    let show = p
        .mlctl(&["runs", "show", &id, "--target", "local"])
        .expect_code(0);
    assert!(
        show.stdout.contains(&format!(
            "  early stopping: kept {best} of {trained} rounds trained (patience 5;"
        )),
        "{}",
        show.stdout
    );
    assert!(show.stdout.contains("    FEATURE"), "{}", show.stdout);
}
