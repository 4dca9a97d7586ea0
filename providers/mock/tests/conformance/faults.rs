//! The mock's own behaviour: injected faults driven through the real plan/apply engine,
//! out-of-band changes, and state shared by separate processes.

use mlctl_conformance::Fixture;
use mlctl_core::apply::{self, ApplyOptions, ApplyReport, Outcome, Silent};
use mlctl_core::plan::{self, Desired, PlanOptions};
use mlctl_core::{
    Action, Health, JobHandle, JobState, LockInfo, OpContext, ProviderConfig, Stack,
    TrainingRequest, Variant,
};
use mlctl_spec::{Faults, Kind, MockTarget, ResourceId, Target};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

fn stack_with(fx: &Fixture, faults: Faults) -> Stack {
    let target = Target::Mock(MockTarget {
        faults: Some(faults),
        ..MockTarget::default()
    });
    mlctl_provider_mock::stack(&fx.provider_config(target)).expect("mock stack")
}

fn state_dir(fx: &Fixture) -> std::path::PathBuf {
    fx.provider_config(Target::mock()).state_dir()
}

fn opts() -> ApplyOptions {
    ApplyOptions {
        retry_base: Duration::from_millis(5),
        ..ApplyOptions::default()
    }
}

/// observe + plan + apply, like `mlctl apply`.
async fn apply_with(
    stack: &Stack,
    fx: &Fixture,
    desired: &Desired,
    opts: &ApplyOptions,
) -> ApplyReport {
    let ctx = OpContext {
        commit: desired.commit.clone(),
        ..fx.ctx.clone()
    };
    let observed = mlctl_core::observe(stack, &ctx, opts)
        .await
        .expect("observe");
    let p = plan::plan(desired, &observed, "test", PlanOptions::default());
    apply::apply(stack, &ctx, desired, &p, &observed, opts, Arc::new(Silent)).await
}

fn outcome<'r>(r: &'r ApplyReport, kind: Kind, name: &str) -> &'r Outcome {
    let id = ResourceId::new(kind, name);
    r.results
        .iter()
        .find(|(i, _)| *i == id)
        .map(|(_, o)| o)
        .unwrap_or_else(|| panic!("{id} not in report {r:?}"))
}

fn failed_with<'r>(r: &'r ApplyReport, kind: Kind, name: &str) -> &'r str {
    match outcome(r, kind, name) {
        Outcome::Failed(m) => m,
        o => panic!("{kind}/{name} must fail, got {o:?}"),
    }
}

fn is_skipped(r: &ApplyReport, kind: Kind, name: &str) -> bool {
    matches!(outcome(r, kind, name), Outcome::Skipped(_))
}

#[tokio::test]
async fn fail_training_stops_dependants_and_a_rerun_without_the_fault_converges() {
    let fx = Fixture::new("test").unwrap();
    let d = fx.desired(&Fixture::commit(1));
    let broken = stack_with(
        &fx,
        Faults {
            fail_training: vec!["iris-train".into()],
            ..Faults::default()
        },
    );
    let r = apply_with(&broken, &fx, &d, &opts()).await;
    assert!(matches!(
        outcome(&r, Kind::Dataset, "iris"),
        Outcome::Applied(_)
    ));
    let m = failed_with(&r, Kind::TrainingJob, "iris-train");
    assert!(
        m.contains("failTraining") && m.contains("iris-train"),
        "{m}"
    );
    assert!(
        is_skipped(&r, Kind::Model, "iris")
            && is_skipped(&r, Kind::Endpoint, "iris")
            && is_skipped(&r, Kind::Monitor, "iris-drift")
    );

    // Still configured to fail: a re-run tries again (a new attempt), and fails again.
    let r = apply_with(&broken, &fx, &d, &opts()).await;
    failed_with(&r, Kind::TrainingJob, "iris-train");

    // The fault removed from the target config (a new process reading mlctl.yaml).
    let fixed = stack_with(&fx, Faults::default());
    let observed = mlctl_core::observe(&fixed, &fx.ctx, &opts()).await.unwrap();
    let p = plan::plan(&d, &observed, "test", PlanOptions::default());
    let tj = p
        .changes
        .iter()
        .find(|c| c.id.kind == Kind::TrainingJob)
        .unwrap();
    assert_eq!(tj.action, Action::Create);
    assert!(
        tj.reasons
            .iter()
            .any(|r| r.contains("last apply failed") && r.contains("failTraining")),
        "{:?}",
        tj.reasons
    );
    let r = apply_with(&fixed, &fx, &d, &opts()).await;
    assert!(!r.failed(), "{r:?}");
    assert_eq!(outcome(&r, Kind::Dataset, "iris"), &Outcome::NoOp);

    // One job name, three attempts: never a second job.
    let runs = fixed
        .trainer
        .runs(&fx.ctx, Some("iris-train"))
        .await
        .unwrap();
    let jobs: std::collections::BTreeSet<&str> = runs.iter().map(|r| r.job_name.as_str()).collect();
    assert_eq!(jobs.len(), 1, "{runs:?}");
    assert_eq!(
        runs.iter().map(|r| r.status.as_str()).collect::<Vec<_>>(),
        vec!["failed", "failed", "completed"]
    );
    let logs = fixed
        .trainer
        .logs(&fx.ctx, &runs[0].job_name)
        .await
        .unwrap();
    assert!(
        logs.contains("attempt 3") && logs.contains("completed"),
        "{logs}"
    );
}

