//! Script-mode variants: a child process serving the SageMaker inference contract, fronted by
//! this server (which adds metrics, capture, traffic split and auth).
//!
//! The child runs `sh -c COMMAND` in `code_dir` with `SAGEMAKER_BIND_TO_PORT` (a free port on
//! 127.0.0.1), `SM_MODEL_DIR` and `MLCTL_VARIANT` set, stdout/stderr going to the server's own.
//! It is ready when `GET /ping` answers 200. When it exits it is restarted (backoff 0.5 s
//! doubling to 30 s) and the variant reports unhealthy meanwhile. Dropping the [`Upstream`]
//! stops the child and its descendants (SIGTERM, then SIGKILL after 5 s).

use crate::ServeError;
use crate::client::{Client, Response};
use crate::config::VariantConfig;
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long a starting child may take to answer `/ping`.
pub const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A running script-mode server.
pub struct Upstream {
    base: String,
    client: Client,
    healthy: Arc<AtomicBool>,
    /// The child's pid (0 while restarting), for a synchronous stop on drop.
    pid: Arc<AtomicU32>,
    stop: watch::Sender<bool>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; the OS rarely hands it out again at once).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn spawn(cfg: &VariantConfig, port: u16) -> Result<tokio::process::Child, String> {
    let command = cfg.command.as_deref().unwrap_or_default();
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .env("SAGEMAKER_BIND_TO_PORT", port.to_string())
        .env("MLCTL_VARIANT", &cfg.name)
        .stdin(std::process::Stdio::null());
    // Never hand our own secrets to the child.
    cmd.env_remove("MLCTL_SERVE_TOKEN")
        .env_remove("MLCTL_CONTROL_TOKEN");
    if let Some(dir) = &cfg.model_dir {
        cmd.env("SM_MODEL_DIR", dir);
    }
    if let Some(dir) = &cfg.code_dir {
        cmd.current_dir(dir);
    }
    cmd.spawn()
        .map_err(|e| format!("cannot start `{command}`: {e}"))
}

async fn wait_ready(
    client: &Client,
    base: &str,
    child: &mut tokio::process::Child,
    limit: Duration,
) -> Result<(), String> {
    let t0 = Instant::now();
    let url = format!("{base}/ping");
    let mut delay = Duration::from_millis(10);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "the serve command exited ({status}) before answering /ping"
            ));
        }
        if let Ok(r) = client.get(&url, &[], Duration::from_secs(2)).await
            && r.status == 200
        {
            return Ok(());
        }
        if t0.elapsed() > limit {
            return Err(format!(
                "the serve command did not answer GET /ping with 200 within {limit:?}"
            ));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(250));
    }
}

impl Upstream {
    /// Starts the child and waits until it is ready.
    ///
    /// # Errors
    /// [`ServeError::Backend`]: the command did not start, or did not answer `/ping` in time.
    pub async fn start(cfg: &VariantConfig) -> Result<Arc<Upstream>, ServeError> {
        let port = free_port().map_err(|e| ServeError::Backend(format!("no free port: {e}")))?;
        let base = format!("http://127.0.0.1:{port}");
        let client = Client::new();
        let mut child = spawn(cfg, port).map_err(ServeError::Backend)?;
        if let Err(e) = wait_ready(&client, &base, &mut child, START_TIMEOUT).await {
            stop_tree(&mut child).await;
            return Err(ServeError::Backend(format!("variant `{}`: {e}", cfg.name)));
        }
        let healthy = Arc::new(AtomicBool::new(true));
        let pid = Arc::new(AtomicU32::new(child.id().unwrap_or(0)));
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(supervise(
            cfg.clone(),
            port,
            child,
            client.clone(),
            base.clone(),
            healthy.clone(),
            pid.clone(),
            stop_rx,
        ));
        Ok(Arc::new(Upstream {
            base,
            client,
            healthy,
            pid,
            stop,
        }))
    }

    /// Whether the child is up.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Passes an invocation through.
    pub async fn invoke(
        &self,
        content_type: Option<&str>,
        accept: Option<&str>,
        body: Bytes,
    ) -> Result<Response, ServeError> {
        let mut headers = Vec::with_capacity(2);
        if let Some(ct) = content_type {
            headers.push(("content-type", ct));
        }
        if let Some(a) = accept {
            headers.push(("accept", a));
        }
        self.client
            .send(
                "POST",
                &format!("{}/invocations", self.base),
                &headers,
                body,
                Duration::from_secs(60),
            )
            .await
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        // SIGTERM now, so the child goes even when the runtime is shutting down and the
        // supervisor never runs again; the supervisor escalates to SIGKILL when it can.
        let pid = self.pid.swap(0, Ordering::Relaxed);
        if pid != 0 {
            signal_all(pid, &descendants(pid), rustix::process::Signal::TERM);
        }
        let _ = self.stop.send(true);
    }
}

#[allow(clippy::too_many_arguments)]
async fn supervise(
    cfg: VariantConfig,
    port: u16,
    mut child: tokio::process::Child,
    client: Client,
    base: String,
    healthy: Arc<AtomicBool>,
    pid: Arc<AtomicU32>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(500);
    loop {
        tokio::select! {
            status = child.wait() => {
                healthy.store(false, Ordering::Relaxed);
                pid.store(0, Ordering::Relaxed);
                tracing::warn!("variant `{}`: the serve command exited ({}); restarting in {backoff:?}", cfg.name, status.map(|s| s.to_string()).unwrap_or_default());
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                match spawn(&cfg, port) {
                    Ok(mut c) => match wait_ready(&client, &base, &mut c, START_TIMEOUT).await {
                        Ok(()) => {
                            pid.store(c.id().unwrap_or(0), Ordering::Relaxed);
                            healthy.store(true, Ordering::Relaxed);
                            backoff = Duration::from_millis(500);
                            child = c;
                        }
                        Err(e) => {
                            tracing::warn!("variant `{}`: {e}", cfg.name);
                            stop_tree(&mut c).await;
                            child = c;
                        }
                    },
                    Err(e) => {
                        tracing::warn!("variant `{}`: {e}", cfg.name);
                        return;
                    }
                }
            }
            _ = stop.changed() => {
                stop_tree(&mut child).await;
                return;
            }
        }
    }
}

/// Stops a child and every process below it: SIGTERM, then SIGKILL after 5 s.
pub async fn stop_tree(child: &mut tokio::process::Child) {
    let Some(pid) = child.id() else { return };
    let tree = descendants(pid);
    signal_all(pid, &tree, rustix::process::Signal::TERM);
    if tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .is_err()
    {
        signal_all(pid, &tree, rustix::process::Signal::KILL);
        let _ = child.wait().await;
    }
    // Grandchildren outlive `sh` when it forked them: make sure they go too.
    for p in descendants_alive(&tree) {
        if let Some(p) = rustix::process::Pid::from_raw(p as i32) {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        }
    }
}

fn signal_all(pid: u32, tree: &[u32], sig: rustix::process::Signal) {
    for p in std::iter::once(pid).chain(tree.iter().copied()) {
        if let Some(p) = rustix::process::Pid::from_raw(p as i32) {
            let _ = rustix::process::kill_process(p, sig);
        }
    }
}

fn descendants_alive(tree: &[u32]) -> Vec<u32> {
    tree.iter()
        .copied()
        .filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
        .collect()
}

/// Every process below `pid` (Linux: from /proc; elsewhere none are found).
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                continue;
            };
            if let Some(ppid) = rest
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse::<u32>().ok())
            {
                parent_of.push((p, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(c, pp) in &parent_of {
            if pp == p && !out.contains(&c) {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}
