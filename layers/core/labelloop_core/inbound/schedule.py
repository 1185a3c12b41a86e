"""A Scheduled Event (EventBridge Scheduler or rule): the scheduled functions' trigger."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from labelloop_core.errors import InvalidEvent
from labelloop_core.inbound import require_valid


@dataclass(frozen=True)
class ScheduleTick:
    """A Scheduled Event: its `time` names the schedule window (verbatim) and is the window's start."""

    window: str
    time: datetime
    event_id: str | None = None

    def log_keys(self) -> dict[str, Any]:
        return {"window": self.window}


def schedule_tick(event: Mapping[str, Any], context: Any = None) -> ScheduleTick:
    require_valid("scheduled-event", event)
    text = str(event["time"])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise InvalidEvent(f"scheduled event time {text!r} is not ISO-8601: {error}") from None
    event_id = event.get("id")
    return ScheduleTick(
        text, moment if moment.tzinfo else moment.replace(tzinfo=UTC), event_id and str(event_id)
    )
