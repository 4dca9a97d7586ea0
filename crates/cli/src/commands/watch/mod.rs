//! `mlctl watch`: the pull-based GitOps agent.
//!
//! Each cycle: fetch the branch into the private mirror; a new tip is validated, and skipped
//! (reported) when its spec is invalid; a valid one is reconciled on every target with
//! `mlctl reconcile --rev <sha>` as a child process (the same code, lock and output as by
//! hand), leaving out endpoints a rollback paused; then `mlctl status` of the last synced
//! commit finds drift (an endpoint edited by hand, a server killed) and health, which
//! `selfHeal` repairs with another reconcile or which is reported OutOfSync; then
//! `mlctl monitor run --due` runs the monitors whose schedule is due and carries out their
//! `onBreach`. Between cycles the agent sleeps (interval with jitter, or backoff after a
//! failure) until the interval passes or `POST /hooks/git` wakes it.
//!
//! Why child processes: a reconcile is exactly `mlctl reconcile` (the lock, the progress
//! lines, the exit code), its memory is returned when it ends (the agent at rest holds no
//! target stack), and SIGTERM leaves it to finish its step while the agent stops taking
//! triggers.

mod policy;
mod server;

use crate::agent::{
    self, AgentConfig, Health, InvalidCommit, Pause, ResourceState, SyncStatus, WatchState,
};
use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use mlctl_git::{Mirror, Repo};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// `mlctl watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The git remote to follow: a path, a `file://` URL or a bare repository.
    #[arg(long)]
    pub repo: String,
    /// The branch to follow.
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// The project's directory inside the repository (where its mlctl.yaml is).
    #[arg(long, default_value = "")]
    pub path: String,
    /// Targets to keep in sync (repeatable; default: the project's defaultTarget).
    #[arg(long = "target", short = 't', value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Time between cycles (jittered by ±10 %), e.g. `60s`, `5m`.
    #[arg(long, default_value = "60s")]
    pub interval: String,
    /// Repair out-of-band changes on the next cycle (also the project's `selfHeal: true`);
    /// without it they are reported OutOfSync.
    #[arg(long)]
    pub self_heal: bool,
    /// Address of /healthz, /metrics and /hooks/git. Beyond 127.0.0.1 it needs --token.
    #[arg(long, default_value = "127.0.0.1:9420")]
    pub listen: SocketAddr,
    /// Bearer token /metrics asks for, as `${env:NAME}`; required to listen beyond loopback.
    #[arg(long, value_name = "${env:NAME}")]
    pub token: Option<String>,
    /// Secret of `POST /hooks/git` (GitHub's HMAC signature, GitLab's token), as
    /// `${env:NAME}`; without it webhooks are off.
    #[arg(long, value_name = "${env:NAME}")]
    pub webhook_secret: Option<String>,
    /// A Slack-compatible webhook (`{"text": ...}`) told of invalid commits and failed
    /// applies, as `${env:NAME}`.
    #[arg(long, value_name = "${env:NAME}")]
    pub notify: Option<String>,
    /// How long a reconcile waits for the target's lock (a manual apply in progress).
    #[arg(long, default_value = "10m")]
    pub lock_timeout: String,
    /// Run one cycle and exit (1 when it failed): for cron jobs and tests.
    #[arg(long)]
    pub once: bool,
}

/// Resolves a `${env:NAME}` argument (a literal secret is refused: it would sit in `ps`).
fn secret_arg(flag: &str, value: &Option<String>) -> Result<Option<String>> {
    let Some(v) = value else { return Ok(None) };
    if !v.trim_start().starts_with("${env:") {
        bail!(
            "{flag} takes a reference to an environment variable, `${{env:NAME}}`, not the secret itself (a command line is visible to every user of this machine)"
        );
    }
    let resolved = mlctl_spec::env::resolve(v, |n| std::env::var(n).ok())
        .map_err(|e| anyhow!("{flag}: {e}"))?;
    if resolved.is_empty() {
        bail!("{flag}: {v} is empty");
    }
    Ok(Some(resolved))
}

