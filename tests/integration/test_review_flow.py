"""StartReview on moto: ReviewRequested -> exactly one A2I human loop per image version and model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import ANY

from labelloop_core import naming
from labelloop_core.adapters import clients
from labelloop_core.adapters.ledger import ReviewLedger
from labelloop_core.errors import InvalidEvent, TransientError
from labelloop_local.stack.provision import Stack
from tests.support.flows import (
    EventSpy,
    app_event,
    detector_stub,
    ledger_item,
    png_bytes,
    s3_event,
    sqs_batch,
    stubbed,
    upload,
)
from tests.support.moto_stack import FAKE_FLOW_DEFINITION_ARN, FAKE_MODEL_ARN, Invoke

pytestmark = pytest.mark.integration


@pytest.fixture
def review_backend() -> str:
    return "a2i"  # these flows are A2I's (the built-in backend's: test_review_api_flow.py)


DETECT = "DetectFunction"
START_REVIEW = "StartReviewFunction"
CLASSIFIERS = ["FreeOfPersonallyIdentifiableInformation", "FreeOfAdultContent"]


@pytest.fixture
def labels(aws_stack: Stack) -> list[str]:
    return [label.strip() for label in aws_stack.env_for(START_REVIEW)["LABELS"].split(",")]


@pytest.fixture
def started_loops(aws_stack: Stack) -> Iterator[list[dict[str, Any]]]:
    """Parameters of every StartHumanLoop call the adapter makes."""
    calls: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        calls.append(params)

    events = clients.a2i_runtime().meta.events
    events.register("provide-client-params.sagemaker-a2i-runtime.StartHumanLoop", record)
    yield calls
    events.unregister("provide-client-params.sagemaker-a2i-runtime.StartHumanLoop", record)


def image_ref(stack: Stack, uploaded: dict[str, Any]) -> naming.ImageRef:
    return naming.ImageRef(stack.bucket, uploaded["key"], uploaded["version_id"], uploaded["etag"])


def review_detail(
    stack: Stack, uploaded: dict[str, Any], detections: list[dict[str, Any]], model_arn: str = FAKE_MODEL_ARN
) -> dict[str, Any]:
    image = image_ref(stack, uploaded)
    return {
        "schemaVersion": "1",
        "imageId": image.image_id,
        "bucket": image.bucket,
        "key": image.key,
        "versionId": image.version_id,
        "etag": image.etag,
        "modelArn": model_arn,
        "predictionKey": naming.prediction_key(image.key),
        "imageSize": {"width": 400, "height": 300},
        "detections": detections,
        "reasons": [{"code": "LOW_CONFIDENCE", "label": "x", "confidence": 40.0, "threshold": 60.0}],
    }


def expect_start(stubber: Any, loop_name: str) -> None:
    expected = {
        "HumanLoopName": loop_name,
        "FlowDefinitionArn": FAKE_FLOW_DEFINITION_ARN,
        "HumanLoopInput": {"InputContent": ANY},
        "DataAttributes": {"ContentClassifiers": CLASSIFIERS},
    }
    arn = f"arn:aws:sagemaker:us-east-1:123456789012:human-loop/{loop_name}"
    stubber.add_response("start_human_loop", {"HumanLoopArn": arn}, expected)


def test_detect_then_start_review_predraws_the_model_boxes(
    aws_stack: Stack, invoke: Invoke, labels: list[str], started_loops: list[dict[str, Any]]
) -> None:
    spy = EventSpy(aws_stack)
    uploaded = upload(aws_stack, "incoming/review me.png", png_bytes(400, 300))
    box = {"Width": 0.5, "Height": 0.25, "Left": 0.1, "Top": 0.2}
    with detector_stub() as rekognition:
        rekognition.add_response(
            "detect_custom_labels",
            {"CustomLabels": [{"Name": labels[0], "Confidence": 42.0, "Geometry": {"BoundingBox": box}}]},
        )
        invoke(DETECT, sqs_batch(s3_event(aws_stack, uploaded)))  # as the DetectQueue delivers it
    [review_requested] = spy.events("ReviewRequested")

    image = image_ref(aws_stack, uploaded)
    loop_name = naming.human_loop_name(image, FAKE_MODEL_ARN)
    with stubbed("sagemaker-a2i-runtime") as a2i:
        expect_start(a2i, loop_name)
        result = invoke(START_REVIEW, review_requested)

    assert result == {"loopName": loop_name, "imageId": image.image_id, "started": True}
    content = json.loads(started_loops[0]["HumanLoopInput"]["InputContent"])
    assert content["taskObject"] == f"s3://{aws_stack.bucket}/incoming/review me.png"
    assert content["initialValue"] == [
        {"label": labels[0], "left": 40, "top": 60, "width": 200, "height": 75}
    ]
    assert content["labels"] == labels
    loop = ledger_item(aws_stack, f"LOOP#{loop_name}")
    assert loop is not None
    assert (loop["status"], loop["image_id"]) == ("IN_PROGRESS", image.image_id)
    image_item = ledger_item(aws_stack, f"IMAGE#{image.image_id}")
    assert image_item is not None
    assert (image_item["status"], image_item["loop_name"]) == ("IN_REVIEW", loop_name)


def test_duplicate_and_replayed_requests_start_no_second_loop(
    aws_stack: Stack, invoke: Invoke, labels: list[str], started_loops: list[dict[str, Any]]
) -> None:
    uploaded = upload(aws_stack, "incoming/dup.png", png_bytes(400, 300))
    detail = review_detail(aws_stack, uploaded, [])
    event = app_event("ReviewRequested", detail)
    loop_name = naming.human_loop_name(image_ref(aws_stack, uploaded), FAKE_MODEL_ARN)
    with stubbed("sagemaker-a2i-runtime") as a2i:
        expect_start(a2i, loop_name)  # exactly one response: a second StartHumanLoop would fail the test
        results = [
            invoke(START_REVIEW, event),
            invoke(START_REVIEW, event),
            invoke(START_REVIEW, app_event("ReviewRequested", detail, replay_name="replay-1")),
        ]
    assert [result["started"] for result in results] == [True, False, False]
    assert {result["loopName"] for result in results} == {loop_name}
    assert len(started_loops) == 1


def test_loop_started_before_a_crash_is_found_on_retry(aws_stack: Stack, invoke: Invoke) -> None:
    """StartHumanLoop succeeded but the ledger write did not happen: the retry hits A2I's conflict."""
    uploaded = upload(aws_stack, "incoming/crash.png", png_bytes(400, 300))
    loop_name = naming.human_loop_name(image_ref(aws_stack, uploaded), FAKE_MODEL_ARN)
    arn = f"arn:aws:sagemaker:us-east-1:123456789012:human-loop/{loop_name}"
    with stubbed("sagemaker-a2i-runtime") as a2i:
        a2i.add_client_error("start_human_loop", service_error_code="ConflictException", http_status_code=409)
        a2i.add_response(
            "describe_human_loop",
            {
                "CreationTime": "2024-05-01T12:00:00Z",
                "HumanLoopStatus": "InProgress",
                "HumanLoopName": loop_name,
                "HumanLoopArn": arn,
                "FlowDefinitionArn": FAKE_FLOW_DEFINITION_ARN,
            },
            {"HumanLoopName": loop_name},
        )
        result = invoke(START_REVIEW, app_event("ReviewRequested", review_detail(aws_stack, uploaded, [])))
    assert result["started"] is False
    loop = ledger_item(aws_stack, f"LOOP#{loop_name}")
    assert loop is not None
    assert loop["status"] == "IN_PROGRESS"


