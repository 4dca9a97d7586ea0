//! Local endpoints: supervised `mlctl serve` processes on 127.0.0.1.
//!
//! An endpoint is `instances` processes of `mlctl serve --config server.json` sharing one
//! port (`SO_REUSEPORT`: the kernel spreads connections over them), each started detached (its
//! own process group, so it outlives the `mlctl apply` that started it) and reachable alone on
//! a private control port ([`processes`]). Its state is under `<state_dir>/endpoints/<name>/`:
//!
//! ```text
//! endpoint.json   what serves, on which port, every process (pid, control port), version
//!                 history, the rollout
//! server.json     the servers' config (variants, port, capture); rewritten before every change
//! control.token   the token of the servers' control route (mode 0600)
//! instances/      <pid>.json per running process: its control address (written by the process)
//! serve.log       the servers' stdout and stderr
//! serve.pid       their process ids
//! capture/<pid>/  captured requests (JSON lines) of each process, when the spec asks for
//!                 capture and gives no `destination` (else under the destination)
//! ```
//!
//! # How changes roll out
//! Model versions are *variants* of the running servers, changed through their control route
//! (`PUT /-/variants` on every process's control port), which swaps one pointer: no request is
//! dropped, and a version that fails to load changes nothing (a process that refuses it puts
//! the others back).
//! - all-at-once: the new version takes 100% in one swap.
//! - canary: the new version gets `percent` of the traffic beside the old one; during the
//!   bake each [`Deployer::poll`] reads every process's `/metrics`, adds them up, and judges
//!   the new version's requests, 5xx rate and p99 latency since the bake started
//!   ([`mlctl_core::bake::judge`]). A `rollback` threshold crossed: the old version takes
//!   100% again ([`DeployState::RolledBack`]). After `bakeTime` with at least `minRequests`
//!   served: the new version takes 100%. Short of requests, it waits up to `maxBakeTime`,
//!   then rolls back saying how many it had. The bake (start, baseline counters, rules) is
//!   recorded in `endpoint.json`, so an apply that stops mid-bake (killed) leaves nothing
//!   unjudged for good: the next apply's deploy of the same request finds the baking rollout
//!   and resumes judging it where it was.
//! - blue-green: the new version is started beside the old with no traffic (a script-mode
//!   version is a new child process), checked healthy, then all traffic switches to it at
//!   once; the old one stays loaded during `bakeTime` (watched like a canary, rolled back to
//!   instantly) and is then stopped.
//!
//! A new bearer token (the value behind `auth.token` changed: its keyed digest is in the
//! fingerprint) rotates in the running processes, with no restart and no refused request:
//! every process first takes the new token beside the old (`PUT /-/auth` on its control
//! port), then the new one alone. The token lives in the processes' memory and in the
//! environment of the ones mlctl starts, never in a file: a process started later (a repair,
//! a scale-up) gets it from the resolved reference.
//!
//! A first deploy, or an endpoint with no process serving, starts new processes with the new
//! version. A change of port, of auth on or off, capture or limits needs new processes too: they are
//! started with the version that serves now and the new settings, and a canary or blue-green
//! strategy then rolls the new version out on them as above (all-at-once starts them with
//! the new version at once).
//!
//! # Supervision
//! [`Deployer::status`] checks every process (alive, not a zombie, answering on its control
//! port as itself) and that the shared port is answered by one of them. Fewer than
//! `instances` serving is reported `Degraded` with the reason ("2 of 3 server processes run"),
//! so the next `mlctl apply` re-plans the endpoint and starts the missing ones beside the
//! others; more (started by hand from `server.json`) shows as instance drift and the apply
//! stops the extras. [`Deployer::delete`] stops every process group (SIGTERM, then SIGKILL
//! after 10 s).

mod fleet;
mod processes;

use crate::compute::Limits;
use async_trait::async_trait;
use mlctl_core::bake::{BakeRules, BakeSample, Verdict, judge};
use mlctl_core::error::{ErrorKind, ProviderError, Result};
use mlctl_core::*;
use mlctl_serve::client::Client;
use mlctl_serve::config::{ConnectionLimits, ServeFile, VariantConfig};
use mlctl_serve::metrics::VariantSample;
use mlctl_spec::{Enforce, StrategyType};
use processes::{Process, announced, log_tail, stop_all};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const PROVIDER: &str = "local";
/// Longest wait for a new server (or a script-mode child) to answer.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// Canary bake when the spec gives none.
const DEFAULT_CANARY_BAKE: Duration = Duration::from_secs(60);
/// Most server processes of one endpoint (`instances`): each loads the model.
pub(crate) const MAX_INSTANCES: i64 = 64;

