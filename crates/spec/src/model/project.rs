//! `kind: Project` and its targets.

use super::*;

/// `kind: Project` — the root of a project, in `mlctl.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProjectSpec {
    /// Files or directories (relative to the project) holding the resource manifests. Default `[ml/]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifests: Option<Vec<String>>,
    /// The target used when `--target` is not given. Default: the only target, or `local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_target: Option<String>,
    /// Named targets to apply the spec to.
    #[serde(default)]
    pub targets: BTreeMap<String, Target>,
    /// `mlctl watch` repairs an out-of-band change (an endpoint edited by hand, a server
    /// killed) on its next cycle, as Argo CD's `selfHeal`; otherwise it reports the target
    /// OutOfSync and leaves it. `mlctl watch --self-heal` turns it on whatever this says.
    /// Default false. Plan and apply do not read it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub self_heal: bool,
}

/// Which provider implements a target.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Embedded: state under `.mlctl/`, training in-process or as child processes, endpoints on 127.0.0.1.
    Local,
    /// Deterministic in-file target for tests and dry runs, with injectable faults.
    Mock,
    /// AWS SageMaker + S3.
    Sagemaker,
    /// Azure Machine Learning + Blob Storage.
    Azureml,
}

impl ProviderKind {
    /// Every provider, in the order docs list them.
    pub const ALL: [ProviderKind; 4] = [
        ProviderKind::Local,
        ProviderKind::Mock,
        ProviderKind::Sagemaker,
        ProviderKind::Azureml,
    ];

    /// Parses the YAML name.
    pub fn parse(s: &str) -> Option<ProviderKind> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// The name used in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Local => "local",
            ProviderKind::Mock => "mock",
            ProviderKind::Sagemaker => "sagemaker",
            ProviderKind::Azureml => "azureml",
        }
    }
}

/// The components of a target (ZenML's stack), by the name used in `components:`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, PartialOrd, Ord,
)]
#[serde(rename_all = "camelCase")]
pub enum Component {
    /// Blobs and dataset versions.
    DataStore,
    /// Training jobs and tuning.
    Trainer,
    /// Model versions and stages.
    Registry,
    /// Endpoints.
    Deployer,
    /// Captured data and monitors.
    MonitorSink,
}

impl Component {
    /// Every component, in stack order.
    pub const ALL: [Component; 5] = [
        Component::DataStore,
        Component::Trainer,
        Component::Registry,
        Component::Deployer,
        Component::MonitorSink,
    ];

    /// The name used in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            Component::DataStore => "dataStore",
            Component::Trainer => "trainer",
            Component::Registry => "registry",
            Component::Deployer => "deployer",
            Component::MonitorSink => "monitorSink",
        }
    }
}

/// Components taken from another target (a stack may mix providers), e.g. `{deployer: local}`:
/// component to target name.
pub type ComponentMap = BTreeMap<Component, String>;

/// A target: where a spec is applied, tagged by `provider`. Each provider takes its own
/// fields, so a field another provider takes is an error here, not a setting silently unused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "provider", rename_all = "lowercase")]
pub enum Target {
    /// Embedded: state under `.mlctl/`, training in-process or as child processes, endpoints on 127.0.0.1.
    Local(LocalTarget),
    /// Deterministic in-file target for tests and dry runs, with injectable faults.
    Mock(MockTarget),
    /// AWS SageMaker + S3.
    Sagemaker(SagemakerTarget),
    /// Azure Machine Learning + Blob Storage.
    Azureml(AzuremlTarget),
}

impl Target {
    /// A local target with defaults.
    pub fn local() -> Target {
        Target::Local(LocalTarget::default())
    }

    /// A mock target with defaults.
    pub fn mock() -> Target {
        Target::Mock(MockTarget::default())
    }

    /// Which provider implements it.
    pub fn provider(&self) -> ProviderKind {
        match self {
            Target::Local(_) => ProviderKind::Local,
            Target::Mock(_) => ProviderKind::Mock,
            Target::Sagemaker(_) => ProviderKind::Sagemaker,
            Target::Azureml(_) => ProviderKind::Azureml,
        }
    }

    /// Components taken from other targets (empty for a plain target).
    pub fn components(&self) -> &ComponentMap {
        match self {
            Target::Local(t) => &t.components,
            Target::Mock(t) => &t.components,
            Target::Sagemaker(t) => &t.components,
            Target::Azureml(t) => &t.components,
        }
    }

    /// The tracking server this target logs to, if any.
    pub fn tracking(&self) -> Option<&Tracking> {
        match self {
            Target::Local(t) => t.tracking.as_ref(),
            Target::Mock(t) => t.tracking.as_ref(),
            Target::Sagemaker(t) => t.tracking.as_ref(),
            Target::Azureml(t) => t.tracking.as_ref(),
        }
    }

    /// `root:`, the directory for the target's files on this machine, as written.
    pub fn root(&self) -> Option<&str> {
        match self {
            Target::Local(t) => t.root.as_deref(),
            Target::Mock(t) => t.root.as_deref(),
            Target::Sagemaker(t) => t.root.as_deref(),
            Target::Azureml(t) => t.root.as_deref(),
        }
    }

