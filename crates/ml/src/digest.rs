//! Content digests (blake3, hex) of files and directory trees, with a stat cache.
//!
//! * A file's digest is the plain blake3 hash of its bytes (what `b3sum` prints). Large files
//!   are memory-mapped and hashed on all cores.
//! * A directory's digest is blake3 over the line `mlctl-dir-v1`, then one line
//!   `<file digest>  <relative path>` per regular file below it, sorted by relative path
//!   (`/`-separated, bytewise). It depends only on the paths and contents, not on timestamps,
//!   permissions or the order the file system lists entries in. Empty directories do not count.
//!   Symbolic links are followed; a link to an enclosing directory is an error.
//! * A [`DigestCache`] remembers `(path, size, mtime_ns, inode) -> digest`, so an unchanged
//!   file is not read again.
//!
//! # Caveats
//! The cache trusts file metadata like `git status` does: a change that keeps size, mtime and
//! inode identical is not seen. A file modified while it is hashed is not cached.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Files at least this large are memory-mapped and hashed in parallel.
const PARALLEL_THRESHOLD: u64 = 1 << 20;

/// The identity of a file's current version, as far as metadata can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime_ns: i64,
    inode: u64,
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Stamp {
        let mtime_ns = meta
            .modified()
            .ok()
            .map(|t| match t.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => d.as_nanos() as i64,
                Err(e) => -(e.duration().as_nanos() as i64),
            })
            .unwrap_or(0);
        Stamp {
            size: meta.len(),
            mtime_ns,
            inode: inode(meta),
        }
    }
}

#[cfg(unix)]
fn inode(meta: &fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.ino()
}

#[cfg(not(unix))]
fn inode(_meta: &fs::Metadata) -> u64 {
    0
}

/// Stored as a JSON array `[size, mtime_ns, inode, digest]`: compact and quick to parse.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CacheEntry(u64, i64, u64, String);

impl CacheEntry {
    fn new(stamp: Stamp, digest: String) -> Self {
        CacheEntry(stamp.size, stamp.mtime_ns, stamp.inode, digest)
    }

    fn stamp(&self) -> Stamp {
        Stamp {
            size: self.0,
            mtime_ns: self.1,
            inode: self.2,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    entries: HashMap<String, CacheEntry>,
}

const CACHE_VERSION: u32 = 2;

/// Remembers the digests of files by path and metadata, optionally persisted as a JSON file.
#[derive(Debug, Default)]
pub struct DigestCache {
    file: Option<PathBuf>,
    entries: HashMap<String, CacheEntry>,
    dirty: bool,
}

impl DigestCache {
    /// A cache kept in memory only.
    pub fn in_memory() -> Self {
        DigestCache::default()
    }

    /// The cache stored in `file`; a missing or unreadable file gives an empty cache (a cache
    /// can always be rebuilt). Call [`DigestCache::save`] to write it back.
    pub fn open(file: impl Into<PathBuf>) -> Self {
        let file = file.into();
        let entries = fs::read(&file)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<CacheFile>(&bytes).ok())
            .filter(|c| c.version == CACHE_VERSION)
            .map(|c| c.entries)
            .unwrap_or_default();
        DigestCache {
            file: Some(file),
            entries,
            dirty: false,
        }
    }

    /// Number of remembered files.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes the cache to its file (atomically: a temporary file renamed over it), if it has
    /// one and anything changed. Entries for files that no longer exist are dropped.
    pub fn save(&mut self) -> io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        self.entries.retain(|p, _| Path::new(p).exists());
        if let Some(parent) = file.parent() {
            fs::create_dir_all(parent)?;
        }
        let data = CacheFile {
            version: CACHE_VERSION,
            entries: std::mem::take(&mut self.entries),
        };
        let bytes = serde_json::to_vec(&data).map_err(io::Error::other)?;
        self.entries = data.entries;
        let tmp = file.with_extension(format!("tmp{}", std::process::id()));
        fs::write(&tmp, bytes)?;
        fs::rename(&tmp, file)?;
        self.dirty = false;
        Ok(())
    }

    fn get(&self, key: &str, stamp: Stamp) -> Option<String> {
        self.entries
            .get(key)
            .filter(|e| e.stamp() == stamp)
            .map(|e| e.3.clone())
    }

    fn put(&mut self, key: String, stamp: Stamp, digest: String) {
        self.entries.insert(key, CacheEntry::new(stamp, digest));
        self.dirty = true;
    }
}

