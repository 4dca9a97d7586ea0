//! Loading model directories: the portable model format of `mlctl-ml`.

use crate::predictor::DynPredictor;
use crate::server::Loader;
use std::path::Path;
use std::sync::Arc;

/// Loads a portable model directory.
pub fn load(dir: &Path) -> Result<DynPredictor, String> {
    Err(format!(
        "{}: portable models cannot be loaded yet",
        dir.display()
    ))
}

/// The loader used by `mlctl serve`.
pub fn default_loader() -> Loader {
    Arc::new(load)
}
