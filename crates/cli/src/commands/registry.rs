//! `mlctl models ...`, `mlctl runs ...`, `mlctl rollback`.

use crate::cli::{ModelsCommand, Output, RunsCommand, TargetArgs};
use crate::session::{self, Session};
use anyhow::{Context, Result, anyhow, bail};
use mlctl_core::{
    ApprovalStatus, Decision, EndpointStatus, HistoryEntry, ModelVersion, RunRecord, outputs,
};
use mlctl_spec::Stage;
use mlctl_spec::{Kind, ResourceId};
use std::collections::BTreeSet;
use std::path::Path;

fn metrics_line(m: &std::collections::BTreeMap<String, f64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v:.4}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first few metrics, for one-line listings (`show` prints them all).
fn metrics_short(m: &std::collections::BTreeMap<String, f64>) -> String {
    let mut s = m
        .iter()
        .take(4)
        .map(|(k, v)| format!("{k}={v:.4}"))
        .collect::<Vec<_>>()
        .join(" ");
    if m.len() > 4 {
        s.push_str(&format!(" (+{} more)", m.len() - 4));
    }
    s
}

/// Model names: from the spec, plus any the target's state knows.
pub(crate) fn model_names(s: &Session) -> Vec<String> {
    let mut names: BTreeSet<String> = s
        .spec
        .resources
        .iter()
        .filter(|r| r.id.kind == Kind::Model)
        .map(|r| r.id.name.clone())
        .collect();
    if let Ok(obs) = s.rt.block_on(s.stack.state.observe(&s.ctx.project)) {
        names.extend(
            obs.into_iter()
                .filter(|o| o.id.kind == Kind::Model)
                .map(|o| o.id.name),
        );
    }
    names.into_iter().collect()
}

fn versions(s: &Session, model: &str) -> Result<Vec<ModelVersion>> {
    s.rt.block_on(s.stack.registry.versions(&s.ctx, model))
        .map_err(|e| anyhow!("{e}"))
}

