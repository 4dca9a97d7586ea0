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
/// endpoint). moto's training jobs report no metrics: the example's gates are NOT EVALUATED
/// there, and say so.
pub(crate) fn iris_on_moto(root: &str, project: &str) -> TestProject {
    let p = TestProject::example("iris");
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
    let p = p.into_git();
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
    // moto trains nothing: its figures are kept, flagged, never shown as results, and the
    // gates it cannot feed are not evaluated (never passed).
    let said = format!("{}{}", apply.stdout, apply.stderr);
    assert!(
        said.contains("NOT EVALUATED accuracy >= 0.9 (not reported: metrics emulated by moto"),
        "{said}"
    );
    let show = run(&["models", "show", "iris", "--target", "staging"]).expect_code(0);
    assert!(
        show.stdout.contains("NOT MEASURED: emulated by moto: no model was trained or scored - the figures are made up by the emulator"),
        "{}",
        show.stdout
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
        "apiVersion: mlctl/v1\nkind: Monitor\nmetadata:\n  name: iris-drift\nspec:\n  endpoint: iris\n  minSamples: 100\n  drift: {}\n  slo: {maxErrorRate: 0.05, minThroughput: 0.001}\n",
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

    // What CloudWatch counted meanwhile (SageMaker publishes it; on moto the test does):
    // 300 invocations, 30 of them 5xx, above the SLO's 5%, on the variant that serves (a
    // moto that outlives one run has served more versions of this endpoint).
    let described = moto_request(
        &url,
        "sagemaker",
        "POST /",
        "Content-Type: application/x-amz-json-1.1\r\nX-Amz-Target: SageMaker.DescribeEndpoint\r\n",
        r#"{"EndpointName": "irismon-iris"}"#,
    );
    let variant = described
        .split("\"VariantName\":")
        .nth(1)
        .and_then(|r| r.split('"').nth(1))
        .unwrap_or_else(|| panic!("no variant in {described}"))
        .to_string();
    for (metric, value) in [("Invocations", 300), ("Invocation5XXErrors", 30)] {
        let body = format!(
            "Action=PutMetricData&Version=2010-08-01&Namespace=AWS%2FSageMaker\
             &MetricData.member.1.MetricName={metric}&MetricData.member.1.Value={value}\
             &MetricData.member.1.Unit=Count&MetricData.member.1.Timestamp={}\
             &MetricData.member.1.Dimensions.member.1.Name=EndpointName\
             &MetricData.member.1.Dimensions.member.1.Value=irismon-iris\
             &MetricData.member.1.Dimensions.member.2.Name=VariantName\
             &MetricData.member.1.Dimensions.member.2.Value={variant}",
            now.replace(':', "%3A")
        );
        let reply = moto_request(
            &url,
            "monitoring",
            "POST /",
            "Content-Type: application/x-www-form-urlencoded\r\n",
            &body,
        );
        assert!(reply.starts_with("HTTP/1.1 200"), "PutMetricData: {reply}");
    }

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
    // The SLOs were judged on CloudWatch's figures, every request: not the capture's 300.
    let objective = |name: &str| {
        r["slo"]["objectives"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|o| o["objective"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {r}"))
    };
    assert_eq!(r["slo"]["requests"], 300, "{r}");
    let errors = objective("maxErrorRate");
    assert_eq!(
        (&errors["value"], &errors["breached"]),
        (&serde_json::json!(0.1), &serde_json::json!(true)),
        "{r}"
    );
    assert_eq!(objective("minThroughput")["breached"], false, "{r}");
    assert!(
        r["summary"].as_str().unwrap().contains("slo: maxErrorRate"),
        "{r}"
    );
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

/// One spec, every target: what a SageMaker target cannot do is listed by one `plan`, every
/// field at once with its position and a fix, before anything is created. (The gates on the
/// now tuned job are honoured: its chosen candidate is scored on the test rows.)
#[test]
fn plan_on_sagemaker_lists_every_incompatibility_at_once() {
    let Some(url) = moto_url() else { return };
    let p = iris_on_moto("iris-parity", "iris-parity");
    p.replace(
        "ml/endpoint.yaml",
        "    bakeTime: 30s\n",
        "    bakeTime: 2h\n    maxBakeTime: 3h\n",
    );
    p.replace(
        "ml/endpoint.yaml",
        "    minRequests: 0\n",
        "    minRequests: 50\n",
    );
    p.replace(
        "ml/endpoint.yaml",
        "  capture:\n    samplingPercent: 100\n",
        "  auth:\n    token: ${env:IRIS_TOKEN}\n  server:\n    idleTimeout: 30s\n  capture:\n    samplingPercent: 12.5\n",
    );
    p.replace(
        "ml/monitor.yaml",
        "  quality: {}\n",
        "  quality: {}\n  slo:\n    p99LatencyMs: 50\n",
    );
    p.replace(
        "ml/train.yaml",
        "    max_iter: 200\n",
        "    max_iter: 200\n  tuning:\n    strategy: random\n    maxTrials: 4\n    objective: {metric: precision_weighted, goal: maximize}\n    searchSpace:\n      C: {min: 0.1, max: 10}\n",
    );
    let p = p.into_git();
    let plan = on_moto_with(
        &p,
        &url,
        &["plan", "--target", "staging"],
        &[("IRIS_TOKEN", "not-a-real-token")],
    )
    .expect_code(1);
    let refused: Vec<String> = plan
        .stderr
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(
                "error[refused-by-target]: target `staging` (sagemaker) does not honour `",
            )?;
            let (field, rest) = rest.split_once("` of ")?;
            let (resource, _) = rest.split_once(':')?;
            Some(format!("{resource} {field}"))
        })
        .collect();
    assert_eq!(
        refused,
        [
            "Endpoint/iris strategy.bakeTime",
            "Endpoint/iris strategy.maxBakeTime",
            "Endpoint/iris strategy.minRequests",
            "Endpoint/iris auth.token",
            "Endpoint/iris server.idleTimeout",
            "Endpoint/iris capture.samplingPercent",
            "TrainingJob/iris-train tuning.objective.metric",
        ],
        "{}",
        plan.stderr
    );
    assert!(
        plan.stderr
            .contains("error: target `staging` does not honour 7 fields"),
        "{}",
        plan.stderr
    );
    // Each says what it can do instead: the objective lists what SageMaker can optimise.
    assert!(
        plan.stderr.contains(
            "cannot optimise `precision_weighted` for this job; it optimises `accuracy`, `f1_macro`, `precision_macro`, `recall_macro`, `log_loss`"
        ),
        "{}",
        plan.stderr
    );
    // Nothing was created.
    assert!(!plan.stdout.contains("Apply complete"), "{}", plan.stdout);
}

/// A tuned script on SageMaker holds out what the local target holds out: its trials read
/// `train` and `validation`, and the chosen candidate is trained again in a final job with
/// `train` and `test`, whose metrics the gates judge.
#[test]
fn a_tuned_script_on_sagemaker_keeps_the_test_rows_from_its_trials() {
    let Some(url) = moto_url() else { return };
    let p = TestProject::example("housing");
    p.replace(
        "mlctl.yaml",
        "  targets:\n",
        "  targets:\n    moto:\n      provider: sagemaker\n      region: us-east-1\n      roleArn: ${env:MLCTL_SM_ROLE}\n      bucket: s3://${env:MLCTL_SM_BUCKET}/tuned-script\n      endpointUrl: ${env:MLCTL_MOTO_URL}\n      emulator: moto\n",
    );
    p.replace("mlctl.yaml", "  name: housing\n", "  name: tunedscript\n");
    let p = p.into_git();
    let apply = on_moto(&p, &url, &["apply", "--target", "moto", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{}\n{}", apply.stdout, apply.stderr);
    let json = "Content-Type: application/x-amz-json-1.1\r\n";
    let call = |target: &str, body: &str| {
        moto_request(
            &url,
            "sagemaker",
            "POST /",
            &format!("{json}X-Amz-Target: SageMaker.{target}\r\n"),
            body,
        )
    };
    let channels = |reply: &str| -> Vec<(String, String)> {
        let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
        let v: serde_json::Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {reply}"));
        let config = v
            .get("TrainingJobDefinition")
            .map(|d| &d["InputDataConfig"])
            .unwrap_or(&v["InputDataConfig"]);
        let mut out: Vec<(String, String)> = config
            .as_array()
            .unwrap_or_else(|| panic!("no InputDataConfig: {reply}"))
            .iter()
            .map(|c| {
                (
                    c["ChannelName"].as_str().unwrap_or_default().to_string(),
                    c["DataSource"]["S3DataSource"]["S3Uri"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect();
        out.sort();
        out
    };
    let jobs = call(
        "ListHyperParameterTuningJobs",
        r#"{"NameContains": "tunedscrip-"}"#,
    );
    let tuning = jobs
        .split("\"HyperParameterTuningJobName\":")
        .nth(1)
        .and_then(|r| r.split('"').nth(1))
        .unwrap_or_else(|| panic!("no tuning job: {jobs}"))
        .to_string();
    let trials = channels(&call(
        "DescribeHyperParameterTuningJob",
        &format!(r#"{{"HyperParameterTuningJobName": "{tuning}"}}"#),
    ));
    let last = channels(&call(
        "DescribeTrainingJob",
        &format!(r#"{{"TrainingJobName": "{tuning}-final"}}"#),
    ));
    let names = |c: &[(String, String)]| c.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&trials), ["train", "validation"], "{trials:?}");
    assert_eq!(names(&last), ["test", "train"], "{last:?}");
    assert_eq!(
        trials[0], last[1],
        "trials and the final job train on the same rows"
    );
    assert!(
        !trials.iter().any(|(_, uri)| *uri == last[0].1),
        "no trial reads the test rows: {trials:?} {last:?}"
    );
    on_moto(&p, &url, &["destroy", "--target", "moto", "--auto-approve"]).expect_code(0);
}

/// `mlctl runs` on SageMaker: the runs are the project's training jobs, and a run's log is
/// read from CloudWatch Logs (the same moto endpoint). moto's jobs write no log, so the test
/// first sees that said plainly, then writes what a two-instance job's containers would and
/// reads it back through `runs show` and `runs logs`.
#[test]
fn sagemaker_runs_show_the_training_log_from_cloudwatch_logs() {
    let Some(url) = moto_url() else { return };
    let p = iris_on_moto("runs-logs", "irislogs");
    let p = p.into_git();
    let run = |args: &[&str]| on_moto(&p, &url, args);
    run(&["apply", "--target", "staging", "--auto-approve"]).expect_code(0);
    let list = run(&["runs", "list", "--target", "staging", "-o", "json"]).expect_code(0);
    let runs: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 1, "one training job, one run: {runs:?}");
    let job = runs[0]["jobName"].as_str().unwrap().to_string();
    assert_eq!(
        runs[0]["id"],
        job.as_str(),
        "a run is named as its training job"
    );
    assert_eq!(runs[0]["resource"], "iris-train");

    let json = "Content-Type: application/x-amz-json-1.1\r\n";
    let logs = |action: &str, body: &str| {
        moto_request(
            &url,
            "logs",
            "POST /",
            &format!("{json}X-Amz-Target: Logs_20140328.{action}\r\n"),
            body,
        )
    };
    for instance in ["algo-1", "algo-2"] {
        // An earlier run against the same moto wrote this job's log already.
        logs(
            "DeleteLogStream",
            &format!(
                r#"{{"logGroupName": "/aws/sagemaker/TrainingJobs", "logStreamName": "{job}/{instance}-1700000000"}}"#
            ),
        );
    }
    let show = run(&["runs", "show", &job, "--target", "staging"]).expect_code(0);
    assert!(
        show.stdout.contains(&format!(
            "    [no log was found in CloudWatch Logs group /aws/sagemaker/TrainingJobs, streams {job}/*"
        )),
        "{}",
        show.stdout
    );

    // Another test may have made the group already.
    logs(
        "CreateLogGroup",
        r#"{"logGroupName": "/aws/sagemaker/TrainingJobs"}"#,
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for (instance, lines) in [
        (
            "algo-1",
            vec![
                (0, "Epoch 1/2"),
                (2, "Epoch 2/2"),
                (
                    4,
                    "#quality_metric: host=algo-1, validation accuracy <score>=0.96",
                ),
            ],
        ),
        ("algo-2", vec![(1, "worker ready"), (3, "worker done")]),
    ] {
        let stream = format!("{job}/{instance}-1700000000");
        let reply = logs(
            "CreateLogStream",
            &format!(
                r#"{{"logGroupName": "/aws/sagemaker/TrainingJobs", "logStreamName": "{stream}"}}"#
            ),
        );
        assert!(
            reply.starts_with("HTTP/1.1 200"),
            "CreateLogStream: {reply}"
        );
        let events: Vec<String> = lines
            .iter()
            .map(|(t, m)| format!(r#"{{"timestamp": {}, "message": "{m}"}}"#, now + t))
            .collect();
        let reply = logs(
            "PutLogEvents",
            &format!(
                r#"{{"logGroupName": "/aws/sagemaker/TrainingJobs", "logStreamName": "{stream}", "logEvents": [{}]}}"#,
                events.join(",")
            ),
        );
        assert!(reply.starts_with("HTTP/1.1 200"), "PutLogEvents: {reply}");
    }

    let whole = [
        "[algo-1] Epoch 1/2",
        "[algo-2] worker ready",
        "[algo-1] Epoch 2/2",
        "[algo-2] worker done",
        "[algo-1] #quality_metric: host=algo-1, validation accuracy <score>=0.96",
    ];
    let show = run(&["runs", "show", &job, "--target", "staging"]).expect_code(0);
    let expected: String = whole.iter().map(|l| format!("    {l}\n")).collect();
    assert!(
        show.stdout.ends_with(&format!("  log:\n{expected}")),
        "both instances, in time order, after the run's details:\n{}",
        show.stdout
    );
    let logs_out = run(&["runs", "logs", &job, "--target", "staging"]).expect_code(0);
    assert_eq!(logs_out.stdout, format!("{}\n", whole.join("\n")));
    let tail = run(&[
        "runs",
        "logs",
        &job[..12],
        "--target",
        "staging",
        "--tail",
        "2",
    ])
    .expect_code(0);
    assert_eq!(
        tail.stdout,
        format!("{}\n", whole[3..].join("\n")),
        "a unique prefix and the last 2 lines"
    );
    run(&["destroy", "--target", "staging", "--auto-approve"]).expect_code(0);
}
