//! The mock target: every component (DataStore, Trainer, Registry, Deployer, MonitorSink) and
//! the StateStore, deterministic and file-backed, with injectable latency and faults. For
//! mlctl's own tests and for users' CI dry runs.
//!
//! ```yaml
//! targets:
//!   test:
//!     provider: mock
//!     root: .mlctl/test          # default: .mlctl/<target> in the project
//!     latency: 50ms              # slept on every call
//!     faults:
//!       failTraining: [iris-train]     # these TrainingJobs end Failed
//!       failNthTrainingJob: 2          # the 2nd job submitted to this target fails
//!       failDeployment: [iris]         # these Endpoints' rollouts fail (canary: roll back)
//!       throttle: 2                    # the first 2 calls of each operation are throttled
//!       timeout: [iris-train]          # jobs/rollouts of these resources never finish
//!     traffic:                         # what canaries of these endpoints are sent
//!       iris: {requestsPerPoll: 60, errorRate: 0.0, p99LatencyMs: 12}
//! ```
//!
//! # Behaviour
//! - State is JSON under the state directory ([`mlctl_core::ProviderConfig::state_dir`]), so
//!   separate `mlctl` processes see it. Layout: `projects/<project>/resources/*.json` (observed
//!   state), `projects/<project>/history/*.jsonl` (append-only), `projects/<project>/lock.json`
//!   (the apply lock), `datasets/`, `jobs/`, `models/`, `endpoints/`, `monitors/`, `captured/`
//!   and `objects/<aa>/<blake3>` (blobs). Datasets, jobs, models, endpoints and monitors are
//!   named target-wide, like resources in a cloud account.
//! - Training jobs finish on their third poll with metrics derived from a hash of the job's
//!   fingerprint and hyperparameters: stable, and different when a hyperparameter changes.
//!   Classification accuracy stays within `0.95..0.97`, narrower than a 2-point regression
//!   gate, so a hyperparameter change never trips such a gate by accident.
//! - Rollouts are in progress for one poll and done on the second. A canary beside a serving
//!   version is judged like a real one ([`mlctl_core::bake::judge`]) on simulated time: its
//!   bake takes two polls, each poll standing for half of `bakeTime`, and its new version
//!   serves the endpoint's `traffic` each poll (none when the endpoint is not listed), so
//!   it waits for `minRequests` up to `maxBakeTime` and rolls back on a threshold crossed.
//! - Submitting a job or starting a rollout that is already there returns it; a job that
//!   failed or was cancelled is started again (a new attempt under the same name), so a re-run
//!   after a failure converges once the fault is gone.
//! - Faults: `throttle` is counted per operation per [`stack`] (one per `mlctl` process); the
//!   Nth submitted job of `failNthTrainingJob` is counted in the target, across processes;
//!   `failTraining`, `failDeployment` and `timeout` name resources (TrainingJob or Endpoint
//!   `metadata.name`). `timeout` is read at every poll, so a job or rollout left running by a
//!   killed process finishes once the fault is removed. The StateStore is never throttled: the apply lock is taken once,
//!   without retries, like a conditional write to the target's own state.
//! - Out-of-band changes for drift tests: [`tamper_endpoint`], [`crash_endpoint`],
//!   [`shift_traffic`]; [`capture`] feeds a monitor captured records.

mod support;
pub use support::field_rules;
mod data;
mod deployer;
mod monitor;
mod registry;
mod state;
mod store;
mod trainer;

use mlctl_core::{Capabilities, ErrorKind, Health, ProviderConfig, ProviderError, Stack, Variant};
use mlctl_spec::{Faults, SimulatedTraffic};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::Store;

/// The provider's name in errors and on the [`Stack`].
pub const PROVIDER: &str = "mock";

/// How often the engine should poll mock jobs and rollouts.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

type Result<T, E = ProviderError> = std::result::Result<T, E>;

pub(crate) fn err(kind: ErrorKind, op: &str, message: impl Into<String>) -> ProviderError {
    ProviderError::new(kind, PROVIDER, op, message)
}

/// What exists no more on the mock target (a record deleted by hand, say).
pub(crate) fn gone(op: &str, what: String) -> ProviderError {
    err(
        ErrorKind::NotFound,
        op,
        format!(
            "{what} is not on the mock target any more; run `mlctl apply` with a change that rebuilds it"
        ),
    )
}

pub(crate) fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Builds the mock stack for a target.
///
/// # Errors
/// `Invalid` when `latency` is not a duration.
pub fn stack(cfg: &ProviderConfig) -> Result<Stack> {
    let mlctl_spec::Target::Mock(target) = &cfg.target else {
        return Err(err(
            ErrorKind::Invalid,
            "configure",
            format!(
                "target `{}` uses provider `{}`, not mock",
                cfg.target_name,
                cfg.target.provider().as_str()
            ),
        ));
    };
    let latency = match target.latency.as_deref() {
        Some(l) => mlctl_spec::units::parse_duration(l).map_err(|e| {
            err(
                ErrorKind::Invalid,
                "configure",
                format!("target `{}`: latency: {e}", cfg.target_name),
            )
        })?,
        None => Duration::ZERO,
    };
    let mock = Mock::new(
        cfg.state_dir(),
        target.faults.clone().unwrap_or_default(),
        latency,
    )
    .with_traffic(target.traffic.clone());
    Ok(Stack {
        provider: PROVIDER.to_string(),
        data: Arc::new(mock.clone()),
        trainer: Arc::new(mock.clone()),
        registry: Arc::new(mock.clone()),
        deployer: Arc::new(mock.clone()),
        monitor: Arc::new(mock.clone()),
        state: Arc::new(mock),
    })
}

