//! The agent's HTTP side: `GET /healthz`, Prometheus `GET /metrics`, `POST /hooks/git`.

use super::policy;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Histogram buckets of a cycle's duration, in seconds.
const BUCKETS: [f64; 11] = [
    0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// What `/metrics` shows; the agent updates it after every cycle.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Per target: the last synced commit.
    pub synced: BTreeMap<String, String>,
    /// Per target: the sync status word.
    pub sync: BTreeMap<String, &'static str>,
    /// Per target: the health word.
    pub health: BTreeMap<String, &'static str>,
    /// Cycle durations: bucket counts, sum, count.
    pub cycle_buckets: [u64; BUCKETS.len()],
    /// Sum of cycle durations (seconds).
    pub cycle_sum: f64,
    /// Number of cycles.
    pub cycles: u64,
    /// Failures by reason (`fetch`, `apply`, `status`, `monitor`, `notify`).
    pub failures: BTreeMap<&'static str, u64>,
    /// Commits skipped because their spec is invalid.
    pub invalid_commits: u64,
    /// Webhook calls refused.
    pub webhook_refused: u64,
}

impl Metrics {
    /// Records one cycle's duration.
    pub fn observe_cycle(&mut self, seconds: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                self.cycle_buckets[i] += 1;
            }
        }
        self.cycle_sum += seconds;
        self.cycles += 1;
    }

    /// Counts a failure.
    pub fn fail(&mut self, reason: &'static str) {
        *self.failures.entry(reason).or_default() += 1;
    }

    /// The Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        out.push_str("# HELP mlctl_watch_last_synced_commit_info The commit last applied in full, per target.\n# TYPE mlctl_watch_last_synced_commit_info gauge\n");
        for (t, c) in &self.synced {
            let _ = writeln!(
                out,
                "mlctl_watch_last_synced_commit_info{{target=\"{}\",commit=\"{}\"}} 1",
                esc(t),
                esc(c)
            );
        }
        out.push_str("# HELP mlctl_watch_sync_status Sync status per target (1 for the current one).\n# TYPE mlctl_watch_sync_status gauge\n");
        for (t, s) in &self.sync {
            for word in ["Synced", "OutOfSync", "Unknown"] {
                let _ = writeln!(
                    out,
                    "mlctl_watch_sync_status{{target=\"{}\",status=\"{word}\"}} {}",
                    esc(t),
                    u8::from(*s == word)
                );
            }
        }
        out.push_str("# HELP mlctl_watch_health_status Health per target (1 for the current one; the worst resource's).\n# TYPE mlctl_watch_health_status gauge\n");
        for (t, h) in &self.health {
            for word in ["Healthy", "Progressing", "Missing", "Degraded", "Unknown"] {
                let _ = writeln!(
                    out,
                    "mlctl_watch_health_status{{target=\"{}\",health=\"{word}\"}} {}",
                    esc(t),
                    u8::from(*h == word)
                );
            }
        }
        out.push_str("# HELP mlctl_watch_cycle_duration_seconds How long a cycle took (fetch, validate, apply, drift check, monitors).\n# TYPE mlctl_watch_cycle_duration_seconds histogram\n");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "mlctl_watch_cycle_duration_seconds_bucket{{le=\"{b}\"}} {}",
                self.cycle_buckets[i]
            );
        }
        let _ = writeln!(
            out,
            "mlctl_watch_cycle_duration_seconds_bucket{{le=\"+Inf\"}} {}\nmlctl_watch_cycle_duration_seconds_sum {}\nmlctl_watch_cycle_duration_seconds_count {}",
            self.cycles, self.cycle_sum, self.cycles
        );
        out.push_str("# HELP mlctl_watch_failures_total Failures by reason.\n# TYPE mlctl_watch_failures_total counter\n");
        for reason in ["fetch", "apply", "status", "monitor", "notify"] {
            let _ = writeln!(
                out,
                "mlctl_watch_failures_total{{reason=\"{reason}\"}} {}",
                self.failures.get(reason).copied().unwrap_or(0)
            );
        }
        let _ = writeln!(
            out,
            "# HELP mlctl_watch_invalid_commits_total Commits skipped because their spec is invalid.\n# TYPE mlctl_watch_invalid_commits_total counter\nmlctl_watch_invalid_commits_total {}",
            self.invalid_commits
        );
        let _ = writeln!(
            out,
            "# HELP mlctl_watch_webhook_refused_total Webhook calls refused (bad or missing signature).\n# TYPE mlctl_watch_webhook_refused_total counter\nmlctl_watch_webhook_refused_total {}",
            self.webhook_refused
        );
        out
    }
}

/// What the handlers share.
pub struct Shared {
    /// The metrics.
    pub metrics: Mutex<Metrics>,
    /// Wakes the agent for a cycle now.
    pub trigger: Notify,
    /// The webhook secret (none: `/hooks/git` answers 404 with what to do).
    pub secret: Option<String>,
    /// The bearer token `/metrics` needs (none on loopback).
    pub token: Option<String>,
    /// The branch followed (a push to another is acknowledged and ignored).
    pub branch: String,
    /// Set once a stop was asked for: triggers are refused.
    pub stopping: std::sync::atomic::AtomicBool,
}

/// The router.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/hooks/git", post(hook))
        .with_state(shared)
}

async fn healthz() -> &'static str {
    "ok\n"
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some(token) = &shared.token else {
        return true;
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    blake3::hash(given.as_bytes()) == blake3::hash(token.as_bytes())
}

async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !authorized(&shared, &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            "send the agent's --token as `Authorization: Bearer <token>`\n",
        )
            .into_response();
    }
    let text = shared
        .metrics
        .lock()
        .map(|m| m.render())
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn hook(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(secret) = &shared.secret else {
        return (
            StatusCode::NOT_FOUND,
            "webhooks are off: start `mlctl watch` with --webhook-secret '${env:NAME}'\n",
        )
            .into_response();
    };
    if shared.stopping.load(std::sync::atomic::Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "the agent is stopping\n").into_response();
    }
    let lookup = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match policy::check(lookup, &body, secret.as_bytes()) {
        Err(refusal) => {
            if let Ok(mut m) = shared.metrics.lock() {
                m.webhook_refused += 1;
            }
            tracing::warn!(reason = %refusal, "webhook refused");
            (StatusCode::UNAUTHORIZED, format!("{refusal}\n")).into_response()
        }
        Ok((sender, false)) => {
            tracing::info!(?sender, "webhook: not a push, ignored");
            (StatusCode::OK, "not a push event: ignored\n").into_response()
        }
        Ok((sender, true)) => {
            let branch = policy::pushed_branch(&body);
            if branch.as_deref().is_some_and(|b| b != shared.branch) {
                tracing::info!(?sender, branch = ?branch, "webhook: a push to another branch, ignored");
                return (StatusCode::OK, "a push to another branch: ignored\n").into_response();
            }
            tracing::info!(?sender, "webhook: push, cycle triggered");
            shared.trigger.notify_one();
            (StatusCode::ACCEPTED, "cycle triggered\n").into_response()
        }
    }
}
