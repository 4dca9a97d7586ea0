//! The fake ARM harness works: it starts a fake per test, the fake takes a body that matches
//! Microsoft's models and refuses (and records) one that does not, injects faults, records
//! requests, and stops when the harness is dropped.
//!
//! Needs `MLCTL_AZ_FAKE_PY` and `MLCTL_AZURITE_URL` (see `common/fake.rs`); skips visibly
//! without them, fails under `CI=true`.

#[path = "common/fake.rs"]
mod fake;

use fake::{API_VERSION, FakeArm, Fault};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn ws() -> String {
    FakeArm::workspace_path(fake::SUBSCRIPTION, fake::RESOURCE_GROUP, "iris-ws")
}

async fn put(fake: &FakeArm, rel: &str, body: &Value) -> (u16, Value, reqwest::header::HeaderMap) {
    let url = format!("{}{}/{rel}?api-version={API_VERSION}", fake.url(), ws());
    let resp = reqwest::Client::new()
        .put(url)
        .bearer_auth("selftest-token")
        .json(body)
        .send()
        .await
        .expect("PUT to the fake");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, resp.json().await.unwrap_or(Value::Null), headers)
}

async fn get(fake: &FakeArm, rel: &str) -> (u16, Value) {
    let url = format!("{}{}/{rel}?api-version={API_VERSION}", fake.url(), ws());
    let resp = reqwest::Client::new()
        .get(url)
        .bearer_auth("selftest-token")
        .send()
        .await
        .expect("GET from the fake");
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

fn command_job(env_id: &str) -> Value {
    json!({"properties": {
        "jobType": "Command",
        "command": "echo hello from the fake",
        "environmentId": env_id,
        "experimentName": "selftest",
        "limits": {"jobLimitsType": "Command", "timeout": "PT5M"},
        "tags": {"mlctl:project": "selftest"},
    }})
}

async fn environment(fake: &FakeArm) -> String {
    let (status, env, _) = put(
        fake,
        "environments/mlctl/versions/1",
        &json!({"properties": {"image": "ghcr.io/mlctl/mlctl:test"}}),
    )
    .await;
    assert_eq!(status, 201, "{env}");
    env["id"].as_str().expect("an ARM id").to_string()
}

#[tokio::test]
async fn a_valid_job_is_accepted_and_runs_to_completion() {
    let Some(fake) = FakeArm::start() else { return };
    let env = environment(&fake).await;

    let (status, job, _) = put(&fake, "jobs/selftest-ok", &command_job(&env)).await;
    assert_eq!(status, 201, "{job}");
    assert_eq!(job["properties"]["status"], "Queued");

    // A bound, not a timing assertion: `echo` ends at once; the fake polls nothing.
    let deadline = Instant::now() + Duration::from_secs(60);
    let state = loop {
        let (status, job) = get(&fake, "jobs/selftest-ok").await;
        assert_eq!(status, 200, "{job}");
        let state = job["properties"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if ["Completed", "Failed", "Canceled"].contains(&state.as_str())
            || Instant::now() > deadline
        {
            break state;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(state, "Completed", "log: {:?}", fake.job_log("selftest-ok"));
    assert!(
        fake.job_log("selftest-ok")
            .unwrap_or_default()
            .contains("hello from the fake")
    );

    let puts = fake.requests_to("PUT", "/jobs/selftest-ok");
    assert_eq!(puts.len(), 1);
    assert!(puts[0].authorized, "the bearer token reached the fake");
    assert_eq!(puts[0].body.as_ref(), Some(&command_job(&env)));
    fake.assert_contract_clean();
}

#[tokio::test]
async fn an_invalid_job_is_refused_with_an_arm_error_and_recorded() {
    let Some(fake) = FakeArm::start() else { return };
    let env = environment(&fake).await;
    let mut job = command_job(&env);
    let props = job["properties"].as_object_mut().expect("properties");
    props.insert(
        "code_id".into(),
        json!(format!("{}/codes/c/versions/1", ws())),
    );
    props.remove("command");

    let (status, err, _) = put(&fake, "jobs/selftest-bad", &job).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["code"], "UserError");
    assert_eq!(err["error"]["target"], "properties.code_id");
    assert_eq!(err["error"]["details"].as_array().map(Vec::len), Some(2));

    let violations = fake.violations();
    assert_eq!(violations.len(), 2, "{violations:#?}");
    assert!(
        violations[0].contains(
            "$.properties.code_id: unknown field of CommandJob; the wire name is 'codeId'"
        )
    );
    assert!(violations[1].contains("$.properties.command: missing required field of CommandJob"));
    let clean = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        fake.assert_contract_clean()
    }));
    assert!(
        clean.is_err(),
        "assert_contract_clean must fail after a violation"
    );
    assert_eq!(
        get(&fake, "jobs/selftest-bad").await.0,
        404,
        "nothing was created"
    );
}