/// The mock target; one value implements every component trait.
#[derive(Clone)]
pub(crate) struct Mock {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    store: Store,
    faults: Faults,
    /// `traffic`: simulated requests to canaries, by endpoint.
    traffic: BTreeMap<String, SimulatedTraffic>,
    latency: Duration,
    /// Calls per operation so far, for `throttle`.
    calls: Mutex<HashMap<&'static str, u32>>,
}

impl Mock {
    pub(crate) fn new(dir: PathBuf, faults: Faults, latency: Duration) -> Mock {
        Mock {
            inner: Arc::new(Inner {
                store: Store::new(dir),
                faults,
                traffic: BTreeMap::new(),
                latency,
                calls: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The same mock, sending `traffic` to canaries (before it is shared).
    pub(crate) fn with_traffic(mut self, traffic: BTreeMap<String, SimulatedTraffic>) -> Mock {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.traffic = traffic;
        }
        self
    }

    /// What endpoint `name`'s canaries are sent (`None`: nothing).
    pub(crate) fn traffic(&self, name: &str) -> Option<&SimulatedTraffic> {
        self.inner.traffic.get(name)
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// Every component call starts here: simulated latency, then the throttling fault.
    pub(crate) async fn enter(&self, op: &'static str) -> Result<()> {
        self.pause().await;
        let Some(limit) = self.inner.faults.throttle.filter(|n| *n > 0) else {
            return Ok(());
        };
        let n = {
            let mut calls = self.inner.calls.lock().unwrap_or_else(|p| p.into_inner());
            let n = calls.entry(op).or_insert(0);
            *n += 1;
            *n
        };
        if n <= limit {
            return Err(err(
                ErrorKind::Throttled,
                op,
                format!(
                    "rate exceeded: the mock target throttles the first {limit} call(s) of each operation (faults.throttle); this was call {n}"
                ),
            ));
        }
        Ok(())
    }

    /// Simulated latency only (the state store is never throttled).
    pub(crate) async fn pause(&self) {
        if !self.inner.latency.is_zero() {
            tokio::time::sleep(self.inner.latency).await;
        }
    }

    pub(crate) fn capabilities(&self) -> Capabilities {
        Capabilities {
            fields: support::field_rules(),
            algorithms: mlctl_spec::Algorithm::ALL.iter().map(|(_, a)| *a).collect(),
            script_mode: true,
            tuning_strategies: mlctl_spec::TuningStrategy::ALL.to_vec(),
            cancel: true,
            runs: true,
            logs: true,
            stage_history: true,
            artifacts: true,
            strategies: mlctl_spec::StrategyType::ALL.to_vec(),
            monitor_status: false,
            poll_interval: POLL_INTERVAL,
            notes: Vec::new(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Out-of-band changes, for drift and repair tests.

/// Sets an endpoint's instance count behind mlctl's back (someone scaled it by hand).
///
/// # Errors
/// `NotFound` when the endpoint does not exist under `state_dir`.
pub fn tamper_endpoint(state_dir: &Path, name: &str, instances: u32) -> Result<()> {
    deployer::tamper(&Store::new(state_dir), name, |e| e.instances = instances)
}

/// Makes an endpoint unhealthy (health `degraded`, as if its instances crashed); the next plan
/// shows an update that repairs it.
///
/// # Errors
/// `NotFound` when the endpoint does not exist under `state_dir`.
pub fn crash_endpoint(state_dir: &Path, name: &str) -> Result<()> {
    deployer::tamper(&Store::new(state_dir), name, |e| {
        e.health = Health::Degraded;
        e.message = Some("instances crashed: 0 of them pass the health check (simulated by mock::crash_endpoint)".into());
    })
}

/// Changes which model versions serve an endpoint's traffic behind mlctl's back.
///
/// # Errors
/// `NotFound` when the endpoint does not exist under `state_dir`.
pub fn shift_traffic(state_dir: &Path, name: &str, variants: Vec<Variant>) -> Result<()> {
    deployer::tamper(&Store::new(state_dir), name, |e| e.variants = variants)
}

/// Appends a captured request/response record to an endpoint's capture log (what a live
/// endpoint with `capture` would write), for monitor tests.
///
/// # Errors
/// I/O errors writing under `state_dir`.
pub fn capture(state_dir: &Path, endpoint: &str, record: serde_json::Value) -> Result<()> {
    monitor::append_capture(&Store::new(state_dir), endpoint, &record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn throttling_is_per_operation_and_retryable() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mock::new(
            dir.path().into(),
            Faults {
                throttle: Some(2),
                ..Faults::default()
            },
            Duration::ZERO,
        );
        for _ in 0..2 {
            let e = m.enter("submit").await.unwrap_err();
            assert_eq!(e.kind, ErrorKind::Throttled);
            assert!(e.is_retryable());
            assert!(e.message.contains("faults.throttle"), "{e}");
        }
        m.enter("submit").await.unwrap();
        assert!(
            m.enter("deploy").await.is_err(),
            "each operation has its own count"
        );
    }

    #[tokio::test]
    async fn latency_is_slept_on_every_call() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mock::new(
            dir.path().into(),
            Faults::default(),
            Duration::from_millis(30),
        );
        let t0 = std::time::Instant::now();
        m.enter("a").await.unwrap();
        m.enter("b").await.unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(60));
    }

    #[test]
    fn a_bad_latency_is_a_config_error() {
        let cfg = ProviderConfig {
            project: "p".into(),
            project_dir: "/nonexistent".into(),
            target_name: "test".into(),
            target: mlctl_spec::Target::Mock(mlctl_spec::MockTarget {
                latency: Some("fast".into()),
                ..Default::default()
            }),
        };
        let e = stack(&cfg).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert!(e.message.contains("target `test`: latency"), "{e}");
    }
}
