"""StartReview on in-memory ports: one review per image version and model, the model's boxes pre-drawn."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from labelloop_core import naming
from labelloop_core.config import ConfigError, settings_from_env
from labelloop_core.errors import TransientError
from labelloop_core.geometry import PixelBox
from labelloop_core.naming import ImageRef
from labelloop_core.policy import ReviewReason
from labelloop_core.review_request import BoxedDetection, ReviewRequest
from labelloop_core.services.start_review import StartReviewService, StartReviewSettings, TaskBackend
from tests.support.fakes import FakeReviewBackend, FakeReviewLedger, FakeReviewQueue, FakeStore, FakeTaskStore

MODEL = "arn:aws:rekognition:us-east-1:123456789012:project/pizza/version/pizza.v1/1"
ENV = {
    "BUCKET_NAME": "images",
    "LEDGER_TABLE": "ledger",
    "LABELS": "pizza",
    "REVIEW_BACKEND": "a2i",
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
    service.reviews.open(naming.human_loop_name(IMAGE, MODEL), {}, 0.0)  # opened, ledger never written
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


# -- the review budget --------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 5, 1, 23, 50, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def budgeted(store: FakeStore, per_day: int, clock: Clock) -> StartReviewService:
    settings = settings_from_env(StartReviewSettings, {**ENV, "MAX_REVIEWS_PER_DAY": str(per_day)})
    return StartReviewService(
        settings, FakeReviewBackend(), FakeReviewLedger(), store, FakeReviewQueue(), clock
    )


def image_request(store: FakeStore, name: str, confidence: float) -> ReviewRequest:
    image = ImageRef("images", f"incoming/{name}.jpg", "v1", "etag")
    store.put(image.key, b"a photo", version_id="v1")
    return ReviewRequest(
        image=image,
        model_arn=MODEL,
        prediction_key=f"predictions/{name}.jpg.json",
        width=800,
        height=600,
        detections=(BoxedDetection("pizza", confidence, PixelBox(10, 20, 100, 50)),),
        reasons=(ReviewReason("LOW_CONFIDENCE", "pizza", confidence, 60.0),),
    )


def test_the_priority_is_the_lowest_confidence_and_nothing_detected_comes_first() -> None:
    assert request(BoxedDetection("pizza", 41.5, PixelBox(0, 0, 1, 1))).priority == 41.5
    assert request().priority == 0.0


def test_beyond_the_budget_requests_wait_and_open_in_priority_order_the_next_day(store: FakeStore) -> None:
    clock = Clock()
    service = budgeted(store, 2, clock)
    confidences = {"a": 50.0, "b": 30.0, "c": 10.0, "d": 40.0}
    outcomes = {name: service.process(image_request(store, name, c)) for name, c in confidences.items()}
    assert [outcomes[name].status for name in "abcd"] == ["OPEN", "OPEN", "WAITING", "WAITING"]
    assert len(service.reviews.reviews) == 2  # type: ignore[attr-defined]
    waiting = service.ledger.get_image(image_request(store, "c", 10.0).image.image_id)
    assert waiting.status == "REVIEW_WAITING"  # type: ignore[union-attr]
    assert service.drain().to_dict() == {"opened": 0, "stillWaiting": 2, "budgetSpent": True}
    clock.now += timedelta(minutes=15)  # a new UTC day: budget for two more
    assert service.drain().to_dict() == {"opened": 2, "stillWaiting": 0, "budgetSpent": False}
    priorities = service.reviews.priorities  # type: ignore[attr-defined]
    assert sorted(priorities.values()) == [10.0, 30.0, 40.0, 50.0]  # none dropped
    assert service.queue.opened_on("2024-05-02") == 2  # type: ignore[union-attr]


def test_waiting_requests_open_lowest_confidence_first(store: FakeStore) -> None:
    clock = Clock()
    service = budgeted(store, 1, clock)
    service.process(image_request(store, "first", 50.0))
    for name, confidence in (("high", 45.0), ("low", 5.0), ("mid", 25.0)):
        service.process(image_request(store, name, confidence))
    for _ in range(3):  # one more each day
        clock.now += timedelta(days=1)
        service.drain()
    order = [service.reviews.priorities[name] for name in service.reviews.reviews]  # type: ignore[attr-defined]
    assert order == [50.0, 5.0, 25.0, 45.0]


def test_replays_of_a_waiting_request_keep_one_waiting_review(store: FakeStore) -> None:
    service = budgeted(store, 1, Clock())
    service.process(image_request(store, "a", 50.0))
    waiting = image_request(store, "b", 20.0)
    assert service.process(waiting).status == "WAITING"
    assert service.process(waiting).status == "WAITING"
    assert len(service.queue.waiting("waiting", 10)) == 1  # type: ignore[union-attr]


def test_an_image_replaced_while_waiting_is_recorded_superseded_not_opened(store: FakeStore) -> None:
    clock = Clock()
    service = budgeted(store, 1, clock)
    service.process(image_request(store, "a", 50.0))
    waiting = image_request(store, "b", 20.0)
    service.process(waiting)
    store.put(waiting.image.key, b"another photo", version_id="v2")
    clock.now += timedelta(days=1)
    assert service.drain().to_dict() == {"opened": 1, "stillWaiting": 0, "budgetSpent": False}
    assert len(service.reviews.reviews) == 1  # type: ignore[attr-defined]
    assert service.ledger.get_image(waiting.image.image_id).status == "SUPERSEDED"  # type: ignore[union-attr]


def test_a_review_admitted_before_a_crash_is_opened_by_the_next_run(store: FakeStore) -> None:
    clock = Clock()
    service = budgeted(store, 5, clock)
    waiting = image_request(store, "a", 20.0)
    name = naming.human_loop_name(waiting.image, MODEL)
    service.queue.enqueue(name, waiting.to_detail(), 20.0, clock())  # type: ignore[union-attr]
    service.queue.admit(name, "2024-05-01", 5)  # type: ignore[union-attr]  # then the crash
    assert service.drain().opened == 1
    assert name in service.reviews.reviews  # type: ignore[attr-defined]
    assert service.queue.opened_on("2024-05-01") == 1  # type: ignore[union-attr]  # counted once


def test_the_builtin_backend_opens_one_task_per_review_name() -> None:
    tasks = FakeTaskStore()
    backend = TaskBackend(tasks, 2, 3600, Clock())
    content = {
        "labels": ["pizza"],
        "image": {"bucket": "images", "key": "incoming/a.jpg", "width": 8, "height": 6},
    }
    assert backend.open("ll-a", content, 12.0).created
    assert not backend.open("ll-a", content, 12.0).created
    task = tasks.get("ll-a")
    assert task is not None and (task.answers_needed, task.priority, task.status) == (2, 12.0, "OPEN")


def test_each_backend_needs_its_own_setting() -> None:
    with pytest.raises(ConfigError, match="TASK_TABLE"):
        settings_from_env(StartReviewSettings, {**ENV, "REVIEW_BACKEND": "builtin"})
    without_flow = {key: value for key, value in ENV.items() if key != "FLOW_DEFINITION_ARN"}
    with pytest.raises(ConfigError, match="FLOW_DEFINITION_ARN"):
        settings_from_env(StartReviewSettings, without_flow)
