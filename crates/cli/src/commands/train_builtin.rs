//! `mlctl __train-builtin`: one of mlctl's built-in algorithms, trained inside a cloud job
//! (Azure ML's command and sweep jobs run it in the target's `image`) exactly as the local
//! target trains it: the rows of `mlctl_core::evaluation`, the fit, score and artifact of
//! `mlctl_provider_local::builtin`.
//!
//! Reads a [`BuiltinJob`] request, the dataset parts as files (`--data train=PATH`), and a
//! tuning trial's sampled values (`--hp name=value`, which Azure ML substitutes for
//! `${{search_space.name}}` in the trial's command). Writes the portable model directory,
//! with `metrics.json` and `evaluation.json`, into `--model-dir`. When `MLFLOW_TRACKING_URI`
//! and `MLFLOW_RUN_ID` are set (as in an Azure ML job), the metrics and hyperparameters are
//! logged to that run too (`runs/log-batch`, bearer `MLFLOW_TRACKING_TOKEN` when set), so a
//! sweep can compare its trials.

use anyhow::{Context, Result, bail};
use mlctl_core::builtin_job::{BuiltinJob, ScoredOn};
use mlctl_core::evaluation::{self, Parts};
use mlctl_provider_local::builtin;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Arguments of `mlctl __train-builtin`.
#[derive(Debug, clap::Args)]
pub struct TrainBuiltinArgs {
    /// The request (`request.json` of the job's code).
    #[arg(long, value_name = "FILE")]
    request: PathBuf,
    /// Where the model directory is written (the job's `model` output).
    #[arg(long, value_name = "DIR")]
    model_dir: PathBuf,
    /// A dataset part as a file: `train=PATH`, `validation=PATH`, `test=PATH` or `table=PATH`.
    #[arg(long = "data", value_name = "NAME=PATH", value_parser = name_value)]
    data: Vec<(String, String)>,
    /// A hyperparameter value (a tuning trial's), winning over the request's; parsed as JSON
    /// when it parses (`0.1`, `true`), else text.
    #[arg(long = "hp", value_name = "NAME=VALUE", value_parser = name_value)]
    hp: Vec<(String, String)>,
    /// Training threads (the TrainingJob's `compute.cpu`, rounded up); default every core.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    threads: Option<u32>,
}

fn name_value(s: &str) -> std::result::Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected NAME=VALUE, got `{s}`")),
    }
}

pub fn run(args: TrainBuiltinArgs) -> Result<u8> {
    let text = std::fs::read_to_string(&args.request)
        .with_context(|| format!("cannot read the request {}", args.request.display()))?;
    let job = BuiltinJob::from_json(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", args.request.display(), e.message))?;
    let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (name, path) in &args.data {
        if !job.parts.contains(name) {
            bail!(
                "--data {name}=...: the request names the parts {}",
                job.parts.join(", ")
            );
        }
        files.insert(name.clone(), PathBuf::from(path));
    }
    for part in &job.parts {
        if !files.contains_key(part) {
            bail!("the request needs the dataset part `{part}`: pass --data {part}=PATH");
        }
    }
    let read = |name: &str| {
        files
            .get(name)
            .map(|p| builtin::read_table(p).map_err(|e| anyhow::anyhow!(e.message)))
            .transpose()
    };
    let (train, split_train) = match read("train")? {
        Some(t) => (t, true),
        None => match read(BuiltinJob::TABLE)? {
            Some(t) => (t, false),
            None => bail!("the request names neither a `train` part nor the `table`"),
        },
    };
    let parts = Parts {
        train,
        split_train,
        validation: read("validation")?,
        test: read("test")?,
    };
    let selects = job.tuned || mlctl_spec::builtins::stops_early(&job.hyperparameters);
    let rows = evaluation::rows(parts, job.split.as_ref(), &job.data_digest, selects)
        .map_err(|e| anyhow::anyhow!(e))?;
    let trial = job.scored_on == ScoredOn::Validation;
    if trial && !job.tuned {
        bail!("a request scored on validation rows must be tuned");
    }
    let (eval, eval_name, record) =
        builtin::scored_on(&rows, trial).map_err(|e| anyhow::anyhow!(e.message))?;
    let hyperparameters = job
        .hyperparameters_with(&args.hp)
        .map_err(|e| anyhow::anyhow!(e.message))?;
    let run_id = std::env::var("MLFLOW_RUN_ID")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| job.job_name.clone());
    eprintln!(
        "mlctl: {} on {} rows, scored on {} {eval_name} ({}); hyperparameters {}",
        job.algorithm.as_str(),
        rows.train.n_rows(),
        eval.n_rows(),
        if trial {
            record.validation_from.as_deref().unwrap_or("")
        } else {
            record.test_from.as_str()
        },
        serde_json::to_string(&hyperparameters).unwrap_or_default()
    );
    std::fs::create_dir_all(&args.model_dir)
        .with_context(|| format!("cannot create {}", args.model_dir.display()))?;
    let lineage = BTreeMap::from([
        ("run".to_string(), run_id.clone()),
        ("trainingJob".to_string(), job.job_name.clone()),
        ("dataset".to_string(), job.dataset.clone()),
        ("datasetDigest".to_string(), job.data_digest.clone()),
        ("commit".to_string(), job.commit.clone()),
    ]);
    let fitted = builtin::fit_and_save(
        builtin::Fit {
            algorithm: job.algorithm,
            hyperparameters: &hyperparameters,
            train: &rows.train,
            validation: rows.validation.as_ref(),
            eval,
            eval_name,
            target: job.target_column.as_deref(),
            schema: job.schema.as_ref(),
            threads: args.threads.map(|n| n as usize),
            lineage,
            importance: !trial,
        },
        &args.model_dir,
    )
    .map_err(|e| anyhow::anyhow!(e.message))?;
    let record = mlctl_core::components::Evaluation {
        early_stopping: fitted.early_stopping.clone(),
        importance: fitted.importance.clone(),
        ..record
    };
    builtin::write_results(&args.model_dir, &fitted.metrics, &record)
        .map_err(|e| anyhow::anyhow!(e.message))?;
    eprintln!(
        "mlctl: fitted in {:.3}s; metrics on the {eval_name} {}",
        fitted.fit_secs,
        serde_json::to_string(&fitted.metrics).unwrap_or_default()
    );
    if let Some(tracking) = mlflow_from_env() {
        log_to_mlflow(&tracking, &run_id, &fitted.metrics, &hyperparameters)?;
        eprintln!("mlctl: metrics logged to MLflow run {run_id}");
    }
    Ok(0)
}

