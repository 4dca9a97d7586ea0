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

/// Copies a file or directory tree; `skip` is asked about every entry name below the root.
pub(crate) fn copy_tree(src: &Path, dst: &Path, skip: &dyn Fn(&str) -> bool) -> Result<()> {
    let meta = fs::metadata(src).map_err(|e| io_at("copy", src, e))?;
    if meta.is_file() {
        if let Some(dir) = dst.parent() {
            fs::create_dir_all(dir).map_err(|e| io_at("create directory", dir, e))?;
        }
        fs::copy(src, dst).map_err(|e| io_at("copy", src, e))?;
        return Ok(());
    }
    fs::create_dir_all(dst).map_err(|e| io_at("create directory", dst, e))?;
    for entry in fs::read_dir(src).map_err(|e| io_at("list directory", src, e))? {
        let entry = entry.map_err(|e| io_at("list directory", src, e))?;
        let name = entry.file_name();
        let Some(name_str) = name.to_str() else {
            continue;
        };
        if skip(name_str) {
            continue;
        }
        let from = entry.path();
        let to = dst.join(&name);
        let ft = fs::metadata(&from).map(|m| m.file_type());
        match ft {
            Ok(ft) if ft.is_dir() => copy_tree(&from, &to, skip)?,
            Ok(ft) if ft.is_file() => {
                fs::copy(&from, &to).map_err(|e| io_at("copy", &from, e))?;
            }
            // Dangling links, sockets, devices: not part of code or models.
            _ => {}
        }
    }
    Ok(())
}

/// Entries never copied from a code directory: VCS metadata, caches, mlctl's own state.
pub(crate) fn skip_in_code(name: &str) -> bool {
    matches!(
        name,
        ".git" | ".mlctl" | "__pycache__" | ".venv" | "node_modules" | ".ipynb_checkpoints"
    )
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
