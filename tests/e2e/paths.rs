//! No path of the spec reaches outside the project, after symlinks are resolved.

use crate::common::*;

/// A file outside the project, standing for `~/.aws/credentials`.
fn outside_secret() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("credentials");
    std::fs::write(&file, "[default]\naws_secret_access_key = not-for-mlctl\n").unwrap();
    (dir, file)
}

#[test]
fn a_link_out_of_a_code_dir_is_refused_before_anything_runs() {
    let (_outside, secret) = outside_secret();
    let p = TestProject::example("housing");
    std::os::unix::fs::symlink(&secret, p.path().join("src/creds")).unwrap();
    let run = p.mlctl(&["validate"]).expect_code(1);
    assert!(
        run.stderr.contains("error[path-outside-project]: `code` of TrainingJob/housing-train (`src/`) holds links to paths outside the project: src/creds -> "),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--> ml/train.yaml:"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("not-for-mlctl"),
        "the linked file's content must never be shown"
    );
    // Through plan too, in a git repository.
    let g = TestProject::example_in_git("housing");
    std::os::unix::fs::symlink(&secret, g.path().join("src/creds")).unwrap();
    g.commit_all("a link out");
    let run = g.mlctl(&["plan"]).expect_code(1);
    assert!(
        run.stderr.contains("path-outside-project"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("outside the project (the spec at")
            && run.stderr.contains("; nothing was changed"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_source_that_links_out_of_the_project_is_refused() {
    let (_outside, secret) = outside_secret();
    let p = TestProject::example("iris");
    let data = p.path().join("data/iris.csv");
    std::fs::remove_file(&data).unwrap();
    std::os::unix::fs::symlink(&secret, &data).unwrap();
    let run = p.mlctl(&["validate"]).expect_code(1);
    assert!(
        run.stderr
            .contains("`source` of Dataset/iris is `data/iris.csv`, which resolves to "),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("outside the project"), "{}", run.stderr);
}

#[test]
fn a_dotdot_source_is_refused_as_written() {
    let p = TestProject::example("iris");
    p.replace(
        "ml/data.yaml",
        "source: data/iris.csv",
        "source: ../iris.csv",
    );
    let run = p.mlctl(&["validate"]).expect_code(1);
    assert!(
        run.stderr
            .contains("source `../iris.csv` is outside the project"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_manifest_linked_from_outside_the_project_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(
        outside.path().join("extra.yaml"),
        "apiVersion: mlctl/v1\nkind: Dataset\nmetadata: {name: extra}\nspec: {source: data/iris.csv}\n",
    )
    .unwrap();
    let p = TestProject::example("iris");
    std::os::unix::fs::symlink(
        outside.path().join("extra.yaml"),
        p.path().join("ml/extra.yaml"),
    )
    .unwrap();
    let run = p.mlctl(&["validate"]).expect_code(1);
    assert!(
        run.stderr
            .contains("ml/extra.yaml leads outside the project directory"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_manifest_entry_that_cannot_be_read_says_why_not_that_it_is_missing() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(
        outside.path().join("extra.yaml"),
        "apiVersion: mlctl/v1\nkind: Dataset\nmetadata: {name: extra}\nspec: {source: data/iris.csv}\n",
    )
    .unwrap();
    let p = TestProject::example("iris");
    std::os::unix::fs::symlink(
        outside.path().join("extra.yaml"),
        p.path().join("extra.yaml"),
    )
    .unwrap();
    p.replace(
        "mlctl.yaml",
        "manifests: [ml/]",
        "manifests: [ml/, extra.yaml]",
    );
    // A training job on the dataset the unreadable file would declare.
    p.replace("ml/train.yaml", "dataset: iris", "dataset: extra");
    let run = p.mlctl(&["validate"]).expect_code(1);
    assert!(
        run.stderr.contains("cannot read manifest `extra.yaml`")
            && run.stderr.contains("leads outside the project directory"),
        "{}",
        run.stderr
    );
    // Not "does not exist", and no follow-on error for what the file may declare.
    assert!(!run.stderr.contains("does not exist"), "{}", run.stderr);
    assert!(!run.stderr.contains("is not defined"), "{}", run.stderr);
}
