"""Edge validation: every event a function receives is checked against its schema and parsed into a
typed request before any work starts. A bad event raises `InvalidEvent` (logged and counted by the
entry point, then retried by the platform and kept in the function's dead-letter queue).

One module per kind of trigger, so a function imports (and builds the request types of) only the
parsers it uses: `uploads` (Detect), `review_requested` (StartReview), `review_finished`
(AppendLabels), `schedule` (the scheduled functions), `control` (ModelController), `http_api` (Portal,
ReviewApi), `custom_resource` (A2ISetup).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labelloop_core.errors import InvalidEvent
from labelloop_core.schemas import SchemaViolation, validate


def require_valid(schema: str, document: Any, what: str = "event") -> None:
    """Validate `document` against `schema`; InvalidEvent names the schema and the problem."""
    try:
        validate(schema, document)
    except SchemaViolation as violation:
        raise InvalidEvent(f"{what} does not match schema {schema}: {violation.message}") from None


def replay_name(event: Mapping[str, Any]) -> str | None:
    """The EventBridge archive replay that sent `event`, if any."""
    name = event.get("replay-name")
    return str(name) if name else None
