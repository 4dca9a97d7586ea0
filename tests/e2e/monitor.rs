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

/// The iris rows twice over (300 rows), with `petal_length` moved by `by` cm.
pub(crate) fn iris_twice(by: f64) -> Vec<[f64; 4]> {
    let rows = iris_rows();
    rows.iter()
        .chain(rows.iter())
        .map(|r| [r[0], r[1], r[2] + by, r[3]])
        .collect()
}

pub(crate) struct Monitored {
    pub(crate) p: TestProject,
    pub(crate) port: u16,
    /// Variables every mlctl run of the test gets (the spec's `${env:...}`).
    env: Vec<(String, String)>,
}

impl Monitored {
    fn new() -> Monitored {
        Monitored::with(MONITOR, &[])
    }

    pub(crate) fn with(monitor: &str, env: &[(&str, &str)]) -> Monitored {
        let (p, port) = iris_on_a_free_port("{type: all-at-once}");
        p.write("ml/monitor.yaml", monitor);
        std::fs::write(p.path().join(".gitignore"), ".mlctl/\n").unwrap();
        p.git(&["init", "-q", "-b", "main"]);
        p.git(&["config", "user.email", "test@example.com"]);
        p.git(&["config", "user.name", "Test"]);
        p.commit_all("iris with a monitor");
        let m = Monitored {
            p,
            port,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        m.mlctl(&["apply", "--auto-approve"]).expect_code(0);
        m
    }

    /// `mlctl ARGS` in the project, with the test's variables.
    pub(crate) fn mlctl(&self, args: &[&str]) -> Run {
        Run::from(
            mlctl()
                .args(args)
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .current_dir(self.p.path())
                .output()
                .unwrap(),
        )
    }

    /// Sends every row, 10 a request, and waits until capture holds them all.
    pub(crate) fn send(&self, rows: &[[f64; 4]]) {
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

    /// The model versions the endpoint serves, from its record.
    fn serving(&self) -> Vec<String> {
        let rec: serde_json::Value = serde_json::from_slice(
            &std::fs::read(
                self.p
                    .path()
                    .join(".mlctl/local/endpoints/iris/endpoint.json"),
            )
            .unwrap(),
        )
        .unwrap();
        rec["variants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].as_str().unwrap().to_string())
            .collect()
    }

    /// Rows in the endpoint's capture files.
    fn captured_rows(&self) -> usize {
        captured(&self.p.path().join(".mlctl/local/endpoints/iris/capture"))
            .iter()
            .map(|r| r["rows"].as_array().map_or(0, Vec::len))
            .sum()
    }

    fn run(&self, window: &str) -> serde_json::Value {
        let run = self
            .p
            .mlctl(&["monitor", "run", "--window", window, "-o", "json"])
            .expect_code(0);
        let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        v[0].clone()
    }

    /// The HTML report `monitor run` wrote.
    fn report(&self) -> String {
        let path = self.p.path().join(".mlctl/reports/iris-drift.html");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("no report at {}: {e}", path.display()))
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
        let _ = self.mlctl(&["destroy", "--auto-approve"]);
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
    let twice = iris_twice(0.0);
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
    let shifted = iris_twice(2.0);
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
    // Each feature keeps its chart data: the shifted one has live values past the
    // baseline's max, which are counted apart from the histogram's last bin.
    let bins = &petal["bins"];
    assert_eq!(bins["kind"], "numeric", "{r}");
    assert_eq!(bins["edges"].as_array().unwrap().len(), 21, "{r}");
    assert!(bins["above"].as_f64().unwrap() > 0.1, "{r}");
    // The run wrote the HTML report: a chart with data per feature, the drifted one named.
    let page = m.report();
    for feature in ["sepal_length", "sepal_width", "petal_length", "petal_width"] {
        assert_chart_with_data(&page, feature);
    }
    assert!(
        page.contains("<article class=\"panel feature drifted\" data-feature=\"petal_length\">"),
        "the report shows petal_length as drifted"
    );
    assert_eq!(
        page.matches("<article class=\"panel feature drifted\"")
            .count(),
        1,
        "and only it"
    );
    assert!(page.contains("<span class=\"verdict breached\">breached</span>"));
    let st = m.monitor_status();
    assert_eq!(st["health"], "degraded", "{st}");
    assert!(
        st["message"].as_str().unwrap().contains("petal_length"),
        "{st}"
    );
    // A breach is production's drift, not a difference from the spec: plan has nothing to do.
    m.mlctl(&["plan", "--detailed-exitcode"]).expect_code(0);
    // A CI schedule gets a failing exit code.
    m.mlctl(&["monitor", "run", "--window", "300", "--fail-on-breach"])
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

    // `monitor report` renders the same page from the stored results, wherever asked.
    let out = m.p.path().join("out/iris-drift.html");
    let written = m
        .mlctl(&[
            "monitor",
            "report",
            "iris-drift",
            "--out",
            out.to_str().unwrap(),
        ])
        .expect_code(0);
    assert!(
        written.stdout.contains("out/iris-drift.html"),
        "{written:?}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), m.report());
    // The trend of each feature has a point per evaluation that judged it (three).
    let page = m.report();
    let trend = svg(&page, "trend", "petal_length");
    assert_eq!(trend.matches("<circle").count(), 3, "{trend}");

    // Asked to open it where there is no browser opener, it says where the report is.
    let empty = m.p.path().join("no-bin");
    std::fs::create_dir_all(&empty).unwrap();
    let opened =
        m.p.mlctl_with(
            &["monitor", "report", "iris-drift", "--open"],
            &[("PATH", empty.to_str().unwrap())],
        )
        .expect_code(0);
    assert!(
        opened.stdout.contains(".mlctl/reports/iris-drift.html"),
        "{opened:?}"
    );
    assert!(
        opened.stderr.contains("could not open the report")
            && opened.stderr.contains("in a browser"),
        "{opened:?}"
    );
    // A monitor nobody evaluated has nothing to report, and the error says what there is.
    let none = m.mlctl(&["monitor", "report", "nope"]).expect_code(1);
    assert!(
        none.stderr.contains("has no such Monitor") && none.stderr.contains("`iris-drift`"),
        "{none:?}"
    );

    // Evaluated a moment ago and scheduled `every 1h` (the default): not due, not evaluated.
    let due = m.mlctl(&["monitor", "run", "--due"]).expect_code(0);
    assert!(
        due.stdout
            .contains("Monitor iris-drift is not due (schedule `every 1h`"),
        "{}",
        due.stdout
    );
    let h = m.mlctl(&["monitor", "history", "iris-drift", "-o", "json"]);
    let h: serde_json::Value = serde_json::from_str(&h.expect_code(0).stdout).unwrap();
    assert_eq!(h.as_array().unwrap().len(), 4);
}

/// A webhook receiver on 127.0.0.1: answers the first request with 500 (to be retried), every
/// later one with 200, and hands over each body.
fn webhook() -> (u16, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let status = if n == 0 {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            );
            if tx
                .send(String::from_utf8_lossy(&body).into_owned())
                .is_err()
            {
                return;
            }
        }
    });
    (port, rx)
}

#[test]
fn a_breach_notifies_the_webhook_rolls_the_endpoint_back_and_fails_the_run() {
    let (port, bodies) = webhook();
    // The URL carries a token, as Slack's do: it must never be printed.
    let token = "tok-5f1c9a7e3b";
    let url = format!("http://127.0.0.1:{port}/hooks/{token}");
    let m = Monitored::with(
        "\
apiVersion: mlctl/v1
kind: Monitor
metadata:
  name: iris-drift
spec:
  endpoint: iris
  minSamples: 100
  drift: {}
  onBreach:
    notify:
      webhook: ${env:ALERT_WEBHOOK}
    rollback: true
    fail: true
",
        &[("ALERT_WEBHOOK", &url)],
    );
    // A second version, which the breach will roll back from.
    m.p.replace("ml/train.yaml", "C: 1.0", "C: 0.5");
    m.p.commit_all("C=0.5: v2");
    m.mlctl(&["apply", "--auto-approve"]).expect_code(0);
    assert_eq!(m.serving(), ["2"]);

    let shifted = iris_twice(2.0);
    m.send(&shifted);
    let run = m.mlctl(&["monitor", "run", "--window", "300"]);
    assert_eq!(
        run.code, 1,
        "onBreach.fail exits 1\n{}\n{}",
        run.stdout, run.stderr
    );
    assert!(
        run.stdout.contains("notified the webhook (HTTP 200)"),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains(token) && !run.stderr.contains(token),
        "{}\n{}",
        run.stdout,
        run.stderr
    );

    // The first POST got a 500 and was sent again; the body is what Slack takes.
    let first = bodies.recv_timeout(Duration::from_secs(30)).unwrap();
    let second = bodies.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(first, second, "the retry sends the same report");
    let alert: serde_json::Value = serde_json::from_str(&second).unwrap();
    let text = alert["text"].as_str().unwrap();
    assert!(
        text.contains("iris-drift") && text.contains("petal_length"),
        "{text}"
    );
    assert_eq!(alert["drifted"], serde_json::json!(["petal_length"]));
    assert!(!second.contains(token));

    // Rolled back to v1, and every action is in the monitor's history with its breach.
    assert_eq!(m.serving(), ["1"]);
    let h =
        m.p.mlctl(&["history", "Monitor/iris-drift", "-o", "json"])
            .expect_code(0);
    let h: serde_json::Value = serde_json::from_str(&h.stdout).unwrap();
    let actions: Vec<&str> = h
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "on-breach")
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert_eq!(actions.len(), 3, "{h}");
    assert!(
        actions
            .iter()
            .all(|a| a.contains("breach at") && a.contains("petal_length")),
        "{actions:?}"
    );
    assert!(actions.iter().all(|a| !a.contains(token)));
}

