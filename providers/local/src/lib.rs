//! The embedded local target: content-addressed blobs under `.mlctl/`, metadata in SQLite,
//! training in-process (built-ins) or as child processes (script mode), endpoints as
//! supervised `mlctl serve` processes on 127.0.0.1.
//!
//! Everything lives in the target's state directory ([`ProviderConfig::state_dir`]):
//!
//! ```text
//! <state_dir>/
//!   state.db                     SQLite (WAL): observed state, history, the apply lock,
//!                                dataset versions, jobs, runs, the model registry
//!   objects/<2 hex>/<blake3>     content-addressed blobs (datasets, splits, profiles)
//!   cache/digests.json           size+mtime cache of file digests
//!   logs/<Kind>-<name>.error.log the full text of a resource's last error too long for
//!                                state and history (which name this file), capped
//!   runs/<run id>/               script-mode run directories (SageMaker's /opt/ml layout), logs
//!   registry/<model>/<version>/  registered model artifacts
//!   work/                        transform working directories
//!   procs/<pid>.json             transforms and script-mode runs while they run (`strays`)
//!   tmp/                         temporary files renamed into place
//! ```
//!
//! # Architecture Invariant
//! The provider never prints and never reads the CLI's state; it is driven only through the
//! component traits of `mlctl-core`.

pub mod builtin;
pub mod deployer;
pub mod monitor;

mod compute;
mod data;
mod db;
mod fsutil;
mod logs;
mod objects;
mod process;
mod registry;
mod state;
mod strays;
mod support;
mod trainer;

pub use data::LocalDataStore;
pub use registry::LocalRegistry;
pub use state::LocalState;
pub use support::field_rules;
pub use trainer::LocalTrainer;

use mlctl_core::components::{ProviderConfig, Stack};
use mlctl_core::error::{ErrorKind, ProviderError, Result};
use std::path::PathBuf;
use std::sync::Arc;

/// The provider's name in errors and messages.
pub(crate) const PROVIDER: &str = "local";

/// Builds the local stack for a target: every component over one state directory.
///
/// `serve_exe` is the `mlctl` binary, which the deployer starts as `mlctl serve` and the
/// trainer uses to run script-mode jobs within their compute limits (`mlctl __limit`).
///
/// # Errors
/// The state directory cannot be created, or `state.db` cannot be opened or migrated.
pub fn stack(cfg: &ProviderConfig, serve_exe: PathBuf) -> Result<Stack, ProviderError> {
    let state_dir = cfg.state_dir();
    let db = db::Db::open(&state_dir)?;
    Ok(Stack {
        provider: PROVIDER.to_string(),
        data: Arc::new(LocalDataStore::new(db.clone(), &state_dir)),
        trainer: Arc::new(LocalTrainer::new(db.clone(), &state_dir, serve_exe.clone())),
        registry: Arc::new(LocalRegistry::new(db.clone(), &state_dir)),
        deployer: Arc::new(
            deployer::LocalDeployer::new(state_dir.clone(), serve_exe)
                .writing_under(cfg.project_dir.clone()),
        ),
        monitor: Arc::new(monitor::LocalMonitorSink::new(state_dir.clone())),
        state: Arc::new(LocalState::new(db)),
    })
}

/// Now, RFC 3339 (UTC).
/// What exists no more on the target (a record deleted by hand, say).
pub(crate) fn gone(op: &str, what: String) -> mlctl_core::ProviderError {
    mlctl_core::ProviderError::new(
        mlctl_core::ErrorKind::NotFound,
        PROVIDER,
        op,
        format!(
            "{what} is not on this target any more; run `mlctl apply` with a change that rebuilds it"
        ),
    )
}

pub(crate) fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A short random-looking suffix, unique within this machine (time, process, counter).
pub(crate) fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = blake3::Hasher::new();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.update(&nanos.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    h.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    h.finalize().to_hex()[..16].to_string()
}

/// Runs blocking work (file copies, hashing, training) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    operation: &'static str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(ProviderError::new(
            ErrorKind::Other,
            PROVIDER,
            operation,
            format!("internal error: {e}"),
        )),
    }
}
