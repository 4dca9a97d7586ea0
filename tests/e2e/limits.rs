//! Issue 11: errors, state and history stay small however large or malformed the data, and
//! a data file past a reader limit is refused with the setting that raises it.

use crate::common::{Run, TestProject};
use std::path::Path;

/// Most bytes a failed apply may print about a data file.
const MAX_OUTPUT: usize = 16 * 1024;
/// Most bytes a failed apply may add to the target's state or to `history -o json`.
const MAX_GROWTH: u64 = 64 * 1024;

/// The iris project in git with one Dataset, `wide`, reading `data/wide.csv` (written by the
/// test) with `extra` under its `spec`.
fn project(extra: &str) -> TestProject {
    let p = TestProject::example_in_git("iris");
    for f in ["train", "model", "endpoint", "monitor"] {
        std::fs::remove_file(p.path().join(format!("ml/{f}.yaml"))).unwrap();
    }
    write_dataset(&p, extra);
    p
}

fn write_dataset(p: &TestProject, extra: &str) {
    p.write(
        "ml/data.yaml",
        &format!(
            "apiVersion: mlctl/v1\nkind: Dataset\nmetadata:\n  name: wide\nspec:\n  source: data/wide.csv\n  schema:\n    columns:\n      - {{name: c0, type: float}}\n{extra}"
        ),
    );
}

/// Bytes under `dir`, recursively (0 when it does not exist).
fn size_of(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => size_of(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// What a failed apply leaves behind: the target's state (its error logs aside, which hold
/// the full text by design, capped) and the dataset's history as JSON.
fn footprint(p: &TestProject, target: &str) -> (u64, u64) {
    let dir = p.path().join(".mlctl").join(target);
    let state = size_of(&dir) - size_of(&dir.join("logs"));
    let history = p.mlctl(&["history", "Dataset/wide", "--target", target, "-o", "json"]);
    (state, history.stdout.len() as u64)
}

fn apply(p: &TestProject, target: &str) -> Run {
    p.mlctl(&["apply", "--auto-approve", "--target", target])
}

fn output_len(run: &Run) -> usize {
    run.stdout.len() + run.stderr.len()
}

/// Writes `data/wide.csv`: a header of `columns` columns `c0, c1, ...` and two rows.
fn write_wide_csv(p: &TestProject, columns: usize) {
    let header: Vec<String> = (0..columns).map(|i| format!("c{i}")).collect();
    let row = vec!["1"; columns].join(",");
    p.write(
        "data/wide.csv",
        &format!("{}\n{row}\n{row}\n", header.join(",")),
    );
}

/// `c0,x0,x1,...`: one line of about `bytes` bytes, no line break, every name distinct.
fn one_line_of(bytes: usize) -> String {
    use std::fmt::Write;
    let mut line = String::from("c0");
    let mut i = 0;
    while line.len() < bytes {
        let _ = write!(line, ",x{i}");
        i += 1;
    }
    line
}

#[test]
fn a_ten_megabyte_line_is_refused_in_a_few_lines_and_leaves_state_and_history_small() {
    for target in ["local", "test"] {
        let p = project("");
        write_wide_csv(&p, 1);
        p.commit_all("a small dataset");
        apply(&p, target).expect_code(0);
        let before = footprint(&p, target);

        // 10 MiB without a line break: a header of 1.3 million distinct fields.
        p.write("data/wide.csv", &one_line_of(10 << 20));
        p.commit_all("no line breaks");
        let run = apply(&p, target).expect_code(1);
        let out = format!("{}{}", run.stdout, run.stderr);
        assert!(
            output_len(&run) < MAX_OUTPUT,
            "{target}: {} bytes",
            out.len()
        );
        assert!(
            out.contains("data/wide.csv: line 1: longer than 1,048,576 bytes")
                && out.contains("raise the Dataset's `limits.maxLineBytes`"),
            "{target}: {out}"
        );
        let after = footprint(&p, target);
        assert!(
            after.0 - before.0 < MAX_GROWTH && after.1 - before.1 < MAX_GROWTH,
            "{target}: state grew from {} to {} bytes, history from {} to {}",
            before.0,
            after.0,
            before.1,
            after.1
        );
    }
}

#[test]
fn a_wide_csv_names_the_column_limit_reports_in_a_few_lines_and_passes_once_allowed() {
    for target in ["local", "test"] {
        let p = project("");
        write_wide_csv(&p, 12_000);
        p.commit_all("12,000 columns");
        let run = apply(&p, target).expect_code(1);
        assert!(
            output_len(&run) < MAX_OUTPUT,
            "{target}: {}",
            run.stderr.len()
        );
        assert!(
            run.stderr.contains("line 1: the header has 12,000 columns")
                && run
                    .stderr
                    .contains("raise the Dataset's `limits.maxColumns` (now 10,000)"),
            "{target}: {}",
            run.stderr
        );

        // Within a raised limit, the schema speaks: 11,999 undeclared columns, in a line.
        write_dataset(&p, "  limits: {maxColumns: 20000}\n");
        p.commit_all("raise the limit");
        let before = footprint(&p, target);
        let run = apply(&p, target).expect_code(1);
        assert!(
            output_len(&run) < MAX_OUTPUT,
            "{target}: {}",
            run.stderr.len()
        );
        assert!(
            run.stderr.contains(
                "11,999 columns [allowExtraColumns]: not declared in the schema (set allowExtraColumns: true to allow them): c1, c2,"
            ) && run.stderr.contains("c10 and 11,989 more"),
            "{target}: {}",
            run.stderr
        );
        let after = footprint(&p, target);
        assert!(
            after.0 - before.0 < MAX_GROWTH && after.1 - before.1 < MAX_GROWTH,
            "{target}: state grew from {} to {} bytes, history from {} to {}",
            before.0,
            after.0,
            before.1,
            after.1
        );

        write_dataset(
            &p,
            "    allowExtraColumns: true\n  limits: {maxColumns: 20000}\n",
        );
        p.commit_all("a legitimately wide dataset");
        apply(&p, target).expect_code(0);
    }
}
