//! `tracking: {provider: mlflow}`: a target's runs and models on a real MLflow tracking
//! server, read back with MLflow's own Python client (`tests/mlflow/readback.py`).
//!
//! Needs `MLCTL_MLFLOW_URL` (the server `.ci/mlflow.sh start` runs) and `MLCTL_MLFLOW_PY` /
//! `MLCTL_MLFLOW_BIN` (its venv's python and `mlflow`); without them a test says so and passes,
//! except under `CI=true`, where they are required.

use crate::common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// The venv's python and mlflow, and the shared server's URL.
pub(crate) struct Mlflow {
    pub py: String,
    pub bin: String,
    pub url: String,
}

pub(crate) fn mlflow_env(test: &str) -> Option<Mlflow> {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    match (
        var("MLCTL_MLFLOW_PY"),
        var("MLCTL_MLFLOW_BIN"),
        var("MLCTL_MLFLOW_URL"),
    ) {
        (Some(py), Some(bin), Some(url)) => Some(Mlflow { py, bin, url }),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "{test}: MLCTL_MLFLOW_PY, MLCTL_MLFLOW_BIN and MLCTL_MLFLOW_URL are required under CI=true (.ci/run sets them with .ci/mlflow.sh start)"
        ),
        _ => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "{test}: SKIPPED: MLCTL_MLFLOW_* are not set; run: eval \"$(.ci/mlflow.sh start)\""
            );
            None
        }
    }
}

