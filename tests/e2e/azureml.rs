//! The azureml target, driven through the CLI, against the fake ARM server
//! (`providers/azureml/fake`, every request body checked against Microsoft's own models) and
//! Azurite (Blob Storage, SAS signatures really checked).
//!
//! Needs `MLCTL_AZURITE_URL` (`eval "$(.ci/azurite.sh start)"`) and `MLCTL_AZ_FAKE_PY` (the
//! python of the venv with azure-ai-ml: `eval "$(.ci/azureml-fake.sh env)"`); without them
//! the tests say why and pass, except under `CI=true`, where a missing emulator fails them.

use crate::common::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

#[path = "../../providers/azureml/tests/common/sas.rs"]
#[allow(dead_code)]
mod sas;

/// A fake ARM server of its own (one per test: it keeps its workspaces in memory) in front
/// of the shared Azurite.
pub(crate) struct AzureEmu {
    child: Child,
    /// The fake's base URL (the target's `endpointUrl`).
    pub arm_url: String,
    /// Azurite's account URL.
    pub blob_url: String,
    dir: tempfile::TempDir,
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().trim_end_matches('/').to_string())
        .filter(|v| !v.is_empty())
}

/// The emulators, or `None` (with a note) when the tests should skip.
pub(crate) fn azure_emulators() -> Option<AzureEmu> {
    let (Some(blob_url), Some(python)) = (
        env_nonempty("MLCTL_AZURITE_URL"),
        env_nonempty("MLCTL_AZ_FAKE_PY"),
    ) else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "MLCTL_AZURITE_URL or MLCTL_AZ_FAKE_PY is not set and CI=true: Azurite and the fake ARM server's venv must be there in CI (.ci/run sets them up)"
            );
        }
        eprintln!(
            "skipped: MLCTL_AZURITE_URL or MLCTL_AZ_FAKE_PY is not set; run: eval \"$(.ci/azurite.sh start)\"; .ci/azureml-fake.sh install; eval \"$(.ci/azureml-fake.sh env)\""
        );
        return None;
    };
    let dir = tempfile::Builder::new()
        .prefix("mlctl-e2e-fake-arm-")
        .tempdir()
        .unwrap();
    // Jobs run on this machine: the built-ins' `mlctl __train-builtin` is this build.
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_mlctl")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
    let mut child = Command::new(&python)
        .arg(repo_root().join("providers/azureml/fake/fake_arm.py"))
        .args(["--port", "0", "--blob-url", &blob_url, "--violations"])
        .arg(dir.path().join("violations.jsonl"))
        .arg("--work-dir")
        .arg(dir.path().join("jobs"))
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .spawn()
        .unwrap_or_else(|e| panic!("MLCTL_AZ_FAKE_PY={python} does not run: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let Some(arm_url) = line
        .trim()
        .rsplit("listening on ")
        .next()
        .filter(|u| u.starts_with("http"))
    else {
        let _ = child.kill();
        panic!(
            "the fake ARM server did not start: {line}\n{}",
            std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default()
        );
    };
    Some(AzureEmu {
        arm_url: arm_url.to_string(),
        child,
        blob_url,
        dir,
    })
}

impl AzureEmu {
    /// A new container in Azurite, for one project's target.
    pub(crate) fn container(&self, hint: &str) -> String {
        let name: String = format!("e2e-{hint}-{}", std::process::id())
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let name = format!(
            "{}-{:x}",
            &name[..name.len().min(40)],
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let url = format!(
            "{}/{name}?restype=container&{}",
            self.blob_url,
            sas::azurite_sas()
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let status = rt.block_on(async {
            reqwest::Client::new()
                .put(&url)
                .header("x-ms-version", "2021-08-06")
                .header("content-length", "0")
                .send()
                .await
                .map(|r| r.status().as_u16())
        });
        assert!(
            matches!(status, Ok(201) | Ok(409)),
            "create container {name} in Azurite: {status:?}"
        );
        name
    }

    /// The target block (indented as under `targets:`) of an azureml target on the fake.
    pub(crate) fn target_block(&self, target: &str, workspace: &str, container: &str) -> String {
        format!(
            "    {target}:\n      provider: azureml\n      subscription: 00000000-0000-0000-0000-000000000000\n      resourceGroup: mlctl-e2e\n      workspace: {workspace}\n      storage: {}/{container}/mlctl\n      sas: ${{env:MLCTL_AZ_SAS}}\n      endpointUrl: {}\n      emulator: fake-arm\n",
            self.blob_url, self.arm_url
        )
    }

    /// Runs mlctl in `p` against the emulators (the SAS in the environment, fast polling).
    pub(crate) fn run(&self, p: &TestProject, args: &[&str]) -> Run {
        let out = mlctl()
            .args(args)
            .current_dir(p.path())
            .env("MLCTL_AZ_SAS", sas::azurite_sas())
            .env("MLCTL_AZ_POLL_MS", "50")
            .env("MLCTL_AZ_BACKOFF_MS", "10")
            .output()
            .unwrap();
        Run::from(out)
    }

    fn control(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut req = reqwest::Client::new().request(method, format!("{}{path}", self.arm_url));
            if let Some(b) = body {
                req = req.json(&b);
            }
            let res = req.send().await.expect("the fake answers");
            let status = res.status();
            let text = res.text().await.unwrap_or_default();
            assert!(status.is_success(), "{path}: {status} {text}");
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
        })
    }

    /// The ARM ids of the online deployments mlctl created.
    pub(crate) fn deployments(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .control(reqwest::Method::GET, "/fake/requests", None)
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["method"] == "PUT")
            .filter_map(|r| r["path"].as_str())
            .filter(|p| p.contains("/onlineEndpoints/") && p.contains("/deployments/"))
            .map(|p| p.split('?').next().unwrap_or(p).to_string())
            .collect();
        ids.dedup();
        ids
    }

    /// Writes what the deployment's data collector would for these requests (the fake
    /// serves no scoring): one input row and one prediction each.
    pub(crate) fn capture(&self, deployment: &str, rows: &[serde_json::Value], prediction: &str) {
        let requests: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| serde_json::json!({"inputs": [r], "outputs": [prediction]}))
            .collect();
        self.control(
            reqwest::Method::POST,
            "/fake/capture",
            Some(serde_json::json!({"deployment": deployment, "requests": requests})),
        );
    }

    /// Fails, listing them, when a request mlctl sent broke Microsoft's models.
    #[track_caller]
    pub(crate) fn assert_contract_clean(&self) {
        let v =
            std::fs::read_to_string(self.dir.path().join("violations.jsonl")).unwrap_or_default();
        assert!(
            v.trim().is_empty(),
            "requests that break the Azure ML contract:\n{}",
            v.lines().take(20).collect::<Vec<_>>().join("\n")
        );
        let stderr =
            std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default();
        assert!(
            !stderr.contains("Traceback"),
            "the fake ARM server crashed on a request:\n{}",
            &stderr[stderr.len().saturating_sub(4000)..]
        );
    }
}

