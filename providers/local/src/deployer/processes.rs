//! The server processes of one endpoint: what is recorded of each, starting one, finding the
//! ones that serve, stopping them.
//!
//! Every process of an endpoint runs `mlctl serve --config server.json`, binds the endpoint's
//! port with `SO_REUSEPORT` (the kernel spreads connections over the processes) and a private
//! control port on 127.0.0.1 that the OS picks, and announces itself in
//! `instances/<pid>.json` once it serves (`mlctl_serve::config::Announcement`). A request to
//! the shared port lands on any one process, so everything aimed at one process (setting its
//! variants, reading its metrics, asking who it is) goes to its control port. A process started
//! by hand from the same `server.json` announces itself the same way, which is how `status`
//! counts it.

use super::{err, io};
use mlctl_core::error::{ErrorKind, Result};
use mlctl_serve::config::Announcement;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One `mlctl serve` process of an endpoint, as `endpoint.json` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Process {
    pub pid: u32,
    /// Its private control port on 127.0.0.1. `None` for a server started before control
    /// ports existed: it is alone on the endpoint's port and controlled there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_port: Option<u16>,
}

impl Process {
    /// Where requests for this process alone go (`shared` is the endpoint's URL).
    pub(super) fn control_url(&self, shared: &str) -> String {
        match self.control_port {
            Some(p) => format!("http://127.0.0.1:{p}"),
            None => shared.to_string(),
        }
    }
}

/// Where the processes of the endpoint in `dir` announce themselves.
pub(super) fn announce_dir(dir: &Path) -> PathBuf {
    dir.join("instances")
}

/// The processes announced in `dir` that still run. The announcements of dead ones (a process
/// killed with -9 cannot remove its own) are removed.
pub(super) fn announced(dir: &Path) -> Vec<Process> {
    let at = announce_dir(dir);
    Announcement::read_all(&at)
        .into_iter()
        .filter_map(|a| {
            if alive(a.pid) && is_serve(a.pid) {
                Some(Process {
                    pid: a.pid,
                    control_port: Some(a.control.port()),
                })
            } else {
                forget(dir, a.pid);
                None
            }
        })
        .collect()
}

/// Removes the announcement of `pid` and the record of its start (gone already is fine).
pub(super) fn forget(dir: &Path, pid: u32) {
    let _ = std::fs::remove_file(Announcement::path(&announce_dir(dir), pid));
    crate::strays::forget(&spawn_dir(dir), pid);
}

/// Where the endpoint's server processes are recorded the moment they are started, before
/// they serve ([`crate::strays::Spawn`]).
pub(super) fn spawn_dir(dir: &Path) -> PathBuf {
    dir.join("spawned")
}

/// Records a server process just started (see [`stop_half_started`]).
pub(super) fn record_spawn(dir: &Path, pid: u32, name: &str) {
    crate::strays::record(
        &spawn_dir(dir),
        &crate::strays::Spawn::of_child(
            pid,
            format!("server of Endpoint/{name}"),
            Some(&dir.join("serve.log")),
        ),
    );
}

/// Stops the server processes that an apply started and then died before it recorded them
/// in `endpoint.json` (killed while they were starting): their starter is provably gone and
/// `recorded` (the endpoint's processes) does not name them. Left running, one would hold
/// the port, or serve on an old one forever. Returns what was stopped, one line each (also
/// noted in `serve.log`).
pub(super) async fn stop_half_started(dir: &Path, recorded: &[Process]) -> Vec<String> {
    let mut lines = Vec::new();
    for (s, why) in crate::strays::orphans(&spawn_dir(dir)) {
        if recorded.iter().any(|p| p.pid == s.pid) {
            continue;
        }
        crate::strays::stop_group(&s, Duration::from_secs(10)).await;
        let line = format!(
            "mlctl: stopped server process {} that mlctl pid {} started and never recorded: {why}",
            s.pid, s.parent_pid
        );
        crate::process::note(&dir.join("serve.log"), &line);
        forget(dir, s.pid);
        lines.push(line);
    }
    lines
}

