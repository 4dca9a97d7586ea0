//! The HTTP server: routes, the request path, traffic split and model swaps.
//!
//! # Routes
//! - `POST /invocations` — predictions (see [`crate::parse`] for the accepted bodies);
//!   answers `{"predictions": [...]}`, or CSV lines with `Accept: text/csv`.
//! - `GET /ping`, `GET /health` — 200 when every variant with traffic can serve, else 503.
//! - `GET /metrics` — Prometheus text ([`crate::metrics`]).
//! - `GET /-/variants` — what serves now ([`ServerInfo`]).
//! - `PUT /-/variants` — swap models / change weights ([`Variants`]); needs the control token.
//! - `PUT /-/auth` — a new bearer token ([`AuthUpdate`]), kept in memory only; needs the
//!   control token. A rotation over several processes sets the new token beside the old in
//!   every one (`keepPrevious`), then alone in every one, so no valid request is refused.
//!
//! # Guarantees
//! - A swap never drops a request: the routing table is one pointer ([`ArcSwap`]); a request
//!   takes the variant it was routed to along with it, and the old model is freed (a script
//!   child stopped) only when its last request has finished. A reconfiguration that fails (a
//!   model that does not load, a script that does not start) changes nothing.
//! - The traffic split is deterministic: a shared counter walks a smooth weighted round-robin
//!   table, so with weights 90/10 every 100 consecutive requests send exactly 10 to the second
//!   variant. `X-Mlctl-Variant: NAME` (or SageMaker's `X-Amzn-SageMaker-Target-Variant`)
//!   picks a variant explicitly, also one with weight 0.
//! - Auth: with a token, `/invocations` and `/metrics` need `Authorization: Bearer TOKEN`
//!   (compared in constant time; during a rotation, the one before is accepted too, see
//!   `PUT /-/auth`); `/ping` and `/health` stay open for health checks. The
//!   control token is accepted wherever the token is. `/health` without the control token
//!   names each variant's model, version, weight and readiness only; with it, the full
//!   configuration (model directory, command, code directory).

use crate::ServeError;
use crate::capture::{self, Capture, CaptureConfig, Payload, Record, Source};
use crate::config::{
    Announcement, AuthState, AuthUpdate, ConnectionLimits, ControlListener, ServerInfo,
    VariantConfig, VariantHealth, VariantStatus, Variants, validate,
};
use crate::metrics::{Metrics, VariantMetrics};
use crate::parse::{self, InputError};
use crate::predictor::DynPredictor;
use crate::schema::Output;
use crate::script::Upstream;
use arc_swap::ArcSwap;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Instant, SystemTime};
use tokio::sync::Mutex;

/// Loads a model directory.
pub type Loader = Arc<
    dyn Fn(&Path) -> Result<DynPredictor, Box<dyn std::error::Error + Send + Sync>> + Send + Sync,
>;

/// How a server runs.
#[derive(Clone)]
pub struct ServerOptions {
    /// Address to bind (default 127.0.0.1:8080; port 0 picks a free one).
    pub addr: SocketAddr,
    /// Largest accepted request body (default 8 MiB); larger ones get 413.
    pub max_body_bytes: usize,
    /// Data capture, if any.
    pub capture: Option<CaptureConfig>,
    /// Bearer token for `/invocations` and `/metrics`.
    pub auth_token: Option<String>,
    /// Token for `PUT /-/variants` (no token: control is disabled).
    pub control_token: Option<String>,
    /// Bind `addr` with `SO_REUSEPORT`, sharing the port with other servers that do too.
    pub reuse_port: bool,
    /// A private control listener, announced in its directory ([`ControlListener`]).
    pub control: Option<ControlListener>,
    /// What a request that breaks the model's input signature gets (default strict: 400).
    pub enforce: mlctl_spec::Enforce,
    /// Connection deadlines and cap.
    pub limits: ConnectionLimits,
    /// How model directories are loaded.
    pub loader: Loader,
    /// Threads that answer requests, each with its own single-threaded runtime (0: answer on
    /// the runtime that calls [`start`]).
    pub threads: usize,
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("addr", &self.addr)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("capture", &self.capture)
            .field("auth", &self.auth_token.is_some())
            .field("control", &self.control_token.is_some())
            .field("reuse_port", &self.reuse_port)
            .field("control_listener", &self.control)
            .field("enforce", &self.enforce)
            .field("limits", &self.limits)
            .field("threads", &self.threads)
            .finish()
    }
}

impl ServerOptions {
    /// Defaults with this loader.
    pub fn new(loader: Loader) -> Self {
        ServerOptions {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 8 << 20,
            capture: None,
            auth_token: None,
            control_token: None,
            reuse_port: false,
            control: None,
            enforce: mlctl_spec::Enforce::Strict,
            limits: ConnectionLimits::default(),
            loader,
            threads: 0,
        }
    }
}

enum Backend {
    Model(DynPredictor),
    Script(Arc<Upstream>),
}

