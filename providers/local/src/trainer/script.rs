//! Script mode: a user `command` run as a child process with SageMaker's script-mode contract,
//! so the same script later runs unchanged on SageMaker.
//!
//! SageMaker's container paths map into the run directory:
//!
//! | SageMaker                                   | local                                   | env                          |
//! |---------------------------------------------|-----------------------------------------|------------------------------|
//! | `/opt/ml/model`                             | `<run>/model`                           | `SM_MODEL_DIR`               |
//! | `/opt/ml/input`                             | `<run>/input`                           | `SM_INPUT_DIR`               |
//! | `/opt/ml/input/config/hyperparameters.json` | `<run>/input/config/hyperparameters.json` | `SM_INPUT_CONFIG_DIR`      |
//! | `/opt/ml/input/data/<channel>`              | `<run>/input/data/<channel>`            | `SM_CHANNEL_<CHANNEL>`       |
//! | `/opt/ml/output`                            | `<run>/output`                          | `SM_OUTPUT_DIR`              |
//! | `/opt/ml/output/data`                       | `<run>/output/data`                     | `SM_OUTPUT_DATA_DIR`         |
//! | `/opt/ml/code`                              | `<run>/code` (a copy of `code`)         | working directory            |
//!
//! Hyperparameters arrive as `SM_HPS` (JSON, typed), `SM_HP_<NAME>` (one variable each) and in
//! `hyperparameters.json` (string values, as SageMaker writes them). Channels are the dataset's
//! split parts (`train`, `validation`, `test`), one CSV file each; without a split, `train`
//! holds the whole table. Metrics come from stdout/stderr regexes (`metrics:`) and from a
//! `metrics.json` the script writes into `SM_MODEL_DIR`, `SM_OUTPUT_DIR` or
//! `SM_OUTPUT_DATA_DIR`. A failing script's `output/failure` file (SageMaker's convention) is
//! quoted in the failure reason with the exit code and the last lines of stderr.

use super::{JobRequest, TrialOutput, TrialRun};
use crate::PROVIDER;
use crate::data::env_name;
use crate::fsutil::{copy_tree, extension, io_at, skip_in_code, sniff_format};
use crate::process::{self, Shell, Stream};
use mlctl_core::error::{ErrorKind, ProviderError, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The host name SageMaker gives a single-instance job.
const HOST: &str = "algo-1";

fn failed(message: String) -> ProviderError {
    ProviderError::new(ErrorKind::Failed, PROVIDER, "training", message)
}

/// A hyperparameter as a string, the way SageMaker passes it (`SM_HP_*`, hyperparameters.json).
fn hp_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Compiled `metrics:` definitions.
pub(crate) struct MetricRegexes(Vec<(String, regex::Regex)>);

impl MetricRegexes {
    pub(crate) fn compile(job: &JobRequest) -> Result<Self> {
        let mut out = Vec::new();
        for m in &job.spec.metrics {
            let re = regex::Regex::new(&m.regex).map_err(|e| {
                ProviderError::new(
                    ErrorKind::Invalid,
                    PROVIDER,
                    "training",
                    format!("metric `{}`: invalid regex `{}`: {e}", m.name, m.regex),
                )
            })?;
            out.push((m.name.clone(), re));
        }
        Ok(MetricRegexes(out))
    }

    /// Scans one output line; the last match of each metric wins (SageMaker keeps the series,
    /// the final value is the last).
    fn scan(&self, line: &str, into: &mut BTreeMap<String, f64>) {
        for (name, re) in &self.0 {
            if let Some(caps) = re.captures(line) {
                let text = caps
                    .get(1)
                    .or_else(|| caps.get(0))
                    .map(|m| m.as_str())
                    .unwrap_or("");
                if let Ok(v) = text.trim().parse::<f64>() {
                    into.insert(name.clone(), v);
                }
            }
        }
    }
}

/// Reads `metrics.json` files: a flat object of numbers (nested objects are flattened with `.`).
fn read_metrics_json(path: &Path, into: &mut BTreeMap<String, f64>) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| failed(format!("{} is not valid JSON: {e}", path.display())))?;
    if !v.is_object() {
        return Err(failed(format!(
            "{} must hold a JSON object of metric values",
            path.display()
        )));
    }
    mlctl_core::evaluation::flatten_metrics(&v, into);
    Ok(())
}

/// Links (or copies) a stored table into a channel directory.
fn place(src: &Path, dest: &Path) -> Result<()> {
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io_at("create channel directory", dir, e))?;
    }
    // Blobs never change, so a hard link is safe and costs nothing for a big table.
    if std::fs::hard_link(src, dest).is_err() {
        std::fs::copy(src, dest).map_err(|e| io_at("copy channel data", src, e))?;
    }
    Ok(())
}