/// Every server process recorded as started in `dir` that still runs, whoever started it.
pub(super) fn spawned(dir: &Path) -> Vec<Process> {
    crate::strays::running(&spawn_dir(dir))
        .into_iter()
        .map(|s| Process {
            pid: s.pid,
            control_port: None,
        })
        .collect()
}

/// The announcement of `pid`, once it has written one.
pub(super) fn announcement(dir: &Path, pid: u32) -> Option<Announcement> {
    let b = std::fs::read(Announcement::path(&announce_dir(dir), pid)).ok()?;
    serde_json::from_slice(&b).ok()
}

fn pid_of(pid: u32) -> Option<rustix::process::Pid> {
    rustix::process::Pid::from_raw(i32::try_from(pid).ok()?)
}

/// Whether `pid` runs (and is not a zombie waiting to be reaped).
pub(super) fn alive(pid: u32) -> bool {
    let Some(p) = pid_of(pid) else { return false };
    if rustix::process::test_kill_process(p).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rfind(')')
            .is_some_and(|i| stat[i + 1..].trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// Whether `pid` looks like an `mlctl serve` (guards against a reused pid; true without /proc).
/// A process that is exiting has an empty command line and may still hold its sockets for a
/// moment: it counts as one, so stopping it waits until it is gone.
pub(super) fn is_serve(pid: u32) -> bool {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmd) => cmd.is_empty() || cmd.split(|b| *b == 0).any(|a| a == b"serve"),
        Err(_) => true,
    }
}

/// Stops a server and its children: SIGTERM to the group, SIGKILL after 10 s.
pub(super) async fn stop_process(pid: u32) {
    let Some(p) = pid_of(pid).filter(|_| pid > 1) else {
        return;
    };
    if !alive(pid) {
        // A server killed with -9 leaves its script-mode children running in its group. No
        // process has its pid any more, so a group with that id can only be what remains of
        // ours (Linux reserves a group's id while it has members).
        let _ = rustix::process::kill_process_group(p, rustix::process::Signal::KILL);
        return;
    }
    if !is_serve(pid) {
        return;
    }
    // mlctl starts every server as the leader of its own group; one that is not (started by
    // hand and announced) is signalled itself, so it is stopped all the same.
    let leader = rustix::process::getpgid(Some(p)).is_ok_and(|g| g == p);
    let signal = |sig| {
        let _ = if leader {
            rustix::process::kill_process_group(p, sig)
        } else {
            rustix::process::kill_process(p, sig)
        };
    };
    signal(rustix::process::Signal::TERM);
    let t0 = Instant::now();
    while alive(pid) && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if alive(pid) {
        signal(rustix::process::Signal::KILL);
        let t0 = Instant::now();
        while alive(pid) && t0.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Stops every process in `processes` and removes their announcements.
pub(super) async fn stop_all(dir: &Path, processes: &[Process]) {
    for p in processes {
        stop_process(p.pid).await;
        forget(dir, p.pid);
    }
}

/// The last lines of the endpoint's `serve.log` (every process writes to it).
pub(super) fn log_tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .rev()
        .take(8)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if lines.is_empty() {
        "(the log is empty)".into()
    } else {
        lines.join("\n")
    }
}

/// A free port on 127.0.0.1 for an endpoint that names none.
///
/// Taken below the kernel's ephemeral range (`ip_local_port_range`): a port the OS hands out
/// for `bind(0)` may meanwhile become the source port of some outgoing connection, and the
/// server's own bind a moment later then fails with "address in use" (seen under parallel
/// tests). Falls back to `bind(0)` when that range is too small to pick from.
pub(super) fn free_port() -> Result<u16> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    const FROM: u32 = 10_000;
    if low > FROM + 1_000 {
        let span = low - FROM;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let start = (nanos ^ std::process::id().wrapping_mul(2_654_435_761)) % span;
        for i in 0..span.min(2_000) {
            let port = (FROM + (start + i * 7919) % span) as u16;
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| {
            err(
                ErrorKind::Transient,
                "allocate port",
                format!("no free port on 127.0.0.1: {e}"),
            )
        })
}

/// Refuses a port something else listens on. The endpoint's servers share their port, so a
/// program that shares ports too could otherwise slip in beside them; a plain bind fails on a
/// port with any listener.
///
/// A server that was just stopped may hold the port until the kernel has finished it off: a
/// taken port is looked at again for a few seconds before it is refused.
pub(super) async fn ensure_port_free(name: &str, host: &str, port: u16) -> Result<()> {
    port_free_within(name, host, port, PORT_RELEASE).await
}

async fn port_free_within(name: &str, host: &str, port: u16, patience: Duration) -> Result<()> {
    let t0 = Instant::now();
    let mut bound = std::net::TcpListener::bind((host, port));
    while matches!(&bound, Err(e) if e.kind() == std::io::ErrorKind::AddrInUse)
        && t0.elapsed() < patience
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        bound = std::net::TcpListener::bind((host, port));
    }
    match bound {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(err(
            ErrorKind::Failed,
            "deploy",
            format!(
                "endpoint `{name}`: port {port} on {host} is in use by another program; stop it, or give the endpoint another `port`"
            ),
        )),
        Err(e) => Err(err(
            ErrorKind::Failed,
            "deploy",
            format!("endpoint `{name}`: cannot listen on {host}:{port}: {e}"),
        )),
    }
}

