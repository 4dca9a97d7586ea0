//! What reaches the commands a local target runs (training scripts, transforms, serving
//! commands): the project's own files, never one a link or a `../` leads to outside it, no
//! `.env` files, and a scrubbed environment without the deploying shell's credentials.

use crate::common::*;
use std::path::{Path, PathBuf};

const PROJECT: &str = "\
apiVersion: mlctl/v1
kind: Project
metadata:
  name: confine
spec:
  manifests: [ml/]
  defaultTarget: local
  targets:
    local:
      provider: local
";

const DATASET: &str = "\
apiVersion: mlctl/v1
kind: Dataset
metadata:
  name: iris
spec:
  source: data/iris.csv
  target: species
";

/// A script-mode job that records what it sees: its environment, and the files of its code.
const TRAIN_SH: &str = r#"env > "$SM_MODEL_DIR/env.txt"
ls -aR . > "$SM_MODEL_DIR/files.txt"
echo '{"accuracy": 1.0}' > "$SM_MODEL_DIR/metrics.json"
"#;

fn training_job(code: &str) -> String {
    format!(
        "\
apiVersion: mlctl/v1
kind: TrainingJob
metadata:
  name: train
spec:
  dataset: iris
  command: sh train.sh
  code: {code}
"
    )
}

/// A project with the iris data and `files` (path, contents), committed to git. Stopped and
/// destroyed on drop.
struct Project {
    p: TestProject,
}

impl Project {
    fn new(files: &[(&str, &str)]) -> Project {
        let p = TestProject::empty();
        p.write("mlctl.yaml", PROJECT);
        p.write("ml/data.yaml", DATASET);
        std::fs::create_dir_all(p.path().join("data")).unwrap();
        std::fs::copy(
            repo_root().join("examples/iris/data/iris.csv"),
            p.path().join("data/iris.csv"),
        )
        .unwrap();
        for (path, text) in files {
            p.write(path, text);
        }
        std::fs::write(p.path().join(".gitignore"), ".mlctl/\n").unwrap();
        p.git(&["init", "-q", "-b", "main"]);
        p.git(&["config", "user.email", "test@example.com"]);
        p.git(&["config", "user.name", "Test"]);
        p.commit_all("initial");
        Project { p }
    }

    fn state(&self) -> PathBuf {
        self.p.path().join(".mlctl/local")
    }

    fn link(&self, link: &str, to: &Path) {
        let at = self.p.path().join(link);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(to, at).unwrap();
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.p.mlctl(&["destroy", "--auto-approve"]);
        kill_endpoints(&self.state());
    }
}

/// Every file named `name` below `dir`, not following links.
fn find(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            out.extend(find(&path, name));
        } else if e.file_name() == name {
            out.push(path);
        }
    }
    out.sort();
    out
}

#[test]
fn code_packaging_leaves_out_env_files_and_never_follows_a_link_out_of_the_project() {
    let outside = tempfile::tempdir().unwrap();
    // Stands for ~/.aws/credentials.
    let secret = outside.path().join("credentials");
    std::fs::write(
        &secret,
        "[default]\naws_secret_access_key = secret-from-outside\n",
    )
    .unwrap();
    let p = Project::new(&[
        ("ml/train.yaml", &training_job("src")),
        ("src/train.sh", TRAIN_SH),
        ("src/.env", "AWS_SECRET_ACCESS_KEY=secret-in-dotenv\n"),
        (
            "src/conf/.env.production",
            "TOKEN=secret-in-dotenv-production\n",
        ),
        ("src/conf/settings.toml", "ok = true\n"),
    ]);
    p.p.mlctl(&["apply", "--auto-approve"]).expect_code(0);
    let listings = find(&p.state().join("runs"), "files.txt");
    assert_eq!(listings.len(), 1, "{listings:?}");
    let listing = std::fs::read_to_string(&listings[0]).unwrap();
    assert!(
        listing.contains("train.sh") && listing.contains("settings.toml"),
        "{listing}"
    );
    assert!(
        !listing.contains(".env"),
        "a .env file was copied:\n{listing}"
    );
    assert!(find(&p.state(), ".env").is_empty());
    assert!(find(&p.state(), ".env.production").is_empty());

    // A link in the code directory to a file outside the project: plan refuses it, naming
    // it (the local trainer refuses it too, should anything get past plan: the fsutil unit
    // tests), and the file is never copied.
    p.link("src/creds", &secret);
    p.p.commit_all("a link to credentials");
    let run = p.p.mlctl(&["apply", "--auto-approve"]).expect_code(1);
    let real_secret = secret.canonicalize().unwrap();
    assert!(
        run.stderr
            .contains("holds links to paths outside the project: src/creds -> ")
            && run.stderr.contains(&real_secret.display().to_string()),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("secret-from-outside"),
        "{}",
        run.stderr
    );
    assert!(find(&p.state(), "creds").is_empty());
    for f in find(&p.state().join("runs"), "files.txt") {
        assert!(!std::fs::read_to_string(f).unwrap().contains("creds"));
    }
}

