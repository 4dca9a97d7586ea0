//! Endpoints on Azure ML: a managed online endpoint per mlctl Endpoint, a managed online
//! deployment per model version it serves, and the endpoint's `traffic` (and
//! `mirrorTraffic`) moved between them by mlctl with the spec's strategy.
//!
//! Names (Azure wants 3-32 letters, digits and `-`, starting with a letter; endpoint names
//! are unique in a whole region): the endpoint is `<project>-<name>` cut to 25 characters
//! plus `-` and 6 hex digits of the workspace's id ([`endpoint_name`]); a deployment is
//! `<model>-v<version>` ([`deployment_name`]), and carries `mlctl:model` / `mlctl:version`
//! tags that [`Deployer::status`] reads back.
//!
//! # Serving
//! Every deployment runs mlctl's own server in the target's `image` (default: the mlctl
//! image of this version) as a custom container: an environment
//! `<endpoint>-serve` whose `inferenceConfig` routes liveness and readiness to `GET /ping`
//! and scoring to `POST /invocations` on port 8080, the model version's artifact mounted at
//! `/var/mlctl/model` (`modelMountPath`), and `MLCTL_MODEL_DIR` / `MLCTL_SERVE_PORT` in its
//! environment. The image's entrypoint runs `mlctl serve --model-dir "$MLCTL_MODEL_DIR"
//! --host 0.0.0.0 --port "$MLCTL_SERVE_PORT"`, so callers speak the protocol they get from
//! a local or SageMaker endpoint (CSV, `instances`, `inputs`, `dataframe_split`,
//! `dataframe_records`), through Azure's front end (`Authorization: Bearer <key>`).
//!
//! # Rollouts
//! [`Deployer::deploy`] makes sure the endpoint exists (`PUT onlineEndpoints/E`, followed to
//! its end) and starts the new version's deployment (`PUT .../deployments/D`, not waited
//! for); [`Deployer::poll`] then walks the rollout one step per call ([`next_step`], a pure
//! function of what Azure shows), each step one `PUT` of the endpoint's traffic:
//!
//! | spec | steps once the new deployment has provisioned |
//! |---|---|
//! | all-at-once | `traffic: {new: 100}` |
//! | canary | `traffic: {old: 100-percent, new: percent}` for `bakeTime` (default 10m), then `{new: 100}` |
//! | blue-green | `mirrorTraffic: {new: 50}` (a shadow copy of live traffic; blue answers every request) for `bakeTime` (default 5m), then `traffic: {new: 100}` at once |
//!
//! A first deployment takes all traffic at once whatever the strategy (there is nothing to
//! compare it with). When the new version serves alone, the deployments left without
//! traffic are deleted (each holds virtual machines). The bake's start is the endpoint's
//! `mlctl:bake` tag (`<deployment>@<unix seconds>`), written with the traffic that starts
//! it, so an apply stopped mid-bake is resumed by the next one where it was.
//!
//! Azure ML rolls nothing back by itself, so mlctl judges the bake as on every other target
//! ([`mlctl_core::bake::judge`]), from Azure Monitor's metrics of the new deployment
//! ([`crate::insights`]): a canary is promoted once `bakeTime` has passed and it served
//! `minRequests` (default 100), waiting for them up to `maxBakeTime`; a `rollback` threshold
//! crossed (the share of 5xx answers, the p99 latency) rolls it back at once. A blue-green's
//! shadow is judged on its thresholds the same way before any live request reaches it. A
//! rollback puts all traffic back on the deployment that served before (the endpoint's
//! model tags with it) and deletes the new deployment. Azure Monitor publishes a minute 1-3
//! minutes after it ends ([`crate::insights`]), so a judged bake is judged on its figures up
//! to [`crate::Features::metrics_delay_secs`] (3 minutes) ago and lasts that much past
//! `bakeTime` (and `maxBakeTime`): its last minutes are judged too. A threshold crossed is
//! acted on as soon as it shows.
//!
//! # Capture
//! `capture` gives each deployment a data collector (`model_inputs`, `model_outputs`) and
//! `MLCTL_CAPTURE_MDC=true` in its environment: `mlctl serve` then hands every sampled
//! request to the collector's agent (`mlctl_serve::capture::mdc`), which writes the files
//! [`crate::monitor`] reads.
//!
//! # Caveats
//! The fake ARM server the tests run provisions endpoints without serving them, so tests
//! write the data collector's files themselves (`POST /fake/capture`); the agent protocol is
//! tested against a stand-in agent (`tests/e2e/serve.rs`), not against Azure's.

use crate::arm::{Operation, OperationState};
use crate::azure::Azure;
use crate::insights;
use async_trait::async_trait;
use mlctl_core::bake::{BakeRules, BakeSample, Verdict, judge};
use mlctl_core::error::Result;
use mlctl_core::support::{FieldRules, Refusal, Support};
use mlctl_core::{
    Capabilities, DeployState, Deployer, DeploymentHandle, EndpointRequest, EndpointStatus,
    ErrorKind, Health, ModelVersion, OpContext, ProviderError, Variant, components::InPlaceRequest,
};
use mlctl_spec::{EndpointSpec, Resource, Spec, StrategyType};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const PROVIDER: &str = "azureml";

/// The port mlctl's server listens on in the container.
pub(crate) const SERVE_PORT: u16 = 8080;
/// Where the model version's artifact is mounted in the container.
pub(crate) const MODEL_MOUNT: &str = "/var/mlctl/model";
/// Share of live traffic a blue-green's new deployment is sent a copy of during its bake
/// (Azure's largest `mirrorTraffic`).
pub(crate) const SHADOW_PERCENT: u32 = 50;
/// A canary's bake when the spec gives no `bakeTime`.
const DEFAULT_CANARY_BAKE: u64 = 600;
/// A blue-green's shadow bake when the spec gives no `bakeTime`.
const DEFAULT_BLUE_GREEN_BAKE: u64 = 300;
/// A canary's share when the spec gives no `percent`.
const DEFAULT_CANARY_PERCENT: u32 = 10;
/// The VM size of a deployment when the spec asks for nothing in particular (what Azure's
/// own examples use).
pub(crate) const DEFAULT_INSTANCE_TYPE: &str = "Standard_DS3_v2";

/// Tag of a deployment (and of the endpoint: what it rolled out last): the mlctl model.
const MODEL_TAG: &str = "mlctl:model";
/// Tag of a deployment: the registry version it serves.
const VERSION_TAG: &str = "mlctl:version";
/// Endpoint tag: the bake in progress, `<deployment>@<unix seconds>`.
const BAKE_TAG: &str = "mlctl:bake";
/// Endpoint tag: whose key callers present, `token` (the spec's `auth.token`) or `azure`.
const AUTH_TAG: &str = "mlctl:auth";

fn err(kind: ErrorKind, op: &str, message: impl Into<String>) -> ProviderError {
    ProviderError::new(kind, PROVIDER, op, message)
}

// ---------------------------------------------------------------------------------------------
// Names

fn short_hash(parts: &[&str], hex: usize) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update(&[0]);
    }
    h.finalize().to_hex()[..hex].to_string()
}

/// Lowercase letters, digits and single `-`, at most `max` characters, starting with a
/// letter (`first` is put in front otherwise) and not ending with `-`.
fn azure_name(s: &str, max: usize, first: char) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(c);
    }
    if !out.starts_with(|c: char| c.is_ascii_lowercase()) {
        out.insert(0, first);
    }
    out.truncate(max);
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// The Azure name of an mlctl endpoint: `<project>-<name>` (at most 25 characters), `-`,
/// and 6 hex digits of the target's workspace, since online endpoint names are unique in a
/// whole Azure region, not only in a workspace.
pub(crate) fn endpoint_name(
    target: &mlctl_spec::AzuremlTarget,
    project: &str,
    name: &str,
) -> String {
    let base = azure_name(&format!("{project}-{name}"), 25, 'e');
    let ws = short_hash(
        &[
            &target.subscription.to_ascii_lowercase(),
            &target.resource_group.to_ascii_lowercase(),
            &target.workspace.to_ascii_lowercase(),
        ],
        6,
    );
    format!("{base}-{ws}")
}

/// The deployment of a model version: `<model>-v<version>` (at most 32 characters).
pub(crate) fn deployment_name(model: &str, version: u32) -> String {
    let suffix = format!("-v{version}");
    let base = azure_name(model, 32 - suffix.len(), 'm');
    format!("{base}{suffix}")
}

/// The workspace-relative path of a registered model version: where the registry keeps it
/// ([`crate::registry::version_path`]).
pub(crate) fn model_path(project: &str, v: &ModelVersion) -> String {
    crate::registry::version_path(project, &v.model, v.version)
}

