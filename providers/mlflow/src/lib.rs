//! An MLflow tracking server as a component of any target (`tracking: {provider: mlflow}`):
//! `sync` mirrors the runs and registered models of a target there through MLflow's REST
//! API 2.0 (`client`), and `model_dir` writes an mlctl model as an MLflow model directory.

pub mod client;
pub mod model_dir;
pub mod sync;

pub use client::{CallError, Client};
pub use sync::{Report, sync};
