"""Typed configuration: each function declares the environment variables it needs as a frozen dataclass.

A settings class lists its fields with `setting(VARIABLE, parse, default)`; `load_settings(cls)` reads
them from the environment once per container (cached per class until `labelloop_core.state.reset()`),
so a bad deployment fails on its first invocation with a `ConfigError` that names the variable,
instead of misbehaving later. Defaults are written once, here or in the declaring class, and a test
checks them against template.yaml's parameter defaults and each function's `Environment`.

Cross-field checks go in the class's `check()` (called after parsing), raising `ConfigError`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from labelloop_core.errors import LabelloopError

S = TypeVar("S")
T = TypeVar("T")

MAX_LABELS = 250  # Rekognition Custom Labels limit per project
MAX_MODEL_CACHE_SECONDS = 60  # the active model ARN is cached at most 60 s, so promotions spread fast
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}
_ATTRIBUTE_PATTERN = re.compile(r"^[A-Za-z0-9_.]([A-Za-z0-9_.-]{0,126})$")
_REQUIRED = dataclasses.MISSING


class ConfigError(LabelloopError):
    """A required environment variable is missing or has an invalid value."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


def setting(variable: str, parse: Callable[[str], Any], default: Any = _REQUIRED) -> Any:
    """A settings field read from `variable`; without `default` the variable is required."""
    metadata = {"env": variable, "parse": parse}
    if isinstance(default, dict | list):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def variables(settings_type: type) -> dict[str, str]:
    """Environment variable by field name of a settings class (what the function declares)."""
    return {field.name: field.metadata["env"] for field in dataclasses.fields(settings_type)}


def defaults(settings_type: type) -> dict[str, Any]:
    """Default value by environment variable, for the variables that have one."""
    found: dict[str, Any] = {}
    for field in dataclasses.fields(settings_type):
        if field.default is not _REQUIRED:
            found[field.metadata["env"]] = field.default
        elif field.default_factory is not _REQUIRED:
            found[field.metadata["env"]] = field.default_factory()
    return found


def settings_from_env(settings_type: type[S], env: Mapping[str, str]) -> S:
    """Parse `settings_type` from `env`; ConfigError names the first variable at fault."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(settings_type):  # type: ignore[arg-type]
        variable = field.metadata["env"]
        raw = env.get(variable, "").strip()
        if not raw:
            if field.default is _REQUIRED and field.default_factory is _REQUIRED:
                raise ConfigError(variable, "is required but not set")
            continue
        try:
            values[field.name] = field.metadata["parse"](raw)
        except ValueError as error:
            raise ConfigError(variable, f"{error} (got {raw!r})") from None
    loaded = settings_type(**values)
    check = getattr(loaded, "check", None)
    if check is not None:
        check()
    return loaded


_lock = threading.Lock()
_loaded: dict[type, Any] = {}


def load_settings(settings_type: type[S]) -> S:
    """`settings_type` from os.environ, parsed once per container (see `labelloop_core.state.reset`)."""
    cached = _loaded.get(settings_type)
    if cached is not None:
        return cached
    with _lock:
        if settings_type not in _loaded:
            _loaded[settings_type] = settings_from_env(settings_type, os.environ)
        return _loaded[settings_type]


def forget_loaded_settings() -> None:
    with _lock:
        _loaded.clear()


# --- parsers: ValueError with a message that reads after the variable name ------------------------


def text(raw: str) -> str:
    return raw


def arn(raw: str) -> str:
    if not raw.startswith("arn:"):
        raise ValueError("must be an ARN (arn:...)")
    return raw


def number(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("must be a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("must be a finite number")
    return value


def bounded(low: float, high: float, what: str = "") -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = number(raw)
        if not low <= value <= high:
            raise ValueError(f"must be {what or 'a number'} between {low:g} and {high:g}")
        return value

    return parse


percentage = bounded(0, 100)
rate = bounded(0, 1)


def integer(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError("must be an integer") from None


def integer_between(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = integer(raw)
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return raw

    return parse


def positive_int(raw: str) -> int:
    value = integer(raw)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def optional_positive_int(raw: str) -> int | None:
    """A positive integer, or None for an empty value (an optional CloudFormation parameter)."""
    return positive_int(raw) if raw.strip() else None


def boolean(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("must be true or false")


def labels(raw: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in raw.split(","))
    if any(not name for name in names):
        raise ValueError("must be comma-separated non-empty label names")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"has duplicate labels {duplicates}")
    if len(names) > MAX_LABELS:
        raise ValueError(f"has {len(names)} labels, Rekognition Custom Labels allows {MAX_LABELS}")
    return names


def label_attribute(raw: str) -> str:
    if not _ATTRIBUTE_PATTERN.match(raw) or raw.endswith("-metadata") or raw == "source-ref":
        raise ValueError(
            "must be a manifest attribute name ([A-Za-z0-9_.-], not 'source-ref' or '*-metadata')"
        )
    return raw


def label_thresholds(raw: str) -> dict[str, float]:
    """A JSON object of label → review threshold (0-100); label names are checked against LABELS later."""
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"must be a JSON object ({error.msg})") from None
    if not isinstance(document, dict):
        raise ValueError('must be a JSON object such as {"label": 70}')
    thresholds: dict[str, float] = {}
    for label, value in document.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
            raise ValueError(f"threshold for {label!r} must be a number between 0 and 100")
        thresholds[label] = float(value)
    return thresholds


# --- the variables several functions share: one declaration each ---------------------------------


def bucket_name() -> Any:
    return setting("BUCKET_NAME", text)


def ledger_table() -> Any:
    return setting("LEDGER_TABLE", text)


def event_bus_name() -> Any:
    return setting("EVENT_BUS_NAME", text)


def project_arn() -> Any:
    return setting("PROJECT_ARN", arn)


def active_model_parameter() -> Any:
    return setting("ACTIVE_MODEL_PARAMETER", text)


def previous_model_parameter() -> Any:
    return setting("PREVIOUS_MODEL_PARAMETER", text)


def label_names() -> Any:
    return setting("LABELS", labels)


def manifest_attribute() -> Any:
    return setting("LABEL_ATTRIBUTE", label_attribute)


def flow_definition_arn() -> Any:
    return setting("FLOW_DEFINITION_ARN", arn)


def task_table() -> Any:
    return setting("TASK_TABLE", text)


REVIEW_BACKENDS = ("builtin", "a2i")


def detect_queue_url() -> Any:
    return setting("DETECT_QUEUE_URL", text)


def min_inference_units() -> Any:
    return setting("MIN_INFERENCE_UNITS", positive_int, 1)


def max_inference_units() -> Any:
    return setting("MAX_INFERENCE_UNITS", optional_positive_int, None)


def check_inference_units(minimum: int, maximum: int | None) -> None:
    if maximum is not None and maximum < minimum:
        raise ConfigError(
            "MAX_INFERENCE_UNITS",
            f"{maximum} is below MIN_INFERENCE_UNITS {minimum}: auto-scaling needs max ≥ min",
        )
