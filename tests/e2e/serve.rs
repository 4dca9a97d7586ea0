//! Serving end to end: `mlctl serve` and `mlctl predict` as processes, and the local deployer
//! supervising real `mlctl serve` processes (the built binary) on 127.0.0.1 with OS-assigned
//! ports. Nothing here depends on timing for pass/fail: every wait is bounded and generous.

use crate::common::{TestProject, endpoint_pids, have_python, kill_endpoints, mlctl, repo_root};
use mlctl_core::{
    DeployState, Deployer, EndpointRequest, Health, ModelVersion, MonitorSink, OpContext,
};
use mlctl_provider_local::deployer::LocalDeployer;
use mlctl_serve::client::{Client, Response};
use mlctl_spec::{EndpointSpec, Stage};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(300);

/// Trains the iris logistic regression into `dir` (a portable model directory).
fn iris_model(dir: &Path) -> PathBuf {
    let table = mlctl_ml::table::read_csv(repo_root().join("examples/iris/data/iris.csv"))
        .expect("iris.csv");
    let hp = Default::default();
    let model = mlctl_ml::train(mlctl_ml::TrainRequest {
        algorithm: mlctl_spec::Algorithm::LogisticRegression,
        hyperparameters: &hp,
        train: &table,
        validation: None,
        target: Some("species"),
        seed: 42,
        schema: None,
    })
    .expect("trains");
    model.save(dir).expect("saves");
    dir.to_path_buf()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn post(url: &str, ct: &str, body: &str, extra: &[(&str, &str)]) -> Result<Response, String> {
    let mut h = vec![("content-type", ct)];
    h.extend_from_slice(extra);
    Client::new()
        .send(
            "POST",
            &format!("{url}/invocations"),
            &h,
            body.to_string().into(),
            Duration::from_secs(60),
        )
        .await
        .map_err(|e| e.to_string())
}

fn json_of(r: &Response) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.text()))
}

/// An `mlctl serve` child, killed on drop.
struct ServeProcess {
    child: Child,
    url: String,
}

