//! mlctl-git: reads a project's manifests at a git revision, records provenance, and compares
//! two specs.
//!
//! mlctl's desired state is the spec *at a commit*, not whatever is on disk. [`Repo`] finds the
//! repository that encloses a project directory (which may be a subdirectory of it), resolves
//! revisions to [`Commit`]s, and hands [`mlctl_spec::load`] a [`TreeFiles`] that reads blobs
//! straight from the commit's tree: nothing is checked out. [`Repo::ensure_clean`] refuses a
//! dirty project unless the user opted in. [`spec_diff`] is the semantic diff behind
//! `mlctl diff`.
//!
//! **Architecture Invariant:** this crate only reads a project's repository: it never writes to
//! it, its index or its work tree. The one writer is [`Mirror`], `mlctl watch`'s private bare
//! repository, which fetches from the followed remote (and pushes a rollback's revert branch).
//! It prints nothing; errors are [`GitError`] with messages meant for the user.

mod diff;
mod error;
mod files;
mod mirror;

pub use diff::{FieldChange, ResourceChange, SpecDiff, spec_diff};
pub use error::{DIRTY_LIST_LIMIT, GitError};
pub use files::TreeFiles;
pub use mirror::{Mirror, TOKEN_ENV, USERNAME_ENV, redact_url};

use std::fmt;
use std::path::{Path, PathBuf};

use git2::{ErrorCode, Oid, Repository, Status, StatusOptions};
use mlctl_spec::{DirFiles, Loaded, PROJECT_FILE};
use serde::{Deserialize, Serialize};

/// mlctl's own state directory inside a project; never part of the desired state, so never
/// dirty even when a project forgot to gitignore it.
pub const STATE_DIR: &str = ".mlctl";

/// The git repository that holds a project, and where the project sits in it.
pub struct Repo {
    repo: Repository,
    /// The project directory as the user gave it, for messages.
    given: PathBuf,
    /// Canonical work tree root.
    workdir: PathBuf,
    /// Canonical project directory.
    project_dir: PathBuf,
    /// The project directory relative to the work tree, `/`-separated; empty at the root.
    prefix: String,
    /// A bare mirror ([`Repo::open_mirror`]): no work tree, so nothing is dirty.
    mirror: bool,
}

impl fmt::Debug for Repo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repo")
            .field("workdir", &self.workdir)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A resolved commit: what provenance and `mlctl history` show.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Commit {
    /// Full hex SHA.
    pub sha: String,
    /// The shortest unambiguous abbreviation (at least `core.abbrev`, usually 7).
    pub short_sha: String,
    /// Author's name.
    pub author_name: String,
    /// Author's email.
    pub author_email: String,
    /// Author time, RFC 3339 in the author's own offset (`2024-05-01T12:00:00+02:00`).
    pub time: String,
    /// Author time as Unix seconds (for sorting).
    pub timestamp: i64,
    /// The first line of the message.
    pub summary: String,
}

impl Commit {
    /// `Name <email>`.
    pub fn author(&self) -> String {
        format!("{} <{}>", self.author_name, self.author_email)
    }
}

impl fmt::Display for Commit {
    /// `abc1234 summary`, as `git log --oneline`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.short_sha, self.summary)
    }
}

/// Where a desired state came from, for tagging what mlctl creates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// Full commit SHA.
    pub commit: String,
    /// `Name <email>` of the commit's author.
    pub author: String,
    /// Author time, RFC 3339.
    pub time: String,
    /// First line of the commit message.
    pub summary: String,
    /// True when the state was read from a work tree with uncommitted changes
    /// (`--allow-dirty`), so the commit alone does not reproduce it.
    pub dirty: bool,
}

impl Provenance {
    /// The provenance of `commit`, `dirty` when the work tree was used with changes in it.
    pub fn new(commit: &Commit, dirty: bool) -> Self {
        Provenance {
            commit: commit.sha.clone(),
            author: commit.author(),
            time: commit.time.clone(),
            summary: commit.summary.clone(),
            dirty,
        }
    }
}

/// How a file differs from HEAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FileChange {
    /// Changed in the index or the work tree.
    Modified,
    /// New in the index.
    Added,
    /// Removed from the index or the work tree.
    Deleted,
    /// Renamed (only reported when git detects it).
    Renamed,
    /// File became a link or the reverse.
    TypeChanged,
    /// Not tracked and not ignored.
    Untracked,
    /// Unmerged.
    Conflicted,
}