def test_throttled_start_raises_and_writes_nothing(aws_stack: Stack, invoke: Invoke) -> None:
    uploaded = upload(aws_stack, "incoming/busy.png", png_bytes(400, 300))
    image = image_ref(aws_stack, uploaded)
    loop_name = naming.human_loop_name(image, FAKE_MODEL_ARN)
    event = app_event("ReviewRequested", review_detail(aws_stack, uploaded, []))
    with stubbed("sagemaker-a2i-runtime") as a2i:
        a2i.add_client_error(
            "start_human_loop", service_error_code="ThrottlingException", http_status_code=400
        )
        with pytest.raises(TransientError, match="ThrottlingException"):
            invoke(START_REVIEW, event)
    assert ledger_item(aws_stack, f"LOOP#{loop_name}") is None
    assert ledger_item(aws_stack, f"IMAGE#{image.image_id}") is None

    with stubbed("sagemaker-a2i-runtime") as a2i:
        expect_start(a2i, loop_name)
        assert invoke(START_REVIEW, event)["started"] is True


def test_an_image_deleted_since_detection_is_not_reviewed(aws_stack: Stack, invoke: Invoke) -> None:
    """HeadObject of the deleted key answers 404 (with s3:ListBucket; 403 without): no loop opens."""
    uploaded = upload(aws_stack, "incoming/gone.png", png_bytes(400, 300))
    event = app_event("ReviewRequested", review_detail(aws_stack, uploaded, []))
    clients.s3().delete_object(Bucket=aws_stack.bucket, Key="incoming/gone.png")
    with stubbed("sagemaker-a2i-runtime"):  # no StartHumanLoop
        result = invoke(START_REVIEW, event)
    assert (result["started"], result["status"]) == (False, "SUPERSEDED")
    assert "deleted" in result["reason"]


