//! Helpers shared by the end-to-end tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root (where `examples/` lives).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// A command running the built `mlctl`, with colours off and a clean environment for mlctl's
/// own variables.
pub fn mlctl() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mlctl"));
    cmd.env("NO_COLOR", "1").env_remove("MLCTL_PROJECT");
    cmd
}

/// A project in a fresh temporary directory (deleted on drop).
pub struct TestProject {
    pub dir: tempfile::TempDir,
}

impl TestProject {
    /// An empty project directory.
    pub fn empty() -> Self {
        TestProject {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// A copy of `examples/<name>`.
    pub fn example(name: &str) -> Self {
        let p = Self::empty();
        copy_dir(&repo_root().join("examples").join(name), p.path());
        p
    }

    /// A copy of `examples/<name>`, committed to a new git repository.
    pub fn example_in_git(name: &str) -> Self {
        Self::example(name).into_git()
    }

    /// This project committed to a new git repository (branch `main`, `.mlctl/` ignored).
    pub fn into_git(self) -> Self {
        std::fs::write(self.path().join(".gitignore"), ".mlctl/\n").unwrap();
        self.git(&["init", "-q", "-b", "main"]);
        self.git(&["config", "user.email", "test@example.com"]);
        self.git(&["config", "user.name", "Test"]);
        self.commit_all("initial");
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file (creating directories).
    pub fn write(&self, rel: &str, contents: &str) {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }

    /// Reads a file.
    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap()
    }

    /// Replaces `from` by `to` in a file; panics when `from` is absent (a test bug).
    pub fn replace(&self, rel: &str, from: &str, to: &str) {
        let text = self.read(rel);
        assert!(text.contains(from), "{rel} does not contain {from:?}");
        self.write(rel, &text.replacen(from, to, 1));
    }

    /// Runs git in the project.
    pub fn git(&self, args: &[&str]) -> String {
        git_in(self.path(), args)
    }

    /// `git add -A && git commit`.
    pub fn commit_all(&self, message: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
    }

    /// `mlctl ARGS` in the project directory.
    pub fn mlctl(&self, args: &[&str]) -> Run {
        self.mlctl_with(args, &[])
    }

    /// `mlctl ARGS` in the project directory, with `env` set on top of the test's own.
    pub fn mlctl_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let out = mlctl()
            .args(args)
            .envs(env.iter().copied())
            .current_dir(self.path())
            .output()
            .expect("run mlctl");
        Run::from(out)
    }
}

/// The HTTP status of one iris prediction on the endpoint at `port` with `token` as its
/// bearer token; 0 when the connection failed or no status came back.
pub fn predict_status(port: u16, token: &str) -> u16 {
    use std::io::{Read, Write};
    const ROW: &str = r#"{"instances": [[5.1, 3.5, 1.4, 0.2]]}"#;
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    if write!(
        s,
        "POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{ROW}",
        ROW.len()
    )
    .is_err()
    {
        return 0;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A value that stands for a credential in a test: random-looking and unique to this run, so
/// finding it anywhere means it leaked.
pub fn secret_value(label: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let seed = format!("{label}-{nanos}-{}-{:p}", std::process::id(), &nanos);
    format!("{label}{}", &blake3::hash(seed.as_bytes()).to_hex()[..24])
}

/// Where any of `needles` occurs under `dir`: every file's bytes (`-wal` and `-shm` files
/// of a database included), and every row of every SQLite database as text. One line per hit,
/// naming the file (and table) and which needle, never the needle's value.
pub fn find_leaks(dir: &Path, needles: &[(&str, &str)]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            if !meta.is_file() {
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            for (what, value) in needles {
                if contains(&bytes, value.as_bytes()) {
                    hits.push(format!("{what} in {}", path.display()));
                }
            }
            if bytes.starts_with(b"SQLite format 3\0") {
                for (table, text) in sqlite_dump(&path) {
                    for (what, value) in needles {
                        if text.contains(value) {
                            hits.push(format!("{what} in table {table} of {}", path.display()));
                        }
                    }
                }
            }
        }
    }
    hits.sort();
    hits.dedup();
    hits
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every table of the SQLite database at `path`, each as the text of all its rows (what
/// `sqlite3 .dump` would show of it, WAL included).
fn sqlite_dump(path: &Path) -> Vec<(String, String)> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let conn = rusqlite::Connection::open_with_flags(path, flags)
        .unwrap_or_else(|e| panic!("open {} to scan it: {e}", path.display()));
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .and_then(|mut st| {
            st.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        })
        .unwrap_or_else(|e| panic!("list the tables of {}: {e}", path.display()));
    let mut out = Vec::new();
    for table in tables {
        let mut st = conn
            .prepare(&format!("SELECT * FROM \"{table}\""))
            .unwrap_or_else(|e| panic!("read table {table} of {}: {e}", path.display()));
        let columns = st.column_count();
        let mut text = String::new();
        let mut rows = st.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for i in 0..columns {
                match row.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                        text.push_str(&String::from_utf8_lossy(t))
                    }
                    other => text.push_str(&format!("{other:?}")),
                }
                text.push('\t');
            }
            text.push('\n');
        }
        out.push((table, text));
    }
    out
}