impl ServeProcess {
    fn start(args: &[&str], env: &[(&str, &str)]) -> ServeProcess {
        let port = free_port();
        let mut cmd = mlctl();
        cmd.arg("serve")
            .args(args)
            .args(["--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("mlctl serve starts");
        let url = format!("http://127.0.0.1:{port}");
        let p = ServeProcess { child, url };
        rt().block_on(async {
            let t0 = Instant::now();
            loop {
                if let Ok(r) = Client::new()
                    .get(&format!("{}/ping", p.url), &[], Duration::from_secs(5))
                    .await
                    && r.status == 200
                {
                    break;
                }
                assert!(t0.elapsed() < LIMIT, "mlctl serve did not come up");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        p
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn serve_a_model_dir_and_predict_from_the_command_line() {
    let p = TestProject::empty();
    let model = iris_model(&p.path().join("model"));
    let server = ServeProcess::start(&["--model-dir", model.to_str().unwrap()], &[]);
    rt().block_on(async {
        let r = post(&server.url, "application/json", r#"{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}"#, &[]).await.unwrap();
        assert_eq!(json_of(&r), json!({"predictions": ["setosa", "virginica"]}));
        let r = post(&server.url, "application/json", r#"{"dataframe_split": {"columns": ["sepal_length", "sepal_width", "petal_length", "petal_width"], "data": [[5.1, 3.5, 1.4, 0.2]]}}"#, &[]).await.unwrap();
        assert_eq!(json_of(&r)["predictions"], json!(["setosa"]));
        let r = post(&server.url, "application/json", r#"{"instances": [[5.1, 3.5, 1.4]]}"#, &[]).await.unwrap();
        assert_eq!(r.status, 400);
        assert!(json_of(&r)["message"].as_str().unwrap().contains("the model takes 4"), "{}", r.text());
    });
    // `mlctl predict URL --data file.csv` with the dataset file itself (header, label column).
    let out = p
        .mlctl(&[
            "predict",
            &server.url,
            "--data",
            repo_root()
                .join("examples/iris/data/iris.csv")
                .to_str()
                .unwrap(),
        ])
        .expect_code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 150);
    assert_eq!(lines[0], "setosa");
    assert_eq!(lines[149], "virginica");
    p.write("bad.csv", "sepal_length,sepal_width\n1,2\n");
    let out = p
        .mlctl(&["predict", &server.url, "--data", "bad.csv"])
        .expect_code(1);
    assert!(
        out.stderr.contains("missing column `petal_length`"),
        "{}",
        out.stderr
    );
}

#[test]
fn serve_requires_the_token_from_the_environment() {
    let p = TestProject::empty();
    let model = iris_model(&p.path().join("model"));
    let server = ServeProcess::start(
        &["--model-dir", model.to_str().unwrap()],
        &[("MLCTL_SERVE_TOKEN", "t0ken")],
    );
    rt().block_on(async {
        let body = "[[5.1, 3.5, 1.4, 0.2]]";
        assert_eq!(
            post(&server.url, "application/json", body, &[])
                .await
                .unwrap()
                .status,
            401
        );
        assert_eq!(
            post(
                &server.url,
                "application/json",
                body,
                &[("authorization", "Bearer t0ken")]
            )
            .await
            .unwrap()
            .status,
            200
        );
    });
}

#[test]
fn sighup_reloads_the_config_file_and_keeps_serving_on_a_bad_one() {
    let p = TestProject::empty();
    let model = iris_model(&p.path().join("model"));
    let config = p.path().join("server.json");
    let write = |name: &str, version: &str| {
        let v = json!({"variants": [{"name": name, "model": "iris", "version": version, "weight": 100, "modelDir": model}]});
        std::fs::write(&config, v.to_string()).unwrap();
    };
    write("v1", "1");
    let server = ServeProcess::start(&["--config", config.to_str().unwrap()], &[]);
    let variants = |url: String| async move {
        let r = Client::new()
            .get(&format!("{url}/-/variants"), &[], Duration::from_secs(10))
            .await
            .unwrap();
        json_of(&r)["variants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let hup = |pid: u32| {
        std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
    };
    rt().block_on(async {
        assert_eq!(variants(server.url.clone()).await, ["v1"]);
        write("v2", "2");
        hup(server.child.id());
        let t0 = Instant::now();
        while variants(server.url.clone()).await != ["v2"] {
            assert!(t0.elapsed() < LIMIT, "SIGHUP did not reload");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A broken file is refused; the server keeps serving what it had.
        std::fs::write(&config, "{ not json").unwrap();
        hup(server.child.id());
        for _ in 0..20 {
            let r = post(&server.url, "application/json", ROW, &[])
                .await
                .unwrap();
            assert_eq!(r.status, 200);
        }
        assert_eq!(variants(server.url.clone()).await, ["v2"]);
    });
}

// ---------------------------------------------------------------------------------------------
// The local deployer

/// A target state directory with a deployer whose endpoints are stopped on drop, whatever the
/// test did.
struct Target {
    dir: tempfile::TempDir,
    deployer: LocalDeployer,
    ctx: OpContext,
    rt: tokio::runtime::Runtime,
}

impl Target {
    fn new() -> Target {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let ctx = OpContext {
            project: "p".into(),
            project_dir: dir.path().to_path_buf(),
            target: "local".into(),
            commit: "c0ffee".into(),
        };
        Target {
            deployer: LocalDeployer::new(state, PathBuf::from(env!("CARGO_BIN_EXE_mlctl"))),
            ctx,
            rt: rt(),
            dir,
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn version(&self, v: u32) -> ModelVersion {
        let dir = self.dir.path().join(format!("models/iris-{v}"));
        if !dir.exists() {
            iris_model(&dir);
        }
        version_at(v, &dir)
    }

    fn request(
        &self,
        name: &str,
        spec: serde_json::Value,
        model: &ModelVersion,
    ) -> EndpointRequest {
        let spec: EndpointSpec = serde_json::from_value(spec).expect("endpoint spec");
        let fingerprint = format!(
            "fp-{}-{}",
            model.version,
            serde_json::to_string(&spec).unwrap().len()
        );
        let tags = mlctl_core::Tags {
            project: "p".into(),
            labels: Default::default(),
            resource: format!("Endpoint/{name}"),
            fingerprint: fingerprint.clone(),
            commit: "c0ffee".into(),
        };
        EndpointRequest {
            name: name.into(),
            spec,
            model: model.clone(),
            fingerprint,
            tags,
        }
    }

    /// Deploys and polls until the rollout ends; `during` runs between polls.
    async fn roll(&self, req: &EndpointRequest, mut during: impl AsyncFnMut()) -> DeployState {
        let h = self.deployer.deploy(&self.ctx, req).await.expect("deploy");
        let t0 = Instant::now();
        loop {
            match self.deployer.poll(&self.ctx, &h).await.expect("poll") {
                DeployState::InProgress { message } => {
                    assert!(t0.elapsed() < LIMIT, "rollout stuck: {message}");
                    during().await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                s => return s,
            }
        }
    }

    fn pid(&self, name: &str) -> u32 {
        let rec: serde_json::Value = serde_json::from_slice(
            &std::fs::read(
                self.state()
                    .join("endpoints")
                    .join(name)
                    .join("endpoint.json"),
            )
            .unwrap(),
        )
        .unwrap();
        rec["pid"].as_u64().unwrap() as u32
    }

    /// The server process ids of endpoint `name`, recorded or announced.
    fn pids(&self, name: &str) -> Vec<u32> {
        endpoint_pids(&self.state().join("endpoints").join(name))
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        kill_endpoints(&self.state());
    }
}

fn version_at(v: u32, dir: &Path) -> ModelVersion {
    ModelVersion {
        model: "iris".into(),
        version: v,
        stage: Stage::Production,
        approval: mlctl_core::ApprovalStatus::Approved,
        artifact_uri: dir.to_string_lossy().into_owned(),
        metrics: Default::default(),
        fingerprint: format!("model-{v}"),
        lineage: Default::default(),
        created_at: String::new(),
    }
}

fn serving(s: &mlctl_core::EndpointStatus) -> Vec<(u32, u32)> {
    s.variants.iter().map(|v| (v.version, v.weight)).collect()
}

fn done(s: DeployState) -> mlctl_core::EndpointStatus {
    match s {
        DeployState::Done(s) => s,
        other => panic!("expected Done, got {other:?}"),
    }
}

const ROW: &str = r#"{"instances": [[5.1, 3.5, 1.4, 0.2]]}"#;

#[test]
fn kill_9_shows_degraded_and_the_next_deploy_repairs_it() {
    let t = Target::new();
    t.rt.block_on(async {
        let v1 = t.version(1);
        let req = t.request("iris", json!({"model": "iris"}), &v1);
        let s = done(t.roll(&req, async || {}).await);
        assert_eq!((s.health, serving(&s)), (Health::Healthy, vec![(1, 100)]));
        let url = s.url.clone().unwrap();
        assert_eq!(
            post(&url, "application/json", ROW, &[])
                .await
                .unwrap()
                .status,
            200
        );

        let pid = t.pid("iris");
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        // Bounded wait for the kernel to finish it off.
        let t0 = Instant::now();
        let status = loop {
            let s = t.deployer.status(&t.ctx, "iris").await.unwrap().unwrap();
            if s.health != Health::Healthy || t0.elapsed() > LIMIT {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(status.health, Health::Degraded);
        let msg = status.message.unwrap();
        assert!(
            msg.contains("not running") && msg.contains("mlctl apply"),
            "{msg}"
        );

        // The engine re-plans a degraded endpoint and deploys again: that repairs it.
        let s = done(t.roll(&req, async || {}).await);
        assert_eq!((s.health, serving(&s)), (Health::Healthy, vec![(1, 100)]));
        assert_eq!(
            s.url.as_deref(),
            Some(url.as_str()),
            "the recorded port is kept"
        );
        assert_ne!(t.pid("iris"), pid);
        assert_eq!(
            json_of(&post(&url, "application/json", ROW, &[]).await.unwrap())["predictions"],
            json!(["setosa"])
        );

        t.deployer.delete(&t.ctx, "iris").await.unwrap();
        assert!(t.deployer.status(&t.ctx, "iris").await.unwrap().is_none());
        assert!(
            post(&url, "application/json", ROW, &[]).await.is_err(),
            "the server is stopped"
        );
    });
}

/// The script-mode test server, copied into the target's project (`serve.code` must be
/// inside it); returns the directory, relative to the project.
fn script_dir(t: &Target) -> &'static str {
    let dir = t.dir.path().join("script");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        repo_root().join("crates/serve/tests/fixtures/script_server.py"),
        dir.join("script_server.py"),
    )
    .unwrap();
    "script"
}

/// Two server processes share the port, so the canary is judged on their metrics added up.
#[test]
fn canary_with_a_failing_version_rolls_back_automatically() {
    if !have_python(
        "canary_with_a_failing_version_rolls_back_automatically",
        "the whole test",
    ) {
        return;
    }
    let t = Target::new();
    t.rt.block_on(async {
        let v1 = t.version(1);
        let s = done(t.roll(&t.request("iris", json!({"model": "iris", "instances": 2}), &v1), async || {}).await);
        assert_eq!(s.instances, 2);
        let url = s.url.unwrap();
        // v2 is served by a script whose /invocations answers 500.
        let code = script_dir(&t);
        let v2 = version_at(2, &t.dir.path().join(code));
        let spec = json!({
            "model": "iris",
            "instances": 2,
            "strategy": {"type": "canary", "percent": 50, "bakeTime": "10m", "rollback": {"maxErrorRate": 0.05}},
            "serve": {"command": "FAIL=1 exec python3 script_server.py", "code": code},
        });
        let mut sent = 0;
        let state = t
            .roll(&t.request("iris", spec, &v2), async || {
                // Traffic while the canary bakes; each process sends every second request to v2.
                for _ in 0..4 {
                    let r = post(&url, "application/json", ROW, &[]).await.unwrap();
                    assert!(r.status == 200 || r.status == 500, "{}", r.text());
                    sent += 1;
                }
                assert!(sent < 20_000, "no rollback after {sent} requests");
            })
            .await;
        let DeployState::RolledBack { reason, status } = state else { panic!("expected RolledBack, got {state:?}") };
        assert!(reason.contains("maxErrorRate"), "{reason}");
        assert_eq!(serving(&status), vec![(1, 100)]);
        for _ in 0..20 {
            assert_eq!(post(&url, "application/json", ROW, &[]).await.unwrap().status, 200, "v1 serves everything again");
        }
        let live = t.deployer.status(&t.ctx, "iris").await.unwrap().unwrap();
        assert_eq!((live.health, serving(&live), live.instances), (Health::Healthy, vec![(1, 100)], 2));
    });
}

/// A change that needs new server processes (here the capture share) together with a new
/// version and a canary: the new processes start with the version that serves now, and the
/// new one is rolled out on them as a canary, not switched to at once.
#[test]
fn new_launch_settings_and_a_new_version_still_roll_out_as_a_canary() {
    let t = Target::new();
    t.rt.block_on(async {
        let (v1, v2) = (t.version(1), t.version(2));
        let before = json!({"model": "iris", "instances": 2, "capture": {"samplingPercent": 10}});
        done(t.roll(&t.request("iris", before, &v1), async || {}).await);
        let old_pids = t.pids("iris");
        assert_eq!(old_pids.len(), 2, "{old_pids:?}");
        let after = json!({
            "model": "iris",
            "instances": 2,
            "capture": {"samplingPercent": 50},
            "strategy": {"type": "canary", "percent": 20, "bakeTime": "10m", "rollback": {"maxErrorRate": 0.05}},
        });
        let h = t.deployer.deploy(&t.ctx, &t.request("iris", after, &v2)).await.expect("deploy");
        match t.deployer.poll(&t.ctx, &h).await.expect("poll") {
            DeployState::InProgress { message } => {
                assert!(message.contains("canary v2 at 20%"), "{message}")
            }
            other => panic!("expected the canary to bake, got {other:?}"),
        }
        let s = t.deployer.status(&t.ctx, "iris").await.unwrap().unwrap();
        assert_eq!(
            (s.health, serving(&s), s.instances),
            (Health::Progressing, vec![(1, 80), (2, 20)], 2)
        );
        // New processes, with the new capture share.
        let new_pids = t.pids("iris");
        assert_eq!(new_pids.len(), 2, "{new_pids:?}");
        assert!(new_pids.iter().all(|p| !old_pids.contains(p)), "{old_pids:?} -> {new_pids:?}");
        let file = mlctl_serve::config::ServeFile::read(&t.state().join("endpoints/iris/server.json")).unwrap();
        assert_eq!(file.capture.map(|c| c.percent), Some(50.0));
        // Both versions answer meanwhile.
        let url = s.url.unwrap();
        for _ in 0..10 {
            assert_eq!(post(&url, "application/json", ROW, &[]).await.unwrap().status, 200);
        }
        // The same version all at once ends the bake (no waiting for it in a test).
        let now = json!({"model": "iris", "instances": 2, "capture": {"samplingPercent": 50}});
        let s = done(t.roll(&t.request("iris", now, &v2), async || {}).await);
        assert_eq!((s.health, serving(&s)), (Health::Healthy, vec![(2, 100)]));
        assert_eq!(t.pids("iris"), new_pids, "no relaunch for the same settings");
    });
}

#[test]
fn a_healthy_canary_is_promoted_and_blue_green_switches_without_dropping_requests() {
    let t = Target::new();
    t.rt.block_on(async {
        let (v1, v2, v3) = (t.version(1), t.version(2), t.version(3));
        let url = done(t.roll(&t.request("iris", json!({"model": "iris"}), &v1), async || {}).await).url.unwrap();
        let canary = json!({"model": "iris", "strategy": {"type": "canary", "percent": 20, "bakeTime": "1s", "maxBakeTime": "5m", "minRequests": 3, "rollback": {"maxErrorRate": 0.05, "maxP99LatencyMs": 10000}}});
        let mut failures = 0;
        let s = done(
            t.roll(&t.request("iris", canary, &v2), async || {
                for _ in 0..5 {
                    if post(&url, "application/json", ROW, &[]).await.map(|r| r.status) != Ok(200) {
                        failures += 1;
                    }
                }
            })
            .await,
        );
        assert_eq!(serving(&s), vec![(2, 100)]);
        let blue_green = json!({"model": "iris", "strategy": {"type": "blue-green", "bakeTime": "1s"}});
        let s = done(
            t.roll(&t.request("iris", blue_green, &v3), async || {
                for _ in 0..5 {
                    if post(&url, "application/json", ROW, &[]).await.map(|r| r.status) != Ok(200) {
                        failures += 1;
                    }
                }
            })
            .await,
        );
        assert_eq!(serving(&s), vec![(3, 100)]);
        assert_eq!(failures, 0);
        // Manual rollback to v1.
        let s = t.deployer.rollback(&t.ctx, "iris", &v1).await.unwrap();
        assert_eq!((s.health, serving(&s)), (Health::Healthy, vec![(1, 100)]));
    });
}

#[test]
fn updates_under_load_lose_no_request() {
    let t = Target::new();
    t.rt.block_on(async {
        let versions: Vec<ModelVersion> = (1..=3).map(|v| t.version(v)).collect();
        let url = done(
            t.roll(
                &t.request("iris", json!({"model": "iris"}), &versions[0]),
                async || {},
            )
            .await,
        )
        .url
        .unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut clients = Vec::new();
        for _ in 0..4 {
            let (url, stop) = (url.clone(), stop.clone());
            clients.push(tokio::spawn(async move {
                let (mut ok, mut bad) = (0u32, Vec::new());
                // Bounded: at most 20k requests per client.
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && ok < 20_000 {
                    match post(&url, "application/json", ROW, &[]).await {
                        Ok(r) if r.status == 200 => ok += 1,
                        other => bad.push(format!("{:?}", other.map(|r| (r.status, r.text())))),
                    }
                }
                (ok, bad)
            }));
        }
        for round in 0..6 {
            let v = &versions[(round + 1) % 3];
            let s = done(
                t.roll(&t.request("iris", json!({"model": "iris"}), v), async || {})
                    .await,
            );
            assert_eq!(serving(&s), vec![(v.version, 100)]);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut total = 0;
        for c in clients {
            let (ok, bad) = c.await.unwrap();
            assert!(bad.is_empty(), "failed requests during swaps: {bad:?}");
            total += ok;
        }
        assert!(total > 0);
    });
}

#[test]
fn capture_and_auth_follow_the_spec() {
    let t = Target::new();
    t.rt.block_on(async {
        // The token comes from the environment variable the spec names; one unique to this test.
        let var = "MLCTL_E2E_SERVE_TOKEN_CAPTURE";
        assert!(std::env::var(var).is_err(), "{var} must not be set outside this test");
        let v1 = t.version(1);
        let spec = json!({"model": "iris", "capture": {"samplingPercent": 100}, "auth": {"token": format!("${{env:{var}}}")}});
        let req = t.request("iris", spec, &v1);
        // Unset variable: the deploy is refused with a message naming it, before anything starts.
        let e = t.deployer.deploy(&t.ctx, &req).await.unwrap_err();
        assert!(e.message.contains(var), "{}", e.message);
        let mut with_token = req.clone();
        with_token.spec.auth = Some(mlctl_spec::Auth { token: "literal-for-test".into() });
        let s = done(t.roll(&with_token, async || {}).await);
        let url = s.url.unwrap();
        assert_eq!(post(&url, "application/json", ROW, &[]).await.unwrap().status, 401);
        for _ in 0..3 {
            let r = post(&url, "text/csv", "5.1,3.5,1.4,0.2", &[("authorization", "Bearer literal-for-test")]).await.unwrap();
            assert_eq!(r.status, 200);
        }
        let sink = mlctl_provider_local::monitor::LocalMonitorSink::new(t.state());
        let t0 = Instant::now();
        let records = loop {
            let r = sink.captured(&t.ctx, "iris", 10).await.unwrap();
            if r.len() >= 3 || t0.elapsed() > LIMIT {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(records.len(), 3);
        assert_eq!(records[0]["version"], "1");
        assert_eq!(records[0]["rows"], json!([[5.1, 3.5, 1.4, 0.2]]));
        assert_eq!(records[0]["predictions"], json!(["setosa"]));
        // The token never lands in the endpoint's files.
        for f in ["endpoint.json", "server.json", "serve.log"] {
            let text = std::fs::read_to_string(t.state().join("endpoints/iris").join(f)).unwrap_or_default();
            assert!(!text.contains("literal-for-test"), "{f} holds the token");
        }
    });
}

// --- Hostile clients (issue 11).

/// Whether the server closes `conn` within 10 s (reading whatever it still sends).
async fn closed_soon(conn: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(n) = conn.read(&mut buf).await {
            if n == 0 {
                return;
            }
        }
    })
    .await
    .is_ok()
}

fn addr_of(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

#[test]
fn serve_disconnects_slow_and_idle_clients_and_answers_errors_as_json() {
    use tokio::io::AsyncWriteExt;
    let p = TestProject::empty();
    let model = iris_model(&p.path().join("model"));
    let server = ServeProcess::start(
        &[
            "--model-dir",
            model.to_str().unwrap(),
            "--header-timeout",
            "1s",
            "--idle-timeout",
            "1s",
        ],
        &[],
    );
    rt().block_on(async {
        let addr = addr_of(&server.url);
        // Half a request head, then nothing: cut off at the header timeout.
        let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
        slow.write_all(b"POST /invocations HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        // A keep-alive connection that goes quiet after one request: cut off when idle.
        let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
        idle.write_all(b"GET /ping HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        // Meanwhile, valid requests are answered.
        let r = post(&server.url, "application/json", ROW, &[])
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(closed_soon(&mut slow).await, "slow head closed");
        assert!(closed_soon(&mut idle).await, "idle connection closed");
        // Unknown routes and methods answer the JSON error shape like every other error.
        let c = Client::new();
        let r = c
            .get(
                &format!("{}/invocations", server.url),
                &[],
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        assert_eq!(
            (r.status, json_of(&r)["error_code"].as_str()),
            (405, Some("METHOD_NOT_ALLOWED"))
        );
        let r = c
            .get(
                &format!("{}/nowhere", server.url),
                &[],
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        assert_eq!(
            (r.status, json_of(&r)["error_code"].as_str()),
            (404, Some("NOT_FOUND"))
        );
        let r = post(&server.url, "application/json", ROW, &[])
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    });
}

#[test]
fn server_limits_in_the_spec_reach_every_server_process() {
    let t = Target::new();
    t.rt.block_on(async {
        let v1 = t.version(1);
        let spec = json!({"model": "iris", "instances": 2});
        done(t.roll(&t.request("iris", spec, &v1), async || {}).await);
        let before = t.pids("iris");
        let spec = json!({"model": "iris", "instances": 2, "server": {"idleTimeout": "1s", "maxConnections": 8}});
        let s = done(t.roll(&t.request("iris", spec, &v1), async || {}).await);
        // New launch settings: new processes, started with the limits.
        let after = t.pids("iris");
        assert!(after.iter().all(|p| !before.contains(p)), "{before:?} -> {after:?}");
        let file = mlctl_serve::config::ServeFile::read(&t.state().join("endpoints/iris/server.json")).unwrap();
        let limits = file.limits.expect("limits written");
        assert_eq!((limits.idle_timeout_ms, limits.max_connections), (1000, 8));
        assert_eq!(limits.header_timeout_ms, mlctl_serve::config::ConnectionLimits::default().header_timeout_ms);
        let url = s.url.unwrap();
        let mut idle = tokio::net::TcpStream::connect(addr_of(&url)).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut idle, b"GET /ping HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        assert!(closed_soon(&mut idle).await, "an idle connection is closed after idleTimeout");
        assert_eq!(post(&url, "application/json", ROW, &[]).await.unwrap().status, 200);
    });
}

/// A stand-in for Azure ML's data collector agent on 127.0.0.1: every `POST` it gets, with
/// its headers (lower-cased) and body, answered 200 on a kept-alive connection.
type Payloads =
    std::sync::Arc<std::sync::Mutex<Vec<(std::collections::BTreeMap<String, String>, String)>>>;

fn data_collector_agent() -> (u16, Payloads) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got: Payloads = Default::default();
    let sink = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let sink = sink.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(stream.try_clone().unwrap());
                let mut w = stream;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut headers = std::collections::BTreeMap::new();
                    headers.insert(":request".to_string(), line.trim().to_string());
                    loop {
                        let mut h = String::new();
                        r.read_line(&mut h).unwrap();
                        if h.trim().is_empty() {
                            break;
                        }
                        let (k, v) = h.split_once(':').unwrap();
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                    }
                    let n: usize = headers["content-length"].parse().unwrap();
                    let mut body = vec![0; n];
                    r.read_exact(&mut body).unwrap();
                    sink.lock()
                        .unwrap()
                        .push((headers, String::from_utf8(body).unwrap()));
                    w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                        .unwrap();
                }
            });
        }
    });
    (port, got)
}

/// In an Azure ML deployment with a data collector, `mlctl serve --capture-mdc` hands each
/// sampled request to the collector's agent as Microsoft's `azureml-ai-monitoring` does: its
/// rows to `model_inputs` and its predictions to `model_outputs`, as records, joined by the
/// request's id, at the collections' sampling rate. Without a collector it does not start.
#[test]
fn serve_captures_through_azure_mls_data_collector() {
    let p = TestProject::empty();
    let model = iris_model(&p.path().join("model"));
    let (port, got) = data_collector_agent();
    p.write(
        "mdc.json",
        r#"{"collections": {"model_inputs": {"enabled": true, "sampleRatePercentage": 50}, "model_outputs": {"enabled": true, "sampleRatePercentage": 50}}, "runMode": "cloud"}"#,
    );
    let config = p.path().join("mdc.json");
    let server = ServeProcess::start(
        &["--model-dir", model.to_str().unwrap()],
        &[
            ("MLCTL_CAPTURE_MDC", "1"),
            ("AZUREML_MDC_CONFIG_PATH", config.to_str().unwrap()),
            ("AZUREML_MDC_PORT", &port.to_string()),
        ],
    );
    rt().block_on(async {
        for i in 0..4 {
            let id = format!("req-{i}");
            let r = post(
                &server.url,
                "application/json",
                r#"{"dataframe_split": {"columns": ["sepal_length", "sepal_width", "petal_length", "petal_width"], "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}}"#,
                &[("x-request-id", &id)],
            )
            .await
            .unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
        }
    });
    let t0 = Instant::now();
    while got.lock().unwrap().len() < 4 {
        assert!(
            t0.elapsed() < LIMIT,
            "the agent got {:?}",
            got.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(server);
    let got = got.lock().unwrap().clone();
    assert_eq!(
        got.len(),
        4,
        "half of 4 requests, two collections each: {got:#?}"
    );
    for (h, _) in &got {
        assert_eq!(h[":request"], "POST /modeldata/log HTTP/1.1");
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(h["ce-collect-data-type"], "pandas.core.frame.DataFrame");
        assert!(h["ce-agent"].starts_with("mlctl/"), "{h:?}");
        assert!(h["ce-time"].parse::<u64>().is_ok(), "{h:?}");
    }
    let traces: std::collections::BTreeSet<&String> =
        got.iter().map(|(h, _)| &h["trace-id"]).collect();
    assert_eq!(traces.len(), 4, "each payload its own trace id");
    let of = |kind: &str| -> Vec<(String, serde_json::Value)> {
        got.iter()
            .filter(|(h, _)| h["ce-type"] == format!("azureml.inference.{kind}"))
            .map(|(h, b)| {
                (
                    h["ce-x-request-id"].clone(),
                    serde_json::from_str(b).unwrap(),
                )
            })
            .collect()
    };
    let inputs = of("model_inputs");
    let outputs = of("model_outputs");
    assert_eq!(inputs.len(), 2, "{got:#?}");
    assert_eq!(
        inputs.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(),
        outputs.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(),
        "a request's inputs and outputs are collected together, joined by its id"
    );
    assert!(inputs.iter().all(|(id, _)| id.starts_with("req-")));
    assert_eq!(
        inputs[0].1,
        json!([
            {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
            {"sepal_length": 6.7, "sepal_width": 3, "petal_length": 5.2, "petal_width": 2.3},
        ])
    );
    assert_eq!(
        outputs[0].1,
        json!([{"prediction": "setosa"}, {"prediction": "virginica"}])
    );

    // Asked to capture where the deployment collects nothing: it says so and does not serve.
    let out = p.mlctl_with(
        &[
            "serve",
            "--model-dir",
            model.to_str().unwrap(),
            "--port",
            "0",
        ],
        &[
            ("MLCTL_CAPTURE_MDC", "true"),
            ("AZUREML_MDC_CONFIG_PATH", ""),
        ],
    );
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("collects neither model_inputs nor model_outputs"),
        "{}",
        out.stderr
    );
}

/// `docker/entrypoint.sh` run as the image runs it, with the built binary first on PATH.
fn entrypoint(args: &[&str], env: &[(&str, &str)]) -> std::process::Command {
    let bin = Path::new(env!("CARGO_BIN_EXE_mlctl")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = std::process::Command::new("sh");
    cmd.arg(repo_root().join("docker/entrypoint.sh"))
        .args(args)
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .env_remove("MLCTL_MODEL_DIR")
        .envs(env.iter().copied());
    cmd
}

#[test]
fn the_image_entrypoint_serves_a_model_mounted_one_folder_down_and_is_the_cli_otherwise() {
    let p = TestProject::empty();
    // Azure ML mounts a folder model as <modelMountPath>/<folder>.
    let mount = p.path().join("mount");
    iris_model(&mount.join("iris-model"));
    let port = free_port().to_string();
    let child = entrypoint(
        &[],
        &[
            ("MLCTL_MODEL_DIR", mount.to_str().unwrap()),
            ("MLCTL_SERVE_HOST", "127.0.0.1"),
            ("MLCTL_SERVE_PORT", &port),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("the entrypoint starts");
    let server = ServeProcess {
        url: format!("http://127.0.0.1:{port}"),
        child,
    };
    rt().block_on(async {
        let t0 = Instant::now();
        loop {
            if let Ok(r) = Client::new()
                .get(&format!("{}/ping", server.url), &[], Duration::from_secs(5))
                .await
                && r.status == 200
            {
                break;
            }
            assert!(
                t0.elapsed() < LIMIT,
                "the entrypoint's server did not come up"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let r = post(&server.url, "text/csv", "5.1,3.5,1.4,0.2\n", &[])
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().contains("setosa"), "{}", r.text());
    });
    drop(server);

    // Arguments make it the CLI.
    let out = entrypoint(&["--version"], &[]).output().unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Neither arguments nor a model: says what to give, exit 2.
    let out = entrypoint(&[], &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("set MLCTL_MODEL_DIR"), "{err}");

    // Two candidate models below the mount: refuses to guess.
    iris_model(&mount.join("other-model"));
    let out = entrypoint(&[], &[("MLCTL_MODEL_DIR", mount.to_str().unwrap())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 of its sub-directories"), "{err}");
}

#[test]
fn predict_explain_prints_each_columns_contribution_to_a_boosted_models_margin() {
    let (p, _port) = crate::common::iris_on_a_free_port("{type: all-at-once}");
    p.replace(
        "ml/train.yaml",
        "  algorithm: logistic_regression\n  hyperparameters:\n    C: 1.0\n    max_iter: 200\n",
        "  algorithm: gradient_boosting\n  hyperparameters:\n    n_estimators: 30\n",
    );
    let p = p.into_git();
    struct Stop(PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            kill_endpoints(&self.0);
        }
    }
    let _stop = Stop(p.path().join(".mlctl/local"));
    p.mlctl(&["apply", "--auto-approve", "--target", "local"])
        .expect_code(0);
    p.write("rows.csv", "6.3,3.3,6.0,2.5\n5.1,3.5,1.4,0.2\n");
    let human = p
        .mlctl(&[
            "predict",
            "iris",
            "-d",
            "rows.csv",
            "--target",
            "local",
            "--explain",
        ])
        .expect_code(0);
    let out = &human.stdout;
    assert!(out.starts_with("virginica\n  setosa (margin): "), "{out}");
    assert!(out.contains("\nsetosa\n  setosa (margin): "), "{out}");
    assert_eq!(
        out.matches(" (margin): ").count(),
        6,
        "three classes per row: {out}"
    );
    assert_eq!(out.matches("  petal_length\n").count(), 6, "{out}");

    let json = p
        .mlctl(&[
            "predict",
            "iris",
            "-d",
            "rows.csv",
            "--target",
            "local",
            "--explain",
            "-o",
            "json",
        ])
        .expect_code(0);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let e = &v["explanations"];
    assert_eq!(e["outputs"], json!(["setosa", "versicolor", "virginica"]));
    assert_eq!(
        e["features"],
        json!(["sepal_length", "sepal_width", "petal_length", "petal_width"])
    );
    // The class with the highest margin (base + contributions) is the prediction.
    for (row, want) in ["virginica", "setosa"].iter().enumerate() {
        let margins: Vec<f64> = (0..3)
            .map(|o| {
                e["base_values"][o].as_f64().unwrap()
                    + (0..4)
                        .map(|f| e["contributions"][row][f][o].as_f64().unwrap())
                        .sum::<f64>()
            })
            .collect();
        let best = (0..3)
            .max_by(|a, b| margins[*a].total_cmp(&margins[*b]))
            .unwrap();
        assert_eq!(e["outputs"][best], *want, "{margins:?}");
        assert_eq!(v["predictions"][row], *want);
    }
}
