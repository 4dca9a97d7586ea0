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
            due,
            target,
            output,
        } => {
            let window = Window::parse(&window).map_err(|e| anyhow!(e))?;
            let s = session::open_target(project, &target)?;
            run(&s, &monitors, window, fail_on_breach, due, output)
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
    due: bool,
    output: Output,
) -> Result<u8> {
    let mut chosen = monitors(s, names)?;
    if chosen.is_empty() {
        println!("No Monitors in the spec at {}.", s.commit.short_sha);
        return Ok(0);
    }
    if due {
        let now = time::OffsetDateTime::now_utc();
        let mut kept = Vec::new();
        for (name, spec) in chosen {
            let last =
                s.rt.block_on(s.stack.state.monitor_results(&s.ctx.project, name))
                    .map_err(|e| anyhow!("cannot read the results of monitor `{name}`: {e}"))?
                    .pop();
            let at = last.as_ref().and_then(|r| {
                time::OffsetDateTime::parse(&r.at, &time::format_description::well_known::Rfc3339)
                    .ok()
            });
            let schedule = spec.schedule.as_deref().unwrap_or("every 1h");
            if monitoring::schedule::is_due(schedule, at, now)
                .map_err(|e| anyhow!("monitor `{name}`: schedule `{schedule}`: {e}"))?
            {
                kept.push((name, spec));
            } else if output != Output::Json {
                println!(
                    "Monitor {name} is not due (schedule `{schedule}`, last evaluated {}).",
                    last.map(|r| r.at).unwrap_or_default()
                );
            }
        }
        chosen = kept;
    }
    let observed =
        s.rt.block_on(s.stack.state.observe(&s.ctx.project))
            .map_err(|e| anyhow!("cannot read the state of target `{}`: {e}", s.target_name))?;
    let mut results = Vec::new();
    let mut actions = Vec::new();
    let mut fail = false;
    for (name, spec) in chosen {
        let result = evaluate_one(s, &observed, name, spec, window)?;
        s.rt.block_on(s.stack.state.record_monitor_result(&s.ctx.project, &result))
            .map_err(|e| anyhow!("monitor `{name}`: cannot record the result: {e}"))?;
        if result.verdict == Verdict::Breached
            && let Some(on) = &spec.on_breach
        {
            fail |= on.fail == Some(true);
            actions.extend(breach_actions(s, &observed, spec, on, &result));
        }
        results.push(result);
    }
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        for r in &results {
            print_result(r);
        }
        for a in &actions {
            println!("{}", a.line);
        }
    }
    for a in actions.iter().filter(|a| a.failed) {
        eprintln!("mlctl: {}", a.line);
    }
    let breached = results.iter().any(|r| r.verdict == Verdict::Breached);
    let failed = actions.iter().any(|a| a.failed);
    Ok(u8::from((breached && (fail_on_breach || fail)) || failed))
}

/// What one breach action did, for the output and the monitor's history.
struct Action {
    line: String,
    failed: bool,
}

