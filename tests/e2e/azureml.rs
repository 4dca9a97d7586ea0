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
        // An operation is done after one status read or a second, whichever comes first
        // (an endpoint's traffic PUT is not followed: its next GET shows it settled).
        .args(["--lro-seconds", "1"])
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

    /// The `traffic` of the last online endpoint body mlctl sent (what serves now).
    pub(crate) fn last_traffic(&self) -> serde_json::Value {
        self.control(reqwest::Method::GET, "/fake/requests", None)
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["method"] == "PUT" && r["status"].as_u64().is_some_and(|s| s < 300))
            .rfind(|r| {
                r["path"].as_str().is_some_and(|p| {
                    let p = p.split('?').next().unwrap_or(p);
                    p.rsplit_once("/onlineEndpoints/")
                        .is_some_and(|(_, name)| !name.contains('/'))
                })
            })
            .map(|r| r["body"]["properties"]["traffic"].clone())
            .unwrap_or_default()
    }

    /// Whether mlctl sent a `DELETE` of a resource whose path ends with `suffix`.
    pub(crate) fn deleted(&self, suffix: &str) -> bool {
        self.requested("DELETE", suffix)
    }

    /// Whether mlctl sent a `method` request whose path ends with `suffix`.
    pub(crate) fn requested(&self, method: &str, suffix: &str) -> bool {
        self.control(reqwest::Method::GET, "/fake/requests", None)
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["method"] == method)
            .filter_map(|r| r["path"].as_str())
            .any(|p| p.split('?').next().unwrap_or(p).ends_with(suffix))
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

    /// Records, in the fake's Azure Monitor metrics, `requests` answered with `status` in
    /// `latency_ms` by the one deployment whose key matches `matches` (the fake serves no
    /// scoring: this is the traffic Azure would count). False, recording nothing, while no
    /// deployment matches yet.
    pub(crate) fn traffic(
        &self,
        matches: &str,
        requests: u32,
        status: u16,
        latency_ms: f64,
    ) -> bool {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let body = serde_json::json!({"match": matches, "requests": requests, "status": status, "latencyMs": latency_ms});
            let res = reqwest::Client::new()
                .post(format!("{}/fake/traffic", self.arm_url))
                .json(&body)
                .send()
                .await
                .expect("the fake answers");
            res.status().is_success()
        })
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

/// What the azureml target cannot do is refused at plan, at the field, before anything is
/// created: a CloudWatch alarm (SageMaker's) among iris's rollback thresholds.
#[test]
fn a_field_azureml_cannot_honour_is_refused_at_plan_at_its_position() {
    let Some(az) = azure_emulators() else { return };
    let p = TestProject::example("iris");
    p.replace(
        "ml/endpoint.yaml",
        "      maxP99LatencyMs: 100\n",
        "      maxP99LatencyMs: 100\n      alarms: [iris-5xx]\n",
    );
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
    assert!(
        plan.stderr
            .contains("does not honour `strategy.rollback.alarms`")
            && plan.stderr.contains("ml/endpoint.yaml:16:15")
            && plan.stderr.contains("CloudWatch"),
        "{}",
        plan.stderr
    );
    assert!(
        plan.stderr.contains("nothing was changed"),
        "{}",
        plan.stderr
    );
}

