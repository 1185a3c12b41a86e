"""Helpers for the Detect -> StartReview -> AppendLabels flow tests: images, events, stubs, spies.

Tests use the same cached boto3 clients as the adapters (creating a client costs ~0.2 s); moto
intercepts them whenever `mock_aws` is active.
"""

from __future__ import annotations

import io
import json
import struct
import threading
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote_plus

from boto3.dynamodb.types import TypeDeserializer
from botocore.stub import Stubber
from PIL import Image

from labelloop_core.adapters import clients
from labelloop_local.stack.provision import Stack


# -- images --------------------------------------------------------------------------------------
def png_bytes(width: int = 320, height: int = 240, color: tuple[int, int, int] = (200, 80, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(width: int = 320, height: int = 240, icc_profile_bytes: int = 0) -> bytes:
    """A JPEG; a big ICC profile (split over several APP2 segments) pushes the frame header back."""
    buffer = io.BytesIO()
    options: dict[str, Any] = {"format": "JPEG", "quality": 80}
    if icc_profile_bytes:
        options["icc_profile"] = bytes(range(256)) * (icc_profile_bytes // 256)
    Image.new("RGB", (width, height), (30, 160, 90)).save(buffer, **options)
    return buffer.getvalue()


def png_header_only(width: int, height: int, padding: int = 0) -> bytes:
    """PNG signature + IHDR declaring width x height (no pixel data): enough for header checks."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + b"\0" * padding


# -- S3 ------------------------------------------------------------------------------------------
def upload(stack: Stack, key: str, body: bytes) -> dict[str, Any]:
    response = clients.s3().put_object(Bucket=stack.bucket, Key=key, Body=body)
    return {
        "key": key,
        "version_id": response.get("VersionId"),
        "etag": response["ETag"].strip('"'),
        "size": len(body),
    }


def read_json(stack: Stack, key: str) -> Any:
    return json.loads(clients.s3().get_object(Bucket=stack.bucket, Key=key)["Body"].read())


def keys_under(stack: Stack, prefix: str) -> list[str]:
    paginator = clients.s3().get_paginator("list_objects_v2")
    return [
        obj["Key"]
        for page in paginator.paginate(Bucket=stack.bucket, Prefix=prefix)
        for obj in page.get("Contents", [])
    ]


def versions_of(stack: Stack, key: str) -> int:
    response = clients.s3().list_object_versions(Bucket=stack.bucket, Prefix=key)
    return len([v for v in response.get("Versions", []) if v["Key"] == key])


# -- events --------------------------------------------------------------------------------------
def s3_event(
    stack: Stack, uploaded: dict[str, Any], replay_name: str | None = None, event_id: str | None = None
) -> dict[str, Any]:
    """`Object Created` as S3 sends it to EventBridge: the key URL-encoded (space as '+')."""
    return s3_event_for(
        stack.bucket,
        uploaded["key"],
        uploaded.get("version_id"),
        uploaded["etag"],
        size=uploaded["size"],
        replay_name=replay_name,
        event_id=event_id,
    )


def s3_event_for(
    bucket: str,
    key: str,
    version_id: str | None,
    etag: str,
    size: int = 1234,
    replay_name: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """`Object Created` for any bucket and key (as EventBridge delivers it, also as an SQS body)."""
    event: dict[str, Any] = {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2024-05-01T12:00:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": quote_plus(key), "size": size, "etag": etag},
            "request-id": "C3D13FE58DE4C810",
            "requester": "123456789012",
            "source-ip-address": "203.0.113.15",
            "reason": "PutObject",
        },
    }
    if version_id:
        event["detail"]["object"]["version-id"] = version_id
    if replay_name:
        event["replay-name"] = replay_name
    return event


def app_event(detail_type: str, detail: dict[str, Any], replay_name: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": "labelloop",
        "account": "123456789012",
        "time": "2024-05-01T12:00:01Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }
    if replay_name:
        event["replay-name"] = replay_name
    return event


def a2i_event(
    loop_name: str,
    status: str,
    flow_definition_arn: str,
    output_uri: str | None = None,
    failure_reason: str | None = None,
    replay_name: str | None = None,
) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "creationTime": "2024-05-01T12:00:02.000Z",
        "failureCode": "TaskExpired" if failure_reason else None,
        "failureReason": failure_reason,
        "flowDefinitionArn": flow_definition_arn,
        "humanLoopArn": f"arn:aws:sagemaker:us-east-1:123456789012:human-loop/{loop_name}",
        "humanLoopName": loop_name,
        "humanLoopStatus": status,
    }
    if output_uri:
        detail["humanLoopOutput"] = {"outputS3Uri": output_uri}
    event: dict[str, Any] = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "SageMaker A2I HumanLoop Status Change",
        "source": "aws.sagemaker",
        "account": "123456789012",
        "time": "2024-05-01T12:30:00Z",
        "region": "us-east-1",
        "resources": [detail["humanLoopArn"]],
        "detail": detail,
    }
    if replay_name:
        event["replay-name"] = replay_name
    return event


def a2i_output(
    image: Any,
    loop_name: str,
    labels: list[str],
    boxes: list[dict[str, Any]],
    size: tuple[int, int] = (400, 300),
    submitted: str = "2024-05-01T12:29:59.123Z",
    flow_definition_arn: str = "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/labelloop-flow-1",
) -> dict[str, Any]:
    """An A2I output.json for one reviewer's answer (A2I's format, which both backends write)."""
    from labelloop_core.review_input import build_input_content

    width, height = size
    content = build_input_content(image, width, height, [], labels, [])
    return {
        "flowDefinitionArn": flow_definition_arn,
        "humanLoopName": loop_name,
        "inputContent": content,
        "humanAnswers": [
            {
                "answerContent": {
                    "annotatedResult": {
                        "boundingBoxes": boxes,
                        "inputImageProperties": {"width": width, "height": height},
                    }
                },
                "submissionTime": submitted,
                "acceptanceTime": "2024-05-01T12:20:00.000Z",
                "timeSpentInSeconds": 599.1,
                "workerId": "worker-1",
                "workerMetadata": {
                    "identityData": {"identityProviderType": "Cognito", "issuer": "x", "sub": "y"}
                },
            }
        ],
    }


class EventSpy:
    """Receives every labelloop event put on the app bus, through a rule -> SQS target."""

    def __init__(self, stack: Stack) -> None:
        self.sqs = clients.client("sqs")
        self.queue_url = self.sqs.create_queue(QueueName=f"spy-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        events = clients.events()
        rule = f"spy-{uuid.uuid4().hex[:8]}"
        events.put_rule(
            Name=rule, EventBusName=stack.bus_name, EventPattern=json.dumps({"source": ["labelloop"]})
        )
        events.put_targets(Rule=rule, EventBusName=stack.bus_name, Targets=[{"Id": "spy", "Arn": queue_arn}])
        self.seen: list[dict[str, Any]] = []

    def events(self, detail_type: str | None = None) -> list[dict[str, Any]]:
        """Every event seen so far (of `detail_type`, when given)."""
        self.fresh()
        return [event for event in self.seen if detail_type is None or event["detail-type"] == detail_type]

    def fresh(self) -> list[dict[str, Any]]:
        """The events that arrived since the last look."""
        arrived: list[dict[str, Any]] = []
        while messages := self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get(
            "Messages"
        ):
            for message in messages:
                arrived.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        self.seen.extend(arrived)
        return arrived


# -- stubs and ledger ------------------------------------------------------------------------------
@contextmanager
def stubbed(service: str, *, sdk_retries: bool = True) -> Iterator[Stubber]:
    """Botocore Stubber on the shared client the adapters use; every queued response must be used.
    `sdk_retries` False: the client of an adapter that retries by itself (Detect's DetectCustomLabels)."""
    with Stubber(clients.client(service, sdk_retries=sdk_retries)) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def detector_stub() -> Any:
    """The Stubber of Detect's DetectCustomLabels client: Detect retries those calls by itself, on a
    client of its own without SDK retries (`adapters.rekognition`), not the shared "rekognition" one."""
    return stubbed("rekognition", sdk_retries=False)


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    deserializer = TypeDeserializer()
    return {name: deserializer.deserialize(value) for name, value in item.items()}


def ledger_item(stack: Stack, pk: str, sk: str = "STATE") -> dict[str, Any] | None:
    key = {"pk": {"S": pk}, "sk": {"S": sk}}
    item = clients.dynamodb().get_item(TableName=stack.table, Key=key, ConsistentRead=True).get("Item")
    return _plain(item) if item else None


def ledger_items(stack: Stack, prefix: str) -> list[dict[str, Any]]:
    pages = clients.dynamodb().get_paginator("scan").paginate(TableName=stack.table)
    items = [_plain(item) for page in pages for item in page["Items"]]
    return [item for item in items if str(item["pk"]).startswith(prefix)]


def serialize_moto(monkeypatch: Any) -> None:
    """Process moto requests one at a time, as AWS applies each conditional write atomically.

    moto's in-process backends are not thread-safe (a failed DynamoDB transaction restores a
    snapshot of the whole table); the code under test still runs its calls from many threads."""
    from moto.core.botocore_stubber import BotocoreStubber

    lock = threading.RLock()
    original = BotocoreStubber.process_request

    def process_request(self: Any, request: Any) -> Any:
        with lock:
            return original(self, request)

    monkeypatch.setattr(BotocoreStubber, "process_request", process_request)


def sqs_batch(event: dict[str, Any], receives: int = 1, message_id: str = "m-1") -> dict[str, Any]:
    """`event` as the body of a one-record batch of the DetectQueue's event source mapping."""
    return {
        "Records": [
            {
                "messageId": message_id,
                "receiptHandle": f"receipt-{message_id}",
                "body": json.dumps(event),
                "attributes": {"ApproximateReceiveCount": str(receives), "SentTimestamp": "1714564800000"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:DetectQueue",
                "awsRegion": "us-east-1",
            }
        ]
    }
