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
    // SageMaker rolls back on CloudWatch alarms; this target does not make alarms from
    // thresholds, and plan refuses them.
    p.replace(
        "ml/endpoint.yaml",
        "      maxErrorRate: 0.05\n      maxP99LatencyMs: 100\n",
        "      alarms: [iris-5xx]\n",
    );
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
    let apply = run(&["reconcile", "--target", "staging"]).expect_code(0);
    assert!(
        apply.stdout.contains("4 added"),
        "{}\n{}",
        apply.stdout,
        apply.stderr
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
}
