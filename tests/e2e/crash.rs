//! The crash harness: `mlctl apply` is killed with SIGKILL at seeded random points, and a
//! plain re-run must converge with no manual step (no `force-unlock`), nothing duplicated or
//! lost, the state database intact and no stray server process.
//!
//! CI runs 50 trials on the mock target and 20 on the local one with a fixed seed;
//! `MLCTL_CRASH_TRIALS_MOCK`, `MLCTL_CRASH_TRIALS_LOCAL` and `MLCTL_CRASH_SEED` run longer or
//! other ones by hand. Each run prints where the kills landed
//! (`cargo test -p mlctl-cli --test e2e crash -- --nocapture`).

use crate::common::*;
use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: the same kill points on every machine for one seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// The iris example, rolled out all at once (a canary's bake would dominate every trial), on
/// a free port, in git.
fn project(target: &str) -> TestProject {
    let (p, _port) = iris_on_a_free_port("{type: all-at-once}");
    p.replace(
        "mlctl.yaml",
        "  defaultTarget: local\n",
        &format!("  defaultTarget: {target}\n"),
    );
    std::fs::write(p.path().join(".gitignore"), ".mlctl/\n").unwrap();
    p.git(&["init", "-q", "-b", "main"]);
    p.git(&["config", "user.email", "test@example.com"]);
    p.git(&["config", "user.name", "Test"]);
    p.commit_all("iris");
    p
}

/// Where a killed apply was: the last resource line it printed.
fn kill_point(stderr: &str, exited: bool) -> String {
    if exited {
        return "after it finished".into();
    }
    stderr
        .lines()
        .rev()
        .find_map(|l| {
            let l = l.trim_start_matches(['✓', '✗', '-', ' ']);
            let (id, rest) = l.split_once(": ")?;
            id.contains('/').then(|| {
                let what = rest.split([' ', ';', ':']).next().unwrap_or("");
                format!("{id} {what}")
            })
        })
        .unwrap_or_else(|| "before any resource".into())
}

/// The `mlctl serve` processes of this project that run (zombies excluded).
fn servers(p: &TestProject) -> usize {
    let needle = p.path().join(".mlctl").to_string_lossy().into_owned();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            cmd.contains(" serve ") && cmd.contains(&needle) && !zombie
        })
        .count()
}

fn json(run: Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

fn trials(target: &str, trials: u64) {
    let seed = env_u64("MLCTL_CRASH_SEED", 1);
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let p = project(target);
    p.mlctl(&["apply", "--auto-approve"]).expect_code(0);
    // An uncut apply of a change like the trials' sets the range of kill points.
    let change = |p: &TestProject, n: u64| {
        let train = p.read("ml/train.yaml");
        let line = train
            .lines()
            .find(|l| l.trim_start().starts_with("C: "))
            .unwrap()
            .to_string();
        p.replace(
            "ml/train.yaml",
            &line,
            &format!("    C: {}", 1.0 + n as f64 / 1000.0),
        );
        p.commit_all(&format!("C change {n}"));
    };
    change(&p, 1);
    let t0 = Instant::now();
    p.mlctl(&["apply", "--auto-approve"]).expect_code(0);
    let full = t0.elapsed().as_millis() as u64;
    let window = (full * 11 / 10).max(50);
    let mut points: BTreeMap<String, u32> = BTreeMap::new();
    let log = p.path().join(".mlctl").join("killed-apply.log");
    for trial in 0..trials {
        // A new hyperparameter: every resource after the dataset has work to do.
        change(&p, trial + 2);
        let mut apply = mlctl()
            .args(["apply", "--auto-approve"])
            .current_dir(p.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let delay = rng.below(window);
        let start = Instant::now();
        let mut exited = false;
        while start.elapsed() < Duration::from_millis(delay) {
            if apply.try_wait().unwrap().is_some() {
                exited = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = apply.kill();
        let _ = apply.wait();
        let stderr = std::fs::read_to_string(&log).unwrap_or_default();
        *points.entry(kill_point(&stderr, exited)).or_default() += 1;

        // A plain re-run converges, with no person.
        let again = p.mlctl(&["apply", "--auto-approve"]);
        assert_eq!(
            again.code,
            0,
            "trial {trial} (seed {seed}, killed after {delay} ms at {}): the re-run failed\n{}\n{}",
            kill_point(&stderr, exited),
            again.stdout,
            again.stderr
        );
        assert!(
            !again.stderr.contains("force-unlock"),
            "trial {trial}: {}",
            again.stderr
        );
        p.mlctl(&["plan", "--detailed-exitcode"]).expect_code(0);
        // One model version per commit: none duplicated, none lost.
        let models = json(
            p.mlctl(&["models", "show", "iris", "-o", "json"])
                .expect_code(0),
        );
        let versions = models["versions"]
            .as_array()
            .unwrap_or_else(|| panic!("no versions in {models}"));
        let fingerprints: std::collections::BTreeSet<&str> = versions
            .iter()
            .filter_map(|v| v["fingerprint"].as_str())
            .collect();
        assert_eq!(
            (versions.len(), fingerprints.len()),
            (trial as usize + 3, trial as usize + 3),
            "trial {trial}: one version per commit, {models}"
        );
        // No training job completed twice.
        let runs = json(p.mlctl(&["runs", "list", "-o", "json"]).expect_code(0));
        let mut completed: BTreeMap<&str, u32> = BTreeMap::new();
        for r in runs.as_array().unwrap() {
            if r["status"] == "completed" && r["parent"].is_null() {
                *completed
                    .entry(r["jobName"].as_str().unwrap_or(""))
                    .or_default() += 1;
            }
        }
        assert!(
            completed.values().all(|n| *n == 1) && completed.len() == trial as usize + 3,
            "trial {trial}: {completed:?}"
        );
        if target == "local" {
            assert_eq!(
                servers(&p),
                1,
                "trial {trial}: stray or missing server process"
            );
            let db = p.path().join(".mlctl/local/state.db");
            let check = std::process::Command::new("sqlite3")
                .arg(&db)
                .arg("PRAGMA integrity_check;")
                .output()
                .expect("sqlite3 runs");
            assert_eq!(
                String::from_utf8_lossy(&check.stdout).trim(),
                "ok",
                "trial {trial}: integrity_check"
            );
        }
    }
    // What the re-runs found left running by a killed apply and stopped (each says so in
    // the log of what it stopped).
    let strays = std::fs::read_to_string(p.path().join(".mlctl/local/endpoints/iris/serve.log"))
        .unwrap_or_default()
        .matches("mlctl: stopped server process")
        .count();
    p.mlctl(&["destroy", "--auto-approve"]).expect_code(0);
    if target == "local" {
        assert_eq!(servers(&p), 0, "destroy left a server running");
    }
    eprintln!(
        "crash harness on `{target}`: {trials} trials (seed {seed}, kills within {window} ms of a {full} ms apply), all converged without a person; {strays} half-started servers stopped; kill points:"
    );
    for (point, n) in &points {
        eprintln!("  {n:>4}  {point}");
    }
}

#[test]
fn applies_killed_at_random_points_converge_on_the_mock_target() {
    trials("test", env_u64("MLCTL_CRASH_TRIALS_MOCK", 50));
}

#[test]
fn applies_killed_at_random_points_converge_on_the_local_target() {
    trials("local", env_u64("MLCTL_CRASH_TRIALS_LOCAL", 20));
}
