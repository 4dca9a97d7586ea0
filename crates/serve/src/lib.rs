//! mlctl-serve: the inference HTTP server behind `mlctl serve` and local endpoints.
//!
//! It speaks the protocols users already have clients for: `POST /invocations` with the
//! MLflow and SageMaker request shapes, `GET /ping`, `GET /metrics` (Prometheus). One process
//! serves one or more *variants* (model versions with traffic weights); models are swapped by
//! one pointer store, so a swap drops no request ([`server`]).
//!
//! Map: [`parse`] turns bodies into checked rows, [`Predictor`] is the boundary to a model,
//! [`metrics`] and [`capture`] observe, [`script`] fronts script-mode servers, [`client`] is
//! the small HTTP client the CLI and the local deployer use.
//!
//! # Architecture invariants
//! - Nothing here prints: logs go through `tracing`; the binary decides where they end up.
//! - The request path allocates only the parsed rows, the predictions and the response
//!   body, and takes no lock except one short push onto the capture queue when a request is
//!   sampled for capture.

pub mod capture;
pub mod client;
pub mod config;
pub mod conn;
mod error;
mod json;
pub mod metrics;
pub mod model;
pub mod parse;
mod predictor;
pub mod schema;
pub mod script;
pub mod server;

pub use config::{
    AuthState, AuthUpdate, ServerInfo, VariantConfig, VariantHealth, VariantStatus, Variants,
};
pub use error::ServeError;
pub use predictor::{DynPredictor, Predictor};
pub use schema::{Column, ColumnKind, InputSchema, Output};
pub use server::{App, Loader, Running, ServerOptions, start};
