//! What a SageMaker target honours of the spec, field by field (see `mlctl_core::support`).
//! Every component declares from this one table; what SageMaker cannot do is refused here, at
//! plan time, instead of failing (or being dropped) in the middle of an apply.

use mlctl_core::support::{FieldRules, Refusal, Support, number, source_schemes};
use mlctl_spec::{Kind, Resource, SagemakerTarget};

/// Longest wait SageMaker allows between the steps of a rollout (`WaitIntervalInSeconds`).
pub(crate) const MAX_BAKE_SECS: u64 = 3600;

fn remote_source(r: &Resource) -> bool {
    r.as_dataset()
        .and_then(|d| d.source.as_deref())
        .is_some_and(|s| s.starts_with("s3://"))
}

/// Honoured for project files, which mlctl reads, checks and splits before uploading; refused
/// for s3:// sources, which this target passes to SageMaker as they are.
fn read_locally(what: &'static str) -> Support {
    Support::check(
        format!(
            "honoured for project files; refused for s3:// sources, which are not read ({what})"
        ),
        move |_, r, _| {
            remote_source(r).then(|| {
                Refusal::new(
                    format!("the sagemaker target passes an s3:// source to SageMaker without reading it, so it cannot apply `{what}`"),
                    "copy the data into the project (mlctl uploads it), or remove the setting for this dataset",
                )
            })
        },
    )
}

fn compute_by_instance_type() -> Support {
    Support::check(
        "honoured when `compute.overrides.sagemaker.instanceType` names the instance that provides it; refused otherwise",
        |_, r, _| {
            let compute = r
                .as_training_job()
                .and_then(|t| t.compute.as_ref())
                .or_else(|| r.as_endpoint().and_then(|e| e.compute.as_ref()));
            let named = compute
                .and_then(|c| c.overrides.as_ref())
                .and_then(|o| o.sagemaker.as_ref())
                .is_some_and(|s| s.instance_type.is_some());
            (!named).then(|| {
                Refusal::new(
                    "SageMaker provides resources by instance type, and this target does not choose one from cpu, memory or gpu",
                    "name the instance type in `compute.overrides.sagemaker.instanceType` (e.g. `ml.m5.xlarge`)",
                )
            })
        },
    )
}

