//! Runs the shipped pipelines the way their platforms would, on this machine: the `run:`
//! steps of a GitHub workflow, the `before_script` + `script` of a GitLab job, each with
//! `bash -euo pipefail` in the test's repository.
//!
//! What the platforms do around the scripts is kept small and explicit: GitHub expressions
//! (`${{ ... }}`) come from a table, and one the table lacks fails the test, so a workflow
//! that starts using a new expression is looked at; `uses:` steps (checkout, cloud logins,
//! artifacts) are the platform's, recorded and not run; `$GITHUB_PATH` and `$GITHUB_ENV` carry
//! into later steps as on a runner. GitLab `rules:` are evaluated (`==`, `!=`, `&&`, a bare
//! variable), so the test checks which jobs a merge request, a push to the default branch and
//! a schedule start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use yaml_rust2::{Yaml, YamlLoader};

/// One YAML file's first document.
pub fn load(path: &Path) -> Yaml {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{} is empty", path.display()))
}

pub fn str_of(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        Yaml::Real(r) => Some(r.clone()),
        _ => None,
    }
}

pub fn map_keys(y: &Yaml) -> Vec<String> {
    y.as_hash()
        .map(|h| h.keys().filter_map(str_of).collect())
        .unwrap_or_default()
}

fn pairs(y: &Yaml) -> Vec<(String, String)> {
    y.as_hash()
        .map(|h| {
            h.iter()
                .map(|(k, v)| (str_of(k).unwrap(), str_of(v).unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

/// What one script (a step, a job) did.
#[derive(Debug, Clone)]
pub struct Ran {
    pub name: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// What one job did.
#[derive(Debug, Clone)]
pub struct JobRun {
    /// `plan (staging)`: the job and its matrix value.
    pub name: String,
    pub code: i32,
    pub steps: Vec<Ran>,
    /// The `uses:` actions the platform would have run, in order.
    pub actions: Vec<String>,
    /// GitHub's job summary (`$GITHUB_STEP_SUMMARY`).
    pub summary: String,
}

impl JobRun {
    pub fn output(&self) -> String {
        self.steps
            .iter()
            .map(|s| format!("--- {} (exit {})\n{}{}", s.name, s.code, s.stdout, s.stderr))
            .collect()
    }

    #[track_caller]
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(self.code, code, "job {}:\n{}", self.name, self.output());
        self
    }
}

/// PATH without any directory holding an `mlctl`: a job must install it to use it.
fn path_without_mlctl() -> String {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|d| !d.is_empty() && !Path::new(d).join("mlctl").exists())
        .collect::<Vec<_>>()
        .join(":")
}

/// Runs `script` with `bash -euo pipefail` in `dir`, with exactly `env` (and nothing of the
/// test's own environment) and `TMPDIR` in `tmp`, which goes with the test: a runner's temp
/// dir is thrown away after the job, and a job's `mktemp -d` (the install step's) must not
/// outlive the test in the machine's /tmp.
fn bash(name: &str, script: &str, dir: &Path, env: &BTreeMap<String, String>, tmp: &Path) -> Ran {
    let file = tmp.join(format!("script-{}.sh", std::process::id()));
    std::fs::write(&file, script).unwrap();
    let out = Command::new("bash")
        .args(["-euo", "pipefail"])
        .arg(&file)
        .current_dir(dir)
        .env_clear()
        .env("TMPDIR", tmp)
        .envs(env)
        .output()
        .expect("run bash");
    Ran {
        name: name.to_string(),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

// --- GitHub Actions ---------------------------------------------------------------------

/// A GitHub Actions runner for one repository.
pub struct Github {
    pub repo: PathBuf,
    /// The values of the `${{ ... }}` expressions the workflows use.
    pub expressions: BTreeMap<String, String>,
    /// What the runner sets in every step (GITHUB_*, RUNNER_TEMP, ...).
    pub env: BTreeMap<String, String>,
    tmp: tempfile::TempDir,
}

impl Github {
    pub fn new(repo: &Path) -> Github {
        let tmp = tempfile::tempdir().unwrap();
        let mut env = BTreeMap::new();
        for (k, v) in [
            ("CI", "true"),
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_REPOSITORY", "acme/iris"),
            ("GITHUB_RUN_ID", "4242"),
        ] {
            env.insert(k.to_string(), v.to_string());
        }
        env.insert("PATH".into(), path_without_mlctl());
        env.insert("HOME".into(), tmp.path().display().to_string());
        env.insert("GITHUB_WORKSPACE".into(), repo.display().to_string());
        Github {
            repo: repo.to_path_buf(),
            expressions: BTreeMap::new(),
            env,
            tmp,
        }
    }

    /// The event: `pull_request` with a number, or `push` / `schedule` (no payload needed).
    pub fn event(&mut self, name: &str, payload: serde_json::Value) {
        let path = self.tmp.path().join("event.json");
        std::fs::write(&path, payload.to_string()).unwrap();
        self.env.insert("GITHUB_EVENT_NAME".into(), name.into());
        self.env
            .insert("GITHUB_EVENT_PATH".into(), path.display().to_string());
        let sha = git(&self.repo, &["rev-parse", "HEAD"]);
        self.env.insert("GITHUB_SHA".into(), sha.trim().to_string());
        self.expressions
            .insert("github.sha".into(), sha.trim().to_string());
    }

    fn substitute(&self, text: &str, scope: &BTreeMap<String, String>) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${{") {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find("}}")
                .unwrap_or_else(|| panic!("unclosed expression in {text:?}"))
                + start;
            let expr = rest[start + 3..end].trim();
            let value = scope
                .get(expr)
                .or_else(|| self.expressions.get(expr))
                .unwrap_or_else(|| {
                    panic!("the test has no value for the expression `{expr}`; add it to the runner's table")
                });
            out.push_str(value);
            rest = &rest[end + 2..];
        }
        out.push_str(rest);
        out
    }

    /// The jobs of `workflow` in an order that respects `needs`.
    pub fn job_order(workflow: &Yaml) -> Vec<String> {
        let jobs = map_keys(&workflow["jobs"]);
        let needs = |j: &str| -> Vec<String> {
            match &workflow["jobs"][j]["needs"] {
                Yaml::String(s) => vec![s.clone()],
                Yaml::Array(a) => a.iter().filter_map(str_of).collect(),
                _ => vec![],
            }
        };
        let mut order: Vec<String> = Vec::new();
        while order.len() < jobs.len() {
            let before = order.len();
            for j in &jobs {
                if !order.contains(j) && needs(j).iter().all(|n| order.contains(n)) {
                    order.push(j.clone());
                }
            }
            assert!(order.len() > before, "a cycle in the jobs' needs");
        }
        order
    }

    /// Every job of `workflow` (each matrix value a run of its own), in `needs` order; a job
    /// whose needs failed is not run, as on GitHub.
    pub fn run(&self, workflow: &Yaml) -> Vec<JobRun> {
        let mut runs: Vec<JobRun> = Vec::new();
        let mut failed: Vec<String> = Vec::new();
        for job in Self::job_order(workflow) {
            let spec = &workflow["jobs"][job.as_str()];
            let needs: Vec<String> = match &spec["needs"] {
                Yaml::String(s) => vec![s.clone()],
                Yaml::Array(a) => a.iter().filter_map(str_of).collect(),
                _ => vec![],
            };
            if needs.iter().any(|n| failed.contains(n)) {
                failed.push(job.clone());
                continue;
            }
            assert!(
                spec["if"].is_badvalue(),
                "job {job} has an `if:` the test runner does not evaluate"
            );
            let matrix = &spec["strategy"]["matrix"];
            let values: Vec<Option<(String, String)>> = match matrix.as_hash() {
                None => vec![None],
                Some(h) => {
                    assert_eq!(h.len(), 1, "job {job}: the runner expands one matrix key");
                    let (k, v) = h.iter().next().unwrap();
                    let k = str_of(k).unwrap();
                    v.as_vec()
                        .expect("a matrix key's values are a list")
                        .iter()
                        .map(|v| Some((k.clone(), str_of(v).unwrap())))
                        .collect()
                }
            };
            for value in values {
                let run = self.run_job(workflow, &job, value);
                if run.code != 0 && !failed.contains(&job) {
                    failed.push(job.clone());
                }
                runs.push(run);
            }
        }
        runs
    }

    /// One job, with `matrix` (key, value) when it has one.
    pub fn run_job(&self, workflow: &Yaml, job: &str, matrix: Option<(String, String)>) -> JobRun {
        let spec = &workflow["jobs"][job];
        let mut scope = BTreeMap::new();
        let name = match &matrix {
            Some((k, v)) => {
                scope.insert(format!("matrix.{k}"), v.clone());
                format!("{job} ({v})")
            }
            None => job.to_string(),
        };
        let jobdir = tempfile::tempdir().unwrap();
        let summary = jobdir.path().join("summary.md");
        std::fs::write(&summary, "").unwrap();
        let mut env = self.env.clone();
        env.insert("RUNNER_TEMP".into(), jobdir.path().display().to_string());
        env.insert("GITHUB_STEP_SUMMARY".into(), summary.display().to_string());
        env.insert("GITHUB_JOB".into(), job.to_string());
        for (k, v) in pairs(&workflow["env"])
            .into_iter()
            .chain(pairs(&spec["env"]))
        {
            let v = self.substitute(&v, &scope);
            scope.insert(format!("env.{k}"), v.clone());
            env.insert(k, v);
        }
        let mut run = JobRun {
            name,
            code: 0,
            steps: Vec::new(),
            actions: Vec::new(),
            summary: String::new(),
        };
        for (i, step) in spec["steps"].as_vec().expect("steps").iter().enumerate() {
            if let Some(uses) = str_of(&step["uses"]) {
                run.actions.push(uses);
                continue;
            }
            let script = str_of(&step["run"])
                .unwrap_or_else(|| panic!("{job} step {i}: neither run nor uses"));
            assert!(
                step["if"].is_badvalue(),
                "{job} step {i}: the runner does not evaluate `if:` on a run step"
            );
            assert!(
                step["shell"].is_badvalue() && step["working-directory"].is_badvalue(),
                "{job} step {i}: the runner runs bash in the workspace only"
            );
            let step_name = str_of(&step["name"]).unwrap_or_else(|| format!("step {i}"));
            let mut step_env = env.clone();
            for (k, v) in pairs(&step["env"]) {
                step_env.insert(k, self.substitute(&v, &scope));
            }
            let files = jobdir.path().join(format!("step-{i}"));
            std::fs::create_dir_all(&files).unwrap();
            let (path_file, env_file) = (files.join("path"), files.join("env"));
            std::fs::write(&path_file, "").unwrap();
            std::fs::write(&env_file, "").unwrap();
            step_env.insert("GITHUB_PATH".into(), path_file.display().to_string());
            step_env.insert("GITHUB_ENV".into(), env_file.display().to_string());
            step_env.insert(
                "GITHUB_OUTPUT".into(),
                files.join("output").display().to_string(),
            );
            let script = self.substitute(&script, &scope);
            let ran = bash(&step_name, &script, &self.repo, &step_env, jobdir.path());
            // What the step asked the runner to carry into the next ones.
            for dir in std::fs::read_to_string(&path_file).unwrap().lines().rev() {
                let path = format!("{dir}:{}", env["PATH"]);
                env.insert("PATH".into(), path);
            }
            for line in std::fs::read_to_string(&env_file).unwrap().lines() {
                if let Some((k, v)) = line.split_once('=') {
                    env.insert(k.into(), v.into());
                }
            }
            let code = ran.code;
            run.steps.push(ran);
            if code != 0 {
                run.code = code;
                break;
            }
        }
        run.summary = std::fs::read_to_string(&summary).unwrap();
        run
    }
}

/// The `run:` steps of every job of `workflow`, by job, as written.
pub fn run_steps(workflow: &Yaml) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for job in map_keys(&workflow["jobs"]) {
        for step in workflow["jobs"][job.as_str()]["steps"].as_vec().unwrap() {
            if let Some(run) = str_of(&step["run"]) {
                out.push((job.clone(), str_of(&step["name"]).unwrap_or_default(), run));
            }
        }
    }
    out
}

// --- GitLab CI --------------------------------------------------------------------------

/// Top-level keys of `.gitlab-ci.yml` that are not jobs.
const RESERVED: [&str; 8] = [
    "stages",
    "variables",
    "default",
    "workflow",
    "include",
    "image",
    "services",
    "cache",
];

/// When a job runs in a pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    OnSuccess,
    Manual,
}

/// A GitLab runner for one repository and one pipeline file.
pub struct Gitlab {
    pub repo: PathBuf,
    pub file: Yaml,
    /// The predefined and project CI/CD variables of the pipeline.
    pub vars: BTreeMap<String, String>,
    tmp: tempfile::TempDir,
}

impl Gitlab {
    pub fn new(repo: &Path, file: Yaml) -> Gitlab {
        let tmp = tempfile::tempdir().unwrap();
        let mut vars = BTreeMap::new();
        for (k, v) in [
            ("CI", "true"),
            ("GITLAB_CI", "true"),
            ("CI_PROJECT_ID", "42"),
            ("CI_DEFAULT_BRANCH", "main"),
            ("CI_JOB_ID", "777"),
            ("CI_JOB_TOKEN", "job-token-that-cannot-write-notes"),
        ] {
            vars.insert(k.to_string(), v.to_string());
        }
        vars.insert("PATH".into(), path_without_mlctl());
        vars.insert("HOME".into(), tmp.path().display().to_string());
        vars.insert("CI_PROJECT_DIR".into(), repo.display().to_string());
        Gitlab {
            repo: repo.to_path_buf(),
            file,
            vars,
            tmp,
        }
    }

    /// The pipeline's source (`merge_request_event`, `push`, `schedule`) and commit.
    pub fn pipeline(&mut self, source: &str, branch: Option<&str>) {
        self.vars.insert("CI_PIPELINE_SOURCE".into(), source.into());
        match branch {
            Some(b) => self.vars.insert("CI_COMMIT_BRANCH".into(), b.into()),
            None => self.vars.remove("CI_COMMIT_BRANCH"),
        };
        let sha = git(&self.repo, &["rev-parse", "HEAD"]);
        self.vars.insert("CI_COMMIT_SHA".into(), sha.trim().into());
        self.vars
            .insert("CI_COMMIT_SHORT_SHA".into(), sha.trim()[..8].into());
    }

    /// The jobs of the file, in file order.
    pub fn jobs(&self) -> Vec<String> {
        map_keys(&self.file)
            .into_iter()
            .filter(|k| !k.starts_with('.') && !RESERVED.contains(&k.as_str()))
            .collect()
    }

    /// Whether a rule's `if:` holds for the pipeline's variables.
    fn holds(&self, expr: &str) -> bool {
        assert!(
            !expr.contains("||") && !expr.contains('('),
            "the test evaluates `&&` only: {expr}"
        );
        expr.split("&&").all(|clause| {
            let value = |t: &str| -> Option<String> {
                let t = t.trim();
                match t.strip_prefix('$') {
                    Some(var) => self.vars.get(var).filter(|v| !v.is_empty()).cloned(),
                    None => Some(t.trim_matches('"').to_string()),
                }
            };
            if let Some((a, b)) = clause.split_once("!=") {
                value(a) != value(b)
            } else if let Some((a, b)) = clause.split_once("==") {
                value(a) == value(b)
            } else {
                value(clause).is_some()
            }
        })
    }

    /// The first rule that holds decides (`when: never` leaves the job out); no rule that
    /// holds leaves it out too.
    fn decide(&self, rules: &Yaml) -> Option<When> {
        let Some(rules) = rules.as_vec() else {
            return Some(When::OnSuccess);
        };
        for r in rules {
            let holds = str_of(&r["if"]).is_none_or(|e| self.holds(&e));
            if holds {
                return match str_of(&r["when"]).as_deref() {
                    None | Some("on_success") => Some(When::OnSuccess),
                    Some("manual") => Some(When::Manual),
                    Some("never") => None,
                    Some(other) => panic!("the test does not know `when: {other}`"),
                };
            }
        }
        None
    }

    /// The jobs this pipeline starts, in stage order, with when they run; empty when the
    /// `workflow:` rules start no pipeline.
    pub fn planned(&self) -> Vec<(String, When)> {
        if self.decide(&self.file["workflow"]["rules"]).is_none() {
            return Vec::new();
        }
        let stages: Vec<String> = self.file["stages"]
            .as_vec()
            .map(|s| s.iter().filter_map(str_of).collect())
            .unwrap_or_default();
        let mut out = Vec::new();
        for stage in &stages {
            for job in self.jobs() {
                let spec = &self.file[job.as_str()];
                if str_of(&spec["stage"]).as_deref() != Some(stage.as_str()) {
                    continue;
                }
                if let Some(when) = self.decide(&spec["rules"]) {
                    out.push((job, when));
                }
            }
        }
        out
    }

    /// The matrix values of `job` (`parallel: matrix:` with one variable), or one run.
    pub fn matrix(&self, job: &str) -> Vec<Option<(String, String)>> {
        let Some(entries) = self.file[job]["parallel"]["matrix"].as_vec() else {
            return vec![None];
        };
        assert_eq!(
            entries.len(),
            1,
            "{job}: the runner expands one matrix entry"
        );
        let h = entries[0].as_hash().unwrap();
        assert_eq!(h.len(), 1, "{job}: the runner expands one matrix variable");
        let (k, v) = h.iter().next().unwrap();
        let k = str_of(k).unwrap();
        v.as_vec()
            .unwrap()
            .iter()
            .map(|v| Some((k.clone(), str_of(v).unwrap())))
            .collect()
    }

    /// Runs `job` once per matrix value: `before_script` (the job's, else the default's) and
    /// `script` in one shell, as GitLab does, with the `id_tokens` it asks for.
    pub fn run_job(&self, job: &str) -> Vec<JobRun> {
        let spec = &self.file[job];
        assert!(!spec.is_badvalue(), "no job {job}");
        let mut runs = Vec::new();
        for value in self.matrix(job) {
            let mut env = self.vars.clone();
            for (k, v) in pairs(&self.file["variables"])
                .into_iter()
                .chain(pairs(&spec["variables"]))
            {
                env.insert(k, v);
            }
            let tokens = if spec["id_tokens"].is_badvalue() {
                &self.file["default"]["id_tokens"]
            } else {
                &spec["id_tokens"]
            };
            for name in map_keys(tokens) {
                env.insert(name, "header.fake-oidc-token.signature".into());
            }
            let name = match &value {
                Some((k, v)) => {
                    env.insert(k.clone(), v.clone());
                    format!("{job}: [{v}]")
                }
                None => job.to_string(),
            };
            let before = if spec["before_script"].is_badvalue() {
                &self.file["default"]["before_script"]
            } else {
                &spec["before_script"]
            };
            let lines: Vec<String> = before
                .as_vec()
                .into_iter()
                .flatten()
                .chain(spec["script"].as_vec().expect("a job's script").iter())
                .map(|l| str_of(l).expect("a script line is a string"))
                .collect();
            let ran = bash(&name, &lines.join("\n"), &self.repo, &env, self.tmp.path());
            runs.push(JobRun {
                name,
                code: ran.code,
                steps: vec![ran],
                actions: Vec::new(),
                summary: String::new(),
            });
        }
        runs
    }
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    crate::common::git_in(dir, args)
}
