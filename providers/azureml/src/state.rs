//! Observed state, history, monitor results, full error logs and the apply lock as blobs in
//! the target's `storage` container, so a fresh CI runner plans against Azure ML with no local
//! files. The layout and the lock are the S3 target's (`mlctl_core::objectstore`):
//!
//! - record: `.mlctl/state/<project>/<Kind>/<name>.json`
//! - history: `.mlctl/state/<project>/history/<Kind>/<name>/<time>-<n>.json`
//! - monitor results: `.mlctl/state/<project>/monitor-results/<monitor>/<time>-<n>.json`
//! - error logs: `.mlctl/state/<project>/error-logs/<Kind>-<name>.log` (one per resource)
//! - lock: `.mlctl/lock/<project>.json`, created with `If-None-Match: *` (of two racing
//!   creates Blob Storage lets one through and answers the other 409 `BlobAlreadyExists`,
//!   which then reads the holder). The holder, host, pid, time and heartbeat are the blob's
//!   content; renewal and takeover are puts with `If-Match` on the ETag read, release a
//!   delete with `If-Match`.

use crate::blob::Blob;
use mlctl_core::objectstore::ObjectStateStore;
use std::sync::Arc;

/// The [`mlctl_core::StateStore`] of an azureml target.
pub type BlobStateStore = ObjectStateStore;

/// The state store on `blob` (the stack's [`crate::azure::Azure::blob`]).
pub(crate) fn state_store(blob: Arc<Blob>) -> BlobStateStore {
    ObjectStateStore::new(blob).keeping_error_logs()
}
