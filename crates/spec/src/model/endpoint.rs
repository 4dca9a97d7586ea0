//! `kind: Endpoint`: a live deployment of a Model.

use super::*;

/// `kind: Endpoint` — a live deployment of a Model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EndpointSpec {
    /// The Model to serve (its production version, or its latest when the model has no stage).
    pub model: String,
    /// Pin a registry version instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// How updates roll out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// Instances (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub instances: Option<i64>,
    /// local: port on 127.0.0.1 (default: allocated and recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Request/response capture for monitoring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<Capture>,
    /// Who may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    /// Script mode: serve with a command implementing the SageMaker inference contract.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serve: Option<ServeCommand>,
    /// Resources per instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute: Option<Compute>,
    /// What the endpoint does with a request that breaks the model's input signature (an
    /// unknown category, a missing column, a wrong type): `strict` (default) answers 400
    /// naming the row, column and value; `warn` predicts anyway (an unknown or missing value
    /// as missing) and says so in the `X-Mlctl-Signature-Warnings` response header and the
    /// endpoint's status; `off` predicts anyway without counting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforce: Option<Enforce>,
    /// How the endpoint's servers bound their clients: how long a request may take to
    /// arrive, how long a connection may idle, how many may be open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerSettings>,
}

/// Connection limits of an endpoint's servers; a field left out takes its default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServerSettings {
    /// Longest a request's headers may take to arrive, e.g. `10s` (default); a client that
    /// sends them slower (slowloris) is disconnected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_timeout: Option<String>,
    /// Longest a keep-alive connection may sit idle between requests, e.g. `60s` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
    /// Longest a request's body may take to arrive once its headers have, e.g. `30s`
    /// (default); a slower one is answered 408.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_timeout: Option<String>,
    /// Most connections a server process holds open at once (default 1024); a further one
    /// waits to be accepted until one closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65536))]
    pub max_connections: Option<i64>,
}

impl ServerSettings {
    /// Largest `maxConnections`.
    pub const MAX_CONNECTIONS: i64 = 65536;
    /// Longest any of the timeouts may be.
    pub const MAX_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);
}

/// How an endpoint enforces the model's input signature.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Enforce {
    /// A request that breaks the signature is a 400.
    #[default]
    Strict,
    /// Predict anyway; count it and say so in a response header.
    Warn,
    /// Predict anyway.
    Off,
}

/// Rollout strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Strategy {
    /// `all-at-once` (default), `canary` or `blue-green`.
    #[serde(rename = "type")]
    pub ty: StrategyType,
    /// canary: percent of traffic to the new version during the bake (1..99).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 99))]
    pub percent: Option<i64>,
    /// canary, blue-green: how long to watch before shifting all traffic, e.g. `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake_time: Option<String>,
    /// canary: requests the new version must have served during the bake before it is
    /// promoted (default 100; 0 promotes without traffic). Fewer by the end of the bake: the
    /// rollout waits, up to `maxBakeTime`, then rolls back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_requests: Option<i64>,
    /// canary: longest the bake may last while it waits for `minRequests`, e.g. `1h`
    /// (default: `bakeTime`, so a canary short of traffic rolls back when the bake ends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bake_time: Option<String>,
    /// Roll back automatically when these are crossed during the bake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<Rollback>,
}

impl Strategy {
    /// canary: the `minRequests` a canary must serve when the spec gives none.
    pub const DEFAULT_MIN_REQUESTS: u64 = 100;
}

/// Strategy types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyType {
    /// Replace at once.
    AllAtOnce,
    /// Shift a percentage, bake, then shift the rest.
    Canary,
    /// Start the new fleet beside the old, then switch.
    BlueGreen,
}

impl StrategyType {
    /// Every strategy.
    pub const ALL: [StrategyType; 3] = [
        StrategyType::AllAtOnce,
        StrategyType::Canary,
        StrategyType::BlueGreen,
    ];

    /// The name used in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            StrategyType::AllAtOnce => "all-at-once",
            StrategyType::Canary => "canary",
            StrategyType::BlueGreen => "blue-green",
        }
    }
}

/// Automatic rollback thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rollback {
    /// Largest error fraction (0..1) of the new version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1))]
    pub max_error_rate: Option<f64>,
    /// Largest p99 latency in milliseconds of the new version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99_latency_ms: Option<f64>,
    /// Cloud alarms that trigger a rollback (SageMaker CloudWatch alarm names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<String>,
}

/// Data capture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Capture {
    /// Percent of requests captured (0..100).
    #[schemars(range(min = 0, max = 100))]
    pub sampling_percent: f64,
    /// Where to write (default: the target's store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
}

/// Endpoint authentication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Auth {
    /// Bearer token, always `${env:NAME}`.
    pub token: String,
}

/// Script-mode serving.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServeCommand {
    /// Command that serves `/ping` and `/invocations` on `$SAGEMAKER_BIND_TO_PORT`.
    pub command: String,
    /// Code directory (fingerprinted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl EndpointSpec {
    /// Fields of this kind (under `spec`) that change what it carries, not what it produces:
    /// a change to one updates the resource in place and never redeploys. Every other field
    /// is part of the fingerprint. (`metadata.labels` is in place on every kind.)
    pub const IN_PLACE: &'static [&'static str] = &[];

    /// Fields (under `spec`) a resource's `overrides.<target>` may set: capacity, rollout,
    /// capture, serving limits, the port and the token (a different secret per target), and
    /// a pinned `version` (version numbers are per registry).
    pub const OVERRIDABLE: &'static [&'static str] = &[
        "version",
        "strategy",
        "instances",
        "port",
        "capture",
        "auth",
        "compute",
        "enforce",
        "server",
    ];

    /// The model it serves.
    pub fn references(&self) -> Vec<Reference> {
        vec![Reference::to(
            crate::Kind::Model,
            &self.model,
            &["model"],
            true,
        )]
    }

    /// Script-mode serving code.
    pub fn content_inputs(&self) -> Vec<ContentInput> {
        self.serve
            .iter()
            .filter_map(|s| s.code.as_deref())
            .map(|c| ContentInput::new(ContentRole::Code, c, &["serve", "code"]))
            .collect()
    }
}