/// `tests/mlflow/readback.py` against `url`: what the server holds for `experiment` and
/// `model` (and the champion's predictions on `rows`, a JSON file).
fn readback(m: &Mlflow, url: &str, experiment: &str, model: &str, rows: Option<&Path>) -> Value {
    let script = repo_root().join("tests/mlflow/readback.py");
    let mut cmd = Command::new(&m.py);
    cmd.arg(script).args([url, experiment, model]);
    if let Some(r) = rows {
        cmd.arg(r);
    }
    let out = cmd.output().expect("run the MLflow readback");
    assert!(
        out.status.success(),
        "readback failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("readback prints JSON")
}

/// Runs a few lines of Python with MLflow's client on `url` (`client` is an MlflowClient).
fn python(m: &Mlflow, url: &str, code: &str) {
    let full = format!(
        "from mlflow.tracking import MlflowClient\nclient = MlflowClient({url:?})\n{code}\n"
    );
    let out = Command::new(&m.py)
        .args(["-c", &full])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A tracking block for the local target of the iris example.
fn with_tracking(p: &TestProject, experiment: &str) {
    p.replace(
        "mlctl.yaml",
        "    local:\n      provider: local\n",
        &format!(
            "    local:\n      provider: local\n      tracking:\n        provider: mlflow\n        uri: ${{env:MLFLOW_TRACKING_URI}}\n        experiment: {experiment}\n"
        ),
    );
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn runs_of(project: &TestProject) -> Vec<Value> {
    let out = project
        .mlctl(&["runs", "list", "-o", "json"])
        .expect_code(0);
    serde_json::from_str::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap()
}

#[test]
fn runs_and_models_are_logged_to_mlflow_and_read_back_by_its_own_client() {
    let test = "runs_and_models_are_logged_to_mlflow_and_read_back_by_its_own_client";
    let Some(m) = mlflow_env(test) else { return };
    let (p, port) = iris_on_a_free_port("{type: all-at-once}");
    let experiment = unique("iris-e2e");
    with_tracking(&p, &experiment);
    let p = p.into_git();
    // Registered model names are global on a server: this test owns `iris` on the shared one.
    python(
        &m,
        &m.url,
        "try:\n    client.delete_registered_model('iris')\nexcept Exception:\n    pass",
    );
    let env = [("MLFLOW_TRACKING_URI", m.url.as_str())];
    let first = p
        .mlctl_with(&["apply", "--auto-approve"], &env)
        .expect_code(0);
    assert!(
        first.stdout.contains("1 run(s) logged")
            && first.stdout.contains("1 model version(s) registered"),
        "{}",
        first.stdout
    );

    let scratch = tempfile::tempdir().unwrap();
    let rows = scratch.path().join("rows.json");
    std::fs::write(
        &rows,
        r#"{"columns": ["sepal_length", "sepal_width", "petal_length", "petal_width"], "data": [[5.1, 3.5, 1.4, 0.2], [6.0, 2.7, 5.1, 1.6], [6.7, 3.0, 5.2, 2.3]]}"#,
    )
    .unwrap();
    let got = readback(&m, &m.url, &experiment, "iris", Some(&rows));
    let runs = got["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{got:#}");
    let run = &runs[0];
    let ours = runs_of(&p);
    assert_eq!(ours.len(), 1);
    let ours = &ours[0];
    assert_eq!(run["tags"]["mlctl.runId"], ours["id"]);
    assert_eq!(run["status"], "FINISHED");
    let head = p.git(&["rev-parse", "HEAD"]);
    assert_eq!(run["tags"]["mlctl.commit"], head.trim());
    assert_eq!(run["tags"]["mlctl.resource"], "TrainingJob/iris-train");
    assert!(
        run["tags"]["mlctl.fingerprint"]
            .as_str()
            .is_some_and(|f| f.len() == 64)
    );
    for (k, v) in ours["params"].as_object().unwrap() {
        let text = v
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string());
        assert_eq!(run["params"][k], Value::String(text), "param {k}");
    }
    for (k, v) in ours["metrics"].as_object().unwrap() {
        let theirs = run["metrics"][k].as_f64().unwrap();
        assert!((theirs - v.as_f64().unwrap()).abs() < 1e-12, "metric {k}");
    }
    let artifacts: Vec<&str> = run["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for a in [
        "mlctl/run.json",
        "registry/iris/v1/MLmodel",
        "registry/iris/v1/model/model.json",
    ] {
        assert!(artifacts.contains(&a), "{a} in {artifacts:?}");
    }
    // The version, its alias and lineage.
    let versions = got["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1, "{got:#}");
    let v = &versions[0];
    assert_eq!(v["tags"]["mlctl.version"], "1");
    assert_eq!(v["tags"]["mlctl.stage"], "production");
    assert_eq!(v["tags"]["mlctl.lineage.run"], ours["id"]);
    assert_eq!(v["runId"], run["id"]);
    assert_eq!(got["aliases"]["champion"], v["version"]);
    // MLflow serves what mlctl serves.
    let served = http_post(
        port,
        "/invocations",
        r#"{"dataframe_split": {"columns": ["sepal_length", "sepal_width", "petal_length", "petal_width"], "data": [[5.1, 3.5, 1.4, 0.2], [6.0, 2.7, 5.1, 1.6], [6.7, 3.0, 5.2, 2.3]]}}"#,
    );
    let body: Value = serde_json::from_str(served.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(got["predictions"], body["predictions"], "{served}");

    // Nothing is logged twice.
    let again = p
        .mlctl_with(&["apply", "--auto-approve"], &env)
        .expect_code(0);
    assert!(
        again.stdout.contains("0 run(s) logged, 1 already there"),
        "{}",
        again.stdout
    );
    let got = readback(&m, &m.url, &experiment, "iris", None);
    assert_eq!(got["runs"].as_array().unwrap().len(), 1);
    assert_eq!(got["versions"].as_array().unwrap().len(), 1);
    p.mlctl(&["destroy", "--auto-approve"]).expect_code(0);
}

/// An `mlflow server` of the test's own (SQLite and artifacts in `dir`), stopped on drop.
pub(crate) struct Server {
    child: Option<Child>,
    bin: String,
    port: u16,
    dir: PathBuf,
}

impl Server {
    pub(crate) fn new(bin: &str, dir: &Path) -> Server {
        Server {
            child: None,
            bin: bin.to_string(),
            port: free_listen_port(),
            dir: dir.to_path_buf(),
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn start(&mut self) {
        use std::os::unix::process::CommandExt;
        std::fs::create_dir_all(self.dir.join("artifacts")).unwrap();
        let log = std::fs::File::create(self.dir.join("server.log")).unwrap();
        let child = Command::new(&self.bin)
            .args(["server", "--host", "127.0.0.1", "--workers", "1", "--port"])
            .arg(self.port.to_string())
            .arg("--backend-store-uri")
            .arg(format!(
                "sqlite:///{}",
                self.dir.join("mlflow.db").display()
            ))
            .arg("--artifacts-destination")
            .arg(self.dir.join("artifacts"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start mlflow server");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::{Read, Write};
                let _ = write!(
                    s,
                    "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                );
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                if out.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "mlflow server did not answer: {}",
                std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // The whole group: `mlflow server` runs uvicorn as a child.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", c.id())])
                .status();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn a_tracking_server_that_goes_away_is_a_warning_and_the_next_apply_logs_each_run_once() {
    let test =
        "a_tracking_server_that_goes_away_is_a_warning_and_the_next_apply_logs_each_run_once";
    let Some(m) = mlflow_env(test) else { return };
    let (p, _port) = iris_on_a_free_port("{type: all-at-once}");
    with_tracking(&p, "iris-restarts");
    let p = p.into_git();
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::new(&m.bin, data.path());
    let url = server.url();
    let env = [("MLFLOW_TRACKING_URI", url.as_str())];

    // Down before anything is logged: the apply succeeds and says what it could not do.
    let down = p
        .mlctl_with(&["apply", "--auto-approve"], &env)
        .expect_code(0);
    assert!(
        down.stderr
            .contains("Warning: MLflow: cannot read experiment `iris-restarts`")
            && down.stderr.contains("cannot reach the tracking server")
            && down.stderr.contains("the next apply logs what is missing"),
        "{}",
        down.stderr
    );
    assert!(down.stdout.contains("Apply complete!"), "{}", down.stdout);

    // Up, with a run cut off half-way by an earlier sync (created, never completed).
    server.start();
    let run_id = runs_of(&p)[0]["id"].as_str().unwrap().to_string();
    python(
        &m,
        &url,
        &format!(
            "e = client.create_experiment('iris-restarts')\nr = client.create_run(e, tags={{'mlctl.runId': '{run_id}'}})\nclient.log_metric(r.info.run_id, 'accuracy', 0.5, timestamp=1, step=0)"
        ),
    );
    let up = p
        .mlctl_with(&["apply", "--auto-approve"], &env)
        .expect_code(0);
    assert!(
        up.stdout
            .contains("1 run(s) logged, 0 already there; 1 model version(s) registered"),
        "{}",
        up.stdout
    );
    assert!(!up.stderr.contains("Warning"), "{}", up.stderr);

    // A new version while the server is down, then a restart.
    server.stop();
    p.replace("ml/train.yaml", "C: 1.0", "C: 0.5");
    p.commit_all("less regularisation");
    let during = p
        .mlctl_with(&["apply", "--auto-approve"], &env)
        .expect_code(0);
    assert!(
        during.stderr.contains("cannot reach the tracking server"),
        "{}",
        during.stderr
    );
    server.start();
    let after = p
        .mlctl_with(&["apply", "--auto-approve"], &env)
        .expect_code(0);
    assert!(
        after
            .stdout
            .contains("1 run(s) logged, 1 already there; 1 model version(s) registered"),
        "{}",
        after.stdout
    );

    let got = readback(&m, &url, "iris-restarts", "iris", None);
    let runs = got["runs"].as_array().unwrap();
    let mut ids: Vec<&str> = runs
        .iter()
        .map(|r| r["tags"]["mlctl.runId"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut ours: Vec<String> = runs_of(&p)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    ours.sort();
    assert_eq!(ids, ours, "one MLflow run per mlctl run: {got:#}");
    for r in runs {
        assert_eq!(r["tags"]["mlctl.synced"], "true");
        assert_eq!(r["status"], "FINISHED");
    }
    // The half-logged run was completed, not duplicated: its params and metrics are mlctl's.
    let completed = runs
        .iter()
        .find(|r| r["tags"]["mlctl.runId"] == run_id.as_str())
        .unwrap();
    assert_eq!(completed["params"]["C"], "1.0");
    let versions = got["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "{got:#}");
    let v2 = versions
        .iter()
        .find(|v| v["tags"]["mlctl.version"] == "2")
        .expect("v2 mirrored");
    assert_eq!(got["aliases"]["champion"], v2["version"]);
    // Every metric was logged once per run, whatever was retried.
    for r in runs {
        for (k, n) in r["metricHistory"].as_object().unwrap() {
            let expected = if r["tags"]["mlctl.runId"] == run_id.as_str() && k == "accuracy" {
                2 // the half-logged run's own point, then mlctl's
            } else {
                1
            };
            assert_eq!(n.as_u64(), Some(expected), "metric {k} of {}", r["name"]);
        }
    }
    p.mlctl(&["destroy", "--auto-approve"]).expect_code(0);
}

/// Runs `tests/mlflow/check_sklearn_import.py` into `dir`: the names of the MLflow sklearn
/// models it saved (with `<name>.rows.json`, `<name>.expected.json` and, for classifiers,
/// `<name>.expected_proba.json` beside them).
fn sklearn_models(m: &Mlflow, dir: &Path) -> Vec<String> {
    let out = Command::new(&m.py)
        .arg(repo_root().join("tests/mlflow/check_sklearn_import.py"))
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `POST /invocations` of `body` to 127.0.0.1:`port`, waiting up to 30 s for the server: the
/// JSON answer.
fn invoke(port: u16, body: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let answer = http_post(port, "/invocations", body);
            let (head, json) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
            assert!(head.starts_with("HTTP/1.1 200"), "{answer}");
            return serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {answer}"));
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing listens on {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() <= 1e-9
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| close(x, y))
        }
        _ => a == b,
    }
}

/// A project of its own holding only the Models `models` (each `mlflow: {path: models/NAME}`
/// with `extra` appended to its spec).
fn import_project(dir: &Path, names: &[String], extra: &str) -> TestProject {
    let p = TestProject::empty();
    p.write(
        "mlctl.yaml",
        "apiVersion: mlctl/v1\nkind: Project\nmetadata:\n  name: imports\nspec:\n  targets:\n    local:\n      provider: local\n",
    );
    let mut manifests = String::new();
    for n in names {
        let model_name = n.replace('_', "-");
        manifests.push_str(&format!(
            "---\napiVersion: mlctl/v1\nkind: Model\nmetadata:\n  name: {model_name}\nspec:\n  mlflow:\n    path: models/{n}\n{extra}"
        ));
        copy_tree(&dir.join(n), &p.path().join("models").join(n));
    }
    p.write("ml/models.yaml", &manifests);
    p
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn mlflow_sklearn_models_are_converted_exactly_and_served_with_sklearns_predictions() {
    let test = "mlflow_sklearn_models_are_converted_exactly_and_served_with_sklearns_predictions";
    let Some(m) = mlflow_env(test) else { return };
    let made = tempfile::tempdir().unwrap();
    let names = sklearn_models(&m, made.path());
    assert!(names.len() >= 10, "{names:?}");
    let p = import_project(made.path(), &names, "").into_git();
    // The converter runs with the Python that has the models' libraries.
    let applied = p
        .mlctl_with(
            &["apply", "--auto-approve"],
            &[("MLCTL_PYTHON", m.py.as_str())],
        )
        .expect_code(0);
    assert!(
        applied.stderr.contains("converted the scikit-learn model"),
        "{}",
        applied.stderr
    );
    for n in &names {
        let model = n.replace('_', "-");
        let shown = p
            .mlctl(&["models", "show", &model, "-o", "json"])
            .expect_code(0);
        assert!(
            shown.stdout.contains("\"importedFrom\": \"mlflow\""),
            "{}",
            shown.stdout
        );
        let rows: Value = serde_json::from_str(
            &std::fs::read_to_string(made.path().join(format!("{n}.rows.json"))).unwrap(),
        )
        .unwrap();
        let expected: Value = serde_json::from_str(
            &std::fs::read_to_string(made.path().join(format!("{n}.expected.json"))).unwrap(),
        )
        .unwrap();
        let port = free_listen_port();
        let mut server = mlctl()
            .current_dir(p.path())
            .args(["serve", &format!("{model}:1"), "--port", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let body = serde_json::json!({"dataframe_split": rows}).to_string();
        let got = invoke(port, &body);
        assert!(
            close(&got["predictions"], &expected),
            "{n}: mlctl served {}\nscikit-learn predicts {expected}",
            got["predictions"]
        );
        if let Ok(text) =
            std::fs::read_to_string(made.path().join(format!("{n}.expected_proba.json")))
        {
            let proba: Value = serde_json::from_str(&text).unwrap();
            let body = serde_json::json!({"dataframe_split": rows, "params": {"predict_method": "predict_proba"}}).to_string();
            let got = invoke(port, &body);
            assert!(
                close(&got["predictions"], &proba),
                "{n}: mlctl's probabilities {}\nscikit-learn's {proba}",
                got["predictions"]
            );
        }
        let _ = server.kill();
        let _ = server.wait();
    }
    // Applying again converts nothing: the directories' content is the fingerprint.
    let again = p.mlctl(&["plan"]).expect_code(0);
    assert!(again.stdout.contains("No changes."), "{}", again.stdout);
}

/// `mlctl serve MODEL:1` of `p` on a free port, killed on drop.
struct Served(std::process::Child, u16);

impl Served {
    fn start(p: &TestProject, model: &str) -> Served {
        let port = free_listen_port();
        let child = mlctl()
            .current_dir(p.path())
            .args(["serve", model, "--port", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Served(child, port)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_exported_model_loads_in_mlflow_pyfunc_and_predicts_what_mlctl_serves() {
    let test = "an_exported_model_loads_in_mlflow_pyfunc_and_predicts_what_mlctl_serves";
    let Some(m) = mlflow_env(test) else { return };
    let scratch = tempfile::tempdir().unwrap();
    // A logistic regression with text labels, and a tuned gradient boosting with an int-coded
    // category, text categories and missing values.
    let cases = [
        (
            "iris",
            "iris",
            r#"{"columns": ["sepal_length", "sepal_width", "petal_length", "petal_width"], "data": [[5.1, 3.5, 1.4, 0.2], [6.0, 2.7, 5.1, 1.6], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]}"#,
        ),
        (
            "churn",
            "churn",
            r#"{"columns": ["plan", "region", "tenure_months", "monthly_charges", "support_calls", "charges_per_tenure_year", "heavy_support"], "data": [["basic", 2, 4, 38.87, 0, 116.61, "no"], ["premium", 4, 45, null, 1, null, null], ["standard", 3, 22, 66.91, 7, 36.5, "yes"], ["basic", 1, 1, 150.0, null, 1800.0, "yes"]]}"#,
        ),
    ];
    for (example, model, rows) in cases {
        let p = if example == "iris" {
            iris_on_a_free_port("{type: all-at-once}").0.into_git()
        } else {
            let p = TestProject::example(example);
            let port = free_listen_port();
            p.replace(
                "ml/endpoint.yaml",
                "  port: 8766\n",
                &format!("  port: {port}\n"),
            );
            p.into_git()
        };
        p.mlctl(&["apply", "--auto-approve"]).expect_code(0);
        let dir = scratch.path().join(example);
        let out = p
            .mlctl(&["models", "export", model, dir.to_str().unwrap()])
            .expect_code(0);
        assert!(
            out.stdout.contains("mlflow.pyfunc.load_model"),
            "{}",
            out.stdout
        );
        assert!(dir.join("MLmodel").is_file() && dir.join("code/mlctl_pyfunc.py").is_file());
        let served = Served::start(&p, &format!("{model}:1"));
        let rows_file = scratch.path().join(format!("{example}.rows.json"));
        std::fs::write(&rows_file, rows).unwrap();
        let rows: Value = serde_json::from_str(rows).unwrap();
        let mut requests = vec![serde_json::json!({"dataframe_split": rows})];
        {
            requests.push(serde_json::json!({"dataframe_split": rows, "params": {"predict_method": "predict_proba"}}));
        }
        for (i, body) in requests.iter().enumerate() {
            let got = invoke(served.1, &body.to_string());
            let expected = scratch.path().join(format!("{example}.expected{i}.json"));
            std::fs::write(&expected, got["predictions"].to_string()).unwrap();
            let check = Command::new(&m.py)
                .arg(repo_root().join("tests/mlflow/check_pyfunc.py"))
                .args([&dir, &rows_file, &expected])
                .output()
                .unwrap();
            assert!(
                check.status.success(),
                "{example}: mlflow.pyfunc does not predict what mlctl serves:\n{}{}",
                String::from_utf8_lossy(&check.stdout),
                String::from_utf8_lossy(&check.stderr)
            );
        }
        drop(served);
        p.mlctl(&["destroy", "--auto-approve"]).expect_code(0);
    }
}

#[test]
fn an_mlflow_model_kept_as_pyfunc_is_served_by_mlflow_behind_mlctls_endpoint() {
    let test = "an_mlflow_model_kept_as_pyfunc_is_served_by_mlflow_behind_mlctls_endpoint";
    let Some(m) = mlflow_env(test) else { return };
    let made = tempfile::tempdir().unwrap();
    let names = sklearn_models(&m, made.path());
    let name = names
        .iter()
        .find(|n| n.as_str() == "iris_logistic")
        .expect("the iris logistic regression")
        .clone();
    let p = import_project(
        made.path(),
        std::slice::from_ref(&name),
        "    serve: pyfunc\n",
    );
    let port = free_listen_port();
    // Without a serve command the validator says what to write.
    p.write(
        "ml/endpoint.yaml",
        &format!("apiVersion: mlctl/v1\nkind: Endpoint\nmetadata:\n  name: iris\nspec:\n  model: iris-logistic\n  port: {port}\n  strategy: {{type: all-at-once}}\n"),
    );
    let refused = p.mlctl(&["validate"]).expect_code(1);
    assert!(
        refused.stderr.contains("needs a `serve.command`")
            && refused.stderr.contains("mlflow models serve"),
        "{}",
        refused.stderr
    );
    p.replace(
        "ml/endpoint.yaml",
        "  strategy:",
        "  serve:\n    command: mlflow models serve -m \"$SM_MODEL_DIR\" -h 127.0.0.1 -p \"$SAGEMAKER_BIND_TO_PORT\" --env-manager local\n  strategy:",
    );
    let p = p.into_git();
    // `mlflow` comes from the venv, as a team's serving image would have it.
    let bin = Path::new(&m.bin).parent().unwrap().display().to_string();
    let path = format!("{bin}:{}", std::env::var("PATH").unwrap_or_default());
    p.mlctl_with(&["apply", "--auto-approve"], &[("PATH", path.as_str())])
        .expect_code(0);
    let rows: Value = serde_json::from_str(
        &std::fs::read_to_string(made.path().join(format!("{name}.rows.json"))).unwrap(),
    )
    .unwrap();
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(made.path().join(format!("{name}.expected.json"))).unwrap(),
    )
    .unwrap();
    let got = invoke(
        port,
        &serde_json::json!({"dataframe_split": rows}).to_string(),
    );
    assert_eq!(got["predictions"], expected);
    let shown = p
        .mlctl(&["models", "show", "iris-logistic", "-o", "json"])
        .expect_code(0);
    assert!(
        shown.stdout.contains("\"servedAs\": \"pyfunc\""),
        "{}",
        shown.stdout
    );
    p.mlctl_with(&["destroy", "--auto-approve"], &[("PATH", path.as_str())])
        .expect_code(0);
}

#[test]
fn a_model_mlctl_cannot_represent_exactly_is_refused_saying_to_serve_it_with_pyfunc() {
    let test = "a_model_mlctl_cannot_represent_exactly_is_refused_saying_to_serve_it_with_pyfunc";
    let Some(m) = mlflow_env(test) else { return };
    let made = tempfile::tempdir().unwrap();
    // A scaler in front of the regression: mlctl's portable model has no scaling step.
    let script = format!(
        "import mlflow.sklearn\nfrom sklearn.datasets import load_iris\nfrom sklearn.linear_model import LogisticRegression\nfrom sklearn.pipeline import make_pipeline\nfrom sklearn.preprocessing import StandardScaler\nX, y = load_iris(return_X_y=True, as_frame=True)\nm = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)\nmlflow.sklearn.save_model(m, {:?}, serialization_format='cloudpickle')\n",
        made.path().join("scaled").display().to_string()
    );
    let out = Command::new(&m.py).args(["-c", &script]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = import_project(made.path(), &["scaled".to_string()], "").into_git();
    let refused = p
        .mlctl_with(
            &["apply", "--auto-approve"],
            &[("MLCTL_PYTHON", m.py.as_str())],
        )
        .expect_code(1);
    assert!(
        refused.stderr.contains("cannot import Pipeline natively")
            && refused.stderr.contains("`mlflow.serve: pyfunc`"),
        "{}",
        refused.stderr
    );
    // Nothing was registered.
    let listed = p.mlctl(&["models", "list", "-o", "json"]).expect_code(0);
    assert_eq!(listed.stdout.trim(), "[]");
}

#[test]
fn with_registry_source_a_reviewer_approves_in_mlflow_and_the_next_apply_deploys() {
    let test = "with_registry_source_a_reviewer_approves_in_mlflow_and_the_next_apply_deploys";
    let Some(m) = mlflow_env(test) else { return };
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::new(&m.bin, data.path());
    server.start();
    let url = server.url();
    let (p, port) = iris_on_a_free_port("{type: all-at-once}");
    with_tracking(&p, "iris-source");
    p.replace(
        "mlctl.yaml",
        "        experiment: iris-source\n",
        "        experiment: iris-source\n        registry: source\n",
    );
    p.replace(
        "ml/model.yaml",
        "  approval: auto\n",
        "  approval: manual\n",
    );
    let p = p.into_git();
    let env = [("MLFLOW_TRACKING_URI", url.as_str())];
    // The endpoint waits for the version, as it does with any registry.
    let waiting = p
        .mlctl_with(&["apply", "--auto-approve"], &env)
        .expect_code(1);
    assert!(
        waiting.stderr.contains("waiting for approval"),
        "{}",
        waiting.stderr
    );
    // The version is in MLflow's registry, and MLflow's UI is where a reviewer approves it.
    let got = readback(&m, &url, "iris-source", "iris", None);
    let versions = got["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1, "{got:#}");
    assert_eq!(
        versions[0]["tags"]["mlctl.approval"],
        "pendingManualApproval"
    );
    python(
        &m,
        &url,
        "client.set_model_version_tag('iris', '1', 'mlctl.approval', 'approved')",
    );
    let listed = p
        .mlctl_with(&["models", "list", "-o", "json"], &env)
        .expect_code(0);
    assert!(
        listed.stdout.contains("\"approvalStatus\": \"approved\""),
        "{}",
        listed.stdout
    );
    p.mlctl_with(&["apply", "--auto-approve"], &env)
        .expect_code(0);
    let got = readback(&m, &url, "iris-source", "iris", None);
    assert_eq!(got["aliases"]["champion"], "1", "{got:#}");
    let answer = http_post(
        port,
        "/invocations",
        r#"{"instances": [[5.1, 3.5, 1.4, 0.2]]}"#,
    );
    assert!(answer.contains("setosa"), "{answer}");
    // Nothing is mirrored on top: the server is the registry.
    assert_eq!(got["versions"].as_array().unwrap().len(), 1);
    // Git says what is served: production taken away by hand is drift, put back by the apply.
    python(
        &m,
        &url,
        "client.delete_registered_model_alias('iris', 'champion')",
    );
    let drift = p
        .mlctl_with(&["plan", "--detailed-exitcode"], &env)
        .expect_code(2);
    assert!(drift.stdout.contains("Model/iris"), "{}", drift.stdout);
    p.mlctl_with(&["apply", "--auto-approve"], &env)
        .expect_code(0);
    let got = readback(&m, &url, "iris-source", "iris", None);
    assert_eq!(got["aliases"]["champion"], "1", "{got:#}");
    p.mlctl_with(&["destroy", "--auto-approve"], &env)
        .expect_code(0);
}

#[test]
fn a_model_on_the_tracking_server_is_imported_by_its_runs_or_models_uri() {
    let test = "a_model_on_the_tracking_server_is_imported_by_its_runs_or_models_uri";
    let Some(m) = mlflow_env(test) else { return };
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::new(&m.bin, data.path());
    server.start();
    let url = server.url();
    // A team's model, logged and registered with MLflow's own client.
    let script = format!(
        "import json, mlflow, mlflow.sklearn\nfrom sklearn.datasets import load_iris\nfrom sklearn.ensemble import RandomForestClassifier\nmlflow.set_tracking_uri({url:?})\nX, y = load_iris(return_X_y=True, as_frame=True)\nm = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0).fit(X, y)\nwith mlflow.start_run() as run:\n    mlflow.log_metric('accuracy', float(m.score(X, y)))\n    mlflow.sklearn.log_model(m, name='model', registered_model_name='team-iris', serialization_format='cloudpickle', input_example=X.head(2))\nrows = X.iloc[::15]\nprint(json.dumps({{'run': run.info.run_id, 'rows': {{'columns': list(X.columns), 'data': rows.values.tolist()}}, 'expected': m.predict(rows).tolist()}}))\n"
    );
    let out = Command::new(&m.py).args(["-c", &script]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made: Value = serde_json::from_slice(
        out.stdout
            .split(|b| *b == b'\n')
            .rfind(|l| l.starts_with(b"{"))
            .unwrap(),
    )
    .unwrap();
    let run = made["run"].as_str().unwrap();
    let p = TestProject::empty();
    p.write(
        "mlctl.yaml",
        "apiVersion: mlctl/v1\nkind: Project\nmetadata:\n  name: imports\nspec:\n  targets:\n    local:\n      provider: local\n      tracking:\n        provider: mlflow\n        uri: ${env:MLFLOW_TRACKING_URI}\n        registry: none\n",
    );
    p.write(
        "ml/models.yaml",
        &format!("apiVersion: mlctl/v1\nkind: Model\nmetadata:\n  name: by-run\nspec:\n  mlflow:\n    uri: runs:/{run}/model\n---\napiVersion: mlctl/v1\nkind: Model\nmetadata:\n  name: by-version\nspec:\n  mlflow:\n    uri: models:/team-iris/1\n"),
    );
    let p = p.into_git();
    let env = [
        ("MLFLOW_TRACKING_URI", url.as_str()),
        ("MLCTL_PYTHON", m.py.as_str()),
    ];
    p.mlctl_with(&["apply", "--auto-approve"], &env)
        .expect_code(0);
    for model in ["by-run", "by-version"] {
        let shown = p
            .mlctl_with(&["models", "show", model, "-o", "json"], &env)
            .expect_code(0);
        // The run's metrics come with it, and where it came from is its lineage.
        assert!(shown.stdout.contains("\"accuracy\""), "{}", shown.stdout);
        assert!(
            shown
                .stdout
                .contains(&format!("\"mlflowRunId\": \"{run}\"")),
            "{}",
            shown.stdout
        );
        let served = Served::start(&p, &format!("{model}:1"));
        let got = invoke(
            served.1,
            &serde_json::json!({"dataframe_split": made["rows"]}).to_string(),
        );
        assert!(
            close(&got["predictions"], &made["expected"]),
            "{model}: {got} vs {}",
            made["expected"]
        );
    }
}
