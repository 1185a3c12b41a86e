"""The local stack's SQS (moto, with labelloop_local.stack.moto_fixes) answers as SQS does: the fixes
that make a deep queue cheap must not change what a consumer or the ModelController sees."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from labelloop_local.stack.moto_fixes import apply_moto_fixes

COUNTS = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)


@pytest.fixture
def sqs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    apply_moto_fixes()
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


def _queue(sqs: Any, retention_seconds: int = 345600) -> str:
    attributes = {"MessageRetentionPeriod": str(retention_seconds)}
    return str(sqs.create_queue(QueueName="depth", Attributes=attributes)["QueueUrl"])


def test_queue_depth_counts_waiting_in_flight_and_delayed_messages_apart(sqs: Any) -> None:
    url = _queue(sqs)
    for body in ("a", "b", "c"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=900)
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=900)
    assert len(received["Messages"]) == 1

    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[*COUNTS, "MessageRetentionPeriod"])[
        "Attributes"
    ]

    assert attributes == {
        "ApproximateNumberOfMessages": "2",
        "ApproximateNumberOfMessagesNotVisible": "1",
        "ApproximateNumberOfMessagesDelayed": "1",
        "MessageRetentionPeriod": "345600",
    }
    everything = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert {name: everything[name] for name in COUNTS} == {name: attributes[name] for name in COUNTS}


def test_an_unknown_attribute_name_is_refused(sqs: Any) -> None:
    url = _queue(sqs)
    with pytest.raises(ClientError, match="InvalidAttributeName"):
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfCats"])


def test_a_message_older_than_the_retention_period_is_not_delivered(sqs: Any) -> None:
    from moto.sqs.models import sqs_backends

    url = _queue(sqs, retention_seconds=60)
    sqs.send_message(QueueUrl=url, MessageBody="stale")
    sqs.send_message(QueueUrl=url, MessageBody="fresh")
    stale: Any = sqs_backends["123456789012"]["us-east-1"].queues["depth"]._messages[0]
    stale.sent_timestamp -= 61_000  # sent 61 s ago, as far as SQS can tell

    bodies = [
        message["Body"]
        for _ in range(3)  # moto's receive stops at an expired message: the next one goes on
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    ]

    assert bodies == ["fresh"]
