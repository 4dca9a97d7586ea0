//! Opening a project for a command: the spec at a revision, the target, its component stack.

use crate::Exit;
use crate::cli::{RevArgs, TargetArgs};
use crate::commands::validate::print_diagnostics;
use anyhow::{Context, Result, anyhow, bail};
use mlctl_core::plan::{Desired, DigestError};
use mlctl_core::{OpContext, ProviderConfig, Stack};
use mlctl_git::{Commit, Repo};
use mlctl_spec::{Component, DirFiles, ProviderKind, Spec, Target};
use std::path::{Path, PathBuf};

/// A loaded project on a target.
pub struct Session {
    /// The project directory (canonical).
    pub project_dir: PathBuf,
    /// Where the spec's data and code are read: the project directory, or, for a commit other
    /// than HEAD, a snapshot of that commit's files (`revision.rs`).
    pub source_dir: PathBuf,
    /// The validated spec.
    pub spec: Spec,
    /// The commit the spec was read at.
    pub commit: Commit,
    /// Target name.
    pub target_name: String,
    /// The target's components.
    pub stack: Stack,
    /// Context for component calls.
    pub ctx: OpContext,
    /// The async runtime.
    pub rt: tokio::runtime::Runtime,
}

/// The tokio runtime every command uses.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Loads the spec (at `rev`, or from the work tree with `--allow-dirty`) and opens the target.
pub fn open(project: &Path, target: &TargetArgs, rev: &RevArgs) -> Result<Session> {
    // An agent directory (`mlctl watch`) reads the spec from the agent's mirror; `HEAD` there
    // is the newest commit the agent found valid, and every revision is a snapshot.
    if let Some(agent) = crate::agent::config(project) {
        let mirror = crate::agent::mirror_dir(project);
        let repo = Repo::open_mirror(&mirror, &agent.path, project).map_err(|e| anyhow!("{e}"))?;
        let rev_name = match (&agent.current, rev.rev.as_str()) {
            (Some(current), "HEAD") => current.clone(),
            _ => rev.rev.clone(),
        };
        let (commit, loaded) = repo.load_at(&rev_name).map_err(|e| anyhow!("{e}"))?;
        return finish(repo, commit, loaded, None, target, rev);
    }
    let repo = Repo::discover(project).map_err(|e| anyhow!("{e}"))?;
    let project_dir = repo.project_dir().to_path_buf();
    let head = repo.head_commit().map_err(|e| anyhow!("{e}"))?;
    let (commit, loaded) = if rev.allow_dirty && rev.rev == "HEAD" {
        (
            head.clone(),
            mlctl_spec::load_for(&DirFiles::new(&project_dir), target.target.as_deref()),
        )
    } else {
        if rev.rev == "HEAD" {
            repo.ensure_clean(false).map_err(|e| anyhow!("{e}"))?;
        }
        repo.load_at_for(&rev.rev, target.target.as_deref())
            .map_err(|e| anyhow!("{e}"))?
    };
    finish(repo, commit, loaded, Some(head), target, rev)
}

/// [`open`] once the spec is loaded: `head` is the work tree's commit (none in an agent
/// directory, whose every revision is read from a snapshot).
fn finish(
    repo: Repo,
    commit: Commit,
    loaded: mlctl_spec::Loaded,
    head: Option<Commit>,
    target: &TargetArgs,
    rev: &RevArgs,
) -> Result<Session> {
    let project_dir = repo.project_dir().to_path_buf();
    print_diagnostics(&loaded.diagnostics);
    let Some(spec) = loaded.spec else {
        let n = loaded.errors().count();
        eprintln!(
            "error: the spec at {} has {n} error{}; nothing was changed",
            commit.short_sha,
            if n == 1 { "" } else { "s" }
        );
        return Err(Exit(1).into());
    };
    let source_dir = if head.is_some_and(|h| h.sha == commit.sha) {
        project_dir.clone()
    } else {
        snapshot(&repo, &spec, &commit, &project_dir, rev.allow_dirty)?
    };
    let (target_name, target_cfg) = spec
        .project
        .target(target.target.as_deref())
        .map_err(|e| anyhow!(e))?;
    let target_name = target_name.to_string();
    let target_cfg = target_cfg.clone();
    let rt = runtime()?;
    let stack = build_stack(&spec, &project_dir, &target_name, &target_cfg, &rt)?;
    let ctx = OpContext {
        project: spec.project.name.clone(),
        project_dir: source_dir.clone(),
        target: target_name.clone(),
        commit: commit.sha.clone(),
    };
    Ok(Session {
        project_dir,
        source_dir,
        spec,
        commit,
        target_name,
        stack,
        ctx,
        rt,
    })
}

