//! End-to-end tests: drive the built `mlctl` binary in temporary git repositories.
//!
//! One test binary for the whole suite (compile once); one module per area. Every test gets
//! a fresh temporary directory from [`common::TestProject`].

mod approval;
mod azureml;
mod canary;
mod ci;
mod columns;
mod common;
mod confinement;
mod conformance;
mod crash;
mod examples;
mod kfp;
mod limits;
mod local;
mod mlflow;
mod monitor;
mod monitor_quality;
mod paths;
mod promote;
mod reconcile;
mod rotation;
mod runs;
mod sagemaker;
mod secrets_scan;
mod serve;
mod strays;
mod support;
mod train_builtin;
mod transform;
mod ui;
mod validate;
mod watch;
