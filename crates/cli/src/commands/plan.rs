//! `mlctl plan`, `apply`, `reconcile`, `destroy`.

use crate::cli::{ApplyArgs, Output, RevArgs, TargetArgs};
use crate::progress::Progress;
use crate::session::{self, Session};
use crate::style;
use anyhow::{Context, Result, anyhow, bail};
use mlctl_core::Lock;
use mlctl_core::apply::{self, ApplyOptions, Outcome};
use mlctl_core::plan::{self as planner, Action, Plan, PlanOptions};
use mlctl_core::{LockError, LockInfo, ObservedResource};
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn paint(a: Action, s: &str) -> String {
    match a {
        Action::Create => style::green(s),
        Action::Update => style::yellow(s),
        Action::Replace | Action::Delete => style::red(s),
        Action::NoOp => s.to_string(),
    }
}

fn render(plan: &Plan, output: Output) -> Result<String> {
    Ok(match output {
        Output::Human => plan.render_human(&paint),
        Output::Json => serde_json::to_string_pretty(plan)? + "\n",
        Output::Markdown => plan.render_markdown(),
    })
}

fn observe(s: &Session, opts: &ApplyOptions) -> Result<Vec<ObservedResource>> {
    s.rt.block_on(mlctl_core::observe(&s.stack, &s.ctx, opts))
        .map_err(|e| anyhow!("cannot read the state of target `{}`: {e}", s.target_name))
}

/// `mlctl plan`.
pub fn plan(
    project: &Path,
    target: &TargetArgs,
    rev: &RevArgs,
    prune: bool,
    output: Output,
    detailed: bool,
    out: Option<&Path>,
) -> Result<u8> {
    let s = session::open(project, target, rev)?;
    let notes = s.ensure_supported()?;
    let desired = s.desired()?;
    let observed = observe(&s, &ApplyOptions::default())?;
    let mut plan = planner::plan(
        &desired,
        &observed,
        &s.target_name,
        PlanOptions {
            prune,
            destroy: false,
        },
    );
    plan.notes.extend(notes);
    print!("{}", render(&plan, output)?);
    if let Some(out) = out {
        std::fs::write(out, serde_json::to_string_pretty(&plan)? + "\n")
            .with_context(|| format!("cannot write {}", out.display()))?;
        if output == Output::Human {
            println!(
                "\nSaved the plan to {}. Apply exactly this plan with: mlctl apply {}",
                out.display(),
                out.display()
            );
        }
    }
    Ok(if detailed && plan.has_changes() { 2 } else { 0 })
}

fn lock_info() -> LockInfo {
    let id = blake3::hash(
        format!(
            "{}-{:?}-{}",
            std::process::id(),
            std::time::SystemTime::now(),
            rand_seed()
        )
        .as_bytes(),
    )
    .to_hex()[..16]
        .to_string();
    LockInfo::for_this_process(id, std::env::args().collect::<Vec<_>>().join(" "))
}

fn rand_seed() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Runs `f` holding the target's lock (taken within `timeout`), releasing it afterwards: what
/// every command that changes a target does, so two of them never interleave.
///
/// `f` gets the flag that says the lock was lost while held ([`Lock::lost`]).
pub fn with_lock<T>(
    s: &Session,
    timeout: &str,
    f: impl FnOnce(Arc<std::sync::atomic::AtomicBool>) -> Result<T>,
) -> Result<T> {
    let lock = take_lock(s, timeout)?;
    let result = f(lock.lost());
    let released = s.rt.block_on(lock.release());
    let value = result?;
    released.map_err(|e| {
        anyhow!(
            "done, but releasing the lock of target `{}` failed: {e}",
            s.target_name
        )
    })?;
    Ok(value)
}

