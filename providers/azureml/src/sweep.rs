//! Tuning as an Azure ML sweep job, then the chosen candidate trained again on rows the
//! tuning never saw (as `mlctl_core::evaluation` says and SageMaker's `refit` does).
//!
//! | spec                        | sweep                                                        |
//! |-----------------------------|--------------------------------------------------------------|
//! | `strategy: grid`            | `samplingAlgorithmType: Grid` (every parameter a `choice`)     |
//! | `strategy: random`, `seed`  | `Random` with `seed` (default 42)                            |
//! | `strategy: bayesian`        | `Bayesian` (`choice`, `uniform`, `quniform` only)            |
//! | `values`, a `step`          | `["choice", [[v, ...]]]` (a stepped range expanded as the local target expands it) |
//! | float range                 | `["uniform", [min, max]]`; log scale `["loguniform", [ln min, ln max]]` |
//! | int range                   | `["quniform", [min, max, 1]]`; log scale `["qloguniform", [ln min, ln max, 1]]` |
//! | `objective`                 | `{primaryMetric, goal: Maximize/Minimize}`                   |
//! | `maxTrials`, `parallelism`  | `limits.maxTotalTrials`, `limits.maxConcurrentTrials`        |
//! | `compute.timeout`           | `limits.trialTimeout` (each trial) and the final job's timeout |
//!
//! Trials are `mlctl __train-builtin --request trial.json ... --hp NAME=${{search_space.NAME}}`:
//! Azure ML substitutes the sampled value for the placeholder; the trial scores itself on
//! validation rows and logs its metrics to its MLflow run, which the sweep compares. When the
//! sweep completes, `properties.best_child_run_id` names the best trial; the final command
//! job `<sweep>-final` runs `request.json` (scored on the test rows) with the best trial's
//! values, and its metrics are what gates judge.
//!
//!
//! A tuned script gets the same rows as on the local and SageMaker targets
//! (`mlctl_core::evaluation`): mlctl carves them, uploads them as CSV blobs, and gives the
//! trials the channels `train` and `validation` and the final job `train` and `test`. A
//! trial runs [`TRIAL_WRAPPER`] (`python3 .mlctl/trial.py --hp NAME=${{search_space.NAME}}`)
//! in the script's environment: it exports the sampled values as `SM_HPS`/`SM_HP_<NAME>`,
//! runs the command, reads its metrics as mlctl reads a script's (the `metrics` regexes, then
//! metrics.json) and logs them to the trial's MLflow run. The final job is the plain script
//! with the chosen values in its environment.
//!
//! # Caveats
//! `strategy: halving` is refused (Azure ML's early termination stops trials by their
//! intermediate metrics, which neither a built-in nor the trial wrapper logs). A tuned
//! script's trial needs `python3` in its environment (Azure ML's curated ones have it); the
//! wrapper's regexes are Python's, which agree with mlctl's on the usual `name=([0-9.]+)`.

use mlctl_spec::{Param, ParamType, Scale, Tuning, TuningStrategy};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// What runs a tuned script's trial (`.mlctl/trial.py` of its code; Python standard library).
pub const TRIAL_WRAPPER: &str = include_str!("trial.py");
/// Where the trial wrapper is in the code folder.
pub const TRIAL_WRAPPER_PATH: &str = ".mlctl/trial.py";
/// Where the trial wrapper's settings are in the code folder.
pub const TRIAL_CONFIG_PATH: &str = ".mlctl/trial.json";

/// `.mlctl/trial.json`: the script's command, its own hyperparameters, which searched names
/// are integers, its metric regexes and the sweep's objective.
pub fn script_trial_config(spec: &mlctl_spec::TrainingJobSpec, tuning: &Tuning) -> Value {
    json!({
        "version": 1,
        "command": spec.command,
        "hyperparameters": spec.hyperparameters,
        "integers": integer_params(tuning),
        "metrics": spec
            .metrics
            .iter()
            .map(|m| json!({"name": m.name, "regex": m.regex}))
            .collect::<Vec<_>>(),
        "objective": tuning.objective.metric,
    })
}

/// The command a tuned script's trial runs (after its channels are set up).
pub fn script_trial_command(tuning: &Tuning) -> String {
    format!("python3 {TRIAL_WRAPPER_PATH}{}", trial_arguments(tuning))
}

/// The final job of sweep `sweep`.
pub fn final_job_name(sweep: &str) -> String {
    format!("{sweep}-final")
}

/// What the final job says while it runs.
pub const RUNNING_FINAL: &str = "training the chosen candidate again on the train rows, scored on the test rows (trials saw train and validation only)";

/// Azure ML's sampling algorithm for a strategy.
///
/// # Errors
/// A strategy a sweep cannot run.
pub fn sampling_algorithm(tuning: &Tuning) -> Result<Value, String> {
    match tuning.strategy {
        TuningStrategy::Grid => Ok(json!({"samplingAlgorithmType": "Grid"})),
        TuningStrategy::Random => Ok(json!({
            "samplingAlgorithmType": "Random",
            "seed": tuning.seed.unwrap_or(mlctl_core::evaluation::SEED),
        })),
        TuningStrategy::Bayesian => Ok(json!({"samplingAlgorithmType": "Bayesian"})),
        TuningStrategy::Halving => Err(
            "successive halving needs a trial's intermediate metrics, which neither a built-in nor a tuned script logs; Azure ML's early termination cannot judge it".into(),
        ),
    }
}

