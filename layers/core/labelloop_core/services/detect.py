"""Detect: check an uploaded image, detect with the active model, decide on review, record, publish.

Detect consumes the DetectQueue in batches (its SQS event source mapping, `ReportBatchItemFailures`).
Each message ends one of four ways:
- done (detected, rejected, or found already processed): deleted by Lambda;
- the model could not take it now (not RUNNING, or throttled: `ModelNotReady`, `Throttled`): sent
  back to the DetectQueue with a growing DelaySeconds and deleted, so waiting never counts as a
  failed receive and never reaches the dead-letter queue;
- a genuine failure (an error of this image or event, a permission, a bug): a batch item failure,
  received again after the visibility timeout; on its last receive (MAX_RECEIVE_COUNT, the queue's
  maxReceiveCount) it is sent to the dead-letter queue with the reason as message attributes;
- a body that is not an S3 `Object Created` event: dead-lettered at once with the reason (retrying
  cannot change it);
- not reached before the invocation would time out (a throttled model's retries take time): sent back
  at once, unchanged, like a waiting one, so a timeout never turns a whole batch into failed receives.

Idempotent per image version: a duplicate or replayed event rewrites the same prediction document
and ledger item and republishes the same ReviewRequested, whose deterministic loop name makes
StartReview a no-op. Once a review has started the image is not detected again.

Cold start: while the active-model parameter is `none` there is no model to call. The image is
still recorded and sent to review so people label it and the first model can be trained: the
project ARN stands in for the model (documents and the loop name need one) and the review reason is
NO_MODEL.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from labelloop_core import config, imageinfo, naming, observability
from labelloop_core.config import ConfigError, setting
from labelloop_core.errors import InvalidImage, ModelNotReady, ObjectMissing, Throttled
from labelloop_core.geometry import PixelBox, clamp, ratio_to_pixels
from labelloop_core.inbound.uploads import WAITED_ATTRIBUTE, QueuedUpload, QueuedUploads
from labelloop_core.ledger import ImageRecord
from labelloop_core.naming import ImageRef
from labelloop_core.policy import (
    NO_MODEL,
    Detection,
    ReviewConfig,
    ReviewDecision,
    ReviewReason,
    decide_review,
)
from labelloop_core.ports import (
    Detector,
    EventPublisher,
    MessageQueue,
    ModelActivity,
    ModelRegistry,
    ObjectStore,
    OutgoingMessage,
    ReviewLedger,
)
from labelloop_core.redelivery import throttle_delay_seconds, wait_delay_seconds
from labelloop_core.review_request import BoxedDetection, ReviewRequest, image_fields
from labelloop_core.schemas import validate

OBJECT_MISSING = "OBJECT_MISSING"
_MAX_HEADER_FETCHES = 3  # JPEG headers pushed back by big EXIF/ICC blocks need a longer read
# Message attributes of a message Detect sends to its dead-letter queue (as EventBridge names its own).
ERROR_CODE, ERROR_MESSAGE, RECEIVE_COUNT = "ERROR_CODE", "ERROR_MESSAGE", "RETRY_ATTEMPTS"


@dataclass(frozen=True, kw_only=True)
class DetectSettings:
    bucket_name: str = config.bucket_name()
    ledger_table: str = config.ledger_table()
    event_bus_name: str = config.event_bus_name()
    active_model_parameter: str = config.active_model_parameter()
    project_arn: str = config.project_arn()  # stands in for the model while there is none
    labels: tuple[str, ...] = config.label_names()
    review_threshold: float = setting("REVIEW_THRESHOLD", config.percentage, 60.0)
    label_thresholds: Mapping[str, float] = setting("LABEL_THRESHOLDS", config.label_thresholds, {})
    review_when_empty: bool = setting("REVIEW_WHEN_EMPTY", config.boolean, True)
    audit_rate: float = setting("AUDIT_RATE", config.rate, 0.0)
    min_confidence: float = setting("MIN_CONFIDENCE", config.percentage, 10.0)
    model_cache_seconds: int = setting(
        "MODEL_CACHE_SECONDS", config.integer_between(0, config.MAX_MODEL_CACHE_SECONDS), 60
    )
    detect_queue_url: str = config.detect_queue_url()  # where a message waiting for the model goes back
    dead_letter_queue_url: str = setting("DEAD_LETTER_QUEUE_URL", config.text)
    # The DetectQueue's maxReceiveCount: the receive on which a failing message is dead-lettered.
    max_receive_count: int = setting("MAX_RECEIVE_COUNT", config.integer_between(1, 1000), 5)

    def check(self) -> None:
        unknown = sorted(set(self.label_thresholds) - set(self.labels))
        if unknown:
            raise ConfigError("LABEL_THRESHOLDS", f"names labels {unknown} that are not in LABELS")
        # Detections under MinConfidence are never returned, so the policy could not flag them.
        lowest = min([self.review_threshold, *self.label_thresholds.values()])
        if self.min_confidence > lowest:
            raise ConfigError(
                "MIN_CONFIDENCE",
                f"{self.min_confidence:g} exceeds the lowest review threshold {lowest:g}: "
                "low-confidence detections would be dropped before the review policy sees them",
            )

    def review_config(self) -> ReviewConfig:
        return ReviewConfig(
            default_threshold=self.review_threshold,
            label_thresholds=dict(self.label_thresholds),
            review_when_empty=self.review_when_empty,
            audit_rate=self.audit_rate,
        )


@dataclass(frozen=True)
class DetectOutcome:
    status: str  # IGNORED | ALREADY_PROCESSED | ALREADY_REVIEWED | REJECTED | PREDICTED | REVIEW_REQUESTED
    image_id: str | None = None
    prediction_key: str | None = None
    loop_name: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "imageId": self.image_id, "loopName": self.loop_name}


@dataclass(frozen=True)
class BatchOutcome:
    """What became of a batch; `to_dict()` is the partial batch response Lambda reads."""

    failures: tuple[str, ...] = ()  # message ids SQS delivers again after the visibility timeout
    done: int = 0
    waiting: int = 0  # sent back to wait for the model
    dead_lettered: int = 0
    outcomes: tuple[DetectOutcome, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in self.failures]}


@dataclass(frozen=True)
class _Scored:
    """A detection with its pixel box inside the image."""

    detection: Detection
    pixels: PixelBox | None


class DetectService:
    settings_type: ClassVar[type[DetectSettings]] = DetectSettings

    def __init__(
        self,
        settings: DetectSettings,
        store: ObjectStore,
        ledger: ReviewLedger,
        models: ModelRegistry,
        detector: Detector,
        publisher: EventPublisher,
        *,
        queue: MessageQueue,
        dead_letters: MessageQueue,
        activity: ModelActivity,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.store = store
        self.ledger = ledger
        self.models = models
        self.detector = detector
        self.publisher = publisher
        self.queue = queue
        self.dead_letters = dead_letters
        self.activity = activity
        self.clock = clock
        self.rng = rng
        self.review_config = settings.review_config()
        self.log = observability.logger()

    @classmethod
    def from_settings(cls, settings: DetectSettings) -> DetectService:
        from labelloop_core.adapters.events import EventBridgePublisher
        from labelloop_core.adapters.ledger import ModelLedger
        from labelloop_core.adapters.ledger import ReviewLedger as DynamoReviewLedger
        from labelloop_core.adapters.models import SsmModelRegistry
        from labelloop_core.adapters.queues import SqsQueue
        from labelloop_core.adapters.rekognition import CustomLabelsDetector
        from labelloop_core.adapters.s3store import S3Store

        return cls(
            settings,
            S3Store(settings.bucket_name),
            DynamoReviewLedger(settings.ledger_table),
            # One registry per container: it caches the active ARN for MODEL_CACHE_SECONDS.
            SsmModelRegistry(settings.active_model_parameter, cache_seconds=settings.model_cache_seconds),
            CustomLabelsDetector(),
            EventBridgePublisher(settings.event_bus_name),
            queue=SqsQueue(settings.detect_queue_url),
            dead_letters=SqsQueue(settings.dead_letter_queue_url),
            activity=ModelLedger(settings.ledger_table),
        )

    def handle(self, batch: QueuedUploads) -> BatchOutcome:
        """Every message of the batch: done, sent back to wait, dead-lettered, or a batch item failure."""
        failures: list[str] = []
        waiting: list[OutgoingMessage] = []
        dead: list[OutgoingMessage] = []
        outcomes: list[DetectOutcome] = []
        blocked: ModelNotReady | Throttled | None = None  # the model refused an image of this batch
        for index, record in enumerate(batch.records):
            if index and _out_of_time(batch):
                self.log.warning("the invocation is running out of time: the rest of the batch is sent back")
                waiting += [_unchanged(rest) for rest in batch.records[index:]]
                break
            self.log.set_correlation_id(record.event_id)
            if record.upload is None:
                self.log.error("not an upload event", extra={"message_id": record.message_id})
                observability.count("InvalidEvents")
                dead.append(self._dead_letter(record, "InvalidEvent", record.problem or "invalid body"))
                continue
            if blocked is not None:  # the rest of the batch waits too: no call the model would refuse
                waiting.append(self._wait(record, blocked))
                continue
            try:
                outcomes.append(self.process(record.upload.image))
            except (ModelNotReady, Throttled) as wait:
                blocked = wait
                waiting.append(self._wait(record, wait))
            except Exception as error:  # this record's failure, never the whole batch's
                if record.receive_count < self.settings.max_receive_count:
                    self.log.warning(
                        "detection failed, SQS delivers it again",
                        extra={"message_id": record.message_id, "error": f"{type(error).__name__}: {error}"},
                    )
                    failures.append(record.message_id)
                else:
                    dead.append(self._dead_letter(record, type(error).__name__, str(error)))
        self.log.set_correlation_id(None)
        # A message whose copy could not be sent stays a failure: SQS keeps the original.
        failures += self.queue.send(waiting) if waiting else []
        failures += self.dead_letters.send(dead) if dead else []
        if outcomes:
            self.activity.record_detection(self.clock())
        if waiting:
            observability.count("ImagesWaitingForModel", len(waiting))
        if dead:
            observability.count("DeadLettered", len(dead))
        return BatchOutcome(tuple(failures), len(outcomes), len(waiting), len(dead), tuple(outcomes))

    def _wait(self, record: QueuedUpload, reason: Exception) -> OutgoingMessage:
        """The message again, delayed: waiting for the model is never a failed attempt. Throttled: a
        short backoff (the model runs, the burst drains at its capacity); not running: a longer one."""
        if isinstance(reason, Throttled):
            delay = throttle_delay_seconds(record.waited, self.rng)
        else:
            delay = wait_delay_seconds(record.waited, self.rng)
        self.log.info(
            "the model cannot take the image now: sent back to wait",
            extra={"message_id": record.message_id, "delay_seconds": delay, "reason": str(reason)},
        )
        attributes = {WAITED_ATTRIBUTE: str(record.waited + 1)}
        return OutgoingMessage(record.message_id, record.body, delay, attributes)

    def _dead_letter(self, record: QueuedUpload, code: str, message: str) -> OutgoingMessage:
        self.log.error(
            "message dead-lettered",
            extra={"message_id": record.message_id, "code": code, "reason": message},
        )
        attributes = {
            ERROR_CODE: code,
            ERROR_MESSAGE: message[:1000],
            RECEIVE_COUNT: str(record.receive_count),
        }
        return OutgoingMessage(record.message_id, record.body, 0, attributes)

    def process(self, image: ImageRef) -> DetectOutcome:
        if not naming.is_incoming(image.key) or image.bucket != self.settings.bucket_name:
            # The rule already filters on bucket and prefix; never act on anything else.
            self.log.warning(
                "ignoring object outside incoming/", extra={"bucket": image.bucket, "key": image.key}
            )
            observability.count("ObjectsIgnored")
            return DetectOutcome("IGNORED", reason="not under incoming/ of the stack bucket")
        if not naming.fits_s3_key(naming.prediction_key(image.key)):
            # Its prediction document could not be written: the ledger alone records the rejection.
            size = len(image.key.encode("utf-8"))
            message = (
                f"the {size}-byte key leaves no room for predictions/<key>.json under S3's "
                f"{naming.MAX_KEY_BYTES}-byte limit: upload it under a shorter name"
            )
            return self._reject(image, "KEY_TOO_LONG", message, document=False)
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

    def _finish_recorded(self, image: ImageRef, existing: ImageRecord) -> DetectOutcome | None:
        """A duplicate or replayed event for an image version the ledger already knows.

        Detecting again could use a newer model, whose ARN gives a new loop name: a second human
        loop for the same image. So a recorded outcome is final; only a review request that may not
        have reached the bus (the publish failed after the ledger write) is published again, from
        the stored prediction document, with the model that made it.
        """
        status = existing.status
        observability.count("DuplicateDetections")
        if status == "REVIEW_REQUESTED":
            prediction_key = naming.prediction_key(image.key)
            try:
                document = self.store.get_json(prediction_key)
            except ObjectMissing:
                return None  # the document is gone: detect again
            if document.get("image", {}).get("imageId") != image.image_id:
                return None  # the key was uploaded again since: its document is for another version
            request = ReviewRequest.from_prediction(document, prediction_key)
            self.publisher.publish("ReviewRequested", request.to_detail())
            self.log.info("review request published again", extra={"image_id": image.image_id})
            return DetectOutcome(
                "REVIEW_REQUESTED", image.image_id, prediction_key, existing.loop_name, existing.reason
            )
        self.log.info("image already processed", extra={"image_id": image.image_id, "status": status})
        if existing.reviewed:
            return DetectOutcome("ALREADY_REVIEWED", image.image_id, loop_name=existing.loop_name)
        return DetectOutcome(
            "ALREADY_PROCESSED", image.image_id, naming.prediction_key(image.key), reason=existing.reason
        )

    def _probe(self, image: ImageRef) -> imageinfo.ImageInfo:
        """Format and size from the header (one ranged GET, rarely more), then the end of the object
        (a second one, unless the first read it all): only complete images go on to Rekognition."""
        length = imageinfo.HEADER_BYTES
        for _ in range(_MAX_HEADER_FETCHES):
            head = self.store.read_head(image.key, length, image.version_id)
            try:
                info = imageinfo.probe(head.data, head.size)
            except InvalidImage as error:
                if error.code != "HEADER_TOO_LONG" or error.needed_bytes is None:
                    raise
                length = max(error.needed_bytes, length * 4)
                continue
            whole = len(head.data) >= head.size
            tail = (
                head.data
                if whole
                else self.store.read_tail(image.key, imageinfo.TAIL_BYTES, image.version_id)
            )
            imageinfo.check_complete(info, head.data, tail, head.size)
            return info
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
        request = ReviewRequest(
            image=image,
            model_arn=identity_arn,
            prediction_key=prediction_key,
            width=info.width,
            height=info.height,
            detections=tuple(
                BoxedDetection(item.detection.label, item.detection.confidence, item.pixels)
                for item in scored
                if item.pixels is not None
            ),
            reasons=tuple(decision.reasons),
        )
        self.publisher.publish("ReviewRequested", request.to_detail())
        observability.count("ReviewsRequested")
        self.log.info("review requested", extra={"image_id": image.image_id, "loop_name": loop_name})
        return DetectOutcome("REVIEW_REQUESTED", image.image_id, prediction_key, loop_name, reason)

    def _reject(self, image: ImageRef, code: str, message: str, document: bool = True) -> DetectOutcome:
        """Bad images are recorded, not retried: the prediction document explains why."""
        prediction_key: str | None = naming.prediction_key(image.key) if document else None
        if prediction_key is not None:
            rejection = {
                "schemaVersion": "1",
                "image": image_fields(image),
                "status": "REJECTED",
                "rejection": {"code": code, "message": message},
                "detections": [],
                "review": {"needed": False, "auditSample": False, "reasons": []},
                "createdAt": _now(),
            }
            validate("prediction", rejection)
            self.store.put_json(prediction_key, rejection)
        self.ledger.record_image(image, "REJECTED", reason=f"{code}: {message}")
        self.log.warning(
            "image rejected", extra={"image_id": image.image_id, "code": code, "reason": message}
        )
        observability.count("ImagesRejected")
        return DetectOutcome("REJECTED", image.image_id, prediction_key, reason=code)


# What one more image may take in the worst case: the throttled model's retries within the call
# (about 4 s, adapters.rekognition), the S3 and DynamoDB calls around it, then sending the messages back.
BATCH_RESERVE_SECONDS = 8.0


def _out_of_time(batch: QueuedUploads) -> bool:
    return batch.seconds_left is not None and batch.seconds_left() < BATCH_RESERVE_SECONDS


def _unchanged(record: QueuedUpload) -> OutgoingMessage:
    """The message again, at once and with its wait count: it was not tried, so it did not wait."""
    return OutgoingMessage(record.message_id, record.body, 0, {WAITED_ATTRIBUTE: str(record.waited)})


def _pixels(detection: Detection, info: imageinfo.ImageInfo) -> PixelBox | None:
    if detection.box is None:
        return None
    return clamp(ratio_to_pixels(detection.box, info.width, info.height), info.width, info.height)


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
        "image": image_fields(image),
        "status": "PREDICTED",
        "imageInfo": {"format": info.format, "width": info.width, "height": info.height},
        "model": {"arn": model_arn},
        "detections": detections,
        "review": {
            "needed": decision.needed,
            "auditSample": decision.audit_sample,
            "reasons": [reason.to_dict() for reason in decision.reasons],
        },
        "createdAt": _now(),
    }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
