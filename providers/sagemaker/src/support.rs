//! What a SageMaker target honours of the spec, field by field (see `mlctl_core::support`).
//! Every component declares from this one table; what SageMaker cannot do is refused here, at
//! plan time, instead of failing (or being dropped) in the middle of an apply.

use crate::builtins::Family;
use mlctl_core::support::{FieldRules, Refusal, Support, number, source_schemes};
use mlctl_spec::{
    Algorithm, Kind, Node, Resource, Spec, StrategyType, TrainingJobSpec, TuningStrategy,
};

/// Longest wait SageMaker allows between the steps of a rollout (`WaitIntervalInSeconds`).
pub(crate) const MAX_BAKE_SECS: u64 = 3600;

/// `compute.cpu`, `memory` and `gpu` (`field`) of a training job or an endpoint: they choose
/// the instance type, or must be provided by the one named (see `instances`).
fn compute_by_instance_type(use_: crate::instances::Use, field: &'static str) -> Support {
    Support::check(
        "honoured: without `compute.overrides.sagemaker.instanceType`, the job or endpoint runs on the smallest ml.* instance type in mlctl's table (c5, m5, r5; g4dn and p3 only when gpu > 0) with at least the cpu, memory and gpu asked: fewest vCPUs, then least memory; refused when none has them. With a named type: honoured when it provides them, refused when the table lists it with less, and taken as provided for a type the table does not list",
        move |_, r, _| {
            let compute = r
                .as_training_job()
                .and_then(|t| t.compute.as_ref())
                .or_else(|| r.as_endpoint().and_then(|e| e.compute.as_ref()))?;
            // Each refusal once: at the first field written when nothing fits, at each field
            // the named instance lacks.
            let u = crate::instances::refusal(Some(compute), use_)?;
            u.fields
                .contains(&field)
                .then(|| Refusal::new(u.why, u.instead))
        },
    )
}

/// `compute.overrides.sagemaker.instanceType`: honoured, unless mlctl's table knows SageMaker
/// does not offer the type for this use (`ml.c5.large` for training).
fn named_instance_type(use_: crate::instances::Use) -> Support {
    Support::check(
        "honoured: the job or endpoint runs on this instance type; refused when SageMaker does not offer it for training (or for endpoints)",
        move |_, r, _| {
            let compute = r
                .as_training_job()
                .and_then(|t| t.compute.as_ref())
                .or_else(|| r.as_endpoint().and_then(|e| e.compute.as_ref()));
            let (why, instead) = crate::instances::not_offered(compute, use_)?;
            Some(Refusal::new(why, instead))
        },
    )
}

/// A TrainingJob's built-in algorithm, when SageMaker runs it as one of its own.
fn builtin(t: &TrainingJobSpec) -> Option<(Algorithm, Family)> {
    let a = t.algorithm?;
    Some((a, Family::of(a)?))
}

/// "a, b and c" (at most `max`, then "...").
fn listed(items: &[String], max: usize) -> String {
    let mut shown: Vec<String> = items.iter().take(max).map(|i| format!("`{i}`")).collect();
    if items.len() > max {
        shown.push("...".into());
    }
    shown.join(", ")
}

fn hyperparameter_refusal(r: &Resource) -> Option<Refusal> {
    let t = r.as_training_job()?;
    let (a, family) = builtin(t)?;
    let bad = crate::builtins::hyperparameter_refusals(a, &t.hyperparameters);
    if bad.is_empty() {
        return None;
    }
    let mut instead: Vec<String> = Vec::new();
    for (_, i) in &bad {
        if !instead.contains(i) {
            instead.push(i.clone());
        }
    }
    Some(Refusal::new(
        format!(
            "SageMaker's {} cannot take {}: {}",
            family.name(),
            if bad.len() == 1 {
                "this hyperparameter"
            } else {
                "these hyperparameters"
            },
            bad.iter()
                .map(|(w, _)| w.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        ),
        instead.join("; "),
    ))
}

fn grid_larger_than_max_trials(r: &Resource) -> Option<Refusal> {
    let tuning = r.as_training_job()?.tuning.as_ref()?;
    if tuning.strategy != TuningStrategy::Grid {
        return None;
    }
    let max = tuning.max_trials?;
    // A parameter that cannot be expanded is refused at that parameter.
    let size = crate::tuning::grid_size(tuning).ok()?;
    (size > max as usize).then(|| {
        Refusal::new(
            format!(
                "SageMaker's grid search runs every combination: {size} trials here, more than `maxTrials: {max}`"
            ),
            format!(
                "raise `maxTrials` to {size}, search fewer values, or use `strategy: random` or `bayesian` to sample {max} of them"
            ),
        )
    })
}

fn objective_refusal(spec: &Spec, r: &Resource) -> Option<Refusal> {
    let t = r.as_training_job()?;
    let objective = &t.tuning.as_ref()?.objective;
    let metric = objective.metric.as_str();
    let Some((a, family)) = builtin(t) else {
        if t.algorithm.is_some() {
            return None; // refused at `algorithm`
        }
        let names: Vec<String> = t.metrics.iter().map(|m| m.name.clone()).collect();
        return (!names.iter().any(|n| n == metric)).then(|| {
            Refusal::new(
                format!(
                    "in script mode SageMaker reads the objective from the job's log with one of its `metrics`, and `{metric}` is not one of them{}",
                    if names.is_empty() { String::new() } else { format!(" ({})", listed(&names, 8)) }
                ),
                format!("add `{{name: {metric}, regex: ...}}` to the TrainingJob's `metrics`, or optimise one it has"),
            )
        });
    };
    let shapes = crate::builtins::plan_shapes(spec, r, a);
    if shapes.iter().any(|s| {
        crate::builtins::objective(a, *s, metric, objective.goal, &t.hyperparameters).is_some()
    }) {
        return None;
    }
    let mut can: Vec<String> = Vec::new();
    for s in &shapes {
        for o in crate::builtins::objectives(a, *s, &t.hyperparameters) {
            if !can.contains(&o) {
                can.push(o);
            }
        }
    }
    Some(Refusal::new(
        format!(
            "SageMaker's {} cannot optimise `{metric}` for this job; it optimises {}",
            family.name(),
            listed(&can, 12)
        ),
        "optimise one of those",
    ))
}

/// The searched parameter a node of `r` belongs to: its name, the key of the node in it
/// (`min`, `step`, ...) and whether it is the parameter's first field (where refusals about
/// the whole parameter point, so each is reported once).
fn search_param<'a>(r: &'a Resource, node: &Node) -> Option<(&'a str, &'a str, bool)> {
    let space = r.node.get("spec")?.get("tuning")?.get("searchSpace")?;
    for (name, param) in space.as_map()? {
        for (i, (k, v)) in param.as_map().unwrap_or_default().iter().enumerate() {
            if std::ptr::eq(v, node) {
                return Some((name.as_str()?, k.as_str()?, i == 0));
            }
        }
    }
    None
}

