"""Edge validation: every event a function receives is checked against its schema and parsed into a
typed request before any work starts. A bad event raises `InvalidEvent` (logged and counted by the
entry point, then retried by the platform and kept in the function's dead-letter queue).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from labelloop_core import naming
from labelloop_core.errors import InvalidEvent
from labelloop_core.naming import ImageRef
from labelloop_core.schemas import SchemaViolation, validate

if TYPE_CHECKING:  # imported by the parser that needs it: most functions never see a review request
    from labelloop_core.review_request import ReviewRequest


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


# The message attribute that counts how often a message was put back to wait for the model.
WAITED_ATTRIBUTE = "labelloopWaited"


@dataclass(frozen=True)
class QueuedUpload:
    """One DetectQueue message: an S3 `Object Created` event, or why its body is not one."""

    message_id: str
    body: str
    receive_count: int  # SQS ApproximateReceiveCount, this receive included
    waited: int  # times it was sent back to wait for the model (WAITED_ATTRIBUTE)
    upload: ObjectCreated | None
    problem: str | None = None  # set when `upload` is None

    @property
    def event_id(self) -> str | None:
        try:
            event = json.loads(self.body)
        except ValueError:
            return None
        return str(event["id"]) if isinstance(event, dict) and event.get("id") else None


@dataclass(frozen=True)
class QueuedUploads:
    """A batch of the DetectQueue's event source mapping."""

    records: tuple[QueuedUpload, ...]

    def log_keys(self) -> dict[str, Any]:
        return {"batch_size": len(self.records)}


def queued_uploads(event: Mapping[str, Any], context: Any = None) -> QueuedUploads:
    """An SQS batch whose bodies are S3 `Object Created` events. A body that is not one does not fail
    the batch: that record carries the problem (Detect dead-letters it with the reason)."""
    require_valid("sqs-batch-event", event)
    records = []
    for record in event["Records"]:
        attributes = record.get("messageAttributes") or {}
        waited = str((attributes.get(WAITED_ATTRIBUTE) or {}).get("stringValue") or "0")
        message_id = str(record["messageId"])
        body_text = str(record["body"])
        receive_count = int(record["attributes"]["ApproximateReceiveCount"])
        waits = int(waited) if waited.isdigit() else 0

        upload: ObjectCreated | None = None
        problem: str | None = None
        try:
            body = json.loads(body_text)
            if not isinstance(body, dict):
                raise InvalidEvent("the message body is not a JSON object")
            upload = object_created(body)
        except ValueError as error:  # json.JSONDecodeError; InvalidEvent is not a ValueError
            problem = f"the body is not JSON: {error}"
        except InvalidEvent as error:
            problem = str(error)
        records.append(QueuedUpload(message_id, body_text, receive_count, waits, upload, problem))
    return QueuedUploads(tuple(records))


# A batch has no one correlation id: Detect sets each upload's own (see `entrypoint`).
queued_uploads.correlation_id_path = None  # type: ignore[attr-defined]


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

    return ReviewRequested(ReviewRequest.from_detail(event["detail"]), _replay_name(event))


def start_review_event(event: Mapping[str, Any], context: Any = None) -> ReviewRequested | ScheduleTick:
    """StartReview's two triggers: a ReviewRequested, or its schedule (open reviews waiting for budget)."""
    if isinstance(event, Mapping) and event.get("detail-type") == "Scheduled Event":
        return schedule_tick(event, context)
    return review_requested(event, context)


A2I_STATUS_CHANGE = "SageMaker A2I HumanLoop Status Change"
REVIEW_COMPLETED = "ReviewCompleted"


