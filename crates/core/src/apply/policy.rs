//! The error policy: which component errors are retried, and how.
//!
//! A retryable error (throttling, a timeout, a 5xx: [`ProviderError::is_retryable`]) is
//! retried with exponential backoff from [`ApplyOptions::retry_base`], doubling up to 30 s,
//! at most [`ApplyOptions::retries`] times; any other error is returned at once, so a bad
//! spec or a failed job fails its resource on the first try.
//!
//! [`ProviderError::is_retryable`]: crate::ProviderError::is_retryable
//! [`ApplyOptions::retry_base`]: super::ApplyOptions::retry_base
//! [`ApplyOptions::retries`]: super::ApplyOptions::retries

/// Evaluates a component call until it succeeds, fails permanently, or runs out of retries.
/// A macro rather than a function taking an async closure, so the futures stay `Send` for
/// tokio.
#[macro_export]
macro_rules! retry {
    ($opts:expr, $call:expr) => {{
        let opts: &$crate::apply::ApplyOptions = $opts;
        let mut delay = opts.retry_base;
        let mut attempt = 0;
        loop {
            match $call {
                Err(e)
                    if $crate::error::ProviderError::is_retryable(&e) && attempt < opts.retries =>
                {
                    attempt += 1;
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(30));
                }
                other => break other,
            }
        }
    }};
}
