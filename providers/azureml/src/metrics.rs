//! A job's metrics: the `metrics.json` its model output holds, its MLflow run (Azure ML's
//! tracking API, the run id being the job name), and, for a script's regex `metrics`, its log.
//!
//! Names: a built-in's metrics come from mlctl's own trainer (`mlctl __train-builtin`) in the
//! vocabulary's names (docs/metrics.md) already. A script's keep the names it logged; an
//! MLflow key with a channel prefix (`test_accuracy`, `validation/accuracy`) also gives the
//! vocabulary's name when that is a vocabulary metric and the script did not log the plain
//! name itself, test rows winning over validation rows.
//!
//! # Caveats
//! MLflow keeps every value of a metric; the one of the highest step (the latest when steps
//! are equal) is the job's. `metrics.json` wins over MLflow for the same name.

use serde_json::Value;
use std::collections::BTreeMap;

/// The metrics of a `metrics.json`: a JSON object of numbers, nested objects flattened with
/// `.`; anything else in it is left out.
pub fn parse_metrics_json(bytes: &[u8]) -> Result<BTreeMap<String, f64>, String> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("metrics.json is not JSON: {e}"))?;
    if !v.is_object() {
        return Err("metrics.json must hold a JSON object of metric values".into());
    }
    let mut out = BTreeMap::new();
    mlctl_core::evaluation::flatten_metrics(&v, &mut out);
    Ok(out)
}

/// One run of the tracking API, as mlctl reads it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MlflowRun {
    /// The run id (a job's name).
    pub id: String,
    /// `RUNNING`, `SCHEDULED`, `FINISHED`, `FAILED`, `KILLED`.
    pub status: String,
    /// Each metric's value of its highest step.
    pub metrics: BTreeMap<String, f64>,
    /// Parameters (a sweep trial's sampled values), as text.
    pub params: BTreeMap<String, String>,
    /// Tags (`mlflow.parentRunId` for a trial).
    pub tags: BTreeMap<String, String>,
    /// Start time, milliseconds since the epoch.
    pub start_time: Option<i64>,
    /// End time, milliseconds since the epoch.
    pub end_time: Option<i64>,
}

/// A run object (`run` of `runs/get`, one of `runs` of `runs/search`).
pub fn parse_run(run: &Value) -> MlflowRun {
    let info = run.get("info").cloned().unwrap_or(Value::Null);
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let number = |v: &Value, k: &str| {
        v.get(k).and_then(|x| {
            x.as_i64()
                .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
        })
    };
    let id = Some(text(&info, "run_id"))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| text(&info, "run_uuid"));
    let mut best: BTreeMap<String, (i64, i64, f64)> = BTreeMap::new();
    for m in run
        .pointer("/data/metrics")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (Some(key), Some(value)) = (m.get("key").and_then(Value::as_str), m.get("value"))
        else {
            continue;
        };
        let Some(value) = value
            .as_f64()
            .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        else {
            continue;
        };
        let at = (
            number(m, "step").unwrap_or(0),
            number(m, "timestamp").unwrap_or(0),
        );
        match best.get(key) {
            Some((s, t, _)) if (*s, *t) > at => {}
            _ => {
                best.insert(key.to_string(), (at.0, at.1, value));
            }
        }
    }
    let pairs = |k: &str| -> BTreeMap<String, String> {
        run.pointer(&format!("/data/{k}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| {
                Some((
                    p.get("key")?.as_str()?.to_string(),
                    p.get("value")
                        .map(|v| {
                            v.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| v.to_string())
                        })
                        .unwrap_or_default(),
                ))
            })
            .collect()
    };
    MlflowRun {
        id,
        status: text(&info, "status"),
        metrics: best.into_iter().map(|(k, (_, _, v))| (k, v)).collect(),
        params: pairs("params"),
        tags: pairs("tags"),
        start_time: number(&info, "start_time"),
        end_time: number(&info, "end_time"),
    }
}

