//! [`TreeFiles`]: the project's files as they were in one commit, read from git objects.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;

use git2::{ObjectType, Oid, Repository, Tree, TreeWalkMode, TreeWalkResult};

/// Symbolic links followed in one lookup before giving up (as the kernel's ELOOP).
const MAX_SYMLINK_HOPS: usize = 40;

const MODE_SYMLINK: i32 = 0o120000;

/// [`mlctl_spec::Files`] over a commit's tree, rooted at the project directory.
///
/// Nothing is checked out: every read goes to the object database, so the work tree (and any
/// uncommitted change in it) is never looked at.
///
/// # Guarantees
/// - Paths are `/`-separated and relative to the project directory; `.` and `..` are resolved
///   lexically. A path that leaves the project directory, as written or through a symbolic
///   link, is an error (`PermissionDenied`): nothing of the spec reaches outside the project.
/// - Symbolic links committed in the tree are followed when they stay inside the project;
///   a link to an absolute path is an error (its target is not in the commit).
/// - [`list`](mlctl_spec::Files::list) returns blobs (and links) only, sorted, as
///   [`mlctl_spec::DirFiles`] does; submodules are skipped.
pub struct TreeFiles<'r> {
    repo: &'r Repository,
    root: Tree<'r>,
    /// The project directory's components from the repository root.
    prefix: Vec<String>,
    /// Trees already parsed. libgit2 caches only small trees, and a manifest directory with a
    /// thousand files would otherwise be inflated and parsed again for every file read.
    trees: RefCell<HashMap<Oid, Tree<'r>>>,
}

impl std::fmt::Debug for TreeFiles<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeFiles")
            .field("tree", &self.root.id())
            .field("prefix", &self.prefix.join("/"))
            .finish_non_exhaustive()
    }
}

enum Found<'r> {
    Tree(Tree<'r>),
    Blob(Vec<u8>),
}

impl<'r> TreeFiles<'r> {
    pub(crate) fn new(repo: &'r Repository, root: Tree<'r>, prefix: &str) -> Self {
        let prefix = prefix
            .split('/')
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect();
        TreeFiles {
            repo,
            root,
            prefix,
            trees: RefCell::default(),
        }
    }

    /// The bytes of a file (for data and code that is not text); `Ok(None)` when it does not
    /// exist at this commit.
    pub fn read_bytes(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        match self.find(path)? {
            Some(Found::Blob(b)) => Ok(Some(b)),
            Some(Found::Tree(_)) => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{path} is a directory"),
            )),
            None => Ok(None),
        }
    }

    /// Whether `path` is a directory at this commit.
    pub fn is_dir(&self, path: &str) -> io::Result<bool> {
        Ok(matches!(self.find(path)?, Some(Found::Tree(_))))
    }

    fn find(&self, path: &str) -> io::Result<Option<Found<'r>>> {
        if path.starts_with('/') {
            return Ok(None);
        }
        let mut full = self.prefix.clone();
        if !push_components(&mut full, path) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{path} leads outside the repository; keep what the spec reads inside the project"
                ),
            ));
        }
        self.lookup(full, path)
    }

    /// Walks `path` (components from the repository root) one entry at a time, restarting when
    /// an entry is a symbolic link, so links anywhere in the path resolve.
    fn lookup(&self, mut path: Vec<String>, asked: &str) -> io::Result<Option<Found<'r>>> {
        let mut hops = 0;
        'restart: loop {
            if !path.starts_with(&self.prefix) {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "{asked} leads outside the project directory (to `{}` in the repository); keep what the spec reads inside the project",
                        path.join("/")
                    ),
                ));
            }
            let mut tree = self.root.clone();
            for i in 0..path.len() {
                let (id, kind, mode) = match tree.get_name(&path[i]) {
                    Some(e) => (e.id(), e.kind(), e.filemode()),
                    None => return Ok(None),
                };
                let last = i + 1 == path.len();
                match kind {
                    Some(ObjectType::Tree) => {
                        tree = self.tree(id)?;
                    }
                    Some(ObjectType::Blob) if mode == MODE_SYMLINK => {
                        hops += 1;
                        if hops > MAX_SYMLINK_HOPS {
                            return Err(io::Error::other(format!(
                                "{asked}: too many levels of symbolic links"
                            )));
                        }
                        let target = self.blob(id)?;
                        let target = String::from_utf8_lossy(&target);
                        if target.starts_with('/') {
                            return Err(io::Error::other(format!(
                                "{asked}: a symbolic link to the absolute path {target}, which is not in the commit"
                            )));
                        }
                        let mut next = path[..i].to_vec();
                        if !push_components(&mut next, &target) {
                            return Ok(None);
                        }
                        next.extend_from_slice(&path[i + 1..]);
                        path = next;
                        continue 'restart;
                    }
                    Some(ObjectType::Blob) if last => return Ok(Some(Found::Blob(self.blob(id)?))),
                    // A blob in the middle of a path, or a submodule (a commit entry).
                    _ => return Ok(None),
                }
            }
            return Ok(Some(Found::Tree(tree)));
        }
    }

    fn tree(&self, id: Oid) -> io::Result<Tree<'r>> {
        if let Some(t) = self.trees.borrow().get(&id) {
            return Ok(t.clone());
        }
        let t = self.repo.find_tree(id).map_err(io_error)?;
        self.trees.borrow_mut().insert(id, t.clone());
        Ok(t)
    }

    fn blob(&self, id: Oid) -> io::Result<Vec<u8>> {
        Ok(self
            .repo
            .find_blob(id)
            .map_err(io_error)?
            .content()
            .to_vec())
    }
}