/// One loaded variant.
struct Variant {
    config: VariantConfig,
    backend: Backend,
    metrics: Arc<VariantMetrics>,
    source: Arc<Source>,
    /// Pre-encoded class labels (JSON string literals), for the response.
    labels: Option<Vec<String>>,
}

impl Variant {
    fn healthy(&self) -> bool {
        match &self.backend {
            Backend::Model(_) => true,
            Backend::Script(u) => u.healthy(),
        }
    }
}

struct Routing {
    variants: Vec<Arc<Variant>>,
    /// Variant index per slot, walked by the request counter.
    table: Vec<u8>,
}

/// Smooth weighted round-robin (nginx's), unrolled into a table of `sum(weights)` slots.
fn split_table(weights: &[u32]) -> Vec<u8> {
    let total: u64 = weights.iter().map(|&w| w as u64).sum();
    // Keep the table small: shares are what matter.
    let g = weights.iter().fold(0u64, |g, &w| gcd(g, w as u64)).max(1);
    let scaled: Vec<i64> = weights.iter().map(|&w| (w as u64 / g) as i64).collect();
    let n = (total / g).min(100_000) as usize;
    let sum: i64 = scaled.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut table = Vec::with_capacity(n);
    for _ in 0..n {
        let mut best = 0;
        for i in 0..scaled.len() {
            current[i] += scaled[i];
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= sum;
        table.push(best as u8);
    }
    table
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The shared state of a server.
pub struct App {
    routing: ArcSwap<Routing>,
    counter: AtomicU64,
    metrics: Arc<Metrics>,
    capture: Option<Capture>,
    /// The bearer tokens accepted; `None`: the server was started open, and stays so.
    auth: Option<ArcSwap<Tokens>>,
    control: Option<Vec<u8>>,
    max_body: usize,
    body_timeout: std::time::Duration,
    limits: ConnectionLimits,
    enforce: mlctl_spec::Enforce,
    loader: Loader,
    /// Serializes reconfigurations (the swap itself is lock-free for requests).
    reconfiguring: Mutex<()>,
}

/// The bearer tokens a server accepts: the current one and, during a rotation, the one before.
struct Tokens {
    current: Vec<u8>,
    previous: Option<Vec<u8>>,
}

impl Tokens {
    fn accepts(&self, given: &[u8]) -> bool {
        // Both compared, always: how long the check takes says nothing about which matched.
        let current = ct_eq(&self.current, given);
        let previous = self.previous.as_deref().is_some_and(|p| ct_eq(p, given));
        current | previous
    }

    fn count(&self) -> u32 {
        1 + u32::from(self.previous.is_some())
    }
}

impl App {
    /// Loads the variants and builds the state (no socket yet).
    pub async fn new(
        opts: &ServerOptions,
        variants: Vec<VariantConfig>,
    ) -> Result<Arc<App>, ServeError> {
        validate(&variants)?;
        let metrics = Arc::new(Metrics::default());
        let dropped = Arc::new(AtomicU64::new(0));
        let capture =
            match &opts.capture {
                Some(c) if c.percent > 0.0 => Some(Capture::start(c, dropped).map_err(
                    |source| ServeError::File {
                        path: c.dir.clone(),
                        source,
                    },
                )?),
                _ => None,
            };
        let app = Arc::new(App {
            routing: ArcSwap::from_pointee(Routing {
                variants: Vec::new(),
                table: Vec::new(),
            }),
            counter: AtomicU64::new(0),
            metrics,
            capture,
            auth: opts.auth_token.as_ref().filter(|t| !t.is_empty()).map(|t| {
                ArcSwap::from_pointee(Tokens {
                    current: t.as_bytes().to_vec(),
                    previous: None,
                })
            }),
            control: opts
                .control_token
                .as_ref()
                .filter(|t| !t.is_empty())
                .map(|t| t.as_bytes().to_vec()),
            max_body: opts.max_body_bytes,
            body_timeout: opts.limits.body_timeout(),
            limits: opts.limits,
            enforce: opts.enforce,
            loader: opts.loader.clone(),
            reconfiguring: Mutex::new(()),
        });
        app.reconfigure(variants).await?;
        Ok(app)
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Replaces the variants (a model swap, a weight change), keeping loaded models and running
    /// scripts whose configuration is unchanged. On error nothing changes.
    ///
    /// # Errors
    /// An invalid configuration, or a variant that cannot be loaded or started.
    pub async fn reconfigure(&self, variants: Vec<VariantConfig>) -> Result<(), ServeError> {
        validate(&variants)?;
        let _guard = self.reconfiguring.lock().await;
        let current = self.routing.load_full();
        let mut loaded = Vec::with_capacity(variants.len());
        for cfg in variants {
            let existing = current
                .variants
                .iter()
                .find(|v| v.config.same_backend(&cfg));
            let v = match existing {
                Some(old) => Variant {
                    config: cfg,
                    backend: match &old.backend {
                        Backend::Model(p) => Backend::Model(p.clone()),
                        Backend::Script(u) => Backend::Script(u.clone()),
                    },
                    metrics: old.metrics.clone(),
                    source: old.source.clone(),
                    labels: old.labels.clone(),
                },
                None => self.load(cfg).await?,
            };
            v.metrics.set_weight(v.config.weight);
            loaded.push(Arc::new(v));
        }
        for old in &current.variants {
            if !loaded.iter().any(|v| v.config.name == old.config.name) {
                old.metrics.set_weight(0);
            }
        }
        let weights: Vec<u32> = loaded.iter().map(|v| v.config.weight).collect();
        if loaded.len() > u8::MAX as usize {
            return Err(ServeError::Config("at most 255 variants".into()));
        }
        self.routing.store(Arc::new(Routing {
            table: split_table(&weights),
            variants: loaded,
        }));
        Ok(())
    }

    async fn load(&self, cfg: VariantConfig) -> Result<Variant, ServeError> {
        let metrics = self.metrics.variant(&cfg.model, &cfg.version, &cfg.name);
        let (backend, predictor) = if cfg.command.is_some() {
            (Backend::Script(Upstream::start(&cfg).await?), None)
        } else {
            let dir = cfg.model_dir.clone().unwrap_or_default();
            let loader = self.loader.clone();
            let model_err = |source| ServeError::Model {
                variant: cfg.name.clone(),
                dir: cfg.model_dir.clone().unwrap_or_default(),
                source,
            };
            let p = tokio::task::spawn_blocking(move || loader(&dir))
                .await
                .map_err(|e| model_err(format!("loading panicked: {e}").into()))?
                .map_err(model_err)?;
            (Backend::Model(p.clone()), Some(p))
        };
        let labels = predictor.as_ref().and_then(|p| match p.output() {
            Output::Classes(l) => Some(
                p.class_literals()
                    .filter(|typed| typed.len() == l.len())
                    .unwrap_or_else(|| l.iter().map(|s| crate::json::string_literal(s)).collect()),
            ),
            Output::Number => None,
        });
        let source = Arc::new(Source {
            model: cfg.model.clone(),
            version: cfg.version.clone(),
            variant: cfg.name.clone(),
            predictor,
        });
        Ok(Variant {
            config: cfg,
            backend,
            metrics,
            source,
            labels,
        })
    }

    /// What serves now.
    pub fn info(&self) -> ServerInfo {
        let r = self.routing.load();
        ServerInfo {
            pid: std::process::id(),
            server_version: env!("CARGO_PKG_VERSION").to_string(),
            variants: r
                .variants
                .iter()
                .map(|v| VariantStatus {
                    config: v.config.clone(),
                    healthy: v.healthy(),
                })
                .collect(),
        }
    }

    fn healthy(&self) -> bool {
        self.routing
            .load()
            .variants
            .iter()
            .all(|v| v.config.weight == 0 || v.healthy())
    }

    fn pick(&self, headers: &HeaderMap) -> Result<Arc<Variant>, Box<Response>> {
        let r = self.routing.load();
        let named = headers
            .get("x-mlctl-variant")
            .or_else(|| headers.get("x-amzn-sagemaker-target-variant"));
        if let Some(name) = named {
            let name = name.to_str().unwrap_or("");
            return r
                .variants
                .iter()
                .find(|v| v.config.name == name)
                .cloned()
                .ok_or_else(|| {
                    let known: Vec<&str> =
                        r.variants.iter().map(|v| v.config.name.as_str()).collect();
                    Box::new(error(
                        StatusCode::BAD_REQUEST,
                        &format!("no variant named {name:?} (variants: {})", known.join(", ")),
                    ))
                });
        }
        if r.table.is_empty() {
            return Err(Box::new(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "no model is loaded",
            )));
        }
        let n = self.counter.fetch_add(1, Relaxed);
        Ok(r.variants[r.table[(n % r.table.len() as u64) as usize] as usize].clone())
    }

    fn authorized(&self, headers: &HeaderMap, allow_auth: bool) -> bool {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .map(|t| t.trim_ascii());
        let Some(given) = given else { return false };
        (allow_auth && self.auth.as_ref().is_some_and(|t| t.load().accepts(given)))
            || self.control.as_deref().is_some_and(|t| ct_eq(t, given))
    }

    /// Sets the bearer token ([`AuthUpdate`]): one pointer swap, so a request is checked
    /// against the tokens before or after it, never a mix.
    ///
    /// # Errors
    /// A message when the server was started without a token (it would open to everyone
    /// who does not send one: that takes a restart), or `token` is empty.
    pub fn set_auth(&self, update: &AuthUpdate) -> Result<AuthState, String> {
        let Some(auth) = &self.auth else {
            return Err(
                "this server was started without a bearer token; start it again with --token-env to require one".into(),
            );
        };
        if update.token.trim().is_empty() {
            return Err("the new bearer token is empty; send a token".into());
        }
        let token = update.token.as_bytes();
        let mut accepted = 0;
        auth.rcu(|now| {
            let previous = if !update.keep_previous {
                None
            } else if ct_eq(&now.current, token) {
                // Already current: a repeated first step keeps what it kept.
                now.previous.clone()
            } else {
                Some(now.current.clone())
            };
            let next = Tokens {
                current: token.to_vec(),
                previous,
            };
            accepted = next.count();
            next
        });
        Ok(AuthState { accepted })
    }

    fn check_auth(&self, headers: &HeaderMap) -> Option<Response> {
        if self.auth.is_none() || self.authorized(headers, true) {
            return None;
        }
        self.metrics.unauthorized.fetch_add(1, Relaxed);
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token: send `Authorization: Bearer TOKEN`",
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        Some(r)
    }
}

/// Constant-time comparison (length leaks, contents do not).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn error_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "BAD_REQUEST",
        401 => "UNAUTHORIZED",
        403 => "FORBIDDEN",
        404 => "NOT_FOUND",
        405 => "METHOD_NOT_ALLOWED",
        408 => "REQUEST_TIMEOUT",
        413 => "PAYLOAD_TOO_LARGE",
        415 => "UNSUPPORTED_MEDIA_TYPE",
        502 => "BAD_GATEWAY",
        503 => "SERVICE_UNAVAILABLE",
        _ => "INTERNAL_ERROR",
    }
}