fn search_param_refusal(r: &Resource, node: &Node) -> Option<Refusal> {
    let t = r.as_training_job()?;
    let tuning = t.tuning.as_ref()?;
    let (name, key, first) = search_param(r, node)?;
    let p = tuning.search_space.get(name)?;
    if first
        && let Some((a, _)) = builtin(t)
        && let Err((why, instead)) = crate::builtins::resolve(a, name)
    {
        return Some(Refusal::new(
            format!("searched hyperparameter {why}"),
            instead,
        ));
    }
    let grid = tuning.strategy == TuningStrategy::Grid;
    let values = match crate::tuning::expanded(name, p, grid) {
        Ok(v) => v,
        Err(e) => {
            return first.then(|| {
                Refusal::new(
                    format!("`{name}` cannot be searched: {e}"),
                    "give `step` or `values` (grid search takes lists only), or fix the range",
                )
            });
        }
    }?;
    let n = values.len();
    let at = if p.values.is_some() {
        key == "values"
    } else if p.step.is_some() {
        key == "step"
    } else {
        first
    };
    (n > crate::tuning::MAX_VALUES && at).then(|| {
        let how = if p.values.is_some() {
            "lists"
        } else {
            "searches a stepped range as the list of its values, and"
        };
        Refusal::new(
            format!(
                "SageMaker {how} takes at most {} values per parameter; `{name}` has {n}",
                crate::tuning::MAX_VALUES
            ),
            if p.values.is_some() {
                "list at most 30 values".to_string()
            } else if grid {
                "use a larger `step` (at most 30 values)".to_string()
            } else {
                "use a larger `step` (at most 30 values), or remove `step` to search the range continuously".to_string()
            },
        )
    })
}

/// `Model.spec.mlflow` (overriding the engine, which imports on every other target).
fn imported_model() -> Support {
    Support::refused(
        "a SageMaker endpoint serves a version through the containers its training job made (an algorithm's behind mlctl's preprocessing, or the script's), and an imported MLflow model has none",
        "import it on a local or azureml target, or train it here with a TrainingJob (`from:`)",
    )
}

fn gate_refusal(spec: &Spec, r: &Resource, node: &Node) -> Option<Refusal> {
    let metric = node.as_str()?;
    let from = r.as_model()?.from.as_deref()?;
    let job = spec.find(Kind::TrainingJob, from)?;
    let t = job.as_training_job()?;
    // A tuned job's chosen candidate is trained again with the train and test rows
    // (crate::refit), so its gates judge rows held out from the selection.
    let (reports, how) = match builtin(t) {
        Some((a, family)) => {
            let mut all: Vec<String> = Vec::new();
            for s in crate::builtins::plan_shapes(spec, job, a) {
                for m in crate::builtins::gate_metrics(a, s, &t.hyperparameters) {
                    if !all.contains(&m) {
                        all.push(m);
                    }
                }
            }
            (
                all,
                format!("trains with SageMaker's {}, which reports", family.name()),
            )
        }
        None if t.algorithm.is_some() => return None,
        None => {
            let raw: Vec<(String, f64)> = t.metrics.iter().map(|m| (m.name.clone(), 0.0)).collect();
            (
                crate::trainer::normalize_metrics(&raw, crate::trainer::Reporter::Script)
                    .into_keys()
                    .collect(),
                "runs in script mode and reports only its `metrics`:".to_string(),
            )
        }
    };
    if reports.iter().any(|m| m == metric) {
        return None;
    }
    // Plain names first: they are what people gate on.
    let mut shown = reports.clone();
    shown.sort_by_key(|m| (m.contains(':'), m.clone()));
    Some(Refusal::new(
        format!(
            "TrainingJob `{from}` {how} {}, not `{metric}`, so this gate could never pass",
            if shown.is_empty() {
                "nothing".to_string()
            } else {
                listed(&shown, 12)
            }
        ),
        if builtin(t).is_some() {
            format!(
                "gate on one of those, or train in script mode and report `{metric}` in `metrics`"
            )
        } else {
            format!("add `{metric}` to the TrainingJob's `metrics`, or gate on one it reports")
        },
    ))
}

