//! Child processes that outlive the apply that started them.
//!
//! Every process the local target starts (a transform, a script-mode training run, an `mlctl
//! serve`) leads its own process group, and is recorded, the moment it is spawned, as a
//! [`Spawn`] in a directory of its kind: its pid and start time (so a reused pid is never
//! taken for it), and the pid, start time, host and boot of the mlctl process that started it.
//! The record goes when the process has ended.
//!
//! An apply killed with SIGKILL cannot stop its children. The next run finds their records:
//! a child whose parent is provably gone (same host and boot, its process ended) and that
//! still runs as itself is a stray, and [`stop_orphans`] stops its whole group. A child of a
//! live mlctl, or of one on another host, is left alone.

use mlctl_core::host;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What is recorded of a child process when it is started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Spawn {
    /// The child's pid, which is also its process group's id.
    pub pid: u32,
    /// The child's start time (`host::process_start`).
    pub start: Option<u64>,
    /// What it is, for the note that says it was stopped (`transform of Dataset/x`).
    pub what: String,
    /// The mlctl process that started it: host, boot, pid and start time.
    pub host: String,
    pub boot_id: Option<String>,
    pub parent_pid: u32,
    pub parent_start: Option<u64>,
    /// Its log, where the note goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<PathBuf>,
}

impl Spawn {
    /// The record of `pid`, just started by this process.
    pub(crate) fn of_child(pid: u32, what: impl Into<String>, log: Option<&Path>) -> Spawn {
        let me = std::process::id();
        Spawn {
            pid,
            start: host::process_start(pid),
            what: what.into(),
            host: host::host_name(),
            boot_id: host::boot_id(),
            parent_pid: me,
            parent_start: host::process_start(me),
            log: log.map(Path::to_path_buf),
        }
    }

    /// Whether the child still runs as itself (not gone, not a reused pid).
    pub(crate) fn running(&self) -> bool {
        match (host::process_start(self.pid), self.start) {
            (Some(now), Some(then)) => now == then,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// Why its parent is provably gone, if it is.
    pub(crate) fn parent_gone(&self) -> Option<String> {
        host::provably_gone(
            &self.host,
            self.boot_id.as_deref(),
            self.parent_pid,
            self.parent_start,
        )
    }
}

fn path(dir: &Path, pid: u32) -> PathBuf {
    dir.join(format!("{pid}.json"))
}

/// Records `spawn` in `dir`. A failure to record is not fatal to the child's work, so it is
/// only a missed chance to clean up after a crash: it is ignored.
pub(crate) fn record(dir: &Path, spawn: &Spawn) {
    let _ = std::fs::create_dir_all(dir);
    if let Ok(bytes) = serde_json::to_vec(spawn) {
        let tmp = dir.join(format!(".{}.tmp", spawn.pid));
        if std::fs::write(&tmp, bytes).is_ok() {
            let _ = std::fs::rename(&tmp, path(dir, spawn.pid));
        }
    }
}

/// Forgets the record of `pid` (gone already is fine).
pub(crate) fn forget(dir: &Path, pid: u32) {
    let _ = std::fs::remove_file(path(dir, pid));
}

/// The records in `dir` of processes that still run; the records of ended ones are removed.
pub(crate) fn running(dir: &Path) -> Vec<Spawn> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        let spawn = std::fs::read(&p)
            .ok()
            .and_then(|b| serde_json::from_slice::<Spawn>(&b).ok());
        match spawn {
            Some(s) if s.running() => out.push(s),
            _ => {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
    out.sort_by_key(|s| s.pid);
    out
}

/// The running children recorded in `dir` whose parent is provably gone, each with why.
pub(crate) fn orphans(dir: &Path) -> Vec<(Spawn, String)> {
    running(dir)
        .into_iter()
        .filter_map(|s| s.parent_gone().map(|why| (s, why)))
        .collect()
}

/// Stops every orphan recorded in `dir` (its whole process group: SIGTERM, SIGKILL after
/// `patience`), notes it in its log, and forgets it. Returns what was stopped, one line each.
pub(crate) async fn stop_orphans(dir: &Path, patience: Duration) -> Vec<String> {
    let mut lines = Vec::new();
    for (s, why) in orphans(dir) {
        stop_group(&s, patience).await;
        let line = format!(
            "mlctl: stopped process {} ({}), left running by mlctl pid {} that ended: {why}",
            s.pid, s.what, s.parent_pid
        );
        if let Some(log) = &s.log {
            crate::process::note(log, &line);
        }
        forget(dir, s.pid);
        lines.push(line);
    }
    lines
}

/// Stops the process group `s` leads: SIGTERM, then SIGKILL after `patience`.
pub(crate) async fn stop_group(s: &Spawn, patience: Duration) {
    let Some(pgid) = i32::try_from(s.pid)
        .ok()
        .filter(|p| *p > 1)
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::TERM);
    let t0 = Instant::now();
    while s.running() && t0.elapsed() < patience {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The group too: what the leader started may outlive it.
    let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
    let t0 = Instant::now();
    while s.running() && t0.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A process started by a parent that has exited, which keeps running (`sleep`) in its
    /// own group: what a killed apply leaves behind.
    fn orphan_of_a_dead_parent(dir: &Path) -> (Spawn, std::process::Child) {
        use std::os::unix::process::CommandExt;
        let child = std::process::Command::new("sleep")
            .arg("60")
            .process_group(0)
            .spawn()
            .unwrap();
        let mut dead = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = dead.id();
        dead.wait().unwrap();
        let spawn = Spawn {
            parent_pid: dead_pid,
            parent_start: Some(1),
            ..Spawn::of_child(child.id(), "script of TrainingJob/t", None)
        };
        record(dir, &spawn);
        (spawn, child)
    }

    #[tokio::test]
    async fn an_orphan_is_stopped_and_a_live_parents_child_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let (orphan, mut orphan_child) = orphan_of_a_dead_parent(dir.path());
        // A child of this (live) process.
        let mut mine = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        record(
            dir.path(),
            &Spawn::of_child(mine.id(), "transform of Dataset/d", None),
        );
        assert_eq!(running(dir.path()).len(), 2);
        let stopped = stop_orphans(dir.path(), Duration::from_secs(5)).await;
        assert_eq!(stopped.len(), 1, "{stopped:?}");
        assert!(stopped[0].contains(&format!("stopped process {}", orphan.pid)));
        assert!(stopped[0].contains("script of TrainingJob/t"));
        let status = orphan_child.wait().unwrap();
        assert!(!status.success(), "the orphan was killed");
        // The live parent's child still runs and is still recorded.
        assert_eq!(mine.try_wait().unwrap(), None);
        let left = running(dir.path());
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].pid, mine.id());
        mine.kill().unwrap();
        mine.wait().unwrap();
        // Ended processes' records are dropped.
        assert!(running(dir.path()).is_empty());
    }

    #[test]
    fn a_reused_pid_is_not_the_recorded_process() {
        let me = std::process::id();
        let s = Spawn {
            start: host::process_start(me).map(|t| t + 1),
            ..Spawn::of_child(me, "x", None)
        };
        assert!(!s.running());
        assert!(Spawn::of_child(me, "x", None).running());
    }
}