// ---------------------------------------------------------------------------------------------
// Instance types

/// Managed online endpoint VM sizes mlctl chooses from: (name, vCPUs, memory GiB, GPUs).
/// Smallest first within each family; `compute.overrides.azureml.instanceType` may name any
/// other size Azure offers.
pub(crate) const INSTANCE_TYPES: &[(&str, f64, f64, u32)] = &[
    ("Standard_F2s_v2", 2.0, 4.0, 0),
    ("Standard_DS2_v2", 2.0, 7.0, 0),
    ("Standard_E2s_v3", 2.0, 16.0, 0),
    ("Standard_F4s_v2", 4.0, 8.0, 0),
    ("Standard_DS3_v2", 4.0, 14.0, 0),
    ("Standard_E4s_v3", 4.0, 32.0, 0),
    ("Standard_F8s_v2", 8.0, 16.0, 0),
    ("Standard_DS4_v2", 8.0, 28.0, 0),
    ("Standard_E8s_v3", 8.0, 64.0, 0),
    ("Standard_F16s_v2", 16.0, 32.0, 0),
    ("Standard_DS5_v2", 16.0, 56.0, 0),
    ("Standard_E16s_v3", 16.0, 128.0, 0),
    ("Standard_F32s_v2", 32.0, 64.0, 0),
    ("Standard_E32s_v3", 32.0, 256.0, 0),
    ("Standard_F48s_v2", 48.0, 96.0, 0),
    ("Standard_F64s_v2", 64.0, 128.0, 0),
    ("Standard_F72s_v2", 72.0, 144.0, 0),
    ("Standard_E64s_v3", 64.0, 432.0, 0),
    ("Standard_NC4as_T4_v3", 4.0, 28.0, 1),
    ("Standard_NC6s_v3", 6.0, 112.0, 1),
    ("Standard_NC8as_T4_v3", 8.0, 56.0, 1),
    ("Standard_NC12s_v3", 12.0, 224.0, 2),
    ("Standard_NC24s_v3", 24.0, 448.0, 4),
    ("Standard_NC64as_T4_v3", 64.0, 440.0, 4),
];