/// Lays out the run directory; returns (working directory, environment).
fn prepare(t: &TrialRun<'_>) -> Result<(PathBuf, Vec<(String, String)>)> {
    let job = t.job;
    let run = &t.run_dir;
    let input = run.join("input");
    let config = input.join("config");
    let data = input.join("data");
    let model = run.join("model");
    let output = run.join("output");
    let output_data = output.join("data");
    for d in [&config, &data, &model, &output_data] {
        std::fs::create_dir_all(d).map_err(|e| io_at("create run directory", d, e))?;
    }
    // Channels.
    let mut channels: BTreeMap<String, PathBuf> = BTreeMap::new();
    if let Some(rows) = t.rows.as_deref() {
        // Tuned: a trial sees train and validation, the chosen candidate's run train and
        // test, so the test rows never take part in choosing.
        let second = if t.trial {
            ("validation", rows.validation.as_ref())
        } else {
            ("test", Some(&rows.test))
        };
        for (part, table) in [("train", Some(&rows.train)), second] {
            let Some(table) = table else { continue };
            let dir = data.join(part);
            std::fs::create_dir_all(&dir)
                .map_err(|e| io_at("create channel directory", &dir, e))?;
            let file = dir.join(format!("{part}.csv"));
            mlctl_ml::table::write_csv(table, &file).map_err(|e| {
                failed(format!(
                    "cannot write the `{part}` channel {}: {e}",
                    file.display()
                ))
            })?;
            channels.insert(part.into(), dir);
        }
    } else if job.dataset.splits.is_empty() {
        let src = PathBuf::from(&job.dataset.uri);
        let file = data.join("train").join(format!(
            "{}.{}",
            job.dataset.name,
            extension(sniff_format(&src))
        ));
        place(&src, &file)?;
        channels.insert("train".into(), data.join("train"));
    } else {
        for (part, uri) in &job.dataset.splits {
            let dir = data.join(part);
            place(Path::new(uri), &dir.join(format!("{part}.csv")))?;
            channels.insert(part.clone(), dir);
        }
    }
    // Config files, as SageMaker writes them.
    let hps_strings: BTreeMap<&String, String> =
        t.params.iter().map(|(k, v)| (k, hp_string(v))).collect();
    let write = |name: &str, v: &Value| -> Result<()> {
        let p = config.join(name);
        std::fs::write(&p, serde_json::to_vec_pretty(v).unwrap_or_default())
            .map_err(|e| io_at("write run config", &p, e))
    };
    write(
        "hyperparameters.json",
        &serde_json::to_value(&hps_strings).unwrap_or_default(),
    )?;
    write(
        "resourceconfig.json",
        &serde_json::json!({"current_host": HOST, "hosts": [HOST], "network_interface_name": "lo"}),
    )?;
    let data_config: serde_json::Map<String, Value> = channels
        .keys()
        .map(|c| (c.clone(), serde_json::json!({"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None", "ContentType": "text/csv"})))
        .collect();
    write("inputdataconfig.json", &Value::Object(data_config))?;
    // Code.
    let cwd = match &job.spec.code {
        Some(code) => {
            let src = crate::fsutil::resolve_in_project(
                &job.project_dir,
                code,
                &format!("training job `{}`", job.resource),
                "code",
            )?;
            let dest = run.join("code");
            if src.is_file() {
                copy_tree(
                    &src,
                    &dest.join(src.file_name().unwrap_or_default()),
                    &skip_in_code,
                )?;
            } else {
                copy_tree(&src, &dest, &skip_in_code)?;
            }
            dest
        }
        None => job.project_dir.clone(),
    };
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let cpus = job
        .spec
        .compute
        .as_ref()
        .and_then(|c| c.cpu)
        .map(|c| c.ceil().max(1.0) as usize)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
    let user_args: Vec<String> = t
        .params
        .iter()
        .flat_map(|(k, v)| [format!("--{k}"), hp_string(v)])
        .collect();
    let mut env: Vec<(String, String)> = vec![
        ("SM_MODEL_DIR".into(), s(&model)),
        ("SM_INPUT_DIR".into(), s(&input)),
        ("SM_INPUT_CONFIG_DIR".into(), s(&config)),
        ("SM_INPUT_DATA_DIR".into(), s(&data)),
        ("SM_OUTPUT_DIR".into(), s(&output)),
        ("SM_OUTPUT_DATA_DIR".into(), s(&output_data)),
        (
            "SM_CHANNELS".into(),
            serde_json::to_string(&channels.keys().collect::<Vec<_>>()).unwrap_or_default(),
        ),
        (
            "SM_HPS".into(),
            serde_json::to_string(t.params).unwrap_or_default(),
        ),
        (
            "SM_USER_ARGS".into(),
            serde_json::to_string(&user_args).unwrap_or_default(),
        ),
        ("SM_HOSTS".into(), format!("[\"{HOST}\"]")),
        ("SM_CURRENT_HOST".into(), HOST.into()),
        ("SM_NUM_CPUS".into(), cpus.to_string()),
        ("SM_NUM_GPUS".into(), "0".into()),
        ("SM_MODULE_DIR".into(), s(&cwd)),
        ("MLCTL_RUN_ID".into(), t.run_id.clone()),
        ("MLCTL_JOB_NAME".into(), job.job_name.clone()),
        ("MLCTL_DATASET".into(), job.dataset.name.clone()),
        ("PYTHONUNBUFFERED".into(), "1".into()),
    ];
    for (name, dir) in &channels {
        env.push((format!("SM_CHANNEL_{}", env_name(name)), s(dir)));
    }
    for (k, v) in t.params {
        env.push((format!("SM_HP_{}", env_name(k)), hp_string(v)));
    }
    if let Some(target) = &job.target_column {
        env.push(("MLCTL_TARGET_COLUMN".into(), target.clone()));
    }
    if let Some(budget) = t.budget {
        env.push(("MLCTL_BUDGET".into(), budget.to_string()));
    }
    let training_env = serde_json::json!({
        "job_name": job.job_name,
        "model_dir": s(&model),
        "input_dir": s(&input),
        "input_config_dir": s(&config),
        "input_data_dir": s(&data),
        "output_dir": s(&output),
        "output_data_dir": s(&output_data),
        "channel_input_dirs": channels.iter().map(|(k, v)| (k.clone(), Value::String(s(v)))).collect::<serde_json::Map<_, _>>(),
        "hyperparameters": t.params,
        "hosts": [HOST],
        "current_host": HOST,
        "num_cpus": cpus,
        "num_gpus": 0,
        "module_dir": s(&cwd),
    });
    env.push(("SM_TRAINING_ENV".into(), training_env.to_string()));
    Ok((cwd, env))
}

