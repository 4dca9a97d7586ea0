//! Runs user commands (`sh -c`) as child processes: output streamed line by line into a log
//! file that is kept, the last lines of stderr remembered for the error message, and the
//! whole process group stopped on cancel.
//!
//! A command gets a scrubbed environment ([`child_env`]): the variables a program needs to
//! run on this machine (PATH, HOME, locale, proxies, a Python or Conda environment, ...) and
//! what mlctl sets for the job; never the rest of mlctl's environment, where cloud
//! credentials and tokens live.

use crate::PROVIDER;
use crate::compute::Limits;
use mlctl_core::error::{ProviderError, Result};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;

/// Lines of stderr kept for a failure message.
pub(crate) const STDERR_TAIL: usize = 20;

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// A command to run.
#[derive(Debug, Clone)]
pub(crate) struct Shell {
    /// The command line, run with `sh -c`.
    pub command: String,
    /// Working directory.
    pub cwd: PathBuf,
    /// Variables set for the command, on top of [`child_env`].
    pub env: Vec<(String, String)>,
    /// The log file (appended to; stdout and stderr interleaved as they arrive).
    pub log: PathBuf,
    /// Resource limits, applied by running the command through `mlctl __limit`: the path of
    /// the mlctl executable, the limits, and the slot among processes running side by side
    /// (see [`Limits::wrap`]).
    pub limits: Option<(PathBuf, Limits, usize)>,
    /// Where the running command is recorded (see [`crate::strays`]), and what it is, so the
    /// next run stops it if the mlctl that started it is killed and it keeps running.
    pub recorded: Option<(PathBuf, String)>,
}

pub(crate) use mlctl_core::transform::child_env;

/// How a command ended.
#[derive(Debug, Clone)]
pub(crate) struct Exit {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    /// Whether it was stopped by a cancel.
    pub cancelled: bool,
    /// The last [`STDERR_TAIL`] lines of stderr.
    pub stderr_tail: Vec<String>,
}

impl Exit {
    pub(crate) fn success(&self) -> bool {
        self.code == Some(0) && !self.cancelled
    }