/// What breaks SageMaker's tag rules in `labels` (keys and values; the count is apart).
fn tag_problems<'a>(labels: impl IntoIterator<Item = (&'a String, &'a String)>) -> Vec<String> {
    let allowed = |c: char| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c);
    let mut problems = Vec::new();
    for (k, v) in labels {
        if k.is_empty() || k.chars().count() > 128 {
            problems.push(format!(
                "key `{k}` has {} characters (1 to 128)",
                k.chars().count()
            ));
        }
        if v.chars().count() > 256 {
            problems.push(format!(
                "the value of `{k}` has {} characters (at most 256)",
                v.chars().count()
            ));
        }
        if let Some(c) = k.chars().find(|c| !allowed(*c)) {
            problems.push(format!("key `{k}` has `{c}`"));
        }
        if let Some(c) = v.chars().find(|c| !allowed(*c)) {
            problems.push(format!("the value of `{k}` has `{c}`"));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            problems.push(format!(
                "key `{k}` starts with `aws:`, which AWS keeps for itself"
            ));
        }
    }
    problems
}

/// The refusal for `problems` with labels, if any; `own` is how many tags of its own mlctl
/// adds where they go.
fn tag_refusal(problems: Vec<String>, own: usize) -> Option<Refusal> {
    (!problems.is_empty()).then(|| {
        Refusal::new(
            format!("these labels are not valid AWS tags: {}", problems.join("; ")),
            format!(
                "use keys of up to 128 and values of up to 256 letters, digits, spaces and _ . : / = + - @, no `aws:` prefix, and at most {} labels (the project's included)",
                crate::aws::MAX_TAGS - own.max(6)
            ),
        )
    })
}

/// The project's labels, which go on everything every resource creates: checked once, at the
/// project, whether or not resources have labels of their own.
fn project_label_refusal(spec: &Spec) -> Option<Refusal> {
    let labels = &spec.project.labels;
    let own = Kind::ALL
        .into_iter()
        .map(crate::aws::own_tags)
        .max()
        .unwrap_or(0);
    let mut problems = tag_problems(labels);
    if labels.len() + own > crate::aws::MAX_TAGS {
        problems.push(format!(
            "{} labels and mlctl's {own} tags make {} tags, and AWS allows {} per resource",
            labels.len(),
            labels.len() + own,
            crate::aws::MAX_TAGS
        ));
    }
    tag_refusal(problems, own)
}

/// A resource's own labels (those the project's are reported at the project), and the count
/// of the tags it gets with the project's.
fn label_refusal(spec: &Spec, r: &Resource) -> Option<Refusal> {
    let own_labels = r
        .metadata
        .labels
        .iter()
        .filter(|(k, v)| spec.project.labels.get(*k) != Some(*v));
    let mut problems = tag_problems(own_labels);
    let mut labels = spec.project.labels.clone();
    labels.extend(r.metadata.labels.clone());
    let own = crate::aws::own_tags(r.id.kind);
    if own > 0 && labels.len() + own > crate::aws::MAX_TAGS {
        problems.push(format!(
            "{} labels and mlctl's {own} tags make {} tags, and AWS allows {} per resource",
            labels.len(),
            labels.len() + own,
            crate::aws::MAX_TAGS
        ));
    }
    tag_refusal(problems, own)
}

/// A SageMaker target's declarations for every kind (the same for every SageMaker target:
/// what depends on the target, such as `emulator: moto`, is in the components' notes). Built
/// once per process.
pub fn field_rules() -> FieldRules {
    static RULES: std::sync::OnceLock<FieldRules> = std::sync::OnceLock::new();
    RULES.get_or_init(build).clone()
}

