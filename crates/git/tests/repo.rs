//! mlctl-git against real repositories: each test builds a temporary repository with git2 (no
//! `git` binary or user config involved) from a copy of `examples/iris`.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use mlctl_git::{FileChange, GitError, Provenance, Repo, spec_diff};
use mlctl_spec::{DirFiles, Files, Kind, Spec};

/// A temporary git repository holding the iris example at `subdir`.
struct TestRepo {
    dir: tempfile::TempDir,
    git: git2::Repository,
    subdir: PathBuf,
    commits: Cell<i64>,
}

impl TestRepo {
    /// An initialized repository with nothing committed and nothing in it.
    fn empty(subdir: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = git2::RepositoryInitOptions::new();
        opts.initial_head("main");
        let git = git2::Repository::init_opts(dir.path(), &opts).unwrap();
        TestRepo {
            dir,
            git,
            subdir: PathBuf::from(subdir),
            commits: Cell::new(0),
        }
    }

    /// The iris example at `subdir`, with a root `.gitignore` of `gitignore`, committed.
    fn iris_with_ignore(subdir: &str, gitignore: &str) -> Self {
        let t = TestRepo::empty(subdir);
        copy_dir(&examples().join("iris"), &t.project());
        std::fs::write(t.dir.path().join(".gitignore"), gitignore).unwrap();
        t.commit("initial spec");
        t
    }

    fn iris(subdir: &str) -> Self {
        TestRepo::iris_with_ignore(subdir, ".mlctl/\n")
    }

    fn project(&self) -> PathBuf {
        self.dir.path().join(&self.subdir)
    }

    fn open(&self) -> Repo {
        Repo::discover(self.project()).unwrap()
    }

