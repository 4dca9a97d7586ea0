//! The one error type every provider maps its own errors into.

use std::fmt;

/// What went wrong, in categories the apply engine acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The thing asked for does not exist.
    NotFound,
    /// It exists already (and is not ours to reuse).
    AlreadyExists,
    /// A condition did not hold (a conditional write lost a race, a plan is stale).
    Precondition,
    /// The service asked us to slow down. Retryable.
    Throttled,
    /// The operation took too long. Retryable.
    Timeout,
    /// A transient failure (5xx, connection reset). Retryable.
    Transient,
    /// Credentials are missing or not allowed to do this.
    PermissionDenied,
    /// The provider cannot do this at all (see its capabilities).
    NotSupported,
    /// The input was wrong (bad data, a failing script, a failed gate). Not retryable.
    Invalid,
    /// The operation ran and failed (a training job failed, a deployment rolled back).
    Failed,
    /// Anything else.
    Other,
}

/// An error from a component, with whether retrying can help.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProviderError {
    /// Category.
    pub kind: ErrorKind,
    /// The provider that failed (`local`, `sagemaker`, ...).
    pub provider: String,
    /// What operation failed (`CreateTrainingJob`, `put blob`, ...).
    pub operation: String,
    /// A message for the user: what happened and, where known, what to do.
    pub message: String,
}

impl ProviderError {
    /// A new error.
    pub fn new(
        kind: ErrorKind,
        provider: impl Into<String>,
        operation: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ProviderError {
            kind,
            provider: provider.into(),
            operation: operation.into(),
            message: message.into(),
        }
    }

    /// Whether retrying the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Throttled | ErrorKind::Timeout | ErrorKind::Transient
        )
    }

    /// An I/O error from a local operation.
    pub fn io(provider: &str, operation: &str, e: std::io::Error) -> Self {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            std::io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
            std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
            _ => ErrorKind::Other,
        };
        ProviderError::new(kind, provider, operation, e.to_string())
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} {})", self.message, self.provider, self.operation)
    }
}

impl std::error::Error for ProviderError {}

/// Results of component calls.
pub type Result<T, E = ProviderError> = std::result::Result<T, E>;
