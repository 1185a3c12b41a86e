"""Lambda's SQS event source mappings, locally: poll a queue of the template and invoke its function
with batches, as Lambda's pollers do (the mapping's BatchSize, MaximumBatchingWindowInSeconds,
MaximumConcurrency, FunctionResponseTypes and Enabled state, all read from template.yaml).

* Up to MaximumConcurrency batches run at once (one poller thread per concurrent invocation; Lambda
  starts with five when the mapping sets no maximum).
* A batch's messages are deleted when the function succeeds, except the `batchItemFailures` it
  reports (with `ReportBatchItemFailures`); when it raises, none is deleted. Messages not deleted
  become visible again after the queue's visibility timeout, compressed by the stack's time scale,
  and their receive count grows: the queue's redrive policy (moto implements it) moves a message
  received maxReceiveCount times to its dead-letter queue, as SQS does.
* `Enabled` changes through the local Lambda API (`UpdateEventSourceMapping`): the mapping passes
  through `Enabling`/`Disabling` for `transition_seconds`; a disabled mapping does not poll, so its
  messages are neither received nor counted, and a change while one is under way is refused with
  `ResourceInUseException`, like Lambda.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from labelloop_local.stack.template import MappingSpec

LOG = logging.getLogger(__name__)
DEFAULT_POLLERS = 5  # Lambda's pollers for a mapping without ScalingConfig.MaximumConcurrency
SETTLED = ("Enabled", "Disabled")


class MappingBusy(Exception):
    """The mapping is changing state; Lambda answers ResourceInUseException."""


@dataclass
class RunningMapping:
    """One event source mapping of the stack, with its state."""

    spec: MappingSpec
    uuid: str
    function_arn: str
    queue_url: str
    queue_arn: str
    visibility_timeout: int
    transition_seconds: float = 0.1
    clock: Callable[[], float] = time.time
    state: str = ""
    changed_at: float = 0.0
    in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.state = "Enabled" if self.spec.enabled else "Disabled"
        self.changed_at = self.clock()

    @property
    def pollers(self) -> int:
        return self.spec.maximum_concurrency or DEFAULT_POLLERS

    def current_state(self) -> str:
        with self._lock:
            if self.state not in SETTLED and self.clock() - self.changed_at >= self.transition_seconds:
                self.state = "Enabled" if self.state == "Enabling" else "Disabled"
                self.changed_at = self.clock()
            return self.state

    def polling(self) -> bool:
        return self.current_state() == "Enabled"

    def set_enabled(self, enabled: bool) -> None:
        state = self.current_state()
        with self._lock:
            if state not in SETTLED:
                raise MappingBusy(
                    f"the event source mapping {self.uuid} is {state}: try again when it is settled"
                )
            if (state == "Enabled") != enabled:
                self.state = "Enabling" if enabled else "Disabling"
                self.changed_at = self.clock()

    def description(self) -> dict[str, Any]:
        """What GetEventSourceMapping answers."""
        state = self.current_state()
        description: dict[str, Any] = {
            "UUID": self.uuid,
            "BatchSize": self.spec.batch_size,
            "MaximumBatchingWindowInSeconds": self.spec.batching_window_seconds,
            "EventSourceArn": self.queue_arn,
            "FunctionArn": self.function_arn,
            "LastModified": self.changed_at,
            "State": state,
            "StateTransitionReason": "USER_INITIATED",
            "FunctionResponseTypes": ["ReportBatchItemFailures"]
            if self.spec.report_batch_item_failures
            else [],
            "EventSourceMappingArn": self.function_arn.split(":function:")[0]
            + f":event-source-mapping:{self.uuid}",
        }
        if self.spec.maximum_concurrency is not None:
            description["ScalingConfig"] = {"MaximumConcurrency": self.spec.maximum_concurrency}
        return description


def lambda_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """An SQS message as Lambda passes it to the function (one entry of `Records`)."""
    attributes = message.get("Attributes") or {}
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {
            name: str(attributes[name])
            for name in (
                "ApproximateReceiveCount",
                "SentTimestamp",
                "SenderId",
                "ApproximateFirstReceiveTimestamp",
            )
            if name in attributes
        },
        "messageAttributes": {
            name: {
                "stringValue": value.get("StringValue"),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value.get("DataType", "String"),
            }
            for name, value in (message.get("MessageAttributes") or {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def receive_batch(
    sqs: Any, mapping: RunningMapping, wait_seconds: int, stop: threading.Event
) -> list[dict[str, Any]]:
    """Up to BatchSize messages: one receive, or several within MaximumBatchingWindowInSeconds."""
    batch: list[dict[str, Any]] = []
    deadline = time.monotonic() + mapping.spec.batching_window_seconds
    while len(batch) < mapping.spec.batch_size and not stop.is_set():
        response = sqs.receive_message(
            QueueUrl=mapping.queue_url,
            MaxNumberOfMessages=min(10, mapping.spec.batch_size - len(batch)),
            WaitTimeSeconds=wait_seconds if not batch else 0,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        batch.extend(response.get("Messages", []))
        if time.monotonic() >= deadline:
            break
    return batch


def failed_ids(mapping: RunningMapping, result: Any, batch: list[dict[str, Any]]) -> set[str] | None:
    """The message ids the function reported as failed (all of them: None)."""
    ids = {message["MessageId"] for message in batch}
    if not mapping.spec.report_batch_item_failures:
        return set()
    if result is None:
        return set()
    if not isinstance(result, dict):
        return None
    failures = result.get("batchItemFailures") or []
    reported = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not identifier or identifier not in ids:  # Lambda treats the batch as a complete failure
            LOG.error("%s: invalid batchItemFailures entry %s", mapping.spec.function, json.dumps(failure))
            return None
        reported.add(str(identifier))
    return reported
