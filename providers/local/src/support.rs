//! What the local target honours of the spec, field by field (see `mlctl_core::support`).
//! Every component of the local stack declares from this one table.

use mlctl_core::support::{FieldRules, Refusal, Support, number, source_schemes};
use mlctl_spec::{Kind, Resource};
use std::sync::OnceLock;

/// The cores this machine gives mlctl.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn no_gpu() -> Support {
    Support::check("honoured as 0; refused above 0", |_, _, node| {
        (number(node).unwrap_or(0.0) > 0.0).then(|| {
            Refusal::new(
                "the local target runs without GPUs",
                "remove `compute.gpu` for local targets, or train on a sagemaker target",
            )
        })
    })
}

fn cpu_limit() -> Support {
    Support::check(
        "honoured: a script-mode job or endpoint server is pinned to ceil(cpu) of this machine's CPUs, with its thread pools sized to match (instances and parallel trials each take the next ceil(cpu) CPUs, wrapping round when together they ask for more than the machine has); a built-in trains on ceil(cpu) threads; refused above this machine's cores",
        |_, _, node| {
            let cpu = number(node)?;
            let have = cores();
            (cpu.ceil() as usize > have).then(|| {
                Refusal::new(
                    format!("compute.cpu asks for {cpu} cores; this machine has {have}"),
                    format!("ask for at most {have}, or run on a cloud target"),
                )
            })
        },
    )
}

fn is_script_mode(r: &Resource) -> bool {
    r.as_training_job().is_some_and(|t| t.command.is_some())
}

/// The tuning strategies the local trainer runs: the trainer's capabilities and the
/// `tuning.strategy` rule both read this, so they cannot disagree.
pub(crate) const TUNING_STRATEGIES: &[mlctl_spec::TuningStrategy] = &[
    mlctl_spec::TuningStrategy::Grid,
    mlctl_spec::TuningStrategy::Random,
    mlctl_spec::TuningStrategy::Halving,
];

/// The local target's declarations for every kind.
pub fn field_rules() -> FieldRules {
    static RULES: OnceLock<FieldRules> = OnceLock::new();
    RULES.get_or_init(build).clone()
}

