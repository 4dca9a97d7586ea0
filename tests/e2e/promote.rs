//! `mlctl promote`: a version validated on one target is the same bytes on the next, whose
//! plan deploys it without training; per-target overrides change what a target gets, not
//! which model it is.

use crate::common::*;

/// The iris example on a free port with an all-at-once rollout, a second local target
/// `prod` (its own state directory) beside `local` and `test` (mock), and `overrides`
/// written after each manifest named in `overrides` (`(file, yaml)`), committed.
fn environments(overrides: &[(&str, &str)]) -> TestProject {
    let (p, _port) = iris_on_a_free_port("{type: all-at-once}");
    p.replace(
        "mlctl.yaml",
        "    test:\n      provider: mock\n",
        "    test:\n      provider: mock\n    prod:\n      provider: local\n      root: .mlctl/prod-state\n",
    );
    for (file, yaml) in overrides {
        let text = p.read(file);
        p.write(file, &format!("{text}overrides:\n{yaml}"));
    }
    std::fs::write(p.path().join(".gitignore"), ".mlctl/\n").unwrap();
    p.git(&["init", "-q", "-b", "main"]);
    p.git(&["config", "user.email", "test@example.com"]);
    p.git(&["config", "user.name", "Test"]);
    p.commit_all("environments");
    p
}

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

