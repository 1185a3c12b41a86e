"""Shared Powertools Logger, Tracer and Metrics for handlers and services.

One instance of each per container and service. Service name, log level and metrics namespace come
from the standard Powertools variables (POWERTOOLS_SERVICE_NAME, POWERTOOLS_LOG_LEVEL,
POWERTOOLS_METRICS_NAMESPACE) set in template.yaml; keying the instances by service keeps log lines
right where several functions share one process (the local stack). Handlers use the EventBridge
event id as the correlation id, so every log line of one event can be found from the event (or its
DLQ message).

The Tracer is created at the first invocation, not at import: the X-Ray SDK builds botocore
sessions when it loads (about 200 ms), which would otherwise double a function's cold import.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger, Metrics, Tracer

DEFAULT_SERVICE = "labelloop"
DEFAULT_NAMESPACE = "Labelloop"


Handler = TypeVar("Handler", bound=Callable[..., Any])


def _service() -> str:
    return os.environ.get("POWERTOOLS_SERVICE_NAME") or DEFAULT_SERVICE


def logger() -> Logger:
    return _logger(_service())


def tracer() -> Tracer:
    return _tracer(_service())


def metrics() -> Metrics:
    return _metrics(_service(), os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE)


@cache
def _logger(service: str) -> Logger:
    from aws_lambda_powertools import Logger

    return Logger(service=service)


@cache
def _tracer(service: str) -> Tracer:
    from aws_lambda_powertools import Tracer

    return Tracer(service=service)


@cache
def _metrics(service: str, namespace: str) -> Metrics:
    from aws_lambda_powertools import Metrics

    return Metrics(service=service, namespace=namespace)


def capture_lambda_handler(handler: Handler) -> Handler:
    """`Tracer.capture_lambda_handler`, with the Tracer (and the X-Ray SDK) built at the first call."""
    traced: Callable[..., Any] | None = None

    @functools.wraps(handler)
    def wrapper(event: Any, context: Any) -> Any:
        nonlocal traced
        if traced is None:
            traced = tracer().capture_lambda_handler(handler)
        return traced(event, context)

    return wrapper  # type: ignore[return-value]


def count(name: str, value: int = 1) -> None:
    """Add a Count metric flushed by the handler's `@metrics.log_metrics`."""
    from aws_lambda_powertools.metrics import MetricUnit

    metrics().add_metric(name=name, unit=MetricUnit.Count, value=value)


def measure(name: str, value: float) -> None:
    """Add a metric value (a gauge or an amount, e.g. inference-unit hours) flushed like `count`."""
    from aws_lambda_powertools.metrics import MetricUnit

    metrics().add_metric(name=name, unit=MetricUnit.Count, value=value)
