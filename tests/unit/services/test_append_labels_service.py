"""AppendLabels on in-memory ports: a finished review becomes one label line, counted and announced once."""

from __future__ import annotations

import json
from typing import Any

import pytest

from labelloop_core import naming
from labelloop_core.config import settings_from_env
from labelloop_core.inbound.review_finished import ReviewFinished
from labelloop_core.naming import ImageRef
from labelloop_core.schemas import validate
from labelloop_core.services.append_labels import AppendLabelsService, AppendLabelsSettings
from tests.support.fakes import FakePublisher, FakeReviewLedger, FakeStore
from tests.support.flows import a2i_output

MODEL = "arn:aws:rekognition:us-east-1:123456789012:project/pizza/version/pizza.v1/1"
FLOW_PREFIX = "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/labelloop-local-flow-"
FLOW = FLOW_PREFIX + "3f9a1c2e"
ENV = {
    "BUCKET_NAME": "images",
    "LEDGER_TABLE": "ledger",
    "EVENT_BUS_NAME": "bus",
    "LABELS": "pizza,crust",
    "LABEL_ATTRIBUTE": "pizza_BB",
    "FLOW_DEFINITION_ARN_PREFIX": FLOW_PREFIX,
}
BOX = {"label": "pizza", "left": 10, "top": 20, "width": 100, "height": 50}


class World:
    def __init__(self) -> None:
        self.store = FakeStore("images")
        self.ledger = FakeReviewLedger()
        self.publisher = FakePublisher()
        self.service = AppendLabelsService(
            settings_from_env(AppendLabelsSettings, ENV), self.store, self.ledger, self.publisher
        )

    def review(self, key: str = "incoming/a.jpg") -> tuple[ImageRef, str]:
        image = ImageRef("images", key, "v1", "etag")
        self.store.put(key, b"the reviewed photo", version_id="v1")
        loop_name = naming.human_loop_name(image, MODEL)
        self.ledger.record_image(image, "IN_REVIEW", model_arn=MODEL, loop_name=loop_name)
        self.ledger.record_loop(loop_name, "IN_PROGRESS", image_id=image.image_id)
        return image, loop_name

    def completed(self, loop_name: str, document: Any, flow: str = FLOW) -> dict[str, Any]:
        key = f"reviews/flow/2024/05/01/12/30/00/{loop_name}/output.json"
        self.store.put(key, document if isinstance(document, bytes) else json.dumps(document).encode())
        return {
            "humanLoopName": loop_name,
            "humanLoopStatus": "Completed",
            "flowDefinitionArn": flow,
            "humanLoopOutput": {"outputS3Uri": f"s3://images/{key}"},
        }


@pytest.fixture
def world() -> World:
    return World()


def test_a_completed_review_becomes_one_label_line(world: World) -> None:
    image, loop_name = world.review()
    detail = world.completed(loop_name, a2i_output(image, loop_name, ["pizza", "crust"], [BOX]))

    outcome = world.service.process(detail)

    assert (outcome.status, outcome.new_label, outcome.published) == ("LABELED", True, True)
    line = world.store.document(f"labels/{loop_name}.json")
    assert line["source-ref"] == "s3://images/incoming/a.jpg"
    assert line["pizza_BB"]["annotations"] == [
        {"left": 10, "top": 20, "width": 100, "height": 50, "class_id": 0}
    ]
    assert world.ledger.pending_label_count() == 1
    assert world.ledger.get_image(image.image_id).status == "LABELED"  # type: ignore[union-attr]
    [appended] = world.publisher.of_type("LabelsAppended")
    assert (appended["loopName"], appended["boxCount"]) == (loop_name, 1)


def test_duplicates_and_replays_add_no_line_count_or_event(world: World) -> None:
    image, loop_name = world.review()
    detail = world.completed(loop_name, a2i_output(image, loop_name, ["pizza", "crust"], [BOX]))
    world.service.process(detail)

    assert world.service.process(detail).status == "DUPLICATE"
    assert world.ledger.pending_label_count() == 1
    assert len(world.publisher.of_type("LabelsAppended")) == 1


def test_a_failed_publish_is_sent_by_the_retry_without_a_second_label(world: World) -> None:
    image, loop_name = world.review()
    detail = world.completed(loop_name, a2i_output(image, loop_name, ["pizza", "crust"], [BOX]))
    world.publisher.failures.append(RuntimeError("PutEvents failed"))

    with pytest.raises(RuntimeError):
        world.service.process(detail)
    retried = world.service.process(detail)

    assert retried.published and not retried.new_label
    assert world.ledger.pending_label_count() == 1
    assert len(world.publisher.of_type("LabelsAppended")) == 1


