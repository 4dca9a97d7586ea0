//! Endpoints on SageMaker: a Model per model version, an EndpointConfig per configuration, and
//! CreateEndpoint / UpdateEndpoint with the spec's deployment strategy.
//!
//! Names: the endpoint is `<project>-<name>`; its SageMaker models are `<family>-v<version>-<hash>`
//! and its configs `<family>-c<hash>` (hash of what they contain), so a re-run finds them and
//! `delete` finds every one of them.
//!
//! Strategies map onto SageMaker deployment guardrails (blue/green fleets):
//!
//! | spec | SageMaker `TrafficRoutingConfiguration` |
//! |---|---|
//! | all-at-once | `ALL_AT_ONCE`, baking `bakeTime` (default 0) |
//! | canary | `CANARY`, `percent` of capacity (default 10), baking `bakeTime` (default 10m) |
//! | blue-green | `LINEAR`, 50% of capacity per step, `bakeTime` between steps (default 5m) |
//!
//! SageMaker rolls back on CloudWatch alarms only: `maxErrorRate` / `maxP99LatencyMs` become
//! alarms mlctl creates on the new variant (see `alarms`), named in the
//! `AutoRollbackConfiguration` with the user's `rollback.alarms`.
//!
//! # Guarantees
//! After every rollout, [`Deployer::poll`] reads the endpoint back: when SageMaker finished
//! with a config other than the one applied (an automatic rollback, which SageMaker does
//! silently), the rollout is reported as [`DeployState::RolledBack`] with the config in service.

use crate::aws::{Aws, sm_tags, tag_pairs};
use crate::error::{aws_err, is_not_found, provider_err};
use crate::names;
use async_trait::async_trait;
use aws_sdk_sagemaker::operation::describe_endpoint::DescribeEndpointOutput;
use aws_sdk_sagemaker::types::{
    Alarm, AutoRollbackConfig, BlueGreenUpdatePolicy, CapacitySize, CapacitySizeType,
    CaptureContentTypeHeader, CaptureMode, CaptureOption, ContainerDefinition, DataCaptureConfig,
    DeploymentConfig, DesiredWeightAndCapacity, EndpointStatus as SmStatus, ProductionVariant,
    ProductionVariantInstanceType, Tag, TrafficRoutingConfig, TrafficRoutingConfigType,
};
use mlctl_core::error::Result;
use mlctl_core::{
    Capabilities, DeployState, Deployer, DeploymentHandle, EndpointRequest, EndpointStatus,
    ErrorKind, Health, ModelVersion, OpContext, Tags, Variant, components::InPlaceRequest,
};
use mlctl_spec::{Strategy, StrategyType};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// SageMaker's longest baking period.
const MAX_WAIT: u64 = 3600;

/// The [`Deployer`] of a SageMaker target.
pub struct SageMakerDeployer {
    aws: Arc<Aws>,
}

/// What one endpoint config holds.
#[derive(Debug, Clone, PartialEq)]
struct ConfigPlan {
    variant: String,
    model: String,
    instances: i32,
    instance_type: String,
    /// `VolumeSizeInGB` (`compute.overrides.sagemaker.volumeSizeGb`); `None`: SageMaker's default.
    volume_gb: Option<i32>,
    capture: Option<(i32, String)>,
}

impl ConfigPlan {
    fn name(&self, family: &str) -> String {
        let capture = self
            .capture
            .as_ref()
            .map(|(p, d)| format!("{p}:{d}"))
            .unwrap_or_default();
        let instances = self.instances.to_string();
        let volume = self.volume_gb.map(|v| v.to_string());
        let mut parts: Vec<&str> = vec![
            &self.variant,
            &self.model,
            &instances,
            &self.instance_type,
            &capture,
        ];
        // Only when set, so configs written before volumes were set keep their names.
        parts.extend(volume.as_deref());
        let hash = names::hash(&parts, 12);
        format!("{family}-c{hash}")
    }
}

/// The endpoint tag that records its `enforce`.
const ENFORCE_TAG: &str = "mlctl:enforce";

fn enforce_name(e: mlctl_spec::Enforce) -> &'static str {
    match e {
        mlctl_spec::Enforce::Strict => "strict",
        mlctl_spec::Enforce::Warn => "warn",
        mlctl_spec::Enforce::Off => "off",
    }
}

/// One container of a SageMaker model.
#[derive(Debug, Clone, PartialEq)]
struct Served {
    image: String,
    /// `s3://` model data; anything else is not sent.
    artifact: String,
    env: HashMap<String, String>,
}

impl Served {
    /// Its environment as text, sorted: the same text for the same environment, as models
    /// named before pipelines were (a model's name hashes image, artifact and this).
    fn identity(&self) -> String {
        let mut env: Vec<(&String, &String)> = self.env.iter().collect();
        env.sort();
        format!("{env:?}")
    }

    fn definition(self) -> ContainerDefinition {
        let mut c = ContainerDefinition::builder()
            .image(self.image)
            .set_environment((!self.env.is_empty()).then_some(self.env));
        if self.artifact.starts_with("s3://") {
            c = c.model_data_url(self.artifact);
        }
        c.build()
    }
}