/// The outcome of one mlctl run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Asserts the exit code, showing the output when it differs.
    #[track_caller]
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "unexpected exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == ".mlctl" || name == "__pycache__" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Every server process id of a local endpoint: those `endpoint.json` records (`processes`,
/// or the one `pid` of an older record) and those announced in `instances/` (started by hand
/// beside them).
pub fn endpoint_pids(endpoint_dir: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    if let Ok(b) = std::fs::read(endpoint_dir.join("endpoint.json"))
        && let Ok(rec) = serde_json::from_slice::<serde_json::Value>(&b)
    {
        match rec["processes"].as_array() {
            Some(ps) => pids.extend(ps.iter().filter_map(|p| p["pid"].as_u64())),
            None => pids.extend(rec["pid"].as_u64()),
        }
    }
    if let Ok(entries) = std::fs::read_dir(endpoint_dir.join("instances")) {
        for e in entries.flatten() {
            if let Some(pid) = e
                .file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                pids.push(pid);
            }
        }
    }
    let mut pids: Vec<u32> = pids
        .into_iter()
        .filter(|p| *p > 1)
        .map(|p| p as u32)
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Kills the process group of every endpoint server under a local target's state directory
/// (best effort: a group may be gone already). For test guards, whatever the test did.
pub fn kill_endpoints(state_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(state_dir.join("endpoints")) else {
        return;
    };
    for e in entries.flatten() {
        for pid in endpoint_pids(&e.path()) {
            let _ = Command::new("kill")
                .args(["-9", "--", &format!("-{pid}")])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// A test that fails half way leaves no server behind: whatever `mlctl serve` of this
/// project's local targets still runs (its command line names a config inside the project)
/// is killed with its process group when the project is dropped. A passing test has already
/// destroyed them; a pid reused by another process is never touched.
impl Drop for TestProject {
    fn drop(&mut self) {
        let Ok(targets) = std::fs::read_dir(self.path().join(".mlctl")) else {
            return;
        };
        let root = self.path().to_string_lossy().into_owned();
        for target in targets.flatten() {
            let Ok(endpoints) = std::fs::read_dir(target.path().join("endpoints")) else {
                continue;
            };
            for e in endpoints.flatten() {
                for pid in endpoint_pids(&e.path()) {
                    let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
                        .map(|c| {
                            let c = String::from_utf8_lossy(&c);
                            c.contains("serve") && c.contains(&root)
                        })
                        .unwrap_or(false);
                    if ours {
                        let _ = Command::new("kill")
                            .args(["-9", "--", &format!("-{pid}")])
                            .stderr(std::process::Stdio::null())
                            .status();
                    }
                }
            }
        }
    }
}

/// Runs git in `dir`, failing the test with git's message when it fails; its stdout.
pub fn git_in(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether python3 runs here (script-mode tests need it; under CI it must). When it does not,
/// says which part of `test` is skipped, straight to stderr past the harness's capture, so the
/// skip shows in the test output.
pub fn have_python(test: &str, skipped: &str) -> bool {
    have_tool(test, "python3", "--version", skipped)
}

/// Whether `program` runs here (`program ARG` succeeds); under CI it must. When it does not,
/// says which part of `test` is skipped, straight to stderr past the harness's capture, so the
/// skip shows in the test output.
pub fn have_tool(test: &str, program: &str, arg: &str, skipped: &str) -> bool {
    let ok = Command::new(program)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok || std::env::var_os("CI").is_none(),
        "{test}: {program} is required under CI ({skipped})"
    );
    if !ok {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "{test}: SKIPPED {skipped}: {program} is not installed"
        );
    }
    ok
}

/// Whether process `pid` is running (a zombie, exited but not yet reaped, is not).
pub fn alive(pid: impl std::fmt::Display) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rfind(')')
            .is_some_and(|i| stat[i + 1..].trim_start().starts_with('Z'))
    })
}