#[tokio::test]
async fn the_nth_submitted_job_fails_counted_across_processes() {
    let fx = Fixture::new("test").unwrap();
    let faults = Faults {
        fail_nth_training_job: Some(2),
        ..Faults::default()
    };
    let r = apply_with(
        &stack_with(&fx, faults.clone()),
        &fx,
        &fx.desired(&Fixture::commit(1)),
        &opts(),
    )
    .await;
    assert!(!r.failed(), "job #1 succeeds: {r:?}");

    fx.set_hyperparameter_c("0.5");
    let d2 = fx.desired(&Fixture::commit(2));
    // A fresh stack: the count lives in the target, not in the process.
    let r = apply_with(&stack_with(&fx, faults.clone()), &fx, &d2, &opts()).await;
    let m = failed_with(&r, Kind::TrainingJob, "iris-train");
    assert!(m.contains("failNthTrainingJob") && m.contains("#2"), "{m}");
    assert!(is_skipped(&r, Kind::Endpoint, "iris"));

    // The re-run resubmits the same job name: submission #3, which succeeds.
    let r = apply_with(&stack_with(&fx, faults), &fx, &d2, &opts()).await;
    assert!(!r.failed(), "{r:?}");
}

#[tokio::test]
async fn a_training_job_that_never_finishes_times_out_is_cancelled_and_can_be_rerun() {
    let fx = Fixture::new("test").unwrap();
    let d = fx.desired(&Fixture::commit(1));
    let stuck = stack_with(
        &fx,
        Faults {
            timeout: vec!["iris-train".into()],
            ..Faults::default()
        },
    );
    let short = ApplyOptions {
        timeout: Duration::from_millis(150),
        ..opts()
    };
    let r = apply_with(&stuck, &fx, &d, &short).await;
    let m = failed_with(&r, Kind::TrainingJob, "iris-train");
    assert!(m.contains("did not finish"), "{m}");
    let runs = stuck
        .trainer
        .runs(&fx.ctx, Some("iris-train"))
        .await
        .unwrap();
    let job = JobHandle {
        name: runs[0].job_name.clone(),
        provider_id: String::new(),
    };
    match stuck.trainer.poll(&fx.ctx, &job).await.unwrap() {
        JobState::Failed { reason } => assert!(reason.contains("cancelled"), "{reason}"),
        s => panic!("a timed-out job is cancelled, got {s:?}"),
    }
    let r = apply_with(&stack_with(&fx, Faults::default()), &fx, &d, &opts()).await;
    assert!(!r.failed(), "{r:?}");
}

/// Regression: a job left running under the `timeout` fault by a killed `mlctl` (nobody
/// cancelled it) must finish once the fault is removed, not hang the next apply forever.
#[tokio::test]
async fn a_job_orphaned_under_the_timeout_fault_finishes_once_the_fault_is_gone() {
    let fx = Fixture::new("test").unwrap();
    let stuck = stack_with(
        &fx,
        Faults {
            timeout: vec!["iris-train".into()],
            ..Faults::default()
        },
    );
    let data = stuck
        .data
        .register_dataset(&fx.ctx, &fx.dataset_request("iris", "d"))
        .await
        .unwrap();
    let req = fx.training_request("iris-train", "t", data);
    let job = stuck.trainer.submit(&fx.ctx, &req).await.unwrap();
    for _ in 0..5 {
        assert!(matches!(
            stuck.trainer.poll(&fx.ctx, &job).await.unwrap(),
            JobState::Running { progress: None, .. }
        ));
    }
    // The process dies here. The next one runs without the fault and finds the same job.
    let fixed = stack_with(&fx, Faults::default());
    assert_eq!(fixed.trainer.submit(&fx.ctx, &req).await.unwrap(), job);
    let mut state = JobState::Pending;
    for _ in 0..5 {
        state = fixed.trainer.poll(&fx.ctx, &job).await.unwrap();
    }
    assert!(matches!(state, JobState::Completed(_)), "{state:?}");
}

