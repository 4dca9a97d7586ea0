//! What a server serves: its variants (model versions with traffic weights).
//!
//! The same JSON is the body of `PUT /-/variants`, the `variants` of a `--config` file, and the
//! answer of `GET /-/variants`, so the local deployer and a user's `curl` speak one format.

use crate::ServeError;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One model version serving part of the traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VariantConfig {
    /// Variant name (unique in a server): metrics label, `X-Mlctl-Variant` target.
    pub name: String,
    /// Model name (metrics and capture label).
    #[serde(default)]
    pub model: String,
    /// Model version (metrics and capture label).
    #[serde(default)]
    pub version: String,
    /// Traffic weight; the shares are `weight / sum of weights`. 0 = only reachable by name.
    pub weight: u32,
    /// The model directory (a portable model, or the artifacts a script serves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_dir: Option<PathBuf>,
    /// Script mode: a shell command serving the SageMaker inference contract (`GET /ping`,
    /// `POST /invocations` on `$SAGEMAKER_BIND_TO_PORT`); `$SM_MODEL_DIR` is `model_dir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Script mode: the directory the command runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_dir: Option<PathBuf>,
}

impl VariantConfig {
    /// A portable-model variant.
    pub fn model_dir(name: impl Into<String>, dir: impl Into<PathBuf>, weight: u32) -> Self {
        VariantConfig {
            name: name.into(),
            model: String::new(),
            version: String::new(),
            weight,
            model_dir: Some(dir.into()),
            command: None,
            code_dir: None,
        }
    }

    /// Whether `other` serves the same thing (only the weight may differ), so a loaded model
    /// or a running script can be kept across a reconfiguration.
    pub fn same_backend(&self, other: &VariantConfig) -> bool {
        self.name == other.name
            && self.model == other.model
            && self.version == other.version
            && self.model_dir == other.model_dir
            && self.command == other.command
            && self.code_dir == other.code_dir
    }
}

/// A set of variants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Variants {
    /// The variants.
    pub variants: Vec<VariantConfig>,
}

/// `PUT /-/auth`: a new bearer token for a running server (a rotation, without a restart).
///
/// Its `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthUpdate {
    /// The token to accept from now on.
    pub token: String,
    /// Keep accepting the token that was current until now (one, not every earlier one):
    /// the first step of a rotation over several processes, so that no process refuses the
    /// new token while another has not got it yet. `false` accepts `token` only.
    #[serde(default)]
    pub keep_previous: bool,
}

impl std::fmt::Debug for AuthUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthUpdate")
            .field("token", &"..")
            .field("keep_previous", &self.keep_previous)
            .finish()
    }
}

/// What `PUT /-/auth` answers: how many tokens the server accepts now (1, or 2 during a
/// rotation), never which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthState {
    /// 1 or 2.
    pub accepted: u32,
}

/// A variant's live state, as `GET /-/variants` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VariantStatus {
    /// Its configuration.
    #[serde(flatten)]
    pub config: VariantConfig,
    /// Whether it can serve (a script's child is up).
    pub healthy: bool,
}

/// What `GET /health` tells a caller without the control token about a variant: enough to see
/// what serves and whether it is ready, never the model directory, the command or the code
/// directory (paths and command lines say more about the machine than a health check needs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VariantHealth {
    /// Variant name.
    pub name: String,
    /// Model name.
    pub model: String,
    /// Model version.
    pub version: String,
    /// Traffic weight.
    pub weight: u32,
    /// Whether it can serve.
    pub healthy: bool,
}

impl From<&VariantStatus> for VariantHealth {
    fn from(v: &VariantStatus) -> Self {
        VariantHealth {
            name: v.config.name.clone(),
            model: v.config.model.clone(),
            version: v.config.version.clone(),
            weight: v.config.weight,
            healthy: v.healthy,
        }
    }
}

/// `GET /-/variants`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerInfo {
    /// The server's process id.
    pub pid: u32,
    /// mlctl version.
    pub server_version: String,
    /// The variants.
    pub variants: Vec<VariantStatus>,
}

/// Checks a set of variants: names unique and non-empty, one source each, some traffic.
///
/// # Errors
/// [`ServeError::Config`] saying what is wrong.
pub fn validate(variants: &[VariantConfig]) -> Result<(), ServeError> {
    check_variants(variants).map_err(ServeError::Config)
}