/// A port on 127.0.0.1 that nothing listens on, below the kernel's ephemeral range, so no
/// outgoing connection takes it before the endpoint binds it.
pub fn free_listen_port() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let start = nanos ^ std::process::id().wrapping_mul(2_654_435_761);
    for i in 0..5_000u32 {
        let port = (20_000 + (start.wrapping_add(i.wrapping_mul(7919))) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 between 20000 and 32000");
}

/// The iris example (not yet in git) on a free port, its endpoint rolled out with
/// `strategy` (e.g. `{type: all-at-once}`: the example's 30 s canary bake is for people).
pub fn iris_on_a_free_port(strategy: &str) -> (TestProject, u16) {
    let p = TestProject::example("iris");
    let port = free_listen_port();
    p.replace(
        "ml/endpoint.yaml",
        "  port: 8765\n",
        &format!("  port: {port}\n"),
    );
    let endpoint = p.read("ml/endpoint.yaml");
    let start = endpoint.find("  strategy:\n").unwrap();
    let end = endpoint.find("  capture:\n").unwrap();
    p.write(
        "ml/endpoint.yaml",
        &format!(
            "{}  strategy: {strategy}\n{}",
            &endpoint[..start],
            &endpoint[end..]
        ),
    );
    (p, port)
}

/// `POST path` with a JSON `body` to 127.0.0.1:`port`, on a connection of its own: the whole
/// response, status line first.
pub fn http_post(port: u16, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("endpoint listens");
    write!(s, "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// A Python server of the SageMaker inference contract (`/ping`, `/invocations` on
/// `SAGEMAKER_BIND_TO_PORT`) that predicts `setosa` for every row, after `delay` seconds.
pub fn sagemaker_contract_server(delay: f64) -> String {
    format!(
        r#"
import json, os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def reply(self, body):
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        self.reply("")
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        time.sleep({delay})
        self.reply(json.dumps({{"predictions": ["setosa" for _ in json.loads(body)["instances"]]}}))

ThreadingHTTPServer(("127.0.0.1", int(os.environ["SAGEMAKER_BIND_TO_PORT"])), Handler).serve_forever()
"#
    )
}

/// Every record in the capture files below `dir`, in either capture format (mlcap or JSON
/// lines; a torn line or block is skipped), each writer's in order.
pub fn captured(dir: &Path) -> Vec<serde_json::Value> {
    mlctl_serve::capture::capture_files(dir)
        .iter()
        .flat_map(|f| mlctl_serve::capture::read_records(f).unwrap_or_default())
        .collect()
}

/// Replaces the hex commit SHAs in output by a placeholder, for snapshots.
pub fn redact(s: &str) -> String {
    let mut out = String::new();
    for word in s.split_inclusive(|c: char| !c.is_ascii_hexdigit()) {
        let (hex, rest) = word.split_at(
            word.trim_end_matches(|c: char| !c.is_ascii_hexdigit())
                .len(),
        );
        if hex.len() >= 7
            && hex.chars().all(|c| c.is_ascii_hexdigit())
            && hex.chars().any(|c| c.is_ascii_digit())
        {
            out.push_str("<sha>");
        } else {
            out.push_str(hex);
        }
        out.push_str(rest);
    }
    out
}