#[tokio::test]
async fn a_rollout_that_never_finishes_times_out() {
    let fx = Fixture::new("test").unwrap();
    let stuck = stack_with(
        &fx,
        Faults {
            timeout: vec!["iris".into()],
            ..Faults::default()
        },
    );
    let short = ApplyOptions {
        timeout: Duration::from_millis(150),
        ..opts()
    };
    let r = apply_with(&stuck, &fx, &fx.desired(&Fixture::commit(1)), &short).await;
    assert!(matches!(
        outcome(&r, Kind::Model, "iris"),
        Outcome::Applied(_)
    ));
    assert!(failed_with(&r, Kind::Endpoint, "iris").contains("did not finish"));
    assert!(is_skipped(&r, Kind::Monitor, "iris-drift"));
}

#[tokio::test]
async fn failed_deployments_fail_new_endpoints_and_roll_canaries_back() {
    let fx = Fixture::new("test").unwrap();
    let d = fx.desired(&Fixture::commit(1));
    let failing = Faults {
        fail_deployment: vec!["iris".into()],
        ..Faults::default()
    };
    let r = apply_with(&stack_with(&fx, failing.clone()), &fx, &d, &opts()).await;
    assert!(failed_with(&r, Kind::Endpoint, "iris").contains("failDeployment"));
    assert!(is_skipped(&r, Kind::Monitor, "iris-drift"));
    let ok = stack_with(&fx, Faults::default());
    let status = ok
        .deployer
        .status(&fx.ctx, "iris")
        .await
        .unwrap()
        .expect("the failed endpoint exists");
    assert_eq!(status.health, Health::Failed);
    let r = apply_with(&ok, &fx, &d, &opts()).await;
    assert!(!r.failed(), "{r:?}");

    // A canary of a new version fails: rolled back, v1 keeps serving, healthy.
    fx.write(
        "ml/endpoint.yaml",
        &std::fs::read_to_string(fx.dir().join("ml/endpoint.yaml"))
            .unwrap()
            .replace(
                "  instances: 1\n",
                "  instances: 1\n  strategy: {type: canary, percent: 10, bakeTime: 1s}\n",
            ),
    )
    .unwrap();
    fx.set_hyperparameter_c("0.25");
    let r = apply_with(
        &stack_with(&fx, failing),
        &fx,
        &fx.desired(&Fixture::commit(2)),
        &opts(),
    )
    .await;
    let m = failed_with(&r, Kind::Endpoint, "iris");
    assert!(
        m.contains("rolled back") && m.contains("still serving iris v1"),
        "{m}"
    );
    let status = ok.deployer.status(&fx.ctx, "iris").await.unwrap().unwrap();
    assert_eq!(
        (status.health, status.variants[0].version),
        (Health::Healthy, 1)
    );
}

#[tokio::test]
async fn traffic_shifted_by_hand_is_drift_and_captured_data_is_readable() {
    let fx = Fixture::new("test").unwrap();
    let stack = stack_with(&fx, Faults::default());
    let d = fx.desired(&Fixture::commit(1));
    assert!(!apply_with(&stack, &fx, &d, &opts()).await.failed());
    let dir = state_dir(&fx);
    mlctl_provider_mock::shift_traffic(
        &dir,
        "iris",
        vec![Variant {
            model: "iris".into(),
            version: 7,
            weight: 100,
        }],
    )
    .unwrap();
    let observed = mlctl_core::observe(&stack, &fx.ctx, &opts()).await.unwrap();
    let p = plan::plan(&d, &observed, "test", PlanOptions::default());
    let ep = p
        .changes
        .iter()
        .find(|c| c.id.kind == Kind::Endpoint)
        .unwrap();
    assert_eq!(ep.action, Action::Update);
    assert!(
        ep.reasons
            .iter()
            .any(|r| r
                .contains("serving versions changed outside mlctl: iris v1 100% -> iris v7 100%")),
        "{:?}",
        ep.reasons
    );

    for i in 0..5 {
        mlctl_provider_mock::capture(&dir, "iris", serde_json::json!({"request": i})).unwrap();
    }
    let got = stack.monitor.captured(&fx.ctx, "iris", 2).await.unwrap();
    assert_eq!(
        got,
        vec![
            serde_json::json!({"request": 3}),
            serde_json::json!({"request": 4})
        ]
    );

    let e = mlctl_provider_mock::tamper_endpoint(&dir, "nope", 2).unwrap_err();
    assert!(e.message.contains("endpoint `nope` does not exist"), "{e}");
}

