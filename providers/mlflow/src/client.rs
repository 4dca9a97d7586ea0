//! MLflow's REST API 2.0 over reqwest: JSON calls under `/api/2.0/mlflow/` and artifact
//! uploads through the server's `mlflow-artifacts` proxy, with the target's bearer token or
//! basic auth. A call that fails for a reason worth retrying (no connection, 429, 5xx) is
//! tried once more after a short pause; a second failure is the caller's to report.

use mlctl_spec::Tracking;
use serde_json::Value;
use std::time::Duration;

/// How a call failed.
#[derive(Debug, Clone, PartialEq)]
pub struct CallError {
    /// HTTP status, when the server answered.
    pub status: Option<u16>,
    /// MLflow's `error_code` (`RESOURCE_DOES_NOT_EXIST`, ...), when it sent one.
    pub code: Option<String>,
    /// What happened, for the user (never a credential: the request's URL and headers are
    /// not in it).
    pub message: String,
}

impl CallError {
    /// MLflow said the thing does not exist.
    pub fn not_found(&self) -> bool {
        self.status == Some(404) || self.code.as_deref() == Some("RESOURCE_DOES_NOT_EXIST")
    }

    /// MLflow said it exists already.
    pub fn already_exists(&self) -> bool {
        self.code.as_deref() == Some("RESOURCE_ALREADY_EXISTS")
    }