/// Carries out a breached monitor's `onBreach` actions: the webhook, the rollback. Each is
/// recorded in the monitor's history with the breach that caused it. (`fail` is the exit code.)
fn breach_actions(
    s: &Session,
    observed: &[ObservedResource],
    spec: &MonitorSpec,
    on: &mlctl_spec::OnBreach,
    result: &MonitorResult,
) -> Vec<Action> {
    let name = &result.monitor;
    let breach = format!("breach at {}: {}", result.at, result.summary);
    let mut done = Vec::new();
    if let Some(n) = &on.notify {
        done.push(match notify(s, name, &n.webhook, result) {
            Ok(status) => Action {
                line: format!("Monitor {name}: notified the webhook (HTTP {status})"),
                failed: false,
            },
            Err(e) => Action {
                line: format!("Monitor {name}: the webhook was not notified: {e}"),
                failed: true,
            },
        });
    }
    if on.rollback == Some(true) {
        let why = format!("by monitor `{name}` on a {breach}");
        let rolled = crate::commands::plan::with_lock(s, "0s", |_| {
            crate::commands::registry::rollback_locked(s, &spec.endpoint, None, &why)
        });
        done.push(match rolled {
            Ok(_) => Action {
                line: format!(
                    "Monitor {name}: rolled endpoint `{}` back to the version it served before",
                    spec.endpoint
                ),
                failed: false,
            },
            Err(e) => Action {
                line: format!(
                    "Monitor {name}: endpoint `{}` was not rolled back: {e}",
                    spec.endpoint
                ),
                failed: true,
            },
        });
    }
    if on.fail == Some(true) {
        done.push(Action {
            line: format!("Monitor {name}: onBreach.fail: exiting 1"),
            failed: false,
        });
    }
    // Each action in the monitor's history, with the breach that caused it.
    let id = ResourceId::new(Kind::Monitor, name.clone());
    if let Some(rec) = observed.iter().find(|o| o.id == id) {
        for a in &done {
            let entry = mlctl_core::HistoryEntry {
                format_version: mlctl_core::state::FORMAT_VERSION,
                id: id.clone(),
                action: "on-breach".into(),
                fingerprint: rec.fingerprint.clone(),
                commit: result.commit.clone(),
                at: result.at.clone(),
                detail: mlctl_spec::suggest::clip(&format!("{} ({breach})", a.line), 2000)
                    .into_owned(),
            };
            if let Err(e) =
                s.rt.block_on(s.stack.state.record(&s.ctx.project, rec, &entry))
            {
                eprintln!("mlctl: monitor `{name}`: the action was not recorded in history: {e}");
            }
        }
    }
    done
}

/// POSTs the breach to the webhook (`${env:NAME}`), as JSON a Slack incoming webhook takes
/// (`text`) with the result beside it, retrying a failure (connection, 429, 5xx) with backoff.
/// Neither the URL nor anything of it is ever printed: it carries a token.
fn notify(s: &Session, monitor: &str, webhook: &str, result: &MonitorResult) -> Result<u16> {
    let url = mlctl_spec::env::resolve(webhook, |n| std::env::var(n).ok())
        .map_err(|e| anyhow!("onBreach.notify.webhook: {e}"))?;
    let drifted: Vec<&str> = result
        .features
        .iter()
        .filter(|f| f.drifted)
        .map(|f| f.feature.as_str())
        .collect();
    let body = serde_json::json!({
        "text": format!(
            ":rotating_light: mlctl monitor `{monitor}` on endpoint `{}` is breached: {}",
            result.endpoint, result.summary
        ),
        "monitor": monitor,
        "endpoint": result.endpoint,
        "verdict": result.verdict,
        "drifted": drifted,
        "result": result,
    });
    let _in_runtime = s.rt.enter();
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| anyhow!("cannot make an HTTP client: {e}"))?;
    let mut delay = std::time::Duration::from_millis(500);
    let mut last = String::new();
    for attempt in 1..=4 {
        let sent = s.rt.block_on(client.post(&url).json(&body).send());
        match sent {
            Ok(r) if r.status().is_success() => return Ok(r.status().as_u16()),
            Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => {
                last = format!("it answered HTTP {}", r.status().as_u16());
            }
            Ok(r) => {
                return Err(anyhow!(
                    "it answered HTTP {}; check the URL in {webhook}",
                    r.status().as_u16()
                ));
            }
            // The error's text may quote the URL: only its kind is said.
            Err(e) => {
                last = if e.is_timeout() {
                    "it did not answer within 10 s".into()
                } else if e.is_connect() {
                    "it could not be reached".into()
                } else {
                    "the request failed".into()
                };
            }
        }
        if attempt < 4 {
            std::thread::sleep(delay);
            delay *= 2;
        }
    }
    Err(anyhow!("{last}, 4 times; check the URL in {webhook}"))
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
    }))
}

fn print_result(r: &MonitorResult) {
    println!(
        "Monitor {} (endpoint {}): {}",
        r.monitor, r.endpoint, r.summary
    );
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
