//! Azure Resource Manager calls to the workspace's REST API, over reqwest.
//!
//! Paths are relative to the workspace (`jobs/NAME`, `onlineEndpoints/NAME/deployments/NAME`,
//! ...); [`Arm::url`] makes them absolute, with the one api-version ([`API_VERSION`]).
//!
//! # Guarantees
//! - Every request carries a bearer token for ARM's scope, asked of the credential on each
//!   attempt (azure_identity caches it and refreshes it before it expires). The token is sent
//!   only to ARM's host and to hosts of Azure ML's own services (the MLflow tracking API);
//!   an operation URL or `nextLink` elsewhere is refused. It never appears in an error.
//! - 429, 5xx and connection errors are retried up to [`Settings::max_attempts`] times, after
//!   the service's `Retry-After` (seconds or an HTTP date) or an exponential backoff from
//!   [`Settings::initial_backoff`]. Exhausted retries end in a retryable error.
//! - Long-running operations are followed through `Azure-AsyncOperation` (a status body:
//!   `InProgress`, `Succeeded`, `Failed`, `Canceled` with `error`) or `Location` (202 while
//!   running; 200, 201 or 204 when done), polled after `Retry-After` or
//!   [`Settings::poll_interval`].
//! - ARM error bodies (`{"error":{"code","message","target","details"}}`) become a
//!   [`ProviderError`] whose kind follows the status and whose message names the method, the
//!   resource, the code and the field (`target`), bounded in size.

use crate::azure::Settings;
use azure_core::credentials::TokenCredential;
use mlctl_core::error::Result;
use mlctl_core::{ErrorKind, ProviderError};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// The one api-version of every call: the default of the ARM client in `azure-ai-ml` 1.35.2.
pub const API_VERSION: &str = "2025-12-01";

/// Where ARM is unless the target's `endpointUrl` says otherwise.
pub const DEFAULT_ENDPOINT: &str = "https://management.azure.com";

/// The longest `Retry-After` honoured; a longer one is cut to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);
/// The longest backoff between retries without `Retry-After`.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long [`Arm::put`], [`Arm::post`] and [`Arm::delete`] follow an operation.
const MAX_OPERATION: Duration = Duration::from_secs(2 * 3600);
/// The most of a response body an error message quotes.
const MAX_QUOTE: usize = 600;
/// The most an error message says about the error's details.
const MAX_MESSAGE: usize = 2000;

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
    http: reqwest::Client,
    /// `endpointUrl` without a trailing `/`.
    base: String,
    /// `/subscriptions/S/resourceGroups/G/providers/Microsoft.MachineLearningServices/workspaces/W`.
    workspace: String,
    credential: Arc<dyn TokenCredential>,
    scope: String,
    settings: Settings,
    /// The workspace resource, read once (its location and MLflow tracking URI).
    workspace_body: tokio::sync::OnceCell<Value>,
    /// The target's `location`, else the workspace's (read on first use).
    location: tokio::sync::OnceCell<String>,
}

impl std::fmt::Debug for Arm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arm")
            .field("base", &self.base)
            .field("workspace", &self.workspace)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// A response, read whole.
struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }

    fn json(&self, what: &str) -> Result<Value> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            ProviderError::new(
                ErrorKind::Other,
                "azureml",
                what,
                format!(
                    "the response ({}) is not JSON ({e}): {}",
                    self.status,
                    quote(&self.body)
                ),
            )
        })
    }
}

fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    mlctl_spec::suggest::clip(text.trim(), MAX_QUOTE).into_owned()
}

