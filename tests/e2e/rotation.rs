//! Rotating an endpoint's bearer token (`auth.token: ${env:IRIS_TOKEN}`): a new value is
//! planned by the variable's name, applied in the running servers with no refused request,
//! and written down nowhere.

use crate::common::*;
use std::process::Stdio;

/// The iris example on the local target with two server processes that need a bearer token
/// from `IRIS_TOKEN`, committed. Destroyed on drop.
struct TokenIris {
    p: TestProject,
    port: u16,
}

impl TokenIris {
    fn new() -> TokenIris {
        let (p, port) = iris_on_a_free_port("{type: all-at-once}");
        p.replace("ml/endpoint.yaml", "  instances: 1\n", "  instances: 2\n");
        p.replace(
            "ml/endpoint.yaml",
            "  capture:\n",
            "  auth:\n    token: ${env:IRIS_TOKEN}\n  capture:\n",
        );
        std::fs::write(p.path().join(".gitignore"), ".mlctl/\n").unwrap();
        p.git(&["init", "-q", "-b", "main"]);
        p.git(&["config", "user.email", "test@example.com"]);
        p.git(&["config", "user.name", "Test"]);
        p.commit_all("iris behind a token");
        TokenIris { p, port }
    }

    fn with_token(&self, args: &[&str], token: &str) -> Run {
        self.p.mlctl_with(args, &[("IRIS_TOKEN", token)])
    }

    fn endpoint_dir(&self) -> std::path::PathBuf {
        self.p.path().join(".mlctl/local/endpoints/iris")
    }

    /// The statuses of `n` predictions with `token` (new connections: the kernel spreads
    /// them over both processes).
    fn statuses(&self, token: &str, n: usize) -> Vec<u16> {
        let mut s: Vec<u16> = (0..n).map(|_| predict_status(self.port, token)).collect();
        s.dedup();
        s
    }
}

impl Drop for TokenIris {
    fn drop(&mut self) {
        let _ = self.p.mlctl(&["destroy", "--auto-approve"]);
        kill_endpoints(&self.p.path().join(".mlctl/local"));
    }
}

#[test]
fn a_new_token_is_planned_by_name_and_rotates_in_the_running_servers() {
    let t = TokenIris::new();
    let (a, b) = (secret_value("tokenA"), secret_value("tokenB"));
    let applied = t
        .with_token(&["apply", "--auto-approve"], &a)
        .expect_code(0);
    assert_eq!(t.statuses(&a, 8), [200], "the token works");
    assert_eq!(t.statuses(&b, 8), [401], "another token does not");
    let servers = endpoint_pids(&t.endpoint_dir());
    assert_eq!(servers.len(), 2, "{servers:?}");

    // The same value plans nothing; a new one names the secret, and only the endpoint changes.
    let same = t
        .with_token(&["plan", "--detailed-exitcode"], &a)
        .expect_code(0);
    assert!(same.stdout.starts_with("No changes."), "{}", same.stdout);
    let plan = t
        .with_token(&["plan", "--detailed-exitcode"], &b)
        .expect_code(2);
    assert!(
        plan.stdout.contains(
            "# Endpoint/iris will be updated in-place\n  #   secret `IRIS_TOKEN` changed\n"
        ),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("Plan: 0 to add, 2 to change, 0 to destroy."),
        "{}",
        plan.stdout
    );

    // Apply the new token with a client sending requests all along: every request succeeds,
    // except that the old token may be refused, and only once the new one works on every
    // process (from then on the client sends both).
    let mut apply = mlctl()
        .args(["apply", "--auto-approve"])
        .env("IRIS_TOKEN", &b)
        .current_dir(t.p.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut old_refused = false;
    let mut sent = 0;
    while apply.try_wait().unwrap().is_none() || sent == 0 {
        match predict_status(t.port, &a) {
            200 => {}
            401 => old_refused = true,
            other => panic!("the old token got {other} during the rotation (0: no answer)"),
        }
        if old_refused {
            let new = predict_status(t.port, &b);
            assert_eq!(
                new, 200,
                "the new token got {new} after the old one was refused somewhere"
            );
        }
        sent += 1;
    }
    let rotated = Run::from(apply.wait_with_output().unwrap()).expect_code(0);

    assert_eq!(t.statuses(&b, 8), [200], "the new token works");
    assert_eq!(t.statuses(&a, 8), [401], "the old token no longer does");
    assert_eq!(
        endpoint_pids(&t.endpoint_dir()),
        servers,
        "the token rotated in the running processes, none was restarted"
    );
    let after = t
        .with_token(&["plan", "--detailed-exitcode"], &b)
        .expect_code(0);
    assert!(after.stdout.starts_with("No changes."), "{}", after.stdout);

    // Neither token is in anything mlctl wrote or printed.
    let needles = [("token A", a.as_str()), ("token B", b.as_str())];
    let leaks = find_leaks(&t.p.path().join(".mlctl"), &needles);
    assert!(leaks.is_empty(), "{leaks:#?}");
    for run in [&applied, &same, &plan, &rotated, &after] {
        for (what, value) in needles {
            assert!(
                !run.stdout.contains(value) && !run.stderr.contains(value),
                "{what} in the output:\n{}\n{}",
                run.stdout,
                run.stderr
            );
        }
    }
}
