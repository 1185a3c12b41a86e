"""Detect's decisions on in-memory ports: what is recorded, written and published for each image, and
what becomes of each message of a DetectQueue batch (done, sent back to wait, retried, dead-lettered)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from labelloop_core import naming
from labelloop_core.config import settings_from_env
from labelloop_core.errors import AccessDenied, ModelNotReady, Throttled, TransientError
from labelloop_core.geometry import RatioBox
from labelloop_core.inbound import uploads
from labelloop_core.naming import ImageRef
from labelloop_core.policy import Detection
from labelloop_core.services.detect import DetectService, DetectSettings
from tests.support.fakes import (
    FakeDetector,
    FakeModelLedger,
    FakeModelRegistry,
    FakePublisher,
    FakeQueue,
    FakeReviewLedger,
    FakeStore,
)
from tests.support.flows import jpeg_bytes, png_bytes, png_header_only, s3_event_for

MODEL = "arn:aws:rekognition:us-east-1:123456789012:project/pizza/version/pizza.v1/1"
PROJECT = "arn:aws:rekognition:us-east-1:123456789012:project/pizza/1"
ENV = {
    "BUCKET_NAME": "images",
    "LEDGER_TABLE": "ledger",
    "EVENT_BUS_NAME": "bus",
    "ACTIVE_MODEL_PARAMETER": "/active",
    "PROJECT_ARN": PROJECT,
    "LABELS": "pizza",
    "DETECT_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/detect",
    "DEAD_LETTER_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/detect-dlq",
}
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
SLICE = RatioBox(0.1, 0.2, 0.5, 0.25)


class World:
    def __init__(self, model: str | None = MODEL, **env: str) -> None:
        self.store = FakeStore("images")
        self.ledger = FakeReviewLedger()
        self.models = FakeModelRegistry(model)
        self.detector = FakeDetector()
        self.publisher = FakePublisher()
        self.queue = FakeQueue()
        self.dead_letters = FakeQueue()
        self.activity = FakeModelLedger()
        self.service = DetectService(
            settings_from_env(DetectSettings, {**ENV, **env}),
            self.store,
            self.ledger,
            self.models,
            self.detector,
            self.publisher,
            queue=self.queue,
            dead_letters=self.dead_letters,
            activity=self.activity,
            clock=lambda: NOW,
            rng=lambda: 0.5,
        )

    def upload(self, key: str, body: bytes, version: str = "v1") -> ImageRef:
        self.store.put(key, body, version_id=version)
        return ImageRef("images", key, version, "etag-" + version)


@pytest.fixture
def world() -> World:
    return World()


def test_a_confident_detection_is_predicted_without_review(world: World) -> None:
    image = world.upload("incoming/a.png", png_bytes(400, 200))
    world.detector.answers["incoming/a.png"] = [Detection("pizza", 91.0, SLICE)]

    outcome = world.service.process(image)

    assert outcome.status == "PREDICTED"
    document = world.store.document("predictions/a.png.json")
    assert document["detections"][0]["pixelBox"] == {"left": 40, "top": 40, "width": 200, "height": 50}
    assert world.ledger.get_image(image.image_id).status == "PREDICTED"  # type: ignore[union-attr]
    assert world.publisher.events == []


def test_a_low_confidence_detection_requests_one_review_with_its_box(world: World) -> None:
    image = world.upload("incoming/low.png", png_bytes(400, 200))
    world.detector.answers["incoming/low.png"] = [Detection("pizza", 41.5, SLICE)]

    outcome = world.service.process(image)

    assert outcome.status == "REVIEW_REQUESTED"
    assert outcome.loop_name == naming.human_loop_name(image, MODEL)
    [request] = world.publisher.of_type("ReviewRequested")
    assert request["detections"] == [
        {
            "label": "pizza",
            "confidence": 41.5,
            "pixelBox": {"left": 40, "top": 40, "width": 200, "height": 50},
        }
    ]
    assert request["reasons"][0]["code"] == "LOW_CONFIDENCE"


def test_detections_below_min_confidence_are_not_asked_for(world: World) -> None:
    image = world.upload("incoming/a.png", png_bytes())
    world.service.process(image)
    assert world.detector.calls[0][2] == 10.0  # MIN_CONFIDENCE default, as in template.yaml


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "EMPTY"),
        (b"GIF89a" + b"\0" * 100, "NOT_AN_IMAGE"),
        (png_header_only(32, 32), "TOO_SMALL"),
        (png_header_only(5000, 300), "TOO_LARGE_PIXELS"),
        (png_header_only(4000, 100), "BAD_ASPECT_RATIO"),
    ],
)
def test_bad_images_are_rejected_and_recorded_not_detected(world: World, body: bytes, code: str) -> None:
    image = world.upload("incoming/bad.png", body)

    outcome = world.service.process(image)

    assert (outcome.status, outcome.reason) == ("REJECTED", code)
    assert world.store.document("predictions/bad.png.json")["rejection"]["code"] == code
    assert world.detector.calls == []
    assert world.ledger.get_image(image.image_id).status == "REJECTED"  # type: ignore[union-attr]


def test_a_deleted_object_is_recorded_as_missing(world: World) -> None:
    outcome = world.service.process(ImageRef("images", "incoming/gone.png", "v1"))
    assert (outcome.status, outcome.reason) == ("REJECTED", "OBJECT_MISSING")


def test_a_jpeg_whose_frame_header_is_far_in_is_read_again_longer(world: World) -> None:
    image = world.upload("incoming/icc.jpg", jpeg_bytes(640, 480, icc_profile_bytes=200_000))
    assert world.service.process(image).status == "REVIEW_REQUESTED"  # nothing detected
    assert world.store.document("predictions/icc.jpg.json")["imageInfo"]["width"] == 640


@pytest.mark.parametrize("error", [TransientError("throttled"), AccessDenied("cannot read the image")])
def test_errors_that_need_a_retry_raise_and_record_nothing(world: World, error: Exception) -> None:
    image = world.upload("incoming/a.png", png_bytes())
    world.detector.answers["incoming/a.png"] = error

    with pytest.raises(type(error)):
        world.service.process(image)

    assert world.store.keys("predictions/") == []
    assert world.ledger.get_image(image.image_id) is None


def test_without_a_model_every_image_goes_to_review_for_the_first_training() -> None:
    world = World(model=None)
    image = world.upload("incoming/a.png", png_bytes())

    outcome = world.service.process(image)

    assert outcome.status == "REVIEW_REQUESTED"
    assert outcome.loop_name == naming.human_loop_name(image, PROJECT)
    assert world.detector.calls == []
    assert world.publisher.of_type("ReviewRequested")[0]["reasons"][0]["code"] == "NO_MODEL"


def test_a_duplicate_of_a_predicted_image_changes_nothing(world: World) -> None:
    image = world.upload("incoming/a.png", png_bytes())
    world.detector.answers["incoming/a.png"] = [Detection("pizza", 91.0, SLICE)]
    world.service.process(image)

    assert world.service.process(image).status == "ALREADY_PROCESSED"
    assert len(world.detector.calls) == 1


def test_a_replayed_review_request_names_the_model_that_made_the_prediction(world: World) -> None:
    image = world.upload("incoming/low.png", png_bytes())
    world.detector.answers["incoming/low.png"] = [Detection("pizza", 30.0, SLICE)]
    first = world.service.process(image)
    world.models.active = MODEL.replace("pizza.v1", "pizza.v2")  # promoted since

    again = world.service.process(image)

    assert again.loop_name == first.loop_name
    first_request, second_request = world.publisher.of_type("ReviewRequested")
    assert first_request == second_request
    assert len(world.detector.calls) == 1


def test_an_image_under_review_is_not_detected_again(world: World) -> None:
    image = world.upload("incoming/a.png", png_bytes())
    world.ledger.record_image(image, "IN_REVIEW", model_arn=MODEL, loop_name="ll-x")

    assert world.service.process(image).status == "ALREADY_REVIEWED"
    assert world.detector.calls == []


def test_objects_outside_incoming_or_another_bucket_are_ignored(world: World) -> None:
    assert world.service.process(ImageRef("images", "labels/x.json", "v1")).status == "IGNORED"
    assert world.service.process(ImageRef("other-bucket", "incoming/x.png", "v1")).status == "IGNORED"
    assert world.store.keys() == []


def test_an_interrupted_upload_is_rejected_before_any_paid_call() -> None:
    world = World(model=None)  # with no model it would otherwise go straight to (paid) review
    whole = jpeg_bytes(640, 480)
    image = world.upload("incoming/cut.jpg", whole[: len(whole) // 2])
    outcome = world.service.process(image)
    assert (outcome.status, outcome.reason) == ("REJECTED", "TRUNCATED")
    assert world.publisher.events == []


def test_a_key_too_long_for_its_prediction_document_is_recorded_in_the_ledger(world: World) -> None:
    key = "incoming/" + "k" * (1024 - len("incoming/") - 4) + ".png"  # 1024 bytes: S3's longest key
    image = world.upload(key, png_bytes())

    outcome = world.service.process(image)

    assert (outcome.status, outcome.reason, outcome.prediction_key) == ("REJECTED", "KEY_TOO_LONG", None)
    assert world.store.keys("predictions/") == []
    record = world.ledger.get_image(image.image_id)
    assert record is not None and record.status == "REJECTED" and "shorter name" in str(record.reason)


# -- batches of the DetectQueue ----------------------------------------------------------------------


def record(
    body: Any, message_id: str = "m-1", receives: int = 1, waited: int | None = None
) -> dict[str, Any]:
    """One record of the DetectQueue's event source mapping, as Lambda passes it."""
    entry: dict[str, Any] = {
        "messageId": message_id,
        "receiptHandle": f"receipt-{message_id}",
        "body": body if isinstance(body, str) else json.dumps(body),
        "attributes": {"ApproximateReceiveCount": str(receives), "SentTimestamp": "1796121600000"},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:detect",
        "awsRegion": "us-east-1",
    }
    if waited is not None:
        entry["messageAttributes"][uploads.WAITED_ATTRIBUTE] = {
            "stringValue": str(waited),
            "dataType": "Number",
        }
    return entry


