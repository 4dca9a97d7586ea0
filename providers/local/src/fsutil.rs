//! Small file-system helpers.

use crate::PROVIDER;
use mlctl_core::error::{ErrorKind, ProviderError, Result};
use std::fs;
use std::path::Path;

/// An I/O error that names the path.
pub(crate) fn io_at(op: &str, path: &Path, e: std::io::Error) -> ProviderError {
    let mut err = ProviderError::io(PROVIDER, op, e);
    err.message = format!("{}: {}", path.display(), err.message);
    err
}

/// Entries never copied, at any depth, whatever the caller skips: VCS metadata, mlctl's own
/// state, and `.env` files (where credentials live).
fn always_left_out(name: &str) -> bool {
    name == ".git" || name == ".mlctl" || name == ".env" || name.starts_with(".env.")
}

/// Copies a file or directory tree; `skip` is asked about every entry name below the root.
///
/// # Guarantees
/// - Nothing outside the tree is read: the root is resolved first (symlinks followed), and a
///   symbolic link below it is followed only when it resolves inside the root; then it is
///   copied as what it points to (a file, or a directory's content). A link leading
///   outside is an error naming the link and its target, and nothing more is copied.
/// - `.git`, `.mlctl`, `.env` and `.env.*` are left out at every depth.
///
/// # Errors
/// A link out of the tree; a link to a directory it is in (it would copy forever); an I/O
/// error, naming the path. Dangling links, sockets and devices are left out.
pub(crate) fn copy_tree(src: &Path, dst: &Path, skip: &dyn Fn(&str) -> bool) -> Result<()> {
    let root = fs::canonicalize(src).map_err(|e| io_at("copy", src, e))?;
    let meta = fs::metadata(&root).map_err(|e| io_at("copy", src, e))?;
    if meta.is_file() {
        if let Some(dir) = dst.parent() {
            fs::create_dir_all(dir).map_err(|e| io_at("create directory", dir, e))?;
        }
        fs::copy(&root, dst).map_err(|e| io_at("copy", src, e))?;
        return Ok(());
    }
    let mut within = vec![root.clone()];
    copy_dir(src, &root, &root, dst, skip, &mut within)
}

