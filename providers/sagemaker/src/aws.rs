//! The connection to AWS: clients, the target's bucket and role, and runtime settings.

use crate::error::aws_err;
use crate::{Options, invalid};
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_s3::config::Region;
use mlctl_core::error::Result;
use mlctl_core::{ProviderConfig, Tags};
use std::time::Duration;

/// Operations the service behind the endpoint really implements.
///
/// Real AWS implements everything. moto (the emulator the tests use) answers some calls with
/// HTTP 500; a target with `emulator: moto` works around them (documented per flag) so a
/// whole `apply` runs against moto, and says so with every plan ([`Features::notes`]). The
/// unit tests cover the real calls with SDK mocks. The target's `emulator` setting is the
/// only switch: an `endpointUrl` alone (a VPC endpoint, a proxy on localhost) is real AWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// `UpdateEndpoint`. Off: an endpoint is deleted and created again with the new config.
    pub update_endpoint: bool,
    /// `Create/Update/DeleteMonitoringSchedule`. Off: monitors are only recorded in S3.
    pub monitoring_schedules: bool,
    /// `DeleteModelPackage` / `DeleteModelPackageGroup`. Off: deleting a model marks its
    /// versions deleted (and `Rejected`) instead, and they are no longer listed.
    pub delete_model_packages: bool,
    /// `StopTrainingJob` / `StopHyperParameterTuningJob`. Off: cancel does nothing.
    pub stop_jobs: bool,
    /// `ListTrainingJobsForHyperParameterTuningJob`. Off: a tuning result lists only the best trial.
    pub list_tuning_trials: bool,
    /// Create the target's bucket when it is missing (emulators start empty; on AWS the
    /// bucket is the user's and is never created).
    pub create_bucket: bool,
    /// `AddTags` / `DeleteTags` on a model package (moto answers 500). Off: a label changed
    /// in place is put on the package's group, not on the package.
    pub tag_model_packages: bool,
    /// Training jobs really run. Off: a job completes at once without running, and its
    /// metrics are the emulator's made-up figures (moto: `train:progress` 100, a tuning
    /// objective of 1.0), so they are kept flagged as such ([`Features::metrics_origin`]).
    pub runs_training: bool,
    /// Processing jobs run their container (moto accepts CreateProcessingJob and reports the
    /// job `Completed` at once, having run nothing). Off: mlctl runs a transform's job on
    /// this machine, laid out as the container would be, and uploads its output to the
    /// job's output prefix (`transform.rs`).
    pub run_processing_jobs: bool,
}

impl Features {
    /// Everything real AWS offers.
    pub const AWS: Features = Features {
        update_endpoint: true,
        monitoring_schedules: true,
        delete_model_packages: true,
        stop_jobs: true,
        list_tuning_trials: true,
        create_bucket: false,
        tag_model_packages: true,
        runs_training: true,
        run_processing_jobs: true,
    };

    /// What moto 5.x implements.
    pub const MOTO: Features = Features {
        update_endpoint: false,
        monitoring_schedules: false,
        delete_model_packages: false,
        stop_jobs: false,
        list_tuning_trials: false,
        create_bucket: true,
        tag_model_packages: false,
        runs_training: false,
        run_processing_jobs: false,
    };

    /// The features of the service a target names: its `emulator`'s, else real AWS.
    pub fn of(target: &mlctl_spec::SagemakerTarget) -> Features {
        match target.emulator {
            Some(mlctl_spec::Emulator::Moto) => Features::MOTO,
            None => Features::AWS,
        }
    }

    /// What the metrics of a finished job are, when they are not measured (see
    /// `TrainingResult::metrics_origin`).
    pub fn metrics_origin(&self) -> Option<String> {
        (!self.runs_training).then(|| {
            "emulated by moto: no model was trained or scored - the figures are made up by the emulator"
                .to_string()
        })
    }

