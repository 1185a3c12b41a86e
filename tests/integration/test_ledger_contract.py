"""The ledger contract: the in-memory fakes used by the service tests and the DynamoDB adapters on
moto give the same answers for the same scenarios (so a fast test with a fake means something)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from labelloop_core.adapters.ledger import ReviewLedger, TrainingLedger
from labelloop_core.evaluation import EvaluationMetrics
from labelloop_core.ledger import ClaimResult, Decision, PendingLabel
from labelloop_core.naming import ImageRef
from labelloop_local.stack.provision import Stack
from tests.support.fakes import FakeReviewLedger, FakeTrainingLedger

pytestmark = pytest.mark.integration

IMAGE = ImageRef("images", "incoming/a.jpg", "v1", "etag")
NOW = datetime(2024, 5, 1, 10, tzinfo=UTC)
ARN = "arn:aws:rekognition:us-east-1:123456789012:project/p/version/v1/1"


@pytest.fixture(params=["fake", "dynamodb"])
def reviews(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "fake":
        yield FakeReviewLedger()
    else:
        stack: Stack = request.getfixturevalue("aws_stack")
        yield ReviewLedger(stack.table)


@pytest.fixture(params=["fake", "dynamodb"])
def trainings(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "fake":
        yield FakeTrainingLedger()
    else:
        stack: Stack = request.getfixturevalue("aws_stack")
        yield TrainingLedger(stack.table)


def test_an_image_status_never_moves_backwards(reviews: Any) -> None:
    assert reviews.record_image(
        IMAGE, "REVIEW_REQUESTED", reason="LOW_CONFIDENCE", model_arn=ARN, loop_name="ll-1"
    )
    assert reviews.record_image_status(IMAGE.image_id, "LABELED")
    assert not reviews.record_image(IMAGE, "REVIEW_REQUESTED", reason="LOW_CONFIDENCE")
    record = reviews.get_image(IMAGE.image_id)
    assert (record.status, record.reason, record.loop_name, record.reviewed) == (
        "LABELED",
        None,
        "ll-1",
        True,
    )


def test_a_loop_keeps_its_failure_reason_until_a_status_without_one(reviews: Any) -> None:
    reviews.record_loop("ll-1", "IN_PROGRESS", image_id=IMAGE.image_id)
    reviews.record_loop("ll-1", "FAILED", failure_reason="Expired")
    assert reviews.get_loop("ll-1").failure_reason == "Expired"
    assert not reviews.record_loop("ll-1", "IN_PROGRESS")
    assert reviews.get_loop("ll-1").image_id == IMAGE.image_id


def test_a_label_is_recorded_and_counted_once(reviews: Any) -> None:
    assert reviews.put_label(
        "ll-1", "labels/ll-1.json", "s3://images/incoming/a.jpg", "2024-05-01T10:00:00.000Z"
    )
    assert not reviews.put_label(
        "ll-1", "labels/ll-1.json", "s3://images/incoming/a.jpg", "2024-05-01T10:00:00.000Z"
    )
    assert reviews.pending_label_count() == 1
    label = reviews.get_label("ll-1")
    assert (label.pending, label.event_sent, label.label_key) == (True, False, "labels/ll-1.json")


def test_the_right_to_announce_a_label_is_taken_once_and_can_be_given_back(reviews: Any) -> None:
    assert not reviews.claim_label_event("ll-unknown")
    reviews.put_label("ll-1", "labels/ll-1.json", "s3://images/incoming/a.jpg", "2024-05-01T10:00:00.000Z")
    assert reviews.claim_label_event("ll-1")
    assert not reviews.claim_label_event("ll-1")
    reviews.release_label_event("ll-1")
    assert reviews.claim_label_event("ll-1")


def test_a_window_is_claimed_once_and_no_claim_passes_a_running_training(trainings: Any) -> None:
    assert trainings.claim("w1", NOW) is ClaimResult.CLAIMED
    assert trainings.claim("w1", NOW) is ClaimResult.CLAIMED  # the retry of the same tick resumes it
    assert trainings.claim("w2", NOW) is ClaimResult.TRAINING_IN_PROGRESS
    trainings.mark_training("w1", ARN, "v1", "manifests/train-v1.manifest", None, NOW)
    assert trainings.claim("w1", NOW) is ClaimResult.WINDOW_USED
    assert trainings.claim("w2", NOW + timedelta(hours=2)) is ClaimResult.TRAINING_IN_PROGRESS
    lock = trainings.read_lock()
    assert (lock.status, lock.version_arn, lock.last_manifest_key) == (
        "TRAINING",
        ARN,
        "manifests/train-v1.manifest",
    )


def test_a_released_claim_frees_the_window_and_a_stale_claim_is_taken_over(trainings: Any) -> None:
    trainings.claim("w1", NOW)
    trainings.release_claim("w1", "too few usable labels", NOW)
    assert trainings.read_lock().status == "RELEASED"
    assert trainings.claim("w1", NOW) is ClaimResult.CLAIMED
    assert trainings.claim("w2", NOW + timedelta(minutes=16)) is ClaimResult.CLAIMED  # w1's claim went stale


def test_the_promotion_steps_apply_only_to_the_training_in_the_lock(trainings: Any) -> None:
    trainings.claim("w1", NOW)
    trainings.mark_training("w1", ARN, "v1", None, None, NOW)
    assert not trainings.mark_starting(ARN.replace("v1", "v0"), "none", {}, NOW)
    assert trainings.mark_starting(ARN, "none", {"f1": 0.9}, NOW)
    assert trainings.finish(ARN, "PROMOTED", "better", NOW)
    assert not trainings.finish(ARN, "REJECTED", "a replay", NOW)
    assert trainings.read_lock().status == "PROMOTED"


def test_labels_are_settled_once_and_leave_the_pending_set(
    trainings: Any, request: pytest.FixtureRequest
) -> None:
    if isinstance(trainings, FakeTrainingLedger):
        for number in range(3):
            trainings.add_label(f"ll-{number}", f"2024-05-01T10:0{number}:00.000Z")
    else:
        reviews = ReviewLedger(trainings.table.name)
        for number in range(3):
            reviews.put_label(
                f"ll-{number}", f"labels/ll-{number}.json", "s3://b/k", f"2024-05-01T10:0{number}:00.000Z"
            )
    pending = list(trainings.pending_labels())
    assert [label.loop_name for label in pending] == ["ll-0", "ll-1", "ll-2"]
    assert trainings.pending_count() == 3
    assert trainings.settle_labels(pending[:2], "v1", {"ll-1": "bad boxes"}, NOW) == 2
    assert trainings.settle_labels(pending, "v1", {}, NOW) == 1  # a replay settles only the rest
    assert trainings.pending_count() == 0
    assert list(trainings.pending_labels()) == []
    assert isinstance(pending[0], PendingLabel)


def test_a_decision_reads_back_as_written(trainings: Any) -> None:
    decision = Decision(
        "PROMOTED",
        "better",
        ARN,
        "2024-05-01T10:00:00+00:00",
        EvaluationMetrics(0.9, 0.8, 0.7, {"pizza": 0.9}),
        "none",
        None,
    )
    trainings.record_decision("v1", decision)
    assert trainings.read_decision("v1") == decision
    assert trainings.read_decision("v2") is None