/// The VM size of an endpoint's deployments: `compute.overrides.azureml.instanceType`, else
/// the smallest size of [`INSTANCE_TYPES`] with the cpu, memory and gpu asked (fewest GPUs,
/// then vCPUs, then memory), else [`DEFAULT_INSTANCE_TYPE`].
///
/// # Errors
/// What was asked, when no size has it (or the memory does not parse).
pub(crate) fn instance_type(
    compute: Option<&mlctl_spec::Compute>,
) -> std::result::Result<String, String> {
    let Some(c) = compute else {
        return Ok(DEFAULT_INSTANCE_TYPE.into());
    };
    if let Some(t) = c
        .overrides
        .as_ref()
        .and_then(|o| o.azureml.as_ref())
        .and_then(|a| a.instance_type.as_deref())
    {
        return Ok(t.to_string());
    }
    if c.cpu.is_none() && c.memory.is_none() && c.gpu.is_none() {
        return Ok(DEFAULT_INSTANCE_TYPE.into());
    }
    let memory_gib = match c.memory.as_deref() {
        Some(m) => {
            mlctl_spec::units::parse_memory(m).map_err(|e| format!("compute.memory: {e}"))? as f64
                / (1u64 << 30) as f64
        }
        None => 0.0,
    };
    let (cpu, gpu) = (c.cpu.unwrap_or(0.0), c.gpu.unwrap_or(0));
    let mut fits: Vec<&(&str, f64, f64, u32)> = INSTANCE_TYPES
        .iter()
        .filter(|(_, v, m, g)| *v >= cpu && *m >= memory_gib && *g >= gpu && (gpu > 0) == (*g > 0))
        .collect();
    fits.sort_by(|a, b| {
        (a.3, a.1, a.2)
            .partial_cmp(&(b.3, b.1, b.2))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    fits.first().map(|t| t.0.to_string()).ok_or_else(|| {
        format!(
            "no Azure ML online endpoint VM size in mlctl's table has {cpu} vCPUs, {memory_gib:.1} GiB and {gpu} GPUs; name one in `compute.overrides.azureml.instanceType`"
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Request bodies

/// What an endpoint's `PUT` says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EndpointBody {
    pub location: String,
    /// `Key` (callers present a key: the spec's token, or Azure's own).
    pub auth_mode: String,
    pub tags: BTreeMap<String, String>,
    /// Deployment name to percent of live traffic.
    pub traffic: BTreeMap<String, u32>,
    /// Deployment name to percent of live traffic copied to it (its answers are dropped).
    pub mirror: BTreeMap<String, u32>,
    pub description: Option<String>,
}

impl EndpointBody {
    /// The ARM body of `PUT onlineEndpoints/E`.
    pub(crate) fn to_json(&self) -> Value {
        let mut props = Map::new();
        props.insert("authMode".into(), json!(self.auth_mode));
        if let Some(d) = &self.description {
            props.insert("description".into(), json!(d));
        }
        props.insert("traffic".into(), json!(self.traffic));
        props.insert("mirrorTraffic".into(), json!(self.mirror));
        json!({
            "location": self.location,
            "identity": {"type": "SystemAssigned"},
            "kind": "Managed",
            "tags": self.tags,
            "properties": props,
        })
    }

    /// The body an endpoint read back would be `PUT` with: what it says now (read-only
    /// fields dropped).
    pub(crate) fn of(live: &LiveEndpoint) -> EndpointBody {
        EndpointBody {
            location: live.location.clone(),
            auth_mode: if live.auth_mode.is_empty() {
                "Key".into()
            } else {
                live.auth_mode.clone()
            },
            tags: live.tags.clone(),
            traffic: live.traffic.clone(),
            mirror: live.mirror.clone(),
            description: live.description.clone(),
        }
    }
}

/// The data collector of a deployment (`capture`): both collections at the sampling rate,
/// into the endpoint's uri_folder data asset `capture/<endpoint>/` (each collection writes
/// under `<collection>/<yyyy>/<MM>/<dd>/<HH>/` in it).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CapturePlan {
    /// 0..1 (the spec's `samplingPercent` / 100).
    pub sampling_rate: f64,
    /// ARM id of the capture data asset version.
    pub data_id: String,
}

/// What a deployment's `PUT` says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeploymentPlan {
    pub name: String,
    pub location: String,
    /// ARM id of the registered model version.
    pub model_id: String,
    /// ARM id of the serving environment version.
    pub environment_id: String,
    pub instance_type: String,
    /// `instances`.
    pub capacity: u32,
    pub capture: Option<CapturePlan>,
    pub tags: BTreeMap<String, String>,
}

impl DeploymentPlan {
    /// The ARM body of `PUT onlineEndpoints/E/deployments/D`.
    pub(crate) fn to_json(&self) -> Value {
        let mut props = Map::new();
        props.insert("endpointComputeType".into(), json!("Managed"));
        props.insert("model".into(), json!(self.model_id));
        props.insert("modelMountPath".into(), json!(MODEL_MOUNT));
        props.insert("environmentId".into(), json!(self.environment_id));
        props.insert("environmentVariables".into(), self.environment_variables());
        props.insert("instanceType".into(), json!(self.instance_type));
        props.insert("scaleSettings".into(), json!({"scaleType": "Default"}));
        if let Some(c) = &self.capture {
            let collection = |id: &str| {
                json!({
                    "dataCollectionMode": "Enabled",
                    "dataId": id,
                    "samplingRate": c.sampling_rate,
                })
            };
            props.insert(
                "dataCollector".into(),
                json!({"collections": {
                    "model_inputs": collection(&c.data_id),
                    "model_outputs": collection(&c.data_id),
                }}),
            );
        }
        json!({
            "location": self.location,
            "sku": {"name": "Default", "capacity": self.capacity},
            "tags": self.tags,
            "properties": props,
        })
    }

    /// The serving container's environment: where the model is, the port, and, with a data
    /// collector, `MLCTL_CAPTURE_MDC` (`mlctl serve` hands it the captured requests).
    fn environment_variables(&self) -> Value {
        let mut env = json!({
            "MLCTL_MODEL_DIR": MODEL_MOUNT,
            "MLCTL_SERVE_PORT": SERVE_PORT.to_string(),
        });
        if self.capture.is_some() {
            env["MLCTL_CAPTURE_MDC"] = json!("true");
        }
        env
    }

    /// Whether a live deployment already is what this plan asks for (model, environment and
    /// its variables, size, capacity and data collector), so a re-apply sends nothing.
    pub(crate) fn matches(&self, live: &Value) -> bool {
        let want = self.to_json();
        let p = |v: &Value, k: &str| v["properties"][k].clone();
        let ids_equal = |a: &Value, b: &Value| {
            a.as_str().map(str::to_ascii_lowercase) == b.as_str().map(str::to_ascii_lowercase)
        };
        ids_equal(&p(&want, "model"), &p(live, "model"))
            && ids_equal(&p(&want, "environmentId"), &p(live, "environmentId"))
            && p(&want, "instanceType") == p(live, "instanceType")
            && want["sku"]["capacity"] == live["sku"]["capacity"]
            && collector_of(&want) == collector_of(live)
            && p(&want, "environmentVariables") == p(live, "environmentVariables")
    }
}

/// A data collector's collections as (name, dataId lowercased, rate), for comparison.
fn collector_of(v: &Value) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = v["properties"]["dataCollector"]["collections"]
        .as_object()
        .map(|c| {
            c.iter()
                .filter(|(_, c)| c["dataCollectionMode"].as_str() != Some("Disabled"))
                .map(|(k, c)| {
                    (
                        k.clone(),
                        c["dataId"]
                            .as_str()
                            .unwrap_or_default()
                            .to_ascii_lowercase(),
                        format!("{:.6}", c["samplingRate"].as_f64().unwrap_or(1.0)),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The serving environment: the image with mlctl's routes.
pub(crate) fn environment_body(image: &str, tags: &BTreeMap<String, String>) -> Value {
    let route = |path: &str| json!({"path": path, "port": SERVE_PORT});
    json!({"properties": {
        "image": image,
        "osType": "Linux",
        "inferenceConfig": {
            "livenessRoute": route("/ping"),
            "readinessRoute": route("/ping"),
            "scoringRoute": route("/invocations"),
        },
        "description": "mlctl serve (the model mounted at /var/mlctl/model)",
        "tags": tags,
    }})
}

/// The environment version of an image: a digest of what it contains (versions are
/// immutable, so a different image or route is a new version).
pub(crate) fn environment_version(image: &str) -> String {
    short_hash(
        &[image, "/ping", "/invocations", &SERVE_PORT.to_string()],
        12,
    )
}

/// The uri_folder data asset (container and version bodies) of an endpoint's data
/// collector output.
pub(crate) fn capture_data_bodies(uri: &str, tags: &BTreeMap<String, String>) -> (Value, Value) {
    let description = "mlctl: requests and predictions captured by the endpoint's data collector";
    (
        json!({"properties": {"dataType": "uri_folder", "description": description, "tags": tags}}),
        json!({"properties": {"dataType": "uri_folder", "dataUri": uri, "description": description, "tags": tags}}),
    )
}

// ---------------------------------------------------------------------------------------------
// What Azure shows

/// An online endpoint as read back.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct LiveEndpoint {
    pub state: String,
    pub location: String,
    pub auth_mode: String,
    pub tags: BTreeMap<String, String>,
    pub traffic: BTreeMap<String, u32>,
    pub mirror: BTreeMap<String, u32>,
    pub scoring_uri: Option<String>,
    pub description: Option<String>,
}

fn percents(v: &Value) -> BTreeMap<String, u32> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0).min(100) as u32))
                .collect()
        })
        .unwrap_or_default()
}

fn strings(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads `GET onlineEndpoints/E`.
pub(crate) fn parse_endpoint(v: &Value) -> LiveEndpoint {
    let p = &v["properties"];
    LiveEndpoint {
        state: p["provisioningState"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        location: v["location"].as_str().unwrap_or_default().to_string(),
        auth_mode: p["authMode"].as_str().unwrap_or_default().to_string(),
        tags: strings(&v["tags"]),
        traffic: percents(&p["traffic"]),
        mirror: percents(&p["mirrorTraffic"]),
        scoring_uri: p["scoringUri"].as_str().map(str::to_string),
        description: p["description"].as_str().map(str::to_string),
    }
}

/// An online deployment as read back.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct LiveDeployment {
    pub name: String,
    pub state: String,
    /// The mlctl model and version (its tags; empty and 0 for one mlctl did not make).
    pub model: String,
    pub version: u32,
    pub capacity: u32,
    /// The body as read.
    pub body: Value,
}

/// Reads one deployment of `GET onlineEndpoints/E/deployments`.
pub(crate) fn parse_deployment(v: &Value) -> LiveDeployment {
    let tags = &v["tags"];
    LiveDeployment {
        name: v["name"].as_str().unwrap_or_default().to_string(),
        state: v["properties"]["provisioningState"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        model: tags[MODEL_TAG].as_str().unwrap_or_default().to_string(),
        version: tags[VERSION_TAG]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        capacity: v["sku"]["capacity"]
            .as_u64()
            .unwrap_or(1)
            .min(u32::MAX as u64) as u32,
        body: v.clone(),
    }
}

fn settling(state: &str) -> bool {
    matches!(state, "Creating" | "Updating" | "Scaling" | "Deleting")
}

/// The live state of an endpoint, in mlctl's words: the deployments that take traffic with
/// their share, their instances, and the health of the endpoint and of them.
pub(crate) fn status_of(name: &str, ep: &LiveEndpoint, deps: &[LiveDeployment]) -> EndpointStatus {
    let mut variants: Vec<Variant> = Vec::new();
    let mut instances = 0;
    let mut problems: Vec<String> = Vec::new();
    let mut progressing = settling(&ep.state);
    let mut degraded = matches!(ep.state.as_str(), "Failed" | "Canceled");
    for (d, weight) in ep.traffic.iter().filter(|(_, w)| **w > 0) {
        let Some(dep) = deps.iter().find(|x| x.name == *d) else {
            degraded = true;
            problems.push(format!(
                "traffic goes to deployment {d}, which does not exist"
            ));
            continue;
        };
        variants.push(Variant {
            model: dep.model.clone(),
            version: dep.version,
            weight: *weight,
        });
        instances += dep.capacity;
        match dep.state.as_str() {
            "Succeeded" => {}
            s => {
                if settling(s) {
                    progressing = true;
                } else {
                    degraded = true;
                }
                problems.push(format!("deployment {d} is {s}"));
            }
        }
    }
    variants.sort_by(|a, b| b.weight.cmp(&a.weight).then(a.version.cmp(&b.version)));
    if variants.is_empty() && !settling(&ep.state) {
        degraded = true;
        problems.push("no deployment takes traffic".into());
    }
    // The worst wins.
    let health = if degraded {
        Health::Degraded
    } else if progressing {
        Health::Progressing
    } else if ep.state == "Succeeded" {
        Health::Healthy
    } else {
        Health::Unknown
    };
    let mut message: Vec<String> = Vec::new();
    if ep.state != "Succeeded" && !ep.state.is_empty() {
        message.push(format!("endpoint is {}", ep.state));
    }
    message.extend(problems);
    EndpointStatus {
        name: name.to_string(),
        url: ep.scoring_uri.clone(),
        health,
        variants,
        instances,
        message: (!message.is_empty()).then(|| message.join("; ")),
    }
}

// ---------------------------------------------------------------------------------------------
// The rollout

/// What a rollout is doing, kept in its [`DeploymentHandle::id`] (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Rollout {
    /// The new version's deployment.
    pub deployment: String,
    /// `all-at-once`, `canary` or `blue-green`.
    pub strategy: StrategyType,
    /// canary: the new version's share during the bake.
    pub percent: u32,
    /// How long the bake lasts (0: none).
    pub bake_secs: u64,
    /// canary: requests the new version must serve during the bake (`minRequests`).
    #[serde(default)]
    pub min_requests: u64,
    /// canary: the longest bake while short of `min_requests` (`maxBakeTime`; at least
    /// `bake_secs`).
    #[serde(default)]
    pub max_bake_secs: u64,
    /// `rollback.maxErrorRate`: the largest share of 5xx answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<f64>,
    /// `rollback.maxP99LatencyMs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99_ms: Option<f64>,
    /// How late Azure Monitor's figures are ([`crate::Features::metrics_delay_secs`]): a
    /// judged bake is judged on its figures up to this long ago, so it lasts that much longer.
    #[serde(default)]
    pub metrics_delay_secs: u64,
    /// The deployment's `PUT`, when this deploy sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
}

impl Rollout {
    /// The rollout a request asks for.
    ///
    /// # Errors
    /// `bakeTime` that does not parse (validation refuses it first).
    pub(crate) fn of(spec: &EndpointSpec, deployment: &str) -> Result<Rollout> {
        let s = spec.strategy.as_ref();
        let strategy = s.map_or(StrategyType::AllAtOnce, |s| s.ty);
        let default_bake = match strategy {
            StrategyType::AllAtOnce => 0,
            StrategyType::Canary => DEFAULT_CANARY_BAKE,
            StrategyType::BlueGreen => DEFAULT_BLUE_GREEN_BAKE,
        };
        let invalid = |e: String| err(ErrorKind::Invalid, "deploy", format!("strategy.{e}"));
        let rules = match s {
            Some(s) if strategy != StrategyType::AllAtOnce => {
                Some(BakeRules::of(s, Duration::from_secs(default_bake)).map_err(invalid)?)
            }
            _ => None,
        };
        let bake_secs = rules.as_ref().map_or(default_bake, |r| r.bake.as_secs());
        // `minRequests` and `maxBakeTime` are a canary's: a blue-green's shadow bakes
        // `bakeTime`, judged on the thresholds only.
        let canary = strategy == StrategyType::Canary;
        Ok(Rollout {
            deployment: deployment.to_string(),
            strategy,
            percent: s
                .and_then(|s| s.percent)
                .map_or(DEFAULT_CANARY_PERCENT, |p| p.clamp(1, 99) as u32),
            bake_secs,
            min_requests: rules
                .as_ref()
                .filter(|_| canary)
                .map_or(0, |r| r.min_requests),
            max_bake_secs: match &rules {
                Some(r) if canary => r.max_bake.as_secs(),
                _ => bake_secs,
            },
            max_error_rate: rules.as_ref().and_then(|r| r.max_error_rate),
            max_p99_ms: rules.as_ref().and_then(|r| r.max_p99_ms),
            metrics_delay_secs: 0,
            operation: None,
        })
    }

    /// What the bake must show, for [`mlctl_core::bake::judge`].
    pub(crate) fn rules(&self) -> BakeRules {
        BakeRules {
            bake: Duration::from_secs(self.bake_secs),
            max_bake: Duration::from_secs(self.max_bake_secs.max(self.bake_secs)),
            min_requests: self.min_requests,
            max_error_rate: self.max_error_rate,
            max_p99_ms: self.max_p99_ms,
        }
    }

    /// Whether the bake is judged on Azure Monitor's metrics; else it lasts `bakeTime`.
    pub(crate) fn judged(&self) -> bool {
        self.strategy != StrategyType::AllAtOnce
            && (self.min_requests > 0 || self.max_error_rate.is_some() || self.max_p99_ms.is_some())
    }
}

/// A bake: which deployment, since when (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bake {
    pub deployment: String,
    pub since: u64,
}

impl Bake {
    pub(crate) fn tag(&self) -> String {
        format!("{}@{}", self.deployment, self.since)
    }

    pub(crate) fn parse(tag: &str) -> Option<Bake> {
        let (d, t) = tag.rsplit_once('@')?;
        Some(Bake {
            deployment: d.to_string(),
            since: t.parse().ok()?,
        })
    }
}

/// The next thing a rollout does.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    /// Nothing to send yet.
    Wait(String),
    /// `PUT` the endpoint with this traffic, mirror and bake (`None`: no bake tag).
    Route {
        traffic: BTreeMap<String, u32>,
        mirror: BTreeMap<String, u32>,
        bake: Option<Bake>,
        message: String,
    },
    /// Delete these deployments (no traffic any more).
    Retire(Vec<String>),
    /// The bake failed its judge: put this traffic back (no mirror, no bake) and delete the
    /// new deployment.
    RollBack {
        traffic: BTreeMap<String, u32>,
        reason: String,
    },
    /// The new version serves alone.
    Done,
    /// The new deployment did not provision.
    Failed(String),
}