@pytest.mark.parametrize(
    ("document", "code"),
    [
        (b"not json", "SCHEMA"),
        ({"humanLoopName": "x"}, "SCHEMA"),
    ],
)
def test_unusable_output_is_recorded_as_an_invalid_review(world: World, document: Any, code: str) -> None:
    image, loop_name = world.review()
    outcome = world.service.process(world.completed(loop_name, document))
    assert outcome.status == "INVALID_REVIEW" and outcome.reason and outcome.reason.startswith(code)
    assert world.ledger.get_loop(loop_name).status == "INVALID_REVIEW"  # type: ignore[union-attr]
    assert world.ledger.get_image(image.image_id).status == "REVIEW_FAILED"  # type: ignore[union-attr]
    assert world.store.keys("labels/") == []


def test_a_box_with_a_label_nobody_offered_is_an_invalid_review(world: World) -> None:
    image, loop_name = world.review()
    document = a2i_output(image, loop_name, ["pizza", "crust"], [{**BOX, "label": "anchovy"}])
    outcome = world.service.process(world.completed(loop_name, document))
    assert outcome.status == "INVALID_REVIEW" and "UNKNOWN_LABEL" in str(outcome.reason)


@pytest.mark.parametrize(("status", "recorded"), [("Failed", "REVIEW_FAILED"), ("Stopped", "REVIEW_STOPPED")])
def test_reviews_that_ended_without_an_answer_are_recorded(world: World, status: str, recorded: str) -> None:
    image, loop_name = world.review()
    detail = {
        "humanLoopName": loop_name,
        "humanLoopStatus": status,
        "flowDefinitionArn": FLOW,
        "failureCode": "Expired",
        "failureReason": "not completed in time",
    }
    outcome = world.service.process(detail)
    assert outcome.reason == "Expired not completed in time"
    assert world.ledger.get_image(image.image_id).status == recorded  # type: ignore[union-attr]


def test_a_review_of_a_replaced_flow_definition_of_this_stack_still_becomes_a_label(world: World) -> None:
    image, loop_name = world.review()
    replaced = FLOW_PREFIX + "0badc0de"
    detail = world.completed(
        loop_name, a2i_output(image, loop_name, ["pizza", "crust"], [BOX]), flow=replaced
    )
    outcome = world.service.process(detail)
    assert outcome.status == "LABELED"
    job = world.store.document(f"labels/{loop_name}.json")["pizza_BB-metadata"]["job-name"]
    assert job == "labelloop/labelloop-local-flow-0badc0de"


def test_reviews_of_another_flow_definition_are_ignored(world: World) -> None:
    image, loop_name = world.review()
    other = "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/someone-else-flow-3f9a1c2e"
    detail = world.completed(loop_name, a2i_output(image, loop_name, ["pizza"], [BOX]), flow=other)
    assert world.service.process(detail).status == "IGNORED"
    assert world.store.keys("labels/") == []


@pytest.mark.parametrize("change", ["uploaded again", "deleted"])
def test_a_review_of_a_version_since_replaced_writes_no_label(world: World, change: str) -> None:
    image, loop_name = world.review()
    detail = world.completed(loop_name, a2i_output(image, loop_name, ["pizza", "crust"], [BOX]))
    if change == "deleted":
        world.store.delete(image.key)
    else:
        world.store.put(image.key, b"another photo", version_id="v2")

    outcome = world.service.process(detail)

    assert outcome.status == "SUPERSEDED" and change in str(outcome.reason)
    assert world.store.keys("labels/") == [] and world.ledger.pending_label_count() == 0
    assert world.ledger.get_image(image.image_id).status == "SUPERSEDED"  # type: ignore[union-attr]