fn cache_key(path: &Path) -> String {
    let abs = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    abs.to_string_lossy().into_owned()
}

/// The digest of a file or directory tree (see the module docs), using and updating `cache`.
pub fn digest_path(path: impl AsRef<Path>, cache: Option<&mut DigestCache>) -> io::Result<String> {
    let path = path.as_ref();
    let meta = fs::metadata(path).map_err(|e| with_path(e, path))?;
    if meta.is_dir() {
        digest_dir(path, cache)
    } else {
        digest_file(path, cache)
    }
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// The blake3 digest (hex) of one file, using and updating `cache`.
pub fn digest_file(path: impl AsRef<Path>, cache: Option<&mut DigestCache>) -> io::Result<String> {
    let path = path.as_ref();
    match cache {
        None => hash_file(path),
        Some(cache) => {
            let key = cache_key(path);
            let (digest, stamp) = cached_or_hash(path, &key, cache)?;
            if let Some(stamp) = stamp {
                cache.put(key, stamp, digest.clone());
            }
            Ok(digest)
        }
    }
}

/// Returns the digest, plus the stamp to store when it was freshly (and stably) computed.
fn cached_or_hash(
    path: &Path,
    key: &str,
    cache: &DigestCache,
) -> io::Result<(String, Option<Stamp>)> {
    let before = Stamp::of(&fs::metadata(path).map_err(|e| with_path(e, path))?);
    if let Some(d) = cache.get(key, before) {
        return Ok((d, None));
    }
    let digest = hash_file(path)?;
    let after = Stamp::of(&fs::metadata(path).map_err(|e| with_path(e, path))?);
    Ok((digest, (after == before).then_some(before)))
}

/// Hashes a file's bytes: mmap + all cores for big files, one read for small ones.
fn hash_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path).map_err(|e| with_path(e, path))?;
    let len = file.metadata()?.len();
    let mut hasher = blake3::Hasher::new();
    if len >= PARALLEL_THRESHOLD {
        hasher
            .update_mmap_rayon(path)
            .map_err(|e| with_path(e, path))?;
    } else {
        let mut buf = Vec::with_capacity(len as usize + 1);
        file.read_to_end(&mut buf).map_err(|e| with_path(e, path))?;
        hasher.update(&buf);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// Every regular file below `root`, as (relative `/` path, full path), sorted by relative path.
fn list_files(root: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), root.to_path_buf())];
    while let Some((rel, dir)) = stack.pop() {
        for entry in fs::read_dir(&dir).map_err(|e| with_path(e, &dir))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let child_rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let p = entry.path();
            let mut ft = entry.file_type()?;
            let linked = ft.is_symlink();
            if linked {
                ft = fs::metadata(&p).map_err(|e| with_path(e, &p))?.file_type();
            }
            if ft.is_dir() {
                // A link back to an enclosing directory would loop forever.
                if linked {
                    let target = fs::canonicalize(&p).map_err(|e| with_path(e, &p))?;
                    let here = fs::canonicalize(&dir).map_err(|e| with_path(e, &dir))?;
                    if here.starts_with(&target) {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!(
                                "{}: symbolic link to an enclosing directory (a cycle)",
                                p.display()
                            ),
                        ));
                    }
                }
                stack.push((child_rel, p));
            } else if ft.is_file() {
                out.push((child_rel, p));
            }
        }
    }
    out.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(out)
}

