//! plan / apply / plan / destroy of `examples/iris` on a SageMaker target pointed at moto.
//!
//! Needs `MLCTL_MOTO_URL` (`eval "$(.ci/sagemaker-emulator.sh start)"`); without it the test
//! says why and passes, except under `CI=true`, where a missing emulator is a failure.

use crate::common::*;

pub(crate) fn moto_url() -> Option<String> {
    match std::env::var("MLCTL_MOTO_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "MLCTL_MOTO_URL is not set and CI=true: the moto emulator must run in CI (.ci/run starts it)"
            )
        }
        _ => {
            eprintln!(
                "skipped: MLCTL_MOTO_URL is not set; start moto with: eval \"$(.ci/sagemaker-emulator.sh start)\""
            );
            None
        }
    }
}

/// The iris example (not yet in git) on a SageMaker target pointed at moto: its state under
/// `root` in the test bucket, its project called `project` (SageMaker's names, which moto keeps
/// globally, start with it, so tests running at once never share a model package group or an
/// endpoint). moto's training jobs report no metrics, so the copy has no gates.
pub(crate) fn iris_on_moto(root: &str, project: &str) -> TestProject {
    let p = TestProject::example("iris");
    let model = p.read("ml/model.yaml");
    let gates = model.find("  gates:").unwrap();
    p.write("ml/model.yaml", &model[..gates]);
    p.replace(
        "mlctl.yaml",
        "      region: eu-west-1\n      roleArn: ${env:MLCTL_SM_ROLE}\n      bucket: s3://${env:MLCTL_SM_BUCKET}/iris\n",
        &format!("      region: us-east-1\n      roleArn: ${{env:MLCTL_SM_ROLE}}\n      bucket: s3://${{env:MLCTL_SM_BUCKET}}/{root}\n      endpointUrl: ${{env:MLCTL_MOTO_URL}}\n      emulator: moto\n"),
    );
    p.replace(
        "mlctl.yaml",
        "  name: iris\n",
        &format!("  name: {project}\n"),
    );
    p
}

#[test]
fn iris_applies_to_sagemaker_on_moto_and_converges() {
    let Some(url) = moto_url() else { return };
    let p = iris_on_moto("iris", "iris");
    std::fs::write(p.path().join(".gitignore"), ".mlctl/\n").unwrap();
    p.git(&["init", "-q", "-b", "main"]);
    p.git(&["config", "user.email", "test@example.com"]);
    p.git(&["config", "user.name", "Test"]);
    p.commit_all("iris on moto");
    let run = |args: &[&str]| on_moto(&p, &url, args);
    let plan = run(&["plan", "--target", "staging", "--detailed-exitcode"]).expect_code(2);
    assert!(plan.stdout.contains("Plan: 5 to add"), "{}", plan.stdout);
    assert!(
        plan.stdout
            .contains("emulator mode (moto): endpoints are replaced"),
        "the plan says what differs in emulator mode: {}",
        plan.stdout
    );
    let apply = run(&["reconcile", "--target", "staging"]).expect_code(0);
    assert!(
        apply.stdout.contains("5 added"),
        "{}\n{}",
        apply.stdout,
        apply.stderr
    );
    // The example's rollback thresholds are CloudWatch alarms on the endpoint's variant
    // (`v<version>`: the version depends on what this moto registered before).
    let names = alarms(&url, "iris-iris-");
    let variant = names
        .first()
        .and_then(|n| n.strip_prefix("iris-iris-"))
        .and_then(|n| n.split('-').next())
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        names,
        [
            format!("iris-iris-{variant}-mlctl-error-rate"),
            format!("iris-iris-{variant}-mlctl-p99-latency")
        ],
        "one alarm per threshold on the variant"
    );
    // A fresh runner: no local files, the state is read back from S3.
    std::fs::remove_dir_all(p.path().join(".mlctl")).ok();
    let again = run(&["plan", "--target", "staging", "--detailed-exitcode"]).expect_code(0);
    assert!(again.stdout.starts_with("No changes."), "{}", again.stdout);
    let destroy = run(&["destroy", "--target", "staging", "--auto-approve"]).expect_code(0);
    assert!(
        destroy.stdout.contains("5 destroyed"),
        "{}\n{}",
        destroy.stdout,
        destroy.stderr
    );
    assert!(
        alarms(&url, "iris-iris-").is_empty(),
        "the alarms go with the endpoint"
    );
}

