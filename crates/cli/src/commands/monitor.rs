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
            report,
        } => {
            let window = Window::parse(&window).map_err(|e| anyhow!(e))?;
            let s = session::open_target(project, &target)?;
            let how = Run {
                project,
                target: &target,
                window,
                fail_on_breach,
                due,
                output,
            };
            let code = run(&s, &monitors, &how)?;
            super::monitor_report::after_run(&s, &monitors, report.as_deref(), output);
            Ok(code)
        }
        MonitorCommand::Feedback {
            monitor,
            labels,
            target,
            output,
        } => {
            let s = session::open_target(project, &target)?;
            feedback(&s, &monitor, &labels, output)
        }
        MonitorCommand::Report(args) => super::monitor_report::report(project, args),
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
        let ResourceSpec::TrainingJob(t) = &get(Kind::TrainingJob, m.from.as_deref()?)?.spec else {
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

/// How `mlctl monitor run` was called.
struct Run<'a> {
    project: &'a Path,
    target: &'a crate::cli::TargetArgs,
    window: Window,
    fail_on_breach: bool,
    due: bool,
    output: Output,
}

fn run(s: &Session, names: &[String], how: &Run<'_>) -> Result<u8> {
    let (window, fail_on_breach, due, output) =
        (how.window, how.fail_on_breach, how.due, how.output);
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
            actions.extend(breach_actions(s, how, &observed, spec, on, &result));
        }
        results.push(result);
    }
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&results)?);
        // The actions beside the JSON, where a person reads them.
        for a in &actions {
            eprintln!("{}", a.line);
        }
    } else {
        for r in &results {
            print_result(r);
        }
        for a in &actions {
            println!("{}", a.line);
        }
        for a in actions.iter().filter(|a| a.failed) {
            eprintln!("mlctl: {}", a.line);
        }
    }
    let breached = results.iter().any(|r| r.verdict == Verdict::Breached);
    let failed = actions.iter().any(|a| a.failed);
    Ok(u8::from((breached && (fail_on_breach || fail)) || failed))
}

/// While it lives, what this process writes to stdout goes to stderr (file descriptor 1 is a
/// copy of 2); dropping it puts stdout back.
struct StdoutToStderr(rustix::fd::OwnedFd);

impl StdoutToStderr {
    fn start() -> Option<StdoutToStderr> {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let saved = rustix::io::dup(rustix::stdio::stdout()).ok()?;
        rustix::stdio::dup2_stdout(rustix::stdio::stderr()).ok()?;
        Some(StdoutToStderr(saved))
    }
}

impl Drop for StdoutToStderr {
    fn drop(&mut self) {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let _ = rustix::stdio::dup2_stdout(&self.0);
    }
}

/// What one breach action did, for the output and the monitor's history.
struct Action {
    line: String,
    failed: bool,
}