/// `mlctl models ...`.
pub fn models(project: &Path, cmd: ModelsCommand) -> Result<u8> {
    match cmd {
        ModelsCommand::List {
            name,
            target,
            output,
        } => {
            let s = session::open_target(project, &target)?;
            let names = match name {
                Some(n) => vec![n],
                None => model_names(&s),
            };
            let mut all = Vec::new();
            for n in &names {
                all.extend(versions(&s, n)?);
            }
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&all)?);
                return Ok(0);
            }
            if all.is_empty() {
                println!("No registered models on target `{}`.", s.target_name);
                return Ok(0);
            }
            println!(
                "{:<20} {:>7} {:<11} {:<22} {:<26} METRICS",
                "MODEL", "VERSION", "STAGE", "APPROVAL", "CREATED"
            );
            for v in all {
                println!(
                    "{:<20} {:>7} {:<11} {:<22} {:<26} {}",
                    v.model,
                    v.version,
                    v.stage.as_str(),
                    v.approval.as_str(),
                    v.created_at,
                    metrics_short(&v.metrics)
                        + if v.lineage.contains_key(mlctl_core::METRICS_ORIGIN) {
                            " (not measured)"
                        } else {
                            ""
                        }
                );
            }
            Ok(0)
        }
        ModelsCommand::Export {
            model,
            dir,
            format,
            target,
        } => export_model(project, &model, &dir, format, &target),
        ModelsCommand::Show {
            name,
            model_version: version,
            target,
            output,
        } => {
            let s = session::open_target(project, &target)?;
            let mut vs = versions(&s, &name)?;
            if vs.is_empty() {
                bail!(
                    "model `{name}` has no versions on target `{}`; known models: {}",
                    s.target_name,
                    model_names(&s).join(", ")
                );
            }
            if let Some(v) = version {
                vs.retain(|x| x.version == v);
                if vs.is_empty() {
                    bail!("model `{name}` has no version {v}");
                }
            }
            // `None` (JSON null) when the registry keeps no stage history, which is not the
            // same as a model whose stage never changed.
            let history = if s.stack.registry.capabilities().stage_history {
                Some(
                    s.rt.block_on(s.stack.registry.stage_history(&s.ctx, &name))
                        .map_err(|e| anyhow!("{e}"))?,
                )
            } else {
                None
            };
            if output == Output::Json {
                // Each version with its signature (`null` when the artifact carries none).
                let versions: Vec<serde_json::Value> = vs
                    .iter()
                    .map(|v| {
                        let mut j = serde_json::to_value(v).unwrap_or_default();
                        if let Some(o) = j.as_object_mut() {
                            o.insert(
                                "signature".into(),
                                signature_of(&v.artifact_uri)
                                    .map_or(serde_json::Value::Null, |m| signature_json(&m)),
                            );
                        }
                        j
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"versions": versions, "stageHistory": history})
                    )?
                );
                return Ok(0);
            }
            for v in &vs {
                println!(
                    "{} v{} ({}{})",
                    v.model,
                    v.version,
                    v.stage.as_str(),
                    match v.approval {
                        ApprovalStatus::Approved => ", approved",
                        ApprovalStatus::PendingManualApproval => ", waiting for approval",
                        ApprovalStatus::Rejected => ", rejected",
                    }
                );
                println!("  created:   {}", v.created_at);
                println!("  artifact:  {}", v.artifact_uri);
                println!("  metrics:   {}", metrics_line(&v.metrics));
                if let Some(origin) = v.lineage.get(mlctl_core::METRICS_ORIGIN) {
                    println!("             NOT MEASURED: {origin}");
                }
                for (k, val) in v
                    .lineage
                    .iter()
                    .filter(|(k, _)| *k != mlctl_core::METRICS_ORIGIN)
                {
                    println!("  {k:<10} {val}");
                }
                match signature_of(&v.artifact_uri) {
                    Some(m) => print!("{}", signature_text(&m)),
                    None => println!(
                        "  signature: none (not an mlctl model directory: a script-mode model or a remote artifact)"
                    ),
                }
                println!();
            }
            match &history {
                None => println!("(target `{}` keeps no stage history)", s.target_name),
                Some(h) if h.is_empty() => {}
                Some(_) => println!("Stage history:"),
            }
            for h in history.into_iter().flatten() {
                println!(
                    "  {}  v{}: {} -> {}",
                    h.at,
                    h.version,
                    h.from.map(|f| f.as_str()).unwrap_or("(new)"),
                    h.to.as_str()
                );
            }
            Ok(0)
        }
        ModelsCommand::Approve {
            name,
            model_version,
            target,
            lock_timeout,
        } => decide(
            project,
            &name,
            model_version,
            &target,
            &lock_timeout,
            Decision::Approve,
        ),
        ModelsCommand::Reject {
            name,
            model_version,
            target,
            lock_timeout,
        } => decide(
            project,
            &name,
            model_version,
            &target,
            &lock_timeout,
            Decision::Reject,
        ),
    }
}

/// `mlctl models approve|reject MODEL VERSION`: records the decision in the target's
/// registry, under the target's lock (an apply reading the version meanwhile would act on a
/// decision half made).
fn decide(
    project: &Path,
    name: &str,
    version: u32,
    target: &TargetArgs,
    lock_timeout: &str,
    decision: Decision,
) -> Result<u8> {
    let s = session::open_target(project, target)?;
    let v = crate::commands::plan::with_lock(&s, lock_timeout, |_| {
        s.rt.block_on(s.stack.registry.decide(&s.ctx, name, version, decision))
            .map_err(|e| anyhow!("{e}"))
    })?;
    match decision {
        Decision::Approve => println!(
            "Approved {} v{} (in {}). The next `mlctl apply` promotes and deploys it as the spec says; no change to the spec is needed.",
            v.model,
            v.version,
            v.stage.as_str()
        ),
        Decision::Reject => println!(
            "Rejected {} v{}: it will never be promoted or deployed. To register a new version, change the training or its data and apply.",
            v.model, v.version
        ),
    }
    Ok(0)
}

/// Feature importance rows `mlctl runs show` prints (`--output json` has them all).
const SHOW_IMPORTANCE: usize = 10;