/// The names of the CloudWatch alarms starting with `prefix` in moto, asked in CloudWatch's
/// Query protocol (the CLI's tests carry no AWS SDK; moto does not check signatures).
fn alarms(url: &str, prefix: &str) -> Vec<String> {
    use std::io::{Read, Write};
    let hostport = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .trim_end_matches('/')
        .to_string();
    let body = format!("Action=DescribeAlarms&Version=2010-08-01&AlarmNamePrefix={prefix}");
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/monitoring/aws4_request, SignedHeaders=host, Signature=0\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = std::net::TcpStream::connect(&hostport).expect("moto answers");
    s.write_all(request.as_bytes()).expect("send");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("read");
    assert!(reply.starts_with("HTTP/1.1 200"), "DescribeAlarms: {reply}");
    reply
        .split("<AlarmName>")
        .skip(1)
        .filter_map(|r| r.split("</AlarmName>").next())
        .map(str::to_string)
        .collect()
}

/// One request to moto (no signature is checked); returns the whole reply (a binary body,
/// such as a packed tar.gz, as lossy UTF-8: its ASCII runs are kept).
pub(crate) fn moto_request(
    url: &str,
    service: &str,
    request_line: &str,
    headers: &str,
    body: &str,
) -> String {
    use std::io::{Read, Write};
    let hostport = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .trim_end_matches('/')
        .to_string();
    let request = format!(
        "{request_line} HTTP/1.1\r\nHost: {hostport}\r\n{headers}\
         Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = std::net::TcpStream::connect(&hostport).expect("moto answers");
    s.write_all(request.as_bytes()).expect("send");
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).expect("read");
    String::from_utf8_lossy(&reply).into_owned()
}

/// Writes an S3 object in moto (path style), creating its bucket.
fn put_object(url: &str, bucket: &str, key: &str, body: &str) {
    moto_request(url, "s3", &format!("PUT /{bucket}"), "", "");
    let reply = moto_request(url, "s3", &format!("PUT /{bucket}/{key}"), "", body);
    assert!(reply.starts_with("HTTP/1.1 200"), "PutObject: {reply}");
}

/// The tags of the training job whose ARN contains `needle` (ListTrainingJobs and ListTags,
/// JSON protocol).
fn training_job_tags(url: &str, needle: &str) -> String {
    let json = "Content-Type: application/x-amz-json-1.1\r\n";
    let jobs = moto_request(
        url,
        "sagemaker",
        "POST /",
        &format!("{json}X-Amz-Target: SageMaker.ListTrainingJobs\r\n"),
        "{}",
    );
    let arn = jobs
        .split("\"TrainingJobArn\": \"")
        .chain(jobs.split("\"TrainingJobArn\":\""))
        .skip(1)
        .filter_map(|r| r.split('"').next())
        .find(|a| a.contains(needle))
        .unwrap_or_else(|| panic!("no training job with {needle}: {jobs}"))
        .to_string();
    moto_request(
        url,
        "sagemaker",
        "POST /",
        &format!("{json}X-Amz-Target: SageMaker.ListTags\r\n"),
        &format!("{{\"ResourceArn\": \"{arn}\"}}"),
    )
}