#[test]
fn paths_that_resolve_outside_the_project_are_refused_before_anything_runs() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("train.sh"), TRAIN_SH).unwrap();
    std::fs::copy(
        repo_root().join("examples/iris/data/iris.csv"),
        outside.path().join("iris.csv"),
    )
    .unwrap();

    // A code directory that is a link out of the project.
    let p = Project::new(&[("ml/train.yaml", &training_job("src"))]);
    p.link("src", outside.path());
    p.p.commit_all("src links outside");
    let run = p.p.mlctl(&["apply", "--auto-approve"]).expect_code(1);
    assert!(
        run.stderr
            .contains("`code` of TrainingJob/train is `src`, which resolves to")
            && run.stderr.contains("outside the project"),
        "{}",
        run.stderr
    );
    assert!(
        find(&p.state(), "train.sh").is_empty(),
        "nothing was copied"
    );

    // A data file that is a link out of the project.
    let p = Project::new(&[]);
    std::fs::remove_file(p.p.path().join("data/iris.csv")).unwrap();
    p.link("data/iris.csv", &outside.path().join("iris.csv"));
    p.p.commit_all("data links outside");
    let run = p.p.mlctl(&["apply", "--auto-approve"]).expect_code(1);
    assert!(
        run.stderr
            .contains("`source` of Dataset/iris is `data/iris.csv`, which resolves to")
            && run.stderr.contains("outside the project"),
        "{}",
        run.stderr
    );

    // A serving command's code given as `../`: refused as written, before any server starts.
    let up = format!(
        "../{}",
        outside.path().file_name().unwrap().to_string_lossy()
    );
    let p = Project::new(&[
        ("ml/train.yaml", &training_job("src")),
        ("src/train.sh", TRAIN_SH),
        (
            "ml/model.yaml",
            "apiVersion: mlctl/v1\nkind: Model\nmetadata:\n  name: m\nspec:\n  from: train\n  stage: production\n  approval: auto\n",
        ),
        (
            "ml/endpoint.yaml",
            &format!(
                "apiVersion: mlctl/v1\nkind: Endpoint\nmetadata:\n  name: ep\nspec:\n  model: m\n  serve:\n    command: sh train.sh\n    code: {up}\n"
            ),
        ),
    ]);
    let run = p.p.mlctl(&["apply", "--auto-approve"]).expect_code(1);
    assert!(
        run.stderr
            .contains(&format!("serve.code `{up}` is outside the project")),
        "{}",
        run.stderr
    );
    assert!(
        !p.state().join("endpoints/ep/instances").exists(),
        "no server started"
    );
}

