import json
from datetime import UTC, datetime
from typing import Any

import pytest

from labelloop_core.a2i import (
    ANSWER_ELEMENT,
    answer_to_manifest_line,
    parse_output,
)
from labelloop_core.errors import InvalidReview
from labelloop_core.geometry import PixelBox
from labelloop_core.manifest import ClassMap, validate_line
from labelloop_core.naming import ImageRef
from labelloop_core.policy import LOW_CONFIDENCE, ReviewReason
from labelloop_core.review_input import build_input_content

LABELS = ["pepperoni pizza slice", "cheese pizza slice"]
IMAGE = ImageRef("bucket", "incoming/my pizza+1 ü.jpg", version_id="v1", etag="e1")


def content(detections: list[tuple[str, PixelBox]] | None = None) -> dict[str, Any]:
    detections = [("pepperoni pizza slice", PixelBox(10, 20, 100, 80))] if detections is None else detections
    reasons = [ReviewReason(LOW_CONFIDENCE, "pepperoni pizza slice", 41.0, 60.0)]
    return build_input_content(IMAGE, 640, 480, detections, LABELS, reasons)


def output(boxes: list[dict[str, Any]], **answer: Any) -> dict[str, Any]:
    """An output.json as A2I writes it, echoing our InputContent."""
    human_answer = {
        "answerContent": {
            ANSWER_ELEMENT: {"boundingBoxes": boxes, "inputImageProperties": {"height": 480, "width": 640}}
        },
        "submissionTime": "2024-05-01T10:00:00.123Z",
        "acceptanceTime": "2024-05-01T09:59:00.000Z",
        "timeSpentInSeconds": 60.2,
        "workerId": "worker-1",
        "workerMetadata": {"identityData": {"identityProviderType": "Cognito", "issuer": "x", "sub": "y"}},
    }
    human_answer.update(answer)
    return {
        "flowDefinitionArn": "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/labelloop",
        "humanLoopName": "ll-abc123",
        "inputContent": content(),
        "humanAnswers": [human_answer],
    }


def box(
    label: str = "cheese pizza slice", left: Any = 5, top: Any = 6, width: Any = 50, height: Any = 40
) -> Any:
    return {"label": label, "left": left, "top": top, "width": width, "height": height}


def test_input_content_shows_the_model_boxes_and_carries_what_append_labels_needs() -> None:
    doc = content(
        [
            ("pepperoni pizza slice", PixelBox(600, 400, 100, 100)),
            ("cheese pizza slice", PixelBox(-5, 0, 4, 4)),
        ]
    )
    assert doc["taskObject"] == "s3://bucket/incoming/my pizza+1 ü.jpg"
    assert doc["initialValue"] == [
        {"label": "pepperoni pizza slice", "left": 600, "top": 400, "width": 40, "height": 80}
    ]
    assert doc["labels"] == LABELS
    assert doc["image"] == {
        "bucket": "bucket",
        "key": "incoming/my pizza+1 ü.jpg",
        "versionId": "v1",
        "etag": "e1",
        "imageId": IMAGE.image_id,
        "width": 640,
        "height": 480,
        "depth": 3,
    }
    assert doc["reviewReasons"][0]["code"] == "LOW_CONFIDENCE"
    assert json.loads(json.dumps(doc)) == doc


def test_input_content_refuses_model_labels_the_reviewer_cannot_choose() -> None:
    with pytest.raises(ValueError, match="'anchovy' is not one of the configured labels"):
        content([("anchovy", PixelBox(1, 1, 5, 5))])


def test_parse_output_returns_the_reviewers_boxes() -> None:
    answer = parse_output(output([box(), box("pepperoni pizza slice", 10.4, 20.6, 30.2, 40.5)]))
    assert answer.image == IMAGE
    assert (answer.width, answer.height, answer.worker_id) == (640, 480, "worker-1")
    assert answer.boxes == [
        ("cheese pizza slice", PixelBox(5, 6, 50, 40)),
        ("pepperoni pizza slice", PixelBox(10, 21, 31, 40)),
    ]
    assert answer.submitted_at == datetime(2024, 5, 1, 10, 0, 0, 123000, tzinfo=UTC)
    assert answer.human_loop_name == "ll-abc123"


