//! The CI pipelines of `workflows/` played end to end in temporary repositories, their
//! scripts run as shell commands, against fake GitHub and GitLab APIs on 127.0.0.1
//! (`ci/forge.rs`); and `mlctl ci comment` on its own: what it posts, edits, cuts and says.
//!
//! The project has two targets: `staging` on the local target (a real endpoint) and
//! `production` on the mock target.

mod forge;
mod runner;

use crate::common::*;
use forge::{Forge, NUMBER, Platform};
use runner::{Github, Gitlab, When, load, str_of};
use serde_json::json;
use std::path::PathBuf;

const GITHUB_TOKEN: &str = "ghs_fakeTokenOfTheCiTestOnly0123456789";
const GITLAB_TOKEN: &str = "glpat-fakeTokenOfTheCiTestOnly0123";
const STAGING: &str = "<!-- mlctl:plan project=iris target=staging -->";
const PRODUCTION: &str = "<!-- mlctl:plan project=iris target=production -->";

fn workflow(rel: &str) -> PathBuf {
    repo_root().join("workflows").join(rel)
}

/// The iris project with `staging` (local, on a free port) and `production` (mock), committed
/// on `main`. Its endpoint servers are stopped on drop.
struct CiRepo {
    p: TestProject,
}

impl CiRepo {
    fn new() -> CiRepo {
        let (p, _port) = iris_on_a_free_port("{type: all-at-once}");
        p.write(
            "mlctl.yaml",
            "apiVersion: mlctl/v1\nkind: Project\nmetadata:\n  name: iris\nspec:\n  manifests: [ml/]\n  defaultTarget: staging\n  targets:\n    staging:\n      provider: local\n    production:\n      provider: mock\n",
        );
        CiRepo { p: p.into_git() }
    }

    /// Changes the training job's `C` and commits.
    fn set_c(&self, from: &str, to: &str) {
        self.p
            .replace("ml/train.yaml", &format!("C: {from}"), &format!("C: {to}"));
        self.p.commit_all(&format!("C {from} -> {to}"));
    }
}

impl Drop for CiRepo {
    fn drop(&mut self) {
        kill_endpoints(&self.p.path().join(".mlctl/staging"));
    }
}

/// A GitHub runner for `repo` whose API is `forge`, installing the binary under test.
fn github(repo: &CiRepo, forge: &Forge) -> Github {
    let mut gh = Github::new(repo.p.path());
    gh.env.insert("GITHUB_API_URL".into(), forge.api_url());
    for (expr, value) in [
        ("vars.MLCTL_BIN", env!("CARGO_BIN_EXE_mlctl")),
        ("vars.MLCTL_PROMOTE_MODELS", "iris"),
        ("secrets.GITHUB_TOKEN", forge.token()),
    ] {
        gh.expressions.insert(expr.into(), value.into());
    }
    gh
}

/// Production serves the version staging validated, promoted (not trained there), and its
/// plan has no changes.
#[track_caller]
fn assert_promoted(repo: &CiRepo) {
    let show = |target: &str| -> serde_json::Value {
        let run = repo
            .p
            .mlctl(&["models", "show", "iris", "--target", target, "-o", "json"])
            .expect_code(0);
        serde_json::from_str(&run.stdout).unwrap()
    };
    let (staging, production) = (show("staging").to_string(), show("production").to_string());
    assert!(
        production.contains("promotedFrom") && production.contains("\"staging\""),
        "production's version is staging's, promoted: {production}"
    );
    let digest = |s: &str| -> Option<String> {
        let at = s.find("artifactDigest")?;
        Some(s[at..].chars().take(90).collect())
    };
    assert!(
        digest(&production).is_some(),
        "the digest verified on arrival is recorded: {production} (staging: {staging})"
    );
    repo.p
        .mlctl(&["plan", "--target", "production", "--detailed-exitcode"])
        .expect_code(0);
}

fn names(runs: &[runner::JobRun]) -> Vec<&str> {
    runs.iter().map(|r| r.name.as_str()).collect()
}

