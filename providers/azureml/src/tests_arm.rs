//! Unit tests of the ARM client, the credentials, connecting and the registry's bodies.
//!
//! The ARM client is driven against a real HTTP server on 127.0.0.1 that answers a script
//! of responses in order and records every request: each test says what the service
//! answers and checks what mlctl sent (and how often), never how long anything took.

use crate::arm::{self, API_VERSION, Arm, Operation, OperationState};
use crate::azure::Settings;
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use mlctl_core::ErrorKind;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOKEN: &str = "tok-SECRET-0123456789";
const W: &str = "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.MachineLearningServices/workspaces/ws-1";

// ---------------------------------------------------------------------------------------------
// The scripted server.

/// One scripted response: to a request with `method` whose path is `path`.
struct Answer {
    method: &'static str,
    path: String,
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn answer(method: &'static str, path: &str, status: u16) -> Answer {
    Answer {
        method,
        path: path.to_string(),
        status,
        headers: Vec::new(),
        body: String::new(),
    }
}

impl Answer {
    fn header(mut self, name: &'static str, value: &str) -> Answer {
        self.headers.push((name, value.to_string()));
        self
    }
    fn json(mut self, v: Value) -> Answer {
        self.body = v.to_string();
        self
    }
}

/// A request the server saw (all of it, shown by `Debug` when a test fails).
#[derive(Debug, Clone)]
#[allow(dead_code)]
struct Seen {
    method: String,
    path: String,
    query: String,
    authorization: String,
    body: String,
}

struct Server {
    base: String,
    script: Arc<Mutex<VecDeque<Answer>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// A server answering `script` in order; `{base}` in a header is its own base URL.
    async fn start(script: Vec<Answer>) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let script: VecDeque<Answer> = script
            .into_iter()
            .map(|mut a| {
                for (_, v) in &mut a.headers {
                    *v = v.replace("{base}", &base);
                }
                a
            })
            .collect();
        let script = Arc::new(Mutex::new(script));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (script.clone(), seen.clone());
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let (script, seen) = (s.clone(), r.clone());
            async move {
                let (parts, body) = req.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20)
                    .await
                    .unwrap_or_default();
                let path = parts.uri.path().to_string();
                seen.lock().unwrap().push(Seen {
                    method: parts.method.to_string(),
                    path: path.clone(),
                    query: parts.uri.query().unwrap_or_default().to_string(),
                    authorization: parts
                        .headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string(),
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                let next = script.lock().unwrap().pop_front();
                let mut resp = axum::response::Response::builder();
                match next {
                    Some(a) if a.method == parts.method.as_str() && a.path == path => {
                        resp = resp.status(a.status);
                        for (k, v) in a.headers {
                            resp = resp.header(k, v);
                        }
                        if !a.body.is_empty() {
                            resp = resp.header("content-type", "application/json");
                        }
                        resp.body(axum::body::Body::from(a.body)).unwrap()
                    }
                    other => resp
                        .status(418)
                        .body(axum::body::Body::from(format!(
                            "unexpected {} {path}; the script expected {:?}",
                            parts.method,
                            other.map(|a| format!("{} {}", a.method, a.path))
                        )))
                        .unwrap(),
                }
            }
        });
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Server {
            base,
            script,
            seen,
            task,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Every scripted answer was asked for.
    fn assert_done(&self) {
        let left: Vec<String> = self
            .script
            .lock()
            .unwrap()
            .iter()
            .map(|a| format!("{} {}", a.method, a.path))
            .collect();
        assert!(left.is_empty(), "answers never asked for: {left:?}");
    }
}

/// A credential that counts the tokens it hands out.
#[derive(Debug, Default)]
struct Counting(AtomicUsize);

#[async_trait::async_trait]
impl TokenCredential for Counting {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        assert_eq!(scopes, ["https://management.azure.com/.default"]);
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(AccessToken::new(
            TOKEN,
            azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
        ))
    }
}

fn settings(max_attempts: u32) -> Settings {
    Settings {
        max_attempts,
        initial_backoff: Duration::from_millis(1),
        poll_interval: Duration::from_millis(1),
        block_threshold: 64 << 20,
        block_size: 16 << 20,
    }
}

fn client(base: &str, max_attempts: u32) -> Arm {
    Arm::new(
        Some(base),
        "sub-1",
        "rg-1",
        "ws-1",
        Arc::new(Counting::default()),
        settings(max_attempts),
    )
    .unwrap()
}

fn p(rel: &str) -> String {
    format!("{W}/{rel}")
}

/// No error text carries the token.
fn assert_no_token(e: &mlctl_core::ProviderError) {
    let all = format!("{e} {e:?}");
    assert!(!all.contains(TOKEN), "the token leaked into: {all}");
}

// ---------------------------------------------------------------------------------------------
// URLs.

#[test]
fn urls_carry_the_workspace_path_and_the_one_api_version() {
    let arm = client("http://127.0.0.1:9/", 1);
    assert_eq!(
        arm.url("jobs/j1"),
        format!("http://127.0.0.1:9{W}/jobs/j1?api-version=2025-12-01")
    );
    assert_eq!(
        arm.url("models/m/versions?listViewType=All"),
        format!("http://127.0.0.1:9{W}/models/m/versions?api-version=2025-12-01&listViewType=All")
    );
    assert_eq!(
        arm.id("codes/c/versions/1"),
        format!("{W}/codes/c/versions/1")
    );
    assert_eq!(arm.id(""), W);
}

#[test]
fn the_api_version_is_written_in_one_place() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("tests_arm.rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                if line.contains(API_VERSION) {
                    found.push(format!("{}:{}", path.display(), n + 1));
                }
            }
        }
    }
    assert_eq!(found.len(), 1, "api-version written in: {found:?}");
    assert!(found[0].contains("arm.rs"));
}