/// Every file of a directory, by relative path.
fn files_under(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The flow: a reconcile on `local`, a promote to `test` (mock) whose plan trains
/// nothing and then, after an apply, shows no changes; promoting again changes nothing; the
/// same bytes go on from the mock to a second local target; a hyperparameter change is a new
/// model (retrained, and the old version is refused).
#[test]
fn a_promoted_version_deploys_on_the_next_target_as_the_same_bytes_without_training() {
    // `prod` is a second local target on this machine: its endpoint takes another port.
    let prod_port = format!("  prod:\n    port: {}\n", free_listen_port());
    let p = environments(&[
        (
            "ml/train.yaml",
            "  test:\n    compute: {cpu: 2}\n  prod:\n    compute: {cpu: 2, timeout: 30m}\n",
        ),
        ("ml/endpoint.yaml", &prod_port),
    ]);
    p.mlctl(&["reconcile", "-t", "local"]).expect_code(0);

    let promoted = p
        .mlctl(&[
            "promote", "iris", "--from", "local", "--to", "test", "-o", "json",
        ])
        .expect_code(0);
    let out = json(&promoted);
    assert_eq!(out["from"]["version"], 1);
    assert_eq!(out["to"]["version"], 1);
    assert_eq!(
        out["to"]["stage"], "production",
        "the spec's stage on `test`"
    );
    assert_eq!(out["alreadyPromoted"], false);
    let digest = out["digest"].as_str().unwrap().to_string();
    assert!(digest.starts_with("blake3:"), "{digest}");

    // The destination trains nothing: compute differs there (an override), the model does not.
    let plan = p
        .mlctl(&["plan", "-t", "test", "--detailed-exitcode"])
        .expect_code(2);
    assert!(
        !plan.stdout.contains("TrainingJob/iris-train") && !plan.stdout.contains("+ Model/iris"),
        "nothing is trained or registered: {}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("deploys Model/iris v1 (production, promoted from `local` v1)"),
        "the plan says what it deploys: {}",
        plan.stdout
    );
    p.mlctl(&["apply", "-t", "test", "--auto-approve"])
        .expect_code(0);
    let plan = p
        .mlctl(&["plan", "-t", "test", "--detailed-exitcode"])
        .expect_code(0);
    assert!(plan.stdout.contains("No changes."), "{}", plan.stdout);

    // Idempotent: once registered, once recorded.
    let again = p
        .mlctl(&["promote", "iris:1", "--from", "local", "--to", "test"])
        .expect_code(0);
    assert!(
        again
            .stdout
            .contains("was promoted to `test` before, as v1"),
        "{}",
        again.stdout
    );
    let versions = p
        .mlctl(&["models", "list", "-t", "test", "-o", "json"])
        .expect_code(0);
    assert_eq!(
        versions.stdout.matches("\"version\"").count(),
        1,
        "one version on test: {}",
        versions.stdout
    );
    let history = p
        .mlctl(&["history", "Model/iris", "-t", "test"])
        .expect_code(0);
    assert!(history.stdout.contains("promote"), "{}", history.stdout);
    let shown = p
        .mlctl(&["models", "show", "iris", "1", "-t", "test"])
        .expect_code(0);
    for line in [
        "promotedFrom local",
        "promotedFromVersion 1",
        &format!("artifactDigest {digest}"),
    ] {
        assert!(
            shown.stdout.contains(line),
            "lineage has `{line}`: {}",
            shown.stdout
        );
    }

    // From the mock on to a second local target: the same files, byte for byte.
    let on = p
        .mlctl(&[
            "promote", "iris", "--from", "test", "--to", "prod", "-o", "json",
        ])
        .expect_code(0);
    let out = json(&on);
    assert_eq!(
        out["digest"],
        digest.as_str(),
        "the same bytes on every target"
    );
    let dev_dir = p.path().join(".mlctl/local/registry/iris/1");
    let prod_dir = std::path::PathBuf::from(out["to"]["artifactUri"].as_str().unwrap());
    assert!(
        prod_dir.starts_with(p.path().join(".mlctl/prod-state")),
        "{prod_dir:?}"
    );
    assert_eq!(files_under(&dev_dir), files_under(&prod_dir));
    p.mlctl(&["apply", "-t", "prod", "--auto-approve"])
        .expect_code(0);
    p.mlctl(&["plan", "-t", "prod", "--detailed-exitcode"])
        .expect_code(0);
    let runs = p.mlctl(&["runs", "list", "-t", "prod"]).expect_code(0);
    assert!(
        !runs.stdout.contains("iris-train"),
        "prod trained nothing: {}",
        runs.stdout
    );

    // Other hyperparameters are another model: `test` retrains, and v1 is not promoted into it.
    p.replace("ml/train.yaml", "    C: 1.0\n", "    C: 2.0\n");
    p.commit_all("C = 2");
    let plan = p
        .mlctl(&["plan", "-t", "test", "--detailed-exitcode"])
        .expect_code(2);
    assert!(
        plan.stdout
            .contains("TrainingJob/iris-train must be replaced"),
        "{}",
        plan.stdout
    );
    let refused = p
        .mlctl(&["promote", "iris:1", "--from", "local", "--to", "test"])
        .expect_code(1);
    assert!(
        refused
            .stderr
            .contains("was not trained by the spec at commit")
            && refused.stderr.contains("--rev"),
        "{}",
        refused.stderr
    );
    kill_endpoints(&p.path().join(".mlctl/local"));
    kill_endpoints(&p.path().join(".mlctl/prod-state"));
}

/// `overrides.<target>`: `plan -t` shows the values that target gets (an override of
/// `instances` updates `test`'s endpoint and leaves `local` alone), `compute` overridden on
/// the destination does not retrain after a promotion, and a Model that requires manual
/// approval there registers the promoted version as pending, saying what to run.
#[test]
fn overrides_give_each_target_its_values_and_manual_approval_holds_a_promotion() {
    let p = environments(&[
        ("ml/train.yaml", "  test:\n    compute: {cpu: 2}\n"),
        ("ml/model.yaml", "  test:\n    approval: manual\n"),
        ("ml/endpoint.yaml", "  test:\n    instances: 2\n"),
    ]);
    p.mlctl(&["reconcile", "-t", "local"]).expect_code(0);
    let promoted = p
        .mlctl(&["promote", "iris", "--from", "local", "--to", "test"])
        .expect_code(0);
    assert!(
        promoted
            .stdout
            .contains("`test` requires manual approval: run `mlctl models approve iris 1 -t test`"),
        "{}",
        promoted.stdout
    );
    let plan = p.mlctl(&["plan", "-t", "test"]).expect_code(0);
    assert!(
        plan.stdout.contains("is waiting for approval"),
        "the plan says who has to act: {}",
        plan.stdout
    );
    assert!(
        !plan.stdout.contains("TrainingJob/iris-train"),
        "{}",
        plan.stdout
    );
    p.mlctl(&["models", "approve", "iris", "1", "-t", "test"])
        .expect_code(0);
    p.mlctl(&["apply", "-t", "test", "--auto-approve"])
        .expect_code(0);
    p.mlctl(&["plan", "-t", "test", "--detailed-exitcode"])
        .expect_code(0);

    // `test` gets 3 instances: its plan shows the new value; `local` keeps 1 and has nothing to do.
    p.replace(
        "ml/endpoint.yaml",
        "    instances: 2\n",
        "    instances: 3\n",
    );
    p.commit_all("3 instances on test");
    let plan = p
        .mlctl(&["plan", "-t", "test", "-o", "json", "--detailed-exitcode"])
        .expect_code(2);
    let plan = json(&plan);
    let endpoint = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"]["kind"] == "Endpoint")
        .unwrap();
    let diff = endpoint["diff"].as_array().unwrap();
    assert!(
        diff.iter()
            .any(|d| d["path"] == "spec.instances" && d["old"] == 2 && d["new"] == 3),
        "{endpoint}"
    );
    assert!(
        plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| ["Dataset", "TrainingJob", "Model"]
                .contains(&c["id"]["kind"].as_str().unwrap()))
            .all(|c| c["action"] == "no-op"),
        "the endpoint changes on test (and its monitor follows it), nothing is trained: {plan}"
    );
    p.mlctl(&["plan", "-t", "local", "--detailed-exitcode"])
        .expect_code(0);
    kill_endpoints(&p.path().join(".mlctl/local"));
}

