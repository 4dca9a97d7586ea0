//! `mlctl ui`: the dashboard, in headless Chromium over a project applied on the local
//! target (tests/ui/browser.mjs asserts on what a user sees and approves a model version),
//! and its safety rules over plain HTTP: read-only by default, loopback names only, CSRF on
//! actions, a token beyond loopback.

use crate::common::*;
use crate::monitor::{Monitored, iris_twice};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

/// A running `mlctl ui`, stopped on drop.
struct Dashboard {
    child: Child,
    port: u16,
}

impl Dashboard {
    /// Starts `mlctl ui --port 0 ARGS` in `dir` and reads the URL it prints.
    fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Dashboard {
        let mut child = mlctl()
            .args(["ui", "--port", "0"])
            .args(args)
            .envs(env.iter().copied())
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .split("http://127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("mlctl ui printed no URL: {line:?}"));
        Dashboard { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One request on a connection of its own: (status, head, body).
    fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String, String) {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.port,
            body.len()
        );
        if !body.is_empty() {
            req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        }
        for (k, v) in headers {
            if k.eq_ignore_ascii_case("host") {
                req = req.replacen(&format!("Host: 127.0.0.1:{}\r\n", self.port), "", 1);
            }
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, head.to_string(), body.to_string())
    }

    fn get(&self, path: &str) -> (u16, String, String) {
        self.http("GET", path, &[], "")
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The CSRF token in a page's action forms.
fn csrf_of(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no action form in the page:\n{page}"));
    let rest = &page[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// What the browser test needs, or None (with the skip said) when it cannot run here.
fn browser_tools(test: &str) -> Option<(PathBuf, PathBuf)> {
    let chromium = PathBuf::from(
        std::env::var("MLCTL_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
    );
    let playwright = std::env::var("MLCTL_PLAYWRIGHT_CORE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join(".ci/node/node_modules/playwright-core"));
    let node = have_tool(test, "node", "--version", "the browser test");
    let missing: Vec<String> = [
        (!chromium.exists()).then(|| format!("Chromium at {}", chromium.display())),
        (!playwright.join("package.json").exists())
            .then(|| format!("playwright-core at {}", playwright.display())),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(
        missing.is_empty() || std::env::var_os("CI").is_none(),
        "{test}: under CI the browser test needs {} (.ci/run installs them)",
        missing.join(" and ")
    );
    if !missing.is_empty() {
        let _ = writeln!(
            std::io::stderr(),
            "{test}: SKIPPED the browser test: {} not installed (.ci/run installs them)",
            missing.join(" and ")
        );
        return None;
    }
    node.then_some((chromium, playwright))
}

const MONITOR_RETRAINS: &str = "\
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
";

#[test]
fn the_dashboard_shows_every_page_in_a_browser_and_approves_a_model_version() {
    let test = "the_dashboard_shows_every_page_in_a_browser_and_approves_a_model_version";
    let Some((chromium, playwright)) = browser_tools(test) else {
        return;
    };
    // iris on the local target: traffic like the training data (healthy), then shifted
    // (a breach, whose action retrains: v2), then a change that needs approval (v3 waits).
    let m = Monitored::with(MONITOR_RETRAINS, &[]);
    m.send(&iris_twice(0.0));
    m.mlctl(&["monitor", "run", "--window", "300"])
        .expect_code(0);
    m.send(&iris_twice(2.0));
    let breach = m
        .mlctl(&["monitor", "run", "--window", "300"])
        .expect_code(0);
    assert!(
        breach.stdout.contains("retrained TrainingJob/iris-train"),
        "{}",
        breach.stdout
    );
    m.p.replace("ml/model.yaml", "approval: auto", "approval: manual");
    m.p.replace("ml/train.yaml", "max_iter: 200", "max_iter: 300");
    m.p.commit_all("manual approval, more iterations");
    let waits = m.mlctl(&["apply", "--auto-approve"]).expect_code(1);
    assert!(
        waits.stderr.contains("v3 is waiting for approval"),
        "{}",
        waits.stderr
    );
    // Requests the live metrics must count.
    for _ in 0..5 {
        let r = http_post(
            m.port,
            "/invocations",
            "{\"instances\": [[5.1, 3.5, 1.4, 0.2]]}",
        );
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    }
    let runs: serde_json::Value = serde_json::from_str(
        &m.mlctl(&["runs", "list", "-o", "json"])
            .expect_code(0)
            .stdout,
    )
    .unwrap();
    let status: serde_json::Value =
        serde_json::from_str(&m.mlctl(&["status", "-o", "json"]).expect_code(0).stdout).unwrap();
    // The overview must say what `mlctl status` says, in Argo CD's words.
    let resources: Vec<serde_json::Value> = status["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let health = r["health"].as_str().unwrap();
            serde_json::json!({
                "resource": r["resource"],
                "sync": if r["sync"] == "synced" { "Synced" } else { "OutOfSync" },
                "health": health[..1].to_uppercase() + &health[1..],
            })
        })
        .collect();
    assert!(
        resources.iter().any(|r| r["sync"] == "OutOfSync"),
        "the endpoint waits for v3: {status}"
    );
    let setup = serde_json::json!({
        "resources": resources,
        "runs": runs.as_array().unwrap().len(),
        "edges": [
            ["Dataset/iris", "TrainingJob/iris-train"],
            ["TrainingJob/iris-train", "Model/iris"],
            ["Model/iris", "Endpoint/iris"],
            ["Endpoint/iris", "Monitor/iris-drift"],
        ],
        "model": "iris",
        "pending": "3",
        "endpoint": "iris",
        "requests": 5,
        "monitor": "iris-drift",
        "drifted": "petal_length",
        "evaluations": 2,
        "planText": "iris",
    });
    assert_eq!(setup["runs"], 3, "v1, the retrain and v3: {runs}");

    let ui = Dashboard::start(m.p.path(), &["--allow-actions"], &[]);
    let shots = repo_root().join("target/ui-screenshots");
    let out = std::process::Command::new("node")
        .arg(repo_root().join("tests/ui/browser.mjs"))
        .arg(ui.url())
        .arg(&shots)
        .arg(setup.to_string())
        .env("MLCTL_CHROMIUM", &chromium)
        .env("MLCTL_PLAYWRIGHT_CORE", &playwright)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the browser test failed (screenshots in {}):\n{said}",
        shots.display()
    );
    for step in [
        "overview",
        "graph",
        "runs and compare",
        "approve through the UI",
        "endpoint",
        "monitor",
        "plan",
    ] {
        assert!(said.contains(&format!("ok: {step}")), "{said}");
    }
    for shot in [
        "overview", "graph", "runs", "compare", "model", "endpoint", "monitor", "plan",
    ] {
        assert!(
            shots.join(format!("{shot}.png")).exists(),
            "no screenshot of {shot}"
        );
    }

    // The approval went through the CLI's own code: the registry has it, and the next apply
    // deploys the version.
    let show: serde_json::Value = serde_json::from_str(
        &m.mlctl(&["models", "show", "iris", "-o", "json"])
            .expect_code(0)
            .stdout,
    )
    .unwrap();
    let v3 = show["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == 3)
        .unwrap();
    assert_eq!(v3["approvalStatus"], "approved", "{v3}");

    // The plan page is the CLI's plan, from the same data.
    let cli_plan = m.mlctl(&["plan"]).expect_code(0).stdout;
    let (_, _, page) = ui.get("/plan");
    let pre = page.split("<pre id=\"plan-text\">").nth(1).unwrap();
    let pre = unescape(&pre[..pre.find("</pre>").unwrap()]);
    assert_eq!(pre.trim(), cli_plan.trim());
    assert!(
        pre.contains("Model/iris") || pre.contains("Endpoint/iris"),
        "{pre}"
    );
}

#[test]
fn the_dashboard_is_read_only_by_default_answers_only_loopback_names_and_checks_csrf() {
    let p = TestProject::example_in_git("iris");
    // Read-only: an action is refused, whatever the form says.
    let ro = Dashboard::start(p.path(), &["--target", "test"], &[]);
    let (code, head, _) = ro.get("/");
    assert_eq!(code, 200);
    assert!(
        head.to_lowercase().contains("x-frame-options: deny"),
        "{head}"
    );
    assert!(
        head.to_lowercase().contains("content-security-policy"),
        "{head}"
    );
    let (code, _, body) = ro.http(
        "POST",
        "/actions/monitor-run",
        &[],
        "monitor=iris-drift&csrf=x",
    );
    assert_eq!(code, 403);
    assert!(
        body.contains("read-only") && body.contains("--allow-actions"),
        "{body}"
    );
    // DNS rebinding: a page asked for under another name is refused.
    let (code, _, body) = ro.http("GET", "/", &[("Host", "evil.example:80")], "");
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("evil.example"), "{body}");
    drop(ro);

    // With actions: only a form of the dashboard's own, with its token, gets through.
    let rw = Dashboard::start(p.path(), &["--target", "test", "--allow-actions"], &[]);
    let (_, _, page) = rw.get("/monitors/iris-drift");
    let csrf = csrf_of(&page);
    assert_eq!(csrf.len(), 64);
    let (code, _, body) = rw.http(
        "POST",
        "/actions/monitor-run",
        &[],
        "monitor=iris-drift&csrf=wrong",
    );
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("CSRF"), "{body}");
    let form = format!("monitor=iris-drift&csrf={csrf}");
    let (code, _, body) = rw.http(
        "POST",
        "/actions/monitor-run",
        &[("Origin", "http://evil.example")],
        &form,
    );
    assert_eq!(code, 403, "another site's form: {body}");
    let (code, _, body) = rw.http(
        "POST",
        "/actions/monitor-run",
        &[("Sec-Fetch-Site", "cross-site")],
        &form,
    );
    assert_eq!(code, 403, "{body}");
    // The real form runs `mlctl monitor run` (nothing applied on the mock: the CLI says so).
    let (code, _, body) = rw.http("POST", "/actions/monitor-run", &[], &form);
    assert!(code == 200 || code == 409, "{code}: {body}");
    assert!(
        body.contains("mlctl monitor run iris-drift --target test"),
        "{body}"
    );
}

#[test]
fn beyond_loopback_the_dashboard_needs_a_token_and_every_request_carries_it() {
    let p = TestProject::example_in_git("iris");
    let out = p.mlctl(&["ui", "--host", "0.0.0.0", "--port", "0", "--target", "test"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("--token") && out.stderr.contains("MLCTL_UI_TOKEN"),
        "{}",
        out.stderr
    );
    let out = p.mlctl_with(
        &["ui", "--port", "0", "--target", "test"],
        &[("MLCTL_UI_TOKEN", "short")],
    );
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("at least 16"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("short"),
        "the token is never shown: {}",
        out.stderr
    );

    let token = "a-token-of-twenty-four!!";
    let ui = Dashboard::start(
        p.path(),
        &["--target", "test"],
        &[("MLCTL_UI_TOKEN", token)],
    );
    let (code, _, body) = ui.get("/");
    assert_eq!(code, 401, "{body}");
    assert!(!body.contains(token));
    let (code, _, _) = ui.http(
        "GET",
        "/",
        &[("Authorization", "Bearer wrong-token-wrong-token")],
        "",
    );
    assert_eq!(code, 401);
    let (code, _, _) = ui.http(
        "GET",
        "/",
        &[("Authorization", &format!("Bearer {token}"))],
        "",
    );
    assert_eq!(code, 200);
    // Once in the address, then a cookie: the token leaves the URL.
    let (code, head, _) = ui.get(&format!(
        "/runs?token={}&q=x",
        "a-token-of-twenty-four%21%21"
    ));
    assert_eq!(code, 303, "{head}");
    let lower = head.to_lowercase();
    assert!(lower.contains("location: /runs?q=x"), "{head}");
    assert!(
        lower.contains("set-cookie: mlctl_ui_token=") && lower.contains("httponly"),
        "{head}"
    );
    let (code, _, _) = ui.http(
        "GET",
        "/",
        &[("Cookie", &format!("mlctl_ui_token={token}"))],
        "",
    );
    assert_eq!(code, 200);
}
