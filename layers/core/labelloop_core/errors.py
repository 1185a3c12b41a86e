"""Error types shared by the domain code, the adapters and the handlers.

Handlers map them to platform behaviour: `InvalidEvent` is a bad input (logged, then the platform
retries and finally parks it in the dead-letter queue), `TransientError` asks for a retry.
"""

from __future__ import annotations


class LabelloopError(Exception):
    """Base class of every error raised on purpose by labelloop."""


class InvalidEvent(LabelloopError):
    """The event or document we were given is malformed; retrying will not help."""


class TransientError(LabelloopError):
    """A temporary condition (throttling, model not ready yet): retry later."""


class Throttled(TransientError):
    """AWS asked the caller to slow down (throttling, provisioned throughput exceeded): wait and try
    again. Not a failure of the work item: a queue consumer puts it back with a delay instead of
    counting it as a failed attempt."""


class ModelNotReady(TransientError):
    """The Custom Labels model is not RUNNING (stopped, starting or stopping): the work waits for it,
    and that is not a failed attempt either."""


class CodedError(LabelloopError):
    """An error with a stable machine-readable `code` and a human-readable `message`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class InvalidImage(CodedError):
    """The object is not an image Rekognition Custom Labels accepts (see `imageinfo`)."""

    def __init__(self, code: str, message: str, needed_bytes: int | None = None) -> None:
        super().__init__(code, message)
        # Only set for HEADER_TOO_LONG: how many leading bytes of the object the parser needs.
        self.needed_bytes = needed_bytes


class InvalidReview(CodedError):
    """An A2I output.json that cannot become a manifest line (see `a2i`)."""


class InvalidSummary(LabelloopError):
    """A Rekognition evaluation summary without the metrics we compare models on."""


class ObjectMissing(LabelloopError):
    """The object (or that version of it) does not exist, e.g. it was deleted after upload."""


class AccessDenied(LabelloopError):
    """AWS refused a call for lack of permission: a deployment problem, not bad data."""
