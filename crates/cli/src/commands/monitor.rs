//! `mlctl monitor run` and `mlctl monitor history`: evaluate Monitors now, and read back what
//! they found.
//!
//! The evaluation is `mlctl_core::monitoring`, the same on every target: the target supplies
//! the endpoint's captured records and the baseline dataset's stored profile; each result is
//! appended to the monitor's time series in the target's state store.

use crate::cli::{MonitorCommand, Output};
use crate::session::{self, Session};
use anyhow::{Result, anyhow, bail};
use mlctl_core::monitoring::{self, MonitorResult, Verdict, Window};
use mlctl_core::{DatasetVersion, ObservedResource};
use mlctl_spec::{Kind, MonitorSpec, ResourceId, ResourceSpec};
use std::path::Path;

/// `mlctl monitor ...`.
pub fn monitor(project: &Path, cmd: MonitorCommand) -> Result<u8> {
    match cmd {
        MonitorCommand::Run {
            monitors,
            window,
            fail_on_breach,
            target,
            output,
        } => {
            let window = Window::parse(&window).map_err(|e| anyhow!(e))?;
            let s = session::open_target(project, &target)?;
            run(&s, &monitors, window, fail_on_breach, output)
        }
        MonitorCommand::History {
            monitor,
            target,
            output,
        } => {
            let s = session::open_target(project, &target)?;
            history(&s, &monitor, output)
        }
    }
}

/// The Monitors of the spec named in `names` (all of them when empty), or an error naming
/// the unknown ones and what there is.
fn monitors<'a>(s: &'a Session, names: &[String]) -> Result<Vec<(&'a str, &'a MonitorSpec)>> {
    let all: Vec<(&str, &MonitorSpec)> = s
        .spec
        .resources
        .iter()
        .filter_map(|r| match &r.spec {
            ResourceSpec::Monitor(m) => Some((r.id.name.as_str(), m)),
            _ => None,
        })
        .collect();
    let unknown: Vec<&String> = names
        .iter()
        .filter(|n| all.iter().all(|(m, _)| m != n))
        .collect();
    if !unknown.is_empty() {
        bail!(
            "no Monitor {} in the spec at {} (it has {})",
            mlctl_spec::suggest::list(unknown.iter().map(|n| format!("`{n}`"))),
            s.commit.short_sha,
            if all.is_empty() {
                "none".to_string()
            } else {
                mlctl_spec::suggest::list(all.iter().map(|(n, _)| format!("`{n}`")))
            }
        );
    }
    Ok(all
        .into_iter()
        .filter(|(n, _)| names.is_empty() || names.iter().any(|x| x == n))
        .collect())
}

/// The Dataset a monitor compares with: its `baseline`, or the training dataset of the model
/// its endpoint serves.
fn baseline_dataset(s: &Session, name: &str, spec: &MonitorSpec) -> Result<String> {
    if let Some(b) = &spec.baseline {
        return Ok(b.clone());
    }
    let get = |kind: Kind, n: &str| s.spec.get(&ResourceId::new(kind, n.to_string()));
    let chain = || -> Option<String> {
        let ResourceSpec::Endpoint(e) = &get(Kind::Endpoint, &spec.endpoint)?.spec else {
            return None;
        };
        let ResourceSpec::Model(m) = &get(Kind::Model, &e.model)?.spec else {
            return None;
        };
        let ResourceSpec::TrainingJob(t) = &get(Kind::TrainingJob, &m.from)?.spec else {
            return None;
        };
        Some(t.dataset.clone())
    };
    chain().ok_or_else(|| {
        anyhow!(
            "monitor `{name}`: cannot tell its baseline (endpoint `{}` -> model -> training job -> dataset is not in the spec); give it `baseline: <Dataset>`",
            spec.endpoint
        )
    })
}

/// The feature columns of a dataset: its columns without the label (`target`) and columns
/// whose schema role is not `feature` (ids, weights, ignored ones).
fn feature_columns(s: &Session, dataset: &str, version: &DatasetVersion) -> Vec<String> {
    let spec = match s
        .spec
        .get(&ResourceId::new(Kind::Dataset, dataset.to_string()))
        .map(|r| &r.spec)
    {
        Some(ResourceSpec::Dataset(d)) => Some(d),
        _ => None,
    };
    let label = spec.and_then(|d| d.target.clone());
    let not_features: Vec<String> = spec
        .and_then(|d| d.schema.as_ref())
        .map(|schema| {
            schema
                .columns
                .iter()
                .filter(|c| c.role.is_some_and(|r| r != mlctl_spec::ColumnRole::Feature))
                .map(|c| c.name.clone())
                .collect()
        })
        .unwrap_or_default();
    version
        .columns
        .iter()
        .filter(|c| Some(*c) != label.as_ref() && !not_features.contains(c))
        .cloned()
        .collect()
}

fn run(
    s: &Session,
    names: &[String],
    window: Window,
    fail_on_breach: bool,
    output: Output,
) -> Result<u8> {
    let chosen = monitors(s, names)?;
    if chosen.is_empty() {
        println!("No Monitors in the spec at {}.", s.commit.short_sha);
        return Ok(0);
    }
    let observed =
        s.rt.block_on(s.stack.state.observe(&s.ctx.project))
            .map_err(|e| anyhow!("cannot read the state of target `{}`: {e}", s.target_name))?;
    let mut results = Vec::new();
    for (name, spec) in chosen {
        let result = evaluate_one(s, &observed, name, spec, window)?;
        s.rt.block_on(s.stack.state.record_monitor_result(&s.ctx.project, &result))
            .map_err(|e| anyhow!("monitor `{name}`: cannot record the result: {e}"))?;
        results.push(result);
    }
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        for r in &results {
            print_result(r);
        }
    }
    let breached = results.iter().any(|r| r.verdict == Verdict::Breached);
    Ok(u8::from(breached && fail_on_breach))
}

