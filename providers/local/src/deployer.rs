//! Local endpoints: supervised `mlctl serve` processes on 127.0.0.1.
//!
//! An endpoint is one `mlctl serve --config server.json` process, started detached (its own
//! process group, so it outlives the `mlctl apply` that started it), with its state under
//! `<state_dir>/endpoints/<name>/`:
//!
//! ```text
//! endpoint.json   what serves, on which port, the process id, version history, the rollout
//! server.json     the server's config (variants, port, capture); rewritten before every change
//! control.token   the token of the server's control route (mode 0600)
//! serve.log       the server's stdout and stderr
//! serve.pid       its process id
//! capture/        captured requests (JSON lines), when the spec asks for capture
//! ```
//!
//! # How changes roll out
//! Model versions are *variants* of the running server, changed through its control route
//! (`PUT /-/variants`), which swaps one pointer: no request is dropped, and a version that
//! fails to load changes nothing.
//! - all-at-once: the new version takes 100% in one swap.
//! - canary: the new version gets `percent` of the traffic beside the old one; during
//!   `bakeTime` each [`Deployer::poll`] reads the server's `/metrics` and compares the new
//!   version's 5xx rate and p99 latency (since the bake started) with the `rollback`
//!   thresholds. Crossed: the old version takes 100% again ([`DeployState::RolledBack`]).
//!   Not crossed by the end of the bake: the new version takes 100%.
//! - blue-green: the new version is started beside the old with no traffic (a script-mode
//!   version is a new child process), checked healthy, then all traffic switches to it at
//!   once; the old one stays loaded during `bakeTime` (watched like a canary, rolled back to
//!   instantly) and is then stopped.
//!
//! A first deploy, a dead process, or a change of port, token or capture starts a new
//! process instead (a change of those stops the old process first).
//!
//! # Supervision
//! [`Deployer::status`] checks the process (alive, not a zombie, answering `/ping`, and the
//! answering server's pid is the recorded one). A crashed or killed server is reported
//! `Degraded` with the reason, so the next `mlctl apply` re-plans the endpoint and starts it
//! again. [`Deployer::delete`] stops the process group (SIGTERM, then SIGKILL after 10 s).

use crate::compute::Limits;
use async_trait::async_trait;
use mlctl_core::error::{ErrorKind, ProviderError, Result};
use mlctl_core::*;
use mlctl_serve::client::Client;
use mlctl_serve::config::{ServeFile, ServerInfo, VariantConfig, Variants};
use mlctl_serve::metrics::{Scrape, VariantSample};
use mlctl_spec::StrategyType;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

const PROVIDER: &str = "local";
/// Longest wait for a new server (or a script-mode child) to answer.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// Canary bake when the spec gives none.
const DEFAULT_CANARY_BAKE: Duration = Duration::from_secs(60);

/// Runs endpoints as child processes of `serve_exe` (the `mlctl` binary).
pub struct LocalDeployer {
    /// Where endpoint state (pid, port, logs, capture) lives.
    pub state_dir: PathBuf,
    /// The `mlctl` executable used to serve.
    pub serve_exe: PathBuf,
    client: Client,
}

impl LocalDeployer {
    /// A deployer keeping its state under `state_dir/endpoints`.
    pub fn new(state_dir: PathBuf, serve_exe: PathBuf) -> Self {
        LocalDeployer {
            state_dir,
            serve_exe,
            client: Client::new(),
        }
    }

    fn dir(&self, name: &str) -> PathBuf {
        endpoint_dir(&self.state_dir, name)
    }
}

fn endpoint_dir(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("endpoints").join(name)
}

/// The URL of a deployed endpoint (`None` when it was never deployed here).
pub fn endpoint_url(state_dir: &Path, name: &str) -> Option<String> {
    read_record(&endpoint_dir(state_dir, name))
        .ok()
        .flatten()
        .map(|r| r.url())
}

/// The capture directory of an endpoint.
pub fn capture_dir(state_dir: &Path, name: &str) -> PathBuf {
    endpoint_dir(state_dir, name).join("capture")
}

fn err(kind: ErrorKind, op: &str, msg: impl Into<String>) -> ProviderError {
    ProviderError::new(kind, PROVIDER, op, msg)
}

fn io(op: &str, path: &Path, e: std::io::Error) -> ProviderError {
    ProviderError::io(
        PROVIDER,
        op,
        std::io::Error::new(e.kind(), format!("{}: {e}", path.display())),
    )
}

/// A version that served the endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Served {
    model: String,
    version: String,
    at: String,
}

