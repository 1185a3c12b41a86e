"""Environment configuration, read and validated once per container.

`load_settings()` parses every variable listed in docs/CONTRACTS.md, so a bad deployment fails on
the first invocation with a `ConfigError` naming the variable instead of misbehaving later.
Variables that only some functions receive are optional here; a function asks for what it needs
with `settings.require("FLOW_DEFINITION_ARN")`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any, TypeVar

from labelloop_core.errors import LabelloopError

T = TypeVar("T")

MAX_LABELS = 250  # Rekognition Custom Labels limit per project
MAX_MODEL_CACHE_SECONDS = 60  # DESIGN §2: the active model ARN is cached at most 60 s
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}
_ATTRIBUTE_PATTERN = re.compile(r"^[A-Za-z0-9_.]([A-Za-z0-9_.-]{0,126})$")


class ConfigError(LabelloopError):
    """A required environment variable is missing or has an invalid value."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


@dataclass(frozen=True)
class Settings:
    """Typed view of the function environment. Field metadata `env` names the variable."""

    bucket_name: str = field(metadata={"env": "BUCKET_NAME"})
    ledger_table: str = field(metadata={"env": "LEDGER_TABLE"})
    event_bus_name: str = field(metadata={"env": "EVENT_BUS_NAME"})
    active_model_parameter: str = field(metadata={"env": "ACTIVE_MODEL_PARAMETER"})
    previous_model_parameter: str = field(metadata={"env": "PREVIOUS_MODEL_PARAMETER"})
    project_arn: str = field(metadata={"env": "PROJECT_ARN"})
    labels: tuple[str, ...] = field(metadata={"env": "LABELS"})
    label_attribute: str = field(metadata={"env": "LABEL_ATTRIBUTE"})
    service_name: str | None = field(default=None, metadata={"env": "POWERTOOLS_SERVICE_NAME"})
    metrics_namespace: str | None = field(default=None, metadata={"env": "POWERTOOLS_METRICS_NAMESPACE"})
    # Detect
    review_threshold: float = field(default=60.0, metadata={"env": "REVIEW_THRESHOLD"})
    label_thresholds: Mapping[str, float] = field(default_factory=dict, metadata={"env": "LABEL_THRESHOLDS"})
    review_when_empty: bool = field(default=True, metadata={"env": "REVIEW_WHEN_EMPTY"})
    audit_rate: float = field(default=0.0, metadata={"env": "AUDIT_RATE"})
    min_confidence: float = field(default=1.0, metadata={"env": "MIN_CONFIDENCE"})
    model_cache_seconds: int = field(default=60, metadata={"env": "MODEL_CACHE_SECONDS"})
    # StartReview / AppendLabels
    flow_definition_arn: str | None = field(default=None, metadata={"env": "FLOW_DEFINITION_ARN"})
    # Retrain
    min_new_labels: int | None = field(default=None, metadata={"env": "MIN_NEW_LABELS"})
    base_manifest_key: str | None = field(default=None, metadata={"env": "BASE_MANIFEST_KEY"})
    test_manifest_key: str | None = field(default=None, metadata={"env": "TEST_MANIFEST_KEY"})
    # Promote
    promotion_margin: float | None = field(default=None, metadata={"env": "PROMOTION_MARGIN"})
    min_inference_units: int | None = field(default=None, metadata={"env": "MIN_INFERENCE_UNITS"})

    def require(self, variable: str) -> Any:
        """Value of an optional variable this function cannot work without, e.g. "FLOW_DEFINITION_ARN"."""
        for item in fields(self):
            if item.metadata.get("env") == variable:
                value = getattr(self, item.name)
                if value is None:
                    raise ConfigError(variable, "is required by this function but not set")
                return value
        raise ConfigError(variable, "is not a labelloop setting")

    @property
    def flow_name(self) -> str:
        """Flow definition name (last ARN segment), used in Ground Truth job names."""
        arn: str = self.require("FLOW_DEFINITION_ARN")
        return arn.rsplit("/", 1)[-1]


@cache
def load_settings() -> Settings:
    """Settings from os.environ, parsed once per container (tests call `load_settings.cache_clear()`)."""
    return settings_from_env(os.environ)