@dataclass(frozen=True)
class ReviewFinished:
    """A review that ended, from either backend: A2I's `HumanLoop Status Change` (default bus) or the
    built-in backend's `labelloop.ReviewCompleted` (app bus). Status as A2I reports it: Completed,
    Failed (an expired review is Failed with failure code Expired) or Stopped."""

    review_name: str
    status: str
    output_uri: str | None = None
    failure_code: str | None = None
    failure_reason: str | None = None
    flow_definition_arn: str | None = None  # A2I only: the flow definition the loop ran in
    replay_name: str | None = None

    @property
    def loop_name(self) -> str:
        return self.review_name

    @classmethod
    def from_a2i(cls, detail: Mapping[str, Any], replay_name: str | None = None) -> ReviewFinished:
        """A schema-valid A2I status-change detail."""
        return cls(
            review_name=str(detail["humanLoopName"]),
            status=str(detail["humanLoopStatus"]),
            output_uri=(detail.get("humanLoopOutput") or {}).get("outputS3Uri"),
            failure_code=detail.get("failureCode"),
            failure_reason=detail.get("failureReason"),
            flow_definition_arn=str(detail["flowDefinitionArn"]),
            replay_name=replay_name,
        )

    @classmethod
    def from_review_completed(
        cls, detail: Mapping[str, Any], replay_name: str | None = None
    ) -> ReviewFinished:
        """A schema-valid ReviewCompleted detail."""
        return cls(
            review_name=str(detail["reviewName"]),
            status=str(detail["status"]),
            output_uri=detail.get("outputS3Uri"),
            failure_code=detail.get("failureCode"),
            failure_reason=detail.get("failureReason"),
            replay_name=replay_name,
        )

    def log_keys(self) -> dict[str, Any]:
        return {"loop_name": self.review_name, "replay_name": self.replay_name}


def review_finished(event: Mapping[str, Any], context: Any = None) -> ReviewFinished:
    """AppendLabels' one entry for both backends."""
    if isinstance(event, Mapping) and event.get("detail-type") == REVIEW_COMPLETED:
        require_valid("app-event", event)
        require_valid("review-completed", event["detail"], what="ReviewCompleted detail")
        return ReviewFinished.from_review_completed(event["detail"], _replay_name(event))
    require_valid("a2i-status-change-event", event)
    return ReviewFinished.from_a2i(event["detail"], _replay_name(event))


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
class HttpRequest:
    """An HTTP API request (payload format 2.0) and the JWT claims its authorizer validated."""

    route_key: str  # e.g. "GET /api/tasks/{taskId}"
    method: str
    path: str
    path_parameters: Mapping[str, str]
    query: Mapping[str, str]
    headers: Mapping[str, str]  # names in lower case, as API Gateway passes them
    body: bytes | None
    claims: Mapping[str, Any]
    request_id: str

    def log_keys(self) -> dict[str, Any]:
        return {"route": self.route_key, "request_id": self.request_id, "caller": self.claims.get("sub")}


def http_request(event: Mapping[str, Any], context: Any = None) -> HttpRequest:
    """An API Gateway HTTP API event, payload format 2.0 (claims at requestContext.authorizer.jwt.claims)."""
    require_valid("http-api-event", event)
    context_doc = event["requestContext"]
    body = event.get("body")
    raw: bytes | None = None
    if body is not None:
        try:
            raw = base64.b64decode(body, validate=True) if event.get("isBase64Encoded") else body.encode()
        except ValueError as error:
            raise InvalidEvent(f"the request body is marked base64 but is not: {error}") from None
    claims = ((context_doc.get("authorizer") or {}).get("jwt") or {}).get("claims") or {}
    return HttpRequest(
        route_key=str(event["routeKey"]),
        method=str(context_doc["http"]["method"]).upper(),
        path=str(event["rawPath"]),
        path_parameters=dict(event.get("pathParameters") or {}),
        query=dict(event.get("queryStringParameters") or {}),
        headers={str(name).lower(): str(value) for name, value in (event.get("headers") or {}).items()},
        body=raw,
        claims=dict(claims),
        request_id=str(context_doc["requestId"]),
    )


# The correlation id of an HTTP API request is API Gateway's request id (see `entrypoint`).
http_request.correlation_id_path = "requestContext.requestId"  # type: ignore[attr-defined]


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


# CloudFormation's request id: the same for every retry of one request.
custom_resource_request.correlation_id_path = "RequestId"  # type: ignore[attr-defined]