/// Where a rollout is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "phase")]
enum Phase {
    Baking,
    Done,
    RolledBack { reason: String },
    Failed { reason: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rollout {
    id: String,
    strategy: String,
    new: VariantConfig,
    old: Option<VariantConfig>,
    phase: Phase,
    /// Traffic share of the new version while baking.
    percent: u32,
    bake_secs: f64,
    /// Unix seconds when the bake started.
    bake_started: f64,
    /// The new version's counters when the bake started.
    baseline: SampleRecord,
    max_error_rate: Option<f64>,
    max_p99_ms: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct SampleRecord {
    ok: u64,
    client_errors: u64,
    server_errors: u64,
    buckets: Vec<u64>,
}

impl From<&VariantSample> for SampleRecord {
    fn from(s: &VariantSample) -> Self {
        SampleRecord {
            ok: s.ok,
            client_errors: s.client_errors,
            server_errors: s.server_errors,
            buckets: s.buckets.clone(),
        }
    }
}

impl From<&SampleRecord> for VariantSample {
    fn from(s: &SampleRecord) -> Self {
        VariantSample {
            ok: s.ok,
            client_errors: s.client_errors,
            server_errors: s.server_errors,
            buckets: s.buckets.clone(),
        }
    }
}

/// `endpoint.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    /// Format of this record (`mlctl_core::state::FORMAT_VERSION` when written).
    #[serde(default = "mlctl_core::state::FormatVersion::legacy")]
    format_version: mlctl_core::state::FormatVersion,
    name: String,
    host: String,
    port: u16,
    pid: u32,
    /// Digest of what needs a new process when it changes (address, token, capture).
    launch: String,
    /// The spec's `auth.token` reference (`${env:NAME}`), never the token itself.
    #[serde(default)]
    auth_ref: Option<String>,
    /// What the server serves (as last set).
    variants: Vec<VariantConfig>,
    /// Versions served, oldest first.
    history: Vec<Served>,
    rollout: Option<Rollout>,
    fingerprint: String,
    updated_at: String,
    /// The limits the server process was started with (`compute`).
    #[serde(default, skip_serializing_if = "Limits::is_none")]
    limits: Limits,
    /// The endpoint's tags: mlctl's and the user's labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    tags: BTreeMap<String, String>,
}

impl Record {
    fn url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn read_record(dir: &Path) -> Result<Option<Record>> {
    let path = dir.join("endpoint.json");
    match std::fs::read(&path) {
        Ok(b) => {
            mlctl_core::state::check_format_json(&path.display().to_string(), &b)?;
            serde_json::from_slice(&b).map(Some).map_err(|e| {
                err(
                    ErrorKind::Other,
                    "read endpoint state",
                    format!("{}: {e}", path.display()),
                )
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read endpoint state", &path, e)),
    }
}

fn write_record(dir: &Path, r: &Record) -> Result<()> {
    let path = dir.join("endpoint.json");
    let tmp = dir.join("endpoint.json.tmp");
    let text = serde_json::to_vec_pretty(r)
        .map_err(|e| err(ErrorKind::Other, "write endpoint state", e.to_string()))?;
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| io("write endpoint state", &path, e))
}

/// The control token of an endpoint, created on first use (mode 0600).
fn control_token(dir: &Path) -> Result<String> {
    let path = dir.join("control.token");
    if let Ok(t) = std::fs::read_to_string(&path)
        && !t.trim().is_empty()
    {
        return Ok(t.trim().to_string());
    }
    let mut bytes = [0u8; 32];
    let random = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    if random.is_err() {
        let seed = format!(
            "{:?}{}{}",
            SystemTime::now(),
            std::process::id(),
            path.display()
        );
        bytes = *blake3::hash(seed.as_bytes()).as_bytes();
    }
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| io("write control token", &path, e))?;
    std::io::Write::write_all(&mut f, token.as_bytes())
        .map_err(|e| io("write control token", &path, e))?;
    Ok(token)
}

// ---------------------------------------------------------------------------------------------
// Processes

fn pid_of(pid: u32) -> Option<rustix::process::Pid> {
    rustix::process::Pid::from_raw(i32::try_from(pid).ok()?)
}

/// Whether `pid` runs (and is not a zombie waiting to be reaped).
fn alive(pid: u32) -> bool {
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
fn is_serve(pid: u32) -> bool {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmd) => cmd.split(|b| *b == 0).any(|a| a == b"serve"),
        Err(_) => true,
    }
}

/// Stops a server and its children: SIGTERM to the group, SIGKILL after 10 s.
async fn stop_process(pid: u32) {
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
    let _ = rustix::process::kill_process_group(p, rustix::process::Signal::TERM);
    let t0 = Instant::now();
    while alive(pid) && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if alive(pid) {
        let _ = rustix::process::kill_process_group(p, rustix::process::Signal::KILL);
        let t0 = Instant::now();
        while alive(pid) && t0.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn log_tail(dir: &Path) -> String {
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

fn free_port() -> Result<u16> {
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

/// What a deploy wants, worked out from the request.
#[derive(Clone)]
struct Wanted {
    variant: VariantConfig,
    host: String,
    port: Option<u16>,
    token: Option<String>,
    auth_ref: Option<String>,
    capture_percent: Option<f64>,
    /// `compute`: the server process's CPUs, memory and threads.
    limits: Limits,
}

impl Wanted {
    fn launch_key(&self, port: u16) -> String {
        let token = self
            .token
            .as_deref()
            .map(|t| blake3::hash(t.as_bytes()).to_hex().to_string())
            .unwrap_or_default();
        let mut key = format!("{}|{port}|{token}|{:?}", self.host, self.capture_percent);
        // Limits are part of what the process was started with (records made before limits
        // existed keep their key).
        if self.limits.any() {
            key.push_str(&format!("|{:?}", self.limits));
        }
        blake3::hash(key.as_bytes()).to_hex()[..16].to_string()
    }
}

fn variant_for(
    model: &ModelVersion,
    serve: Option<&mlctl_spec::ServeCommand>,
    project_dir: &Path,
) -> VariantConfig {
    VariantConfig {
        name: format!("v{}", model.version),
        model: model.model.clone(),
        version: model.version.to_string(),
        weight: 100,
        model_dir: Some(PathBuf::from(&model.artifact_uri)),
        command: serve.map(|s| s.command.clone()),
        code_dir: serve.map(|s| {
            s.code
                .as_ref()
                .map_or_else(|| project_dir.to_path_buf(), |c| project_dir.join(c))
        }),
    }
}

fn weighted(v: &VariantConfig, weight: u32) -> VariantConfig {
    VariantConfig {
        weight,
        ..v.clone()
    }
}

impl LocalDeployer {
    fn serve_file(&self, dir: &Path, rec: &Record, capture_percent: Option<f64>) -> ServeFile {
        ServeFile {
            format_version: mlctl_serve::config::SERVE_FILE_FORMAT,
            host: rec.host.parse().ok(),
            port: Some(rec.port),
            variants: rec.variants.clone(),
            capture: capture_percent
                .filter(|p| *p > 0.0)
                .map(|p| mlctl_serve::capture::CaptureConfig::new(dir.join("capture"), p)),
            max_body_bytes: None,
            reuse_port: false,
            control: None,
        }
    }

    /// Starts the server process for `rec` and waits until it answers as itself.
    async fn start_process(&self, dir: &Path, rec: &mut Record, wanted: &Wanted) -> Result<()> {
        let file = self.serve_file(dir, rec, wanted.capture_percent);
        file.write(&dir.join("server.json"))
            .map_err(|e| err(ErrorKind::Other, "deploy", e.to_string()))?;
        let control = control_token(dir)?;
        let log_path = dir.join("serve.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| io("open log", &log_path, e))?;
        let log2 = log.try_clone().map_err(|e| io("open log", &log_path, e))?;
        let serve: Vec<std::ffi::OsString> = vec![
            self.serve_exe.clone().into(),
            "serve".into(),
            "--config".into(),
            dir.join("server.json").into(),
            "--token-env".into(),
            "MLCTL_SERVE_TOKEN".into(),
        ];
        // Through `mlctl __limit` when `compute` asks for limits (it becomes `mlctl serve`).
        let mut cmd = if wanted.limits.any() {
            let (exe, args) = wanted.limits.wrap(&self.serve_exe, &serve);
            let mut c = std::process::Command::new(exe);
            c.args(args);
            c
        } else {
            let mut c = std::process::Command::new(&serve[0]);
            c.args(&serve[1..]);
            c
        };
        // A scrubbed environment: the server (and a script-mode serving command it starts)
        // gets what a program needs, never the deploying shell's credentials.
        cmd.env_clear()
            .envs(crate::process::child_env())
            .env("MLCTL_CONTROL_TOKEN", &control)
            .env("NO_COLOR", "1");
        if let Some(t) = &wanted.token {
            cmd.env("MLCTL_SERVE_TOKEN", t);
        }
        cmd.current_dir(dir)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log2);
        // Its own process group: it outlives `mlctl apply`, and stopping the group stops
        // script-mode children too.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().map_err(|e| {
            err(
                ErrorKind::Other,
                "deploy",
                format!("cannot start {} serve: {e}", self.serve_exe.display()),
            )
        })?;
        let pid = child.id();
        // Reap it when it exits while we are still around (no zombie that looks alive).
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        let _ = std::fs::write(dir.join("serve.pid"), format!("{pid}\n"));
        rec.pid = pid;
        let t0 = Instant::now();
        loop {
            if !alive(pid) {
                return Err(err(
                    ErrorKind::Failed,
                    "deploy",
                    format!(
                        "the server exited while starting; last lines of {}:\n{}",
                        log_path.display(),
                        log_tail(dir)
                    ),
                ));
            }
            if let Ok(info) = self.info(rec, &control).await
                && info.pid == pid
            {
                return Ok(());
            }
            if t0.elapsed() > START_TIMEOUT {
                stop_process(pid).await;
                return Err(err(
                    ErrorKind::Timeout,
                    "deploy",
                    format!(
                        "the server did not answer within {START_TIMEOUT:?}; last lines of {}:\n{}",
                        log_path.display(),
                        log_tail(dir)
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn info(&self, rec: &Record, control: &str) -> std::result::Result<ServerInfo, String> {
        let auth = format!("Bearer {control}");
        let r = self
            .client
            .get(
                &format!("{}/-/variants", rec.url()),
                &[("authorization", &auth)],
                Duration::from_secs(10),
            )
            .await
            .map_err(|e| e.to_string())?;
        if r.status != 200 {
            return Err(format!(
                "GET /-/variants answered {}: {}",
                r.status,
                r.text()
            ));
        }
        serde_json::from_slice(&r.body).map_err(|e| e.to_string())
    }

    /// Whether the recorded process is up and is the one answering on the port.
    async fn running(&self, dir: &Path, rec: &Record) -> std::result::Result<ServerInfo, String> {
        let not_running = || {
            format!(
                "the serve process (pid {}) is not running: it crashed or was stopped",
                rec.pid
            )
        };
        if !alive(rec.pid) {
            return Err(not_running());
        }
        let control = control_token(dir).map_err(|e| e.message)?;
        let info = match self.info(rec, &control).await {
            Ok(info) => info,
            Err(e) => {
                // A process that is being killed closes its sockets a moment before it is
                // reaped: look again before calling it unresponsive rather than dead.
                tokio::time::sleep(Duration::from_millis(100)).await;
                if !alive(rec.pid) {
                    return Err(not_running());
                }
                return Err(format!(
                    "the serve process (pid {}) does not answer: {e}",
                    rec.pid
                ));
            }
        };
        if info.pid != rec.pid {
            return Err(format!(
                "port {} is answered by another process (pid {}), not the endpoint's server (pid {})",
                rec.port, info.pid, rec.pid
            ));
        }
        Ok(info)
    }

    /// Sets the server's variants (one pointer swap in the server), persisting them first so a
    /// restart serves the same.
    async fn set_variants(
        &self,
        dir: &Path,
        rec: &mut Record,
        variants: Vec<VariantConfig>,
        capture_percent: Option<f64>,
    ) -> Result<()> {
        let previous = std::mem::replace(&mut rec.variants, variants.clone());
        let file = self.serve_file(dir, rec, capture_percent);
        let control = control_token(dir)?;
        let body = serde_json::to_vec(&Variants { variants })
            .map_err(|e| err(ErrorKind::Other, "deploy", e.to_string()))?;
        let auth = format!("Bearer {control}");
        let r = self
            .client
            .send(
                "PUT",
                &format!("{}/-/variants", rec.url()),
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                ],
                body.into(),
                START_TIMEOUT + Duration::from_secs(10),
            )
            .await
            .map_err(|e| err(ErrorKind::Transient, "deploy", e.to_string()))?;
        if r.status != 200 {
            rec.variants = previous;
            let msg = serde_json::from_slice::<serde_json::Value>(&r.body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| r.text());
            return Err(err(
                ErrorKind::Failed,
                "deploy",
                format!(
                    "the server refused the new version (the previous one keeps serving): {msg}"
                ),
            ));
        }
        file.write(&dir.join("server.json"))
            .map_err(|e| err(ErrorKind::Other, "deploy", e.to_string()))?;
        Ok(())
    }

    async fn scrape(&self, dir: &Path, rec: &Record) -> std::result::Result<Scrape, String> {
        let control = control_token(dir).map_err(|e| e.message)?;
        let auth = format!("Bearer {control}");
        let r = self
            .client
            .get(
                &format!("{}/metrics", rec.url()),
                &[("authorization", &auth)],
                Duration::from_secs(10),
            )
            .await
            .map_err(|e| e.to_string())?;
        if r.status != 200 {
            return Err(format!("GET /metrics answered {}", r.status));
        }
        Ok(Scrape::parse(&r.text()))
    }

    fn status_of(
        &self,
        rec: &Record,
        health: Health,
        message: Option<String>,
        live: Option<&ServerInfo>,
    ) -> EndpointStatus {
        let variants: Vec<Variant> = match live {
            Some(info) => info
                .variants
                .iter()
                .map(|v| &v.config)
                .filter(|v| v.weight > 0)
                .map(to_variant)
                .collect(),
            None => rec
                .variants
                .iter()
                .filter(|v| v.weight > 0)
                .map(to_variant)
                .collect(),
        };
        EndpointStatus {
            name: rec.name.clone(),
            url: Some(rec.url()),
            health,
            variants,
            instances: 1,
            message,
        }
    }

    async fn live_status(&self, dir: &Path, rec: &Record) -> EndpointStatus {
        match self.running(dir, rec).await {
            Err(why) => {
                let msg = format!(
                    "{why}; `mlctl apply` starts it again (log: {})",
                    dir.join("serve.log").display()
                );
                self.status_of(rec, Health::Degraded, Some(msg), None)
            }
            Ok(info) => {
                let unhealthy: Vec<&str> = info
                    .variants
                    .iter()
                    .filter(|v| v.config.weight > 0 && !v.healthy)
                    .map(|v| v.config.name.as_str())
                    .collect();
                let baking = rec
                    .rollout
                    .as_ref()
                    .is_some_and(|r| r.phase == Phase::Baking);
                let (health, msg) = if !unhealthy.is_empty() {
                    (
                        Health::Degraded,
                        Some(format!(
                            "variant {} is not ready (its serve command exited; the server restarts it)",
                            unhealthy.join(", ")
                        )),
                    )
                } else if baking {
                    (
                        Health::Progressing,
                        Some("a rollout is in progress".to_string()),
                    )
                } else {
                    (Health::Healthy, None)
                };
                self.status_of(rec, health, msg, Some(&info))
            }
        }
    }

    fn wanted(&self, ctx: &OpContext, req: &EndpointRequest) -> Result<Wanted> {
        let token = match &req.spec.auth {
            Some(a) => Some(
                mlctl_spec::env::resolve(&a.token, |n| std::env::var(n).ok()).map_err(|e| {
                    err(
                        ErrorKind::Invalid,
                        "deploy",
                        format!("endpoint `{}`, auth.token: {e}", req.name),
                    )
                })?,
            ),
            None => None,
        };
        Ok(Wanted {
            variant: variant_for(&req.model, req.spec.serve.as_ref(), &ctx.project_dir),
            host: "127.0.0.1".into(),
            port: req.spec.port,
            token,
            // Only a reference is kept (to restart the server later); never a literal token.
            auth_ref: req
                .spec
                .auth
                .as_ref()
                .map(|a| a.token.clone())
                .filter(|t| mlctl_spec::env::is_single_reference(t)),
            capture_percent: req.spec.capture.as_ref().map(|c| c.sampling_percent),
            limits: Limits::of(req.spec.compute.as_ref()),
        })
    }

    /// Starts a fresh process serving only `wanted.variant` (first deploy, repair, relaunch).
    async fn launch(
        &self,
        dir: &Path,
        existing: Option<Record>,
        wanted: &Wanted,
        fingerprint: &str,
    ) -> Result<Record> {
        if let Some(old) = &existing {
            stop_process(old.pid).await;
        }
        let port = match wanted
            .port
            .or(existing.as_ref().map(|r| r.port))
            .filter(|p| *p != 0)
        {
            Some(p) => p,
            None => free_port()?,
        };
        let mut history = existing
            .as_ref()
            .map(|r| r.history.clone())
            .unwrap_or_default();
        push_history(&mut history, &wanted.variant);
        let mut rec = Record {
            format_version: Default::default(),
            name: dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string(),
            host: wanted.host.clone(),
            port,
            pid: 0,
            launch: wanted.launch_key(port),
            auth_ref: wanted.auth_ref.clone(),
            variants: vec![weighted(&wanted.variant, 100)],
            history,
            rollout: None,
            fingerprint: fingerprint.to_string(),
            updated_at: now_rfc3339(),
            tags: existing
                .as_ref()
                .map(|r| r.tags.clone())
                .unwrap_or_default(),
            limits: wanted.limits,
        };
        self.start_process(dir, &mut rec, wanted).await?;
        Ok(rec)
    }
    /// Carries out a rollout up to where [`Deployer::poll`] takes over (the bake).
    async fn roll_out(
        &self,
        req: &EndpointRequest,
        wanted: &Wanted,
        dir: &Path,
        id: &str,
    ) -> Result<()> {
        let wanted = wanted.clone();
        let existing = read_record(dir)?;
        let strategy = req.spec.strategy.as_ref();
        let kind = strategy.map_or(StrategyType::AllAtOnce, |s| s.ty);

        // No server to update in place: start one with the new version.
        let reuse = match &existing {
            Some(rec) => {
                let port_ok = wanted.port.is_none_or(|p| p == rec.port);
                port_ok
                    && rec.launch == wanted.launch_key(rec.port)
                    && self.running(dir, rec).await.is_ok()
            }
            None => false,
        };
        if !reuse {
            let mut rec = self
                .launch(dir, existing, &wanted, &req.fingerprint)
                .await?;
            rec.rollout = Some(Rollout {
                id: id.to_string(),
                strategy: "all-at-once".into(),
                new: wanted.variant.clone(),
                old: None,
                phase: Phase::Done,
                percent: 100,
                bake_secs: 0.0,
                bake_started: unix_now(),
                baseline: SampleRecord::default(),
                max_error_rate: None,
                max_p99_ms: None,
            });
            rec.tags = req.tags.to_map();
            write_record(dir, &rec)?;
            return Ok(());
        }
        let mut rec = existing.expect("reuse implies a record");
        rec.fingerprint = req.fingerprint.clone();
        rec.tags = req.tags.to_map();
        let new = wanted.variant.clone();
        let old = primary(&rec.variants)
            .cloned()
            .filter(|o| !same_source(o, &new));
        let rollback = strategy.and_then(|s| s.rollback.as_ref());
        let bake = strategy
            .and_then(|s| s.bake_time.as_deref())
            .map(mlctl_spec::units::parse_duration)
            .transpose()
            .map_err(|e| err(ErrorKind::Invalid, "deploy", format!("bakeTime: {e}")))?;
        let mut rollout = Rollout {
            id: id.to_string(),
            strategy: match kind {
                StrategyType::AllAtOnce => "all-at-once",
                StrategyType::Canary => "canary",
                StrategyType::BlueGreen => "blue-green",
            }
            .into(),
            new: new.clone(),
            old: old.clone(),
            phase: Phase::Done,
            percent: 100,
            bake_secs: 0.0,
            bake_started: unix_now(),
            baseline: SampleRecord::default(),
            max_error_rate: rollback.and_then(|r| r.max_error_rate),
            max_p99_ms: rollback.and_then(|r| r.max_p99_latency_ms),
        };
        match (&old, kind) {
            // Same version (or nothing to compare against): make it the only one.
            (None, _) | (Some(_), StrategyType::AllAtOnce) => {
                self.set_variants(
                    dir,
                    &mut rec,
                    vec![weighted(&new, 100)],
                    wanted.capture_percent,
                )
                .await?;
            }
            (Some(old), StrategyType::Canary) => {
                let percent = strategy.and_then(|s| s.percent).unwrap_or(10).clamp(1, 99) as u32;
                self.set_variants(
                    dir,
                    &mut rec,
                    vec![weighted(old, 100 - percent), weighted(&new, percent)],
                    wanted.capture_percent,
                )
                .await?;
                let base = self
                    .scrape(dir, &rec)
                    .await
                    .ok()
                    .and_then(|s| s.variants.get(&new.name).cloned())
                    .unwrap_or_default();
                rollout.phase = Phase::Baking;
                rollout.percent = percent;
                rollout.bake_secs = bake.unwrap_or(DEFAULT_CANARY_BAKE).as_secs_f64();
                rollout.baseline = (&base).into();
                rollout.bake_started = unix_now();
            }
            (Some(old), StrategyType::BlueGreen) => {
                // Green beside blue with no traffic: loads the model or starts the script's
                // process; a failure here leaves blue serving alone.
                self.set_variants(
                    dir,
                    &mut rec,
                    vec![weighted(old, 100), weighted(&new, 0)],
                    wanted.capture_percent,
                )
                .await?;
                let control = control_token(dir)?;
                let info = self
                    .info(&rec, &control)
                    .await
                    .map_err(|e| err(ErrorKind::Transient, "deploy", e))?;
                if !info
                    .variants
                    .iter()
                    .any(|v| v.config.name == new.name && v.healthy)
                {
                    self.set_variants(
                        dir,
                        &mut rec,
                        vec![weighted(old, 100)],
                        wanted.capture_percent,
                    )
                    .await?;
                    return Err(err(
                        ErrorKind::Failed,
                        "deploy",
                        format!(
                            "the new version {} did not become healthy; the previous one keeps serving",
                            new.name
                        ),
                    ));
                }
                // Switch all traffic at once; blue stays loaded for an instant rollback.
                self.set_variants(
                    dir,
                    &mut rec,
                    vec![weighted(&new, 100), weighted(old, 0)],
                    wanted.capture_percent,
                )
                .await?;
                match bake {
                    Some(b) if !b.is_zero() => {
                        let base = self
                            .scrape(dir, &rec)
                            .await
                            .ok()
                            .and_then(|s| s.variants.get(&new.name).cloned())
                            .unwrap_or_default();
                        rollout.phase = Phase::Baking;
                        rollout.bake_secs = b.as_secs_f64();
                        rollout.baseline = (&base).into();
                        rollout.bake_started = unix_now();
                    }
                    _ => {
                        self.set_variants(
                            dir,
                            &mut rec,
                            vec![weighted(&new, 100)],
                            wanted.capture_percent,
                        )
                        .await?
                    }
                }
            }
        }
        if rollout.phase == Phase::Done {
            push_history(&mut rec.history, &new);
        }
        rec.rollout = Some(rollout);
        rec.updated_at = now_rfc3339();
        write_record(dir, &rec)?;
        Ok(())
    }
}

fn push_history(history: &mut Vec<Served>, v: &VariantConfig) {
    if history
        .last()
        .is_some_and(|h| h.model == v.model && h.version == v.version)
    {
        return;
    }
    history.push(Served {
        model: v.model.clone(),
        version: v.version.clone(),
        at: now_rfc3339(),
    });
}

fn to_variant(v: &VariantConfig) -> Variant {
    Variant {
        model: v.model.clone(),
        version: v.version.parse().unwrap_or(0),
        weight: v.weight,
    }
}

/// The variant serving most of the traffic.
fn primary(variants: &[VariantConfig]) -> Option<&VariantConfig> {
    variants
        .iter()
        .filter(|v| v.weight > 0)
        .max_by_key(|v| v.weight)
}

fn same_source(a: &VariantConfig, b: &VariantConfig) -> bool {
    a.model == b.model
        && a.version == b.version
        && a.model_dir == b.model_dir
        && a.command == b.command
        && a.code_dir == b.code_dir
}

#[async_trait]
impl Deployer for LocalDeployer {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            fields: crate::support::field_rules(),
            strategies: StrategyType::ALL.to_vec(),
            poll_interval: Duration::from_millis(250),
            ..Capabilities::default()
        }
    }

    async fn deploy(&self, ctx: &OpContext, req: &EndpointRequest) -> Result<DeploymentHandle> {
        let dir = self.dir(&req.name);
        std::fs::create_dir_all(&dir).map_err(|e| io("deploy", &dir, e))?;
        let wanted = self.wanted(ctx, req)?;
        let id = format!(
            "{}-{}-{}",
            req.model.version,
            &req.fingerprint[..req.fingerprint.len().min(12)],
            unix_now() as u64
        );
        let handle = DeploymentHandle {
            endpoint: req.name.clone(),
            id: id.clone(),
        };
        match self.roll_out(req, &wanted, &dir, &id).await {
            Ok(()) => Ok(handle),
            // The rollout ran and failed: poll says so (the previous version, if any, serves).
            Err(e) if matches!(e.kind, ErrorKind::Failed | ErrorKind::Timeout) => {
                let mut rec = read_record(&dir)?.unwrap_or_else(|| Record {
                    format_version: Default::default(),
                    name: req.name.clone(),
                    host: wanted.host.clone(),
                    port: wanted.port.unwrap_or(0),
                    pid: 0,
                    launch: String::new(),
                    auth_ref: wanted.auth_ref.clone(),
                    variants: Vec::new(),
                    history: Vec::new(),
                    rollout: None,
                    fingerprint: req.fingerprint.clone(),
                    updated_at: now_rfc3339(),
                    tags: req.tags.to_map(),
                    limits: wanted.limits,
                });
                rec.rollout = Some(Rollout {
                    id,
                    strategy: String::new(),
                    new: wanted.variant.clone(),
                    old: None,
                    phase: Phase::Failed { reason: e.message },
                    percent: 0,
                    bake_secs: 0.0,
                    bake_started: unix_now(),
                    baseline: SampleRecord::default(),
                    max_error_rate: None,
                    max_p99_ms: None,
                });
                write_record(&dir, &rec)?;
                Ok(handle)
            }
            Err(e) => Err(e),
        }
    }

    async fn poll(&self, _ctx: &OpContext, handle: &DeploymentHandle) -> Result<DeployState> {
        let dir = self.dir(&handle.endpoint);
        let Some(mut rec) = read_record(&dir)? else {
            return Ok(DeployState::Failed {
                reason: format!(
                    "endpoint `{}` has no state on this target (deleted?)",
                    handle.endpoint
                ),
            });
        };
        let Some(mut rollout) = rec.rollout.clone().filter(|r| r.id == handle.id) else {
            return Ok(DeployState::Failed {
                reason: "this rollout was replaced by a newer one".into(),
            });
        };
        match &rollout.phase {
            Phase::Done => return Ok(DeployState::Done(self.live_status(&dir, &rec).await)),
            Phase::RolledBack { reason } => {
                return Ok(DeployState::RolledBack {
                    reason: reason.clone(),
                    status: self.live_status(&dir, &rec).await,
                });
            }
            Phase::Failed { reason } => {
                return Ok(DeployState::Failed {
                    reason: reason.clone(),
                });
            }
            Phase::Baking => {}
        }
        if let Err(why) = self.running(&dir, &rec).await {
            let reason = format!(
                "{why} during the rollout; last lines of the log:\n{}",
                log_tail(&dir)
            );
            rollout.phase = Phase::Failed {
                reason: reason.clone(),
            };
            rec.rollout = Some(rollout);
            write_record(&dir, &rec)?;
            return Ok(DeployState::Failed { reason });
        }
        let capture = capture_percent_of(&dir);
        let scrape = self
            .scrape(&dir, &rec)
            .await
            .map_err(|e| err(ErrorKind::Transient, "poll", e))?;
        let now_sample = scrape
            .variants
            .get(&rollout.new.name)
            .cloned()
            .unwrap_or_default();
        let delta = now_sample.since(&VariantSample::from(&rollout.baseline));
        let n = delta.requests();
        let rate = delta.error_rate();
        let p99 = delta.p99_ms();
        let mut breach = None;
        if let Some(max) = rollout.max_error_rate
            && n > 0
            && rate > max
        {
            breach = Some(format!(
                "error rate {:.1}% of {n} requests to v{} is above maxErrorRate {:.1}%",
                rate * 100.0,
                rollout.new.version,
                max * 100.0
            ));
        }
        if let (Some(max), Some(p99), None) = (rollout.max_p99_ms, p99, &breach)
            && p99 > max
        {
            breach = Some(format!(
                "p99 latency of v{} is above {max} ms (bucket up to {p99} ms) over {n} requests",
                rollout.new.version
            ));
        }
        if let Some(reason) = breach {
            let back = rollout
                .old
                .clone()
                .map(|o| vec![weighted(&o, 100)])
                .unwrap_or_default();
            if !back.is_empty() {
                self.set_variants(&dir, &mut rec, back, capture).await?;
            }
            rollout.phase = Phase::RolledBack {
                reason: reason.clone(),
            };
            rec.rollout = Some(rollout);
            rec.updated_at = now_rfc3339();
            write_record(&dir, &rec)?;
            return Ok(DeployState::RolledBack {
                reason,
                status: self.live_status(&dir, &rec).await,
            });
        }
        let elapsed = unix_now() - rollout.bake_started;
        if elapsed >= rollout.bake_secs {
            self.set_variants(&dir, &mut rec, vec![weighted(&rollout.new, 100)], capture)
                .await?;
            push_history(&mut rec.history, &rollout.new);
            rollout.phase = Phase::Done;
            rec.rollout = Some(rollout);
            rec.updated_at = now_rfc3339();
            write_record(&dir, &rec)?;
            return Ok(DeployState::Done(self.live_status(&dir, &rec).await));
        }
        let what = if rollout.strategy == "canary" {
            format!("canary v{} at {}%", rollout.new.version, rollout.percent)
        } else {
            format!(
                "v{} live, v{} on standby",
                rollout.new.version,
                rollout.old.as_ref().map_or("?", |o| o.version.as_str())
            )
        };
        let p99 = p99.map_or("-".to_string(), |p| format!("<= {p} ms"));
        Ok(DeployState::InProgress {
            message: format!(
                "{what}: {n} requests, {:.1}% errors, p99 {p99}; baked {:.0}s of {:.0}s",
                rate * 100.0,
                elapsed,
                rollout.bake_secs
            ),
        })
    }

    async fn status(&self, _ctx: &OpContext, name: &str) -> Result<Option<EndpointStatus>> {
        let dir = self.dir(name);
        match read_record(&dir)? {
            None => Ok(None),
            Some(rec) => Ok(Some(self.live_status(&dir, &rec).await)),
        }
    }

    async fn rollback(
        &self,
        _ctx: &OpContext,
        name: &str,
        to: &ModelVersion,
    ) -> Result<EndpointStatus> {
        let dir = self.dir(name);
        let Some(mut rec) = read_record(&dir)? else {
            return Err(err(
                ErrorKind::NotFound,
                "rollback",
                format!("endpoint `{name}` is not deployed on this target"),
            ));
        };
        // Serve `to` the way the endpoint serves now (same script command, if any).
        let current = primary(&rec.variants).cloned();
        let mut target = VariantConfig {
            name: format!("v{}", to.version),
            model: to.model.clone(),
            version: to.version.to_string(),
            weight: 100,
            model_dir: Some(PathBuf::from(&to.artifact_uri)),
            command: None,
            code_dir: None,
        };
        if let Some(c) = &current {
            target.command = c.command.clone();
            target.code_dir = c.code_dir.clone();
        }
        let capture = capture_percent_of(&dir);
        if self.running(&dir, &rec).await.is_ok() {
            self.set_variants(&dir, &mut rec, vec![target.clone()], capture)
                .await?;
        } else {
            // The server is down: start it with the old version. Launch settings are kept.
            rec.variants = vec![target.clone()];
            let token = match &rec.auth_ref {
                Some(r) => Some(
                    mlctl_spec::env::resolve(r, |n| std::env::var(n).ok()).map_err(|e| {
                        err(
                            ErrorKind::Invalid,
                            "rollback",
                            format!("endpoint `{name}`, auth.token: {e}"),
                        )
                    })?,
                ),
                None => None,
            };
            let wanted = Wanted {
                variant: target.clone(),
                host: rec.host.clone(),
                port: Some(rec.port),
                token,
                auth_ref: rec.auth_ref.clone(),
                capture_percent: capture,
                limits: rec.limits,
            };
            stop_process(rec.pid).await;
            self.start_process(&dir, &mut rec, &wanted).await?;
        }
        push_history(&mut rec.history, &target);
        if let Some(r) = rec.rollout.as_mut()
            && r.phase == Phase::Baking
        {
            r.phase = Phase::RolledBack {
                reason: format!("rolled back by hand to v{}", to.version),
            };
        }
        rec.updated_at = now_rfc3339();
        write_record(&dir, &rec)?;
        Ok(self.live_status(&dir, &rec).await)
    }

    async fn delete(&self, _ctx: &OpContext, name: &str) -> Result<()> {
        let dir = self.dir(name);
        if let Some(rec) = read_record(&dir)? {
            stop_process(rec.pid).await;
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("delete endpoint", &dir, e)),
        }
    }
}

/// The capture share the running server was configured with (from `server.json`).
fn capture_percent_of(dir: &Path) -> Option<f64> {
    ServeFile::read(&dir.join("server.json"))
        .ok()
        .and_then(|f| f.capture)
        .map(|c| c.percent)
}
