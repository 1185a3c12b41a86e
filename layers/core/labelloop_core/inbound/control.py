"""ModelController's triggers: its schedule, or a labelloop `ModelPromoted` event."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from labelloop_core.errors import InvalidEvent
from labelloop_core.inbound import require_valid
from labelloop_core.inbound.schedule import schedule_tick


@dataclass(frozen=True)
class ControlTick:
    """Why the ModelController runs: its schedule, or on demand (a promotion just switched models)."""

    trigger: str  # "schedule" | "ModelPromoted"
    event_id: str | None = None

    def log_keys(self) -> dict[str, Any]:
        return {"trigger": self.trigger}


def control_tick(event: Mapping[str, Any], context: Any = None) -> ControlTick:
    """A Scheduled Event, or a labelloop `ModelPromoted` event from the app bus."""
    event_id = str(event.get("id")) if isinstance(event, Mapping) and event.get("id") else None
    if isinstance(event, Mapping) and event.get("source") == "labelloop":
        require_valid("app-event", event)
        if event.get("detail-type") != "ModelPromoted":
            raise InvalidEvent(f"expected detail-type 'ModelPromoted', got {event.get('detail-type')!r}")
        require_valid("model-promoted", event["detail"], what="ModelPromoted detail")
        return ControlTick("ModelPromoted", event_id)
    schedule_tick(event)
    return ControlTick("schedule", event_id)
