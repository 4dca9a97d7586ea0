//! The private mirror `mlctl watch` follows a remote with: a bare repository under the agent's
//! state directory, fetched from the remote's branch, and read by [`Repo::open_mirror`] as any
//! project repository is.
//!
//! Transports: a local path, `file://` and a bare repository go through libgit2's own local
//! transport; `https://` through libgit2's smart-HTTP transport over OpenSSL, which is built
//! from source and linked statically (git2's `vendored-openssl`: no system OpenSSL, about 1.5
//! minutes once in a clean build). The certificate is checked against the system's CA
//! bundle, or `SSL_CERT_FILE` / `SSL_CERT_DIR` when set. `ssh://` is not built in.
//!
//! Credentials, in this order: `MLCTL_GIT_TOKEN` (with `MLCTL_GIT_USERNAME`, else the URL's user
//! name, else `x-access-token`, which GitHub and GitLab both accept), then git's credential
//! helper (`credential.helper`, as `git fetch` would ask it). A URL is never shown with its
//! user information ([`redact_url`]), and neither is an error that might quote it.

use crate::{GitError, Repo};
use git2::{Cred, CredentialType, FetchOptions, PushOptions, RemoteCallbacks, Repository};
use std::path::{Path, PathBuf};

/// The environment variable holding a token for `https://` remotes.
pub const TOKEN_ENV: &str = "MLCTL_GIT_TOKEN";
/// The user name sent with [`TOKEN_ENV`] (default: the URL's, else `x-access-token`).
pub const USERNAME_ENV: &str = "MLCTL_GIT_USERNAME";

/// `url` without the user information (`https://user:token@host/x` is `https://***@host/x`),
/// what every message and log line shows.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}://***@{}", &url[..scheme_end], &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// Removes every occurrence of the user information of `url` from `text` (an error from
/// libgit2 or a server may quote the URL it was given).
fn scrub(text: &str, url: &str) -> String {
    let mut out = text.replace(url, &redact_url(url));
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            let userinfo = &rest[..at];
            if !userinfo.is_empty() {
                out = out.replace(userinfo, "***");
            }
        }
    }
    if let Ok(token) = std::env::var(TOKEN_ENV)
        && !token.is_empty()
    {
        out = out.replace(&token, "***");
    }
    out
}

/// A bare repository that mirrors one branch of a remote.
pub struct Mirror {
    repo: Repository,
    dir: PathBuf,
    /// Without a password: the mirror's config (a file) never holds one.
    url: String,
    /// A password or token given in the URL, kept in memory only.
    password: Option<String>,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("dir", &self.dir)
            .field("url", &redact_url(&self.url))
            .finish()
    }
}

impl Mirror {
    /// Opens the mirror at `dir`, making it (a bare repository) when absent, and points its
    /// `origin` at `url`. A local path is made absolute, so the mirror still finds it from
    /// another directory.
    ///
    /// # Errors
    /// [`GitError::Git`] when the directory cannot be made or opened.
    pub fn open(dir: &Path, url: &str) -> Result<Mirror, GitError> {
        let (url, password) = split_password(&absolute_url(url));
        let repo = match Repository::open_bare(dir) {
            Ok(r) => r,
            Err(_) => {
                std::fs::create_dir_all(dir).map_err(|source| GitError::ProjectDir {
                    path: dir.to_path_buf(),
                    source,
                })?;
                Repository::init_bare(dir).map_err(GitError::git(format!(
                    "making the mirror at {}",
                    dir.display()
                )))?
            }
        };
        match repo.find_remote("origin") {
            Ok(r) if r.url() == Ok(url.as_str()) => {}
            Ok(_) => repo
                .remote_set_url("origin", &url)
                .map_err(GitError::git("setting the mirror's remote"))?,
            Err(_) => {
                repo.remote("origin", &url)
                    .map_err(GitError::git("setting the mirror's remote"))?;
            }
        }
        Ok(Mirror {
            repo,
            dir: dir.to_path_buf(),
            url,
            password,
        })
    }

    /// Opens the mirror at `dir` as its agent left it (its `origin` as set then).
    ///
    /// # Errors
    /// [`GitError::Git`] when there is no mirror there.
    pub fn open_existing(dir: &Path) -> Result<Mirror, GitError> {
        let repo = Repository::open_bare(dir).map_err(GitError::git(format!(
            "opening the mirror at {}",
            dir.display()
        )))?;
        let url = repo
            .find_remote("origin")
            .ok()
            .and_then(|r| r.url().ok().map(str::to_string))
            .unwrap_or_default();
        Ok(Mirror {
            repo,
            dir: dir.to_path_buf(),
            url,
            password: None,
        })
    }

    /// The remote's URL without user information.
    pub fn display_url(&self) -> String {
        redact_url(&self.url)
    }

