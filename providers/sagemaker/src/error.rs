//! AWS errors mapped into [`ProviderError`]s that keep the AWS error code and message.
//!
//! Throttling, 5xx and connection errors are retried by the SDK (standard retry mode) before
//! they get here; what is left is mapped by error code so the apply engine knows whether
//! another attempt can help.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use mlctl_core::{ErrorKind, ProviderError};

pub(crate) const PROVIDER: &str = "sagemaker";

/// The [`ErrorKind`] of an AWS error code (with its message and HTTP status for the codes
/// AWS reuses: SageMaker reports a missing resource as a `ValidationException`).
pub(crate) fn kind_of(code: &str, message: &str, status: Option<u16>) -> ErrorKind {
    let lower = message.to_ascii_lowercase();
    let missing = lower.contains("could not find")
        || lower.contains("does not exist")
        || lower.contains("not found")
        || lower.contains("cannot find");
    match code {
        "ThrottlingException"
        | "Throttling"
        | "ThrottledException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException"
        | "SlowDown"
        | "RequestThrottled"
        | "RequestThrottledException"
        | "ProvisionedThroughputExceededException" => ErrorKind::Throttled,
        "ResourceNotFound"
        | "ResourceNotFoundException"
        | "NoSuchKey"
        | "NoSuchBucket"
        | "NoSuchUpload"
        | "NotFound" => ErrorKind::NotFound,
        "AccessDenied"
        | "AccessDeniedException"
        | "UnauthorizedOperation"
        | "InvalidClientTokenId"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "SignatureDoesNotMatch"
        | "InvalidAccessKeyId"
        | "UnrecognizedClientException"
        | "MissingAuthenticationToken"
        | "AllAccessDisabled" => ErrorKind::PermissionDenied,
        "PreconditionFailed"
        | "ConditionalRequestConflict"
        | "ConflictException"
        | "ResourceInUse" => ErrorKind::Precondition,
        "BucketAlreadyExists" | "BucketAlreadyOwnedByYou" => ErrorKind::AlreadyExists,
        "ValidationException" if missing => ErrorKind::NotFound,
        "ValidationException"
            if lower.contains("already exist")
                || lower.contains("cannot create already existing") =>
        {
            ErrorKind::AlreadyExists
        }
        "ValidationException"
        | "InvalidParameterValue"
        | "InvalidParameterCombination"
        | "InvalidRequest"
        | "InvalidArgument"
        | "MalformedXML"
        | "InvalidBucketName"
        | "EntityTooLarge"
        | "EntityTooSmall" => ErrorKind::Invalid,
        "ResourceLimitExceeded" => ErrorKind::Invalid,
        "InternalFailure"
        | "InternalError"
        | "InternalServerError"
        | "ServiceUnavailable"
        | "ServiceUnavailableException" => ErrorKind::Transient,
        _ => match status {
            Some(404) => ErrorKind::NotFound,
            Some(403) => ErrorKind::PermissionDenied,
            Some(412) => ErrorKind::Precondition,
            Some(429) => ErrorKind::Throttled,
            Some(s) if s >= 500 => ErrorKind::Transient,
            _ => ErrorKind::Other,
        },
    }
}