#[track_caller]
fn all_pass(runs: Vec<runner::JobRun>) -> Vec<runner::JobRun> {
    runs.into_iter().map(|r| r.expect_code(0)).collect()
}

/// The whole GitHub flow: deploy main, a pull request whose plan comment shows exactly its
/// change (one comment per target, edited on the next push), the merge and its reconcile,
/// then the schedule's drift check and monitors.
#[test]
fn github_pull_request_to_production() {
    let repo = CiRepo::new();
    let forge = Forge::start(Platform::Github, GITHUB_TOKEN);
    // More comments than one page holds, so mlctl's own land on page 2.
    for i in 1..=4 {
        forge.add("alice", &format!("review comment {i}"));
    }
    let mut gh = github(&repo, &forge);
    let deploy = load(&workflow("github/mlctl-deploy.yml"));
    let plan = load(&workflow("github/mlctl-plan.yml"));
    let drift = load(&workflow("github/mlctl-drift.yml"));

    // main: staging is reconciled, then production behind its environment's approval.
    assert_eq!(
        str_of(&deploy["jobs"]["production"]["environment"]).as_deref(),
        Some("production")
    );
    assert_eq!(
        Github::job_order(&deploy),
        ["staging", "production"],
        "production waits for staging"
    );
    gh.event("push", json!({"ref": "refs/heads/main"}));
    let runs = all_pass(gh.run(&deploy));
    assert_eq!(names(&runs), ["staging", "production"]);
    assert!(
        runs[0]
            .output()
            .contains("Apply complete! Resources: 5 added"),
        "{}",
        runs[0].output()
    );

    // A pull request from a branch that lowers C.
    repo.p.git(&["checkout", "-q", "-b", "lower-c"]);
    repo.set_c("1.0", "0.5");
    gh.event("pull_request", json!({"pull_request": {"number": NUMBER}}));
    let runs = all_pass(gh.run(&plan));
    assert_eq!(
        names(&runs),
        ["validate", "plan (staging)", "plan (production)"]
    );
    let staging = forge.marked(STAGING);
    let production = forge.marked(PRODUCTION);
    assert_eq!(
        (staging.len(), production.len()),
        (1, 1),
        "{:#?}",
        forge.comments()
    );
    assert_eq!(
        forge.comments().len(),
        6,
        "four people's comments and mlctl's two"
    );
    insta::assert_snapshot!("github_plan_comment", redact(&staging[0].body));
    for line in [
        "| `-/+` | `TrainingJob/iris-train` | replace | hyperparameter C: 1.0 -> 0.5 |",
        "**Plan: 1 to add, 3 to change, 1 to destroy.**",
    ] {
        assert!(production[0].body.contains(line), "{}", production[0].body);
    }
    assert!(
        runs[1]
            .summary
            .contains("### mlctl plan for `iris` on target `staging`"),
        "the plan is in the job summary too: {}",
        runs[1].summary
    );
    assert!(
        forge
            .requests()
            .iter()
            .any(|r| r.starts_with("GET ") && r.contains("page=2")),
        "the second page was read: {:#?}",
        forge.requests()
    );
    assert_eq!((forge.count("POST "), forge.count("PATCH ")), (2, 0));

    // A second push to the branch: the same two comments, edited in place.
    repo.set_c("0.5", "0.25");
    gh.event("pull_request", json!({"pull_request": {"number": NUMBER}}));
    all_pass(gh.run(&plan));
    assert_eq!(forge.comments().len(), 6, "{:#?}", forge.comments());
    assert_eq!((forge.count("POST "), forge.count("PATCH ")), (2, 2));
    let edited = forge.marked(STAGING);
    assert_eq!(edited.len(), 1);
    assert_eq!(
        edited[0].id, staging[0].id,
        "the first comment is the one edited"
    );
    assert!(
        edited[0].body.contains("hyperparameter C: 1.0 -> 0.25"),
        "{}",
        edited[0].body
    );
    assert_eq!(forge.refused(), 0);

    // The merge: the deploy reconciles staging with the change.
    repo.p.git(&["checkout", "-q", "main"]);
    repo.p
        .git(&["merge", "-q", "--no-ff", "lower-c", "-m", "Merge lower-c"]);
    gh.event("push", json!({"ref": "refs/heads/main"}));
    let runs = all_pass(gh.run(&deploy));
    assert!(
        runs[0].output().contains("Apply complete!"),
        "{}",
        runs[0].output()
    );
    repo.p
        .mlctl(&["plan", "--target", "staging", "--detailed-exitcode"])
        .expect_code(0);

    // Promotion: the deploy's production job, once its environment is approved, carries
    // staging's model version over (the same bytes) and reconciles production, which then
    // has nothing left to do.
    assert!(
        runs[1]
            .steps
            .iter()
            .any(|s| s.name == "Promote to production"),
        "{}",
        runs[1].output()
    );
    assert_promoted(&repo);

    // The schedule: no drift, and the monitors that are due run.
    gh.event("schedule", json!({"schedule": "17 * * * *"}));
    let runs = all_pass(gh.run(&drift));
    assert_eq!(
        names(&runs),
        [
            "drift (staging)",
            "drift (production)",
            "monitors (staging)",
            "monitors (production)"
        ]
    );
    // A commit on main that no deploy applied is drift: the check fails and says where.
    repo.set_c("0.25", "0.1");
    gh.event("schedule", json!({"schedule": "17 * * * *"}));
    let runs = gh.run(&drift);
    let staging_drift = runs.iter().find(|r| r.name == "drift (staging)").unwrap();
    assert_eq!(staging_drift.code, 2, "{}", staging_drift.output());
    assert!(
        staging_drift
            .output()
            .contains("::error title=Drift on staging::target staging does not match the spec"),
        "{}",
        staging_drift.output()
    );
}