/// `{"error_code": ..., "message": ...}`.
pub fn error(status: StatusCode, message: &str) -> Response {
    let mut body = String::with_capacity(message.len() + 48);
    body.push_str("{\"error_code\":\"");
    body.push_str(error_code(status));
    body.push_str("\",\"message\":");
    crate::json::push_string(&mut body, message);
    body.push('}');
    json_response(status, body)
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The router over `app`.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/invocations", post(invocations))
        .route("/ping", get(ping))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/-/variants", get(get_variants).put(put_variants))
        .route("/-/auth", axum::routing::put(put_auth))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app)
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such route: use POST /invocations, GET /ping, GET /health or GET /metrics",
    )
}

/// axum adds the `Allow` header naming the methods the route takes.
async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!(
            "{} does not take {method}: see the Allow header (POST /invocations, GET /ping, GET /health, GET /metrics)",
            uri.path()
        ),
    )
}

async fn ping(State(app): State<Arc<App>>) -> Response {
    if app.healthy() {
        Response::new(Body::from("\n"))
    } else {
        error(StatusCode::SERVICE_UNAVAILABLE, "a variant is not ready")
    }
}

async fn health(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let info = app.info();
    let ok = app.healthy();
    let status = if ok { "healthy" } else { "unhealthy" };
    // Open to anyone (load balancers, probes): only names, versions, weights and readiness.
    // Commands, code and model directories are for the holder of the control token.
    let body = if app.authorized(&headers, false) {
        serde_json::json!({"status": status, "variants": info.variants})
    } else {
        let variants: Vec<VariantHealth> = info.variants.iter().map(VariantHealth::from).collect();
        serde_json::json!({"status": status, "variants": variants})
    };
    json_response(
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        body.to_string(),
    )
}