fn digest_dir(root: &Path, cache: Option<&mut DigestCache>) -> io::Result<String> {
    let files = list_files(root)?;
    let root_key = cache_key(root);
    let digests: Vec<(String, Option<(String, Stamp)>)> = match &cache {
        None => files
            .par_iter()
            .map(|(_, p)| hash_file(p).map(|d| (d, None)))
            .collect::<io::Result<_>>()?,
        Some(cache) => {
            let cache: &DigestCache = cache;
            files
                .par_iter()
                .map(|(rel, p)| {
                    let key = format!("{root_key}/{rel}");
                    let (d, stamp) = cached_or_hash(p, &key, cache)?;
                    Ok((d.clone(), stamp.map(|s| (key, s))))
                })
                .collect::<io::Result<_>>()?
        }
    };
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"mlctl-dir-v1\n");
    for ((rel, _), (digest, _)) in files.iter().zip(&digests) {
        hasher.update(digest.as_bytes());
        hasher.update(b"  ");
        hasher.update(rel.as_bytes());
        hasher.update(b"\n");
    }
    if let Some(cache) = cache {
        for (digest, fresh) in digests {
            if let Some((key, stamp)) = fresh {
                cache.put(key, stamp, digest);
            }
        }
    }
    Ok(hasher.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_digest_is_plain_blake3() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, b"hello").unwrap();
        assert_eq!(
            digest_path(&p, None).unwrap(),
            blake3::hash(b"hello").to_hex().to_string()
        );
        // Big enough for the parallel mmap path: same result as hashing in one go.
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(&p, &big).unwrap();
        assert_eq!(
            digest_path(&p, None).unwrap(),
            blake3::hash(&big).to_hex().to_string()
        );
    }

    #[test]
    fn directory_digest_depends_on_paths_and_contents_only() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        // Same tree, created in different orders.
        fs::create_dir_all(a.path().join("sub")).unwrap();
        fs::write(a.path().join("x.csv"), "1").unwrap();
        fs::write(a.path().join("sub/y.csv"), "2").unwrap();
        fs::create_dir_all(b.path().join("sub")).unwrap();
        fs::write(b.path().join("sub/y.csv"), "2").unwrap();
        fs::write(b.path().join("x.csv"), "1").unwrap();
        fs::create_dir_all(b.path().join("empty")).unwrap();
        let da = digest_path(a.path(), None).unwrap();
        assert_eq!(da, digest_path(b.path(), None).unwrap());
        fs::write(b.path().join("sub/y.csv"), "3").unwrap();
        assert_ne!(da, digest_path(b.path(), None).unwrap());
        fs::rename(a.path().join("x.csv"), a.path().join("z.csv")).unwrap();
        assert_ne!(da, digest_path(a.path(), None).unwrap());
    }

    #[test]
    fn cache_is_used_persisted_and_invalidated() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("data.csv");
        let cache_file = dir.path().join("cache/digests.json");
        fs::write(&p, "a,b\n1,2\n").unwrap();
        let first = {
            let mut cache = DigestCache::open(&cache_file);
            let d = digest_path(&p, Some(&mut cache)).unwrap();
            assert_eq!(cache.len(), 1);
            cache.save().unwrap();
            d
        };
        let mut cache = DigestCache::open(&cache_file);
        assert_eq!(cache.len(), 1);
        // Plant a wrong digest under the same stamp: a cache hit returns it, proving no re-read.
        let key = cache_key(&p);
        cache.entries.get_mut(&key).unwrap().3 = "planted".into();
        assert_eq!(digest_path(&p, Some(&mut cache)).unwrap(), "planted");
        // Changing the size invalidates the entry.
        fs::write(&p, "a,b\n1,2\n3,4\n").unwrap();
        let d = digest_path(&p, Some(&mut cache)).unwrap();
        assert_ne!(d, "planted");
        assert_ne!(d, first);
        assert_eq!(d, digest_path(&p, None).unwrap());
    }

    #[test]
    fn directory_digest_with_cache_matches_without() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..20 {
            fs::write(dir.path().join(format!("f{i}")), format!("{i}")).unwrap();
        }
        let plain = digest_path(dir.path(), None).unwrap();
        let mut cache = DigestCache::in_memory();
        assert_eq!(digest_path(dir.path(), Some(&mut cache)).unwrap(), plain);
        assert_eq!(cache.len(), 20);
        assert_eq!(digest_path(dir.path(), Some(&mut cache)).unwrap(), plain);
    }

    #[cfg(unix)]
    #[test]
    fn symlink_cycles_are_errors_and_links_are_followed() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a")).unwrap();
        fs::write(dir.path().join("a/f"), "x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("a/f"), dir.path().join("g")).unwrap();
        let with_link = digest_path(dir.path(), None).unwrap();
        fs::remove_file(dir.path().join("g")).unwrap();
        fs::write(dir.path().join("g"), "x").unwrap();
        assert_eq!(with_link, digest_path(dir.path(), None).unwrap());
        std::os::unix::fs::symlink(dir.path(), dir.path().join("a/loop")).unwrap();
        let e = digest_path(dir.path(), None).unwrap_err().to_string();
        assert!(e.contains("cycle"), "{e}");
    }

    #[test]
    fn missing_path_error_names_it() {
        let e = digest_path("/nonexistent/x.csv", None).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/x.csv"));
    }
}