    /// What differs from real AWS, one line each, for the notes shown with every plan
    /// (empty on AWS).
    pub fn notes(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut add = |differs: bool, text: &str| {
            if differs {
                out.push(format!("emulator mode (moto): {text}"));
            }
        };
        add(
            !self.update_endpoint,
            "endpoints are replaced (deleted and created again) instead of updated, so canary and blue-green rollouts and the CloudWatch alarms that would roll them back are not exercised (the alarms are still created, tagged and deleted)",
        );
        add(
            !self.stop_jobs,
            "cancel does not stop training or tuning jobs",
        );
        add(
            !self.delete_model_packages,
            "deleting a model marks its package versions deleted and Rejected instead of deleting them",
        );
        add(
            !self.monitoring_schedules,
            "monitors are recorded on S3 without a monitoring schedule",
        );
        add(
            !self.list_tuning_trials,
            "a tuning result lists only the best trial",
        );
        add(
            !self.runs_training,
            "training and tuning jobs complete without running, and their metrics are the emulator's made-up figures (flagged as not measured in the registry and in `mlctl models show`); a gate on a metric moto does not report is NOT EVALUATED, never passed",
        );
        add(
            self.create_bucket,
            "the target's bucket is created when it is missing",
        );
        add(
            !self.tag_model_packages,
            "a label changed in place is put on a model's package group, not on its package versions (moto cannot tag them)",
        );
        add(
            !self.run_processing_jobs,
            "a transform's Processing job is created, but moto runs nothing: mlctl runs the job's command on this machine (the tools on its PATH, a scrubbed environment, the container's directory layout) and uploads its output to the job's output prefix",
        );
        out
    }
}

/// Runtime knobs of the provider.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Attempts per AWS call, first one included (standard retry mode: throttling, 5xx and
    /// connection errors are retried with jittered exponential backoff). Env `MLCTL_SM_MAX_ATTEMPTS`, default 8.
    pub max_attempts: u32,
    /// First retry delay. Env `MLCTL_SM_BACKOFF_MS`, default 1 s.
    pub initial_backoff: Duration,
    /// How often the engine should poll training jobs and rollouts. Env `MLCTL_SM_POLL_MS`, default 15 s.
    pub poll_interval: Duration,
    /// Files larger than this are uploaded in parts (64 MiB).
    pub multipart_threshold: u64,
    /// Size of each part (16 MiB; S3 allows 10,000 parts, so this grows for huge files).
    pub part_size: u64,
    /// The largest `s3://` dataset source that is read to check it (digest, schema, split);
    /// a larger one is refused with what to do instead. Env `MLCTL_SM_MAX_S3_SOURCE_MB`,
    /// default [`DEFAULT_MAX_S3_SOURCE`].
    pub max_s3_source: u64,
}

/// The default cap on an `s3://` dataset source that is read: 2 GiB (it is streamed to a
/// temporary file, then read as a table, so memory and disk need about as much again).
pub const DEFAULT_MAX_S3_SOURCE: u64 = 2 << 30;

impl Settings {
    /// Settings from the environment.
    pub fn from_env() -> Settings {
        let num = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        Settings {
            max_attempts: num("MLCTL_SM_MAX_ATTEMPTS")
                .map(|n| n.clamp(1, 50) as u32)
                .unwrap_or(8),
            initial_backoff: Duration::from_millis(num("MLCTL_SM_BACKOFF_MS").unwrap_or(1000)),
            poll_interval: Duration::from_millis(num("MLCTL_SM_POLL_MS").unwrap_or(15_000)),
            multipart_threshold: 64 << 20,
            part_size: 16 << 20,
            max_s3_source: num("MLCTL_SM_MAX_S3_SOURCE_MB")
                .map(|mb| mb.saturating_mul(1 << 20))
                .unwrap_or(DEFAULT_MAX_S3_SOURCE),
        }
    }
}

/// Clients plus where things go.
pub(crate) struct Aws {
    pub s3: aws_sdk_s3::Client,
    pub sm: aws_sdk_sagemaker::Client,
    /// Alarms made from endpoints' rollback thresholds.
    pub cw: aws_sdk_cloudwatch::Client,
    /// The logs SageMaker's containers write (`logs.rs`).
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub bucket: String,
    /// Key prefix without leading or trailing `/` (may be empty).
    pub prefix: String,
    pub role_arn: String,
    pub region: String,
    pub endpoint_url: Option<String>,
    pub settings: Settings,
    /// What the service implements (the target's `emulator`).
    pub features: Features,
}

/// Splits `s3://bucket/some/prefix` into the bucket and the prefix.
pub(crate) fn parse_s3_uri(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return None;
    }
    Some((bucket.to_string(), key.trim_matches('/').to_string()))
}

