//! Monitors evaluate for real: the endpoint's captured traffic is judged against the baseline
//! dataset's profile, per feature, and the verdict is stored and shown by `mlctl status`.

use crate::common::*;
use std::time::{Duration, Instant};

const MONITOR: &str = "\
apiVersion: mlctl/v1
kind: Monitor
metadata:
  name: iris-drift
spec:
  endpoint: iris
  minSamples: 100
  # No method: each feature gets the one Evidently's DataDriftPreset would pick.
  drift: {}
";

/// The iris rows (features only), as in the training data.
fn iris_rows() -> Vec<[f64; 4]> {
    std::fs::read_to_string(repo_root().join("examples/iris/data/iris.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Vec<f64> = l.split(',').take(4).map(|x| x.parse().unwrap()).collect();
            [v[0], v[1], v[2], v[3]]
        })
        .collect()
}

struct Monitored {
    p: TestProject,
    port: u16,
}

impl Monitored {
    fn new() -> Monitored {
        let (p, port) = iris_on_a_free_port("{type: all-at-once}");
        p.write("ml/monitor.yaml", MONITOR);
        std::fs::write(p.path().join(".gitignore"), ".mlctl/\n").unwrap();
        p.git(&["init", "-q", "-b", "main"]);
        p.git(&["config", "user.email", "test@example.com"]);
        p.git(&["config", "user.name", "Test"]);
        p.commit_all("iris with a monitor");
        p.mlctl(&["apply", "--auto-approve"]).expect_code(0);
        Monitored { p, port }
    }

    /// Sends every row, 10 a request, and waits until capture holds them all.
    fn send(&self, rows: &[[f64; 4]]) {
        let before = self.captured_rows();
        for chunk in rows.chunks(10) {
            let body = serde_json::json!({ "instances": chunk }).to_string();
            let r = http_post(self.port, "/invocations", &body);
            assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        }
        let t0 = Instant::now();
        while self.captured_rows() < before + rows.len() {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "capture never held the {} rows sent",
                rows.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Rows in the endpoint's capture files.
    fn captured_rows(&self) -> usize {
        fn walk(dir: &std::path::Path, n: &mut usize) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = e.path();
                if path.is_dir() {
                    walk(&path, n);
                } else if path.extension().is_some_and(|x| x == "jsonl") {
                    for line in std::fs::read_to_string(&path).unwrap_or_default().lines() {
                        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                            *n += v["rows"].as_array().map_or(0, Vec::len);
                        }
                    }
                }
            }
        }
        let mut n = 0;
        walk(
            &self.p.path().join(".mlctl/local/endpoints/iris/capture"),
            &mut n,
        );
        n
    }

    fn run(&self, window: &str) -> serde_json::Value {
        let run = self
            .p
            .mlctl(&["monitor", "run", "--window", window, "-o", "json"])
            .expect_code(0);
        let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        v[0].clone()
    }

    fn monitor_status(&self) -> serde_json::Value {
        let st = self.p.mlctl(&["status", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
        v.as_array()
            .or_else(|| v["resources"].as_array())
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "Monitor/iris-drift")
            .cloned()
            .unwrap()
    }
}

impl Drop for Monitored {
    fn drop(&mut self) {
        let _ = self.p.mlctl(&["destroy", "--auto-approve"]);
        kill_endpoints(&self.p.path().join(".mlctl/local"));
    }
}

fn drifted(result: &serde_json::Value) -> Vec<String> {
    result["features"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["drifted"] == true)
        .map(|f| f["feature"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn traffic_like_the_training_data_is_healthy_and_one_shifted_feature_is_a_breach_on_it_alone() {
    let m = Monitored::new();
    // Before any traffic: never evaluated, then too little data. Neither is healthy.
    let st = m.monitor_status();
    assert_eq!(st["health"], "unknown", "{st}");
    assert!(
        st["message"].as_str().unwrap().contains("never evaluated"),
        "{st}"
    );
    let r = m.run("1h");
    assert_eq!(r["verdict"], "insufficientData", "{r}");
    assert_eq!(m.monitor_status()["health"], "unknown");

    // The training distribution, twice over (300 rows).
    let rows = iris_rows();
    let twice: Vec<[f64; 4]> = rows.iter().chain(rows.iter()).copied().collect();
    m.send(&twice);
    let r = m.run("300");
    assert_eq!(r["rows"], 300, "{r}");
    assert_eq!(r["verdict"], "healthy", "{r}");
    assert!(drifted(&r).is_empty(), "{r}");
    // Only the features are judged: never the label.
    let judged: Vec<&str> = r["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["feature"].as_str().unwrap())
        .collect();
    assert_eq!(
        judged,
        ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    );
    assert_eq!(m.monitor_status()["health"], "healthy");

    // The same rows with petal_length shifted by 2 cm.
    let shifted: Vec<[f64; 4]> = twice
        .iter()
        .map(|r| [r[0], r[1], r[2] + 2.0, r[3]])
        .collect();
    m.send(&shifted);
    let r = m.run("300");
    assert_eq!(r["verdict"], "breached", "{r}");
    assert_eq!(drifted(&r), ["petal_length"], "{r}");
    // With no method in the spec, Evidently's rule for a baseline of 150 rows: the KS test.
    let petal = &r["features"][2];
    assert_eq!(petal["method"], "ks", "{r}");
    assert!(petal["pValue"].as_f64().unwrap() < 0.05, "{r}");
    assert_eq!(
        r["datasetDrift"]["drifted"], false,
        "one feature of four: {r}"
    );
    let st = m.monitor_status();
    assert_eq!(st["health"], "degraded", "{st}");
    assert!(
        st["message"].as_str().unwrap().contains("petal_length"),
        "{st}"
    );
    // A CI schedule gets a failing exit code.
    m.p.mlctl(&["monitor", "run", "--window", "300", "--fail-on-breach"])
        .expect_code(1);

    // Every evaluation is kept, oldest first.
    let h =
        m.p.mlctl(&["monitor", "history", "iris-drift", "-o", "json"]);
    let h: serde_json::Value = serde_json::from_str(&h.expect_code(0).stdout).unwrap();
    let verdicts: Vec<&str> = h
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(
        verdicts,
        ["insufficientData", "healthy", "breached", "breached"]
    );
}