/// The data and code of `spec` as they are in `commit`, in a snapshot directory; what the
/// commit does not track is refused, or with `allow_dirty` taken from the work tree.
fn snapshot(
    repo: &Repo,
    spec: &Spec,
    commit: &Commit,
    project_dir: &Path,
    allow_dirty: bool,
) -> Result<PathBuf> {
    let dest = crate::revision::snapshot_dir(project_dir, commit);
    let untracked =
        crate::revision::snapshot(repo, spec, commit, &dest).map_err(|e| anyhow!("{e}"))?;
    if untracked.diagnostics.is_empty() {
        return Ok(dest);
    }
    if !allow_dirty {
        print_diagnostics(&untracked.diagnostics);
        let n = untracked.paths.len();
        eprintln!(
            "error: {n} file{} the spec at {} reads {} not tracked in git at that commit; nothing was changed",
            if n == 1 { "" } else { "s" },
            commit.short_sha,
            if n == 1 { "is" } else { "are" }
        );
        return Err(Exit(1).into());
    }
    crate::revision::copy_from_work_tree(project_dir, &untracked.paths, &dest)
        .with_context(|| format!("cannot copy work-tree files into {}", dest.display()))?;
    eprintln!(
        "warning: --allow-dirty: {} not tracked at commit {}, read from the work tree as it is now: {}",
        if untracked.paths.len() == 1 {
            "this file is"
        } else {
            "these files are"
        },
        commit.short_sha,
        mlctl_spec::suggest::list(&untracked.paths)
    );
    Ok(dest)
}

/// Opens a target without a git revision (registry/run commands read only the target).
pub fn open_target(project: &Path, target: &TargetArgs) -> Result<Session> {
    open(
        project,
        target,
        &RevArgs {
            rev: "HEAD".into(),
            allow_dirty: true,
        },
    )
}

/// Resolves every `${env:NAME}` of a target's `tracking:`.
fn resolve_tracking(name: &str, t: &mlctl_spec::Tracking) -> Result<mlctl_spec::Tracking> {
    let mut t = t.clone();
    for (field, value) in t.settings_mut() {
        *value = mlctl_spec::env::resolve(value, |n| std::env::var(n).ok())
            .map_err(|e| anyhow!("target `{name}`, field `{field}`: {e}"))?;
    }
    Ok(t)
}

/// Resolves every `${env:NAME}` of a target's settings.
fn resolve_target(name: &str, t: &Target) -> Result<Target> {
    let mut t = t.clone();
    for (field, value) in t.settings_mut() {
        *value = mlctl_spec::env::resolve(value, |n| std::env::var(n).ok())
            .map_err(|e| anyhow!("target `{name}`, field `{field}`: {e}"))?;
    }
    Ok(t)
}

#[cfg_attr(
    not(any(feature = "sagemaker", feature = "azureml")),
    allow(unused_variables)
)]
fn single_stack(cfg: &ProviderConfig, rt: &tokio::runtime::Runtime) -> Result<Stack> {
    let open_err =
        |e: mlctl_core::ProviderError| anyhow!("cannot open target `{}`: {e}", cfg.target_name);
    match cfg.target.provider() {
        ProviderKind::Mock => mlctl_provider_mock::stack(cfg).map_err(open_err),
        ProviderKind::Local => {
            let exe = std::env::current_exe().context("cannot find the mlctl executable")?;
            mlctl_provider_local::stack(cfg, exe).map_err(open_err)
        }
        #[cfg(feature = "sagemaker")]
        ProviderKind::Sagemaker => rt
            .block_on(mlctl_provider_sagemaker::stack(cfg))
            .map_err(open_err),
        #[cfg(not(feature = "sagemaker"))]
        ProviderKind::Sagemaker => bail!(
            "target `{}` uses the sagemaker provider, which this build of mlctl leaves out; build it in with `cargo build --release -p mlctl-cli` (the `sagemaker` feature is on by default)",
            cfg.target_name
        ),
        #[cfg(feature = "azureml")]
        ProviderKind::Azureml => rt
            .block_on(mlctl_provider_azureml::stack(cfg))
            .map_err(open_err),
        #[cfg(not(feature = "azureml"))]
        ProviderKind::Azureml => bail!(
            "target `{}` uses the azureml provider, which this build of mlctl leaves out; build it in with `cargo build --release -p mlctl-cli` (the `azureml` feature is on by default)",
            cfg.target_name
        ),
    }
}

