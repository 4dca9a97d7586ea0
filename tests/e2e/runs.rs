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
