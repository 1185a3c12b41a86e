"""Detect (DESIGN §2 step 2): check an uploaded image, detect, decide on review, record, publish.

Idempotent per image version: a duplicate or replayed event rewrites the same prediction document
and ledger item and republishes the same ReviewRequested, whose deterministic loop name makes
StartReview a no-op. Once a review has started the image is not detected again.

Cold start: while the active-model parameter is `none` there is no model to call. The image is
still recorded and sent to review so people label it and the first model can be trained: the
project ARN stands in for the model (documents and the loop name need one) and the review reason is
NO_MODEL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from labelloop_core import imageinfo, naming, observability
from labelloop_core.adapters.events import EventPublisher
from labelloop_core.adapters.ledger import IMAGE_STAGES, Ledger
from labelloop_core.adapters.models import ModelRegistry, shared_registry
from labelloop_core.adapters.rekognition import CustomLabelsDetector
from labelloop_core.adapters.s3store import ObjectMissing, S3Store
from labelloop_core.config import Settings
from labelloop_core.errors import InvalidImage
from labelloop_core.geometry import PixelBox, clamp, ratio_to_pixels
from labelloop_core.naming import ImageRef
from labelloop_core.policy import (
    NO_MODEL,
    Detection,
    ReviewConfig,
    ReviewDecision,
    ReviewReason,
    decide_review,
)
from labelloop_core.schemas import validate

OBJECT_MISSING = "OBJECT_MISSING"
_MAX_HEADER_FETCHES = 3  # JPEG headers pushed back by big EXIF/ICC blocks need a longer read


@dataclass(frozen=True)
class DetectOutcome:
    status: str  # IGNORED | ALREADY_PROCESSED | ALREADY_REVIEWED | REJECTED | PREDICTED | REVIEW_REQUESTED
    image_id: str | None = None
    prediction_key: str | None = None
    loop_name: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class _Scored:
    """A detection with its pixel box inside the image."""

    detection: Detection
    pixels: PixelBox | None


class DetectService:
    def __init__(
        self,
        settings: Settings,
        store: S3Store,
        ledger: Ledger,
        models: ModelRegistry,
        detector: CustomLabelsDetector,
        publisher: EventPublisher,
    ) -> None:
        self.settings = settings
        self.store = store
        self.ledger = ledger
        self.models = models
        self.detector = detector
        self.publisher = publisher
        self.review_config = ReviewConfig(
            default_threshold=settings.review_threshold,
            label_thresholds=dict(settings.label_thresholds),
            review_when_empty=settings.review_when_empty,
            audit_rate=settings.audit_rate,
        )
        self.log = observability.logger()

    @classmethod
    def from_settings(cls, settings: Settings) -> DetectService:
        return cls(
            settings,
            S3Store(settings.bucket_name),
            Ledger(settings.ledger_table),
            shared_registry(settings),
            CustomLabelsDetector(),
            EventPublisher(settings.event_bus_name),
        )

    def process(self, image: ImageRef) -> DetectOutcome:
        if not naming.is_incoming(image.key) or image.bucket != self.settings.bucket_name:
            # The rule already filters on bucket and prefix; never act on anything else.
            self.log.warning(
                "ignoring object outside incoming/", extra={"bucket": image.bucket, "key": image.key}
            )
            observability.count("ObjectsIgnored")
            return DetectOutcome("IGNORED", reason="not under incoming/ of the stack bucket")
        existing = self.ledger.get_image(image.image_id)
        if existing:
            finished = self._finish_recorded(image, existing)
            if finished is not None:
                return finished
        try:
            info = self._probe(image)
        except InvalidImage as rejection:
            return self._reject(image, rejection.code, rejection.message)
        except ObjectMissing as missing:
            return self._reject(image, OBJECT_MISSING, str(missing))
        return self._predict(image, info)

    def _finish_recorded(self, image: ImageRef, existing: dict[str, Any]) -> DetectOutcome | None:
        """A duplicate or replayed event for an image version the ledger already knows.

        Detecting again could use a newer model, whose ARN gives a new loop name: a second human
        loop for the same image. So a recorded outcome is final; only a review request that may not
        have reached the bus (the publish failed after the ledger write) is published again, from
        the stored prediction document, with the model that made it.
        """
        status = existing.get("status")
        observability.count("DuplicateDetections")
        if status == "REVIEW_REQUESTED":
            prediction_key = naming.prediction_key(image.key)
            try:
                document = self.store.get_json(prediction_key)
            except ObjectMissing:
                return None  # the document is gone: detect again
            if document.get("image", {}).get("imageId") != image.image_id:
                return None  # the key was uploaded again since: its document is for another version
            self.publisher.publish(
                "ReviewRequested", _review_requested_from_document(document, prediction_key)
            )
            self.log.info("review request published again", extra={"image_id": image.image_id})
            return DetectOutcome(
                "REVIEW_REQUESTED",
                image.image_id,
                prediction_key,
                existing.get("loop_name"),
                existing.get("reason"),
            )
        self.log.info("image already processed", extra={"image_id": image.image_id, "status": status})
        if int(existing.get("stage", 0)) > IMAGE_STAGES["REVIEW_REQUESTED"]:
            return DetectOutcome("ALREADY_REVIEWED", image.image_id, loop_name=existing.get("loop_name"))
        return DetectOutcome(
            "ALREADY_PROCESSED",
            image.image_id,
            naming.prediction_key(image.key),
            reason=existing.get("reason"),
        )

    def _probe(self, image: ImageRef) -> imageinfo.ImageInfo:
        length = imageinfo.HEADER_BYTES
        for _ in range(_MAX_HEADER_FETCHES):
            head = self.store.read_head(image.key, length, image.version_id)
            try:
                return imageinfo.probe(head.data, head.size)
            except InvalidImage as error:
                if error.code != "HEADER_TOO_LONG" or error.needed_bytes is None:
                    raise
                length = max(error.needed_bytes, length * 4)
        raise InvalidImage("CORRUPT_HEADER", f"no frame header in the first {length} bytes")

    def _predict(self, image: ImageRef, info: imageinfo.ImageInfo) -> DetectOutcome:
        model_arn = self.models.active_model_arn()
        if model_arn is None:
            detections: list[Detection] = []
        else:
            try:
                detections = self.detector.detect(model_arn, image, self.settings.min_confidence)
            except InvalidImage as rejection:
                return self._reject(image, rejection.code, rejection.message)
        decision = (
            decide_review(detections, self.review_config, image.image_id)
            if model_arn is not None
            else ReviewDecision(needed=True, reasons=[ReviewReason(NO_MODEL)], audit_sample=False)
        )
        identity_arn = model_arn or self.settings.project_arn
        scored = [_Scored(d, _pixels(d, info)) for d in detections]
        prediction_key = naming.prediction_key(image.key)
        document = _prediction_document(image, info, identity_arn, scored, decision)
        validate("prediction", document)
        self.store.put_json(prediction_key, document)
        reason = _reason_codes(decision.reasons)
        if model_arn is None:
            observability.count("NoModelDetections")
        if not decision.needed:
            self.ledger.record_image(image, "PREDICTED", reason=reason, model_arn=identity_arn)
            observability.count("ImagesPredicted")
            return DetectOutcome("PREDICTED", image.image_id, prediction_key, reason=reason)
        loop_name = naming.human_loop_name(image, identity_arn)
        self.ledger.record_image(
            image, "REVIEW_REQUESTED", reason=reason, model_arn=identity_arn, loop_name=loop_name
        )
        detail = _review_requested(image, info, identity_arn, prediction_key, scored, decision)
        self.publisher.publish("ReviewRequested", detail)
        observability.count("ReviewsRequested")
        self.log.info("review requested", extra={"image_id": image.image_id, "loop_name": loop_name})
        return DetectOutcome("REVIEW_REQUESTED", image.image_id, prediction_key, loop_name, reason)

    def _reject(self, image: ImageRef, code: str, message: str) -> DetectOutcome:
        """Bad images are recorded, not retried: the prediction document explains why."""
        prediction_key = naming.prediction_key(image.key)
        document = {
            "schemaVersion": "1",
            "image": _image_fields(image),
            "status": "REJECTED",
            "rejection": {"code": code, "message": message},
            "detections": [],
            "review": {"needed": False, "auditSample": False, "reasons": []},
            "createdAt": _now(),
        }
        validate("prediction", document)
        self.store.put_json(prediction_key, document)
        self.ledger.record_image(image, "REJECTED", reason=f"{code}: {message}")
        self.log.warning(
            "image rejected", extra={"image_id": image.image_id, "code": code, "reason": message}
        )
        observability.count("ImagesRejected")
        return DetectOutcome("REJECTED", image.image_id, prediction_key, reason=code)


def _pixels(detection: Detection, info: imageinfo.ImageInfo) -> PixelBox | None:
    if detection.box is None:
        return None
    return clamp(ratio_to_pixels(detection.box, info.width, info.height), info.width, info.height)


def _image_fields(image: ImageRef) -> dict[str, Any]:
    return {
        "bucket": image.bucket,
        "key": image.key,
        "versionId": image.version_id,
        "etag": image.etag,
        "imageId": image.image_id,
    }


def _reason_dict(reason: ReviewReason) -> dict[str, Any]:
    return reason.to_dict()


def _reason_codes(reasons: list[ReviewReason]) -> str | None:
    return ",".join(dict.fromkeys(reason.code for reason in reasons)) or None


def _prediction_document(
    image: ImageRef,
    info: imageinfo.ImageInfo,
    model_arn: str,
    scored: list[_Scored],
    decision: ReviewDecision,
) -> dict[str, Any]:
    detections = [
        {
            "label": item.detection.label,
            "confidence": item.detection.confidence,
            "box": {
                "left": item.detection.box.left,
                "top": item.detection.box.top,
                "width": item.detection.box.width,
                "height": item.detection.box.height,
            },
            "pixelBox": item.pixels.to_dict(),
        }
        for item in scored
        if item.detection.box is not None and item.pixels is not None
    ]
    return {
        "schemaVersion": "1",
        "image": _image_fields(image),
        "status": "PREDICTED",
        "imageInfo": {"format": info.format, "width": info.width, "height": info.height},
        "model": {"arn": model_arn},
        "detections": detections,
        "review": {
            "needed": decision.needed,
            "auditSample": decision.audit_sample,
            "reasons": [_reason_dict(reason) for reason in decision.reasons],
        },
        "createdAt": _now(),
    }


def _review_requested(
    image: ImageRef,
    info: imageinfo.ImageInfo,
    model_arn: str,
    prediction_key: str,
    scored: list[_Scored],
    decision: ReviewDecision,
) -> dict[str, Any]:
    return {
        "schemaVersion": "1",
        **{name: value for name, value in _image_fields(image).items()},
        "modelArn": model_arn,
        "predictionKey": prediction_key,
        "imageSize": {"width": info.width, "height": info.height},
        "detections": [
            {
                "label": item.detection.label,
                "confidence": item.detection.confidence,
                "pixelBox": item.pixels.to_dict(),
            }
            for item in scored
            if item.pixels is not None
        ],
        "reasons": [_reason_dict(reason) for reason in decision.reasons],
    }


def _review_requested_from_document(document: dict[str, Any], prediction_key: str) -> dict[str, Any]:
    """The ReviewRequested detail that `_review_requested` built from the same prediction."""
    image = document["image"]
    return {
        "schemaVersion": "1",
        **image,
        "modelArn": document["model"]["arn"],
        "predictionKey": prediction_key,
        "imageSize": {"width": document["imageInfo"]["width"], "height": document["imageInfo"]["height"]},
        "detections": [
            {"label": item["label"], "confidence": item["confidence"], "pixelBox": item["pixelBox"]}
            for item in document["detections"]
        ],
        "reasons": document["review"]["reasons"],
    }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
