"""StartReview on in-memory ports: one review per image version and model, the model's boxes pre-drawn."""

from __future__ import annotations

import pytest

from labelloop_core import naming
from labelloop_core.config import settings_from_env
from labelloop_core.errors import TransientError
from labelloop_core.geometry import PixelBox
from labelloop_core.naming import ImageRef
from labelloop_core.policy import ReviewReason
from labelloop_core.review_request import BoxedDetection, ReviewRequest
from labelloop_core.services.start_review import StartReviewService, StartReviewSettings
from tests.support.fakes import FakeReviewBackend, FakeReviewLedger, FakeStore

MODEL = "arn:aws:rekognition:us-east-1:123456789012:project/pizza/version/pizza.v1/1"
ENV = {
    "BUCKET_NAME": "images",
    "LEDGER_TABLE": "ledger",
    "LABELS": "pizza",
    "FLOW_DEFINITION_ARN": "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/flow",
}
IMAGE = ImageRef("images", "incoming/a.jpg", "v1", "etag")


def request(*detections: BoxedDetection) -> ReviewRequest:
    return ReviewRequest(
        image=IMAGE,
        model_arn=MODEL,
        prediction_key="predictions/a.jpg.json",
        width=800,
        height=600,
        detections=detections,
        reasons=(ReviewReason("LOW_CONFIDENCE", "pizza", 40.0, 60.0),),
    )


@pytest.fixture
def store() -> FakeStore:
    store = FakeStore("images")
    store.put(IMAGE.key, b"the detected version", version_id="v1")
    return store


@pytest.fixture
def service(store: FakeStore) -> StartReviewService:
    return StartReviewService(
        settings_from_env(StartReviewSettings, ENV), FakeReviewBackend(), FakeReviewLedger(), store
    )


def test_a_review_opens_with_the_model_boxes_as_the_starting_point(service: StartReviewService) -> None:
    outcome = service.process(request(BoxedDetection("pizza", 40.0, PixelBox(10, 20, 100, 50))))

    assert outcome.started
    assert outcome.loop_name == naming.human_loop_name(IMAGE, MODEL)
    content = service.reviews.reviews[outcome.loop_name]  # type: ignore[attr-defined]
    assert content["initialValue"] == [{"label": "pizza", "left": 10, "top": 20, "width": 100, "height": 50}]
    assert content["taskObject"] == "s3://images/incoming/a.jpg"
    assert service.ledger.get_image(IMAGE.image_id).status == "IN_REVIEW"  # type: ignore[union-attr]


def test_duplicates_and_replays_open_nothing_new(service: StartReviewService) -> None:
    first = service.process(request())
    again = service.process(request())
    assert first.started and not again.started
    assert len(service.reviews.reviews) == 1  # type: ignore[attr-defined]


def test_a_review_opened_before_a_crash_is_found_by_the_retry(service: StartReviewService) -> None:
    service.reviews.open(naming.human_loop_name(IMAGE, MODEL), {})  # opened, ledger never written
    outcome = service.process(request())
    assert not outcome.started
    assert service.ledger.get_loop(outcome.loop_name).status == "IN_PROGRESS"  # type: ignore[union-attr]


def test_a_throttled_backend_raises_and_records_nothing(service: StartReviewService) -> None:
    service.reviews.failures.append(TransientError("throttled"))  # type: ignore[attr-defined]
    with pytest.raises(TransientError):
        service.process(request())
    assert service.ledger.get_image(IMAGE.image_id) is None


def test_labels_the_reviewers_cannot_choose_are_not_predrawn(service: StartReviewService) -> None:
    outcome = service.process(
        request(
            BoxedDetection("pizza", 40.0, PixelBox(10, 20, 100, 50)),
            BoxedDetection("calzone", 40.0, PixelBox(200, 20, 100, 50)),
        )
    )
    content = service.reviews.reviews[outcome.loop_name]  # type: ignore[attr-defined]
    assert [box["label"] for box in content["initialValue"]] == ["pizza"]


@pytest.mark.parametrize("change", ["uploaded again", "deleted"])
def test_a_key_changed_since_detection_is_not_reviewed(
    service: StartReviewService, store: FakeStore, change: str
) -> None:
    if change == "deleted":
        store.delete(IMAGE.key)
    else:
        store.put(IMAGE.key, b"another photo", version_id="v2")

    outcome = service.process(request())

    assert (outcome.started, outcome.status) == (False, "SUPERSEDED")
    assert change in str(outcome.reason)
    assert service.reviews.reviews == {}  # type: ignore[attr-defined]
    assert service.ledger.get_image(IMAGE.image_id).status == "SUPERSEDED"  # type: ignore[union-attr]


def test_a_request_for_another_bucket_opens_nothing(service: StartReviewService) -> None:
    foreign = ReviewRequest(
        image=ImageRef("someone-elses-bucket", "incoming/a.jpg", "v1", "etag"),
        model_arn=MODEL,
        prediction_key="predictions/a.jpg.json",
        width=800,
        height=600,
        detections=(),
        reasons=(),
    )
    outcome = service.process(foreign)
    assert (outcome.started, outcome.status) == (False, "IGNORED")
    assert service.reviews.reviews == {}  # type: ignore[attr-defined]
    assert service.ledger.get_image(foreign.image.image_id) is None
