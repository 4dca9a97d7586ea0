//! What `mlctl watch` keeps in its directory, and what other commands read of it.
//!
//! An agent directory is a project directory whose spec comes from the agent's private
//! mirror of the watched remote, not from a work tree:
//!
//! ```text
//! <dir>/.mlctl/watch/agent.json        AgentConfig: the remote (no credentials), branch, path
//! <dir>/.mlctl/watch/mirror.git/       the bare mirror (mlctl_git::Mirror)
//! <dir>/.mlctl/watch/<target>.json     WatchState: sync, health, commits, errors
//! <dir>/.mlctl/watch/<target>.pauses.json  Pauses: endpoints a rollback paused
//! ```
//!
//! `session::open` reads the spec of an agent directory from the mirror (`HEAD` there is the
//! last commit the agent found valid), so `mlctl status`, `rollback` and `monitor` run with
//! `-C <dir>` as in a checkout, and the agent's own reconciles are `mlctl reconcile --rev`.
//! Every file carries `formatVersion`, is written whole (a temporary file, then a rename) and
//! never holds a credential.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The format version of every file here.
pub const FORMAT_VERSION: u32 = 1;

/// `<dir>/.mlctl/watch`.
pub fn watch_dir(project_dir: &Path) -> PathBuf {
    project_dir.join(".mlctl").join("watch")
}

/// The agent's mirror.
pub fn mirror_dir(project_dir: &Path) -> PathBuf {
    watch_dir(project_dir).join("mirror.git")
}

/// What the agent follows; written when it starts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AgentConfig {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The remote, without user information.
    pub repo: String,
    /// The branch followed.
    pub branch: String,
    /// The project's directory inside the repository (`/`-separated, empty at the root).
    pub path: String,
    /// The newest commit of the branch whose spec is valid: what `HEAD` means in this
    /// directory. Absent before the first valid one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
}

/// Sync status, Argo CD's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SyncStatus {
    /// The target is as the commit says.
    Synced,
    /// It is not (drift, a failed apply, a paused endpoint, a commit not applied yet).
    OutOfSync,
    /// Not known yet.
    #[default]
    Unknown,
}

impl SyncStatus {
    /// The word.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::Synced => "Synced",
            SyncStatus::OutOfSync => "OutOfSync",
            SyncStatus::Unknown => "Unknown",
        }
    }
}

/// Health, Argo CD's words, ordered from best to worst: the worst one wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub enum Health {
    /// Working as applied.
    Healthy,
    /// Still converging (training, rolling out, a canary baking).
    Progressing,
    /// Not on the target at all.
    Missing,
    /// There but not working (a dead server, a breached monitor, a failed apply).
    Degraded,
    /// Not known.
    #[default]
    Unknown,
}

impl Health {
    /// The word.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "Healthy",
            Health::Progressing => "Progressing",
            Health::Missing => "Missing",
            Health::Degraded => "Degraded",
            Health::Unknown => "Unknown",
        }
    }

    /// The word for a resource from `mlctl status` (its sync and lower-case health).
    pub fn of_status(sync: &str, health: &str) -> Health {
        if sync == "missing" {
            return Health::Missing;
        }
        match health {
            "healthy" => Health::Healthy,
            "progressing" => Health::Progressing,
            "degraded" | "failed" => Health::Degraded,
            _ => Health::Unknown,
        }
    }

    /// The overall health of several: the worst; Unknown when there are none.
    pub fn worst(all: impl IntoIterator<Item = Health>) -> Health {
        all.into_iter().max().unwrap_or(Health::Unknown)
    }
}

/// One resource as the agent saw it last.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResourceState {
    /// `Kind/name`.
    pub resource: String,
    /// Its sync status (`Paused` endpoints are OutOfSync with `paused` set).
    pub sync: SyncStatus,
    /// Its health.
    pub health: Health,
    /// A rollback paused its sync.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// Why it is out of sync or unhealthy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// A commit whose spec did not validate: skipped, never applied.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InvalidCommit {
    /// Full SHA.
    pub commit: String,
    /// When the agent found it (RFC 3339).
    pub at: String,
    /// The errors (at most [`MAX_ERRORS`], each bounded).
    pub errors: Vec<String>,
}

/// How many errors of an invalid commit are kept.
pub const MAX_ERRORS: usize = 20;