/// The same flows in GitLab CI: which jobs each pipeline starts, merge request notes edited
/// in place, the manual promotion, the schedule.
#[test]
fn gitlab_merge_request_to_production() {
    let repo = CiRepo::new();
    let forge = Forge::start(Platform::Gitlab, GITLAB_TOKEN);
    forge.add("alice", "looks good");
    forge.add_system_note("added 1 commit");
    forge.add("bob", "what does C do?");
    forge.add("alice", "regularisation");
    let mut gl = Gitlab::new(repo.p.path(), load(&workflow("gitlab/.gitlab-ci.yml")));
    for (k, v) in [
        ("CI_API_V4_URL", forge.api_url().as_str()),
        ("GITLAB_TOKEN", GITLAB_TOKEN),
        ("MLCTL_BIN", env!("CARGO_BIN_EXE_mlctl")),
        ("MLCTL_PROMOTE_MODELS", "iris"),
        // The OpenID Connect set-up runs too (the local and mock targets ignore it).
        (
            "MLCTL_AWS_ROLE_ARN",
            "arn:aws:iam::123456789012:role/mlctl-ci",
        ),
        ("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000001"),
        ("AZURE_TENANT_ID", "00000000-0000-0000-0000-000000000002"),
    ] {
        gl.vars.insert(k.into(), v.into());
    }
    assert_eq!(
        gl.jobs(),
        [
            "mlctl:validate",
            "mlctl:plan",
            "mlctl:reconcile",
            "mlctl:promote",
            "mlctl:drift",
            "mlctl:monitors"
        ]
    );
    let jobs = |gl: &Gitlab| -> Vec<(String, When)> { gl.planned() };
    let on = |names: &[(&str, When)]| -> Vec<(String, When)> {
        names.iter().map(|(n, w)| (n.to_string(), *w)).collect()
    };

    // The default branch: reconcile staging; the promotion waits for someone to run it.
    gl.pipeline("push", Some("main"));
    assert_eq!(
        jobs(&gl),
        on(&[
            ("mlctl:reconcile", When::OnSuccess),
            ("mlctl:promote", When::Manual)
        ])
    );
    assert_eq!(
        str_of(&gl.file["mlctl:promote"]["environment"]["name"]).as_deref(),
        Some("production")
    );
    all_pass(gl.run_job("mlctl:reconcile"));
    all_pass(gl.run_job("mlctl:promote"));

    // A merge request from a branch that lowers C.
    repo.p.git(&["checkout", "-q", "-b", "lower-c"]);
    repo.set_c("1.0", "0.5");
    gl.pipeline("merge_request_event", None);
    gl.vars
        .insert("CI_MERGE_REQUEST_IID".into(), NUMBER.to_string());
    assert_eq!(
        jobs(&gl),
        on(&[
            ("mlctl:validate", When::OnSuccess),
            ("mlctl:plan", When::OnSuccess)
        ])
    );
    all_pass(gl.run_job("mlctl:validate"));
    let runs = all_pass(gl.run_job("mlctl:plan"));
    assert_eq!(
        names(&runs),
        ["mlctl:plan: [staging]", "mlctl:plan: [production]"]
    );
    let first = forge.marked(STAGING);
    assert_eq!(first.len(), 1, "{:#?}", forge.comments());
    assert!(
        first[0].body.contains(
            "| `-/+` | `TrainingJob/iris-train` | replace | hyperparameter C: 1.0 -> 0.5 |"
        ),
        "{}",
        first[0].body
    );
    assert_eq!(forge.marked(PRODUCTION).len(), 1);

    // A second push: the notes are edited, none added.
    repo.set_c("0.5", "0.25");
    gl.pipeline("merge_request_event", None);
    all_pass(gl.run_job("mlctl:plan"));
    assert_eq!(forge.comments().len(), 6, "{:#?}", forge.comments());
    assert_eq!((forge.count("POST "), forge.count("PUT ")), (2, 2));
    let edited = forge.marked(STAGING);
    assert_eq!(edited[0].id, first[0].id);
    assert!(
        edited[0].body.contains("C: 1.0 -> 0.25"),
        "{}",
        edited[0].body
    );

    // A push to the branch while its merge request is open starts no second pipeline.
    gl.pipeline("push", Some("lower-c"));
    gl.vars
        .insert("CI_OPEN_MERGE_REQUESTS".into(), "acme/iris!7".into());
    assert_eq!(jobs(&gl), vec![]);
    gl.vars.remove("CI_OPEN_MERGE_REQUESTS");

    // The merge, its reconcile, and the promotion someone runs.
    repo.p.git(&["checkout", "-q", "main"]);
    repo.p
        .git(&["merge", "-q", "--no-ff", "lower-c", "-m", "Merge lower-c"]);
    gl.pipeline("push", Some("main"));
    all_pass(gl.run_job("mlctl:reconcile"));
    // Promotion: staging's version carried over, production reconciled.
    all_pass(gl.run_job("mlctl:promote"));
    assert_promoted(&repo);
    for target in ["staging", "production"] {
        repo.p
            .mlctl(&["plan", "--target", target, "--detailed-exitcode"])
            .expect_code(0);
    }

    // The schedule.
    gl.pipeline("schedule", Some("main"));
    assert_eq!(
        jobs(&gl),
        on(&[
            ("mlctl:drift", When::OnSuccess),
            ("mlctl:monitors", When::OnSuccess)
        ])
    );
    all_pass(gl.run_job("mlctl:drift"));
    all_pass(gl.run_job("mlctl:monitors"));
}

