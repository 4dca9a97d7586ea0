//! Content-addressed blobs: `<state_dir>/objects/<2 hex>/<blake3 hex>`.
//!
//! # Guarantees
//! - A blob appears whole or not at all: bytes go to a temporary file in `<state_dir>/tmp`
//!   (same file system) that is renamed into place.
//! - Writing a blob that exists is a no-op; blobs are never modified.

use crate::PROVIDER;
use mlctl_core::error::{ErrorKind, ProviderError, Result};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The blob store of one state directory.
#[derive(Debug, Clone)]
pub(crate) struct Objects {
    root: PathBuf,
    tmp: PathBuf,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn io(op: &str, path: &Path, e: std::io::Error) -> ProviderError {
    let mut err = ProviderError::io(PROVIDER, op, e);
    err.message = format!("{}: {}", path.display(), err.message);
    err
}

/// Whether `s` looks like a blake3 hex digest (guards paths built from user input).
pub(crate) fn is_digest(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

impl Objects {
    pub(crate) fn new(state_dir: &Path) -> Self {
        Objects {
            root: state_dir.join("objects"),
            tmp: state_dir.join("tmp"),
        }
    }

    /// Where blob `digest` lives (whether or not it exists).
    pub(crate) fn path(&self, digest: &str) -> Result<PathBuf> {
        if !is_digest(digest) {
            return Err(ProviderError::new(
                ErrorKind::Invalid,
                PROVIDER,
                "blob",
                format!("`{digest}` is not a blake3 digest (64 lowercase hex digits)"),
            ));
        }
        Ok(self.root.join(&digest[..2]).join(digest))
    }

    /// A fresh temporary path on the store's file system.
    pub(crate) fn temp_path(&self, hint: &str) -> Result<PathBuf> {
        fs::create_dir_all(&self.tmp).map_err(|e| io("create tmp directory", &self.tmp, e))?;
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        Ok(self.tmp.join(format!("{hint}.{}.{n}", std::process::id())))
    }

    pub(crate) fn exists(&self, digest: &str) -> Result<bool> {
        Ok(self.path(digest)?.is_file())
    }

    /// Stores `bytes`; returns the digest.
    pub(crate) fn put_bytes(&self, bytes: &[u8]) -> Result<String> {
        let digest = blake3::hash(bytes).to_hex().to_string();
        let dest = self.path(&digest)?;
        if dest.is_file() {
            return Ok(digest);
        }
        let tmp = self.temp_path("blob")?;
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_data()
        };
        write().map_err(|e| io("write blob", &tmp, e))?;
        self.commit(&tmp, &dest)?;
        Ok(digest)
    }

    /// Stores a copy of the file at `src` whose digest the caller has computed.
    pub(crate) fn put_file(&self, src: &Path, digest: &str) -> Result<PathBuf> {
        let dest = self.path(digest)?;
        if dest.is_file() {
            return Ok(dest);
        }
        let tmp = self.temp_path("blob")?;
        fs::copy(src, &tmp).map_err(|e| io("copy into the object store", src, e))?;
        self.commit(&tmp, &dest)?;
        Ok(dest)
    }

    /// Moves a file the caller has written (and hashed) into the store.
    pub(crate) fn adopt(&self, file: &Path, digest: &str) -> Result<PathBuf> {
        let dest = self.path(digest)?;
        if dest.is_file() {
            let _ = fs::remove_file(file);
            return Ok(dest);
        }
        self.commit(file, &dest)?;
        Ok(dest)
    }

    fn commit(&self, tmp: &Path, dest: &Path) -> Result<()> {
        if let Some(dir) = dest.parent() {
            fs::create_dir_all(dir).map_err(|e| io("create object directory", dir, e))?;
        }
        // Blobs are immutable; read-only keeps a script that writes to a linked input from
        // corrupting the store (root ignores it, but it is right for everyone else).
        if let Ok(meta) = fs::metadata(tmp) {
            let mut perm = meta.permissions();
            perm.set_readonly(true);
            let _ = fs::set_permissions(tmp, perm);
        }
        // Another writer may have stored the same content meanwhile: same bytes, either wins.
        fs::rename(tmp, dest).map_err(|e| {
            let _ = fs::remove_file(tmp);
            io("store blob", dest, e)
        })
    }

    pub(crate) fn get(&self, digest: &str) -> Result<Vec<u8>> {
        let p = self.path(digest)?;
        fs::read(&p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ProviderError::new(
                    ErrorKind::NotFound,
                    PROVIDER,
                    "get blob",
                    format!("no blob {digest} in {}", self.root.display()),
                )
            } else {
                io("read blob", &p, e)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_is_content_addressed_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let o = Objects::new(dir.path());
        let d = o.put_bytes(b"hello").unwrap();
        assert_eq!(d, blake3::hash(b"hello").to_hex().to_string());
        assert_eq!(o.put_bytes(b"hello").unwrap(), d);
        assert_eq!(o.get(&d).unwrap(), b"hello");
        let p = o.path(&d).unwrap();
        assert!(p.ends_with(format!("objects/{}/{d}", &d[..2])));
        assert!(o.path("../../etc/passwd").is_err());
        let missing = o.get(&"0".repeat(64)).unwrap_err();
        assert_eq!(missing.kind, ErrorKind::NotFound);
        // Nothing left behind in tmp.
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }
}