/// Takes the target's lock, waiting up to `timeout`.
fn take_lock(s: &Session, timeout: &str) -> Result<Lock> {
    let timeout =
        mlctl_spec::units::parse_duration(timeout).map_err(|e| anyhow!("--lock-timeout: {e}"))?;
    let info = lock_info();
    let t0 = Instant::now();
    loop {
        match s
            .rt
            .block_on(Lock::acquire(&s.stack, &s.ctx.project, info.clone()))
        {
            Ok(lock) => {
                if let Some((dead, why)) = lock.taken_over() {
                    eprintln!(
                        "mlctl: took over the lock of target `{}` from {}@{} (pid {}, `{}`, lock id {}): {why}",
                        s.target_name, dead.holder, dead.host, dead.pid, dead.command, dead.id
                    );
                }
                return Ok(lock);
            }
            Err(LockError::Held(_)) if t0.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(LockError::Held(holder)) => bail!(
                "target `{}` is locked by {}@{} (pid {}) since {}, running `{}`{}\n  Another apply is in progress. Wait for it, or pass --lock-timeout 10m to wait.\n  (A holder that died on this machine, or whose lease ran out, is taken over by itself; this one is alive or renews its lease.)\n  If that process is gone, release the lock with: mlctl force-unlock {} --target {}",
                s.target_name,
                holder.holder,
                holder.host,
                holder.pid,
                holder.since,
                holder.command,
                match (&holder.heartbeat, holder.lease_seconds) {
                    (Some(beat), Some(lease)) =>
                        format!("; last heartbeat {beat}, lease {lease} s"),
                    _ => " (an older mlctl's lock, without a lease)".to_string(),
                },
                holder.id,
                s.target_name
            ),
            Err(LockError::Store(e)) => {
                bail!("cannot take the lock of target `{}`: {e}", s.target_name)
            }
        }
    }
}

fn confirm(s: &Session, what: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "{what} needs confirmation, but there is no terminal to ask on; pass --auto-approve (or use `mlctl reconcile` in CI)"
        );
    }
    print!(
        "\nDo you want to {what} on target `{}`?\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: ",
        s.target_name
    );
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}

struct Mode<'a> {
    /// Resources left as they are (`--exclude`).
    exclude: &'a [String],
    /// When not empty, the only resources applied (`--only`).
    only: &'a [String],
    prune: bool,
    destroy: bool,
    auto_approve: bool,
    verb: &'static str,
}

/// `mlctl apply`, `reconcile` and `destroy` share this.
fn run(s: Session, mode: Mode<'_>, args: &ApplyArgs, saved: Option<Plan>) -> Result<u8> {
    // What a target cannot honour is refused before anything is created; destroying what an
    // older spec made needs no such check.
    let notes = if mode.destroy {
        Vec::new()
    } else {
        s.ensure_supported()?
    };
    let importer = mlctl_provider_mlflow::Importer::new(
        s.tracking().ok().flatten(),
        std::env::var("MLCTL_PYTHON").ok().filter(|p| !p.is_empty()),
    );
    let opts = ApplyOptions {
        concurrency: args.concurrency.max(1),
        importer: Some(Arc::new(importer)),
        ..ApplyOptions::default()
    };
    let desired = if mode.destroy {
        s.desired_unread()?
    } else {
        s.desired()?
    };
    // Plan under the lock, so what is applied is what was shown.
    with_lock(&s, &args.lock_timeout, |lost| {
        let opts = ApplyOptions {
            lock_lost: Some(lost),
            ..opts
        };
        let observed = observe(&s, &opts)?;
        let plan = match saved {
            Some(saved) => {
                check_saved(&s, &saved, &desired, &observed)?;
                saved
            }
            None => planner::plan(
                &desired,
                &observed,
                &s.target_name,
                PlanOptions {
                    prune: mode.prune,
                    destroy: mode.destroy,
                },
            ),
        };
        let mut plan = plan;
        plan.notes.extend(notes);
        for c in &mut plan.changes {
            if c.action != Action::NoOp && mode.exclude.iter().any(|e| *e == c.id.to_string()) {
                c.action = Action::NoOp;
                c.reasons = vec!["excluded from this apply (--exclude): left as it is".into()];
                c.diff.clear();
            }
        }
        if !mode.only.is_empty() {
            restrict_to(&s, &mut plan, mode.only)?;
        }
        print!("{}", plan.render_human(&paint));
        if !plan.has_changes() {
            // Nothing to do, but a failure recorded before no longer applies: the engine
            // drops it (an all no-op apply changes nothing else).
            if observed.iter().any(|o| o.last_error.is_some()) {
                let _ = s.rt.block_on(apply::apply(
                    &s.stack,
                    &s.ctx,
                    &desired,
                    &plan,
                    &observed,
                    &opts,
                    Arc::new(apply::Silent),
                ));
            }
            mirror_to_tracking(&s);
            return Ok(0);
        }
        if !mode.auto_approve && !confirm(&s, mode.verb)? {
            println!("\nApply cancelled.");
            return Ok(1);
        }
        println!();
        let reporter = Arc::new(Progress::new());
        let report = s.rt.block_on(apply::apply(
            &s.stack, &s.ctx, &desired, &plan, &observed, &opts, reporter,
        ));
        let (mut added, mut changed, mut destroyed, mut failed, mut skipped) = (0, 0, 0, 0, 0);
        for (id, outcome) in &report.results {
            let action = plan.changes.iter().find(|c| &c.id == id).map(|c| c.action);
            match (outcome, action) {
                (Outcome::Applied(_), Some(Action::Create)) => added += 1,
                (Outcome::Applied(_), Some(Action::Update)) => changed += 1,
                (Outcome::Applied(_), Some(Action::Replace)) => {
                    added += 1;
                    destroyed += 1
                }
                (Outcome::Applied(_), Some(Action::Delete)) => destroyed += 1,
                (Outcome::Failed(_), _) => failed += 1,
                (Outcome::Skipped(_), _) => skipped += 1,
                _ => {}
            }
        }
        // What finished is logged even when something else failed.
        if !mode.destroy {
            mirror_to_tracking(&s);
        }
        if report.failed() {
            eprintln!(
                "\n{} {failed} failed, {skipped} not attempted; {added} added, {changed} changed, {destroyed} destroyed.\nFix the cause and run the same command again: finished work is kept and not repeated.",
                style::red("Apply failed:")
            );
            Ok(1)
        } else {
            println!(
                "\n{} Resources: {added} added, {changed} changed, {destroyed} destroyed.",
                style::green("Apply complete!")
            );
            Ok(0)
        }
    })
}

