"""Fault injection: make the next N calls of an operation fail with the service's real error shape.

Used by tests and the demo to prove that throttling, 5xx answers and a stopped model end in
retries or a dead-letter queue, never in lost work. Over HTTP:
`POST /_labelloop/faults {"service", "operation", "error", "count"}`, `GET` lists, `DELETE` clears.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

from labelloop_local.emulators.common import AwsError

SERVICES = ("rekognition", "a2i", "sagemaker", "lambda")

# HTTP status of each injectable error, per service, as the real endpoints answer them.
ERROR_STATUS: dict[str, dict[str, int]] = {
    "rekognition": {
        "ThrottlingException": 400,
        "ProvisionedThroughputExceededException": 400,
        "InternalServerError": 500,
        "ServiceUnavailable": 503,
        "ResourceNotReadyException": 400,
        "AccessDeniedException": 400,
    },
    "a2i": {
        "ThrottlingException": 429,
        "InternalServerException": 500,
        "InternalServerError": 500,
        "ServiceUnavailable": 503,
        "ServiceQuotaExceededException": 402,
        "ValidationException": 400,
    },
    "sagemaker": {
        "ThrottlingException": 400,
        "InternalFailure": 500,
        "InternalServerError": 500,
        "ServiceUnavailable": 503,
        "ResourceLimitExceeded": 400,
    },
    "lambda": {
        "TooManyRequestsException": 429,
        "ServiceException": 500,
        "ResourceNotFoundException": 404,
    },
}


class FaultSpecError(ValueError):
    """A fault request that names an unknown service, error or count."""


@dataclass
class Fault:
    service: str
    operation: str  # "*" matches every operation of the service
    error: str
    count: int
    status: int

    def matches(self, service: str, operation: str) -> bool:
        return self.service == service and self.operation in ("*", operation) and self.count > 0


class FaultInjector:
    """Thread-safe queue of pending faults; each matching call consumes one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, service: str, operation: str, error: str, count: int = 1) -> Fault:
        fault = _validated(service, operation, error, count)
        with self._lock:
            self._faults.append(fault)
        return fault

    def add_from_request(self, body: Any) -> Fault:
        if not isinstance(body, dict):
            raise FaultSpecError("body must be a JSON object {service, operation, error, count}")
        return self.add(
            str(body.get("service", "")),
            str(body.get("operation", "*")),
            str(body.get("error", "")),
            body.get("count", 1),
        )

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(fault) for fault in self._faults if fault.count > 0]

    def check(self, service: str, operation: str) -> None:
        """Raise the first pending fault for this call, if any."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(service, operation):
                    fault.count -= 1
                    error = AwsError(
                        fault.error, f"Injected fault: {fault.error} for {operation}", fault.status
                    )
                    self._faults = [item for item in self._faults if item.count > 0]
                    raise error


def _validated(service: str, operation: str, error: str, count: Any) -> Fault:
    if service not in ERROR_STATUS:
        raise FaultSpecError(f"service must be one of {', '.join(SERVICES)}, got {service!r}")
    statuses = ERROR_STATUS[service]
    if error not in statuses:
        raise FaultSpecError(
            f"error for {service} must be one of {', '.join(sorted(statuses))}, got {error!r}"
        )
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise FaultSpecError(f"count must be a positive integer, got {count!r}")
    if not operation:
        raise FaultSpecError("operation must be an operation name such as DetectCustomLabels, or '*'")
    return Fault(service, operation, error, count, statuses[error])
