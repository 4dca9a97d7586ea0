//! No credential or token mlctl is given ends up in anything it prints or writes.
//!
//! Each test runs the lifecycle (`validate`, `plan`, `apply`, `status`, `history`, `runs`,
//! `models`, `predict`, `destroy`; mlctl has no `logs` verb, its logs are files and are scanned
//! as such) with cloud credentials and tokens in the environment, an endpoint token and a
//! webhook URL read through `${env:...}`, on the local target, the mock target and SageMaker
//! on moto. Then it looks for every value in every command's stdout and stderr, every file
//! under `.mlctl/` (state, logs, capture files, model artifacts, `server.json`; SQLite
//! databases row by row), and on moto every object of the target's bucket prefix.
//!
//! The values are random and unique to the run, so a hit is a leak, not a coincidence.
//! Hyperparameters are not among them: a `${env:...}` hyperparameter is meant to reach the
//! job, and runs record their parameters (that is what `mlctl runs show` is for).

use crate::common::*;
use crate::sagemaker::{moto_request, moto_url, on_moto_with};
use std::path::Path;

/// The secrets of one test: `(variable, value)`.
struct Secrets(Vec<(&'static str, String)>);

impl Secrets {
    fn new() -> Secrets {
        Secrets(vec![
            (
                "AWS_SECRET_ACCESS_KEY",
                secret_value("wJalrXUtnFEMIK7MDENG"),
            ),
            ("AWS_SESSION_TOKEN", secret_value("IQoJb3JpZ2luX2VjE")),
            ("SCAN_ENDPOINT_TOKEN", secret_value("ep-token-")),
            (
                "SCAN_WEBHOOK",
                format!(
                    "https://hooks.example.invalid/services/T0/B0/{}",
                    secret_value("hook")
                ),
            ),
        ])
    }

    fn env(&self) -> Vec<(&str, &str)> {
        self.0.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    fn get(&self, name: &str) -> &str {
        &self.0.iter().find(|(k, _)| *k == name).unwrap().1
    }

    /// What to look for: each value, its unkeyed hash (which anyone can check a guess
    /// against), and for the webhook its token alone too.
    fn needles(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (k, v) in &self.0 {
            out.push((k.to_string(), v.clone()));
            out.push((
                format!("the blake3 hash of {k}"),
                blake3::hash(v.as_bytes()).to_hex().to_string(),
            ));
        }
        let hook = self.get("SCAN_WEBHOOK");
        out.push((
            "the webhook's token".into(),
            hook.rsplit('/').next().unwrap().to_string(),
        ));
        out
    }

    /// [`Secrets::needles`] as [`find_leaks`] takes them.
    fn scan(&self, dir: &Path) -> Vec<String> {
        let needles = self.needles();
        let borrowed: Vec<(&str, &str)> = needles
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        find_leaks(dir, &borrowed)
    }
}

/// Every leak found: in the outputs of `runs` (named by their command line), in the files
/// under `dir`, and in `objects` (name, content).
fn leaks(
    secrets: &Secrets,
    runs: &[(String, Run)],
    dir: &Path,
    objects: &[(String, String)],
) -> Vec<String> {
    let needles = secrets.needles();
    let mut out = secrets.scan(dir);
    for (command, run) in runs {
        for (what, value) in &needles {
            if run.stdout.contains(value) {
                out.push(format!("{what} in the stdout of `mlctl {command}`"));
            }
            if run.stderr.contains(value) {
                out.push(format!("{what} in the stderr of `mlctl {command}`"));
            }
        }
    }
    for (name, text) in objects {
        for (what, value) in &needles {
            if text.contains(value) {
                out.push(format!("{what} in {name}"));
            }
        }
    }
    out
}

/// How a test runs mlctl (in its project, with its environment).
type Runner<'a> = Box<dyn Fn(&[&str]) -> Run + 'a>;

/// Runs mlctl commands in a project and keeps every output.
struct Transcript<'a> {
    run: Runner<'a>,
    runs: Vec<(String, Run)>,
}

impl<'a> Transcript<'a> {
    fn new(run: impl Fn(&[&str]) -> Run + 'a) -> Self {
        Transcript {
            run: Box::new(run),
            runs: Vec::new(),
        }
    }

    /// `mlctl ARGS`, which must exit with `code`.
    #[track_caller]
    fn expect(&mut self, args: &[&str], code: i32) -> &Run {
        let r = (self.run)(args).expect_code(code);
        self.runs.push((args.join(" "), r));
        &self.runs.last().unwrap().1
    }
}

/// A monitor of the iris endpoint that notifies a webhook on a breach: applied, evaluated and
/// read back in the lifecycle, on every target.
fn write_monitor(p: &TestProject) {
    p.write(
        "ml/monitor.yaml",
        "apiVersion: mlctl/v1\nkind: Monitor\nmetadata:\n  name: iris\nspec:\n  endpoint: iris\n  drift: {}\n  onBreach:\n    notify:\n      webhook: ${env:SCAN_WEBHOOK}\n",
    );
}

fn require_token(p: &TestProject) {
    p.replace(
        "ml/endpoint.yaml",
        "  capture:\n",
        "  auth:\n    token: ${env:SCAN_ENDPOINT_TOKEN}\n  capture:\n",
    );
}

fn init_git(p: &TestProject, message: &str) {
    std::fs::write(p.path().join(".gitignore"), ".mlctl/\n").unwrap();
    p.git(&["init", "-q", "-b", "main"]);
    p.git(&["config", "user.email", "test@example.com"]);
    p.git(&["config", "user.name", "Test"]);
    p.commit_all(message);
}

/// The lifecycle on `target`, then the monitor's `validate` and `plan`; `serve` checks the
/// endpoint between apply and destroy. `tracks_runs`: the target's trainer keeps runs (else
/// `runs list` says it does not, exit 1).
fn lifecycle(
    t: &mut Transcript<'_>,
    p: &TestProject,
    target: &str,
    tracks_runs: bool,
    serve: &dyn Fn(&mut Transcript<'_>),
) {
    let on = |args: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        a.extend(["--target".to_string(), target.to_string()]);
        a
    };
    let call = |t: &mut Transcript<'_>, args: &[&str], code: i32| {
        let a = on(args);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        t.expect(&a, code);
    };
    write_monitor(p);
    p.commit_all("a monitor that notifies a webhook");
    call(t, &["validate"], 0);
    call(t, &["plan", "--detailed-exitcode"], 2);
    call(t, &["apply", "--auto-approve"], 0);
    call(t, &["plan", "--detailed-exitcode"], 0);
    call(t, &["status"], 0);
    call(t, &["status", "-o", "json"], 0);
    call(t, &["history", "Endpoint/iris"], 0);
    call(t, &["history", "TrainingJob/iris-train", "-o", "json"], 0);
    call(t, &["models", "list"], 0);
    call(
        t,
        &["runs", "list", "-o", "json"],
        if tracks_runs { 0 } else { 1 },
    );
    serve(t);
    call(t, &["monitor", "run", "-o", "json"], 0);
    call(t, &["monitor", "history", "iris"], 0);
    call(t, &["destroy", "--auto-approve"], 0);
}

/// The scan itself: a value planted in a file, in a row of a database still in its WAL, and
/// in an output is found, named by where it is and never quoted.
#[test]
fn the_scan_finds_a_planted_secret_wherever_it_is() {
    let secrets = Secrets::new();
    let token = secrets.get("SCAN_ENDPOINT_TOKEN");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    std::fs::write(dir.path().join("logs/serve.log"), format!("auth {token}\n")).unwrap();
    let db = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
    db.pragma_update(None, "journal_mode", "wal").unwrap();
    db.execute_batch("CREATE TABLE t (v TEXT)").unwrap();
    db.execute("INSERT INTO t VALUES (?1)", [format!("x{token}x")])
        .unwrap();
    let run = Run {
        code: 0,
        stdout: String::new(),
        stderr: format!("Bearer {token}"),
    };
    let found = leaks(&secrets, &[("status".into(), run)], dir.path(), &[]);
    drop(db);
    assert!(
        found.iter().any(|f| f.ends_with("logs/serve.log")),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|f| f.contains("in table t of")),
        "the row is found in the database, WAL and all: {found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|f| f == "SCAN_ENDPOINT_TOKEN in the stderr of `mlctl status`"),
        "{found:#?}"
    );
    assert!(
        !found.iter().any(|f| f.contains(token)),
        "a finding names the place, never the value"
    );
}