/// The sweep's expression of one parameter.
///
/// # Errors
/// A range the strategy cannot search (a float range without a step in grid search, a log
/// scale in Bayesian search, a range without bounds).
pub fn expression(name: &str, p: &Param, strategy: TuningStrategy) -> Result<Value, String> {
    let grid = strategy == TuningStrategy::Grid;
    if p.values.is_some() || p.step.is_some() || grid {
        let values = expanded(name, p)?;
        return Ok(json!(["choice", [values]]));
    }
    let (Some(min), Some(max)) = (p.min, p.max) else {
        return Err("a range needs `min` and `max` (or give `values`)".into());
    };
    let log = p.scale == Some(Scale::Log);
    if log && strategy == TuningStrategy::Bayesian {
        return Err(
            "Azure ML's Bayesian sampling takes choice, uniform and quniform only, not a log scale"
                .into(),
        );
    }
    if log && min <= 0.0 {
        return Err("a log-scale range needs `min` > 0".into());
    }
    let integer = p.ty == Some(ParamType::Int);
    Ok(match (integer, log) {
        (false, false) => json!(["uniform", [min, max]]),
        (false, true) => json!(["loguniform", [min.ln(), max.ln()]]),
        (true, false) => json!(["quniform", [min, max, 1]]),
        (true, true) => json!(["qloguniform", [min.ln(), max.ln(), 1]]),
    })
}

/// The values of a listed or stepped parameter, as the local target expands them.
fn expanded(name: &str, p: &Param) -> Result<Vec<Value>, String> {
    if let Some(v) = &p.values {
        return Ok(v.clone());
    }
    let one = Tuning {
        strategy: TuningStrategy::Grid,
        objective: mlctl_spec::Objective {
            metric: String::new(),
            goal: mlctl_spec::Goal::Maximize,
        },
        max_trials: None,
        parallelism: None,
        seed: None,
        search_space: [(name.to_string(), p.clone())].into(),
    };
    let values = mlctl_ml::tune::candidates(&one).map_err(|e| e.to_string())?;
    Ok(values
        .into_iter()
        .filter_map(|mut c| c.params.remove(name))
        .collect())
}

/// The whole search space.
///
/// # Errors
/// The first parameter that cannot be searched, as `searchSpace.NAME: why`.
pub fn search_space(tuning: &Tuning) -> Result<Value, String> {
    let mut out = serde_json::Map::new();
    for (name, p) in &tuning.search_space {
        let e =
            expression(name, p, tuning.strategy).map_err(|e| format!("searchSpace.{name}: {e}"))?;
        out.insert(name.clone(), e);
    }
    Ok(Value::Object(out))
}

/// The names of integer parameters (a sweep passes `quniform` values as `3.0`).
pub fn integer_params(tuning: &Tuning) -> std::collections::BTreeSet<String> {
    tuning
        .search_space
        .iter()
        .filter(|(_, p)| {
            p.ty == Some(ParamType::Int)
                || p.values
                    .as_ref()
                    .is_some_and(|v| !v.is_empty() && v.iter().all(|x| x.is_i64() || x.is_u64()))
        })
        .map(|(k, _)| k.clone())
        .collect()
}

/// The number of trials: `maxTrials` (default 10), at most the grid's size in grid search.
pub fn max_trials(tuning: &Tuning) -> u32 {
    let asked = tuning.max_trials.unwrap_or(10).max(1);
    if tuning.strategy != TuningStrategy::Grid {
        return asked;
    }
    let mut size: u64 = 1;
    for (name, p) in &tuning.search_space {
        size = size.saturating_mul(expanded(name, p).map(|v| v.len() as u64).unwrap_or(1));
    }
    asked.min(size.min(u64::from(u32::MAX)) as u32).max(1)
}

/// `--hp NAME=${{search_space.NAME}}` for every searched parameter, in name order.
pub fn trial_arguments(tuning: &Tuning) -> String {
    tuning
        .search_space
        .keys()
        .map(|k| format!(" --hp {k}=${{{{search_space.{k}}}}}"))
        .collect()
}

/// `--hp NAME=VALUE` for the chosen values (shell-quoted).
pub fn chosen_arguments(values: &BTreeMap<String, Value>) -> String {
    values
        .iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            format!(
                " --hp {}",
                crate::trainer::shell_quote(&format!("{k}={text}"))
            )
        })
        .collect()
}

/// A sampled value as text (a trial's MLflow param, its job's `hyperparameters` property)
/// as JSON: numbers and booleans decode, anything else stays text.
pub fn decode_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// The sweep body's `objective`, `samplingAlgorithm`, `searchSpace` and `limits`.
///
/// # Errors
/// What the sweep cannot search.
pub fn sweep_parts(tuning: &Tuning, trial_timeout: Option<&str>) -> Result<Value, String> {
    let mut limits = json!({
        "jobLimitsType": "Sweep",
        "maxTotalTrials": max_trials(tuning),
        "maxConcurrentTrials": tuning.parallelism.unwrap_or(1).max(1),
    });
    if let Some(t) = trial_timeout {
        limits["trialTimeout"] = json!(t);
    }
    Ok(json!({
        "objective": {
            "primaryMetric": tuning.objective.metric,
            "goal": match tuning.objective.goal {
                mlctl_spec::Goal::Maximize => "Maximize",
                mlctl_spec::Goal::Minimize => "Minimize",
            },
        },
        "samplingAlgorithm": sampling_algorithm(tuning)?,
        "searchSpace": search_space(tuning)?,
        "limits": limits,
    }))
}

/// A trial's number: `<sweep>_<n>` is trial n+1 (Azure ML counts from 0).
pub fn trial_number(sweep: &str, trial: &str) -> Option<u32> {
    trial
        .strip_prefix(sweep)?
        .strip_prefix('_')?
        .parse::<u32>()
        .ok()
        .map(|n| n + 1)
}