fn init_logging() {
    use std::io::IsTerminal;
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("MLCTL_LOG").unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_env_filter(filter);
    let _ = if std::io::stderr().is_terminal() {
        builder.try_init()
    } else {
        builder.json().flatten_event(true).try_init()
    };
}

/// The agent's settings, resolved.
struct Agent {
    project_dir: PathBuf,
    exe: PathBuf,
    args: WatchArgs,
    interval: Duration,
    notify: Option<String>,
    shared: Arc<server::Shared>,
    /// Per target, its state.
    states: Vec<WatchState>,
    /// Failures in a row (backoff).
    failures: u32,
    /// Invalid commits found this cycle, for every target's state.
    invalid: Vec<InvalidCommit>,
    config: AgentConfig,
}

/// `mlctl watch`.
pub fn run(project: &Path, args: WatchArgs) -> Result<u8> {
    init_logging();
    let interval = mlctl_spec::units::parse_duration(&args.interval)
        .map_err(|e| anyhow!("--interval: {e}"))?;
    if interval < Duration::from_millis(100) {
        bail!(
            "--interval {} is too short; use 100ms or more",
            args.interval
        );
    }
    let token = secret_arg("--token", &args.token)?;
    if !args.listen.ip().is_loopback() && token.is_none() {
        bail!(
            "--listen {} is reachable beyond this machine, and /metrics would be open to anyone there; pass --token '${{env:NAME}}' with a token in that variable, or listen on 127.0.0.1",
            args.listen
        );
    }
    let secret = secret_arg("--webhook-secret", &args.webhook_secret)?;
    let notify = secret_arg("--notify", &args.notify)?;
    std::fs::create_dir_all(project)
        .with_context(|| format!("cannot make the agent directory {}", project.display()))?;
    let project_dir = project
        .canonicalize()
        .with_context(|| format!("cannot open {}", project.display()))?;
    if project_dir.join(mlctl_spec::PROJECT_FILE).exists() {
        bail!(
            "{} holds a project's files; run `mlctl watch` in a directory of its own (e.g. -C /var/lib/mlctl/iris): the agent reads the spec from its mirror of --repo, and `mlctl status -C <that dir>` shows what it did",
            project_dir.display()
        );
    }
    let exe = std::env::current_exe().context("cannot find the mlctl executable")?;
    let mirror =
        Mirror::open(&agent::mirror_dir(&project_dir), &args.repo).map_err(|e| anyhow!("{e}"))?;
    let previous = agent::config(&project_dir);
    let config = AgentConfig {
        format_version: agent::FORMAT_VERSION,
        repo: mirror.display_url(),
        branch: args.branch.clone(),
        path: args.path.trim_matches('/').to_string(),
        current: previous
            .filter(|p| p.repo == mirror.display_url() && p.branch == args.branch)
            .and_then(|p| p.current),
    };
    agent::write_config(&project_dir, &config)?;
    let shared = Arc::new(server::Shared {
        metrics: Default::default(),
        trigger: tokio::sync::Notify::new(),
        secret,
        token,
        branch: args.branch.clone(),
        stopping: Default::default(),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut agent = Agent {
        project_dir,
        exe,
        interval,
        notify,
        shared,
        states: Vec::new(),
        failures: 0,
        invalid: Vec::new(),
        config,
        args,
    };
    rt.block_on(agent.main(mirror))
}

impl Agent {
    async fn main(&mut self, mirror: Mirror) -> Result<u8> {
        let listener = tokio::net::TcpListener::bind(self.args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", self.args.listen))?;
        let addr = listener.local_addr()?;
        let app = server::router(self.shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        tracing::info!(
            repo = %mirror.display_url(),
            branch = %self.args.branch,
            listen = %addr,
            interval = ?self.interval,
            "mlctl watch started"
        );
        let mirror = Arc::new(std::sync::Mutex::new(mirror));
        // A stop is noted, not acted on at once: the cycle in progress checks it between its
        // steps and a reconcile it started finishes (its own process group, not signalled).
        let stop = Arc::new(tokio::sync::Notify::new());
        {
            let (shared, stop) = (self.shared.clone(), stop.clone());
            tokio::spawn(async move {
                stop_signal().await;
                shared.stopping.store(true, Ordering::SeqCst);
                stop.notify_one();
            });
        }
        let mut jitter = policy::Jitter::new();
        loop {
            let t0 = Instant::now();
            let ok = self.cycle(&mirror).await;
            let seconds = t0.elapsed().as_secs_f64();
            if let Ok(mut m) = self.shared.metrics.lock() {
                m.observe_cycle(seconds);
            }
            self.failures = if ok { 0 } else { self.failures + 1 };
            if self.args.once {
                return Ok(if ok { 0 } else { 1 });
            }
            if self.shared.stopping.load(Ordering::SeqCst) {
                break;
            }
            let wait = policy::next_wait(self.interval, self.failures, jitter.unit());
            tracing::debug!(?wait, failures = self.failures, "sleeping");
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.shared.trigger.notified() => {}
                _ = stop.notified() => break,
            }
        }
        self.shared.stopping.store(true, Ordering::SeqCst);
        tracing::info!("mlctl watch stopped");
        Ok(0)
    }

    /// One cycle; false when something failed (fetch, apply), which backs off.
    async fn cycle(&mut self, mirror: &Arc<std::sync::Mutex<Mirror>>) -> bool {
        let m = mirror.clone();
        let branch = self.args.branch.clone();
        let fetched = tokio::task::spawn_blocking(move || {
            m.lock()
                .map_err(|_| anyhow!("mirror poisoned"))
                .and_then(|m| m.fetch(&branch).map_err(|e| anyhow!("{e}")))
        })
        .await
        .map_err(|e| anyhow!("{e}"))
        .and_then(|r| r);
        let tip = match fetched {
            Ok(tip) => tip,
            Err(e) => {
                tracing::warn!(error = %e, "fetch failed; retrying with backoff");
                self.fail("fetch");
                for s in &mut self.states {
                    s.last_error = Some(clip(&format!("fetch: {e}")));
                    s.updated_at = Some(agent::now());
                    let _ = agent::write_state(&self.project_dir, s);
                }
                return false;
            }
        };
        let mut ok = true;
        let seen_before = self.states.first().and_then(|s| s.last_seen_commit.clone());
        let new_tip = seen_before.as_deref() != Some(tip.as_str());
        if new_tip && self.config.current.as_deref() != Some(tip.as_str()) {
            match self.validate(&tip).await {
                Ok(()) => {
                    tracing::info!(commit = %short(&tip), "new commit, valid");
                    self.config.current = Some(tip.clone());
                    if let Err(e) = agent::write_config(&self.project_dir, &self.config) {
                        tracing::error!(error = %e, "cannot record the current commit");
                    }
                }
                Err(errors) => {
                    tracing::error!(commit = %short(&tip), errors = ?errors, "invalid spec: commit skipped; the last good commit keeps serving");
                    if let Ok(mut m) = self.shared.metrics.lock() {
                        m.invalid_commits += 1;
                    }
                    self.notify(&format!(
                        "mlctl watch: commit {} on {} has an invalid spec and was skipped ({} error{}); the last good commit keeps serving.\n{}",
                        short(&tip),
                        self.args.branch,
                        errors.len(),
                        if errors.len() == 1 { "" } else { "s" },
                        errors.iter().take(5).cloned().collect::<Vec<_>>().join("\n")
                    ))
                    .await;
                    self.invalid.push(InvalidCommit {
                        commit: tip.clone(),
                        at: agent::now(),
                        errors,
                    });
                }
            }
        }
        let Some(current) = self.config.current.clone() else {
            tracing::warn!("no valid commit on the branch yet: nothing to apply");
            for target in self.args.targets.clone() {
                let mut s = agent::state(&self.project_dir, &target).unwrap_or_default();
                s.format_version = agent::FORMAT_VERSION;
                s.target = target;
                s.repo = self.config.repo.clone();
                s.branch = self.args.branch.clone();
                s.pid = std::process::id();
                s.last_seen_commit = Some(tip.clone());
                s.invalid_commits.extend(self.invalid.iter().cloned());
                s.updated_at = Some(agent::now());
                let _ = agent::write_state(&self.project_dir, &s);
            }
            self.invalid.clear();
            return true;
        };
        let spec = match self.spec_at(&current).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the current commit's spec");
                return false;
            }
        };
        let targets = if self.args.targets.is_empty() {
            match spec.project.target(None) {
                Ok((name, _)) => vec![name.to_string()],
                Err(e) => {
                    tracing::error!(error = %e, "no target to watch");
                    return false;
                }
            }
        } else {
            self.args.targets.clone()
        };
        let self_heal = self.args.self_heal || spec.project.self_heal;
        for target in &targets {
            if self.shared.stopping.load(Ordering::SeqCst) {
                break;
            }
            if !self.states.iter().any(|s| &s.target == target) {
                let mut s = agent::state(&self.project_dir, target).unwrap_or_default();
                s.format_version = agent::FORMAT_VERSION;
                s.target = target.clone();
                self.states.push(s);
            }
            let idx = self
                .states
                .iter()
                .position(|s| &s.target == target)
                .unwrap_or(0);
            let mut state = self.states[idx].clone();
            state.repo = self.config.repo.clone();
            state.branch = self.args.branch.clone();
            state.pid = std::process::id();
            state.self_heal = self_heal;
            state.last_seen_commit = Some(tip.clone());
            state.invalid_commits.extend(self.invalid.iter().cloned());
            let n = state.invalid_commits.len();
            if n > 10 {
                state.invalid_commits.drain(..n - 10);
            }
            ok &= self.sync_target(&mut state, &current, self_heal).await;
            state.updated_at = Some(agent::now());
            if let Err(e) = agent::write_state(&self.project_dir, &state) {
                tracing::error!(error = %e, "cannot write the agent's state");
            }
            if let Ok(mut m) = self.shared.metrics.lock() {
                if let Some(c) = &state.last_synced_commit {
                    m.synced.insert(target.clone(), c.clone());
                }
                m.sync.insert(target.clone(), state.sync.as_str());
                m.health.insert(target.clone(), state.health.as_str());
            }
            self.states[idx] = state;
        }
        self.invalid.clear();
        ok
    }

    /// Reconciles `current` on one target when it is new there, then checks drift and
    /// health, self-heals, and runs due monitors. False when an apply failed.
    async fn sync_target(
        &mut self,
        state: &mut WatchState,
        current: &str,
        self_heal: bool,
    ) -> bool {
        let target = state.target.clone();
        let mut ok = true;
        let mut errors: Vec<String> = Vec::new();
        self.clear_pauses(&target, current).await;
        let pauses = agent::pauses(&self.project_dir, &target);
        let exclude: Vec<String> = pauses
            .pauses
            .iter()
            .map(|p| format!("Endpoint/{}", p.endpoint))
            .collect();
        let mut applied_now = false;
        if state.last_synced_commit.as_deref() != Some(current) {
            tracing::info!(target = %target, commit = %short(current), "reconciling");
            match self.reconcile(&target, current, &exclude).await {
                Ok(()) => {
                    state.last_synced_commit = Some(current.to_string());
                    state.last_synced_at = Some(agent::now());
                    applied_now = true;
                    tracing::info!(target = %target, commit = %short(current), "synced");
                }
                Err(e) => {
                    ok = false;
                    self.fail("apply");
                    tracing::error!(target = %target, commit = %short(current), error = %e, "apply failed; retrying with backoff");
                    errors.push(format!("apply of {}: {e}", short(current)));
                    self.notify(&format!(
                        "mlctl watch: applying {} to target `{target}` failed; retrying with backoff.\n{}",
                        short(current),
                        clip(&e.to_string())
                    ))
                    .await;
                }
            }
        }
        let rev = state
            .last_synced_commit
            .clone()
            .unwrap_or_else(|| current.to_string());
        let mut resources = match self.status(&target, &rev).await {
            Ok(r) => r,
            Err(e) => {
                self.fail("status");
                errors.push(format!("status: {e}"));
                Vec::new()
            }
        };
        mark_paused(&mut resources, &exclude);
        let drifted: Vec<&ResourceState> = resources
            .iter()
            .filter(|r| r.sync == SyncStatus::OutOfSync && !r.paused)
            .collect();
        if ok && !drifted.is_empty() && !applied_now && state.last_synced_commit.is_some() {
            let names: Vec<String> = drifted.iter().map(|r| r.resource.clone()).collect();
            if self_heal && !self.shared.stopping.load(Ordering::SeqCst) {
                tracing::warn!(target = %target, resources = ?names, "out of sync: self-healing");
                match self.reconcile(&target, &rev, &exclude).await {
                    Ok(()) => {
                        if let Ok(r) = self.status(&target, &rev).await {
                            resources = r;
                            mark_paused(&mut resources, &exclude);
                        }
                    }
                    Err(e) => {
                        ok = false;
                        self.fail("apply");
                        errors.push(format!("self-heal: {e}"));
                    }
                }
            } else {
                tracing::warn!(target = %target, resources = ?names, "out of sync (selfHeal is off: reported, not repaired)");
            }
        }
        if !self.shared.stopping.load(Ordering::SeqCst)
            && let Err(e) = self.monitors(&target).await
        {
            self.fail("monitor");
            errors.push(format!("monitors: {e}"));
        }
        let pending = state.last_synced_commit.as_deref() != Some(current);
        state.sync = if resources.is_empty() {
            SyncStatus::Unknown
        } else if pending || resources.iter().any(|r| r.sync != SyncStatus::Synced) {
            SyncStatus::OutOfSync
        } else {
            SyncStatus::Synced
        };
        state.health = Health::worst(resources.iter().map(|r| r.health));
        state.resources = resources;
        state.last_error = if errors.is_empty() {
            None
        } else {
            Some(clip(&errors.join("; ")))
        };
        tracing::info!(
            target = %target,
            sync = state.sync.as_str(),
            health = state.health.as_str(),
            synced = %state.last_synced_commit.as_deref().map(short).unwrap_or("-"),
            "cycle done"
        );
        ok
    }

    /// Ends the pauses whose endpoint, or anything it is built from, changed between the
    /// pause's commit and `current`.
    async fn clear_pauses(&self, target: &str, current: &str) {
        let mut pauses = agent::pauses(&self.project_dir, target);
        if pauses.pauses.is_empty() {
            return;
        }
        let mut kept = Vec::new();
        for p in std::mem::take(&mut pauses.pauses) {
            if p.commit == current {
                kept.push(p);
                continue;
            }
            match self.changed_upstream(&p, current).await {
                Ok(true) => tracing::info!(
                    target = %target,
                    endpoint = %p.endpoint,
                    commit = %short(current),
                    "git changed the paused endpoint: sync resumes"
                ),
                Ok(false) => kept.push(p),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot compare commits for a pause; kept");
                    kept.push(p);
                }
            }
        }
        pauses.pauses = kept;
        let _ = agent::write_pauses(&self.project_dir, target, &pauses);
    }

    async fn changed_upstream(&self, pause: &Pause, current: &str) -> Result<bool> {
        let (old, new) = (
            self.spec_at(&pause.commit).await?,
            self.spec_at(current).await?,
        );
        let diff = mlctl_git::spec_diff(&old, &new);
        let mut changed: std::collections::BTreeSet<String> =
            diff.added.iter().map(ToString::to_string).collect();
        changed.extend(diff.removed.iter().map(ToString::to_string));
        changed.extend(diff.changed.iter().map(|c| c.id.to_string()));
        // The endpoint and everything upstream of it in the new spec.
        let mut todo = vec![format!("Endpoint/{}", pause.endpoint)];
        let mut seen = std::collections::BTreeSet::new();
        while let Some(id) = todo.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            if let Some(r) = new.resources.iter().find(|r| r.id.to_string() == id) {
                todo.extend(r.depends_on.iter().map(ToString::to_string));
            }
        }
        Ok(seen.iter().any(|id| changed.contains(id)))
    }

    /// Validates the spec at `sha` as each watched target sees it (its overrides merged), with
    /// what the target refuses to honour ("honoured or refused"): the errors when it is not
    /// usable, each with file:line:col, so such a commit is skipped rather than retried.
    async fn validate(&self, sha: &str) -> std::result::Result<(), Vec<String>> {
        let dir = self.project_dir.clone();
        let path = self.config.path.clone();
        let sha = sha.to_string();
        let watched = self.args.targets.clone();
        tokio::task::spawn_blocking(move || {
            let repo = Repo::open_mirror(&agent::mirror_dir(&dir), &path, &dir)
                .map_err(|e| vec![e.to_string()])?;
            let (_, loaded) = repo.load_at(&sha).map_err(|e| vec![e.to_string()])?;
            let Some(spec) = &loaded.spec else {
                return Err(shown(loaded.errors(), None));
            };
            let targets = if watched.is_empty() {
                match spec.project.target(None) {
                    Ok((name, _)) => vec![name.to_string()],
                    Err(e) => return Err(vec![clip(&e.to_string())]),
                }
            } else {
                watched
            };
            let mut errors = Vec::new();
            for target in &targets {
                let (_, loaded) = repo
                    .load_at_for(&sha, Some(target))
                    .map_err(|e| vec![e.to_string()])?;
                let Some(spec) = &loaded.spec else {
                    errors.extend(shown(loaded.errors(), Some(target)));
                    continue;
                };
                let (name, t) = match spec.project.target(Some(target)) {
                    Ok(x) => x,
                    Err(e) => {
                        errors.push(clip(&format!("target {target}: {e}")));
                        continue;
                    }
                };
                match crate::support::for_config(spec, name, t) {
                    Ok(ts) => {
                        let refusals = crate::support::refusals(spec, name, &ts);
                        errors.extend(shown(
                            refusals.iter().filter(|d| d.is_error()),
                            Some(target),
                        ));
                    }
                    Err(e) => errors.push(clip(&format!("target {target}: {e}"))),
                }
            }
            errors.truncate(agent::MAX_ERRORS);
            if errors.is_empty() {
                Ok(())
            } else {
                Err(errors)
            }
        })
        .await
        .unwrap_or_else(|e| Err(vec![e.to_string()]))
    }

    async fn spec_at(&self, sha: &str) -> Result<mlctl_spec::Spec> {
        let dir = self.project_dir.clone();
        let path = self.config.path.clone();
        let sha = sha.to_string();
        tokio::task::spawn_blocking(move || {
            let repo = Repo::open_mirror(&agent::mirror_dir(&dir), &path, &dir)
                .map_err(|e| anyhow!("{e}"))?;
            let (commit, loaded) = repo.load_at(&sha).map_err(|e| anyhow!("{e}"))?;
            loaded
                .spec
                .ok_or_else(|| anyhow!("the spec at {} is invalid", commit.short_sha))
        })
        .await
        .map_err(|e| anyhow!("{e}"))?
    }

    async fn reconcile(&self, target: &str, rev: &str, exclude: &[String]) -> Result<()> {
        let mut args = vec![
            "reconcile".to_string(),
            "--rev".into(),
            rev.into(),
            "-t".into(),
            target.into(),
            "--lock-timeout".into(),
            self.args.lock_timeout.clone(),
        ];
        for e in exclude {
            args.push("--exclude".into());
            args.push(e.clone());
        }
        let out = self.child(&args).await?;
        if out.status.success() {
            return Ok(());
        }
        Err(anyhow!(
            "`mlctl reconcile` exited with {}: {}",
            out.status,
            tail(&out.stderr)
        ))
    }

    async fn status(&self, target: &str, rev: &str) -> Result<Vec<ResourceState>> {
        let args = ["status", "-o", "json", "--rev", rev, "-t", target].map(String::from);
        let out = self.child(&args).await?;
        if !out.status.success() {
            bail!(
                "`mlctl status` exited with {}: {}",
                out.status,
                tail(&out.stderr)
            );
        }
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("`mlctl status -o json` output")?;
        Ok(v["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                let sync_word = r["sync"].as_str().unwrap_or("");
                let health_word = r["health"].as_str().unwrap_or("");
                let mut reasons: Vec<String> = r["reasons"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect();
                reasons.extend(r["message"].as_str().map(str::to_string));
                ResourceState {
                    resource: r["resource"].as_str().unwrap_or("").to_string(),
                    sync: if sync_word == "synced" {
                        SyncStatus::Synced
                    } else {
                        SyncStatus::OutOfSync
                    },
                    health: Health::of_status(sync_word, health_word),
                    paused: false,
                    reasons,
                }
            })
            .collect())
    }

    async fn monitors(&self, target: &str) -> Result<()> {
        let args = ["monitor", "run", "--due", "-t", target].map(String::from);
        let out = self.child(&args).await?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !text.trim().is_empty() {
            tracing::info!(target = %target, output = %clip(text.trim()), "monitor run --due");
        }
        // 1 is a breach under `onBreach.fail` (the monitor's health says so); other codes fail.
        match out.status.code() {
            Some(0) | Some(1) => Ok(()),
            _ => Err(anyhow!(
                "`mlctl monitor run --due` exited with {}: {}",
                out.status,
                tail(&out.stderr)
            )),
        }
    }

    /// Runs `mlctl -C <dir> ARGS`; its output is logged at debug level. The child leads its
    /// own process group, so a Ctrl-C meant for the agent does not cut it mid-step: the
    /// agent stops taking triggers and waits for it.
    async fn child(&self, args: &[String]) -> Result<std::process::Output> {
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.arg("-C")
            .arg(&self.project_dir)
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("MLCTL_PROJECT")
            .stdin(std::process::Stdio::null())
            .process_group(0);
        let out = cmd
            .output()
            .await
            .with_context(|| format!("cannot run mlctl {}", args.join(" ")))?;
        tracing::debug!(
            command = %args.join(" "),
            status = %out.status,
            stdout = %clip(&String::from_utf8_lossy(&out.stdout)),
            stderr = %clip(&String::from_utf8_lossy(&out.stderr)),
            "child"
        );
        Ok(out)
    }

    fn fail(&self, reason: &'static str) {
        if let Ok(mut m) = self.shared.metrics.lock() {
            m.fail(reason);
        }
    }

    async fn notify(&self, text: &str) {
        let Some(url) = &self.notify else { return };
        let client = reqwest::Client::new();
        let sent = client
            .post(url)
            .json(&serde_json::json!({ "text": text }))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .and_then(|r| r.error_for_status());
        if let Err(e) = sent {
            self.fail("notify");
            // reqwest's error names the URL, which may carry a token: not shown.
            tracing::warn!(status = ?e.status(), "the --notify webhook failed");
        }
    }
}