fn check_variants(variants: &[VariantConfig]) -> Result<(), String> {
    if variants.is_empty() {
        return Err("no variants: give at least one model".into());
    }
    for (i, v) in variants.iter().enumerate() {
        if v.name.is_empty() {
            return Err(format!("variant {i} has no name"));
        }
        if variants[..i].iter().any(|o| o.name == v.name) {
            return Err(format!("variant name `{}` is used twice", v.name));
        }
        if v.model_dir.is_none() && v.command.is_none() {
            return Err(format!(
                "variant `{}` has neither a modelDir nor a command",
                v.name
            ));
        }
    }
    if variants.iter().all(|v| v.weight == 0) {
        return Err("every variant has weight 0: nothing would get traffic".into());
    }
    Ok(())
}

/// A server described in a file: `mlctl serve --config FILE` (what local endpoints run; the
/// variants are re-read on SIGHUP).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServeFile {
    /// Format of this file ([`SERVE_FILE_FORMAT`] when written; 1 when absent).
    #[serde(default = "legacy_format")]
    pub format_version: u32,
    /// Address to bind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<std::net::IpAddr>,
    /// Port to bind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// What to serve.
    pub variants: Vec<VariantConfig>,
    /// Data capture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<crate::capture::CaptureConfig>,
    /// Largest request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<usize>,
    /// Bind the port with `SO_REUSEPORT`, so several servers started from this file share it
    /// and the kernel spreads connections over them. Off unless asked: without it a second
    /// server on a taken port fails to start, which is what a lone server wants.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reuse_port: bool,
    /// A private control listener beside the shared port (see [`ControlListener`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<ControlListener>,
    /// What to do with a request that breaks the model's input signature (the Endpoint's
    /// `enforce`); written only when not `strict`, so older servers refuse a file they
    /// would not honour.
    #[serde(default, skip_serializing_if = "is_strict")]
    pub enforce: mlctl_spec::Enforce,
    /// Connection deadlines and cap (the Endpoint's `server`); written only when given, so
    /// older servers refuse a file they would not honour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ConnectionLimits>,
}

/// How long a client may take and how many may be connected at once (see [`crate::conn`]).
/// A field left out of a file takes its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ConnectionLimits {
    /// Longest a request's headers may take to arrive, from the connection's start or the
    /// request's first byte (default 10 s); then the connection is closed.
    pub header_timeout_ms: u64,
    /// Longest a keep-alive connection may sit between requests (default 60 s).
    pub idle_timeout_ms: u64,
    /// Longest a request's whole body may take to arrive once its headers have (default
    /// 30 s); then the request is answered 408 and the connection closed.
    pub body_timeout_ms: u64,
    /// Most connections served at once per listener (default 1024); the next waits to be
    /// accepted until one closes.
    pub max_connections: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            body_timeout_ms: 30_000,
            max_connections: 1024,
        }
    }
}

impl ConnectionLimits {
    /// The Endpoint's `server` settings (validated: a value that does not parse takes the
    /// default).
    pub fn from_spec(s: &mlctl_spec::ServerSettings) -> Self {
        let d = ConnectionLimits::default();
        let ms = |v: &Option<String>, default: u64| {
            v.as_deref()
                .and_then(|v| mlctl_spec::units::parse_duration(v).ok())
                .map_or(default, |t| t.as_millis() as u64)
        };
        ConnectionLimits {
            header_timeout_ms: ms(&s.header_timeout, d.header_timeout_ms),
            idle_timeout_ms: ms(&s.idle_timeout, d.idle_timeout_ms),
            body_timeout_ms: ms(&s.body_timeout, d.body_timeout_ms),
            max_connections: s
                .max_connections
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(d.max_connections),
        }
    }

    /// [`ConnectionLimits::header_timeout_ms`].
    pub fn header_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.header_timeout_ms.max(1))
    }

    /// [`ConnectionLimits::idle_timeout_ms`].
    pub fn idle_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.idle_timeout_ms.max(1))
    }

    /// [`ConnectionLimits::body_timeout_ms`].
    pub fn body_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.body_timeout_ms.max(1))
    }
}

fn is_strict(e: &mlctl_spec::Enforce) -> bool {
    *e == mlctl_spec::Enforce::Strict
}