/// Runs endpoints as child processes of `serve_exe` (the `mlctl` binary).
pub struct LocalDeployer {
    /// Where endpoint state (pid, port, logs, capture) lives.
    pub state_dir: PathBuf,
    /// The `mlctl` executable used to serve.
    pub serve_exe: PathBuf,
    /// The project directory relative `capture.destination`s are under (default: the
    /// operation's `project_dir`, which with `--rev` is a snapshot that only holds inputs).
    pub project_dir: Option<PathBuf>,
    client: Client,
}

impl LocalDeployer {
    /// A deployer keeping its state under `state_dir/endpoints`.
    pub fn new(state_dir: PathBuf, serve_exe: PathBuf) -> Self {
        LocalDeployer {
            project_dir: None,
            state_dir,
            serve_exe,
            client: Client::new(),
        }
    }

    /// Writes relative capture destinations under `project_dir`.
    pub fn writing_under(mut self, project_dir: PathBuf) -> Self {
        self.project_dir = Some(project_dir);
        self
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

/// Where an endpoint's servers write captured requests: the spec's `capture.destination`
/// as deployed, else `capture/` in the endpoint's directory. Each process writes in its own
/// `<pid>/` below it (`mlctl_serve::capture::capture_streams` lists them).
pub fn capture_dir(state_dir: &Path, name: &str) -> PathBuf {
    let dir = endpoint_dir(state_dir, name);
    match read_record(&dir) {
        Ok(Some(rec)) => rec.capture_dir_in(&dir),
        _ => dir.join("capture"),
    }
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
    /// canary: requests the new version must serve before it is promoted (0 in records
    /// from before `minRequests`, which promoted without traffic).
    #[serde(default)]
    min_requests: u64,
    /// canary: the longest bake while waiting for `min_requests` (0: `bake_secs`).
    #[serde(default)]
    max_bake_secs: f64,
}

impl Rollout {
    /// The rules its bake is judged by.
    fn rules(&self) -> BakeRules {
        let bake = Duration::from_secs_f64(self.bake_secs.max(0.0));
        BakeRules {
            bake,
            max_bake: Duration::from_secs_f64(self.max_bake_secs.max(0.0)).max(bake),
            min_requests: self.min_requests,
            max_error_rate: self.max_error_rate,
            max_p99_ms: self.max_p99_ms,
        }
    }
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
            // A canary's baseline judges errors and latency, not signature warnings.
            signature_warnings: 0,
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
    /// The first of `processes` (what records had before there were several).
    pid: u32,
    /// Every server process; empty in records written before `instances` was honoured,
    /// whose one process is `pid`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    processes: Vec<Process>,
    /// How many processes should serve (the spec's `instances`).
    #[serde(default = "one")]
    instances: u32,
    /// Digest of what needs new processes when it changes (address, whether there is a
    /// token, capture, limits). Records written before tokens rotated in place hold a hash of
    /// the token here instead (`Wanted::legacy_launch_key`).
    launch: String,
    /// The spec's `auth.token` reference (`${env:NAME}`), never the token itself.
    #[serde(default)]
    auth_ref: Option<String>,
    /// `capture.destination`, resolved; `None`: `capture/` in the endpoint's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    capture_dir: Option<PathBuf>,
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
    /// `enforce`: what the servers do with a request that breaks the model's signature.
    #[serde(default, skip_serializing_if = "is_strict")]
    enforce: Enforce,
    /// `server`: the connection limits the server processes were started with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    server: Option<ConnectionLimits>,
    /// The endpoint's tags: mlctl's and the user's labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    tags: BTreeMap<String, String>,
}

fn one() -> u32 {
    1
}

impl Record {
    fn url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// The recorded processes (a record from before `processes` has its one `pid`).
    fn processes(&self) -> Vec<Process> {
        if self.processes.is_empty() {
            (self.pid > 0)
                .then_some(Process {
                    pid: self.pid,
                    control_port: None,
                })
                .into_iter()
                .collect()
        } else {
            self.processes.clone()
        }
    }

    fn set_processes(&mut self, processes: Vec<Process>) {
        self.pid = processes.first().map_or(0, |p| p.pid);
        self.processes = processes;
    }

    /// Where the servers write captured requests (`dir` is the endpoint's directory).
    fn capture_dir_in(&self, dir: &Path) -> PathBuf {
        self.capture_dir
            .clone()
            .unwrap_or_else(|| dir.join("capture"))
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

/// What a deploy wants, worked out from the request.
#[derive(Clone)]
struct Wanted {
    variant: VariantConfig,
    host: String,
    port: Option<u16>,
    token: Option<String>,
    auth_ref: Option<String>,
    capture_percent: Option<f64>,
    /// `capture.destination`, resolved (`None`: the endpoint's own directory).
    capture_dir: Option<PathBuf>,
    /// `compute`: the server process's CPUs, memory and threads.
    limits: Limits,
    /// How many server processes (`instances`).
    instances: u32,
    /// `enforce` (signature enforcement).
    enforce: Enforce,
    /// `server` (connection limits; `None`: the server's defaults).
    server: Option<ConnectionLimits>,
}

fn is_strict(e: &Enforce) -> bool {
    *e == Enforce::Strict
}

impl Wanted {
    /// What the processes were started with that only new processes can change. Whether
    /// there is a token is; which token is not (it rotates in place, [`Self::legacy_launch_key`]).
    fn launch_key(&self, port: u16) -> String {
        let auth = if self.token.is_some() { "auth" } else { "" };
        self.launch_key_with(port, auth)
    }

    /// The key of a record written before tokens rotated in place, which held an (unkeyed)
    /// hash of the token: a record with it was launched with this very token.
    fn legacy_launch_key(&self, port: u16) -> Option<String> {
        let token = self.token.as_deref()?;
        Some(self.launch_key_with(port, blake3::hash(token.as_bytes()).to_hex().as_ref()))
    }

    fn launch_key_with(&self, port: u16, auth: &str) -> String {
        let mut key = format!("{}|{port}|{auth}|{:?}", self.host, self.capture_percent);
        // Limits are part of what the process was started with (records made before limits
        // existed keep their key).
        if self.limits.any() {
            key.push_str(&format!("|{:?}", self.limits));
        }
        if let Some(d) = &self.capture_dir {
            key.push_str(&format!("|capture:{}", d.display()));
        }
        // Strict is what servers did before `enforce` existed: their key stays.
        if self.enforce != Enforce::Strict {
            key.push_str(&format!("|enforce:{:?}", self.enforce));
        }
        // Likewise the servers' default limits.
        if let Some(l) = &self.server {
            key.push_str(&format!("|server:{l:?}"));
        }
        blake3::hash(key.as_bytes()).to_hex()[..16].to_string()
    }
}

/// The variant serving `model`; a script's `serve.code` is resolved inside the project
/// (symlinks followed), and refused when it lands outside.
fn variant_for(
    name: &str,
    model: &ModelVersion,
    serve: Option<&mlctl_spec::ServeCommand>,
    project_dir: &Path,
) -> Result<VariantConfig> {
    let code_dir = match serve {
        None => None,
        Some(s) => Some(match &s.code {
            None => project_dir.to_path_buf(),
            Some(c) => crate::fsutil::resolve_in_project(
                project_dir,
                c,
                &format!("endpoint `{name}`"),
                "serve.code",
            )?,
        }),
    };
    Ok(VariantConfig {
        name: format!("v{}", model.version),
        model: model.model.clone(),
        version: model.version.to_string(),
        weight: 100,
        model_dir: Some(PathBuf::from(&model.artifact_uri)),
        command: serve.map(|s| s.command.clone()),
        code_dir,
    })
}

fn weighted(v: &VariantConfig, weight: u32) -> VariantConfig {
    VariantConfig {
        weight,
        ..v.clone()
    }
}

impl LocalDeployer {
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
        let instances = req.spec.instances.unwrap_or(1);
        if !(1..=MAX_INSTANCES).contains(&instances) {
            return Err(err(
                ErrorKind::Invalid,
                "deploy",
                format!(
                    "endpoint `{}`: instances is {instances}; a local endpoint runs 1 to {MAX_INSTANCES} server processes",
                    req.name
                ),
            ));
        }
        let capture_dir = match req
            .spec
            .capture
            .as_ref()
            .and_then(|c| c.destination.as_deref())
        {
            None => None,
            Some(d) if d.contains("://") => {
                return Err(err(
                    ErrorKind::Invalid,
                    "deploy",
                    format!(
                        "endpoint `{}`: capture.destination `{d}` is a URL; the local target writes captured data to a directory (give a path, or leave `destination` out)",
                        req.name
                    ),
                ));
            }
            // Relative to the project, like every path of the spec (an absolute one stays).
            Some(d) => Some(
                self.project_dir
                    .as_ref()
                    .unwrap_or(&ctx.project_dir)
                    .join(d),
            ),
        };
        Ok(Wanted {
            variant: variant_for(
                &req.name,
                &req.model,
                req.spec.serve.as_ref(),
                &ctx.project_dir,
            )?,
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
            capture_dir,
            limits: Limits::of(req.spec.compute.as_ref()),
            instances: instances as u32,
            enforce: req.spec.enforce.unwrap_or_default(),
            server: req.spec.server.as_ref().map(ConnectionLimits::from_spec),
        })
    }

    /// What a recorded endpoint was launched with, serving `variant`: to start its processes
    /// again without a spec (a rollback).
    fn wanted_from_record(
        &self,
        rec: &Record,
        variant: &VariantConfig,
        capture_percent: Option<f64>,
    ) -> Result<Wanted> {
        let token = match &rec.auth_ref {
            Some(r) => Some(
                mlctl_spec::env::resolve(r, |n| std::env::var(n).ok()).map_err(|e| {
                    err(
                        ErrorKind::Invalid,
                        "rollback",
                        format!("endpoint `{}`, auth.token: {e}", rec.name),
                    )
                })?,
            ),
            None => None,
        };
        Ok(Wanted {
            variant: variant.clone(),
            host: rec.host.clone(),
            port: Some(rec.port),
            token,
            auth_ref: rec.auth_ref.clone(),
            capture_percent,
            capture_dir: rec.capture_dir.clone(),
            limits: rec.limits,
            instances: rec.instances,
            enforce: rec.enforce,
            server: rec.server,
        })
    }

    /// The id of this very request's rollout when it is still baking with every process up:
    /// the apply that started it stopped (killed, timed out) before judging it. A re-run
    /// resumes judging it from the recorded bake (its start, its baseline counters) instead
    /// of starting the bake again.
    async fn baking_rollout(
        &self,
        dir: &Path,
        req: &EndpointRequest,
        wanted: &Wanted,
    ) -> Result<Option<String>> {
        let Some(rec) = read_record(dir)? else {
            return Ok(None);
        };
        let Some(rollout) = rec.rollout.as_ref().filter(|r| r.phase == Phase::Baking) else {
            return Ok(None);
        };
        let same = rec.fingerprint == req.fingerprint
            && same_source(&rollout.new, &wanted.variant)
            && wanted.port.is_none_or(|p| p == rec.port)
            && rec.launch == wanted.launch_key(rec.port)
            && rec.instances == wanted.instances;
        if !same
            || self
                .live(dir, &rec)
                .await
                .shortfall(rec.instances)
                .is_some()
        {
            return Ok(None);
        }
        Ok(Some(rollout.id.clone()))
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

        let live = match &existing {
            Some(rec) => Some(self.live(dir, rec).await),
            None => None,
        };
        let serving = live.as_ref().is_some_and(|l| !l.up.is_empty());
        let mut same_launch = existing.as_ref().is_some_and(|rec| {
            wanted.port.is_none_or(|p| p == rec.port)
                && (rec.launch == wanted.launch_key(rec.port)
                    || Some(&rec.launch) == wanted.legacy_launch_key(rec.port).as_ref())
                // A server from before control ports cannot be joined by more.
                && (wanted.instances <= 1
                    || rec.processes().iter().all(|p| p.control_port.is_some()))
        });
        // The token rotates in the running processes (see `set_token`): first the new one
        // beside the old everywhere, here; the old one is dropped once the count is right.
        // Processes too old to take a token keep serving if they were started with this very
        // token (their record says so), and are replaced otherwise.
        if let (Some(rec), Some(live), Some(token)) = (&existing, &live, &wanted.token)
            && serving
            && same_launch
        {
            let started_with_it = Some(&rec.launch) == wanted.legacy_launch_key(rec.port).as_ref();
            same_launch = self
                .set_token(dir, rec, &live.processes(), token, true)
                .await?
                || started_with_it;
        }
        let mut rec = match (existing, live) {
            // Update in place, after bringing the process count to the spec's.
            (Some(mut rec), Some(live)) if serving && same_launch => {
                self.scale(dir, &mut rec, &wanted, live).await?;
                if let Some(token) = &wanted.token {
                    // Processes started by `scale` got the new token alone already.
                    self.set_token(dir, &rec, &rec.processes(), token, false)
                        .await?;
                }
                rec.launch = wanted.launch_key(rec.port);
                rec.auth_ref = wanted.auth_ref.clone();
                rec
            }
            // New launch settings and a new version, with a strategy to honour: new processes
            // serve what serves now, then the strategy rolls the new version out on them.
            (Some(rec), Some(_))
                if serving
                    && kind != StrategyType::AllAtOnce
                    && primary(&rec.variants).is_some_and(|o| !same_source(o, &wanted.variant)) =>
            {
                let served = rec.variants.clone();
                let fresh = self
                    .launch(dir, Some(rec), &wanted, served, &req.fingerprint)
                    .await?;
                write_record(dir, &fresh)?;
                fresh
            }
            // Nothing serves (a first deploy, a repair), or all at once: start with the new
            // version.
            (existing, _) => {
                let mut rec = self
                    .launch(
                        dir,
                        existing,
                        &wanted,
                        vec![weighted(&wanted.variant, 100)],
                        &req.fingerprint,
                    )
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
                    min_requests: 0,
                    max_bake_secs: 0.0,
                });
                rec.tags = req.tags.to_map();
                write_record(dir, &rec)?;
                return Ok(());
            }
        };
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
            min_requests: 0,
            max_bake_secs: 0.0,
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
                    .scrape(dir, &rec, &rec.processes())
                    .await
                    .ok()
                    .and_then(|s| s.variants.get(&new.name).cloned())
                    .unwrap_or_default();
                let rules = strategy
                    .map(|s| BakeRules::of(s, DEFAULT_CANARY_BAKE))
                    .transpose()
                    .map_err(|e| err(ErrorKind::Invalid, "deploy", e))?;
                rollout.phase = Phase::Baking;
                rollout.percent = percent;
                rollout.bake_secs = bake.unwrap_or(DEFAULT_CANARY_BAKE).as_secs_f64();
                rollout.min_requests = rules.as_ref().map_or(0, |r| r.min_requests);
                rollout.max_bake_secs = rules.map_or(0.0, |r| r.max_bake.as_secs_f64());
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
                let infos = self
                    .infos(dir, &rec, &rec.processes())
                    .await
                    .map_err(|e| err(ErrorKind::Transient, "deploy", e))?;
                let green_everywhere = infos.iter().all(|info| {
                    info.variants
                        .iter()
                        .any(|v| v.config.name == new.name && v.healthy)
                });
                if !green_everywhere {
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
                            .scrape(dir, &rec, &rec.processes())
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
        // A server that a killed apply started and never recorded goes first: it would hold
        // the port, or serve on an old one forever.
        let recorded = read_record(&dir)?
            .map(|r| r.processes())
            .unwrap_or_default();
        processes::stop_half_started(&dir, &recorded).await;
        let wanted = self.wanted(ctx, req)?;
        let id = format!(
            "{}-{}-{}",
            req.model.version,
            &req.fingerprint[..req.fingerprint.len().min(12)],
            unix_now() as u64
        );
        if let Some(id) = self.baking_rollout(&dir, req, &wanted).await? {
            return Ok(DeploymentHandle {
                endpoint: req.name.clone(),
                id,
            });
        }
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
                    processes: Vec::new(),
                    instances: wanted.instances,
                    launch: String::new(),
                    auth_ref: wanted.auth_ref.clone(),
                    capture_dir: wanted.capture_dir.clone(),
                    variants: Vec::new(),
                    history: Vec::new(),
                    rollout: None,
                    fingerprint: req.fingerprint.clone(),
                    updated_at: now_rfc3339(),
                    tags: req.tags.to_map(),
                    limits: wanted.limits,
                    enforce: wanted.enforce,
                    server: wanted.server,
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
                    min_requests: 0,
                    max_bake_secs: 0.0,
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
        let live = self.live(&dir, &rec).await;
        if let Some(why) = live.shortfall(rec.instances) {
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
        // The processes that serve are the ones to judge and to switch.
        rec.set_processes(live.processes());
        let capture = capture_percent_of(&dir);
        let scrape = self
            .scrape(&dir, &rec, &rec.processes())
            .await
            .map_err(|e| err(ErrorKind::Transient, "poll", e))?;
        let now_sample = scrape
            .variants
            .get(&rollout.new.name)
            .cloned()
            .unwrap_or_default();
        let delta = now_sample.since(&VariantSample::from(&rollout.baseline));
        let sample = BakeSample {
            requests: delta.requests(),
            server_errors: delta.server_errors,
            p99_ms: delta.p99_ms(),
        };
        let elapsed = Duration::from_secs_f64((unix_now() - rollout.bake_started).max(0.0));
        let version = format!("v{}", rollout.new.version);
        match judge(&rollout.rules(), &sample, elapsed, &version) {
            Verdict::RollBack(reason) => {
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
                Ok(DeployState::RolledBack {
                    reason,
                    status: self.live_status(&dir, &rec).await,
                })
            }
            Verdict::Promote => {
                self.set_variants(&dir, &mut rec, vec![weighted(&rollout.new, 100)], capture)
                    .await?;
                push_history(&mut rec.history, &rollout.new);
                rollout.phase = Phase::Done;
                rec.rollout = Some(rollout);
                rec.updated_at = now_rfc3339();
                write_record(&dir, &rec)?;
                Ok(DeployState::Done(self.live_status(&dir, &rec).await))
            }
            Verdict::Wait(progress) => {
                let what = if rollout.strategy == "canary" {
                    format!("canary {version} at {}%", rollout.percent)
                } else {
                    format!(
                        "{version} live, v{} on standby",
                        rollout.old.as_ref().map_or("?", |o| o.version.as_str())
                    )
                };
                Ok(DeployState::InProgress {
                    message: format!("{what}: {progress}"),
                })
            }
        }
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
        let live = self.live(&dir, &rec).await;
        if live.up.is_empty() {
            // Nothing serves: start the processes again with the old version. Launch settings
            // are kept.
            let wanted = self.wanted_from_record(&rec, &target, capture)?;
            let rollout = rec.rollout.clone();
            let fingerprint = rec.fingerprint.clone();
            rec = self
                .launch(&dir, Some(rec), &wanted, vec![target.clone()], &fingerprint)
                .await?;
            rec.rollout = rollout;
        } else {
            if live.shortfall(rec.instances).is_some() {
                let wanted = self.wanted_from_record(&rec, &target, capture)?;
                self.scale(&dir, &mut rec, &wanted, live).await?;
            } else {
                rec.set_processes(live.processes());
            }
            self.set_variants(&dir, &mut rec, vec![target.clone()], capture)
                .await?;
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

    async fn update_in_place(&self, _ctx: &OpContext, req: &InPlaceRequest) -> Result<()> {
        // The tags live in the record only: the serving processes never see them, so none
        // is restarted.
        let dir = self.dir(&req.name);
        let Some(mut rec) = read_record(&dir)? else {
            return Err(crate::gone(
                "update endpoint tags",
                format!("endpoint `{}`", req.name),
            ));
        };
        rec.tags = req.tags.to_map();
        write_record(&dir, &rec)
    }

    async fn delete(&self, _ctx: &OpContext, name: &str) -> Result<()> {
        let dir = self.dir(name);
        match read_record(&dir)? {
            Some(rec) => self.stop_everything(&dir, &rec).await,
            None => {
                let mut all = announced(&dir);
                all.extend(processes::spawned(&dir));
                stop_all(&dir, &all).await
            }
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