async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(r) = app.check_auth(&headers) {
        return r;
    }
    let mut r = Response::new(Body::from(app.metrics.render()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

async fn get_variants(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(r) = app.check_auth(&headers) {
        return r;
    }
    json_response(
        StatusCode::OK,
        serde_json::to_string(&app.info()).unwrap_or_default(),
    )
}

/// The answer to a control request (`PUT route`) that may not proceed: control disabled
/// (403), or no control token (401); `None` when it may.
fn control_refusal(app: &App, headers: &HeaderMap, route: &str) -> Option<Response> {
    if app.control.is_none() {
        return Some(error(
            StatusCode::FORBIDDEN,
            &format!(
                "control is disabled: start the server with MLCTL_CONTROL_TOKEN set to enable PUT {route}"
            ),
        ));
    }
    if !app.authorized(headers, false) {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            &format!("PUT {route} needs `Authorization: Bearer <control token>`"),
        ));
    }
    None
}

async fn put_variants(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = control_refusal(&app, &headers, "/-/variants") {
        return r;
    }
    let v: Variants = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid variants: {e}")),
    };
    match app.reconfigure(v.variants).await {
        Ok(()) => json_response(
            StatusCode::OK,
            serde_json::to_string(&app.info()).unwrap_or_default(),
        ),
        Err(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

async fn put_auth(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = control_refusal(&app, &headers, "/-/auth") {
        return r;
    }
    // The body is never quoted back: it holds a token.
    let update: AuthUpdate = match serde_json::from_slice(&body) {
        Ok(u) => u,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "invalid auth update at line {} column {}: send {{\"token\": \"...\", \"keepPrevious\": false}}",
                    e.line(),
                    e.column()
                ),
            );
        }
    };
    match app.set_auth(&update) {
        Ok(state) => json_response(
            StatusCode::OK,
            serde_json::to_string(&state).unwrap_or_default(),
        ),
        Err(message) => error(StatusCode::CONFLICT, &message),
    }
}