/// What training reported beyond metrics: the rounds early stopping kept and the feature
/// importance.
fn print_training(e: &mlctl_core::components::Evaluation) {
    if let Some(es) = &e.early_stopping {
        println!(
            "  early stopping: kept {} of {} rounds trained (patience {}; validation loss {:.6} at the best round)",
            es.best_round, es.rounds_trained, es.patience, es.best_loss
        );
    }
    if e.importance.is_empty() {
        return;
    }
    let perm = e.importance.iter().any(|i| i.permutation.is_some());
    let gain = e.importance.iter().any(|i| i.gain.is_some());
    println!(
        "  importance ({}{}{}):",
        if gain {
            "gain: share of the split gain"
        } else {
            ""
        },
        if gain && perm { "; " } else { "" },
        if perm {
            format!(
                "permutation: fall of accuracy (R² for a regressor) when the column is shuffled in the {} rows, mean ± sd of {} shuffles",
                e.scored_on,
                mlctl_ml::importance::REPEATS
            )
        } else {
            String::new()
        }
    );
    let width = e
        .importance
        .iter()
        .take(SHOW_IMPORTANCE)
        .map(|i| i.feature.chars().count())
        .max()
        .unwrap_or(0)
        .max(7);
    println!(
        "    {:<width$} {:>8} {:>18}",
        "FEATURE", "GAIN", "PERMUTATION"
    );
    for i in e.importance.iter().take(SHOW_IMPORTANCE) {
        let g = i.gain.map_or("-".to_string(), |g| format!("{g:.4}"));
        let p = match (i.permutation, i.permutation_std) {
            (Some(m), Some(sd)) => format!("{m:.4} ± {sd:.4}"),
            (Some(m), None) => format!("{m:.4}"),
            _ => "-".to_string(),
        };
        println!("    {:<width$} {g:>8} {p:>18}", i.feature);
    }
    if e.importance.len() > SHOW_IMPORTANCE {
        println!(
            "    ... and {} more (`--output json` lists them all)",
            e.importance.len() - SHOW_IMPORTANCE
        );
    }
}

/// Lines of a run's log that `mlctl runs show` prints.
const SHOW_LOG_LINES: usize = 20;

/// The last `n` lines of `log`, and how many it has.
fn log_tail(log: &str, n: usize) -> (Vec<&str>, usize) {
    let lines: Vec<&str> = log.lines().collect();
    let total = lines.len();
    (lines[total.saturating_sub(n)..].to_vec(), total)
}

fn find_run<'a>(runs: &'a [RunRecord], id: &str) -> Result<&'a RunRecord> {
    let found: Vec<&RunRecord> = runs.iter().filter(|r| r.id.starts_with(id)).collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => bail!("no run with id `{id}`; `mlctl runs list` shows them"),
        _ => bail!(
            "run id prefix `{id}` is ambiguous ({} runs); give more characters",
            found.len()
        ),
    }
}

