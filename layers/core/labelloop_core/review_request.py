"""The `ReviewRequested` detail: one codec for its producer (Detect), the replay path that rebuilds it
from a stored prediction document (Detect), and its consumer (StartReview).

Detail (schema `review-requested`, v1): `{schemaVersion, imageId, bucket, key, versionId, etag,
modelArn, predictionKey, imageSize: {width, height}, detections: [{label, confidence, pixelBox}],
reasons: [{code, label, confidence, threshold, message}]}`; pixel boxes are inside the image.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from labelloop_core.errors import InvalidEvent
from labelloop_core.geometry import PixelBox
from labelloop_core.naming import ImageRef
from labelloop_core.policy import ReviewReason

SCHEMA_VERSION = "1"


@dataclass(frozen=True)
class BoxedDetection:
    label: str
    confidence: float
    box: PixelBox

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "confidence": self.confidence, "pixelBox": self.box.to_dict()}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> BoxedDetection:
        box = raw["pixelBox"]
        return cls(
            str(raw["label"]),
            float(raw["confidence"]),
            PixelBox(box["left"], box["top"], box["width"], box["height"]),
        )


@dataclass(frozen=True)
class ReviewRequest:
    image: ImageRef
    model_arn: str
    prediction_key: str
    width: int
    height: int
    detections: tuple[BoxedDetection, ...]
    reasons: tuple[ReviewReason, ...]

    @property
    def priority(self) -> float:
        """Review order, lower first (DESIGN §4): the lowest confidence the model reported for the
        image, 0 when it detected nothing (or no model is active yet)."""
        return round(min((detection.confidence for detection in self.detections), default=0.0), 3)

    def to_detail(self) -> dict[str, Any]:
        return {
            "schemaVersion": SCHEMA_VERSION,
            **image_fields(self.image),
            "modelArn": self.model_arn,
            "predictionKey": self.prediction_key,
            "imageSize": {"width": self.width, "height": self.height},
            "detections": [detection.to_dict() for detection in self.detections],
            "reasons": [reason.to_dict() for reason in self.reasons],
        }

    @classmethod
    def from_detail(cls, detail: Mapping[str, Any]) -> ReviewRequest:
        """A schema-valid detail; InvalidEvent when its imageId is not its image's identity."""
        image = ImageRef(detail["bucket"], detail["key"], detail.get("versionId"), detail.get("etag"))
        if image.image_id != detail["imageId"]:
            raise InvalidEvent(
                f"imageId {detail['imageId']} does not match the image identity {image.identity}"
            )
        size = detail["imageSize"]
        return cls(
            image=image,
            model_arn=str(detail["modelArn"]),
            prediction_key=str(detail["predictionKey"]),
            width=int(size["width"]),
            height=int(size["height"]),
            detections=tuple(BoxedDetection.from_dict(item) for item in detail["detections"]),
            reasons=tuple(_reason(item) for item in detail["reasons"]),
        )

    @classmethod
    def from_prediction(cls, document: Mapping[str, Any], prediction_key: str) -> ReviewRequest:
        """The request Detect published for a stored prediction document (status PREDICTED)."""
        return cls.from_detail(
            {
                **document["image"],
                "modelArn": document["model"]["arn"],
                "predictionKey": prediction_key,
                "imageSize": {
                    "width": document["imageInfo"]["width"],
                    "height": document["imageInfo"]["height"],
                },
                "detections": document["detections"],
                "reasons": document["review"]["reasons"],
            }
        )


def image_fields(image: ImageRef) -> dict[str, Any]:
    """How events and documents name an image version."""
    return {
        "bucket": image.bucket,
        "key": image.key,
        "versionId": image.version_id,
        "etag": image.etag,
        "imageId": image.image_id,
    }


def _reason(raw: Mapping[str, Any]) -> ReviewReason:
    return ReviewReason(raw["code"], raw.get("label"), raw.get("confidence"), raw.get("threshold"))