fn only(d: &str, pct: u32) -> BTreeMap<String, u32> {
    BTreeMap::from([(d.to_string(), pct)])
}

fn show_duration(secs: u64) -> String {
    match (secs / 3600, secs % 3600 / 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, m, s) => format!("{h}h {m}m {s}s"),
    }
}

/// The bake of rollout `r` that the endpoint's `mlctl:bake` tag records, if it is `r`'s.
pub(crate) fn bake_of(r: &Rollout, ep: &LiveEndpoint) -> Option<Bake> {
    ep.tags
        .get(BAKE_TAG)
        .and_then(|t| Bake::parse(t))
        .filter(|b| b.deployment == r.deployment)
}

/// The next step of rollout `r` on an endpoint showing `ep` with deployments `deps`, at
/// `now` (unix seconds), with what the new deployment served since its bake started
/// (`sample`, from Azure Monitor; read only when the bake is [`Rollout::judged`]). Pure:
/// everything it needs is what Azure shows, so a rollout stopped anywhere resumes from there.
pub(crate) fn next_step(
    r: &Rollout,
    ep: &LiveEndpoint,
    deps: &[LiveDeployment],
    now: u64,
    sample: Option<&BakeSample>,
) -> Step {
    let new = r.deployment.as_str();
    let Some(dep) = deps.iter().find(|d| d.name == new) else {
        return Step::Failed(format!("deployment {new} no longer exists"));
    };
    let others_serving: Vec<&str> = ep
        .traffic
        .iter()
        .filter(|(d, w)| d.as_str() != new && **w > 0)
        .map(|(d, _)| d.as_str())
        .collect();
    match dep.state.as_str() {
        "Succeeded" => {}
        "Failed" | "Canceled" => {
            let serving = if others_serving.is_empty() {
                String::new()
            } else {
                format!("; {} keeps serving", others_serving.join(", "))
            };
            return Step::Failed(format!(
                "deployment {new} is {}{serving}; its container log says why (`az ml online-deployment get-logs --endpoint-name <endpoint> --name {new}`)",
                dep.state
            ));
        }
        s => {
            return Step::Wait(format!(
                "deployment {new} is {}",
                if s.is_empty() { "starting" } else { s }
            ));
        }
    }
    if settling(&ep.state) {
        return Step::Wait(format!("endpoint is {}", ep.state));
    }
    let bake = bake_of(r, ep);
    let alone = ep.traffic.get(new) == Some(&100)
        && others_serving.is_empty()
        && ep.mirror.values().all(|m| *m == 0);
    if alone {
        if ep.tags.contains_key(BAKE_TAG) {
            return Step::Route {
                traffic: only(new, 100),
                mirror: BTreeMap::new(),
                bake: None,
                message: format!("{new} serves all traffic"),
            };
        }
        let idle: Vec<String> = deps
            .iter()
            .filter(|d| d.name != new)
            .map(|d| d.name.clone())
            .collect();
        return if idle.is_empty() {
            Step::Done
        } else {
            Step::Retire(idle)
        };
    }
    let promote = |message: String| Step::Route {
        traffic: only(new, 100),
        mirror: BTreeMap::new(),
        bake: None,
        message,
    };
    let all = promote(format!("sending all traffic to {new}"));
    // A first deployment (nothing else serves) or no bake: all at once.
    if others_serving.is_empty() || r.strategy == StrategyType::AllAtOnce || r.bake_secs == 0 {
        return all;
    }
    let baked = |b: &Bake| now.saturating_sub(b.since);
    let version = format!("v{}", dep.version);
    // A judged bake's verdict; `None`: not judged, it lasts `bakeTime`.
    let verdict = |b: &Bake| -> Option<Verdict> {
        if !r.judged() {
            return None;
        }
        // Azure Monitor's figures cover the bake up to `metrics_delay_secs` ago.
        let covered = baked(b).saturating_sub(r.metrics_delay_secs);
        Some(match sample {
            Some(sample) => {
                match judge(&r.rules(), sample, Duration::from_secs(covered), &version) {
                    Verdict::Wait(m) if r.metrics_delay_secs > 0 => Verdict::Wait(format!(
                        "{m} (Azure Monitor's figures, up to {} late)",
                        show_duration(r.metrics_delay_secs)
                    )),
                    v => v,
                }
            }
            None => Verdict::Wait("waiting for Azure Monitor's metrics of the bake".into()),
        })
    };
    match r.strategy {
        StrategyType::AllAtOnce => all,
        StrategyType::Canary => {
            let old = ep
                .traffic
                .iter()
                .filter(|(d, _)| d.as_str() != new)
                .max_by_key(|(_, w)| **w)
                .map(|(d, _)| d.clone())
                .unwrap_or_default();
            let split =
                BTreeMap::from([(old.clone(), 100 - r.percent), (new.to_string(), r.percent)]);
            let in_place = ep.traffic == split && ep.mirror.values().all(|m| *m == 0);
            match (bake.clone(), bake.as_ref().and_then(verdict)) {
                (Some(_), Some(Verdict::RollBack(reason))) => Step::RollBack {
                    traffic: only(&old, 100),
                    reason: format!("canary {version} ({new}) rolled back: {reason}"),
                },
                (Some(b), Some(Verdict::Promote)) => promote(format!(
                    "canary {new} baked {} and passed its judge; promoting it",
                    show_duration(baked(&b))
                )),
                (Some(_), Some(Verdict::Wait(progress))) if in_place => Step::Wait(format!(
                    "canary {new} takes {}% beside {old}: {progress}",
                    r.percent
                )),
                (Some(b), None) if baked(&b) >= r.bake_secs => promote(format!(
                    "canary {new} baked {}; promoting it",
                    show_duration(r.bake_secs)
                )),
                (Some(b), None) if in_place => Step::Wait(format!(
                    "canary {new} takes {}% beside {old}; baked {} of {}",
                    r.percent,
                    show_duration(baked(&b)),
                    show_duration(r.bake_secs)
                )),
                // Traffic moved by hand mid-bake: put the split back, keeping the bake.
                (Some(b), _) => Step::Route {
                    traffic: split,
                    mirror: BTreeMap::new(),
                    bake: Some(b),
                    message: format!("canary {new}: putting its {}% back", r.percent),
                },
                (None, _) => Step::Route {
                    traffic: split,
                    mirror: BTreeMap::new(),
                    bake: Some(Bake {
                        deployment: new.to_string(),
                        since: now,
                    }),
                    message: format!(
                        "canary {new} takes {}% of traffic for {}",
                        r.percent,
                        show_duration(r.bake_secs)
                    ),
                },
            }
        }
        StrategyType::BlueGreen => {
            let mut blue = ep.traffic.clone();
            blue.remove(new);
            let shadow = only(new, SHADOW_PERCENT);
            let in_place = ep.mirror == shadow && ep.traffic.get(new).copied().unwrap_or(0) == 0;
            match (bake.clone(), bake.as_ref().and_then(verdict)) {
                (Some(_), Some(Verdict::RollBack(reason))) => Step::RollBack {
                    traffic: blue,
                    reason: format!(
                        "{version} ({new}) rolled back before taking live traffic: on its shadow copy, {reason}"
                    ),
                },
                (Some(b), Some(Verdict::Promote)) => promote(format!(
                    "{new} answered a copy of live traffic for {} within its thresholds; switching all traffic to it",
                    show_duration(baked(&b))
                )),
                (Some(_), Some(Verdict::Wait(progress))) if in_place => Step::Wait(format!(
                    "{new} gets a copy of {SHADOW_PERCENT}% of live traffic (shadow): {progress}"
                )),
                (Some(b), None) if baked(&b) >= r.bake_secs => promote(format!(
                    "{new} answered a copy of live traffic for {}; switching all traffic to it",
                    show_duration(r.bake_secs)
                )),
                (Some(b), None) if in_place => Step::Wait(format!(
                    "{new} gets a copy of {SHADOW_PERCENT}% of live traffic (shadow); baked {} of {}",
                    show_duration(baked(&b)),
                    show_duration(r.bake_secs)
                )),
                (b, _) => Step::Route {
                    traffic: blue,
                    mirror: shadow,
                    bake: Some(b.unwrap_or(Bake {
                        deployment: new.to_string(),
                        since: now,
                    })),
                    message: format!(
                        "{new} started beside {}; it gets a copy of {SHADOW_PERCENT}% of live traffic for {}",
                        others_serving.join(", "),
                        show_duration(r.bake_secs)
                    ),
                },
            }
        }
    }
}

