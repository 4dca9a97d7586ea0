//! The "examples" group of the conformance suite: every project under `examples/` validates,
//! plans and applies **unchanged** on the mock, the local, the SageMaker (moto) and the
//! azureml target (the fake ARM server and Azurite), and a plan right after says there is
//! nothing to do.
//!
//! "Unchanged" means the resources and the data as committed. Two things belong to the machine
//! the test runs on, not to the spec, and are set here: a local endpoint's `port` (tests run at
//! once, so each gets a free one) and the targets themselves (a `mock`, `local` or SageMaker
//! target is added under `targets:` when the example has none; the SageMaker one points at
//! moto with `emulator: moto`).
//!
//! Needs `MLCTL_MOTO_URL` for the SageMaker part: without it that part says why and is
//! skipped, except under `CI=true`, where it fails (see `sagemaker::moto_url`).

use crate::azureml::azure_emulators;
use crate::common::*;
use crate::sagemaker::{moto_url, on_moto};

/// Every example, by directory name. `every_example_is_in_the_group` keeps it complete.
const EXAMPLES: &[&str] = &["churn", "environments", "housing", "iris"];

#[test]
fn every_example_is_in_the_group() {
    let mut found: Vec<String> = std::fs::read_dir(repo_root().join("examples"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("mlctl.yaml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    assert_eq!(found, EXAMPLES, "add the new example to EXAMPLES");
}

/// The name of the first target in `mlctl.yaml` with `provider: <provider>`.
fn target_of(p: &TestProject, provider: &str) -> Option<String> {
    let text = p.read("mlctl.yaml");
    let mut name = None;
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("    ").and_then(|l| l.strip_suffix(':'))
            && !n.starts_with(' ')
        {
            name = Some(n.to_string());
        }
        if line.trim() == format!("provider: {provider}") {
            return name;
        }
    }
    None
}

/// Adds `block` (a target, indented as under `targets:`) to the project's targets.
fn add_target(p: &TestProject, block: &str) {
    p.replace(
        "mlctl.yaml",
        "  targets:\n",
        &format!("  targets:\n{block}"),
    );
}

/// Each local endpoint of the example on a free port.
fn free_ports(p: &TestProject) {
    let ml = p.path().join("ml");
    for entry in std::fs::read_dir(&ml).unwrap().filter_map(|e| e.ok()) {
        let rel = format!("ml/{}", entry.file_name().to_string_lossy());
        let text = p.read(&rel);
        if !text.contains("kind: Endpoint") {
            continue;
        }
        let out: Vec<String> = text
            .lines()
            .map(|l| match l.strip_prefix("  port: ") {
                Some(_) => format!("  port: {}", free_listen_port()),
                None => l.to_string(),
            })
            .collect();
        p.write(&rel, &(out.join("\n") + "\n"));
    }
}

/// validate, plan, apply, plan (no changes), destroy on `target`, through `run`.
fn round_trip(example: &str, target: &str, run: &dyn Fn(&[&str]) -> Run) {
    let what = format!("example `{example}` on target `{target}`");
    run(&["validate", "--target", target]).expect_code(0);
    let plan = run(&["plan", "--target", target, "--detailed-exitcode"]);
    assert_eq!(
        plan.code, 2,
        "{what}: plan should propose changes\n{}\n{}",
        plan.stdout, plan.stderr
    );
    let apply = run(&["apply", "--target", target, "--auto-approve"]);
    assert_eq!(
        apply.code, 0,
        "{what}: apply\n{}\n{}",
        apply.stdout, apply.stderr
    );
    let again = run(&["plan", "--target", target, "--detailed-exitcode"]);
    assert!(
        again.code == 0 && again.stdout.starts_with("No changes."),
        "{what}: a plan after apply must say no changes\n{}\n{}",
        again.stdout,
        again.stderr
    );
    let destroy = run(&["destroy", "--target", target, "--auto-approve"]);
    assert_eq!(
        destroy.code, 0,
        "{what}: destroy\n{}\n{}",
        destroy.stdout, destroy.stderr
    );
}

fn applies_unchanged_everywhere(example: &str) {
    let p = TestProject::example(example);
    free_ports(&p);
    if target_of(&p, "mock").is_none() {
        add_target(&p, "    conformance-mock:\n      provider: mock\n");
    }
    if target_of(&p, "local").is_none() {
        add_target(&p, "    conformance-local:\n      provider: local\n");
    }
    let moto = moto_url();
    if moto.is_some() {
        // Its own bucket prefix and project-unique SageMaker names (moto keeps them globally).
        add_target(
            &p,
            &format!(
                "    conformance-moto:\n      provider: sagemaker\n      region: us-east-1\n      roleArn: ${{env:MLCTL_SM_ROLE}}\n      bucket: s3://${{env:MLCTL_SM_BUCKET}}/examples-{example}\n      endpointUrl: ${{env:MLCTL_MOTO_URL}}\n      emulator: moto\n"
            ),
        );
    }
    let azure = azure_emulators();
    if let Some(az) = &azure {
        let container = az.container(&format!("ex-{example}"));
        add_target(
            &p,
            &az.target_block("conformance-azureml", &format!("{example}-ws"), &container),
        );
    }
    let p = p.into_git();
    if let Some(az) = &azure {
        let run = |args: &[&str]| az.run(&p, args);
        round_trip(example, "conformance-azureml", &run);
        az.assert_contract_clean();
    }
    for provider in ["mock", "local"] {
        let target = target_of(&p, provider).unwrap();
        round_trip(example, &target, &|args| p.mlctl(args));
    }
    if let Some(url) = moto {
        round_trip(example, "conformance-moto", &|args| on_moto(&p, &url, args));
    }
}

#[test]
fn example_churn_applies_unchanged_on_every_target() {
    applies_unchanged_everywhere("churn");
}

#[test]
fn example_environments_applies_unchanged_on_every_target() {
    applies_unchanged_everywhere("environments");
}

#[test]
fn example_housing_applies_unchanged_on_every_target() {
    applies_unchanged_everywhere("housing");
}

#[test]
fn example_iris_applies_unchanged_on_every_target() {
    applies_unchanged_everywhere("iris");
}
