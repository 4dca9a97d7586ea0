//! Endpoints: rollouts that take one poll, variants and instances, rollback, and hooks for
//! out-of-band changes.

use crate::data::blob_path;
use crate::store::{Store, key};
use crate::{Mock, Result, err, now};
use async_trait::async_trait;
use mlctl_core::bake::{BakeRules, BakeSample, Verdict, judge};
use mlctl_core::{
    Capabilities, DeployState, Deployer, DeploymentHandle, EndpointRequest, EndpointStatus,
    ErrorKind, Health, ModelVersion, OpContext, Tags, Variant, components::InPlaceRequest,
};
use mlctl_spec::{SimulatedTraffic, StrategyType};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A rollout is done on this poll.
const POLLS_TO_FINISH: u32 = 2;

/// A canary's bake when the spec gives no `bakeTime` (the local target's).
const DEFAULT_BAKE: Duration = Duration::from_secs(60);

/// Rollouts remembered per endpoint.
const KEEP_ROLLOUTS: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RolloutState {
    InProgress,
    Done,
    Failed,
    RolledBack,
    Superseded,
    /// `rollback` by hand.
    ManualRollback,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rollout {
    id: String,
    fingerprint: String,
    model: String,
    version: u32,
    instances: u32,
    strategy: String,
    percent: Option<i64>,
    polls: u32,
    state: RolloutState,
    reason: Option<String>,
    injected_failure: Option<String>,
    /// Health before the rollout started, restored when it fails with the old version serving.
    health_before: Health,
    started_at: String,
    /// A canary beside a serving version: judged on simulated traffic (`None` for other
    /// rollouts and in records from before canaries were judged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bake: Option<Bake>,
}

/// A canary's bake on simulated time: each poll stands for `bake_secs / POLLS_TO_FINISH`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bake {
    bake_secs: f64,
    max_bake_secs: f64,
    min_requests: u64,
    max_error_rate: Option<f64>,
    max_p99_ms: Option<f64>,
    /// What the new version served so far.
    requests: u64,
    server_errors: u64,
    p99_ms: Option<f64>,
}

impl Bake {
    fn of(strategy: &mlctl_spec::Strategy) -> std::result::Result<Bake, String> {
        let r = BakeRules::of(strategy, DEFAULT_BAKE)?;
        Ok(Bake {
            bake_secs: r.bake.as_secs_f64(),
            max_bake_secs: r.max_bake.as_secs_f64(),
            min_requests: r.min_requests,
            max_error_rate: r.max_error_rate,
            max_p99_ms: r.max_p99_ms,
            requests: 0,
            server_errors: 0,
            p99_ms: None,
        })
    }

    fn rules(&self) -> BakeRules {
        BakeRules {
            bake: Duration::from_secs_f64(self.bake_secs),
            max_bake: Duration::from_secs_f64(self.max_bake_secs),
            min_requests: self.min_requests,
            max_error_rate: self.max_error_rate,
            max_p99_ms: self.max_p99_ms,
        }
    }

    /// One poll's traffic.
    fn serve(&mut self, traffic: Option<&SimulatedTraffic>) {
        let Some(t) = traffic.filter(|t| t.requests_per_poll > 0) else {
            return;
        };
        self.requests += t.requests_per_poll;
        self.server_errors +=
            (t.requests_per_poll as f64 * t.error_rate.unwrap_or(0.0)).round() as u64;
        let p99 = t.p99_latency_ms.unwrap_or(1.0);
        self.p99_ms = Some(self.p99_ms.map_or(p99, |p| p.max(p99)));
    }

    fn sample(&self) -> BakeSample {
        BakeSample {
            requests: self.requests,
            server_errors: self.server_errors,
            p99_ms: self.p99_ms,
        }
    }

    /// Simulated time after `polls` polls.
    fn elapsed(&self, polls: u32) -> Duration {
        Duration::from_secs_f64(self.bake_secs * f64::from(polls) / f64::from(POLLS_TO_FINISH))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EndpointRecord {
    /// Format of this record (`mlctl_core::state::FORMAT_VERSION` when written).
    #[serde(default = "mlctl_core::state::FormatVersion::legacy")]
    pub(crate) format_version: mlctl_core::state::FormatVersion,
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) health: Health,
    pub(crate) variants: Vec<Variant>,
    pub(crate) instances: u32,
    pub(crate) message: Option<String>,
    /// Fingerprint of the last completed rollout.
    fingerprint: String,
    tags: Option<Tags>,
    created_at: String,
    seq: u32,
    rollouts: Vec<Rollout>,
}

impl EndpointRecord {
    fn status(&self) -> EndpointStatus {
        EndpointStatus {
            name: self.name.clone(),
            url: Some(self.url.clone()),
            health: self.health,
            variants: self.variants.clone(),
            instances: self.instances,
            message: self.message.clone(),
        }
    }