/// Builds a target's stack, taking components from other targets where `components:` says so.
pub fn build_stack(
    spec: &Spec,
    project_dir: &Path,
    name: &str,
    target: &Target,
    rt: &tokio::runtime::Runtime,
) -> Result<Stack> {
    let cfg = |name: &str, t: &Target| -> Result<ProviderConfig> {
        Ok(ProviderConfig {
            project: spec.project.name.clone(),
            project_dir: project_dir.to_path_buf(),
            target_name: name.to_string(),
            target: resolve_target(name, t)?,
        })
    };
    let mut stack = single_stack(&cfg(name, target)?, rt)?;
    for (component, other) in target.components() {
        let (other_name, other_target) = spec
            .project
            .target(Some(other))
            .map_err(|e| anyhow!("target `{name}`, component `{}`: {e}", component.as_str()))?;
        if !other_target.components().is_empty() {
            bail!(
                "target `{name}` takes its {} from `{other_name}`, which itself mixes components; point at a plain target",
                component.as_str()
            );
        }
        let from = single_stack(&cfg(other_name, other_target)?, rt)?;
        match component {
            Component::DataStore => stack.data = from.data,
            Component::Trainer => stack.trainer = from.trainer,
            Component::Registry => stack.registry = from.registry,
            Component::Deployer => stack.deployer = from.deployer,
            Component::MonitorSink => stack.monitor = from.monitor,
        }
        stack.provider = format!("{}+{}", stack.provider, from.provider);
    }
    // `tracking.registry: source`: the tracking server's registry is the target's.
    if let Some(t) = target.tracking()
        && t.registry == Some(mlctl_spec::TrackingRegistry::Source)
    {
        let t = resolve_tracking(name, t)?;
        let experiment = t
            .experiment
            .clone()
            .unwrap_or_else(|| spec.project.name.clone());
        let cache = cfg(name, target)?.state_dir().join("mlflow-registry");
        let fields = stack.registry.capabilities().fields;
        let registry = mlctl_provider_mlflow::MlflowRegistry::new(&t, &experiment, cache, fields)
            .map_err(|e| anyhow!("cannot open target `{name}`: {e}"))?;
        stack.registry = std::sync::Arc::new(registry);
        stack.provider = format!("{}+mlflow", stack.provider);
    }
    Ok(stack)
}

impl Session {
    /// The target's `tracking:` server, with its `${env:...}` resolved.
    pub fn tracking(&self) -> Result<Option<mlctl_spec::Tracking>> {
        match self
            .spec
            .project
            .targets
            .get(&self.target_name)
            .and_then(|t| t.tracking())
        {
            Some(t) => resolve_tracking(&self.target_name, t).map(Some),
            None => Ok(None),
        }
    }