#[test]
fn no_secret_leaks_on_the_local_target() {
    let secrets = Secrets::new();
    let (p, port) = iris_on_a_free_port("{type: all-at-once}");
    require_token(&p);
    init_git(&p, "iris behind a token");
    let _cleanup = KillEndpoints(p.path().join(".mlctl/local"));
    let env = secrets.env();
    let mut t = Transcript::new(|args| p.mlctl_with(args, &env));
    let token = secrets.get("SCAN_ENDPOINT_TOKEN").to_string();
    lifecycle(&mut t, &p, "local", true, &|t| {
        // Requests with the token (captured: the example samples 100%), and one without.
        for _ in 0..3 {
            assert_eq!(predict_status(port, &token), 200);
        }
        assert_eq!(predict_status(port, "wrong"), 401);
        p.write("rows.csv", "5.1,3.5,1.4,0.2\n");
        let predicted = t.expect(
            &["predict", "iris", "-d", "rows.csv", "--target", "local"],
            0,
        );
        assert!(predicted.stdout.contains("setosa"), "{}", predicted.stdout);
        // Whatever the endpoint wrote, while it still exists (destroy removes its directory).
        let leaks = secrets.scan(&p.path().join(".mlctl"));
        assert!(leaks.is_empty(), "while serving: {leaks:#?}");
    });
    let leaks = leaks(&secrets, &t.runs, &p.path().join(".mlctl"), &[]);
    assert!(leaks.is_empty(), "{leaks:#?}");
}

