//! `mlctl watch` against a local bare repository: pushes are applied without anyone running
//! apply, invalid commits are skipped while the endpoint keeps serving, a killed server is
//! repaired, due monitors run, a rollback pauses sync until a revert lands, SIGTERM stops it.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running agent, stopped (and the endpoints it made killed) when dropped, whatever the
/// test did.
struct Agent {
    child: Option<Child>,
    dir: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        kill_endpoints(&self.dir.join(".mlctl").join("local"));
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    git_in(dir, args).trim().to_string()
}

fn status(dir: &Path) -> serde_json::Value {
    let out = mlctl()
        .args(["-C", dir.to_str().unwrap(), "status", "-o", "json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// Polls `f` until it holds, failing with `what` and the last status after `secs`.
#[track_caller]
fn wait_for(dir: &Path, secs: u64, what: &str, mut f: impl FnMut(&serde_json::Value) -> bool) {
    let t0 = Instant::now();
    loop {
        let s = status(dir);
        if f(&s) {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}; last status:\n{}",
            serde_json::to_string_pretty(&s).unwrap()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn synced_at(s: &serde_json::Value, sha: &str) -> bool {
    s["watch"]["lastSyncedCommit"] == sha && s["watch"]["sync"] == "Synced"
}

/// The version the endpoint serves, from its open `/health`.
fn served_version(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let body = out.split("\r\n\r\n").nth(1)?;
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v["variants"]
        .as_array()?
        .iter()
        .max_by_key(|x| x["weight"].as_u64())
        .and_then(|x| x["version"].as_str().map(str::to_string))
}

/// A push webhook, as GitLab sends it.
fn trigger(listen: u16, secret: &str) -> String {
    use std::io::{Read, Write};
    let body = r#"{"ref":"refs/heads/main"}"#;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", listen)).expect("agent listens");
    write!(s, "POST /hooks/git HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Gitlab-Event: Push Hook\r\nX-Gitlab-Token: {secret}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn push(work: &Path, message: &str) -> String {
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", message]);
    git(work, &["push", "-q", "origin", "main"]);
    git(work, &["rev-parse", "HEAD"])
}

/// The iris example (its endpoint on a free port) committed in a work clone and pushed to a
/// new bare repository at `remote`: the clone, the port, and the pushed commit.
fn iris_pushed_to(remote: &Path) -> (TestProject, u16, String) {
    git(
        remote.parent().unwrap(),
        &[
            "init",
            "-q",
            "--bare",
            "-b",
            "main",
            remote.to_str().unwrap(),
        ],
    );
    let (work, port) = iris_on_a_free_port("{type: all-at-once}");
    let w = work.path();
    std::fs::write(w.join(".gitignore"), ".mlctl/\n").unwrap();
    git(w, &["init", "-q", "-b", "main"]);
    git(w, &["config", "user.email", "test@example.com"]);
    git(w, &["config", "user.name", "Test"]);
    git(w, &["remote", "add", "origin", remote.to_str().unwrap()]);
    let sha = push(w, "initial spec");
    (work, port, sha)
}

#[test]
fn watch_follows_a_bare_repository_heals_pauses_and_stops_cleanly() {
    let root = tempfile::tempdir().unwrap();
    let remote = root.path().join("remote.git");
    let (work, port, first) = iris_pushed_to(&remote);
    let w = work.path();

    let dir = root.path().join("agent");
    let listen = free_listen_port();
    let secret = "hook-secret-for-the-test";
    let child = mlctl()
        .args([
            "-C",
            dir.to_str().unwrap(),
            "watch",
            "--repo",
            remote.to_str().unwrap(),
            "--interval",
            "1s",
            "--self-heal",
            "--listen",
            &format!("127.0.0.1:{listen}"),
            "--webhook-secret",
            "${env:MLCTL_TEST_HOOK}",
        ])
        .env("MLCTL_TEST_HOOK", secret)
        .env("MLCTL_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(root.path().join("agent.log")).unwrap())
        .spawn()
        .expect("start mlctl watch");
    let mut agent = Agent {
        child: Some(child),
        dir: dir.clone(),
    };

    // A pushed commit is applied without anyone running apply.
    wait_for(&dir, 180, "the first commit to sync", |s| {
        synced_at(s, &first)
    });
    assert_eq!(predict_status(port, "none"), 200);
    // Health per resource; overall the worst: the monitor without traffic is Unknown
    // (insufficient data is never healthy).
    let s = status(&dir);
    let health = |s: &serde_json::Value, id: &str| {
        s["watch"]["resources"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["resource"] == id))
            .map(|r| r["health"].clone())
            .unwrap_or_default()
    };
    assert_eq!(health(&s, "Endpoint/iris"), "Healthy", "{s:#}");
    assert_eq!(health(&s, "Monitor/iris-drift"), "Unknown", "{s:#}");
    assert_eq!(s["watch"]["health"], "Unknown", "{s:#}");

    // A due monitor ran (never evaluated is due): its result is stored.
    let t0 = Instant::now();
    loop {
        let out = mlctl()
            .args([
                "-C",
                dir.to_str().unwrap(),
                "monitor",
                "history",
                "iris-drift",
                "-o",
                "json",
            ])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if v.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no monitor result: {v}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // An invalid commit is reported and skipped; the endpoint keeps serving the last good one.
    work.replace("ml/endpoint.yaml", "  instances: 1\n", "  instancez: 1\n");
    let invalid = push(w, "a typo");
    let answer = trigger(listen, secret);
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    let refused = trigger(listen, "not-the-secret");
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    wait_for(&dir, 60, "the invalid commit to be reported", |s| {
        s["watch"]["invalidCommits"]
            .as_array()
            .is_some_and(|a| a.iter().any(|c| c["commit"] == invalid))
    });
    let s = status(&dir);
    assert_eq!(s["watch"]["lastSyncedCommit"], first, "{s:#}");
    assert_eq!(predict_status(port, "none"), 200);
    // A field the target refuses to honour (CloudWatch alarms on the local target) makes the
    // commit unusable there: reported with where it is, and skipped, not retried.
    work.replace(
        "ml/endpoint.yaml",
        "  strategy: {type: all-at-once}\n",
        "  strategy: {type: canary, percent: 10, bakeTime: 1s, minRequests: 0, rollback: {alarms: [HighErrors]}}\n",
    );
    work.replace("ml/endpoint.yaml", "  instancez: 1\n", "  instances: 1\n");
    let refused_commit = push(w, "an alarm the local target cannot watch");
    trigger(listen, secret);
    wait_for(&dir, 60, "the refused commit to be reported", |s| {
        s["watch"]["invalidCommits"].as_array().is_some_and(|a| {
            a.iter().any(|c| {
                c["commit"] == refused_commit
                    && c["errors"].to_string().contains("ml/endpoint.yaml:")
                    && c["errors"].to_string().contains("alarms")
            })
        })
    });
    assert_eq!(status(&dir)["watch"]["lastSyncedCommit"], first);
    work.replace(
        "ml/endpoint.yaml",
        "  strategy: {type: canary, percent: 10, bakeTime: 1s, minRequests: 0, rollback: {alarms: [HighErrors]}}\n",
        "  strategy: {type: all-at-once}\n",
    );
    let fixed = push(w, "fix the typo, no alarms");
    trigger(listen, secret);
    wait_for(&dir, 120, "the fixed commit to sync", |s| {
        synced_at(s, &fixed)
    });

    // An endpoint server killed by hand is repaired on the next cycle (selfHeal).
    let endpoint_dir = dir.join(".mlctl/local/endpoints/iris");
    let before = endpoint_pids(&endpoint_dir);
    assert!(!before.is_empty());
    kill_endpoints(&dir.join(".mlctl").join("local"));
    let t0 = Instant::now();
    while !(predict_status(port, "none") == 200
        && endpoint_pids(&endpoint_dir)
            .iter()
            .all(|p| !before.contains(p)))
    {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the killed server was not repaired; log:\n{}",
            std::fs::read_to_string(root.path().join("agent.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // A second model version, then a rollback: sync of the endpoint pauses.
    work.replace("ml/train.yaml", "    C: 1.0\n", "    C: 0.5\n");
    let second = push(w, "C 0.5");
    trigger(listen, secret);
    wait_for(&dir, 180, "the second version to sync", |s| {
        synced_at(s, &second)
    });
    let v2 = served_version(port).expect("serves");
    let out = mlctl()
        .args(["-C", dir.to_str().unwrap(), "rollback", "iris"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("paused"), "{text}");
    assert!(text.contains("git revert "), "{text}");
    let v1 = served_version(port).expect("serves");
    assert_ne!(v1, v2);
    let s = status(&dir);
    assert_eq!(s["paused"][0]["endpoint"], "iris", "{s:#}");
    // Cycles go on (a push that does not touch the endpoint), and leave the rollback alone.
    work.write("NOTES.md", "not part of the spec\n");
    let unrelated = push(w, "notes");
    trigger(listen, secret);
    wait_for(&dir, 60, "a cycle at the unrelated commit", |s| {
        s["watch"]["lastSyncedCommit"] == unrelated
    });
    assert_eq!(served_version(port).as_deref(), Some(v1.as_str()));
    let s = status(&dir);
    assert_eq!(s["paused"][0]["endpoint"], "iris", "{s:#}");
    let endpoint = s["watch"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "Endpoint/iris")
        .cloned()
        .unwrap();
    assert_eq!(endpoint["paused"], true, "{endpoint}");
    // The revert lands in git: the pause ends and sync resumes.
    git(w, &["revert", "--no-edit", &second]);
    git(w, &["push", "-q", "origin", "main"]);
    let reverted = git(w, &["rev-parse", "HEAD"]);
    trigger(listen, secret);
    wait_for(&dir, 180, "the revert to sync and the pause to end", |s| {
        synced_at(s, &reverted) && s["paused"].as_array().is_some_and(|a| a.is_empty())
    });
    assert_eq!(predict_status(port, "none"), 200);

    // /metrics and /healthz.
    let metrics = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", listen)).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    assert!(
        metrics.contains(&format!(
            "mlctl_watch_last_synced_commit_info{{target=\"local\",commit=\"{reverted}\"}} 1"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("mlctl_watch_invalid_commits_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mlctl_watch_webhook_refused_total 1"),
        "{metrics}"
    );

    // SIGTERM stops it cleanly: exit 0, the lock free.
    let mut child = agent.child.take().unwrap();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let t0 = Instant::now();
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(code, Some(0));
    assert!(status(&dir)["lock"].is_null());
    drop(agent);
}

/// A git smart-HTTP server over TLS (tests/e2e/fixtures/git_https_server.py), killed on drop.
struct HttpsGit {
    child: Child,
    port: u16,
}

impl Drop for HttpsGit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn https_git(root: &Path, cert: &Path, key: &Path, token: &str) -> HttpsGit {
    use std::io::BufRead;
    let mut child = Command::new("python3")
        .arg(repo_root().join("tests/e2e/fixtures/git_https_server.py"))
        .args([root, cert, key])
        .arg(token)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the https git server");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().expect("the server prints its port");
    HttpsGit { child, port }
}

/// `mlctl watch` follows an `https://` remote: libgit2's smart-HTTP transport over the OpenSSL
/// built into mlctl, with the token from MLCTL_GIT_TOKEN; a wrong token and an untrusted
/// certificate are errors that say so, and never show the token.
#[test]
fn watch_fetches_an_https_remote_with_a_token() {
    let test = "watch_fetches_an_https_remote_with_a_token";
    if !have_python(test, "(the https git server is Python)")
        || !have_tool(
            test,
            "openssl",
            "version",
            "(it makes the test's certificate)",
        )
    {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let (cert, key) = (root.path().join("cert.pem"), root.path().join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let repos = root.path().join("repos");
    std::fs::create_dir(&repos).unwrap();
    let (_work, _port, sha) = iris_pushed_to(&repos.join("iris.git"));

    let token = "tok-0123456789-for-the-https-test";
    let server = https_git(&repos, &cert, &key, token);
    let url = format!("https://127.0.0.1:{}/iris.git", server.port);
    let once = |dir: &Path, token: &str, ca: Option<&Path>| {
        let mut c = mlctl();
        c.args([
            "-C",
            dir.to_str().unwrap(),
            "watch",
            "--repo",
            &url,
            "--once",
        ])
        .env("MLCTL_GIT_TOKEN", token)
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR");
        if let Some(ca) = ca {
            c.env("SSL_CERT_FILE", ca);
        }
        Run::from(c.output().unwrap())
    };

    // A certificate nobody vouches for: refused.
    let untrusted = root.path().join("untrusted");
    let run = once(&untrusted, token, None).expect_code(1);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.to_lowercase().contains("certificate"), "{all}");
    // A wrong token: refused, and neither token is shown.
    let wrong = root.path().join("wrong");
    let run = once(&wrong, "not-the-token-42", Some(&cert)).expect_code(1);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains("authentication"), "{all}");
    assert!(
        !all.contains("not-the-token-42") && !all.contains(token),
        "{all}"
    );

    // The right token and a trusted certificate: fetched and applied.
    let dir = root.path().join("agent");
    let _agent = Agent {
        child: None,
        dir: dir.clone(),
    };
    let run = once(&dir, token, Some(&cert)).expect_code(0);
    assert!(!run.stderr.contains(token) && !run.stdout.contains(token));
    let s = status(&dir);
    assert!(synced_at(&s, &sha), "{s:#}");
}

/// Without selfHeal an out-of-band change is reported, not repaired: a killed server makes
/// the target OutOfSync (and its endpoint unhealthy) until a cycle with selfHeal repairs it.
#[test]
fn without_self_heal_a_killed_server_is_out_of_sync_until_healed() {
    let root = tempfile::tempdir().unwrap();
    let remote = root.path().join("remote.git");
    let (_work, port, sha) = iris_pushed_to(&remote);
    let dir = root.path().join("agent");
    let _agent = Agent {
        child: None,
        dir: dir.clone(),
    };
    let once = |extra: &[&str]| {
        let mut c = mlctl();
        c.args(["-C", dir.to_str().unwrap(), "watch", "--repo"])
            .arg(&remote)
            .args([
                "--once",
                "--listen",
                &format!("127.0.0.1:{}", free_listen_port()),
            ])
            .args(extra);
        Run::from(c.output().unwrap())
    };
    once(&[]).expect_code(0);
    assert!(synced_at(&status(&dir), &sha));
    assert_eq!(predict_status(port, "none"), 200);

    kill_endpoints(&dir.join(".mlctl").join("local"));
    once(&[]);
    let s = status(&dir);
    assert_eq!(s["watch"]["sync"], "OutOfSync", "{s:#}");
    assert_ne!(
        predict_status(port, "none"),
        200,
        "not repaired without selfHeal"
    );

    once(&["--self-heal"]).expect_code(0);
    assert!(synced_at(&status(&dir), &sha), "{:#}", status(&dir));
    assert_eq!(predict_status(port, "none"), 200);
}