    /// Every string setting, mutably, with its YAML name: `${env:NAME}` is resolved in each
    /// when the target is opened. `tracking:` is not among them: its values are resolved only
    /// by the commands that talk to the tracking server ([`Tracking::settings_mut`]), so
    /// `mlctl status` needs no tracking credentials.
    pub fn settings_mut(&mut self) -> Vec<(&'static str, &mut String)> {
        let mut out: Vec<(&'static str, &mut String)> = Vec::new();
        match self {
            Target::Local(t) => {
                out.extend(t.root.as_mut().map(|v| ("root", v)));
            }
            Target::Mock(t) => {
                out.extend(t.root.as_mut().map(|v| ("root", v)));
                out.extend(t.latency.as_mut().map(|v| ("latency", v)));
            }
            Target::Sagemaker(t) => {
                out.push(("region", &mut t.region));
                out.push(("roleArn", &mut t.role_arn));
                out.push(("bucket", &mut t.bucket));
                out.extend(t.endpoint_url.as_mut().map(|v| ("endpointUrl", v)));
                out.extend(t.root.as_mut().map(|v| ("root", v)));
            }
            Target::Azureml(t) => {
                out.push(("subscription", &mut t.subscription));
                out.push(("resourceGroup", &mut t.resource_group));
                out.push(("workspace", &mut t.workspace));
                out.push(("storage", &mut t.storage));
                out.extend(t.location.as_mut().map(|v| ("location", v)));
                out.extend(t.compute.as_mut().map(|v| ("compute", v)));
                out.extend(t.sas.as_mut().map(|v| ("sas", v)));
                out.extend(t.endpoint_url.as_mut().map(|v| ("endpointUrl", v)));
                out.extend(t.authority_host.as_mut().map(|v| ("authorityHost", v)));
                out.extend(t.image.as_mut().map(|v| ("image", v)));
                out.extend(t.root.as_mut().map(|v| ("root", v)));
            }
        }
        out
    }
}

/// `tracking:` on a target: an experiment-tracking server that mlctl keeps up to date with
/// what it runs there (MLflow's tracking server and model registry).
///
/// ```yaml
/// tracking:
///   provider: mlflow
///   uri: ${env:MLFLOW_TRACKING_URI}
///   token: ${env:MLFLOW_TRACKING_TOKEN}   # or username + password (basic auth)
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Tracking {
    /// The tracking server's kind: `mlflow` (REST API 2.0, artifacts through the server's
    /// `mlflow-artifacts` proxy).
    pub provider: TrackingProvider,
    /// The server's URL (`http://` or `https://`), usually `${env:MLFLOW_TRACKING_URI}`.
    pub uri: String,
    /// A bearer token, as `${env:NAME}` (never a literal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Basic auth user (with `password`), for a server behind MLflow's basic-auth app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Basic auth password, as `${env:NAME}` (never a literal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The experiment runs are logged to (default: the project's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<String>,
    /// What the server's model registry is to mlctl: `mirror` (default: registered models
    /// and versions are copied there, stages as the aliases `champion` and `challenger`),
    /// `source` (it is the target's registry: versions, stages and approvals live there) or
    /// `none` (runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<TrackingRegistry>,
}

impl Tracking {
    /// Every string setting, mutably, with its YAML name (`tracking.uri`, ...).
    pub fn settings_mut(&mut self) -> Vec<(&'static str, &mut String)> {
        let mut out: Vec<(&'static str, &mut String)> = vec![("tracking.uri", &mut self.uri)];
        out.extend(self.token.as_mut().map(|v| ("tracking.token", v)));
        out.extend(self.username.as_mut().map(|v| ("tracking.username", v)));
        out.extend(self.password.as_mut().map(|v| ("tracking.password", v)));
        out.extend(self.experiment.as_mut().map(|v| ("tracking.experiment", v)));
        out
    }

    /// `registry:`, with its default.
    pub fn registry_mode(&self) -> TrackingRegistry {
        self.registry.unwrap_or(TrackingRegistry::Mirror)
    }
}

/// `tracking.provider`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TrackingProvider {
    /// An MLflow tracking server (`mlflow server`, Databricks, a managed MLflow).
    Mlflow,
}

/// `tracking.registry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TrackingRegistry {
    /// Registered models and versions are mirrored to the server's registry.
    Mirror,
    /// Only runs are logged.
    None,
    /// The server's registry is the target's Registry: versions, stages (production is the
    /// alias `champion`), approvals and stage history live there (local and mock targets).
    Source,
}

/// `provider: local`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LocalTarget {
    /// State directory (default `.mlctl/<target>` in the project).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// Components taken from another target, e.g. `{trainer: cloud}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components: ComponentMap,
    /// An MLflow tracking server that mirrors this target's runs and models (`tracking:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<Tracking>,
}

/// `provider: mock`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MockTarget {
    /// State directory (default `.mlctl/<target>` in the project).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// Simulated latency of each operation, e.g. `50ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<String>,
    /// Injected faults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<Faults>,
    /// Simulated requests to endpoints (by name) while a canary bakes; an endpoint not
    /// listed gets none, as a real one nobody calls.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub traffic: BTreeMap<String, SimulatedTraffic>,
    /// Components taken from another target.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components: ComponentMap,
    /// An MLflow tracking server that mirrors this target's runs and models (`tracking:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<Tracking>,
}