/// A version that is not approved is not promoted, nor a model the project lacks, nor into
/// the target it comes from; each says what to do.
#[test]
fn promote_refuses_with_what_to_do() {
    let p = environments(&[("ml/model.yaml", "  local:\n    approval: manual\n")]);
    // The endpoint waits for the approval; the version is registered.
    p.mlctl(&["reconcile", "-t", "local"]);
    let pending = p
        .mlctl(&["promote", "iris:1", "--from", "local", "--to", "test"])
        .expect_code(1);
    assert!(
        pending
            .stderr
            .contains("approve it there first: `mlctl models approve iris 1 -t local`"),
        "{}",
        pending.stderr
    );
    let none = p
        .mlctl(&["promote", "iris", "--from", "local", "--to", "test"])
        .expect_code(1);
    assert!(
        none.stderr.contains("no version in production or approved"),
        "{}",
        none.stderr
    );
    p.mlctl(&["models", "reject", "iris", "1", "-t", "local"])
        .expect_code(0);
    let rejected = p
        .mlctl(&["promote", "iris:1", "--from", "local", "--to", "test"])
        .expect_code(1);
    assert!(
        rejected.stderr.contains("was rejected"),
        "{}",
        rejected.stderr
    );
    let same = p
        .mlctl(&["promote", "iris", "--from", "test", "--to", "test"])
        .expect_code(1);
    assert!(
        same.stderr.contains("promote between two targets"),
        "{}",
        same.stderr
    );
    let unknown = p
        .mlctl(&["promote", "iris", "--from", "local", "--to", "tset"])
        .expect_code(1);
    assert!(
        unknown.stderr.contains("did you mean `test`?"),
        "{}",
        unknown.stderr
    );
    kill_endpoints(&p.path().join(".mlctl/local"));
}