impl FileChange {
    /// The word `git status` would use.
    pub fn as_str(self) -> &'static str {
        match self {
            FileChange::Modified => "modified",
            FileChange::Added => "added",
            FileChange::Deleted => "deleted",
            FileChange::Renamed => "renamed",
            FileChange::TypeChanged => "typechange",
            FileChange::Untracked => "untracked",
            FileChange::Conflicted => "conflicted",
        }
    }

    fn of(s: Status) -> FileChange {
        let index = Status::INDEX_NEW
            | Status::INDEX_MODIFIED
            | Status::INDEX_DELETED
            | Status::INDEX_RENAMED
            | Status::INDEX_TYPECHANGE;
        if s.is_conflicted() {
            FileChange::Conflicted
        } else if s.is_wt_new() && !s.intersects(index) {
            FileChange::Untracked
        } else if s.intersects(Status::INDEX_DELETED | Status::WT_DELETED) {
            FileChange::Deleted
        } else if s.is_index_new() {
            FileChange::Added
        } else if s.intersects(Status::INDEX_RENAMED | Status::WT_RENAMED) {
            FileChange::Renamed
        } else if s.intersects(Status::INDEX_TYPECHANGE | Status::WT_TYPECHANGE) {
            FileChange::TypeChanged
        } else {
            FileChange::Modified
        }
    }
}

/// A file under the project that differs from HEAD.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DirtyFile {
    /// Relative to the project directory, `/`-separated.
    pub path: String,
    /// How it differs.
    pub change: FileChange,
}

impl Repo {
    /// Finds the git repository that encloses `project_dir` (searching upwards, as git does).
    ///
    /// # Errors
    /// [`GitError::ProjectDir`] when the directory cannot be opened, [`GitError::NotARepository`]
    /// (with the commands to fix it), [`GitError::BareRepository`], [`GitError::UnsafeRepository`]
    /// (`safe.directory`), [`GitError::NonUtf8Path`].
    pub fn discover(project_dir: impl AsRef<Path>) -> Result<Repo, GitError> {
        let given = project_dir.as_ref().to_path_buf();
        let project_dir = given
            .canonicalize()
            .map_err(|source| GitError::ProjectDir {
                path: given.clone(),
                source,
            })?;
        if !project_dir.is_dir() {
            let source = std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory");
            return Err(GitError::ProjectDir {
                path: given,
                source,
            });
        }
        let repo = match Repository::discover(&project_dir) {
            Ok(r) => r,
            Err(e) if e.code() == ErrorCode::NotFound => {
                return Err(GitError::NotARepository { project: given });
            }
            Err(e) if e.code() == ErrorCode::Owner => {
                return Err(GitError::UnsafeRepository { path: given });
            }
            Err(e) => {
                let context = format!("opening the repository that contains {}", given.display());
                return Err(GitError::git(context)(e));
            }
        };
        let Some(workdir) = repo.workdir() else {
            return Err(GitError::BareRepository {
                path: repo.path().to_path_buf(),
            });
        };
        let workdir = workdir
            .canonicalize()
            .map_err(|source| GitError::ProjectDir {
                path: workdir.to_path_buf(),
                source,
            })?;
        // discover() started from project_dir, so the work tree encloses it.
        let rel = project_dir.strip_prefix(&workdir).unwrap_or(Path::new(""));
        let mut parts = Vec::new();
        for c in rel.components() {
            let Some(s) = c.as_os_str().to_str() else {
                return Err(GitError::NonUtf8Path {
                    path: project_dir.clone(),
                });
            };
            parts.push(s.to_owned());
        }
        Ok(Repo {
            repo,
            given,
            workdir,
            project_dir,
            prefix: parts.join("/"),
            mirror: false,
        })
    }

    /// The repository's work tree root (canonical).
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// The project directory (canonical).
    pub fn project_dir(&self) -> &Path {
        &self.project_dir
    }

    /// The project directory relative to the repository root, `/`-separated; empty when the
    /// project is the repository root.
    pub fn project_prefix(&self) -> &str {
        &self.prefix
    }

    /// The work tree's files, for `--allow-dirty` (the same [`Files`](mlctl_spec::Files)
    /// contract as [`TreeFiles`]).
    pub fn work_tree_files(&self) -> DirFiles {
        DirFiles::new(&self.project_dir)
    }

    /// Resolves any revision git understands (`HEAD`, a branch, a tag, a SHA or a prefix of
    /// one, `HEAD~1`, `main@{1}`) to the commit it names; tags are peeled.
    ///
    /// # Errors
    /// [`GitError::UnknownRevision`] (naming the revision, with a hint for shallow clones),
    /// [`GitError::AmbiguousRevision`], [`GitError::NotACommit`], [`GitError::NoCommits`] in a
    /// repository without commits.
    pub fn resolve(&self, rev: &str) -> Result<Commit, GitError> {
        let commit = self.find(rev)?;
        Ok(self.describe(&commit))
    }

