//! plan / apply / plan / destroy of `examples/iris` on a SageMaker target pointed at moto.
//!
//! Needs `MLCTL_MOTO_URL` (`eval "$(.ci/sagemaker-emulator.sh start)"`); without it the test
//! says why and passes, except under `CI=true`, where a missing emulator is a failure.

use crate::common::*;

fn moto_url() -> Option<String> {
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

#[test]
fn iris_applies_to_sagemaker_on_moto_and_converges() {
    let Some(url) = moto_url() else { return };
    let p = TestProject::example("iris");
    // moto's training jobs report no metrics, so the copy of the example has no gates.
    let model = p.read("ml/model.yaml");
    let gates = model.find("  gates:").unwrap();
    p.write("ml/model.yaml", &model[..gates]);
    p.replace(
        "mlctl.yaml",
        "      region: eu-west-1\n      roleArn: ${env:MLCTL_SM_ROLE}\n      bucket: s3://${env:MLCTL_SM_BUCKET}/iris\n",
        "      region: us-east-1\n      roleArn: ${env:MLCTL_SM_ROLE}\n      bucket: s3://${env:MLCTL_SM_BUCKET}/iris\n      endpointUrl: ${env:MLCTL_MOTO_URL}\n      emulator: moto\n",
    );
    std::fs::write(p.path().join(".gitignore"), ".mlctl/\n").unwrap();
    p.git(&["init", "-q", "-b", "main"]);
    p.git(&["config", "user.email", "test@example.com"]);
    p.git(&["config", "user.name", "Test"]);
    p.commit_all("iris on moto");
    let run = |args: &[&str]| {
        let out = mlctl()
            .args(args)
            .current_dir(p.path())
            .env("MLCTL_MOTO_URL", &url)
            .env(
                "MLCTL_SM_ROLE",
                "arn:aws:iam::123456789012:role/SageMakerRole",
            )
            .env("MLCTL_SM_BUCKET", "mlctl-e2e-cli")
            .env("MLCTL_SM_POLL_MS", "50")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .output()
            .unwrap();
        Run::from(out)
    };
    let plan = run(&["plan", "--target", "staging", "--detailed-exitcode"]).expect_code(2);
    assert!(plan.stdout.contains("Plan: 4 to add"), "{}", plan.stdout);
    assert!(
        plan.stdout
            .contains("emulator mode (moto): endpoints are replaced"),
        "the plan says what differs in emulator mode: {}",
        plan.stdout
    );
    let apply = run(&["reconcile", "--target", "staging"]).expect_code(0);
    assert!(
        apply.stdout.contains("4 added"),
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
        destroy.stdout.contains("4 destroyed"),
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