/// The metrics of a job: `from_file` (its `metrics.json`) over `from_run` (its MLflow run),
/// plus the vocabulary's name of a channel-prefixed MLflow key the job did not report plainly.
pub fn merge(
    from_file: &BTreeMap<String, f64>,
    from_run: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    let mut out = from_run.clone();
    out.extend(from_file.iter().map(|(k, v)| (k.clone(), *v)));
    // Validation first, so test wins.
    for prefix in ["validation_", "validation/", "val_", "test_", "test/"] {
        for (k, v) in from_run {
            let Some(plain) = k.strip_prefix(prefix) else {
                continue;
            };
            if mlctl_spec::metrics::metric(plain).is_some()
                && !from_file.contains_key(plain)
                && !from_run.contains_key(plain)
            {
                out.insert(plain.to_string(), *v);
            }
        }
    }
    out
}

/// Metrics scraped from a log with a script's regex `metrics` (one capture group each): the
/// last match of each wins, as SageMaker's MetricDefinitions do.
pub fn scrape(log: &str, definitions: &[(String, regex::Regex)]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in log.lines() {
        for (name, re) in definitions {
            if let Some(v) = re
                .captures(line)
                .and_then(|c| c.get(1))
                .and_then(|m| m.as_str().trim().parse::<f64>().ok())
            {
                out.insert(name.clone(), v);
            }
        }
    }
    out
}

/// `runs/get?run_id=` of the tracking base `tracking`.
pub fn run_url(tracking: &str, run_id: &str) -> String {
    format!(
        "{tracking}/api/2.0/mlflow/runs/get?run_id={}",
        query_escape(run_id)
    )
}

/// `experiments/get-by-name?experiment_name=`.
pub fn experiment_url(tracking: &str, name: &str) -> String {
    format!(
        "{tracking}/api/2.0/mlflow/experiments/get-by-name?experiment_name={}",
        query_escape(name)
    )
}

/// `runs/search`.
pub fn search_url(tracking: &str) -> String {
    format!("{tracking}/api/2.0/mlflow/runs/search")
}

/// The body of a `runs/search` for the trials of sweep `sweep` in `experiment_id`.
pub fn trials_search_body(experiment_id: &str, sweep: &str, page_token: Option<&str>) -> Value {
    let mut body = serde_json::json!({
        "experiment_ids": [experiment_id],
        "filter": format!("tags.mlflow.parentRunId = '{}'", sweep.replace('\'', "")),
        "max_results": 1000,
    });
    if let Some(t) = page_token {
        body["page_token"] = Value::String(t.to_string());
    }
    body
}

fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The run of job `run_id` (`None`: the tracking API does not know it).
pub(crate) async fn read_run(
    arm: &crate::arm::Arm,
    tracking: &str,
    run_id: &str,
) -> mlctl_core::error::Result<Option<MlflowRun>> {
    Ok(arm
        .get_url(&run_url(tracking, run_id))
        .await?
        .and_then(|v| v.get("run").map(parse_run)))
}

/// The trials of sweep `sweep` in experiment `experiment` (none when the experiment is
/// unknown).
pub(crate) async fn trial_runs(
    arm: &crate::arm::Arm,
    tracking: &str,
    experiment: &str,
    sweep: &str,
) -> mlctl_core::error::Result<Vec<MlflowRun>> {
    let Some(exp) = arm.get_url(&experiment_url(tracking, experiment)).await? else {
        return Ok(Vec::new());
    };
    let Some(id) = exp
        .pointer("/experiment/experiment_id")
        .and_then(Value::as_str)
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    // Pages until the server sends no token (bounded, should it keep sending one).
    for _ in 0..100 {
        let page = arm
            .post_url(
                &search_url(tracking),
                &trials_search_body(id, sweep, token.as_deref()),
            )
            .await?;
        out.extend(
            page.get("runs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(parse_run),
        );
        token = page
            .get("next_page_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    Ok(out)
}
