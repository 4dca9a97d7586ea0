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

mod arm;
mod auth;
mod azure;
mod blob;
mod code;
mod connect;
mod data;
mod deployer;
mod insights;
mod metrics;
mod monitor;
mod registry;
mod state;
mod support;
mod sweep;
#[cfg(test)]
mod tests_arm;
#[cfg(test)]
mod tests_deploy;
#[cfg(test)]
mod tests_train;
#[cfg(test)]
mod tests_trial;
mod trainer;
mod transform;
mod vms;

pub use azure::{Features, Settings};
pub use blob::BlobAuth;
pub use data::AzureDataStore;
pub use deployer::AzureDeployer;
pub use monitor::AzureMonitorSink;
pub use registry::AzureRegistry;
pub use state::BlobStateStore;
pub use support::{field_rules, field_rules_for};
pub use trainer::AzureTrainer;

use mlctl_core::{ErrorKind, ProviderConfig, ProviderError, Stack};
use std::sync::Arc;

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

/// Builds the Azure ML stack of a target, with the credential its `credential` names.
///
/// # Errors
/// `Invalid` when the target's fields cannot name a workspace or a container;
/// `PermissionDenied` when the credential lacks its environment variables.
pub async fn stack(cfg: &ProviderConfig) -> Result<Stack, ProviderError> {
    stack_with(cfg, Options::default()).await
}

/// Builds the Azure ML stack of a target with explicit [`Options`].
///
/// # Errors
/// See [`stack`].
pub async fn stack_with(cfg: &ProviderConfig, options: Options) -> Result<Stack, ProviderError> {
    let az = Arc::new(connect::connect(cfg, options).await?);
    Ok(Stack {
        provider: "azureml".into(),
        data: Arc::new(data::AzureDataStore::new(az.clone())),
        trainer: Arc::new(trainer::AzureTrainer::new(az.clone())),
        registry: Arc::new(AzureRegistry::new(az.clone())),
        deployer: Arc::new(AzureDeployer::new(az.clone())),
        monitor: Arc::new(AzureMonitorSink::new(az.clone())),
        state: Arc::new(state::state_store(az.blob.clone())),
    })
}

pub(crate) fn invalid(operation: &str, message: impl Into<String>) -> ProviderError {
    ProviderError::new(ErrorKind::Invalid, "azureml", operation, message)
}

/// The Blob Storage half of an azureml stack, without ARM: the data store (blobs and dataset
/// versions, but no Azure ML data assets) and the state store with the apply lock.
///
/// For the tests against Azurite, which has no ARM. A full stack registers data assets too:
/// it builds its data store with `AzureDataStore::new(Arc<Azure>)`.
#[derive(Clone)]
pub struct BlobStores {
    /// Content-addressed blobs and dataset versions in `storage`.
    pub data: std::sync::Arc<dyn mlctl_core::DataStore>,
    /// State, history, monitor results, error logs and the lock in `storage`.
    pub state: std::sync::Arc<dyn mlctl_core::StateStore>,
}

/// [`BlobStores`] on the container (and prefix) `storage`, authorised by `auth`.
///
/// # Errors
/// `Invalid` for a `storage` URL that names no container or carries a query, or a token
/// credential with an http URL.
pub fn blob_stores(
    storage: &str,
    auth: BlobAuth,
    settings: Settings,
) -> Result<BlobStores, ProviderError> {
    let blob = std::sync::Arc::new(blob::Blob::connect(storage, auth, &settings)?);
    Ok(BlobStores {
        data: std::sync::Arc::new(AzureDataStore::blob_only(blob.clone(), settings)),
        state: std::sync::Arc::new(state::state_store(blob)),
    })
}
