//! What a killed apply leaves running is found and stopped by the next apply: a training
//! script still at work, and a server that was starting and never recorded. Neither blocks
//! the job or the port, and neither needs a person.

use crate::common::*;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// Starts `mlctl apply` in `p`, waits until `file` exists (the moment to kill it), and kills
/// it with SIGKILL. Returns the pid written in `file`.
fn kill_apply_once(p: &TestProject, file: &Path) -> u32 {
    let log = p.path().join("killed-apply.log");
    let mut apply: Child = mlctl()
        .args(["apply", "--auto-approve"])
        .current_dir(p.path())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(p.path().join("killed-apply.err")).unwrap())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            break pid;
        }
        if let Some(status) = apply.try_wait().unwrap() {
            panic!(
                "the apply ended ({status}) before {} appeared",
                file.display()
            );
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "{} never appeared",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    apply.kill().unwrap();
    apply.wait().unwrap();
    pid
}

fn in_git(p: &TestProject) {
    // The test's own files stay out of git: the apply runs on a clean work tree.
    std::fs::write(
        p.path().join(".gitignore"),
        ".mlctl/\nhold\n*.pid\nkilled-apply.*\n",
    )
    .unwrap();
    p.git(&["init", "-q", "-b", "main"]);
    p.git(&["config", "user.email", "test@example.com"]);
    p.git(&["config", "user.name", "Test"]);
    p.commit_all("initial");
}

/// Every file below `dir` whose text contains `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(files_containing(&path, needle));
        } else if std::fs::read(&path).is_ok_and(|b| String::from_utf8_lossy(&b).contains(needle)) {
            out.push(path.display().to_string());
        }
    }
    out
}

/// A script-mode job that, the first time, parks in `sleep` (and says its pid): the apply
/// running it is killed there, and the script keeps running, as an orphan.
#[test]
fn a_training_script_left_running_by_a_killed_apply_is_stopped_by_the_next() {
    let p = TestProject::empty();
    let hold = p.path().join("hold");
    let pid_file = p.path().join("stray.pid");
    p.write(
        "mlctl.yaml",
        "apiVersion: mlctl/v1\nkind: Project\nmetadata:\n  name: strays\nspec:\n  manifests: [ml/]\n  defaultTarget: local\n  targets:\n    local:\n      provider: local\n",
    );
    p.write(
        "ml/data.yaml",
        "apiVersion: mlctl/v1\nkind: Dataset\nmetadata:\n  name: iris\nspec:\n  source: data/iris.csv\n  target: species\n",
    );
    p.write(
        "ml/train.yaml",
        "apiVersion: mlctl/v1\nkind: TrainingJob\nmetadata:\n  name: train\nspec:\n  dataset: iris\n  command: sh train.sh\n  code: src\n",
    );
    p.write(
        "src/train.sh",
        &format!(
            "if [ -f {hold} ]; then rm {hold}; echo $$ > {pid}; sleep 600; fi\necho '{{\"accuracy\": 1.0}}' > \"$SM_MODEL_DIR/metrics.json\"\n",
            hold = hold.display(),
            pid = pid_file.display()
        ),
    );
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    std::fs::copy(
        repo_root().join("examples/iris/data/iris.csv"),
        p.path().join("data/iris.csv"),
    )
    .unwrap();
    in_git(&p);
    std::fs::write(&hold, "").unwrap();

    let stray = kill_apply_once(&p, &pid_file);
    assert!(alive(stray), "the script outlives the killed apply");

    let again = p.mlctl(&["apply", "--auto-approve"]);
    again.expect_code(0);
    assert!(
        !alive(stray),
        "the next apply stopped the script the killed one left running (pid {stray})"
    );
    let noted = files_containing(
        &p.path().join(".mlctl/local/runs"),
        "mlctl: stopped process",
    );
    assert_eq!(noted.len(), 1, "the run's log says so: {noted:?}");
    p.mlctl(&["plan", "--detailed-exitcode"]).expect_code(0);
}

/// A server whose serving command parks the first time (before it answers `/ping`): the
/// apply starting it is killed, and `mlctl serve` keeps starting, holding the endpoint's
/// port, never recorded in the endpoint's state. The next apply stops it and deploys.
#[test]
fn a_server_half_started_by_a_killed_apply_is_stopped_by_the_next() {
    if !have_python(
        "a_server_half_started_by_a_killed_apply_is_stopped_by_the_next",
        "the whole test",
    ) {
        return;
    }
    let (p, port) = iris_on_a_free_port("{type: all-at-once}");
    let hold = p.path().join("hold");
    let pid_file = p.path().join("server-child.pid");
    p.replace(
        "ml/endpoint.yaml",
        "  capture:\n",
        "  serve:\n    command: sh serve.sh\n    code: srv\n  capture:\n",
    );
    p.write(
        "srv/serve.sh",
        &format!(
            "if [ -f {hold} ]; then rm {hold}; echo $$ > {pid}; sleep 600; fi\nexec python3 server.py\n",
            hold = hold.display(),
            pid = pid_file.display()
        ),
    );
    p.write("srv/server.py", &sagemaker_contract_server(0.0));
    in_git(&p);
    std::fs::write(&hold, "").unwrap();

    let child = kill_apply_once(&p, &pid_file);
    // The half-started `mlctl serve` is the nearest `serve` above the parked command.
    let server = serve_ancestor(child).expect("the parked command runs under `mlctl serve`");
    assert!(alive(server), "the server outlives the killed apply");

    let again = p.mlctl(&["apply", "--auto-approve"]);
    again.expect_code(0);
    assert!(
        !alive(server),
        "the half-started server (pid {server}) was stopped"
    );
    assert!(!alive(child), "and the command it started (pid {child})");
    let log = p.read(".mlctl/local/endpoints/iris/serve.log");
    assert!(
        log.contains(&format!("mlctl: stopped server process {server}")),
        "serve.log says so:\n{log}"
    );
    // The endpoint serves on its port.
    let body = r#"{"instances": [[5.1, 3.5, 1.4, 0.2]]}"#;
    let r = http_post(port, "/invocations", body);
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    p.mlctl(&["plan", "--detailed-exitcode"]).expect_code(0);
    p.mlctl(&["destroy", "--auto-approve"]).expect_code(0);
    kill_endpoints(&p.path().join(".mlctl/local"));
}

/// The nearest ancestor of `pid` whose command line is an `mlctl serve`.
fn serve_ancestor(pid: u32) -> Option<u32> {
    let mut at = pid;
    for _ in 0..8 {
        let stat = std::fs::read_to_string(format!("/proc/{at}/stat")).ok()?;
        at = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        let cmd = std::fs::read(format!("/proc/{at}/cmdline")).ok()?;
        if cmd.split(|b| *b == 0).any(|a| a == b"serve") {
            return Some(at);
        }
    }
    None
}