def batch(*records: dict[str, Any]) -> uploads.QueuedUploads:
    return uploads.queued_uploads({"Records": list(records)})


def upload_event(world: World, key: str, body: bytes) -> dict[str, Any]:
    image = world.upload(key, body)
    return s3_event_for(image.bucket, image.key, str(image.version_id), str(image.etag))


def test_a_batch_of_uploads_is_detected_and_nothing_is_left_to_retry(world: World) -> None:
    events = [upload_event(world, f"incoming/{n}.png", png_bytes()) for n in range(3)]

    outcome = world.service.handle(batch(*(record(e, f"m-{n}") for n, e in enumerate(events))))

    assert outcome.to_dict() == {"batchItemFailures": []}
    assert (outcome.done, outcome.waiting, outcome.dead_lettered) == (3, 0, 0)
    assert len(world.store.keys("predictions/")) == 3
    assert world.activity.detections == [NOW]  # the model controller's idle clock restarts


@pytest.mark.parametrize(
    "error", [ModelNotReady("model STOPPING"), Throttled("ProvisionedThroughputExceededException")]
)
def test_an_image_the_model_cannot_take_now_is_sent_back_to_wait_without_counting_a_failure(
    world: World, error: Exception
) -> None:
    event = upload_event(world, "incoming/wait.png", png_bytes())
    world.detector.answers["incoming/wait.png"] = error

    outcome = world.service.handle(batch(record(event, receives=1)))

    assert outcome.to_dict() == {"batchItemFailures": []}  # the original is deleted...
    [again] = world.queue.sent  # ...because an identical copy waits in the DetectQueue
    assert json.loads(again.body) == event
    # the first time: WAIT_BASE_SECONDS for a model not running, THROTTLE_BASE_SECONDS when throttled
    assert again.delay_seconds == (1 if isinstance(error, Throttled) else 5)
    assert again.attributes == {uploads.WAITED_ATTRIBUTE: "1"}
    assert world.dead_letters.sent == []
    assert world.store.keys("predictions/") == []