/// The prefix of an endpoint's models and configs (leaves room for their suffixes).
fn family(endpoint: &str) -> String {
    names::fit(endpoint, 41)
}

fn variant_name(version: u32) -> String {
    format!("v{version}")
}

fn is_config_of(family: &str, name: &str) -> bool {
    name.strip_prefix(family)
        .and_then(|r| r.strip_prefix("-c"))
        .is_some_and(|h| h.len() == 12 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_model_of(family: &str, name: &str) -> bool {
    let Some(rest) = name.strip_prefix(family).and_then(|r| r.strip_prefix("-v")) else {
        return false;
    };
    let Some((version, hash)) = rest.split_once('-') else {
        return false;
    };
    !version.is_empty()
        && version.bytes().all(|b| b.is_ascii_digit())
        && hash.len() == 8
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
}

fn secs(s: Option<&str>, default: u64) -> Result<u64> {
    match s {
        None => Ok(default),
        Some(t) => mlctl_spec::units::parse_duration(t)
            .map(|d| d.as_secs().min(MAX_WAIT))
            .map_err(|e| {
                provider_err(
                    ErrorKind::Invalid,
                    "UpdateEndpoint",
                    format!("strategy.bakeTime: {e}"),
                )
            }),
    }
}

/// SageMaker's deployment config for a strategy: its traffic routing, and a rollback on the
/// user's `rollback.alarms` and mlctl's own `alarms` (made from the thresholds).
pub(crate) fn deployment_config(
    strategy: Option<&Strategy>,
    alarms: &[String],
) -> Result<DeploymentConfig> {
    let ty = strategy.map(|s| s.ty).unwrap_or(StrategyType::AllAtOnce);
    let bake = strategy.and_then(|s| s.bake_time.as_deref());
    let routing = match ty {
        StrategyType::AllAtOnce => TrafficRoutingConfig::builder()
            .r#type(TrafficRoutingConfigType::AllAtOnce)
            .wait_interval_in_seconds(secs(bake, 0)? as i32),
        StrategyType::Canary => {
            let percent = strategy.and_then(|s| s.percent).unwrap_or(10).clamp(1, 99) as i32;
            TrafficRoutingConfig::builder()
                .r#type(TrafficRoutingConfigType::Canary)
                .canary_size(
                    CapacitySize::builder()
                        .r#type(CapacitySizeType::CapacityPercent)
                        .value(percent)
                        .build(),
                )
                .wait_interval_in_seconds(secs(bake, 600)? as i32)
        }
        StrategyType::BlueGreen => TrafficRoutingConfig::builder()
            .r#type(TrafficRoutingConfigType::Linear)
            .linear_step_size(
                CapacitySize::builder()
                    .r#type(CapacitySizeType::CapacityPercent)
                    .value(50)
                    .build(),
            )
            .wait_interval_in_seconds(secs(bake, 300)? as i32),
    };
    let policy = BlueGreenUpdatePolicy::builder()
        .traffic_routing_configuration(routing.build())
        .termination_wait_in_seconds(0)
        .build();
    let alarms: Vec<Alarm> = strategy
        .and_then(|s| s.rollback.as_ref())
        .map(|r| r.alarms.as_slice())
        .unwrap_or_default()
        .iter()
        .chain(alarms)
        .map(|a| Alarm::builder().alarm_name(a).build())
        .collect();
    let mut config = DeploymentConfig::builder().blue_green_update_policy(policy);
    if !alarms.is_empty() {
        config = config.auto_rollback_configuration(
            AutoRollbackConfig::builder()
                .set_alarms(Some(alarms))
                .build(),
        );
    }
    Ok(config.build())
}

/// Health of a SageMaker endpoint status.
fn health_of(status: Option<&SmStatus>) -> Health {
    match status {
        Some(SmStatus::InService) => Health::Healthy,
        Some(
            SmStatus::Creating
            | SmStatus::Updating
            | SmStatus::SystemUpdating
            | SmStatus::RollingBack,
        ) => Health::Progressing,
        Some(
            SmStatus::Failed
            | SmStatus::OutOfService
            | SmStatus::UpdateRollbackFailed
            | SmStatus::Deleting,
        ) => Health::Degraded,
        _ => Health::Unknown,
    }
}

impl SageMakerDeployer {
    /// Sends all of an endpoint's traffic to `variant` (weight 1, every other variant 0):
    /// how traffic moved by hand is put back, and how a rollback to a loaded variant is done.
    /// Puts all traffic on `variant`, and (with `instances`) sets its instance count: what
    /// repairs traffic or capacity moved by hand without a new endpoint config.
    async fn route_all_to(
        &self,
        endpoint: &str,
        d: &DescribeEndpointOutput,
        variant: &str,
        instances: Option<i32>,
    ) -> Result<()> {
        let weights = d
            .production_variants()
            .iter()
            .map(|v| {
                let chosen = v.variant_name() == Some(variant);
                let w = if chosen { 1.0 } else { 0.0 };
                DesiredWeightAndCapacity::builder()
                    .variant_name(v.variant_name().unwrap_or_default())
                    .desired_weight(w)
                    .set_desired_instance_count(instances.filter(|_| chosen))
                    .build()
            })
            .collect();
        self.aws
            .sm
            .update_endpoint_weights_and_capacities()
            .endpoint_name(endpoint)
            .set_desired_weights_and_capacities(Some(weights))
            .send()
            .await
            .map_err(|e| aws_err("UpdateEndpointWeightsAndCapacities", e))?;
        Ok(())
    }

    pub(crate) fn new(aws: Arc<Aws>) -> Self {
        SageMakerDeployer { aws }
    }

    async fn describe(&self, endpoint: &str) -> Result<Option<DescribeEndpointOutput>> {
        match self
            .aws
            .sm
            .describe_endpoint()
            .endpoint_name(endpoint)
            .send()
            .await
        {
            Ok(d) => Ok(Some(d)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(aws_err("DescribeEndpoint", e)),
        }
    }

    /// The containers a registry version is served with, in order: image, artifact and
    /// environment of each of its model package's containers (mlctl's preprocessing, then
    /// the algorithm, for a built-in; the training image and artifact when the package is
    /// not found).
    async fn containers_of(&self, project: &str, v: &ModelVersion) -> Result<Vec<Served>> {
        let group = names::resource(project, &v.model);
        let fallback = || {
            vec![Served {
                image: crate::images::default_framework_image(&self.aws.region).unwrap_or_default(),
                artifact: v.artifact_uri.clone(),
                env: HashMap::new(),
            }]
        };
        let mut pages = self
            .aws
            .sm
            .list_model_packages()
            .model_package_group_name(&group)
            .max_results(100)
            .into_paginator()
            .send();
        while let Some(res) = pages.next().await {
            let page = match res {
                Ok(p) => p,
                Err(e) if is_not_found(&e) => return Ok(fallback()),
                Err(e) => return Err(aws_err("ListModelPackages", e)),
            };
            if let Some(arn) = page
                .model_package_summary_list()
                .iter()
                .find(|s| s.model_package_version() == Some(v.version as i32))
                .and_then(|s| s.model_package_arn())
            {
                let d = self
                    .aws
                    .sm
                    .describe_model_package()
                    .model_package_name(arn)
                    .send()
                    .await
                    .map_err(|e| aws_err("DescribeModelPackage", e))?;
                let containers: Vec<Served> = d
                    .inference_specification()
                    .map(|s| s.containers())
                    .unwrap_or_default()
                    .iter()
                    .map(|c| Served {
                        image: c.image().unwrap_or_default().to_string(),
                        artifact: c.model_data_url().unwrap_or_default().to_string(),
                        env: c.environment().cloned().unwrap_or_default(),
                    })
                    .collect();
                return Ok(match containers.len() {
                    0 => fallback(),
                    1 => {
                        // Written before pipelines: the version's artifact when it names none.
                        let mut c = containers;
                        if c[0].artifact.is_empty() {
                            c[0].artifact = v.artifact_uri.clone();
                        }
                        c
                    }
                    _ => containers,
                });
            }
        }
        Ok(fallback())
    }

    /// Creates the SageMaker model of a version unless it exists; returns its name. A
    /// version with mlctl's preprocessing in front is an inference pipeline (`Containers`),
    /// its preprocessing told the endpoint's `enforce`; any other is one `PrimaryContainer`.
    ///
    /// # Errors
    /// `enforce` written other than `off` for a version that has no preprocessing container
    /// (script mode, or a built-in registered before mlctl served its preprocessing):
    /// nothing on SageMaker would check the signature. Unwritten, such a version is served
    /// as its container reads requests, as the local target serves user code.
    async fn ensure_model(
        &self,
        ctx: &OpContext,
        endpoint: &str,
        v: &ModelVersion,
        enforce: Option<mlctl_spec::Enforce>,
        tags: &[Tag],
    ) -> Result<String> {
        let mut containers = self.containers_of(&ctx.project, v).await?;
        let pipeline = containers
            .iter()
            .any(|c| c.env.contains_key(crate::preprocessing::ENV_PREPROCESSOR));
        if pipeline {
            let value = crate::preprocessing::enforce_value(enforce.unwrap_or_default())
                .ok_or_else(|| {
                provider_err(
                    ErrorKind::NotSupported,
                    "CreateModel",
                    "`enforce: warn` cannot be honoured on SageMaker: the answer comes from the algorithm container, so no warning reaches the client; use `strict` or `off`",
                )
            })?;
            for c in &mut containers {
                if c.env.contains_key(crate::preprocessing::ENV_PREPROCESSOR) {
                    c.env
                        .insert(crate::preprocessing::ENV_ENFORCE.into(), value.into());
                }
            }
        } else if enforce.is_some_and(|e| e != mlctl_spec::Enforce::Off) {
            return Err(provider_err(
                ErrorKind::NotSupported,
                "CreateModel",
                format!(
                    "{} v{} is served by its own container alone, which knows no mlctl signature (a script-mode model, or a built-in registered before mlctl served its preprocessing): set `enforce: off` on the endpoint, or train the model again",
                    v.model, v.version
                ),
            ));
        }
        let texts: Vec<String> = containers.iter().map(Served::identity).collect();
        let mut parts: Vec<&str> = Vec::new();
        for (c, text) in containers.iter().zip(&texts) {
            parts.push(&c.image);
            parts.push(&c.artifact);
            parts.push(text);
        }
        let name = format!(
            "{}-v{}-{}",
            family(endpoint),
            v.version,
            names::hash(&parts, 8)
        );
        match self.aws.sm.describe_model().model_name(&name).send().await {
            Ok(_) => return Ok(name),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(aws_err("DescribeModel", e)),
        }
        let mut definitions: Vec<ContainerDefinition> =
            containers.into_iter().map(Served::definition).collect();
        let mut create = self
            .aws
            .sm
            .create_model()
            .model_name(&name)
            .execution_role_arn(&self.aws.role_arn)
            .set_tags(Some(tags.to_vec()));
        create = if definitions.len() == 1 {
            create.primary_container(definitions.remove(0))
        } else {
            create.set_containers(Some(definitions))
        };
        match create.send().await {
            Ok(_) => Ok(name),
            Err(e) => {
                let err = aws_err("CreateModel", e);
                if err.kind == ErrorKind::AlreadyExists {
                    Ok(name)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Creates an endpoint config unless it exists; returns its name.
    async fn ensure_config(
        &self,
        endpoint: &str,
        plan: &ConfigPlan,
        tags: &[Tag],
    ) -> Result<String> {
        let name = plan.name(&family(endpoint));
        match self
            .aws
            .sm
            .describe_endpoint_config()
            .endpoint_config_name(&name)
            .send()
            .await
        {
            Ok(_) => return Ok(name),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(aws_err("DescribeEndpointConfig", e)),
        }
        let variant = ProductionVariant::builder()
            .variant_name(&plan.variant)
            .model_name(&plan.model)
            .initial_instance_count(plan.instances)
            .instance_type(ProductionVariantInstanceType::from(
                plan.instance_type.as_str(),
            ))
            .initial_variant_weight(1.0)
            .set_volume_size_in_gb(plan.volume_gb)
            .build();
        let capture = plan.capture.as_ref().map(|(percent, dest)| {
            DataCaptureConfig::builder()
                .enable_capture(true)
                .initial_sampling_percentage(*percent)
                .destination_s3_uri(dest)
                .capture_options(
                    CaptureOption::builder()
                        .capture_mode(CaptureMode::Input)
                        .build(),
                )
                .capture_options(
                    CaptureOption::builder()
                        .capture_mode(CaptureMode::Output)
                        .build(),
                )
                .capture_content_type_header(
                    CaptureContentTypeHeader::builder()
                        .csv_content_types("text/csv")
                        .json_content_types("application/json")
                        .build(),
                )
                .build()
        });
        let res = self
            .aws
            .sm
            .create_endpoint_config()
            .endpoint_config_name(&name)
            .production_variants(variant)
            .set_data_capture_config(capture)
            .set_tags(Some(tags.to_vec()))
            .send()
            .await;
        match res {
            Ok(_) => Ok(name),
            Err(e) => {
                let err = aws_err("CreateEndpointConfig", e);
                if err.kind == ErrorKind::AlreadyExists {
                    Ok(name)
                } else {
                    Err(err)
                }
            }
        }
    }

    async fn create_endpoint(&self, endpoint: &str, config: &str, tags: &[Tag]) -> Result<()> {
        self.aws
            .sm
            .create_endpoint()
            .endpoint_name(endpoint)
            .endpoint_config_name(config)
            .set_tags(Some(tags.to_vec()))
            .send()
            .await
            .map_err(|e| aws_err("CreateEndpoint", e))?;
        Ok(())
    }

    /// Deletes an endpoint and waits until SageMaker no longer knows it.
    async fn delete_and_wait(&self, endpoint: &str) -> Result<()> {
        match self
            .aws
            .sm
            .delete_endpoint()
            .endpoint_name(endpoint)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(aws_err("DeleteEndpoint", e)),
        }
        let t0 = Instant::now();
        while self.describe(endpoint).await?.is_some() {
            if t0.elapsed() > Duration::from_secs(900) {
                return Err(provider_err(
                    ErrorKind::Timeout,
                    "DeleteEndpoint",
                    format!("endpoint {endpoint} was still being deleted after 15 minutes"),
                ));
            }
            tokio::time::sleep(self.aws.settings.poll_interval.min(Duration::from_secs(15))).await;
        }
        Ok(())
    }

    /// Points a live endpoint at another config with the strategy's guardrails; `alarms` are
    /// mlctl's own, watched with the strategy's.
    async fn update(
        &self,
        endpoint: &str,
        config: &str,
        strategy: Option<&Strategy>,
        alarms: &[String],
        tags: &[Tag],
    ) -> Result<()> {
        if !self.aws.features.update_endpoint {
            // The emulator has no UpdateEndpoint: replace the endpoint instead.
            self.delete_and_wait(endpoint).await?;
            return self.create_endpoint(endpoint, config, tags).await;
        }
        self.aws
            .sm
            .update_endpoint()
            .endpoint_name(endpoint)
            .endpoint_config_name(config)
            .deployment_config(deployment_config(strategy, alarms)?)
            .send()
            .await
            .map_err(|e| aws_err("UpdateEndpoint", e))?;
        Ok(())
    }

    async fn tag(&self, arn: &str, tags: &[Tag]) -> Result<()> {
        self.aws
            .sm
            .add_tags()
            .resource_arn(arn)
            .set_tags(Some(tags.to_vec()))
            .send()
            .await
            .map_err(|e| aws_err("AddTags", e))?;
        Ok(())
    }

    /// The mlctl model an endpoint serves (its `mlctl:model` tag).
    async fn model_tag(&self, arn: &str) -> Result<String> {
        let tags = self
            .aws
            .sm
            .list_tags()
            .resource_arn(arn)
            .send()
            .await
            .map_err(|e| aws_err("ListTags", e))?;
        Ok(tags
            .tags()
            .iter()
            .find(|t| t.key() == Some("mlctl:model"))
            .and_then(|t| t.value())
            .unwrap_or_default()
            .to_string())
    }

    /// Reads an endpoint into mlctl's status.
    async fn status_from(
        &self,
        d: &DescribeEndpointOutput,
        mlctl_name: &str,
    ) -> Result<EndpointStatus> {
        let model = match d.endpoint_arn() {
            Some(arn) => self.model_tag(arn).await?,
            None => String::new(),
        };
        let variants = d.production_variants();
        let total: f32 = variants
            .iter()
            .map(|v| v.current_weight().or(v.desired_weight()).unwrap_or(0.0))
            .sum();
        let mut out = Vec::new();
        for v in variants {
            let weight = v.current_weight().or(v.desired_weight()).unwrap_or(0.0);
            let version = v
                .variant_name()
                .and_then(|n| n.strip_prefix('v'))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            out.push(Variant {
                model: model.clone(),
                version,
                weight: if total > 0.0 {
                    (weight / total * 100.0).round() as u32
                } else {
                    0
                },
            });
        }
        let mut instances: u32 = variants
            .iter()
            .map(|v| {
                v.current_instance_count()
                    .or(v.desired_instance_count())
                    .unwrap_or(0)
                    .max(0) as u32
            })
            .sum();
        if instances == 0 {
            // Some services (and moto after a weight change) omit the counts: the config has them.
            if let Some(config) = d.endpoint_config_name()
                && let Ok(c) = self
                    .aws
                    .sm
                    .describe_endpoint_config()
                    .endpoint_config_name(config)
                    .send()
                    .await
            {
                instances = c
                    .production_variants()
                    .iter()
                    .map(|v| v.initial_instance_count().unwrap_or(0).max(0) as u32)
                    .sum();
            }
        }
        let status = d.endpoint_status();
        let message = match status {
            Some(SmStatus::InService) | None => None,
            Some(s) => Some(format!(
                "{}{}",
                s.as_str(),
                d.failure_reason()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            )),
        };
        Ok(EndpointStatus {
            name: mlctl_name.to_string(),
            url: Some(
                self.aws
                    .invocation_url(d.endpoint_name().unwrap_or_default()),
            ),
            health: health_of(status),
            variants: out,
            instances,
            message,
        })
    }

    fn tags_for(tags: &Tags, model: &str, version: u32) -> Vec<Tag> {
        sm_tags(
            tags,
            &[
                ("mlctl:model", model),
                ("mlctl:version", &version.to_string()),
            ],
        )
    }
}

#[async_trait]
impl Deployer for SageMakerDeployer {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            fields: crate::support::field_rules(),
            strategies: StrategyType::ALL.to_vec(),
            poll_interval: self.aws.settings.poll_interval,
            notes: self.aws.features.notes(),
            ..Capabilities::default()
        }
    }

    async fn deploy(&self, ctx: &OpContext, req: &EndpointRequest) -> Result<DeploymentHandle> {
        if req.spec.serve.is_some() {
            return Err(provider_err(
                ErrorKind::NotSupported,
                "CreateEndpoint",
                format!(
                    "endpoint `{}`: `serve` (a serving command) is not supported on sagemaker targets; endpoints serve the registered model's container",
                    req.name
                ),
            ));
        }
        let endpoint = names::resource(&ctx.project, &req.name);
        let tags = Self::tags_for(&req.tags, &req.model.model, req.model.version);
        let enforce = req.spec.enforce;
        let model = self
            .ensure_model(ctx, &endpoint, &req.model, enforce, &tags)
            .await?;
        // The endpoint remembers its `enforce`, which a rollback (no spec at hand) serves with.
        let mut endpoint_tags = tags.clone();
        endpoint_tags.push(
            Tag::builder()
                .key(ENFORCE_TAG)
                .value(enforce.map_or("default", enforce_name))
                .build(),
        );
        let sm = req
            .spec
            .compute
            .as_ref()
            .and_then(|c| c.overrides.as_ref())
            .and_then(|o| o.sagemaker.as_ref());
        let instance_type = crate::instances::endpoint_instance(req.spec.compute.as_ref())
            .map_err(|m| {
                provider_err(
                    ErrorKind::Invalid,
                    "CreateEndpointConfig",
                    format!("endpoint `{}`: {m}", req.name),
                )
            })?;
        let volume_gb = sm
            .and_then(|s| s.volume_size_gb)
            .map(|v| v.clamp(1, i32::MAX as u32) as i32);
        let capture = match &req.spec.capture {
            Some(c) => {
                let dest = match &c.destination {
                    Some(d) if d.starts_with("s3://") => d.clone(),
                    Some(d) => {
                        return Err(provider_err(
                            ErrorKind::Invalid,
                            "CreateEndpointConfig",
                            format!(
                                "capture.destination must be an s3:// URI on sagemaker, not `{d}`"
                            ),
                        ));
                    }
                    None => self.aws.uri(&self.aws.key(&format!("capture/{endpoint}"))),
                };
                Some((c.sampling_percent.round().clamp(0.0, 100.0) as i32, dest))
            }
            None => None,
        };
        let plan = ConfigPlan {
            variant: variant_name(req.model.version),
            model,
            instances: req.spec.instances.unwrap_or(1).clamp(1, i32::MAX as i64) as i32,
            instance_type,
            volume_gb,
            capture,
        };
        let config = self.ensure_config(&endpoint, &plan, &tags).await?;
        // The thresholds' alarms exist (and only those) before a rollout names them.
        let rollback = req.spec.strategy.as_ref().and_then(|s| s.rollback.as_ref());
        let alarms = crate::alarms::wanted(&endpoint, &plan.variant, rollback);
        let version = req.model.version.to_string();
        let alarm_tags = tag_pairs(
            &req.tags,
            &[
                ("mlctl:model", &req.model.model),
                ("mlctl:version", &version),
            ],
        );
        crate::alarms::apply(&self.aws, &endpoint, &plan.variant, &alarms, &alarm_tags).await?;
        let alarm_names: Vec<String> = alarms.into_iter().map(|a| a.name).collect();
        match self.describe(&endpoint).await? {
            None => {
                self.create_endpoint(&endpoint, &config, &endpoint_tags)
                    .await?
            }
            Some(d) => {
                let status = d.endpoint_status().cloned();
                let live = d.endpoint_config_name().unwrap_or_default().to_string();
                if status == Some(SmStatus::Failed) {
                    // SageMaker cannot update a failed endpoint: replace it.
                    self.delete_and_wait(&endpoint).await?;
                    self.create_endpoint(&endpoint, &config, &endpoint_tags)
                        .await?;
                } else if live == config {
                    // Already applied. Put traffic and capacity back on the applied variant if
                    // they were moved by hand.
                    let drifted = d.production_variants().iter().any(|v| {
                        let w = v.current_weight().unwrap_or(1.0);
                        if v.variant_name() == Some(plan.variant.as_str()) {
                            let count = v.current_instance_count().or(v.desired_instance_count());
                            w <= 0.0 || count.is_some_and(|n| n != plan.instances)
                        } else {
                            w > 0.0
                        }
                    });
                    if drifted && status == Some(SmStatus::InService) {
                        self.route_all_to(&endpoint, &d, &plan.variant, Some(plan.instances))
                            .await?;
                    }
                } else if matches!(status, Some(SmStatus::InService | SmStatus::OutOfService)) {
                    self.update(
                        &endpoint,
                        &config,
                        req.spec.strategy.as_ref(),
                        &alarm_names,
                        &tags,
                    )
                    .await?;
                    if let Some(arn) = d.endpoint_arn()
                        && self.aws.features.update_endpoint
                    {
                        self.tag(arn, &endpoint_tags).await?;
                    }
                } else {
                    return Err(provider_err(
                        ErrorKind::Transient,
                        "UpdateEndpoint",
                        format!(
                            "endpoint {endpoint} is {} with config {live}; it can be updated once that settles",
                            status.map(|s| s.as_str().to_string()).unwrap_or_default()
                        ),
                    ));
                }
            }
        }
        Ok(DeploymentHandle {
            endpoint: req.name.clone(),
            id: config,
        })
    }

    async fn poll(&self, ctx: &OpContext, handle: &DeploymentHandle) -> Result<DeployState> {
        let endpoint = names::resource(&ctx.project, &handle.endpoint);
        let Some(d) = self.describe(&endpoint).await? else {
            return Ok(DeployState::Failed {
                reason: format!("endpoint {endpoint} no longer exists"),
            });
        };
        let live = d.endpoint_config_name().unwrap_or_default();
        let reason = d
            .failure_reason()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        Ok(match d.endpoint_status() {
            Some(SmStatus::InService) if live == handle.id => {
                DeployState::Done(self.status_from(&d, &handle.endpoint).await?)
            }
            Some(SmStatus::InService) => DeployState::RolledBack {
                reason: format!(
                    "SageMaker did not keep the update: endpoint {endpoint} serves config {live}, not the applied {}{reason}",
                    handle.id
                ),
                status: self.status_from(&d, &handle.endpoint).await?,
            },
            Some(SmStatus::Failed | SmStatus::UpdateRollbackFailed | SmStatus::OutOfService) => {
                // A container that did not start or answer says why in its log.
                let log = if d.endpoint_status() == Some(&SmStatus::Failed) {
                    crate::logs::failure_context(
                        &self.aws,
                        crate::logs::LogSource::Endpoint(&endpoint),
                    )
                    .await
                } else {
                    String::new()
                };
                DeployState::Failed {
                    reason: format!(
                        "endpoint {endpoint} is {}{reason}{log}",
                        d.endpoint_status().map(|s| s.as_str()).unwrap_or_default()
                    ),
                }
            }
            Some(SmStatus::Deleting) => DeployState::Failed {
                reason: format!("endpoint {endpoint} is being deleted"),
            },
            Some(SmStatus::RollingBack) => DeployState::InProgress {
                message: format!("rolling back{reason}"),
            },
            Some(s) => DeployState::InProgress {
                message: format!("endpoint {}", s.as_str()),
            },
            None => DeployState::InProgress {
                message: "waiting for SageMaker".into(),
            },
        })
    }

    async fn status(&self, ctx: &OpContext, name: &str) -> Result<Option<EndpointStatus>> {
        let endpoint = names::resource(&ctx.project, name);
        match self.describe(&endpoint).await? {
            None => Ok(None),
            Some(d) => Ok(Some(self.status_from(&d, name).await?)),
        }
    }

    async fn rollback(
        &self,
        ctx: &OpContext,
        name: &str,
        to: &ModelVersion,
    ) -> Result<EndpointStatus> {
        let endpoint = names::resource(&ctx.project, name);
        let d = self.describe(&endpoint).await?.ok_or_else(|| {
            provider_err(
                ErrorKind::NotFound,
                "DescribeEndpoint",
                format!("endpoint {endpoint} does not exist"),
            )
        })?;
        let wanted = variant_name(to.version);
        // The version is a variant of the live config: move all traffic to it, no redeploy.
        if d.production_variants()
            .iter()
            .any(|v| v.variant_name() == Some(wanted.as_str()))
            && d.production_variants().len() > 1
        {
            self.route_all_to(&endpoint, &d, &wanted, None).await?;
        } else {
            // Otherwise deploy the old version with the live config's shape.
            let live = d.endpoint_config_name().unwrap_or_default();
            let c = self
                .aws
                .sm
                .describe_endpoint_config()
                .endpoint_config_name(live)
                .send()
                .await
                .map_err(|e| aws_err("DescribeEndpointConfig", e))?;
            let first = c.production_variants().first();
            let tags_now = self
                .aws
                .sm
                .list_tags()
                .resource_arn(d.endpoint_arn().unwrap_or_default())
                .send()
                .await
                .map_err(|e| aws_err("ListTags", e))?;
            let get = |k: &str| {
                tags_now
                    .tags()
                    .iter()
                    .find(|t| t.key() == Some(k))
                    .and_then(|t| t.value())
                    .unwrap_or_default()
                    .to_string()
            };
            // The user's labels stay as the endpoint has them.
            let labels = tags_now
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default())))
                .filter(|(k, _)| !k.starts_with("mlctl:") && !k.starts_with("aws:"))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let mlctl_tags = Tags {
                project: ctx.project.clone(),
                resource: format!("Endpoint/{name}"),
                fingerprint: get("mlctl:fingerprint"),
                commit: ctx.commit.clone(),
                labels,
            };
            let tags = Self::tags_for(&mlctl_tags, &to.model, to.version);
            // Endpoints deployed before the tag could only be `enforce: off` on SageMaker.
            let enforce = match get(ENFORCE_TAG).as_str() {
                "strict" => Some(mlctl_spec::Enforce::Strict),
                "warn" => Some(mlctl_spec::Enforce::Warn),
                "default" => None,
                _ => Some(mlctl_spec::Enforce::Off),
            };
            let model = self
                .ensure_model(ctx, &endpoint, to, enforce, &tags)
                .await?;
            let plan = ConfigPlan {
                variant: wanted,
                model,
                instances: first.and_then(|v| v.initial_instance_count()).unwrap_or(1),
                instance_type: first
                    .and_then(|v| v.instance_type())
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_else(|| crate::instances::DEFAULT_ENDPOINT.into()),
                volume_gb: first.and_then(|v| v.volume_size_in_gb()),
                capture: c
                    .data_capture_config()
                    .filter(|d| d.enable_capture() == Some(true))
                    .map(|d| {
                        (
                            d.initial_sampling_percentage().unwrap_or(0),
                            d.destination_s3_uri().unwrap_or_default().to_string(),
                        )
                    }),
            };
            let config = self.ensure_config(&endpoint, &plan, &tags).await?;
            if config != live {
                self.update(&endpoint, &config, None, &[], &tags).await?;
                if self.aws.features.update_endpoint
                    && let Some(arn) = d.endpoint_arn()
                {
                    self.tag(arn, &tags).await?;
                }
            }
        }
        // A rollback is a command someone waits on: return once SageMaker has settled.
        let t0 = Instant::now();
        loop {
            let d = self.describe(&endpoint).await?.ok_or_else(|| {
                provider_err(
                    ErrorKind::NotFound,
                    "DescribeEndpoint",
                    format!("endpoint {endpoint} disappeared"),
                )
            })?;
            let settling = matches!(
                d.endpoint_status(),
                Some(
                    SmStatus::Creating
                        | SmStatus::Updating
                        | SmStatus::SystemUpdating
                        | SmStatus::RollingBack
                )
            );
            if !settling || t0.elapsed() > Duration::from_secs(3600) {
                return self.status_from(&d, name).await;
            }
            tokio::time::sleep(self.aws.settings.poll_interval).await;
        }
    }

    async fn update_in_place(&self, ctx: &OpContext, req: &InPlaceRequest) -> Result<()> {
        let endpoint = names::resource(&ctx.project, &req.name);
        let d = match self
            .aws
            .sm
            .describe_endpoint()
            .endpoint_name(&endpoint)
            .send()
            .await
        {
            Ok(d) => d,
            Err(e) if is_not_found(&e) => {
                return Err(provider_err(
                    ErrorKind::NotFound,
                    "update endpoint tags",
                    format!(
                        "endpoint {endpoint} is not on SageMaker any more; run `mlctl apply` with a change that deploys it again"
                    ),
                ));
            }
            Err(e) => return Err(aws_err("DescribeEndpoint", e)),
        };
        let arn = d.endpoint_arn().unwrap_or_default();
        self.aws.retag(arn, &req.tags, &req.removed_labels).await
    }

    async fn delete(&self, ctx: &OpContext, name: &str) -> Result<()> {
        let endpoint = names::resource(&ctx.project, name);
        match self
            .aws
            .sm
            .delete_endpoint()
            .endpoint_name(&endpoint)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(aws_err("DeleteEndpoint", e)),
        }
        // The alarms last: a CloudWatch failure must not leave the configs and models behind
        // (it still fails the delete, which the next apply repeats).
        let fam = family(&endpoint);
        let configs: Vec<String> = self
            .aws
            .sm
            .list_endpoint_configs()
            .name_contains(&fam)
            .max_results(100)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| aws_err("ListEndpointConfigs", e))?
            .iter()
            .map(|c| c.endpoint_config_name().unwrap_or_default().to_string())
            .filter(|n| is_config_of(&fam, n))
            .collect();
        for c in configs {
            match self
                .aws
                .sm
                .delete_endpoint_config()
                .endpoint_config_name(&c)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(aws_err("DeleteEndpointConfig", e)),
            }
        }
        let models: Vec<String> = self
            .aws
            .sm
            .list_models()
            .name_contains(&fam)
            .max_results(100)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| aws_err("ListModels", e))?
            .iter()
            .map(|m| m.model_name().unwrap_or_default().to_string())
            .filter(|n| is_model_of(&fam, n))
            .collect();
        for m in models {
            match self.aws.sm.delete_model().model_name(&m).send().await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(aws_err("DeleteModel", e)),
            }
        }
        crate::alarms::delete_all(&self.aws, &endpoint).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_an_endpoints_resources() {
        let fam = family("iris-iris");
        let plan = ConfigPlan {
            variant: "v1".into(),
            model: "m".into(),
            instances: 1,
            instance_type: "ml.m5.large".into(),
            volume_gb: None,
            capture: None,
        };
        let config = plan.name(&fam);
        assert!(is_config_of(&fam, &config), "{config}");
        assert!(!is_config_of(&family("iris-iris-canary"), &config));
        assert!(is_model_of(&fam, "iris-iris-v12-0123abcd"));
        assert!(!is_model_of(&fam, "iris-iris-canary-v1-0123abcd"));
        let long = family(&"e".repeat(63));
        assert!(plan.name(&long).len() <= names::MAX);
        assert!(format!("{long}-v4294967295-0123abcd").len() <= names::MAX);
    }

    #[test]
    fn strategies_map_to_deployment_guardrails() {
        let canary = Strategy {
            ty: StrategyType::Canary,
            percent: Some(10),
            bake_time: Some("30s".into()),
            min_requests: Some(0),
            max_bake_time: None,
            rollback: Some(mlctl_spec::Rollback {
                max_error_rate: None,
                max_p99_latency_ms: None,
                alarms: vec!["p99-high".into()],
            }),
        };
        let c = deployment_config(
            Some(&canary),
            &["iris-iris-v2-mlctl-error-rate".to_string()],
        )
        .unwrap();
        let r = c
            .blue_green_update_policy()
            .and_then(|p| p.traffic_routing_configuration())
            .unwrap();
        assert_eq!(r.r#type(), Some(&TrafficRoutingConfigType::Canary));
        assert_eq!(r.canary_size().map(|s| s.value()), Some(Some(10)));
        assert_eq!(r.wait_interval_in_seconds(), Some(30));
        let alarms: Vec<_> = c
            .auto_rollback_configuration()
            .unwrap()
            .alarms()
            .iter()
            .map(|a| a.alarm_name().unwrap_or_default())
            .collect();
        assert_eq!(alarms, ["p99-high", "iris-iris-v2-mlctl-error-rate"]);
        let c = deployment_config(None, &[]).unwrap();
        let r = c
            .blue_green_update_policy()
            .and_then(|p| p.traffic_routing_configuration())
            .unwrap();
        assert_eq!(r.r#type(), Some(&TrafficRoutingConfigType::AllAtOnce));
        assert!(c.auto_rollback_configuration().is_none());
        let bg = Strategy {
            ty: StrategyType::BlueGreen,
            percent: None,
            bake_time: Some("2h".into()),
            min_requests: None,
            max_bake_time: None,
            rollback: None,
        };
        let c = deployment_config(Some(&bg), &[]).unwrap();
        let r = c
            .blue_green_update_policy()
            .and_then(|p| p.traffic_routing_configuration())
            .unwrap();
        assert_eq!(
            (r.r#type(), r.wait_interval_in_seconds()),
            (Some(&TrafficRoutingConfigType::Linear), Some(3600))
        );
    }
}
