"""StartReview's triggers: a labelloop `ReviewRequested` event, or its schedule."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labelloop_core.errors import InvalidEvent
from labelloop_core.inbound import replay_name, require_valid
from labelloop_core.inbound.schedule import ScheduleTick, schedule_tick

if TYPE_CHECKING:  # imported by the parser when it parses one
    from labelloop_core.review_request import ReviewRequest


@dataclass(frozen=True)
class ReviewRequested:
    request: ReviewRequest
    replay_name: str | None = None

    def log_keys(self) -> dict[str, Any]:
        return {"image_id": self.request.image.image_id, "replay_name": self.replay_name}


def review_requested(event: Mapping[str, Any], context: Any = None) -> ReviewRequested:
    require_valid("app-event", event)
    if event.get("detail-type") != "ReviewRequested":
        raise InvalidEvent(f"expected detail-type 'ReviewRequested', got {event.get('detail-type')!r}")
    require_valid("review-requested", event["detail"], what="ReviewRequested detail")
    from labelloop_core.review_request import ReviewRequest

    return ReviewRequested(ReviewRequest.from_detail(event["detail"]), replay_name(event))


def start_review_event(event: Mapping[str, Any], context: Any = None) -> ReviewRequested | ScheduleTick:
    """StartReview's two triggers: a ReviewRequested, or its schedule (open reviews waiting for budget)."""
    if isinstance(event, Mapping) and event.get("detail-type") == "Scheduled Event":
        return schedule_tick(event, context)
    return review_requested(event, context)