/// `--only`: every change but those of `only` becomes a no-op; refused when a resource of
/// `only` depends on one that is not up to date (it would be applied on stale inputs).
fn restrict_to(s: &Session, plan: &mut Plan, only: &[String]) -> Result<()> {
    let mut wanted = Vec::new();
    for name in only {
        match s.spec.resources.iter().find(|r| r.id.to_string() == *name) {
            Some(r) => wanted.push(r),
            None => {
                let known: Vec<String> =
                    s.spec.resources.iter().map(|r| r.id.to_string()).collect();
                bail!(
                    "--only {name}: no such resource in the spec at {}; it has: {}",
                    s.commit.short_sha,
                    mlctl_spec::suggest::list(&known)
                );
            }
        }
    }
    let mut stale = Vec::new();
    for r in &wanted {
        for dep in &r.depends_on {
            let pending = plan
                .changes
                .iter()
                .find(|c| &c.id == dep)
                .filter(|c| c.action != Action::NoOp && !only.contains(&dep.to_string()));
            if let Some(c) = pending {
                stale.push(format!("{} needs {dep}, which {}", r.id, c.action.phrase()));
            }
        }
    }
    if !stale.is_empty() {
        bail!(
            "--only: what these resources depend on is not up to date on target `{}`: {}; apply it first (in a Kubeflow pipeline, the step before), or drop --only",
            s.target_name,
            mlctl_spec::suggest::list(&stale)
        );
    }
    for c in &mut plan.changes {
        if c.action != Action::NoOp && !only.contains(&c.id.to_string()) {
            c.action = Action::NoOp;
            c.reasons = vec!["not in --only: left as it is".into()];
            c.diff.clear();
        }
    }
    Ok(())
}

/// Logs the target's runs and models to its `tracking:` server, if it has one, and says what
/// was done. A tracking server that fails is a warning, never a failed apply: the next apply
/// logs what is missing.
fn mirror_to_tracking(s: &Session) {
    let tracking = match s.tracking() {
        Ok(Some(t)) => t,
        Ok(None) => return,
        Err(e) => {
            eprintln!("{} tracking: {e:#}", style::yellow("Warning:"));
            return;
        }
    };
    let report = s.rt.block_on(mlctl_provider_mlflow::sync(
        &tracking, &s.stack, &s.ctx, &s.spec,
    ));
    println!("\n{}", report.summary());
    for w in &report.warnings {
        eprintln!("{} {w}", style::yellow("Warning:"));
    }
}

