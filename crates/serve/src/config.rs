//! What a server serves: its variants (model versions with traffic weights).
//!
//! The same JSON is the body of `PUT /-/variants`, the `variants` of a `--config` file, and the
//! answer of `GET /-/variants`, so the local deployer and a user's `curl` speak one format.

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
pub fn validate(variants: &[VariantConfig]) -> Result<(), String> {
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
}

impl ServeFile {
    /// Reads a file.
    pub fn read(path: &std::path::Path) -> Result<ServeFile, String> {
        let text =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Writes a file atomically (a reload never sees half of it).
    pub fn write(&self, path: &std::path::Path) -> Result<(), String> {
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
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
    }
}
