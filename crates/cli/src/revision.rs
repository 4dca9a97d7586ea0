//! `--rev` at an older commit reads that commit's data and code, never today's: the files
//! every resource reads (each spec's `content_inputs()`) are copied out of the commit's tree
//! into a snapshot directory, `.mlctl/rev/<sha>/`, which the session then digests and the
//! target reads from. A file the commit does not have (untracked, ignored) is refused at its
//! position unless `--allow-dirty`, which copies it from the work tree as it is now, with a
//! warning: an old spec is never mixed with today's data without the user saying so.

use mlctl_git::{Commit, Repo};
use mlctl_spec::{Diagnostic, Resource, Spec};
use std::path::{Path, PathBuf};

/// What a snapshot could not take from the commit.
pub struct Untracked {
    /// Every input the commit lacks, at its position.
    pub diagnostics: Vec<Diagnostic>,
    /// Their project-relative paths (resolved), for copying from the work tree.
    pub paths: Vec<String>,
}

/// Where a commit's files are put for a command at that commit.
pub fn snapshot_dir(project_dir: &Path, commit: &Commit) -> PathBuf {
    project_dir.join(".mlctl").join("rev").join(&commit.sha)
}

/// Copies every content input of `spec` as it is in `commit` into `dest`; returns what the
/// commit does not have.
///
/// # Errors
/// Reading from git or writing to `dest` failed.
pub fn snapshot(
    repo: &Repo,
    spec: &Spec,
    commit: &Commit,
    dest: &Path,
) -> Result<Untracked, mlctl_git::GitError> {
    // (resource, field, path as written, path resolved)
    let mut inputs: Vec<(&Resource, Vec<String>, String, String)> = Vec::new();
    for r in &spec.resources {
        for input in r.spec.content_inputs() {
            // An unset `${env:...}` is reported by the support check, not here.
            let Ok(resolved) = mlctl_spec::env::resolve(&input.path, |n| std::env::var(n).ok())
            else {
                continue;
            };
            inputs.push((r, input.field, input.path, resolved));
        }
    }
    let mut paths: Vec<String> = inputs.iter().map(|i| i.3.clone()).collect();
    paths.sort();
    paths.dedup();
    let missing = repo.export(commit, &paths, dest)?;
    let mut out = Untracked {
        diagnostics: Vec::new(),
        paths: missing.clone(),
    };
    for (r, field, written, resolved) in &inputs {
        if !missing.iter().any(|m| m == resolved.trim_end_matches('/')) {
            continue;
        }
        out.diagnostics
            .push(untracked(spec, r, field, written, commit));
    }
    Ok(out)
}

fn untracked(
    spec: &Spec,
    r: &Resource,
    field: &[String],
    written: &str,
    commit: &Commit,
) -> Diagnostic {
    let mut path = vec!["spec"];
    path.extend(field.iter().map(String::as_str));
    let span = r.node.at(&path).map(|n| n.span).or(Some(r.location.span));
    let source = spec
        .sources
        .get(&r.location.file)
        .map(String::as_str)
        .unwrap_or("");
    Diagnostic::error(
        "untracked-at-revision",
        &r.location.file,
        source,
        span,
        format!(
            "`{}` of {} is `{written}`, which is not tracked in git at commit {}: `--rev` reads data and code from that commit, and it has no such file",
            field.join("."),
            r.id,
            commit.short_sha
        ),
    )
    .with_hint(
        "commit the file (or point the spec at a tracked one) and plan that revision, or pass --allow-dirty to read it from the work tree as it is now",
    )
}

/// Copies `paths` from the work tree into the snapshot (`--allow-dirty`); a path missing
/// from the work tree too is left out (reading it reports that).
///
/// # Errors
/// A file could not be copied.
pub fn copy_from_work_tree(
    project_dir: &Path,
    paths: &[String],
    dest: &Path,
) -> std::io::Result<()> {
    for p in paths {
        copy(&project_dir.join(p), &dest.join(p))?;
    }
    Ok(())
}

fn copy(from: &Path, to: &Path) -> std::io::Result<()> {
    let Ok(meta) = std::fs::metadata(from) else {
        return Ok(());
    };
    if meta.is_dir() {
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            if matches!(entry.file_name().to_str(), Some(".git" | ".mlctl")) {
                continue;
            }
            copy(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(from, to).map(|_| ())
    }
}
