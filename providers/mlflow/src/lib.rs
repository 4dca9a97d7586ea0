//! An MLflow tracking server as a component of any target (`tracking: {provider: mlflow}`):
//! `sync` mirrors the runs and registered models of a target there through MLflow's REST
//! API 2.0 (`client`), `model_dir` writes an mlctl model as an MLflow model directory, and
//! `import` reads a Model's `mlflow:` source (converting a scikit-learn model exactly).

pub mod client;
pub mod import;
pub mod model_dir;
pub mod registry;
pub mod sync;

pub use client::{CallError, Client};
pub use import::Importer;
pub use registry::MlflowRegistry;
pub use sync::{Report, sync};