/// Maps an SDK error of `operation` (an AWS operation name such as `CreateTrainingJob`).
pub(crate) fn aws_err<E>(operation: &str, err: SdkError<E, HttpResponse>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = err.code().unwrap_or("").to_string();
            let message = err.message().unwrap_or("").to_string();
            let kind = kind_of(&code, &message, Some(status));
            let code_shown = if code.is_empty() {
                format!("HTTP {status}")
            } else {
                code
            };
            let message = if message.trim_start().starts_with('<') {
                // An HTML error page (an emulator's unimplemented operation), not a message.
                "the service returned an error page instead of an AWS error".to_string()
            } else {
                message
            };
            let hint = match kind {
                ErrorKind::PermissionDenied => {
                    " (check the AWS credentials and that the role may call this operation)"
                }
                ErrorKind::Transient if status == 500 => {
                    " (an emulator answers 500 for operations it does not implement)"
                }
                _ => "",
            };
            let rid = err
                .meta()
                .extra("aws_request_id")
                .map(|r| format!(" [request id {r}]"))
                .unwrap_or_default();
            ProviderError::new(
                kind,
                PROVIDER,
                operation,
                format!("{code_shown}: {message}{hint}{rid}"),
            )
        }
        SdkError::TimeoutError(_) => ProviderError::new(
            ErrorKind::Timeout,
            PROVIDER,
            operation,
            format!("timed out: {}", DisplayErrorContext(&err)),
        ),
        SdkError::DispatchFailure(d) => {
            let kind = if d.is_timeout() {
                ErrorKind::Timeout
            } else {
                ErrorKind::Transient
            };
            ProviderError::new(
                kind,
                PROVIDER,
                operation,
                format!("could not reach AWS: {}", DisplayErrorContext(&err)),
            )
        }
        SdkError::ConstructionFailure(_) => {
            let text = DisplayErrorContext(&err).to_string();
            if text.to_ascii_lowercase().contains("credential") {
                ProviderError::new(
                    ErrorKind::PermissionDenied,
                    PROVIDER,
                    operation,
                    "no AWS credentials: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run with an IAM role",
                )
            } else {
                ProviderError::new(ErrorKind::Invalid, PROVIDER, operation, text)
            }
        }
        _ => ProviderError::new(
            ErrorKind::Transient,
            PROVIDER,
            operation,
            DisplayErrorContext(&err).to_string(),
        ),
    }
}

/// Whether an SDK error says the thing does not exist.
pub(crate) fn is_not_found<E>(err: &SdkError<E, HttpResponse>) -> bool
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            kind_of(
                err.code().unwrap_or(""),
                err.message().unwrap_or(""),
                Some(status),
            ) == ErrorKind::NotFound
        }
        _ => false,
    }
}

/// A provider error of this provider.
pub(crate) fn provider_err(
    kind: ErrorKind,
    operation: &str,
    message: impl Into<String>,
) -> ProviderError {
    ProviderError::new(kind, PROVIDER, operation, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_kinds() {
        let cases = [
            ("ThrottlingException", "Rate exceeded", ErrorKind::Throttled),
            ("ResourceNotFound", "x", ErrorKind::NotFound),
            (
                "ValidationException",
                "Could not find endpoint 'e'.",
                ErrorKind::NotFound,
            ),
            (
                "ValidationException",
                "ModelPackageGroup g does not exist.",
                ErrorKind::NotFound,
            ),
            (
                "ValidationException",
                "Cannot create already existing endpoint",
                ErrorKind::AlreadyExists,
            ),
            (
                "ValidationException",
                "1 validation error detected",
                ErrorKind::Invalid,
            ),
            (
                "AccessDeniedException",
                "not authorized",
                ErrorKind::PermissionDenied,
            ),
            ("AccessDenied", "Access Denied", ErrorKind::PermissionDenied),
            (
                "PreconditionFailed",
                "At least one of the pre-conditions",
                ErrorKind::Precondition,
            ),
            ("SlowDown", "", ErrorKind::Throttled),
        ];
        for (code, msg, kind) in cases {
            assert_eq!(kind_of(code, msg, Some(400)), kind, "{code}: {msg}");
        }
        assert_eq!(kind_of("", "", Some(503)), ErrorKind::Transient);
        assert_eq!(kind_of("", "", Some(404)), ErrorKind::NotFound);
        assert!(
            provider_err(kind_of("ThrottlingException", "", Some(400)), "x", "y").is_retryable()
        );
        assert!(
            !provider_err(kind_of("ValidationException", "bad", Some(400)), "x", "y")
                .is_retryable()
        );
    }
}