fn build() -> FieldRules {
    let mut r = FieldRules::new();
    for kind in Kind::ALL {
        let note = if kind == Kind::Dataset {
            "recorded with the dataset version on S3 (S3 objects take only 10 tags), and updated there in place; SageMaker's tag rules apply, so the same labels work on every kind"
        } else {
            "AWS tags on everything the resource creates (jobs, model package groups and packages, models, endpoint configs, endpoints, alarms, schedules) and in its records on S3; a change is applied in place with AddTags/DeleteTags on the job, the model package and its group, the endpoint and the monitoring schedule (an endpoint's configs, models and alarms keep theirs until the next rollout), and nothing retrains or redeploys; refused when they break SageMaker's tag rules (keys up to 128 characters, values up to 256, letters, digits, spaces and _ . : / = + - @, no `aws:` prefix, 50 tags with mlctl's own)"
        };
        r = r.with(
            &format!("{kind}.metadata.labels"),
            Support::check(note, |spec, r, _| label_refusal(spec, r)),
        );
    }
    r = r.with_project("metadata.labels", project_label_refusal);
    r = r
        .with(
            "Dataset.spec.source",
            Support::check(
                "honoured for project files and s3:// objects (read and checked alike, up to 2 GiB: MLCTL_SM_MAX_S3_SOURCE_MB); other sources refused",
                {
                    let schemes = source_schemes(
                        "sagemaker",
                        &["", "s3"],
                        "copy the data into the project or to s3://",
                    );
                    move |spec, r, node| schemes.refuse(spec, r, node)
                },
            ),
        )
        // An s3:// object is read and checked like a project file (up to
        // MLCTL_SM_MAX_S3_SOURCE_MB, 2 GiB by default).
        .with("Dataset.spec.format", Support::Honoured)
        .with(
            "Dataset.spec.digest",
            Support::honoured_as("the blake3 of the data, a project file or an s3:// object alike"),
        )
        .with("Dataset.spec.target", Support::Honoured)
        .with_all("Dataset.spec.schema", Support::Honoured)
        .with(
            "Dataset.spec.schema.columns[].role",
            Support::check(
                "honoured for `feature`, `id` and `ignore`: SageMaker's built-in algorithms get the `feature` columns only (script mode gets every column); `weight` refused",
                |_, _, node| {
                    (node.as_str() == Some("weight")).then(|| {
                        Refusal::new(
                            "mlctl does not pass sample weights to SageMaker's built-in algorithms",
                            "make the column `role: ignore` for this target, or train on a local target (linear and logistic regression and gradient boosting take weights)",
                        )
                    })
                },
            ),
        )
        .with(
            "Dataset.spec.schema.columns[].categories",
            Support::honoured_as(
                "honoured: checked in the data; for SageMaker's built-in algorithms mlctl's preprocessing one-hot encodes the column over exactly these categories (int columns too) in the training channels and in the endpoint's preprocessing container; script mode gets the values as they are",
            ),
        )
        .with_all("Dataset.spec.split", Support::Honoured)
        .with_all("Dataset.spec.limits", Support::Honoured)
        .with(
            "Dataset.spec.transform.command",
            Support::honoured_as(
                "run with `sh` as a SageMaker Processing job (one ml.m5.large, 30 GB volume, at most 24 h; the job's name comes from the fingerprint, so a re-run finds it), in a directory holding `transform.code` at its project path: the command sees no other project file. Its variables are the local target's (MLCTL_INPUT_<NAME>, MLCTL_OUTPUT, MLCTL_OUTPUT_DIR, MLCTL_DATASET); a failed job's FailureReason is the error. With `emulator: moto`, which runs no Processing job, the command runs on this machine instead, laid out as the container",
            ),
        )
        .with(
            "Dataset.spec.transform.inputs",
            Support::honoured_as(
                "each input Dataset is a channel: /opt/ml/processing/input/<name>/<name>.csv (or .parquet), named by MLCTL_INPUT_<NAME>",
            ),
        )
        .with(
            "Dataset.spec.transform.code",
            Support::honoured_as(
                "packed at its project path (without `.git`, `.mlctl`, `.env` files and caches; a symbolic link out of it is refused) into a reproducible archive stored content-addressed (`objects/<blake3>`) and unpacked where the command runs",
            ),
        )
        .with(
            "Dataset.spec.transform.output",
            Support::honoured_as(
                "relative to /opt/ml/processing/output ($MLCTL_OUTPUT_DIR), uploaded when the job ends, then read back and registered like any dataset (digest, schema, split, limits), content-addressed; an absolute path or `..` is refused at apply",
            ),
        )
        .with(
            "Dataset.spec.transform.image",
            Support::honoured_as(
                "the Processing job's container; without it, SageMaker's scikit-learn image of the target's region (sagemaker-scikit-learn:1.2-1-cpu-py3, which has python3 with pandas and scikit-learn); it must have `sh` and `tar`. With `emulator: moto` the command runs on this machine, with its tools, whatever the image",
            ),
        )
        .with_all("Dataset.spec.transform", Support::Honoured)
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
        .with(
            "TrainingJob.spec.hyperparameters",
            Support::check(
                "honoured: script mode gets them as written; a built-in's mlctl names become SageMaker's (C -> wd, n_estimators -> num_round, fit_intercept -> use_bias, ...) and SageMaker's own names pass through; a name SageMaker's algorithm has no equivalent for is refused",
                |_, r, _| hyperparameter_refusal(r),
            ),
        )
        .with_all("TrainingJob.spec.metrics", Support::honoured_as("SageMaker MetricDefinitions"))
        .with(
            "TrainingJob.spec.tuning.strategy",
            Support::check(
                "a HyperParameterTuningJob: grid, random and bayesian as named, halving as Hyperband; a grid larger than `maxTrials` is refused (SageMaker's grid search runs every combination)",
                |_, r, _| grid_larger_than_max_trials(r),
            ),
        )
        .with(
            "TrainingJob.spec.tuning.objective.metric",
            Support::check(
                "honoured: in script mode one of the job's `metrics`; for a built-in, a name of the metric vocabulary (docs/metrics.md) that SageMaker's algorithm optimises for this job, mapped to its own metric (roc_auc -> validation:auc for XGBoost, validation:roc_auc_score for linear-learner; accuracy -> validation:error, goal flipped; log_loss, rmse, mae, f1_macro, ...); refused otherwise, with the list of what it can optimise",
                |spec, r, _| objective_refusal(spec, r),
            ),
        )
        .with_all(
            "TrainingJob.spec.tuning.searchSpace",
            Support::check(
                "honoured: a stepped range (`step`, and every range in grid search) is searched as the list of its values, at most 30; a built-in's mlctl names become SageMaker's; refused otherwise",
                |_, r, node| search_param_refusal(r, node),
            ),
        )
        .with_all("TrainingJob.spec.tuning", Support::Honoured)
        .with(
            "TrainingJob.spec.compute.cpu",
            compute_by_instance_type(crate::instances::Use::Training, "cpu"),
        )
        .with(
            "TrainingJob.spec.compute.memory",
            compute_by_instance_type(crate::instances::Use::Training, "memory"),
        )
        .with(
            "TrainingJob.spec.compute.gpu",
            compute_by_instance_type(crate::instances::Use::Training, "gpu"),
        )
        .with(
            "TrainingJob.spec.compute.overrides.sagemaker.instanceType",
            named_instance_type(crate::instances::Use::Training),
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
            "Model.spec.gates[].metric",
            Support::check(
                "honoured for metrics the TrainingJob reports on SageMaker: for a built-in, the vocabulary's names (docs/metrics.md) its algorithm's metrics give (accuracy, roc_auc, log_loss, f1_macro, rmse, mae, inertia, ...; SageMaker's own names are kept beside them in the registry); for a script, its `metrics`; for a tuned job, those of its chosen candidate's final job, trained again with the train rows and scored on the test rows; refused otherwise, with the list of what it reports",
                gate_refusal,
            ),
        )
        .with("Model.spec.mlflow.path", imported_model())
        .with("Model.spec.mlflow.uri", imported_model())
        .with("Model.spec.mlflow.serve", imported_model())
        .with(
            "Model.spec.description",
            Support::honoured_as(
                "the model package's description; SageMaker cannot change it afterwards, so a changed description is kept in place in the package's metadata as `mlctl:description`",
            ),
        )
        .with(
            "Endpoint.spec.strategy.type",
            Support::check(
                "honoured; a canary only with `minRequests: 0` (SageMaker shifts the rest of the traffic when the bake ends, whatever traffic the canary had)",
                |_, r, _| {
                    let s = r.as_endpoint()?.strategy.as_ref()?;
                    (s.ty == StrategyType::Canary && s.min_requests.is_none()).then(|| {
                        Refusal::new(
                            format!(
                                "a canary is promoted only after it served `minRequests` requests (default {}); SageMaker shifts the rest of the traffic when the bake ends, whatever traffic the canary had, and mlctl cannot hold that shift",
                                mlctl_spec::Strategy::DEFAULT_MIN_REQUESTS
                            ),
                            "write `minRequests: 0` under `strategy` to accept a promotion without a traffic requirement (the `rollback` alarms still judge the requests that come), or use `type: blue-green`",
                        )
                    })
                },
            ),
        )
        .with(
            "Endpoint.spec.strategy.minRequests",
            Support::check(
                "honoured for 0 only (SageMaker promotes a canary when its bake ends, whatever traffic it had); refused above 0",
                |_, _, node| {
                    let n = number(node)?;
                    (n > 0.0).then(|| {
                        Refusal::new(
                            format!("SageMaker cannot hold a canary until it served {n} requests: it shifts the rest of the traffic when the bake ends"),
                            "write `minRequests: 0` (the `rollback` alarms still judge the requests that come), or send the canary its traffic within `bakeTime`",
                        )
                    })
                },
            ),
        )
        .with(
            "Endpoint.spec.strategy.maxBakeTime",
            Support::refused(
                "a SageMaker canary bakes exactly `bakeTime`; there is no waiting for traffic to extend",
                "remove `maxBakeTime`; with `minRequests: 0` there is nothing to wait for",
            ),
        )
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
            Support::honoured_as("a CloudWatch alarm mlctl creates on the new variant (`<endpoint>-<variant>-mlctl-error-rate`: metric math Invocation5XXErrors / Invocations over 1 min), named in the rollout's AutoRollbackConfiguration, deleted with the endpoint or the threshold"),
        )
        .with(
            "Endpoint.spec.strategy.rollback.maxP99LatencyMs",
            Support::honoured_as("a CloudWatch alarm mlctl creates on the new variant (`<endpoint>-<variant>-mlctl-p99-latency`: ModelLatency p99 over 1 min, in microseconds), named in the rollout's AutoRollbackConfiguration, deleted with the endpoint or the threshold"),
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
        .with(
            "Endpoint.spec.enforce",
            Support::check(
                "honoured for built-in models, by mlctl's preprocessing container in front of the algorithm (an inference pipeline): `strict` answers 400 with mlctl's error body naming the row, column and value (SageMaker returns it as a ModelError carrying that status and body); `off` takes such a value as missing. `warn` refused: the answer comes from the algorithm container, so no warning header reaches the client. Refused (but `off`) for script-mode models, whose container reads requests itself",
                |spec, r, node| {
                    let v = node.as_str()?;
                    if v != "off" && mlctl_core::support::serves_user_code(spec, r) {
                        return Some(Refusal::new(
                            "this endpoint serves a script-mode model, whose container reads requests itself, so mlctl cannot check them against a signature",
                            "set `enforce: off` and check inputs in your inference code, or serve a built-in model",
                        ));
                    }
                    (v == "warn").then(|| {
                        Refusal::new(
                            "signature enforcement `warn` is not available here: SageMaker answers with the algorithm container's response, so the preprocessing container's warning header never reaches the client",
                            "use `enforce: strict` (a 400 naming the value) or `off` (the value taken as missing) for this target",
                        )
                    })
                },
            ),
        )
        .with_all(
            "Endpoint.spec.server",
            Support::refused(
                "SageMaker endpoints sit behind AWS's own front end, whose connection timeouts and limits are not set per endpoint",
                "remove `server` for this target, and bound calls in the client (the SDK's read timeout); serve on a local target to set them",
            ),
        )
        .with_all(
            "Endpoint.spec.serve",
            Support::refused(
                "SageMaker endpoints serve the registered model's container, not a serving command",
                "remove `serve` for this target, or serve the model on a local target",
            ),
        )
        .with(
            "Endpoint.spec.compute.cpu",
            compute_by_instance_type(crate::instances::Use::Hosting, "cpu"),
        )
        .with(
            "Endpoint.spec.compute.memory",
            compute_by_instance_type(crate::instances::Use::Hosting, "memory"),
        )
        .with(
            "Endpoint.spec.compute.gpu",
            compute_by_instance_type(crate::instances::Use::Hosting, "gpu"),
        )
        .with(
            "Endpoint.spec.compute.overrides.sagemaker.instanceType",
            named_instance_type(crate::instances::Use::Hosting),
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
            Support::check(
                "the production variant's VolumeSizeInGB (1 to 512; instance types with EBS storage, not those with local NVMe such as ml.*d)",
                |_, _, node| {
                    let gb = number(node)?;
                    (!(1.0..=512.0).contains(&gb)).then(|| {
                        Refusal::new(
                            format!("SageMaker endpoint volumes are 1 to 512 GB, not {gb}"),
                            "give a size from 1 to 512, or remove `volumeSizeGb` for SageMaker's default",
                        )
                    })
                },
            ),
        )
        .with(
            "Endpoint.spec.compute.overrides.sagemaker.spot",
            Support::refused(
                "SageMaker endpoints do not run on spot capacity",
                "remove `spot` for endpoints",
            ),
        );
    // Monitors: drift and quality are judged by `mlctl monitor run` from the captured data
    // (the engine's rules); SLOs from the endpoint's CloudWatch metrics, since SageMaker's
    // capture records neither latency nor failed requests.
    for slo in mlctl_spec::quality::SLOS {
        r = r.with(
            &format!("Monitor.spec.slo.{}", slo.field),
            Support::honoured_as(
                "judged by `mlctl monitor run` on the endpoint's CloudWatch metrics over the window (every request, not the capture, which records neither latency nor failed requests): Invocations and Invocation5XXErrors for the error rate and throughput, ModelLatency p50 / p99 (the model's latency, without SageMaker's overhead) for the latencies",
            ),
        );
    }
    r
}

