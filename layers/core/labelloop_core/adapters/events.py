"""Publishing labelloop events on the app bus: validated before PutEvents, failures raised."""

from __future__ import annotations

import json
import re
from typing import Any

from labelloop_core.adapters import aws_errors
from labelloop_core.adapters.clients import LazyClient
from labelloop_core.errors import TransientError

SOURCE = "labelloop"
DETAIL_TYPES = (
    "ReviewRequested",
    "ReviewCompleted",
    "LabelsAppended",
    "RetrainingStarted",
    "ModelPromoted",
    "ModelRejected",
)
MAX_ENTRY_BYTES = 256 * 1024  # PutEvents limit per entry


def schema_name(detail_type: str) -> str:
    """`ReviewRequested` -> `review-requested` (the schema of that event's detail)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", detail_type).lower()


class PublishError(TransientError):
    """EventBridge did not accept the entry; retrying the invocation publishes it again."""


class EventBridgePublisher:
    def __init__(self, bus_name: str, client: Any = None) -> None:
        self.bus_name = bus_name
        self._client = client

    client = LazyClient("events")

    def publish(self, detail_type: str, detail: dict[str, Any], resources: list[str] | None = None) -> str:
        """Validate `detail` against its schema, put it on the bus and return the event id."""
        if detail_type not in DETAIL_TYPES:
            raise ValueError(f"unknown labelloop detail-type {detail_type!r}")
        from labelloop_core.schemas import validate

        validate(schema_name(detail_type), detail)  # SchemaViolation: a bug on our side, never sent
        body = json.dumps(detail, ensure_ascii=False, separators=(",", ":"))
        if len(body.encode("utf-8")) > MAX_ENTRY_BYTES:
            raise ValueError(
                f"{detail_type} detail is larger than the {MAX_ENTRY_BYTES}-byte PutEvents limit"
            )
        entry: dict[str, Any] = {
            "Source": SOURCE,
            "DetailType": detail_type,
            "Detail": body,
            "EventBusName": self.bus_name,
        }
        if resources:
            entry["Resources"] = resources
        try:
            response = self.client.put_events(Entries=[entry])
        except Exception as error:
            if aws_errors.is_retryable(error):
                raise PublishError(f"PutEvents {detail_type} on {self.bus_name}: {error}") from error
            raise
        result = response["Entries"][0] if response.get("Entries") else {}
        if response.get("FailedEntryCount", 0) or "EventId" not in result:
            raise PublishError(
                f"PutEvents rejected {detail_type} on {self.bus_name}: "
                f"{result.get('ErrorCode', 'unknown')} {result.get('ErrorMessage', '')}".rstrip()
            )
        return str(result["EventId"])
