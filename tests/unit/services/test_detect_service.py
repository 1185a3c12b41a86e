"""Detect's decisions on in-memory ports: what is recorded, written and published for each image."""

from __future__ import annotations

import pytest

from labelloop_core import naming
from labelloop_core.config import settings_from_env
from labelloop_core.errors import AccessDenied, TransientError
from labelloop_core.geometry import RatioBox
from labelloop_core.naming import ImageRef
from labelloop_core.policy import Detection
from labelloop_core.services.detect import DetectService, DetectSettings
from tests.support.fakes import FakeDetector, FakeModelRegistry, FakePublisher, FakeReviewLedger, FakeStore
from tests.support.flows import jpeg_bytes, png_bytes, png_header_only

MODEL = "arn:aws:rekognition:us-east-1:123456789012:project/pizza/version/pizza.v1/1"
PROJECT = "arn:aws:rekognition:us-east-1:123456789012:project/pizza/1"
ENV = {
    "BUCKET_NAME": "images",
    "LEDGER_TABLE": "ledger",
    "EVENT_BUS_NAME": "bus",
    "ACTIVE_MODEL_PARAMETER": "/active",
    "PROJECT_ARN": PROJECT,
    "LABELS": "pizza",
}
SLICE = RatioBox(0.1, 0.2, 0.5, 0.25)


class World:
    def __init__(self, model: str | None = MODEL, **env: str) -> None:
        self.store = FakeStore("images")
        self.ledger = FakeReviewLedger()
        self.models = FakeModelRegistry(model)
        self.detector = FakeDetector()
        self.publisher = FakePublisher()
        self.service = DetectService(
            settings_from_env(DetectSettings, {**ENV, **env}),
            self.store,
            self.ledger,
            self.models,
            self.detector,
            self.publisher,
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
