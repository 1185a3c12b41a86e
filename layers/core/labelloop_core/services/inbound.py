"""Entry checks shared by the handlers: an event that does not match its schema is refused loudly.

The handler raises InvalidEvent; Lambda's async retries run it twice more and the function's
dead-letter queue then keeps the event, so a bad event is never dropped silently.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from labelloop_core import observability
from labelloop_core.errors import InvalidEvent
from labelloop_core.schemas import SchemaViolation, validate


def require_valid(schema: str, document: Any, what: str = "event") -> None:
    """Validate `document` against `schema`; InvalidEvent names the schema and the problem."""
    try:
        validate(schema, document)
    except SchemaViolation as violation:
        raise InvalidEvent(f"{what} does not match schema {schema}: {violation.message}") from None


def require_detail_type(event: dict[str, Any], expected: str) -> None:
    if event.get("detail-type") != expected:
        raise InvalidEvent(f"expected detail-type {expected!r}, got {event.get('detail-type')!r}")


@contextmanager
def refusing_invalid(event: Any) -> Iterator[None]:
    """Log and count every InvalidEvent raised while handling `event`, then let it propagate."""
    try:
        yield
    except InvalidEvent as error:
        event_id = event.get("id") if isinstance(event, dict) else None
        observability.logger().error(
            "invalid event refused", extra={"reason": str(error), "event_id": event_id}
        )
        observability.count("InvalidEvents")
        raise