#[test]
fn endpoint_urls_and_names_that_cannot_work_are_refused() {
    let cred: Arc<dyn TokenCredential> = Arc::new(Counting::default());
    let bad_base = Arm::new(
        Some("management.azure.com"),
        "s",
        "g",
        "w",
        cred.clone(),
        settings(1),
    )
    .unwrap_err();
    assert_eq!(bad_base.kind, ErrorKind::Invalid);
    assert!(
        bad_base.message.contains("endpointUrl"),
        "{}",
        bad_base.message
    );
    let bad_ws = Arm::new(None, "s", "g", "my/ws", cred, settings(1)).unwrap_err();
    assert!(
        bad_ws.message.contains("`workspace: my/ws`"),
        "{}",
        bad_ws.message
    );
}

#[test]
fn the_token_scope_follows_a_sovereign_clouds_arm() {
    assert_eq!(
        arm::scope_for("https://management.azure.com"),
        "https://management.azure.com/.default"
    );
    assert_eq!(
        arm::scope_for("https://management.usgovcloudapi.net/"),
        "https://management.usgovcloudapi.net/.default"
    );
    assert_eq!(
        arm::scope_for("http://127.0.0.1:4444"),
        "https://management.azure.com/.default"
    );
}

#[test]
fn the_mlflow_base_comes_from_the_tracking_uri() {
    let uri = format!("azureml://westeurope.api.azureml.ms/mlflow/v1.0{W}");
    assert_eq!(
        arm::tracking_base(&uri, "https://management.azure.com"),
        format!("https://westeurope.api.azureml.ms/mlflow/v1.0{W}")
    );
    // The fake serves both on one host, over http.
    let fake = format!("azureml://127.0.0.1:5555/mlflow/v1.0{W}");
    assert_eq!(
        arm::tracking_base(&fake, "http://127.0.0.1:5555"),
        format!("http://127.0.0.1:5555/mlflow/v1.0{W}")
    );
}

#[test]
fn retry_after_takes_seconds_and_http_dates() {
    assert_eq!(arm::retry_after("7"), Some(Duration::from_secs(7)));
    assert_eq!(arm::retry_after(" 0 "), Some(Duration::ZERO));
    // A date in the past: retry at once.
    assert_eq!(
        arm::retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
        Some(Duration::ZERO)
    );
    let later = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap();
    let wait = arm::retry_after(&later).unwrap();
    assert!(
        wait > Duration::from_secs(60) && wait <= Duration::from_secs(600),
        "{wait:?}"
    );
    assert_eq!(arm::retry_after("soon"), None);
    // A day is cut to the longest wait honoured.
    assert_eq!(arm::retry_after("86400"), Some(Duration::from_secs(600)));
}

