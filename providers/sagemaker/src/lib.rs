//! The AWS SageMaker target: data, state and the apply lock on S3; training, the model
//! registry and endpoints on SageMaker.
//!
//! [`stack`] builds every component from a target such as
//!
//! ```yaml
//! staging: {provider: sagemaker, region: eu-west-1, roleArn: "${env:MLCTL_SM_ROLE}", bucket: s3://acme-ml/iris}
//! ```
//!
//! Credentials come from the standard AWS chain (environment, profile, SSO, container and
//! instance roles); they are never logged or printed. `endpointUrl` in the target points S3
//! (path-style), SageMaker, CloudWatch and CloudWatch Logs at an emulator or a VPC endpoint; `emulator: moto`
//! says it is moto, whose gaps the provider then works around (see [`Features`]).
//!
//! Where things live under `s3://bucket/prefix/`:
//!
//! | key | what |
//! |---|---|
//! | `objects/<blake3>` | content-addressed blobs (datasets, packed code, converted training data) |
//! | `.mlctl/state/<project>/<Kind>/<name>.json` | observed record of a resource |
//! | `.mlctl/state/<project>/history/<Kind>/<name>/<time>-<n>.json` | its history |
//! | `.mlctl/lock/<project>.json` | the apply lock (conditional put) |
//! | `.mlctl/datasets/<project>/<name>/<fingerprint>.json` | dataset versions, with the Dataset's tags |
//! | `.mlctl/registry/<project>/<model>/...` | metrics files and stage history of model versions |
//! | `.mlctl/training-data/<project>/<id>.json` | a built-in's converted channels (and its preprocessor) |
//! | `.mlctl/preprocessors/<project>/<job>.json` | the preprocessor a built-in job's channels were encoded with |
//! | `.mlctl/monitors/<project>/<name>.json` | monitor configurations |
//! | `artifacts/<job>/...` | training output (SageMaker writes `model.tar.gz` there) |
//! | `capture/<endpoint>/...` | endpoint data capture |
//!
//! # Architecture Invariant
//! The AWS SDK crates are used here and nowhere else in the workspace; the rest of mlctl sees
//! only the component traits of `mlctl-core`.

mod alarms;
mod artifacts;
mod aws;
mod builtins;
mod data;
mod deployer;
mod error;
mod images;
mod instances;
mod logs;
mod metrics;
mod monitor;
mod names;
mod preprocessing;
mod refit;
mod registry;
mod runs;
mod store;
mod support;
mod trainer;
mod transform;
mod tuning;

#[cfg(test)]
mod parity;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_logs;

pub use aws::{Features, Settings};
pub use data::S3DataStore;
pub use deployer::SageMakerDeployer;
pub use images::{ALGORITHM_MAPPING, default_framework_image};
/// Observed state, history and the apply lock as objects in the target's bucket (the layout
/// of [`mlctl_core::objectstore`]; the lock is an `If-None-Match: *` put).
pub use mlctl_core::objectstore::ObjectStateStore as S3StateStore;
pub use monitor::SageMakerMonitorSink;
pub use registry::SageMakerRegistry;
pub use support::field_rules;
pub use trainer::SageMakerTrainer;

use aws::Aws;
use mlctl_core::{ErrorKind, ProviderConfig, ProviderError, Stack};
use std::sync::Arc;

/// Static credentials, for tests and emulators (real use goes through the AWS chain).
pub use aws_sdk_s3::config::Credentials;

/// How to build a stack beyond what the target says.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Credentials to use instead of the standard AWS chain.
    pub credentials: Option<Credentials>,
    /// Runtime knobs (retries, poll interval, the s3:// source cap); default
    /// [`Settings::from_env`]. What the service implements comes from the target's `emulator`.
    pub settings: Option<Settings>,
}

/// Builds the SageMaker stack of a target, with credentials from the standard AWS chain.
///
/// # Errors
/// `Invalid` when the target lacks `bucket` or `roleArn`, or no region is known.
pub async fn stack(cfg: &ProviderConfig) -> Result<Stack, ProviderError> {
    stack_with(cfg, Options::default()).await
}

/// Builds the SageMaker stack of a target with explicit [`Options`].
///
/// # Errors
/// See [`stack`].
pub async fn stack_with(cfg: &ProviderConfig, options: Options) -> Result<Stack, ProviderError> {
    let aws = Arc::new(Aws::connect(cfg, options).await?);
    if aws.features.create_bucket {
        aws.ensure_bucket().await?;
    }
    Ok(Stack {
        provider: "sagemaker".into(),
        data: Arc::new(S3DataStore::new(aws.clone())),
        trainer: Arc::new(SageMakerTrainer::new(aws.clone())),
        registry: Arc::new(SageMakerRegistry::new(aws.clone())),
        deployer: Arc::new(SageMakerDeployer::new(aws.clone())),
        monitor: Arc::new(SageMakerMonitorSink::new(aws.clone())),
        state: Arc::new(S3StateStore::new(aws)),
    })
}

fn invalid(operation: &str, message: impl Into<String>) -> ProviderError {
    ProviderError::new(ErrorKind::Invalid, "sagemaker", operation, message)
}