    /// Writes a file relative to the project.
    fn write(&self, rel: &str, text: &str) {
        let path = self.project().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn replace(&self, rel: &str, from: &str, to: &str) {
        let text = std::fs::read_to_string(self.project().join(rel)).unwrap();
        assert!(text.contains(from), "{rel} does not contain {from:?}");
        self.write(rel, &text.replacen(from, to, 1));
    }

    /// `git add -A && git commit -m message`, one minute after the previous commit.
    fn commit(&self, message: &str) -> String {
        let mut index = self.git.index().unwrap();
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        index.update_all(["*"], None).unwrap();
        index.write().unwrap();
        let tree = self.git.find_tree(index.write_tree().unwrap()).unwrap();
        let n = self.commits.get();
        self.commits.set(n + 1);
        let sig = git2::Signature::new(
            "Ada Lovelace",
            "ada@example.com",
            &git2::Time::new(1_700_000_000 + 60 * n, 120),
        )
        .unwrap();
        let parent = self.git.head().ok().map(|h| h.peel_to_commit().unwrap());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        self.git
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .unwrap()
            .to_string()
    }
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() == ".mlctl" {
            continue;
        }
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The spec at `rev`, failing the test on any diagnostic.
fn spec_at(repo: &Repo, rev: &str) -> Spec {
    let (_, loaded) = repo.load_at(rev).unwrap();
    let errors: Vec<String> = loaded.errors().map(|d| format!("{d:?}")).collect();
    loaded
        .spec
        .unwrap_or_else(|| panic!("spec at {rev} did not load: {errors:#?}"))
}

fn hyperparameter_c(spec: &Spec) -> serde_json::Value {
    let job = spec.find(Kind::TrainingJob, "iris-train").unwrap();
    job.canonical()
        .pointer("/spec/hyperparameters/C")
        .cloned()
        .unwrap()
}

#[test]
fn reads_each_revision_from_git_not_from_the_work_tree() {
    let t = TestRepo::iris("");
    t.replace("ml/train.yaml", "C: 1.0", "C: 0.5");
    t.commit("Lower C: the model overfits");
    // An uncommitted edit must not leak into what HEAD says.
    t.replace("ml/train.yaml", "C: 0.5", "C: 9.0");
    let repo = t.open();

    assert_eq!(
        hyperparameter_c(&spec_at(&repo, "HEAD")),
        serde_json::json!(0.5)
    );
    assert_eq!(
        hyperparameter_c(&spec_at(&repo, "HEAD~1")),
        serde_json::json!(1.0)
    );

    let diff = spec_diff(&spec_at(&repo, "HEAD~1"), &spec_at(&repo, "HEAD"));
    assert_eq!(
        diff.to_string(),
        "~ TrainingJob/iris-train\n    spec.hyperparameters.C: 1.0 -> 0.5"
    );
    assert_eq!(diff.summary(), "0 added, 1 changed, 0 removed");
    assert_eq!(
        serde_json::to_value(&diff).unwrap(),
        serde_json::json!({
            "project": [],
            "added": [],
            "removed": [],
            "changed": [{
                "id": {"kind": "TrainingJob", "name": "iris-train"},
                "changes": [{"path": "spec.hyperparameters.C", "old": 1.0, "new": 0.5}],
            }],
        })
    );
}

#[test]
fn a_comment_or_key_reorder_gives_an_empty_diff() {
    let t = TestRepo::iris("");
    t.replace(
        "ml/train.yaml",
        "  hyperparameters:\n    C: 1.0\n    max_iter: 200\n",
        "  hyperparameters:\n    max_iter: 200   # more than enough\n    C: 1.0\n",
    );
    t.replace(
        "ml/train.yaml",
        "  dataset: iris\n  algorithm: logistic_regression\n",
        "  algorithm: logistic_regression\n  dataset: iris\n",
    );
    t.write(
        "ml/model.yaml",
        &format!(
            "# Owned by the platform team.\n{}",
            std::fs::read_to_string(t.project().join("ml/model.yaml")).unwrap()
        ),
    );
    t.commit("Comments and key order only");
    let repo = t.open();

    let diff = spec_diff(&spec_at(&repo, "HEAD~1"), &spec_at(&repo, "HEAD"));
    assert!(diff.is_empty(), "{diff}");
    assert_eq!(diff.to_string(), "No changes.");
}

#[test]
fn diff_shows_added_removed_resources_and_project_changes() {
    let t = TestRepo::iris("");
    std::fs::remove_file(t.project().join("ml/endpoint.yaml")).unwrap();
    std::fs::remove_file(t.project().join("ml/monitor.yaml")).unwrap();
    let data = std::fs::read_to_string(t.project().join("ml/data.yaml")).unwrap();
    t.write(
        "ml/extra.yaml",
        &data.replace("name: iris\n", "name: iris-copy\n"),
    );
    t.replace("mlctl.yaml", "region: eu-west-1", "region: us-east-1");
    t.commit("Stop serving; copy the data; move staging");
    let repo = t.open();

    let diff = spec_diff(&spec_at(&repo, "HEAD~1"), &spec_at(&repo, "HEAD"));
    assert_eq!(
        diff.to_string(),
        "~ Project\n    targets.staging.region: \"eu-west-1\" -> \"us-east-1\"\n\
         + Dataset/iris-copy\n- Endpoint/iris\n- Monitor/iris-drift"
    );
    assert_eq!(diff.summary(), "1 added, 1 changed, 2 removed");
    // And back: the reverse diff mirrors it.
    let back = spec_diff(&spec_at(&repo, "HEAD"), &spec_at(&repo, "HEAD~1"));
    assert_eq!(back.removed, diff.added);
    assert_eq!(back.added, diff.removed);
}

#[test]
fn project_in_a_subdirectory_of_the_repository() {
    let t = TestRepo::empty("teams/ml/iris");
    copy_dir(&examples().join("iris"), &t.project());
    std::fs::write(t.dir.path().join("README.md"), "monorepo\n").unwrap();
    std::fs::write(t.dir.path().join(".gitignore"), ".mlctl/\n").unwrap();
    t.commit("initial");
    let repo = t.open();
    assert_eq!(repo.project_prefix(), "teams/ml/iris");
    assert_eq!(repo.workdir(), t.dir.path().canonicalize().unwrap());

    let spec = spec_at(&repo, "HEAD");
    assert_eq!(spec.project.name, "iris");

    let head = repo.head_commit().unwrap();
    let files = repo.files_at(&head).unwrap();
    assert_eq!(
        files.list("ml").unwrap().unwrap(),
        [
            "ml/data.yaml",
            "ml/endpoint.yaml",
            "ml/model.yaml",
            "ml/monitor.yaml",
            "ml/train.yaml"
        ]
    );
    // Nothing of the spec reaches outside the project: not the rest of the repository, not
    // above it.
    for outside in [
        "../../../README.md",
        "../../../../outside",
        "../iris2/x.yaml",
    ] {
        let e = files.read(outside).unwrap_err();
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::PermissionDenied,
            "{outside}: {e}"
        );
        assert!(e.to_string().contains("outside the"), "{e}");
    }
    assert_eq!(files.read("nope.yaml").unwrap(), None);
    assert_eq!(files.list("nope").unwrap(), None);
    assert_eq!(files.list("mlctl.yaml").unwrap(), None);
    assert!(
        files.read("ml").is_err(),
        "reading a directory is an error, as on disk"
    );

    // Changes outside the project are not the project's business.
    std::fs::write(t.dir.path().join("README.md"), "changed\n").unwrap();
    std::fs::write(t.dir.path().join("teams/other.txt"), "x\n").unwrap();
    assert_eq!(repo.dirty_files().unwrap(), Vec::<String>::new());
    std::fs::create_dir_all(t.dir.path().join("teams/ml/iris2")).unwrap();
    std::fs::write(t.dir.path().join("teams/ml/iris2/lookalike.txt"), "x\n").unwrap();
    assert_eq!(repo.dirty_files().unwrap(), Vec::<String>::new());
    t.replace("ml/train.yaml", "C: 1.0", "C: 2.0");
    t.write("notes/new.txt", "x\n");
    assert_eq!(
        repo.dirty_files().unwrap(),
        ["ml/train.yaml", "notes/new.txt"]
    );
}

#[test]
fn tree_files_agree_with_the_work_tree_when_clean() {
    let t = TestRepo::iris("proj");
    let repo = t.open();
    let at_head = repo.files_at(&repo.head_commit().unwrap()).unwrap();
    let on_disk = DirFiles::new(t.project());
    for dir in ["", "ml", "./ml/", "data"] {
        let listed = at_head.list(dir).unwrap().unwrap();
        assert_eq!(listed, on_disk.list(dir).unwrap().unwrap(), "list({dir:?})");
        for path in listed {
            assert_eq!(
                at_head.read_bytes(&path).unwrap(),
                Some(std::fs::read(t.project().join(&path)).unwrap()),
                "{path}"
            );
        }
    }
}

#[cfg(unix)]
#[test]
fn committed_symlinks_are_followed_inside_the_project_only() {
    let t = TestRepo::iris("proj");
    std::os::unix::fs::symlink("iris.csv", t.project().join("data/current.csv")).unwrap();
    std::os::unix::fs::symlink("data", t.project().join("latest")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", t.project().join("abs")).unwrap();
    std::os::unix::fs::symlink("loop", t.project().join("loop")).unwrap();
    // In the repository, but outside the project.
    std::fs::write(t.dir.path().join("secret.txt"), "not the project's\n").unwrap();
    std::os::unix::fs::symlink("../secret.txt", t.project().join("out")).unwrap();
    t.commit("links");
    let repo = t.open();
    let files = repo.files_at(&repo.head_commit().unwrap()).unwrap();
    let csv = std::fs::read(t.project().join("data/iris.csv")).unwrap();
    assert_eq!(
        files.read_bytes("data/current.csv").unwrap().as_ref(),
        Some(&csv)
    );
    assert_eq!(
        files.read_bytes("latest/iris.csv").unwrap().as_ref(),
        Some(&csv)
    );
    assert_eq!(
        files.list("latest").unwrap().unwrap(),
        ["latest/current.csv", "latest/iris.csv"]
    );
    assert!(
        files
            .read("abs")
            .unwrap_err()
            .to_string()
            .contains("absolute path")
    );
    assert!(
        files
            .read("loop")
            .unwrap_err()
            .to_string()
            .contains("symbolic links")
    );
    let e = files.read("out").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
    assert!(
        e.to_string()
            .contains("out leads outside the project directory"),
        "{e}"
    );
}

#[test]
fn dirty_files_are_changes_under_the_project_but_not_ignored_ones() {
    // `.mlctl/` deliberately not ignored: mlctl's state directory is never dirty anyway.
    let t = TestRepo::iris_with_ignore("", "*.tmp\n");
    let repo = t.open();
    assert_eq!(repo.ensure_clean(false).unwrap(), Vec::<String>::new());

    t.replace("ml/train.yaml", "C: 1.0", "C: 0.5");
    std::fs::remove_file(t.project().join("ml/endpoint.yaml")).unwrap();
    t.write("notes.txt", "todo\n");
    t.write("scratch/deep/a.txt", "x\n");
    t.write("ml/new.yaml", "# staged\n");
    let mut index = t.git.index().unwrap();
    index.add_path(Path::new("ml/new.yaml")).unwrap();
    index.write().unwrap();
    t.write("cache.tmp", "ignored\n");
    t.write(".mlctl/state.db", "state\n");

    let status: Vec<(String, FileChange)> = repo
        .dirty_status()
        .unwrap()
        .into_iter()
        .map(|f| (f.path, f.change))
        .collect();
    assert_eq!(
        status,
        [
            ("ml/endpoint.yaml".to_owned(), FileChange::Deleted),
            ("ml/new.yaml".to_owned(), FileChange::Added),
            ("ml/train.yaml".to_owned(), FileChange::Modified),
            ("notes.txt".to_owned(), FileChange::Untracked),
            ("scratch/deep/a.txt".to_owned(), FileChange::Untracked),
        ]
    );

    let err = repo.ensure_clean(false).unwrap_err();
    assert!(matches!(&err, GitError::Dirty { files, .. } if files.len() == 5));
    let msg = err.to_string();
    assert!(msg.contains("(5 files):"), "{msg}");
    assert!(msg.contains("\n  modified:  ml/train.yaml\n"), "{msg}");
    assert!(msg.contains("\n  untracked: notes.txt\n"), "{msg}");
    assert!(
        !msg.contains("cache.tmp") && !msg.contains(".mlctl"),
        "{msg}"
    );
    assert!(
        msg.ends_with("commit them, or pass --allow-dirty to plan from the work tree"),
        "{msg}"
    );

    let allowed = repo.ensure_clean(true).unwrap();
    assert_eq!(allowed.len(), 5);
    let prov = Provenance::new(&repo.head_commit().unwrap(), !allowed.is_empty());
    assert!(prov.dirty);
}

#[test]
fn revisions_resolve_to_commits_with_provenance() {
    let t = TestRepo::iris("");
    let first = t.commit("Second commit\n\nWith a body that is not the summary.");
    let head = t
        .git
        .find_commit(git2::Oid::from_str(&first).unwrap())
        .unwrap();
    t.git
        .tag_lightweight("v1", head.as_object(), false)
        .unwrap();
    let sig = git2::Signature::new(
        "Ada Lovelace",
        "ada@example.com",
        &git2::Time::new(1_700_000_000, 0),
    )
    .unwrap();
    t.git
        .tag("v1-annotated", head.as_object(), &sig, "release", false)
        .unwrap();
    t.git.branch("experiment", &head, false).unwrap();
    t.replace("ml/train.yaml", "C: 1.0", "C: 0.5");
    let second = t.commit("Third");
    let repo = t.open();

    let c = repo.resolve("v1").unwrap();
    assert_eq!(c.sha, first);
    assert_eq!(c.summary, "Second commit");
    assert_eq!(c.author(), "Ada Lovelace <ada@example.com>");
    assert_eq!(c.time, "2023-11-15T00:14:20+02:00");
    assert_eq!(c.timestamp, 1_700_000_060);
    assert!(first.starts_with(&c.short_sha) && c.short_sha.len() >= 7);
    assert_eq!(c.to_string(), format!("{} Second commit", c.short_sha));
    for rev in [
        "v1-annotated",
        "experiment",
        "HEAD~1",
        "HEAD^",
        &first[..10],
        &first,
    ] {
        assert_eq!(repo.resolve(rev).unwrap().sha, first, "{rev}");
    }
    assert_eq!(repo.head_commit().unwrap().sha, second);
    assert_eq!(repo.resolve("main").unwrap().sha, second);

    let (older, newer) = (repo.resolve(&first).unwrap(), repo.head_commit().unwrap());
    assert!(repo.is_ancestor(&older, &newer).unwrap());
    assert!(!repo.is_ancestor(&newer, &older).unwrap());
    assert!(repo.is_ancestor(&newer, &newer).unwrap());

    let prov = Provenance::new(&newer, false);
    assert_eq!(
        serde_json::to_value(&prov).unwrap(),
        serde_json::json!({
            "commit": second, "author": "Ada Lovelace <ada@example.com>",
            "time": "2023-11-15T00:15:20+02:00", "summary": "Third", "dirty": false,
        })
    );
}

#[test]
fn unknown_revisions_are_named_with_a_hint() {
    let t = TestRepo::iris("");
    let repo = t.open();
    for rev in [
        "no-such-branch",
        "HEAD~5",
        "deadbeef",
        "",
        "main~x",
        "refs/heads/nope",
    ] {
        let err = repo.resolve(rev).expect_err(rev);
        assert!(
            matches!(&err, GitError::UnknownRevision { rev: r, shallow: false } if r == rev),
            "{rev}: {err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("`{rev}`")) && msg.contains("`git log --oneline`"),
            "{msg}"
        );
    }
    assert!(repo.load_at("nope").is_err());
    for rev in ["main..HEAD", "HEAD...main"] {
        let err = repo.resolve(rev).unwrap_err();
        assert!(matches!(&err, GitError::Range { .. }), "{err:?}");
        assert!(err.to_string().contains("range"), "{err}");
    }
    let err = repo.resolve("HEAD:mlctl.yaml").unwrap_err();
    assert_eq!(
        err.to_string(),
        "revision `HEAD:mlctl.yaml` names a blob, not a commit; give a commit, branch or tag"
    );
}

#[test]
fn outside_git_and_before_the_first_commit() {
    let plain = tempfile::tempdir().unwrap();
    let err = Repo::discover(plain.path()).unwrap_err();
    assert!(matches!(err, GitError::NotARepository { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("run `git init && git add . && git commit"),
        "{err}"
    );

    let err = Repo::discover(plain.path().join("missing")).unwrap_err();
    assert!(matches!(err, GitError::ProjectDir { .. }), "{err:?}");

    let t = TestRepo::empty("");
    copy_dir(&examples().join("iris"), &t.project());
    let repo = t.open();
    for err in [
        repo.head_commit().unwrap_err(),
        repo.load_at("HEAD").unwrap_err(),
    ] {
        assert!(matches!(err, GitError::NoCommits { .. }), "{err:?}");
        assert!(err.to_string().contains("has no commits yet"), "{err}");
    }
    assert!(
        repo.dirty_files()
            .unwrap()
            .contains(&"mlctl.yaml".to_owned())
    );
}

#[test]
fn a_revision_from_before_the_project_existed() {
    let t = TestRepo::empty("proj");
    std::fs::write(t.dir.path().join("README.md"), "hello\n").unwrap();
    t.commit("readme");
    copy_dir(&examples().join("iris"), &t.project());
    t.commit("add project");
    let repo = t.open();
    let err = repo.load_at("HEAD~1").unwrap_err();
    assert!(
        matches!(&err, GitError::ProjectNotAtRevision { path, .. } if path == "proj/mlctl.yaml"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("proj/mlctl.yaml does not exist at revision `HEAD~1`"),
        "{err}"
    );
    assert!(repo.load_at("HEAD").unwrap().1.spec.is_some());
}

#[test]
fn project_directory_names_are_literal_not_patterns() {
    let t = TestRepo::iris("my proj[1]*");
    let repo = t.open();
    assert_eq!(repo.project_prefix(), "my proj[1]*");
    assert!(spec_at(&repo, "HEAD").find(Kind::Dataset, "iris").is_some());
    t.replace("ml/train.yaml", "C: 1.0", "C: 2.0");
    std::fs::create_dir_all(t.dir.path().join("my proj1x")).unwrap();
    std::fs::write(t.dir.path().join("my proj1x/other.txt"), "x\n").unwrap();
    assert_eq!(repo.dirty_files().unwrap(), ["ml/train.yaml"]);
}

/// A committed manifest that is not UTF-8 is reported at the first bad byte, as on disk.
#[test]
fn a_manifest_that_is_not_utf8_is_reported_at_the_bad_byte() {
    let t = TestRepo::iris("");
    let mut bytes = b"apiVersion: mlctl/v1\nkind: Dataset\nmetadata:\n  name: caf".to_vec();
    bytes.extend([0xe9, b'\n']);
    std::fs::write(t.project().join("ml/extra.yaml"), bytes).unwrap();
    t.commit("latin-1 in a manifest");
    let repo = t.open();
    let (_, loaded) = repo.load_at("HEAD").unwrap();
    let errors: Vec<_> = loaded.errors().collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let e = errors[0];
    assert_eq!(e.code, "not-utf8", "{e}");
    assert_eq!(e.file, "ml/extra.yaml");
    assert_eq!(e.span.map(|s| (s.line, s.col)), Some((4, 12)), "{e}");
}
