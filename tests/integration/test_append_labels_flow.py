"""AppendLabels on moto: a completed A2I review -> one manifest line, counted once, announced once."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from labelloop_core import naming
from labelloop_core.adapters import clients
from labelloop_core.adapters.ledger import ReviewLedger
from labelloop_core.errors import InvalidEvent, TransientError
from labelloop_local.stack.provision import Stack
from tests.support.flows import (
    EventSpy,
    a2i_event,
    a2i_output,
    keys_under,
    ledger_item,
    ledger_items,
    read_json,
    serialize_moto,
    stubbed,
    upload,
    versions_of,
)
from tests.support.moto_stack import (
    FAKE_FLOW_DEFINITION_ARN,
    FAKE_MODEL_ARN,
    REPLACED_FLOW_DEFINITION_ARN,
    Invoke,
)

pytestmark = pytest.mark.integration

APPEND = "AppendLabelsFunction"
WIDTH, HEIGHT = 400, 300
SUBMITTED = "2024-05-01T12:29:59.123Z"


@pytest.fixture
def env(aws_stack: Stack) -> dict[str, str]:
    return aws_stack.env_for(APPEND)


@pytest.fixture
def labels(env: dict[str, str]) -> list[str]:
    return [label.strip() for label in env["LABELS"].split(",")]


@pytest.fixture
def spy(aws_stack: Stack) -> EventSpy:
    return EventSpy(aws_stack)


def start_loop(stack: Stack, key: str) -> tuple[naming.ImageRef, str]:
    """An uploaded image and the ledger state StartReview leaves behind for it."""
    uploaded = upload(stack, key, b"a photo of " + key.encode())
    image = naming.ImageRef(stack.bucket, key, uploaded["version_id"], uploaded["etag"])
    loop_name = naming.human_loop_name(image, FAKE_MODEL_ARN)
    ledger = ReviewLedger(stack.table)
    ledger.record_image(image, "IN_REVIEW", model_arn=FAKE_MODEL_ARN, loop_name=loop_name)
    ledger.record_loop(loop_name, "IN_PROGRESS", image_id=image.image_id)
    return image, loop_name


def output_document(
    image: naming.ImageRef, loop_name: str, labels: list[str], boxes: list[dict[str, Any]]
) -> dict[str, Any]:
    return a2i_output(image, loop_name, labels, boxes, (WIDTH, HEIGHT), SUBMITTED, FAKE_FLOW_DEFINITION_ARN)


def put_output(stack: Stack, loop_name: str, document: Any) -> str:
    key = f"reviews/labelloop-local/2024/05/01/12/30/00/{loop_name}/output.json"
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    clients.s3().put_object(Bucket=stack.bucket, Key=key, Body=body)
    return f"s3://{stack.bucket}/{key}"


def completed(stack: Stack, loop_name: str, document: Any, replay_name: str | None = None) -> dict[str, Any]:
    uri = put_output(stack, loop_name, document)
    return a2i_event(loop_name, "Completed", FAKE_FLOW_DEFINITION_ARN, uri, replay_name=replay_name)


def pending_count(stack: Stack) -> int:
    return ReviewLedger(stack.table).pending_label_count()


def test_completed_review_becomes_one_manifest_line(
    aws_stack: Stack, invoke: Invoke, env: dict[str, str], labels: list[str], spy: EventSpy
) -> None:
    image, loop_name = start_loop(aws_stack, "incoming/pizza night.png")
    boxes = [
        {"label": labels[-1], "left": 10, "top": 20, "width": 100, "height": 50},
        {"label": labels[0], "left": 350.4, "top": 250, "width": 100, "height": 100},  # clamped to 50x50
    ]
    result = invoke(APPEND, completed(aws_stack, loop_name, output_document(image, loop_name, labels, boxes)))

    label_key = f"labels/{loop_name}.json"
    assert (result["status"], result["labelKey"], result["newLabel"]) == ("LABELED", label_key, True)
    line = read_json(aws_stack, label_key)
    attribute = env["LABEL_ATTRIBUTE"]
    assert line["source-ref"] == f"s3://{aws_stack.bucket}/incoming/pizza night.png"
    assert line[attribute]["annotations"] == [
        {"class_id": len(labels) - 1, "left": 10, "top": 20, "width": 100, "height": 50},
        {"class_id": 0, "left": 350, "top": 250, "width": 50, "height": 50},
    ]
    assert line[attribute]["image_size"] == [{"width": WIDTH, "height": HEIGHT, "depth": 3}]
    metadata = line[f"{attribute}-metadata"]
    assert metadata["job-name"] == "labelloop/labelloop-local-flow-3f9a1c2e"
    assert metadata["class-map"] == {str(i): label for i, label in enumerate(labels)}
    assert metadata["creation-date"] == SUBMITTED
    assert metadata["objects"] == [{"confidence": 1}, {"confidence": 1}]

    assert pending_count(aws_stack) == 1
    label = ledger_item(aws_stack, f"LABEL#{loop_name}", "LABEL")
    assert label is not None
    assert (label["pending"], label["label_key"], label["created_at"]) == ("1", label_key, SUBMITTED)
    loop = ledger_item(aws_stack, f"LOOP#{loop_name}")
    image_item = ledger_item(aws_stack, f"IMAGE#{image.image_id}")
    assert loop is not None and image_item is not None
    assert (loop["status"], loop["label_key"], image_item["status"]) == ("COMPLETED", label_key, "LABELED")
    [event] = spy.events("LabelsAppended")
    assert event["detail"] == {
        "schemaVersion": "1",
        "loopName": loop_name,
        "imageId": image.image_id,
        "labelKey": label_key,
        "sourceRef": line["source-ref"],
        "boxCount": 2,
    }


def test_duplicates_and_replays_add_nothing(
    aws_stack: Stack, invoke: Invoke, labels: list[str], spy: EventSpy
) -> None:
    image, loop_name = start_loop(aws_stack, "incoming/replayed.png")
    box = {"label": labels[0], "left": 1, "top": 1, "width": 10, "height": 10}
    event = completed(aws_stack, loop_name, output_document(image, loop_name, labels, [box]))
    first = invoke(APPEND, event)
    original = read_json(aws_stack, f"labels/{loop_name}.json")

    # A different answer now sits at the output path: a replay must still not rewrite the label.
    changed = output_document(image, loop_name, labels, [{**box, "width": 99}])
    later = [
        invoke(APPEND, event),
        invoke(APPEND, completed(aws_stack, loop_name, changed, replay_name="archive-replay")),
    ]
    assert first["newLabel"] is True
    assert [result["newLabel"] for result in later] == [False, False]
    assert read_json(aws_stack, f"labels/{loop_name}.json") == original
    assert versions_of(aws_stack, f"labels/{loop_name}.json") == 1
    assert pending_count(aws_stack) == 1
    assert len(spy.events("LabelsAppended")) == 1


def test_failed_publish_is_retried_without_a_second_label(
    aws_stack: Stack, invoke: Invoke, labels: list[str], spy: EventSpy
) -> None:
    image, loop_name = start_loop(aws_stack, "incoming/unlucky.png")
    event = completed(aws_stack, loop_name, output_document(image, loop_name, labels, []))
    with stubbed("events") as events:
        events.add_response(
            "put_events",
            {
                "FailedEntryCount": 1,
                "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}],
            },
        )
        with pytest.raises(TransientError, match="InternalFailure"):
            invoke(APPEND, event)
    assert keys_under(aws_stack, "labels/") == [f"labels/{loop_name}.json"]
    assert spy.events("LabelsAppended") == []

    result = invoke(APPEND, event)  # the platform's retry
    assert result["newLabel"] is False  # the label was kept from the first attempt...
    assert len(spy.events("LabelsAppended")) == 1  # ...and the announcement is sent now, once
    assert pending_count(aws_stack) == 1
    assert invoke(APPEND, event)["status"] == "DUPLICATE"
    assert len(spy.events("LabelsAppended")) == 1


@pytest.mark.slow
def test_fifty_concurrent_completions_with_duplicates_count_fifty(
    aws_stack: Stack, invoke: Invoke, labels: list[str], spy: EventSpy, monkeypatch: pytest.MonkeyPatch
) -> None:
    serialize_moto(monkeypatch)
    events = []
    for number in range(50):
        image, loop_name = start_loop(aws_stack, f"incoming/batch/{number:02d}.png")
        box = {"label": labels[number % len(labels)], "left": number, "top": 0, "width": 20, "height": 20}
        event = completed(aws_stack, loop_name, output_document(image, loop_name, labels, [box]))
        events += [event, event, {**event, "replay-name": "replay"}]
    invoke(APPEND, {**events[0], "id": "warm-up"})  # one warm container, as Lambda reuses it

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda e: invoke(APPEND, e), events))

    assert all(result["status"] in {"LABELED", "DUPLICATE"} for result in results)
    label_keys = keys_under(aws_stack, "labels/")
    assert len(label_keys) == 50
    assert all(versions_of(aws_stack, key) == 1 for key in label_keys)
    assert pending_count(aws_stack) == 50
    assert len(ledger_items(aws_stack, "LABEL#")) == 50
    assert len(spy.events("LabelsAppended")) == 50


INVALID_ANSWERS = {
    "NO_ANSWER": lambda doc: {**doc, "humanAnswers": []},
    "UNKNOWN_LABEL": lambda doc: _with_boxes(
        doc, [{"label": "pineapple", "left": 1, "top": 1, "width": 5, "height": 5}]
    ),
    "BAD_BOX": lambda doc: _with_frame(doc, {"width": WIDTH * 2, "height": HEIGHT * 2}),
    "SCHEMA": lambda doc: _with_boxes(
        doc, [{"label": "x", "left": "one", "top": 1, "width": 5, "height": 5}]
    ),
    "SCHEMA (not JSON)": lambda doc: b"{this is not json",
}


def _with_boxes(doc: dict[str, Any], boxes: list[dict[str, Any]]) -> dict[str, Any]:
    doc["humanAnswers"][0]["answerContent"]["annotatedResult"]["boundingBoxes"] = boxes
    return doc


def _with_frame(doc: dict[str, Any], frame: dict[str, int]) -> dict[str, Any]:
    doc["humanAnswers"][0]["answerContent"]["annotatedResult"]["inputImageProperties"] = frame
    return doc


@pytest.mark.parametrize("kind", sorted(INVALID_ANSWERS))
def test_invalid_reviews_are_recorded_not_retried(
    aws_stack: Stack, invoke: Invoke, labels: list[str], spy: EventSpy, kind: str
) -> None:
    image, loop_name = start_loop(aws_stack, "incoming/confusing.png")
    document = INVALID_ANSWERS[kind](output_document(image, loop_name, labels, []))
    result = invoke(APPEND, completed(aws_stack, loop_name, document))

    code = kind.split(" ")[0]
    assert result["status"] == "INVALID_REVIEW"
    assert result["reason"].startswith(code)
    loop = ledger_item(aws_stack, f"LOOP#{loop_name}")
    image_item = ledger_item(aws_stack, f"IMAGE#{image.image_id}")
    assert loop is not None and image_item is not None
    assert (loop["status"], loop["failure_reason"]) == ("INVALID_REVIEW", result["reason"])
    assert image_item["status"] == "REVIEW_FAILED"
    assert keys_under(aws_stack, "labels/") == []
    assert pending_count(aws_stack) == 0
    assert spy.events() == []


def test_missing_output_is_recorded(aws_stack: Stack, invoke: Invoke, spy: EventSpy) -> None:
    _, loop_name = start_loop(aws_stack, "incoming/lost.png")
    uri = f"s3://{aws_stack.bucket}/reviews/labelloop-local/x/{loop_name}/output.json"
    result = invoke(APPEND, a2i_event(loop_name, "Completed", FAKE_FLOW_DEFINITION_ARN, uri))
    assert (result["status"], result["reason"].split(":")[0]) == ("INVALID_REVIEW", "NO_OUTPUT")
    assert spy.events() == []


@pytest.mark.parametrize(
    ("status", "loop_status", "image_status"),
    [("Failed", "FAILED", "REVIEW_FAILED"), ("Stopped", "STOPPED", "REVIEW_STOPPED")],
)
def test_failed_and_stopped_loops_are_recorded(
    aws_stack: Stack, invoke: Invoke, spy: EventSpy, status: str, loop_status: str, image_status: str
) -> None:
    image, loop_name = start_loop(aws_stack, "incoming/abandoned.png")
    reason = "The task expired before a worker submitted it"
    result = invoke(APPEND, a2i_event(loop_name, status, FAKE_FLOW_DEFINITION_ARN, failure_reason=reason))
    assert result["status"] == loop_status
    loop = ledger_item(aws_stack, f"LOOP#{loop_name}")
    image_item = ledger_item(aws_stack, f"IMAGE#{image.image_id}")
    assert loop is not None and image_item is not None
    assert loop["status"] == loop_status
    assert reason in loop["failure_reason"]
    assert (image_item["status"], reason in image_item["reason"]) == (image_status, True)
    assert keys_under(aws_stack, "labels/") == []
    assert spy.events() == []


def test_other_flow_definitions_are_ignored(aws_stack: Stack, invoke: Invoke, spy: EventSpy) -> None:
    _, loop_name = start_loop(aws_stack, "incoming/elsewhere.png")
    other = "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/someone-else"
    result = invoke(APPEND, a2i_event(loop_name, "Stopped", other))
    assert result["status"] == "IGNORED"
    loop = ledger_item(aws_stack, f"LOOP#{loop_name}")
    assert loop is not None
    assert loop["status"] == "IN_PROGRESS"


def test_a_loop_of_a_replaced_flow_definition_still_becomes_a_label(
    aws_stack: Stack, invoke: Invoke, labels: list[str]
) -> None:
    image, loop_name = start_loop(aws_stack, "incoming/before-the-update.png")
    box = {"label": labels[0], "left": 10, "top": 20, "width": 100, "height": 50}
    document = a2i_output(
        image, loop_name, labels, [box], (WIDTH, HEIGHT), SUBMITTED, REPLACED_FLOW_DEFINITION_ARN
    )
    uri = put_output(aws_stack, loop_name, document)

    result = invoke(APPEND, a2i_event(loop_name, "Completed", REPLACED_FLOW_DEFINITION_ARN, uri))

    assert result["status"] == "LABELED" and result["newLabel"] is True


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: {**e, "detail": {**e["detail"], "humanLoopStatus": "InProgress"}}, "humanLoopStatus"),
        (
            lambda e: {**e, "detail": {k: v for k, v in e["detail"].items() if k != "humanLoopName"}},
            "humanLoopName",
        ),
        (lambda e: {**e, "detail": {**e["detail"], "humanLoopName": "Not_A_Loop"}}, "humanLoopName"),
        (lambda e: {**e, "source": "labelloop"}, "source"),
        (lambda e: {**e, "detail-type": "Object Created"}, "detail-type"),
    ],
)
def test_schema_invalid_events_raise_invalid_event(
    aws_stack: Stack, invoke: Invoke, spy: EventSpy, mutate: Any, message: str
) -> None:
    _, loop_name = start_loop(aws_stack, "incoming/garbled.png")
    event = a2i_event(
        loop_name, "Completed", FAKE_FLOW_DEFINITION_ARN, f"s3://{aws_stack.bucket}/x/output.json"
    )
    with pytest.raises(InvalidEvent, match=message):
        invoke(APPEND, mutate(event))
    loop = ledger_item(aws_stack, f"LOOP#{loop_name}")
    assert loop is not None
    assert loop["status"] == "IN_PROGRESS"
    assert spy.events() == []