@pytest.mark.parametrize(
    ("error", "first", "most"),
    [(ModelNotReady("model STOPPED"), 5, 900), (Throttled("over capacity"), 1, 2)],
)
def test_waiting_longer_each_time_is_never_dead_lettered_and_stays_within_sqs_delays(
    world: World, error: Exception, first: int, most: int
) -> None:
    event = upload_event(world, "incoming/patient.png", png_bytes())
    world.detector.answers["incoming/patient.png"] = error
    delays = []
    for waited in range(12):  # far more receives than MAX_RECEIVE_COUNT: they are new messages
        world.service.handle(batch(record(event, f"m-{waited}", receives=5, waited=waited)))
        delays.append(world.queue.sent[-1].delay_seconds)
    assert delays == sorted(delays) and delays[0] == first and delays[-1] == most
    assert world.dead_letters.sent == []


def test_after_the_model_refuses_one_image_the_rest_of_the_batch_waits_without_calling_it(
    world: World,
) -> None:
    events = [upload_event(world, f"incoming/{n}.png", png_bytes()) for n in range(4)]
    world.detector.answers["incoming/1.png"] = Throttled("ProvisionedThroughputExceededException")

    outcome = world.service.handle(batch(*(record(e, f"m-{n}") for n, e in enumerate(events))))

    assert outcome.to_dict() == {"batchItemFailures": []}
    assert (outcome.done, outcome.waiting, outcome.dead_lettered) == (1, 3, 0)
    assert [message.id for message in world.queue.sent] == ["m-1", "m-2", "m-3"]
    assert world.store.keys("predictions/") == ["predictions/0.png.json"]


class InvocationClock:
    """A Lambda context whose time runs out by `per_image` seconds for every image detected."""

    def __init__(self, seconds: float, per_image: float) -> None:
        self.seconds, self.per_image = seconds, per_image

    def get_remaining_time_in_millis(self) -> int:
        return int(self.seconds * 1000)