#[test]
fn statuses_map_to_error_kinds() {
    for (status, code, kind) in [
        (400, None, ErrorKind::Invalid),
        (401, None, ErrorKind::PermissionDenied),
        (403, None, ErrorKind::PermissionDenied),
        (404, None, ErrorKind::NotFound),
        (
            409,
            Some("UserErrorAlreadyExists"),
            ErrorKind::AlreadyExists,
        ),
        (409, Some("Conflict"), ErrorKind::Precondition),
        (429, None, ErrorKind::Throttled),
        (500, None, ErrorKind::Transient),
        (503, None, ErrorKind::Transient),
    ] {
        assert_eq!(arm::kind_of(status, code), kind, "{status} {code:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Calls.

#[tokio::test]
async fn get_sends_the_bearer_token_and_the_api_version() {
    let s = Server::start(vec![
        answer("GET", &p("jobs/j1"), 200).json(json!({"name": "j1"})),
        answer("GET", &p("jobs/j2"), 404),
    ])
    .await;
    let arm = client(&s.base, 3);
    assert_eq!(
        arm.get("jobs/j1").await.unwrap(),
        Some(json!({"name": "j1"}))
    );
    assert_eq!(arm.get("jobs/j2").await.unwrap(), None);
    s.assert_done();
    let seen = s.seen();
    assert_eq!(seen[0].authorization, format!("Bearer {TOKEN}"));
    assert_eq!(seen[0].query, format!("api-version={API_VERSION}"));
}

#[tokio::test]
async fn put_follows_azure_async_operation_then_reads_the_resource() {
    let s = Server::start(vec![
        answer("PUT", &p("onlineEndpoints/e"), 201)
            .header("Azure-AsyncOperation", "{base}/ops/1?api-version=x")
            .json(json!({"name": "e", "properties": {"provisioningState": "Creating"}})),
        answer("GET", "/ops/1", 200)
            .header("Retry-After", "0")
            .json(json!({"status": "InProgress"})),
        answer("GET", "/ops/1", 200).json(json!({"status": "Succeeded"})),
        answer("GET", &p("onlineEndpoints/e"), 200)
            .json(json!({"name": "e", "properties": {"provisioningState": "Succeeded"}})),
    ])
    .await;
    // Without Retry-After the client would poll again in an hour.
    let mut slow = settings(3);
    slow.poll_interval = Duration::from_secs(3600);
    let arm = Arm::new(
        Some(&s.base),
        "sub-1",
        "rg-1",
        "ws-1",
        Arc::new(Counting::default()),
        slow,
    )
    .unwrap();
    let body = json!({"location": "westeurope", "properties": {"authMode": "Key"}});
    let v = tokio::time::timeout(
        Duration::from_secs(120),
        arm.put("onlineEndpoints/e", &body),
    )
    .await
    .expect("the operation's Retry-After: 0 was not honoured")
    .unwrap();
    assert_eq!(v["properties"]["provisioningState"], "Succeeded");
    s.assert_done();
    let seen = s.seen();
    assert_eq!(seen.len(), 4);
    assert_eq!(serde_json::from_str::<Value>(&seen[0].body).unwrap(), body);
    assert!(
        seen.iter()
            .all(|r| r.authorization == format!("Bearer {TOKEN}"))
    );
}

#[tokio::test]
async fn a_failed_async_operation_says_arms_error() {
    let s = Server::start(vec![
        answer("PUT", &p("onlineEndpoints/e/deployments/d"), 201)
            .header("Azure-AsyncOperation", "{base}/ops/2"),
        answer("GET", "/ops/2", 200).json(json!({"status": "Failed", "error": {
            "code": "ImageNotFound", "message": "the image does not exist",
            "target": "properties.environmentId"}})),
    ])
    .await;
    let arm = client(&s.base, 3);
    let e = arm
        .put(
            "onlineEndpoints/e/deployments/d",
            &json!({"properties": {}}),
        )
        .await
        .unwrap_err();
    s.assert_done();
    assert_eq!(e.kind, ErrorKind::Failed);
    for part in [
        "PUT onlineEndpoints/e/deployments/d",
        "ImageNotFound",
        "the image does not exist",
        "field `properties.environmentId`",
        "ws-1",
    ] {
        assert!(
            e.message.contains(part),
            "`{part}` missing from: {}",
            e.message
        );
    }
    assert_no_token(&e);
}

#[tokio::test]
async fn put_started_and_poll_hand_the_operation_to_the_caller() {
    let s = Server::start(vec![
        answer("PUT", &p("jobs/j"), 201).json(json!({"name": "j"})),
        answer("PUT", &p("onlineEndpoints/e"), 201).header("Azure-AsyncOperation", "{base}/ops/3"),
        answer("GET", "/ops/3", 200)
            .header("Retry-After", "3")
            .json(json!({"status": "Running"})),
        answer("GET", "/ops/3", 200).json(json!({"status": "Canceled"})),
    ])
    .await;
    let arm = client(&s.base, 3);
    assert_eq!(arm.put_started("jobs/j", &json!({})).await.unwrap(), None);
    let op = arm
        .put_started("onlineEndpoints/e", &json!({}))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        op,
        Operation {
            url: format!("{}/ops/3", s.base),
            async_operation: true,
            resource: "onlineEndpoints/e".into()
        }
    );
    assert_eq!(
        arm.poll(&op).await.unwrap(),
        OperationState::InProgress(Duration::from_secs(3))
    );
    assert!(
        matches!(arm.poll(&op).await.unwrap(), OperationState::Failed(m) if m.starts_with("Canceled"))
    );
    s.assert_done();
}

#[tokio::test]
async fn delete_follows_location_until_done_and_a_missing_resource_is_deleted() {
    let s = Server::start(vec![
        answer("DELETE", &p("onlineEndpoints/e"), 202).header("Location", "{base}/loc/1"),
        answer("GET", "/loc/1", 202).header("Retry-After", "0"),
        answer("GET", "/loc/1", 202),
        answer("GET", "/loc/1", 204),
        answer("DELETE", &p("models/gone"), 404),
    ])
    .await;
    let arm = client(&s.base, 3);
    arm.delete("onlineEndpoints/e").await.unwrap();
    arm.delete("models/gone").await.unwrap();
    s.assert_done();
}

#[tokio::test]
async fn post_returns_the_body_or_follows_location_to_it() {
    let s = Server::start(vec![
        answer("POST", &p("onlineEndpoints/e/listKeys"), 200).json(json!({"primaryKey": "k1"})),
        answer("POST", &p("jobs/j/cancel"), 202).header("Location", "{base}/loc/2"),
        answer("GET", "/loc/2", 202),
        answer("GET", "/loc/2", 200),
    ])
    .await;
    let arm = client(&s.base, 3);
    assert_eq!(
        arm.post("onlineEndpoints/e/listKeys", &json!({}))
            .await
            .unwrap(),
        json!({"primaryKey": "k1"})
    );
    assert_eq!(
        arm.post("jobs/j/cancel", &json!({})).await.unwrap(),
        Value::Null
    );
    s.assert_done();
}

#[tokio::test]
async fn throttling_is_retried_after_retry_after() {
    let s = Server::start(vec![
        answer("GET", &p("jobs/j"), 429).header("Retry-After", "0"),
        answer("GET", &p("jobs/j"), 429).header("Retry-After", "0"),
        answer("GET", &p("jobs/j"), 200).json(json!({"name": "j"})),
    ])
    .await;
    let cred = Arc::new(Counting::default());
    // Without Retry-After the client would back off for an hour: the call ends only if it
    // takes the service's word.
    let mut slow = settings(5);
    slow.initial_backoff = Duration::from_secs(3600);
    let arm = Arm::new(Some(&s.base), "sub-1", "rg-1", "ws-1", cred.clone(), slow).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(120), arm.get("jobs/j"))
        .await
        .expect("Retry-After: 0 was not honoured (the client waited its own backoff)");
    assert_eq!(got.unwrap(), Some(json!({"name": "j"})));
    s.assert_done();
    assert_eq!(s.seen().len(), 3);
    // A token asked for on every attempt (the credential's cache makes it cheap).
    assert_eq!(cred.0.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn server_errors_are_retried_up_to_max_attempts_then_retryable() {
    let s = Server::start(vec![
        answer("PUT", &p("models/m"), 503),
        answer("PUT", &p("models/m"), 500)
            .json(json!({"error": {"code": "InternalServerError", "message": "try later"}})),
        answer("PUT", &p("models/m"), 502),
    ])
    .await;
    let arm = client(&s.base, 3);
    let e = arm
        .put("models/m", &json!({"properties": {}}))
        .await
        .unwrap_err();
    s.assert_done();
    assert_eq!(s.seen().len(), 3);
    assert_eq!(e.kind, ErrorKind::Transient);
    assert!(e.is_retryable());
    assert!(e.message.contains("502"), "{}", e.message);
    assert_no_token(&e);
}

#[tokio::test]
async fn arm_error_bodies_name_the_resource_code_and_fields() {
    let s = Server::start(vec![
        answer("PUT", &p("models/m/versions/1"), 400).json(json!({"error": {
            "code": "UserError",
            "message": "A required property is missing.",
            "target": "properties.modelUri",
            "details": [{"code": "Required", "message": "modelUri is required", "target": "modelUri"}]
        }})),
        answer("GET", &p("jobs/j"), 403)
            .header("x-ms-correlation-request-id", "corr-42")
            .json(json!({"error": {"code": "AuthorizationFailed", "message": "no access"}})),
    ])
    .await;
    let arm = client(&s.base, 3);
    let e = arm
        .put("models/m/versions/1", &json!({"properties": {}}))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert!(!e.is_retryable());
    for part in [
        "PUT models/m/versions/1",
        "400",
        "UserError: A required property is missing. (field `properties.modelUri`)",
        "Required: modelUri is required (field `modelUri`)",
    ] {
        assert!(
            e.message.contains(part),
            "`{part}` missing from: {}",
            e.message
        );
    }
    assert_no_token(&e);
    let e = arm.get("jobs/j").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::PermissionDenied);
    assert!(
        e.message.contains("AuthorizationFailed") && e.message.contains("role"),
        "{}",
        e.message
    );
    assert!(e.message.ends_with("(request id corr-42)"), "{}", e.message);
    assert_no_token(&e);
    s.assert_done();
    // One attempt each: a 4xx is not retried.
    assert_eq!(s.seen().len(), 2);
}

#[tokio::test]
async fn huge_error_bodies_are_cut() {
    let s = Server::start(vec![
        answer("GET", &p("jobs/j"), 400).json(json!({"error": {
        "code": "Big", "message": "x".repeat(100_000)}})),
    ])
    .await;
    let e = client(&s.base, 1).get("jobs/j").await.unwrap_err();
    assert!(e.message.len() < 4000, "{} bytes", e.message.len());
    assert!(e.message.contains("truncated"));
}

#[tokio::test]
async fn list_follows_next_link() {
    let s = Server::start(vec![
        answer("GET", &p("models/m/versions"), 200).json(json!({
            "value": [{"name": "1"}, {"name": "2"}],
            "nextLink": "{next}"})),
        answer("GET", "/page/2", 200).json(json!({"value": [{"name": "3"}]})),
        answer("GET", &p("models/none/versions"), 404),
    ])
    .await;
    // The link is absolute, on the same host.
    {
        let mut script = s.script.lock().unwrap();
        script[0].body = script[0]
            .body
            .replace("{next}", &format!("{}/page/2?skip=2", s.base));
    }
    let arm = client(&s.base, 3);
    let names: Vec<Value> = arm
        .list("models/m/versions")
        .await
        .unwrap()
        .iter()
        .map(|v| v["name"].clone())
        .collect();
    assert_eq!(names, [json!("1"), json!("2"), json!("3")]);
    assert!(arm.list("models/none/versions").await.unwrap().is_empty());
    s.assert_done();
    assert_eq!(s.seen()[1].query, "skip=2");
}

#[tokio::test]
async fn the_token_is_not_sent_to_a_host_arm_did_not_name() {
    let s = Server::start(vec![
        answer("GET", &p("models/m/versions"), 200).json(json!({
            "value": [], "nextLink": "https://evil.example.com/steal"})),
        answer("PUT", &p("onlineEndpoints/e"), 201)
            .header("Azure-AsyncOperation", "http://10.1.2.3/ops"),
    ])
    .await;
    let arm = client(&s.base, 3);
    let e = arm.list("models/m/versions").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::PermissionDenied);
    assert!(
        e.message.contains("https://evil.example.com"),
        "{}",
        e.message
    );
    let e = arm.put("onlineEndpoints/e", &json!({})).await.unwrap_err();
    assert!(e.message.contains("not sent there"), "{}", e.message);
    s.assert_done();
    assert_eq!(s.seen().len(), 2);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_retried_then_a_transient_error() {
    // A port nobody listens on: bind, read the port, close.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cred = Arc::new(Counting::default());
    let arm = Arm::new(
        Some(&format!("http://127.0.0.1:{port}")),
        "sub-1",
        "rg-1",
        "ws-1",
        cred.clone(),
        settings(2),
    )
    .unwrap();
    let e = arm.get("jobs/j").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transient);
    assert!(e.message.contains("2 attempts"), "{}", e.message);
    assert_eq!(cred.0.load(Ordering::SeqCst), 2);
    assert_no_token(&e);
}

#[tokio::test]
async fn the_workspace_is_read_once_for_location_and_tracking() {
    let s = Server::start(vec![answer("GET", W, 200).json(json!({
        "name": "ws-1", "location": "westeurope",
        "properties": {"mlFlowTrackingUri": "{tracking}"}}))])
    .await;
    let host = s.base.trim_start_matches("http://").to_string();
    {
        let mut script = s.script.lock().unwrap();
        script[0].body = script[0]
            .body
            .replace("{tracking}", &format!("azureml://{host}/mlflow/v1.0{W}"));
    }
    let arm = client(&s.base, 3);
    assert_eq!(arm.location().await.unwrap(), "westeurope");
    assert_eq!(
        arm.mlflow_base().await.unwrap(),
        format!("http://{host}/mlflow/v1.0{W}")
    );
    s.assert_done();
    assert_eq!(s.seen().len(), 1);
    // The target's location wins, and nothing is read for it.
    let named = client(&s.base, 3).with_location(Some("northeurope".into()));
    assert_eq!(named.location().await.unwrap(), "northeurope");
    assert_eq!(s.seen().len(), 1);
}

#[tokio::test]
async fn a_missing_workspace_names_the_target_fields() {
    let s = Server::start(vec![answer("GET", W, 404)]).await;
    let e = client(&s.base, 3).location().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(
        e.message
            .contains("`subscription`, `resourceGroup` and `workspace`"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn mlflow_calls_go_to_absolute_urls_with_the_same_token() {
    let s = Server::start(vec![
        answer("GET", "/mlflow/v1.0/api/2.0/mlflow/runs/get", 200)
            .json(json!({"run": {"data": {"metrics": []}}})),
        answer("POST", "/mlflow/v1.0/api/2.0/mlflow/runs/search", 200).json(json!({"runs": []})),
    ])
    .await;
    let arm = client(&s.base, 3);
    let got = arm
        .get_url(&format!(
            "{}/mlflow/v1.0/api/2.0/mlflow/runs/get?run_id=j1",
            s.base
        ))
        .await
        .unwrap();
    assert_eq!(got, Some(json!({"run": {"data": {"metrics": []}}})));
    let found = arm
        .post_url(
            &format!("{}/mlflow/v1.0/api/2.0/mlflow/runs/search", s.base),
            &json!({"experiment_ids": ["1"]}),
        )
        .await
        .unwrap();
    assert_eq!(found, json!({"runs": []}));
    s.assert_done();
    assert!(
        s.seen()
            .iter()
            .all(|r| r.authorization == format!("Bearer {TOKEN}"))
    );
    assert_eq!(s.seen()[0].query, "run_id=j1");
}

// ---------------------------------------------------------------------------------------------
// Credentials.

mod credentials {
    use crate::auth::{self, Chosen};
    use mlctl_core::ErrorKind;
    use mlctl_spec::{AzureCredential, AzureEmulator, AzuremlTarget};
    use std::collections::HashMap;

    fn target(credential: Option<AzureCredential>) -> AzuremlTarget {
        AzuremlTarget {
            subscription: "sub".into(),
            resource_group: "rg".into(),
            workspace: "ws".into(),
            storage: "https://acct.blob.core.windows.net/ml".into(),
            location: None,
            compute: None,
            credential,
            sas: None,
            endpoint_url: None,
            authority_host: None,
            image: None,
            emulator: None,
            root: None,
            components: Default::default(),
            tracking: None,
        }
    }

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn auto_chooses_by_the_variables_set() {
        let t = target(None);
        let secret = "AZURE_CLIENT_SECRET";
        let cases: [(&[(&str, &str)], Chosen); 5] = [
            (
                &[(secret, "s"), ("AZURE_FEDERATED_TOKEN_FILE", "/f")],
                Chosen::ClientSecret,
            ),
            (
                &[("AZURE_FEDERATED_TOKEN_FILE", "/f")],
                Chosen::WorkloadIdentity,
            ),
            (
                &[("IDENTITY_ENDPOINT", "http://169.254.169.254")],
                Chosen::ManagedIdentity,
            ),
            (&[], Chosen::Cli),
            // Empty is unset.
            (&[(secret, "")], Chosen::Cli),
        ];
        for (vars, want) in cases {
            assert_eq!(auth::choose(&t, &env(vars)), want, "{vars:?}");
        }
        let explicit = target(Some(AzureCredential::Cli));
        assert_eq!(auth::choose(&explicit, &env(&[(secret, "s")])), Chosen::Cli);
    }

    #[test]
    fn the_fake_arm_server_gets_its_fixed_token_unless_a_credential_is_named() {
        let mut t = target(None);
        t.emulator = Some(AzureEmulator::FakeArm);
        assert_eq!(auth::choose(&t, &env(&[])), Chosen::Emulator);
        t.credential = Some(AzureCredential::ClientSecret);
        assert_eq!(auth::choose(&t, &env(&[])), Chosen::ClientSecret);
    }

    #[test]
    fn a_missing_variable_is_named_and_no_value_is_shown() {
        let t = target(Some(AzureCredential::ClientSecret));
        let e = auth::credential_with(
            &t,
            &env(&[
                ("AZURE_CLIENT_ID", "client-VALUE"),
                ("AZURE_CLIENT_SECRET", "secret-VALUE"),
            ]),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::PermissionDenied);
        assert!(e.message.contains("`AZURE_TENANT_ID`"), "{}", e.message);
        assert!(!e.message.contains("AZURE_CLIENT_ID`,"), "{}", e.message);
        assert!(!e.message.contains("VALUE"), "{}", e.message);

        let w = target(Some(AzureCredential::WorkloadIdentity));
        let e = auth::credential_with(&w, &env(&[])).unwrap_err();
        for v in [
            "AZURE_TENANT_ID",
            "AZURE_CLIENT_ID",
            "AZURE_FEDERATED_TOKEN_FILE",
        ] {
            assert!(e.message.contains(v), "{}", e.message);
        }
    }

    #[test]
    fn each_credential_is_built_from_its_variables() {
        // The workload identity reads its token file when it is built.
        let token_file =
            std::env::temp_dir().join(format!("mlctl-az-token-{}", std::process::id()));
        std::fs::write(&token_file, "header.payload.signature").unwrap();
        let vars = [
            ("AZURE_TENANT_ID", "00000000-0000-0000-0000-000000000001"),
            ("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000002"),
            ("AZURE_CLIENT_SECRET", "s3cr3t"),
            ("AZURE_FEDERATED_TOKEN_FILE", token_file.to_str().unwrap()),
        ];
        for c in [
            AzureCredential::ClientSecret,
            AzureCredential::WorkloadIdentity,
            AzureCredential::ManagedIdentity,
            AzureCredential::Cli,
        ] {
            let mut t = target(Some(c));
            t.authority_host = Some("https://login.microsoftonline.us".into());
            auth::credential_with(&t, &env(&vars)).unwrap_or_else(|e| panic!("{c:?}: {e}"));
        }
        std::fs::remove_file(&token_file).unwrap();
    }

    #[tokio::test]
    async fn cli_tokens_are_kept_until_shortly_before_they_expire() {
        use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
        use azure_core::time::{Duration, OffsetDateTime};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        /// Hands out tokens valid for `valid`, counting them.
        #[derive(Debug)]
        struct Tool(AtomicUsize, Duration);
        #[async_trait::async_trait]
        impl TokenCredential for Tool {
            async fn get_token(
                &self,
                _: &[&str],
                _: Option<TokenRequestOptions<'_>>,
            ) -> azure_core::Result<AccessToken> {
                let n = self.0.fetch_add(1, Ordering::SeqCst);
                Ok(AccessToken::new(
                    format!("t{n}"),
                    OffsetDateTime::now_utc() + self.1,
                ))
            }
        }
        let long = Arc::new(Tool(AtomicUsize::new(0), Duration::hours(1)));
        let cached = auth::Cached::new(long.clone());
        for _ in 0..3 {
            let t = cached.get_token(&["scope-a"], None).await.unwrap();
            assert_eq!(t.token.secret(), "t0");
        }
        cached.get_token(&["scope-b"], None).await.unwrap();
        assert_eq!(long.0.load(Ordering::SeqCst), 2);
        // A token about to expire is asked for again.
        let short = Arc::new(Tool(AtomicUsize::new(0), Duration::minutes(2)));
        let cached = auth::Cached::new(short.clone());
        cached.get_token(&["s"], None).await.unwrap();
        cached.get_token(&["s"], None).await.unwrap();
        assert_eq!(short.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn an_authority_host_must_be_https() {
        let mut t = target(Some(AzureCredential::ClientSecret));
        t.authority_host = Some("http://login.example".into());
        let e = auth::credential_with(&t, &env(&[])).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert!(
            e.message.contains("`authorityHost: http://login.example`"),
            "{}",
            e.message
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Connecting.

mod connecting {
    use super::credentials_target as target;
    use crate::connect::checked;

    #[test]
    fn empty_names_are_refused_with_the_field() {
        for (field, set) in [
            (
                "subscription",
                (|t: &mut mlctl_spec::AzuremlTarget| t.subscription = " ".into()) as fn(&mut _),
            ),
            ("resourceGroup", |t| t.resource_group = String::new()),
            ("workspace", |t| t.workspace = String::new()),
            ("storage", |t| t.storage = String::new()),
        ] {
            let mut t = target();
            set(&mut t);
            let e = checked(&t).unwrap_err();
            assert!(
                e.message.contains(&format!("`{field}` is empty")),
                "{}",
                e.message
            );
        }
    }

    #[test]
    fn a_sas_loses_its_question_mark_and_an_empty_one_is_refused() {
        let mut t = target();
        t.sas = Some("?sv=2024&sig=abc".into());
        assert_eq!(checked(&t).unwrap().sas.as_deref(), Some("sv=2024&sig=abc"));
        t.sas = Some("  ".into());
        assert!(checked(&t).unwrap_err().message.contains("`sas` is empty"));
    }

    #[test]
    fn storage_must_be_a_url() {
        let mut t = target();
        t.storage = "acct/ml".into();
        assert!(
            checked(&t)
                .unwrap_err()
                .message
                .contains("`storage: acct/ml`")
        );
    }
}

fn credentials_target() -> mlctl_spec::AzuremlTarget {
    mlctl_spec::AzuremlTarget {
        subscription: "sub".into(),
        resource_group: "rg".into(),
        workspace: "ws".into(),
        storage: "https://acct.blob.core.windows.net/ml".into(),
        location: None,
        compute: None,
        credential: None,
        sas: None,
        endpoint_url: None,
        authority_host: None,
        image: None,
        emulator: None,
        root: None,
        components: Default::default(),
        tracking: None,
    }
}

// ---------------------------------------------------------------------------------------------
// The registry's bodies.

mod registry_bodies {
    use crate::registry::{container_body, model_name, parse_version, version_body};
    use mlctl_core::{ApprovalStatus, RegisterRequest, Tags, TrainingResult};
    use mlctl_spec::{Approval, Stage};
    use serde_json::json;
    use std::collections::BTreeMap;

    fn tags() -> Tags {
        Tags {
            project: "iris".into(),
            resource: "Model/classifier".into(),
            fingerprint: "fp1".into(),
            commit: "abc123".into(),
            labels: BTreeMap::from([("team".into(), "ml".into())]),
        }
    }

    pub(super) fn request(approval: Approval) -> RegisterRequest {
        RegisterRequest {
            model: "classifier".into(),
            training: TrainingResult {
                job_name: "iris-train-1a2b".into(),
                artifact_uri:
                    "https://acct.blob.core.windows.net/ml/iris/artifacts/iris-train-1a2b/model/"
                        .into(),
                metrics: BTreeMap::from([("accuracy".into(), 0.95), ("nan".into(), f64::NAN)]),
                hyperparameters: BTreeMap::new(),
                trials: Vec::new(),
                run_id: None,
                duration_secs: 1.0,
                evaluation: None,
                metrics_origin: None,
            },
            stage: Stage::Staging,
            approval,
            description: Some("Iris classifier".into()),
            fingerprint: "fp1".into(),
            lineage: BTreeMap::from([("dataset".into(), "blake3:dd".into())]),
            tags: tags(),
        }
    }

    #[test]
    fn a_new_version_is_a_custom_model_at_the_artifact_with_mlctls_record() {
        let body = version_body(
            &request(Approval::Manual),
            "abc123",
            Some("iris-train-1a2b"),
            "2026-12-01T10:00:00Z",
        );
        assert_eq!(
            body,
            json!({"properties": {
                "modelType": "custom_model",
                "modelUri": "https://acct.blob.core.windows.net/ml/iris/artifacts/iris-train-1a2b/model/",
                "stage": "Staging",
                "description": "Iris classifier",
                "jobName": "iris-train-1a2b",
                "tags": {
                    "team": "ml",
                    "mlctl:project": "iris",
                    "mlctl:resource": "Model/classifier",
                    "mlctl:fingerprint": "fp1",
                    "mlctl:commit": "abc123",
                    "mlctl:model": "classifier",
                    "mlctl:approval": "PendingManualApproval"
                },
                "properties": {
                    "mlctl.registryFormat": "1",
                    "mlctl.fingerprint": "fp1",
                    "mlctl.commit": "abc123",
                    "mlctl.trainingJob": "iris-train-1a2b",
                    "mlctl.createdAt": "2026-12-01T10:00:00Z",
                    "mlctl.metric.accuracy": "0.95",
                    "mlctl.lineage.dataset": "blake3:dd"
                }
            }})
        );
    }

    #[test]
    fn the_container_carries_the_tags_and_a_description() {
        assert_eq!(
            container_body("classifier", "iris", &tags(), None),
            json!({"properties": {
                "description": "mlctl model `classifier` of project `iris`",
                "tags": {"team": "ml", "mlctl:project": "iris", "mlctl:resource": "Model/classifier",
                         "mlctl:fingerprint": "fp1", "mlctl:commit": "abc123", "mlctl:model": "classifier"}
            }})
        );
    }

    #[test]
    fn a_version_reads_back_as_it_was_written() {
        let mut v = version_body(
            &request(Approval::Auto),
            "abc123",
            None,
            "2026-12-01T10:00:00Z",
        );
        v["name"] = json!("3");
        v["properties"]["provisioningState"] = json!("Succeeded");
        v["systemData"] = json!({"createdAt": "2026-12-01T10:00:05Z"});
        let r = parse_version("classifier", &v).unwrap();
        assert_eq!(r.version.version, 3);
        assert_eq!(r.version.stage, Stage::Staging);
        assert_eq!(r.version.approval, ApprovalStatus::Approved);
        assert_eq!(r.version.fingerprint, "fp1");
        assert_eq!(
            r.version.metrics,
            BTreeMap::from([("accuracy".into(), 0.95)])
        );
        assert_eq!(r.version.lineage["dataset"], "blake3:dd");
        assert_eq!(r.version.created_at, "2026-12-01T10:00:00Z");
        // One registered outside mlctl has the service's time.
        let outside = json!({"name": "4", "systemData": {"createdAt": "2026-12-02T00:00:00Z"}, "properties": {}});
        assert_eq!(
            parse_version("classifier", &outside)
                .unwrap()
                .version
                .created_at,
            "2026-12-02T00:00:00Z"
        );
        assert!(
            r.version
                .artifact_uri
                .ends_with("/artifacts/iris-train-1a2b/model/")
        );
        // What is read-only is not sent back.
        assert!(!r.properties.contains_key("provisioningState"));
    }

    #[test]
    fn versions_made_outside_mlctl_read_as_pending_staging() {
        let v =
            json!({"name": "7", "properties": {"stage": "Development", "modelUri": "azureml://x"}});
        let r = parse_version("m", &v).unwrap();
        assert_eq!(
            (r.version.stage, r.version.approval),
            (Stage::Staging, ApprovalStatus::PendingManualApproval)
        );
        assert!(parse_version("m", &json!({"name": "latest", "properties": {}})).is_none());
    }

    #[test]
    fn a_new_version_number_follows_every_number_used() {
        use crate::registry::next_version;
        assert_eq!(next_version(0, &json!({"properties": {}})), 1);
        assert_eq!(
            next_version(2, &json!({"properties": {"latestVersion": "2"}})),
            3
        );
        // Versions 3 and 4 were deleted: their numbers are not reused.
        assert_eq!(
            next_version(2, &json!({"properties": {"latestVersion": "4"}})),
            5
        );
        assert_eq!(
            next_version(2, &json!({"properties": {"nextVersion": "7"}})),
            7
        );
        assert_eq!(
            next_version(3, &json!({"properties": {"latestVersion": "custom"}})),
            4
        );
    }

    #[test]
    fn model_names_are_prefixed_by_the_project_and_fit() {
        assert_eq!(model_name("iris", "classifier"), "iris-classifier");
        assert_eq!(model_name("my proj", "a/b"), "my-proj-a-b");
        let long = model_name("p", &"x".repeat(400));
        assert_eq!(long.len(), 255);
        assert_ne!(long, model_name("p", &"x".repeat(401)));
    }
}

#[test]
fn the_registry_declares_only_model_fields() {
    let rules = crate::registry::field_rules();
    let fields: Vec<&String> = rules.iter().map(|(f, _)| f).collect();
    assert_eq!(fields, ["Model.metadata.labels", "Model.spec.description"]);
}

// ---------------------------------------------------------------------------------------------
// The registry against the scripted server (the calls that touch no blob).

mod registry_calls {
    use super::{Server, W, answer, client};
    use crate::azure::{Azure, Features};
    use crate::blob::{Blob, BlobAuth};
    use crate::registry::AzureRegistry;
    use mlctl_core::components::InPlaceRequest;
    use mlctl_core::{ApprovalStatus, Decision, ErrorKind, OpContext, Registry, Tags};
    use serde_json::{Value, json};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    const VERSIONS: &str = "models/iris-classifier/versions";

    fn registry(base: &str) -> AzureRegistry {
        let settings = super::settings(2);
        let target = super::credentials_target();
        let blob = Blob::connect(&target.storage, BlobAuth::Sas("sv=x".into()), &settings).unwrap();
        AzureRegistry::new(Arc::new(Azure {
            arm: client(base, 2),
            blob: blob.into(),
            target,
            settings,
            features: Features::FAKE_ARM,
        }))
    }

    fn ctx() -> OpContext {
        OpContext {
            project: "iris".into(),
            project_dir: std::env::temp_dir(),
            target: "azure".into(),
            commit: "abc123".into(),
        }
    }

    /// A version as the service returns it (read-only fields included).
    fn stored(n: u32, approval: &str, stage: &str, labels: Value) -> Value {
        let mut tags = json!({"mlctl:project": "iris", "mlctl:resource": "Model/classifier",
            "mlctl:fingerprint": format!("fp{n}"), "mlctl:commit": "abc123",
            "mlctl:model": "classifier", "mlctl:approval": approval});
        for (k, v) in labels.as_object().unwrap() {
            tags[k] = v.clone();
        }
        json!({
            "id": format!("{W}/{VERSIONS}/{n}"), "name": n.to_string(),
            "systemData": {"createdAt": "2026-12-01T10:00:00Z"},
            "properties": {
                "modelType": "custom_model", "modelUri": format!("https://acct.blob.core.windows.net/ml/artifacts/j{n}/model/"),
                "stage": stage, "description": "old", "tags": tags, "provisioningState": "Succeeded",
                "properties": {"mlctl.registryFormat": "1", "mlctl.fingerprint": format!("fp{n}"), "mlctl.metric.accuracy": "0.9"}
            }
        })
    }

    fn body_of(s: &Server, i: usize) -> Value {
        serde_json::from_str(&s.seen()[i].body).unwrap()
    }

    #[tokio::test]
    async fn versions_are_read_oldest_first_with_archived_ones() {
        let s = Server::start(vec![answer("GET", &format!("{W}/{VERSIONS}"), 200).json(json!({
            "value": [stored(2, "Approved", "Production", json!({})), stored(1, "Approved", "Archived", json!({}))]}))])
        .await;
        let versions = registry(&s.base)
            .versions(&ctx(), "classifier")
            .await
            .unwrap();
        s.assert_done();
        assert_eq!(s.seen()[0].query, "api-version=2025-12-01&listViewType=All");
        let got: Vec<(u32, mlctl_spec::Stage)> =
            versions.iter().map(|v| (v.version, v.stage)).collect();
        assert_eq!(
            got,
            [
                (1, mlctl_spec::Stage::Archived),
                (2, mlctl_spec::Stage::Production)
            ]
        );
        assert_eq!(versions[0].metrics["accuracy"], 0.9);
    }

    #[tokio::test]
    async fn approving_writes_the_tag_and_sends_back_only_writable_fields() {
        let mut approved = stored(1, "Approved", "Staging", json!({}));
        approved["properties"]["tags"]["mlctl:decidedAt"] = json!("2026-12-01T11:00:00Z");
        let s = Server::start(vec![
            answer("GET", &format!("{W}/{VERSIONS}"), 200)
                .json(json!({"value": [stored(1, "PendingManualApproval", "Staging", json!({}))]})),
            answer("PUT", &format!("{W}/{VERSIONS}/1"), 200).json(approved),
        ])
        .await;
        let v = registry(&s.base)
            .decide(&ctx(), "classifier", 1, Decision::Approve)
            .await
            .unwrap();
        s.assert_done();
        assert_eq!(v.approval, ApprovalStatus::Approved);
        let sent = body_of(&s, 1);
        let p = &sent["properties"];
        assert_eq!(p["tags"]["mlctl:approval"], "Approved");
        assert!(p["tags"]["mlctl:decidedAt"].is_string());
        assert_eq!(p["stage"], "Staging");
        assert_eq!(
            p["modelUri"],
            "https://acct.blob.core.windows.net/ml/artifacts/j1/model/"
        );
        assert!(p.get("provisioningState").is_none(), "{sent}");
        assert!(
            sent.get("systemData").is_none() && sent.get("id").is_none(),
            "{sent}"
        );
    }

    #[tokio::test]
    async fn an_unknown_version_is_not_found_and_a_refused_decision_writes_nothing() {
        let list = || {
            answer("GET", &format!("{W}/{VERSIONS}"), 200)
                .json(json!({"value": [stored(1, "Rejected", "Staging", json!({}))]}))
        };
        let s = Server::start(vec![list(), list()]).await;
        let r = registry(&s.base);
        let e = r
            .decide(&ctx(), "classifier", 9, Decision::Approve)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        let e = r
            .decide(&ctx(), "classifier", 1, Decision::Approve)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Precondition);
        s.assert_done();
        assert_eq!(s.seen().len(), 2);
    }

    #[tokio::test]
    async fn registering_a_known_fingerprint_returns_that_version() {
        let s = Server::start(vec![
            answer("PUT", &format!("{W}/models/iris-classifier"), 200)
                .json(json!({"name": "iris-classifier", "properties": {"latestVersion": "1"}})),
            answer("GET", &format!("{W}/{VERSIONS}"), 200)
                .json(json!({"value": [stored(1, "Approved", "Staging", json!({}))]})),
        ])
        .await;
        let mut req = super::registry_bodies_request();
        req.fingerprint = "fp1".into();
        let v = registry(&s.base).register(&ctx(), &req).await.unwrap();
        s.assert_done();
        assert_eq!((v.version, v.fingerprint.as_str()), (1, "fp1"));
        assert_eq!(
            body_of(&s, 0)["properties"]["description"],
            "Iris classifier"
        );
    }

    #[tokio::test]
    async fn labels_and_description_change_in_place_keeping_the_approval() {
        let s = Server::start(vec![
            answer("GET", &format!("{W}/{VERSIONS}"), 200).json(json!({"value": [
                stored(1, "Approved", "Production", json!({"team": "ml", "old": "x"}))]})),
            answer("PUT", &format!("{W}/{VERSIONS}/1"), 200).json(stored(
                1,
                "Approved",
                "Production",
                json!({"team": "ds"}),
            )),
            answer("PUT", &format!("{W}/models/iris-classifier"), 200)
                .json(json!({"name": "iris-classifier"})),
        ])
        .await;
        let outputs = serde_json::to_value(
            crate::registry::parse_version(
                "classifier",
                &stored(1, "Approved", "Production", json!({})),
            )
            .unwrap()
            .version,
        )
        .unwrap();
        let req = InPlaceRequest {
            name: "classifier".into(),
            fingerprint: "fp1".into(),
            outputs,
            tags: Tags {
                project: "iris".into(),
                resource: "Model/classifier".into(),
                fingerprint: "fp1".into(),
                commit: "def456".into(),
                labels: BTreeMap::from([("team".into(), "ds".into())]),
            },
            removed_labels: vec!["old".into()],
            description: Some("new".into()),
        };
        registry(&s.base)
            .update_in_place(&ctx(), &req)
            .await
            .unwrap();
        s.assert_done();
        let p = &body_of(&s, 1)["properties"];
        assert_eq!(p["description"], "new");
        assert_eq!(p["stage"], "Production");
        assert_eq!(p["tags"]["team"], "ds");
        assert_eq!(p["tags"]["mlctl:approval"], "Approved");
        assert_eq!(p["tags"]["mlctl:commit"], "def456");
        assert!(p["tags"].get("old").is_none(), "{p}");
        let c = &body_of(&s, 2)["properties"];
        assert_eq!(
            (c["description"].as_str(), c["tags"]["team"].as_str()),
            (Some("new"), Some("ds"))
        );
    }
}

fn registry_bodies_request() -> mlctl_core::RegisterRequest {
    registry_bodies::request(mlctl_spec::Approval::Auto)
}
