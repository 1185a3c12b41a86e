"""AppendLabels on in-memory ports: a finished review becomes one label line, counted and announced once."""

from __future__ import annotations

import json
from typing import Any

import pytest

from labelloop_core import naming
from labelloop_core.config import settings_from_env
from labelloop_core.naming import ImageRef
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