    fn supersede(&mut self, by: &str) {
        for r in self
            .rollouts
            .iter_mut()
            .filter(|r| r.state == RolloutState::InProgress)
        {
            r.state = RolloutState::Superseded;
            r.reason = Some(format!("superseded by rollout {by}"));
        }
    }

    fn push(&mut self, r: Rollout) {
        self.rollouts.push(r);
        if self.rollouts.len() > KEEP_ROLLOUTS {
            let extra = self.rollouts.len() - KEEP_ROLLOUTS;
            self.rollouts.drain(..extra);
        }
    }
}

fn endpoint_path(name: &str) -> String {
    format!("endpoints/{}.json", key(name))
}

fn no_endpoint(op: &str, name: &str) -> mlctl_core::ProviderError {
    err(
        ErrorKind::NotFound,
        op,
        format!("endpoint `{name}` does not exist on the mock target"),
    )
}

/// Applies an out-of-band change to an endpoint (see the `tamper_*` functions).
pub(crate) fn tamper(store: &Store, name: &str, f: impl FnOnce(&mut EndpointRecord)) -> Result<()> {
    let op = "tamper";
    store.update(
        op,
        &endpoint_path(name),
        |rec: &mut Option<EndpointRecord>| {
            let e = rec.as_mut().ok_or_else(|| no_endpoint(op, name))?;
            f(e);
            Ok(())
        },
    )
}

fn strategy_name(t: StrategyType) -> &'static str {
    match t {
        StrategyType::AllAtOnce => "all-at-once",
        StrategyType::Canary => "canary",
        StrategyType::BlueGreen => "blue-green",
    }
}