/// Runs one script trial to the end.
pub(crate) async fn run(
    t: &TrialRun<'_>,
    cancel: watch::Receiver<bool>,
    progress: Arc<dyn Fn(String) + Send + Sync>,
) -> Result<TrialOutput> {
    let Some(command) = t.job.spec.command.clone() else {
        return Err(ProviderError::new(
            ErrorKind::Invalid,
            PROVIDER,
            "training",
            "script mode needs `command`",
        ));
    };
    let regexes = MetricRegexes::compile(t.job)?;
    let (cwd, env) = prepare(t)?;
    let limits = crate::compute::Limits::of(t.job.spec.compute.as_ref());
    let shell = Shell {
        command: command.clone(),
        cwd,
        env,
        log: t.log.clone(),
        limits: Some((t.mlctl.clone(), limits, t.slot)),
        recorded: Some((
            t.procs.clone(),
            format!(
                "script of TrainingJob/{} (run {})",
                t.job.resource, t.run_id
            ),
        )),
    };
    let scraped = Arc::new(Mutex::new(BTreeMap::new()));
    let sink = scraped.clone();
    let mut last_note = std::time::Instant::now() - std::time::Duration::from_secs(10);
    let exit = process::run(
        &shell,
        move |stream, line| {
            regexes.scan(line, &mut sink.lock().unwrap_or_else(|p| p.into_inner()));
            // The latest stdout line is the progress message, at most once a second.
            if stream == Stream::Stdout
                && !line.trim().is_empty()
                && last_note.elapsed().as_secs() >= 1
            {
                last_note = std::time::Instant::now();
                progress(line.chars().take(120).collect());
            }
        },
        cancel,
    )
    .await?;
    let model = t.run_dir.join("model");
    let output = t.run_dir.join("output");
    if !exit.success() {
        let mut reason = exit.describe(&format!("script `{command}`"));
        if let Ok(f) = std::fs::read_to_string(output.join("failure"))
            && !f.trim().is_empty()
        {
            reason = format!("{reason}\nfailure file: {}", f.trim());
        }
        return Err(failed(format!("{reason}\n(full log: {})", t.log.display())));
    }
    let mut metrics = scraped.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for p in [
        model.join("metrics.json"),
        output.join("metrics.json"),
        output.join("data").join("metrics.json"),
    ] {
        read_metrics_json(&p, &mut metrics)?;
    }
    Ok(TrialOutput {
        metrics,
        model_dir: model,
        evaluation: t.rows.as_deref().map(|r| {
            if t.trial {
                r.trial_record()
            } else {
                r.record.clone()
            }
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyperparameters_are_strings_the_sagemaker_way() {
        assert_eq!(hp_string(&Value::from(0.5)), "0.5");
        assert_eq!(hp_string(&Value::from("adam")), "adam");
        assert_eq!(hp_string(&serde_json::json!([1, 2])), "[1,2]");
    }

    #[test]
    fn metrics_json_is_flattened() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.json");
        std::fs::write(
            &p,
            r#"{"rmse": 1.5, "r2": 0.9, "per_class": {"a": 0.1}, "note": "x"}"#,
        )
        .unwrap();
        let mut m = BTreeMap::new();
        read_metrics_json(&p, &mut m).unwrap();
        assert_eq!(m["rmse"], 1.5);
        assert_eq!(m["per_class.a"], 0.1);
        assert!(!m.contains_key("note"));
        read_metrics_json(&dir.path().join("absent.json"), &mut m).unwrap();
    }
}