/// The largest over-limit body (by its `Content-Length`) read and dropped before the 413,
/// so the client gets the answer instead of a reset and can reuse the connection; past it
/// the answer says `Connection: close`.
const DRAIN_LIMIT: u64 = 16 << 20;

/// Reads `body` to its end, dropping it; false when it fails or passes `cap` bytes first.
async fn drain(mut body: Body, cap: u64) -> bool {
    use http_body_util::BodyExt;
    let mut seen = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return false };
        seen += frame.data_ref().map_or(0, |d| d.len() as u64);
        if seen > cap {
            return false;
        }
    }
    true
}

/// The whole body, at most `limit` bytes, within `timeout`; or the error to answer, and
/// whether the body was still read to its end (else the connection cannot be reused).
async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, (StatusCode, String, bool)> {
    let too_large = |whole: bool| {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than the limit of {limit} bytes"),
            whole,
        )
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok())
        && len > limit as u64
    {
        // Read what the client is sending (up to DRAIN_LIMIT) before answering: a connection
        // closed with unread bytes is reset by the kernel, and a client still writing its body
        // then loses the 413 ("connection closed before message completed").
        let whole = len <= DRAIN_LIMIT
            && tokio::time::timeout(timeout, drain(body, DRAIN_LIMIT))
                .await
                .unwrap_or(false);
        return Err(too_large(whole));
    }
    let Ok(read) = tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await else {
        return Err((
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} ms",
                timeout.as_millis()
            ),
            false,
        ));
    };
    match read {
        Ok(b) => Ok(b),
        Err(e) => {
            let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(s) = src {
                if s.is::<http_body_util::LengthLimitError>() {
                    return Err(too_large(false));
                }
                src = s.source();
            }
            Err((
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {e}"),
                false,
            ))
        }
    }
}

/// The id of a request: the client's `x-request-id` when it sends a usable one (at most 128
/// visible ASCII characters), else one made here (this process's prefix and a counter).
fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(REQUEST_ID)
        && (1..=128).contains(&v.len())
        && v.as_bytes().iter().all(|b| b.is_ascii_graphic())
    {
        // A copy: the header's bytes belong to the connection's read buffer, which a
        // captured record would otherwise keep from being reused.
        return HeaderValue::from_maybe_shared(capture::keep(v.as_bytes()))
            .unwrap_or_else(|_| v.clone());
    }
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let prefix = PREFIX.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        format!(
            "{:08x}",
            (nanos as u32) ^ std::process::id().rotate_left(16)
        )
    });
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let id = capture::keep_with(prefix.len() + 21, |b| {
        let _ = std::fmt::Write::write_fmt(b, format_args!("{prefix}-{n}"));
    });
    HeaderValue::from_maybe_shared(id).unwrap_or(HeaderValue::from_static("-"))
}

/// The header a request's id travels in, both ways.
const REQUEST_ID: &str = "x-request-id";

/// `POST /invocations`: every answer, an error too, carries the request's id.
async fn invocations(State(app): State<Arc<App>>, req: Request) -> Response {
    let id = request_id(req.headers());
    let mut r = invoke(app, req, &id).await;
    r.headers_mut().insert(REQUEST_ID, id);
    r
}

async fn invoke(app: Arc<App>, req: Request, id: &HeaderValue) -> Response {
    let t0 = Instant::now();
    let (parts, body) = req.into_parts();
    if let Some(r) = app.check_auth(&parts.headers) {
        return r;
    }
    let variant = match app.pick(&parts.headers) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let body = match read_body(body, &parts.headers, app.max_body, app.body_timeout).await {
        Ok(b) => b,
        Err((status, msg, whole)) => {
            variant.metrics.observe(status.as_u16(), 0, t0.elapsed());
            let mut r = error(status, &msg);
            if !whole {
                // The rest of the body may still come: this connection is done, and says so,
                // so a client's pool does not send the next request down it.
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            return r;
        }
    };
    let ct = parts.headers.get(header::CONTENT_TYPE);
    let accept_csv = parts
        .headers
        .get(header::ACCEPT)
        .is_some_and(|a| a.as_bytes().starts_with(b"text/csv"));

    match &variant.backend {
        Backend::Model(p) => predict(
            &app,
            &variant,
            p,
            ct.map(HeaderValue::as_bytes),
            &body,
            Answer {
                csv: accept_csv,
                proba: wants_proba(parts.uri.query()),
                explain: wants_explanations(parts.uri.query()),
            },
            Call { at: t0, id },
        ),
        Backend::Script(u) => {
            proxy(
                &app,
                &variant,
                u,
                ct,
                parts.headers.get(header::ACCEPT),
                body,
                Call { at: t0, id },
            )
            .await
        }
    }
}

/// One call of `/invocations`: when it started and its id.
#[derive(Clone, Copy)]
struct Call<'a> {
    at: Instant,
    id: &'a HeaderValue,
}