/// `mlctl ci comment` with a clean environment (none of the platforms' variables of the
/// machine the test runs on) plus `env`.
fn ci_comment(p: &TestProject, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = mlctl();
    for var in [
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "GITHUB_API_URL",
        "GITHUB_REPOSITORY",
        "GITHUB_EVENT_PATH",
        "GITLAB_TOKEN",
        "CI_JOB_TOKEN",
        "CI_API_V4_URL",
        "CI_PROJECT_ID",
        "CI_MERGE_REQUEST_IID",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd
        .args(["ci", "comment"])
        .args(args)
        .envs(env.iter().copied())
        .current_dir(p.path())
        .output()
        .expect("run mlctl");
    Run::from(out)
}

fn github_env(forge: &Forge) -> Vec<(&'static str, String)> {
    vec![
        ("GITHUB_API_URL", forge.api_url()),
        ("GITHUB_REPOSITORY", "acme/iris".into()),
        ("GITHUB_TOKEN", forge.token().into()),
    ]
}

fn refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn ci_comment_names_what_is_missing_and_what_to_do() {
    let p = TestProject::example_in_git("iris");
    let none = ci_comment(&p, &["--provider", "github", "--target", "test"], &[]).expect_code(1);
    insta::assert_snapshot!("ci_comment_github_nothing_set", none.stderr);
    let no_pr = ci_comment(
        &p,
        &["--provider", "github", "--target", "test"],
        &[
            ("GITHUB_TOKEN", GITHUB_TOKEN),
            ("GITHUB_API_URL", "https://api.github.com"),
            ("GITHUB_REPOSITORY", "acme/iris"),
        ],
    )
    .expect_code(1);
    insta::assert_snapshot!("ci_comment_github_no_pull_request", no_pr.stderr);
    let job_token = ci_comment(
        &p,
        &["--provider", "gitlab", "--target", "test"],
        &[
            ("CI_JOB_TOKEN", "job-token-value"),
            ("CI_API_V4_URL", "https://gitlab.example.com/api/v4"),
            ("CI_PROJECT_ID", "42"),
            ("CI_MERGE_REQUEST_IID", "7"),
        ],
    )
    .expect_code(1);
    insta::assert_snapshot!("ci_comment_gitlab_job_token", job_token.stderr);
    for run in [&none, &no_pr, &job_token] {
        assert!(!run.stderr.contains(GITHUB_TOKEN) && !run.stderr.contains("job-token-value"));
    }
}

#[test]
fn a_wrong_token_is_refused_and_never_printed() {
    let p = TestProject::example_in_git("iris");
    let forge = Forge::start(Platform::Github, GITHUB_TOKEN);
    let mut env = github_env(&forge);
    env[2].1 = "ghs_notTheRightTokenButSecretAllTheSame".into();
    let run = ci_comment(
        &p,
        &["--provider", "github", "--target", "test", "--pr", "7"],
        &refs(&env),
    )
    .expect_code(1);
    assert!(
        run.stderr.contains(
            "cannot list the comments of pull request #7: GitHub answered HTTP 401 (Bad credentials); the token in GITHUB_TOKEN was refused"
        ),
        "{}",
        run.stderr
    );
    assert!(!format!("{}{}", run.stdout, run.stderr).contains("ghs_notTheRightToken"));
    assert_eq!(forge.refused(), 1);
    assert!(forge.comments().is_empty());
}

#[test]
fn dry_run_prints_the_body_and_needs_no_token() {
    let p = TestProject::example_in_git("iris");
    let run = ci_comment(
        &p,
        &["--provider", "gitlab", "--target", "test", "--dry-run"],
        &[],
    )
    .expect_code(0);
    assert!(
        run.stdout.starts_with(
            "<!-- mlctl:plan project=iris target=test -->\n### mlctl plan for `iris` on target `test` at `"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("**Plan: 5 to add, 0 to change, 0 to destroy.**")
    );
    assert!(
        run.stderr.contains("--dry-run: nothing was posted"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_failed_plan_is_commented_with_its_errors_and_fails_the_step() {
    let p = TestProject::example_in_git("iris");
    p.replace("ml/train.yaml", "hyperparameters:", "hyperparameter:");
    p.commit_all("a typo");
    let forge = Forge::start(Platform::Github, GITHUB_TOKEN);
    let env = github_env(&forge);
    let run = ci_comment(
        &p,
        &["--provider", "github", "--target", "test", "--pr", "7"],
        &refs(&env),
    )
    .expect_code(1);
    let posted = forge.marked("<!-- mlctl:plan project=iris target=test -->");
    assert_eq!(posted.len(), 1, "{}", run.stderr);
    let body = &posted[0].body;
    for part in [
        "### mlctl plan for `iris` on target `test` failed",
        "`mlctl plan` exited with 1 at `",
        "error[unknown-field]: unknown field `hyperparameter` in TrainingJob spec",
        "--> ml/train.yaml:",
        "did you mean `hyperparameters`?",
    ] {
        assert!(body.contains(part), "{part:?} missing from\n{body}");
    }
}

#[test]
fn a_body_longer_than_github_takes_is_cut_with_a_note_never_refused() {
    let p = TestProject::example_in_git("iris");
    let forge = Forge::start(Platform::Github, GITHUB_TOKEN);
    let env = github_env(&forge);
    let big: String = (0..5_000)
        .map(|i| format!("| `~` | `Dataset/data-{i:05}` | update in-place | schema changed |\n"))
        .collect();
    assert!(big.len() > 65_536 * 4);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plan.md");
    std::fs::write(&file, &big).unwrap();
    let run = ci_comment(
        &p,
        &[
            "--provider",
            "github",
            "--target",
            "test",
            "--pr",
            "7",
            "--body-file",
            file.to_str().unwrap(),
        ],
        &refs(&env),
    );
    run.expect_code(0);
    let posted = forge.marked("<!-- mlctl:plan project=iris target=test -->");
    assert_eq!(posted.len(), 1);
    let body = &posted[0].body;
    assert!(body.chars().count() <= 65_536, "{}", body.chars().count());
    assert!(body.contains("| `~` | `Dataset/data-00000` |"));
    assert!(
        body.contains("> **This plan is cut short:** it has 5,000 lines"),
        "{}",
        &body[body.len() - 500..]
    );
}

/// `--skip-no-changes`: a target with nothing to change gets no comment, but a comment posted
/// earlier is updated, so it never shows a plan that no longer holds.
#[test]
fn skip_no_changes_posts_nothing_new_but_updates_what_it_posted() {
    let p = TestProject::example_in_git("iris");
    p.mlctl(&["reconcile", "--target", "test"]).expect_code(0);
    let forge = Forge::start(Platform::Github, GITHUB_TOKEN);
    let env = github_env(&forge);
    let args = [
        "--provider",
        "github",
        "--target",
        "test",
        "--pr",
        "7",
        "--skip-no-changes",
    ];
    let run = ci_comment(&p, &args, &refs(&env)).expect_code(0);
    assert!(forge.comments().is_empty(), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("no changes on target `test`: no comment posted")
    );

    p.replace("ml/train.yaml", "C: 1.0", "C: 0.5");
    p.commit_all("lower C");
    ci_comment(&p, &args, &refs(&env)).expect_code(0);
    assert_eq!(forge.comments().len(), 1);

    p.git(&["revert", "--no-edit", "HEAD"]);
    ci_comment(&p, &args, &refs(&env)).expect_code(0);
    let comments = forge.comments();
    assert_eq!(comments.len(), 1);
    assert!(
        comments[0].body.contains("**No changes.**"),
        "{}",
        comments[0].body
    );
}

/// The pre-commit hook this repository offers runs `mlctl validate` as pre-commit would
/// (`entry` and `args`, no file names), and fails on a broken spec.
#[test]
fn the_pre_commit_hook_validates_the_spec() {
    let hooks = load(&repo_root().join(".pre-commit-hooks.yaml"));
    let hook = &hooks[0];
    assert_eq!(str_of(&hook["id"]).as_deref(), Some("mlctl-validate"));
    assert_eq!(hook["pass_filenames"].as_bool(), Some(false));
    let entry = str_of(&hook["entry"]).unwrap();
    let p = TestProject::example_in_git("iris");
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_mlctl"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let hook_run = || {
        Run::from(
            std::process::Command::new("bash")
                .args(["-c", &entry])
                .current_dir(p.path())
                .env("PATH", &path)
                .env("NO_COLOR", "1")
                .output()
                .unwrap(),
        )
    };
    hook_run().expect_code(0);
    p.replace("ml/train.yaml", "hyperparameters:", "hyperparameter:");
    let run = hook_run().expect_code(1);
    assert!(run.stderr.contains("--> ml/train.yaml:"), "{}", run.stderr);
}

/// The GitHub workflows get cloud credentials through OpenID Connect only, and install mlctl
/// with one identical step (the one the tests substitute the built binary in).
#[test]
fn github_workflows_use_openid_connect_and_one_install_step() {
    let mut installs = Vec::new();
    for file in ["mlctl-plan.yml", "mlctl-deploy.yml", "mlctl-drift.yml"] {
        let text = std::fs::read_to_string(workflow(&format!("github/{file}"))).unwrap();
        for stored in [
            "aws-access-key-id",
            "aws-secret-access-key",
            "AWS_SECRET_ACCESS_KEY",
            "creds:",
            "client-secret",
        ] {
            assert!(
                !text.contains(stored),
                "{file} uses a stored key ({stored})"
            );
        }
        let wf = load(&workflow(&format!("github/{file}")));
        for job in runner::map_keys(&wf["jobs"]) {
            let spec = &wf["jobs"][job.as_str()];
            let steps = spec["steps"].as_vec().unwrap();
            let oidc = steps.iter().any(|s| {
                str_of(&s["uses"]).is_some_and(|u| {
                    u.starts_with("aws-actions/configure-aws-credentials")
                        || u.starts_with("azure/login")
                })
            });
            let id_token = str_of(&spec["permissions"]["id-token"])
                .or_else(|| str_of(&wf["permissions"]["id-token"]));
            if oidc {
                assert_eq!(id_token.as_deref(), Some("write"), "{file} job {job}");
            }
            if let Some(aws) = steps.iter().find(|s| {
                str_of(&s["uses"])
                    .is_some_and(|u| u.starts_with("aws-actions/configure-aws-credentials"))
            }) {
                assert!(
                    str_of(&aws["with"]["role-to-assume"]).is_some(),
                    "{file} job {job}"
                );
            }
            for s in steps {
                if str_of(&s["name"]).as_deref() == Some("Install mlctl") {
                    installs.push(str_of(&s["run"]).unwrap());
                }
            }
        }
    }
    assert_eq!(installs.len(), 6, "one install step per job");
    assert!(
        installs.iter().all(|i| i == &installs[0]),
        "the install steps differ"
    );
    assert!(
        runner::run_steps(&load(&workflow("github/mlctl-plan.yml")))
            .iter()
            .any(|(_, _, run)| run.contains("mlctl ci comment --provider github"))
    );
}

/// `actionlint` (installed by `.ci/run`, with ShellCheck for the `run:` scripts) passes on
/// every GitHub workflow.
#[test]
fn actionlint_passes_on_every_github_workflow() {
    let venv = repo_root().join(".venv-ci/bin");
    let find = |name: &str, var: &str| -> Option<PathBuf> {
        std::env::var_os(var)
            .map(PathBuf::from)
            .or_else(|| Some(venv.join(name)).filter(|p| p.exists()))
            .or_else(|| {
                std::env::var("PATH")
                    .ok()?
                    .split(':')
                    .map(|d| PathBuf::from(d).join(name))
                    .find(|p| p.exists())
            })
    };
    let Some(actionlint) = find("actionlint", "MLCTL_ACTIONLINT") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "actionlint is required under CI: .ci/run installs it into .venv-ci"
        );
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "actionlint_passes_on_every_github_workflow: SKIPPED: actionlint is not installed (.ci/run installs it into .venv-ci)"
        );
        return;
    };
    let files: Vec<PathBuf> = std::fs::read_dir(workflow("github"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    let mut cmd = std::process::Command::new(&actionlint);
    match find("shellcheck", "MLCTL_SHELLCHECK") {
        Some(sc) => cmd.arg("-shellcheck").arg(sc),
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "shellcheck is required under CI: .ci/run installs it into .venv-ci"
            );
            cmd.arg("-shellcheck=")
        }
    };
    let run = Run::from(cmd.args(&files).output().expect("run actionlint"));
    assert_eq!(run.code, 0, "actionlint:\n{}{}", run.stdout, run.stderr);
}
