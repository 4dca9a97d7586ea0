//! `mlctl status`, `history`, `force-unlock`, `diff`.

use crate::cli::{Output, RevArgs, TargetArgs};
use crate::session;
use crate::style;
use anyhow::{Result, anyhow, bail};
use mlctl_core::apply::ApplyOptions;
use mlctl_core::plan::{self as planner, Action, PlanOptions};
use mlctl_core::{EndpointStatus, Health, ObservedResource, outputs};
use mlctl_spec::{Kind, ResourceId};
use std::path::Path;

fn short(s: &str) -> &str {
    &s[..s.len().min(7)]
}

/// What `mlctl status` shows, per resource of the spec and the target: its sync against the
/// spec, health, last commit applied, URL, message, reasons and last error (the JSON rows),
/// with the plan they come from and what was observed.
pub(crate) struct StatusData {
    pub rows: Vec<serde_json::Value>,
    pub plan: mlctl_core::plan::Plan,
    pub observed: Vec<ObservedResource>,
}

/// Reads [`StatusData`] of a session's spec on its target.
pub(crate) fn status_data(s: &session::Session) -> Result<StatusData> {
    let desired = s.desired()?;
    let observed =
        s.rt.block_on(mlctl_core::observe(
            &s.stack,
            &s.ctx,
            &ApplyOptions::default(),
        ))
        .map_err(|e| anyhow!("cannot read target `{}`: {e}", s.target_name))?;
    let plan = planner::plan(&desired, &observed, &s.target_name, PlanOptions::default());
    let rows: Vec<serde_json::Value> = plan
        .changes
        .iter()
        .map(|c| {
            let o = observed.iter().find(|o| o.id == c.id);
            let sync = match (c.action, o) {
                (Action::NoOp, _) => "synced",
                (_, None) => "missing",
                (_, Some(o)) if o.fingerprint.is_empty() => "missing",
                _ => "out-of-sync",
            };
            let health = o
                .map(|o| {
                    if o.last_error.is_some() && c.action != Action::NoOp {
                        Health::Failed
                    } else {
                        o.health
                    }
                })
                .unwrap_or(Health::Unknown);
            // An endpoint's URL as it serves now (observe refreshed it from the deployer),
            // port allocated at apply included.
            let url = o
                .filter(|o| o.id.kind == Kind::Endpoint)
                .and_then(outputs::<EndpointStatus>)
                .and_then(|e| e.url);
            serde_json::json!({
                "resource": c.id.to_string(),
                "sync": sync,
                "health": health.as_str(),
                "lastAppliedCommit": o.map(|o| o.commit.clone()).filter(|c| !c.is_empty()),
                "updatedAt": o.map(|o| o.updated_at.clone()),
                "url": url,
                // A decision the Model waits for, else what the target says about the live
                // resource (an endpoint's degradation, or its signature warnings).
                "message": plan
                    .approvals
                    .iter()
                    .find(|a| a.id == c.id)
                    .map(|a| a.message.clone())
                    .or_else(|| {
                        o.and_then(|o| o.outputs.get("message"))
                            .and_then(|m| m.as_str())
                            .filter(|m| !m.is_empty())
                            .map(str::to_string)
                    }),
                "reasons": if c.action == Action::NoOp { Vec::new() } else { c.reasons.clone() },
                // An error the target no longer shows (it matches the spec) is resolved.
                "lastError": o
                    .filter(|_| c.action != Action::NoOp)
                    .and_then(|o| o.last_error.as_ref().map(|e| e.message.clone())),
            })
        })
        .collect();
    Ok(StatusData {
        rows,
        plan,
        observed,
    })
}