#[test]
fn s3_source_retrains_when_the_object_changes_and_labels_retag_in_place() {
    let Some(url) = moto_url() else { return };
    // A dataset on S3, the job that trains on it and its model.
    let p = iris_on_moto("iris-s3-source", "irissrc");
    std::fs::remove_file(p.path().join("ml/endpoint.yaml")).unwrap();
    std::fs::remove_file(p.path().join("ml/monitor.yaml")).unwrap();
    let bucket = "mlctl-e2e-source";
    let key = format!(
        "iris-{}.csv",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let data = p.read("data/iris.csv");
    put_object(&url, bucket, &key, &data);
    p.replace(
        "ml/data.yaml",
        "source: data/iris.csv",
        &format!("source: s3://{bucket}/{key}"),
    );
    std::fs::write(p.path().join(".gitignore"), ".mlctl/\n").unwrap();
    p.git(&["init", "-q", "-b", "main"]);
    p.git(&["config", "user.email", "test@example.com"]);
    p.git(&["config", "user.name", "Test"]);
    p.commit_all("iris from s3 on moto");
    let run = |args: &[&str]| on_moto(&p, &url, args);
    let apply = run(&["apply", "--target", "staging", "--auto-approve"]).expect_code(0);
    assert!(apply.stderr.contains("150 rows"), "{}", apply.stderr);
    let again = run(&["plan", "--target", "staging"]).expect_code(0);
    assert!(again.stdout.starts_with("No changes."), "{}", again.stdout);

    // The object changes upstream: a new ETag, "data changed", a new training job.
    let rows: String = data.lines().skip(1).map(|l| format!("{l}\n")).collect();
    put_object(&url, bucket, &key, &format!("{data}{rows}"));
    let plan = run(&["plan", "--target", "staging"]).expect_code(0);
    for expected in [
        &format!("dataset iris data changed upstream (s3://{bucket}/{key}: etag "),
        "TrainingJob/iris-train must be replaced",
    ] {
        assert!(
            plan.stdout.contains(expected),
            "{expected}\n{}",
            plan.stdout
        );
    }
    let apply = run(&["apply", "--target", "staging", "--auto-approve"]).expect_code(0);
    assert!(apply.stderr.contains("300 rows"), "{}", apply.stderr);

    // A label on the job and the model, a new description: AddTags on the job and the
    // model package that exist, no new job, no new version.
    p.replace(
        "ml/train.yaml",
        "  name: iris-train\n",
        "  name: iris-train\n  labels: {owner: alice}\n",
    );
    p.replace(
        "ml/model.yaml",
        "  name: iris\n",
        "  name: iris\n  labels: {owner: alice}\n",
    );
    p.replace(
        "ml/model.yaml",
        "description: Iris species classifier",
        "description: Iris classifier, v2 wording",
    );
    p.commit_all("labels and a description");
    let plan = run(&["plan", "--target", "staging"]).expect_code(0);
    assert!(
        plan.stdout
            .contains("labels.owner added: alice (in place: no retraining)"),
        "{}",
        plan.stdout
    );
    let fp = |plan: &str| {
        plan.split("iris-train-")
            .nth(1)
            .map(|s| s[..12].to_string())
            .unwrap_or_default()
    };
    let status = run(&["apply", "--target", "staging", "--auto-approve"]).expect_code(0);
    assert!(
        status.stderr.contains("updated in place"),
        "{}",
        status.stderr
    );
    let job = fp(&apply.stderr);
    assert!(!job.is_empty(), "{}", apply.stderr);
    let tags = training_job_tags(&url, &format!("iris-train-{job}"));
    assert!(
        tags.contains("\"owner\"") && tags.contains("\"alice\""),
        "{tags}"
    );
    assert!(
        status.stdout.contains("0 added, 2 changed"),
        "{}",
        status.stdout
    );
    let again = run(&["plan", "--target", "staging"]).expect_code(0);
    assert!(again.stdout.starts_with("No changes."), "{}", again.stdout);
    run(&["destroy", "--target", "staging", "--auto-approve"]).expect_code(0);
}

/// Runs mlctl in `p` against the moto emulator at `url`, with the test role, bucket and
/// credentials moto accepts.
pub(crate) fn on_moto(p: &TestProject, url: &str, args: &[&str]) -> Run {
    on_moto_with(p, url, args, &[])
}

/// [`on_moto`] with `env` set on top (moto checks no signature: any credentials do).
pub(crate) fn on_moto_with(p: &TestProject, url: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = mlctl()
        .args(args)
        .current_dir(p.path())
        .env("MLCTL_MOTO_URL", url)
        .env(
            "MLCTL_SM_ROLE",
            "arn:aws:iam::123456789012:role/SageMakerRole",
        )
        .env("MLCTL_SM_BUCKET", "mlctl-e2e-cli")
        .env("MLCTL_SM_POLL_MS", "50")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    Run::from(out)
}

/// SageMaker's data capture, judged by mlctl: capture files in SageMaker's own format (one
/// JSON line a request, CSV input) are put where the endpoint's capture goes, and `mlctl
/// monitor run` reads and judges them with the same code as on local.
#[test]
fn sagemaker_capture_files_are_read_and_judged_by_monitor_run() {
    let Some(url) = moto_url() else { return };
    // Its own prefix in the bucket: a moto that outlives one run keeps its objects.
    let root = format!(
        "iris-monitor-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let p = iris_on_moto(&root, "irismon");
    p.write(
        "ml/monitor.yaml",
        "apiVersion: mlctl/v1\nkind: Monitor\nmetadata:\n  name: iris-drift\nspec:\n  endpoint: iris\n  minSamples: 100\n  drift: {}\n",
    );
    std::fs::write(p.path().join(".gitignore"), ".mlctl/\n").unwrap();
    p.git(&["init", "-q", "-b", "main"]);
    p.git(&["config", "user.email", "test@example.com"]);
    p.git(&["config", "user.name", "Test"]);
    p.commit_all("iris with a monitor on moto");
    let run = |args: &[&str]| on_moto(&p, &url, args);
    run(&["reconcile", "--target", "staging"]).expect_code(0);
    let before = run(&["monitor", "run", "--target", "staging", "-o", "json"]).expect_code(0);
    let before: serde_json::Value = serde_json::from_str(&before.stdout).unwrap();
    assert_eq!(before[0]["verdict"], "insufficientData", "{before}");

    // 300 requests as SageMaker captures them, petal_length shifted by 2 cm, in two hourly
    // files under <destination>/<endpoint>/<variant>/yyyy/mm/dd/hh/.
    let rows: Vec<Vec<f64>> =
        std::fs::read_to_string(repo_root().join("examples/iris/data/iris.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.split(',').take(4).map(|x| x.parse().unwrap()).collect())
            .collect();
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let line = |i: usize, r: &[f64]| {
        serde_json::json!({
            "captureData": {
                "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT",
                    "data": format!("{},{},{},{}", r[0], r[1], r[2] + 2.0, r[3]), "encoding": "CSV"},
                "endpointOutput": {"observedContentType": "text/csv; charset=utf-8", "mode": "OUTPUT",
                    "data": "virginica", "encoding": "CSV"}
            },
            "eventMetadata": {"eventId": format!("e-{i}"), "inferenceTime": now},
            "eventVersion": "0"
        })
        .to_string()
    };
    let all: Vec<String> = rows
        .iter()
        .chain(rows.iter())
        .enumerate()
        .map(|(i, r)| line(i, r))
        .collect();
    let prefix = format!("{root}/capture/irismon-iris/irismon-iris/AllTraffic/2026/12/01");
    put_object(
        &url,
        "mlctl-e2e-cli",
        &format!("{prefix}/10/00-00-000-a.jsonl"),
        &all[..150].join("\n"),
    );
    put_object(
        &url,
        "mlctl-e2e-cli",
        &format!("{prefix}/11/00-00-000-b.jsonl"),
        &all[150..].join("\n"),
    );

    let judged = run(&[
        "monitor", "run", "--target", "staging", "--window", "1000", "-o", "json",
    ])
    .expect_code(0);
    let judged: serde_json::Value = serde_json::from_str(&judged.stdout).unwrap();
    let r = &judged[0];
    assert_eq!(r["rows"], 300, "{r}");
    assert_eq!(r["verdict"], "breached", "{r}");
    let drifted: Vec<&str> = r["features"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["drifted"] == true)
        .map(|f| f["feature"].as_str().unwrap())
        .collect();
    assert_eq!(drifted, ["petal_length"], "{r}");
    // Stored in the target: a fresh runner reads it back from S3.
    std::fs::remove_dir_all(p.path().join(".mlctl")).ok();
    let h = run(&[
        "monitor",
        "history",
        "iris-drift",
        "--target",
        "staging",
        "-o",
        "json",
    ])
    .expect_code(0);
    let h: serde_json::Value = serde_json::from_str(&h.stdout).unwrap();
    assert_eq!(h.as_array().unwrap().len(), 2, "{h}");
    run(&["destroy", "--target", "staging", "--auto-approve"]).expect_code(0);
}