/// How to answer a prediction request.
#[derive(Clone, Copy)]
struct Answer {
    /// `Accept: text/csv`.
    csv: bool,
    /// `?predict_method=predict_proba`: class probabilities (also asked by the body's MLflow
    /// `params`).
    proba: bool,
    /// `?explain=true`: each input column's contribution to each prediction.
    explain: bool,
}

/// `?explain=true` in the query string.
fn wants_explanations(query: Option<&str>) -> bool {
    query.is_some_and(|q| q.split('&').any(|kv| kv == "explain=true"))
}

/// `?predict_method=predict_proba` in the query string (MLflow's inference parameter, for
/// bodies without `params`, such as CSV).
fn wants_proba(query: Option<&str>) -> bool {
    query.is_some_and(|q| q.split('&').any(|kv| kv == "predict_method=predict_proba"))
}

/// A header value from a message: visible ASCII only, at most 200 bytes.
fn header_text(message: &str) -> HeaderValue {
    let mut s: String = message
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if s.len() > 200 {
        s.truncate(197);
        s.push_str("...");
    }
    HeaderValue::from_str(&s).unwrap_or(HeaderValue::from_static("?"))
}

fn predict(
    app: &App,
    variant: &Variant,
    p: &DynPredictor,
    ct: Option<&[u8]>,
    body: &Bytes,
    answer: Answer,
    call: Call<'_>,
) -> Response {
    let (t0, id) = (call.at, call.id);
    let accept_csv = answer.csv;
    // Every answer the sample takes is captured, failures too, so error rates and latencies
    // judged from the capture cover them.
    let failed = |status: StatusCode, message: &str| {
        let elapsed = t0.elapsed();
        variant.metrics.observe(status.as_u16(), 0, elapsed);
        if let Some(c) = &app.capture
            && c.sample()
        {
            c.send(Record {
                time: SystemTime::now(),
                request_id: id.clone(),
                source: variant.source.clone(),
                status: status.as_u16(),
                latency: elapsed,
                payload: Payload::Failed {
                    message: message.to_string(),
                },
            });
        }
        error(status, message)
    };
    let fail = |e: InputError| {
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
        failed(status, &e.message)
    };
    let format = match parse::format_of(ct) {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    let schema = p.schema();
    let mut raw = Vec::with_capacity(schema.width() * 4);
    let lenient = app.enforce != mlctl_spec::Enforce::Strict;
    let mut parsed = match parse::parse_request(body, format, schema, lenient, &mut raw) {
        Ok(parsed) => parsed,
        Err(e) => return fail(e),
    };
    let rows = parsed.rows;
    if (answer.proba || parsed.predict_proba) && !p.has_probabilities() {
        return fail(InputError::bad(
            "this model is not a classifier, so it has no class probabilities; ask without `predict_method: predict_proba`",
        ));
    }
    if answer.explain {
        if accept_csv {
            return fail(InputError::bad(
                "explanations come as JSON: ask with `Accept: application/json`, or without `explain=true`",
            ));
        }
        if let Err(why) = p.explainable() {
            return fail(InputError::bad(format!("cannot explain: {why}")));
        }
    }
    let mut preds = Vec::with_capacity(rows);
    let result = p.predict(&raw, rows, &mut preds);
    let mut probs = Vec::new();
    let result = match result {
        Ok(()) if answer.proba || parsed.predict_proba => p.predict_proba(&raw, rows, &mut probs),
        other => other,
    };
    let bad = match &result {
        Err(e) => Some(format!("the model failed: {e}")),
        Ok(()) if preds.len() != rows => Some(format!(
            "the model returned {} predictions for {rows} rows",
            preds.len()
        )),
        Ok(()) => preds
            .iter()
            .position(|y| !y.is_finite())
            .map(|i| format!("the model produced no finite prediction for row {i}")),
    };
    if let Some(msg) = bad {
        return failed(StatusCode::INTERNAL_SERVER_ERROR, &msg);
    }
    let mut out = String::with_capacity(20 + rows * 12);
    let labels = variant.labels.as_deref();
    let k = labels.map_or(0, <[String]>::len);
    if !probs.is_empty() && probs.len() != rows * k {
        return failed(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!(
                "the model returned {} probabilities for {rows} rows of {k} classes",
                probs.len()
            ),
        );
    }
    if !probs.is_empty() {
        // MLflow's `predict_proba` answer: one list of class probabilities per row, in the
        // order of `classes` (also shown by `mlctl models show`).
        write_probabilities(&mut out, &probs, k, labels.unwrap_or_default(), accept_csv);
    } else if accept_csv {
        for y in &preds {
            match labels {
                Some(l) => out.push_str(l.get(*y as usize).map_or("", |s| s.trim_matches('"'))),
                None => crate::json::push_number(&mut out, *y),
            }
            out.push('\n');
        }
    } else {
        out.push_str("{\"predictions\":[");
        for (i, y) in preds.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match labels {
                Some(l) => out.push_str(l.get(*y as usize).map_or("null", String::as_str)),
                None => crate::json::push_number(&mut out, *y),
            }
        }
        out.push_str("]}");
    }
    if answer.explain {
        match p.explain(&raw, rows) {
            Ok(e) if e.contributions.len() == rows * e.features.len() * e.outputs.len() => {
                out.pop();
                write_explanations(&mut out, &e);
                out.push('}');
            }
            Ok(_) => {
                return failed(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the model's explanation does not match its rows",
                );
            }
            Err(e) => {
                return failed(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("the model failed to explain: {e}"),
                );
            }
        }
    }
    let elapsed = t0.elapsed();
    variant.metrics.observe(200, rows, elapsed);
    let warned = parsed.warnings > 0 && app.enforce == mlctl_spec::Enforce::Warn;
    if warned {
        variant.metrics.signature_warning();
    }
    if let Some(c) = &app.capture
        && c.sample()
    {
        c.send(Record {
            time: SystemTime::now(),
            request_id: id.clone(),
            source: variant.source.clone(),
            status: 200,
            latency: elapsed,
            payload: Payload::Rows {
                body: capture::keep(body),
                format,
                rows,
                // Only a writer that formats the values gets them (dropped here otherwise,
                // by the thread that allocated them).
                raw: if c.wants_values() { raw } else { Vec::new() },
                predictions: capture::Predictions::keep(&preds),
                unknown_columns: std::mem::take(&mut parsed.unknown_columns),
            },
        });
    }
    let mut r = Response::new(Body::from(out));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if accept_csv {
            "text/csv"
        } else {
            "application/json"
        }),
    );
    if warned {
        let h = r.headers_mut();
        h.insert(
            "x-mlctl-signature-warnings",
            HeaderValue::from(parsed.warnings as u64),
        );
        if let Some(w) = &parsed.first_warning {
            h.insert("x-mlctl-signature-warning", header_text(w));
        }
    }
    r
}