    /// The mirror's git directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Fetches `branch` from the remote; returns the SHA its tip has now.
    ///
    /// # Errors
    /// [`GitError::Remote`] when the remote cannot be reached or read, or has no such branch
    /// (with the user information of the URL removed).
    pub fn fetch(&self, branch: &str) -> Result<String, GitError> {
        let supported = !self.url.contains("://")
            || self.url.starts_with("file://")
            || self.url.starts_with("https://");
        if !supported {
            return Err(GitError::Remote {
                url: self.display_url(),
                action: "fetch from",
                message: "mlctl fetches from local paths, `file://` URLs, bare repositories and `https://` remotes (libgit2 is built without its ssh transport); use the repository's https URL with MLCTL_GIT_TOKEN or git's credential helper, or mirror it to this machine and point --repo at the mirror".into(),
            });
        }
        let mut remote = self
            .repo
            .find_remote("origin")
            .map_err(GitError::git("reading the mirror's remote"))?;
        let mut opts = FetchOptions::new();
        opts.remote_callbacks(callbacks(self.password.clone()));
        let refspec = format!("+refs/heads/{branch}:refs/heads/{branch}");
        remote
            .fetch(&[refspec.as_str()], Some(&mut opts), None)
            .map_err(|e| self.remote_error("fetch from", e))?;
        let reference = format!("refs/heads/{branch}");
        let oid = self
            .repo
            .refname_to_id(&reference)
            .map_err(|_| GitError::Remote {
                url: self.display_url(),
                action: "find branch",
                message: format!(
                    "the remote has no branch `{branch}`; pass --branch with one it has"
                ),
            })?;
        // HEAD names the followed branch, so `HEAD` in the mirror is its tip.
        let _ = self.repo.set_head(&reference);
        Ok(oid.to_string())
    }

    /// Makes a commit that reverts `sha` on top of `base` (the followed branch's tip) and puts
    /// it on a new branch `name` in the mirror, then pushes that branch to the remote. Returns
    /// the new commit's SHA and whether the push succeeded (with the error when it did not).
    ///
    /// # Errors
    /// [`GitError::Git`] when `sha` does not revert cleanly on `base` (a conflict) or the
    /// commit cannot be written.
    pub fn revert_on_branch(
        &self,
        sha: &str,
        base: &str,
        name: &str,
        message: &str,
    ) -> Result<(String, Result<(), GitError>), GitError> {
        let find = |s: &str| {
            git2::Oid::from_str(s)
                .and_then(|o| self.repo.find_commit(o))
                .map_err(GitError::git(format!("finding commit {s} in the mirror")))
        };
        let reverted = find(sha)?;
        let ours = find(base)?;
        let mut index = self
            .repo
            .revert_commit(&reverted, &ours, 0, None)
            .map_err(GitError::git(format!("reverting {sha}")))?;
        if index.has_conflicts() {
            return Err(GitError::Remote {
                url: self.display_url(),
                action: "revert",
                message: format!(
                    "reverting {} conflicts with later commits on the branch; revert it by hand",
                    &sha[..sha.len().min(12)]
                ),
            });
        }
        let tree_id = index
            .write_tree_to(&self.repo)
            .map_err(GitError::git("writing the revert's tree"))?;
        let tree = self
            .repo
            .find_tree(tree_id)
            .map_err(GitError::git("reading the revert's tree"))?;
        let sig = self
            .repo
            .signature()
            .or_else(|_| git2::Signature::now("mlctl", "mlctl@localhost"))
            .map_err(GitError::git("making a signature"))?;
        let reference = format!("refs/heads/{name}");
        let oid = self
            .repo
            .commit(Some(&reference), &sig, &sig, message, &tree, &[&ours])
            .map_err(GitError::git(format!("committing on {name}")))?;
        let pushed = self.push(name);
        Ok((oid.to_string(), pushed))
    }

    fn push(&self, branch: &str) -> Result<(), GitError> {
        let mut remote = self
            .repo
            .find_remote("origin")
            .map_err(GitError::git("reading the mirror's remote"))?;
        let mut opts = PushOptions::new();
        opts.remote_callbacks(callbacks(self.password.clone()));
        let refspec = format!("refs/heads/{branch}:refs/heads/{branch}");
        remote
            .push(&[refspec.as_str()], Some(&mut opts))
            .map_err(|e| self.remote_error("push to", e))
    }

    fn remote_error(&self, action: &'static str, e: git2::Error) -> GitError {
        GitError::Remote {
            url: self.display_url(),
            action,
            message: scrub(e.message(), &self.url),
        }
    }
}

impl Repo {
    /// A project read from a mirror (a bare repository) instead of a work tree: the spec at
    /// `prefix` inside it, with `project_dir` as the project directory (where state and
    /// snapshots of a revision live). There is no work tree, so nothing is ever dirty.
    ///
    /// # Errors
    /// [`GitError::ProjectDir`] when `project_dir` cannot be read, [`GitError::Git`] when the
    /// mirror cannot be opened.
    pub fn open_mirror(mirror: &Path, prefix: &str, project_dir: &Path) -> Result<Repo, GitError> {
        let canonical = project_dir
            .canonicalize()
            .map_err(|source| GitError::ProjectDir {
                path: project_dir.to_path_buf(),
                source,
            })?;
        let repo = Repository::open_bare(mirror).map_err(GitError::git(format!(
            "opening the mirror at {}",
            mirror.display()
        )))?;
        Ok(Repo {
            repo,
            given: project_dir.to_path_buf(),
            workdir: canonical.clone(),
            project_dir: canonical,
            prefix: prefix.trim_matches('/').to_string(),
            mirror: true,
        })
    }
}

