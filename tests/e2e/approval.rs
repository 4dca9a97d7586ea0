//! `approval: manual` end to end, through the CLI, on the local and the mock target: apply
//! stops at "waiting for approval", plan and status say which version waits and the command
//! that decides it, `mlctl models approve` lets the next apply deploy it with no spec change,
//! a rejected version is never deployed, and a later version can still be approved.

use crate::common::*;

/// The iris example with `approval: manual`, its endpoint rolled out all at once on a port
/// the target allocates. Destroyed on drop, so no local endpoint outlives the test.
struct ManualIris {
    p: TestProject,
    target: &'static str,
}

impl ManualIris {
    fn new(target: &'static str) -> ManualIris {
        let p = TestProject::example_in_git("iris");
        p.replace("ml/model.yaml", "approval: auto", "approval: manual");
        p.replace("ml/endpoint.yaml", "  port: 8765\n", "");
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
        p.commit_all("manual approval");
        ManualIris { p, target }
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut all = args.to_vec();
        all.extend(["--target", self.target]);
        self.p.mlctl(&all)
    }

    fn apply(&self) -> Run {
        self.run(&["apply", "--auto-approve"])
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let run = self.run(&all).expect_code(0);
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
    }

    /// `mlctl status -o json`'s row for `resource`.
    fn status_of(&self, resource: &str) -> serde_json::Value {
        let v = self.json(&["status"]);
        v["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == resource)
            .cloned()
            .unwrap_or_else(|| panic!("no {resource} in {v}"))
    }

    /// (version, stage, approvalStatus) of every version of iris.
    fn versions(&self) -> Vec<(u64, String, String)> {
        self.json(&["models", "list"])
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["version"].as_u64().unwrap(),
                    v["stage"].as_str().unwrap().to_string(),
                    v["approvalStatus"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// A new Model fingerprint, so the next apply registers a new version: a gate's threshold
    /// changes (a description alone is updated in place and registers nothing).
    fn new_model_version(&self, why: &str, f1_min: &str) {
        let model = self.p.read("ml/model.yaml");
        let line = model
            .lines()
            .find(|l| l.contains("metric: f1_macro"))
            .unwrap()
            .to_string();
        let lower = format!("    - {{metric: f1_macro, min: {f1_min}}}");
        self.p.replace("ml/model.yaml", &line, &lower);
        self.p.commit_all(why);
    }

    /// Apply stops at the new version `v`, and plan and status say so with the command.
    fn expect_waiting(&self, v: u32) {
        let approve = format!("mlctl models approve iris {v}");
        let run = self.apply().expect_code(1);
        let out = format!("{}{}", run.stdout, run.stderr);
        assert!(
            out.contains(&format!("registered v{v} in staging; waiting for approval")),
            "{out}"
        );
        assert!(out.contains(&approve), "{out}");

        let plan = self.run(&["plan"]).expect_code(0);
        assert!(
            plan.stdout.contains(&format!(
                "Model/iris v{v} is waiting for approval: run `{approve}`"
            )),
            "{}",
            plan.stdout
        );
        let plan = self.json(&["plan"]);
        assert_eq!(plan["approvals"][0]["id"]["kind"], "Model", "{plan}");
        assert_eq!(plan["approvals"][0]["id"]["name"], "iris", "{plan}");
        assert_eq!(plan["approvals"][0]["version"], v, "{plan}");
        assert_eq!(
            plan["approvals"][0]["status"], "pendingManualApproval",
            "{plan}"
        );

        let model = self.status_of("Model/iris");
        assert_eq!(model["health"], "progressing", "{model}");
        assert!(
            model["message"].as_str().unwrap_or("").contains(&approve),
            "{model}"
        );
        let human = self.run(&["status"]).expect_code(0);
        assert!(human.stdout.contains(&approve), "{}", human.stdout);
    }
}

impl Drop for ManualIris {
    fn drop(&mut self) {
        let _ = self.run(&["destroy", "--auto-approve"]);
        kill_endpoints(&self.p.path().join(".mlctl/local"));
    }
}

fn approve_deploy_reject_and_approve_again(target: &'static str) {
    let t = ManualIris::new(target);

    // 1. Apply registers v1 and stops: nothing is deployed before a person approves.
    t.expect_waiting(1);
    assert_eq!(
        t.versions(),
        vec![(1, "staging".into(), "pendingManualApproval".into())]
    );

    // 2. Approve; the next apply promotes and deploys v1 with no change to the spec.
    let approved = t.run(&["models", "approve", "iris", "1"]).expect_code(0);
    assert!(
        approved.stdout.contains("Approved iris v1"),
        "{}",
        approved.stdout
    );
    let plan = t.run(&["plan"]).expect_code(0);
    assert!(
        plan.stdout
            .contains("Model/iris v1 was approved since the last apply; apply promotes it"),
        "{}",
        plan.stdout
    );
    let run = t.apply().expect_code(0);
    assert!(
        run.stderr.contains("serving iris v1"),
        "{}{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(
        t.versions(),
        vec![(1, "production".into(), "approved".into())]
    );
    let endpoint = t.status_of("Endpoint/iris");
    assert_eq!(
        (&endpoint["sync"], &endpoint["health"]),
        (&"synced".into(), &"healthy".into()),
        "{endpoint}"
    );
    assert!(
        endpoint["lastError"].is_null(),
        "the waiting error is resolved: {endpoint}"
    );
    t.run(&["plan", "--detailed-exitcode"]).expect_code(0);

    // 3. A new version, rejected: never deployed, and plan and status say so.
    t.new_model_version("a second version", "0.84");
    t.expect_waiting(2);
    let rejected = t.run(&["models", "reject", "iris", "2"]).expect_code(0);
    assert!(
        rejected.stdout.contains("Rejected iris v2"),
        "{}",
        rejected.stdout
    );
    let plan = t.run(&["plan"]).expect_code(0);
    assert!(
        plan.stdout
            .contains("Model/iris v2 was rejected and is never deployed"),
        "{}",
        plan.stdout
    );
    let model = t.status_of("Model/iris");
    assert_eq!(model["health"], "degraded", "{model}");
    assert!(
        model["message"].as_str().unwrap_or("").contains("rejected"),
        "{model}"
    );
    let run = t.apply().expect_code(1);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(out.contains("v2 was rejected"), "{out}");
    assert!(!out.contains("serving iris v2"), "{out}");
    assert_eq!(
        t.versions(),
        vec![
            (1, "production".into(), "approved".into()),
            (2, "staging".into(), "rejected".into())
        ]
    );
    let again = t.run(&["models", "approve", "iris", "2"]).expect_code(1);
    assert!(
        again.stderr.contains("v2 was rejected"),
        "a rejected version cannot be approved: {}",
        again.stderr
    );

    // 4. Back to the spec of v1: the endpoint's failure no longer applies, and goes.
    assert!(!t.status_of("Endpoint/iris")["lastError"].is_null());
    t.p.git(&["revert", "--no-edit", "HEAD"]);
    t.apply().expect_code(0);
    let endpoint = t.status_of("Endpoint/iris");
    assert!(endpoint["lastError"].is_null(), "{endpoint}");
    assert_eq!(endpoint["health"], "healthy", "{endpoint}");
    let history = t.json(&["history", "Endpoint/iris"]);
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "resolved"),
        "{history}"
    );

    // 5. A later version can still be approved and deployed.
    t.new_model_version("a third version", "0.83");
    t.expect_waiting(3);
    t.run(&["models", "approve", "iris", "3"]).expect_code(0);
    let run = t.apply().expect_code(0);
    assert!(
        run.stderr.contains("serving iris v3"),
        "{}{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(
        t.versions(),
        vec![
            (1, "archived".into(), "approved".into()),
            (2, "staging".into(), "rejected".into()),
            (3, "production".into(), "approved".into())
        ]
    );
}

#[test]
fn manual_approval_end_to_end_on_the_mock_target() {
    approve_deploy_reject_and_approve_again("test");
}

#[test]
fn manual_approval_end_to_end_on_the_local_target() {
    approve_deploy_reject_and_approve_again("local");
}

/// A local endpoint on a port the target chose shows where it serves, in `status` and in
/// `status -o json`.
#[test]
fn status_shows_the_url_of_a_local_endpoint_on_an_allocated_port() {
    let t = ManualIris::new("local");
    t.p.replace("ml/model.yaml", "approval: manual", "approval: auto");
    t.p.commit_all("auto approval");
    t.apply().expect_code(0);
    let endpoint = t.status_of("Endpoint/iris");
    let url = endpoint["url"]
        .as_str()
        .unwrap_or_else(|| panic!("{endpoint}"));
    let port: u16 = url
        .strip_prefix("http://127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{url}"));
    assert_ne!(port, 0, "{url}");
    let human = t.run(&["status"]).expect_code(0);
    assert!(
        human.stdout.contains(&format!("serving at {url}")),
        "{}",
        human.stdout
    );
}

