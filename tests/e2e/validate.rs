//! `mlctl validate`, `schema`, `init`, `--version`, `completions`.

use crate::common::*;

/// The iris example with one reference broken (`dataset: irs`).
fn broken_iris() -> TestProject {
    let p = TestProject::example("iris");
    p.replace("ml/train.yaml", "dataset: iris", "dataset: irs");
    p
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{stdout}"))
}

#[test]
fn the_iris_example_is_valid() {
    let p = TestProject::example("iris");
    let run = p.mlctl(&["validate"]).expect_code(0);
    assert!(
        run.stdout.contains("project `iris` is valid"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("1 dataset, 1 training job, 1 model, 1 endpoint, 1 monitor;"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.is_empty(),
        "a valid project prints no diagnostics:\n{}",
        run.stderr
    );
}

#[test]
fn the_repository_example_validates_in_place() {
    let run = mlctl()
        .args(["validate", "--project"])
        .arg(repo_root().join("examples/iris"))
        .output()
        .expect("run mlctl");
    let run = Run::from(run).expect_code(0);
    assert!(run.stdout.contains("is valid"), "{}", run.stdout);
}

#[test]
fn a_broken_reference_exits_1_with_the_message_and_position() {
    let p = broken_iris();
    let run = p.mlctl(&["validate"]).expect_code(1);
    let expected = "\
error[unknown-reference]: dataset `irs` is not defined; defined datasets: iris
 --> ml/train.yaml:6:12
  |
6 |   dataset: irs
  |            ^^^
  = help: did you mean `iris`?
";
    assert!(run.stderr.contains(expected), "stderr:\n{}", run.stderr);
    assert!(
        run.stderr
            .contains("the spec has 1 error; nothing was changed"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains('\x1b'),
        "NO_COLOR output has escape codes:\n{}",
        run.stderr
    );
}

#[test]
fn every_error_is_printed_not_just_the_first() {
    let p = TestProject::example("iris");
    p.replace("ml/train.yaml", "hyperparameters:", "hyperparameter:");
    p.replace("ml/endpoint.yaml", "percent: 10", "percent: 150");
    p.replace("mlctl.yaml", "provider: mock", "provider: mok");
    let run = p.mlctl(&["validate"]).expect_code(1);
    for needle in [
        "unknown field `hyperparameter` in TrainingJob spec",
        "did you mean `hyperparameters`?",
        "canary percent must be between 1 and 99, got 150",
        "unknown provider `mok` for target `test`",
        "the spec has 3 errors",
    ] {
        assert!(
            run.stderr.contains(needle),
            "missing {needle:?} in:\n{}",
            run.stderr
        );
    }
}

#[test]
fn json_output_for_an_invalid_project() {
    let p = broken_iris();
    let run = p.mlctl(&["validate", "--output", "json"]).expect_code(1);
    let out = json(&run.stdout);
    assert_eq!(out["valid"], false);
    assert_eq!(out["errorCount"], 1);
    let diags = out["diagnostics"]
        .as_array()
        .expect("diagnostics is a list");
    assert_eq!(diags.len(), 1, "{out:#}");
    let d = &diags[0];
    assert_eq!(d["severity"], "error");
    assert_eq!(d["code"], "unknown-reference");
    assert_eq!(d["file"], "ml/train.yaml");
    assert_eq!(d["line"], 6);
    assert_eq!(d["column"], 12);
    assert_eq!(
        d["message"],
        "dataset `irs` is not defined; defined datasets: iris"
    );
    assert_eq!(d["hint"], "did you mean `iris`?");
    assert_eq!(d["sourceLine"], "  dataset: irs");
}

#[test]
fn json_output_for_a_valid_project() {
    let p = TestProject::example("iris");
    let run = p.mlctl(&["validate", "-o", "json"]).expect_code(0);
    let out = json(&run.stdout);
    assert_eq!(out["valid"], true);
    assert_eq!(out["errorCount"], 0);
    assert_eq!(out["diagnostics"], serde_json::json!([]));
    let resources = out["resources"]
        .as_array()
        .expect("resources listed when valid");
    assert!(
        resources.contains(&serde_json::json!("TrainingJob/iris-train")),
        "{out:#}"
    );
}

/// A literal credential is reported without echoing it, in the human and the JSON output.
#[test]
fn a_literal_secret_is_reported_but_never_printed() {
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let p = TestProject::example("iris");
    p.replace(
        "mlctl.yaml",
        "region: eu-west-1",
        &format!("region: eu-west-1\n      bucketKey: {secret}"),
    );
    p.replace(
        "ml/train.yaml",
        "max_iter: 200",
        &format!("aws_secret_access_key: {secret}"),
    );
    let human = p.mlctl(&["validate"]).expect_code(1);
    assert!(
        human.stderr.contains("looks like an AWS secret access key"),
        "{}",
        human.stderr
    );
    let machine = p.mlctl(&["validate", "--output", "json"]).expect_code(1);
    for out in [
        &human.stdout,
        &human.stderr,
        &machine.stdout,
        &machine.stderr,
    ] {
        assert!(!out.contains(secret), "the secret was printed:\n{out}");
    }
}

#[test]
fn no_project_file() {
    let p = TestProject::empty();
    let run = p.mlctl(&["validate"]).expect_code(1);
    assert!(
        run.stderr
            .contains("no mlctl.yaml in the project directory"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("mlctl init"),
        "the hint says how to start: {}",
        run.stderr
    );
}

#[test]
fn project_flag_short_and_long() {
    let p = broken_iris();
    let elsewhere = TestProject::empty();
    for flag in ["-C", "--project"] {
        let run = elsewhere
            .mlctl(&[
                "validate",
                flag,
                p.path().to_str().expect("utf-8 temp path"),
            ])
            .expect_code(1);
        assert!(
            run.stderr.contains("dataset `irs` is not defined"),
            "{flag}: {}",
            run.stderr
        );
    }
}

#[test]
fn schema_prints_the_committed_schema() {
    let run = Run::from(mlctl().arg("schema").output().expect("run mlctl")).expect_code(0);
    let committed = std::fs::read_to_string(repo_root().join("schema/mlctl.schema.json"))
        .expect("committed schema");
    assert!(
        run.stdout == committed,
        "`mlctl schema` differs from schema/mlctl.schema.json; run \
         `cargo run -p mlctl-cli -- schema > schema/mlctl.schema.json` and commit it"
    );
    json(&run.stdout);
}

#[test]
fn init_scaffolds_a_project_that_validates() {
    let p = TestProject::empty();
    let run = p.mlctl(&["init", "new-project"]).expect_code(0);
    assert!(run.stdout.contains("from example `iris`"), "{}", run.stdout);
    assert!(p.path().join("new-project/mlctl.yaml").is_file());
    assert!(
        p.path().join("new-project/data/iris.csv").is_file(),
        "the example ships its data"
    );
    assert!(
        p.read("new-project/.gitignore")
            .lines()
            .any(|l| l.trim() == ".mlctl/")
    );
    let run = p.mlctl(&["validate", "-C", "new-project"]).expect_code(0);
    assert!(
        run.stdout.contains("project `iris` is valid"),
        "{}",
        run.stdout
    );
}

#[test]
fn init_refuses_a_non_empty_directory() {
    let p = TestProject::empty();
    p.write("taken/notes.txt", "mine");
    let run = p.mlctl(&["init", "taken"]);
    assert_ne!(run.code, 0, "init into a non-empty directory must fail");
    assert!(run.stderr.contains("is not empty"), "{}", run.stderr);
    assert_eq!(p.read("taken/notes.txt"), "mine");
    assert!(
        !p.path().join("taken/mlctl.yaml").exists(),
        "nothing was written"
    );
}

#[test]
fn init_with_an_unknown_example() {
    let p = TestProject::empty();
    let run = p.mlctl(&["init", "--example", "penguins", "new"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains(
            "there is no example `penguins`; examples: churn, environments, housing, iris"
        ),
        "{}",
        run.stderr
    );
    assert!(!p.path().join("new").exists(), "nothing was created");
}

#[test]
fn version() {
    let run = Run::from(mlctl().arg("--version").output().expect("run mlctl")).expect_code(0);
    assert_eq!(
        run.stdout.trim(),
        format!("mlctl {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bash_completions() {
    let run = Run::from(
        mlctl()
            .args(["completions", "bash"])
            .output()
            .expect("run mlctl"),
    )
    .expect_code(0);
    assert!(
        run.stdout.contains("_mlctl()"),
        "not a bash completion script:\n{}",
        run.stdout
    );
    assert!(run.stdout.contains("validate"), "subcommands are completed");
}
