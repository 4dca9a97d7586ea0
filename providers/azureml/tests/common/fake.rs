//! The fake Azure ML REST API (`providers/azureml/fake/fake_arm.py`), started once per test.
//!
//! [`FakeArm::start`] runs the fake with the Python of `MLCTL_AZ_FAKE_PY` (the venv that has
//! `azure-ai-ml`: `eval "$(.ci/azureml-fake.sh env)"`) against the Azurite of
//! `MLCTL_AZURITE_URL` on a free 127.0.0.1 port, and stops it when dropped. Without either
//! variable it returns `None` after a note on stderr (a skip is visible), except under
//! `CI=true`, where it panics: CI never skips silently. [`FakeArm::start_arm_only`] needs only
//! `MLCTL_AZ_FAKE_PY`, for tests of the ARM protocol that run no job.
//!
//! The fake checks every request body against Microsoft's generated models; a test ends with
//! [`FakeArm::assert_contract_clean`], so a body the real service would refuse fails it even
//! when the provider handled the fake's 400.
//!
//! Usage from a test file (no `mod.rs` needed):
//!
//! ```ignore
//! #[path = "common/fake.rs"]
//! mod fake;
//! let Some(fake) = fake::FakeArm::start() else { return };
//! // ... target with endpointUrl: fake.url(), storage: <fake.blob_url()>/<container>/<prefix>
//! fake.assert_contract_clean();
//! ```
//!
//! The control calls (`requests`, `fault`, ...) are blocking and use a plain TCP connection,
//! so they work from sync and async tests alike.

#![allow(dead_code)] // each test binary uses a part

use serde::Deserialize;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The api-version the provider must send (the fake refuses any other).
pub const API_VERSION: &str = "2025-12-01";
/// The subscription of [`FakeArm::target_yaml`] (any works: every workspace exists).
pub const SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000001";
/// The resource group of [`FakeArm::target_yaml`].
pub const RESOURCE_GROUP: &str = "ml";

/// A running fake ARM server; stopped (SIGTERM, then kill) on drop.
pub struct FakeArm {
    child: Child,
    url: String,
    blob_url: Option<String>,
    dir: tempfile::TempDir,
    // Kept open: the fake never writes to stdout after its first line, but a closed pipe
    // would make a late write fail.
    _stdout: BufReader<std::process::ChildStdout>,
}

/// One request the fake received (its body parsed; the bearer token is never recorded).
#[derive(Debug, Clone, Deserialize)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub query: serde_json::Map<String, Value>,
    #[serde(default)]
    pub body: Option<Value>,
    #[serde(default)]
    pub status: Option<u16>,
    /// Whether it carried `Authorization: Bearer <token>`.
    pub authorized: bool,
}

/// A fault to inject: the next `times` requests whose `"METHOD /path"` matches the regex
/// `matches` are answered `status` with an ARM error body (and `Retry-After` when set).
#[derive(Debug, Clone)]
pub struct Fault {
    pub matches: String,
    pub status: u16,
    pub times: u32,
    pub retry_after: Option<u32>,
}

impl Fault {
    /// `times` throttles (429) with `Retry-After: 1`.
    pub fn throttle(matches: &str, times: u32) -> Fault {
        Fault {
            matches: matches.to_string(),
            status: 429,
            times,
            retry_after: Some(1),
        }
    }

    /// `times` answers `status` (500, 503, ...) without `Retry-After`.
    pub fn error(matches: &str, status: u16, times: u32) -> Fault {
        Fault {
            matches: matches.to_string(),
            status,
            times,
            retry_after: None,
        }
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// `providers/azureml/fake/fake_arm.py`.
pub fn fake_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fake/fake_arm.py")
}

impl FakeArm {
    /// Start a fake (see the module doc), or `None` when the environment has no fake.
    pub fn start() -> Option<FakeArm> {
        FakeArm::start_with(&[])
    }

    /// [`FakeArm::start`] with more arguments for `fake_arm.py` (`--token T`,
    /// `--compute NAME`, `--lro-polls N`, `--page-size N`, `--location L`, ...).
    pub fn start_with(extra: &[&str]) -> Option<FakeArm> {
        let [python, blob] = required(["MLCTL_AZ_FAKE_PY", "MLCTL_AZURITE_URL"])?;
        Some(FakeArm::spawn(
            &python,
            Some(blob.trim_end_matches('/')),
            extra,
        ))
    }

    /// A fake without blob storage, for tests of the ARM protocol alone (retries, operations,
    /// errors, paging): needs only `MLCTL_AZ_FAKE_PY`. Its jobs fail at once (nothing to read
    /// their code and inputs from) and `startPendingUpload` answers 503.
    pub fn start_arm_only(extra: &[&str]) -> Option<FakeArm> {
        let [python] = required(["MLCTL_AZ_FAKE_PY"])?;
        Some(FakeArm::spawn(&python, None, extra))
    }

