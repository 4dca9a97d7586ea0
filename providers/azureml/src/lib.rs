//! The Azure ML target: data, state and the apply lock on Blob Storage; jobs, the model
//! registry and managed online endpoints on Azure Machine Learning, over its REST API (ARM).
//!
//! [`stack`] builds every component from a target such as
//!
//! ```yaml
//! production:
//!   provider: azureml
//!   subscription: ${env:AZURE_SUBSCRIPTION_ID}
//!   resourceGroup: ml
//!   workspace: iris-ws
//!   storage: https://acct.blob.core.windows.net/ml/iris
//! ```
//!
//! Entra ID tokens come from `azure_identity` (a client secret or a federated token from the
//! environment, a managed identity, or the Azure CLI: the target's `credential`); they are
//! never stored, logged or printed, and refreshed before they expire. Blob requests use the
//! target's `sas: ${env:NAME}` instead when it is set.
//!
//! Where things live under the `storage` container and prefix:
//!
//! | blob | what |
//! |---|---|
//! | `objects/<blake3>` | content-addressed blobs (datasets, packed code) |
//! | `.mlctl/state/<project>/<Kind>/<name>.json` | observed record of a resource |
//! | `.mlctl/state/<project>/history/<Kind>/<name>/<time>-<n>.json` | its history |
//! | `.mlctl/lock/<project>.json` | the apply lock (conditional create) |
//! | `.mlctl/datasets/<project>/<name>/<fingerprint>.json` | dataset versions |
//! | `artifacts/<job>/...` | job outputs (the model folder) |
//! | `capture/<endpoint>/...` | the deployments' data collector output |
//!
//! # Architecture Invariant
//! The Azure SDK crates are used here and nowhere else in the workspace; the rest of mlctl
//! sees only the component traits of `mlctl-core`. Every ARM call goes through [`arm::Arm`],
//! which pins the one api-version ([`arm::API_VERSION`]).

// The skeleton is filled in by parts; removed once every part is in.
#![allow(dead_code)]

mod arm;
mod azure;
mod blob;
mod code;
mod metrics;
mod sweep;
#[cfg(test)]
mod tests_train;
mod trainer;

pub use azure::{Features, Settings};
pub use trainer::AzureTrainer;

use mlctl_core::{ErrorKind, ProviderError};

/// How to build a stack beyond what the target says.
#[derive(Clone, Default)]
pub struct Options {
    /// The token credential to use instead of the one the target's `credential` names.
    pub credential: Option<std::sync::Arc<dyn azure_core::credentials::TokenCredential>>,
    /// Runtime knobs (retries, poll interval); default [`Settings::from_env`].
    pub settings: Option<Settings>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("credential", &self.credential.as_ref().map(|_| "(given)"))
            .field("settings", &self.settings)
            .finish()
    }
}

pub(crate) fn invalid(operation: &str, message: impl Into<String>) -> ProviderError {
    ProviderError::new(ErrorKind::Invalid, "azureml", operation, message)
}