def test_replay_after_labeling_changes_nothing(aws_stack: Stack, invoke: Invoke) -> None:
    uploaded = upload(aws_stack, "incoming/done.png", png_bytes(400, 300))
    image = image_ref(aws_stack, uploaded)
    loop_name = naming.human_loop_name(image, FAKE_MODEL_ARN)
    ledger = ReviewLedger(aws_stack.table)
    ledger.record_loop(loop_name, "COMPLETED", image_id=image.image_id, label_key=naming.label_key(loop_name))
    ledger.record_image(image, "LABELED", loop_name=loop_name)
    with stubbed("sagemaker-a2i-runtime"):  # no A2I call at all
        invoke(
            START_REVIEW,
            app_event(
                "ReviewRequested", review_detail(aws_stack, uploaded, []), replay_name="archive-replay"
            ),
        )
    image_item = ledger_item(aws_stack, f"IMAGE#{image.image_id}")
    loop = ledger_item(aws_stack, f"LOOP#{loop_name}")
    assert image_item is not None and loop is not None
    assert (image_item["status"], loop["status"]) == ("LABELED", "COMPLETED")


def test_model_labels_outside_labels_are_not_predrawn(
    aws_stack: Stack, invoke: Invoke, labels: list[str], started_loops: list[dict[str, Any]]
) -> None:
    uploaded = upload(aws_stack, "incoming/odd.png", png_bytes(400, 300))
    detections = [
        {
            "label": labels[0],
            "confidence": 40.0,
            "pixelBox": {"left": 1, "top": 2, "width": 30, "height": 40},
        },
        {
            "label": "retired label",
            "confidence": 30.0,
            "pixelBox": {"left": 5, "top": 5, "width": 9, "height": 9},
        },
    ]
    loop_name = naming.human_loop_name(image_ref(aws_stack, uploaded), FAKE_MODEL_ARN)
    with stubbed("sagemaker-a2i-runtime") as a2i:
        expect_start(a2i, loop_name)
        invoke(START_REVIEW, app_event("ReviewRequested", review_detail(aws_stack, uploaded, detections)))
    content = json.loads(started_loops[0]["HumanLoopInput"]["InputContent"])
    assert [box["label"] for box in content["initialValue"]] == [labels[0]]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda event: {**event, "detail-type": "LabelsAppended"}, "ReviewRequested"),
        (lambda event: {**event, "source": "aws.s3"}, "source"),
        (lambda event: {**event, "detail": {**event["detail"], "modelArn": "not-an-arn"}}, "modelArn"),
        (lambda event: {**event, "detail": {k: v for k, v in event["detail"].items() if k != "key"}}, "key"),
        (lambda event: {**event, "detail": {**event["detail"], "imageId": "0" * 32}}, "does not match"),
        (lambda event: {**event, "detail": {**event["detail"], "reasons": []}}, "reasons"),
    ],
)
def test_invalid_events_raise_invalid_event(
    aws_stack: Stack, invoke: Invoke, mutate: Any, message: str
) -> None:
    uploaded = upload(aws_stack, "incoming/bad-event.png", png_bytes(400, 300))
    event = app_event("ReviewRequested", review_detail(aws_stack, uploaded, []))
    with stubbed("sagemaker-a2i-runtime"), pytest.raises(InvalidEvent, match=message):
        invoke(START_REVIEW, mutate(event))


def test_the_schedule_with_no_budget_finds_no_waiting_review(aws_stack: Stack, invoke: Invoke) -> None:
    schedule = {
        "version": "0",
        "id": "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2024-03-02T00:10:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/labelloop-local-OpenWaitingReviews"],
        "detail": {},
    }
    assert invoke(START_REVIEW, schedule) == {"opened": 0, "stillWaiting": 0, "budgetSpent": False}