/// The iris example on the fake, unchanged (its canary's rollback thresholds are judged on
/// Azure Monitor's metrics): apply trains for real (mlctl's own trainer in the job, so its metrics are measured and its gates judged),
/// registers the version, rolls the canary out on a managed online endpoint; a second plan
/// has nothing to do; destroy removes it all. Every body sent keeps to Microsoft's models.
#[test]
fn iris_applies_on_azureml_against_the_fake_arm_server() {
    let Some(az) = azure_emulators() else { return };
    let p = TestProject::example("iris");
    // SLOs, judged on the endpoint's Azure Monitor metrics (the capture has no latencies).
    p.replace(
        "ml/monitor.yaml",
        "  quality: {}\n",
        "  quality: {}\n  slo: {maxErrorRate: 0.05, p99LatencyMs: 100}\n",
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
    assert!(az.traffic("/deployments/iris-v1$", 150, 200, 8.0));
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
    // 5xx answers past the SLO's error rate: a breach of the SLO too.
    assert!(az.traffic("/deployments/iris-v1$", 60, 503, 8.0));
    let slo = run(&["monitor", "run", "iris-drift", "--target", "fake"]);
    assert_eq!(slo.code, 1, "{}\n{}", slo.stdout, slo.stderr);
    assert!(
        slo.stdout.contains("slo: maxErrorRate"),
        "{}\n{}",
        slo.stdout,
        slo.stderr
    );

    run(&["destroy", "--target", "fake", "--auto-approve"]).expect_code(0);
    az.assert_contract_clean();
}

/// A canary on azureml is judged on Azure Monitor's metrics of its deployment, as on every
/// other target: v2 answering 5xx to its requests is rolled back at once (v1 serves all
/// traffic again, v2's deployment is deleted, the apply fails saying why); v3, with healthy
/// traffic, is promoted once Azure Monitor counted its `minRequests`.
#[test]
fn an_azureml_canary_is_judged_on_its_azure_monitor_metrics() {
    let Some(az) = azure_emulators() else { return };
    let p = TestProject::example("iris");
    p.replace(
        "ml/endpoint.yaml",
        "    bakeTime: 30s\n",
        "    bakeTime: 1s\n",
    );
    p.replace(
        "ml/endpoint.yaml",
        "    minRequests: 0\n",
        "    minRequests: 20\n    maxBakeTime: 240s\n",
    );
    let container = az.container("iris-canary");
    p.replace(
        "mlctl.yaml",
        "  targets:\n",
        &format!(
            "  targets:\n{}",
            az.target_block("fake", "iris-canary-ws", &container)
        ),
    );
    let p = p.into_git();
    // `mlctl apply` of version `v` while the fake records `status` answers of its deployment
    // (none before it exists; some may land before its split, which Azure counts the same).
    let apply_with_traffic = |v: u32, status: u16| {
        let mut apply = mlctl()
            .args(["apply", "--target", "fake", "--auto-approve"])
            .current_dir(p.path())
            .env("MLCTL_AZ_SAS", sas::azurite_sas())
            .env("MLCTL_AZ_POLL_MS", "50")
            .env("MLCTL_AZ_BACKOFF_MS", "10")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let t0 = std::time::Instant::now();
        while apply.try_wait().unwrap().is_none() {
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(300),
                "the rollout did not end"
            );
            az.traffic(&format!("/deployments/iris-v{v}$"), 4, status, 8.0);
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Run::from(apply.wait_with_output().unwrap())
    };
    az.run(&p, &["apply", "--target", "fake", "--auto-approve"])
        .expect_code(0);
    let retrain = |c: &str| {
        p.replace("ml/train.yaml", "C: 1.0", c);
        p.commit_all(&format!("{c}: a new version"));
    };

    retrain("C: 0.5");
    let failing = apply_with_traffic(2, 500);
    assert_eq!(failing.code, 1, "{}\n{}", failing.stdout, failing.stderr);
    for said in [
        "rollout of iris v2 was rolled back",
        "to v2 is above maxErrorRate 5.0%",
        "iris-v1 serves all traffic again and iris-v2 was deleted",
    ] {
        assert!(failing.stderr.contains(said), "{said}:\n{}", failing.stderr);
    }
    assert!(
        az.deleted("/deployments/iris-v2"),
        "v2's deployment is deleted"
    );
    assert_eq!(az.last_traffic(), serde_json::json!({"iris-v1": 100}));

    p.replace("ml/train.yaml", "C: 0.5", "C: 1.0");
    retrain("C: 0.25");
    let healthy = apply_with_traffic(3, 200);
    assert_eq!(healthy.code, 0, "{}\n{}", healthy.stdout, healthy.stderr);
    assert!(
        az.requested(
            "GET",
            "/deployments/iris-v3/providers/Microsoft.Insights/metrics"
        ),
        "the promotion was judged on Azure Monitor's metrics"
    );
    assert_eq!(az.last_traffic(), serde_json::json!({"iris-v3": 100}));
    az.run(&p, &["destroy", "--target", "fake", "--auto-approve"])
        .expect_code(0);
    az.assert_contract_clean();
}

/// A tuned script on azureml is compared on validation rows, never on the test rows: the
/// script scores itself against 1 on `validation` and against 2 on `test`, so trials that read
/// the test rows would choose alpha 2. The trials (run by `.mlctl/trial.py` in the fake's
/// jobs, reporting through MLflow) choose alpha 1; the chosen candidate is trained again on
/// `train` and `test`, where it scores |1 - 2| = 1, and that is what its Model records.
#[test]
fn a_tuned_script_on_azureml_compares_its_trials_on_validation_rows() {
    let Some(az) = azure_emulators() else { return };
    let p = TestProject::empty();
    let container = az.container("tuned-script");
    p.write(
        "mlctl.yaml",
        &format!(
            "apiVersion: mlctl/v1\nkind: Project\nmetadata:\n  name: tunedscript\nspec:\n  manifests: [ml/]\n  targets:\n{}",
            az.target_block("fake", "tuned-ws", &container)
        ),
    );
    let mut csv = String::from("x,y\n");
    for i in 0..100 {
        csv.push_str(&format!("{i},{}\n", i * 2));
    }
    p.write("data/d.csv", &csv);
    p.write(
        "ml/all.yaml",
        "apiVersion: mlctl/v1\nkind: Dataset\nmetadata:\n  name: d\nspec:\n  source: data/d.csv\n  target: y\n  split: {train: 0.8, test: 0.2, seed: 3}\n---\napiVersion: mlctl/v1\nkind: TrainingJob\nmetadata:\n  name: t\nspec:\n  dataset: d\n  command: python3 score.py\n  code: src/\n  hyperparameters: {alpha: 0}\n  metrics:\n    - {name: score, regex: 'score=([0-9.]+)', goal: minimize}\n    - {name: rows, regex: 'rows=([0-9]+)', goal: maximize}\n  tuning:\n    strategy: grid\n    objective: {metric: score, goal: minimize}\n    searchSpace:\n      alpha: {values: [1, 2]}\n---\napiVersion: mlctl/v1\nkind: Model\nmetadata:\n  name: m\nspec:\n  from: t\n  approval: auto\n  gates:\n    - {metric: score, max: 5}\n",
    );
    p.write(
        "src/score.py",
        r#"import json, os
hps = json.loads(os.environ["SM_HPS"])
alpha = float(hps["alpha"])
channel, target = ("validation", 1.0) if os.environ.get("SM_CHANNEL_VALIDATION") else ("test", 2.0)
with open(os.path.join(os.environ["SM_CHANNEL_" + channel.upper()], channel + ".csv")) as f:
    rows = sum(1 for _ in f) - 1
print("scored on %s: rows=%d" % (channel, rows))
print("score=%s" % abs(alpha - target))
with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w") as f:
    f.write(str(alpha))
"#,
    );
    let p = p.into_git();
    let run = |args: &[&str]| az.run(&p, args);
    let apply = run(&["apply", "--target", "fake", "--auto-approve"]);
    assert_eq!(apply.code, 0, "apply\n{}\n{}", apply.stdout, apply.stderr);
    let show = run(&["models", "show", "m", "--target", "fake", "-o", "json"]).expect_code(0);
    let v: serde_json::Value =
        serde_json::from_str(&show.stdout).unwrap_or_else(|e| panic!("{e}: {}", show.stdout));
    let text = v.to_string();
    let version = v
        .get("versions")
        .and_then(|vs| vs.as_array())
        .and_then(|vs| vs.last())
        .unwrap_or(&v);
    let metrics = version
        .get("metrics")
        .unwrap_or_else(|| panic!("no metrics: {text}"));
    assert_eq!(
        metrics["score"], 1.0,
        "the chosen alpha is 1 (from validation) scored on test: {text}"
    );
    assert_eq!(metrics["rows"], 20.0, "scored on the 20 test rows: {text}");
    let runs = run(&["runs", "list", "--target", "fake", "-o", "json"]).expect_code(0);
    let runs: serde_json::Value = serde_json::from_str(&runs.stdout).unwrap();
    let trials: Vec<(String, f64)> = runs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["parent"].is_string())
        .map(|r| {
            (
                r["params"]["alpha"].to_string(),
                r["metrics"]["score"].as_f64().unwrap_or(-1.0),
            )
        })
        .collect();
    assert_eq!(trials.len(), 2, "{runs:#}");
    assert!(
        trials.contains(&("1".into(), 0.0)) && trials.contains(&("2".into(), 1.0)),
        "each trial scored on validation rows: {trials:?}"
    );
    let again = run(&["plan", "--target", "fake", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    run(&["destroy", "--target", "fake", "--auto-approve"]).expect_code(0);
    az.assert_contract_clean();
}