fn mark_paused(resources: &mut [ResourceState], exclude: &[String]) {
    for r in resources {
        if exclude.contains(&r.resource) {
            r.paused = true;
            r.sync = SyncStatus::OutOfSync;
            r.reasons.insert(
                0,
                "Paused: a rollback paused its sync until git changes it".into(),
            );
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: finishing the current step, then stopping"),
        _ = int.recv() => tracing::info!("SIGINT: finishing the current step, then stopping"),
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

/// A message cut at 4 KiB.
fn clip(s: &str) -> String {
    const MAX: usize = 4096;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &s[..end], s.len())
}

/// The last lines of a child's stderr.
fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    clip(&lines[lines.len().saturating_sub(8)..].join("\n"))
}

/// Diagnostics as the agent reports them: `file:line:col: message`, at most
/// [`agent::MAX_ERRORS`], each clipped; prefixed with the target when there is one.
fn shown<'a>(
    diags: impl Iterator<Item = &'a mlctl_spec::Diagnostic>,
    target: Option<&str>,
) -> Vec<String> {
    diags
        .take(agent::MAX_ERRORS)
        .map(|d| {
            let at = d
                .span
                .map(|s| format!("{}:{}", s.line, s.col))
                .unwrap_or_default();
            let prefix = target.map(|t| format!("target {t}: ")).unwrap_or_default();
            clip(&format!("{prefix}{}:{at}: {}", d.file, d.message))
        })
        .collect()
}
