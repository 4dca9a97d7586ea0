//! File-backed storage for the mock target: JSON documents written atomically (temp file +
//! rename), a short-lived exclusive file lock around every read-modify-write, and append-only
//! JSON-lines logs.
//!
//! # Guarantees
//! - A reader never sees a half-written document: writes go to a temp file in the same
//!   directory and are renamed over the old one.
//! - Two processes (or two threads with their own [`Store`]) that update the same document
//!   serialize on `<root>/.locks/<name>.lock` (`flock`), so no update is lost.
//!
//! # Caveats
//! Files are not fsynced: the mock survives a crashed process, not a power cut.

use crate::err;
use mlctl_core::{ErrorKind, ProviderError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

type Result<T> = std::result::Result<T, ProviderError>;

/// Makes a name safe as a file name: ASCII letters, digits, `-` and `_` stay, everything else
/// (including `.` and `/`) becomes `%XX`, so names never collide and never escape the directory.
pub(crate) fn key(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An I/O error on `path`, as a [`ProviderError`] that names the file.
pub(crate) fn io_err(op: &str, path: &Path, e: io::Error) -> ProviderError {
    let mut pe = ProviderError::io(crate::PROVIDER, op, e);
    pe.message = format!("mock target state {}: {}", path.display(), pe.message);
    pe
}

/// The state of the mock target under one directory.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    root: PathBuf,
}

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl Store {
    pub(crate) fn new(root: impl Into<PathBuf>) -> Self {
        Store { root: root.into() }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Reads a JSON document; `None` when it does not exist.
    pub(crate) fn read<T: DeserializeOwned>(&self, op: &str, rel: &str) -> Result<Option<T>> {
        let path = self.path(rel);
        match fs::read(&path) {
            Ok(bytes) => {
                mlctl_core::state::check_format_json(&path.display().to_string(), &bytes)?;
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| damaged(op, &path, &e))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(op, &path, e)),
        }
    }

    /// Writes raw bytes atomically (temp file in the same directory, then rename).
    pub(crate) fn write_bytes(&self, op: &str, rel: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path(rel);
        let dir = path.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir).map_err(|e| io_err(op, dir, e))?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(
            ".{file_name}.{}.{}.tmp",
            std::process::id(),
            TEMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(bytes)?;
            drop(f);
            fs::rename(&tmp, &path)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(op, &path, e));
        }
        Ok(())
    }

    /// Writes a JSON document atomically.
    pub(crate) fn write<T: Serialize>(&self, op: &str, rel: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| {
            err(
                ErrorKind::Other,
                op,
                format!("cannot encode mock state: {e}"),
            )
        })?;
        self.write_bytes(op, rel, &bytes)
    }

    /// Removes a file; whether it existed.
    pub(crate) fn remove(&self, op: &str, rel: &str) -> Result<bool> {
        let path = self.path(rel);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(op, &path, e)),
        }
    }

    /// The `*.json` documents of a directory (relative paths), sorted; empty when it does not exist.
    pub(crate) fn list(&self, op: &str, dir: &str) -> Result<Vec<String>> {
        let path = self.path(dir);
        let entries = match fs::read_dir(&path) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(op, &path, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_err(op, &path, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && name.ends_with(".json") {
                out.push(format!("{dir}/{name}"));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Runs `f` while holding the exclusive file lock `name`, waiting for other holders (in
    /// this or another process). `f` must not await: the lock is held by this thread.
    pub(crate) fn locked<R>(
        &self,
        op: &str,
        name: &str,
        f: impl FnOnce() -> Result<R>,
    ) -> Result<R> {
        let dir = self.root.join(".locks");
        fs::create_dir_all(&dir).map_err(|e| io_err(op, &dir, e))?;
        let path = dir.join(format!("{}.lock", key(name)));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io_err(op, &path, e))?;
        file.lock().map_err(|e| io_err(op, &path, e))?;
        let result = f();
        // Closing the file releases the lock too; unlocking first just makes it explicit.
        let _ = file.unlock();
        result
    }

    /// Read-modify-write of one document under its lock. `f` gets `None` when the document
    /// does not exist; leaving `None` removes it. Unchanged documents are not rewritten.
    pub(crate) fn update<T: Serialize + DeserializeOwned, R>(
        &self,
        op: &str,
        rel: &str,
        f: impl FnOnce(&mut Option<T>) -> Result<R>,
    ) -> Result<R> {
        self.locked(op, rel, || {
            let path = self.path(rel);
            let before = match fs::read(&path) {
                Ok(b) => Some(b),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(io_err(op, &path, e)),
            };
            let mut value: Option<T> = match &before {
                Some(b) => {
                    mlctl_core::state::check_format_json(&path.display().to_string(), b)?;
                    Some(serde_json::from_slice(b).map_err(|e| damaged(op, &path, &e))?)
                }
                None => None,
            };
            let out = f(&mut value)?;
            match value {
                Some(v) => {
                    let bytes = serde_json::to_vec_pretty(&v).map_err(|e| {
                        err(
                            ErrorKind::Other,
                            op,
                            format!("cannot encode mock state: {e}"),
                        )
                    })?;
                    if before.as_deref() != Some(bytes.as_slice()) {
                        self.write_bytes(op, rel, &bytes)?;
                    }
                }
                None => {
                    if before.is_some() {
                        self.remove(op, rel)?;
                    }
                }
            }
            Ok(out)
        })
    }

    /// Appends one JSON line to a log (creating it). Callers hold the log's lock when order
    /// matters; `O_APPEND` keeps single lines whole either way.
    pub(crate) fn append<T: Serialize>(&self, op: &str, rel: &str, value: &T) -> Result<()> {
        let path = self.path(rel);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| io_err(op, dir, e))?;
        }
        let mut line = serde_json::to_vec(value).map_err(|e| {
            err(
                ErrorKind::Other,
                op,
                format!("cannot encode mock state: {e}"),
            )
        })?;
        line.push(b'\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_err(op, &path, e))?;
        f.write_all(&line).map_err(|e| io_err(op, &path, e))
    }

    /// Reads a JSON-lines log, oldest first; empty when it does not exist. A last line without
    /// its newline (a writer crashed mid-line) is ignored; any other bad line is an error.
    pub(crate) fn read_log<T: DeserializeOwned>(&self, op: &str, rel: &str) -> Result<Vec<T>> {
        let path = self.path(rel);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(op, &path, e)),
        };
        let complete = text.ends_with('\n');
        let lines: Vec<&str> = text.lines().collect();
        let mut out = Vec::with_capacity(lines.len());
        for (i, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(line) {
                Ok(v) => out.push(v),
                Err(_) if i + 1 == lines.len() && !complete => {}
                Err(e) => return Err(damaged(op, &path, &e)),
            }
        }
        Ok(out)
    }
}