/// The MLflow tracking base of the job (`azureml://` as `https://`), and its token.
fn mlflow_from_env() -> Option<(String, Option<String>)> {
    let uri = std::env::var("MLFLOW_TRACKING_URI")
        .ok()
        .filter(|s| !s.is_empty())?;
    std::env::var("MLFLOW_RUN_ID")
        .ok()
        .filter(|s| !s.is_empty())?;
    let token = std::env::var("MLFLOW_TRACKING_TOKEN")
        .ok()
        .filter(|s| !s.is_empty());
    Some((tracking_base(&uri), token))
}

/// An MLflow tracking URI as an HTTP base: Azure ML's `azureml://HOST/...` is served over
/// https.
pub(crate) fn tracking_base(uri: &str) -> String {
    let uri = uri.trim_end_matches('/');
    match uri.strip_prefix("azureml://") {
        Some(rest) => format!("https://{rest}"),
        None => uri.to_string(),
    }
}

/// The `runs/log-batch` body: every metric at step 0, every hyperparameter as a param.
pub(crate) fn log_batch_body(
    run_id: &str,
    metrics: &BTreeMap<String, f64>,
    params: &BTreeMap<String, serde_json::Value>,
    timestamp_ms: i64,
) -> serde_json::Value {
    let metrics: Vec<_> = metrics
        .iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(k, v)| serde_json::json!({"key": k, "value": v, "timestamp": timestamp_ms, "step": 0}))
        .collect();
    let params: Vec<_> = params
        .iter()
        .map(|(k, v)| {
            let value = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            serde_json::json!({"key": k, "value": value})
        })
        .collect();
    serde_json::json!({"run_id": run_id, "metrics": metrics, "params": params})
}

fn log_to_mlflow(
    (base, token): &(String, Option<String>),
    run_id: &str,
    metrics: &BTreeMap<String, f64>,
    params: &BTreeMap<String, serde_json::Value>,
) -> Result<()> {
    let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    let body = log_batch_body(run_id, metrics, params, now_ms);
    let url = format!("{base}/api/2.0/mlflow/runs/log-batch");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .context("cannot build the HTTP client")?;
        let mut last = String::new();
        // A tracking server that is briefly unavailable (429, 5xx) is tried again.
        for attempt in 0..5u32 {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(500 << attempt)).await;
            }
            let mut req = client.post(&url).json(&body);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => {
                    let status = r.status();
                    let text: String = r
                        .text()
                        .await
                        .unwrap_or_default()
                        .chars()
                        .take(500)
                        .collect();
                    last = format!("{status}: {text}");
                    if !(status.as_u16() == 429 || status.is_server_error()) {
                        break;
                    }
                }
                // reqwest's error may name the URL; the token is never in it.
                Err(e) => last = e.without_url().to_string(),
            }
        }
        bail!("cannot log the metrics to MLflow run {run_id} ({base}): {last}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azureml_tracking_uris_are_https() {
        assert_eq!(
            tracking_base("azureml://westeurope.api.azureml.ms/mlflow/v1.0/subscriptions/s/"),
            "https://westeurope.api.azureml.ms/mlflow/v1.0/subscriptions/s"
        );
        assert_eq!(
            tracking_base("http://127.0.0.1:5000"),
            "http://127.0.0.1:5000"
        );
    }

    #[test]
    fn log_batch_has_every_metric_and_param_as_mlflow_reads_them() {
        let body = log_batch_body(
            "run1",
            &[("accuracy".to_string(), 0.9), ("nan".to_string(), f64::NAN)].into(),
            &[
                ("C".to_string(), serde_json::json!(1.5)),
                ("solver".to_string(), serde_json::json!("lbfgs")),
            ]
            .into(),
            7,
        );
        assert_eq!(
            body,
            serde_json::json!({
                "run_id": "run1",
                "metrics": [{"key": "accuracy", "value": 0.9, "timestamp": 7, "step": 0}],
                "params": [{"key": "C", "value": "1.5"}, {"key": "solver", "value": "lbfgs"}]
            })
        );
    }
}