/// The same flow on the mock target, whose capture store is a JSON-lines file a test fills
/// (the mock runs no server): in-distribution rows are healthy, one shifted feature breaches.
#[test]
fn the_mock_target_judges_its_captured_traffic_the_same_way() {
    let p = TestProject::example("iris");
    p.write("ml/monitor.yaml", MONITOR);
    std::fs::write(p.path().join(".gitignore"), ".mlctl/\n").unwrap();
    p.git(&["init", "-q", "-b", "main"]);
    p.git(&["config", "user.email", "test@example.com"]);
    p.git(&["config", "user.name", "Test"]);
    p.commit_all("iris with a monitor");
    p.mlctl(&["apply", "--target", "test", "--auto-approve"])
        .expect_code(0);
    let capture = p.path().join(".mlctl/test/captured/iris.jsonl");
    std::fs::create_dir_all(capture.parent().unwrap()).unwrap();
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let write = |rows: &[[f64; 4]]| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&capture)
            .unwrap();
        for chunk in rows.chunks(10) {
            let rec = serde_json::json!({
                "time": now, "model": "iris", "version": "1", "variant": "v1", "status": 200,
                "latencyMs": 0.1,
                "columns": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
                "rows": chunk, "predictions": vec!["setosa"; chunk.len()],
            });
            writeln!(f, "{rec}").unwrap();
        }
    };
    let judge = || {
        let run = p
            .mlctl(&[
                "monitor", "run", "--target", "test", "--window", "30", "-o", "json",
            ])
            .expect_code(0);
        let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        v[0].clone()
    };
    let twice = iris_twice(0.0);
    write(&twice);
    let r = judge();
    assert_eq!(
        (r["rows"].as_u64(), r["verdict"].as_str()),
        (Some(300), Some("healthy")),
        "{r}"
    );
    let shifted = iris_twice(2.0);
    write(&shifted);
    let r = judge();
    assert_eq!(r["verdict"], "breached", "{r}");
    assert_eq!(drifted(&r), ["petal_length"], "{r}");
    // The report is written on every target, in the same place.
    let page = std::fs::read_to_string(p.path().join(".mlctl/reports/iris-drift.html")).unwrap();
    assert_chart_with_data(&page, "petal_length");
    assert!(
        page.contains("<article class=\"panel feature drifted\" data-feature=\"petal_length\">")
    );
    p.mlctl(&["destroy", "--target", "test", "--auto-approve"])
        .expect_code(0);
}