/// The agent's state for one target.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct WatchState {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The target.
    pub target: String,
    /// The remote, without user information.
    pub repo: String,
    /// The branch.
    pub branch: String,
    /// The agent's process id while it runs.
    pub pid: u32,
    /// Whether out-of-band changes are repaired.
    pub self_heal: bool,
    /// The branch's tip at the last fetch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_commit: Option<String>,
    /// The commit last applied in full on this target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synced_commit: Option<String>,
    /// When it was (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synced_at: Option<String>,
    /// Sync status of the target.
    pub sync: SyncStatus,
    /// Overall health (the worst of the resources').
    pub health: Health,
    /// Per resource.
    #[serde(default)]
    pub resources: Vec<ResourceState>,
    /// The last failure (fetch, apply, monitor), bounded; cleared by a cycle without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The newest invalid commits (at most 10), newest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invalid_commits: Vec<InvalidCommit>,
    /// When the last cycle ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

/// A rollback's pause of one endpoint's sync.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Pause {
    /// The endpoint.
    pub endpoint: String,
    /// Why (`rollback by hand`, or the monitor breach that asked for it).
    pub reason: String,
    /// Who (`user@host`).
    pub by: String,
    /// When (RFC 3339).
    pub since: String,
    /// The commit the agent had applied when the pause began: a later commit that changes
    /// the endpoint or what it is built from, compared with this one, ends the pause.
    pub commit: String,
    /// The model and version rolled back to.
    pub model: String,
    /// The version rolled back to.
    pub version: u32,
    /// The `git revert` that makes git agree, when mlctl knows the commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert: Option<String>,
}

/// The pauses of one target.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Pauses {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Paused endpoints.
    pub pauses: Vec<Pause>,
}

/// The agent's config in `project_dir`, if an agent runs (or ran) there.
pub fn config(project_dir: &Path) -> Option<AgentConfig> {
    read(&watch_dir(project_dir).join("agent.json"))
}

/// Writes the agent's config.
pub fn write_config(project_dir: &Path, c: &AgentConfig) -> Result<()> {
    write(&watch_dir(project_dir).join("agent.json"), c)
}

/// The agent's state for `target`.
pub fn state(project_dir: &Path, target: &str) -> Option<WatchState> {
    read(&watch_dir(project_dir).join(format!("{target}.json")))
}

/// Writes the agent's state for its target.
pub fn write_state(project_dir: &Path, s: &WatchState) -> Result<()> {
    write(
        &watch_dir(project_dir).join(format!("{}.json", s.target)),
        s,
    )
}

/// The pauses of `target` (none when the file is absent).
pub fn pauses(project_dir: &Path, target: &str) -> Pauses {
    read(&watch_dir(project_dir).join(format!("{target}.pauses.json"))).unwrap_or(Pauses {
        format_version: FORMAT_VERSION,
        pauses: Vec::new(),
    })
}

/// Writes the pauses of `target`.
pub fn write_pauses(project_dir: &Path, target: &str, p: &Pauses) -> Result<()> {
    write(
        &watch_dir(project_dir).join(format!("{target}.pauses.json")),
        p,
    )
}

fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    // A file from a newer mlctl is not misread: it is as if absent.
    mlctl_core::state::check_format_json("watch state", &bytes).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn write<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec_pretty(value)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Now, RFC 3339.
pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_health_wins() {
        use Health::*;
        assert_eq!(Health::worst([Healthy, Healthy]), Healthy);
        assert_eq!(Health::worst([Healthy, Progressing]), Progressing);
        assert_eq!(Health::worst([Progressing, Missing, Healthy]), Missing);
        assert_eq!(Health::worst([Missing, Degraded]), Degraded);
        assert_eq!(Health::worst([Degraded, Unknown]), Unknown);
        assert_eq!(Health::worst([]), Unknown);
    }

    #[test]
    fn status_words_map_to_argo_words() {
        assert_eq!(Health::of_status("missing", "unknown"), Health::Missing);
        assert_eq!(Health::of_status("synced", "healthy"), Health::Healthy);
        assert_eq!(Health::of_status("out-of-sync", "failed"), Health::Degraded);
        assert_eq!(
            Health::of_status("synced", "progressing"),
            Health::Progressing
        );
        assert_eq!(Health::of_status("synced", "unknown"), Health::Unknown);
    }
}