    fn spawn(python: &str, blob_url: Option<&str>, extra: &[&str]) -> FakeArm {
        let dir = tempfile::Builder::new()
            .prefix("mlctl-fake-arm-")
            .tempdir()
            .expect("create the fake's temp dir");
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("stderr log");
        // Jobs run on this machine; a built-in's command is `mlctl __train-builtin`: the mlctl
        // of this build (beside the test binary's `deps/`) comes first on the fake's PATH.
        let mut path = std::env::var("PATH").unwrap_or_default();
        if let Some(bin) = std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
            .filter(|dir| dir.join("mlctl").is_file())
        {
            path = format!("{}:{path}", bin.display());
        }
        let mut child = Command::new(python)
            .env("PATH", path)
            .arg(fake_script())
            .args(["--port", "0"])
            .args(blob_url.map(|b| ["--blob-url", b]).into_iter().flatten())
            .arg("--violations")
            .arg(dir.path().join("violations.jsonl"))
            .arg("--work-dir")
            .arg(dir.path().join("jobs"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .unwrap_or_else(|e| panic!("MLCTL_AZ_FAKE_PY={python} does not run: {e}"));
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        // The fake prints its URL once it accepts connections (port 0: the OS picked a free one).
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut line = String::new();
            let read = stdout.read_line(&mut line);
            let _ = tx.send((read.map(|_| line), ()));
            stdout
        });
        let first = rx.recv_timeout(Duration::from_secs(60));
        let log = |dir: &Path| std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
        let line = match first {
            Ok((Ok(line), ())) if line.contains("listening on ") => line,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the fake ARM server did not start ({other:?}); its stderr:\n{}",
                    tail(&log(dir.path()), 40)
                );
            }
        };
        let stdout = reader.join().expect("stdout reader");
        let url = line
            .trim()
            .rsplit("listening on ")
            .next()
            .unwrap_or_default()
            .to_string();
        let fake = FakeArm {
            child,
            url,
            blob_url: blob_url.map(str::to_string),
            dir,
            _stdout: stdout,
        };
        let (status, _) = fake.control("GET", "/fake/health", None);
        assert_eq!(status, 200, "the fake does not answer /fake/health");
        fake
    }

    /// `http://127.0.0.1:<port>`: the target's `endpointUrl`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The blob account the fake reads inputs from and writes outputs to (`MLCTL_AZURITE_URL`).
    ///
    /// # Panics
    /// On a fake from [`FakeArm::start_arm_only`], which has none.
    #[track_caller]
    pub fn blob_url(&self) -> &str {
        self.blob_url
            .as_deref()
            .expect("this fake was started with start_arm_only: it has no blob storage")
    }

    /// The fields of an azureml target for workspace `ws` of this fake, with its storage in
    /// container `container` of the blob emulator under `prefix`. Credentials (`sas`,
    /// `credential`) are the caller's to add.
    pub fn target_fields(
        &self,
        ws: &str,
        container: &str,
        prefix: &str,
    ) -> Vec<(&'static str, String)> {
        vec![
            ("provider", "azureml".into()),
            ("subscription", SUBSCRIPTION.into()),
            ("resourceGroup", RESOURCE_GROUP.into()),
            ("workspace", ws.into()),
            (
                "storage",
                format!("{}/{container}/{prefix}", self.blob_url()),
            ),
            ("endpointUrl", self.url.clone()),
            ("emulator", "fake-arm".into()),
        ]
    }

    /// [`FakeArm::target_fields`] as the spec's target (fails loudly if a name drifts).
    pub fn target(&self, ws: &str, container: &str, prefix: &str) -> mlctl_spec::Target {
        let fields: serde_json::Map<String, Value> = self
            .target_fields(ws, container, prefix)
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::String(v)))
            .collect();
        serde_json::from_value(Value::Object(fields))
            .expect("the fake's target is an azureml target")
    }

    /// [`FakeArm::target_fields`] as YAML lines (`key: value`), for an `mlctl.yaml`; indent
    /// them under the target's name.
    pub fn target_yaml(&self, ws: &str, container: &str, prefix: &str) -> String {
        self.target_fields(ws, container, prefix)
            .into_iter()
            .map(|(k, v)| format!("{k}: {v}\n"))
            .collect()
    }

    /// `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}`.
    pub fn workspace_path(sub: &str, rg: &str, ws: &str) -> String {
        format!(
            "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}"
        )
    }

    /// Every contract violation so far, one line each (`PUT /…/jobs/x: $.properties.code_id:
    /// unknown field …`): bodies that broke Microsoft's models, wrong api-versions, routes the
    /// fake does not know.
    pub fn violations(&self) -> Vec<String> {
        let text =
            std::fs::read_to_string(self.dir.path().join("violations.jsonl")).unwrap_or_default();
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let entry: Value =
                serde_json::from_str(line).unwrap_or_else(|e| json!({"bad": e.to_string()}));
            let head = format!(
                "{} {}",
                entry["method"].as_str().unwrap_or("?"),
                entry["path"].as_str().unwrap_or("?")
            );
            for v in entry["violations"].as_array().into_iter().flatten() {
                out.push(format!("{head}: {}", v.as_str().unwrap_or_default()));
            }
        }
        out
    }

    /// Panics, listing them, when any request broke the contract, or when the fake itself
    /// hit a bug (a traceback on its stderr: it answered 500 and the test proves nothing).
    #[track_caller]
    pub fn assert_contract_clean(&self) {
        let v = self.violations();
        assert!(
            v.is_empty(),
            "{} request(s) broke the Azure ML REST contract (azure-ai-ml 1.35.2 models):\n  {}",
            v.len(),
            v.join("\n  ")
        );
        let stderr = self.stderr();
        assert!(
            !stderr.contains("Traceback"),
            "the fake ARM server failed (a bug in providers/azureml/fake, not in the provider):\n{}",
            tail(&stderr, 40)
        );
    }

    /// Every request received so far, in order (control calls under `/fake/` excluded).
    pub fn requests(&self) -> Vec<Recorded> {
        let (status, body) = self.control("GET", "/fake/requests", None);
        assert_eq!(status, 200, "GET /fake/requests: {body}");
        serde_json::from_value(body).expect("the fake's request records")
    }

    /// The requests whose method is `method` and whose path ends with `suffix`.
    pub fn requests_to(&self, method: &str, suffix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.ends_with(suffix))
            .collect()
    }

    /// Inject a fault (see [`Fault`]).
    pub fn fault(&self, fault: Fault) {
        let mut body =
            json!({"match": fault.matches, "status": fault.status, "times": fault.times});
        if let Some(s) = fault.retry_after {
            body["retryAfter"] = json!(s);
        }
        let (status, reply) = self.control("POST", "/fake/faults", Some(&body));
        assert_eq!(status, 201, "POST /fake/faults: {reply}");
    }

    /// Make the long-running operation started by the next request matching `matches` (an
    /// online endpoint or deployment PUT) end `Failed` with this ARM error.
    pub fn fail_operation(&self, matches: &str, code: &str, message: &str) {
        let body = json!({"match": matches, "operation": "Failed", "times": 1, "code": code, "message": message});
        let (status, reply) = self.control("POST", "/fake/faults", Some(&body));
        assert_eq!(status, 201, "POST /fake/faults: {reply}");
    }

    /// Change the tracked resources whose key (`onlineEndpoints/<name>/deployments/<name>`)
    /// matches the regex `matches` (case-insensitive) behind the client's back, as Azure or a
    /// person would: `change` sets `provisioningState` and/or `capacity`. Returns how many
    /// resources changed.
    pub fn set_state(&self, matches: &str, change: Value) -> usize {
        let mut body = change;
        body["match"] = json!(matches);
        let (status, reply) = self.control("POST", "/fake/state", Some(&body));
        assert_eq!(status, 200, "POST /fake/state: {reply}");
        reply["changed"].as_array().map_or(0, Vec::len)
    }

    /// Forget every resource, run, request, fault and violation record (the violations file
    /// is kept: a test cannot hide one by resetting).
    pub fn reset(&self) {
        let (status, reply) = self.control("POST", "/fake/reset", Some(&json!({})));
        assert_eq!(status, 200, "POST /fake/reset: {reply}");
    }

    /// The stdout and stderr of a job the fake ran (for a failing test's message).
    pub fn job_log(&self, job: &str) -> Option<String> {
        let (status, body) = self.control("GET", &format!("/fake/jobs/{job}/log"), None);
        (status == 200).then(|| body.as_str().map(str::to_string).unwrap_or_default())
    }

    /// The fake's own stderr so far (its tracebacks, if it has a bug).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// One blocking HTTP/1.1 call to the fake's control API: (status, JSON body, or the text
    /// as a JSON string when it is not JSON).
    fn control(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let host = self.url.trim_start_matches("http://");
        let mut stream = TcpStream::connect(host)
            .unwrap_or_else(|e| panic!("the fake at {} does not answer: {e}", self.url));
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("read timeout");
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
            payload.len()
        );
        stream.write_all(request.as_bytes()).expect("write request");
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).expect("read reply");
        let reply = String::from_utf8_lossy(&reply);
        let (head, text) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let value = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()));
        (status, value)
    }
}

impl Drop for FakeArm {
    fn drop(&mut self) {
        // SIGTERM first: the fake stops the jobs it runs (their own process groups) and exits.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The values of `names`, or `None` after a visible note (a panic under `CI=true`) naming
/// the missing ones.
fn required<const N: usize>(names: [&str; N]) -> Option<[String; N]> {
    let values = names.map(env_nonempty);
    let missing: Vec<&str> = names
        .iter()
        .zip(&values)
        .filter(|(_, v)| v.is_none())
        .map(|(n, _)| *n)
        .collect();
    if missing.is_empty() {
        return Some(values.map(Option::unwrap_or_default));
    }
    let how = "eval \"$(.ci/azureml-fake.sh env)\" and eval \"$(.ci/azurite.sh start)\"";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{} not set and CI=true: the fake ARM server must run in CI ({how})",
            missing.join(" and ")
        );
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Straight to stderr, past the harness's capture: a skip must be visible.
        let _ = writeln!(
            std::io::stderr(),
            "fake ARM tests skipped: {} not set; {how}",
            missing.join(" and ")
        );
    });
    None
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
