"""StartReview (DESIGN §2 step 3): one A2I human loop per image version and model.

The loop name is derived from the image identity and model ARN, so duplicate or replayed
ReviewRequested events find the loop (in the ledger, or through A2I's own duplicate check) and
start nothing new. The human loop is started before the ledger is written: a crash in between is
repaired by the retry, which finds the existing loop and completes the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labelloop_core import a2i, naming, observability
from labelloop_core.adapters.a2i_runtime import HumanLoops
from labelloop_core.adapters.ledger import Ledger
from labelloop_core.config import Settings
from labelloop_core.errors import InvalidEvent
from labelloop_core.geometry import PixelBox
from labelloop_core.naming import ImageRef
from labelloop_core.policy import ReviewReason
from labelloop_core.schemas import validate


@dataclass(frozen=True)
class StartReviewOutcome:
    loop_name: str
    image_id: str
    started: bool  # False when the loop already existed


class StartReviewService:
    def __init__(self, settings: Settings, loops: HumanLoops, ledger: Ledger) -> None:
        self.settings = settings
        self.loops = loops
        self.ledger = ledger
        self.log = observability.logger()

    @classmethod
    def from_settings(cls, settings: Settings) -> StartReviewService:
        flow_definition_arn: str = settings.require("FLOW_DEFINITION_ARN")
        return cls(settings, HumanLoops(flow_definition_arn), Ledger(settings.ledger_table))

    def process(self, detail: dict[str, Any]) -> StartReviewOutcome:
        """`detail` is a schema-valid ReviewRequested detail."""
        image = ImageRef(detail["bucket"], detail["key"], detail.get("versionId"), detail.get("etag"))
        if image.image_id != detail["imageId"]:
            raise InvalidEvent(
                f"imageId {detail['imageId']} does not match the image identity {image.identity}"
            )
        model_arn: str = detail["modelArn"]
        loop_name = naming.human_loop_name(image, model_arn)
        started = False
        if self.ledger.get_loop(loop_name) is None:
            content = self._input_content(image, detail)
            validate("a2i-input-content", content)
            started = self.loops.start(loop_name, content).created
        self.ledger.record_loop(loop_name, "IN_PROGRESS", image_id=image.image_id)
        self.ledger.record_image(image, "IN_REVIEW", model_arn=model_arn, loop_name=loop_name)
        observability.count("HumanLoopsStarted" if started else "HumanLoopsAlreadyStarted")
        self.log.info(
            "human loop started" if started else "human loop already exists",
            extra={"loop_name": loop_name, "image_id": image.image_id},
        )
        return StartReviewOutcome(loop_name, image.image_id, started)

    def _input_content(self, image: ImageRef, detail: dict[str, Any]) -> dict[str, Any]:
        labels = self.settings.labels
        boxes: list[tuple[str, PixelBox]] = []
        for detection in detail["detections"]:
            if detection["label"] not in labels:
                # The model knows a label we no longer offer: the reviewer cannot keep it.
                self.log.warning(
                    "model label not in LABELS, not pre-drawn", extra={"label": detection["label"]}
                )
                continue
            box = detection["pixelBox"]
            boxes.append((detection["label"], PixelBox(box["left"], box["top"], box["width"], box["height"])))
        reasons = [
            ReviewReason(
                reason["code"], reason.get("label"), reason.get("confidence"), reason.get("threshold")
            )
            for reason in detail["reasons"]
        ]
        size = detail["imageSize"]
        return a2i.build_input_content(image, size["width"], size["height"], boxes, labels, reasons)