impl Aws {
    /// Updates the tags of a SageMaker resource in place: AddTags overwrites the keys it
    /// names (mlctl's and the labels) and keeps the rest (`mlctl:dataset`, `mlctl:model`, ...);
    /// DeleteTags takes the labels in `removed` off.
    pub(crate) async fn retag(&self, arn: &str, tags: &Tags, removed: &[String]) -> Result<()> {
        // A key both removed and set (a label that moved from the resource to the project)
        // stays.
        let set = tag_pairs(tags, &[]);
        let removed: Vec<String> = removed
            .iter()
            .filter(|k| !set.iter().any(|(s, _)| s == *k))
            .cloned()
            .collect();
        self.sm
            .add_tags()
            .resource_arn(arn)
            .set_tags(Some(sm_tags(tags, &[])))
            .send()
            .await
            .map_err(|e| aws_err("AddTags", e))?;
        if !removed.is_empty() {
            self.sm
                .delete_tags()
                .resource_arn(arn)
                .set_tag_keys(Some(removed))
                .send()
                .await
                .map_err(|e| aws_err("DeleteTags", e))?;
        }
        Ok(())
    }

    /// Connects with the target's settings.
    pub async fn connect(cfg: &ProviderConfig, options: Options) -> Result<Aws> {
        let what = format!("target `{}`", cfg.target_name);
        let mlctl_spec::Target::Sagemaker(t) = &cfg.target else {
            return Err(invalid(
                "connect",
                format!(
                    "{what} uses provider `{}`, not sagemaker",
                    cfg.target.provider().as_str()
                ),
            ));
        };
        let bucket_uri = t.bucket.as_str();
        let (bucket, prefix) = parse_s3_uri(bucket_uri).ok_or_else(|| {
            invalid(
                "connect",
                format!("{what}: `bucket` must look like `s3://bucket/prefix`, not `{bucket_uri}`"),
            )
        })?;
        let role_arn = Some(t.role_arn.clone()).filter(|r| !r.is_empty()).ok_or_else(|| {
            invalid("connect", format!("{what}: `roleArn` is required: the IAM role SageMaker assumes to run jobs and endpoints"))
        })?;
        let endpoint_url = t.endpoint_url.clone().filter(|u| !u.is_empty());
        if t.emulator.is_some() && endpoint_url.is_none() {
            return Err(invalid(
                "connect",
                format!(
                    "{what}: `emulator` is set but `endpointUrl` is not: point `endpointUrl` at the emulator (e.g. http://127.0.0.1:5000), or remove `emulator` for real AWS"
                ),
            ));
        }
        let settings = options.settings.unwrap_or_else(Settings::from_env);

        let retry = RetryConfig::standard()
            .with_max_attempts(settings.max_attempts)
            .with_initial_backoff(settings.initial_backoff);
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).retry_config(retry);
        if !t.region.is_empty() {
            loader = loader.region(Region::new(t.region.clone()));
        }
        if let Some(url) = &endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        if let Some(creds) = options.credentials {
            loader = loader.credentials_provider(creds);
        }
        let sdk = loader.load().await;
        let region = sdk.region().map(|r| r.to_string()).ok_or_else(|| {
            invalid(
                "connect",
                format!("{what}: no AWS region: set `region` in the target (or AWS_REGION)"),
            )
        })?;
        let mut s3 = aws_sdk_s3::config::Builder::from(&sdk);
        if endpoint_url.is_some() {
            // Emulators and VPC endpoints address buckets by path, not by virtual host.
            s3 = s3.force_path_style(true);
        }
        Ok(Aws {
            s3: aws_sdk_s3::Client::from_conf(s3.build()),
            sm: aws_sdk_sagemaker::Client::new(&sdk),
            cw: aws_sdk_cloudwatch::Client::new(&sdk),
            logs: aws_sdk_cloudwatchlogs::Client::new(&sdk),
            bucket,
            prefix,
            role_arn,
            region,
            endpoint_url,
            settings,
            features: Features::of(t),
        })
    }

    /// A key under the target's prefix.
    pub fn key(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    /// `s3://bucket/<key>`.
    pub fn uri(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// Creates the bucket when it is missing ([`Features::create_bucket`]).
    pub async fn ensure_bucket(&self) -> Result<()> {
        if self
            .s3
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        match self.s3.create_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.as_service_error(), Some(se) if se.is_bucket_already_owned_by_you() || se.is_bucket_already_exists()) => {
                Ok(())
            }
            Err(e) => Err(aws_err("CreateBucket", e)),
        }
    }

    /// The URL clients call an endpoint at.
    pub fn invocation_url(&self, endpoint: &str) -> String {
        match &self.endpoint_url {
            Some(base) => format!(
                "{}/endpoints/{endpoint}/invocations",
                base.trim_end_matches('/')
            ),
            None => format!(
                "https://runtime.sagemaker.{}.amazonaws.com/endpoints/{endpoint}/invocations",
                self.region
            ),
        }
    }
}