#[tokio::test]
async fn remote_data_and_its_transforms_are_recorded_without_reading() {
    let fx = Fixture::new("test").unwrap();
    let stack = stack_with(&fx, Faults::default());
    let mut remote = fx.dataset_request("remote", "remote");
    remote.spec.source = Some("s3://bucket/iris.csv".into());
    let v = stack.data.register_dataset(&fx.ctx, &remote).await.unwrap();
    assert_eq!((v.uri.as_str(), v.rows), ("s3://bucket/iris.csv", 0));
    assert_eq!(v.columns.len(), 5, "columns come from the schema");

    // A transform of remote data has nothing to run on: it is named by what went in.
    let transform = |input: &str| {
        let mut derived = fx.dataset_request(&format!("derived-{input}"), input);
        derived.spec.source = None;
        derived.spec.transform = Some(
            serde_json::from_value(
                serde_json::json!({"command": "python3 clean.py", "inputs": [input]}),
            )
            .unwrap(),
        );
        derived
    };
    let mut derived = transform("remote");
    derived.inputs.insert("remote".into(), v.clone());
    let d = stack
        .data
        .register_dataset(&fx.ctx, &derived)
        .await
        .unwrap();
    assert_eq!(d.rows, v.rows);
    assert_ne!(d.digest, v.digest);
    assert!(
        d.uri.starts_with("mock://datasets/derived-remote/"),
        "{}",
        d.uri
    );

    // A transform of data the mock has runs for real: here a script that is not there.
    let base = stack
        .data
        .register_dataset(&fx.ctx, &fx.dataset_request("base", "base"))
        .await
        .unwrap();
    let mut derived = transform("base");
    derived.inputs.insert("base".into(), base);
    let err = stack
        .data
        .register_dataset(&fx.ctx, &derived)
        .await
        .unwrap_err();
    assert_eq!(err.kind, mlctl_core::ErrorKind::Failed);
    assert!(
        err.message.contains("python3 clean.py") && err.message.contains("clean.py"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Separate processes: this test binary re-runs itself as children.

const CHILD_DIR: &str = "MLCTL_MOCK_TEST_CHILD_DIR";
const CHILD_ID: &str = "MLCTL_MOCK_TEST_CHILD_ID";

fn child_stack(dir: &Path) -> Stack {
    let cfg = ProviderConfig {
        project: "race".into(),
        project_dir: dir.to_path_buf(),
        target_name: "test".into(),
        target: Target::Mock(MockTarget {
            root: Some(dir.display().to_string()),
            ..MockTarget::default()
        }),
    };
    mlctl_provider_mock::stack(&cfg).unwrap()
}

fn child_job(name: &str) -> TrainingRequest {
    let fp = blake3::hash(name.as_bytes()).to_hex().to_string();
    TrainingRequest {
        job_name: name.into(),
        resource: "race".into(),
        spec: serde_json::from_value(serde_json::json!({"dataset": "d", "algorithm": "logistic_regression"})).unwrap(),
        dataset: serde_json::from_value(serde_json::json!({"name": "d", "fingerprint": "f", "digest": "0", "uri": "u", "rows": 1, "columns": []})).unwrap(),
        target_column: None,
        schema: None,
        tags: mlctl_core::Tags { project: "race".into(), resource: "TrainingJob/race".into(), fingerprint: fp.clone(), commit: "c".into(), labels: Default::default() },
        fingerprint: fp,
        split: None,
    }
}

/// Not a test of its own: the body of a child process of the test below (a no-op otherwise).
#[test]
fn child_process() {
    let (Ok(dir), Ok(id)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_ID)) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let stack = child_stack(Path::new(&dir));
        let ctx = OpContext {
            project: "race".into(),
            project_dir: dir.clone().into(),
            target: "test".into(),
            commit: "c".into(),
        };
        let info = LockInfo {
            format_version: mlctl_core::state::FORMAT_VERSION,
            id: format!("child-{id}"),
            holder: "t".into(),
            host: "h".into(),
            pid: std::process::id(),
            since: "s".into(),
            command: "c".into(),
            boot_id: None,
            process_start: None,
            heartbeat: None,
            lease_seconds: None,
        };
        let won = stack.state.lock("race", &info).await.is_ok();
        let own = stack
            .trainer
            .submit(&ctx, &child_job(&format!("own-{id}")))
            .await
            .unwrap();
        let shared = stack
            .trainer
            .submit(&ctx, &child_job("shared"))
            .await
            .unwrap();
        println!(
            "CHILD lock={won} own={} shared={}",
            own.provider_id, shared.provider_id
        );
    });
}

