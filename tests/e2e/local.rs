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
        let p = TestProject::example("iris");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        p.replace(
            "ml/endpoint.yaml",
            "  port: 8765\n",
            &format!("  port: {port}\n"),
        );
        let endpoint = p.read("ml/endpoint.yaml");
        let start = endpoint.find("  strategy:\n").unwrap();
        let end = endpoint.find("  capture:\n").unwrap();
        p.write(
            "ml/endpoint.yaml",
            &format!(
                "{}  strategy: {{type: all-at-once}}\n{}",
                &endpoint[..start],
                &endpoint[end..]
            ),
        );
        std::fs::write(p.path().join(".gitignore"), ".mlctl/\n").unwrap();
        p.git(&["init", "-q", "-b", "main"]);
        p.git(&["config", "user.email", "test@example.com"]);
        p.git(&["config", "user.name", "Test"]);
        p.commit_all("iris on local");
        LocalIris { p, port }
    }

    fn predict(&self, body: &str) -> String {
        use std::io::{Read, Write};
        let mut s =
            std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("endpoint listens");
        write!(s, "POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
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
    }
}

#[test]
fn iris_trains_registers_serves_and_retrains_exactly_once() {
    let t = LocalIris::new();
    let run = t.p.mlctl(&["apply", "--auto-approve"]).expect_code(0);
    assert!(
        run.stdout.contains("4 added"),
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