def test_boxes_are_clamped_and_boxes_outside_the_image_are_counted_as_dropped() -> None:
    answer = parse_output(
        output([box(left=-10, top=450, width=100, height=100), box(left=700), box(width=0)])
    )
    assert answer.boxes == [("cheese pizza slice", PixelBox(0, 450, 90, 30))]
    assert answer.dropped_boxes == 2


def test_no_boxes_is_a_valid_no_objects_answer() -> None:
    answer = parse_output(output([]))
    line = answer_to_manifest_line(answer, ClassMap.from_labels(LABELS), "pizza_BB", "ll-abc123")
    assert line["pizza_BB"]["annotations"] == []
    assert validate_line(line) == []


def test_answer_becomes_a_valid_manifest_line_dated_by_the_submission() -> None:
    answer = parse_output(output([box(), box("pepperoni pizza slice")]))
    line = answer_to_manifest_line(answer, ClassMap.from_labels(LABELS), "pizza_BB", "ll-abc123")
    assert line["source-ref"] == "s3://bucket/incoming/my pizza+1 ü.jpg"
    assert [a["class_id"] for a in line["pizza_BB"]["annotations"]] == [1, 0]
    metadata = line["pizza_BB-metadata"]
    assert metadata["creation-date"] == "2024-05-01T10:00:00.123Z"
    assert metadata["job-name"] == "labeling-job/ll-abc123"
    assert validate_line(line, ClassMap.from_labels(LABELS), "pizza_BB") == []


def test_label_missing_from_the_current_configuration_is_refused() -> None:
    answer = parse_output(output([box()]))
    with pytest.raises(InvalidReview) as error:
        answer_to_manifest_line(answer, ClassMap.from_labels(["pepperoni pizza slice"]), "pizza_BB", "ll-abc")
    assert error.value.code == "UNKNOWN_LABEL"


def without_answers(doc: dict[str, Any]) -> dict[str, Any]:
    doc.pop("humanAnswers")
    return doc


def stringified_content(doc: dict[str, Any]) -> dict[str, Any]:
    doc["inputContent"] = "{oops"
    return doc


@pytest.mark.parametrize(
    ("doc", "code", "message"),
    [
        (without_answers(output([])), "NO_ANSWER", "no human answer"),
        ({**output([]), "humanAnswers": []}, "NO_ANSWER", "no human answer"),
        (output([box("anchovy")]), "UNKNOWN_LABEL", "'anchovy'"),
        (output([box(left="ten")]), "BAD_BOX", "numeric"),
        (output([box(left=float("nan"))]), "BAD_BOX", "numeric"),
        (output([{"left": 1, "top": 1, "width": 5, "height": 5}]), "BAD_BOX", "no label"),
        (output([box()] * 51), "BAD_BOX", "at most 50"),
        (output([], answerContent={"somethingElse": {}}), "SCHEMA", "annotatedResult"),
        (
            output(
                [],
                answerContent={
                    ANSWER_ELEMENT: {
                        "boundingBoxes": [],
                        "inputImageProperties": {"width": 480, "height": 640},
                    }
                },
            ),
            "BAD_BOX",
            "480x640",
        ),
        (
            output(
                [], answerContent={ANSWER_ELEMENT: {"inputImageProperties": {"width": 640, "height": 480}}}
            ),
            "SCHEMA",
            "boundingBoxes",
        ),
        (output([], submissionTime="soon"), "SCHEMA", "submissionTime"),
        ({**output([]), "inputContent": {"taskObject": "s3://b/k"}}, "SCHEMA", "no image object"),
        (stringified_content(output([])), "SCHEMA", "not JSON"),
        ("not a document", "SCHEMA", "not a JSON object"),
    ],
)
def test_unusable_outputs_raise_invalid_review_with_a_code(doc: Any, code: str, message: str) -> None:
    with pytest.raises(InvalidReview) as error:
        parse_output(doc)
    assert error.value.code == code
    assert message in error.value.message


def test_input_content_sent_as_a_json_string_is_accepted() -> None:
    doc = output([box()])
    doc["inputContent"] = json.dumps(doc["inputContent"])
    assert parse_output(doc).image == IMAGE


def test_answer_without_image_properties_uses_the_recorded_size() -> None:
    doc = output([], answerContent={ANSWER_ELEMENT: {"boundingBoxes": [box(width=1000)]}})
    assert parse_output(doc).boxes == [("cheese pizza slice", PixelBox(5, 6, 635, 40))]