#[test]
fn no_secret_leaks_on_the_mock_target() {
    let secrets = Secrets::new();
    let p = TestProject::example("iris");
    require_token(&p);
    init_git(&p, "iris behind a token");
    let env = secrets.env();
    let mut t = Transcript::new(|args| p.mlctl_with(args, &env));
    lifecycle(&mut t, &p, "test", true, &|_| {});
    let leaks = leaks(&secrets, &t.runs, &p.path().join(".mlctl"), &[]);
    assert!(leaks.is_empty(), "{leaks:#?}");
}

#[test]
fn no_secret_leaks_on_sagemaker_on_moto() {
    let Some(url) = moto_url() else { return };
    let secrets = Secrets::new();
    let p = TestProject::example("iris");
    // moto's training jobs report no metrics: no gates. SageMaker refuses `auth` (IAM
    // guards its endpoints), so the endpoint has none here.
    let model = p.read("ml/model.yaml");
    let gates = model.find("  gates:").unwrap();
    p.write("ml/model.yaml", &model[..gates]);
    let prefix = format!("secrets-scan-{}", &secret_value("p")[1..13]);
    let bucket = "mlctl-e2e-cli";
    p.replace(
        "mlctl.yaml",
        "      region: eu-west-1\n      roleArn: ${env:MLCTL_SM_ROLE}\n      bucket: s3://${env:MLCTL_SM_BUCKET}/iris\n",
        &format!(
            "      region: us-east-1\n      roleArn: ${{env:MLCTL_SM_ROLE}}\n      bucket: s3://${{env:MLCTL_SM_BUCKET}}/{prefix}\n      endpointUrl: ${{env:MLCTL_MOTO_URL}}\n      emulator: moto\n"
        ),
    );
    // A project name of its own: SageMaker's names (model package groups, endpoints) are
    // global in moto, which the other tests share.
    p.replace("mlctl.yaml", "  name: iris\n", "  name: irisscan\n");
    init_git(&p, "iris on moto");
    let env = secrets.env();
    let mut t = Transcript::new(|args| on_moto_with(&p, &url, args, &env));
    let deployed = std::cell::RefCell::new(Vec::new());
    lifecycle(&mut t, &p, "staging", true, &|_| {
        deployed.replace(s3_objects(&url, bucket, &prefix));
    });
    // What the deployed target held, and what stays after destroy (state and history).
    let mut objects = deployed.into_inner();
    objects.extend(s3_objects(&url, bucket, &prefix));
    assert!(
        objects
            .iter()
            .any(|(name, _)| name.contains("/.mlctl/state/")),
        "the scan reads the target's state objects: {:?}",
        objects.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    let leaks = leaks(&secrets, &t.runs, &p.path().join(".mlctl"), &objects);
    assert!(leaks.is_empty(), "{leaks:#?}");
}

/// Every object under `prefix/` in `bucket` on moto, with its content (as text: a binary
/// object keeps its ASCII runs, which is where a token would be).
fn s3_objects(url: &str, bucket: &str, prefix: &str) -> Vec<(String, String)> {
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let continuation = token
            .as_deref()
            .map(|t| format!("&continuation-token={}", urlencode(t)))
            .unwrap_or_default();
        let reply = moto_request(
            url,
            "s3",
            &format!("GET /{bucket}?list-type=2&prefix={prefix}/{continuation}"),
            "",
            "",
        );
        assert!(reply.starts_with("HTTP/1.1 200"), "ListObjectsV2: {reply}");
        keys.extend(
            reply
                .split("<Key>")
                .skip(1)
                .filter_map(|r| r.split("</Key>").next())
                .map(|k| k.replace("&amp;", "&")),
        );
        token = reply
            .split("<NextContinuationToken>")
            .nth(1)
            .and_then(|r| r.split("</NextContinuationToken>").next())
            .map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    keys.into_iter()
        .map(|key| {
            let reply = moto_request(
                url,
                "s3",
                &format!("GET /{bucket}/{}", urlencode_path(&key)),
                "",
                "",
            );
            assert!(
                reply.starts_with("HTTP/1.1 200"),
                "GetObject {key}: {reply}"
            );
            (format!("s3://{bucket}/{key}"), reply)
        })
        .collect()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn urlencode_path(key: &str) -> String {
    key.split('/').map(urlencode).collect::<Vec<_>>().join("/")
}

/// Kills a local target's endpoint servers on drop, whatever the test did.
struct KillEndpoints(std::path::PathBuf);

impl Drop for KillEndpoints {
    fn drop(&mut self) {
        kill_endpoints(&self.0);
    }
}