# -- several reviewers, and the built-in backend's ReviewCompleted -------------------------------------
def with_reviewers(document: dict[str, Any], *answers: tuple[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """`document` with one humanAnswers entry per (worker, boxes), as A2I and the built-in backend write."""
    (template,) = document["humanAnswers"]
    document["humanAnswers"] = [
        {
            **template,
            "workerId": worker,
            "submissionTime": f"2024-05-01T12:2{index}:00.000Z",
            "answerContent": {
                "annotatedResult": {**template["answerContent"]["annotatedResult"], "boundingBoxes": boxes}
            },
        }
        for index, (worker, boxes) in enumerate(answers)
    ]
    return document


def test_three_reviewers_answers_are_consolidated_into_one_line_with_their_agreement(world: World) -> None:
    image, loop_name = world.review()
    other = {"label": "pizza", "left": 200, "top": 100, "width": 80, "height": 60}
    stray = {"label": "crust", "left": 300, "top": 200, "width": 50, "height": 50}
    document = with_reviewers(
        a2i_output(image, loop_name, ["pizza", "crust"], []),
        ("w1", [BOX, other]),
        ("w2", [{**BOX, "left": 14}, other, stray]),
        ("w3", [{**BOX, "left": 12}]),
    )
    outcome = world.service.process(world.completed(loop_name, document))

    assert outcome.status == "LABELED"
    line = world.store.document(f"labels/{loop_name}.json")
    assert line["pizza_BB"]["annotations"] == [
        {"left": 12, "top": 20, "width": 100, "height": 50, "class_id": 0},
        {"left": 200, "top": 100, "width": 80, "height": 60, "class_id": 0},
    ]
    confidences = [item["confidence"] for item in line["pizza_BB-metadata"]["objects"]]
    assert confidences[0] > 0.9 and round(confidences[1], 3) == round(2 / 3, 3)
    assert line["pizza_BB-metadata"]["creation-date"] == "2024-05-01T12:22:00.000Z"  # the last answer
    [appended] = world.publisher.of_type("LabelsAppended")
    assert (appended["reviewers"], appended["droppedBoxes"], appended["lowAgreement"]) == (3, 1, True)
    label = world.ledger.get_label(loop_name)
    assert label is not None and label.consolidation == {
        key: appended[key] for key in ("reviewers", "agreement", "droppedBoxes", "lowAgreement")
    }


def test_a_single_reviewer_keeps_full_confidence_and_no_consolidation_figures(world: World) -> None:
    image, loop_name = world.review()
    world.service.process(world.completed(loop_name, a2i_output(image, loop_name, ["pizza"], [BOX])))
    line = world.store.document(f"labels/{loop_name}.json")
    assert line["pizza_BB-metadata"]["objects"] == [{"confidence": 1}]
    [appended] = world.publisher.of_type("LabelsAppended")
    assert "reviewers" not in appended
    assert world.ledger.get_label(loop_name).consolidation is None  # type: ignore[union-attr]


def review_completed(loop_name: str, status: str = "Completed", **extra: Any) -> ReviewFinished:
    detail = {
        "schemaVersion": "1",
        "reviewName": loop_name,
        "status": status,
        "answers": 1,
        "answersNeeded": 1,
        "finishedAt": "2024-05-01T12:29:59.123Z",
        **extra,
    }
    validate("review-completed", detail)
    return ReviewFinished.from_review_completed(detail)


def test_a_builtin_review_completed_takes_the_same_path_as_an_a2i_one(world: World) -> None:
    image, loop_name = world.review()
    document = a2i_output(image, loop_name, ["pizza", "crust"], [BOX])
    del document["flowDefinitionArn"]  # the built-in backend runs no flow definition
    key = f"reviews/builtin/2024/05/01/12/00/00/{loop_name}/output.json"
    world.store.put(key, json.dumps(document).encode())
    outcome = world.service.finish(review_completed(loop_name, outputS3Uri=f"s3://images/{key}"))
    assert (outcome.status, outcome.new_label) == ("LABELED", True)
    line = world.store.document(f"labels/{loop_name}.json")
    assert line["pizza_BB-metadata"]["job-name"] == "labelloop/builtin"
    assert (
        world.service.finish(review_completed(loop_name, outputS3Uri=f"s3://images/{key}")).status
        == "DUPLICATE"
    )


def test_an_expired_builtin_review_is_recorded_like_an_expired_a2i_loop(world: World) -> None:
    image, loop_name = world.review()
    expired = review_completed(
        loop_name, "Failed", failureCode="Expired", failureReason="the review expired with 0 of 1 answers"
    )
    outcome = world.service.finish(expired)
    assert outcome.status == "FAILED" and outcome.reason == "Expired the review expired with 0 of 1 answers"
    assert world.ledger.get_image(image.image_id).status == "REVIEW_FAILED"  # type: ignore[union-attr]
    assert world.store.keys("labels/") == []