/// Refuses a saved plan that no longer fits the target or the spec.
fn check_saved(
    s: &Session,
    saved: &Plan,
    desired: &planner::Desired,
    observed: &[ObservedResource],
) -> Result<()> {
    if saved.format_version != planner::PLAN_FORMAT_VERSION {
        bail!(
            "the plan file has format version {}, this mlctl reads {}; make the plan again",
            saved.format_version,
            planner::PLAN_FORMAT_VERSION
        );
    }
    if saved.project != s.spec.project.name || saved.target != s.target_name {
        bail!(
            "the plan is for project `{}` on target `{}`, not `{}` on `{}`",
            saved.project,
            saved.target,
            s.spec.project.name,
            s.target_name
        );
    }
    let now = planner::state_token(observed);
    if now != saved.state_token {
        bail!(
            "target `{}` changed since this plan was made (state {} then, {} now); run `mlctl plan --out FILE` again",
            s.target_name,
            saved.state_token,
            now
        );
    }
    for c in saved.actions() {
        if let Some(fp) = &c.fingerprint {
            let current = desired.get(&c.id).map(|d| d.fingerprint.0.as_str());
            if current != Some(fp.as_str()) {
                bail!(
                    "{} is no longer what the plan was made from (its data or code changed); run `mlctl plan --out FILE` again",
                    c.id
                );
            }
        }
    }
    Ok(())
}

/// `mlctl apply [PLAN]`.
pub fn apply_cmd(
    project: &Path,
    plan_file: Option<&Path>,
    target: &TargetArgs,
    rev: &RevArgs,
    prune: bool,
    auto_approve: bool,
    args: &ApplyArgs,
) -> Result<u8> {
    match plan_file {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read plan file {}", file.display()))?;
            let saved: Plan = serde_json::from_str(&text).map_err(|e| {
                anyhow!(
                    "{} is not a plan made by `mlctl plan --out`: {e}",
                    file.display()
                )
            })?;
            let target = TargetArgs {
                target: Some(saved.target.clone()),
            };
            let rev = RevArgs {
                rev: saved.commit.clone(),
                allow_dirty: false,
            };
            let s = session::open(project, &target, &rev)?;
            // A saved plan was reviewed already: applying it is the approval.
            run(
                s,
                Mode {
                    exclude: &[],
                    only: &[],
                    prune: false,
                    destroy: false,
                    auto_approve: true,
                    verb: "apply this plan",
                },
                args,
                Some(saved),
            )
        }
        None => {
            let s = session::open(project, target, rev)?;
            run(
                s,
                Mode {
                    exclude: &[],
                    only: &[],
                    prune,
                    destroy: false,
                    auto_approve,
                    verb: "perform these actions",
                },
                args,
                None,
            )
        }
    }
}

/// `mlctl reconcile`.
pub fn reconcile(
    project: &Path,
    target: &TargetArgs,
    rev: &RevArgs,
    prune: bool,
    args: &ApplyArgs,
    exclude: &[String],
    only: &[String],
) -> Result<u8> {
    let s = session::open(project, target, rev)?;
    run(
        s,
        Mode {
            exclude,
            only,
            prune,
            destroy: false,
            auto_approve: true,
            verb: "reconcile",
        },
        args,
        None,
    )
}

/// `mlctl destroy`.
pub fn destroy(
    project: &Path,
    target: &TargetArgs,
    auto_approve: bool,
    args: &ApplyArgs,
) -> Result<u8> {
    let s = session::open(
        project,
        target,
        &RevArgs {
            rev: "HEAD".into(),
            allow_dirty: true,
        },
    )?;
    run(
        s,
        Mode {
            exclude: &[],
            only: &[],
            prune: true,
            destroy: true,
            auto_approve,
            verb: "destroy all resources",
        },
        args,
        None,
    )
}