impl Drop for AzureEmu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the azureml target cannot do yet is refused at plan, at the field, before anything
/// is created: iris's rollback thresholds (nothing reads Azure Monitor's metrics).
#[test]
fn iris_unchanged_is_refused_on_azureml_where_the_target_cannot_honour_it() {
    let Some(az) = azure_emulators() else { return };
    let p = TestProject::example("iris");
    let container = az.container("iris-refused");
    p.replace(
        "mlctl.yaml",
        "  targets:\n",
        &format!(
            "  targets:\n{}",
            az.target_block("fake", "iris-ws", &container)
        ),
    );
    let p = p.into_git();
    let plan = az.run(&p, &["plan", "--target", "fake"]);
    assert_eq!(plan.code, 1, "{}\n{}", plan.stdout, plan.stderr);
    for (field, at) in [
        ("strategy.rollback.maxErrorRate", "ml/endpoint.yaml:14:21"),
        (
            "strategy.rollback.maxP99LatencyMs",
            "ml/endpoint.yaml:15:24",
        ),
    ] {
        assert!(
            plan.stderr.contains(&format!("does not honour `{field}`")) && plan.stderr.contains(at),
            "{field} at {at}:\n{}",
            plan.stderr
        );
    }
    assert!(
        plan.stderr.contains("nothing was changed"),
        "{}",
        plan.stderr
    );
}

