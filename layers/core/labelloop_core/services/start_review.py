"""StartReview: open one review per image version and model in the review backend.

The review (loop) name is derived from the image identity and model ARN, so duplicate or replayed
ReviewRequested events find the review (in the ledger, or through the backend's own duplicate
check) and open nothing new. The review is opened before the ledger is written: a crash in between
is repaired by the retry, which finds the existing review and completes the ledger.

Only an image version that the key still names is reviewed: a reviewer (A2I's worker UI shows the
key's latest version) must never label another version than the one detected. A key uploaded again
or deleted since is recorded as SUPERSEDED; the new version has its own detection and review.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from labelloop_core import a2i, config, naming, observability
from labelloop_core.geometry import PixelBox
from labelloop_core.inbound import ReviewRequested
from labelloop_core.ports import ObjectStore, ReviewBackend, ReviewLedger
from labelloop_core.review_request import ReviewRequest
from labelloop_core.schemas import validate


@dataclass(frozen=True, kw_only=True)
class StartReviewSettings:
    bucket_name: str = config.bucket_name()
    ledger_table: str = config.ledger_table()
    labels: tuple[str, ...] = config.label_names()
    flow_definition_arn: str = config.flow_definition_arn()


@dataclass(frozen=True)
class StartReviewOutcome:
    loop_name: str
    image_id: str
    started: bool  # False when the review already existed, or none was opened (see status)
    status: str = "OPEN"  # OPEN | IGNORED | SUPERSEDED
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        result = {"loopName": self.loop_name, "imageId": self.image_id, "started": self.started}
        if self.status != "OPEN":
            result.update(status=self.status, reason=self.reason)
        return result


class StartReviewService:
    settings_type: ClassVar[type[StartReviewSettings]] = StartReviewSettings

    def __init__(
        self, settings: StartReviewSettings, reviews: ReviewBackend, ledger: ReviewLedger, store: ObjectStore
    ) -> None:
        self.settings = settings
        self.reviews = reviews
        self.ledger = ledger
        self.store = store
        self.log = observability.logger()

    @classmethod
    def from_settings(cls, settings: StartReviewSettings) -> StartReviewService:
        from labelloop_core.adapters.a2i_runtime import HumanLoops
        from labelloop_core.adapters.ledger import ReviewLedger as DynamoReviewLedger
        from labelloop_core.adapters.s3store import S3Store

        return cls(
            settings,
            HumanLoops(settings.flow_definition_arn),
            DynamoReviewLedger(settings.ledger_table),
            S3Store(settings.bucket_name),
        )

    def handle(self, request: ReviewRequested) -> StartReviewOutcome:
        return self.process(request.request)

    def process(self, request: ReviewRequest) -> StartReviewOutcome:
        image = request.image
        loop_name = naming.human_loop_name(image, request.model_arn)
        if image.bucket != self.settings.bucket_name:
            return self._not_opened(
                loop_name, image.image_id, "IGNORED", f"bucket {image.bucket} is not the stack's"
            )
        started = False
        if self.ledger.get_loop(loop_name) is None:
            current = self.store.current_version(image.key)
            if current is None or not current.is_version_of(image):
                return self._superseded(
                    request, loop_name, "deleted" if current is None else "uploaded again"
                )
            content = self._input_content(request)
            validate("a2i-input-content", content)
            started = self.reviews.open(loop_name, content).created
        self.ledger.record_loop(loop_name, "IN_PROGRESS", image_id=image.image_id)
        self.ledger.record_image(image, "IN_REVIEW", model_arn=request.model_arn, loop_name=loop_name)
        observability.count("HumanLoopsStarted" if started else "HumanLoopsAlreadyStarted")
        self.log.info(
            "human loop started" if started else "human loop already exists",
            extra={"loop_name": loop_name, "image_id": image.image_id},
        )
        return StartReviewOutcome(loop_name, image.image_id, started)

    def _superseded(self, request: ReviewRequest, loop_name: str, what: str) -> StartReviewOutcome:
        image = request.image
        reason = f"s3://{image.bucket}/{image.key} was {what} since this version was detected: not reviewed"
        self.ledger.record_image(image, "SUPERSEDED", reason=reason, model_arn=request.model_arn)
        return self._not_opened(loop_name, image.image_id, "SUPERSEDED", reason)

    def _not_opened(self, loop_name: str, image_id: str, status: str, reason: str) -> StartReviewOutcome:
        self.log.warning(
            "no review opened", extra={"loop_name": loop_name, "status": status, "reason": reason}
        )
        observability.count(f"Reviews{status.title()}")
        return StartReviewOutcome(loop_name, image_id, started=False, status=status, reason=reason)

    def _input_content(self, request: ReviewRequest) -> dict[str, Any]:
        labels = self.settings.labels
        boxes: list[tuple[str, PixelBox]] = []
        for detection in request.detections:
            if detection.label not in labels:
                # The model knows a label we no longer offer: the reviewer cannot keep it.
                self.log.warning("model label not in LABELS, not pre-drawn", extra={"label": detection.label})
                continue
            boxes.append((detection.label, detection.box))
        return a2i.build_input_content(
            request.image, request.width, request.height, boxes, labels, request.reasons
        )