/// `,"explanations":{...}`: what contributions add up to (`space`), the outputs explained,
/// the input columns, the base value per output and, per row, per column, per output, the
/// contribution.
fn write_explanations(out: &mut String, e: &mlctl_ml::explain::Explanation) {
    use crate::json::{push_number, push_string};
    let list = |out: &mut String, items: &[String]| {
        out.push('[');
        for (i, s) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_string(out, s);
        }
        out.push(']');
    };
    out.push_str(",\"explanations\":{\"space\":");
    push_string(out, e.space);
    out.push_str(",\"outputs\":");
    list(out, &e.outputs);
    out.push_str(",\"features\":");
    list(out, &e.features);
    out.push_str(",\"base_values\":[");
    for (i, b) in e.base_values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_number(out, *b);
    }
    out.push_str("],\"contributions\":[");
    let (nf, no) = (e.features.len(), e.outputs.len());
    for (r, row) in e.contributions.chunks(nf * no).enumerate() {
        if r > 0 {
            out.push(',');
        }
        out.push('[');
        for (f, col) in row.chunks(no).enumerate() {
            if f > 0 {
                out.push(',');
            }
            out.push('[');
            for (o, v) in col.iter().enumerate() {
                if o > 0 {
                    out.push(',');
                }
                push_number(out, *v);
            }
            out.push(']');
        }
        out.push(']');
    }
    out.push_str("]}");
}

/// `{"predictions": [[p, ...], ...], "classes": [...]}` (or CSV lines of probabilities).
fn write_probabilities(out: &mut String, probs: &[f64], k: usize, labels: &[String], csv: bool) {
    if csv {
        for row in probs.chunks(k.max(1)) {
            for (i, p) in row.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                crate::json::push_number(out, *p);
            }
            out.push('\n');
        }
        return;
    }
    out.push_str("{\"predictions\":[");
    for (r, row) in probs.chunks(k.max(1)).enumerate() {
        if r > 0 {
            out.push(',');
        }
        out.push('[');
        for (i, p) in row.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            crate::json::push_number(out, *p);
        }
        out.push(']');
    }
    out.push_str("],\"classes\":[");
    out.push_str(&labels.join(","));
    out.push_str("]}");
}

async fn proxy(
    app: &App,
    variant: &Variant,
    u: &Upstream,
    ct: Option<&HeaderValue>,
    accept: Option<&HeaderValue>,
    body: Bytes,
    call: Call<'_>,
) -> Response {
    let (t0, id) = (call.at, call.id);
    let ct_str = ct.and_then(|v| v.to_str().ok());
    let accept = accept.and_then(|v| v.to_str().ok());
    match u.invoke(ct_str, accept, body.clone()).await {
        Ok(resp) => {
            let elapsed = t0.elapsed();
            variant.metrics.observe(resp.status, 0, elapsed);
            if let Some(c) = &app.capture
                && c.sample()
            {
                c.send(Record {
                    time: SystemTime::now(),
                    request_id: id.clone(),
                    source: variant.source.clone(),
                    status: resp.status,
                    latency: elapsed,
                    payload: Payload::Raw {
                        request: body,
                        response: resp.body.clone(),
                    },
                });
            }
            let mut r = Response::new(Body::from(resp.body));
            *r.status_mut() = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::BAD_GATEWAY);
            if let Some(v) = resp
                .content_type
                .and_then(|c| HeaderValue::from_str(&c).ok())
            {
                r.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            r
        }
        Err(e) => {
            variant.metrics.observe(502, 0, t0.elapsed());
            error(
                StatusCode::BAD_GATEWAY,
                &format!("variant `{}`: {e}", variant.config.name),
            )
        }
    }
}