#[cfg(test)]
mod tests {
    //! Plan-time checks, data-driven: a spec in, the refusals (field and reason) out.

    use super::*;
    use mlctl_core::support::{TargetSupport, check};

    const PROJECT: &str = "\
apiVersion: mlctl/v1
kind: Project
metadata:
  name: p
spec:
  targets:
    sm:
      provider: sagemaker
      region: us-east-1
      roleArn: arn:aws:iam::123456789012:role/mlctl
      bucket: s3://bkt/p
";

    const DATASET: &str = "\
apiVersion: mlctl/v1
kind: Dataset
metadata:
  name: iris
spec:
  source: data/iris.csv
  target: species
  schema:
    columns:
      - {name: a, type: float}
      - {name: species, type: category, categories: [x, y, z]}
---
";

    /// The refusals of `manifests` (with the dataset above) on a SageMaker target, as
    /// `field: why (instead)`.
    fn refusals(manifests: &str) -> Vec<String> {
        refusals_in(PROJECT, manifests)
    }

    /// [`refusals`] with another `mlctl.yaml`.
    fn refusals_in(project: &str, manifests: &str) -> Vec<String> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("mlctl.yaml"), project).expect("write");
        std::fs::create_dir_all(dir.path().join("ml")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("data")).expect("mkdir");
        std::fs::write(dir.path().join("data/iris.csv"), "a,species\n1,x\n").expect("write");
        std::fs::write(
            dir.path().join("ml/all.yaml"),
            format!("{DATASET}{manifests}"),
        )
        .expect("write");
        let loaded = mlctl_spec::load(&mlctl_spec::DirFiles::new(dir.path()));
        let errors: Vec<String> = loaded
            .errors()
            .map(|d| format!("spec: {}", d.message))
            .collect();
        // What the spec itself refuses, the user sees first and on every target.
        let Some(spec) = loaded.spec else {
            return errors;
        };
        let ts = TargetSupport::new(Kind::ALL.map(|k| (k, "sagemaker".to_string(), field_rules())));
        check(&spec, &ts)
            .into_iter()
            .map(|r| format!("{}: {} ({})", r.field, r.refusal.why, r.refusal.instead))
            .collect()
    }

    fn job(spec: &str) -> String {
        format!(
            "apiVersion: mlctl/v1\nkind: TrainingJob\nmetadata:\n  name: t\nspec:\n  dataset: iris\n{spec}---\n"
        )
    }

    /// Each case: the manifests, and a fragment of each refusal expected (none: honoured).
    fn expect(manifests: &str, want: &[&[&str]]) {
        let got = refusals(manifests);
        assert_eq!(got.len(), want.len(), "{manifests}\n{got:#?}");
        for (g, w) in got.iter().zip(want) {
            for part in *w {
                assert!(g.contains(part), "`{part}` not in `{g}`");
            }
        }
    }

    #[test]
    fn compute_chooses_an_instance_type_or_is_refused() {
        expect(
            &job("  algorithm: logistic_regression\n  compute: {cpu: 4, memory: 16Gi}\n"),
            &[],
        );
        expect(
            &job("  algorithm: logistic_regression\n  compute: {cpu: 128, memory: 16Gi}\n"),
            &[&["compute.cpu:", "128 vCPUs", "instanceType"]],
        );
        expect(
            &job(
                "  algorithm: logistic_regression\n  compute:\n    cpu: 4\n    gpu: 1\n    overrides: {sagemaker: {instanceType: ml.m5.large}}\n",
            ),
            &[
                &["compute.cpu:", "4 vCPUs (it has 2)", "`ml.g4dn.xlarge`"],
                &["compute.gpu:", "1 GPU (it has 0)"],
            ],
        );
        expect(
            &job(
                "  algorithm: logistic_regression\n  compute:\n    cpu: 4\n    overrides: {sagemaker: {instanceType: ml.trn1.2xlarge}}\n",
            ),
            &[],
        );
        // A type SageMaker hosts on but does not train on.
        expect(
            &job(
                "  algorithm: logistic_regression\n  compute:\n    overrides: {sagemaker: {instanceType: ml.c5.large}}\n",
            ),
            &[&[
                "compute.overrides.sagemaker.instanceType:",
                "does not offer instance type `ml.c5.large` for training",
                "such as `ml.m5.large`",
            ]],
        );
    }

    #[test]
    fn builtin_hyperparameters_translate_or_are_refused_by_name() {
        expect(
            &job(
                "  algorithm: logistic_regression\n  hyperparameters: {C: 0.5, fit_intercept: false, max_iter: 100}\n",
            ),
            &[],
        );
        expect(
            &job(
                "  algorithm: gradient_boosting\n  hyperparameters: {n_estimators: 50, min_samples_split: 4}\n",
            ),
            &[&[
                "hyperparameters:",
                "XGBoost",
                "`min_samples_split`",
                "min_child_weight",
            ]],
        );
        expect(
            &job("  algorithm: kmeans\n  hyperparameters: {n_clusters: 3, epochz: 2}\n"),
            &[&["spec: unknown hyperparameter `epochz` for kmeans"]],
        );
    }

    #[test]
    fn tuning_steps_grids_and_objectives_are_checked_at_plan_time() {
        let tuned = |strategy: &str, extra: &str, space: &str| {
            job(&format!(
                "  algorithm: gradient_boosting\n  tuning:\n    strategy: {strategy}\n{extra}    objective: {{metric: accuracy, goal: maximize}}\n    searchSpace:\n{space}"
            ))
        };
        // A step gives a list of values: fine up to 30, refused above with the count.
        expect(
            &tuned(
                "random",
                "",
                "      learning_rate: {min: 0.1, max: 1.0, step: 0.1}\n",
            ),
            &[],
        );
        expect(
            &tuned(
                "bayesian",
                "",
                "      learning_rate: {min: 0.01, max: 1.0, step: 0.01}\n",
            ),
            &[&["tuning.searchSpace.*.step:", "at most 30", "has 100"]],
        );
        // SageMaker's grid runs every combination.
        expect(
            &tuned(
                "grid",
                "    maxTrials: 4\n",
                "      max_depth: {type: int, min: 2, max: 4}\n      learning_rate: {values: [0.1, 0.2, 0.3]}\n",
            ),
            &[&[
                "tuning.strategy:",
                "9 trials",
                "maxTrials: 4",
                "raise `maxTrials` to 9",
            ]],
        );
        expect(
            &tuned(
                "random",
                "",
                "      min_samples_leaf: {type: int, min: 1, max: 4}\n",
            ),
            &[&["searched hyperparameter `min_samples_leaf`"]],
        );
        // The objective: what the algorithm optimises for this (3-class) label.
        let objective = |algorithm: &str, metric: &str| {
            job(&format!(
                "  algorithm: {algorithm}\n  tuning:\n    strategy: random\n    objective: {{metric: {metric}, goal: maximize}}\n    searchSpace:\n      max_iter: {{type: int, min: 10, max: 50}}\n"
            ))
        };
        expect(&objective("logistic_regression", "f1_macro"), &[]);
        expect(
            &objective("logistic_regression", "rmse"),
            &[&["spec: tuning objective `rmse`", "does not report it"]],
        );
        expect(
            &objective("logistic_regression", "f1_weighted"),
            &[&[
                "objective.metric:",
                "linear-learner cannot optimise `f1_weighted`",
                "`accuracy`",
                "`f1_macro`",
            ]],
        );
        let script = job(
            "  command: python train.py\n  metrics: [{name: acc, regex: 'acc=([0-9.]+)', goal: maximize}]\n  tuning:\n    strategy: random\n    objective: {metric: accuracy, goal: maximize}\n    searchSpace:\n      lr: {min: 0.1, max: 1.0}\n",
        );
        expect(
            &script,
            &[&["objective.metric:", "not one of them (`acc`)"]],
        );
    }

    /// A tuned job's chosen candidate is trained again and scored on the test rows
    /// (crate::refit), so a gate on it judges held-out rows and is honoured; one on a metric
    /// the job does not report is still refused.
    #[test]
    fn gates_on_a_tuned_job_are_honoured() {
        let manifests = format!(
            "{}apiVersion: mlctl/v1\nkind: Model\nmetadata:\n  name: m\nspec:\n  from: t\n  gates:\n    - {{metric: accuracy, min: 0.5}}\n",
            job(
                "  algorithm: gradient_boosting\n  tuning:\n    strategy: random\n    objective: {metric: accuracy, goal: maximize}\n    searchSpace:\n      max_depth: {type: int, min: 2, max: 6}\n"
            )
        );
        expect(&manifests, &[]);
        expect(
            &manifests.replace("metric: accuracy, min", "metric: f1_macro, min"),
            &[&["gates[].metric:", "not `f1_macro`"]],
        );
    }

    #[test]
    fn gates_must_be_on_metrics_the_job_reports() {
        let model = |algorithm: &str, metric: &str| {
            format!(
                "{}apiVersion: mlctl/v1\nkind: Model\nmetadata:\n  name: m\nspec:\n  from: t\n  gates:\n    - {{metric: {metric}, min: 0.5}}\n",
                job(&format!("  algorithm: {algorithm}\n"))
            )
        };
        expect(&model("logistic_regression", "accuracy"), &[]);
        expect(&model("logistic_regression", "f1_macro"), &[]);
        // A metric that no target's gradient_boosting reports is the spec's to refuse.
        expect(
            &model("gradient_boosting", "mlogloss"),
            &[&["spec: gate on `mlogloss`", "does not report it"]],
        );
        expect(
            &model("gradient_boosting", "f1_macro"),
            &[&[
                "gates[].metric:",
                "XGBoost, which reports",
                "`accuracy`",
                "not `f1_macro`",
                "could never pass",
            ]],
        );
        expect(
            &model("kmeans", "accuracy"),
            &[&["spec: gate on `accuracy`", "(kmeans) does not report it"]],
        );
    }

    #[test]
    fn labels_follow_aws_tag_rules() {
        let labelled = |labels: &str| {
            format!(
                "apiVersion: mlctl/v1\nkind: Endpoint\nmetadata:\n  name: e\n  labels: {labels}\nspec:\n  model: m\n---\n{}apiVersion: mlctl/v1\nkind: Model\nmetadata:\n  name: m\nspec:\n  from: t\n",
                job("  algorithm: logistic_regression\n")
            )
        };
        expect(&labelled("{team: ml-platform, cost-centre: '42/a'}"), &[]);
        expect(
            &labelled("{'aws:team': x, ok: 'a,b'}"),
            &[&[
                "metadata.labels:",
                "starts with `aws:`",
                "the value of `ok` has `,`",
            ]],
        );
        // The project's labels go on every resource: refused once, at the project, whether
        // or not the resources have labels of their own.
        let project = PROJECT.replace("  name: p\n", "  name: p\n  labels: {'aws:team': x}\n");
        let unlabelled = format!(
            "{}apiVersion: mlctl/v1\nkind: Model\nmetadata:\n  name: m\nspec:\n  from: t\n",
            job("  algorithm: logistic_regression\n")
        );
        for manifests in [unlabelled, labelled("{team: ml-platform}")] {
            let got = refusals_in(&project, &manifests);
            assert_eq!(got.len(), 1, "{got:#?}");
            assert!(
                got[0].starts_with("metadata.labels:") && got[0].contains("starts with `aws:`"),
                "{got:#?}"
            );
        }
        let many: Vec<String> = (0..45).map(|i| format!("l{i}: v")).collect();
        expect(
            &labelled(&format!("{{{}}}", many.join(", "))),
            &[&[
                "45 labels and mlctl's 7 tags make 52 tags",
                "at most 43 labels",
            ]],
        );
    }

    #[test]
    fn enforce_is_honoured_in_front_of_builtins_and_int_categories_are_encoded() {
        let endpoint = |job_spec: &str, enforce: &str| {
            format!(
                "apiVersion: mlctl/v1\nkind: Endpoint\nmetadata:\n  name: e\nspec:\n  model: m\n  enforce: {enforce}\n---\n{}apiVersion: mlctl/v1\nkind: Model\nmetadata:\n  name: m\nspec:\n  from: t\n",
                job(job_spec)
            )
        };
        let builtin = "  algorithm: logistic_regression\n";
        let script = "  command: python train.py\n  image: my/image:1\n";
        expect(&endpoint(builtin, "strict"), &[]);
        expect(&endpoint(builtin, "off"), &[]);
        expect(
            &endpoint(builtin, "warn"),
            &[&[
                "enforce:",
                "`warn` is not available here",
                "`enforce: strict`",
            ]],
        );
        expect(
            &endpoint(script, "strict"),
            &[&["script-mode model", "set `enforce: off`"]],
        );
        expect(&endpoint(script, "off"), &[]);
        // An int column with categories is one-hot by mlctl's preprocessing: not refused.
        let got = refusals_in(
            PROJECT,
            "apiVersion: mlctl/v1\nkind: Dataset\nmetadata:\n  name: codes\nspec:\n  source: data/iris.csv\n  schema:\n    columns:\n      - {name: a, type: int, categories: [1, 2]}\n---\n",
        );
        assert!(got.is_empty(), "{got:#?}");
    }

    #[test]
    fn endpoint_thresholds_and_volumes_are_honoured() {
        let endpoint = |spec: &str| {
            format!(
                "apiVersion: mlctl/v1\nkind: Endpoint\nmetadata:\n  name: e\nspec:\n  model: m\n{spec}---\n{}apiVersion: mlctl/v1\nkind: Model\nmetadata:\n  name: m\nspec:\n  from: t\n",
                job("  algorithm: logistic_regression\n")
            )
        };
        expect(
            &endpoint(
                "  strategy:\n    type: canary\n    percent: 10\n    minRequests: 0\n    rollback: {maxErrorRate: 0.05, maxP99LatencyMs: 100}\n  compute:\n    overrides: {sagemaker: {volumeSizeGb: 64}}\n",
            ),
            &[],
        );
        expect(
            &endpoint(
                "  compute:\n    overrides: {sagemaker: {volumeSizeGb: 1000, instanceCount: 2}}\n",
            ),
            &[
                &["volumeSizeGb:", "1 to 512 GB, not 1000"],
                &["instanceCount:", "`instances`"],
            ],
        );
    }

    /// SageMaker promotes a canary when its bake ends whatever traffic it had: a traffic
    /// requirement (written, or the default one) is refused, never accepted and ignored.
    #[test]
    fn a_canary_traffic_requirement_is_refused() {
        let endpoint = |strategy: &str| {
            format!(
                "apiVersion: mlctl/v1\nkind: Endpoint\nmetadata:\n  name: e\nspec:\n  model: m\n  strategy:\n    type: canary\n    percent: 10\n    bakeTime: 10m\n{strategy}---\n{}apiVersion: mlctl/v1\nkind: Model\nmetadata:\n  name: m\nspec:\n  from: t\n",
                job("  algorithm: logistic_regression\n")
            )
        };
        expect(
            &endpoint(""),
            &[&["type:", "default 100", "write `minRequests: 0`"]],
        );
        expect(
            &endpoint("    minRequests: 50\n    maxBakeTime: 1h\n"),
            &[
                &["minRequests:", "served 50 requests"],
                &["maxBakeTime:", "bakes exactly `bakeTime`"],
            ],
        );
        expect(&endpoint("    minRequests: 0\n"), &[]);
    }
}
