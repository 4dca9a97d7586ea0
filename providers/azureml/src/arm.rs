//! Azure Resource Manager calls to the workspace's REST API, over reqwest.
//!
//! INTERFACE STUB: the `arm` helper replaces the bodies; the signatures are what the other
//! modules call. Paths are relative to the workspace (`jobs/NAME`,
//! `onlineEndpoints/NAME/deployments/NAME`, ...); [`Arm::url`] makes them absolute.

use mlctl_core::error::Result;
use mlctl_core::{ErrorKind, ProviderError};
use serde_json::Value;

/// The one api-version of every call: the default of the ARM client in `azure-ai-ml` 1.35.2.
pub const API_VERSION: &str = "2025-12-01";

/// A long-running operation started by a PUT or DELETE, to be followed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Operation {
    /// The URL to poll (`Azure-AsyncOperation`, else `Location`), absolute.
    pub url: String,
    /// Whether `url` came from `Azure-AsyncOperation` (a status body) or `Location` (the
    /// resource, or 202 while in progress).
    pub async_operation: bool,
    /// The resource's path, read once the operation has succeeded.
    pub resource: String,
}

/// Where a long-running operation is.
#[derive(Debug, Clone, PartialEq)]
pub enum OperationState {
    /// Still going; poll again after this long (`Retry-After`, else the poll interval).
    InProgress(std::time::Duration),
    /// Done.
    Succeeded,
    /// Failed or canceled, with ARM's error (code and message).
    Failed(String),
}

/// The workspace's REST API.
pub struct Arm {
    _private: (),
}

fn stub(op: &str) -> ProviderError {
    ProviderError::new(ErrorKind::NotSupported, "azureml", op, "not built yet")
}

impl Arm {
    /// The absolute URL of a workspace-relative `path`, with the api-version.
    pub fn url(&self, path: &str) -> String {
        let _ = path;
        String::new()
    }

    /// The ARM id of a workspace-relative path (`/subscriptions/.../workspaces/W/PATH`), the
    /// form resource references take (`codeId`, `environmentId`, `model`, ...).
    pub fn id(&self, path: &str) -> String {
        let _ = path;
        String::new()
    }

    /// GET; `None` on 404.
    pub async fn get(&self, path: &str) -> Result<Option<Value>> {
        let _ = path;
        Err(stub("GET"))
    }

    /// GET of a list, following `nextLink`; a 404 is an empty list.
    pub async fn list(&self, path: &str) -> Result<Vec<Value>> {
        let _ = path;
        Err(stub("list"))
    }

    /// PUT, following a long-running operation to its end; returns the resource as read
    /// afterwards.
    pub async fn put(&self, path: &str, body: &Value) -> Result<Value> {
        let _ = (path, body);
        Err(stub("PUT"))
    }

    /// PUT without waiting: the operation to follow (`None` when the service finished at
    /// once, 200/201 without an async header).
    pub async fn put_started(&self, path: &str, body: &Value) -> Result<Option<Operation>> {
        let _ = (path, body);
        Err(stub("PUT"))
    }

    /// One poll of a long-running operation.
    pub async fn poll(&self, op: &Operation) -> Result<OperationState> {
        let _ = op;
        Err(stub("poll"))
    }

    /// POST an action (`jobs/NAME/cancel`, `codes/N/versions/V/startPendingUpload`, ...),
    /// following a long-running operation; returns the body (`Null` when empty).
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let _ = (path, body);
        Err(stub("POST"))
    }

    /// DELETE, following a long-running operation; a 404 (already gone) succeeds.
    pub async fn delete(&self, path: &str) -> Result<()> {
        let _ = path;
        Err(stub("DELETE"))
    }

    /// A GET of an absolute URL on a service of the workspace that takes the same token
    /// (the MLflow tracking API): `None` on 404.
    pub async fn get_url(&self, url: &str) -> Result<Option<Value>> {
        let _ = url;
        Err(stub("GET"))
    }

    /// A POST of JSON to an absolute URL of such a service.
    pub async fn post_url(&self, url: &str, body: &Value) -> Result<Value> {
        let _ = (url, body);
        Err(stub("POST"))
    }

    /// The MLflow tracking API's base (`.../mlflow/v1.0/subscriptions/.../workspaces/W`):
    /// the workspace's `mlFlowTrackingUri` with `azureml://` made `https://` (or the scheme
    /// of `endpointUrl` when that has the same host: the fake). Calls go to
    /// `{base}/api/2.0/mlflow/...`. (Added by the train part; the arm part has it too.)
    pub async fn mlflow_base(&self) -> Result<String> {
        Err(stub("GET workspace"))
    }
}