/// Copies directory `real` (a resolved path inside `root`) to `dst`. `within` holds the
/// resolved directories being copied, outermost first, to tell a link loop; `shown` is how
/// the caller named the root, for messages.
fn copy_dir(
    shown: &Path,
    root: &Path,
    real: &Path,
    dst: &Path,
    skip: &dyn Fn(&str) -> bool,
    within: &mut Vec<std::path::PathBuf>,
) -> Result<()> {
    fs::create_dir_all(dst).map_err(|e| io_at("create directory", dst, e))?;
    let mut entries: Vec<fs::DirEntry> = fs::read_dir(real)
        .map_err(|e| io_at("list directory", real, e))?
        .collect::<std::io::Result<_>>()
        .map_err(|e| io_at("list directory", real, e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let Some(name_str) = name.to_str() else {
            continue;
        };
        if always_left_out(name_str) || skip(name_str) {
            continue;
        }
        let from = entry.path();
        let to = dst.join(&name);
        let ft = entry.file_type().map_err(|e| io_at("copy", &from, e))?;
        if ft.is_symlink() {
            // Dangling: nothing to copy.
            let Ok(target) = fs::canonicalize(&from) else {
                continue;
            };
            if !target.starts_with(root) {
                return Err(ProviderError::new(
                    ErrorKind::Invalid,
                    PROVIDER,
                    "copy",
                    format!(
                        "{} is a symbolic link to {}, outside {}: it is not copied (copy the file into {} instead of linking to it, or remove the link)",
                        shown_path(shown, root, &from).display(),
                        target.display(),
                        shown.display(),
                        shown.display()
                    ),
                ));
            }
            match fs::metadata(&target) {
                Ok(m) if m.is_dir() => {
                    if within.iter().any(|d| d.starts_with(&target)) {
                        return Err(ProviderError::new(
                            ErrorKind::Invalid,
                            PROVIDER,
                            "copy",
                            format!(
                                "{} is a symbolic link to {}, a directory it is in: copying it would never end (remove the link)",
                                shown_path(shown, root, &from).display(),
                                target.display()
                            ),
                        ));
                    }
                    within.push(target.clone());
                    let r = copy_dir(shown, root, &target, &to, skip, within);
                    within.pop();
                    r?;
                }
                Ok(m) if m.is_file() => {
                    fs::copy(&target, &to).map_err(|e| io_at("copy", &from, e))?;
                }
                _ => {}
            }
        } else if ft.is_dir() {
            within.push(from.clone());
            let r = copy_dir(shown, root, &from, &to, skip, within);
            within.pop();
            r?;
        } else if ft.is_file() {
            fs::copy(&from, &to).map_err(|e| io_at("copy", &from, e))?;
        }
        // Sockets, devices: not part of code or models.
    }
    Ok(())
}

/// `path` (below the resolved `root`) as the caller named it (below `shown`).
fn shown_path(shown: &Path, root: &Path, path: &Path) -> std::path::PathBuf {
    path.strip_prefix(root)
        .map(|rel| shown.join(rel))
        .unwrap_or_else(|_| path.to_path_buf())
}

/// Entries never copied from a code directory, besides the ones never copied at all: caches
/// and environments.
pub(crate) fn skip_in_code(name: &str) -> bool {
    matches!(
        name,
        "__pycache__" | ".venv" | "node_modules" | ".ipynb_checkpoints"
    )
}

/// Resolves a path the spec gives relative to the project (`field` of `what`, e.g. `source`
/// of "dataset `iris`"): joined to the project directory, symlinks followed, and refused when
/// it lands outside the project (a `../`, an absolute path, or a link out of it).
///
/// # Errors
/// `NotFound` when it does not exist; `Invalid` when it resolves outside the project.
pub(crate) fn resolve_in_project(
    project: &Path,
    rel: &str,
    what: &str,
    field: &str,
) -> Result<std::path::PathBuf> {
    resolve_inside(project, "the project directory", rel, what, field)
}

/// [`resolve_in_project`] for a path relative to another directory (`root_name` says which).
pub(crate) fn resolve_inside(
    root: &Path,
    root_name: &str,
    rel: &str,
    what: &str,
    field: &str,
) -> Result<std::path::PathBuf> {
    let root_real = fs::canonicalize(root).map_err(|e| io_at("resolve", root, e))?;
    let joined = root.join(rel);
    let real = match fs::canonicalize(&joined) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ProviderError::new(
                ErrorKind::NotFound,
                PROVIDER,
                "resolve",
                format!(
                    "{what}: `{field}` {rel} does not exist (relative to {root_name} {})",
                    root.display()
                ),
            ));
        }
        Err(e) => return Err(io_at("resolve", &joined, e)),
    };
    if !real.starts_with(&root_real) {
        return Err(ProviderError::new(
            ErrorKind::Invalid,
            PROVIDER,
            "resolve",
            format!(
                "{what}: `{field}` {rel} resolves to {}, outside {root_name} {}; keep it inside (copy it in rather than pointing or linking to it)",
                real.display(),
                root_real.display()
            ),
        ));
    }
    Ok(real)
}
/// Removes a directory tree if it exists.
pub(crate) fn remove_tree(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_at("remove", path, e)),
    }
}

/// Checks that a name from a spec is safe as one path component.
pub(crate) fn safe_component(kind: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0']);
    if ok {
        Ok(())
    } else {
        Err(ProviderError::new(
            ErrorKind::Invalid,
            PROVIDER,
            kind,
            format!("`{name}` cannot be used as a {kind} name on the local target"),
        ))
    }
}

/// The format of a stored table, from its first bytes (blobs have no extension).
pub(crate) fn sniff_format(path: &Path) -> mlctl_spec::DataFormat {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let is_parquet = fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"PAR1";
    if is_parquet {
        mlctl_spec::DataFormat::Parquet
    } else {
        mlctl_spec::DataFormat::Csv
    }
}