/// Labels that arrive later are joined to the captured predictions by request id, and the
/// live accuracy is what the endpoint's answers earned.
#[test]
fn feedback_joins_labels_by_request_id_and_computes_live_accuracy() {
    use std::io::{Read, Write};
    let m = Monitored::new();
    let text = std::fs::read_to_string(repo_root().join("examples/iris/data/iris.csv")).unwrap();
    let mut labels = String::from("requestId,species\n");
    let (mut right, mut n) = (0, 0);
    for (i, line) in text
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .enumerate()
    {
        let cells: Vec<&str> = line.split(',').collect();
        let body = format!("{{\"instances\": [[{}]]}}", cells[..4].join(","));
        let mut s = std::net::TcpStream::connect(("127.0.0.1", m.port)).unwrap();
        write!(s, "POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nx-request-id: q-{i}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(
            answer
                .to_ascii_lowercase()
                .contains(&format!("x-request-id: q-{i}")),
            "{answer}"
        );
        let predicted = answer.contains(&format!("\"{}\"", cells[4]));
        right += usize::from(predicted);
        n += 1;
        labels.push_str(&format!("q-{i},{}\n", cells[4]));
    }
    labels.push_str("never-sent,setosa\n");
    std::fs::write(m.p.path().join("labels.csv"), labels).unwrap();
    let t0 = Instant::now();
    while m.captured_rows() < n {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "capture never held the rows"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let run = m
        .mlctl(&[
            "monitor",
            "feedback",
            "iris-drift",
            "--labels",
            "labels.csv",
            "-o",
            "json",
        ])
        .expect_code(0);
    let fb: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(fb["joined"], n, "{fb}");
    assert_eq!(fb["unmatched"], 1, "{fb}");
    let live = fb["live"]["accuracy"].as_f64().unwrap();
    assert!((live - right as f64 / n as f64).abs() < 1e-9, "{fb}");
    assert!(
        fb["training"]["accuracy"].is_number(),
        "the training accuracy beside it: {fb}"
    );
}

/// A breach retrains the job its monitor names, once per run of breaches; the new version
/// passes the model's gates before it serves, and the spec is in sync afterwards.
#[test]
fn a_breach_retrains_once_and_the_gates_decide_the_new_version() {
    let m = Monitored::with(
        "\
apiVersion: mlctl/v1
kind: Monitor
metadata:
  name: iris-drift
spec:
  endpoint: iris
  minSamples: 100
  drift: {}
  onBreach:
    retrain: iris-train
",
        &[],
    );
    assert_eq!(m.serving(), ["1"]);
    let shifted = iris_twice(2.0);
    m.send(&shifted);
    // Under `-o json` stdout is the results alone; the apply's output is on stderr.
    let run = m
        .mlctl(&["monitor", "run", "--window", "300", "-o", "json"])
        .expect_code(0);
    let results: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is JSON ({e}):\n{}", run.stdout));
    assert_eq!(results[0]["verdict"], "breached");
    assert!(
        run.stderr.contains("retraining TrainingJob/iris-train"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("a monitor's onBreach.retrain asked for it (breach at"),
        "the plan says why the job trains again:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("retrained TrainingJob/iris-train"),
        "{}",
        run.stderr
    );
    // A new version, which passed the gates and serves; the spec is in sync.
    let models = m
        .mlctl(&["models", "show", "iris", "-o", "json"])
        .expect_code(0);
    let models: serde_json::Value = serde_json::from_str(&models.stdout).unwrap();
    assert_eq!(models["versions"].as_array().unwrap().len(), 2, "{models}");
    assert_eq!(m.serving(), ["2"]);
    m.mlctl(&["plan", "--detailed-exitcode"]).expect_code(0);

    // Still drifted (the baseline is the same data): no second retrain.
    let again = m
        .mlctl(&["monitor", "run", "--window", "300"])
        .expect_code(0);
    assert!(
        again
            .stdout
            .contains("not again until the monitor is healthy once"),
        "{}",
        again.stdout
    );
    let models = m
        .mlctl(&["models", "show", "iris", "-o", "json"])
        .expect_code(0);
    let models: serde_json::Value = serde_json::from_str(&models.stdout).unwrap();
    assert_eq!(models["versions"].as_array().unwrap().len(), 2);
}

/// The `class` SVG of `feature` in `page` (`bars` or `trend`).
/// Local endpoints capture in the columnar mlcap format; `mlctl capture export` gives
/// people the JSON lines, through the target or from the directory itself.
#[test]
fn capture_export_gives_the_captured_traffic_as_json_lines() {
    let m = Monitored::new();
    let rows = iris_rows();
    m.send(&rows[..30]);
    let dir = m.p.path().join(".mlctl/local/endpoints/iris/capture");
    let files = mlctl_serve::capture::capture_files(&dir);
    assert!(
        !files.is_empty()
            && files
                .iter()
                .all(|f| f.extension().is_some_and(|e| e == "mlcap")),
        "{files:?}"
    );
    let lines = |run: Run| -> Vec<serde_json::Value> {
        run.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect()
    };
    let through_target = lines(m.mlctl(&["capture", "export", "iris"]).expect_code(0));
    assert_eq!(through_target.len(), 3, "10 rows a request");
    let first = &through_target[0];
    assert_eq!(first["columns"][0], "sepal_length", "{first}");
    assert_eq!(first["rows"].as_array().unwrap().len(), 10, "{first}");
    assert_eq!(first["rows"][0][0].as_f64(), Some(rows[0][0]), "{first}");
    assert!(first["predictions"][0].is_string(), "{first}");
    assert!(first["requestId"].as_str().is_some_and(|id| !id.is_empty()));
    let dir_arg = dir.display().to_string();
    let from_dir = lines(
        m.mlctl(&["capture", "export", "--dir", &dir_arg])
            .expect_code(0),
    );
    assert_eq!(from_dir, through_target);
    let newest = lines(
        m.mlctl(&["capture", "export", "iris", "--window", "1"])
            .expect_code(0),
    );
    assert_eq!(newest, through_target[2..]);
    let e = m
        .mlctl(&["capture", "export", "--dir", "no/such/dir"])
        .expect_code(1);
    assert!(
        e.stderr.contains("no/such/dir: not a directory"),
        "{}",
        e.stderr
    );
}

fn svg<'a>(page: &'a str, class: &str, feature: &str) -> &'a str {
    let open = format!("<svg class=\"{class}\" data-feature=\"{feature}\"");
    let start = page
        .find(&open)
        .unwrap_or_else(|| panic!("the report has no {class} chart of {feature}"));
    let end = start + page[start..].find("</svg>").unwrap();
    &page[start..end]
}

