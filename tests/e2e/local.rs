//! The iris example on the local target, through the CLI: real training, a real registry, a
//! real endpoint on 127.0.0.1, gates that keep the production version.

use crate::common::*;

/// The iris example on the local target, on a free port, rolled out all at once (the
/// example's 30 s canary bake is for people, not tests). Destroyed on drop, so no endpoint
/// process outlives the test.
struct LocalIris {
    p: TestProject,
    port: u16,
}

impl LocalIris {
    fn new() -> LocalIris {
        let (p, port) = iris_on_a_free_port("{type: all-at-once}");
        std::fs::write(p.path().join(".gitignore"), ".mlctl/\n").unwrap();
        p.git(&["init", "-q", "-b", "main"]);
        p.git(&["config", "user.email", "test@example.com"]);
        p.git(&["config", "user.name", "Test"]);
        p.commit_all("iris on local");
        LocalIris { p, port }
    }

    fn predict(&self, body: &str) -> String {
        http_post(self.port, "/invocations", body)
    }

    fn production_versions(&self) -> Vec<(u64, String)> {
        let models = self
            .p
            .mlctl(&["models", "list", "-o", "json"])
            .expect_code(0);
        let models: serde_json::Value = serde_json::from_str(&models.stdout).unwrap();
        models
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["version"].as_u64().unwrap(),
                    v["stage"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

impl Drop for LocalIris {
    fn drop(&mut self) {
        let _ = self.p.mlctl(&["destroy", "--auto-approve"]);
        // Whatever destroy left (a test that failed half way).
        kill_endpoints(&self.state());
    }
}

impl LocalIris {
    /// The local target's state directory.
    fn state(&self) -> std::path::PathBuf {
        self.p.path().join(".mlctl/local")
    }

    fn endpoint_dir(&self) -> std::path::PathBuf {
        self.state().join("endpoints/iris")
    }

    fn record(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.endpoint_dir().join("endpoint.json")).unwrap())
            .unwrap()
    }

    fn control_token(&self) -> String {
        std::fs::read_to_string(self.endpoint_dir().join("control.token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// `mlctl status -o json`'s row for the endpoint.
    fn endpoint_status(&self) -> serde_json::Value {
        let run = self.p.mlctl(&["status", "-o", "json"]).expect_code(0);
        let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        v["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "Endpoint/iris")
            .cloned()
            .unwrap_or_else(|| panic!("no Endpoint/iris in {v}"))
    }
}

/// `GET path` on 127.0.0.1:`port` over a new connection: (status, body).
fn get(port: u16, path: &str, token: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connects");
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn pid_of_answer(body: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["pid"].as_u64().unwrap()
}

/// `instances: 3`: three `mlctl serve` processes share the endpoint's port, each reachable
/// alone on its control port; one killed behind mlctl's back shows as degraded, "2 of 3", in
/// status and plan, and the next apply starts a third again.
#[test]
fn instances_share_one_port_and_apply_restarts_a_killed_one() {
    let t = LocalIris::new();
    t.p.replace("ml/endpoint.yaml", "  instances: 1\n", "  instances: 3\n");
    t.p.commit_all("three instances");
    t.p.mlctl(&["apply", "--auto-approve"]).expect_code(0);
    let token = t.control_token();
    let rec = t.record();
    let processes = rec["processes"].as_array().unwrap().clone();
    assert_eq!(processes.len(), 3, "{rec}");
    let mut pids = Vec::new();
    for p in &processes {
        // Each process answers as itself on its own control port.
        let port = p["controlPort"].as_u64().unwrap() as u16;
        let (status, body) = get(port, "/-/variants", &token);
        assert_eq!(status, 200, "{body}");
        assert_eq!(pid_of_answer(&body), p["pid"].as_u64().unwrap());
        pids.push(p["pid"].as_u64().unwrap());
    }
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 3, "three distinct processes: {pids:?}");
    // The shared port reaches all three (the kernel picks one per connection).
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..3000 {
        let (status, body) = get(t.port, "/-/variants", &token);
        assert_eq!(status, 200, "{body}");
        seen.insert(pid_of_answer(&body));
        if seen.len() == 3 {
            break;
        }
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), pids);
    let reply = t.predict(r#"{"instances": [[5.1, 3.5, 1.4, 0.2]]}"#);
    assert!(reply.contains(r#"{"predictions":["setosa"]}"#), "{reply}");

    // One dies behind mlctl's back.
    let victim = pids[1];
    std::process::Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()
        .unwrap();
    let t0 = std::time::Instant::now();
    let status = loop {
        let s = t.endpoint_status();
        if s["health"] == "degraded" || t0.elapsed() > std::time::Duration::from_secs(300) {
            break s;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status["health"], "degraded", "{status}");
    let reasons = status["reasons"].to_string();
    assert!(reasons.contains("2 of 3 server processes run"), "{reasons}");
    assert!(reasons.contains(&format!("pid {victim}")), "{reasons}");
    let plan = t.p.mlctl(&["plan", "--detailed-exitcode"]).expect_code(2);
    assert!(
        plan.stdout.contains("2 of 3 server processes run"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("instances changed outside mlctl: 3 -> 2"),
        "{}",
        plan.stdout
    );
    // The others kept serving meanwhile.
    let reply = t.predict(r#"{"instances": [[5.1, 3.5, 1.4, 0.2]]}"#);
    assert!(reply.contains(r#"{"predictions":["setosa"]}"#), "{reply}");

    t.p.mlctl(&["apply", "--auto-approve"]).expect_code(0);
    let rec = t.record();
    let now: Vec<u64> = rec["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(now.len(), 3, "{rec}");
    assert!(!now.contains(&victim), "{now:?}");
    assert!(now.iter().all(|p| alive(*p)), "{now:?}");
    // The two that survived are kept, not restarted.
    assert!(
        pids.iter()
            .filter(|p| **p != victim)
            .all(|p| now.contains(p)),
        "{pids:?} -> {now:?}"
    );
    assert_eq!(t.endpoint_status()["health"], "healthy");
    t.p.mlctl(&["plan", "--detailed-exitcode"]).expect_code(0);

    // Destroy stops all of them.
    t.p.mlctl(&["destroy", "--auto-approve"]).expect_code(0);
    let t0 = std::time::Instant::now();
    while now.iter().any(|p| alive(*p)) {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(300),
            "still running: {now:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `capture.destination`: the servers write captured requests into that directory (one
/// subdirectory per process), the endpoint's record says where, and the monitor sink reads
/// them from there. A URL is refused by plan for the local target.
#[test]
fn capture_goes_to_the_destination_directory() {
    let t = LocalIris::new();
    t.p.replace(
        "ml/endpoint.yaml",
        "    samplingPercent: 100\n",
        "    samplingPercent: 100\n    destination: captured/iris\n",
    );
    // Captured data in the work tree is not part of the spec.
    std::fs::write(t.p.path().join(".gitignore"), ".mlctl/\ncaptured/\n").unwrap();
    t.p.commit_all("capture into the project");
    t.p.mlctl(&["apply", "--auto-approve"]).expect_code(0);
    let dest = t.p.path().join("captured/iris").canonicalize().unwrap();
    assert_eq!(
        std::path::Path::new(t.record()["captureDir"].as_str().unwrap())
            .canonicalize()
            .unwrap(),
        dest
    );
    for _ in 0..3 {
        let reply = t.predict(r#"{"instances": [[6.7, 3.0, 5.2, 2.3]]}"#);
        assert!(reply.contains("virginica"), "{reply}");
    }
    let sink = mlctl_provider_local::monitor::LocalMonitorSink::new(t.state());
    let ctx = mlctl_core::OpContext {
        project: "iris".into(),
        project_dir: t.p.path().to_path_buf(),
        target: "local".into(),
        commit: String::new(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let t0 = std::time::Instant::now();
    let records = loop {
        let r = rt
            .block_on(mlctl_core::MonitorSink::captured(&sink, &ctx, "iris", 10))
            .unwrap();
        if r.len() >= 3 || t0.elapsed() > std::time::Duration::from_secs(300) {
            break r;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(records.len(), 3, "{records:?}");
    assert_eq!(records[0]["predictions"], serde_json::json!(["virginica"]));
    // Written there, by the one server process in its own subdirectory; nothing in the
    // target's store.
    let files = mlctl_serve::capture::capture_files(&dest);
    assert!(!files.is_empty());
    assert!(
        files.iter().all(|f| f.parent() != Some(dest.as_path())),
        "{files:?}"
    );
    assert!(!t.endpoint_dir().join("capture").exists());

    // A URL is refused before anything changes, at its position.
    t.p.replace(
        "ml/endpoint.yaml",
        "destination: captured/iris",
        "destination: s3://bucket/capture",
    );
    t.p.commit_all("capture to a URL");
    let run = t.p.mlctl(&["plan"]).expect_code(1);
    assert!(
        run.stderr
            .contains("does not honour `capture.destination` of Endpoint/iris")
            && run.stderr.contains("not to `s3://bucket/capture`"),
        "{}",
        run.stderr
    );
}

#[test]
fn labels_update_in_place_without_retraining() {
    let t = LocalIris::new();
    t.p.mlctl(&["apply", "--auto-approve"]).expect_code(0);
    let pids = endpoint_pids(&t.endpoint_dir());
    assert!(!pids.is_empty());

    // Labels on the job and the endpoint, a new model description: none changes a result.
    t.p.replace(
        "ml/train.yaml",
        "  name: iris-train\n",
        "  name: iris-train\n  labels: {owner: alice}\n",
    );
    t.p.replace(
        "ml/endpoint.yaml",
        "  name: iris\n",
        "  name: iris\n  labels: {tier: gold}\n",
    );
    t.p.replace(
        "ml/model.yaml",
        "description: Iris species classifier",
        "description: Iris classifier, v2 wording",
    );
    t.p.commit_all("labels and a description");
    let plan = t.p.mlctl(&["plan"]).expect_code(0);
    for expected in [
        "# TrainingJob/iris-train will be updated in-place",
        "labels.owner added: alice (in place: no retraining)",
        "# Model/iris will be updated in-place",
        "description: Iris species classifier -> Iris classifier, v2 wording (in place: no new version)",
        "# Endpoint/iris will be updated in-place",
        "labels.tier added: gold (in place: no redeploy)",
        "Plan: 0 to add, 3 to change, 0 to destroy.",
    ] {
        assert!(
            plan.stdout.contains(expected),
            "{expected}\n{}",
            plan.stdout
        );
    }
    assert!(!plan.stdout.contains("must be replaced"), "{}", plan.stdout);

    let run = t.p.mlctl(&["apply", "--auto-approve"]).expect_code(0);
    assert!(run.stderr.contains("updated in place"), "{}", run.stderr);
    // No new run, no new model version, the same server processes.
    let runs = t.p.mlctl(&["runs", "list", "-o", "json"]).expect_code(0);
    let runs: serde_json::Value = serde_json::from_str(&runs.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    assert_eq!(t.production_versions(), vec![(1, "production".to_string())]);
    assert_eq!(endpoint_pids(&t.endpoint_dir()), pids);
    // The labels are the endpoint's tags now.
    assert_eq!(t.record()["tags"]["tier"], "gold", "{}", t.record());
    let again = t.p.mlctl(&["plan"]).expect_code(0);
    assert!(again.stdout.starts_with("No changes."), "{}", again.stdout);

    // Taking a label off is in place too, and takes the tag off.
    t.p.replace("ml/endpoint.yaml", "  labels: {tier: gold}\n", "");
    t.p.commit_all("no tier");
    let run = t.p.mlctl(&["apply", "--auto-approve"]).expect_code(0);
    assert!(run.stderr.contains("updated in place"), "{}", run.stderr);
    assert!(t.record()["tags"].get("tier").is_none(), "{}", t.record());
    assert_eq!(endpoint_pids(&t.endpoint_dir()), pids);
}

#[test]
fn iris_trains_registers_serves_and_retrains_exactly_once() {
    let t = LocalIris::new();
    let run = t.p.mlctl(&["apply", "--auto-approve"]).expect_code(0);
    assert!(
        run.stdout.contains("5 added"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(run.stderr.contains("gates passed"), "{}", run.stderr);
    let reply = t.predict(r#"{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}"#);
    assert!(
        reply.contains(r#"{"predictions":["setosa","virginica"]}"#),
        "{reply}"
    );
    assert_eq!(t.production_versions(), vec![(1, "production".to_string())]);

    // A second apply does nothing.
    let again = t.p.mlctl(&["apply", "--auto-approve"]).expect_code(0);
    assert!(again.stdout.starts_with("No changes."), "{}", again.stdout);

    // A hyperparameter change retrains once: one new run, one new version.
    t.p.replace("ml/train.yaml", "C: 1.0", "C: 0.5");
    t.p.commit_all("C=0.5");
    t.p.mlctl(&["apply", "--auto-approve"]).expect_code(0);
    t.p.mlctl(&["apply", "--auto-approve"]).expect_code(0);
    let runs = t.p.mlctl(&["runs", "list", "-o", "json"]).expect_code(0);
    let runs: serde_json::Value = serde_json::from_str(&runs.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 2, "{runs}");
    assert_eq!(runs[1]["params"]["C"], 0.5, "{runs}");
    // Each run says which rows its metrics are on: iris' 150 rows split 80/20.
    let id = runs[1]["id"].as_str().unwrap();
    let show = t.p.mlctl(&["runs", "show", id]).expect_code(0);
    for line in [
        "train:      120",
        "test:       30 (test split)",
        "seed:       42",
        "scored on:  test (held out: what gates judge)",
    ] {
        assert!(
            show.stdout.contains(line),
            "`{line}` not in\n{}",
            show.stdout
        );
    }
    assert_eq!(
        t.production_versions(),
        vec![(1, "archived".to_string()), (2, "production".to_string())]
    );
    let reply = t.predict(r#"{"inputs": [[5.1, 3.5, 1.4, 0.2]]}"#);
    assert!(reply.contains(r#"{"predictions":["setosa"]}"#), "{reply}");
}

#[test]
fn a_failed_gate_keeps_the_production_version_serving() {
    let t = LocalIris::new();
    t.p.mlctl(&["apply", "--auto-approve"]).expect_code(0);
    // A gate the model cannot pass (iris' held-out accuracy is 0.9667).
    t.p.replace(
        "ml/model.yaml",
        "{metric: accuracy, min: 0.9}",
        "{metric: accuracy, min: 0.99}",
    );
    t.p.commit_all("impossible gate");
    let run = t.p.mlctl(&["apply", "--auto-approve"]).expect_code(1);
    assert!(
        run.stderr
            .contains("evaluation gates failed: FAIL accuracy >= 0.99"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("production stays at v1"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("not attempted: Model/iris did not apply"),
        "{}",
        run.stderr
    );
    assert_eq!(t.production_versions(), vec![(1, "production".to_string())]);
    let reply = t.predict(r#"{"instances": [[6.7, 3.0, 5.2, 2.3]]}"#);
    assert!(
        reply.contains(r#"{"predictions":["virginica"]}"#),
        "{reply}"
    );
}

#[test]
fn bad_data_is_reported_with_column_rule_and_rows() {
    let t = LocalIris::new();
    let data =
        t.p.read("data/iris.csv")
            .replacen("5.1,3.5,1.4,0.2,setosa", "5.1,3.5,1.4,0.2,daisy", 1);
    t.p.write("data/iris.csv", &data);
    t.p.commit_all("a bad row");
    let run = t.p.mlctl(&["apply", "--auto-approve"]).expect_code(1);
    assert!(run.stderr.contains("species"), "{}", run.stderr);
    assert!(run.stderr.contains("daisy"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("not attempted: Dataset/iris did not apply"),
        "{}",
        run.stderr
    );
}

#[test]
fn rollback_returns_to_the_previous_version_and_git_still_wins() {
    let t = LocalIris::new();
    t.p.mlctl(&["apply", "--auto-approve"]).expect_code(0);
    t.p.replace("ml/train.yaml", "C: 1.0", "C: 0.5");
    t.p.commit_all("C=0.5");
    t.p.mlctl(&["apply", "--auto-approve"]).expect_code(0);
    let run = t.p.mlctl(&["rollback", "iris"]).expect_code(0);
    assert!(
        run.stdout
            .contains("Rolled back endpoint `iris` from iris v2 to v1"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("git revert"), "{}", run.stdout);
    // The rollback is recorded, and the next plan shows the spec asking for v2 again.
    let history =
        t.p.mlctl(&["history", "Endpoint/iris", "-o", "json"])
            .expect_code(0);
    let history: serde_json::Value = serde_json::from_str(&history.stdout).unwrap();
    assert_eq!(
        history.as_array().unwrap().last().unwrap()["action"],
        "rollback",
        "{history}"
    );
    let plan = t.p.mlctl(&["plan", "--detailed-exitcode"]).expect_code(2);
    assert!(
        plan.stdout.contains(
            "drift: serving versions changed outside mlctl: iris v2 100% -> iris v1 100%"
        ),
        "{}",
        plan.stdout
    );
    t.p.mlctl(&["apply", "--auto-approve"]).expect_code(0);
    t.p.mlctl(&["plan", "--detailed-exitcode"]).expect_code(0);
}

#[test]
fn rev_trains_on_the_data_of_that_revision_not_the_work_tree() {
    let t = LocalIris::new();
    let old = t.p.git(&["rev-parse", "HEAD"]).trim().to_string();
    // The data doubles in a later commit; the work tree has it too.
    let data = t.p.read("data/iris.csv");
    let rows: String = data.lines().skip(1).map(|l| format!("{l}\n")).collect();
    t.p.write("data/iris.csv", &format!("{data}{rows}"));
    t.p.commit_all("twice the data");

    let run =
        t.p.mlctl(&["apply", "--rev", &old, "--auto-approve"])
            .expect_code(0);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(out.contains("150 rows"), "{out}");
    assert!(!out.contains("300 rows"), "{out}");
    assert_eq!(
        t.p.read("data/iris.csv").lines().count(),
        301,
        "the work tree is left alone"
    );

    // HEAD has other data: the plan says so and retrains on it.
    let plan = t.p.mlctl(&["plan"]).expect_code(0);
    assert!(
        plan.stdout
            .contains("dataset iris content changed (data/iris.csv)"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("TrainingJob/iris-train must be replaced"),
        "{}",
        plan.stdout
    );
    let run = t.p.mlctl(&["apply", "--auto-approve"]).expect_code(0);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(out.contains("300 rows"), "{out}");
}

#[test]
fn rev_refuses_data_that_revision_does_not_track_unless_allow_dirty() {
    let t = LocalIris::new();
    // The spec points at an ignored copy of the data: never in git.
    t.p.write(".gitignore", ".mlctl/\ndata/local.csv\n");
    std::fs::copy(
        t.p.path().join("data/iris.csv"),
        t.p.path().join("data/local.csv"),
    )
    .unwrap();
    t.p.replace(
        "ml/data.yaml",
        "source: data/iris.csv",
        "source: data/local.csv",
    );
    t.p.commit_all("read an ignored file");
    let ignored = t.p.git(&["rev-parse", "HEAD"]).trim().to_string();
    t.p.write("NOTES.md", "later\n");
    t.p.commit_all("a later commit");

    let run = t.p.mlctl(&["plan", "--rev", &ignored]).expect_code(1);
    for expected in [
        "ml/data.yaml:7:",
        "`source` of Dataset/iris is `data/local.csv`, which is not tracked in git at commit",
        "pass --allow-dirty to read it from the work tree",
        "nothing was changed",
    ] {
        assert!(run.stderr.contains(expected), "{expected}\n{}", run.stderr);
    }

    let run =
        t.p.mlctl(&["plan", "--rev", &ignored, "--allow-dirty"])
            .expect_code(0);
    assert!(
        run.stderr
            .contains("read from the work tree as it is now: data/local.csv"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.contains("Dataset/iris will be created"),
        "{}",
        run.stdout
    );
}

/// What the test data server sends; a test changes it between requests.
#[derive(Default)]
struct Served {
    body: String,
    etag: Option<String>,
    last_modified: Option<String>,
}

/// An HTTP data server on 127.0.0.1 (HEAD and GET, one request per connection).
fn data_server() -> (String, std::sync::Arc<std::sync::Mutex<Served>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/iris.csv", listener.local_addr().unwrap());
    let served = std::sync::Arc::new(std::sync::Mutex::new(Served::default()));
    let state = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let s = state.lock().unwrap();
            let mut head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nContent-Length: {}\r\nConnection: close\r\n",
                s.body.len()
            );
            if let Some(e) = &s.etag {
                head.push_str(&format!("ETag: {e}\r\n"));
            }
            if let Some(m) = &s.last_modified {
                head.push_str(&format!("Last-Modified: {m}\r\n"));
            }
            head.push_str("\r\n");
            let _ = stream.write_all(head.as_bytes());
            if first.starts_with("GET") {
                let _ = stream.write_all(s.body.as_bytes());
            }
        }
    });
    (url, served)
}

#[test]
fn http_source_retrains_when_its_etag_or_last_modified_changes() {
    let t = LocalIris::new();
    let (url, served) = data_server();
    let data = t.p.read("data/iris.csv");
    let rows: String = data.lines().skip(1).map(|l| format!("{l}\n")).collect();
    let doubled = format!("{data}{rows}");
    *served.lock().unwrap() = Served {
        body: data.clone(),
        etag: Some("\"v1\"".into()),
        last_modified: None,
    };
    t.p.replace(
        "ml/data.yaml",
        "source: data/iris.csv",
        &format!("source: {url}"),
    );
    t.p.commit_all("data from a server");
    let run = t.p.mlctl(&["apply", "--auto-approve"]).expect_code(0);
    assert!(run.stderr.contains("150 rows"), "{}", run.stderr);
    let again = t.p.mlctl(&["plan"]).expect_code(0);
    assert!(again.stdout.starts_with("No changes."), "{}", again.stdout);

    // New data upstream, with a new ETag: the plan says so, and apply reads it and retrains.
    {
        let mut s = served.lock().unwrap();
        s.body = doubled.clone();
        s.etag = Some("\"v2\"".into());
    }
    let plan = t.p.mlctl(&["plan"]).expect_code(0);
    for expected in [
        &format!("dataset iris data changed upstream ({url}: etag \"v1\" -> etag \"v2\")"),
        "TrainingJob/iris-train must be replaced",
    ] {
        assert!(
            plan.stdout.contains(expected),
            "{expected}\n{}",
            plan.stdout
        );
    }
    let run = t.p.mlctl(&["apply", "--auto-approve"]).expect_code(0);
    assert!(run.stderr.contains("300 rows"), "{}", run.stderr);
    let runs = t.p.mlctl(&["runs", "list", "-o", "json"]).expect_code(0);
    let runs: serde_json::Value = serde_json::from_str(&runs.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 2, "{runs}");

    // Without an ETag, Last-Modified versions the data.
    {
        let mut s = served.lock().unwrap();
        s.etag = None;
        s.last_modified = Some("Tue, 01 Dec 2026 10:00:00 GMT".into());
    }
    t.p.mlctl(&["apply", "--auto-approve"]).expect_code(0);
    served.lock().unwrap().last_modified = Some("Tue, 01 Dec 2026 11:00:00 GMT".into());
    let plan = t.p.mlctl(&["plan"]).expect_code(0);
    assert!(
        plan.stdout.contains(
            "last-modified Tue, 01 Dec 2026 10:00:00 GMT -> last-modified Tue, 01 Dec 2026 11:00:00 GMT"
        ),
        "{}",
        plan.stdout
    );

    // With neither, nothing can tell a change: refused at plan, with what to do.
    served.lock().unwrap().last_modified = None;
    let plan = t.p.mlctl(&["plan"]).expect_code(1);
    for expected in [
        "sends neither an ETag nor a Last-Modified header",
        "pin the content with `digest:`",
    ] {
        assert!(
            plan.stderr.contains(expected),
            "{expected}\n{}",
            plan.stderr
        );
    }
    // A pinned digest needs no header: it is the version.
    let pin = blake3::hash(doubled.as_bytes()).to_hex().to_string();
    t.p.replace(
        "ml/data.yaml",
        &format!("source: {url}"),
        &format!("source: {url}\n  digest: {pin}"),
    );
    t.p.commit_all("pinned");
    t.p.mlctl(&["apply", "--auto-approve"]).expect_code(0);
}
