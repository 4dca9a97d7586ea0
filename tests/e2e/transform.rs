//! One Dataset transform on every target: the derived table is what the command wrote, byte
//! for byte, on local, mock and SageMaker (moto, where mlctl runs the Processing job's
//! command itself), and a re-plan says no changes.

use crate::common::*;
use crate::sagemaker::{iris_on_moto, moto_url, on_moto};

/// Adds the petal area to the iris table, with the standard library only.
const PREP: &str = r#""""Adds each flower's petal area (standard library only)."""
import csv
import os

with open(os.environ["MLCTL_INPUT_IRIS"], newline="") as f, open(
    os.environ["MLCTL_OUTPUT"], "w", newline=""
) as out:
    rows = csv.DictReader(f)
    w = csv.writer(out, lineterminator="\n")
    w.writerow(rows.fieldnames + ["petal_area"])
    for r in rows:
        area = float(r["petal_length"]) * float(r["petal_width"])
        w.writerow([r[c] for c in rows.fieldnames] + [f"{area:.4f}"])
"#;

/// What the command makes of `input`, run here as a user would run it by hand.
fn expected_output(p: &TestProject, input: &str) -> Vec<u8> {
    let out = p.path().join("expected.csv");
    let run = std::process::Command::new("python3")
        .arg("transforms/prep.py")
        .current_dir(p.path())
        .env("MLCTL_INPUT_IRIS", p.path().join(input))
        .env("MLCTL_OUTPUT", &out)
        .output()
        .unwrap();
    assert!(run.status.success(), "{run:?}");
    let bytes = std::fs::read(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    bytes
}

/// The digest `mlctl history` reports for the last version of `Dataset/<name>`.
fn reported_digest(run: Run) -> String {
    let detail = run
        .stdout
        .lines()
        .find(|l| l.contains("\"detail\""))
        .unwrap_or_default()
        .to_string();
    detail
        .split("digest ")
        .nth(1)
        .map(|d| d.trim_end_matches(['"', ',']).to_string())
        .unwrap_or_else(|| panic!("no digest in the history: {}", run.stdout))
}

#[test]
fn a_transform_derives_the_same_table_on_local_mock_and_sagemaker() {
    let test = "a_transform_derives_the_same_table_on_local_mock_and_sagemaker";
    if !have_tool(
        test,
        "python3",
        "--version",
        "the transform is a python3 script",
    ) {
        return;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let p = iris_on_moto(&format!("iris-transform-{nanos}"), "iristf");
    for f in ["train", "model", "endpoint", "monitor"] {
        std::fs::remove_file(p.path().join(format!("ml/{f}.yaml"))).unwrap();
    }
    p.write("transforms/prep.py", PREP);
    let want = blake3::hash(&expected_output(&p, "data/iris.csv"))
        .to_hex()
        .to_string();
    // The pin is checked by every target that reads the output (local, SageMaker): an apply
    // succeeds only when the derived table is exactly the command's output.
    p.write(
        "ml/features.yaml",
        &format!(
            "apiVersion: mlctl/v1\nkind: Dataset\nmetadata:\n  name: iris-features\nspec:\n  transform:\n    command: python3 transforms/prep.py\n    inputs: [iris]\n    code: transforms/prep.py\n  digest: {want}\n  target: species\n  split: {{train: 0.8, test: 0.2, seed: 42}}\n"
        ),
    );
    std::fs::write(p.path().join(".gitignore"), ".mlctl/\n").unwrap();
    p.git(&["init", "-q", "-b", "main"]);
    p.git(&["config", "user.email", "test@example.com"]);
    p.git(&["config", "user.name", "Test"]);
    p.commit_all("a transform");

    for target in ["local", "test"] {
        let apply = p.mlctl(&["reconcile", "--target", target]).expect_code(0);
        assert!(
            apply.stderr.contains("Dataset/iris-features: 150 rows"),
            "{target}: {}",
            apply.stderr
        );
        let history = p.mlctl(&[
            "history",
            "Dataset/iris-features",
            "--target",
            target,
            "-o",
            "json",
        ]);
        assert_eq!(
            reported_digest(history),
            want[..12],
            "{target}: the derived table is the command's output"
        );
        p.mlctl(&["plan", "--target", target, "--detailed-exitcode"])
            .expect_code(0);
    }

    let Some(url) = moto_url() else { return };
    let run = |args: &[&str]| on_moto(&p, &url, args);
    let plan = run(&["plan", "--target", "staging"]).expect_code(0);
    assert!(
        plan.stdout
            .contains("a transform's Processing job is created, but moto runs nothing"),
        "the plan says what differs in emulator mode: {}",
        plan.stdout
    );
    let apply = run(&["reconcile", "--target", "staging"]).expect_code(0);
    assert!(
        apply.stderr.contains("Dataset/iris-features: 150 rows"),
        "{}\n{}",
        apply.stdout,
        apply.stderr
    );
    let history = run(&[
        "history",
        "Dataset/iris-features",
        "--target",
        "staging",
        "-o",
        "json",
    ]);
    assert_eq!(reported_digest(history), want[..12]);
    let again = run(&["plan", "--target", "staging", "--detailed-exitcode"]).expect_code(0);
    assert!(again.stdout.starts_with("No changes."), "{}", again.stdout);
}
