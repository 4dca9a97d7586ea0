//! `mlctl __train-builtin`: a built-in trained inside a cloud job (Azure ML) trains exactly as
//! the local target does: the same rows, model and metrics for the same data and seed; the
//! artifact serves; a sweep trial's sampled values win and its metrics are on validation rows;
//! the metrics reach the job's MLflow run.

use crate::common::{TestProject, free_listen_port, http_post, mlctl};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The iris example without its endpoint and monitor, applied on the local target.
fn iris_trained_locally() -> TestProject {
    let p = TestProject::example("iris");
    for f in ["ml/endpoint.yaml", "ml/monitor.yaml", "ml/model.yaml"] {
        std::fs::remove_file(p.path().join(f)).unwrap();
    }
    let p = p.into_git();
    p.mlctl(&["apply", "--auto-approve"]).expect_code(0);
    p
}

/// What the local target recorded: the job's request and result, by resource.
fn local_job(p: &TestProject) -> (Value, Value) {
    let db = rusqlite::Connection::open(p.path().join(".mlctl/local/state.db")).unwrap();
    let (request, result): (String, String) = db
        .query_row(
            "SELECT request, result FROM jobs WHERE resource = 'iris-train' AND status = 'completed'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    (
        serde_json::from_str(&request).unwrap(),
        serde_json::from_str(&result).unwrap(),
    )
}

/// The built-in job request a cloud trainer writes for the local job's inputs.
fn request_for(job: &Value, tuned: bool, scored_on: &str) -> (Value, Vec<(String, PathBuf)>) {
    let splits = job["dataset"]["splits"].as_object().unwrap();
    let parts: Vec<(String, PathBuf)> = splits
        .iter()
        .map(|(k, v)| (k.clone(), PathBuf::from(v.as_str().unwrap())))
        .collect();
    let request = json!({
        "version": 1,
        "jobName": job["job_name"],
        "resource": job["resource"],
        "algorithm": job["spec"]["algorithm"],
        "hyperparameters": job["spec"]["hyperparameters"],
        "integers": ["max_iter"],
        "targetColumn": job["target_column"],
        "schema": job["schema"],
        "split": job["split"],
        "dataset": job["dataset"]["name"],
        "dataDigest": job["dataset"]["digest"],
        "commit": job["commit"],
        "parts": parts.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        "tuned": tuned,
        "scoredOn": scored_on,
    });
    (request, parts)
}