    /// "exited with code 2; last lines of stderr: ..." for a failure message.
    pub(crate) fn describe(&self, what: &str) -> String {
        let how = match (self.cancelled, self.code) {
            (true, _) => "was cancelled".to_string(),
            (false, Some(c)) => format!("exited with code {c}"),
            (false, None) => "was killed by a signal".to_string(),
        };
        if self.stderr_tail.is_empty() {
            format!("{what} {how} (no output on stderr)")
        } else {
            format!(
                "{what} {how}; last lines of stderr:\n{}",
                self.stderr_tail
                    .iter()
                    .map(|l| format!("  | {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        }
    }
}

fn io(op: &str, e: std::io::Error) -> ProviderError {
    ProviderError::io(PROVIDER, op, e)
}

/// Runs `shell`, calling `on_line` for every output line, until it exits or `cancel` turns true.
pub(crate) async fn run(
    shell: &Shell,
    on_line: impl FnMut(Stream, &str) + Send,
    cancel: watch::Receiver<bool>,
) -> Result<Exit> {
    if let Some(dir) = shell.log.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| io("create log directory", e))?;
    }
    let mut log = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&shell.log)
        .await
        .map_err(|e| io("open log file", e))?;
    // What an earlier, killed mlctl left running is stopped before anything new starts.
    if let Some((dir, _)) = &shell.recorded {
        crate::strays::stop_orphans(dir, std::time::Duration::from_secs(10)).await;
    }
    let program = ["sh".into(), "-c".into(), shell.command.clone().into()];
    let mut cmd = match &shell.limits {
        Some((mlctl, limits, slot)) if limits.any() => {
            let (exe, args) = limits.wrap(mlctl, &program, *slot);
            let mut c = tokio::process::Command::new(exe);
            c.args(args);
            c
        }
        _ => {
            let mut c = tokio::process::Command::new(&program[0]);
            c.args(&program[1..]);
            c
        }
    };
    cmd.env_clear()
        .envs(child_env())
        .current_dir(&shell.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in &shell.env {
        cmd.env(k, v);
    }
    // Its own process group, so a cancel stops what `sh` started too.
    #[cfg(unix)]
    cmd.process_group(0);
    let child = cmd.spawn().map_err(|e| {
        let mut err = io("start command", e);
        err.message = format!(
            "could not start `sh -c {}` in {}: {}",
            shell.command,
            shell.cwd.display(),
            err.message
        );
        err
    })?;
    let pid = child.id();
    if let (Some((dir, what)), Some(pid)) = (&shell.recorded, pid) {
        crate::strays::record(
            dir,
            &crate::strays::Spawn::of_child(pid, what, Some(&shell.log)),
        );
    }
    let exit = supervise(child, &mut log, on_line, cancel).await;
    if let (Some((dir, _)), Some(pid)) = (&shell.recorded, pid) {
        crate::strays::forget(dir, pid);
    }
    exit
}

/// Streams the output of `child` into `log` and `on_line` until it exits or is cancelled.
async fn supervise(
    mut child: tokio::process::Child,
    log: &mut tokio::fs::File,
    mut on_line: impl FnMut(Stream, &str) + Send,
    mut cancel: watch::Receiver<bool>,
) -> Result<Exit> {
    let pid = child.id();
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut err = BufReader::new(child.stderr.take().expect("piped stderr"));
    let (mut out_open, mut err_open) = (true, true);
    let (mut out_buf, mut err_buf) = (Vec::new(), Vec::new());
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut cancelled = false;
    let mut watching = !*cancel.borrow();
    if !watching {
        cancelled = true;
        stop(pid, &mut child).await;
    }
    while out_open || err_open {
        let (stream, read) = tokio::select! {
            r = out.read_until(b'\n', &mut out_buf), if out_open => (Stream::Stdout, r),
            r = err.read_until(b'\n', &mut err_buf), if err_open => (Stream::Stderr, r),
            changed = cancel.changed(), if watching => {
                match changed {
                    // Nobody can cancel any more.
                    Err(_) => watching = false,
                    Ok(()) if *cancel.borrow() => {
                        watching = false;
                        cancelled = true;
                        stop(pid, &mut child).await;
                    }
                    Ok(()) => {}
                }
                continue;
            }
        };
        let n = read.map_err(|e| io("read command output", e))?;
        let buf = if stream == Stream::Stdout {
            &mut out_buf
        } else {
            &mut err_buf
        };
        if n == 0 {
            if stream == Stream::Stdout {
                out_open = false;
            } else {
                err_open = false;
            }
            continue;
        }
        log.write_all(buf)
            .await
            .map_err(|e| io("write log file", e))?;
        if !buf.ends_with(b"\n") {
            log.write_all(b"\n")
                .await
                .map_err(|e| io("write log file", e))?;
        }
        let line = String::from_utf8_lossy(buf)
            .trim_end_matches(['\n', '\r'])
            .to_string();
        buf.clear();
        on_line(stream, &line);
        if stream == Stream::Stderr {
            if tail.len() == STDERR_TAIL {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }
    let status = child.wait().await.map_err(|e| io("wait for command", e))?;
    log.flush().await.map_err(|e| io("write log file", e))?;
    Ok(Exit {
        code: status.code(),
        cancelled,
        stderr_tail: tail.into(),
    })
}

async fn stop(pid: Option<u32>, child: &mut tokio::process::Child) {
    #[cfg(unix)]
    if let Some(pgid) = pid
        .filter(|&p| p > 1)
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw)
    {
        // The whole group: `sh` and whatever it started.
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::TERM);
    }
    let _ = child.start_kill();
}

/// Appends a line to a log file (mlctl's own notes between the command's output).
pub(crate) fn note(log: &Path, line: &str) {
    use std::io::Write;
    if let Some(dir) = log.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        let _ = writeln!(f, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn streams_lines_and_keeps_the_stderr_tail() {
        let dir = tempfile::tempdir().unwrap();
        let shell = Shell {
            command: "echo out-$GREETING; for i in $(seq 1 30); do echo err$i >&2; done; exit 3"
                .into(),
            cwd: dir.path().to_path_buf(),
            env: vec![("GREETING".into(), "hi".into())],
            log: dir.path().join("logs/run.log"),
            limits: None,
            recorded: None,
        };
        let (_tx, rx) = watch::channel(false);
        let mut lines = Vec::new();
        let exit = run(&shell, |s, l| lines.push((s, l.to_string())), rx)
            .await
            .unwrap();
        assert_eq!(exit.code, Some(3));
        assert!(!exit.success());
        assert_eq!(exit.stderr_tail.len(), STDERR_TAIL);
        assert_eq!(exit.stderr_tail.last().unwrap(), "err30");
        assert!(lines.contains(&(Stream::Stdout, "out-hi".to_string())));
        let log = std::fs::read_to_string(&shell.log).unwrap();
        assert!(log.contains("out-hi") && log.contains("err1\n") && log.contains("err30"));
        assert!(exit.describe("script").contains("exited with code 3"));
    }

    #[tokio::test]
    async fn cancel_stops_the_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let shell = Shell {
            command: "sleep 30; echo never".into(),
            cwd: dir.path().to_path_buf(),
            env: vec![],
            log: dir.path().join("log"),
            limits: None,
            recorded: None,
        };
        let (tx, rx) = watch::channel(false);
        let t0 = std::time::Instant::now();
        let task = tokio::spawn(async move { run(&shell, |_, _| {}, rx).await });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        tx.send(true).unwrap();
        let exit = task.await.unwrap().unwrap();
        assert!(exit.cancelled);
        assert!(t0.elapsed() < std::time::Duration::from_secs(10));
    }
}