impl mlctl_spec::Files for TreeFiles<'_> {
    fn read(&self, path: &str) -> io::Result<Option<String>> {
        match self.read_bytes(path)? {
            // Invalid UTF-8 is reported at the line and column of the first bad byte.
            Some(bytes) => mlctl_spec::decode_utf8(path, bytes)
                .map(Some)
                .map_err(io::Error::from),
            None => Ok(None),
        }
    }

    fn list(&self, dir: &str) -> io::Result<Option<Vec<String>>> {
        let Some(Found::Tree(tree)) = self.find(dir)? else {
            return Ok(None);
        };
        let base = relative_base(dir);
        let mut out = Vec::new();
        tree.walk(TreeWalkMode::PreOrder, |parent, entry| {
            if entry.kind() == Some(ObjectType::Blob) {
                out.push(format!(
                    "{base}{parent}{}",
                    String::from_utf8_lossy(entry.name_bytes())
                ));
            }
            TreeWalkResult::Ok
        })
        .map_err(io_error)?;
        out.sort();
        Ok(Some(out))
    }
}

/// Appends `path`'s components to `stack`, resolving `.` and `..`; false when `..` climbs
/// above the stack's root.
fn push_components(stack: &mut Vec<String>, path: &str) -> bool {
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if stack.pop().is_none() {
                    return false;
                }
            }
            c => stack.push(c.to_owned()),
        }
    }
    true
}

/// `dir` as the prefix of the paths listed under it, relative to the project: `ml/` for
/// `./ml`, empty for the project root, `../shared/` kept as is.
fn relative_base(dir: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in dir.split('/') {
        match c {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.iter().map(|p| format!("{p}/")).collect()
}

fn io_error(e: git2::Error) -> io::Error {
    io::Error::other(format!("git: {}", e.message()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_resolve_dots_without_leaving_the_root() {
        let mut s = vec!["proj".to_owned()];
        assert!(push_components(&mut s, "./ml/../data//iris.csv"));
        assert_eq!(s, ["proj", "data", "iris.csv"]);
        let mut s = vec!["proj".to_owned()];
        assert!(push_components(&mut s, "../shared"));
        assert_eq!(s, ["shared"]);
        assert!(!push_components(&mut vec!["proj".to_owned()], "../../etc"));
    }

    #[test]
    fn list_base_is_relative_to_the_project() {
        assert_eq!(relative_base(""), "");
        assert_eq!(relative_base("."), "");
        assert_eq!(relative_base("ml/"), "ml/");
        assert_eq!(relative_base("./ml/sub/.."), "ml/");
        assert_eq!(relative_base("../shared"), "../shared/");
    }
}
