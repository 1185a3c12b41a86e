"""AWS error codes, read in one place: adapters translate them into what a service can act on.

Services never look at botocore codes. An adapter catches the SDK error and either answers (missing,
already exists, condition failed), raises `TransientError` (the platform retries: throttling, 5xx,
a model that is starting), or raises a domain error from `labelloop_core.errors`.
"""

from __future__ import annotations

from typing import Any

from labelloop_core.errors import Throttled, TransientError

# Retrying later can succeed: throttling, capacity, the service's own hiccups (any service).
THROTTLING = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "SlowDown",
        "ServiceQuotaExceededException",
    }
)
SERVICE_FAULTS = frozenset(
    {
        "InternalServerError",
        "InternalServerException",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
        "TransactionConflict",
    }
)
# S3: the key or version does not exist (404; a 403 instead means the role lacks s3:ListBucket).
S3_MISSING = frozenset({"NoSuchKey", "NoSuchVersion", "404", "NotFound"})
S3_ACCESS_DENIED = frozenset({"AccessDenied", "403", "Forbidden"})
S3_PRECONDITION_FAILED = frozenset({"PreconditionFailed", "412"})
S3_CONDITIONAL_CONFLICT = "ConditionalRequestConflict"
S3_EMPTY_RANGE = "InvalidRange"  # any Range of a 0-byte object
CONDITION_FAILED = "ConditionalCheckFailedException"
TRANSACTION_CANCELLED = "TransactionCanceledException"
RESOURCE_IN_USE = "ResourceInUseException"
RESOURCE_NOT_FOUND = "ResourceNotFoundException"
CONFLICT = "ConflictException"
VALIDATION = "ValidationException"
PARAMETER_NOT_FOUND = "ParameterNotFound"
# Rekognition Custom Labels: the model version is not RUNNING (stopped, starting, stopping).
MODEL_NOT_READY = "ResourceNotReadyException"
# Rekognition refuses this image (retrying cannot help) / could not read it (an access problem).
IMAGE_REJECTIONS = {
    "ImageTooLargeException": "IMAGE_TOO_LARGE",
    "InvalidImageFormatException": "INVALID_IMAGE_FORMAT",
}
UNREADABLE_OBJECT = "InvalidS3ObjectException"
# Lambda: an event source mapping that is being created, updated, enabled or disabled.
MAPPING_BUSY = frozenset({"ResourceInUseException", "ResourceConflictException"})


def error_code(error: BaseException) -> str:
    """The AWS error code of an SDK error ("" for anything else)."""
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


def error_message(error: BaseException) -> str:
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return str(error)
    return str(response.get("Error", {}).get("Message", "")) or str(error)


def http_status(error: BaseException) -> int:
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return 0
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def is_sdk_error(error: BaseException) -> bool:
    """An error answered by an AWS service (botocore ClientError and its modelled subclasses)."""
    return isinstance(getattr(error, "response", None), dict)


def is_retryable(error: BaseException) -> bool:
    """Throttling or a service-side fault: the same request may succeed later."""
    code = error_code(error)
    return code in THROTTLING or code in SERVICE_FAULTS or http_status(error) >= 500


def is_throttling(error: BaseException) -> bool:
    return error_code(error) in THROTTLING


def retry_later(error: BaseException, message: str) -> TransientError:
    """The TransientError for a retryable SDK error: `Throttled` when AWS asked to slow down."""
    return Throttled(message) if is_throttling(error) else TransientError(message)


def cancellation_codes(error: BaseException) -> list[str] | None:
    """Per-action reason codes of a cancelled DynamoDB transaction; None for any other error."""
    if error_code(error) != TRANSACTION_CANCELLED:
        return None
    response: dict[str, Any] = getattr(error, "response", {})
    return [str(reason.get("Code", "None")) for reason in response.get("CancellationReasons") or []]
