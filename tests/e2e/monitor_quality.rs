//! Data quality and SLOs on a local endpoint: `mlctl monitor run` judges the captured
//! requests' columns and values against the baseline, and their status and latency against
//! the Monitor's SLOs.

use crate::common::*;
use std::time::{Duration, Instant};

const FEATURES: [&str; 4] = ["sepal_length", "sepal_width", "petal_length", "petal_width"];

/// Three Monitors of one endpoint: data quality with the defaults, an SLO no endpoint can
/// meet (a p99 of a nanosecond) and one every endpoint meets (a minute).
const MONITORS: &str = "\
apiVersion: mlctl/v1
kind: Monitor
metadata:
  name: iris-quality
spec:
  endpoint: iris
  minSamples: 100
  quality: {}
---
apiVersion: mlctl/v1
kind: Monitor
metadata:
  name: slo-unmeetable
spec:
  endpoint: iris
  minSamples: 10
  slo:
    p99LatencyMs: 0.000001
---
apiVersion: mlctl/v1
kind: Monitor
metadata:
  name: slo-generous
spec:
  endpoint: iris
  minSamples: 10
  slo:
    p99LatencyMs: 60000
    maxErrorRate: 0.5
";

/// The iris rows (features only), as in the training data.
fn iris_rows() -> Vec<Vec<serde_json::Value>> {
    std::fs::read_to_string(repo_root().join("examples/iris/data/iris.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.split(',')
                .take(4)
                .map(|x| serde_json::json!(x.parse::<f64>().unwrap()))
                .collect()
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
        // Its monitors instead of the example's.
        std::fs::remove_file(p.path().join("ml/monitor.yaml")).unwrap();
        p.write("ml/monitors.yaml", MONITORS);
        std::fs::write(p.path().join(".gitignore"), ".mlctl/\n").unwrap();
        p.git(&["init", "-q", "-b", "main"]);
        p.git(&["config", "user.email", "test@example.com"]);
        p.git(&["config", "user.name", "Test"]);
        p.commit_all("iris with quality and SLO monitors");
        p.mlctl(&["apply", "--auto-approve"]).expect_code(0);
        Monitored { p, port }
    }

    /// Sends `rows` named by `columns`, 10 a request (15 requests for the iris rows), and
    /// waits until the capture holds every request.
    fn send(&self, columns: &[&str], rows: &[Vec<serde_json::Value>]) {
        let before = self.captured_records();
        let chunks = rows.chunks(10).count();
        for chunk in rows.chunks(10) {
            let body = serde_json::json!({"dataframe_split": {"columns": columns, "data": chunk}})
                .to_string();
            let r = http_post(self.port, "/invocations", &body);
            assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        }
        let t0 = Instant::now();
        while self.captured_records() < before + chunks {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "capture never held the {chunks} requests sent"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Records in the endpoint's capture files.
    fn captured_records(&self) -> usize {
        captured(&self.p.path().join(".mlctl/local/endpoints/iris/capture")).len()
    }

    /// `mlctl monitor run --window <records>`: each monitor's result by name.
    fn run(&self, window: &str) -> std::collections::BTreeMap<String, serde_json::Value> {
        let run = self
            .p
            .mlctl(&["monitor", "run", "--window", window, "-o", "json"])
            .expect_code(0);
        let v: Vec<serde_json::Value> = serde_json::from_str(&run.stdout).unwrap();
        v.into_iter()
            .map(|r| (r["monitor"].as_str().unwrap().to_string(), r))
            .collect()
    }
}

impl Drop for Monitored {
    fn drop(&mut self) {
        let _ = self.p.mlctl(&["destroy", "--auto-approve"]);
        kill_endpoints(&self.p.path().join(".mlctl/local"));
    }
}

/// The (check, column) pairs that breached.
fn quality_breaches(result: &serde_json::Value) -> Vec<(String, String)> {
    result["quality"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .filter(|q| q["breached"] == true)
        .map(|q| {
            (
                q["check"].as_str().unwrap().to_string(),
                q["column"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn extra_columns_and_values_out_of_range_breach_quality_and_slos_are_judged_from_the_capture() {
    let m = Monitored::new();

    // The training rows, named as in the data: nothing to report on quality.
    let rows = iris_rows();
    m.send(&FEATURES, &rows);
    let r = m.run("15");
    let quality = &r["iris-quality"];
    assert_eq!(quality["rows"], 150, "{quality}");
    assert_eq!(quality["verdict"], "healthy", "{quality}");
    assert_eq!(quality_breaches(quality), [], "{quality}");
    assert!(
        quality["features"].as_array().is_none_or(Vec::is_empty),
        "no drift section asked for: {quality}"
    );

    // SLOs from the same 15 requests: no endpoint answers in a nanosecond, every one within a
    // minute, and none of them failed.
    let tight = &r["slo-unmeetable"];
    assert_eq!(tight["verdict"], "breached", "{tight}");
    assert_eq!(tight["slo"]["requests"], 15, "{tight}");
    assert!(
        tight["summary"].as_str().unwrap().contains("p99LatencyMs"),
        "{tight}"
    );
    let generous = &r["slo-generous"];
    assert_eq!(generous["verdict"], "healthy", "{generous}");
    let error_rate = &generous["slo"]["objectives"][1];
    assert_eq!(error_rate["objective"], "maxErrorRate", "{generous}");
    assert_eq!(error_rate["value"], 0.0, "{generous}");

    // The same rows with a column the model does not take and petal lengths ten times over.
    let mut columns = FEATURES.to_vec();
    columns.push("colour");
    let bad: Vec<Vec<serde_json::Value>> = rows
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r[2] = serde_json::json!(r[2].as_f64().unwrap() * 10.0);
            r.push(serde_json::json!("red"));
            r
        })
        .collect();
    m.send(&columns, &bad);
    let r = m.run("15");
    let quality = &r["iris-quality"];
    assert_eq!(quality["verdict"], "breached", "{quality}");
    let breaches = quality_breaches(quality);
    assert!(
        breaches.contains(&("extra_column".into(), "colour".into())),
        "{quality}"
    );
    assert!(
        breaches.contains(&("out_of_range".into(), "petal_length".into())),
        "{quality}"
    );
    assert_eq!(breaches.len(), 2, "only those two: {quality}");
    let summary = quality["summary"].as_str().unwrap();
    assert!(
        summary.contains("colour") && summary.contains("petal_length"),
        "{summary}"
    );

    // The human view names them too, and a CI schedule gets a failing exit code.
    let out =
        m.p.mlctl(&[
            "monitor",
            "run",
            "iris-quality",
            "--window",
            "15",
            "--fail-on-breach",
        ])
        .expect_code(1);
    assert!(
        out.stdout.contains("extra_column") && out.stdout.contains("colour"),
        "{}",
        out.stdout
    );
}