#[test]
fn separate_processes_share_state_and_exactly_one_gets_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|i| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "faults::child_process",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_DIR, dir.path())
                .env(CHILD_ID, i.to_string())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut lines = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // The harness prints `test ... ` on the same line before the child's report.
        let report = text
            .find("CHILD ")
            .map(|i| text[i..].lines().next().unwrap_or_default().to_string());
        lines.push(report.unwrap_or_else(|| panic!("no child report in {text}")));
    }
    assert_eq!(
        lines.iter().filter(|l| l.contains("lock=true")).count(),
        1,
        "{lines:?}"
    );
    // One `shared` job for all four, and five submissions numbered 1..=5 with no duplicates.
    let shared: std::collections::BTreeSet<&str> = lines
        .iter()
        .map(|l| l.rsplit("shared=").next().unwrap())
        .collect();
    assert_eq!(shared.len(), 1, "{lines:?}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let runs = rt.block_on(child_stack(dir.path()).trainer.runs(
        &OpContext {
            project: "race".into(),
            project_dir: dir.path().into(),
            target: "test".into(),
            commit: "c".into(),
        },
        None,
    ));
    assert_eq!(runs.unwrap().len(), 5);
}

/// A held lock renews its own lease: after a renewal period its heartbeat is newer, so a
/// long apply never looks expired to another machine.
#[tokio::test(start_paused = true)]
async fn a_held_lock_renews_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    let stack = child_stack(dir.path());
    let info = LockInfo::for_this_process("renewing".into(), "mlctl apply".into());
    let first = info.heartbeat.clone();
    let lock = mlctl_core::Lock::acquire(&stack, "race", info)
        .await
        .unwrap();
    // Paused time: sleeping advances the clock at once, and the renewer runs meanwhile. (The
    // heartbeat is wall-clock time with nanoseconds, so a renewal always changes it.)
    tokio::time::sleep(mlctl_core::state::LOCK_RENEW_EVERY + Duration::from_secs(1)).await;
    let mut now = None;
    for _ in 0..100 {
        now = stack.state.lock_holder("race").await.unwrap();
        if now.as_ref().is_some_and(|h| h.heartbeat != first) {
            break;
        }
        tokio::task::yield_now().await;
    }
    let now = now.expect("the lock is still held");
    assert_eq!(now.id, "renewing");
    assert_ne!(now.heartbeat, first, "the heartbeat was renewed");
    assert!(!lock.lost().load(std::sync::atomic::Ordering::SeqCst));
    lock.release().await.unwrap();
    assert!(stack.state.lock_holder("race").await.unwrap().is_none());
}

/// A holder that finds at its next renewal that its lock was taken over (it stalled past its
/// lease) says so: nothing more is started, and releasing fails naming the new holder, while
/// the new holder's lock stays.
#[tokio::test(start_paused = true)]
async fn a_lock_taken_over_from_a_stalled_holder_is_known_lost() {
    let dir = tempfile::tempdir().unwrap();
    let stack = child_stack(dir.path());
    let info = LockInfo::for_this_process("stalled".into(), "mlctl apply".into());
    let lock = mlctl_core::Lock::acquire(&stack, "race", info.clone())
        .await
        .unwrap();
    // What a takeover after an expired lease does: one swap from the lock as read.
    let other = LockInfo {
        id: "other".into(),
        host: "another-host".into(),
        ..info.clone()
    };
    assert!(stack.state.swap_lock("race", &info, &other).await.unwrap());
    tokio::time::sleep(mlctl_core::state::LOCK_RENEW_EVERY + Duration::from_secs(1)).await;
    let lost = lock.lost();
    for _ in 0..100 {
        if lost.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(lost.load(std::sync::atomic::Ordering::SeqCst));
    let e = lock.release().await.unwrap_err();
    assert!(e.message.contains("lock was lost"), "{e}");
    assert!(e.message.contains("another-host"), "{e}");
    let holder = stack.state.lock_holder("race").await.unwrap().unwrap();
    assert_eq!(holder.id, "other", "the new holder keeps its lock");
}