fn evaluate_one(
    s: &Session,
    observed: &[ObservedResource],
    name: &str,
    spec: &MonitorSpec,
    window: Window,
) -> Result<MonitorResult> {
    let dataset = baseline_dataset(s, name, spec)?;
    let id = ResourceId::new(Kind::Dataset, dataset.clone());
    let version: DatasetVersion = observed
        .iter()
        .find(|o| o.id == id)
        .and_then(|o| serde_json::from_value(o.outputs.clone()).ok())
        .ok_or_else(|| {
            anyhow!(
                "monitor `{name}`: its baseline Dataset `{dataset}` is not on target `{}`; run `mlctl apply` first",
                s.target_name
            )
        })?;
    let bytes = s
        .rt
        .block_on(s.stack.data.read_profile(&s.ctx, &version))
        .map_err(|e| anyhow!("monitor `{name}`: {e}"))?
        .ok_or_else(|| {
            anyhow!(
                "monitor `{name}`: the baseline Dataset `{dataset}` has no stored profile on target `{}`; apply it again to store one",
                s.target_name
            )
        })?;
    let profile: mlctl_ml::profile::Profile = serde_json::from_slice(&bytes)
        .map_err(|e| anyhow!("monitor `{name}`: the profile of `{dataset}` is unreadable: {e}"))?;
    let features = feature_columns(s, &dataset, &version);
    let dataset_spec = match s
        .spec
        .get(&ResourceId::new(Kind::Dataset, dataset.clone()))
        .map(|r| &r.spec)
    {
        Some(ResourceSpec::Dataset(d)) => Some(d),
        _ => None,
    };
    let sampling_percent = match s
        .spec
        .get(&ResourceId::new(Kind::Endpoint, spec.endpoint.clone()))
        .map(|r| &r.spec)
    {
        Some(ResourceSpec::Endpoint(e)) => e.capture.as_ref().map(|c| c.sampling_percent),
        _ => None,
    };
    let records =
        s.rt.block_on(
            s.stack
                .monitor
                .captured(&s.ctx, &spec.endpoint, window.limit()),
        )
        .map_err(|e| {
            anyhow!(
                "monitor `{name}`: cannot read what endpoint `{}` captured: {e}",
                spec.endpoint
            )
        })?;
    Ok(monitoring::evaluate(&monitoring::Evaluation {
        name,
        spec,
        baseline: format!(
            "{dataset}@{}",
            &version.fingerprint[..version.fingerprint.len().min(12)]
        ),
        profile: &profile,
        features: &features,
        records: &records,
        window,
        now: time::OffsetDateTime::now_utc(),
        commit: s.commit.short_sha.clone(),
        context: monitoring::Context {
            label: dataset_spec.and_then(|d| d.target.as_deref()),
            schema: dataset_spec.and_then(|d| d.schema.as_ref()),
            sampling_percent,
        },
    }))
}

fn print_result(r: &MonitorResult) {
    println!(
        "Monitor {} (endpoint {}): {}",
        r.monitor, r.endpoint, r.summary
    );
    print_drift(r);
    super::monitor_quality::print(r);
}

fn print_drift(r: &MonitorResult) {
    if r.features.is_empty() {
        return;
    }
    println!(
        "  {:<24} {:<16} {:>10} {:>10}  VERDICT",
        "FEATURE", "METHOD", "STATISTIC", "THRESHOLD"
    );
    for f in &r.features {
        // A test is judged on its p-value, a distance on the statistic.
        let stat = match (f.p_value, f.statistic) {
            (Some(p), _) => format!("p={p:.4}"),
            (None, Some(x)) => format!("{x:.4}"),
            (None, None) => "-".to_string(),
        };
        let verdict = if f.drifted { "drift" } else { "ok" };
        print!(
            "  {:<24} {:<16} {:>10} {:>10}  {verdict}",
            f.feature, f.method, stat, f.threshold
        );
        if let Some(n) = &f.note {
            print!(" ({n})");
        }
        println!();
    }
}

fn history(s: &Session, monitor: &str, output: Output) -> Result<u8> {
    let results =
        s.rt.block_on(s.stack.state.monitor_results(&s.ctx.project, monitor))
            .map_err(|e| anyhow!("cannot read the results of monitor `{monitor}`: {e}"))?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&results)?);
        return Ok(0);
    }
    if results.is_empty() {
        println!(
            "Monitor `{monitor}` was never evaluated on target `{}`; `mlctl monitor run {monitor}` evaluates it.",
            s.target_name
        );
        return Ok(0);
    }
    println!(
        "{:<26} {:<8} {:<18} {:>8}  SUMMARY",
        "AT", "COMMIT", "VERDICT", "ROWS"
    );
    for r in &results {
        println!(
            "{:<26} {:<8} {:<18} {:>8}  {}",
            r.at,
            r.commit,
            r.verdict.to_string(),
            r.rows,
            r.summary
        );
    }
    Ok(0)
}