    /// The commit HEAD points at.
    ///
    /// # Errors
    /// [`GitError::NoCommits`] before the first commit.
    pub fn head_commit(&self) -> Result<Commit, GitError> {
        self.resolve("HEAD")
    }

    /// True when `ancestor` is `descendant` or one of its ancestors (as
    /// `git merge-base --is-ancestor`): e.g. whether applying `descendant` moves forward from
    /// what was applied last.
    ///
    /// # Errors
    /// [`GitError::UnknownRevision`] when either commit is not in this repository (a shallow
    /// clone, or a commit from another repository).
    pub fn is_ancestor(&self, ancestor: &Commit, descendant: &Commit) -> Result<bool, GitError> {
        let a = self.find_commit(&ancestor.sha)?.id();
        let d = self.find_commit(&descendant.sha)?.id();
        if a == d {
            return Ok(true);
        }
        self.repo
            .graph_descendant_of(d, a)
            .map_err(GitError::git("walking the commit graph"))
    }

    /// The project's files as they are in `commit`, read from the object database.
    ///
    /// # Errors
    /// [`GitError::UnknownRevision`] when the commit is not in this repository.
    pub fn files_at(&self, commit: &Commit) -> Result<TreeFiles<'_>, GitError> {
        let c = self.find_commit(&commit.sha)?;
        let tree = c.tree().map_err(GitError::git(format!(
            "reading the tree of {}",
            commit.short_sha
        )))?;
        Ok(TreeFiles::new(&self.repo, tree, &self.prefix))
    }

    /// Writes the project files under each of `paths` (a file or a directory, relative to the
    /// project) as they are in `commit` into `dest`, at the same relative paths, so a command
    /// at an older revision reads that revision's data and code, never today's. Returns the
    /// paths the commit does not have (not tracked in git then), which are not written.
    ///
    /// # Guarantees
    /// A file already in `dest` with the same bytes is left alone (a snapshot is reused);
    /// each file is written whole or not at all (a temporary file, then a rename).
    ///
    /// # Errors
    /// [`GitError::Export`] when a blob cannot be read or a file cannot be written;
    /// [`GitError::UnknownRevision`] when the commit is not in this repository.
    pub fn export(
        &self,
        commit: &Commit,
        paths: &[String],
        dest: &Path,
    ) -> Result<Vec<String>, GitError> {
        use mlctl_spec::Files as _;
        let files = self.files_at(commit)?;
        let fail = |path: &str, source: std::io::Error| GitError::Export {
            path: path.to_string(),
            short_sha: commit.short_sha.clone(),
            dest: dest.to_path_buf(),
            source,
        };
        let mut untracked = Vec::new();
        for path in paths {
            let path = path.trim_end_matches('/');
            let listed = if files.is_dir(path).map_err(|e| fail(path, e))? {
                files
                    .list(path)
                    .map_err(|e| fail(path, e))?
                    .unwrap_or_default()
            } else {
                vec![path.to_string()]
            };
            let mut found = false;
            for file in listed {
                let Some(bytes) = files.read_bytes(&file).map_err(|e| fail(&file, e))? else {
                    continue;
                };
                found = true;
                let out = dest.join(&file);
                if std::fs::read(&out).is_ok_and(|b| b == bytes) {
                    continue;
                }
                let write = || -> std::io::Result<()> {
                    if let Some(parent) = out.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    let tmp = out.with_extension("mlctl-tmp");
                    std::fs::write(&tmp, &bytes)?;
                    std::fs::rename(&tmp, &out)
                };
                write().map_err(|e| fail(&file, e))?;
            }
            if !found {
                untracked.push(path.to_string());
            }
        }
        Ok(untracked)
    }

    /// Resolves `rev` and loads the project as it is in that commit.
    ///
    /// # Errors
    /// Those of [`Repo::resolve`], and [`GitError::ProjectNotAtRevision`] when the project's
    /// `mlctl.yaml` is not in that commit. Problems in the spec itself are diagnostics in the
    /// returned [`Loaded`], not errors.
    pub fn load_at(&self, rev: &str) -> Result<(Commit, Loaded), GitError> {
        self.load_at_for(rev, None)
    }

    /// [`Repo::load_at`] as target `target` sees the spec: its `overrides` merged
    /// ([`mlctl_spec::load_for`]; `None`: the default target).
    ///
    /// # Errors
    /// See [`Repo::load_at`].
    pub fn load_at_for(
        &self,
        rev: &str,
        target: Option<&str>,
    ) -> Result<(Commit, Loaded), GitError> {
        let commit = self.resolve(rev)?;
        let files = self.files_at(&commit)?;
        if matches!(files.read_bytes(PROJECT_FILE), Ok(None)) {
            let path = if self.prefix.is_empty() {
                PROJECT_FILE.to_owned()
            } else {
                format!("{}/{PROJECT_FILE}", self.prefix)
            };
            return Err(GitError::ProjectNotAtRevision {
                rev: rev.to_owned(),
                short_sha: commit.short_sha,
                path,
            });
        }
        let loaded = mlctl_spec::load_for(&files, target);
        Ok((commit, loaded))
    }

    /// Files under the project directory that differ from HEAD (modified, added, deleted,
    /// renamed, untracked), relative to the project, sorted. Ignored files are not dirty, nor
    /// is anything under mlctl's state directory [`STATE_DIR`]; changes outside the project
    /// directory do not count.
    ///
    /// # Errors
    /// [`GitError::Git`] when git cannot compute the status (an unreadable index).
    pub fn dirty_files(&self) -> Result<Vec<String>, GitError> {
        Ok(self.dirty_status()?.into_iter().map(|f| f.path).collect())
    }

    /// Like [`Repo::dirty_files`], with how each file changed.
    ///
    /// # Errors
    /// As [`Repo::dirty_files`].
    pub fn dirty_status(&self) -> Result<Vec<DirtyFile>, GitError> {
        if self.mirror {
            return Ok(Vec::new());
        }
        let mut opts = StatusOptions::new();
        opts.include_untracked(true)
            .recurse_untracked_dirs(true)
            .include_ignored(false)
            .include_unmodified(false);
        if !self.prefix.is_empty() {
            // Narrows the walk; the prefix check below is what decides.
            opts.pathspec(&self.prefix).disable_pathspec_match(true);
        }
        let statuses = self
            .repo
            .statuses(Some(&mut opts))
            .map_err(GitError::git("reading the work tree status"))?;
        let mut out = Vec::new();
        for entry in statuses.iter() {
            let status = entry.status();
            if status.is_ignored() || status == Status::CURRENT {
                continue;
            }
            let path = String::from_utf8_lossy(entry.path_bytes());
            let rel = if self.prefix.is_empty() {
                path.as_ref()
            } else {
                match path
                    .strip_prefix(self.prefix.as_str())
                    .and_then(|r| r.strip_prefix('/'))
                {
                    Some(r) => r,
                    None => continue,
                }
            };
            if rel == STATE_DIR || rel.starts_with(&format!("{STATE_DIR}/")) {
                continue;
            }
            out.push(DirtyFile {
                path: rel.to_owned(),
                change: FileChange::of(status),
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out.dedup_by(|a, b| a.path == b.path);
        Ok(out)
    }

    /// Refuses a dirty project unless `allow_dirty`. Returns the dirty files (empty when
    /// clean), so the caller can warn and mark its [`Provenance`] dirty.
    ///
    /// # Errors
    /// [`GitError::Dirty`] listing the files (the first [`DIRTY_LIST_LIMIT`], then "and N
    /// more") with the hint to commit or pass `--allow-dirty`.
    pub fn ensure_clean(&self, allow_dirty: bool) -> Result<Vec<String>, GitError> {
        let dirty = self.dirty_status()?;
        if dirty.is_empty() || allow_dirty {
            return Ok(dirty.into_iter().map(|f| f.path).collect());
        }
        Err(GitError::Dirty {
            project: self.given.clone(),
            files: dirty,
        })
    }

    fn find(&self, rev: &str) -> Result<git2::Commit<'_>, GitError> {
        if rev.trim().is_empty() {
            return Err(self.unknown(rev));
        }
        if rev.contains("..")
            && let Ok(spec) = self.repo.revparse(rev)
            && !spec.mode().contains(git2::RevparseMode::SINGLE)
        {
            return Err(GitError::Range {
                rev: rev.to_owned(),
            });
        }
        let object = match self.repo.revparse_single(rev) {
            Ok(o) => o,
            Err(e) => return Err(self.rev_error(rev, e)),
        };
        object.peel_to_commit().map_err(|_| GitError::NotACommit {
            rev: rev.to_owned(),
            kind: object.kind().map_or("object", |k| k.str()).to_owned(),
        })
    }

    fn find_commit(&self, sha: &str) -> Result<git2::Commit<'_>, GitError> {
        let oid = Oid::from_str(sha).map_err(|_| self.unknown(sha))?;
        self.repo
            .find_commit(oid)
            .map_err(|e| self.rev_error(sha, e))
    }

    fn rev_error(&self, rev: &str, e: git2::Error) -> GitError {
        if e.code() == ErrorCode::UnbornBranch || self.has_no_commits() {
            return GitError::NoCommits {
                workdir: self.workdir.clone(),
            };
        }
        match e.code() {
            ErrorCode::Ambiguous => GitError::AmbiguousRevision {
                rev: rev.to_owned(),
            },
            ErrorCode::NotFound | ErrorCode::InvalidSpec => self.unknown(rev),
            // revparse reports some malformed specs with a generic code.
            _ if e.class() == git2::ErrorClass::Invalid => self.unknown(rev),
            _ => GitError::git(format!("resolving revision `{rev}`"))(e),
        }
    }

    /// HEAD is unborn and no reference exists: a fresh `git init`.
    fn has_no_commits(&self) -> bool {
        let unborn = matches!(self.repo.head(), Err(e) if e.code() == ErrorCode::UnbornBranch);
        unborn
            && self
                .repo
                .references()
                .is_ok_and(|mut refs| refs.next().is_none())
    }

    fn unknown(&self, rev: &str) -> GitError {
        GitError::UnknownRevision {
            rev: rev.to_owned(),
            shallow: self.repo.is_shallow(),
        }
    }

    fn describe(&self, c: &git2::Commit<'_>) -> Commit {
        let sha = c.id().to_string();
        let short_sha = c
            .as_object()
            .short_id()
            .ok()
            .and_then(|b| b.as_str().map(str::to_owned).ok())
            .unwrap_or_else(|| sha[..7.min(sha.len())].to_owned());
        let author = c.author();
        let when = author.when();
        Commit {
            sha,
            short_sha,
            author_name: String::from_utf8_lossy(author.name_bytes()).into_owned(),
            author_email: String::from_utf8_lossy(author.email_bytes()).into_owned(),
            time: rfc3339(when.seconds(), when.offset_minutes()),
            timestamp: when.seconds(),
            summary: c
                .summary_bytes()
                .map(|s| String::from_utf8_lossy(s).trim().to_owned())
                .unwrap_or_default(),
        }
    }
}