/// The file extension for a format.
pub(crate) fn extension(format: mlctl_spec::DataFormat) -> &'static str {
    match format {
        mlctl_spec::DataFormat::Csv => "csv",
        mlctl_spec::DataFormat::Parquet => "parquet",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn files(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                if e.file_type().unwrap().is_dir() {
                    walk(base, &p, out);
                } else {
                    out.push(rel);
                }
            }
        }
        walk(dir, dir, &mut out);
        out.sort();
        out
    }

    #[test]
    fn copies_links_inside_the_tree_as_what_they_point_to_and_leaves_out_secrets() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("code");
        fs::create_dir_all(src.join("lib/.git")).unwrap();
        fs::create_dir_all(src.join("deep/.mlctl")).unwrap();
        fs::write(src.join("train.py"), "print(1)").unwrap();
        fs::write(src.join("lib/util.py"), "x = 1").unwrap();
        fs::write(src.join("lib/.git/HEAD"), "ref").unwrap();
        fs::write(src.join(".env"), "AWS_SECRET_ACCESS_KEY=x").unwrap();
        fs::write(src.join("deep/.env.local"), "TOKEN=x").unwrap();
        fs::write(src.join("deep/.environment"), "kept: not a .env file").unwrap();
        symlink("lib/util.py", src.join("alias.py")).unwrap();
        symlink(src.join("lib"), src.join("lib2")).unwrap();
        symlink("nowhere", src.join("dangling")).unwrap();
        let dst = t.path().join("copy");
        copy_tree(&src, &dst, &skip_in_code).unwrap();
        assert_eq!(
            files(&dst),
            [
                "alias.py",
                "deep/.environment",
                "lib/util.py",
                "lib2/util.py",
                "train.py"
            ]
        );
        assert_eq!(fs::read_to_string(dst.join("alias.py")).unwrap(), "x = 1");
        assert!(
            !fs::symlink_metadata(dst.join("alias.py"))
                .unwrap()
                .is_symlink()
        );
    }

    #[test]
    fn a_link_out_of_the_tree_is_refused_naming_it_and_its_target() {
        let t = tempfile::tempdir().unwrap();
        let secret = t.path().join("credentials");
        fs::write(&secret, "[default]\naws_secret_access_key = x").unwrap();
        let src = t.path().join("code");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("train.py"), "").unwrap();
        symlink(&secret, src.join("sub/creds")).unwrap();
        let dst = t.path().join("copy");
        let e = copy_tree(&src, &dst, &|_| false).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
        let real_secret = fs::canonicalize(&secret).unwrap();
        assert!(
            e.message.contains(&format!(
                "{} is a symbolic link to {}",
                src.join("sub/creds").display(),
                real_secret.display()
            )),
            "{e}"
        );
        assert!(!dst.join("sub/creds").exists());
        // A directory link out of the tree too.
        fs::remove_file(src.join("sub/creds")).unwrap();
        symlink(t.path(), src.join("up")).unwrap();
        let e = copy_tree(&src, &t.path().join("copy2"), &|_| false).unwrap_err();
        assert!(e.message.contains("up is a symbolic link to"), "{e}");
    }

    #[test]
    fn a_link_loop_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("code");
        fs::create_dir_all(src.join("a")).unwrap();
        symlink("..", src.join("a/loop")).unwrap();
        let e = copy_tree(&src, &t.path().join("copy"), &|_| false).unwrap_err();
        assert!(e.message.contains("a directory it is in"), "{e}");
    }

    #[test]
    fn project_paths_resolve_inside_the_project_only() {
        let t = tempfile::tempdir().unwrap();
        let project = t.path().join("p");
        fs::create_dir_all(project.join("src")).unwrap();
        fs::create_dir_all(t.path().join("outside")).unwrap();
        symlink(t.path().join("outside"), project.join("linked")).unwrap();
        let ok = resolve_in_project(&project, "src", "training job `t`", "code").unwrap();
        assert_eq!(ok, fs::canonicalize(project.join("src")).unwrap());
        for rel in ["../outside", "linked", "/tmp"] {
            let e = resolve_in_project(&project, rel, "training job `t`", "code").unwrap_err();
            assert_eq!(e.kind, ErrorKind::Invalid, "{rel}");
            assert!(
                e.message
                    .contains(&format!("training job `t`: `code` {rel} resolves to"))
                    && e.message.contains("outside the project directory"),
                "{e}"
            );
        }
        let e = resolve_in_project(&project, "nope", "training job `t`", "code").unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(e.message.contains("does not exist"), "{e}");
    }
}