/// `provider: sagemaker`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SagemakerTarget {
    /// AWS region.
    pub region: String,
    /// Execution role ARN, usually `${env:...}`.
    pub role_arn: String,
    /// `s3://bucket/prefix` for state, data, code and artifacts.
    pub bucket: String,
    /// Override the service endpoint (emulators, VPC endpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// The service behind `endpointUrl` is this emulator: the provider works around its gaps
    /// (and every plan says which). Without it every endpoint is treated as real AWS, a
    /// loopback one included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emulator: Option<Emulator>,
    /// Directory for the target's files on this machine (default `.mlctl/<target>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// Components taken from another target.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components: ComponentMap,
    /// An MLflow tracking server that mirrors this target's runs and models (`tracking:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<Tracking>,
}

/// An emulator a SageMaker target can run against, for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Emulator {
    /// moto (`moto_server`): S3, SageMaker and CloudWatch on one port, with some calls missing.
    Moto,
}

/// `provider: azureml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AzuremlTarget {
    /// Subscription id.
    pub subscription: String,
    /// Resource group.
    pub resource_group: String,
    /// Workspace name.
    pub workspace: String,
    /// The Blob container (and optional path prefix) for data, state, code and artifacts:
    /// `https://ACCOUNT.blob.core.windows.net/CONTAINER[/prefix]`. Its host is the blob
    /// endpoint (another host for sovereign clouds or an emulator).
    pub storage: String,
    /// Azure region of the resources mlctl creates (online endpoints, deployments); default
    /// the workspace's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Compute cluster for jobs that name none in `resources.overrides.azureml.compute`;
    /// without either, jobs run on serverless compute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute: Option<String>,
    /// How mlctl gets Entra ID tokens (default `auto`: a client secret or a federated token
    /// from the environment, a managed identity where one is offered, else the Azure CLI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<AzureCredential>,
    /// A SAS token for `storage`, always `${env:NAME}`: blob requests then use it instead of
    /// an Entra ID token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sas: Option<String>,
    /// Override the Azure Resource Manager endpoint (default `https://management.azure.com`):
    /// sovereign clouds, private endpoints, tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// Override the Entra ID authority host (default `https://login.microsoftonline.com`);
    /// it must be https.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority_host: Option<String>,
    /// The container image built-in algorithms train in (mlctl's own trainer); default the
    /// mlctl image of this version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The service behind `endpointUrl` is this emulator: the provider works around its gaps
    /// (and every plan says which).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emulator: Option<AzureEmulator>,
    /// Directory for the target's files on this machine (default `.mlctl/<target>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// Components taken from another target.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components: ComponentMap,
    /// An MLflow tracking server that mirrors this target's runs and models (`tracking:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<Tracking>,
}

/// Where an azureml target gets its Entra ID tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub enum AzureCredential {
    /// `clientSecret` when `AZURE_CLIENT_SECRET` is set, else `workloadIdentity` when
    /// `AZURE_FEDERATED_TOKEN_FILE` is, else `managedIdentity` when `IDENTITY_ENDPOINT` is,
    /// else `cli`.
    #[default]
    Auto,
    /// A service principal's secret: `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`.
    ClientSecret,
    /// A federated token (GitHub Actions OIDC, AKS workload identity): `AZURE_TENANT_ID`,
    /// `AZURE_CLIENT_ID`, `AZURE_FEDERATED_TOKEN_FILE`.
    WorkloadIdentity,
    /// The managed identity of the VM, App Service or container the command runs on
    /// (`AZURE_CLIENT_ID` picks a user-assigned one).
    ManagedIdentity,
    /// The signed-in Azure CLI (`az account get-access-token`).
    Cli,
}

/// An emulator an azureml target can run against, for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AzureEmulator {
    /// mlctl's fake ARM server (`providers/azureml/fake`) with Azurite for blobs: ARM
    /// resources behave as the REST docs say, jobs run on this machine instead of in their
    /// image, endpoints are provisioned but not served.
    FakeArm,
}

/// What a mock endpoint's new version is sent, and how it does, during a canary's bake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SimulatedTraffic {
    /// Requests the new version serves per poll of the rollout (a bake lasts two polls).
    pub requests_per_poll: u64,
    /// Share of them answered with a server error (0..1, default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1))]
    pub error_rate: Option<f64>,
    /// Their p99 latency in milliseconds (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_latency_ms: Option<f64>,
}

/// Faults injected by the mock provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Faults {
    /// Fail the training job of these resources (names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fail_training: Vec<String>,
    /// Fail the Nth training job submitted on this target (1-based, counted across runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_nth_training_job: Option<u32>,
    /// Fail the deployment of these endpoints (names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fail_deployment: Vec<String>,
    /// Answer the first N calls of every operation with a throttling error (retryable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<u32>,
    /// Make operations on these resources time out (names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeout: Vec<String>,
}