/// RFC 3339 in the given offset; the Unix seconds when the time cannot be represented (a
/// corrupt or far-future commit date must not fail a plan).
fn rfc3339(seconds: i64, offset_minutes: i32) -> String {
    let format = || {
        let offset = time::UtcOffset::from_whole_seconds(offset_minutes.checked_mul(60)?).ok()?;
        let t = time::OffsetDateTime::from_unix_timestamp(seconds)
            .ok()?
            .checked_to_offset(offset)?;
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    };
    format().unwrap_or_else(|| seconds.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_keep_the_authors_offset() {
        assert_eq!(rfc3339(1_700_000_000, 60), "2023-11-14T23:13:20+01:00");
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(i64::MAX, 0), i64::MAX.to_string());
        assert_eq!(rfc3339(0, i32::MAX), "0");
    }

    #[test]
    fn status_words() {
        assert_eq!(FileChange::of(Status::WT_NEW), FileChange::Untracked);
        assert_eq!(FileChange::of(Status::INDEX_NEW), FileChange::Added);
        assert_eq!(
            FileChange::of(Status::INDEX_NEW | Status::WT_MODIFIED),
            FileChange::Added
        );
        assert_eq!(FileChange::of(Status::WT_MODIFIED), FileChange::Modified);
        assert_eq!(FileChange::of(Status::WT_DELETED), FileChange::Deleted);
        assert_eq!(FileChange::of(Status::CONFLICTED), FileChange::Conflicted);
    }

    #[test]
    fn dirty_message_lists_at_most_the_limit() {
        let files: Vec<DirtyFile> = (0..25)
            .map(|i| DirtyFile {
                path: format!("f{i:02}.yaml"),
                change: FileChange::Modified,
            })
            .collect();
        let msg = GitError::Dirty {
            project: PathBuf::from("proj"),
            files,
        }
        .to_string();
        assert!(msg.starts_with("the work tree has uncommitted changes in the project proj (25 files):\n  modified: f00.yaml"), "{msg}");
        assert!(
            msg.contains("f19.yaml") && !msg.contains("f20.yaml"),
            "{msg}"
        );
        assert!(
            msg.ends_with(
                "  ... and 5 more\ncommit them, or pass --allow-dirty to plan from the work tree"
            ),
            "{msg}"
        );
    }
}
