//! `.mlctl/trial.py`, the wrapper of a tuned script's trial, run with python3 as an Azure ML
//! trial runs it, reporting to a one-request MLflow server on 127.0.0.1.

use crate::sweep;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

/// Whether python3 runs; under `CI=true` it must.
fn python3() -> bool {
    let ok = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "python3 is required under CI=true"
        );
        eprintln!("skipped: python3 is not installed");
    }
    ok
}

/// One HTTP request's head and body, answered with `status`.
fn serve_once(status: u16) -> (u16, std::thread::JoinHandle<(String, Value)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut head = String::new();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let mut out = stream;
        write!(
            out,
            "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        )
        .unwrap();
        (head, serde_json::from_slice(&body).unwrap())
    });
    (port, handle)
}

fn trial(dir: &Path, command: &str, port: u16, args: &[&str]) -> std::process::Output {
    let mlctl = dir.join(".mlctl");
    std::fs::create_dir_all(&mlctl).unwrap();
    std::fs::create_dir_all(dir.join("model")).unwrap();
    std::fs::write(dir.join(sweep::TRIAL_WRAPPER_PATH), sweep::TRIAL_WRAPPER).unwrap();
    let config = json!({
        "version": 1,
        "command": command,
        "hyperparameters": {"alpha": 0, "solver": "auto"},
        "integers": ["depth"],
        "metrics": [{"name": "score", "regex": "score=([0-9.]+)"}],
        "objective": "score",
    });
    std::fs::write(dir.join(sweep::TRIAL_CONFIG_PATH), config.to_string()).unwrap();
    Command::new("python3")
        .arg(sweep::TRIAL_WRAPPER_PATH)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SM_MODEL_DIR", dir.join("model"))
        .env("MLFLOW_TRACKING_URI", format!("http://127.0.0.1:{port}"))
        .env("MLFLOW_RUN_ID", "sweep_0")
        .env("MLFLOW_TRACKING_TOKEN", "token-of-the-trial")
        .output()
        .unwrap()
}

/// The sampled values reach the script as SM_HPS and SM_HP_<NAME> (an integer's `3.0` as
/// 3); the last regex match and then metrics.json give the metrics, which are logged with
/// the hyperparameters to the trial's run with the job's token.
#[test]
fn a_trial_runs_the_script_with_its_values_and_logs_what_it_reports() {
    if !python3() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (port, server) = serve_once(200);
    let out = trial(
        dir.path(),
        "echo score=9; echo \"score=$SM_HP_ALPHA\"; echo \"$SM_HPS\" > hps.txt; echo '{\"extra\": {\"m\": 2}, \"note\": \"x\"}' > \"$SM_MODEL_DIR/metrics.json\"",
        port,
        &["--hp", "alpha=0.5", "--hp", "depth=3.0"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("score=9\nscore=0.5\n"),
        "the script's output passes through: {stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("hps.txt"))
            .unwrap()
            .trim(),
        r#"{"alpha":0.5,"depth":3,"solver":"auto"}"#
    );
    let (head, body) = server.join().unwrap();
    assert!(
        head.starts_with("POST /api/2.0/mlflow/runs/log-batch "),
        "{head}"
    );
    assert!(head.contains("Bearer token-of-the-trial"), "{head}");
    assert_eq!(body["run_id"], "sweep_0");
    let metrics: Vec<(String, f64)> = body["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["key"].as_str().unwrap().to_string(),
                m["value"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        metrics,
        [("extra.m".to_string(), 2.0), ("score".to_string(), 0.5)]
    );
    assert_eq!(
        body["params"],
        json!([
            {"key": "alpha", "value": "0.5"},
            {"key": "depth", "value": "3"},
            {"key": "solver", "value": "auto"},
        ])
    );
}

/// A trial that does not report the objective fails saying so (the sweep could not compare
/// it), and a failing script fails the trial with its exit code; neither logs anything.
#[test]
fn a_trial_without_its_objective_or_with_a_failing_script_fails() {
    if !python3() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = trial(dir.path(), "echo loss=1", 9, &["--hp", "alpha=1"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout
            .contains("the script reported no `score`, the sweep's objective (it reported: none)"),
        "{stdout}"
    );
    // What it did report is quoted, at most ten names and a count.
    let out = trial(
        dir.path(),
        "python3 -c \"import json, os; json.dump({'m%02d' % i: i for i in range(12)}, open(os.path.join(os.environ['SM_MODEL_DIR'], 'metrics.json'), 'w'))\"",
        9,
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout
            .contains("(it reported: m00, m01, m02, m03, m04, m05, m06, m07, m08, m09 and 2 more)"),
        "{stdout}"
    );
    let out = trial(dir.path(), "echo score=1; exit 3", 9, &[]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("exited with 3"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = trial(dir.path(), "echo score=1", 9, &["--hp", "depth=2.5"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`depth` must be a whole number, got 2.5"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
