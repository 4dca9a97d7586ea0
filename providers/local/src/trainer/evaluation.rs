//! The rows of a local job: its dataset's parts read from disk, then the one rule every target
//! follows ([`mlctl_core::evaluation`]: what is trained on, compared on and held out).

use super::JobRequest;
use crate::PROVIDER;
use crate::fsutil::sniff_format;
use mlctl_core::error::{ErrorKind, ProviderError, Result};
pub(crate) use mlctl_core::evaluation::Rows;
use mlctl_core::evaluation::{self, Parts};
use mlctl_ml::Table;
use mlctl_ml::table;
use std::path::Path;

fn invalid(message: String) -> ProviderError {
    ProviderError::new(ErrorKind::Invalid, PROVIDER, "training", message)
}

fn read(uri: &str) -> Result<Table> {
    let p = Path::new(uri);
    table::read(p, sniff_format(p)).map_err(|e| {
        ProviderError::new(
            ErrorKind::Other,
            PROVIDER,
            "training",
            format!("cannot read training data: {e}"),
        )
    })
}

/// The rows of `job`; `tuned` asks for validation rows too.
pub(crate) fn rows(job: &JobRequest, tuned: bool) -> Result<Rows> {
    let splits = &job.dataset.splits;
    let (train, split_train) = match splits.get("train") {
        Some(uri) => (read(uri)?, true),
        None => (read(&job.dataset.uri)?, false),
    };
    let parts = Parts {
        train,
        split_train,
        validation: splits.get("validation").map(|u| read(u)).transpose()?,
        test: splits.get("test").map(|u| read(u)).transpose()?,
    };
    evaluation::rows(parts, job.split.as_ref(), &job.dataset.digest, tuned).map_err(invalid)
}
