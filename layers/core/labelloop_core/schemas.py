"""JSON Schema validation of every event and document labelloop produces or consumes.

The schemas live in the repo's `schemas/` directory (draft 2020-12, `<name>.v1.json`) and ship
inside this package as `labelloop_core/schemas/` (a symlink in the repo, real copies in the layer).
They use only keywords that fastjsonschema's draft-07 engine evaluates exactly like a 2020-12
validator, so one fast compiled validator per schema serves both producers and consumers.
Validators are compiled on first use and cached for the life of the container.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labelloop_core.errors import InvalidEvent

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
SCHEMA_VERSION = "v1"

_lock = threading.Lock()
_validators: dict[str, Callable[[Any], Any]] = {}


class SchemaViolation(InvalidEvent):
    """`doc` does not match schema `name`; `message` says where and why (`data.image.key must be string`)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


def schema_names() -> list[str]:
    """Every schema name shipped with the package, e.g. `prediction`, `review-requested`."""
    suffix = f".{SCHEMA_VERSION}.json"
    return sorted(path.name.removesuffix(suffix) for path in SCHEMA_DIR.glob(f"*{suffix}"))


def schema_path(name: str) -> Path:
    """Path of schema `name` (`schemas/<name>.v1.json`); ValueError for an unknown name."""
    path = SCHEMA_DIR / f"{name}.{SCHEMA_VERSION}.json"
    if "/" in name or "\\" in name or not path.is_file():
        raise ValueError(f"unknown schema {name!r}; known schemas: {', '.join(schema_names())}")
    return path


def load_schema(name: str) -> dict[str, Any]:
    """The parsed schema document `name`."""
    document: dict[str, Any] = json.loads(schema_path(name).read_text(encoding="utf-8"))
    return document


def validate(name: str, doc: Any) -> None:
    """Raise SchemaViolation unless `doc` matches schema `name`."""
    import fastjsonschema

    try:
        _validator(name)(doc)
    except fastjsonschema.JsonSchemaValueException as error:
        raise SchemaViolation(name, error.message) from None


def forget_validators() -> None:
    """Drop the compiled validators (see `labelloop_core.state.reset`)."""
    with _lock:
        _validators.clear()


def _validator(name: str) -> Callable[[Any], Any]:
    cached = _validators.get(name)
    if cached is not None:
        return cached
    with _lock:  # compile each schema once even when threads race on a cold container
        if name not in _validators:
            _validators[name] = _compile(load_schema(name))
        return _validators[name]


def _compile(schema: dict[str, Any]) -> Callable[[Any], Any]:
    import fastjsonschema

    # Formats are annotations in 2020-12; the schemas use `pattern` where a format matters.
    return fastjsonschema.compile(schema, use_formats=False)