/// A server listening on a socket (and on its control port, when it has one).
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    /// The private control address, when [`ServerOptions::control`] asked for one.
    pub control_addr: Option<SocketAddr>,
    /// The state (for reconfiguration).
    pub app: Arc<App>,
    /// The announcement file written for the control listener.
    announced: Option<std::path::PathBuf>,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish, then returns. The announcement goes
    /// first, so nobody looks for this process once it stops answering.
    pub async fn stop(self) -> std::io::Result<()> {
        if let Some(path) = &self.announced {
            let _ = std::fs::remove_file(path);
        }
        let _ = self.shutdown.send(true);
        let mut result = Ok(());
        for task in self.tasks {
            let r = task.await.map_err(std::io::Error::other).and_then(|r| r);
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}

/// A listening socket on `addr`, sharing the port with `SO_REUSEPORT` when asked.
fn listen(addr: SocketAddr, reuse_port: bool) -> std::io::Result<tokio::net::TcpListener> {
    if !reuse_port {
        let std = std::net::TcpListener::bind(addr)?;
        std.set_nonblocking(true)?;
        return tokio::net::TcpListener::from_std(std);
    }
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

fn serve_on(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    stop: tokio::sync::watch::Receiver<bool>,
    pool: Option<Arc<crate::conn::Pool>>,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let limits = app.limits;
    tokio::spawn(crate::conn::serve(
        listener,
        router(app),
        limits,
        stop,
        pool,
    ))
}

/// Binds, loads the variants, and serves in a background task. With a control listener, the
/// process is announced once it serves.
///
/// # Errors
/// An address cannot be bound, the variants cannot be loaded, or the announcement cannot be
/// written.
pub async fn start(
    opts: ServerOptions,
    variants: Vec<VariantConfig>,
) -> Result<Running, ServeError> {
    // Bind first: a taken port is the most common error, and it is cheap to find.
    let bind = |addr| move |source| ServeError::Bind { addr, source };
    let listener = listen(opts.addr, opts.reuse_port).map_err(bind(opts.addr))?;
    let addr = listener.local_addr().map_err(bind(opts.addr))?;
    let control = match &opts.control {
        Some(c) => {
            let at = SocketAddr::from(([127, 0, 0, 1], 0));
            let l = listen(at, false).map_err(bind(at))?;
            let bound = l.local_addr().map_err(bind(at))?;
            Some((l, bound, c.dir.clone()))
        }
        None => None,
    };
    let app = App::new(&opts, variants).await?;
    let pool = match opts.threads {
        0 => None,
        n => Some(Arc::new(
            crate::conn::Pool::start(n).map_err(ServeError::Runtime)?,
        )),
    };
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut tasks = vec![serve_on(listener, app.clone(), rx.clone(), pool)];
    let mut control_addr = None;
    let mut announced = None;
    if let Some((l, bound, dir)) = control {
        tasks.push(serve_on(l, app.clone(), rx, None));
        control_addr = Some(bound);
        let a = Announcement {
            format_version: crate::config::SERVE_FILE_FORMAT,
            pid: std::process::id(),
            control: bound,
        };
        if let Err(e) = a.write(&dir) {
            let _ = tx.send(true);
            return Err(e);
        }
        announced = Some(Announcement::path(&dir, a.pid));
    }
    Ok(Running {
        addr,
        control_addr,
        app,
        announced,
        shutdown: tx,
        tasks,
    })
}

/// The capture files written for a capture directory, oldest first.
pub fn capture_files(dir: &Path) -> Vec<std::path::PathBuf> {
    capture::capture_files(dir)
}

#[cfg(test)]
mod tests {
    use super::split_table;

    #[test]
    fn split_is_exact_and_interleaved() {
        let t = split_table(&[90, 10]);
        assert_eq!(t.len(), 10);
        assert_eq!(t.iter().filter(|&&i| i == 1).count(), 1);
        let t = split_table(&[50, 30, 20]);
        assert_eq!(t.len(), 10);
        assert_eq!(
            [0, 1, 2].map(|k| t.iter().filter(|&&i| i == k).count()),
            [5, 3, 2]
        );
        assert_eq!(split_table(&[0, 100]), vec![1]);
        let t = split_table(&[97, 3]);
        assert_eq!(t.len(), 100);
        // Spread, not bunched: no two canary slots next to each other.
        assert!(t.windows(2).all(|w| !(w[0] == 1 && w[1] == 1)));
    }
}