/// A SageMaker target's declarations for every kind.
pub fn field_rules(_target: &SagemakerTarget) -> FieldRules {
    let mut r = FieldRules::new();
    for kind in Kind::ALL {
        r = r.with(
            &format!("{kind}.metadata.labels"),
            Support::honoured_as("AWS tags on what the resource creates (jobs, model packages, endpoints, schedules) and in its records on S3"),
        );
    }
    r = r
        .with(
            "Dataset.spec.source",
            source_schemes(
                "sagemaker",
                &["", "s3"],
                "copy the data into the project or to s3://",
            ),
        )
        .with("Dataset.spec.format", read_locally("format"))
        .with("Dataset.spec.digest", read_locally("digest"))
        .with("Dataset.spec.target", read_locally("target"))
        .with_all("Dataset.spec.schema", read_locally("schema"))
        .with_all("Dataset.spec.split", read_locally("split"))
        .with_all(
            "Dataset.spec.transform",
            Support::refused(
                "the sagemaker target does not run transforms yet",
                "run the transform on a local target and use its output as a project file, or derive the data before mlctl",
            ),
        )
        .with(
            "TrainingJob.spec.algorithm",
            Support::one_of(
                crate::images::supported_algorithms()
                    .into_iter()
                    .map(|a| a.as_str())
                    .collect(),
                "built-in algorithm",
                "run it in script mode (`command` + `code`) on this target, or train it on a local target".into(),
            ),
        )
        .with("TrainingJob.spec.command", Support::Honoured)
        .with("TrainingJob.spec.code", Support::Honoured)
        .with("TrainingJob.spec.image", Support::Honoured)
        .with("TrainingJob.spec.hyperparameters", Support::Honoured)
        .with_all("TrainingJob.spec.metrics", Support::honoured_as("SageMaker MetricDefinitions"))
        .with(
            "TrainingJob.spec.tuning.strategy",
            Support::honoured_as("a HyperParameterTuningJob: grid, random and bayesian as named, halving as Hyperband"),
        )
        .with_all("TrainingJob.spec.tuning", Support::Honoured)
        .with(
            "TrainingJob.spec.tuning.searchSpace.*.step",
            Support::check(
                "honoured for grid search; refused with the other strategies",
                |_, r, _| {
                    let grid = r
                        .as_training_job()
                        .and_then(|t| t.tuning.as_ref())
                        .is_some_and(|t| t.strategy == mlctl_spec::TuningStrategy::Grid);
                    (!grid).then(|| {
                        Refusal::new(
                            "SageMaker samples continuous and integer ranges without a step, except in grid search",
                            "remove `step`, list the values in `values`, or use `strategy: grid`",
                        )
                    })
                },
            ),
        )
        .with("TrainingJob.spec.compute.cpu", compute_by_instance_type())
        .with("TrainingJob.spec.compute.memory", compute_by_instance_type())
        .with("TrainingJob.spec.compute.gpu", compute_by_instance_type())
        .with(
            "TrainingJob.spec.compute.overrides.sagemaker.instanceType",
            Support::Honoured,
        )
        .with(
            "TrainingJob.spec.compute.overrides.sagemaker.instanceCount",
            Support::Honoured,
        )
        .with(
            "TrainingJob.spec.compute.overrides.sagemaker.volumeSizeGb",
            Support::Honoured,
        )
        .with(
            "TrainingJob.spec.compute.overrides.sagemaker.spot",
            Support::honoured_as("managed spot training, waiting up to twice the timeout"),
        )
        .with(
            "Model.spec.description",
            Support::honoured_as("the model package's description"),
        )
        .with("Endpoint.spec.strategy.type", Support::Honoured)
        .with("Endpoint.spec.strategy.percent", Support::Honoured)
        .with(
            "Endpoint.spec.strategy.bakeTime",
            Support::check(
                "honoured up to 1h (SageMaker's longest wait between rollout steps)",
                |_, _, node| {
                    let d = mlctl_spec::units::parse_duration(node.as_str()?).ok()?;
                    (d.as_secs() > MAX_BAKE_SECS).then(|| {
                        Refusal::new(
                            format!("SageMaker waits at most 1h between the steps of a rollout, not {}", node.as_str().unwrap_or("")),
                            "use a bakeTime of 1h or less",
                        )
                    })
                },
            ),
        )
        .with(
            "Endpoint.spec.strategy.rollback.maxErrorRate",
            Support::refused(
                "SageMaker rolls back on CloudWatch alarms only, and this target does not create alarms from thresholds",
                "create a CloudWatch alarm on the endpoint and name it in `strategy.rollback.alarms`",
            ),
        )
        .with(
            "Endpoint.spec.strategy.rollback.maxP99LatencyMs",
            Support::refused(
                "SageMaker rolls back on CloudWatch alarms only, and this target does not create alarms from thresholds",
                "create a CloudWatch alarm on the endpoint and name it in `strategy.rollback.alarms`",
            ),
        )
        .with(
            "Endpoint.spec.strategy.rollback.alarms",
            Support::honoured_as("the rollout's AutoRollbackConfiguration"),
        )
        .with("Endpoint.spec.instances", Support::Honoured)
        .with(
            "Endpoint.spec.port",
            Support::not_applicable("a SageMaker endpoint is called through the SageMaker runtime API, not on a port"),
        )
        .with(
            "Endpoint.spec.capture.samplingPercent",
            Support::check(
                "honoured for whole percents (SageMaker's InitialSamplingPercentage)",
                |_, _, node| {
                    let p = number(node)?;
                    (p.fract() != 0.0).then(|| {
                        Refusal::new(
                            format!("SageMaker samples whole percents, not {p}"),
                            "use a whole number from 0 to 100",
                        )
                    })
                },
            ),
        )
        .with(
            "Endpoint.spec.capture.destination",
            Support::check("honoured for s3:// URIs", |_, _, node| {
                let d = node.as_str()?;
                (!d.starts_with("s3://") && !d.starts_with("${env:")).then(|| {
                    Refusal::new(
                        format!("SageMaker writes captured data to S3, not to `{d}`"),
                        "give an s3:// URI, or leave `destination` out for the target's bucket",
                    )
                })
            }),
        )
        .with(
            "Endpoint.spec.auth.token",
            Support::refused(
                "SageMaker endpoints are called with AWS credentials (SigV4), not a bearer token",
                "remove `auth` for this target and give callers `sagemaker:InvokeEndpoint` on the endpoint in IAM",
            ),
        )
        .with_all(
            "Endpoint.spec.serve",
            Support::refused(
                "SageMaker endpoints serve the registered model's container, not a serving command",
                "remove `serve` for this target, or serve the model on a local target",
            ),
        )
        .with("Endpoint.spec.compute.cpu", compute_by_instance_type())
        .with("Endpoint.spec.compute.memory", compute_by_instance_type())
        .with("Endpoint.spec.compute.gpu", compute_by_instance_type())
        .with(
            "Endpoint.spec.compute.overrides.sagemaker.instanceType",
            Support::Honoured,
        )
        .with(
            "Endpoint.spec.compute.overrides.sagemaker.instanceCount",
            Support::refused(
                "an endpoint's instance count is `instances`",
                "set `instances` and remove `instanceCount`",
            ),
        )
        .with(
            "Endpoint.spec.compute.overrides.sagemaker.volumeSizeGb",
            Support::refused(
                "this target does not set an endpoint's storage volume",
                "remove `volumeSizeGb` for endpoints",
            ),
        )
        .with(
            "Endpoint.spec.compute.overrides.sagemaker.spot",
            Support::refused(
                "SageMaker endpoints do not run on spot capacity",
                "remove `spot` for endpoints",
            ),
        );
    r
}