def settings_from_env(env: Mapping[str, str]) -> Settings:
    reader = _Reader(env)
    labels = reader.required("LABELS", _parse_labels)
    review_threshold = reader.optional("REVIEW_THRESHOLD", _percentage, 60.0)
    no_overrides: dict[str, float] = {}
    label_thresholds = reader.optional(
        "LABEL_THRESHOLDS", lambda raw: _parse_thresholds(raw, labels), no_overrides
    )
    min_confidence = reader.optional("MIN_CONFIDENCE", _percentage, 1.0)
    _check_min_confidence(min_confidence, review_threshold, label_thresholds)
    base_manifest_key = reader.optional("BASE_MANIFEST_KEY", _non_empty, None)
    test_manifest_key = reader.optional("TEST_MANIFEST_KEY", _non_empty, None)
    _check_test_manifest(base_manifest_key, test_manifest_key)
    return Settings(
        bucket_name=reader.required("BUCKET_NAME", _non_empty),
        ledger_table=reader.required("LEDGER_TABLE", _non_empty),
        event_bus_name=reader.required("EVENT_BUS_NAME", _non_empty),
        active_model_parameter=reader.required("ACTIVE_MODEL_PARAMETER", _non_empty),
        previous_model_parameter=reader.required("PREVIOUS_MODEL_PARAMETER", _non_empty),
        project_arn=reader.required("PROJECT_ARN", _arn),
        labels=labels,
        label_attribute=reader.required("LABEL_ATTRIBUTE", _label_attribute),
        service_name=reader.optional("POWERTOOLS_SERVICE_NAME", _non_empty, None),
        metrics_namespace=reader.optional("POWERTOOLS_METRICS_NAMESPACE", _non_empty, None),
        review_threshold=review_threshold,
        label_thresholds=label_thresholds,
        review_when_empty=reader.optional("REVIEW_WHEN_EMPTY", _boolean, True),
        audit_rate=reader.optional("AUDIT_RATE", _rate, 0.0),
        min_confidence=min_confidence,
        model_cache_seconds=reader.optional("MODEL_CACHE_SECONDS", _cache_seconds, 60),
        flow_definition_arn=reader.optional("FLOW_DEFINITION_ARN", _arn, None),
        min_new_labels=reader.optional("MIN_NEW_LABELS", _positive_int, None),
        base_manifest_key=base_manifest_key,
        test_manifest_key=test_manifest_key,
        promotion_margin=reader.optional("PROMOTION_MARGIN", _margin, None),
        min_inference_units=reader.optional("MIN_INFERENCE_UNITS", _positive_int, None),
    )


class _Reader:
    """Reads one variable at a time and wraps parse failures in a ConfigError naming it."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def required(self, variable: str, parse: Callable[[str], T]) -> T:
        raw = self._env.get(variable, "").strip()
        if not raw:
            raise ConfigError(variable, "is required but not set")
        return self._parse(variable, raw, parse)

    def optional(self, variable: str, parse: Callable[[str], T], default: T) -> T:
        raw = self._env.get(variable, "").strip()
        return self._parse(variable, raw, parse) if raw else default

    @staticmethod
    def _parse(variable: str, raw: str, parse: Callable[[str], T]) -> T:
        try:
            return parse(raw)
        except ValueError as error:
            raise ConfigError(variable, f"{error} (got {raw!r})") from None


def _non_empty(raw: str) -> str:
    return raw


def _arn(raw: str) -> str:
    if not raw.startswith("arn:"):
        raise ValueError("must be an ARN (arn:...)")
    return raw


def _number(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("must be a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("must be a finite number")
    return value


def _percentage(raw: str) -> float:
    value = _number(raw)
    if not 0.0 <= value <= 100.0:
        raise ValueError("must be between 0 and 100")
    return value


def _rate(raw: str) -> float:
    value = _number(raw)
    if not 0.0 <= value <= 1.0:
        raise ValueError("must be between 0 and 1")
    return value


def _margin(raw: str) -> float:
    value = _number(raw)
    if not 0.0 <= value < 1.0:
        raise ValueError("must be an F1 difference between 0 and 1")
    return value


def _integer(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError("must be an integer") from None


def _positive_int(raw: str) -> int:
    value = _integer(raw)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _cache_seconds(raw: str) -> int:
    value = _integer(raw)
    if not 0 <= value <= MAX_MODEL_CACHE_SECONDS:
        raise ValueError(f"must be between 0 and {MAX_MODEL_CACHE_SECONDS}")
    return value


def _boolean(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("must be true or false")


def _parse_labels(raw: str) -> tuple[str, ...]:
    labels = tuple(part.strip() for part in raw.split(","))
    if any(not label for label in labels):
        raise ValueError("must be comma-separated non-empty label names")
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(f"has duplicate labels {duplicates}")
    if len(labels) > MAX_LABELS:
        raise ValueError(f"has {len(labels)} labels, Rekognition Custom Labels allows {MAX_LABELS}")
    return labels


def _label_attribute(raw: str) -> str:
    if not _ATTRIBUTE_PATTERN.match(raw) or raw.endswith("-metadata") or raw == "source-ref":
        raise ValueError(
            "must be a manifest attribute name ([A-Za-z0-9_.-], not 'source-ref' or '*-metadata')"
        )
    return raw


def _parse_thresholds(raw: str, labels: tuple[str, ...]) -> dict[str, float]:
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"must be a JSON object ({error.msg})") from None
    if not isinstance(document, dict):
        raise ValueError('must be a JSON object such as {"label": 70}')
    unknown = sorted(set(document) - set(labels))
    if unknown:
        raise ValueError(f"names labels {unknown} that are not in LABELS")
    thresholds: dict[str, float] = {}
    for label, value in document.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
            raise ValueError(f"threshold for {label!r} must be a number between 0 and 100")
        thresholds[label] = float(value)
    return thresholds


def _check_min_confidence(min_confidence: float, default: float, per_label: Mapping[str, float]) -> None:
    """Detections under MinConfidence are never returned, so the policy could not flag them."""
    lowest = min([default, *per_label.values()])
    if min_confidence > lowest:
        raise ConfigError(
            "MIN_CONFIDENCE",
            f"{min_confidence:g} exceeds the lowest review threshold {lowest:g}: "
            "low-confidence detections would be dropped before the review policy sees them",
        )


def _check_test_manifest(base_key: str | None, test_key: str | None) -> None:
    """A model evaluated on its own training images would report a meaningless F1."""
    if test_key is not None and test_key == base_key:
        raise ConfigError(
            "TEST_MANIFEST_KEY",
            f"{test_key!r} is also BASE_MANIFEST_KEY: the test images must not be trained on",
        )