fn train_builtin(
    dir: &Path,
    request: &Value,
    parts: &[(String, PathBuf)],
    extra: &[&str],
    env: &[(&str, &str)],
) -> crate::common::Run {
    let req = dir.join("request.json");
    std::fs::write(&req, request.to_string()).unwrap();
    let mut cmd = mlctl();
    cmd.arg("__train-builtin")
        .arg("--request")
        .arg(&req)
        .arg("--model-dir")
        .arg(dir.join("model"))
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("MLFLOW_RUN_ID")
        .env_remove("MLFLOW_TRACKING_TOKEN");
    for (name, path) in parts {
        cmd.arg("--data").arg(format!("{name}={}", path.display()));
    }
    cmd.args(extra).envs(env.iter().copied());
    crate::common::Run::from(cmd.output().unwrap())
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `mlctl serve --model-dir DIR` on a free port, killed on drop.
struct Served(Child, u16);

impl Served {
    fn start(dir: &Path) -> Served {
        let port = free_listen_port();
        let child = mlctl()
            .args(["serve", "--model-dir"])
            .arg(dir)
            .args(["--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let s = Served(child, port);
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "mlctl serve did not come up"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_builtin_trains_in_a_job_exactly_as_on_the_local_target_and_serves() {
    let p = iris_trained_locally();
    let (job, result) = local_job(&p);
    let (request, parts) = request_for(&job, false, "test");
    let out = tempfile::tempdir().unwrap();
    // `compute.cpu: 1` of the example, as the Azure ML trainer passes it.
    let run = train_builtin(out.path(), &request, &parts, &["--threads", "1"], &[]).expect_code(0);
    assert!(
        run.stderr
            .contains("scored on 30 held-out test rows (test split)"),
        "{}",
        run.stderr
    );

    let model = out.path().join("model");
    assert_eq!(read_json(&model.join("metrics.json")), result["metrics"]);
    assert_eq!(
        read_json(&model.join("evaluation.json")),
        result["evaluation"]
    );
    let manifest = read_json(&model.join("model.json"));
    assert_eq!(
        manifest["lineage"]["datasetDigest"],
        job["dataset"]["digest"]
    );
    assert_eq!(manifest["lineage"]["trainingJob"], job["job_name"]);

    let served = Served::start(&model);
    let reply = http_post(
        served.1,
        "/invocations",
        r#"{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}"#,
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        reply.contains(r#"{"predictions":["setosa","virginica"]}"#),
        "{reply}"
    );
}

/// A tracking server on 127.0.0.1 that answers every request 200 `{}` and hands over what
/// it received (request line, authorization header, body).
fn tracking_server() -> (u16, mpsc::Receiver<(String, String, Value)>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let (mut auth, mut len) = (String::new(), 0usize);
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap();
                match k.to_ascii_lowercase().as_str() {
                    "authorization" => auth = v.trim().to_string(),
                    "content-length" => len = v.trim().parse().unwrap(),
                    _ => {}
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
            );
            let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if tx.send((line.trim().to_string(), auth, body)).is_err() {
                return;
            }
        }
    });
    (port, rx)
}

#[test]
fn a_sweep_trial_is_scored_on_validation_rows_with_its_sampled_values_and_logged_to_mlflow() {
    let p = iris_trained_locally();
    let (job, _) = local_job(&p);
    let (request, parts) = request_for(&job, true, "validation");
    let (port, received) = tracking_server();
    let out = tempfile::tempdir().unwrap();
    let uri = format!("http://127.0.0.1:{port}/mlflow/v1.0/subscriptions/s");
    let run = train_builtin(
        out.path(),
        &request,
        &parts,
        &["--hp", "C=0.25", "--hp", "max_iter=50.0"],
        &[
            ("MLFLOW_TRACKING_URI", &uri),
            ("MLFLOW_RUN_ID", "sweep_3"),
            ("MLFLOW_TRACKING_TOKEN", "token-of-the-job"),
        ],
    )
    .expect_code(0);
    assert!(run.stderr.contains("\"C\":0.25"), "{}", run.stderr);
    assert!(run.stderr.contains("\"max_iter\":50"), "{}", run.stderr);

    let model = out.path().join("model");
    let evaluation = read_json(&model.join("evaluation.json"));
    assert_eq!(evaluation["scoredOn"], "validation");
    // 120 train rows: 24 carved for validation (a tuned job compares on them), 96 trained on.
    assert_eq!(evaluation["validationRows"], 24);
    assert_eq!(evaluation["trainRows"], 96);
    let metrics = read_json(&model.join("metrics.json"));
    assert_eq!(
        read_json(&model.join("model.json"))["lineage"]["run"],
        "sweep_3"
    );

    let (line, auth, body) = received.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(
        line,
        "POST /mlflow/v1.0/subscriptions/s/api/2.0/mlflow/runs/log-batch HTTP/1.1"
    );
    assert_eq!(auth, "Bearer token-of-the-job");
    assert_eq!(body["run_id"], "sweep_3");
    let logged: serde_json::Map<String, Value> = body["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["key"].as_str().unwrap().to_string(), m["value"].clone()))
        .collect();
    assert_eq!(Value::Object(logged), metrics);
    assert!(
        body["params"]
            .as_array()
            .unwrap()
            .contains(&json!({"key": "C", "value": "0.25"})),
        "{body}"
    );
}

#[test]
fn a_request_missing_a_part_says_which_flag_to_pass() {
    let p = iris_trained_locally();
    let (job, _) = local_job(&p);
    let (request, parts) = request_for(&job, false, "test");
    let out = tempfile::tempdir().unwrap();
    let run = train_builtin(out.path(), &request, &parts[..1], &[], &[]).expect_code(1);
    assert!(
        run.stderr
            .contains("needs the dataset part `train`: pass --data train=PATH"),
        "{}",
        run.stderr
    );
}
