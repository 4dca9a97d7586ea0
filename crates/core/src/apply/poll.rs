//! Waiting for long operations (training jobs, rollouts): one loop for every kind.

use super::Shared;
use crate::components::Capabilities;
use crate::error::Result;
use mlctl_spec::ResourceId;
use std::future::Future;
use std::time::{Duration, Instant};

/// One look at a long operation.
pub(crate) enum Poll<T> {
    /// It ended (well or badly): stop polling.
    Ready(T),
    /// Still going; what it is doing, for the progress display.
    Pending(String),
}

/// How waiting ended.
#[must_use]
pub(crate) enum PollOutcome<T> {
    /// The operation ended with this.
    Ready(T),
    /// The timeout passed first; the caller decides whether to cancel.
    TimedOut,
}

/// How long to wait for a job or rollout: the spec's `compute.timeout` (the validator has
/// checked it is a duration), else the apply's default.
pub(crate) fn timeout_of(sh: &Shared, compute: Option<&mlctl_spec::Compute>) -> Duration {
    compute
        .and_then(|c| c.timeout.as_deref())
        .and_then(|t| mlctl_spec::units::parse_duration(t).ok())
        .unwrap_or(sh.opts.timeout)
}

/// How often to poll: [`super::ApplyOptions::poll_interval`] when set, else the component's
/// own interval (500 ms when it names none).
pub(crate) fn poll_every(sh: &Shared, caps: &Capabilities) -> Duration {
    sh.opts
        .poll_interval
        .unwrap_or(if caps.poll_interval.is_zero() {
            Duration::from_millis(500)
        } else {
            caps.poll_interval
        })
}

/// Calls `poll` until it is ready, fails, or `timeout` passes, sleeping the component's poll
/// interval in between and reporting each new pending message as progress of `id`.
///
/// # Errors
/// The first error `poll` returns (it retries retryable ones itself).
pub(crate) async fn poll_until<T, F, Fut>(
    sh: &Shared,
    id: &ResourceId,
    caps: &Capabilities,
    timeout: Duration,
    mut poll: F,
) -> Result<PollOutcome<T>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Poll<T>>>,
{
    let every = poll_every(sh, caps);
    let t0 = Instant::now();
    let mut last = String::new();
    loop {
        match poll().await? {
            Poll::Ready(v) => return Ok(PollOutcome::Ready(v)),
            Poll::Pending(_) if t0.elapsed() > timeout => return Ok(PollOutcome::TimedOut),
            Poll::Pending(message) => {
                let message = message.trim().to_string();
                if message != last {
                    sh.progress(id, message.clone());
                    last = message;
                }
                tokio::time::sleep(every).await;
            }
        }
    }
}