/// A second listener of one server process, on 127.0.0.1 and a port the OS picks, answering
/// the same routes as the shared port. When several processes share a port, a request to it
/// lands on any one of them; a request to a process's control port reaches that process, so
/// it is where its variants are set and its metrics read.
///
/// Once it serves, the process announces itself in `dir/<pid>.json` ([`Announcement`]) and
/// removes the file when it stops cleanly (a killed process leaves it behind: readers check
/// that the process lives and answers as itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ControlListener {
    /// Where the process writes its announcement.
    pub dir: PathBuf,
}

/// `<dir>/<pid>.json` of a [`ControlListener`]: which process serves, and where to reach it
/// alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Announcement {
    /// Format of this file ([`SERVE_FILE_FORMAT`] when written; 1 when absent).
    #[serde(default = "legacy_format")]
    pub format_version: u32,
    /// The server's process id.
    pub pid: u32,
    /// Its control address (127.0.0.1 and the port the OS picked).
    pub control: std::net::SocketAddr,
}

impl Announcement {
    /// The announcement file of process `pid` in `dir`.
    pub fn path(dir: &std::path::Path, pid: u32) -> PathBuf {
        dir.join(format!("{pid}.json"))
    }

    /// Every announcement in `dir` that can be read (torn or foreign files are skipped; a
    /// missing directory has none).
    pub fn read_all(dir: &std::path::Path) -> Vec<Announcement> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut out: Vec<Announcement> = entries
            .flatten()
            .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".json")))
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice::<Announcement>(&b).ok())
            .filter(|a| a.format_version <= SERVE_FILE_FORMAT)
            .collect();
        out.sort_by_key(|a| a.pid);
        out
    }

    /// Writes the file atomically (a reader never sees half of it).
    ///
    /// # Errors
    /// The directory or the file cannot be written.
    pub fn write(&self, dir: &std::path::Path) -> Result<(), ServeError> {
        let path = Announcement::path(dir, self.pid);
        let file_err = |source| ServeError::File {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(file_err)?;
        let tmp = dir.join(format!(".{}.json.tmp", self.pid));
        let text = serde_json::to_vec(self).map_err(|source| ServeError::Format {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(file_err)
    }
}

/// The `server.json` format this mlctl writes, and the newest it reads (2: `reusePort`,
/// `control`, `capture.perProcess`).
pub const SERVE_FILE_FORMAT: u32 = 2;

fn legacy_format() -> u32 {
    1
}

impl ServeFile {
    /// Reads a file.
    ///
    /// # Errors
    /// The file cannot be read, or is not a server file.
    pub fn read(path: &std::path::Path) -> Result<ServeFile, ServeError> {
        let text = std::fs::read(path).map_err(|source| ServeError::File {
            path: path.to_path_buf(),
            source,
        })?;
        let file: ServeFile =
            serde_json::from_slice(&text).map_err(|source| ServeError::Format {
                path: path.to_path_buf(),
                source,
            })?;
        if file.format_version > SERVE_FILE_FORMAT {
            return Err(ServeError::Config(format!(
                "{} was written by a newer mlctl (format {}; this one reads up to {SERVE_FILE_FORMAT}); upgrade mlctl",
                path.display(),
                file.format_version
            )));
        }
        Ok(file)
    }

    /// Writes a file atomically (a reload never sees half of it).
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write(&self, path: &std::path::Path) -> Result<(), ServeError> {
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(self).map_err(|source| ServeError::Format {
            path: path.to_path_buf(),
            source,
        })?;
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|source| ServeError::File {
                path: path.to_path_buf(),
                source,
            })
    }

    /// Sets the options the file gives.
    pub fn apply_to(&self, opts: &mut crate::server::ServerOptions) {
        if let Some(h) = self.host {
            opts.addr.set_ip(h);
        }
        if let Some(p) = self.port {
            opts.addr.set_port(p);
        }
        if let Some(c) = &self.capture {
            opts.capture = Some(c.clone());
        }
        if let Some(m) = self.max_body_bytes {
            opts.max_body_bytes = m;
        }
        opts.reuse_port |= self.reuse_port;
        if let Some(c) = &self.control {
            opts.control = Some(c.clone());
        }
        opts.enforce = self.enforce;
        if let Some(l) = self.limits {
            opts.limits = l;
        }
    }
}