/// How long a port that was just given up may stay taken.
const PORT_RELEASE: Duration = Duration::from_secs(10);

/// Writes `serve.pid`: the endpoint's process ids, one a line.
pub(super) fn write_pid_file(dir: &Path, processes: &[Process]) -> Result<()> {
    let path = dir.join("serve.pid");
    let text: String = processes.iter().map(|p| format!("{}\n", p.pid)).collect();
    std::fs::write(&path, text).map_err(|e| io("write pid file", &path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that shares its parent's process group (started by hand, not by mlctl) is
    /// stopped by its own pid: signalling "its group" would reach nothing.
    #[tokio::test]
    async fn a_server_that_leads_no_group_is_stopped_by_pid() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30", "serve"])
            .spawn()
            .unwrap();
        let pid = child.id();
        assert!(is_serve(pid) && alive(pid));
        let t0 = Instant::now();
        stop_process(pid).await;
        let _ = child.wait();
        assert!(!alive(pid));
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "stopped at once, not after a wait"
        );
    }

    #[test]
    fn dead_announcements_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let dead = Announcement {
            format_version: mlctl_serve::config::SERVE_FILE_FORMAT,
            // No process has this id (it is not even a valid pid).
            pid: u32::MAX - 1,
            control: "127.0.0.1:9".parse().unwrap(),
        };
        dead.write(&announce_dir(dir.path())).unwrap();
        assert!(announcement(dir.path(), dead.pid).is_some());
        assert!(announced(dir.path()).is_empty());
        assert!(announcement(dir.path(), dead.pid).is_none());
    }

    #[tokio::test]
    async fn a_taken_port_is_refused_with_what_to_do() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let e = port_free_within("iris", "127.0.0.1", port, Duration::ZERO)
            .await
            .unwrap_err();
        assert!(e.message.contains("in use by another program"), "{e}");
        assert!(e.message.contains("another `port`"), "{e}");
        drop(l);
        ensure_port_free("iris", "127.0.0.1", port).await.unwrap();
    }

    #[test]
    fn a_legacy_process_is_controlled_on_the_shared_port() {
        let p = Process {
            pid: 1,
            control_port: None,
        };
        assert_eq!(p.control_url("http://127.0.0.1:80"), "http://127.0.0.1:80");
        let p = Process {
            pid: 1,
            control_port: Some(81),
        };
        assert_eq!(p.control_url("http://127.0.0.1:80"), "http://127.0.0.1:81");
    }
}