/// Training scripts, transforms and serving commands get the scrubbed environment: what a
/// program needs (PATH, HOME), never mlctl's cloud credentials or the `${env:...}` secrets of
/// the spec.
#[test]
fn scripts_transforms_and_serving_commands_get_a_scrubbed_environment() {
    let secrets = [
        ("AWS_SECRET_ACCESS_KEY", "aws-secret-e2e-7f3a"),
        ("AZURE_CLIENT_SECRET", "azure-secret-e2e-91bc"),
        ("MLCTL_E2E_SCRUB_TOKEN", "endpoint-token-e2e-c0de"),
    ];
    let serve = have_python(
        "scripts_transforms_and_serving_commands_get_a_scrubbed_environment",
        "the script-mode server's part",
    );
    let dumps = tempfile::tempdir().unwrap();
    let serve_dump = dumps.path().join("serve-env.txt");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let transform = "\
apiVersion: mlctl/v1
kind: Dataset
metadata:
  name: derived
spec:
  target: species
  transform:
    command: env > \"$MLCTL_OUTPUT_DIR/env.txt\" && cp \"$MLCTL_INPUT_IRIS\" \"$MLCTL_OUTPUT\"
    inputs: [iris]
";
    let model = "apiVersion: mlctl/v1\nkind: Model\nmetadata:\n  name: m\nspec:\n  from: train\n  stage: production\n  approval: auto\n";
    let endpoint = format!(
        "apiVersion: mlctl/v1\nkind: Endpoint\nmetadata:\n  name: ep\nspec:\n  model: m\n  port: {port}\n  auth:\n    token: ${{env:MLCTL_E2E_SCRUB_TOKEN}}\n  serve:\n    command: env > '{}' && exec python3 script_server.py\n    code: serve\n",
        serve_dump.display()
    );
    let script =
        std::fs::read_to_string(repo_root().join("crates/serve/tests/fixtures/script_server.py"))
            .unwrap();
    let mut files: Vec<(&str, &str)> = vec![
        ("ml/derived.yaml", transform),
        ("src/train.sh", TRAIN_SH),
        ("ml/model.yaml", model),
    ];
    let train = training_job("src");
    files.push(("ml/train.yaml", &train));
    if serve {
        files.push(("ml/endpoint.yaml", &endpoint));
        files.push(("serve/script_server.py", &script));
    }
    let p = Project::new(&files);
    let mut cmd = mlctl();
    cmd.args(["apply", "--auto-approve"])
        .current_dir(p.p.path());
    for (k, v) in secrets {
        cmd.env(k, v);
    }
    Run::from(cmd.output().unwrap()).expect_code(0);

    let mut dumped = vec![
        find(&p.state().join("work"), "env.txt"),
        find(&p.state().join("runs"), "env.txt"),
    ];
    if serve {
        dumped.push(vec![serve_dump]);
    }
    for files in dumped {
        assert_eq!(files.len(), 1, "one environment dump each: {files:?}");
        let env = std::fs::read_to_string(&files[0]).unwrap();
        for (name, value) in secrets {
            assert!(
                !env.contains(value),
                "{name}'s value reached {}:\n{env}",
                files[0].display()
            );
        }
        assert!(
            env.lines().any(|l| l.starts_with("PATH="))
                && env.lines().any(|l| l.starts_with("HOME=")),
            "{}:\n{env}",
            files[0].display()
        );
    }
}

/// `compute` on the local target is enforced on a script-mode job: pinned to `ceil(cpu)` CPUs,
/// its data segment capped at `memory`, the thread pools sized, as the job itself sees them.
#[test]
fn compute_limits_are_what_a_script_mode_job_sees() {
    let limits_sh = r#"grep Cpus_allowed_list /proc/self/status > "$SM_MODEL_DIR/limits.txt"
echo "data_kb=$(ulimit -d)" >> "$SM_MODEL_DIR/limits.txt"
echo "omp=$OMP_NUM_THREADS" >> "$SM_MODEL_DIR/limits.txt"
echo '{"accuracy": 1.0}' > "$SM_MODEL_DIR/metrics.json"
"#;
    let job = training_job("src") + "  compute:\n    cpu: 1\n    memory: 512Mi\n";
    let p = Project::new(&[("ml/train.yaml", &job), ("src/train.sh", limits_sh)]);
    p.p.mlctl(&["apply", "--auto-approve"]).expect_code(0);
    let found = find(&p.state(), "limits.txt");
    let seen = std::fs::read_to_string(found.first().expect("the job wrote limits.txt")).unwrap();
    let cpus = seen
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim();
    assert!(
        cpus.parse::<usize>().is_ok(),
        "pinned to one CPU, got `{cpus}`"
    );
    assert!(seen.contains(&format!("data_kb={}", 512 * 1024)), "{seen}");
    assert!(seen.contains("omp=1"), "{seen}");
}

/// Processes given consecutive slots are pinned to different CPUs when there are enough.
#[test]
fn cpu_offsets_give_side_by_side_processes_their_own_cpus() {
    let pinned = |offset: &str| {
        let out = mlctl()
            .args(["__limit", "--cpus", "1", "--cpu-offset", offset, "--"])
            .args(["grep", "Cpus_allowed_list", "/proc/self/status"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (first, second) = (pinned("0"), pinned("1"));
    if cores >= 2 {
        assert_ne!(first, second);
    } else {
        assert_eq!(first, second, "one CPU: the offset wraps round");
    }
}
