"""Shared Powertools Logger, Tracer and Metrics for handlers and services.

One instance of each per container. Service name, log level and metrics namespace come from the
standard Powertools variables (POWERTOOLS_SERVICE_NAME, POWERTOOLS_LOG_LEVEL,
POWERTOOLS_METRICS_NAMESPACE) set in template.yaml. Handlers use the EventBridge event id as the
correlation id, so every log line of one event can be found from the event (or its DLQ message).
"""

from __future__ import annotations

import os
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger, Metrics, Tracer

DEFAULT_SERVICE = "labelloop"
DEFAULT_NAMESPACE = "Labelloop"
# EventBridge envelope: the event id is stable across retries and keeps its value in replays.
CORRELATION_ID_PATH = "id"


@cache
def logger() -> Logger:
    from aws_lambda_powertools import Logger

    return Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or DEFAULT_SERVICE)


@cache
def tracer() -> Tracer:
    from aws_lambda_powertools import Tracer

    return Tracer(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or DEFAULT_SERVICE)


@cache
def metrics() -> Metrics:
    from aws_lambda_powertools import Metrics

    return Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE)


def count(name: str, value: int = 1) -> None:
    """Add a Count metric flushed by the handler's `@metrics.log_metrics`."""
    from aws_lambda_powertools.metrics import MetricUnit

    metrics().add_metric(name=name, unit=MetricUnit.Count, value=value)