fn show(v: &[Variant]) -> String {
    v.iter()
        .map(|v| format!("{} v{}", v.model, v.version))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One poll of rollout `i`: moves it on (in progress for one poll, then done or failed; a
/// canary as its bake is judged, on `traffic`) and updates what the endpoint serves.
fn advance(
    e: &mut EndpointRecord,
    i: usize,
    hangs: bool,
    traffic: Option<&SimulatedTraffic>,
) -> DeployState {
    if e.rollouts[i].state == RolloutState::InProgress && !hangs {
        e.rollouts[i].polls += 1;
    }
    let r = e.rollouts[i].clone();
    match r.state {
        RolloutState::Done | RolloutState::ManualRollback => return DeployState::Done(e.status()),
        RolloutState::Failed | RolloutState::Superseded => {
            return DeployState::Failed {
                reason: r.reason.unwrap_or_else(|| "failed".into()),
            };
        }
        RolloutState::RolledBack => {
            return DeployState::RolledBack {
                reason: r.reason.unwrap_or_default(),
                status: e.status(),
            };
        }
        RolloutState::InProgress => {}
    }
    let what = format!("{} v{}", r.model, r.version);
    if hangs {
        let message = format!(
            "starting {} instance(s) of {what} (mock `timeout` fault: this rollout never finishes)",
            r.instances
        );
        return DeployState::InProgress { message };
    }
    if let Some(bake) = e.rollouts[i].bake.as_mut()
        && r.injected_failure.is_none()
    {
        bake.serve(traffic);
        let verdict = judge(
            &bake.rules(),
            &bake.sample(),
            bake.elapsed(r.polls),
            &format!("v{}", r.version),
        );
        match verdict {
            Verdict::Promote => {}
            Verdict::Wait(progress) => {
                let p = r.percent.unwrap_or(10);
                return DeployState::InProgress {
                    message: format!("canary: {p}% of traffic on {what}: {progress}"),
                };
            }
            Verdict::RollBack(reason) => {
                e.rollouts[i].state = RolloutState::RolledBack;
                e.rollouts[i].reason = Some(reason.clone());
                e.health = r.health_before;
                e.message = Some(format!(
                    "canary of {what} rolled back ({reason}); still serving {}",
                    show(&e.variants)
                ));
                return DeployState::RolledBack {
                    reason,
                    status: e.status(),
                };
            }
        }
    } else if r.polls < POLLS_TO_FINISH {
        let message = match (r.strategy.as_str(), r.percent) {
            ("canary", Some(p)) => format!("canary: {p}% of traffic on {what}, baking"),
            ("blue-green", _) => format!("green fleet of {what} starting beside blue"),
            _ => format!("starting {} instance(s) of {what}", r.instances),
        };
        return DeployState::InProgress { message };
    }
    if let Some(reason) = r.injected_failure.clone() {
        e.rollouts[i].reason = Some(reason.clone());
        if e.variants.is_empty() {
            // A new endpoint that never served.
            e.rollouts[i].state = RolloutState::Failed;
            e.health = Health::Failed;
            e.message = Some(format!("deployment failed: {reason}"));
            return DeployState::Failed { reason };
        }
        // The old version keeps serving; a canary or blue-green rollout is rolled back.
        e.health = r.health_before;
        e.message = Some(format!(
            "rollout of {what} failed ({reason}); still serving {}",
            show(&e.variants)
        ));
        if r.strategy == "all-at-once" {
            e.rollouts[i].state = RolloutState::Failed;
            return DeployState::Failed { reason };
        }
        e.rollouts[i].state = RolloutState::RolledBack;
        return DeployState::RolledBack {
            reason,
            status: e.status(),
        };
    }
    e.rollouts[i].state = RolloutState::Done;
    e.variants = vec![Variant {
        model: r.model.clone(),
        version: r.version,
        weight: 100,
    }];
    e.instances = r.instances;
    e.health = Health::Healthy;
    e.message = None;
    e.fingerprint = r.fingerprint;
    DeployState::Done(e.status())
}

#[async_trait]
impl Deployer for Mock {
    fn capabilities(&self) -> Capabilities {
        Mock::capabilities(self)
    }

    async fn deploy(&self, _ctx: &OpContext, req: &EndpointRequest) -> Result<DeploymentHandle> {
        let op = "deploy";
        self.enter(op).await?;
        let instances = req.spec.instances.unwrap_or(1);
        let instances = u32::try_from(instances).map_err(|_| {
            err(
                ErrorKind::Invalid,
                op,
                format!(
                    "endpoint `{}`: {instances} is not an instance count",
                    req.name
                ),
            )
        })?;
        // Like the local deployer, the token is read here (a new value is a new fingerprint,
        // so a new rollout is recorded), and never kept.
        if let Some(a) = &req.spec.auth {
            mlctl_spec::env::resolve(&a.token, |n| std::env::var(n).ok()).map_err(|e| {
                err(
                    ErrorKind::Invalid,
                    op,
                    format!("endpoint `{}`, auth.token: {e}", req.name),
                )
            })?;
        }
        let faults = self.faults();
        // Like a real deployer, a model whose artifact is not in the store cannot be served.
        let missing_artifact = req
            .model
            .artifact_uri
            .strip_prefix("mock://objects/")
            .filter(|digest| digest.len() < 2 || !self.store().path(&blob_path(digest)).exists())
            .map(|_| {
                format!(
                    "{} v{} cannot be loaded: its artifact {} does not exist on the mock target",
                    req.model.model, req.model.version, req.model.artifact_uri
                )
            });
        self.store().update(
            op,
            &endpoint_path(&req.name),
            |rec: &mut Option<EndpointRecord>| {
                let e = rec.get_or_insert_with(|| EndpointRecord {
                    format_version: Default::default(),
                    name: req.name.clone(),
                    url: format!("mock://endpoints/{}", req.name),
                    health: Health::Progressing,
                    variants: Vec::new(),
                    instances: 0,
                    message: None,
                    fingerprint: String::new(),
                    tags: None,
                    created_at: now(),
                    seq: 0,
                    rollouts: Vec::new(),
                });
                // A re-run while this very rollout is under way finds it instead of starting another.
                if let Some(r) = e.rollouts.iter().rev().find(|r| {
                    r.state == RolloutState::InProgress
                        && r.fingerprint == req.fingerprint
                        && r.model == req.model.model
                        && r.version == req.model.version
                }) {
                    return Ok(DeploymentHandle {
                        endpoint: req.name.clone(),
                        id: r.id.clone(),
                    });
                }
                e.seq += 1;
                let id = format!(
                    "{}-{}-{}",
                    req.name,
                    &req.fingerprint[..req.fingerprint.len().min(12)],
                    e.seq
                );
                e.supersede(&id);
                let strategy = req
                    .spec
                    .strategy
                    .as_ref()
                    .map_or(StrategyType::AllAtOnce, |s| s.ty);
                let injected_failure = if faults.fail_deployment.iter().any(|n| n == &req.name) {
                    Some(format!(
                        "injected fault: the mock target's faults.failDeployment lists `{}`",
                        req.name
                    ))
                } else {
                    missing_artifact.clone()
                };
                // A canary beside a serving version is judged; a first deploy has nothing
                // to roll back to, so it serves the new version at once, as on a real target.
                let bake = match req.spec.strategy.as_ref() {
                    Some(s) if s.ty == StrategyType::Canary && !e.variants.is_empty() => {
                        Some(Bake::of(s).map_err(|m| {
                            err(
                                ErrorKind::Invalid,
                                op,
                                format!("endpoint `{}`: {m}", req.name),
                            )
                        })?)
                    }
                    _ => None,
                };
                let rollout = Rollout {
                    id: id.clone(),
                    fingerprint: req.fingerprint.clone(),
                    model: req.model.model.clone(),
                    version: req.model.version,
                    instances,
                    strategy: strategy_name(strategy).into(),
                    percent: req.spec.strategy.as_ref().and_then(|s| s.percent),
                    polls: 0,
                    state: RolloutState::InProgress,
                    reason: None,
                    injected_failure,
                    health_before: if e.variants.is_empty() {
                        Health::Healthy
                    } else {
                        e.health
                    },
                    started_at: now(),
                    bake,
                };
                e.health = Health::Progressing;
                e.message = Some(format!(
                    "rolling out {} v{} ({})",
                    rollout.model, rollout.version, rollout.strategy
                ));
                e.tags = Some(req.tags.clone());
                e.push(rollout);
                Ok(DeploymentHandle {
                    endpoint: req.name.clone(),
                    id,
                })
            },
        )
    }

    async fn poll(&self, _ctx: &OpContext, handle: &DeploymentHandle) -> Result<DeployState> {
        let op = "poll_deployment";
        self.enter(op).await?;
        // Read from the current target config (see the trainer's poll).
        let hangs = self.faults().timeout.iter().any(|n| n == &handle.endpoint);
        let traffic = self.traffic(&handle.endpoint);
        self.store().update(
            op,
            &endpoint_path(&handle.endpoint),
            |rec: &mut Option<EndpointRecord>| {
                let e = rec
                    .as_mut()
                    .ok_or_else(|| no_endpoint(op, &handle.endpoint))?;
                let i = e
                    .rollouts
                    .iter()
                    .position(|r| r.id == handle.id)
                    .ok_or_else(|| {
                        let msg = format!(
                            "endpoint `{}` has no rollout {} on the mock target",
                            handle.endpoint, handle.id
                        );
                        err(ErrorKind::NotFound, op, msg)
                    })?;
                Ok(advance(e, i, hangs, traffic))
            },
        )
    }

    async fn status(&self, _ctx: &OpContext, name: &str) -> Result<Option<EndpointStatus>> {
        self.enter("status").await?;
        Ok(self
            .store()
            .read::<EndpointRecord>("status", &endpoint_path(name))?
            .map(|e| e.status()))
    }

    async fn rollback(
        &self,
        _ctx: &OpContext,
        name: &str,
        to: &ModelVersion,
    ) -> Result<EndpointStatus> {
        let op = "rollback";
        self.enter(op).await?;
        self.store().update(
            op,
            &endpoint_path(name),
            |rec: &mut Option<EndpointRecord>| {
                let e = rec.as_mut().ok_or_else(|| no_endpoint(op, name))?;
                e.seq += 1;
                let id = format!("{name}-rollback-{}", e.seq);
                e.supersede(&id);
                let instances = e.instances.max(1);
                e.push(Rollout {
                    id,
                    fingerprint: to.fingerprint.clone(),
                    model: to.model.clone(),
                    version: to.version,
                    instances,
                    strategy: "all-at-once".into(),
                    percent: None,
                    polls: 0,
                    state: RolloutState::ManualRollback,
                    reason: None,
                    injected_failure: None,
                    health_before: e.health,
                    started_at: now(),
                    bake: None,
                });
                e.variants = vec![Variant {
                    model: to.model.clone(),
                    version: to.version,
                    weight: 100,
                }];
                e.instances = instances;
                e.health = Health::Healthy;
                e.message = None;
                Ok(e.status())
            },
        )
    }

    async fn update_in_place(&self, _ctx: &OpContext, req: &InPlaceRequest) -> Result<()> {
        self.enter("update_in_place").await?;
        let op = "update endpoint tags";
        self.store().update(
            op,
            &endpoint_path(&req.name),
            |rec: &mut Option<EndpointRecord>| {
                let rec = rec
                    .as_mut()
                    .ok_or_else(|| crate::gone(op, format!("endpoint `{}`", req.name)))?;
                rec.tags = Some(req.tags.clone());
                Ok(())
            },
        )
    }

    async fn delete(&self, _ctx: &OpContext, name: &str) -> Result<()> {
        self.enter("delete_endpoint").await?;
        self.store()
            .remove("delete_endpoint", &endpoint_path(name))
            .map(|_| ())
    }
}