/// local -> SageMaker (moto) -> local: the files go to S3 as a `model.tar.gz`, are read back
/// and verified there, registered as a model package whose lineage says where it came from,
/// deployed by the staging apply without a training job, and come back to a second local
/// target as the same bytes. Needs `MLCTL_MOTO_URL` (skips visibly without it; a failure
/// under `CI=true`).
#[test]
fn promotion_goes_to_sagemaker_and_back_as_the_same_bytes() {
    let Some(url) = crate::sagemaker::moto_url() else {
        return;
    };
    let p = crate::sagemaker::iris_on_moto("promote", "irispromo");
    // The local copies on free ports, with an all-at-once rollout (moto cannot bake a canary).
    let endpoint = p.read("ml/endpoint.yaml");
    let start = endpoint.find("  strategy:\n").unwrap();
    let end = endpoint.find("  capture:\n").unwrap();
    p.write(
        "ml/endpoint.yaml",
        &format!(
            "{}  strategy: {{type: all-at-once}}\n{}overrides:\n  local:\n    port: {}\n  back:\n    port: {}\n",
            &endpoint[..start].replace("  port: 8765\n", ""),
            &endpoint[end..],
            free_listen_port(),
            free_listen_port(),
        ),
    );
    p.replace(
        "mlctl.yaml",
        "    test:\n      provider: mock\n",
        "    test:\n      provider: mock\n    back:\n      provider: local\n      root: .mlctl/back-state\n",
    );
    std::fs::write(p.path().join(".gitignore"), ".mlctl/\n").unwrap();
    p.git(&["init", "-q", "-b", "main"]);
    p.git(&["config", "user.email", "test@example.com"]);
    p.git(&["config", "user.name", "Test"]);
    p.commit_all("iris on local, moto and back");
    let run = |args: &[&str]| crate::sagemaker::on_moto(&p, &url, args);
    run(&["reconcile", "-t", "local"]).expect_code(0);

    let to_sm = run(&[
        "promote", "iris", "--from", "local", "--to", "staging", "-o", "json",
    ]);
    let to_sm = to_sm.expect_code(0);
    let out = json(&to_sm);
    let digest = out["digest"].as_str().unwrap().to_string();
    let uri = out["to"]["artifactUri"].as_str().unwrap();
    assert!(
        uri.starts_with("s3://mlctl-e2e-cli/promote/artifacts/promoted/")
            && uri.ends_with("/model.tar.gz"),
        "{uri}"
    );
    let plan = run(&["plan", "-t", "staging", "--detailed-exitcode"]).expect_code(2);
    assert!(
        !plan.stdout.contains("TrainingJob/iris-train")
            && plan.stdout.contains("promoted from `local` v1"),
        "SageMaker trains nothing and deploys the promoted version: {}",
        plan.stdout
    );
    run(&["reconcile", "-t", "staging"]).expect_code(0);
    run(&["plan", "-t", "staging", "--detailed-exitcode"]).expect_code(0);
    let shown = run(&["models", "show", "iris", "-t", "staging"]);
    assert!(
        shown.stdout.contains(&digest),
        "{}\n{}",
        shown.stdout,
        shown.stderr
    );

    let back = run(&[
        "promote", "iris", "--from", "staging", "--to", "back", "-o", "json",
    ])
    .expect_code(0);
    let out = json(&back);
    assert_eq!(
        out["digest"],
        digest.as_str(),
        "unpacked from S3, the same files"
    );
    let dev_dir = p.path().join(".mlctl/local/registry/iris/1");
    let back_dir = std::path::PathBuf::from(out["to"]["artifactUri"].as_str().unwrap());
    assert_eq!(files_under(&dev_dir), files_under(&back_dir));
    run(&["reconcile", "-t", "back"]).expect_code(0);
    run(&["plan", "-t", "back", "--detailed-exitcode"]).expect_code(0);
    run(&["destroy", "-t", "staging", "--auto-approve"]);
    kill_endpoints(&p.path().join(".mlctl/local"));
    kill_endpoints(&p.path().join(".mlctl/back-state"));
}

/// `examples/environments` is valid for each of its targets (prod's overrides included), and
/// its README's dev -> staging promotion works as written.
#[test]
fn the_environments_example_promotes_from_dev_to_staging() {
    let p = TestProject::example("environments");
    p.replace(
        "ml/endpoint.yaml",
        "  port: 8766\n",
        &format!("  port: {}\n", free_listen_port()),
    );
    std::fs::write(p.path().join(".gitignore"), ".mlctl/\n").unwrap();
    p.git(&["init", "-q", "-b", "main"]);
    p.git(&["config", "user.email", "test@example.com"]);
    p.git(&["config", "user.name", "Test"]);
    p.commit_all("environments example");
    for target in ["dev", "staging", "prod"] {
        p.mlctl(&["validate", "-t", target]).expect_code(0);
    }
    p.mlctl(&["apply", "-t", "dev", "--auto-approve"])
        .expect_code(0);
    let promoted = p
        .mlctl(&["promote", "iris", "--from", "dev", "--to", "staging"])
        .expect_code(0);
    assert!(
        promoted
            .stdout
            .contains("Promoted iris v1 from `dev` to `staging` as v1"),
        "{}",
        promoted.stdout
    );
    let plan = p.mlctl(&["plan", "-t", "staging"]).expect_code(0);
    assert!(
        plan.stdout
            .contains("deploys Model/iris v1 (production, promoted from `dev` v1)")
            && !plan.stdout.contains("TrainingJob/iris-train"),
        "{}",
        plan.stdout
    );
    p.mlctl(&["apply", "-t", "staging", "--auto-approve"])
        .expect_code(0);
    let plan = p
        .mlctl(&["plan", "-t", "staging", "--detailed-exitcode"])
        .expect_code(0);
    assert!(plan.stdout.contains("No changes."), "{}", plan.stdout);
    let status = p.mlctl(&["status", "-t", "staging"]).expect_code(0);
    assert!(status.stdout.contains("Endpoint/iris"), "{}", status.stdout);
    kill_endpoints(&p.path().join(".mlctl/dev"));
}