/// The most tags AWS puts on one resource.
pub(crate) const MAX_TAGS: usize = 50;

/// How many tags of its own mlctl puts on what a resource of `kind` creates (its four, plus
/// `mlctl:dataset` on jobs, `mlctl:model` on packages, `mlctl:model`, `mlctl:version` and
/// `mlctl:enforce` on endpoints (the first two on their alarms), `mlctl:endpoint` on schedules); a Dataset's four are on the
/// Processing job of its transform (its versions are S3 objects whose tags are recorded
/// instead).
pub(crate) fn own_tags(kind: mlctl_spec::Kind) -> usize {
    match kind {
        mlctl_spec::Kind::Dataset => 4,
        mlctl_spec::Kind::Endpoint => 7,
        _ => 5,
    }
}

/// The AWS tags of a resource: mlctl's four, `extra`, and the labels (checked against AWS's
/// rules at plan time; values are made safe here all the same).
pub(crate) fn tag_pairs(tags: &Tags, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut map = tags.to_map();
    for (k, v) in extra {
        map.insert((*k).to_string(), (*v).to_string());
    }
    map.into_iter().map(|(k, v)| (k, tag_value(&v))).collect()
}

/// SageMaker tags for a resource: see [`tag_pairs`].
pub(crate) fn sm_tags(tags: &Tags, extra: &[(&str, &str)]) -> Vec<aws_sdk_sagemaker::types::Tag> {
    tag_pairs(tags, extra)
        .into_iter()
        .map(|(k, v)| {
            aws_sdk_sagemaker::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
        })
        .collect()
}

/// Tag values allow letters, digits, spaces and `_ . : / = + - @`, up to 256 characters.
fn tag_value(v: &str) -> String {
    v.chars()
        .map(|c| {
            if c.is_alphanumeric() || " _.:/=+-@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(256)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_emulator_setting_switches_emulator_mode() {
        // A loopback endpoint is just an endpoint (a proxy, a tunnel): real AWS behaviour.
        let mut t = mlctl_spec::SagemakerTarget {
            endpoint_url: Some("http://127.0.0.1:5000".into()),
            ..Default::default()
        };
        assert_eq!(Features::of(&t), Features::AWS);
        assert!(
            Features::AWS.notes().is_empty(),
            "real AWS has nothing to note"
        );
        t.emulator = Some(mlctl_spec::Emulator::Moto);
        assert_eq!(Features::of(&t), Features::MOTO);
        let notes = Features::MOTO.notes();
        for want in [
            "replaced",
            "canary",
            "alarms",
            "cancel does not stop",
            "Processing job is created, but moto runs nothing",
        ] {
            assert!(notes.iter().any(|n| n.contains(want)), "{want}: {notes:?}");
        }
    }

    #[test]
    fn bucket_uris_split_into_bucket_and_prefix() {
        assert_eq!(
            parse_s3_uri("s3://acme-ml/iris"),
            Some(("acme-ml".into(), "iris".into()))
        );
        assert_eq!(
            parse_s3_uri("s3://acme-ml/a/b/"),
            Some(("acme-ml".into(), "a/b".into()))
        );
        assert_eq!(
            parse_s3_uri("s3://acme-ml"),
            Some(("acme-ml".into(), String::new()))
        );
        assert_eq!(parse_s3_uri("acme-ml/iris"), None);
        assert_eq!(parse_s3_uri("s3:///x"), None);
    }
}
