"""The DetectQueue's batches: S3 `Object Created` events (EventBridge) in SQS messages."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from labelloop_core import naming
from labelloop_core.errors import InvalidEvent
from labelloop_core.inbound import replay_name, require_valid
from labelloop_core.naming import ImageRef


@dataclass(frozen=True)
class ObjectCreated:
    """S3 `Object Created` (EventBridge) for one image version."""

    image: ImageRef
    replay_name: str | None = None

    def log_keys(self) -> dict[str, Any]:
        return {"image_id": self.image.image_id, "replay_name": self.replay_name}


def object_created(event: Mapping[str, Any], context: Any = None) -> ObjectCreated:
    require_valid("s3-object-created-event", event)
    # The schema guarantees detail.bucket.name and detail.object.key: read them as they are (Powertools'
    # data classes would import every event type it knows, 20-30 ms at Detect's first event).
    detail = event["detail"]
    s3_object = detail["object"]
    image = ImageRef(
        bucket=detail["bucket"]["name"],
        key=naming.decode_key(s3_object["key"]),  # the one and only decode of the key
        version_id=s3_object.get("version-id"),
        etag=s3_object.get("etag"),
    )
    return ObjectCreated(image, replay_name(event))


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
    # Seconds left before the invocation's timeout (the Lambda context's), None when unknown.
    seconds_left: Callable[[], float] | None = field(default=None, compare=False, repr=False)

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
    return QueuedUploads(tuple(records), _seconds_left(context))


def _seconds_left(context: Any) -> Callable[[], float] | None:
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining_ms):
        return None
    return lambda: float(remaining_ms()) / 1000.0


# A batch has no one correlation id: Detect sets each upload's own (see `entrypoint`).
queued_uploads.correlation_id_path = None  # type: ignore[attr-defined]