/// `mlctl status`.
pub fn status(project: &Path, target: &TargetArgs, rev: &RevArgs, output: Output) -> Result<u8> {
    let s = session::open(project, target, rev)?;
    let StatusData { rows, plan, .. } = status_data(&s)?;
    let lock =
        s.rt.block_on(s.stack.state.lock_holder(&s.ctx.project))
            .map_err(|e| anyhow!("cannot read the lock of target `{}`: {e}", s.target_name))?;
    let watch = crate::agent::state(&s.project_dir, &s.target_name);
    let pauses = crate::agent::pauses(&s.project_dir, &s.target_name).pauses;
    if output == Output::Json {
        let out = serde_json::json!({
            "watch": watch,
            "paused": pauses,
            "lock": lock,
            "project": s.spec.project.name,
            "target": s.target_name,
            "commit": s.commit.sha,
            "resources": rows,
            "orphans": plan.orphans.iter().map(ToString::to_string).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "Target `{}` against commit {} ({})\n",
            s.target_name, s.commit.short_sha, s.commit.summary
        );
        println!(
            "{:<28} {:<12} {:<12} {:<8} UPDATED",
            "RESOURCE", "SYNC", "HEALTH", "COMMIT"
        );
        for r in &rows {
            let sync = r["sync"].as_str().unwrap_or("");
            let sync_s = match sync {
                "synced" => style::green(&format!("{sync:<12}")),
                _ => style::yellow(&format!("{sync:<12}")),
            };
            let health = r["health"].as_str().unwrap_or("");
            let health_s = match health {
                "healthy" => style::green(&format!("{health:<12}")),
                "progressing" | "unknown" => format!("{health:<12}"),
                _ => style::red(&format!("{health:<12}")),
            };
            println!(
                "{:<28} {} {} {:<8} {}",
                r["resource"].as_str().unwrap_or(""),
                sync_s,
                health_s,
                short(r["lastAppliedCommit"].as_str().unwrap_or("-")),
                r["updatedAt"].as_str().unwrap_or("-")
            );
            if let Some(url) = r["url"].as_str() {
                println!("    serving at {url}");
            }
            if let Some(message) = r["message"].as_str() {
                println!("    {message}");
            }
            for reason in r["reasons"].as_array().into_iter().flatten() {
                println!("    {}", reason.as_str().unwrap_or(""));
            }
        }
        if let Some(l) = &lock {
            println!("\nLocked by {l}");
        }
        if let Some(w) = &watch {
            print_watch(w, &pauses);
        }
        if !plan.orphans.is_empty() {
            println!(
                "\nNot in the spec (kept; `mlctl apply --prune` destroys them): {}",
                plan.orphans
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(0)
}

/// The agent's view: "watch: Synced at abc1234 (2m ago)", health per resource, pauses.
fn print_watch(w: &crate::agent::WatchState, pauses: &[crate::agent::Pause]) {
    let ago = w
        .last_synced_at
        .as_deref()
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .map(|t| {
            let secs = (time::OffsetDateTime::now_utc() - t).whole_seconds().max(0);
            match secs {
                0..60 => format!(" ({secs}s ago)"),
                60..3600 => format!(" ({}m ago)", secs / 60),
                _ => format!(" ({}h ago)", secs / 3600),
            }
        })
        .unwrap_or_default();
    println!(
        "\nwatch: {} at {}{ago}, health {}; following {} {}{}",
        w.sync.as_str(),
        w.last_synced_commit.as_deref().map(short).unwrap_or("-"),
        w.health.as_str(),
        w.repo,
        w.branch,
        if w.self_heal { ", selfHeal on" } else { "" }
    );
    for r in &w.resources {
        println!(
            "    {:<28} {:<10} {}",
            r.resource,
            if r.paused { "Paused" } else { r.sync.as_str() },
            r.health.as_str()
        );
    }
    for p in pauses {
        println!(
            "  paused: endpoint `{}` on {} v{} since {} by {} ({}); resumes when git changes it{}",
            p.endpoint,
            p.model,
            p.version,
            p.since,
            p.by,
            p.reason,
            p.revert
                .as_deref()
                .map(|c| format!(", e.g. `git revert {}`", &c[..c.len().min(12)]))
                .unwrap_or_default()
        );
    }
    if let Some(c) = w.invalid_commits.last() {
        println!(
            "  skipped invalid commit {} ({} error{}): {}",
            short(&c.commit),
            c.errors.len(),
            if c.errors.len() == 1 { "" } else { "s" },
            c.errors.first().map(String::as_str).unwrap_or("")
        );
    }
    if let Some(e) = &w.last_error {
        println!("  last error: {e}");
    }
}

/// Finds a resource by `Kind/name` or by a name unique across kinds.
pub fn resolve_resource(arg: &str, known: &[ResourceId]) -> Result<ResourceId> {
    if let Some(id) = ResourceId::parse(arg) {
        return Ok(id);
    }
    let matches: Vec<&ResourceId> = known.iter().filter(|id| id.name == arg).collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => {
            let list: Vec<String> = known.iter().map(ToString::to_string).collect();
            bail!(
                "no resource named `{arg}`; known: {}",
                if list.is_empty() {
                    "none".into()
                } else {
                    list.join(", ")
                }
            )
        }
        many => bail!(
            "`{arg}` names several resources ({}); write Kind/name, e.g. {}",
            many.iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            many[0]
        ),
    }
}

/// `mlctl history`.
pub fn history(project: &Path, resource: &str, target: &TargetArgs, output: Output) -> Result<u8> {
    let s = session::open_target(project, target)?;
    let mut known: Vec<ResourceId> = s.spec.resources.iter().map(|r| r.id.clone()).collect();
    let observed: Vec<ObservedResource> =
        s.rt.block_on(s.stack.state.observe(&s.ctx.project))
            .map_err(|e| anyhow!("{e}"))?;
    known.extend(observed.into_iter().map(|o| o.id));
    known.sort();
    known.dedup();
    let id = resolve_resource(resource, &known)?;
    let entries =
        s.rt.block_on(s.stack.state.history(&s.ctx.project, &id))
            .map_err(|e| anyhow!("{e}"))?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(0);
    }
    if entries.is_empty() {
        println!("{id} has never been applied to target `{}`.", s.target_name);
        return Ok(0);
    }
    println!("History of {id} on target `{}`:\n", s.target_name);
    println!(
        "{:<26} {:<9} {:<8} {:<13} DETAIL",
        "TIME", "ACTION", "COMMIT", "FINGERPRINT"
    );
    for e in entries {
        println!(
            "{:<26} {:<9} {:<8} {:<13} {}",
            e.at,
            e.action,
            short(&e.commit),
            &e.fingerprint[..e.fingerprint.len().min(12)],
            e.detail
        );
    }
    Ok(0)
}

/// `mlctl force-unlock`.
pub fn force_unlock(project: &Path, id: &str, target: &TargetArgs) -> Result<u8> {
    let s = session::open_target(project, target)?;
    let holder =
        s.rt.block_on(s.stack.state.lock_holder(&s.ctx.project))
            .map_err(|e| anyhow!("{e}"))?;
    match holder {
        None => bail!("target `{}` is not locked; nothing to do", s.target_name),
        Some(h) if h.id != id => bail!(
            "target `{}` is locked with id {}, not {id}: held by {}",
            s.target_name,
            h.id,
            h
        ),
        Some(h) => {
            s.rt.block_on(s.stack.state.unlock(&s.ctx.project, id, true))
                .map_err(|e| anyhow!("{e}"))?;
            println!(
                "Released the lock of target `{}` (was held by {}).",
                s.target_name, h
            );
            Ok(0)
        }
    }
}

/// `mlctl diff`.
pub fn diff(project: &Path, rev1: &str, rev2: Option<&str>, output: Output) -> Result<u8> {
    let repo = mlctl_git::Repo::discover(project).map_err(|e| anyhow!("{e}"))?;
    let load = |rev: Option<&str>| -> Result<(String, mlctl_spec::Spec)> {
        let (label, loaded) = match rev {
            Some(rev) => {
                let (c, l) = repo.load_at(rev).map_err(|e| anyhow!("{e}"))?;
                (c.short_sha.clone(), l)
            }
            None => (
                "work tree".to_string(),
                mlctl_spec::load(&repo.work_tree_files()),
            ),
        };
        crate::commands::validate::print_diagnostics(&loaded.diagnostics);
        let spec = loaded
            .spec
            .ok_or_else(|| anyhow!("the spec at {label} has errors; fix them to diff"))?;
        Ok((label, spec))
    };
    let (a_label, a) = load(Some(rev1))?;
    let (b_label, b) = load(rev2)?;
    let d = mlctl_git::spec_diff(&a, &b);
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else if d.is_empty() {
        println!("No spec changes between {a_label} and {b_label}.");
    } else {
        println!("Spec changes from {a_label} to {b_label}:\n");
        print!("{d}");
    }
    Ok(0)
}