/// A local path as an absolute path (a URL is kept as it is).
fn absolute_url(url: &str) -> String {
    if url.contains("://") {
        return url.to_string();
    }
    std::path::absolute(url)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| url.to_string())
}

/// `https://user:pw@host/x` as `https://user@host/x` and `pw`.
fn split_password(url: &str) -> (String, Option<String>) {
    let Some(scheme_end) = url.find("://") else {
        return (url.to_string(), None);
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return (url.to_string(), None);
    };
    let Some((user, password)) = rest[..at].split_once(':') else {
        return (url.to_string(), None);
    };
    (
        format!("{}://{user}@{}", &url[..scheme_end], &rest[at + 1..]),
        Some(password.to_string()),
    )
}

fn callbacks<'a>(password: Option<String>) -> RemoteCallbacks<'a> {
    let mut cb = RemoteCallbacks::new();
    let mut attempts = 0u32;
    let mut sent = false;
    cb.credentials(move |url, username, allowed| {
        // libgit2 asks again after every refusal: two tries (token, then helper) and stop.
        attempts += 1;
        if attempts > 2 {
            return Err(git2::Error::from_str(
                "authentication failed: the remote refused the credentials (set MLCTL_GIT_TOKEN, or configure git's credential helper)",
            ));
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            if attempts == 1
                && let (Some(user), Some(password)) = (username, &password)
            {
                sent = true;
                return Cred::userpass_plaintext(user, password);
            }
            if attempts == 1
                && let Ok(token) = std::env::var(TOKEN_ENV)
                && !token.is_empty()
            {
                let user = std::env::var(USERNAME_ENV)
                    .ok()
                    .filter(|u| !u.is_empty())
                    .or_else(|| username.map(str::to_string))
                    .unwrap_or_else(|| "x-access-token".to_string());
                sent = true;
                return Cred::userpass_plaintext(&user, &token);
            }
            let config = git2::Config::open_default()?;
            let refused = sent;
            return Cred::credential_helper(&config, url, username).map_err(|_| {
                git2::Error::from_str(if refused {
                    "authentication failed: the remote refused the token (MLCTL_GIT_TOKEN, or the URL's password) and git's credential helper has none; check the token and that it may read the repository"
                } else {
                    "the remote asks for credentials: set MLCTL_GIT_TOKEN, or configure git's credential helper (`git config credential.helper`)"
                })
            });
        }
        Err(git2::Error::from_str(
            "the remote asks for a kind of credentials mlctl does not send (only a token or git's credential helper, over https)",
        ))
    });
    cb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_shown_without_its_user_information() {
        assert_eq!(
            redact_url("https://bob:s3cret@example.com/org/repo.git"),
            "https://***@example.com/org/repo.git"
        );
        assert_eq!(
            redact_url("https://example.com/a@b"),
            "https://example.com/a@b"
        );
        assert_eq!(redact_url("/srv/git/iris.git"), "/srv/git/iris.git");
        let scrubbed = scrub(
            "failed to reach https://bob:s3cret@example.com/x (bob:s3cret)",
            "https://bob:s3cret@example.com/x",
        );
        assert!(!scrubbed.contains("s3cret"), "{scrubbed}");
        assert_eq!(
            split_password("https://bob:s3cret@example.com/x"),
            (
                "https://bob@example.com/x".to_string(),
                Some("s3cret".to_string())
            )
        );
    }

    #[test]
    fn a_bare_repository_is_mirrored_and_followed() {
        let dir = tempfile::tempdir().unwrap();
        let remote = dir.path().join("remote.git");
        let bare = Repository::init_bare(&remote).unwrap();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        let tree = {
            let mut b = bare.treebuilder(None).unwrap();
            let blob = bare.blob(b"hello").unwrap();
            b.insert("a.txt", blob, 0o100644).unwrap();
            b.write().unwrap()
        };
        let tree = bare.find_tree(tree).unwrap();
        let first = bare
            .commit(Some("refs/heads/main"), &sig, &sig, "one", &tree, &[])
            .unwrap();
        let mirror =
            Mirror::open(&dir.path().join("mirror.git"), remote.to_str().unwrap()).unwrap();
        assert_eq!(mirror.fetch("main").unwrap(), first.to_string());
        let parent = bare.find_commit(first).unwrap();
        let second = bare
            .commit(
                Some("refs/heads/main"),
                &sig,
                &sig,
                "two",
                &tree,
                &[&parent],
            )
            .unwrap();
        assert_eq!(mirror.fetch("main").unwrap(), second.to_string());
        let err = mirror.fetch("nope").unwrap_err().to_string();
        assert!(err.contains("no branch `nope`"), "{err}");
    }
}