    fn retryable(&self) -> bool {
        match self.status {
            None => true,
            Some(s) => s == 429 || s >= 500,
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.status, &self.code) {
            (Some(s), Some(c)) => write!(f, "{s} {c}: {}", self.message),
            (Some(s), None) => write!(f, "{s}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

enum Auth {
    None,
    Bearer(String),
    Basic(String, String),
}

/// A client of one tracking server.
pub struct Client {
    base: String,
    http: reqwest::Client,
    auth: Auth,
    pause: Duration,
}

/// The most bytes of a server's error body a message quotes.
const MAX_ERROR_BODY: usize = 300;

impl Client {
    /// A client for the target's `tracking:` (its `${env:...}` already resolved).
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(t: &Tracking) -> Result<Client, CallError> {
        let auth = match (&t.token, &t.username, &t.password) {
            (Some(token), _, _) => Auth::Bearer(token.clone()),
            (None, Some(u), Some(p)) => Auth::Basic(u.clone(), p.clone()),
            _ => Auth::None,
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| CallError {
                status: None,
                code: None,
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Client {
            base: t.uri.trim_end_matches('/').to_string(),
            http,
            auth,
            pause: Duration::from_millis(500),
        })
    }

    /// The same client with another pause before its retry (tests).
    pub fn with_pause(mut self, pause: Duration) -> Client {
        self.pause = pause;
        self
    }

    /// The server's base URL, as configured.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Auth::None => req,
            Auth::Bearer(t) => req.bearer_auth(t),
            Auth::Basic(u, p) => req.basic_auth(u, Some(p)),
        }
    }

    /// `GET /api/2.0/mlflow/<path>?<query>`.
    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, CallError> {
        let mut url = format!("{}/api/2.0/mlflow/{path}", self.base);
        for (i, (k, v)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&mlctl_core::url::percent_encode(k));
            url.push('=');
            url.push_str(&mlctl_core::url::percent_encode(v));
        }
        self.retrying(|| self.authed(self.http.get(&url))).await
    }

    /// `POST /api/2.0/mlflow/<path>` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, CallError> {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        self.retrying(|| self.authed(self.http.post(&url).json(body)))
            .await
    }

    /// `PATCH /api/2.0/mlflow/<path>` with a JSON body.
    pub async fn patch(&self, path: &str, body: &Value) -> Result<Value, CallError> {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        self.retrying(|| self.authed(self.http.patch(&url).json(body)))
            .await
    }

    /// `DELETE /api/2.0/mlflow/<path>` with a JSON body.
    pub async fn delete(&self, path: &str, body: &Value) -> Result<Value, CallError> {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        self.retrying(|| self.authed(self.http.delete(&url).json(body)))
            .await
    }

    /// Uploads one file through the artifact proxy: `artifact_uri` is a run's
    /// `mlflow-artifacts:/...` URI, `path` the file's path under it.
    ///
    /// # Errors
    /// The URI is not an `mlflow-artifacts:` one (the server does not proxy artifacts: run it
    /// with `--artifacts-destination`, the default since MLflow 2), or the upload failed.
    pub async fn put_artifact(
        &self,
        artifact_uri: &str,
        path: &str,
        bytes: Vec<u8>,
    ) -> Result<(), CallError> {
        let url = format!("{}/{}", self.artifact_url(artifact_uri)?, encode_path(path));
        self.retrying(|| {
            self.authed(
                self.http
                    .put(&url)
                    .header("Content-Type", "application/octet-stream")
                    .body(bytes.clone()),
            )
        })
        .await
        .map(|_| ())
    }

    /// Downloads one file through the artifact proxy (see [`Client::put_artifact`]).
    ///
    /// # Errors
    /// Not an `mlflow-artifacts:` URI, or the download failed.
    pub async fn get_artifact(&self, artifact_uri: &str, path: &str) -> Result<Vec<u8>, CallError> {
        let url = format!("{}/{}", self.artifact_url(artifact_uri)?, encode_path(path));
        self.send_bytes(|| self.authed(self.http.get(&url))).await
    }

    /// The files and directories directly under `dir` (relative to `artifact_uri`, `""` for
    /// its root), each as its path relative to `artifact_uri` and whether it is a directory.
    ///
    /// # Errors
    /// Not an `mlflow-artifacts:` URI, or the listing failed.
    pub async fn list_artifacts(
        &self,
        artifact_uri: &str,
        dir: &str,
    ) -> Result<Vec<(String, bool)>, CallError> {
        let base = self.artifact_url(artifact_uri)?;
        let root = base
            .split_once("/api/2.0/mlflow-artifacts/artifacts/")
            .map(|(_, p)| p.to_string())
            .unwrap_or_default();
        let path = if dir.is_empty() {
            root
        } else {
            format!("{root}/{dir}")
        };
        let url = format!(
            "{}/api/2.0/mlflow-artifacts/artifacts?path={}",
            self.base,
            mlctl_core::url::percent_encode(&path)
        );
        let listing = self.retrying(|| self.authed(self.http.get(&url))).await?;
        Ok(listing["files"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| {
                let name = f["path"].as_str()?;
                let full = if dir.is_empty() {
                    name.to_string()
                } else {
                    format!("{dir}/{name}")
                };
                Some((full, f["is_dir"].as_bool().unwrap_or(false)))
            })
            .collect())
    }

    /// The proxy's URL of an `mlflow-artifacts:` URI (`mlflow-artifacts:/1/abc/artifacts`,
    /// or with the server's host: `mlflow-artifacts://host:port/1/abc/artifacts`).
    fn artifact_url(&self, artifact_uri: &str) -> Result<String, CallError> {
        let rest = artifact_uri
            .strip_prefix("mlflow-artifacts:")
            .ok_or_else(|| CallError {
                status: None,
                code: None,
                message: format!(
                    "the server keeps artifacts at `{}`, which mlctl cannot upload to; start it with `--artifacts-destination` (artifacts proxied as mlflow-artifacts:/)",
                    mlctl_spec::suggest::quote(artifact_uri)
                ),
            })?;
        let path = match rest.strip_prefix("//") {
            // `//host:port/path`: the path after the authority.
            Some(with_host) => with_host.split_once('/').map(|(_, p)| p).unwrap_or(""),
            None => rest.trim_start_matches('/'),
        };
        Ok(format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{}",
            self.base,
            path.trim_end_matches('/')
        ))
    }