/// `mlctl runs ...`.
pub fn runs(project: &Path, cmd: RunsCommand) -> Result<u8> {
    let target = match &cmd {
        RunsCommand::List { target, .. }
        | RunsCommand::Show { target, .. }
        | RunsCommand::Logs { target, .. }
        | RunsCommand::Compare { target, .. } => target.clone(),
    };
    let s = session::open_target(project, &target)?;
    let job = match &cmd {
        RunsCommand::List { job, .. } => job.clone(),
        _ => None,
    };
    if !s.stack.trainer.capabilities().runs {
        bail!(
            "the trainer of target `{}` ({}) does not track runs; the registry (`mlctl models show`) still has each version's metrics and lineage",
            s.target_name,
            s.stack.provider
        );
    }
    let runs =
        s.rt.block_on(s.stack.trainer.runs(&s.ctx, job.as_deref()))
            .map_err(|e| anyhow!("{e}"))?;
    match cmd {
        RunsCommand::List { output, .. } => {
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
                return Ok(0);
            }
            if runs.is_empty() {
                println!("No runs on target `{}`.", s.target_name);
                return Ok(0);
            }
            println!(
                "{:<14} {:<18} {:<10} {:<8} {:>8} METRICS",
                "RUN", "JOB", "STATUS", "COMMIT", "SECONDS"
            );
            for r in &runs {
                println!(
                    "{:<14} {:<18} {:<10} {:<8} {:>8.2} {}",
                    &r.id[..r.id.len().min(12)],
                    r.resource,
                    r.status,
                    &r.commit[..r.commit.len().min(7)],
                    r.duration_secs,
                    metrics_short(&r.metrics)
                );
            }
            Ok(0)
        }
        RunsCommand::Show { id, output, .. } => {
            let r = find_run(&runs, &id)?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(r)?);
                return Ok(0);
            }
            println!("run {} ({}, job {})", r.id, r.status, r.job_name);
            println!("  training job: {}", r.resource);
            if let Some(p) = &r.parent {
                println!("  trial of:     {p}");
            }
            println!("  commit:       {}", r.commit);
            println!(
                "  started:      {}  ({:.2}s)",
                r.started_at, r.duration_secs
            );
            println!("  data digest:  {}", r.data_digest);
            if let Some(c) = &r.code_digest {
                println!("  code digest:  {c}");
            }
            if let Some(e) = &r.evaluation {
                println!("  rows:");
                println!("    train:      {}", e.train_rows);
                if let (Some(n), Some(from)) = (e.validation_rows, &e.validation_from) {
                    println!("    validation: {n} ({from})");
                }
                println!("    test:       {} ({})", e.test_rows, e.test_from);
                println!("    seed:       {}", e.seed);
                println!(
                    "    scored on:  {}{}",
                    e.scored_on,
                    if e.scored_on == "validation" {
                        " (a tuning trial: candidates are compared on validation rows; only the chosen one is scored on test)"
                    } else {
                        " (held out: what gates judge)"
                    }
                );
                if e.data_digest != r.data_digest {
                    println!("    data digest: {}", e.data_digest);
                }
                print_training(e);
            }
            println!("  params:");
            for (k, v) in &r.params {
                println!("    {k} = {v}");
            }
            println!("  metrics:");
            for (k, v) in &r.metrics {
                println!("    {k} = {v:.6}");
            }
            for a in &r.artifacts {
                println!("  artifact:     {a}");
            }
            if s.stack.trainer.capabilities().logs {
                let id = &r.id[..r.id.len().min(12)];
                match s.rt.block_on(s.stack.trainer.logs(&s.ctx, &r.job_name)) {
                    Ok(log) => {
                        let (shown, total) = log_tail(&log, SHOW_LOG_LINES);
                        if total == 0 {
                            println!("  log:          empty");
                        } else if shown.len() < total {
                            println!(
                                "  log (last {} of {total} lines; `mlctl runs logs {id}` shows more):",
                                shown.len()
                            );
                        } else {
                            println!("  log:");
                        }
                        for l in shown {
                            println!("    {l}");
                        }
                    }
                    Err(e) => println!("  log:          could not be read: {e}"),
                }
            }
            Ok(0)
        }
        RunsCommand::Logs { id, tail, .. } => {
            let r = find_run(&runs, &id)?;
            if !s.stack.trainer.capabilities().logs {
                bail!(
                    "the trainer of target `{}` ({}) keeps no logs; `mlctl runs show {id}` has the run's params and metrics",
                    s.target_name,
                    s.stack.provider
                );
            }
            let log =
                s.rt.block_on(s.stack.trainer.logs(&s.ctx, &r.job_name))
                    .map_err(|e| anyhow!("{e}"))?;
            match tail {
                Some(n) => {
                    for l in log_tail(&log, n).0 {
                        println!("{l}");
                    }
                }
                None => print!("{log}"),
            }
            Ok(0)
        }
        RunsCommand::Compare { ids, .. } => {
            let picked: Vec<&RunRecord> = ids
                .iter()
                .map(|id| find_run(&runs, id))
                .collect::<Result<_>>()?;
            let mut params: BTreeSet<&String> = BTreeSet::new();
            let mut metrics: BTreeSet<&String> = BTreeSet::new();
            for r in &picked {
                params.extend(r.params.keys());
                metrics.extend(r.metrics.keys());
            }
            print!("{:<22}", "");
            for r in &picked {
                print!(" {:>14}", &r.id[..r.id.len().min(12)]);
            }
            println!();
            for p in params {
                let vals: Vec<String> = picked
                    .iter()
                    .map(|r| r.params.get(p).map(|v| v.to_string()).unwrap_or("-".into()))
                    .collect();
                let mark = if vals.windows(2).any(|w| w[0] != w[1]) {
                    "*"
                } else {
                    " "
                };
                print!("{mark}param {:<15}", p);
                for v in vals {
                    print!(" {v:>14}");
                }
                println!();
            }
            for m in metrics {
                print!(" {:<21}", m);
                for r in &picked {
                    print!(
                        " {:>14}",
                        r.metrics
                            .get(m)
                            .map(|v| format!("{v:.4}"))
                            .unwrap_or("-".into())
                    );
                }
                println!();
            }
            Ok(0)
        }
    }
}

