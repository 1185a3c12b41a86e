"""Edge validation: every event a function receives is checked against its schema and parsed into a
typed request before any work starts. A bad event raises `InvalidEvent` (logged and counted by the
entry point, then retried by the platform and kept in the function's dead-letter queue).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from labelloop_core import naming
from labelloop_core.errors import InvalidEvent
from labelloop_core.naming import ImageRef
from labelloop_core.review_request import ReviewRequest
from labelloop_core.schemas import SchemaViolation, validate


def require_valid(schema: str, document: Any, what: str = "event") -> None:
    """Validate `document` against `schema`; InvalidEvent names the schema and the problem."""
    try:
        validate(schema, document)
    except SchemaViolation as violation:
        raise InvalidEvent(f"{what} does not match schema {schema}: {violation.message}") from None


def _replay_name(event: Mapping[str, Any]) -> str | None:
    name = event.get("replay-name")
    return str(name) if name else None


@dataclass(frozen=True)
class ObjectCreated:
    """S3 `Object Created` (EventBridge) for one image version."""

    image: ImageRef
    replay_name: str | None = None

    def log_keys(self) -> dict[str, Any]:
        return {"image_id": self.image.image_id, "replay_name": self.replay_name}


def object_created(event: Mapping[str, Any], context: Any = None) -> ObjectCreated:
    require_valid("s3-object-created-event", event)
    from aws_lambda_powertools.utilities.data_classes import S3EventBridgeNotificationEvent

    s3_event = S3EventBridgeNotificationEvent(dict(event))
    s3_object = s3_event.detail.object
    image = ImageRef(
        bucket=s3_event.detail.bucket.name,
        key=naming.decode_key(s3_object["key"]),  # the one and only decode of the key
        version_id=s3_object.get("version-id"),
        etag=s3_object.get("etag"),
    )
    return ObjectCreated(image, _replay_name(event))


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
    return ReviewRequested(ReviewRequest.from_detail(event["detail"]), _replay_name(event))


@dataclass(frozen=True)
class ReviewStatusChange:
    """A review that ended: A2I's `HumanLoop Status Change` detail."""

    detail: Mapping[str, Any]
    replay_name: str | None = None

    @property
    def loop_name(self) -> str:
        return str(self.detail["humanLoopName"])

    def log_keys(self) -> dict[str, Any]:
        return {"loop_name": self.loop_name, "replay_name": self.replay_name}


def review_status_change(event: Mapping[str, Any], context: Any = None) -> ReviewStatusChange:
    require_valid("a2i-status-change-event", event)
    return ReviewStatusChange(event["detail"], _replay_name(event))


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


@dataclass(frozen=True)
class CustomResourceRequest:
    """A CloudFormation custom resource request. Only its ResponseURL is checked here: everything
    else is validated by the service, which must answer CloudFormation even for a malformed request."""

    event: Mapping[str, Any]
    remaining_ms: Callable[[], int] = field(compare=False)

    def log_keys(self) -> dict[str, Any]:
        return {
            "request_type": self.event.get("RequestType"),
            "logical_resource_id": self.event.get("LogicalResourceId"),
            "physical_resource_id": self.event.get("PhysicalResourceId"),
        }


def custom_resource_request(event: Mapping[str, Any], context: Any) -> CustomResourceRequest:
    if not isinstance(event, Mapping) or not isinstance(event.get("ResponseURL"), str):
        raise InvalidEvent("not a CloudFormation custom resource request: no ResponseURL to answer")
    return CustomResourceRequest(event, context.get_remaining_time_in_millis)