/// How long `Retry-After` asks to wait: delay-seconds or an HTTP date.
pub(crate) fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let at =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let wait = at - time::OffsetDateTime::now_utc();
    Some(
        Duration::try_from(wait)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// ARM's error body, as far as it goes.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct ErrorDetail {
    code: Option<String>,
    message: Option<String>,
    target: Option<String>,
    details: Vec<ErrorDetail>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct ErrorBody {
    error: Option<ErrorDetail>,
}

fn describe(e: &ErrorDetail) -> String {
    let mut out = String::new();
    if let Some(code) = &e.code {
        out.push_str(code);
    }
    if let Some(message) = &e.message {
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(message.trim());
    }
    if let Some(target) = e.target.as_deref().filter(|t| !t.is_empty()) {
        out.push_str(&format!(" (field `{target}`)"));
    }
    out
}

/// ARM's `{"error": {...}}` in one line: code, message, field, then each detail.
pub(crate) fn error_text(body: &[u8]) -> Option<String> {
    let parsed: ErrorBody = serde_json::from_slice(body).ok()?;
    let e = parsed.error?;
    let mut out = describe(&e);
    if out.is_empty() {
        return None;
    }
    let details: Vec<String> = e
        .details
        .iter()
        .map(describe)
        .filter(|d| !d.is_empty())
        .collect();
    if !details.is_empty() {
        out.push_str("; details: ");
        out.push_str(&details.join("; "));
    }
    Some(mlctl_spec::suggest::clip(&out, MAX_MESSAGE).into_owned())
}

/// The error kind a status says.
pub(crate) fn kind_of(status: u16, code: Option<&str>) -> ErrorKind {
    match status {
        400 | 422 => ErrorKind::Invalid,
        401 | 403 => ErrorKind::PermissionDenied,
        404 => ErrorKind::NotFound,
        408 => ErrorKind::Timeout,
        409 if code.is_some_and(|c| c.contains("AlreadyExists")) => ErrorKind::AlreadyExists,
        409 | 412 => ErrorKind::Precondition,
        429 => ErrorKind::Throttled,
        500..=599 => ErrorKind::Transient,
        _ => ErrorKind::Other,
    }
}

/// The error of a failed call: `what` is the method and the resource (`PUT models/m`).
fn status_error(what: &str, workspace: &str, reply: &Reply) -> ProviderError {
    let code = serde_json::from_slice::<ErrorBody>(&reply.body)
        .ok()
        .and_then(|b| b.error)
        .and_then(|e| e.code);
    let kind = kind_of(reply.status, code.as_deref());
    let text = error_text(&reply.body).unwrap_or_else(|| {
        let q = quote(&reply.body);
        if q.is_empty() {
            "(no body)".to_string()
        } else {
            q
        }
    });
    let hint = match kind {
        ErrorKind::PermissionDenied => {
            "; check that the target's credential has a role on the workspace that allows this (AzureML Data Scientist, or Contributor)"
        }
        ErrorKind::NotFound if what.starts_with("GET") && what.ends_with(" (workspace)") => {
            "; check `subscription`, `resourceGroup` and `workspace` on the target"
        }
        ErrorKind::Throttled | ErrorKind::Transient => "; retried, and still failing",
        _ => "",
    };
    // What Azure support asks for when a call fails.
    let request = ["x-ms-correlation-request-id", "x-ms-request-id"]
        .iter()
        .find_map(|h| reply.header(h))
        .map(|id| format!(" (request id {})", mlctl_spec::suggest::clip(id, 80)))
        .unwrap_or_default();
    ProviderError::new(
        kind,
        "azureml",
        what,
        format!(
            "{what} in workspace `{workspace}` failed with {}: {text}{hint}{request}",
            reply.status
        ),
    )
}

/// The path of a URL for messages (no query: no signature ever reaches a message).
fn shown(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// The origin (`scheme://host[:port]`) of an absolute URL.
fn origin(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = &rest[..end];
    (!scheme.is_empty() && !host.is_empty()).then(|| &url[..scheme.len() + 3 + end])
}

fn host_of(origin: &str) -> &str {
    let host = origin.split_once("://").map_or(origin, |(_, h)| h);
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    if let Some(v6) = host.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    host.split(':').next().unwrap_or(host)
}

/// Domains of Azure's own services, in every cloud: ARM and Azure ML's regional hosts
/// (`REGION.api.azureml.ms`, `*.ml.azure.us`, ...).
const AZURE_DOMAINS: [&str; 8] = [
    ".azure.com",
    ".azureml.ms",
    ".azureml.net",
    ".azure.us",
    ".azure.cn",
    ".usgovcloudapi.net",
    ".chinacloudapi.cn",
    ".microsoft.com",
];

/// The ARM token's scope for an endpoint: its own host for a sovereign cloud's ARM
/// (`https://management.usgovcloudapi.net`), else public ARM's.
pub(crate) fn scope_for(base: &str) -> String {
    let host = origin(base).map(host_of).unwrap_or_default();
    if base.starts_with("https://")
        && host.starts_with("management.")
        && host != "management.azure.com"
    {
        format!("https://{host}/.default")
    } else {
        "https://management.azure.com/.default".to_string()
    }
}

impl Arm {
    /// A client for workspace `workspace` of `resource_group` in `subscription`, at `base`
    /// (the target's `endpointUrl`, else [`DEFAULT_ENDPOINT`]).
    ///
    /// # Errors
    /// `Invalid` when `base` is not an http(s) URL, or a name would not stay one path
    /// segment.
    pub fn new(
        base: Option<&str>,
        subscription: &str,
        resource_group: &str,
        workspace: &str,
        credential: Arc<dyn TokenCredential>,
        settings: Settings,
    ) -> Result<Arm> {
        let base = base
            .unwrap_or(DEFAULT_ENDPOINT)
            .trim()
            .trim_end_matches('/');
        let ok = (base.starts_with("https://") || base.starts_with("http://"))
            && origin(base)
                .is_some_and(|o| o.len() == base.len() || base[o.len()..].starts_with('/'))
            && !base.contains(['?', '#']);
        if !ok {
            return Err(crate::invalid(
                "connect",
                format!(
                    "`endpointUrl: {}` is not an http(s) URL without a query (e.g. `https://management.azure.com`)",
                    mlctl_spec::suggest::clip(base, 200)
                ),
            ));
        }
        for (field, value) in [
            ("subscription", subscription),
            ("resourceGroup", resource_group),
            ("workspace", workspace),
        ] {
            check_segment(field, value)?;
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("mlctl/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| {
                ProviderError::new(ErrorKind::Other, "azureml", "connect", e.to_string())
            })?;
        Ok(Arm {
            http,
            scope: scope_for(base),
            base: base.to_string(),
            workspace: format!(
                "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.MachineLearningServices/workspaces/{workspace}"
            ),
            credential,
            settings,
            workspace_body: tokio::sync::OnceCell::new(),
            location: tokio::sync::OnceCell::new(),
        })
    }

    /// Uses `location` instead of reading the workspace's (the target's `location`).
    pub fn with_location(self, location: Option<String>) -> Arm {
        if let Some(l) = location.filter(|l| !l.trim().is_empty()) {
            let _ = self.location.set(l);
        }
        self
    }

    /// The absolute URL of a workspace-relative `path`, with the api-version.
    pub fn url(&self, path: &str) -> String {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, format!("&{q}")),
            None => (path, String::new()),
        };
        format!(
            "{}{}?api-version={API_VERSION}{query}",
            self.base,
            self.id(path)
        )
    }

    /// The ARM id of a workspace-relative path (`/subscriptions/.../workspaces/W/PATH`), the
    /// form resource references take (`codeId`, `environmentId`, `model`, ...). An empty path
    /// is the workspace itself.
    pub fn id(&self, path: &str) -> String {
        let path = path.trim_matches('/');
        if path.is_empty() {
            self.workspace.clone()
        } else {
            format!("{}/{path}", self.workspace)
        }
    }

    /// GET; `None` on 404.
    pub async fn get(&self, path: &str) -> Result<Option<Value>> {
        let what = format!("GET {}", label(path));
        let reply = self
            .send(reqwest::Method::GET, &self.url(path), None, &what)
            .await?;
        match reply.status {
            404 => Ok(None),
            200..=299 => reply.json(&what).map(Some),
            _ => Err(self.fail(&what, &reply)),
        }
    }

    /// GET of a list, following `nextLink`; a 404 is an empty list.
    pub async fn list(&self, path: &str) -> Result<Vec<Value>> {
        let what = format!("GET {}", label(path));
        let mut out = Vec::new();
        let mut url = self.url(path);
        // A service that links a page to itself would loop forever.
        let mut seen = std::collections::HashSet::new();
        loop {
            if !seen.insert(url.clone()) {
                return Err(ProviderError::new(
                    ErrorKind::Other,
                    "azureml",
                    &what,
                    format!(
                        "the list's `nextLink` leads back to a page already read ({})",
                        shown(&url)
                    ),
                ));
            }
            let reply = self.send(reqwest::Method::GET, &url, None, &what).await?;
            match reply.status {
                404 if out.is_empty() => return Ok(out),
                200..=299 => {}
                _ => return Err(self.fail(&what, &reply)),
            }
            let page = reply.json(&what)?;
            match page.get("value") {
                Some(Value::Array(items)) => out.extend(items.iter().cloned()),
                None | Some(Value::Null) => {}
                Some(_) => {
                    return Err(ProviderError::new(
                        ErrorKind::Other,
                        "azureml",
                        &what,
                        "the list's `value` is not an array".to_string(),
                    ));
                }
            }
            match page.get("nextLink").and_then(Value::as_str) {
                Some(next) if !next.trim().is_empty() => url = self.absolute(next, &what)?,
                _ => return Ok(out),
            }
        }
    }

    /// PUT, following a long-running operation to its end; returns the resource as read
    /// afterwards.
    pub async fn put(&self, path: &str, body: &Value) -> Result<Value> {
        let what = format!("PUT {}", label(path));
        let reply = self
            .send(reqwest::Method::PUT, &self.url(path), Some(body), &what)
            .await?;
        if !(200..=299).contains(&reply.status) {
            return Err(self.fail(&what, &reply));
        }
        match self.operation_of(&reply, path, &what)? {
            None => {
                let v = reply.json(&what)?;
                if v.is_null() {
                    return self.read_back(path, &what).await;
                }
                Ok(v)
            }
            Some(op) => {
                self.follow(&op, &what, false).await?;
                self.read_back(path, &what).await
            }
        }
    }

    /// PUT without waiting: the operation to follow (`None` when the service finished at
    /// once, 200/201 without an async header).
    pub async fn put_started(&self, path: &str, body: &Value) -> Result<Option<Operation>> {
        let what = format!("PUT {}", label(path));
        let reply = self
            .send(reqwest::Method::PUT, &self.url(path), Some(body), &what)
            .await?;
        if !(200..=299).contains(&reply.status) {
            return Err(self.fail(&what, &reply));
        }
        self.operation_of(&reply, path, &what)
    }

    /// One poll of a long-running operation.
    pub async fn poll(&self, op: &Operation) -> Result<OperationState> {
        let what = format!("poll {}", label(&op.resource));
        self.poll_once(op, &what, false).await
    }

    /// POST an action (`jobs/NAME/cancel`, `codes/N/versions/V/startPendingUpload`, ...),
    /// following a long-running operation; returns the body (`Null` when empty, and the
    /// `Location` resource's body when the operation ends with one).
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let what = format!("POST {}", label(path));
        let reply = self
            .send(reqwest::Method::POST, &self.url(path), Some(body), &what)
            .await?;
        if !(200..=299).contains(&reply.status) {
            return Err(self.fail(&what, &reply));
        }
        match self.operation_of(&reply, path, &what)? {
            Some(op) => self.follow(&op, &what, false).await,
            None => reply.json(&what),
        }
    }

    /// PATCH (a partial update: `{"tags": {...}}` on an online endpoint or deployment,
    /// which changes what they carry without redeploying), following a long-running
    /// operation; returns the resource as read afterwards.
    ///
    pub async fn patch(&self, path: &str, body: &Value) -> Result<Value> {
        let what = format!("PATCH {}", label(path));
        let reply = self
            .send(reqwest::Method::PATCH, &self.url(path), Some(body), &what)
            .await?;
        if !(200..=299).contains(&reply.status) {
            return Err(self.fail(&what, &reply));
        }
        if let Some(op) = self.operation_of(&reply, path, &what)? {
            self.follow(&op, &what, false).await?;
        }
        self.read_back(path, &what).await
    }

    /// DELETE, following a long-running operation; a 404 (already gone) succeeds.
    pub async fn delete(&self, path: &str) -> Result<()> {
        let what = format!("DELETE {}", label(path));
        let reply = self
            .send(reqwest::Method::DELETE, &self.url(path), None, &what)
            .await?;
        match reply.status {
            404 => Ok(()),
            200..=299 => match self.operation_of(&reply, path, &what)? {
                Some(op) => self.follow(&op, &what, true).await.map(|_| ()),
                None => Ok(()),
            },
            _ => Err(self.fail(&what, &reply)),
        }
    }

    /// A GET of an absolute URL on a service of the workspace that takes the same token
    /// (the MLflow tracking API): `None` on 404.
    pub async fn get_url(&self, url: &str) -> Result<Option<Value>> {
        let what = format!("GET {}", shown(url));
        let url = self.absolute(url, &what)?;
        let reply = self.send(reqwest::Method::GET, &url, None, &what).await?;
        match reply.status {
            404 => Ok(None),
            200..=299 => reply.json(&what).map(Some),
            _ => Err(self.fail(&what, &reply)),
        }
    }

    /// A POST of JSON to an absolute URL of such a service.
    pub async fn post_url(&self, url: &str, body: &Value) -> Result<Value> {
        let what = format!("POST {}", shown(url));
        let url = self.absolute(url, &what)?;
        let reply = self
            .send(reqwest::Method::POST, &url, Some(body), &what)
            .await?;
        match reply.status {
            200..=299 => reply.json(&what),
            _ => Err(self.fail(&what, &reply)),
        }
    }

    /// The workspace resource (`GET {W}`), read once per connection.
    ///
    /// # Errors
    /// `NotFound` when the workspace does not exist, saying which target fields name it.
    pub async fn workspace(&self) -> Result<&Value> {
        self.workspace_body
            .get_or_try_init(|| async {
                let what = "GET workspace";
                let reply = self
                    .send(reqwest::Method::GET, &self.url(""), None, what)
                    .await?;
                match reply.status {
                    200..=299 => reply.json(what),
                    404 => Err(ProviderError::new(
                        ErrorKind::NotFound,
                        "azureml",
                        what,
                        format!(
                            "the workspace `{}` does not exist (or the credential cannot see it); check `subscription`, `resourceGroup` and `workspace` on the target",
                            self.workspace
                        ),
                    )),
                    _ => Err(self.fail(what, &reply)),
                }
            })
            .await
    }

    /// Where resources go: the target's `location`, else the workspace's (read once).
    pub async fn location(&self) -> Result<String> {
        self.location
            .get_or_try_init(|| async {
                let ws = self.workspace().await?;
                ws.get("location")
                    .and_then(Value::as_str)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .ok_or_else(|| {
                        ProviderError::new(
                            ErrorKind::Other,
                            "azureml",
                            "GET workspace",
                            "the workspace has no `location`; set `location` on the target",
                        )
                    })
            })
            .await
            .cloned()
    }

    /// The MLflow tracking API's base (`.../mlflow/v1.0/subscriptions/.../workspaces/W`):
    /// the workspace's `mlFlowTrackingUri` with `azureml://` made `https://`, or the scheme
    /// of `endpointUrl` when that has the same host (the fake ARM server). Calls go to
    /// `{base}/api/2.0/mlflow/...`.
    pub async fn mlflow_base(&self) -> Result<String> {
        let ws = self.workspace().await?;
        let uri = ws
            .pointer("/properties/mlFlowTrackingUri")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ProviderError::new(
                    ErrorKind::NotSupported,
                    "azureml",
                    "GET workspace",
                    format!(
                        "the workspace `{}` has no `mlFlowTrackingUri`; mlctl reads metrics and runs through it",
                        self.workspace
                    ),
                )
            })?;
        Ok(tracking_base(uri, &self.base))
    }

    // -----------------------------------------------------------------------------------------

    fn fail(&self, what: &str, reply: &Reply) -> ProviderError {
        status_error(what, &self.workspace, reply)
    }

    /// An absolute URL the token may go to: on ARM's origin or an Azure service's host;
    /// a relative one is taken against ARM's.
    fn absolute(&self, url: &str, what: &str) -> Result<String> {
        let url = url.trim();
        if url.starts_with('/') {
            return Ok(format!("{}{url}", self.base));
        }
        let Some(o) = origin(url) else {
            return Err(ProviderError::new(
                ErrorKind::Other,
                "azureml",
                what,
                format!(
                    "`{}` is not a URL",
                    mlctl_spec::suggest::clip(shown(url), 200)
                ),
            ));
        };
        let host = host_of(o).to_ascii_lowercase();
        let ours = origin(&self.base) == Some(o)
            || (url.starts_with("https://") && AZURE_DOMAINS.iter().any(|d| host.ends_with(d)));
        if !ours {
            return Err(ProviderError::new(
                ErrorKind::PermissionDenied,
                "azureml",
                what,
                format!(
                    "the service sent mlctl to `{}`, which is neither ARM's endpoint (`{}`) nor an Azure service; the token is not sent there",
                    mlctl_spec::suggest::clip(o, 200),
                    self.base
                ),
            ));
        }
        Ok(url.to_string())
    }

    /// The operation a 2xx reply started, if any.
    fn operation_of(&self, reply: &Reply, path: &str, what: &str) -> Result<Option<Operation>> {
        if let Some(url) = reply.header("azure-asyncoperation") {
            return Ok(Some(Operation {
                url: self.absolute(url, what)?,
                async_operation: true,
                resource: path.to_string(),
            }));
        }
        if reply.status == 202
            && let Some(url) = reply.header("location")
        {
            return Ok(Some(Operation {
                url: self.absolute(url, what)?,
                async_operation: false,
                resource: path.to_string(),
            }));
        }
        Ok(None)
    }

    async fn read_back(&self, path: &str, what: &str) -> Result<Value> {
        self.get(path).await?.ok_or_else(|| {
            ProviderError::new(
                ErrorKind::Other,
                "azureml",
                what,
                format!("`{}` is gone right after it was written", label(path)),
            )
        })
    }

    /// Polls `op` until it ends; the last body (a `Location` resource's, else `Null`).
    async fn follow(&self, op: &Operation, what: &str, deleting: bool) -> Result<Value> {
        let started = tokio::time::Instant::now();
        loop {
            let (state, body) = self.poll_with_body(op, what, deleting).await?;
            match state {
                OperationState::Succeeded => return Ok(body),
                OperationState::Failed(message) => {
                    return Err(ProviderError::new(
                        ErrorKind::Failed,
                        "azureml",
                        what,
                        format!(
                            "{what} in workspace `{}` did not succeed: {message}",
                            self.workspace
                        ),
                    ));
                }
                OperationState::InProgress(wait) => {
                    if started.elapsed() + wait > MAX_OPERATION {
                        return Err(ProviderError::new(
                            ErrorKind::Timeout,
                            "azureml",
                            what,
                            format!(
                                "{what} was still in progress after {} minutes; run the command again to go on waiting",
                                MAX_OPERATION.as_secs() / 60
                            ),
                        ));
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn poll_once(
        &self,
        op: &Operation,
        what: &str,
        deleting: bool,
    ) -> Result<OperationState> {
        Ok(self.poll_with_body(op, what, deleting).await?.0)
    }

    async fn poll_with_body(
        &self,
        op: &Operation,
        what: &str,
        deleting: bool,
    ) -> Result<(OperationState, Value)> {
        let url = self.absolute(&op.url, what)?;
        let reply = self.send(reqwest::Method::GET, &url, None, what).await?;
        let wait = reply
            .header("retry-after")
            .and_then(retry_after)
            .unwrap_or(self.settings.poll_interval);
        if op.async_operation {
            if !(200..=299).contains(&reply.status) {
                return Err(self.fail(what, &reply));
            }
            let body = reply.json(what)?;
            return Ok((async_state(&body, wait), Value::Null));
        }
        match reply.status {
            202 => Ok((OperationState::InProgress(wait), Value::Null)),
            200..=299 => Ok((OperationState::Succeeded, reply.json(what)?)),
            404 if deleting => Ok((OperationState::Succeeded, Value::Null)),
            _ => Err(self.fail(what, &reply)),
        }
    }

    /// One call, retried on 429, 5xx and connection errors; any other status is returned.
    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Reply> {
        let attempts = self.settings.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            let token = crate::auth::token(self.credential.as_ref(), &self.scope).await?;
            let mut req = self
                .http
                .request(method.clone(), url)
                .bearer_auth(token.secret())
                .header("accept", "application/json");
            if let Some(b) = body {
                req = req.json(b);
            }
            let outcome = match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let headers = resp.headers().clone();
                    match resp.bytes().await {
                        Ok(b) => Ok(Reply {
                            status,
                            headers,
                            body: b.to_vec(),
                        }),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            match &outcome {
                Ok(r) => tracing::debug!(
                    method = %method,
                    url = shown(url),
                    status = r.status,
                    attempt,
                    "azureml: ARM call"
                ),
                Err(e) => tracing::debug!(
                    method = %method,
                    url = shown(url),
                    attempt,
                    error = %e,
                    "azureml: ARM call failed"
                ),
            }
            let retry = match &outcome {
                Ok(r) if r.status == 429 || r.status >= 500 => {
                    r.header("retry-after").and_then(retry_after)
                }
                Ok(_) => None,
                Err(_) => None,
            };
            let retryable = match &outcome {
                Ok(r) => r.status == 429 || r.status >= 500,
                Err(_) => true,
            };
            if !retryable || attempt >= attempts {
                return match outcome {
                    Ok(r) => Ok(r),
                    Err(e) => Err(transport_error(what, &self.base, &e, attempt)),
                };
            }
            let wait = retry.unwrap_or_else(|| backoff(self.settings.initial_backoff, attempt));
            tracing::debug!(
                what,
                attempt,
                wait_ms = wait.as_millis() as u64,
                "azureml: retrying"
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

/// The delay before retry `attempt` (1-based) without `Retry-After`: doubling from
/// `initial`, capped, with up to a quarter more so that concurrent callers spread out.
pub(crate) fn backoff(initial: Duration, attempt: u32) -> Duration {
    let base = initial
        .saturating_mul(1u32 << (attempt.saturating_sub(1)).min(16))
        .min(MAX_BACKOFF);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    base + base.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

fn transport_error(what: &str, base: &str, e: &reqwest::Error, attempts: u32) -> ProviderError {
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else {
        ErrorKind::Transient
    };
    // The message names the resource itself: the endpoint is said once.
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    let text = text.replace(base, "");
    ProviderError::new(
        kind,
        "azureml",
        what,
        format!(
            "{what} could not reach `{base}` ({} attempt{}): {}",
            attempts,
            if attempts == 1 { "" } else { "s" },
            mlctl_spec::suggest::clip(&text, MAX_QUOTE)
        ),
    )
}

/// The state an `Azure-AsyncOperation` status body says.
pub(crate) fn async_state(body: &Value, wait: Duration) -> OperationState {
    let status = body.get("status").and_then(Value::as_str).unwrap_or("");
    match status.to_ascii_lowercase().as_str() {
        "succeeded" => OperationState::Succeeded,
        "failed" | "canceled" | "cancelled" => {
            let error = body
                .get("error")
                .map(|e| {
                    let wrapped = serde_json::json!({ "error": e });
                    error_text(wrapped.to_string().as_bytes()).unwrap_or_else(|| {
                        mlctl_spec::suggest::clip(&e.to_string(), MAX_QUOTE).into_owned()
                    })
                })
                .unwrap_or_else(|| "no error given".to_string());
            OperationState::Failed(format!("{status}: {error}"))
        }
        _ => OperationState::InProgress(wait),
    }
}

/// The MLflow base for `mlFlowTrackingUri` (`azureml://HOST/mlflow/v1.0/...`) with ARM at
/// `arm_base`.
pub(crate) fn tracking_base(uri: &str, arm_base: &str) -> String {
    let rest = uri
        .strip_prefix("azureml://")
        .or_else(|| uri.strip_prefix("https://"))
        .or_else(|| uri.strip_prefix("http://"))
        .unwrap_or(uri);
    let host = rest.split('/').next().unwrap_or_default();
    let arm_origin = origin(arm_base).unwrap_or(arm_base);
    let arm_scheme = arm_origin.split_once("://").map_or("https", |(s, _)| s);
    let scheme = if host_of(arm_origin).eq_ignore_ascii_case(host_of(host)) {
        arm_scheme
    } else {
        "https"
    };
    format!("{scheme}://{}", rest.trim_end_matches('/'))
}

/// A path for messages: without its query.
fn label(path: &str) -> &str {
    let p = shown(path).trim_matches('/');
    if p.is_empty() { "(workspace)" } else { p }
}

fn check_segment(field: &str, value: &str) -> Result<()> {
    let bad = value.trim().is_empty()
        || value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "/?#%".contains(c));
    if bad {
        return Err(crate::invalid(
            "connect",
            format!(
                "`{field}: {}` is not a valid Azure name; write the {} as Azure shows it (no spaces, `/`, `?`, `#` or `%`)",
                mlctl_spec::suggest::clip(value, 100),
                match field {
                    "subscription" => "subscription id (a GUID)",
                    "resourceGroup" => "resource group's name",
                    _ => "workspace's name",
                }
            ),
        ));
    }
    Ok(())
}