/// `feature` has a bar chart whose baseline and live bars carry their proportions.
fn assert_chart_with_data(page: &str, feature: &str) {
    let bars = svg(page, "bars", feature);
    let values = |class: &str| -> Vec<f64> {
        bars.split(&format!("<rect class=\"{class}\""))
            .skip(1)
            .map(|r| {
                let v = r.split("data-value=\"").nth(1).unwrap();
                v[..v.find('"').unwrap()].parse().unwrap()
            })
            .collect()
    };
    let (baseline, live) = (values("baseline"), values("live"));
    assert!(baseline.len() >= 20, "{feature}: {bars}");
    assert_eq!(baseline.len(), live.len(), "{feature}");
    assert!(
        (baseline.iter().sum::<f64>() - 1.0).abs() < 1e-3,
        "{feature}"
    );
    assert!((live.iter().sum::<f64>() - 1.0).abs() < 1e-3, "{feature}");
    assert!(svg(page, "trend", feature).contains("<circle"), "{feature}");
}

/// `mlctl status` says a monitor's state once, under its row.
#[test]
fn status_says_a_never_evaluated_monitor_once() {
    let m = Monitored::new();
    let st = m.mlctl(&["status"]).expect_code(0);
    assert_eq!(
        st.stdout
            .matches("never evaluated: `mlctl monitor run iris-drift` evaluates it")
            .count(),
        1,
        "{}",
        st.stdout
    );
}
