"""SQS for the DetectQueue and its dead-letter queue: how much work waits, and sending messages
(back, with a delay, or to the dead-letter queue with the reason as message attributes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from labelloop_core.adapters import aws_errors
from labelloop_core.adapters.clients import LazyClient
from labelloop_core.ports import OutgoingMessage, QueueDepth

MAX_BATCH = 10  # SendMessageBatch takes at most 10 entries
_DEPTH_ATTRIBUTES = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)


class SqsQueue:
    def __init__(self, url: str, client: Any = None) -> None:
        self.url = url
        self._client = client

    client = LazyClient("sqs")

    def depth(self) -> QueueDepth:
        """Visible, in-flight and delayed messages (SQS's approximate counts)."""
        try:
            response = self.client.get_queue_attributes(
                QueueUrl=self.url, AttributeNames=list(_DEPTH_ATTRIBUTES)
            )
        except Exception as error:
            raise _translate(error, self.url) from error
        counts = [int(response["Attributes"].get(name, 0)) for name in _DEPTH_ATTRIBUTES]
        return QueueDepth(*counts)

    def send(self, messages: Sequence[OutgoingMessage]) -> list[str]:
        """Send in batches of 10; the ids of the messages SQS did not accept (the caller keeps them)."""
        failed: list[str] = []
        for start in range(0, len(messages), MAX_BATCH):
            batch = messages[start : start + MAX_BATCH]
            entries = [_entry(message) for message in batch]
            try:
                response = self.client.send_message_batch(QueueUrl=self.url, Entries=entries)
            except Exception as error:
                if not aws_errors.is_sdk_error(error):
                    raise
                failed.extend(message.id for message in batch)
                continue
            failed.extend(str(entry["Id"]) for entry in response.get("Failed", []))
        return failed


def _entry(message: OutgoingMessage) -> dict[str, Any]:
    entry: dict[str, Any] = {"Id": message.id, "MessageBody": message.body}
    if message.delay_seconds:
        entry["DelaySeconds"] = message.delay_seconds
    if message.attributes:
        entry["MessageAttributes"] = {
            name: {"DataType": "String", "StringValue": value[:4096] or "-"}
            for name, value in message.attributes.items()
        }
    return entry


def _translate(error: Exception, url: str) -> Exception:
    if aws_errors.is_retryable(error):
        return aws_errors.retry_later(error, f"SQS {aws_errors.error_code(error)} on {url}")
    return error