/// A value out of range is cited by the line of the file, header counted, and the data row,
/// the same on every target that reads the data.
#[test]
fn data_errors_cite_the_file_line_and_the_data_row() {
    for target in ["test", "local"] {
        let p = TestProject::example_in_git("iris");
        // Data row 6, line 7 of the file.
        p.replace(
            "data/iris.csv",
            "5.4,3.9,1.7,0.4,setosa\n",
            "54,3.9,1.7,0.4,setosa\n",
        );
        p.commit_all("a typo in row 6");
        let run = p
            .mlctl(&["apply", "--auto-approve", "--target", target])
            .expect_code(1);
        let out = format!("{}{}", run.stdout, run.stderr);
        assert!(
            out.contains("line 7 of data/iris.csv (data row 6): \"54.0\"")
                || out.contains("line 7 of data/iris.csv (data row 6): \"54\""),
            "{target}: {out}"
        );
    }
}

/// A failure the target no longer shows (the spec went back to what is applied) is dropped
/// from status and from the target's state, even by an apply with nothing to do.
#[test]
fn a_resolved_failure_leaves_status_and_state() {
    let p = TestProject::example_in_git("iris");
    p.mlctl(&["apply", "--auto-approve", "--target", "test"])
        .expect_code(0);
    p.replace(
        "mlctl.yaml",
        "      provider: mock\n",
        "      provider: mock\n      faults:\n        failDeployment: [iris]\n",
    );
    p.commit_all("rollouts fail");
    p.replace("ml/endpoint.yaml", "  instances: 1\n", "  instances: 2\n");
    p.commit_all("two instances");
    p.mlctl(&["apply", "--auto-approve", "--target", "test"])
        .expect_code(1);
    let status = |p: &TestProject| -> serde_json::Value {
        let run = p
            .mlctl(&["status", "--target", "test", "-o", "json"])
            .expect_code(0);
        let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        v["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "Endpoint/iris")
            .cloned()
            .unwrap()
    };
    assert!(!status(&p)["lastError"].is_null(), "{}", status(&p));

    // Back to one instance: the endpoint is what the spec says; nothing to apply.
    p.git(&["revert", "--no-edit", "HEAD"]);
    let run = p
        .mlctl(&["apply", "--auto-approve", "--target", "test"])
        .expect_code(0);
    assert!(run.stdout.contains("No changes"), "{}", run.stdout);
    let endpoint = status(&p);
    assert!(endpoint["lastError"].is_null(), "{endpoint}");
    assert_eq!(endpoint["health"], "healthy", "{endpoint}");
    let history = p
        .mlctl(&["history", "Endpoint/iris", "--target", "test", "-o", "json"])
        .expect_code(0);
    let history: serde_json::Value = serde_json::from_str(&history.stdout).unwrap();
    let last = history.as_array().unwrap().last().unwrap();
    assert_eq!(
        last["action"], "resolved",
        "the state forgot the error: {history}"
    );
}