/// Carries out a breached monitor's `onBreach` actions: the webhook, the rollback, the retrain
/// (an apply of HEAD, once per run of breaches). Each is recorded in the monitor's history
/// with the breach that caused it. (`fail` is the exit code.)
fn breach_actions(
    s: &Session,
    how: &Run<'_>,
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
        let _to_stderr = (how.output == Output::Json)
            .then(StdoutToStderr::start)
            .flatten();
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
    // One retrain per run of breaches: a drift that persists does not retrain at every
    // evaluation (the run's first breach is in the fingerprint; see `retrain_requests`).
    let first_of_run = || {
        let all =
            s.rt.block_on(s.stack.state.monitor_results(&s.ctx.project, name))
                .unwrap_or_default();
        !all.iter()
            .rev()
            .skip(1)
            .find(|r| r.verdict != Verdict::InsufficientData)
            .is_some_and(|r| r.verdict == Verdict::Breached)
    };
    if let Some(job) = on.retrain.as_ref().filter(|_| !first_of_run()) {
        done.push(Action {
            line: format!(
                "Monitor {name}: TrainingJob/{job} was retrained at the first breach of this run of breaches; not again until the monitor is healthy once"
            ),
            failed: false,
        });
    } else if let Some(job) = &on.retrain {
        // The breach is recorded: the spec's fingerprints now ask for the job once more
        // (`mlctl_core::monitoring::retrain_requests`), and an apply of HEAD retrains it and
        // what depends on it; the new version replaces production only if its gates pass.
        // Under `-o json` stdout carries only the results: the apply's own output goes to
        // stderr meanwhile.
        let _to_stderr = (how.output == Output::Json)
            .then(StdoutToStderr::start)
            .flatten();
        println!(
            "Monitor {name}: retraining TrainingJob/{job}: applying the spec at HEAD to target `{}`",
            s.target_name
        );
        let applied = crate::commands::plan::apply_cmd(
            how.project,
            None,
            how.target,
            &crate::cli::RevArgs {
                rev: "HEAD".into(),
                allow_dirty: false,
            },
            false,
            true,
            &crate::cli::ApplyArgs {
                lock_timeout: "0s".into(),
                concurrency: 4,
            },
        );
        done.push(match applied {
            Ok(0) => Action {
                line: format!("Monitor {name}: retrained TrainingJob/{job} (the apply completed)"),
                failed: false,
            },
            Ok(code) => Action {
                line: format!(
                    "Monitor {name}: retraining TrainingJob/{job}: the apply failed (exit {code}); see its output above"
                ),
                failed: true,
            },
            Err(e) => Action {
                line: format!("Monitor {name}: TrainingJob/{job} was not retrained: {e}"),
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
    // Each action in the monitor's history, with the breach that caused it, beside its record
    // as it is now (an action's apply may just have rewritten it).
    let id = ResourceId::new(Kind::Monitor, name.clone());
    let now = s.rt.block_on(s.stack.state.observe(&s.ctx.project)).ok();
    let current = now.as_deref().unwrap_or(observed);
    if let Some(rec) = current.iter().find(|o| o.id == id) {
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
    let evaluation = monitoring::Evaluation {
        name,
        spec,
        baseline: format!(
            "{dataset}@{}",
            &version.fingerprint[..version.fingerprint.len().min(12)]
        ),
        profile: &profile,
        features: &features,
        // Streamed into the judge below, never held.
        records: &[],
        window,
        now: time::OffsetDateTime::now_utc(),
        commit: s.commit.short_sha.clone(),
        context: monitoring::Context {
            label: dataset_spec.and_then(|d| d.target.as_deref()),
            schema: dataset_spec.and_then(|d| d.schema.as_ref()),
            sampling_percent,
        },
    };
    let mut judge = monitoring::Judge::new(&evaluation);
    s.rt.block_on(s.stack.monitor.for_each_captured(
        &s.ctx,
        &spec.endpoint,
        window.limit(),
        &mut |record| judge.push(&record),
    ))
    .map_err(|e| {
        anyhow!(
            "monitor `{name}`: cannot read what endpoint `{}` captured: {e}",
            spec.endpoint
        )
    })?;
    if let Some(slo) = &spec.slo {
        // The span the window covers: its duration, or since its oldest record.
        let to = evaluation.now;
        let from = match window {
            monitoring::Window::Since(d) => Some(to - d),
            monitoring::Window::Last(_) => judge.oldest(),
        };
        if let Some(from) = from {
            let measured = s
                .rt
                .block_on(
                    s.stack
                        .monitor
                        .endpoint_metrics(&s.ctx, &spec.endpoint, slo, from, to),
                )
                .map_err(|e| {
                    anyhow!(
                        "monitor `{name}`: cannot read the metrics of endpoint `{}`: {e}",
                        spec.endpoint
                    )
                })?;
            if let Some(m) = measured {
                judge.measured(m);
            }
        }
    }
    Ok(judge.finish())
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

/// Live metrics from labels joined to captured predictions.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Feedback {
    monitor: String,
    endpoint: String,
    /// Label rows read.
    labels: usize,
    /// Of them, joined to a captured prediction.
    joined: usize,
    /// Request ids with no captured request (not sampled, or older than what is kept).
    unmatched: usize,
    /// Live metrics over the joined rows (`accuracy`; `mae` and `rmse` for numbers).
    live: std::collections::BTreeMap<String, f64>,
    /// The served version's metrics from training (its registry entry), to compare with.
    training: std::collections::BTreeMap<String, f64>,
    /// The model versions the joined predictions came from.
    versions: Vec<String>,
}

fn feedback(s: &Session, monitor: &str, labels: &Path, output: Output) -> Result<u8> {
    let chosen = monitors(s, &[monitor.to_string()])?;
    let (_, spec) = chosen[0];
    let text = std::fs::read_to_string(labels)
        .map_err(|e| anyhow!("cannot read {}: {e}", labels.display()))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<String> = lines
        .next()
        .ok_or_else(|| {
            anyhow!(
                "{} is empty; it needs a header: requestId,label",
                labels.display()
            )
        })?
        .split(',')
        .map(|h| h.trim().trim_matches('"').to_string())
        .collect();
    let target = baseline_dataset(s, monitor, spec).ok().and_then(|d| {
        match s
            .spec
            .get(&ResourceId::new(Kind::Dataset, d))
            .map(|r| &r.spec)
        {
            Some(ResourceSpec::Dataset(d)) => d.target.clone(),
            _ => None,
        }
    });
    let col = |name: &str| header.iter().position(|h| h == name);
    let id_at = col("requestId").ok_or_else(|| {
        anyhow!(
            "{}: no `requestId` column (it has {}); the endpoint returns each request's id in the `x-request-id` header",
            labels.display(),
            mlctl_spec::suggest::list(&header)
        )
    })?;
    let label_at = col("label")
        .or_else(|| target.as_deref().and_then(col))
        .ok_or_else(|| {
            anyhow!(
                "{}: no label column: name it `label`{} (it has {})",
                labels.display(),
                target
                    .as_deref()
                    .map(|t| format!(" or `{t}`"))
                    .unwrap_or_default(),
                mlctl_spec::suggest::list(&header)
            )
        })?;
    let row_at = col("row");
    let lines: Vec<&str> = lines.collect();
    let wanted: std::collections::HashSet<&str> = lines
        .iter()
        .filter_map(|l| l.split(',').nth(id_at))
        .map(|c| c.trim().trim_matches('"'))
        .collect();
    // requestId -> (predictions, model, version), for the labelled requests only: the capture
    // is streamed, not held.
    let mut by_id: std::collections::HashMap<String, (serde_json::Value, String, String)> =
        std::collections::HashMap::new();
    s.rt.block_on(s.stack.monitor.for_each_captured(
        &s.ctx,
        &spec.endpoint,
        Window::MAX_RECORDS,
        &mut |mut r| {
            let Some(id) = r["requestId"].as_str().filter(|id| wanted.contains(id)) else {
                return;
            };
            let id = id.to_string();
            if let Some(p) = r.get_mut("predictions").map(serde_json::Value::take) {
                let text = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                by_id.insert(id, (p, text("model"), text("version")));
            }
        },
    ))
    .map_err(|e| {
        anyhow!(
            "cannot read what endpoint `{}` captured: {e}",
            spec.endpoint
        )
    })?;
    let (mut n, mut joined, mut unmatched, mut correct) = (0usize, 0usize, 0usize, 0usize);
    let (mut abs, mut sq, mut numeric) = (0.0f64, 0.0f64, true);
    let mut versions = std::collections::BTreeSet::new();
    let mut model = None;
    let mut ambiguous = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        n += 1;
        let cells: Vec<&str> = line
            .split(',')
            .map(|c| c.trim().trim_matches('"'))
            .collect();
        let (Some(id), Some(label)) = (cells.get(id_at), cells.get(label_at)) else {
            bail!(
                "{} line {}: fewer cells than the header has",
                labels.display(),
                i + 2
            );
        };
        let Some((preds, m, v)) = by_id.get(*id) else {
            unmatched += 1;
            continue;
        };
        let preds = preds.as_array().map(Vec::as_slice).unwrap_or_default();
        let row = match row_at.and_then(|r| cells.get(r)) {
            Some(r) => r.parse::<usize>().map_err(|_| {
                anyhow!(
                    "{} line {}: `row` must be a number, not `{r}`",
                    labels.display(),
                    i + 2
                )
            })?,
            None if preds.len() <= 1 => 0,
            None => {
                ambiguous.push(id.to_string());
                continue;
            }
        };
        let Some(pred) = preds.get(row) else {
            unmatched += 1;
            continue;
        };
        joined += 1;
        versions.insert(format!("{m} v{v}"));
        model.get_or_insert_with(|| (m.to_string(), v.to_string()));
        let pred_text = pred
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| pred.to_string());
        if pred_text == *label {
            correct += 1;
        }
        match (pred.as_f64(), label.parse::<f64>()) {
            (Some(p), Ok(y)) => {
                abs += (p - y).abs();
                sq += (p - y) * (p - y);
            }
            _ => numeric = false,
        }
    }
    if !ambiguous.is_empty() {
        bail!(
            "{}: {} labels name a request of several rows without saying which ({}); add a `row` column (0 for the first row of the request)",
            labels.display(),
            ambiguous.len(),
            mlctl_spec::suggest::list(ambiguous.iter().take(3))
        );
    }
    let mut live = std::collections::BTreeMap::new();
    if joined > 0 {
        live.insert("accuracy".to_string(), correct as f64 / joined as f64);
        if numeric {
            live.insert("mae".to_string(), abs / joined as f64);
            live.insert("rmse".to_string(), (sq / joined as f64).sqrt());
        }
    }
    let training = match &model {
        Some((m, v)) => {
            s.rt.block_on(s.stack.registry.versions(&s.ctx, m))
                .ok()
                .and_then(|all| all.into_iter().find(|x| x.version.to_string() == *v))
                .map(|x| x.metrics)
                .unwrap_or_default()
        }
        None => Default::default(),
    };
    let fb = Feedback {
        monitor: monitor.to_string(),
        endpoint: spec.endpoint.clone(),
        labels: n,
        joined,
        unmatched,
        live,
        training,
        versions: versions.into_iter().collect(),
    };
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&fb)?);
    } else {
        println!(
            "Monitor {monitor} (endpoint {}): {joined} of {n} labels joined to captured predictions ({unmatched} not captured)",
            fb.endpoint
        );
        for (k, v) in &fb.live {
            match fb.training.get(k) {
                Some(t) => println!("  {k:<10} live {v:.4}   training {t:.4}   ({:+.4})", v - t),
                None => println!("  {k:<10} live {v:.4}"),
            }
        }
        if joined == 0 {
            println!(
                "  No label matched a captured request: check the ids, and that capture is on (samplingPercent)."
            );
        }
    }
    Ok(0)
}