fn damaged(op: &str, path: &Path, e: &serde_json::Error) -> ProviderError {
    err(
        ErrorKind::Other,
        op,
        format!(
            "mock target state file {} is damaged ({e}); it was probably edited by hand: fix it or delete it",
            path.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_safe_file_names() {
        assert_eq!(key("iris-train_2"), "iris-train_2");
        assert_eq!(key("../x"), "%2E%2E%2Fx");
        assert_eq!(key("Model/iris"), "Model%2Firis");
    }

    #[test]
    fn concurrent_updates_from_separate_stores_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                // A store per thread: separate open file descriptions, like separate processes.
                let store = Store::new(dir.path());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        store
                            .update("test", "counter.json", |v: &mut Option<u64>| {
                                *v = Some(v.unwrap_or(0) + 1);
                                Ok(())
                            })
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let n: Option<u64> = Store::new(dir.path()).read("test", "counter.json").unwrap();
        assert_eq!(n, Some(200));
    }

    #[test]
    fn a_torn_last_log_line_is_ignored_but_damage_elsewhere_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        store.append("t", "log.jsonl", &1u32).unwrap();
        store.append("t", "log.jsonl", &2u32).unwrap();
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("log.jsonl"))
            .unwrap();
        f.write_all(b"{\"trunc").unwrap();
        assert_eq!(store.read_log::<u32>("t", "log.jsonl").unwrap(), vec![1, 2]);
        fs::write(dir.path().join("log.jsonl"), "1\nnot json\n2\n").unwrap();
        let e = store.read_log::<u32>("t", "log.jsonl").unwrap_err();
        assert!(e.message.contains("damaged"), "{e}");
    }

    #[test]
    fn damaged_documents_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("x.json"), "{").unwrap();
        let e = Store::new(dir.path())
            .read::<serde_json::Value>("op", "x.json")
            .unwrap_err();
        assert!(
            e.message.contains("x.json") && e.message.contains("edited by hand"),
            "{e}"
        );
    }
}
