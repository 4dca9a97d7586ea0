//! The target's log store: the full text of errors too long for state and history.

use crate::PROVIDER;
use mlctl_core::error::{ProviderError, Result};
use mlctl_spec::ResourceId;
use std::path::Path;

/// Most bytes of one error log; the rest is cut, saying how much.
pub(crate) const MAX_ERROR_LOG: usize = 1 << 20;

/// Writes `text` (cut at [`MAX_ERROR_LOG`]) to `<state_dir>/logs/<Kind>-<name>.error.log`,
/// replacing the resource's previous one, so the logs grow with resources, not with failures.
/// Returns the file's path.
pub(crate) fn keep_error(state_dir: &Path, id: &ResourceId, text: &str) -> Result<String> {
    let dir = state_dir.join("logs");
    let io = |e| ProviderError::io(PROVIDER, "keep error log", e);
    std::fs::create_dir_all(&dir).map_err(io)?;
    // Names are validated (no `/`); the kind/name separator becomes `-`.
    let file = dir.join(format!(
        "{}.error.log",
        id.to_string().replace(['/', '\\'], "-")
    ));
    let shown = mlctl_spec::suggest::clip(text, MAX_ERROR_LOG);
    let tmp = file.with_extension("log.tmp");
    std::fs::write(&tmp, shown.as_bytes()).map_err(io)?;
    std::fs::rename(&tmp, &file).map_err(io)?;
    Ok(file.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_log_is_capped_and_replaces_the_last_one() {
        let dir = tempfile::tempdir().unwrap();
        let id = ResourceId::new(mlctl_spec::Kind::Dataset, "wide");
        let path = keep_error(dir.path(), &id, &"x".repeat(3 << 20)).unwrap();
        assert!(path.ends_with("logs/Dataset-wide.error.log"), "{path}");
        let kept = std::fs::read_to_string(&path).unwrap();
        assert!(kept.len() < MAX_ERROR_LOG + 100, "{}", kept.len());
        assert!(kept.ends_with("(value truncated: 3,145,728 bytes)"));
        keep_error(dir.path(), &id, "short").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "short");
        assert_eq!(
            std::fs::read_dir(dir.path().join("logs")).unwrap().count(),
            1
        );
    }
}