def test_images_the_invocation_has_no_time_left_for_are_sent_back_untried_not_failed(world: World) -> None:
    events = [upload_event(world, f"incoming/{n}.png", png_bytes()) for n in range(4)]
    context = InvocationClock(seconds=20.0, per_image=7.0)
    answer = world.detector.detect

    def slow_detect(*args: Any, **kwargs: Any) -> Any:  # a throttled model's retries within the call
        context.seconds -= context.per_image
        return answer(*args, **kwargs)

    world.detector.detect = slow_detect  # type: ignore[method-assign]
    records = [record(e, f"m-{n}", receives=2, waited=1) for n, e in enumerate(events)]
    outcome = world.service.handle(uploads.queued_uploads({"Records": records}, context))

    assert outcome.to_dict() == {"batchItemFailures": []}  # a timeout would have failed all four
    assert (outcome.done, outcome.waiting, outcome.dead_lettered) == (2, 2, 0)  # 20 → 13 → 6 s left
    assert [(m.id, m.delay_seconds, dict(m.attributes)) for m in world.queue.sent] == [
        ("m-2", 0, {uploads.WAITED_ATTRIBUTE: "1"}),
        ("m-3", 0, {uploads.WAITED_ATTRIBUTE: "1"}),
    ]
    assert world.store.keys("predictions/") == ["predictions/0.png.json", "predictions/1.png.json"]


def test_a_failing_image_is_retried_by_sqs_until_its_last_receive_then_dead_lettered_with_the_reason(
    world: World,
) -> None:
    event = upload_event(world, "incoming/broken.png", png_bytes())
    world.detector.answers["incoming/broken.png"] = AccessDenied("Rekognition could not read the image")

    early = world.service.handle(batch(record(event, "m-1", receives=4)))
    last = world.service.handle(batch(record(event, "m-1", receives=5)))  # MAX_RECEIVE_COUNT (template)

    assert early.to_dict() == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    assert last.to_dict() == {"batchItemFailures": []}
    [letter] = world.dead_letters.sent
    assert json.loads(letter.body) == event
    assert letter.attributes == {
        "ERROR_CODE": "AccessDenied",
        "ERROR_MESSAGE": "Rekognition could not read the image",
        "RETRY_ATTEMPTS": "5",
    }
    assert world.queue.sent == []


def test_a_body_that_is_not_an_upload_event_is_dead_lettered_at_once_with_the_reason(world: World) -> None:
    good = upload_event(world, "incoming/good.png", png_bytes())

    outcome = world.service.handle(
        batch(
            record({"source": "aws.ec2"}, "m-bad"), record("{not json", "m-garbled"), record(good, "m-good")
        )
    )

    assert outcome.to_dict() == {"batchItemFailures": []}
    assert (outcome.done, outcome.dead_lettered) == (1, 2)
    codes = {letter.id: letter.attributes["ERROR_CODE"] for letter in world.dead_letters.sent}
    assert codes == {"m-bad": "InvalidEvent", "m-garbled": "InvalidEvent"}
    reasons = [letter.attributes["ERROR_MESSAGE"] for letter in world.dead_letters.sent]
    assert "s3-object-created-event" in reasons[0] and "not JSON" in reasons[1]


def test_a_copy_sqs_refuses_keeps_the_original_for_a_retry(world: World) -> None:
    event = upload_event(world, "incoming/wait.png", png_bytes())
    world.detector.answers["incoming/wait.png"] = ModelNotReady("model STARTING")
    world.queue.refuse.add("m-1")

    outcome = world.service.handle(batch(record(event, "m-1")))

    assert outcome.to_dict() == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}


def test_one_failure_fails_only_its_own_message(world: World) -> None:
    ok = upload_event(world, "incoming/ok.png", png_bytes())
    bad = upload_event(world, "incoming/bad.png", png_bytes())
    world.detector.answers["incoming/bad.png"] = TransientError("DynamoDB is failing")

    outcome = world.service.handle(batch(record(ok, "m-ok"), record(bad, "m-bad")))

    assert outcome.to_dict() == {"batchItemFailures": [{"itemIdentifier": "m-bad"}]}
    assert world.store.keys("predictions/") == ["predictions/ok.png.json"]


def test_a_batch_of_only_waiting_images_is_not_activity(world: World) -> None:
    event = upload_event(world, "incoming/wait.png", png_bytes())
    world.detector.answers["incoming/wait.png"] = ModelNotReady("model STOPPED")
    world.service.handle(batch(record(event)))
    assert world.activity.detections == []  # the idle clock is about work done, not work refused