fn build() -> FieldRules {
    let mut r = FieldRules::new();
    for kind in Kind::ALL {
        r = r.with(
            &format!("{kind}.metadata.labels"),
            Support::honoured_as(
                "tags on the resource's records in the target's state; a change updates them in place (nothing retrains or restarts)",
            ),
        );
    }
    r = r
        // Datasets
        .with("Dataset.spec.source", source_support())
        .with("Dataset.spec.format", Support::Honoured)
        .with("Dataset.spec.digest", Support::Honoured)
        .with("Dataset.spec.target", Support::Honoured)
        .with_all("Dataset.spec.schema", Support::Honoured)
        .with(
            "Dataset.spec.schema.columns[].role",
            Support::honoured_as(
                "built-in algorithms train on `feature` columns only (never ids, ignored columns or columns the schema does not list), with the `weight` column as sample weights (linear and logistic regression; the others are refused at validation); the model's signature lists the columns it ignores. Script mode gets every column, as the data has them",
            ),
        )
        .with(
            "Dataset.spec.schema.columns[].categories",
            Support::honoured_as(
                "checked in the data; a built-in one-hot encodes the column over exactly these values (int columns too), and the endpoint refuses any other value",
            ),
        )
        .with_all("Dataset.spec.split", Support::Honoured)
        .with_all("Dataset.spec.limits", Support::Honoured)
        .with(
            "Dataset.spec.transform.code",
            Support::honoured_as(
                "part of the fingerprint; a path or symbolic link leading out of the project is refused at apply",
            ),
        )
        .with(
            "Dataset.spec.transform.output",
            Support::honoured_as(
                "relative to the transform's output directory; an absolute path, `..` or a link out of it is refused at apply",
            ),
        )
        .with(
            "Dataset.spec.transform.image",
            Support::not_applicable(
                "the local target runs the command on this machine, with the tools on its PATH; `image` is for cloud targets",
            ),
        )
        .with_all("Dataset.spec.transform", Support::Honoured)
        // Training
        .with("TrainingJob.spec.algorithm", Support::Honoured)
        .with("TrainingJob.spec.command", Support::Honoured)
        .with(
            "TrainingJob.spec.code",
            Support::honoured_as(
                "copied into the run directory without `.git`, `.mlctl` and `.env` files; a path or symbolic link leading out of the project is refused at apply",
            ),
        )
        .with(
            "TrainingJob.spec.image",
            Support::not_applicable(
                "the local target runs the command on this machine, with the tools on its PATH; `image` is for cloud targets",
            ),
        )
        .with("TrainingJob.spec.hyperparameters", Support::Honoured)
        .with_all("TrainingJob.spec.metrics", Support::Honoured)
        .with(
            "TrainingJob.spec.tuning.strategy",
            Support::one_of(
                TUNING_STRATEGIES.iter().map(|s| s.as_str()).collect(),
                "tuning strategy",
                "use `random` or `halving` on the local target; Bayesian optimisation runs on sagemaker targets".into(),
            ),
        )
        .with_all("TrainingJob.spec.tuning", Support::Honoured)
        .with("TrainingJob.spec.compute.cpu", cpu_limit())
        .with(
            "TrainingJob.spec.compute.memory",
            Support::check(
                "honoured for script mode (the job's processes get a data-size limit, RLIMIT_DATA); refused for built-ins, which train inside mlctl",
                |_, r, _| {
                    (!is_script_mode(r)).then(|| {
                        Refusal::new(
                            "a built-in trains inside the mlctl process, where a memory limit would stop mlctl itself",
                            "remove `compute.memory` for local targets, or train in script mode (`command` + `code`)",
                        )
                    })
                },
            ),
        )
        .with("TrainingJob.spec.compute.gpu", no_gpu())
        .with(
            "TrainingJob.spec.compute.overrides.local.threads",
            Support::honoured_as("worker threads of a built-in; OMP_NUM_THREADS and friends for a script"),
        )
        // Registry
        .with(
            "Model.spec.description",
            Support::honoured_as("the version's description in the registry; a change updates it in place"),
        )
        // Endpoints
        .with_all("Endpoint.spec.strategy", Support::Honoured)
        .with(
            "Endpoint.spec.strategy.minRequests",
            Support::honoured_as("counted from the servers' /metrics (every process, added up) since the bake started; the bake is recorded in the endpoint's state, so an apply killed mid-bake is resumed by the next one"),
        )
        .with(
            "Endpoint.spec.strategy.rollback.alarms",
            Support::refused(
                "CloudWatch alarms exist on SageMaker only",
                "use `maxErrorRate` and `maxP99LatencyMs`, which the local target judges itself",
            ),
        )
        .with(
            "Endpoint.spec.instances",
            Support::check(
                "honoured: that many `mlctl serve` processes share the endpoint's port (the kernel spreads connections over them); refused above 64",
                |_, _, node| {
                    let n = number(node)?;
                    (n > crate::deployer::MAX_INSTANCES as f64).then(|| {
                        Refusal::new(
                            format!(
                                "instances: {n} server processes on one machine, each loading the model; the local target runs at most {}",
                                crate::deployer::MAX_INSTANCES
                            ),
                            "ask for fewer (each process uses every core it may), or scale on a cloud target",
                        )
                    })
                },
            ),
        )
        .with("Endpoint.spec.port", Support::Honoured)
        .with("Endpoint.spec.capture.samplingPercent", Support::Honoured)
        .with(
            "Endpoint.spec.capture.destination",
            Support::check(
                "honoured for directories (relative to the project, or absolute), where monitors read it too; URLs refused",
                |_, _, node| {
                    let d = node.as_str()?;
                    d.contains("://").then(|| {
                        Refusal::new(
                            format!("the local target writes captured data to a directory on this machine, not to `{d}`"),
                            "give a directory (relative to the project, or absolute), or leave `destination` out for the endpoint's own directory in the target's state",
                        )
                    })
                },
            ),
        )
        .with("Endpoint.spec.auth.token", Support::Honoured)
        .with_all(
            "Endpoint.spec.server",
            Support::honoured_as(
                "by every server process: a connection whose headers are late, or that idles too long, is closed; a late body is answered 408; past maxConnections a connection waits to be accepted",
            ),
        )
        .with(
            "Endpoint.spec.enforce",
            Support::check(
                "honoured for built-in models: `strict` answers 400 naming the row, column and value; `warn` predicts with the value as missing, sets the X-Mlctl-Signature-Warnings header and counts it in the endpoint's status; `off` predicts without counting. Refused (but `off`) for models served by your own code",
                |spec, r, node| {
                    (node.as_str() != Some("off") && mlctl_core::support::serves_user_code(spec, r)).then(|| {
                        Refusal::new(
                            "this endpoint serves the model with your own code (script mode or `serve`), which reads requests itself, so mlctl cannot check them against a signature",
                            "set `enforce: off` and check inputs in your serving code, or serve a built-in model",
                        )
                    })
                },
            ),
        )
        .with(
            "Endpoint.spec.serve.code",
            Support::honoured_as(
                "the serving command runs in it, in place; a path or symbolic link leading out of the project is refused at apply",
            ),
        )
        .with_all("Endpoint.spec.serve", Support::Honoured)
        .with("Endpoint.spec.compute.cpu", cpu_limit())
        .with(
            "Endpoint.spec.compute.memory",
            Support::honoured_as("each server process gets a data-size limit (RLIMIT_DATA)"),
        )
        .with("Endpoint.spec.compute.gpu", no_gpu())
        .with(
            "Endpoint.spec.compute.overrides.local.threads",
            Support::honoured_as("worker threads of each server process"),
        );
    r
}

/// Project files and `https://` URLs, and plain `http://` only to this machine (a data
/// server on 127.0.0.1, `localhost` or `[::1]`), where nothing crosses a network.
fn source_support() -> Support {
    let schemes = source_schemes(
        "local",
        &["", "https"],
        "copy the data into the project (pin a download with `digest`), or apply this dataset on a target that reads it",
    );
    let Support::Check { check, .. } = schemes else {
        return schemes;
    };
    Support::check(
        "honoured for project files, https:// URLs and http:// URLs to this machine (127.0.0.1, localhost, [::1]); a URL's version (ETag, else Last-Modified) is part of the fingerprint, and one that sends neither needs `digest:`; other sources refused",
        move |spec, r, node| {
            let src = node.as_str()?;
            if is_loopback_http(src) {
                return None;
            }
            check(spec, r, node)
        },
    )
}

/// Whether `src` is a plain `http://` URL to this machine.
pub(crate) fn is_loopback_http(src: &str) -> bool {
    let Some(rest) = src.strip_prefix("http://") else {
        return false;
    };
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    matches!(host, "127.0.0.1" | "localhost" | "::1")
}