/// `mlctl rollback ENDPOINT [--to VERSION]`.
pub fn rollback(
    project: &Path,
    endpoint: &str,
    to: Option<u32>,
    target: &TargetArgs,
    lock_timeout: &str,
    revert: bool,
) -> Result<u8> {
    let s = session::open_target(project, target)?;
    let code = crate::commands::plan::with_lock(&s, lock_timeout, |_| {
        rollback_locked(&s, endpoint, to, "by hand")
    })?;
    if revert && code == 0 {
        revert_branch(&s, endpoint)?;
    }
    Ok(code)
}

/// [`rollback`] with the target's lock held.
/// `why` ends the history entry: `by hand`, or the breach that asked for it.
pub(crate) fn rollback_locked(
    s: &session::Session,
    endpoint: &str,
    to: Option<u32>,
    why: &str,
) -> Result<u8> {
    let id = ResourceId::new(Kind::Endpoint, endpoint);
    let observed =
        s.rt.block_on(s.stack.state.observe(&s.ctx.project))
            .map_err(|e| anyhow!("{e}"))?;
    let Some(rec) = observed.iter().find(|o| o.id == id) else {
        bail!(
            "endpoint `{endpoint}` has never been applied to target `{}`",
            s.target_name
        );
    };
    let live =
        s.rt.block_on(s.stack.deployer.status(&s.ctx, endpoint))
            .map_err(|e| anyhow!("{e}"))?;
    let current: Option<EndpointStatus> = live.or_else(|| outputs(rec));
    let Some(current) = current else {
        bail!(
            "endpoint `{endpoint}` does not exist on target `{}`",
            s.target_name
        )
    };
    let Some(serving) = current.variants.iter().max_by_key(|v| v.weight) else {
        bail!("endpoint `{endpoint}` serves no model")
    };
    let all = versions(s, &serving.model)?;
    // A version that is not approved is never deployed, by rollback either.
    let to_version = match to {
        Some(v) => {
            let found = all.iter().find(|x| x.version == v).ok_or_else(|| anyhow!("model `{}` has no version {v}", serving.model))?;
            if !found.approved() {
                bail!(
                    "model `{}` v{v} is {} and is never deployed; roll back to an approved version (`mlctl models list` shows them)",
                    serving.model,
                    if found.approval == ApprovalStatus::Rejected { "rejected" } else { "waiting for approval" }
                );
            }
            found
        }
        None => all
            .iter()
            .filter(|v| v.approved())
            .filter(|v| v.version < serving.version && v.stage != Stage::Staging)
            .max_by_key(|v| v.version)
            .or_else(|| all.iter().filter(|v| v.approved() && v.version < serving.version).max_by_key(|v| v.version))
            .ok_or_else(|| anyhow!("endpoint `{endpoint}` serves {} v{}, and there is no earlier approved version to roll back to", serving.model, serving.version))?,
    };
    if to_version.version == serving.version {
        bail!(
            "endpoint `{endpoint}` already serves {} v{}",
            serving.model,
            serving.version
        );
    }
    let status =
        s.rt.block_on(s.stack.deployer.rollback(&s.ctx, endpoint, to_version))
            .map_err(|e| anyhow!("{e}"))?;
    let entry = HistoryEntry {
        format_version: mlctl_core::state::FORMAT_VERSION,
        id: id.clone(),
        action: "rollback".into(),
        fingerprint: rec.fingerprint.clone(),
        commit: rec.commit.clone(),
        at: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        detail: format!(
            "rolled back from {} v{} to v{} {why}",
            serving.model, serving.version, to_version.version
        ),
    };
    // The record keeps what git asked for, so the next plan shows the rollback as drift.
    s.rt.block_on(s.stack.state.record(&s.ctx.project, rec, &entry))
        .map_err(|e| anyhow!("rolled back, but recording it failed: {e}"))?;
    println!(
        "Rolled back endpoint `{endpoint}` from {} v{} to v{}{}.",
        serving.model,
        serving.version,
        to_version.version,
        status.url.map(|u| format!(" ({u})")).unwrap_or_default()
    );
    // The commit that introduced the version rolled back from: the one its training ran at
    // (its lineage), else the one the endpoint was last applied at.
    let introduced = all
        .iter()
        .find(|v| v.version == serving.version)
        .and_then(|v| v.lineage.get("commit"))
        .filter(|c| !c.is_empty())
        .cloned()
        .unwrap_or_else(|| rec.commit.clone());
    let watched = crate::agent::config(&s.project_dir).is_some();
    if watched {
        let pause = crate::agent::Pause {
            endpoint: endpoint.to_string(),
            reason: format!("rollback {why}"),
            by: format!(
                "{}@{}",
                std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
                hostname::get()
                    .map(|h| h.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
            since: crate::agent::now(),
            commit: s.commit.sha.clone(),
            model: serving.model.clone(),
            version: to_version.version,
            revert: Some(introduced.clone()),
        };
        let mut pauses = crate::agent::pauses(&s.project_dir, &s.target_name);
        pauses.format_version = crate::agent::FORMAT_VERSION;
        pauses.pauses.retain(|p| p.endpoint != endpoint);
        pauses.pauses.push(pause);
        crate::agent::write_pauses(&s.project_dir, &s.target_name, &pauses)
            .map_err(|e| anyhow!("rolled back, but pausing `mlctl watch` for it failed: {e:#}"))?;
        println!(
            "\n`mlctl watch` follows this target: its sync of endpoint `{endpoint}` is paused (shown by `mlctl status`) until a commit changes the endpoint or what it is built from."
        );
    }
    println!(
        "\nNote: the spec in git still asks for v{} (introduced by commit {}).{}\nTo keep this version, revert that change in git:\n    git revert {}",
        serving.version,
        &introduced[..introduced.len().min(7)],
        if watched {
            ""
        } else {
            " The next `mlctl apply` will roll forward again."
        },
        &introduced[..introduced.len().min(12)]
    );
    Ok(0)
}

/// `mlctl rollback --revert`: the revert commit of the pause just recorded, on a branch of
/// its own pushed to the watched remote.
fn revert_branch(s: &Session, endpoint: &str) -> Result<()> {
    let Some(config) = crate::agent::config(&s.project_dir) else {
        bail!(
            "--revert needs the directory of a `mlctl watch` agent (-C <dir>), whose mirror it commits in; in a checkout, run the `git revert` printed above"
        );
    };
    let pauses = crate::agent::pauses(&s.project_dir, &s.target_name);
    let Some(sha) = pauses
        .pauses
        .iter()
        .find(|p| p.endpoint == endpoint)
        .and_then(|p| p.revert.clone())
    else {
        bail!("no commit to revert is known for endpoint `{endpoint}`");
    };
    let base = config
        .current
        .clone()
        .ok_or_else(|| anyhow!("the agent has no current commit yet"))?;
    let mirror = mlctl_git::Mirror::open_existing(&crate::agent::mirror_dir(&s.project_dir))
        .map_err(|e| anyhow!("{e}"))?;
    let branch = format!("mlctl/rollback-{endpoint}-{}", &sha[..sha.len().min(7)]);
    let message = format!(
        "Revert {} for endpoint {endpoint}\n\nmlctl rollback put endpoint `{endpoint}` back on an earlier model version; this revert makes git agree, so `mlctl watch` resumes its sync.\n\nThis reverts commit {sha}.\n",
        &sha[..sha.len().min(7)]
    );
    let (new, pushed) = mirror
        .revert_on_branch(&sha, &base, &branch, &message)
        .map_err(|e| anyhow!("{e}"))?;
    match pushed {
        Ok(()) => println!(
            "Committed the revert ({}) on branch `{branch}` and pushed it to {}; merge it into `{}` (a pull request) and the agent resumes the endpoint's sync.",
            &new[..7],
            mirror.display_url(),
            config.branch
        ),
        Err(e) => println!(
            "Committed the revert ({}) on branch `{branch}` in the agent's mirror, but pushing it failed: {e}\nPush it yourself: git -C {} push origin {branch}",
            &new[..7],
            mirror.dir().display()
        ),
    }
    Ok(())
}

/// The manifest of a model version whose artifact is an mlctl model directory on this machine.
pub(crate) fn signature_of(artifact_uri: &str) -> Option<mlctl_ml::model::Manifest> {
    if artifact_uri.contains("://") {
        return None;
    }
    let path = std::path::Path::new(artifact_uri).join(mlctl_ml::model::MANIFEST_FILE);
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// At most ten values, then a count.
fn few(values: &[String]) -> String {
    let mut s = values
        .iter()
        .take(10)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if values.len() > 10 {
        s.push_str(&format!(", and {} more", values.len() - 10));
    }
    s
}

/// The input signature and output as `models show` prints them.
fn signature_text(m: &mlctl_ml::model::Manifest) -> String {
    use mlctl_ml::preprocess::FeatureKind;
    use std::fmt::Write as _;
    let mut o = String::from("  signature:\n");
    let width = m.inputs.iter().map(|f| f.name.len()).max().unwrap_or(0);
    for f in &m.inputs {
        let storage = f.storage.as_deref().unwrap_or(match f.kind {
            FeatureKind::Float => "float",
            FeatureKind::Category => "category",
        });
        let mut desc = storage.to_string();
        if f.kind == FeatureKind::Category {
            let _ = write!(desc, ", categorical: {}", few(&f.categories));
        }
        match (f.min, f.max) {
            (Some(lo), Some(hi)) => {
                let _ = write!(desc, ", {lo}..{hi}");
            }
            (Some(lo), None) => {
                let _ = write!(desc, ", >= {lo}");
            }
            (None, Some(hi)) => {
                let _ = write!(desc, ", <= {hi}");
            }
            (None, None) => {}
        }
        if f.nullable {
            desc.push_str(", nullable");
        }
        let _ = writeln!(o, "    {:<width$}  {desc}", f.name);
    }
    if !m.passthrough.is_empty() {
        let cols: Vec<String> = m
            .passthrough
            .iter()
            .map(|p| format!("{} ({})", p.name, p.role))
            .collect();
        let _ = writeln!(o, "    not inputs: {}", cols.join(", "));
    }
    let label = m.output.name.as_deref().unwrap_or("cluster");
    if m.output.classes.is_empty() {
        let _ = writeln!(o, "    output: {label}");
    } else {
        let _ = writeln!(
            o,
            "    output: {label}, {} classes ({}): {}",
            m.output.classes.len(),
            m.output.label_type.as_deref().unwrap_or("string"),
            few(&m.output.classes)
        );
    }
    o
}

/// The signature in `models show --output json`: inputs as the manifest has them.
pub(crate) fn signature_json(m: &mlctl_ml::model::Manifest) -> serde_json::Value {
    serde_json::json!({
        "inputs": m.inputs,
        "notInputs": m.passthrough,
        "output": m.output,
    })
}

/// `mlctl models export MODEL[:VERSION] DIR`.
fn export_model(
    project: &Path,
    model: &str,
    dir: &Path,
    format: crate::cli::ModelFormat,
    target: &TargetArgs,
) -> Result<u8> {
    let (name, asked) = match model.split_once(':') {
        Some((n, v)) => {
            let v = v.trim_start_matches('v').parse::<u32>().map_err(|_| {
                anyhow!("`{model}`: the version after `:` must be a number (e.g. `{n}:3`)")
            })?;
            (n, Some(v))
        }
        None => (model, None),
    };
    if dir.exists()
        && std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} is not empty; export into a new or empty directory",
            dir.display()
        );
    }
    let s = session::open_target(project, target)?;
    if !s.stack.registry.capabilities().artifacts {
        bail!(
            "the registry of target `{}` cannot hand out a version's files, so its models cannot be exported",
            s.target_name
        );
    }
    let vs = versions(&s, name)?;
    let v = match asked {
        // A version named is exported whatever its approval: reviewing it may be the point.
        Some(n) if vs.iter().any(|v| v.version == n) => vs
            .into_iter()
            .find(|v| v.version == n)
            .expect("found above"),
        _ => mlctl_core::promote::choose_version(&vs, asked, name, &s.target_name)
            .map_err(|e| anyhow!("{}", e.message))?,
    };
    let files =
        s.rt.block_on(s.stack.registry.read_artifact(&s.ctx, &v))
            .map_err(|e| anyhow!("{e}"))?;
    let files = match format {
        crate::cli::ModelFormat::Mlctl => files,
        crate::cli::ModelFormat::Mlflow => mlctl_provider_mlflow::model_dir::of_version(&files, &v)
            .map_err(|e| anyhow!("model `{name}` v{}: {e}", v.version))?,
    };
    for (path, bytes) in &files.files {
        let dest = dir.join(path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&dest, bytes).with_context(|| format!("cannot write {}", dest.display()))?;
    }
    println!(
        "Exported model `{name}` v{} ({}) to {}{}",
        v.version,
        v.stage.as_str(),
        dir.display(),
        match format {
            crate::cli::ModelFormat::Mlflow => {
                "; load it with mlflow.pyfunc.load_model(DIR) or serve it with `mlflow models serve -m DIR`"
            }
            crate::cli::ModelFormat::Mlctl => "; serve it with `mlctl serve DIR`",
        }
    );
    Ok(0)
}
