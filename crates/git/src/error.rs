//! The crate's one error type, with messages written for the person running `mlctl`.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::DirtyFile;

/// How many dirty files a [`GitError::Dirty`] message lists before "and N more".
pub const DIRTY_LIST_LIMIT: usize = 20;

/// Everything that can go wrong reading a project from git.
///
/// Each message names what was asked for and says what to do next; none needs the source
/// chain to make sense (the [`GitError::Git`] source adds libgit2's own words).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GitError {
    /// The project directory does not exist or cannot be read.
    #[error("cannot open the project directory {}: {source}", path.display())]
    ProjectDir {
        /// As given.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// No git repository encloses the project directory.
    #[error(
        "{} is not inside a git repository; mlctl reads the desired state from a git revision, \
         so put the project under git first: run `git init && git add . && git commit -m \"initial spec\"` \
         in the project directory",
        project.display()
    )]
    NotARepository {
        /// The project directory, as given.
        project: PathBuf,
    },

    /// The enclosing repository is bare (no work tree), so there is no project directory in it.
    #[error("the git repository at {} is bare (it has no work tree); run mlctl in a clone of it", path.display())]
    BareRepository {
        /// The repository's git directory.
        path: PathBuf,
    },

    /// libgit2 refuses a repository owned by another user (`safe.directory`), typical in CI
    /// containers.
    #[error(
        "git refuses to open the repository at {} because another user owns it; if you trust it, run \
         `git config --global --add safe.directory {}`",
        path.display(),
        path.display()
    )]
    UnsafeRepository {
        /// The project directory, as given.
        path: PathBuf,
    },

    /// A path that is not valid UTF-8 (git paths inside mlctl are strings).
    #[error("the project path {} is not valid UTF-8", path.display())]
    NonUtf8Path {
        /// The offending path.
        path: PathBuf,
    },

    /// HEAD points at a branch with no commit yet.
    #[error(
        "the git repository at {} has no commits yet; commit the spec first: `git add . && git commit -m \"initial spec\"`",
        workdir.display()
    )]
    NoCommits {
        /// The repository's work tree.
        workdir: PathBuf,
    },

    /// The revision does not name a commit in this repository.
    #[error(
        "unknown revision `{rev}`: no commit, branch or tag by that name in this repository; `git log --oneline` lists the commits{}",
        if *shallow {
            " (this is a shallow clone, so older commits may be missing: run `git fetch --unshallow`, or set `fetch-depth: 0` in actions/checkout)"
        } else {
            ""
        }
    )]
    UnknownRevision {
        /// As given.
        rev: String,
        /// The repository is a shallow clone (the usual reason in CI).
        shallow: bool,
    },

    /// A range (`A..B`) where one commit was expected.
    #[error("`{rev}` is a range of commits, not one revision; give the two ends separately")]
    Range {
        /// As given.
        rev: String,
    },

    /// A short SHA matches more than one object.
    #[error(
        "revision `{rev}` is ambiguous: more than one object starts with it; use more characters of the SHA"
    )]
    AmbiguousRevision {
        /// As given.
        rev: String,
    },

    /// The revision names an object that is not (and does not peel to) a commit.
    #[error("revision `{rev}` names a {kind}, not a commit; give a commit, branch or tag")]
    NotACommit {
        /// As given.
        rev: String,
        /// What it names ("blob", "tree").
        kind: String,
    },

    /// The project directory (its `mlctl.yaml`) does not exist at that revision.
    #[error(
        "{path} does not exist at revision `{rev}` ({short_sha}): the project was not committed yet at that \
         revision, or lived elsewhere"
    )]
    ProjectNotAtRevision {
        /// As given.
        rev: String,
        /// The commit it resolved to.
        short_sha: String,
        /// The project file's path from the repository root.
        path: String,
    },

    /// The work tree has uncommitted changes under the project directory.
    #[error("{}", dirty_message(project, files))]
    Dirty {
        /// The project directory, as given.
        project: PathBuf,
        /// Every dirty file (the message lists the first [`DIRTY_LIST_LIMIT`]).
        files: Vec<DirtyFile>,
    },

    /// A file of a commit could not be read from git or written to a snapshot directory.
    #[error("cannot copy `{path}` of commit {short_sha} to {}: {source}", dest.display())]
    Export {
        /// The project-relative path.
        path: String,
        /// The commit.
        short_sha: String,
        /// Where it was being written.
        dest: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// A remote `mlctl watch` follows could not be fetched from or pushed to; `url` and
    /// `message` never carry user information (credentials).
    #[error("cannot {action} {url}: {message}")]
    Remote {
        /// The remote, without user information.
        url: String,
        /// What was attempted (`fetch from`, `push to`, ...).
        action: &'static str,
        /// Why, with any credential removed.
        message: String,
    },

    /// Any other libgit2 failure (a corrupt object, an unreadable index, ...).
    #[error("git: {context}: {source}")]
    Git {
        /// What mlctl was doing.
        context: String,
        /// libgit2's error.
        #[source]
        source: git2::Error,
    },
}

impl GitError {
    pub(crate) fn git(context: impl Into<String>) -> impl FnOnce(git2::Error) -> GitError {
        let context = context.into();
        move |source| GitError::Git { context, source }
    }
}

fn dirty_message(project: &std::path::Path, files: &[DirtyFile]) -> String {
    let n = files.len();
    let mut s = format!(
        "the work tree has uncommitted changes in the project {} ({n} file{}):",
        project.display(),
        if n == 1 { "" } else { "s" }
    );
    let width = files
        .iter()
        .take(DIRTY_LIST_LIMIT)
        .map(|f| f.change.as_str().len())
        .max()
        .unwrap_or(0)
        + 1;
    for f in files.iter().take(DIRTY_LIST_LIMIT) {
        let _ = write!(
            s,
            "\n  {:<width$} {}",
            format!("{}:", f.change.as_str()),
            f.path,
            width = width
        );
    }
    if n > DIRTY_LIST_LIMIT {
        let _ = write!(s, "\n  ... and {} more", n - DIRTY_LIST_LIMIT);
    }
    s.push_str("\ncommit them, or pass --allow-dirty to plan from the work tree");
    s
}