/// The iris example on the fake, without the rollback thresholds the target refuses: apply trains for
/// real (mlctl's own trainer in the job, so its metrics are measured and its gates judged),
/// registers the version, rolls the canary out on a managed online endpoint; a second plan
/// has nothing to do; destroy removes it all. Every body sent keeps to Microsoft's models.
#[test]
fn iris_applies_on_azureml_against_the_fake_arm_server() {
    let Some(az) = azure_emulators() else { return };
    let p = TestProject::example("iris");
    p.replace(
        "ml/endpoint.yaml",
        "    rollback:\n      maxErrorRate: 0.05\n      maxP99LatencyMs: 100\n",
        "",
    );
    let container = az.container("iris");
    p.replace(
        "mlctl.yaml",
        "  targets:\n",
        &format!(
            "  targets:\n{}",
            az.target_block("fake", "iris-ws", &container)
        ),
    );
    let p = p.into_git();
    let run = |args: &[&str]| az.run(&p, args);
    run(&["validate", "--target", "fake"]).expect_code(0);
    let apply = run(&["apply", "--target", "fake", "--auto-approve"]);
    assert_eq!(apply.code, 0, "apply\n{}\n{}", apply.stdout, apply.stderr);
    let again = run(&["plan", "--target", "fake", "--detailed-exitcode"]);
    assert!(
        again.code == 0 && again.stdout.starts_with("No changes."),
        "{}\n{}",
        again.stdout,
        again.stderr
    );
    let models = run(&["models", "show", "iris", "--target", "fake"]);
    assert!(
        models.code == 0 && !models.stdout.contains("NOT MEASURED"),
        "the fake runs the job for real: its metrics are measured\n{}\n{}",
        models.stdout,
        models.stderr
    );

    // Monitoring reads the data collector's files from blob storage and judges them with the
    // same code as on local: traffic like the training data passes, a shifted feature breaches.
    let deployment = az.deployments().pop().expect("a deployment was created");
    let rows: Vec<serde_json::Value> = p
        .read("data/iris.csv")
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Vec<f64> = l.split(',').take(4).map(|x| x.parse().unwrap()).collect();
            serde_json::json!({"sepal_length": v[0], "sepal_width": v[1], "petal_length": v[2], "petal_width": v[3]})
        })
        .collect();
    az.capture(&deployment, &rows, "setosa");
    let healthy = run(&["monitor", "run", "iris-drift", "--target", "fake"]);
    assert_eq!(healthy.code, 0, "{}\n{}", healthy.stdout, healthy.stderr);
    let shifted: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r["petal_length"] = serde_json::json!(r["petal_length"].as_f64().unwrap() + 4.0);
            r
        })
        .collect();
    az.capture(&deployment, &shifted, "virginica");
    az.capture(&deployment, &shifted, "virginica");
    az.capture(&deployment, &shifted, "virginica");
    let breach = run(&[
        "monitor",
        "run",
        "iris-drift",
        "--target",
        "fake",
        "--window",
        "300",
    ]);
    assert_eq!(breach.code, 1, "{}\n{}", breach.stdout, breach.stderr);
    assert!(breach.stdout.contains("petal_length"), "{}", breach.stdout);

    run(&["destroy", "--target", "fake", "--auto-approve"]).expect_code(0);
    az.assert_contract_clean();
}
