"""Detect on moto, provisioned from template.yaml: upload -> prediction, ledger, ReviewRequested.

Detect consumes the DetectQueue: each test's event is the body of a one-record SQS batch, as the event
source mapping delivers it (`detect`); the image's outcome is what the service made of that record.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.stub import ANY

from labelloop_core import naming
from labelloop_core.adapters import clients
from labelloop_core.adapters.ledger import ReviewLedger
from labelloop_core.adapters.models import SsmModelRegistry
from labelloop_core.adapters.rekognition import ATTEMPTS
from labelloop_core.errors import AccessDenied, ModelNotReady, Throttled, TransientError
from labelloop_core.services.detect import DetectService
from labelloop_local.stack.provision import Stack
from tests.support.flows import (
    EventSpy,
    detector_stub,
    jpeg_bytes,
    keys_under,
    ledger_item,
    png_bytes,
    png_header_only,
    read_json,
    s3_event,
    sqs_batch,
    upload,
)
from tests.support.moto_stack import FAKE_MODEL_ARN, Invoke

pytestmark = pytest.mark.integration

DETECT = "DetectFunction"
DETECT_DLQ = "DetectFunctionDeadLetterQueue"


class Detect:
    """Detect as its event source mapping invokes it. `detect(event)` returns the image's outcome
    (`DetectOutcome.to_dict()`), or raises the error its processing raised (the record then is a
    batch item failure, or was sent back to wait); `last` is the partial batch response."""

    def __init__(self, invoke: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
        self.invoke = invoke
        self.last: dict[str, Any] = {}
        self._seen: dict[str, Any] = {}
        original = DetectService.process
        seen = self._seen

        def process(service: DetectService, image: naming.ImageRef) -> Any:
            try:
                seen["outcome"] = original(service, image)
            except Exception as error:
                seen["error"] = error
                raise
            return seen["outcome"]

        monkeypatch.setattr(DetectService, "process", process)

    def __call__(self, event: dict[str, Any], receives: int = 1) -> dict[str, Any]:
        self._seen.clear()
        self.last = self.invoke(DETECT, sqs_batch(event, receives))
        if "error" in self._seen:
            raise self._seen["error"]
        if "outcome" in self._seen:
            return dict(self._seen["outcome"].to_dict())
        return self.last


def queue_messages(stack: Stack, logical_id: str) -> list[dict[str, Any]]:
    sqs = clients.client("sqs")
    response = sqs.receive_message(
        QueueUrl=stack.queue_url(logical_id), MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )
    return list(response.get("Messages", []))


@pytest.fixture
def detect(invoke: Invoke, monkeypatch: pytest.MonkeyPatch) -> Detect:
    return Detect(invoke, monkeypatch)


@pytest.fixture
def labels(aws_stack: Stack) -> list[str]:
    return [label.strip() for label in aws_stack.env_for(DETECT)["LABELS"].split(",")]


@pytest.fixture
def spy(aws_stack: Stack) -> EventSpy:
    return EventSpy(aws_stack)


def detection(label: str, confidence: float, left: float = 0.1, top: float = 0.2) -> dict[str, Any]:
    box = {"Width": 0.5, "Height": 0.25, "Left": left, "Top": top}
    return {"Name": label, "Confidence": confidence, "Geometry": {"BoundingBox": box}}


def expect_detect(stubber: Any, stack: Stack, uploaded: dict[str, Any], labels: list[dict[str, Any]]) -> None:
    s3_object = {"Bucket": stack.bucket, "Name": uploaded["key"]}
    if uploaded["version_id"]:
        s3_object["Version"] = uploaded["version_id"]
    expected = {
        "ProjectVersionArn": FAKE_MODEL_ARN,
        "Image": {"S3Object": s3_object},
        "MinConfidence": ANY,
        "MaxResults": ANY,
    }
    stubber.add_response("detect_custom_labels", {"CustomLabels": labels}, expected)


def image_of(stack: Stack, uploaded: dict[str, Any]) -> naming.ImageRef:
    return naming.ImageRef(stack.bucket, uploaded["key"], uploaded["version_id"], uploaded["etag"])


def without_timestamp(document: dict[str, Any]) -> dict[str, Any]:
    stripped = copy.deepcopy(document)
    stripped.pop("createdAt")
    return stripped


@pytest.mark.parametrize(
    "key",
    [
        "incoming/pizza night.png",
        "incoming/a+b=c.png",
        "incoming/100% cheese.png",
        "incoming/piz zé/🍕 marghérita.png",
        "incoming/deep/folder/plain.png",
    ],
)
def test_url_encoded_keys_are_decoded_once_and_predicted(
    aws_stack: Stack, detect: Detect, labels: list[str], spy: EventSpy, key: str
) -> None:
    uploaded = upload(aws_stack, key, png_bytes(400, 300))
    with detector_stub() as rekognition:
        expect_detect(rekognition, aws_stack, uploaded, [detection(labels[0], 97.5)])
        result = detect(s3_event(aws_stack, uploaded))

    assert result["status"] == "PREDICTED"
    document = read_json(aws_stack, "predictions/" + key.removeprefix("incoming/") + ".json")
    assert document["status"] == "PREDICTED"
    assert document["image"]["key"] == key
    assert document["imageInfo"] == {"format": "PNG", "width": 400, "height": 300}
    assert document["detections"][0]["label"] == labels[0]
    assert document["detections"][0]["pixelBox"] == {"left": 40, "top": 60, "width": 200, "height": 75}
    assert document["review"] == {"needed": False, "auditSample": False, "reasons": []}
    item = ledger_item(aws_stack, f"IMAGE#{image_of(aws_stack, uploaded).image_id}")
    assert item is not None
    assert (item["status"], item["key"], item["model_arn"]) == ("PREDICTED", key, FAKE_MODEL_ARN)
    assert spy.events() == []


def test_low_confidence_requests_review_with_pixel_boxes(
    aws_stack: Stack, detect: Detect, labels: list[str], spy: EventSpy
) -> None:
    uploaded = upload(aws_stack, "incoming/low.jpg", jpeg_bytes(640, 480))
    with detector_stub() as rekognition:
        expect_detect(
            rekognition, aws_stack, uploaded, [detection(labels[0], 41.0), detection(labels[0], 99.0)]
        )
        result = detect(s3_event(aws_stack, uploaded))

    image = image_of(aws_stack, uploaded)
    loop_name = naming.human_loop_name(image, FAKE_MODEL_ARN)
    assert result == {"status": "REVIEW_REQUESTED", "imageId": image.image_id, "loopName": loop_name}
    document = read_json(aws_stack, "predictions/low.jpg.json")
    assert document["review"]["needed"] is True
    assert [reason["code"] for reason in document["review"]["reasons"]] == ["LOW_CONFIDENCE"]
    assert document["review"]["reasons"][0]["confidence"] == 41.0
    item = ledger_item(aws_stack, f"IMAGE#{image.image_id}")
    assert item is not None
    assert (item["status"], item["loop_name"], item["reason"]) == (
        "REVIEW_REQUESTED",
        loop_name,
        "LOW_CONFIDENCE",
    )
    [event] = spy.events("ReviewRequested")
    detail = event["detail"]
    assert (detail["imageId"], detail["key"], detail["modelArn"]) == (
        image.image_id,
        "incoming/low.jpg",
        FAKE_MODEL_ARN,
    )
    assert detail["imageSize"] == {"width": 640, "height": 480}
    assert detail["detections"][0]["pixelBox"] == {"left": 64, "top": 96, "width": 320, "height": 120}
    assert detail["predictionKey"] == "predictions/low.jpg.json"


def test_nothing_detected_is_reviewed(aws_stack: Stack, detect: Detect, spy: EventSpy) -> None:
    uploaded = upload(aws_stack, "incoming/empty-plate.png", png_bytes(128, 128))
    with detector_stub() as rekognition:
        expect_detect(rekognition, aws_stack, uploaded, [])
        result = detect(s3_event(aws_stack, uploaded))
    assert result["status"] == "REVIEW_REQUESTED"
    [event] = spy.events("ReviewRequested")
    assert [reason["code"] for reason in event["detail"]["reasons"]] == ["NO_DETECTIONS"]


def test_jpeg_with_a_long_header_is_read_with_a_second_ranged_get(
    aws_stack: Stack, detect: Detect, labels: list[str]
) -> None:
    body = jpeg_bytes(300, 200, icc_profile_bytes=150_000)
    assert body.find(b"\xff\xc0") > 65536  # the frame header is beyond the first ranged GET
    uploaded = upload(aws_stack, "incoming/icc-heavy.jpg", body)
    with detector_stub() as rekognition:
        expect_detect(rekognition, aws_stack, uploaded, [detection(labels[0], 88.0)])
        detect(s3_event(aws_stack, uploaded))
    document = read_json(aws_stack, "predictions/icc-heavy.jpg.json")
    assert document["imageInfo"] == {"format": "JPEG", "width": 300, "height": 200}


BAD_IMAGES: dict[str, Callable[[], bytes]] = {
    "EMPTY": lambda: b"",
    "NOT_AN_IMAGE": lambda: b"%PDF-1.7 definitely not a picture of pizza",
    "wrong magic (GIF)": lambda: b"GIF89a" + b"\0" * 200,
    "CORRUPT_HEADER": lambda: b"\x89PNG\r\n\x1a\n" + b"\0\0\0\x0dIHDX" + b"\0" * 40,
    "TOO_LARGE_BYTES": lambda: png_header_only(1000, 1000, padding=15 * 1024 * 1024 + 1),
    "TOO_SMALL": lambda: png_bytes(32, 32),
    "TOO_LARGE_PIXELS": lambda: png_header_only(5000, 5000),
    "BAD_ASPECT_RATIO": lambda: png_header_only(4000, 100),
}
EXPECTED_CODES = {"wrong magic (GIF)": "NOT_AN_IMAGE"}


@pytest.mark.parametrize("kind", sorted(BAD_IMAGES))
def test_bad_images_are_rejected_and_recorded_without_retry(
    aws_stack: Stack, detect: Detect, spy: EventSpy, kind: str
) -> None:
    uploaded = upload(aws_stack, f"incoming/bad/{kind}.png", BAD_IMAGES[kind]())
    with detector_stub():  # any DetectCustomLabels call would fail the test
        result = detect(s3_event(aws_stack, uploaded))

    code = EXPECTED_CODES.get(kind, kind)
    assert result["status"] == "REJECTED"
    document = read_json(aws_stack, f"predictions/bad/{kind}.png.json")
    assert document["status"] == "REJECTED"
    assert document["rejection"]["code"] == code
    assert document["rejection"]["message"]
    item = ledger_item(aws_stack, f"IMAGE#{image_of(aws_stack, uploaded).image_id}")
    assert item is not None
    assert item["status"] == "REJECTED"
    assert item["reason"].startswith(code)
    assert spy.events() == []


@pytest.mark.parametrize(
    ("error_code", "rejection"),
    [("InvalidImageFormatException", "INVALID_IMAGE_FORMAT"), ("ImageTooLargeException", "IMAGE_TOO_LARGE")],
)
def test_images_rekognition_refuses_are_rejected(
    aws_stack: Stack, detect: Detect, spy: EventSpy, error_code: str, rejection: str
) -> None:
    uploaded = upload(aws_stack, "incoming/refused.png", png_bytes(200, 200))
    with detector_stub() as rekognition:
        rekognition.add_client_error(
            "detect_custom_labels", service_error_code=error_code, http_status_code=400
        )
        result = detect(s3_event(aws_stack, uploaded))
    assert result["status"] == "REJECTED"
    assert read_json(aws_stack, "predictions/refused.png.json")["rejection"]["code"] == rejection
    assert spy.events() == []


def test_an_image_rekognition_cannot_read_is_an_access_problem_retried_into_the_dlq_with_the_reason(
    aws_stack: Stack, detect: Detect, spy: EventSpy
) -> None:
    """InvalidS3ObjectException: Rekognition read the image with the function's rights and could not.
    Rejecting it would quietly drop every image of a misconfigured stack; raising keeps the event."""
    uploaded = upload(aws_stack, "incoming/unreadable.png", png_bytes(200, 200))
    image = image_of(aws_stack, uploaded)
    with detector_stub() as rekognition:
        rekognition.add_client_error(
            "detect_custom_labels", service_error_code="InvalidS3ObjectException", http_status_code=400
        )
        with pytest.raises(AccessDenied, match="s3:GetObject and s3:GetObjectVersion"):
            detect(s3_event(aws_stack, uploaded))
    assert keys_under(aws_stack, "predictions/") == []
    assert ledger_item(aws_stack, f"IMAGE#{image.image_id}") is None
    assert spy.events() == []


@pytest.mark.parametrize(
    ("error_code", "status", "waits"),
    [
        ("ResourceNotReadyException", 400, ModelNotReady),
        ("ThrottlingException", 400, Throttled),
        ("ProvisionedThroughputExceededException", 400, Throttled),
        ("InternalServerError", 500, None),
    ],
)
def test_transient_rekognition_errors_leave_nothing_behind_and_waiting_is_not_a_failure(
    aws_stack: Stack,
    detect: Detect,
    labels: list[str],
    spy: EventSpy,
    error_code: str,
    status: int,
    waits: type[Exception] | None,
) -> None:
    """The model not running or throttled: the message goes back to the DetectQueue with a delay (not
    a failed receive, never the DLQ). A service fault: a batch item failure, received again. Throttling
    and faults are first tried again within the call (ATTEMPTS in all); a model not running is not."""
    uploaded = upload(aws_stack, "incoming/later.png", png_bytes(200, 200))
    event = s3_event(aws_stack, uploaded)
    image = image_of(aws_stack, uploaded)
    with detector_stub() as rekognition:
        for _ in range(1 if waits is ModelNotReady else ATTEMPTS):
            rekognition.add_client_error(
                "detect_custom_labels", service_error_code=error_code, http_status_code=status
            )
        with pytest.raises(
            waits or TransientError, match=error_code if status < 500 else "500|InternalServerError"
        ):
            detect(event)

    if waits is None:
        assert detect.last == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    else:
        assert detect.last == {"batchItemFailures": []}
        attributes = clients.client("sqs").get_queue_attributes(
            QueueUrl=aws_stack.queue_url("DetectQueue"), AttributeNames=["ApproximateNumberOfMessagesDelayed"]
        )["Attributes"]
        assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"  # a copy waits, delayed
    assert queue_messages(aws_stack, DETECT_DLQ) == []
    assert keys_under(aws_stack, "predictions/") == []
    assert ledger_item(aws_stack, f"IMAGE#{image.image_id}") is None
    assert spy.events() == []

    with detector_stub() as rekognition:  # the next delivery of the same event succeeds
        expect_detect(rekognition, aws_stack, uploaded, [detection(labels[0], 30.0)])
        assert detect(event)["status"] == "REVIEW_REQUESTED"
    assert len(spy.events("ReviewRequested")) == 1


def test_duplicate_and_replayed_deliveries_give_the_same_outputs(
    aws_stack: Stack, detect: Detect, labels: list[str], spy: EventSpy
) -> None:
    uploaded = upload(aws_stack, "incoming/twice.png", png_bytes(300, 300))
    event = s3_event(aws_stack, uploaded)
    replay = s3_event(aws_stack, uploaded, replay_name="window-2024-05-01", event_id=event["id"])
    outputs = []
    with detector_stub() as rekognition:  # one DetectCustomLabels call: the rest are duplicates
        expect_detect(rekognition, aws_stack, uploaded, [detection(labels[0], 50.0)])
        for delivery in (event, event, replay):
            result = detect(delivery)
            outputs.append((result, without_timestamp(read_json(aws_stack, "predictions/twice.png.json"))))

    assert outputs[0] == outputs[1] == outputs[2]
    assert keys_under(aws_stack, "predictions/") == ["predictions/twice.png.json"]
    loop_names = {event["detail"]["imageId"] + "|" + event["detail"]["modelArn"] for event in spy.events()}
    assert len(loop_names) == 1  # every ReviewRequested names the same image and model -> one loop


def test_replay_after_a_promotion_names_the_same_model_and_loop(
    aws_stack: Stack, detect: Detect, labels: list[str], spy: EventSpy
) -> None:
    confident = upload(aws_stack, "incoming/confident.png", png_bytes(300, 300))
    doubtful = upload(aws_stack, "incoming/doubtful.png", png_bytes(300, 300))
    with detector_stub() as rekognition:
        expect_detect(rekognition, aws_stack, confident, [detection(labels[0], 95.0)])
        expect_detect(rekognition, aws_stack, doubtful, [detection(labels[0], 20.0)])
        first = [detect(s3_event(aws_stack, item)) for item in (confident, doubtful)]
    assert [result["status"] for result in first] == ["PREDICTED", "REVIEW_REQUESTED"]

    newer_model = FAKE_MODEL_ARN.replace("pizza.v1", "pizza.v2")
    clients.ssm().put_parameter(
        Name=aws_stack.physical["ActiveModelParameter"], Value=newer_model, Type="String", Overwrite=True
    )
    with detector_stub():  # a replay must not detect again with the newer model
        replayed = [
            detect(s3_event(aws_stack, item, replay_name="after-promotion")) for item in (confident, doubtful)
        ]
    assert [result["status"] for result in replayed] == ["ALREADY_PROCESSED", "REVIEW_REQUESTED"]
    requests = spy.events("ReviewRequested")
    assert len(requests) == 2
    assert {request["detail"]["modelArn"] for request in requests} == {FAKE_MODEL_ARN}
    assert requests[0]["detail"] == requests[1]["detail"]


def test_image_already_in_review_is_not_detected_again(
    aws_stack: Stack, detect: Detect, spy: EventSpy
) -> None:
    uploaded = upload(aws_stack, "incoming/reviewed.png", png_bytes(300, 300))
    image = image_of(aws_stack, uploaded)
    ReviewLedger(aws_stack.table).record_image(image, "LABELED")
    with detector_stub():  # no DetectCustomLabels call for a reviewed image
        result = detect(s3_event(aws_stack, uploaded, replay_name="late-replay"))
    assert result["status"] == "ALREADY_REVIEWED"
    item = ledger_item(aws_stack, f"IMAGE#{image.image_id}")
    assert item is not None
    assert item["status"] == "LABELED"
    assert spy.events() == []


def test_new_version_of_the_same_key_is_a_new_image(
    aws_stack: Stack, detect: Detect, labels: list[str]
) -> None:
    first = upload(aws_stack, "incoming/same.png", png_bytes(200, 200, (1, 2, 3)))
    second = upload(aws_stack, "incoming/same.png", png_bytes(200, 200, (4, 5, 6)))
    with detector_stub() as rekognition:
        for uploaded in (first, second):
            expect_detect(rekognition, aws_stack, uploaded, [detection(labels[0], 90.0)])
            detect(s3_event(aws_stack, uploaded))
    assert image_of(aws_stack, first).image_id != image_of(aws_stack, second).image_id
    for uploaded in (first, second):
        assert ledger_item(aws_stack, f"IMAGE#{image_of(aws_stack, uploaded).image_id}") is not None


def test_cold_start_without_a_model_sends_images_to_review(
    aws_stack: Stack, detect: Detect, spy: EventSpy
) -> None:
    clients.ssm().put_parameter(
        Name=aws_stack.physical["ActiveModelParameter"], Value="none", Type="String", Overwrite=True
    )
    uploaded = upload(aws_stack, "incoming/first.png", png_bytes(256, 256))
    with detector_stub():  # no model, no DetectCustomLabels
        result = detect(s3_event(aws_stack, uploaded))

    project_arn = aws_stack.env_for(DETECT)["PROJECT_ARN"]
    image = image_of(aws_stack, uploaded)
    assert result["loopName"] == naming.human_loop_name(image, project_arn)
    item = ledger_item(aws_stack, f"IMAGE#{image.image_id}")
    assert item is not None
    assert (item["status"], item["reason"]) == ("REVIEW_REQUESTED", "NO_MODEL")
    [event] = spy.events("ReviewRequested")
    assert event["detail"]["modelArn"] == project_arn
    assert event["detail"]["detections"] == []
    assert [reason["code"] for reason in event["detail"]["reasons"]] == ["NO_MODEL"]


def test_objects_outside_incoming_are_ignored(aws_stack: Stack, detect: Detect, spy: EventSpy) -> None:
    uploaded = upload(aws_stack, "predictions/sneaky.png", png_bytes(100, 100))
    with detector_stub():
        result = detect(s3_event(aws_stack, uploaded))
    assert result["status"] == "IGNORED"
    assert keys_under(aws_stack, "predictions/") == ["predictions/sneaky.png"]
    assert ledger_item(aws_stack, f"IMAGE#{image_of(aws_stack, uploaded).image_id}") is None
    assert spy.events() == []


def test_deleted_object_is_recorded_as_rejected(aws_stack: Stack, detect: Detect) -> None:
    uploaded = upload(aws_stack, "incoming/gone.png", png_bytes(100, 100))
    clients.s3().delete_object(
        Bucket=aws_stack.bucket, Key="incoming/gone.png", VersionId=uploaded["version_id"]
    )
    with detector_stub():
        result = detect(s3_event(aws_stack, uploaded))
    assert (result["status"], read_json(aws_stack, "predictions/gone.png.json")["rejection"]["code"]) == (
        "REJECTED",
        "OBJECT_MISSING",
    )


def _without(event: dict[str, Any], *path: str) -> dict[str, Any]:
    broken = copy.deepcopy(event)
    target = broken
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return broken


@pytest.mark.parametrize(
    ("mutation", "message"),
    [
        (lambda e: _without(e, "detail", "object"), "object"),
        (lambda e: _without(e, "detail", "object", "key"), "key"),
        (lambda e: {**e, "source": "aws.ec2"}, "source"),
        (lambda e: {**e, "detail-type": "Object Deleted"}, "detail-type"),
        (lambda e: {**e, "detail": "not an object"}, "detail"),
        (lambda e: _without(e, "detail", "object", "etag") | {"detail": {}}, "detail"),
    ],
)
def test_schema_invalid_events_are_dead_lettered_at_once_with_the_reason(
    aws_stack: Stack, detect: Detect, spy: EventSpy, mutation: Any, message: str
) -> None:
    uploaded = upload(aws_stack, "incoming/ok.png", png_bytes(100, 100))
    event = mutation(s3_event(aws_stack, uploaded))
    with detector_stub():
        assert detect(event) == {"batchItemFailures": []}  # retrying cannot change the body
    [letter] = queue_messages(aws_stack, DETECT_DLQ)
    assert json.loads(letter["Body"]) == event
    assert letter["MessageAttributes"]["ERROR_CODE"]["StringValue"] == "InvalidEvent"
    assert message in letter["MessageAttributes"]["ERROR_MESSAGE"]["StringValue"]
    assert keys_under(aws_stack, "predictions/") == []
    assert spy.events() == []


def test_event_without_version_or_etag_is_refused(aws_stack: Stack, detect: Detect) -> None:
    uploaded = upload(aws_stack, "incoming/anonymous.png", png_bytes(100, 100))
    event = s3_event(aws_stack, {**uploaded, "version_id": None})
    del event["detail"]["object"]["etag"]
    assert detect(event) == {"batchItemFailures": []}
    [letter] = queue_messages(aws_stack, DETECT_DLQ)
    assert "neither a version id nor an ETag" in letter["MessageAttributes"]["ERROR_MESSAGE"]["StringValue"]


def test_active_model_is_cached_at_most_model_cache_seconds(aws_stack: Stack) -> None:
    """A promotion reaches a warm container within MODEL_CACHE_SECONDS, not on every detection."""
    now = [1000.0]
    parameter = aws_stack.physical["ActiveModelParameter"]
    registry = SsmModelRegistry(
        parameter, aws_stack.physical["PreviousModelParameter"], 60, clock=lambda: now[0]
    )
    assert registry.active_model_arn() == FAKE_MODEL_ARN
    promoted = FAKE_MODEL_ARN.replace("pizza.v1", "pizza.v2")
    clients.ssm().put_parameter(Name=parameter, Value=promoted, Type="String", Overwrite=True)
    now[0] += 59
    assert registry.active_model_arn() == FAKE_MODEL_ARN
    now[0] += 1
    assert registry.active_model_arn() == promoted