    async fn retrying(
        &self,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Value, CallError> {
        let bytes = self.send_bytes(make).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Object(Default::default()));
        }
        serde_json::from_slice(&bytes).map_err(|e| CallError {
            status: None,
            code: None,
            message: format!("the server's answer is not JSON: {e}"),
        })
    }

    async fn send_bytes(
        &self,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, CallError> {
        let mut last = None;
        for attempt in 0..2 {
            if attempt > 0 {
                tokio::time::sleep(self.pause).await;
            }
            match self.once(make()).await {
                Ok(b) => return Ok(b),
                Err(e) if e.retryable() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("two attempts were made"))
    }

    async fn once(&self, req: reqwest::RequestBuilder) -> Result<Vec<u8>, CallError> {
        let resp = req.send().await.map_err(|e| CallError {
            status: None,
            code: None,
            // Without the URL: it is the configured one, and may carry user info.
            message: format!("cannot reach the tracking server: {}", e.without_url()),
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| CallError {
            status: Some(status.as_u16()),
            code: None,
            message: format!("the answer was cut: {}", e.without_url()),
        })?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
        let code = parsed
            .as_ref()
            .and_then(|v| v.get("error_code"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let message = parsed
            .as_ref()
            .and_then(|v| v.get("message"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        let hint = match status.as_u16() {
            401 | 403 => " (check the target's tracking token, or username and password)",
            _ => "",
        };
        Err(CallError {
            status: Some(status.as_u16()),
            code,
            message: format!(
                "{}{hint}",
                mlctl_spec::suggest::clip(message.trim(), MAX_ERROR_BODY)
            ),
        })
    }
}

/// An MLflow tag list (`[{key, value}]`) as a map.
pub fn tags_of(tags: &Value) -> std::collections::BTreeMap<String, String> {
    tags.as_array()
        .into_iter()
        .flatten()
        .map(|t| (str_of(&t["key"]), str_of(&t["value"])))
        .collect()
}

/// A JSON string as it is, a number as text, anything else empty.
pub fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

impl Client {
    /// The id of experiment `name`, made (tagged with `project`) when it does not exist, also
    /// when another apply makes it meanwhile.
    ///
    /// # Errors
    /// The experiment is deleted (it would take no runs), or a call failed.
    pub async fn experiment_id(&self, name: &str, project: &str) -> Result<String, CallError> {
        let query = [("experiment_name", name)];
        let by_name = || self.get("experiments/get-by-name", &query);
        match by_name().await {
            Ok(v) if v["experiment"]["lifecycle_stage"] == "deleted" => Err(CallError {
                status: None,
                code: None,
                message: format!(
                    "experiment `{name}` is deleted; restore it (`mlflow experiments restore`) or log to another with `tracking.experiment`"
                ),
            }),
            Ok(v) => Ok(str_of(&v["experiment"]["experiment_id"])),
            Err(e) if e.not_found() => {
                let body = serde_json::json!({"name": name, "tags": [
                    {"key": "mlctl.project", "value": project},
                ]});
                match self.post("experiments/create", &body).await {
                    Ok(v) => Ok(str_of(&v["experiment_id"])),
                    Err(e) if e.already_exists() => by_name()
                        .await
                        .map(|v| str_of(&v["experiment"]["experiment_id"])),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }
}

/// A `/`-separated artifact path with each segment percent-encoded.
fn encode_path(path: &str) -> String {
    path.split('/')
        .map(mlctl_core::url::percent_encode)
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client::new(&Tracking {
            provider: mlctl_spec::TrackingProvider::Mlflow,
            uri: "http://127.0.0.1:5000/".into(),
            token: None,
            username: None,
            password: None,
            experiment: None,
            registry: None,
        })
        .unwrap()
    }

    #[test]
    fn artifact_uris_become_proxy_urls_with_or_without_the_servers_host() {
        let c = client();
        assert_eq!(
            c.artifact_url("mlflow-artifacts:/1/abc/artifacts").unwrap(),
            "http://127.0.0.1:5000/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts"
        );
        assert_eq!(
            c.artifact_url("mlflow-artifacts://127.0.0.1:5000/1/abc/artifacts/")
                .unwrap(),
            "http://127.0.0.1:5000/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts"
        );
        let e = c.artifact_url("s3://bucket/mlflow/1/abc").unwrap_err();
        assert!(e.message.contains("--artifacts-destination"), "{e}");
    }

    /// A server that answers each request with the next status of `statuses` (then 200),
    /// counting requests and keeping the last Authorization header.
    async fn scripted(
        statuses: Vec<u16>,
    ) -> (
        String,
        std::sync::Arc<std::sync::Mutex<(usize, Option<String>)>>,
    ) {
        use axum::http::{HeaderMap, StatusCode};
        let seen = std::sync::Arc::new(std::sync::Mutex::new((0usize, None::<String>)));
        let state = seen.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap| {
            let state = state.clone();
            let statuses = statuses.clone();
            async move {
                let mut s = state.lock().unwrap();
                let n = s.0;
                s.0 += 1;
                s.1 = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let code = statuses.get(n).copied().unwrap_or(200);
                let body = if code == 200 {
                    r#"{"experiment_id": "7"}"#.to_string()
                } else {
                    format!(r#"{{"error_code": "E{code}", "message": "scripted {code}"}}"#)
                };
                (StatusCode::from_u16(code).unwrap(), body)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, seen)
    }

    fn client_of(url: &str, token: Option<&str>) -> Client {
        Client::new(&Tracking {
            provider: mlctl_spec::TrackingProvider::Mlflow,
            uri: url.to_string(),
            token: token.map(str::to_string),
            username: None,
            password: None,
            experiment: None,
            registry: None,
        })
        .unwrap()
        .with_pause(Duration::from_millis(1))
    }

    #[tokio::test]
    async fn a_failure_worth_retrying_is_tried_once_more_and_then_reported() {
        let (url, seen) = scripted(vec![503]).await;
        let c = client_of(&url, Some("tok"));
        let v = c
            .get("experiments/get-by-name", &[("experiment_name", "a b")])
            .await
            .unwrap();
        assert_eq!(v["experiment_id"], "7");
        assert_eq!(seen.lock().unwrap().0, 2);
        assert_eq!(seen.lock().unwrap().1.as_deref(), Some("Bearer tok"));

        let (url, seen) = scripted(vec![503, 502, 503]).await;
        let e = client_of(&url, None)
            .post("runs/create", &serde_json::json!({}))
            .await
            .unwrap_err();
        assert_eq!(seen.lock().unwrap().0, 2, "two attempts, no more");
        assert_eq!(e.status, Some(502));
        assert!(e.message.contains("scripted 502"), "{e}");
    }

    #[tokio::test]
    async fn basic_auth_is_sent_as_mlflows_basic_auth_app_reads_it() {
        let (url, seen) = scripted(vec![]).await;
        let c = Client::new(&Tracking {
            provider: mlctl_spec::TrackingProvider::Mlflow,
            uri: url,
            token: None,
            username: Some("bob".into()),
            password: Some("pw".into()),
            experiment: None,
            registry: None,
        })
        .unwrap();
        c.get("experiments/search", &[]).await.unwrap();
        assert_eq!(seen.lock().unwrap().1.as_deref(), Some("Basic Ym9iOnB3"));
    }

    #[tokio::test]
    async fn a_refusal_is_not_retried_and_says_what_to_check() {
        let (url, seen) = scripted(vec![401]).await;
        let e = client_of(&url, Some("wrong"))
            .post("runs/create", &serde_json::json!({}))
            .await
            .unwrap_err();
        assert_eq!(seen.lock().unwrap().0, 1);
        assert!(e.message.contains("tracking token"), "{e}");
        assert!(
            !e.message.contains("wrong"),
            "the token is never in a message: {e}"
        );
    }

    #[test]
    fn artifact_paths_are_encoded_segment_by_segment() {
        assert_eq!(encode_path("model/my file.json"), "model/my%20file.json");
    }
}