#[tokio::test]
async fn injected_throttling_answers_429_with_retry_after_then_lets_requests_through() {
    // The ARM protocol alone: no blob storage needed.
    let Some(fake) = FakeArm::start_arm_only(&[]) else {
        return;
    };
    fake.fault(Fault::throttle(r"^PUT .*/environments/", 1));
    let body = json!({"properties": {"image": "ghcr.io/mlctl/mlctl:test"}});

    let (status, err, headers) = put(&fake, "environments/mlctl/versions/1", &body).await;
    assert_eq!(status, 429);
    assert_eq!(err["error"]["code"], "TooManyRequests");
    assert_eq!(
        headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );

    let (status, _, _) = put(&fake, "environments/mlctl/versions/1", &body).await;
    assert_eq!(status, 201);
    fake.assert_contract_clean();
}

#[tokio::test]
async fn the_target_it_describes_parses_as_an_azureml_target() {
    let Some(fake) = FakeArm::start() else { return };
    let mlctl_spec::Target::Azureml(az) = fake.target("iris-ws", "ml", "iris") else {
        panic!("not an azureml target")
    };
    assert_eq!(az.endpoint_url.as_deref(), Some(fake.url()));
    assert_eq!(az.emulator, Some(mlctl_spec::AzureEmulator::FakeArm));
    assert_eq!(az.storage, format!("{}/ml/iris", fake.blob_url()));
    assert!(
        fake.target_yaml("iris-ws", "ml", "iris")
            .contains("emulator: fake-arm\n")
    );
}

#[tokio::test]
async fn dropping_the_harness_stops_the_fake() {
    let Some(fake) = FakeArm::start() else { return };
    let host = fake.url().trim_start_matches("http://").to_string();
    assert!(std::net::TcpStream::connect(&host).is_ok());
    drop(fake);
    assert!(
        std::net::TcpStream::connect(&host).is_err(),
        "the fake still listens on {host} after drop"
    );
}

/// The fake's and the contract checker's own tests (Python, `fake/test_*.py`): a checker
/// that let a wrong body through would make every contract test above worthless.
#[test]
fn the_fakes_own_python_tests_pass() {
    let python = match std::env::var("MLCTL_AZ_FAKE_PY") {
        Ok(p) if !p.trim().is_empty() => p,
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("MLCTL_AZ_FAKE_PY is not set and CI=true (.ci/run sets it)")
        }
        _ => {
            eprintln!("skipped: MLCTL_AZ_FAKE_PY is not set; run .ci/azureml-fake.sh install");
            return;
        }
    };
    let out = std::process::Command::new(python.trim())
        .args(["-m", "unittest"])
        .current_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fake"))
        .output()
        .expect("run the fake's tests");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{}",
        &stderr[stderr.len().saturating_sub(6000)..]
    );
    eprintln!(
        "{}",
        stderr.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
    );
}