    /// Refuses to go on when the target does not honour a field the spec writes: every such
    /// field is reported at once, at its position, with what to do instead. Returns the notes
    /// the target wants shown with the plan.
    pub fn ensure_supported(&self) -> Result<Vec<String>> {
        let (_, target) = self
            .spec
            .project
            .target(Some(&self.target_name))
            .map_err(|e| anyhow!(e))?;
        let unset: Vec<mlctl_spec::Diagnostic> =
            mlctl_core::env::unset(&self.spec, &|n| std::env::var(n).ok())
                .into_iter()
                .map(|u| {
                    let source = self
                        .spec
                        .sources
                        .get(&u.location.file)
                        .map(String::as_str)
                        .unwrap_or("");
                    mlctl_spec::Diagnostic::error(
                        "env-unset",
                        &u.location.file,
                        source,
                        Some(u.location.span),
                        format!("`{}` of {}: {}", u.field, u.id, u.error),
                    )
                })
                .collect();
        let escapes = crate::paths::escapes(&self.spec, &self.project_dir);
        let ts = crate::support::for_stack(&self.spec, &self.target_name, target, &self.stack);
        let refusals = crate::support::refusals(&self.spec, &self.target_name, &ts);
        if unset.is_empty() && escapes.is_empty() && refusals.is_empty() {
            return Ok(ts.notes().to_vec());
        }
        // Everything that stops this run, at once: a user fixes all of it in one go.
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        let mut why = Vec::new();
        if !unset.is_empty() {
            why.push(format!(
                "{} cannot be resolved",
                plural(
                    unset.len(),
                    "environment reference",
                    "environment references"
                )
            ));
        }
        if !escapes.is_empty() {
            why.push(format!(
                "{} outside the project",
                plural(escapes.len(), "path leads", "paths lead")
            ));
        }
        if !refusals.is_empty() {
            why.push(format!(
                "target `{}` does not honour {}",
                self.target_name,
                plural(refusals.len(), "field", "fields")
            ));
        }
        let mut all = unset;
        all.extend(escapes);
        all.extend(refusals);
        all.sort_by(|a, b| (a.file.as_str(), a.span).cmp(&(b.file.as_str(), b.span)));
        print_diagnostics(&all);
        eprintln!(
            "error: {} (the spec at {}); nothing was changed",
            why.join("; "),
            self.commit.short_sha
        );
        Err(Exit(1).into())
    }

    /// Desired state for `destroy`, which deletes what the target has and creates nothing: no
    /// data or code is read, so a deleted data file or an unset `${env:...}` source does not
    /// stand in the way of tearing down.
    pub fn desired_unread(&self) -> Result<Desired> {
        Desired::new(&self.spec, &self.commit.sha, &|_| Ok("unread".to_string()))
            .context("cannot order the spec's resources")
    }

    /// Desired state: fingerprints over the spec and the content of data and code.
    pub fn desired(&self) -> Result<Desired> {
        let cache_file = self
            .project_dir
            .join(".mlctl")
            .join("cache")
            .join("digests.json");
        let cache = std::sync::Mutex::new(mlctl_ml::digest::DigestCache::open(cache_file));
        let dir = self.source_dir.clone();
        let digest = |rel: &str| -> Result<String, DigestError> {
            if rel.contains("://") {
                // A remote source: its version upstream, as the target reads it.
                let url = mlctl_spec::env::resolve(rel, |n| std::env::var(n).ok())
                    .map_err(|e| e.to_string())?;
                return self
                    .rt
                    .block_on(self.stack.data.source_version(&self.ctx, &url))
                    .map_err(|e| e.message.into());
            }
            // A `${env:...}` source is read where its value points (plan checked it is set).
            let rel = mlctl_spec::env::resolve(rel, |n| std::env::var(n).ok())
                .map_err(|e| e.to_string())?;
            let path = dir.join(rel);
            let mut cache = cache.lock().map_err(|_| "digest cache poisoned")?;
            mlctl_ml::digest::digest_path(&path, Some(&mut cache))
                .map_err(|e| format!("{}: {e}", path.display()).into())
        };
        // A secret's value is in the fingerprint as a keyed digest only (`mlctl_core::secrets`).
        let key = self
            .rt
            .block_on(self.stack.state.digest_key())
            .context("cannot read the target's secret-digest key")?;
        let secret = |name: &str| std::env::var(name).ok().map(|v| key.digest(&v));
        // What monitors' onBreach.retrain asked to train again, from their stored results.
        let mut failed = None;
        let retrains = mlctl_core::monitoring::retrain_requests(&self.spec, &mut |m| match self
            .rt
            .block_on(self.stack.state.monitor_results(&self.ctx.project, m))
        {
            Ok(r) => r,
            Err(e) => {
                failed = Some(e);
                Vec::new()
            }
        });
        if let Some(e) = failed {
            return Err(anyhow!(
                "cannot read the results of the spec's monitors: {e}"
            ));
        }
        let retrain = |id: &mlctl_spec::ResourceId| retrains.get(id).cloned();
        let desired =
            Desired::with_retrains(&self.spec, &self.commit.sha, &digest, &secret, &retrain)
                .context("cannot compute fingerprints")?;
        if let Ok(mut c) = cache.lock() {
            // A cache that cannot be saved only costs time on the next run.
            let _ = c.save();
        }
        Ok(desired)
    }
}
