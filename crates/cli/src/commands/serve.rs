//! `mlctl serve` and `mlctl predict`. (Placeholder: the serving work replaces this.)

use anyhow::{Result, bail};
use clap::Args;
use std::path::Path;

/// Arguments of `mlctl serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// MODEL[:VERSION] from the registry, or a model directory.
    pub model: String,
}

/// Arguments of `mlctl predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Endpoint name.
    pub endpoint: String,
}

/// Runs `mlctl serve`.
pub fn run_serve(_project: &Path, _args: ServeArgs) -> Result<u8> {
    bail!("mlctl serve is not implemented yet")
}

/// Runs `mlctl predict`.
pub fn run_predict(_project: &Path, _args: PredictArgs) -> Result<u8> {
    bail!("mlctl predict is not implemented yet")
}