/// The endpoint's body with this traffic, mirror and bake (the `mlctl:bake` tag), the rest
/// as it is.
pub(crate) fn routed(
    ep: &LiveEndpoint,
    traffic: BTreeMap<String, u32>,
    mirror: BTreeMap<String, u32>,
    bake: Option<Bake>,
) -> EndpointBody {
    let mut body = EndpointBody::of(ep);
    body.traffic = traffic;
    body.mirror = mirror;
    match bake {
        Some(b) => body.tags.insert(BAKE_TAG.into(), b.tag()),
        None => body.tags.remove(BAKE_TAG),
    };
    body
}

/// The endpoint's body once `wanted` (serving `to`) takes all traffic: no mirror, no bake.
pub(crate) fn rollback_endpoint(
    ep: &LiveEndpoint,
    wanted: &str,
    to: &ModelVersion,
) -> EndpointBody {
    let mut body = routed(ep, only(wanted, 100), BTreeMap::new(), None);
    body.tags.insert(MODEL_TAG.into(), to.model.clone());
    body.tags.insert(VERSION_TAG.into(), to.version.to_string());
    body
}

/// A deployment of `to` made again for a rollback, in the shape of `shape` (a live
/// deployment: its size, capacity, environment and data collector), its read-only fields
/// dropped.
pub(crate) fn rollback_deployment_body(
    shape: &Value,
    model_id: &str,
    to: &ModelVersion,
    commit: &str,
) -> Value {
    let mut tags = strings(&shape["tags"]);
    tags.insert(MODEL_TAG.into(), to.model.clone());
    tags.insert(VERSION_TAG.into(), to.version.to_string());
    tags.insert("mlctl:commit".into(), commit.to_string());
    let props = shape["properties"].as_object().cloned().unwrap_or_default();
    let mut clean = Map::new();
    for k in [
        "endpointComputeType",
        "model",
        "modelMountPath",
        "environmentId",
        "environmentVariables",
        "instanceType",
        "scaleSettings",
        "dataCollector",
        "requestSettings",
        "livenessProbe",
        "readinessProbe",
        "description",
    ] {
        if k == "model" {
            clean.insert(k.into(), json!(model_id));
        } else if let Some(v) = props.get(k) {
            clean.insert(k.into(), v.clone());
        }
    }
    json!({
        "location": shape["location"],
        "sku": shape["sku"],
        "tags": tags,
        "properties": clean,
    })
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// The deployer

/// The [`Deployer`] of an Azure ML target.
pub struct AzureDeployer {
    az: Arc<Azure>,
}

impl AzureDeployer {
    pub(crate) fn new(az: Arc<Azure>) -> Self {
        AzureDeployer { az }
    }

    fn endpoint_path(&self, endpoint: &str) -> String {
        format!("onlineEndpoints/{endpoint}")
    }

    fn deployment_path(&self, endpoint: &str, deployment: &str) -> String {
        format!("onlineEndpoints/{endpoint}/deployments/{deployment}")
    }

    fn azure_endpoint(&self, ctx: &OpContext, name: &str) -> String {
        endpoint_name(&self.az.target, &ctx.project, name)
    }

    /// The region of what mlctl creates: the target's `location`, else the workspace's.
    async fn location(&self) -> Result<String> {
        self.az.arm.location().await
    }

    async fn live_endpoint(&self, endpoint: &str) -> Result<Option<LiveEndpoint>> {
        Ok(self
            .az
            .arm
            .get(&self.endpoint_path(endpoint))
            .await?
            .map(|v| parse_endpoint(&v)))
    }

    async fn live_deployments(&self, endpoint: &str) -> Result<Vec<LiveDeployment>> {
        Ok(self
            .az
            .arm
            .list(&format!("onlineEndpoints/{endpoint}/deployments"))
            .await?
            .iter()
            .map(parse_deployment)
            .collect())
    }

    /// The serving environment version of the target's image, created when missing; its ARM
    /// id.
    async fn ensure_environment(
        &self,
        endpoint: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<String> {
        let image = self.az.target.image.clone().unwrap_or_else(default_image);
        let name = format!("{endpoint}-serve");
        let version = environment_version(&image);
        let path = format!("environments/{name}/versions/{version}");
        if self.az.arm.get(&path).await?.is_none() {
            self.az
                .arm
                .put(
                    &format!("environments/{name}"),
                    &json!({"properties": {"description": "mlctl serve", "tags": tags}}),
                )
                .await?;
            self.az
                .arm
                .put(&path, &environment_body(&image, tags))
                .await?;
        }
        Ok(self.az.arm.id(&path))
    }

    /// The capture data asset of an endpoint, created when missing.
    async fn ensure_capture(
        &self,
        endpoint: &str,
        rate: f64,
        tags: &BTreeMap<String, String>,
    ) -> Result<CapturePlan> {
        let name = format!("{endpoint}-capture");
        let uri = self
            .az
            .blob
            .url(&self.az.blob.key(&format!("capture/{endpoint}/")));
        let version = short_hash(&[&uri], 8);
        let path = format!("data/{name}/versions/{version}");
        if self.az.arm.get(&path).await?.is_none() {
            let (container, body) = capture_data_bodies(&uri, tags);
            self.az.arm.put(&format!("data/{name}"), &container).await?;
            self.az.arm.put(&path, &body).await?;
        }
        Ok(CapturePlan {
            sampling_rate: rate,
            data_id: self.az.arm.id(&path),
        })
    }

    /// Makes the endpoint's key what the spec says: the token behind `auth.token`, or
    /// Azure's own when the spec has none (after a token was set, a fresh one).
    async fn ensure_key(&self, endpoint: &str, token: Option<&str>, had_token: bool) -> Result<()> {
        let path = self.endpoint_path(endpoint);
        match token {
            Some(token) => {
                let keys = self
                    .az
                    .arm
                    .post(&format!("{path}/listKeys"), &json!({}))
                    .await?;
                if keys["primaryKey"].as_str() != Some(token) {
                    self.az
                        .arm
                        .post(
                            &format!("{path}/regenerateKeys"),
                            &json!({"keyType": "Primary", "keyValue": token}),
                        )
                        .await?;
                }
            }
            None if had_token => {
                // The old token must stop working: Azure makes a new key.
                self.az
                    .arm
                    .post(
                        &format!("{path}/regenerateKeys"),
                        &json!({"keyType": "Primary"}),
                    )
                    .await?;
            }
            None => {}
        }
        Ok(())
    }

    async fn route(
        &self,
        endpoint: &str,
        ep: &LiveEndpoint,
        traffic: BTreeMap<String, u32>,
        mirror: BTreeMap<String, u32>,
        bake: Option<Bake>,
    ) -> Result<Option<Operation>> {
        let body = routed(ep, traffic, mirror, bake);
        self.az
            .arm
            .put_started(&self.endpoint_path(endpoint), &body.to_json())
            .await
    }

    /// What deployment `r.deployment` of `endpoint` served since `since` (unix seconds), from
    /// Azure Monitor ([`crate::insights`]); the p99 only when a threshold needs it.
    async fn bake_sample(
        &self,
        endpoint: &str,
        r: &Rollout,
        since: u64,
        now: u64,
    ) -> Result<BakeSample> {
        let id = self
            .az
            .arm
            .id(&self.deployment_path(endpoint, &r.deployment));
        let span = insights::timespan(since, now);
        let read = |metric: &'static str,
                    aggregation: &'static str,
                    filter: Option<&'static str>| {
            let url = insights::query(&id, metric, aggregation, &span, filter);
            async move {
                self.az.arm.get_url(&url).await?.ok_or_else(|| {
                    err(
                        ErrorKind::NotFound,
                        "poll",
                        format!(
                            "Azure Monitor has no metrics of deployment {} of endpoint {endpoint}: it no longer exists",
                            r.deployment
                        ),
                    )
                })
            }
        };
        let unread = |m: String| err(ErrorKind::Transient, "poll", m);
        let body = read(
            "RequestsPerMinute",
            insights::REQUESTS_AGGREGATIONS,
            Some("envoy_response_code eq '*'"),
        )
        .await?;
        let (requests, server_errors) = insights::requests(&body).map_err(unread)?;
        let p99_ms = match r.max_p99_ms {
            Some(_) => insights::p99_ms(
                &read("RequestLatency_P99", insights::P99_AGGREGATIONS, None).await?,
            )
            .map_err(unread)?,
            None => None,
        };
        Ok(BakeSample {
            requests,
            server_errors,
            p99_ms,
        })
    }

    /// Deletes deployments and waits for each to go.
    async fn retire(&self, endpoint: &str, names: &[String]) -> Result<()> {
        for d in names {
            self.az
                .arm
                .delete(&self.deployment_path(endpoint, d))
                .await?;
        }
        Ok(())
    }
}

/// The mlctl image of this version: what serves (and trains built-ins) when the target names
/// no `image`.
pub(crate) fn default_image() -> String {
    format!("ghcr.io/mlctl/mlctl:{}", env!("CARGO_PKG_VERSION"))
}

/// The endpoint's tags: the resource's, what it rolled out, whose key it takes.
fn endpoint_tags(req: &EndpointRequest) -> BTreeMap<String, String> {
    let mut t = req.tags.to_map();
    t.insert(MODEL_TAG.into(), req.model.model.clone());
    t.insert(VERSION_TAG.into(), req.model.version.to_string());
    t.insert(
        AUTH_TAG.into(),
        if req.spec.auth.is_some() {
            "token"
        } else {
            "azure"
        }
        .into(),
    );
    t
}

fn deployment_tags(tags: &mlctl_core::Tags, v: &ModelVersion) -> BTreeMap<String, String> {
    let mut t = tags.to_map();
    t.insert(MODEL_TAG.into(), v.model.clone());
    t.insert(VERSION_TAG.into(), v.version.to_string());
    t
}

#[async_trait]
impl Deployer for AzureDeployer {
    fn capabilities(&self) -> Capabilities {
        let mut notes = self.az.features.notes();
        notes.push(
            "azureml endpoints without `auth` take Azure's own keys (authMode Key; `az ml online-endpoint get-credentials`): Azure ML has no endpoint without authentication".into(),
        );
        Capabilities {
            fields: field_rules(),
            strategies: StrategyType::ALL.to_vec(),
            poll_interval: self.az.settings.poll_interval,
            notes,
            ..Capabilities::default()
        }
    }

    async fn deploy(&self, ctx: &OpContext, req: &EndpointRequest) -> Result<DeploymentHandle> {
        if req.spec.serve.is_some() {
            return Err(err(
                ErrorKind::NotSupported,
                "deploy",
                format!(
                    "endpoint `{}`: `serve` (a serving command) is not supported on azureml targets; endpoints serve the registered model with mlctl's server",
                    req.name
                ),
            ));
        }
        let endpoint = self.azure_endpoint(ctx, &req.name);
        let tags = endpoint_tags(req);
        let path = self.endpoint_path(&endpoint);
        // The endpoint first: it must exist before a deployment can.
        let live = self.live_endpoint(&endpoint).await?;
        // Deployments live where their endpoint does.
        let location = match &live {
            Some(e) if !e.location.is_empty() => e.location.clone(),
            _ => self.location().await?,
        };
        let had_token = live
            .as_ref()
            .is_some_and(|e| e.tags.get(AUTH_TAG).map(String::as_str) == Some("token"));
        match &live {
            None => {
                let body = EndpointBody {
                    location: location.clone(),
                    auth_mode: "Key".into(),
                    tags: tags.clone(),
                    traffic: BTreeMap::new(),
                    mirror: BTreeMap::new(),
                    description: Some(format!(
                        "mlctl endpoint {} of project {}",
                        req.name, ctx.project
                    )),
                };
                self.az.arm.put(&path, &body.to_json()).await?;
            }
            Some(e) if settling(&e.state) => {
                return Err(err(
                    ErrorKind::Transient,
                    "deploy",
                    format!(
                        "endpoint {endpoint} is {}; it can be updated once that settles",
                        e.state
                    ),
                ));
            }
            Some(e) => {
                let mut body = EndpointBody::of(e);
                let bake = body.tags.get(BAKE_TAG).cloned();
                body.tags = tags.clone();
                if let Some(b) = bake {
                    body.tags.insert(BAKE_TAG.into(), b);
                }
                body.auth_mode = "Key".into();
                if body != EndpointBody::of(e) || e.state == "Failed" {
                    self.az.arm.put(&path, &body.to_json()).await?;
                }
            }
        }
        let token = req.spec.auth.as_ref().map(|a| a.token.as_str());
        self.ensure_key(&endpoint, token, had_token).await?;

        let name = deployment_name(&req.model.model, req.model.version);
        let dtags = deployment_tags(&req.tags, &req.model);
        let environment_id = self.ensure_environment(&endpoint, &dtags).await?;
        let capture = match &req.spec.capture {
            Some(c) => Some(
                self.ensure_capture(
                    &endpoint,
                    (c.sampling_percent / 100.0).clamp(0.0, 1.0),
                    &dtags,
                )
                .await?,
            ),
            None => None,
        };
        let plan = DeploymentPlan {
            name: name.clone(),
            location,
            model_id: self.az.arm.id(&model_path(&ctx.project, &req.model)),
            environment_id,
            instance_type: instance_type(req.spec.compute.as_ref()).map_err(|m| {
                err(
                    ErrorKind::Invalid,
                    "deploy",
                    format!("endpoint `{}`: {m}", req.name),
                )
            })?,
            capacity: req.spec.instances.unwrap_or(1).clamp(1, u32::MAX as i64) as u32,
            capture,
            tags: dtags,
        };
        let dpath = self.deployment_path(&endpoint, &name);
        let existing = self.az.arm.get(&dpath).await?;
        let mut rollout = Rollout::of(&req.spec, &name)?;
        rollout.metrics_delay_secs = self.az.features.metrics_delay_secs;
        match existing.as_ref().map(parse_deployment) {
            Some(d) if settling(&d.state) => {}
            Some(d) if d.state == "Succeeded" && plan.matches(&d.body) => {}
            Some(d)
                if (d.state == "Failed" || d.state == "Canceled")
                    && live
                        .as_ref()
                        .is_none_or(|e| e.traffic.get(&name).copied().unwrap_or(0) == 0) =>
            {
                // A failed deployment without traffic is made again from scratch; one that
                // takes traffic (it crashed while serving) cannot be deleted, so it is
                // updated in place below.
                self.az.arm.delete(&dpath).await?;
                rollout.operation = self.az.arm.put_started(&dpath, &plan.to_json()).await?;
            }
            _ => rollout.operation = self.az.arm.put_started(&dpath, &plan.to_json()).await?,
        }
        let id = serde_json::to_string(&rollout)
            .map_err(|e| err(ErrorKind::Invalid, "deploy", format!("rollout record: {e}")))?;
        Ok(DeploymentHandle {
            endpoint: req.name.clone(),
            id,
        })
    }

    async fn poll(&self, ctx: &OpContext, handle: &DeploymentHandle) -> Result<DeployState> {
        let r: Rollout = serde_json::from_str(&handle.id).map_err(|e| {
            err(
                ErrorKind::Invalid,
                "poll",
                format!("rollout handle of `{}` is not an azureml rollout ({e}); run `mlctl apply` again", handle.endpoint),
            )
        })?;
        let endpoint = self.azure_endpoint(ctx, &handle.endpoint);
        if let Some(op) = &r.operation {
            match self.az.arm.poll(op).await? {
                OperationState::InProgress(_) => {
                    return Ok(DeployState::InProgress {
                        message: format!("deployment {} is provisioning", r.deployment),
                    });
                }
                OperationState::Failed(reason) => {
                    return Ok(DeployState::Failed {
                        reason: format!(
                            "deployment {} of endpoint {endpoint} failed: {reason}; mlctl moved no traffic (its container log: `az ml online-deployment get-logs --endpoint-name {endpoint} --name {}`)",
                            r.deployment, r.deployment
                        ),
                    });
                }
                OperationState::Succeeded => {}
            }
        }
        let Some(ep) = self.live_endpoint(&endpoint).await? else {
            return Ok(DeployState::Failed {
                reason: format!("endpoint {endpoint} no longer exists"),
            });
        };
        let deps = self.live_deployments(&endpoint).await?;
        let now = unix_now();
        let sample = match bake_of(&r, &ep) {
            Some(b) if r.judged() => Some(self.bake_sample(&endpoint, &r, b.since, now).await?),
            _ => None,
        };
        Ok(match next_step(&r, &ep, &deps, now, sample.as_ref()) {
            Step::Wait(message) => DeployState::InProgress { message },
            Step::Route {
                traffic,
                mirror,
                bake,
                message,
            } => {
                self.route(&endpoint, &ep, traffic, mirror, bake).await?;
                DeployState::InProgress { message }
            }
            Step::Retire(names) => {
                self.retire(&endpoint, &names).await?;
                DeployState::InProgress {
                    message: format!("removed {}, which took no traffic", names.join(", ")),
                }
            }
            Step::RollBack { traffic, reason } => {
                let mut body = routed(&ep, traffic.clone(), BTreeMap::new(), None);
                // The endpoint's model tags follow what serves again.
                if let Some(back) = traffic
                    .keys()
                    .next()
                    .and_then(|d| deps.iter().find(|x| &x.name == d))
                {
                    body.tags.insert(MODEL_TAG.into(), back.model.clone());
                    body.tags
                        .insert(VERSION_TAG.into(), back.version.to_string());
                }
                self.az
                    .arm
                    .put(&self.endpoint_path(&endpoint), &body.to_json())
                    .await?;
                self.retire(&endpoint, std::slice::from_ref(&r.deployment))
                    .await?;
                let ep = self.live_endpoint(&endpoint).await?.ok_or_else(|| {
                    err(
                        ErrorKind::NotFound,
                        "poll",
                        format!("endpoint {endpoint} disappeared during the rollback"),
                    )
                })?;
                let deps = self.live_deployments(&endpoint).await?;
                DeployState::RolledBack {
                    reason: format!(
                        "{reason}; {} serves all traffic again and {} was deleted",
                        traffic.keys().cloned().collect::<Vec<_>>().join(", "),
                        r.deployment
                    ),
                    status: status_of(&handle.endpoint, &ep, &deps),
                }
            }
            Step::Done => DeployState::Done(status_of(&handle.endpoint, &ep, &deps)),
            Step::Failed(reason) => DeployState::Failed { reason },
        })
    }

    async fn status(&self, ctx: &OpContext, name: &str) -> Result<Option<EndpointStatus>> {
        let endpoint = self.azure_endpoint(ctx, name);
        let Some(ep) = self.live_endpoint(&endpoint).await? else {
            return Ok(None);
        };
        let deps = self.live_deployments(&endpoint).await?;
        Ok(Some(status_of(name, &ep, &deps)))
    }

    async fn rollback(
        &self,
        ctx: &OpContext,
        name: &str,
        to: &ModelVersion,
    ) -> Result<EndpointStatus> {
        let endpoint = self.azure_endpoint(ctx, name);
        let ep = self.live_endpoint(&endpoint).await?.ok_or_else(|| {
            err(
                ErrorKind::NotFound,
                "rollback",
                format!("endpoint {endpoint} does not exist"),
            )
        })?;
        let deps = self.live_deployments(&endpoint).await?;
        let wanted = deps
            .iter()
            .find(|d| d.model == to.model && d.version == to.version)
            .map(|d| d.name.clone())
            .unwrap_or_else(|| deployment_name(&to.model, to.version));
        let target = deps.iter().find(|d| d.name == wanted);
        if target.is_none_or(|d| d.state != "Succeeded") {
            // Made again in the shape of what serves now (size, capacity, capture).
            let shape = ep
                .traffic
                .iter()
                .max_by_key(|(_, w)| **w)
                .and_then(|(d, _)| deps.iter().find(|x| &x.name == d))
                .or(deps.first())
                .ok_or_else(|| {
                    err(ErrorKind::NotFound, "rollback", format!("endpoint {endpoint} has no deployment to copy the shape of; apply the endpoint again"))
                })?;
            let model_id = self.az.arm.id(&model_path(&ctx.project, to));
            let body = rollback_deployment_body(&shape.body, &model_id, to, &ctx.commit);
            self.az
                .arm
                .put(&self.deployment_path(&endpoint, &wanted), &body)
                .await?;
        }
        let body = rollback_endpoint(&ep, &wanted, to);
        self.az
            .arm
            .put(&self.endpoint_path(&endpoint), &body.to_json())
            .await?;
        let idle: Vec<String> = self
            .live_deployments(&endpoint)
            .await?
            .into_iter()
            .filter(|d| d.name != wanted)
            .map(|d| d.name)
            .collect();
        self.retire(&endpoint, &idle).await?;
        let ep = self.live_endpoint(&endpoint).await?.ok_or_else(|| {
            err(
                ErrorKind::NotFound,
                "rollback",
                format!("endpoint {endpoint} disappeared"),
            )
        })?;
        let deps = self.live_deployments(&endpoint).await?;
        Ok(status_of(name, &ep, &deps))
    }

    async fn delete(&self, ctx: &OpContext, name: &str) -> Result<()> {
        let endpoint = self.azure_endpoint(ctx, name);
        if self.live_endpoint(&endpoint).await?.is_none() {
            return Ok(());
        }
        // Azure deletes the deployments with the endpoint (one taking traffic could not be
        // deleted alone).
        self.az.arm.delete(&self.endpoint_path(&endpoint)).await
    }

    async fn update_in_place(&self, ctx: &OpContext, req: &InPlaceRequest) -> Result<()> {
        let endpoint = self.azure_endpoint(ctx, &req.name);
        let Some(ep) = self.live_endpoint(&endpoint).await? else {
            return Err(err(
                ErrorKind::NotFound,
                "update endpoint tags",
                format!(
                    "endpoint {endpoint} is not on Azure ML any more; run `mlctl apply` with a change that deploys it again"
                ),
            ));
        };
        let retag = |live: &BTreeMap<String, String>| {
            let mut t = live.clone();
            for k in &req.removed_labels {
                t.remove(k);
            }
            t.extend(req.tags.to_map());
            t
        };
        let tags = retag(&ep.tags);
        if tags != ep.tags {
            self.az
                .arm
                .patch(&self.endpoint_path(&endpoint), &json!({"tags": tags}))
                .await?;
        }
        for d in self.live_deployments(&endpoint).await? {
            let live = strings(&d.body["tags"]);
            let tags = retag(&live);
            if tags != live {
                self.az
                    .arm
                    .patch(
                        &self.deployment_path(&endpoint, &d.name),
                        &json!({"tags": tags}),
                    )
                    .await?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// What an azureml target honours of an Endpoint

/// Whether the Model an endpoint serves was trained in script mode (no built-in).
fn serves_script_model(spec: &Spec, r: &Resource) -> bool {
    r.as_endpoint().is_some_and(|e| e.serve.is_none())
        && mlctl_core::support::serves_user_code(spec, r)
}

/// Azure tag rules for labels: keys at most 512 characters without `<>%&\?/`, values at
/// most 256.
pub(crate) fn label_problems(labels: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in labels {
        if k.len() > 512 {
            out.push(format!(
                "key `{}...` is longer than 512 characters",
                &k[..20.min(k.len())]
            ));
        }
        if let Some(c) = k.chars().find(|c| "<>%&\\?/".contains(*c)) {
            out.push(format!(
                "key `{k}` has `{c}`, which Azure tag names cannot hold"
            ));
        }
        if v.len() > 256 {
            out.push(format!("the value of `{k}` is longer than 256 characters"));
        }
    }
    out
}

/// The Endpoint kind's declarations on an azureml target.
pub(crate) fn field_rules() -> FieldRules {
    static RULES: OnceLock<FieldRules> = OnceLock::new();
    RULES.get_or_init(build_rules).clone()
}

fn build_rules() -> FieldRules {
    let capture = Support::honoured_as(
        "each deployment's data collector (`model_inputs`, `model_outputs`, samplingRate = samplingPercent / 100); `mlctl serve` in the image hands every sampled request's rows and predictions to the collector's agent (`--capture-mdc`, the protocol of Microsoft's azureml-ai-monitoring), which writes them under `capture/<endpoint>/` in the target's storage, where monitors read them (the fake ARM server's deployments serve nothing: tests write those files)",
    );
    FieldRules::new()
        .with(
            "Endpoint.metadata.labels",
            Support::check(
                "Azure tags on the online endpoint and each of its deployments; a change is applied in place with PATCH (nothing redeploys)",
                |_, r, _| {
                    let problems = label_problems(&r.metadata.labels);
                    (!problems.is_empty()).then(|| {
                        Refusal::new(
                            format!("Azure cannot tag with these labels: {}", problems.join("; ")),
                            "shorten or rename the labels",
                        )
                    })
                },
            ),
        )
        .with(
            "Endpoint.spec.model",
            Support::check(
                "honoured for models trained with a built-in algorithm, served by `mlctl serve` in the target's image; refused for script-mode models",
                |spec, r, _| {
                    serves_script_model(spec, r).then(|| {
                        Refusal::new(
                            "this endpoint serves a script-mode model, whose format only your own serving code reads; azureml endpoints serve mlctl's built-in model format with `mlctl serve`",
                            "serve the model on a local or sagemaker target, or train it with a built-in `algorithm`",
                        )
                    })
                },
            ),
        )
        .with(
            "Endpoint.spec.strategy.type",
            Support::honoured_as(
                "honoured by mlctl moving the endpoint's traffic: all-at-once; canary (`percent` of traffic for `bakeTime`, then all, judged on Azure Monitor's metrics of the new deployment); blue-green (the new deployment gets a mirrored copy of 50% of live traffic for `bakeTime`, then all traffic at once). The old deployment is deleted once the new one serves alone",
            ),
        )
        .with(
            "Endpoint.spec.strategy.minRequests",
            Support::honoured_as(
                "the canary is promoted only once Azure Monitor counted this many requests to its deployment since the bake started (`RequestsPerMinute`; default 100; its figures lag 1-3 minutes), waiting up to `maxBakeTime`, then rolled back",
            ),
        )
        .with(
            "Endpoint.spec.strategy.maxBakeTime",
            Support::honoured_as(
                "the longest a canary short of `minRequests` bakes before it is rolled back (default `bakeTime`)",
            ),
        )
        .with(
            "Endpoint.spec.strategy.percent",
            Support::honoured_as("the canary deployment's share of the endpoint's `traffic`"),
        )
        .with(
            "Endpoint.spec.strategy.bakeTime",
            Support::honoured_as("how long mlctl keeps the canary's split (default 10m) or the blue-green shadow (default 5m) before sending all traffic to the new deployment; recorded in the endpoint's `mlctl:bake` tag, so an apply stopped mid-bake resumes it"),
        )
        .with(
            "Endpoint.spec.strategy.rollback.maxErrorRate",
            Support::honoured_as(
                "judged by mlctl during the bake on the new deployment's Azure Monitor metrics (5xx answers over all, `RequestsPerMinute` by `envoy_response_code`): crossed, all traffic goes back to the old deployment and the new one is deleted; a blue-green is judged on its shadow copy before it takes live traffic",
            ),
        )
        .with(
            "Endpoint.spec.strategy.rollback.maxP99LatencyMs",
            Support::honoured_as(
                "judged by mlctl during the bake on the new deployment's `RequestLatency_P99` (its worst minute): crossed, all traffic goes back to the old deployment and the new one is deleted",
            ),
        )
        .with(
            "Endpoint.spec.strategy.rollback.alarms",
            Support::refused(
                "alarms name CloudWatch alarms, which exist on SageMaker only",
                "remove `alarms` for this target",
            ),
        )
        .with(
            "Endpoint.spec.instances",
            Support::honoured_as("each deployment's `sku.capacity` (instances of its VM size)"),
        )
        .with(
            "Endpoint.spec.port",
            Support::not_applicable("an Azure ML endpoint is called at its scoring URI, not on a port"),
        )
        .with(
            "Endpoint.spec.capture.samplingPercent",
            capture,
        )
        .with(
            "Endpoint.spec.capture.destination",
            Support::refused(
                "the data collector writes under the target's storage (`capture/<endpoint>/`), where monitors read it",
                "remove `destination` for this target",
            ),
        )
        .with(
            "Endpoint.spec.auth.token",
            Support::honoured_as("the endpoint's primary key (authMode Key, set with regenerateKeys): callers send `Authorization: Bearer <token>`; removing `auth` makes Azure generate a new key"),
        )
        .with(
            "Endpoint.spec.enforce",
            Support::check(
                "honoured for `strict` (what `mlctl serve --model-dir` in the image does: a 400 naming the row, column and value); `warn` and `off` refused",
                |_, _, node| {
                    let v = node.as_str()?;
                    (v != "strict").then(|| {
                        Refusal::new(
                            format!("signature enforcement `{v}` is not available here: `mlctl serve` in the image enforces the signature strictly"),
                            "use `enforce: strict` (or leave it out) for this target",
                        )
                    })
                },
            ),
        )
        .with_all(
            "Endpoint.spec.server",
            Support::refused(
                "Azure ML online endpoints sit behind Azure's own front end, whose connection timeouts and limits are not set per endpoint",
                "remove `server` for this target, and bound calls in the client; serve on a local target to set them",
            ),
        )
        .with_all(
            "Endpoint.spec.serve",
            Support::refused(
                "azureml endpoints serve the registered model with mlctl's server, not a serving command",
                "remove `serve` for this target, or serve the model on a local target",
            ),
        )
        .with(
            "Endpoint.spec.compute.cpu",
            Support::honoured_as("without `compute.overrides.azureml.instanceType`, the smallest VM size in mlctl's table with the cpu, memory and gpu asked (default Standard_DS3_v2)"),
        )
        .with(
            "Endpoint.spec.compute.memory",
            Support::honoured_as("without `compute.overrides.azureml.instanceType`, the smallest VM size in mlctl's table with the cpu, memory and gpu asked (default Standard_DS3_v2)"),
        )
        .with(
            "Endpoint.spec.compute.gpu",
            Support::honoured_as("without `compute.overrides.azureml.instanceType`, the smallest VM size in mlctl's table with the cpu, memory and gpu asked (default Standard_DS3_v2)"),
        )
        .with(
            "Endpoint.spec.compute.overrides.azureml.instanceType",
            Support::honoured_as("the deployments' `instanceType`"),
        )
        .with(
            "Endpoint.spec.compute.overrides.azureml.instanceCount",
            Support::refused("an endpoint's instance count is `instances`", "set `instances` and remove `instanceCount`"),
        )
        .with(
            "Endpoint.spec.compute.overrides.azureml.compute",
            Support::refused(
                "managed online endpoints run on Azure's managed VMs, not on a compute cluster",
                "remove `compute` and choose the VM size with `instanceType`",
            ),
        )
}
